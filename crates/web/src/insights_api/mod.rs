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

use crate::openapi::{p, Access, ApiRouter, Op, Ty, FILTERS, GROUP_WORDS};

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
.query(FILTERS)
.also(&[
    p(
        "group_by",
        Ty::Word(GROUP_WORDS),
        "The grouping the subject belongs to (default team when a subject is given; without a subject, all \
         spend is explained).",
    ),
    p(
        "subject",
        Ty::Text,
        "The group to explain (omit for everything; @none for No team). A name, or a key id, that nothing carries \
         explains nothing.",
    ),
    p(
        "breakdown",
        Ty::Word(GROUP_WORDS),
        "The grouping each effect is split across (default model).",
    ),
    p(
        "baseline_from",
        Ty::Time,
        "Start of the baseline (default: the previous equal window).",
    ),
    p("baseline_to", Ty::Time, "End of the baseline (default: now)."),
    p(
        "compare",
        Ty::Word(&["previous", "last_week"]),
        "The baseline without baseline_from/baseline_to: the equal span before the window (default) or the \
         same span seven days earlier.",
    ),
])
.statuses(&[404]);
const ACTIVITY: Op = Op::get(
    "/api/v1/activity",
    "Who did what: request activity by key, admin changes, alerts and gateway starts and stops.",
    Access::Admin,
)
.query(FILTERS)
.also(&[
    p(
        "actor",
        Ty::Text,
        "A user name or key id, or who made an admin change.",
    ),
    p(
        "source",
        Ty::List(SOURCES),
        "Comma-separated sources (default all).",
    ),
    p(
        "format",
        Ty::Word(&["json", "csv"]),
        "The answer's format (default json).",
    ),
    p("limit", Ty::Int(1, 10_000), "Items at most (default 500)."),
])
.produces(&["application/json", "text/csv"]);
/// The sources of the activity feed and their other spellings (`activity::Source::parse`).
const SOURCES: &[&str] = &[
    "requests",
    "request",
    "admin_change",
    "admin_changes",
    "admin",
    "alert",
    "alerts",
    "gateway_lifecycle",
    "lifecycle",
    "gateway",
];
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
