//! `/overview`: spend this month and today against the same span before, the writer's queue, the gateways,
//! recent runtime signals (errors, rejections, budget alerts, the teams whose spend moved most) and spend over
//! time by team.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use spendgate_core::query::{Filters, GroupBy, GroupRow, SortBy, Totals, NO_TEAM_FILTER};
use spendgate_core::time::{now_ms, Grain, DAY_MS, HOUR_MS, MINUTE_MS};
use spendgate_core::Money;
use spendgate_store::{RefusalCount, RefusalFilters, RefusalGroup, StoreError};

use super::chart;
use super::html::{ago, compact, duration, esc, hms, int, layout, query_string, trend, updated};
use super::{html_response, invalid_view, store_error_page, wants_fragment, Pages, SessionCsrf};
use crate::params::{month_start, FilterParams};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct OverviewParams {
    window: Option<String>,
    fragment: Option<String>,
}

/// The chart windows offered on the overview.
const CHART_WINDOWS: [(&str, &str); 4] = [
    ("1h", "1 hour"),
    ("24h", "24 hours"),
    ("7d", "7 days"),
    ("30d", "30 days"),
];

fn span(from_ms: i64, to_ms: i64) -> Filters {
    Filters {
        from_ms,
        to_ms: to_ms.max(from_ms + 1),
        ..Filters::default()
    }
}

/// Everything the overview reads, fetched concurrently.
struct Data {
    mtd: Totals,
    mtd_prev: Totals,
    today: Totals,
    yesterday: Totals,
    teams_now: Vec<GroupRow>,
    teams_before: Vec<GroupRow>,
    gateways_hour: Vec<GroupRow>,
    gateways_5m: Vec<GroupRow>,
    gateway_minutes: Vec<spendgate_store::SeriesPoint>,
    /// Every replica's last heartbeat (empty if the store could not say).
    beats: Vec<spendgate_store::replicas::GatewayBeat>,
    chart_points: Vec<spendgate_store::SeriesPoint>,
    /// The latest budget alerts. A failure here only blanks that box, not the whole overview.
    alerts: Result<Vec<spendgate_store::controls::AlertRecord>, ()>,
    /// Requests refused at the door in the last hour and today (UTC), by reason, from the refusal rollups. A
    /// failure blanks only these figures.
    refused_hour: Result<Vec<RefusalCount>, ()>,
    refused_today: Result<Vec<RefusalCount>, ()>,
}

async fn load(
    p: &Pages,
    now: i64,
    chart_filters: &Filters,
    grain: Grain,
) -> Result<Data, StoreError> {
    let s = &p.app.store;
    let month = month_start(now);
    let prev_month = month_start(month - 1);
    let day = Grain::Day.floor(now);
    // The same span of the previous period: as many milliseconds into last month (cut at its end) and into
    // yesterday as have passed of this month and today.
    let mtd = span(month, now);
    let mtd_prev = span(prev_month, (prev_month + (now - month)).min(month));
    let today = span(day, now);
    let yesterday = span(day - DAY_MS, now - DAY_MS);
    let hour = span(now - HOUR_MS, now);
    let hour_before = span(now - 2 * HOUR_MS, now - HOUR_MS);
    let five = span(now - 5 * MINUTE_MS, now);
    // Last seen needs minute precision over a short span only: older means "over an hour ago".
    let minutes = span(now - HOUR_MS, now);
    let refusals = |f: Filters| RefusalFilters {
        filters: f,
        reason: None,
    };
    let (refused_hour, refused_today) = (refusals(hour.clone()), refusals(today.clone()));
    let (a, b, c, d, e, f, g, h, i, j, k, l, m, n) = tokio::join!(
        s.summary(&mtd),
        s.summary(&mtd_prev),
        s.summary(&today),
        s.summary(&yesterday),
        s.explorer(&hour, GroupBy::Team),
        s.explorer(&hour_before, GroupBy::Team),
        s.explorer(&hour, GroupBy::Gateway),
        s.explorer(&five, GroupBy::Gateway),
        s.series(&minutes, Grain::Minute, Some(GroupBy::Gateway)),
        s.series(chart_filters, grain, Some(GroupBy::Team)),
        s.list_alerts(5),
        s.list_gateways(),
        s.refusal_counts(&refused_hour, Some(RefusalGroup::Reason)),
        s.refusal_counts(&refused_today, Some(RefusalGroup::Reason)),
    );
    let refused = |r: Result<Vec<RefusalCount>, StoreError>| {
        r.map_err(|e| tracing::warn!(error = %e, "Reading refusals for the overview failed."))
    };
    Ok(Data {
        mtd: a?,
        mtd_prev: b?,
        today: c?,
        yesterday: d?,
        teams_now: e?,
        teams_before: f?,
        gateways_hour: g?,
        gateways_5m: h?,
        gateway_minutes: i?,
        beats: l.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "Reading gateway heartbeats for the overview failed.");
            Vec::new()
        }),
        chart_points: j?,
        alerts: k.map_err(
            |e| tracing::warn!(error = %e, "Reading budget alerts for the overview failed."),
        ),
        refused_hour: refused(m),
        refused_today: refused(n),
    })
}

pub(crate) async fn page(
    State(p): State<Arc<Pages>>,
    Extension(csrf): Extension<SessionCsrf>,
    params: Result<Query<OverviewParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = params.map(|Query(q)| q).unwrap_or_default();
    let window = params
        .window
        .clone()
        .filter(|w| CHART_WINDOWS.iter().any(|(k, _)| k == w))
        .unwrap_or("24h".into());
    let chart_filters = match (FilterParams {
        window: Some(window.clone()),
        ..FilterParams::default()
    })
    .to_filters()
    {
        Ok(f) => f,
        Err(e) => return invalid_view(&p, &csrf, &e.message),
    };
    let now = chart_filters.to_ms;
    let grain = chart::grain_for(chart_filters.from_ms, chart_filters.to_ms);
    let data = match load(&p, now, &chart_filters, grain).await {
        Ok(d) => d,
        Err(e) => return store_error_page(&p, &csrf, e),
    };
    let main = render(&p, &data, now, &window, &chart_filters, grain);
    if wants_fragment(params.fragment.as_deref()) {
        return html_response(StatusCode::OK, main);
    }
    html_response(
        StatusCode::OK,
        layout(&p.chrome("Overview", "/overview", &csrf, true), "", &main),
    )
}

fn card(title: &str, value: &str, exact: &str, trend_html: &str, sub: &str) -> String {
    format!(
        "<div class=\"card\"><h3>{}</h3><p class=\"big\" title=\"{}\">{}</p><p class=\"sub\">{trend_html} {}</p></div>",
        esc(title),
        esc(exact),
        esc(value),
        sub
    )
}

fn render(
    p: &Pages,
    d: &Data,
    now: i64,
    window: &str,
    chart_filters: &Filters,
    grain: Grain,
) -> String {
    let mut s = String::with_capacity(32 * 1024);
    let _ = write!(
        s,
        "<div class=\"page-head\"><h1>Overview</h1>{}</div>",
        updated(now)
    );

    // Period cards.
    s.push_str("<section class=\"cards\" aria-label=\"Current period\">");
    s.push_str(&card(
        "Spend, month to date",
        &d.mtd.cost.display_usd(),
        &format!("${}", d.mtd.cost.to_usd_string()),
        &trend(
            d.mtd.cost.picos(),
            d.mtd_prev.cost.picos(),
            "the same span of last month",
        ),
        &format!(
            "vs {} same span last month",
            esc(&d.mtd_prev.cost.display_usd())
        ),
    ));
    s.push_str(&card(
        "Spend today (UTC)",
        &d.today.cost.display_usd(),
        &format!("${}", d.today.cost.to_usd_string()),
        &trend(
            d.today.cost.picos(),
            d.yesterday.cost.picos(),
            "yesterday up to this time",
        ),
        &format!(
            "vs {} yesterday by this time",
            esc(&d.yesterday.cost.display_usd())
        ),
    ));
    s.push_str(&card(
        "Requests today",
        &compact(d.today.requests),
        &format!("{} requests", int(d.today.requests)),
        &trend(
            i128::from(d.today.requests),
            i128::from(d.yesterday.requests),
            "yesterday up to this time",
        ),
        &format!(
            "{} month to date {}",
            esc(&compact(d.mtd.requests)),
            trend(
                i128::from(d.mtd.requests),
                i128::from(d.mtd_prev.requests),
                "the same span of last month"
            )
        ),
    ));
    s.push_str(&card(
        "Tokens today",
        &compact(d.today.tokens()),
        &format!(
            "{} tokens ({} in, {} out)",
            int(d.today.tokens()),
            int(d.today.input_tokens),
            int(d.today.output_tokens)
        ),
        &trend(
            i128::from(d.today.tokens()),
            i128::from(d.yesterday.tokens()),
            "yesterday up to this time",
        ),
        &format!(
            "{} month to date {}",
            esc(&compact(d.mtd.tokens())),
            trend(
                i128::from(d.mtd.tokens()),
                i128::from(d.mtd_prev.tokens()),
                "the same span of last month"
            )
        ),
    ));
    s.push_str("</section>");

    // The chart of spend by team.
    let chart = chart::build(
        &d.chart_points,
        chart_filters.from_ms,
        chart_filters.to_ms,
        grain,
        SortBy::Cost,
        6,
    );
    let _ = write!(s, "<section class=\"panel\"><div class=\"panel-head\"><h2>Spend over time by team</h2><nav class=\"chips\">");
    for (k, label) in CHART_WINDOWS {
        let cls = if k == window { " class=\"on\"" } else { "" };
        let _ = write!(
            s,
            "<a href=\"/overview{}\"{cls}>{label}</a>",
            query_string(&[("window", k.to_string())])
        );
    }
    let _ = write!(
        s,
        "</nav><a class=\"more\" href=\"/usage{}\">Explore in Usage →</a></div>{}</section>",
        query_string(&[("window", window.to_string()), ("group_by", "team".into())]),
        chart.svg("Spend over time by team")
    );

    s.push_str("<div class=\"grid2\">");
    render_movers(&mut s, d);
    render_signals(&mut s, p, d, now);
    s.push_str("</div>");
    render_gateways(&mut s, p, d, now);
    render_queue(&mut s, p);
    if d.mtd.requests == 0 && d.today.requests == 0 {
        s.push_str(
            "<section class=\"panel empty\"><h2>No traffic yet</h2><p>Send a first request through the gateway \
             and it appears here within a second. The <a href=\"/usage\">Usage</a> page shows how.</p></section>",
        );
    }
    s
}

/// The teams whose spend changed most between the last hour and the hour before.
fn render_movers(s: &mut String, d: &Data) {
    let mut by_team: BTreeMap<(Option<String>, String), (Money, Money)> = BTreeMap::new();
    for r in &d.teams_now {
        by_team
            .entry((r.key.clone(), r.label.clone()))
            .or_default()
            .0 = r.totals.cost;
    }
    for r in &d.teams_before {
        by_team
            .entry((r.key.clone(), r.label.clone()))
            .or_default()
            .1 = r.totals.cost;
    }
    let mut movers: Vec<_> = by_team.into_iter().collect();
    movers.sort_by(|a, b| {
        let da = (a.1 .0 - a.1 .1).picos().abs();
        let db = (b.1 .0 - b.1 .1).picos().abs();
        db.cmp(&da).then_with(|| a.0 .1.cmp(&b.0 .1))
    });
    s.push_str(
        "<section class=\"panel\"><div class=\"panel-head\"><h2>Biggest movers by team</h2>\
         <span class=\"muted\">last hour vs the hour before</span></div>",
    );
    if movers.is_empty() {
        s.push_str(
            "<p class=\"muted\">No team spent anything in the last two hours.</p></section>",
        );
        return;
    }
    s.push_str(
        "<table class=\"data\"><thead><tr><th>Team</th><th class=\"num\">Last hour</th>\
         <th class=\"num\">Hour before</th><th class=\"num\">Change</th></tr></thead><tbody>",
    );
    for ((key, label), (now, before)) in movers.iter().take(6) {
        let team = key.clone().unwrap_or_else(|| NO_TEAM_FILTER.to_string());
        let href = format!(
            "/usage{}",
            query_string(&[
                ("window", "1h".into()),
                ("team", team),
                ("group_by", "user".into())
            ])
        );
        let delta = *now - *before;
        let sign = if delta.picos() > 0 { "+" } else { "" };
        let cls = if delta.picos() > 0 {
            "up"
        } else if delta.picos() < 0 {
            "down"
        } else {
            "flat"
        };
        let _ = write!(
            s,
            "<tr data-href=\"{href}\"><td><a href=\"{href}\">{}</a> <a class=\"row-actions\" href=\"{}\">Explain</a></td><td class=\"num\" title=\"${}\">{}</td>\
             <td class=\"num\" title=\"${}\">{}</td><td class=\"num\"><span class=\"delta {cls}\">{sign}{}</span> {}</td></tr>",
            esc(label),
            esc(&format!(
                "/explain{}",
                query_string(&[
                    ("window", "1h".into()),
                    ("group_by", "team".into()),
                    ("subject", key.clone().unwrap_or_else(|| NO_TEAM_FILTER.to_string())),
                ])
            )),
            now.to_usd_string(),
            esc(&now.display_usd()),
            before.to_usd_string(),
            esc(&before.display_usd()),
            esc(&delta.display_usd()),
            trend(now.picos(), before.picos(), "the hour before"),
        );
    }
    s.push_str("</tbody></table></section>");
}

fn render_signals(s: &mut String, p: &Pages, d: &Data, now: i64) {
    let g = p.app.gateway_stats.snapshot();
    let _ = write!(
        s,
        "<section class=\"panel\"><div class=\"panel-head\"><h2>Runtime signals</h2>\
         <span class=\"muted\">since this process started</span></div>\
         <dl class=\"signals\">\
         <div class=\"{}\"><dt>Upstream errors</dt><dd>{}</dd></div>\
         <div class=\"{}\"><dt>Rejected requests</dt><dd>{}</dd></div>\
         <div><dt>Requests proxied</dt><dd>{}</dd></div>{}</dl>{}\
         <h3>Latest alerts</h3><div id=\"budget-alerts\">",
        if g.upstream_errors > 0 { "warn" } else { "" },
        int(g.upstream_errors),
        if g.rejected > 0 { "warn" } else { "" },
        int(g.rejected),
        int(g.requests),
        refused_signal(&d.refused_hour),
        refused_today(&d.refused_today),
    );
    match &d.alerts {
        Err(()) => s.push_str(
            "<p class=\"placeholder\">Budget alerts could not be read right now; they reappear on the next update.</p>",
        ),
        Ok(alerts) if alerts.is_empty() => s.push_str(
            "<p class=\"placeholder\">No budget alerts or anomaly signals. Alerts appear here when a budget nears or passes its \
             limit, a wallet runs low, or spend behaves unusually (a retry loop, a spend spike).</p>",
        ),
        Ok(alerts) => {
            s.push_str("<ul class=\"alerts\">");
            for a in alerts {
                let cls = super::notifications::severity(&a.alert.kind);
                let team = a.alert.team.as_deref().map_or(String::new(), |t| {
                    format!(
                        " <a href=\"{}\">{}</a>",
                        esc(&format!(
                            "/usage{}",
                            query_string(&[("window", "24h".into()), ("team", t.to_string()), ("group_by", "user".into())])
                        )),
                        esc(t)
                    )
                });
                // Anomaly alerts point at their evidence: the filtered usage view of the requests concerned.
                let evidence = super::notifications::evidence(a);
                let _ = write!(
                    s,
                    "<li><span class=\"status {cls}\">{}</span>{team} {}{evidence} <span class=\"muted\" title=\"{}\">{}</span></li>",
                    esc(&a.alert.kind.replace('_', " ")),
                    super::html::message_html(&a.alert.message),
                    esc(&super::html::date_time(a.at_ms)),
                    esc(&ago(a.at_ms, now)),
                );
            }
            s.push_str("</ul>");
        }
    }
    s.push_str("</div></section>");
}

/// The signal of requests refused in the last hour (every replica's, from the refusal rollups): marked `bad` when
/// a budget or wallet refused any (a team is blocked), `warn` for other refusals.
fn refused_signal(counts: &Result<Vec<RefusalCount>, ()>) -> String {
    let Ok(counts) = counts else {
        return "<div id=\"refused-hour\"><dt>Refused, last hour</dt><dd class=\"muted\">unavailable</dd></div>"
            .into();
    };
    let total: u64 = counts.iter().map(|c| c.refusals).sum();
    let controls = counts.iter().any(|c| {
        c.key
            .as_deref()
            .and_then(spendgate_core::RefusalReason::parse)
            .is_some_and(|r| r.is_control())
    });
    let cls = match (total, controls) {
        (0, _) => "",
        (_, true) => "bad",
        _ => "warn",
    };
    format!(
        "<div class=\"{cls}\" id=\"refused-hour\"><dt>Refused, last hour</dt><dd><a href=\"/usage{}#refused\">{}</a></dd></div>",
        esc(&query_string(&[("window", "1h".into())])),
        int(total)
    )
}

/// Today's refusals by reason, under the signals.
fn refused_today(counts: &Result<Vec<RefusalCount>, ()>) -> String {
    match counts {
        Ok(c) if !c.is_empty() => format!(
            "<p class=\"small\" id=\"refused-today\">Refused today (UTC): {} — <a href=\"/usage{}#refused\">see which \
             and why</a></p>",
            c.iter()
                .map(|c| format!("{} {}", esc(&c.label), int(c.refusals)))
                .collect::<Vec<_>>()
                .join(" · "),
            esc(&query_string(&[("window", "24h".into())])),
        ),
        _ => String::new(),
    }
}

/// One gateway's row: traffic from the rollups (every replica's), and from each replica's heartbeat its last
/// sign of life, uptime, version and latency. A replica whose heartbeat is older than
/// `replicas.stale_after_secs` is marked as not responding; one that said goodbye, as stopped.
fn render_gateways(s: &mut String, p: &Pages, d: &Data, now: i64) {
    let own = &*p.app.gateway_name;
    let mut names: Vec<String> = d.gateways_hour.iter().map(|r| r.label.clone()).collect();
    for b in &d.beats {
        if !names.contains(&b.name) {
            names.push(b.name.clone());
        }
    }
    for pt in &d.gateway_minutes {
        if let Some(g) = &pt.group {
            if !names.contains(g) {
                names.push(g.clone());
            }
        }
    }
    if !names.iter().any(|n| n == own) {
        names.insert(0, own.to_string());
    }
    names.sort_by(|a, b| (a != own).cmp(&(b != own)).then_with(|| a.cmp(b)));
    let stats = p.app.gateway_stats.snapshot();
    s.push_str(
        "<section class=\"panel\"><div class=\"panel-head\"><h2>Gateways</h2></div>\
         <table class=\"data\" id=\"gateways\"><thead><tr><th>Gateway</th><th>Last seen</th><th>Uptime</th>\
         <th>Version</th><th class=\"num\" title=\"Average over the last 5 minutes\">Requests/min</th>\
         <th class=\"num\" title=\"Upstream errors over the last hour\">Error rate (1 h)</th>\
         <th class=\"num\" title=\"Since this process started\">p50</th><th class=\"num\" title=\"Since this process started\">p95</th></tr></thead><tbody>",
    );
    for name in &names {
        let five = d
            .gateways_5m
            .iter()
            .find(|r| &r.label == name)
            .map(|r| r.totals)
            .unwrap_or_default();
        let hour = d
            .gateways_hour
            .iter()
            .find(|r| &r.label == name)
            .map(|r| r.totals)
            .unwrap_or_default();
        let last_bucket = d
            .gateway_minutes
            .iter()
            .filter(|pt| pt.group.as_deref() == Some(name.as_str()) && pt.totals.requests > 0)
            .map(|pt| pt.bucket_start_ms)
            .max();
        // Requests per minute over five minutes, with one decimal: requests * 10 / 5 tenths.
        let rpm_tenths = five.requests * 2;
        let err_bp =
            spendgate_core::query::share_bp(i128::from(hour.errors), i128::from(hour.requests));
        let is_own = name == own;
        let last_seen = if is_own {
            "<span class=\"ok\">● now</span> <span class=\"muted\">(this process)</span>"
                .to_string()
        } else {
            match last_bucket {
                Some(b) => esc(&ago(b + MINUTE_MS, now)),
                None => "<span class=\"muted\">over an hour ago</span>".into(),
            }
        };
        let beat = d.beats.iter().find(|b| &b.name == name);
        let last_seen = match beat.filter(|_| !is_own) {
            Some(b) => match crate::api::replica_status(b, now, p.app.gateway_stale_after_ms) {
                "stopped" => format!(
                    "<span class=\"muted\">■ stopped {}</span>",
                    esc(&ago(b.last_seen_ms, now))
                ),
                "not_responding" => format!(
                    "<span class=\"warn\" data-stale=\"1\">● not responding: last heartbeat {}</span>",
                    esc(&ago(b.last_seen_ms, now))
                ),
                _ => format!(
                    "<span class=\"ok\">● {}</span>",
                    esc(&ago(b.last_seen_ms, now))
                ),
            },
            None => last_seen,
        };
        let ms = |v: Option<u64>| v.map_or_else(|| "—".to_string(), |v| format!("≤ {} ms", int(v)));
        let (uptime, version, p50, p95) = if is_own {
            (
                duration(now - stats.started_at_ms),
                format!("v{}", esc(p.app.version)),
                ms(stats.latency_percentile_ms(50)),
                ms(stats.latency_percentile_ms(95)),
            )
        } else if let Some(b) = beat {
            (
                if b.stopped {
                    "—".to_string()
                } else {
                    duration(b.last_seen_ms - b.started_at_ms)
                },
                format!("v{}", esc(&b.version)),
                ms(b.latency_p50_ms),
                ms(b.latency_p95_ms),
            )
        } else {
            ("—".into(), "—".into(), "—".into(), "—".into())
        };
        let href = format!(
            "/usage{}",
            query_string(&[
                ("window", "1h".into()),
                ("gateway", name.clone()),
                ("group_by", "provider".into())
            ])
        );
        let _ = write!(
            s,
            "<tr data-href=\"{href}\"><td><a href=\"{href}\">{}</a></td><td>{last_seen}</td><td>{uptime}</td><td>{version}</td>\
             <td class=\"num\">{}.{}</td><td class=\"num{}\" title=\"{} errors of {} requests\">{}%</td>\
             <td class=\"num\">{p50}</td><td class=\"num\">{p95}</td></tr>",
            esc(name),
            rpm_tenths / 10,
            rpm_tenths % 10,
            if hour.errors > 0 { " warn" } else { "" },
            int(hour.errors),
            int(hour.requests),
            spendgate_core::query::format_share(err_bp),
        );
    }
    s.push_str("</tbody></table></section>");
}

fn render_queue(s: &mut String, p: &Pages) {
    let q = p.app.writer_stats.snapshot();
    let age_class = if q.oldest_pending_age_ms > 5_000 {
        " warn"
    } else {
        ""
    };
    let _ = write!(
        s,
        "<section class=\"panel\"><div class=\"panel-head\"><h2>Spend writer queue</h2>\
         <span class=\"muted\">events are batched from the gateway into the store</span></div>\
         <dl class=\"signals\" id=\"queue\">\
         <div><dt>Waiting to be written</dt><dd>{}</dd></div>\
         <div class=\"{}\"><dt>Oldest waiting</dt><dd>{}</dd></div>\
         <div><dt>Written per second</dt><dd>{}</dd></div>\
         <div><dt>Written since start</dt><dd>{}</dd></div>\
         <div class=\"{}\"><dt>Failed writes (retried)</dt><dd>{}</dd></div></dl>",
        int(q.pending),
        age_class.trim(),
        if q.pending == 0 {
            "—".to_string()
        } else {
            format!(
                "{} ms",
                int(u64::try_from(q.oldest_pending_age_ms).unwrap_or(0))
            )
        },
        int(q.written_per_sec),
        int(q.written_total),
        if q.failed_writes > 0 { "warn" } else { "" },
        int(q.failed_writes),
    );
    if let Some(e) = &q.last_error {
        let _ = write!(s, "<p class=\"alert\">Last write error: {}</p>", esc(e));
    }
    let _ = write!(
        s,
        "<p class=\"muted small\">Queue state at {} UTC.</p></section>",
        hms(now_ms())
    );
}
