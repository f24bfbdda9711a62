//! Insights: why spend changed (`/api/v1/insights/explain`) and what everyone did (`/api/v1/activity`).
//!
//! Both read the rollups and the admin tables through [`spendgate_store::Store`], like every other answer, so
//! the numbers match the pages. The explain view and the activity feed are computed here once and rendered
//! both as JSON (the API, the CLI) and as pages (`/explain`, `/history?view=activity`).
//!
//! `explain.rs` answers why spend changed, `activity.rs` what everyone did, `signals.rs` the anomaly signals and
//! forecasts of this moment.

mod activity;
mod explain;
mod signals;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

use crate::AppState;

pub(crate) use activity::{activity, item_json, items_csv, ActivityItem, ActivityParams, Source};
pub(crate) use explain::{effect_rows, explain_view, usage_url, ExplainParams};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/insights/explain", get(explain::explain_api))
        .route("/api/v1/activity", get(activity::activity_api))
        .route("/api/v1/insights/anomalies", get(signals::anomalies_api))
        .route("/api/v1/insights/forecast", get(signals::forecast_api))
}
