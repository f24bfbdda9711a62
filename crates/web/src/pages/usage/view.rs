//! Rendering of `/usage`: cards, chart, explorer, panels and the spend-log list.

use super::*;

pub(super) struct View<'a> {
    pub(super) p: &'a Pages,
    pub(super) q: &'a UsageParams,
    pub(super) f: &'a Filters,
    pub(super) g: GroupBy,
    pub(super) metric: SortBy,
    pub(super) grain: spendgate_core::time::Grain,
    pub(super) host: String,
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
    pub(super) fn filter_form(&self, d: &Data) -> String {
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

    pub(super) fn main(&self, d: &Data) -> String {
        let now = now_ms();
        let total = sum(&d.rows);
        let mut s = String::with_capacity(64 * 1024);
        let w = self.p.app.store.resolve_window(self.f);
        let _ = write!(
            s,
            "<div class=\"page-head\"><h1>Usage</h1><p class=\"window\">{} → {} UTC</p>{}</div>",
            esc(&super::super::html::date_time(w.from_ms).replace(" UTC", "")),
            esc(&super::super::html::date_time(w.to_ms).replace(" UTC", "")),
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
             <p class=\"sub\">{} in · {} out · {} cached · <span id=\"cache-writes\">{}</span> cache writes</p></div>\
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
            compact(t.cache_write_tokens),
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

    /// "Export CSV · JSON" for one part of this view: the same filters, downloaded as a file.
    fn export_links(&self, what: &str) -> String {
        let link = |format: &str, label: &str| {
            format!(
                "<a href=\"{}\" id=\"export-{what}-{format}\" download>{label}</a>",
                esc(&self
                    .q
                    .url(&[("export", what.into()), ("format", format.into())]))
            )
        };
        format!(
            "<span class=\"more export\">Export {} · {}</span>",
            link("csv", "CSV"),
            link("json", "JSON")
        )
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
        let _ = write!(
            s,
            "</nav>{}{}</div>",
            self.metric_tabs(),
            self.export_links("explorer")
        );
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
                super::super::explain::row_actions(
                    &self.q.url(&[
                        ("group_by", self.g.as_str().into()),
                        ("subject", super::super::explain::subject_of(r.key.as_deref())),
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
             <span class=\"muted\">newest first, {LOG_PAGE} a page</span>{}</div>",
            self.export_links("logs")
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
                esc(&super::super::html::date_time(e.finished_at_ms)),
                hms(e.finished_at_ms),
                esc(e.attribution.team.as_deref().unwrap_or(NO_TEAM_LABEL)),
                esc(&e.attribution.user),
                esc(e.attribution.workflow.as_deref().unwrap_or("—")),
                esc(&e.model),
                esc(&e.provider),
                int(e.usage.input_tokens),
                int(e.usage.output_tokens),
                if e.cache_outcome == spendgate_core::CacheOutcome::Hit {
                    format!(
                        " <span class=\"badge served-from-cache\" title=\"answered from the response cache at $0; avoided ${}\">served from cache</span>",
                        e.avoided_cost.to_usd_string()
                    )
                } else if e.usage_source == spendgate_core::UsageSource::Estimated {
                    " <span class=\"badge\" title=\"estimated by spendgate\">est.</span>".into()
                } else {
                    String::new()
                },
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
