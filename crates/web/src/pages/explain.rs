//! `/explain`: why a group's spend changed between two windows — the sentence, the three effects (volume,
//! intensity, price/mix) that add up to the change exactly, and the sub-groups that drive each of them. The
//! numbers are those of `GET /api/v1/insights/explain`; this page only lays them out.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use spendgate_core::controls::describe_window;
use spendgate_core::insights::{percent, signed_usd, Effect};
use spendgate_core::query::{Filters, GroupBy, Totals, NO_TEAM_FILTER};
use spendgate_core::Money;

use super::html::{as_of, date_time, esc, int, layout, query_string};
use super::{error_page, html_response, invalid_view, Pages, SessionCsrf};
use crate::insights_api::{effect_rows, explain_view, usage_url, ExplainParams};

/// The breakdowns offered, in the order shown.
const BREAKDOWNS: [(GroupBy, &str); 6] = [
    (GroupBy::Model, "Model"),
    (GroupBy::Provider, "Provider"),
    (GroupBy::User, "User"),
    (GroupBy::Workflow, "Workflow"),
    (GroupBy::CacheOutcome, "Cache outcome"),
    (GroupBy::Key, "Key"),
];

/// The URL of this view with some parameters changed.
fn url(p: &ExplainParams, changes: &[(&str, &str)]) -> String {
    let f = &p.filters;
    let mut pairs: Vec<(&str, String)> = vec![
        ("group_by", p.group_by.clone().unwrap_or_default()),
        ("subject", p.subject.clone().unwrap_or_default()),
        ("window", f.window.clone().unwrap_or_default()),
        ("from", f.from.clone().unwrap_or_default()),
        ("to", f.to.clone().unwrap_or_default()),
        ("team", f.team.clone().unwrap_or_default()),
        ("user", f.user.clone().unwrap_or_default()),
        ("provider", f.provider.clone().unwrap_or_default()),
        ("model", f.model.clone().unwrap_or_default()),
        ("gateway", f.gateway.clone().unwrap_or_default()),
        ("workflow", f.workflow.clone().unwrap_or_default()),
        ("cache_outcome", f.cache_outcome.clone().unwrap_or_default()),
        ("key", f.key.clone().unwrap_or_default()),
        ("breakdown", p.breakdown.clone().unwrap_or_default()),
    ];
    for (k, v) in changes {
        match pairs.iter_mut().find(|(pk, _)| pk == k) {
            Some(p) => p.1 = v.to_string(),
            None => pairs.push((k, v.to_string())),
        }
    }
    format!("/explain{}", query_string(&pairs))
}

/// The view's parameters other than the baseline, as hidden fields of the custom-range form.
fn hidden_fields(p: &ExplainParams) -> String {
    let f = &p.filters;
    let mut out = String::new();
    for (k, v) in [
        ("group_by", &p.group_by),
        ("subject", &p.subject),
        ("window", &f.window),
        ("from", &f.from),
        ("to", &f.to),
        ("team", &f.team),
        ("user", &f.user),
        ("provider", &f.provider),
        ("model", &f.model),
        ("gateway", &f.gateway),
        ("workflow", &f.workflow),
        ("cache_outcome", &f.cache_outcome),
        ("key", &f.key),
        ("breakdown", &p.breakdown),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            let _ = write!(
                out,
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                esc(v)
            );
        }
    }
    out
}

fn money_cell(m: Money) -> String {
    format!(
        "<td class=\"num\" title=\"${}\">{}</td>",
        m.to_usd_string(),
        esc(&m.display_usd())
    )
}

fn delta_cell(m: Money) -> String {
    let cls = match m.picos().signum() {
        1 => "up",
        -1 => "down",
        _ => "flat",
    };
    format!(
        "<td class=\"num\" title=\"${}\"><span class=\"delta {cls}\">{}</span></td>",
        m.to_usd_string(),
        esc(&signed_usd(m))
    )
}

/// Cost per million tokens, for reading (the exact figure is in the API).
fn per_mtok(t: &Totals) -> String {
    if t.tokens() == 0 {
        return "—".into();
    }
    let m = Money::from_picos(t.cost.picos().saturating_mul(1_000_000) / i128::from(t.tokens()));
    m.display_usd()
}

pub(crate) async fn page(
    State(p): State<Arc<Pages>>,
    Extension(csrf): Extension<SessionCsrf>,
    params: Result<Query<ExplainParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match params {
        Ok(Query(q)) => q,
        Err(e) => return invalid_view(&p, &csrf, &e.body_text()),
    };
    let v = match explain_view(&p.app, &q).await {
        Ok(v) => v,
        Err(e) => {
            return error_page(
                &p,
                &csrf,
                e.status,
                "This explanation cannot be computed",
                &e.message,
            )
        }
    };
    let e = &v.explanation;
    let mut s = String::with_capacity(16_384);
    let _ = write!(
        s,
        "<div class=\"page-head\"><h1>Explain: {}</h1><p class=\"window\" id=\"windows\">{} – {} ({}) against {} – {} ({})</p>{}\
         <a class=\"more\" href=\"{}\">See it in Usage →</a></div>",
        esc(&v.label),
        esc(&date_time(v.window.from_ms)),
        esc(&date_time(v.window.to_ms)),
        esc(&describe_window(v.window.to_ms - v.window.from_ms)),
        esc(&date_time(v.baseline.from_ms)),
        esc(&date_time(v.baseline.to_ms)),
        esc(&describe_window(v.baseline.to_ms - v.baseline.from_ms)),
        as_of(spendgate_core::time::now_ms()),
        esc(&usage_url(&v.filters, v.breakdown)),
    );
    s.push_str("<nav class=\"chips\" aria-label=\"Window\">");
    let current_window = q.filters.window.clone().unwrap_or_else(|| "24h".into());
    for (w, label) in [
        ("1h", "1 hour"),
        ("24h", "24 hours"),
        ("7d", "7 days"),
        ("30d", "30 days"),
    ] {
        let on = if q.filters.from.is_none() && current_window == w {
            " class=\"on\""
        } else {
            ""
        };
        let _ = write!(
            s,
            "<a href=\"{}\"{on}>{label}</a>",
            esc(&url(&q, &[("window", w), ("from", ""), ("to", "")]))
        );
    }
    s.push_str("</nav>");
    // What the window is compared with, without editing the URL: the span right before, the same span a week
    // earlier, or any range (the form below).
    s.push_str("<nav class=\"chips\" aria-label=\"Compare with\" id=\"compare\"><span class=\"muted\">Compare with</span>");
    let custom = q
        .baseline_from
        .as_deref()
        .is_some_and(|b| !b.trim().is_empty());
    let compare = q.compare.clone().unwrap_or_else(|| "previous".into());
    for (c, label) in [
        ("previous", "the period before"),
        ("last_week", "the same time last week"),
    ] {
        let on = if !custom && compare == c {
            " class=\"on\""
        } else {
            ""
        };
        let _ = write!(
            s,
            "<a href=\"{}\"{on}>{label}</a>",
            esc(&url(
                &q,
                &[("compare", c), ("baseline_from", ""), ("baseline_to", "")]
            ))
        );
    }
    s.push_str("</nav>");
    let _ = write!(
        s,
        "<form class=\"filters\" method=\"get\" action=\"/explain\" id=\"compare-range\">{}\
         <label>Baseline from (UTC) <input type=\"datetime-local\" name=\"baseline_from\" value=\"{}\"></label>\
         <label>to <input type=\"datetime-local\" name=\"baseline_to\" value=\"{}\"></label>\
         <button type=\"submit\">Compare with this range</button></form>",
        hidden_fields(&q),
        esc(q.baseline_from.as_deref().unwrap_or("")),
        esc(q.baseline_to.as_deref().unwrap_or("")),
    );
    let _ = write!(
        s,
        "<section class=\"panel\"><p class=\"lead\" id=\"explain-sentence\">{}</p></section>",
        esc(&v.sentence)
    );
    s.push_str("<section class=\"cards\">");
    let _ = write!(
        s,
        "<div class=\"card\"><h3>Change in cost</h3><p class=\"big\" title=\"${}\">{}</p><p class=\"sub\">{} → {}</p></div>",
        e.effects.change.to_usd_string(),
        esc(&signed_usd(e.effects.change)),
        esc(&e.baseline.cost.display_usd()),
        esc(&e.current.cost.display_usd()),
    );
    for (x, m) in effect_rows(e) {
        let what = match x {
            Effect::Volume => "requests",
            Effect::Intensity => "tokens per request",
            Effect::PriceMix => "cost per token",
        };
        let _ = write!(
            s,
            "<div class=\"card\" data-effect=\"{}\"><h3>{} effect</h3><p class=\"big\" title=\"${}\">{}</p><p class=\"sub\">{}</p></div>",
            x.as_str(),
            esc(&capitalise(x.label())),
            m.to_usd_string(),
            esc(&signed_usd(m)),
            what
        );
    }
    s.push_str("</section>");
    // The factors themselves.
    let bp = |v: Option<i128>| v.map_or_else(|| "—".to_string(), percent);
    let _ = write!(
        s,
        "<section class=\"panel\"><div class=\"panel-head\"><h2>Factors</h2>\
         <span class=\"muted\">cost = requests × tokens per request × cost per token</span></div>\
         <table class=\"data\"><thead><tr><th>Factor</th><th class=\"num\">Baseline</th><th class=\"num\">Current</th>\
         <th class=\"num\">Change</th></tr></thead><tbody>\
         <tr><td>Requests</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\
         <tr><td>Tokens per request</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\
         <tr><td>Cost per million tokens</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\
         <tr><td>Cost</td>{}{}<td class=\"num\">{}</td></tr></tbody></table></section>",
        int(e.baseline.requests),
        int(e.current.requests),
        bp(e.requests_change_bp()),
        int(e.baseline.tokens_per_request()),
        int(e.current.tokens_per_request()),
        bp(e.tokens_per_request_change_bp()),
        esc(&per_mtok(&e.baseline)),
        esc(&per_mtok(&e.current)),
        bp(e.cost_per_token_change_bp()),
        money_cell(e.baseline.cost),
        money_cell(e.current.cost),
        bp(e.cost_change_bp()),
    );
    // The sub-groups.
    let _ = write!(
        s,
        "<section class=\"panel\" id=\"parts\"><div class=\"panel-head\"><h2>By {}</h2><nav class=\"chips\" aria-label=\"Breakdown\">",
        esc(v.breakdown.as_str())
    );
    for (g, label) in BREAKDOWNS {
        if Some(g) == v.group_by {
            continue;
        }
        let on = if g == v.breakdown {
            " class=\"on\""
        } else {
            ""
        };
        let _ = write!(
            s,
            "<a href=\"{}\"{on}>{label}</a>",
            esc(&url(&q, &[("breakdown", g.as_str())]))
        );
    }
    s.push_str(
        "</nav></div><table class=\"data\"><thead><tr><th>Group</th><th class=\"num\">Baseline</th>\
         <th class=\"num\">Current</th><th class=\"num\">Change</th><th class=\"num\">Volume</th>\
         <th class=\"num\">Intensity</th><th class=\"num\">Price/mix</th></tr></thead><tbody>",
    );
    if e.parts.is_empty() {
        s.push_str("<tr><td class=\"muted\" colspan=\"7\">No traffic in either window.</td></tr>");
    }
    for part in e.parts.iter().take(50) {
        let _ = write!(
            s,
            "<tr><td>{}</td>{}{}{}{}{}{}</tr>",
            esc(&part.label),
            money_cell(part.baseline.cost),
            money_cell(part.current.cost),
            delta_cell(part.effects.change),
            delta_cell(part.effects.volume),
            delta_cell(part.effects.intensity),
            delta_cell(part.effects.price_mix),
        );
    }
    let _ = write!(
        s,
        "</tbody><tfoot><tr><th>Total</th>{}{}{}{}{}{}</tr></tfoot></table>\
         <p class=\"muted\">Each effect is split across the groups that drive it; the parts add up to the effect and \
         the effects to the change, to the picodollar. A group's price/mix part grows when its share of tokens or its \
         cost per token grows.</p></section>",
        money_cell(e.baseline.cost),
        money_cell(e.current.cost),
        delta_cell(e.effects.change),
        delta_cell(e.effects.volume),
        delta_cell(e.effects.intensity),
        delta_cell(e.effects.price_mix),
    );
    let mut base_filters = v.filters.clone();
    base_filters.from_ms = v.baseline.from_ms;
    base_filters.to_ms = v.baseline.to_ms;
    let _ = write!(
        s,
        "<section class=\"panel\"><h2>Evidence</h2><ul><li><a href=\"{}\">Current window in Usage</a> (with its spend logs)</li>\
         <li><a href=\"{}\">Baseline window in Usage</a></li><li><a href=\"{}\">Activity in the current window</a></li></ul></section>",
        esc(&usage_url(&v.filters, v.breakdown)),
        esc(&usage_url(&base_filters, v.breakdown)),
        esc(&super::history::activity_url(&v.filters)),
    );
    html_response(
        StatusCode::OK,
        layout(&p.chrome("Explain", "", &csrf, false), "", &s),
    )
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// The "Explain · Activity" links of an explorer row of grouping `g` whose filter value is `key` (`None` is the
/// No team bucket). `usage_url` is the row's view as a `/usage` URL with `group_by` and `subject` set; it
/// becomes the `/explain` URL, so the explanation keeps every filter of the view.
pub(crate) fn row_actions(usage_url: &str, f: &Filters, g: GroupBy, key: Option<&str>) -> String {
    let explain = usage_url.replacen("/usage", "/explain", 1);
    let mut narrowed = f.clone();
    match (g, key) {
        (GroupBy::Team, None) => narrowed.team = Some(NO_TEAM_FILTER.into()),
        (GroupBy::Team, Some(k)) => narrowed.team = Some(k.into()),
        (GroupBy::User, Some(k)) => narrowed.user = Some(k.into()),
        (GroupBy::Key, Some(k)) => narrowed.key_id = k.parse().ok(),
        (GroupBy::Gateway, Some(k)) => narrowed.gateway = Some(k.into()),
        // Models, providers, workflows and cache outcomes are not actors: the activity of the whole view.
        _ => {}
    }
    format!(
        " <span class=\"row-actions\"><a href=\"{}\" title=\"Why did this change?\">Explain</a> · <a href=\"{}\">Activity</a></span>",
        esc(&explain),
        esc(&super::history::activity_url(&narrowed)),
    )
}

/// The subject value of an explorer row for `/explain`.
pub(crate) fn subject_of(key: Option<&str>) -> String {
    key.map_or_else(|| NO_TEAM_FILTER.to_string(), str::to_string)
}
