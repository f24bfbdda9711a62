//! What everyone did: the activity feed, shared by the API (JSON, CSV) and the `/history` page.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use spendgate_core::query::{Filters, Totals, NO_TEAM_FILTER, NO_TEAM_LABEL};
use spendgate_core::time::{to_rfc3339, Grain, DAY_MS, HOUR_MS};
use spendgate_gateway::ApiError;
use spendgate_store::{ActivityRow, ResolvedWindow};

use super::explain::{non_empty, window_json};
use crate::api::{store_error, Checked};
use crate::params::FilterParams;
use crate::AppState;

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
        let rows = newest_request_activity(s, &rf, grain, limit).await?;
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

/// Request activity of the newest buckets of the window, enough of them to fill `limit` items.
///
/// Only the newest `limit` items of the feed are shown, and every request item of a bucket is newer than every
/// item of the buckets before it, so the buckets are read newest first, in spans that grow fourfold, until
/// `limit` rows are in hand or the window is exhausted. At ten million spend logs a day's feed then reads an
/// hour or two of rollups instead of the whole day.
async fn newest_request_activity(
    s: &AppState,
    f: &Filters,
    grain: Grain,
    limit: usize,
) -> Result<Vec<ActivityRow>, ApiError> {
    let mut rows = Vec::new();
    let mut hi = f.to_ms;
    let mut span = grain.ms();
    loop {
        // Chunks start on a bucket boundary, so consecutive chunks never share a bucket.
        let lo = grain.floor(hi.saturating_sub(span)).max(f.from_ms);
        let chunk = Filters {
            from_ms: lo,
            to_ms: hi,
            ..f.clone()
        };
        let mut got = s
            .store
            .request_activity(&chunk, grain)
            .await
            .map_err(store_error)?;
        // Chunks come newest first; within a chunk, rows are oldest bucket first. Order does not matter to the
        // caller, which sorts the merged feed.
        rows.append(&mut got);
        if rows.len() >= limit || lo <= f.from_ms {
            return Ok(rows);
        }
        hi = lo;
        span = span.saturating_mul(4);
    }
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

/// One field of an admin change: its dotted name and its value before and after (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The fields that differ between `before` and `after`, nested objects flattened to dotted names
/// ("burn.per_hour"), sorted by name. A creation lists every field of `after`, a removal every field of
/// `before`.
pub(crate) fn field_changes(before: &Option<Value>, after: &Option<Value>) -> Vec<FieldChange> {
    fn flatten(v: &Value, prefix: &str, out: &mut std::collections::BTreeMap<String, String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(x, &name, out);
                }
            }
            other => {
                let name = if prefix.is_empty() { "value" } else { prefix };
                out.insert(name.to_string(), short(other));
            }
        }
    }
    let (mut b, mut a) = (Default::default(), Default::default());
    if let Some(v) = before {
        flatten(v, "", &mut b);
    }
    if let Some(v) = after {
        flatten(v, "", &mut a);
    }
    let mut names: Vec<&String> = b.keys().chain(a.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| b.get(*n) != a.get(*n))
        .map(|n| FieldChange {
            field: n.clone(),
            before: b.get(n).cloned(),
            after: a.get(n).cloned(),
        })
        .collect()
}

/// "budget.set budget:3: amount 100.00 → 150.00" — the fields that changed, or what was created (the first
/// few fields; the page lists them all).
fn admin_summary(
    action: &str,
    target: &str,
    before: &Option<Value>,
    after: &Option<Value>,
) -> String {
    const SHOWN: usize = 4;
    let changes = field_changes(before, after);
    if before.is_none() && after.is_none() {
        return format!("{action} {target}");
    }
    if changes.is_empty() {
        return format!("{action} {target}: no change");
    }
    let mut parts: Vec<String> = changes
        .iter()
        .take(SHOWN)
        .map(|c| match (&c.before, &c.after) {
            (_, Some(a)) if before.is_none() => format!("{} {a}", c.field),
            (b, a) => format!(
                "{} {} → {}",
                c.field,
                b.as_deref().unwrap_or("none"),
                a.as_deref().unwrap_or("none")
            ),
        })
        .collect();
    if changes.len() > SHOWN {
        parts.push(format!("and {} more", changes.len() - SHOWN));
    }
    format!("{action} {target}: {}", parts.join(", "))
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

pub(crate) fn items_csv(items: &[ActivityItem]) -> String {
    let mut out = crate::export::csv_header(&CSV_COLUMNS);
    for i in items {
        out.push_str(&crate::export::csv_line(&CSV_COLUMNS, &item_json(i)));
    }
    out
}

pub(super) async fn activity_api(
    State(s): State<Arc<AppState>>,
    Checked(Query(p)): Checked<Query<ActivityParams>>,
) -> Result<Response, ApiError> {
    let (f, items) = activity(&s, &p).await?;
    match non_empty(&p.format).unwrap_or("json") {
        "json" => Ok(Json(json!({
            "window": window_json(ResolvedWindow { from_ms: f.from_ms, to_ms: f.to_ms, open_end: false }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_changes_show_what_changed() {
        let b = Some(json!({"amount": "100.00", "period": "month"}));
        let a = Some(json!({"amount": "150.00", "period": "month"}));
        assert_eq!(
            admin_summary("budget.set", "budget:3", &b, &a),
            "budget.set budget:3: amount 100.00 → 150.00"
        );
        // Only what changed, nested fields by their dotted names; a creation lists what was created.
        let b = Some(
            json!({"name": "a", "burn": {"per_hour": "1.00", "window_seconds": 60}, "gone": 1}),
        );
        let a = Some(json!({"name": "a", "burn": {"per_hour": "2.00", "window_seconds": 60}}));
        let c = field_changes(&b, &a);
        assert_eq!(
            c,
            vec![
                FieldChange {
                    field: "burn.per_hour".into(),
                    before: Some("1.00".into()),
                    after: Some("2.00".into())
                },
                FieldChange {
                    field: "gone".into(),
                    before: Some("1".into()),
                    after: None
                },
            ]
        );
        assert_eq!(
            admin_summary(
                "gateway.start",
                "gateway:g",
                &None,
                &Some(json!({"listen": "x:1", "version": "0.1.0"}))
            ),
            "gateway.start gateway:g: listen x:1, version 0.1.0"
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
}
