//! The "Cache savings" panel of `/usage`: what the response cache saved, by team and by model, from the rollups.
//!
//! A cache `miss` is always a fill (its answer was stored; an answer that could not be stored is
//! `not_cacheable`), so fills and their cost are the `miss` rows and the savings are the `hit` rows' avoided cost.
//! Up to four explorer queries (hits and fills, by team and by model), each with the page's filters but its own
//! cache outcome, and none when the page's cache-outcome grouping shows neither hits nor fills.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use spendgate_core::query::{Filters, GroupBy, GroupRow};
use spendgate_core::{CacheOutcome, Money};
use spendgate_store::Store;

use super::super::html::{esc, int};
use super::super::Pages;

/// One row of the panel: a team or a model.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Saving {
    hits: u64,
    fills: u64,
    fill_cost: Money,
    avoided: Money,
}

impl Saving {
    /// What the cache saved net of what filling it cost: positive once answers are reused enough.
    fn net(&self) -> Money {
        self.avoided - self.fill_cost
    }
}

/// Hits and fills by group label, in label order.
fn merge(hits: &[GroupRow], fills: &[GroupRow]) -> BTreeMap<String, Saving> {
    let mut out: BTreeMap<String, Saving> = BTreeMap::new();
    for r in hits {
        let s = out.entry(r.label.clone()).or_default();
        s.hits += r.totals.requests;
        s.avoided += r.totals.avoided_cost;
    }
    for r in fills {
        let s = out.entry(r.label.clone()).or_default();
        s.fills += r.totals.requests;
        s.fill_cost += r.totals.cost;
    }
    out
}

fn money(m: Money) -> String {
    format!(
        "<span title=\"${}\">{}</span>",
        m.to_usd_string(),
        esc(&m.display_usd())
    )
}

async fn rows(
    store: &dyn Store,
    f: &Filters,
    g: GroupBy,
    present: &[CacheOutcome],
) -> Result<BTreeMap<String, Saving>, String> {
    // Only the outcomes the window holds are read: each read filters on a cache outcome, which the per-dimension
    // rollups cannot answer, so it scans the all-dimension ones.
    let read = |co: CacheOutcome| {
        let f = Filters {
            cache_outcome: Some(co),
            ..f.clone()
        };
        async move {
            if present.contains(&co) {
                store.explorer(&f, g).await
            } else {
                Ok(Vec::new())
            }
        }
    };
    let (hits, fills) = tokio::join!(read(CacheOutcome::Hit), read(CacheOutcome::Miss));
    match (hits, fills) {
        (Ok(h), Ok(fl)) => Ok(merge(&h, &fl)),
        (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
    }
}

fn table(s: &mut String, heading: &str, rows: &BTreeMap<String, Saving>) {
    let _ = write!(
        s,
        "<table class=\"data\"><thead><tr><th>{}</th><th class=\"num\">Hits</th><th class=\"num\">Fills</th>\
         <th class=\"num\">Fill cost</th><th class=\"num\">Avoided cost</th><th class=\"num\">Net savings</th></tr></thead><tbody>",
        esc(heading)
    );
    let mut total = Saving::default();
    for (label, r) in rows {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(label),
            int(r.hits),
            int(r.fills),
            money(r.fill_cost),
            money(r.avoided),
            net_cell(r),
        );
        total.hits += r.hits;
        total.fills += r.fills;
        total.fill_cost += r.fill_cost;
        total.avoided += r.avoided;
    }
    let _ = write!(
        s,
        "</tbody><tfoot><tr><th>Total</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th>\
         <th class=\"num\">{}</th><th class=\"num\">{}</th></tr></tfoot></table>",
        int(total.hits),
        int(total.fills),
        money(total.fill_cost),
        money(total.avoided),
        net_cell(&total),
    );
    if total.net() < Money::ZERO {
        let _ = write!(
            s,
            "<p class=\"small muted negative-net\">Net savings are negative because filling the cache cost {} (the \
             requests whose answers were stored), more than the {} its hits have saved so far. Every later hit on a \
             stored answer adds its avoided cost.</p>",
            esc(&total.fill_cost.display_usd()),
            esc(&total.avoided.display_usd())
        );
    }
}

/// Net savings, with why when they are negative (fills cost more than the hits saved so far).
fn net_cell(r: &Saving) -> String {
    let net = r.net();
    if net < Money::ZERO {
        format!(
            "<span class=\"warn\" title=\"fills cost {} so far, more than the {} their hits avoided\">{}</span>",
            esc(&r.fill_cost.display_usd()),
            esc(&r.avoided.display_usd()),
            esc(&net.display_usd())
        )
    } else {
        money(net)
    }
}

/// The panel for the page's filters (whatever cache outcome they name: the panel picks its own). `outcomes` is
/// the page's grouping by cache outcome under the same filters, already read from the cheap per-dimension
/// rollups: when it shows no hits and no fills, as for every gateway with the cache off, nothing more is read.
pub(super) async fn panel(p: &Pages, f: &Filters, outcomes: &[GroupRow]) -> String {
    let present: Vec<CacheOutcome> = [CacheOutcome::Hit, CacheOutcome::Miss]
        .into_iter()
        .filter(|co| {
            outcomes
                .iter()
                .any(|r| r.key.as_deref() == Some(co.as_str()) && r.totals.requests > 0)
        })
        .collect();
    let store = &*p.app.store;
    let mut s = String::from(
        "<section class=\"panel\" id=\"cache-savings\"><div class=\"panel-head\"><h2>Cache savings</h2>\
         <span class=\"muted\">Fills are answers stored by the response cache (their requests were paid); hits were \
         answered from it for free. Net savings = avoided cost (what the hits would have cost at today's prices) \
         − fill cost.</span></div>",
    );
    let (teams, models) = tokio::join!(
        rows(store, f, GroupBy::Team, &present),
        rows(store, f, GroupBy::Model, &present)
    );
    match (teams, models) {
        (Ok(t), Ok(m)) if t.is_empty() && m.is_empty() => s.push_str(
            "<p class=\"placeholder\">No cache hits or fills for these filters. The response cache is off unless \
             <code>[cache] enabled = true</code> is set.</p>",
        ),
        (Ok(t), Ok(m)) => {
            s.push_str("<div class=\"grid2\">");
            table(&mut s, "Team", &t);
            table(&mut s, "Model", &m);
            s.push_str("</div>");
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "Reading cache savings for the usage page failed.");
            s.push_str("<p class=\"placeholder\">Cache savings could not be read right now; they reappear on the next update.</p>");
        }
    }
    s.push_str("</section>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use spendgate_core::Totals;

    fn row(label: &str, requests: u64, cost: i128, avoided: i128) -> GroupRow {
        GroupRow {
            key: Some(label.into()),
            label: label.into(),
            totals: Totals {
                requests,
                cost: Money::from_picos(cost),
                avoided_cost: Money::from_picos(avoided),
                ..Totals::default()
            },
        }
    }

    #[test]
    fn net_savings_are_avoided_cost_minus_fill_cost_per_group() {
        let m = merge(
            &[row("a", 3, 0, 300), row("b", 1, 0, 50)],
            &[row("a", 1, 100, 0), row("c", 2, 70, 0)],
        );
        assert_eq!(
            m.get("a").copied(),
            Some(Saving {
                hits: 3,
                fills: 1,
                fill_cost: Money::from_picos(100),
                avoided: Money::from_picos(300)
            })
        );
        assert_eq!(m.get("a").map(Saving::net), Some(Money::from_picos(200)));
        assert_eq!(m.get("b").map(Saving::net), Some(Money::from_picos(50)));
        assert_eq!(m.get("c").map(Saving::net), Some(Money::from_picos(-70)));
    }
}
