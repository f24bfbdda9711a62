//! Insights: why spend changed (`/api/v1/insights/explain`) and what everyone did (`/api/v1/activity`).
//!
//! Both read the rollups and the admin tables through [`spendgate_store::Store`], like every other answer, so
//! the numbers match the pages. The explain view and the activity feed are computed here once and rendered
//! both as JSON (the API, the CLI) and as pages (`/explain`, `/history?view=activity`).
//!
//! `explain.rs` answers why spend changed, `activity.rs` what everyone did, `signals.rs` the anomaly signals and
//! forecasts of this moment, `forecast.rs` burn rates and forecasts over the time that really elapsed.

mod activity;
mod explain;
mod forecast;
mod signals;

use axum::routing::get;

use crate::openapi::{Access, ApiRouter, Op, Param};

pub(crate) use activity::{
    activity, field_changes, item_json, items_csv, ActivityItem, ActivityParams, Source,
};
pub(crate) use explain::{effect_rows, explain_view, usage_url, ExplainParams};
pub(crate) use forecast::{first_spend, period_forecast, rate_from, wallet_burn, RECENT_MS};

const EXPLAIN: Op = Op::get(
    "/api/v1/insights/explain",
    "Why a group's spend changed between a window and a baseline: volume, intensity and price/mix effects.",
    Access::Admin,
)
.query(&[
    Param { name: "group_by", description: "The grouping the subject belongs to (team, model, ...).", ty: "string" },
    Param { name: "subject", description: "The group to explain (omit for everything; @none for No team).", ty: "string" },
    Param { name: "breakdown", description: "The grouping each effect is split across (default model).", ty: "string" },
    Param { name: "baseline_from", description: "Start of the baseline, RFC 3339 (default: the previous equal window).", ty: "string" },
    Param { name: "baseline_to", description: "End of the baseline, RFC 3339.", ty: "string" },
    Param { name: "compare", description: "previous (the equal span before the window, default) or last_week (the same span seven days earlier).", ty: "string" },
]);
const ACTIVITY: Op = Op::get(
    "/api/v1/activity",
    "Who did what: request activity by key, admin changes, alerts and gateway starts and stops.",
    Access::Admin,
)
.query(&[
    Param {
        name: "actor",
        description: "A user name or key id, or who made an admin change.",
        ty: "string",
    },
    Param {
        name: "source",
        description: "Comma-separated: requests, admin_change, alert, gateway_lifecycle.",
        ty: "string",
    },
    Param {
        name: "format",
        description: "json or csv (default json).",
        ty: "string",
    },
    Param {
        name: "limit",
        description: "Items at most.",
        ty: "integer",
    },
]);
const ANOMALIES: Op = Op::get(
    "/api/v1/insights/anomalies",
    "Current anomaly signals (spend rate, prompt expansion, unattributed share, retry loops) with evidence.",
    Access::Admin,
);
const FORECAST: Op = Op::get(
    "/api/v1/insights/forecast",
    "Month-end forecasts with a range, for the org and each team.",
    Access::Admin,
);

pub fn routes() -> ApiRouter {
    ApiRouter::default()
        .op(&EXPLAIN, get(explain::explain_api))
        .op(&ACTIVITY, get(activity::activity_api))
        .op(&ANOMALIES, get(signals::anomalies_api))
        .op(&FORECAST, get(signals::forecast_api))
}
