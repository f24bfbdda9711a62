//! Server-side SVG charts: stacked bars over time, split into the top groups and "other".
//!
//! All geometry is integer arithmetic on the values themselves (picodollars or counts, as i128), so a chart of
//! money never goes through floating point, and pixel positions are whole numbers anyway. Colours come from
//! classes in `app.css` (SVG presentation via CSS), because the content security policy forbids inline styles.

use std::collections::HashMap;
use std::fmt::Write as _;

use spendgate_core::query::SortBy;
use spendgate_core::time::Grain;
use spendgate_core::Money;
use spendgate_store::SeriesPoint;

use super::html::{compact, esc, hm, int, short_date};

/// What the values of a chart are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Picodollars.
    Money,
    Requests,
    Tokens,
}

impl Unit {
    pub fn of(metric: SortBy) -> Unit {
        match metric {
            SortBy::Cost => Unit::Money,
            SortBy::Requests => Unit::Requests,
            SortBy::Tokens => Unit::Tokens,
        }
    }

    /// A short label for an axis tick.
    fn tick(self, v: i128) -> String {
        match self {
            Unit::Money => Money::from_picos(v).display_usd(),
            Unit::Requests | Unit::Tokens => compact(u64::try_from(v).unwrap_or(0)),
        }
    }

    /// The exact value, for hover text.
    pub fn exact(self, v: i128) -> String {
        match self {
            Unit::Money => format!("${}", Money::from_picos(v).to_usd_string()),
            Unit::Requests => format!("{} requests", int(u64::try_from(v).unwrap_or(0))),
            Unit::Tokens => format!("{} tokens", int(u64::try_from(v).unwrap_or(0))),
        }
    }

    fn axis_title(self) -> &'static str {
        match self {
            Unit::Money => "USD",
            Unit::Requests => "requests",
            Unit::Tokens => "tokens",
        }
    }
}

/// One stacked layer of a chart.
#[derive(Debug, Clone)]
pub struct Layer {
    pub label: String,
    /// One value per bucket.
    pub values: Vec<i128>,
}

/// A chart ready to draw.
#[derive(Debug, Clone)]
pub struct Chart {
    pub grain: Grain,
    /// Bucket starts, evenly spaced by `grain`.
    pub buckets: Vec<i64>,
    pub layers: Vec<Layer>,
    pub unit: Unit,
}

/// The grain that gives a readable number of bars for a window.
pub fn grain_for(from_ms: i64, to_ms: i64) -> Grain {
    let span = to_ms - from_ms;
    if span <= 3 * Grain::Hour.ms() {
        Grain::Minute
    } else if span <= 8 * Grain::Day.ms() {
        Grain::Hour
    } else {
        Grain::Day
    }
}

/// Builds a chart from series points: the `top` largest groups by `metric` get their own layer, the rest are
/// summed as "other".
pub fn build(
    points: &[SeriesPoint],
    from_ms: i64,
    to_ms: i64,
    grain: Grain,
    metric: SortBy,
    top: usize,
) -> Chart {
    let start = grain.floor(from_ms);
    let mut buckets = Vec::new();
    let mut b = start;
    while b < to_ms && buckets.len() < 2000 {
        buckets.push(b);
        b += grain.ms();
    }
    let index = |ms: i64| -> Option<usize> {
        let i = usize::try_from((ms - start).div_euclid(grain.ms())).ok()?;
        (i < buckets.len()).then_some(i)
    };
    let mut totals: HashMap<String, i128> = HashMap::new();
    for p in points {
        *totals
            .entry(p.group.clone().unwrap_or_default())
            .or_default() += p.totals.metric(metric);
    }
    let mut order: Vec<(String, i128)> = totals.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let named: Vec<String> = order.iter().take(top).map(|(l, _)| l.clone()).collect();
    let has_other = order.len() > top;
    let mut layers: Vec<Layer> = named
        .iter()
        .map(|l| Layer {
            label: l.clone(),
            values: vec![0; buckets.len()],
        })
        .collect();
    if has_other {
        layers.push(Layer {
            label: "other".into(),
            values: vec![0; buckets.len()],
        });
    }
    let pos: HashMap<&str, usize> = named
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    for p in points {
        let Some(i) = index(p.bucket_start_ms) else {
            continue;
        };
        let label = p.group.as_deref().unwrap_or_default();
        let layer = match pos.get(label) {
            Some(&l) => l,
            None => named.len(),
        };
        if let Some(l) = layers.get_mut(layer) {
            l.values[i] += p.totals.metric(metric);
        }
    }
    Chart {
        grain,
        buckets,
        layers,
        unit: Unit::of(metric),
    }
}

/// A "nice" step (1, 2 or 5 times a power of ten) so that about `ticks` steps cover `max`.
fn nice_step(max: i128, ticks: i128) -> i128 {
    let raw = ((max + ticks - 1) / ticks).max(1);
    let mut pow: i128 = 1;
    while pow.saturating_mul(10) <= raw {
        pow *= 10;
    }
    for m in [1, 2, 5, 10] {
        if pow * m >= raw {
            return pow * m;
        }
    }
    pow * 10
}

const W: i128 = 960;
const H: i128 = 250;
const LEFT: i128 = 78;
const RIGHT: i128 = 10;
const TOP: i128 = 14;
const BOTTOM: i128 = 26;

impl Chart {
    pub fn is_empty(&self) -> bool {
        self.layers.iter().all(|l| l.values.iter().all(|v| *v == 0))
    }

    fn bucket_label(&self, ms: i64, first: bool) -> String {
        match self.grain {
            Grain::Day => short_date(ms),
            Grain::Hour if first || ms.rem_euclid(Grain::Day.ms()) == 0 => short_date(ms),
            _ => hm(ms),
        }
    }

    fn bucket_title(&self, ms: i64) -> String {
        match self.grain {
            Grain::Day => format!("{} (UTC day)", super::html::date(ms)),
            Grain::Hour => format!(
                "{} {}–{} UTC",
                super::html::date(ms),
                hm(ms),
                hm(ms + Grain::Hour.ms())
            ),
            Grain::Minute => format!("{} {} UTC", super::html::date(ms), hm(ms)),
        }
    }

    /// The chart as an inline SVG element plus an HTML legend. `aria_label` describes it for screen readers.
    pub fn svg(&self, aria_label: &str) -> String {
        let labels: Vec<&str> = self.layers.iter().map(|l| l.label.as_str()).collect();
        let classes = layer_classes(&labels);
        let n = i128::try_from(self.buckets.len()).unwrap_or(1).max(1);
        let plot_w = W - LEFT - RIGHT;
        let plot_h = H - TOP - BOTTOM;
        let stack_max = (0..self.buckets.len())
            .map(|i| {
                self.layers
                    .iter()
                    .map(|l| l.values.get(i).copied().unwrap_or(0))
                    .sum::<i128>()
            })
            .max()
            .unwrap_or(0);
        let step = nice_step(stack_max.max(1), 4);
        let top_value = if stack_max <= 0 {
            step * 4
        } else {
            step * ((stack_max + step - 1) / step)
        };
        let mut s = String::with_capacity(8192);
        let _ = write!(
            s,
            "<figure class=\"chart\"><svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\" \
             class=\"chart-svg\">",
            esc(aria_label)
        );
        // Horizontal grid lines and y-axis labels.
        let mut v = 0;
        while v <= top_value {
            let y = TOP + plot_h - v * plot_h / top_value;
            let _ = write!(
                s,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\"/>\
                 <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                W - RIGHT,
                LEFT - 6,
                y + 4,
                esc(&self.unit.tick(v))
            );
            v += step;
        }
        let _ = write!(
            s,
            "<text class=\"axis unit\" x=\"4\" y=\"{}\">{}</text>",
            TOP - 2,
            self.unit.axis_title()
        );
        // Bars, stacked from the largest group at the bottom.
        for (i, bucket) in self.buckets.iter().enumerate() {
            let ii = i128::try_from(i).unwrap_or(0);
            let x0 = LEFT + plot_w * ii / n;
            let x1 = LEFT + plot_w * (ii + 1) / n;
            let gap = if x1 - x0 >= 6 { 1 } else { 0 };
            let width = (x1 - x0 - gap).max(1);
            let mut cum = 0i128;
            let total: i128 = self
                .layers
                .iter()
                .map(|l| l.values.get(i).copied().unwrap_or(0))
                .sum();
            let when = self.bucket_title(*bucket);
            for (layer, class) in self.layers.iter().zip(&classes) {
                let value = layer.values.get(i).copied().unwrap_or(0);
                if value <= 0 {
                    continue;
                }
                let y_low = TOP + plot_h - cum * plot_h / top_value;
                cum += value;
                let y_high = TOP + plot_h - cum * plot_h / top_value;
                let height = (y_low - y_high).max(1);
                let _ = write!(
                    s,
                    "<rect class=\"bar {class}\" x=\"{x0}\" y=\"{}\" width=\"{width}\" height=\"{height}\">\
                     <title>{}\n{}: {}\ntotal: {}</title></rect>",
                    y_low - height,
                    esc(&when),
                    esc(&layer.label),
                    esc(&self.unit.exact(value)),
                    esc(&self.unit.exact(total)),
                );
            }
        }
        // X-axis labels: about eight, evenly spaced.
        let every = usize::try_from((n + 7) / 8).unwrap_or(1).max(1);
        for (i, bucket) in self.buckets.iter().enumerate().step_by(every) {
            let ii = i128::try_from(i).unwrap_or(0);
            let x = LEFT + plot_w * ii / n;
            let _ = write!(
                s,
                "<line class=\"tick\" x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\"/>\
                 <text class=\"axis\" x=\"{x}\" y=\"{}\">{}</text>",
                TOP + plot_h,
                TOP + plot_h + 4,
                H - 8,
                esc(&self.bucket_label(*bucket, i == 0))
            );
        }
        let _ = write!(
            s,
            "<line class=\"baseline\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>",
            W - RIGHT,
            TOP + plot_h,
            TOP + plot_h
        );
        if self.is_empty() {
            let _ = write!(
                s,
                "<text class=\"empty-chart\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">No traffic in this window yet</text>",
                LEFT + plot_w / 2,
                TOP + plot_h / 2
            );
        }
        s.push_str("</svg>");
        // The legend, with each group's total over the window.
        s.push_str("<figcaption class=\"legend\">");
        for (layer, class) in self.layers.iter().zip(&classes) {
            let sum: i128 = layer.values.iter().sum();
            let _ = write!(
                s,
                "<span class=\"key\" title=\"{}\"><i class=\"sw {}\"></i>{} <b>{}</b></span>",
                esc(&self.unit.exact(sum)),
                class,
                esc(&layer.label),
                esc(&self.unit.tick(sum)),
            );
        }
        let unit_note = match self.grain {
            Grain::Minute => "per minute",
            Grain::Hour => "per hour",
            Grain::Day => "per day",
        };
        let _ = write!(
            s,
            "<span class=\"muted grain\">{unit_note}, UTC</span></figcaption></figure>"
        );
        s
    }
}

/// How many colours the palette has (`.s0` to `.s11` in `app.css`).
const PALETTE: usize = 12;

/// FNV-1a of a group's name: where its colour comes from.
fn name_hash(label: &str) -> u64 {
    label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The colour class of each layer. "other" is always grey; any other group (a team, a model, ...) takes the
/// colour its name hashes to, so a team keeps its colour from chart to chart and from one hour to the next,
/// whatever its rank. Where two groups of one chart hash to the same colour, the one whose name hashes lower
/// keeps it and the other takes the next free one: that depends on the names present, never on the ranking.
fn layer_classes(labels: &[&str]) -> Vec<String> {
    let mut order: Vec<usize> = (0..labels.len())
        .filter(|i| labels[*i] != "other")
        .collect();
    order.sort_by_key(|i| (name_hash(labels[*i]), labels[*i]));
    let mut used = [false; PALETTE];
    let mut out = vec!["s-other".to_string(); labels.len()];
    for i in order {
        let preferred = usize::try_from(name_hash(labels[i]) % PALETTE as u64).unwrap_or(0);
        let colour = (0..PALETTE)
            .map(|step| (preferred + step) % PALETTE)
            .find(|c| !used[*c])
            .unwrap_or(preferred);
        used[colour] = true;
        out[i] = format!("s{colour}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use spendgate_core::Totals;

    fn point(bucket: i64, group: &str, picos: i128) -> SeriesPoint {
        SeriesPoint {
            bucket_start_ms: bucket,
            group: Some(group.into()),
            totals: Totals {
                cost: Money::from_picos(picos),
                requests: 1,
                ..Totals::default()
            },
        }
    }

    #[test]
    fn steps_are_nice() {
        assert_eq!(nice_step(100, 4), 50);
        assert_eq!(nice_step(7, 4), 2);
        assert_eq!(nice_step(1_000_000_000_000, 4), 500_000_000_000);
    }

    #[test]
    fn small_groups_fold_into_other_and_values_stay_exact() {
        let m = Grain::Minute.ms();
        let pts = vec![
            point(0, "a", 500),
            point(0, "b", 300),
            point(m, "c", 7),
            point(m, "a", 1),
        ];
        let c = build(&pts, 0, 2 * m, Grain::Minute, SortBy::Cost, 2);
        assert_eq!(c.buckets, vec![0, m]);
        let labels: Vec<_> = c.layers.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(labels, ["a", "b", "other"]);
        assert_eq!(c.layers[0].values, vec![500, 1]);
        assert_eq!(c.layers[2].values, vec![0, 7]);
        let svg = c.svg("test");
        assert!(
            svg.contains("$0.000000000007") || svg.contains("$0.00"),
            "exact value in hover text"
        );
        assert!(svg.contains("<title>"));
    }

    #[test]
    fn a_group_keeps_its_colour_whatever_its_rank() {
        let m = Grain::Minute.ms();
        // The class on a group's legend swatch, from the rendered chart.
        let class_of = |pts: &[SeriesPoint], label: &str| {
            let svg = build(pts, 0, m, Grain::Minute, SortBy::Cost, 5).svg("x");
            let at = svg.find(&format!("></i>{label} ")).unwrap();
            let start = svg[..at].rfind("class=\"sw ").unwrap() + "class=\"sw ".len();
            svg[start..at - 1].to_string()
        };
        // The same teams ranked differently: each keeps its colour.
        let a = [
            point(0, "support", 900),
            point(0, "search", 5),
            point(0, "legal", 1),
        ];
        let b = [
            point(0, "support", 1),
            point(0, "search", 500),
            point(0, "legal", 400),
        ];
        for team in ["support", "search", "legal"] {
            assert_eq!(class_of(&a, team), class_of(&b, team), "{team}");
        }
        // Names that hash to the same colour still get different ones; "other" is grey.
        let names = [
            "growth",
            "legal",
            "data-science",
            "support",
            "No team",
            "search",
            "other",
        ];
        let classes = layer_classes(&names);
        let mut distinct = classes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), names.len(), "{classes:?}");
        assert_eq!(classes[6], "s-other");
    }

    #[test]
    fn labels_are_escaped() {
        let pts = vec![point(0, "<script>alert(1)</script>", 5)];
        let svg = build(&pts, 0, Grain::Minute.ms(), Grain::Minute, SortBy::Cost, 5).svg("x");
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
    }
}
