//! Insights: why spend changed (`/api/v1/insights/explain`) and what everyone did (`/api/v1/activity`).
//!
//! Both read the rollups and the admin tables through [`spendgate_store::Store`], like every other answer, so
//! the numbers match the pages. The explain view and the activity feed are computed here once and rendered
//! both as JSON (the API, the CLI) and as pages (`/explain`, `/history?view=activity`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use spendgate_core::insights::{explain, percent, sentence, Effect, Explanation};
use spendgate_core::query::{Filters, GroupBy, Totals, NO_TEAM_FILTER, NO_TEAM_LABEL};
use spendgate_core::time::{to_rfc3339, Grain, DAY_MS, HOUR_MS};
use spendgate_core::CacheOutcome;
use spendgate_gateway::ApiError;
use spendgate_store::{ActivityRow, ResolvedWindow};

use crate::api::{store_error, totals_json};
use crate::params::{parse_group_by, FilterParams};
use crate::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/insights/explain", get(explain_api))
        .route("/api/v1/activity", get(activity_api))
        .route("/api/v1/insights/anomalies", get(anomalies_api))
        .route("/api/v1/insights/forecast", get(forecast_api))
}

// ---------------------------------------------------------------------------------------------------------
// Explain
// ---------------------------------------------------------------------------------------------------------

/// `?group_by=team&subject=support&window=24h[&breakdown=model][&baseline_from=..&baseline_to=..]` plus any
/// usage filter. Without `group_by` the subject is everything the filters select.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ExplainParams {
    #[serde(flatten)]
    pub filters: FilterParams,
    pub group_by: Option<String>,
    pub subject: Option<String>,
    pub breakdown: Option<String>,
    pub baseline_from: Option<String>,
    pub baseline_to: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Narrows `f` to one group of a grouping. The No team bucket is `@none` (its label is accepted too).
fn apply_subject(f: &mut Filters, g: GroupBy, subject: &str) -> Result<(), ApiError> {
    let name = Some(subject.to_string());
    match g {
        GroupBy::Team if subject == NO_TEAM_LABEL => f.team = Some(NO_TEAM_FILTER.into()),
        GroupBy::Team => f.team = name,
        GroupBy::User => f.user = name,
        GroupBy::Provider => f.provider = name,
        GroupBy::Model => f.model = name,
        GroupBy::Gateway => f.gateway = name,
        GroupBy::Workflow => f.workflow = name,
        GroupBy::Key => {
            f.key_id = Some(subject.parse().map_err(|_| {
                ApiError::invalid_request(
                    "invalid_subject",
                    format!("subject '{subject}' is not a key id (a number)"),
                )
            })?)
        }
        GroupBy::CacheOutcome => {
            f.cache_outcome = Some(CacheOutcome::parse(subject).ok_or_else(|| {
                ApiError::invalid_request(
                    "invalid_subject",
                    format!("subject '{subject}' is not one of hit, miss, bypass, not_cacheable"),
                )
            })?)
        }
    }
    Ok(())
}

/// "Team support", "No team", "Model gpt-4.1", "All spend".
fn subject_label(g: Option<GroupBy>, subject: Option<&str>) -> String {
    match (g, subject) {
        (Some(GroupBy::Team), Some(s)) if s == NO_TEAM_FILTER || s == NO_TEAM_LABEL => {
            NO_TEAM_LABEL.to_string()
        }
        (Some(g), Some(s)) => {
            let kind = match g {
                GroupBy::CacheOutcome => "Cache outcome".to_string(),
                other => {
                    let k = other.as_str();
                    let mut c = k.chars();
                    c.next()
                        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                        .unwrap_or_default()
                }
            };
            format!("{kind} {s}")
        }
        _ => "All spend".to_string(),
    }
}

/// How the two windows are described in the sentence.
fn windows_phrase(
    p: &FilterParams,
    custom_baseline: bool,
    cur: ResolvedWindow,
    base: ResolvedWindow,
) -> String {
    let preset = if non_empty(&p.from).is_none() && non_empty(&p.to).is_none() && !custom_baseline {
        match non_empty(&p.window).unwrap_or("24h") {
            "1h" => Some("in the last hour against the hour before"),
            "24h" => Some("in the last 24 hours against the 24 hours before"),
            "7d" => Some("in the last 7 days against the 7 days before"),
            "30d" => Some("in the last 30 days against the 30 days before"),
            "mtd" => Some("this month so far against the same span before it"),
            _ => None,
        }
    } else {
        None
    };
    match preset {
        Some(s) => s.to_string(),
        None => format!(
            "from {} to {} against {} to {}",
            to_rfc3339(cur.from_ms),
            to_rfc3339(cur.to_ms),
            to_rfc3339(base.from_ms),
            to_rfc3339(base.to_ms)
        ),
    }
}

/// An explanation with everything needed to show it.
pub(crate) struct ExplainView {
    pub group_by: Option<GroupBy>,
    pub subject: Option<String>,
    pub label: String,
    pub breakdown: GroupBy,
    pub window: ResolvedWindow,
    pub baseline: ResolvedWindow,
    pub explanation: Explanation,
    pub sentence: String,
    /// The usage filters of the current window (for links to the evidence).
    pub filters: Filters,
}

pub(crate) async fn explain_view(s: &AppState, p: &ExplainParams) -> Result<ExplainView, ApiError> {
    let mut f = p.filters.to_filters()?;
    let g = match non_empty(&p.group_by) {
        Some(g) => Some(parse_group_by(Some(g))?),
        None => None,
    };
    let subject = non_empty(&p.subject).map(str::to_string);
    match (g, subject.as_deref()) {
        (Some(g), Some(sub)) => apply_subject(&mut f, g, sub)?,
        (Some(g), None) => {
            return Err(ApiError::invalid_request(
                "missing_subject",
                format!(
                    "group_by={} needs a subject: the {} to explain (e.g. subject=support), or leave group_by out to explain all spend",
                    g.as_str(),
                    g.as_str()
                ),
            ))
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid_request(
                "missing_group_by",
                "a subject needs group_by to say what it is, e.g. group_by=team&subject=support",
            ))
        }
        (None, None) => {}
    }
    let breakdown = match non_empty(&p.breakdown) {
        Some(b) => parse_group_by(Some(b))?,
        // Models are what usually explain a price/mix change; when the subject is a model, its providers.
        None if g == Some(GroupBy::Model) => GroupBy::Provider,
        None => GroupBy::Model,
    };
    let window = s.store.resolve_window(&f);
    f.from_ms = window.from_ms;
    f.to_ms = window.to_ms;
    let custom = non_empty(&p.baseline_from).is_some() || non_empty(&p.baseline_to).is_some();
    let mut bf = f.clone();
    if custom {
        let bp = FilterParams {
            from: p.baseline_from.clone(),
            to: p.baseline_to.clone(),
            ..FilterParams::default()
        };
        let b = bp.to_filters()?;
        bf.from_ms = b.from_ms;
        bf.to_ms = b.to_ms;
    } else {
        // The previous window of equal length, ending where the current one starts.
        let len = window.to_ms - window.from_ms;
        bf.from_ms = window.from_ms - len;
        bf.to_ms = window.from_ms;
    }
    let baseline = s.store.resolve_window(&bf);
    let (cur_rows, base_rows) = tokio::join!(
        s.store.explorer(&f, breakdown),
        s.store.explorer(&bf, breakdown)
    );
    let cur_rows = cur_rows.map_err(store_error)?;
    let base_rows = base_rows.map_err(store_error)?;
    let explanation = explain(&base_rows, &cur_rows);
    let label = subject_label(g, subject.as_deref());
    let sentence = sentence(
        &explanation,
        &label,
        &windows_phrase(&p.filters, custom, window, baseline),
        breakdown.as_str(),
    );
    Ok(ExplainView {
        group_by: g,
        subject,
        label,
        breakdown,
        window,
        baseline,
        explanation,
        sentence,
        filters: f,
    })
}

fn window_json(w: ResolvedWindow) -> Value {
    json!({ "from": to_rfc3339(w.from_ms), "to": to_rfc3339(w.to_ms) })
}

fn pct(bp: Option<i128>) -> Value {
    bp.map_or(Value::Null, |b| json!(percent(b)))
}

/// The `/usage` URL showing the same requests as a set of filters (the evidence behind a number).
pub(crate) fn usage_url(f: &Filters, group_by: GroupBy) -> String {
    let mut q = vec![
        ("from", to_rfc3339(f.from_ms)),
        ("to", to_rfc3339(f.to_ms)),
        ("group_by", group_by.as_str().to_string()),
    ];
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    q.push(("team", opt(&f.team)));
    q.push(("user", opt(&f.user)));
    q.push(("provider", opt(&f.provider)));
    q.push(("model", opt(&f.model)));
    q.push(("gateway", opt(&f.gateway)));
    q.push(("workflow", opt(&f.workflow)));
    q.push((
        "cache_outcome",
        f.cache_outcome
            .map(|c| c.as_str().to_string())
            .unwrap_or_default(),
    ));
    q.push(("key", f.key_id.map(|k| k.to_string()).unwrap_or_default()));
    let parts: Vec<String> = q
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", crate::pages::url_encode(v)))
        .collect();
    format!("/usage?{}", parts.join("&"))
}

pub(crate) fn explain_json(v: &ExplainView) -> Value {
    let e = &v.explanation;
    let fx = &e.effects;
    let parts: Vec<Value> = e
        .parts
        .iter()
        .map(|p| {
            json!({
                "key": p.key,
                "label": p.label,
                "baseline": { "cost": p.baseline.cost, "requests": p.baseline.requests, "tokens": p.baseline.tokens() },
                "current": { "cost": p.current.cost, "requests": p.current.requests, "tokens": p.current.tokens() },
                "change": p.effects.change,
                "volume": p.effects.volume,
                "intensity": p.effects.intensity,
                "price_mix": p.effects.price_mix,
            })
        })
        .collect();
    let mut base_filters = v.filters.clone();
    base_filters.from_ms = v.baseline.from_ms;
    base_filters.to_ms = v.baseline.to_ms;
    json!({
        "group_by": v.group_by.map(GroupBy::as_str),
        "subject": v.subject,
        "label": v.label,
        "breakdown": v.breakdown.as_str(),
        "window": window_json(v.window),
        "baseline_window": window_json(v.baseline),
        "current": totals_json(&e.current),
        "baseline": totals_json(&e.baseline),
        "change": fx.change,
        "effects": {
            "volume": fx.volume,
            "intensity": fx.intensity,
            "price_mix": fx.price_mix,
        },
        "relative_changes": {
            "cost": pct(e.cost_change_bp()),
            "requests": pct(e.requests_change_bp()),
            "tokens_per_request": pct(e.tokens_per_request_change_bp()),
            "cost_per_token": pct(e.cost_per_token_change_bp()),
        },
        "driver": e.driver.as_str(),
        "sentence": v.sentence,
        "method": "Shapley split of cost = requests × tokens/request × cost/token; volume and intensity are \
                   rounded to the picodollar and price/mix is the remainder, so the three sum to the change exactly.",
        "parts": parts,
        "evidence": {
            "usage": usage_url(&v.filters, v.breakdown),
            "usage_baseline": usage_url(&base_filters, v.breakdown),
            "spend_logs": format!("/api/v1/spend-logs{}", usage_url(&v.filters, v.breakdown).trim_start_matches("/usage")),
        },
    })
}

async fn explain_api(
    State(s): State<Arc<AppState>>,
    Query(p): Query<ExplainParams>,
) -> Result<Json<Value>, ApiError> {
    let v = explain_view(&s, &p).await?;
    Ok(Json(explain_json(&v)))
}

/// Used by the effect tables: each effect's label and value.
pub(crate) fn effect_rows(e: &Explanation) -> Vec<(Effect, spendgate_core::Money)> {
    Effect::ALL
        .iter()
        .map(|x| (*x, e.effects.get(*x)))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Activity
// ---------------------------------------------------------------------------------------------------------

/// The kinds of entries in the activity feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    Requests,
    Admin,
    Alert,
    Lifecycle,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Requests,
        Source::Admin,
        Source::Alert,
        Source::Lifecycle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Requests => "requests",
            Source::Admin => "admin_change",
            Source::Alert => "alert",
            Source::Lifecycle => "gateway_lifecycle",
        }
    }

    fn parse(s: &str) -> Option<Source> {
        match s {
            "requests" | "request" => Some(Source::Requests),
            "admin" | "admin_change" | "admin_changes" => Some(Source::Admin),
            "alert" | "alerts" => Some(Source::Alert),
            "lifecycle" | "gateway_lifecycle" | "gateway" => Some(Source::Lifecycle),
            _ => None,
        }
    }
}

/// `?window=24h&actor=&team=&gateway=&source=requests,admin_change,alert,gateway_lifecycle&format=json|csv`.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ActivityParams {
    #[serde(flatten)]
    pub filters: FilterParams,
    /// A user name or key id (requests), or who made an admin change.
    pub actor: Option<String>,
    pub source: Option<String>,
    pub format: Option<String>,
    pub limit: Option<String>,
}

/// One entry of the feed.
#[derive(Debug, Clone)]
pub(crate) struct ActivityItem {
    pub at_ms: i64,
    /// For request activity, the end of the bucket.
    pub until_ms: Option<i64>,
    pub source: Source,
    pub actor: String,
    pub team: Option<String>,
    pub gateway: Option<String>,
    pub workflow: Option<String>,
    /// What happened: "key.create", "budget_near", "gateway.start", "requests".
    pub action: String,
    pub target: String,
    pub summary: String,
    pub totals: Option<Totals>,
    pub key_id: Option<i64>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Bucket size of request activity: about 24 to 60 buckets a window.
pub(crate) fn activity_grain(from_ms: i64, to_ms: i64) -> Grain {
    let len = to_ms - from_ms;
    if len <= 2 * HOUR_MS {
        Grain::Minute
    } else if len <= 3 * DAY_MS {
        Grain::Hour
    } else {
        Grain::Day
    }
}

fn sources(p: &ActivityParams) -> Result<Vec<Source>, ApiError> {
    match non_empty(&p.source) {
        None => Ok(Source::ALL.to_vec()),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                Source::parse(s).ok_or_else(|| {
                    ApiError::invalid_request(
                        "invalid_source",
                        format!(
                            "source '{s}' is not one of requests, admin_change, alert, gateway_lifecycle (comma-separated)"
                        ),
                    )
                })
            })
            .collect(),
    }
}

/// Whether an admin change concerns a team: a key of the team, a budget or wallet of the team.
fn mentions_team(v: &Option<Value>, team: &str) -> bool {
    let Some(v) = v else { return false };
    let is_team = |x: &Value| x.as_str() == Some(team);
    is_team(&v["team"])
        || (v["scope"].as_str() == Some("team") && is_team(&v["subject"]))
        || (team == NO_TEAM_FILTER
            && v.get("team").is_some_and(Value::is_null)
            && v.get("user").is_some())
}

/// Whether an admin actor ("admin", "admin:alice", "cli:bob") matches an actor filter.
fn actor_matches(actor: &str, wanted: &str) -> bool {
    actor == wanted || actor.rsplit(':').next() == Some(wanted)
}

pub(crate) async fn activity(
    s: &AppState,
    p: &ActivityParams,
) -> Result<(Filters, Vec<ActivityItem>), ApiError> {
    let mut f = p.filters.to_filters()?;
    let w = s.store.resolve_window(&f);
    f.from_ms = w.from_ms;
    f.to_ms = w.to_ms;
    let want = sources(p)?;
    let actor = non_empty(&p.actor).map(str::to_string);
    let limit = match non_empty(&p.limit) {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_request("invalid_limit", "limit must be a number from 1 to 10000")
            })?,
        None => 500,
    };
    let team = f.team.clone();
    let gateway = f.gateway.clone();
    let mut items = Vec::new();

    if want.contains(&Source::Requests) {
        let mut rf = f.clone();
        // An actor given as a key id narrows to that key; a name to that user.
        if let Some(a) = &actor {
            match a.strip_prefix("key:").unwrap_or(a).parse::<i64>() {
                Ok(id) => rf.key_id = Some(id),
                Err(_) => rf.user = Some(a.clone()),
            }
        }
        let grain = activity_grain(f.from_ms, f.to_ms);
        let rows = s
            .store
            .request_activity(&rf, grain)
            .await
            .map_err(store_error)?;
        let hints: HashMap<i64, String> = s
            .store
            .list_keys()
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|k| (k.id, k.hint))
            .collect();
        items.extend(rows.iter().map(|r| request_item(r, grain, &hints)));
    }
    let audit_wanted = want.contains(&Source::Admin) || want.contains(&Source::Lifecycle);
    if audit_wanted {
        for a in s
            .store
            .list_audit(f.from_ms, f.to_ms, limit)
            .await
            .map_err(store_error)?
        {
            let e = &a.entry;
            let lifecycle = e.action.starts_with("gateway.");
            let source = if lifecycle {
                Source::Lifecycle
            } else {
                Source::Admin
            };
            if !want.contains(&source) {
                continue;
            }
            let item_gateway =
                lifecycle.then(|| e.target.trim_start_matches("gateway:").to_string());
            if let Some(g) = &gateway {
                // Admin changes are not made on one gateway; only lifecycle events belong to one.
                if item_gateway.as_deref() != Some(g.as_str()) {
                    continue;
                }
            }
            if let Some(t) = &team {
                if !(mentions_team(&e.before, t) || mentions_team(&e.after, t)) {
                    continue;
                }
            }
            if let Some(w) = &actor {
                if !actor_matches(&e.actor, w) {
                    continue;
                }
            }
            items.push(ActivityItem {
                at_ms: a.at_ms,
                until_ms: None,
                source,
                actor: e.actor.clone(),
                team: None,
                gateway: item_gateway,
                workflow: None,
                action: e.action.clone(),
                target: e.target.clone(),
                summary: admin_summary(&e.action, &e.target, &e.before, &e.after),
                totals: None,
                key_id: None,
                before: e.before.clone(),
                after: e.after.clone(),
            });
        }
    }
    if want.contains(&Source::Alert) && actor.is_none() && gateway.is_none() {
        for a in s.store.list_alerts(limit).await.map_err(store_error)? {
            if a.at_ms < f.from_ms || a.at_ms >= f.to_ms {
                continue;
            }
            if let Some(t) = &team {
                let alert_team = a
                    .alert
                    .team
                    .clone()
                    .unwrap_or_else(|| NO_TEAM_FILTER.to_string());
                if &alert_team != t {
                    continue;
                }
            }
            items.push(ActivityItem {
                at_ms: a.at_ms,
                until_ms: None,
                source: Source::Alert,
                actor: "spendgate".into(),
                team: a.alert.team.clone(),
                gateway: None,
                workflow: None,
                action: a.alert.kind.clone(),
                target: a.alert.subject.clone(),
                summary: a.alert.message.clone(),
                totals: None,
                key_id: None,
                before: None,
                after: None,
            });
        }
    }
    // Newest first; within a time, the larger spend first so that the busiest actor leads its bucket.
    items.sort_by(|a, b| {
        b.at_ms.cmp(&a.at_ms).then_with(|| {
            let c = |i: &ActivityItem| i.totals.map_or(0, |t| t.cost.picos());
            c(b).cmp(&c(a))
        })
    });
    items.truncate(limit);
    Ok((f, items))
}

fn request_item(r: &ActivityRow, grain: Grain, hints: &HashMap<i64, String>) -> ActivityItem {
    let t = r.totals;
    let actor = match hints.get(&r.key_id) {
        Some(h) => format!("{} (key {}, …{h})", r.user, r.key_id),
        None => format!("{} (key {})", r.user, r.key_id),
    };
    let summary = format!(
        "{} request{}{}, {} tokens, {}{}",
        spendgate_core::money::group_thousands(u128::from(t.requests)),
        if t.requests == 1 { "" } else { "s" },
        if t.errors > 0 {
            format!(" ({} failed)", t.errors)
        } else {
            String::new()
        },
        spendgate_core::money::group_thousands(u128::from(t.tokens())),
        t.cost.display_usd(),
        match &r.workflow {
            Some(w) => format!(" in workflow {w}"),
            None => String::new(),
        }
    );
    ActivityItem {
        at_ms: r.bucket_start_ms,
        until_ms: Some(r.bucket_start_ms + grain.ms()),
        source: Source::Requests,
        actor,
        team: r.team.clone(),
        gateway: Some(r.gateway.clone()),
        workflow: r.workflow.clone(),
        action: "requests".into(),
        target: format!("key:{}", r.key_id),
        summary,
        totals: Some(t),
        key_id: Some(r.key_id),
        before: None,
        after: None,
    }
}

/// "budget:3 set: amount 100.00 → 150.00" — the fields that changed, or what was created.
fn admin_summary(
    action: &str,
    target: &str,
    before: &Option<Value>,
    after: &Option<Value>,
) -> String {
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let mut changed: Vec<String> = a
                .iter()
                .filter(|(k, v)| b.get(*k) != Some(*v))
                .map(|(k, v)| {
                    format!(
                        "{k} {} → {}",
                        short(b.get(k).unwrap_or(&Value::Null)),
                        short(v)
                    )
                })
                .collect();
            changed.sort();
            if changed.is_empty() {
                format!("{action} {target}: no change")
            } else {
                format!("{action} {target}: {}", changed.join(", "))
            }
        }
        (None, Some(a)) => format!("{action} {target}: {}", short(a)),
        _ => format!("{action} {target}"),
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        other => other.to_string(),
    };
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

pub(crate) fn item_json(i: &ActivityItem) -> Value {
    json!({
        "at": to_rfc3339(i.at_ms),
        "until": i.until_ms.map(to_rfc3339),
        "source": i.source.as_str(),
        "actor": i.actor,
        "team": match (&i.team, i.source) {
            (None, Source::Requests) => json!(NO_TEAM_LABEL),
            (t, _) => json!(t),
        },
        "gateway": i.gateway,
        "workflow": i.workflow,
        "action": i.action,
        "target": i.target,
        "summary": i.summary,
        "key_id": i.key_id,
        "requests": i.totals.map(|t| t.requests),
        "errors": i.totals.map(|t| t.errors),
        "tokens": i.totals.map(|t| t.tokens()),
        "cost": i.totals.map(|t| t.cost),
        "before": i.before,
        "after": i.after,
    })
}

const CSV_COLUMNS: [&str; 15] = [
    "at", "until", "source", "actor", "team", "gateway", "workflow", "action", "target", "summary",
    "requests", "errors", "tokens", "cost", "after",
];

/// One CSV field, quoted when needed. Fields that a spreadsheet would run as a formula are prefixed with a
/// quote so an exported feed cannot carry a formula into someone's spreadsheet.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub(crate) fn items_csv(items: &[ActivityItem]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for i in items {
        let v = item_json(i);
        let cells: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|c| match &v[*c] {
                Value::Null => String::new(),
                Value::String(s) => csv_field(s),
                other => csv_field(&other.to_string()),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

async fn activity_api(
    State(s): State<Arc<AppState>>,
    Query(p): Query<ActivityParams>,
) -> Result<Response, ApiError> {
    let (f, items) = activity(&s, &p).await?;
    match non_empty(&p.format).unwrap_or("json") {
        "json" => Ok(Json(json!({
            "window": window_json(ResolvedWindow { from_ms: f.from_ms, to_ms: f.to_ms }),
            "grain": match activity_grain(f.from_ms, f.to_ms) { Grain::Minute => "minute", Grain::Hour => "hour", Grain::Day => "day" },
            "items": items.iter().map(item_json).collect::<Vec<_>>(),
        }))
        .into_response()),
        "csv" => Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"spendgate-activity.csv\""),
            ],
            items_csv(&items),
        )
            .into_response()),
        other => Err(ApiError::invalid_request(
            "invalid_format",
            format!("format '{other}' is not one of json, csv"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Anomalies and forecasts
// ---------------------------------------------------------------------------------------------------------

/// The anomaly signals of this moment: the same detectors the background task raises alerts from, evaluated
/// now, each with its figures, its sentence and links to its evidence.
async fn anomalies_api(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let now = spendgate_core::time::now_ms();
    let scope = crate::auth::viewer_team();
    let signals = spendgate_gateway::anomalies::evaluate(
        &*s.store,
        &s.anomalies,
        now,
        scope.as_deref(),
        &mut spendgate_gateway::anomalies::Episodes::default(),
    )
    .await
    .map_err(store_error)?;
    let c = &s.anomalies;
    Ok(Json(json!({
        "evaluated_at": to_rfc3339(now),
        "signals": signals.iter().map(|x| x.to_json()).collect::<Vec<_>>(),
        "thresholds": {
            "retry_loop": format!("{} identical requests (same key and request fingerprint) within {} s", c.retry_min_repeats, c.retry_window_ms / 1000),
            "spend_rate": format!("last 60 minutes at {}% or more of the median of the same 60 minutes over the previous {} days, and at least {} above it", c.rate_factor_pct, c.baseline_days, c.rate_min_excess.display_usd()),
            "prompt_expansion": format!("tokens per request at {}% or more of the baseline while requests stay within {}%", c.expansion_factor_pct, c.expansion_volume_band_pct),
            "unattributed": format!("No team's share of cost up {} points or more on its baseline", c.unattributed_rise_bp / 100),
        },
    })))
}

/// Month-end spend per team (and No team) at the current burn rate, with a range between the month-so-far rate
/// and the last 24 hours' rate. Budgets carry their own period-end forecast in `GET /api/v1/budgets`, wallets
/// their depletion date in `GET /api/v1/wallets`.
async fn forecast_api(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    use spendgate_core::controls::{forecast_range, Period};
    let now = spendgate_core::time::now_ms();
    let (start, end) = Period::Month.bounds(&s.controls.config().time_zone, now);
    let scope = crate::auth::viewer_team();
    let month = Filters {
        from_ms: start,
        to_ms: now.max(start + 1),
        scope_team: scope.clone(),
        ..Filters::default()
    };
    let recent = Filters {
        from_ms: (now - DAY_MS).max(start),
        ..month.clone()
    };
    let (m, r) = tokio::join!(
        s.store.explorer(&month, GroupBy::Team),
        s.store.explorer(&recent, GroupBy::Team)
    );
    let (m, r) = (m.map_err(store_error)?, r.map_err(store_error)?);
    let mut total = (spendgate_core::Money::ZERO, spendgate_core::Money::ZERO);
    let mut teams: Vec<(spendgate_core::Money, Value)> = m
        .iter()
        .map(|row| {
            let recent_cost = r
                .iter()
                .find(|x| x.key == row.key)
                .map_or(spendgate_core::Money::ZERO, |x| x.totals.cost);
            total.0 += row.totals.cost;
            total.1 += recent_cost;
            let f = forecast_range(row.totals.cost, recent_cost, DAY_MS, start, end, now);
            let filter = row.key.clone().unwrap_or_else(|| NO_TEAM_FILTER.to_string());
            let v = json!({
                "team": row.key,
                "label": row.label,
                "spent": row.totals.cost,
                "last_24h": recent_cost,
                "forecast": f.expected,
                "forecast_low": f.low,
                "forecast_high": f.high,
                "usage": format!("/usage?window=mtd&team={}&group_by=user", crate::pages::url_encode(&filter)),
            });
            (f.expected, v)
        })
        .collect();
    teams.sort_by_key(|t| std::cmp::Reverse(t.0));
    let teams: Vec<Value> = teams.into_iter().map(|t| t.1).collect();
    let all = forecast_range(total.0, total.1, DAY_MS, start, end, now);
    Ok(Json(json!({
        "period": "month",
        "period_start": to_rfc3339(start),
        "period_end": to_rfc3339(end),
        "method": "expected = spend so far + the month-so-far rate over what is left of the month; the range spans that and the last 24 hours' rate",
        "total": { "spent": total.0, "forecast": all.expected, "forecast_low": all.low, "forecast_high": all.high },
        "teams": teams,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=1+1"), "'=1+1");
    }

    #[test]
    fn admin_changes_show_what_changed() {
        let b = Some(json!({"amount": "100.00", "period": "month"}));
        let a = Some(json!({"amount": "150.00", "period": "month"}));
        assert_eq!(
            admin_summary("budget.set", "budget:3", &b, &a),
            "budget.set budget:3: amount 100.00 → 150.00"
        );
        assert!(mentions_team(
            &Some(json!({"scope": "team", "subject": "support"})),
            "support"
        ));
        assert!(!mentions_team(
            &Some(json!({"scope": "user", "subject": "support"})),
            "support"
        ));
        assert!(actor_matches("admin:alice", "alice"));
        assert!(!actor_matches("admin:alice", "bob"));
    }

    #[test]
    fn subjects_name_the_group() {
        assert_eq!(subject_label(Some(GroupBy::Team), Some("@none")), "No team");
        assert_eq!(
            subject_label(Some(GroupBy::Team), Some("support")),
            "Team support"
        );
        assert_eq!(subject_label(None, None), "All spend");
        let mut f = Filters::default();
        apply_subject(&mut f, GroupBy::Team, "No team").unwrap();
        assert_eq!(f.team.as_deref(), Some("@none"));
        assert!(apply_subject(&mut f, GroupBy::Key, "abc").is_err());
    }
}
