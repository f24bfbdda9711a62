//! Why spend changed: the explain view, shared by the API, the CLI and the `/explain` page.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use spendgate_core::controls::describe_window;
use spendgate_core::insights::{explain, percent, sentence, Effect, Explanation};
use spendgate_core::query::{Filters, GroupBy, NO_TEAM_FILTER, NO_TEAM_LABEL};
use spendgate_core::time::to_rfc3339;
use spendgate_core::CacheOutcome;
use spendgate_gateway::ApiError;
use spendgate_store::ResolvedWindow;

use crate::api::{store_error, totals_json, Checked};
use crate::params::{parse_group_by, FilterParams};
use crate::AppState;

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
    /// What the window is compared with: `previous` (the equal span right before it, the default) or `last_week`
    /// (the same span seven days earlier); `baseline_from`/`baseline_to` name any other range.
    pub compare: Option<String>,
}

/// A week, for comparing with the same time last week.
const WEEK_MS: i64 = 7 * 24 * 3_600_000;

pub(super) fn non_empty(v: &Option<String>) -> Option<&str> {
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
        // A subject that cannot name a group of its grouping names one that does not exist.
        GroupBy::Key => f.key_id = Some(subject.parse().map_err(|_| no_such_subject(g, subject))?),
        GroupBy::CacheOutcome => {
            f.cache_outcome =
                Some(CacheOutcome::parse(subject).ok_or_else(|| no_such_subject(g, subject))?)
        }
    }
    Ok(())
}

/// The 404 of a subject that no group of its grouping can have: a key id that is not a number, a cache outcome
/// that does not exist.
fn no_such_subject(g: GroupBy, subject: &str) -> ApiError {
    let what = match g {
        GroupBy::Key => "a key id (a number; GET /api/v1/keys lists them)",
        _ => "a cache outcome (hit, miss, bypass or not_cacheable)",
    };
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "invalid_request_error",
        "subject_not_found",
        format!(
            "there is no {} '{subject}': the subject must be {what}",
            g.as_str()
        ),
    )
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
/// The sentence's words for a comparison with the same span a week earlier, with both lengths.
fn last_week_phrase(cur: ResolvedWindow, base: ResolvedWindow) -> String {
    format!(
        "from {} to {} ({}) against the same time a week earlier, {} to {} ({})",
        to_rfc3339(cur.from_ms),
        to_rfc3339(cur.to_ms),
        spendgate_core::controls::describe_window(cur.to_ms - cur.from_ms),
        to_rfc3339(base.from_ms),
        to_rfc3339(base.to_ms),
        spendgate_core::controls::describe_window(base.to_ms - base.from_ms),
    )
}

fn windows_phrase(
    p: &FilterParams,
    custom_baseline: bool,
    cur: ResolvedWindow,
    base: ResolvedWindow,
) -> String {
    // A preset's words are true only when the baseline is the equal span right before the window.
    let adjacent = cur.open_end
        && base.to_ms == cur.from_ms
        && base.to_ms - base.from_ms == cur.to_ms - cur.from_ms;
    let preset = if adjacent
        && non_empty(&p.from).is_none()
        && non_empty(&p.to).is_none()
        && !custom_baseline
    {
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
            "from {} to {} ({}) against {} to {} ({})",
            to_rfc3339(cur.from_ms),
            to_rfc3339(cur.to_ms),
            describe_window(cur.to_ms - cur.from_ms),
            to_rfc3339(base.from_ms),
            to_rfc3339(base.to_ms),
            describe_window(base.to_ms - base.from_ms)
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

/// Makes the default baseline exactly as long as the window. Past the minute rollups' retention (48 hours by
/// default) a window can only start and end on the hour, so the baseline before a window may have grown when
/// its start was moved back to the hour. Then the baseline keeps that start and ends one window's length
/// later (at most an hour before the window: a 24-hour window's baseline); and when that end is also past the
/// retention (windows of days), both windows become whole hours, the current one ending at the last full hour.
/// The sentence and the page name both windows, so nothing here is silent.
fn equal_windows(
    store: &dyn spendgate_store::Store,
    f: &mut Filters,
    bf: &mut Filters,
    window: ResolvedWindow,
    baseline: ResolvedWindow,
) -> (ResolvedWindow, ResolvedWindow) {
    let len = window.to_ms - window.from_ms;
    if baseline.to_ms - baseline.from_ms == len {
        return (window, baseline);
    }
    bf.from_ms = baseline.from_ms;
    bf.to_ms = baseline.from_ms + len;
    let shifted = store.resolve_window(bf);
    if shifted.to_ms - shifted.from_ms == len {
        bf.to_ms = shifted.to_ms;
        return (window, shifted);
    }
    whole_hours(store, f, bf, window, None)
}

/// The window read in whole hours ending at its last whole hour, and the baseline as long, `back` before it
/// (`None`: right before it): the alignment every rollup has, so both spans are exactly as long.
fn whole_hours(
    store: &dyn spendgate_store::Store,
    f: &mut Filters,
    bf: &mut Filters,
    window: ResolvedWindow,
    back: Option<i64>,
) -> (ResolvedWindow, ResolvedWindow) {
    use spendgate_core::time::{Grain, HOUR_MS};
    let end = Grain::Hour.floor(window.to_ms);
    let hours = ((window.to_ms - window.from_ms) / HOUR_MS).max(1) * HOUR_MS;
    let back = back.unwrap_or(hours);
    f.from_ms = end - hours;
    f.to_ms = end;
    bf.from_ms = f.from_ms - back;
    bf.to_ms = end - back;
    (store.resolve_window(f), store.resolve_window(bf))
}

/// The window and the same span a week earlier, of exactly equal length: a week back, the minute rollups are gone
/// (48 h), so where resolving widened the baseline to whole hours, both are read in whole hours.
fn week_apart(
    store: &dyn spendgate_store::Store,
    f: &mut Filters,
    bf: &mut Filters,
    window: ResolvedWindow,
    baseline: ResolvedWindow,
) -> (ResolvedWindow, ResolvedWindow) {
    let len = window.to_ms - window.from_ms;
    if baseline.to_ms - baseline.from_ms == len && baseline.from_ms == window.from_ms - WEEK_MS {
        return (window, baseline);
    }
    whole_hours(store, f, bf, window, Some(WEEK_MS))
}

pub(crate) async fn explain_view(s: &AppState, p: &ExplainParams) -> Result<ExplainView, ApiError> {
    let mut f = p.filters.to_filters()?;
    let g = match non_empty(&p.group_by) {
        Some(g) => Some(parse_group_by(Some(g))?),
        None => None,
    };
    let subject = non_empty(&p.subject).map(str::to_string);
    // A subject names a team unless group_by says otherwise; a grouping without a subject narrows nothing, so
    // all spend is explained.
    let g = match (g, subject.as_deref()) {
        (g, Some(sub)) => {
            let g = g.unwrap_or(GroupBy::Team);
            apply_subject(&mut f, g, sub)?;
            Some(g)
        }
        (_, None) => None,
    };
    let breakdown = match non_empty(&p.breakdown) {
        Some(b) => parse_group_by(Some(b))?,
        // Models are what usually explain a price/mix change; when the subject is a model, its providers.
        None if g == Some(GroupBy::Model) => GroupBy::Provider,
        None => GroupBy::Model,
    };
    let mut window = s.store.resolve_window(&f);
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
    } else if non_empty(&p.compare) == Some("last_week") {
        bf.from_ms = window.from_ms - WEEK_MS;
        bf.to_ms = window.to_ms - WEEK_MS;
    } else if let Some(other) = non_empty(&p.compare).filter(|c| *c != "previous") {
        return Err(ApiError::invalid_request(
            "invalid_compare",
            format!(
                "compare must be 'previous' or 'last_week' (or give baseline_from and baseline_to), not '{other}'."
            ),
        ));
    } else {
        // The previous window of equal length, ending where the current one starts.
        let len = window.to_ms - window.from_ms;
        bf.from_ms = window.from_ms - len;
        bf.to_ms = window.from_ms;
    }
    let mut baseline = s.store.resolve_window(&bf);
    if !custom && non_empty(&p.compare) == Some("last_week") {
        (window, baseline) = week_apart(&*s.store, &mut f, &mut bf, window, baseline);
    } else if !custom {
        (window, baseline) = equal_windows(&*s.store, &mut f, &mut bf, window, baseline);
    }
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
        &if non_empty(&p.compare) == Some("last_week") && !custom {
            last_week_phrase(window, baseline)
        } else {
            windows_phrase(&p.filters, custom, window, baseline)
        },
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

pub(super) fn window_json(w: ResolvedWindow) -> Value {
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

pub(super) async fn explain_api(
    State(s): State<Arc<AppState>>,
    Checked(Query(p)): Checked<Query<ExplainParams>>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
