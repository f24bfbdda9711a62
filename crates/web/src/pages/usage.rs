//! `/usage`: the filters (all in the URL, so a view can be shared), summary cards, a chart of the chosen
//! metric split by the chosen grouping, the explorer table, workflow and cache-outcome panels, and the spend
//! logs of the current filters.

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
    error_page, host, html_response, store_error_page, wants_fragment, Pages, SessionCsrf,
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
    for m in p.app.catalog.models() {
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
        Err(e) => {
            return error_page(
                &p,
                &csrf,
                StatusCode::BAD_REQUEST,
                "This view is not valid",
                &e.body_text(),
            )
        }
    };
    let invalid = |m: &str| {
        error_page(
            &p,
            &csrf,
            StatusCode::BAD_REQUEST,
            "This view is not valid",
            m,
        )
    };
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
    let main = view.main(&data) + &super::budgets::usage_panel(&p, &filters).await;
    if wants_fragment(params.fragment.as_deref()) {
        return html_response(StatusCode::OK, main);
    }
    let form = view.filter_form(&data);
    html_response(
        StatusCode::OK,
        layout(&p.chrome("Usage", "/usage", &csrf, true), &form, &main),
    )
}

struct View<'a> {
    p: &'a Pages,
    q: &'a UsageParams,
    f: &'a Filters,
    g: GroupBy,
    metric: SortBy,
    grain: spendgate_core::time::Grain,
    host: String,
}

fn sum(rows: &[GroupRow]) -> Totals {
    let mut t = Totals::default();
    for r in rows {
        t.add(&r.totals);
    }
    t
}

/// A small share bar as SVG (inline styles are not allowed by the page's CSP).
fn share_bar(bp: u32) -> String {
    let w = bp / 100;
    format!(
        "<svg class=\"sharebar\" viewBox=\"0 0 100 8\" width=\"80\" height=\"8\" aria-hidden=\"true\">\
         <rect class=\"track\" width=\"100\" height=\"8\" rx=\"2\"/><rect class=\"fill\" width=\"{w}\" height=\"8\" rx=\"2\"/></svg>"
    )
}

fn group_name(g: GroupBy) -> &'static str {
    GROUPINGS
        .iter()
        .find(|(x, _)| *x == g)
        .map_or("Group", |(_, n)| n)
}

impl View<'_> {
    /// The filter bar. It stays outside the live region, so a refresh never resets a list the reader has open.
    fn filter_form(&self, d: &Data) -> String {
        let q = self.q;
        let mut s = String::with_capacity(8192);
        s.push_str("<form class=\"filters auto\" method=\"get\" action=\"/usage\" id=\"filters\">");
        let preset = non_empty(&q.filters.window).filter(|w| WINDOWS.contains(w));
        let window = match preset {
            Some(w) => w,
            None if non_empty(&q.filters.from).is_some()
                || non_empty(&q.filters.window) == Some("custom") =>
            {
                "custom"
            }
            None => "24h",
        };
        s.push_str("<label>Window<select name=\"window\">");
        for (k, label) in WINDOWS
            .iter()
            .map(|w| (*w, window_label(w)))
            .chain([("custom", "Custom range")])
        {
            let sel = if k == window { " selected" } else { "" };
            let _ = write!(s, "<option value=\"{k}\"{sel}>{label}</option>");
        }
        s.push_str("</select></label>");
        let _ = write!(
            s,
            "<span class=\"custom\"><label>From (UTC)<input type=\"datetime-local\" name=\"from\" value=\"{}\"></label>\
             <label>To (UTC)<input type=\"datetime-local\" name=\"to\" value=\"{}\"></label></span>",
            if window == "custom" { datetime_local(self.f.from_ms) } else { String::new() },
            if window == "custom" && non_empty(&q.filters.to).is_some() { datetime_local(self.f.to_ms) } else { String::new() },
        );
        for (dim, param, heading) in DIMENSIONS {
            let current = q.filter_value(param);
            let _ = write!(
                s,
                "<label>{heading}<select name=\"{param}\"><option value=\"\">Any</option>"
            );
            let mut seen_current = false;
            if dim == GroupBy::CacheOutcome {
                for co in CacheOutcome::ALL {
                    let v = co.as_str();
                    let sel = if current == Some(v) { " selected" } else { "" };
                    let _ = write!(
                        s,
                        "<option value=\"{v}\"{sel}>{}</option>",
                        v.replace('_', " ")
                    );
                }
                seen_current = true;
            } else if let Some(rows) = d.facets.get(&dim) {
                let mut rows: Vec<&GroupRow> = rows.iter().collect();
                rows.sort_by(|a, b| a.label.cmp(&b.label));
                for r in rows.into_iter().take(MAX_OPTIONS) {
                    let v = r.key.clone().unwrap_or_else(|| NO_TEAM_FILTER.to_string());
                    let sel = if current == Some(v.as_str()) {
                        seen_current = true;
                        " selected"
                    } else {
                        ""
                    };
                    let _ = write!(
                        s,
                        "<option value=\"{}\"{sel}>{}</option>",
                        esc(&v),
                        esc(&r.label)
                    );
                }
            }
            if let (Some(c), false) = (current, seen_current) {
                // A filter value with no traffic in the window is still shown, so the form does not drop it.
                let label = if c == NO_TEAM_FILTER {
                    NO_TEAM_LABEL
                } else {
                    c
                };
                let _ = write!(
                    s,
                    "<option value=\"{}\" selected>{}</option>",
                    esc(c),
                    esc(label)
                );
            }
            s.push_str("</select></label>");
        }
        if let Some(k) = q.filter_value("key") {
            let _ = write!(
                s,
                "<input type=\"hidden\" name=\"key\" value=\"{}\">",
                esc(k)
            );
        }
        let _ = write!(
            s,
            "<input type=\"hidden\" name=\"group_by\" value=\"{}\"><input type=\"hidden\" name=\"metric\" value=\"{}\">\
             <button class=\"primary\">Apply</button><a class=\"clear\" href=\"/usage{}\">Clear filters</a></form>",
            self.g.as_str(),
            self.metric.as_str(),
            query_string(&[("group_by", self.g.as_str().to_string()), ("metric", self.metric.as_str().to_string())]),
        );
        s
    }

    fn main(&self, d: &Data) -> String {
        let now = now_ms();
        let total = sum(&d.rows);
        let mut s = String::with_capacity(64 * 1024);
        let w = self.p.app.store.resolve_window(self.f);
        let _ = write!(
            s,
            "<div class=\"page-head\"><h1>Usage</h1><p class=\"window\">{} → {} UTC</p>{}</div>",
            esc(&super::html::date_time(w.from_ms).replace(" UTC", "")),
            esc(&super::html::date_time(w.to_ms).replace(" UTC", "")),
            updated(now)
        );
        self.active_filters(&mut s);
        if total.requests == 0 {
            self.empty_state(&mut s);
            self.logs(&mut s, d);
            return s;
        }
        self.cards(&mut s, &total, d);
        self.chart(&mut s, d);
        self.explorer(&mut s, d, &total);
        s.push_str("<div class=\"grid2\">");
        self.compact_panel(&mut s, d, GroupBy::Workflow, "Workflows");
        self.compact_panel(&mut s, d, GroupBy::CacheOutcome, "Cache outcomes");
        s.push_str("</div>");
        self.logs(&mut s, d);
        s
    }

    /// Chips for the filters in effect, each with a link that removes it.
    fn active_filters(&self, s: &mut String) {
        let mut chips = String::new();
        for param in [
            "provider",
            "gateway",
            "team",
            "model",
            "user",
            "workflow",
            "cache_outcome",
            "key",
        ] {
            if let Some(v) = self.q.filter_value(param) {
                let shown = if param == "team" && v == NO_TEAM_FILTER {
                    NO_TEAM_LABEL
                } else {
                    v
                };
                let _ = write!(
                    chips,
                    "<a class=\"chip\" href=\"{}\" title=\"Remove this filter\">{}: <b>{}</b> ×</a>",
                    esc(&self.q.url(&[(param, String::new())])),
                    param.replace('_', " "),
                    esc(shown)
                );
            }
        }
        if !chips.is_empty() {
            let _ = write!(
                s,
                "<div class=\"chips active-filters\">Filtered by {chips}</div>"
            );
        }
    }

    fn empty_state(&self, s: &mut String) {
        let filtered = [
            "provider",
            "gateway",
            "team",
            "model",
            "user",
            "workflow",
            "cache_outcome",
            "key",
        ]
        .iter()
        .any(|p| self.q.filter_value(p).is_some());
        if filtered {
            let _ = write!(
                s,
                "<section class=\"panel empty\"><h2>Nothing matches these filters in this window</h2>\
                 <p>Try a longer window, or <a href=\"{}\">clear the filters</a>.</p></section>",
                esc(&format!(
                    "/usage{}",
                    query_string(&[("window", non_empty(&self.q.filters.window).unwrap_or("").to_string())])
                ))
            );
            return;
        }
        let host = esc(&self.host);
        let _ = write!(
            s,
            "<section class=\"panel empty\"><h2>No traffic in this window yet</h2>\
             <p>spendgate records every request that goes through its OpenAI-compatible API. To see spend here:</p>\
             <ol><li>Create a virtual key for a user and team:\
             <pre><code>spendgate keys create --user you --team your-team</code></pre></li>\
             <li>Send a request with it:\
             <pre><code>curl http://{host}/v1/chat/completions \\\n  -H \"Authorization: Bearer sk-sg-…\" \\\n  \
             -H \"content-type: application/json\" \\\n  \
             -d '{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'</code></pre></li>\
             <li>This page updates on its own within a second. Or point any OpenAI SDK at \
             <code>http://{host}/v1</code> with the key as its API key.</li></ol></section>"
        );
    }

    fn cards(&self, s: &mut String, t: &Totals, d: &Data) {
        // Provider concentration: the top provider's share of cost. With a provider filter it is that provider.
        let (top_provider, conc_bp) = if let Some(pv) = self.q.filter_value("provider") {
            (pv.to_string(), 10_000)
        } else {
            let providers = d
                .facets
                .get(&GroupBy::Provider)
                .cloned()
                .unwrap_or_default();
            let whole = sum(&providers).cost.picos();
            providers
                .iter()
                .max_by_key(|r| r.totals.cost)
                .map_or((String::from("—"), 0), |r| {
                    (r.label.clone(), share_bp(r.totals.cost.picos(), whole))
                })
        };
        let _ = write!(
            s,
            "<section class=\"cards six\" aria-label=\"Summary\">\
             <div class=\"card\"><h3>Total cost</h3><p class=\"big\" id=\"total-cost\" title=\"${}\">{}</p></div>\
             <div class=\"card\"><h3>Requests</h3><p class=\"big\" title=\"{}\">{}</p><p class=\"sub\">{} errors</p></div>\
             <div class=\"card\"><h3>Tokens</h3><p class=\"big\" title=\"{}\">{}</p>\
             <p class=\"sub\">{} in · {} out · {} cached</p></div>\
             <div class=\"card\"><h3>Avg cost / request</h3><p class=\"big\" title=\"${}\">{}</p></div>\
             <div class=\"card\"><h3>Avg tokens / request</h3><p class=\"big\">{}</p></div>\
             <div class=\"card\"><h3>Provider concentration</h3><p class=\"big\">{}%</p><p class=\"sub\">top: {}</p></div>\
             </section>",
            t.cost.to_usd_string(),
            esc(&t.cost.display_usd()),
            int(t.requests),
            compact(t.requests),
            int(t.errors),
            int(t.tokens()),
            compact(t.tokens()),
            compact(t.input_tokens),
            compact(t.output_tokens),
            compact(t.cached_input_tokens),
            t.cost_per_request().to_usd_string(),
            esc(&t.cost_per_request().display_usd()),
            int(t.tokens_per_request()),
            format_share(conc_bp),
            esc(&top_provider),
        );
    }

    fn metric_tabs(&self) -> String {
        let mut s = String::from("<nav class=\"chips\" aria-label=\"Metric\">");
        for m in [SortBy::Cost, SortBy::Requests, SortBy::Tokens] {
            let cls = if m == self.metric {
                " class=\"on\""
            } else {
                ""
            };
            let _ = write!(
                s,
                "<a href=\"{}\"{cls}>{}</a>",
                esc(&self.q.url(&[("metric", m.as_str().into())])),
                metric_label(m)
            );
        }
        s.push_str("</nav>");
        s
    }

    fn chart(&self, s: &mut String, d: &Data) {
        let c = chart::build(
            &d.points,
            self.f.from_ms,
            self.f.to_ms,
            self.grain,
            self.metric,
            CHART_TOP,
        );
        let title = format!(
            "{} by {}",
            metric_label(self.metric),
            group_name(self.g).to_lowercase()
        );
        let _ = write!(
            s,
            "<section class=\"panel\"><div class=\"panel-head\"><h2>{}</h2>{}</div>{}</section>",
            esc(&title),
            self.metric_tabs(),
            c.svg(&title)
        );
    }

    fn explorer(&self, s: &mut String, d: &Data, total: &Totals) {
        s.push_str("<section class=\"panel\" id=\"explorer\"><div class=\"panel-head\"><h2>Explorer</h2><nav class=\"chips\" aria-label=\"Group by\">");
        for (g, label) in GROUPINGS {
            let cls = if g == self.g { " class=\"on\"" } else { "" };
            let _ = write!(
                s,
                "<a href=\"{}\"{cls} data-group=\"{}\">{label}</a>",
                esc(&self.q.url(&[("group_by", g.as_str().into())])),
                g.as_str()
            );
        }
        let _ = write!(s, "</nav>{}</div>", self.metric_tabs());
        let sort_head = |m: SortBy, label: &str| -> String {
            let cls = if m == self.metric {
                "num sorted"
            } else {
                "num"
            };
            format!(
                "<th class=\"{cls}\"><a href=\"{}\" title=\"Sort by {}\">{label}{}</a></th>",
                esc(&self.q.url(&[("metric", m.as_str().into())])),
                m.as_str(),
                if m == self.metric { " ▼" } else { "" }
            )
        };
        let _ = write!(
            s,
            "<table class=\"data explorer\" id=\"explorer-table\" data-group-by=\"{}\"><thead><tr><th>{}</th>{}{}{}\
             <th class=\"num\" title=\"input / output / cached input\">In / out / cached</th>\
             <th class=\"num\">Cost / req</th><th class=\"num\">Tokens / req</th>\
             <th class=\"num share\">Share of {}</th></tr></thead><tbody>",
            self.g.as_str(),
            group_name(self.g),
            sort_head(SortBy::Cost, "Cost"),
            sort_head(SortBy::Requests, "Requests"),
            sort_head(SortBy::Tokens, "Tokens"),
            self.metric.as_str(),
        );
        let whole = total.metric(self.metric);
        for r in d.rows.iter().take(MAX_ROWS) {
            let (param, value, next) = drill(self.g, r.key.as_deref());
            let href = esc(&self.q.url(&[(param, value), ("group_by", next.into())]));
            let bp = share_bp(r.totals.metric(self.metric), whole);
            let t = &r.totals;
            let no_team = self.g == GroupBy::Team && r.key.is_none();
            let _ = write!(
                s,
                "<tr data-href=\"{href}\"{}><td><a href=\"{href}\">{}</a>{}{}</td>\
                 <td class=\"num\" title=\"${}\">{}</td><td class=\"num\">{}</td><td class=\"num\" title=\"{} tokens\">{}</td>\
                 <td class=\"num muted\">{} / {} / {}</td><td class=\"num\" title=\"${}\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num share\">{} {}%</td></tr>",
                if no_team { " class=\"no-team\"" } else { "" },
                esc(&r.label),
                if no_team { " <span class=\"badge\">keys without a team</span>" } else { "" },
                super::explain::row_actions(
                    &self.q.url(&[
                        ("group_by", self.g.as_str().into()),
                        ("subject", super::explain::subject_of(r.key.as_deref())),
                        ("metric", String::new()),
                    ]),
                    self.f,
                    self.g,
                    r.key.as_deref()
                ),
                t.cost.to_usd_string(),
                esc(&t.cost.display_usd()),
                int(t.requests),
                int(t.tokens()),
                compact(t.tokens()),
                compact(t.input_tokens),
                compact(t.output_tokens),
                compact(t.cached_input_tokens),
                t.cost_per_request().to_usd_string(),
                esc(&t.cost_per_request().display_usd()),
                int(t.tokens_per_request()),
                share_bar(bp),
                format_share(bp),
            );
        }
        let _ = write!(
            s,
            "</tbody><tfoot><tr><th>Total ({} {})</th><td class=\"num\" title=\"${}\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num muted\">{} / {} / {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">100%</td></tr></tfoot></table>",
            int(u64::try_from(d.rows.len()).unwrap_or(0)),
            if d.rows.len() == 1 { "group" } else { "groups" },
            total.cost.to_usd_string(),
            esc(&total.cost.display_usd()),
            int(total.requests),
            compact(total.tokens()),
            compact(total.input_tokens),
            compact(total.output_tokens),
            compact(total.cached_input_tokens),
            esc(&total.cost_per_request().display_usd()),
            int(total.tokens_per_request()),
        );
        if d.rows.len() > MAX_ROWS {
            let _ = write!(
                s,
                "<p class=\"muted\">Showing the top {MAX_ROWS} of {} groups; narrow the filters to see the rest.</p>",
                d.rows.len()
            );
        }
        s.push_str("</section>");
    }

    /// A compact breakdown (workflows, cache outcomes) for the current filters other than its own dimension.
    fn compact_panel(&self, s: &mut String, d: &Data, g: GroupBy, title: &str) {
        let mut rows = d.facets.get(&g).cloned().unwrap_or_default();
        sort_rows(&mut rows, self.metric);
        let whole = sum(&rows).metric(self.metric);
        let _ = write!(
            s,
            "<section class=\"panel compact\" id=\"panel-{}\"><div class=\"panel-head\"><h2>{}</h2><span class=\"muted\">by {}</span></div>\
             <table class=\"data\"><tbody>",
            g.as_str(),
            esc(title),
            metric_label(self.metric).to_lowercase()
        );
        let current = self.q.filter_value(g.as_str());
        for r in rows.iter().take(12) {
            let (param, value, next) = drill(g, r.key.as_deref());
            let on = current == Some(value.as_str());
            let href = if on {
                esc(&self.q.url(&[(param, String::new())]))
            } else {
                esc(&self.q.url(&[(param, value), ("group_by", next.into())]))
            };
            let bp = share_bp(r.totals.metric(self.metric), whole);
            let _ = write!(
                s,
                "<tr data-href=\"{href}\"{}><td><a href=\"{href}\">{}</a></td><td class=\"num\" title=\"${}\">{}</td>\
                 <td class=\"num\">{} req</td><td class=\"num share\">{} {}%</td></tr>",
                if on { " class=\"selected\"" } else { "" },
                esc(&r.label),
                r.totals.cost.to_usd_string(),
                esc(&r.totals.cost.display_usd()),
                int(r.totals.requests),
                share_bar(bp),
                format_share(bp),
            );
        }
        if rows.is_empty() {
            s.push_str("<tr><td class=\"muted\">No traffic.</td></tr>");
        }
        s.push_str("</tbody></table></section>");
    }

    fn logs(&self, s: &mut String, d: &Data) {
        let _ = write!(
            s,
            "<section class=\"panel\" id=\"logs\"><div class=\"panel-head\"><h2>Requests</h2>\
             <span class=\"muted\">newest first, {LOG_PAGE} a page</span></div>"
        );
        if d.logs.items.is_empty() {
            s.push_str("<p class=\"muted\">No requests match.</p></section>");
            return;
        }
        s.push_str(
            "<table class=\"data logs\"><thead><tr><th>Time (UTC)</th><th>Team</th><th>User</th><th>Workflow</th>\
             <th>Model</th><th class=\"num\">In / out tokens</th><th class=\"num\">Cost</th><th>Status</th>\
             <th class=\"num\">Latency</th></tr></thead><tbody>",
        );
        for l in &d.logs.items {
            let e = &l.event;
            let href = format!("/requests/{}", e.id);
            let status_cls = if e.status.is_error() {
                "bad"
            } else if e.status.as_str() == "ok" {
                "ok"
            } else {
                "warn"
            };
            let _ = write!(
                s,
                "<tr data-href=\"{href}\"><td><a href=\"{href}\" title=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{} <span class=\"muted\">{}</span></td><td class=\"num\">{} / {}{}</td><td class=\"num\" title=\"${}\">{}</td>\
                 <td><span class=\"status {status_cls}\">{}</span></td><td class=\"num\">{} ms</td></tr>",
                esc(&super::html::date_time(e.finished_at_ms)),
                hms(e.finished_at_ms),
                esc(e.attribution.team.as_deref().unwrap_or(NO_TEAM_LABEL)),
                esc(&e.attribution.user),
                esc(e.attribution.workflow.as_deref().unwrap_or("—")),
                esc(&e.model),
                esc(&e.provider),
                int(e.usage.input_tokens),
                int(e.usage.output_tokens),
                if e.usage_source == spendgate_core::UsageSource::Estimated { " <span class=\"badge\" title=\"estimated by spendgate\">est.</span>" } else { "" },
                e.cost.to_usd_string(),
                esc(&e.cost.display_usd()),
                esc(e.status.as_str()),
                int(u64::from(e.latency_ms)),
            );
        }
        s.push_str("</tbody></table><nav class=\"pager\">");
        if non_empty(&self.q.cursor).is_some() {
            let _ = write!(s, "<a href=\"{}#logs\">← Newest</a>", esc(&self.q.url(&[])));
        }
        if let Some(next) = &d.logs.next_cursor {
            let _ = write!(
                s,
                "<a href=\"{}#logs\" rel=\"next\">Older →</a>",
                esc(&self.q.url(&[("cursor", next.clone())]))
            );
        }
        s.push_str("</nav></section>");
    }
}

fn window_label(w: &str) -> &'static str {
    match w {
        "1h" => "Last hour",
        "24h" => "Last 24 hours",
        "7d" => "Last 7 days",
        "30d" => "Last 30 days",
        "mtd" => "Month to date",
        _ => "Window",
    }
}

fn metric_label(m: SortBy) -> &'static str {
    match m {
        SortBy::Cost => "Cost",
        SortBy::Requests => "Requests",
        SortBy::Tokens => "Tokens",
    }
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
