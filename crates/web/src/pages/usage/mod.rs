//! `/usage`: the filters (all in the URL, so a view can be shared), summary cards, a chart of the chosen
//! metric split by the chosen grouping, the explorer table, workflow and cache-outcome panels, the cache
//! savings (`savings.rs`), and the spend logs of the current filters.
//!
//! This file reads the URL and loads the data; `view.rs` renders it.

mod refused;
mod savings;
mod view;

use view::View;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use spendgate_core::query::{
    format_share, share_bp, sort_rows, Filters, GroupBy, GroupRow, SortBy, Totals, NO_TEAM_FILTER,
    NO_TEAM_LABEL,
};
use spendgate_core::time::now_ms;
use spendgate_core::CacheOutcome;
use spendgate_store::{SpendLogPage, StoreError};

use super::chart;
use super::html::{compact, datetime_local, esc, hms, int, layout, query_string, updated};
use super::{
    host, html_response, invalid_view, store_error_page, wants_fragment, Pages, SessionCsrf,
};
use crate::params::{parse_group_by, parse_sort, FilterParams, WINDOWS};

/// Rows of the spend-log list per page.
const LOG_PAGE: usize = 25;
/// Explorer rows shown before "and N more".
const MAX_ROWS: usize = 100;
/// Options offered in a filter's list.
const MAX_OPTIONS: usize = 200;
/// Groups drawn on their own in the chart; the rest are "other".
const CHART_TOP: usize = 6;

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct UsageParams {
    #[serde(flatten)]
    filters: FilterParams,
    group_by: Option<String>,
    /// cost, requests or tokens: what the chart shows, the share column measures and the table is sorted by.
    metric: Option<String>,
    cursor: Option<String>,
    fragment: Option<String>,
    /// `explorer` or `logs`: download this view's explorer or its spend logs instead of the page.
    export: Option<String>,
    /// `csv` or `json`, with `export`.
    format: Option<String>,
}

/// The breakdowns queried from the rollups for every view: they show numbers (the provider concentration card,
/// the workflow and cache-outcome panels) and also fill their filter lists.
const QUERIED_FACETS: [GroupBy; 3] = [GroupBy::Provider, GroupBy::Workflow, GroupBy::CacheOutcome];

/// The filter dimensions offered as lists, with their query parameter and heading.
const DIMENSIONS: [(GroupBy, &str, &str); 7] = [
    (GroupBy::Provider, "provider", "Provider"),
    (GroupBy::Gateway, "gateway", "Gateway"),
    (GroupBy::Team, "team", "Team"),
    (GroupBy::Model, "model", "Model"),
    (GroupBy::User, "user", "User"),
    (GroupBy::Workflow, "workflow", "Workflow"),
    (GroupBy::CacheOutcome, "cache_outcome", "Cache"),
];

const GROUPINGS: [(GroupBy, &str); 8] = [
    (GroupBy::Team, "Team"),
    (GroupBy::User, "User"),
    (GroupBy::Key, "Key"),
    (GroupBy::Provider, "Provider"),
    (GroupBy::Model, "Model"),
    (GroupBy::Gateway, "Gateway"),
    (GroupBy::Workflow, "Workflow"),
    (GroupBy::CacheOutcome, "Cache outcome"),
];

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A `datetime-local` value ("2026-11-28T14:05") has no zone; the pages show UTC, so it is read as UTC.
fn normalise_time(v: &Option<String>) -> Option<String> {
    let s = non_empty(v)?;
    let has_zone =
        s.ends_with('Z') || s.ends_with('z') || s.get(19..).is_some_and(|t| t.contains(['+', '-']));
    Some(match (has_zone, s.len()) {
        (true, _) => s.to_string(),
        (false, 16) => format!("{s}:00Z"),
        (false, _) => format!("{s}Z"),
    })
}

impl UsageParams {
    /// The filters with the window made explicit: "custom" without a range falls back to the default.
    fn normalised(&self) -> FilterParams {
        let mut f = self.filters.clone();
        f.from = normalise_time(&f.from);
        f.to = normalise_time(&f.to);
        match f.window.as_deref().map(str::trim) {
            // A preset chosen in the form wins over a custom range left in its hidden fields.
            Some(w) if WINDOWS.contains(&w) => {
                f.from = None;
                f.to = None;
            }
            Some("custom") => f.window = None,
            _ => {}
        }
        f
    }

    fn group_by(&self) -> Result<GroupBy, String> {
        parse_group_by(non_empty(&self.group_by)).map_err(|e| e.message)
    }

    fn metric(&self) -> Result<SortBy, String> {
        parse_sort(non_empty(&self.metric)).map_err(|e| e.message)
    }

    /// The URL parameters of this view, in a stable order, with `changes` applied (an empty value removes one).
    fn url(&self, changes: &[(&str, String)]) -> String {
        let f = &self.filters;
        let base: [(&str, Option<&str>); 14] = [
            ("window", non_empty(&f.window)),
            ("from", non_empty(&f.from)),
            ("to", non_empty(&f.to)),
            ("provider", non_empty(&f.provider)),
            ("gateway", non_empty(&f.gateway)),
            ("team", non_empty(&f.team)),
            ("model", non_empty(&f.model)),
            ("user", non_empty(&f.user)),
            ("workflow", non_empty(&f.workflow)),
            ("cache_outcome", non_empty(&f.cache_outcome)),
            ("key", non_empty(&f.key)),
            ("group_by", non_empty(&self.group_by)),
            ("metric", non_empty(&self.metric)),
            ("cursor", None),
        ];
        let mut pairs: Vec<(&str, String)> = base
            .iter()
            .map(|(k, v)| (*k, v.map(str::to_string).unwrap_or_default()))
            .collect();
        for (k, v) in changes {
            match pairs.iter_mut().find(|(pk, _)| pk == k) {
                Some(p) => p.1 = v.clone(),
                None => pairs.push((k, v.clone())),
            }
        }
        format!("/usage{}", query_string(&pairs))
    }

    /// This view's window, team, user and key as the query of `/api/v1/refusals` (what refusals carry).
    fn refusals_query(&self) -> String {
        let f = &self.filters;
        let pairs: Vec<(&str, String)> = [
            ("window", &f.window),
            ("from", &f.from),
            ("to", &f.to),
            ("team", &f.team),
            ("user", &f.user),
            ("key", &f.key),
        ]
        .into_iter()
        .map(|(k, v)| (k, non_empty(v).unwrap_or_default().to_string()))
        .collect();
        query_string(&pairs)
    }

    fn filter_value(&self, param: &str) -> Option<&str> {
        let f = &self.filters;
        non_empty(match param {
            "provider" => &f.provider,
            "gateway" => &f.gateway,
            "team" => &f.team,
            "model" => &f.model,
            "user" => &f.user,
            "workflow" => &f.workflow,
            "cache_outcome" => &f.cache_outcome,
            "key" => &f.key,
            _ => &None,
        })
    }
}

/// The filters without one dimension's own filter: a list of options must offer the other values too.
fn without(f: &Filters, g: GroupBy) -> Filters {
    let mut f = f.clone();
    match g {
        GroupBy::Provider => f.provider = None,
        GroupBy::Gateway => f.gateway = None,
        GroupBy::Team => f.team = None,
        GroupBy::Model => f.model = None,
        GroupBy::User => f.user = None,
        GroupBy::Workflow => f.workflow = None,
        GroupBy::CacheOutcome => f.cache_outcome = None,
        GroupBy::Key => f.key_id = None,
    }
    f
}

/// Where clicking a row of a grouping leads: narrow to it, then group by the next most useful dimension.
fn drill(g: GroupBy, key: Option<&str>) -> (&'static str, String, &'static str) {
    match g {
        GroupBy::Team => match key {
            None => ("team", NO_TEAM_FILTER.to_string(), "key"),
            Some(k) => ("team", k.to_string(), "user"),
        },
        GroupBy::User => ("user", key.unwrap_or_default().to_string(), "model"),
        GroupBy::Key => ("key", key.unwrap_or_default().to_string(), "model"),
        GroupBy::Provider => ("provider", key.unwrap_or_default().to_string(), "model"),
        GroupBy::Model => ("model", key.unwrap_or_default().to_string(), "team"),
        GroupBy::Gateway => ("gateway", key.unwrap_or_default().to_string(), "provider"),
        GroupBy::Workflow => ("workflow", key.unwrap_or_default().to_string(), "team"),
        GroupBy::CacheOutcome => (
            "cache_outcome",
            key.unwrap_or_default().to_string(),
            "model",
        ),
    }
}

struct Data {
    rows: Vec<GroupRow>,
    facets: HashMap<GroupBy, Vec<GroupRow>>,
    points: Vec<spendgate_store::SeriesPoint>,
    logs: SpendLogPage,
}

async fn load(
    p: &Pages,
    f: &Filters,
    g: GroupBy,
    grain: spendgate_core::time::Grain,
    cursor: Option<&str>,
) -> Result<Data, StoreError> {
    let s = &p.app.store;
    // Rollup scans are what a page costs, so only the breakdowns that show numbers are queried (providers for
    // the concentration card, workflows and cache outcomes for their panels), each without its own filter so
    // its list still offers the other values. The main grouping reuses one of them when it can. The other
    // filter lists come from cheap sources: the keys (teams, users), the catalog (models) and this gateway.
    let facet_queries = QUERIED_FACETS.iter().map(|dim| {
        let ff = without(f, *dim);
        async move { (*dim, s.explorer(&ff, *dim).await) }
    });
    let main_reused = QUERIED_FACETS.contains(&g) && without(f, g) == *f;
    let (facets, main, points, logs, keys) = tokio::join!(
        futures_util::future::join_all(facet_queries),
        async {
            if main_reused {
                Ok(Vec::new())
            } else {
                s.explorer(f, g).await
            }
        },
        s.series(f, grain, Some(g)),
        s.spend_logs(f, LOG_PAGE, cursor),
        s.list_keys(),
    );
    let mut map = HashMap::new();
    for (dim, rows) in facets {
        map.insert(dim, rows?);
    }
    let rows = if main_reused {
        map.get(&g).cloned().unwrap_or_default()
    } else {
        main?
    };
    let option = |key: Option<String>, label: String| GroupRow {
        key,
        label,
        totals: Totals::default(),
    };
    let mut keys = keys?;
    // The lists come from the keys table, which the store's team scope does not cover: a team viewer's lists
    // must hold its own team and users only.
    if let Some(team) = crate::auth::viewer_team() {
        keys.retain(|k| k.team.as_deref() == Some(team.as_str()));
    }
    let mut teams: Vec<GroupRow> = Vec::new();
    let mut users: Vec<GroupRow> = Vec::new();
    for k in &keys {
        let team = k.team.clone();
        if !teams.iter().any(|t| t.key == team) {
            let label = team.clone().unwrap_or_else(|| NO_TEAM_LABEL.to_string());
            teams.push(option(team, label));
        }
        if !users.iter().any(|u| u.label == k.user) {
            users.push(option(Some(k.user.clone()), k.user.clone()));
        }
    }
    let mut models: Vec<GroupRow> = Vec::new();
    for m in p.app.catalog().models() {
        if !models.iter().any(|x| x.label == m.model) {
            models.push(option(Some(m.model.clone()), m.model.clone()));
        }
    }
    let mut gateways = vec![option(
        Some(p.app.gateway_name.to_string()),
        p.app.gateway_name.to_string(),
    )];
    if g == GroupBy::Gateway {
        for r in &rows {
            if !gateways.iter().any(|x| x.label == r.label) {
                gateways.push(option(r.key.clone(), r.label.clone()));
            }
        }
    }
    map.insert(GroupBy::Team, teams);
    map.insert(GroupBy::User, users);
    map.insert(GroupBy::Model, models);
    map.insert(GroupBy::Gateway, gateways);
    Ok(Data {
        rows,
        facets: map,
        points: points?,
        logs: logs?,
    })
}

pub(crate) async fn page(
    State(p): State<Arc<Pages>>,
    Extension(csrf): Extension<SessionCsrf>,
    headers: HeaderMap,
    params: Result<Query<UsageParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(q)) => q,
        Err(e) => return invalid_view(&p, &csrf, &e.body_text()),
    };
    let invalid = |m: &str| invalid_view(&p, &csrf, m);
    let filters = match params.normalised().to_filters() {
        Ok(f) => f,
        Err(e) => return invalid(&e.message),
    };
    let group_by = match params.group_by() {
        Ok(g) => g,
        Err(m) => return invalid(&m),
    };
    let metric = match params.metric() {
        Ok(m) => m,
        Err(m) => return invalid(&m),
    };
    if let Some(what) = non_empty(&params.export) {
        let exported = match crate::export::Format::parse(non_empty(&params.format)) {
            Ok(format) => match what {
                "explorer" => {
                    crate::export::explorer_export(&p.app, &filters, group_by, metric, format).await
                }
                "logs" => Ok(crate::export::spend_logs_export(
                    Arc::clone(&p.app.store),
                    filters,
                    format,
                )),
                other => Err(spendgate_gateway::ApiError::invalid_request(
                    "invalid_export",
                    format!("export '{other}' is not one of explorer, logs"),
                )),
            },
            Err(e) => Err(e),
        };
        return exported.unwrap_or_else(|e| invalid(&e.message));
    }
    let grain = chart::grain_for(filters.from_ms, filters.to_ms);
    let cursor = non_empty(&params.cursor);
    let mut data = match load(&p, &filters, group_by, grain, cursor).await {
        Ok(d) => d,
        Err(e) => return store_error_page(&p, &csrf, e),
    };
    sort_rows(&mut data.rows, metric);
    let view = View {
        p: &p,
        q: &params,
        f: &filters,
        g: group_by,
        metric,
        grain,
        host: host(&headers),
    };
    // The budget-alert panel for these filters (budgets of the filtered team, user or key and the org's).
    let outcomes = data
        .facets
        .get(&GroupBy::CacheOutcome)
        .map_or(&[][..], Vec::as_slice);
    let refusals_query = params.refusals_query();
    let (refused, savings, budgets) = tokio::join!(
        refused::panel(&p, &filters, &refusals_query),
        savings::panel(&p, &filters, outcomes),
        super::budgets::usage_panel(&p, &filters)
    );
    let main = view.main(&data) + &refused + &savings + &budgets;
    if wants_fragment(params.fragment.as_deref()) {
        return html_response(StatusCode::OK, main);
    }
    let form = view.filter_form(&data);
    html_response(
        StatusCode::OK,
        layout(&p.chrome("Usage", "/usage", &csrf, true), &form, &main),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_are_read_as_utc() {
        assert_eq!(
            normalise_time(&Some("2026-11-28T14:05".into())).as_deref(),
            Some("2026-11-28T14:05:00Z")
        );
        assert_eq!(
            normalise_time(&Some("2026-11-28T14:05:00Z".into())).as_deref(),
            Some("2026-11-28T14:05:00Z")
        );
        assert_eq!(
            normalise_time(&Some("2026-11-28T14:05:00+02:00".into())).as_deref(),
            Some("2026-11-28T14:05:00+02:00")
        );
        assert_eq!(normalise_time(&Some(" ".into())), None);
    }

    #[test]
    fn no_team_row_drills_into_keys() {
        assert_eq!(
            drill(GroupBy::Team, None),
            ("team", "@none".to_string(), "key")
        );
        assert_eq!(
            drill(GroupBy::Team, Some("support")),
            ("team", "support".to_string(), "user")
        );
    }

    #[test]
    fn urls_keep_the_view_and_apply_changes() {
        let q = UsageParams {
            filters: FilterParams {
                window: Some("7d".into()),
                team: Some("a b".into()),
                ..FilterParams::default()
            },
            group_by: Some("team".into()),
            cursor: Some("1-2".into()),
            ..UsageParams::default()
        };
        assert_eq!(q.url(&[]), "/usage?window=7d&team=a%20b&group_by=team");
        assert_eq!(
            q.url(&[("team", String::new()), ("group_by", "model".into())]),
            "/usage?window=7d&group_by=model"
        );
    }
}
