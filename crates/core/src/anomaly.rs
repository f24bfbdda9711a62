//! Anomaly detectors as plain arithmetic over totals: a spend rate far above its own baseline, prompt expansion
//! (tokens per request jumping while volume is flat), a rising unattributed (No team) share, and retry loops
//! (one key sending the same request fingerprint many times in a short window).
//!
//! Seasonality: a group's baseline is the *same time of day* on previous days (the median over them), so a team
//! that is busy every afternoon is compared with its other afternoons, not with its nights. The window compared
//! is the last 60 minutes, built from hourly rollup buckets: the current, partial hour in full plus the share of
//! the previous hour that falls in the last 60 minutes. Baseline days are built the same way (their "current"
//! hour is complete, so it is scaled to the elapsed part), which keeps both sides comparable at any minute.
//!
//! Every figure is an integer (money in picodollars, shares in basis points); no floats.

use serde::Serialize;

use crate::money::Money;
use crate::query::Totals;
use crate::time::{Grain, DAY_MS, HOUR_MS};

/// Thresholds of the detectors. The defaults are deliberately conservative: a signal should be worth reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalyConfig {
    /// How far back the retry-loop detector looks.
    pub retry_window_ms: i64,
    /// Identical requests from one key within the window that make a retry loop.
    pub retry_min_repeats: u64,
    /// A spend rate is flagged at this percentage of its baseline median or more (300 = three times).
    pub rate_factor_pct: u32,
    /// ... and only when it exceeds the median by at least this much per 60-minute window.
    pub rate_min_excess: Money,
    /// Baseline days with data needed before the spend-rate, expansion and share detectors judge anything.
    pub min_baseline_days: usize,
    /// How many previous days form the baseline.
    pub baseline_days: usize,
    /// Tokens per request at this percentage of the baseline or more is an expansion (150 = one and a half).
    pub expansion_factor_pct: u32,
    /// ... while requests stay within this many percent of the baseline median.
    pub expansion_volume_band_pct: u32,
    /// ... and the window holds at least this many requests.
    pub expansion_min_requests: u64,
    /// The No team share of cost must rise by this many basis points (1000 = ten percentage points).
    pub unattributed_rise_bp: u32,
    /// ... while the window's total cost is at least this.
    pub unattributed_min_cost: Money,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            retry_window_ms: 5 * 60_000,
            retry_min_repeats: 20,
            rate_factor_pct: 300,
            rate_min_excess: Money::from_picos(500_000_000_000), // $0.50
            min_baseline_days: 3,
            baseline_days: 7,
            expansion_factor_pct: 150,
            expansion_volume_band_pct: 25,
            expansion_min_requests: 20,
            unattributed_rise_bp: 1000,
            unattributed_min_cost: Money::from_picos(100_000_000_000), // $0.10
        }
    }
}

/// A group's last 60 minutes and the same 60 minutes on each previous day that had data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub current: Totals,
    pub baselines: Vec<Totals>,
}

/// Scales every additive figure of `t` by `num / den` (rounded down).
pub fn scale(t: &Totals, num: i64, den: i64) -> Totals {
    if den <= 0 || num <= 0 {
        return Totals::default();
    }
    let (n, d) = (
        u128::from(num.unsigned_abs()),
        u128::from(den.unsigned_abs()),
    );
    let s = |v: u64| u64::try_from(u128::from(v) * n / d).unwrap_or(u64::MAX);
    Totals {
        cost: Money::from_picos(t.cost.picos().saturating_mul(i128::from(num)) / i128::from(den)),
        requests: s(t.requests),
        errors: s(t.errors),
        input_tokens: s(t.input_tokens),
        output_tokens: s(t.output_tokens),
        cached_input_tokens: s(t.cached_input_tokens),
        cache_write_tokens: s(t.cache_write_tokens),
        avoided_cost: Money::from_picos(
            t.avoided_cost.picos().saturating_mul(i128::from(num)) / i128::from(den),
        ),
    }
}

/// Builds a group's [`Window`] at `now_ms` from its hourly totals (`(bucket start, totals)`, any order, absent
/// hours are zero). `history_start_ms` is when the store's data begins: baseline days that end before it are
/// left out (they are unknown, not zero), while days inside the history where the group was idle count as zero.
pub fn window_from_hours(
    hours: &[(i64, Totals)],
    now_ms: i64,
    history_start_ms: i64,
    days: usize,
) -> Window {
    let hour = Grain::Hour.floor(now_ms);
    let elapsed = (now_ms - hour).clamp(0, HOUR_MS);
    let at = |start: i64| -> Totals {
        let mut t = Totals::default();
        hours
            .iter()
            .filter(|(b, _)| *b == start)
            .for_each(|(_, v)| t.add(v));
        t
    };
    // The previous hour contributes the part of it that lies in the last 60 minutes.
    let mut current = scale(&at(hour - HOUR_MS), HOUR_MS - elapsed, HOUR_MS);
    current.add(&at(hour));
    let mut baselines = Vec::new();
    for k in 1..=i64::try_from(days).unwrap_or(7) {
        let h = hour - k * DAY_MS;
        // The day is known only if the history covers the whole window on that day.
        if h - HOUR_MS + (HOUR_MS - elapsed) < history_start_ms {
            continue;
        }
        let mut t = scale(&at(h - HOUR_MS), HOUR_MS - elapsed, HOUR_MS);
        t.add(&scale(&at(h), elapsed, HOUR_MS));
        baselines.push(t);
    }
    Window { current, baselines }
}

/// The median of integers (the mean of the two middle values for an even count, rounded down).
pub fn median(values: &[i128]) -> Option<i128> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]).div_euclid(2)
    })
}

/// A spend rate far above the group's usual rate at this time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SpendRate {
    /// Spend in the last 60 minutes.
    pub current: Money,
    /// The median spend in the same 60 minutes on the baseline days.
    pub baseline_median: Money,
    pub baseline_days: usize,
    /// `current / median` in percent (`None` when the median is zero).
    pub ratio_pct: Option<u64>,
}

pub fn spend_rate(w: &Window, cfg: &AnomalyConfig) -> Option<SpendRate> {
    if w.baselines.len() < cfg.min_baseline_days.max(1) {
        return None;
    }
    let costs: Vec<i128> = w.baselines.iter().map(|t| t.cost.picos()).collect();
    let med = median(&costs)?;
    let cur = w.current.cost.picos();
    let far = cur.saturating_mul(100) >= med.saturating_mul(i128::from(cfg.rate_factor_pct));
    let material = cur - med >= cfg.rate_min_excess.picos();
    (far && material).then(|| SpendRate {
        current: w.current.cost,
        baseline_median: Money::from_picos(med),
        baseline_days: w.baselines.len(),
        ratio_pct: (med > 0)
            .then(|| u64::try_from(cur.saturating_mul(100) / med).unwrap_or(u64::MAX)),
    })
}

/// Tokens per request jumping while the number of requests stays about the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PromptExpansion {
    pub tokens_per_request: u64,
    pub baseline_tokens_per_request: u64,
    pub requests: u64,
    pub baseline_requests: u64,
    pub baseline_days: usize,
}

pub fn prompt_expansion(w: &Window, cfg: &AnomalyConfig) -> Option<PromptExpansion> {
    if w.baselines.len() < cfg.min_baseline_days.max(1)
        || w.current.requests < cfg.expansion_min_requests
    {
        return None;
    }
    let reqs: Vec<i128> = w.baselines.iter().map(|t| i128::from(t.requests)).collect();
    let tprs: Vec<i128> = w
        .baselines
        .iter()
        .filter(|t| t.requests > 0)
        .map(|t| i128::from(t.tokens_per_request()))
        .collect();
    let base_req = median(&reqs)?;
    let base_tpr = median(&tprs)?;
    if base_req <= 0 || base_tpr <= 0 {
        return None;
    }
    let req = i128::from(w.current.requests);
    let tpr = i128::from(w.current.tokens_per_request());
    let flat_volume =
        (req - base_req).abs() * 100 <= base_req * i128::from(cfg.expansion_volume_band_pct);
    let expanded = tpr * 100 >= base_tpr * i128::from(cfg.expansion_factor_pct);
    (flat_volume && expanded).then(|| PromptExpansion {
        tokens_per_request: w.current.tokens_per_request(),
        baseline_tokens_per_request: u64::try_from(base_tpr).unwrap_or(0),
        requests: w.current.requests,
        baseline_requests: u64::try_from(base_req).unwrap_or(0),
        baseline_days: w.baselines.len(),
    })
}

/// The No team bucket taking a clearly larger share of spend than usual at this time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UnattributedShare {
    /// Share of cost, basis points.
    pub share_bp: u32,
    pub baseline_share_bp: u32,
    pub unattributed: Money,
    pub total: Money,
    pub baseline_days: usize,
}

/// `no_team` and `all` must be built over the same days (see [`window_from_hours`]).
pub fn unattributed_share(
    no_team: &Window,
    all: &Window,
    cfg: &AnomalyConfig,
) -> Option<UnattributedShare> {
    let days = all.baselines.len();
    if days < cfg.min_baseline_days.max(1)
        || no_team.baselines.len() != days
        || all.current.cost < cfg.unattributed_min_cost
    {
        return None;
    }
    let share = |part: &Totals, whole: &Totals| {
        i128::from(crate::query::share_bp(
            part.cost.picos(),
            whole.cost.picos(),
        ))
    };
    let shares: Vec<i128> = no_team
        .baselines
        .iter()
        .zip(&all.baselines)
        .map(|(n, a)| share(n, a))
        .collect();
    let base = median(&shares)?;
    let now = share(&no_team.current, &all.current);
    (now - base >= i128::from(cfg.unattributed_rise_bp)).then(|| UnattributedShare {
        share_bp: u32::try_from(now).unwrap_or(0),
        baseline_share_bp: u32::try_from(base).unwrap_or(0),
        unattributed: no_team.current.cost,
        total: all.current.cost,
        baseline_days: days,
    })
}

/// How often one key sent one request fingerprint in a window (read from the spend logs by the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepeatedRequest {
    pub key_id: i64,
    /// The key's team (`None`: No team) and workflow as recorded on its latest such request.
    pub team: Option<String>,
    pub workflow: Option<String>,
    pub fingerprint: u64,
    pub requests: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub cost: Money,
}

/// The repeats that make a retry loop: at least `retry_min_repeats` identical requests from one key within the
/// window, largest first.
pub fn retry_loops(rows: &[RepeatedRequest], cfg: &AnomalyConfig) -> Vec<RepeatedRequest> {
    let mut out: Vec<RepeatedRequest> = rows
        .iter()
        .filter(|r| {
            r.requests >= cfg.retry_min_repeats.max(2)
                && r.last_ms - r.first_ms <= cfg.retry_window_ms
        })
        .cloned()
        .collect();
    out.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.key_id.cmp(&b.key_id)));
    out
}

/// A request fingerprint: XXH64 of the request body exactly as received, seeded by the endpoint's FNV-1a. It tells
/// identical requests apart from different ones without keeping anything of the prompt: the hash cannot be
/// turned back into the body. (Until 2026-12-07 it was FNV-1a over both, one multiplication per byte in a single
/// chain: a 100 KB body cost more than the rest of the request. Requests on either side of the upgrade get
/// different fingerprints, so a retry loop running across it counts from the upgrade.)
pub fn fingerprint(endpoint: &str, body: &[u8]) -> u64 {
    crate::hash::xxh64(body, crate::hash::fnv1a(&[endpoint.as_bytes()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_000 * DAY_MS; // midnight UTC

    fn usd(s: &str) -> Money {
        Money::parse_usd(s).unwrap()
    }

    fn totals(requests: u64, tokens_per_request: u64, cost_per_request_pico: i128) -> Totals {
        Totals {
            requests,
            input_tokens: requests * tokens_per_request,
            cost: Money::from_picos(i128::from(requests) * cost_per_request_pico),
            ..Totals::default()
        }
    }

    /// Requests in hour-of-day `h`: quiet at night, a peak in the afternoon (a daily season), with a little
    /// deterministic noise per day.
    fn seasonal_requests(day: i64, h: i64) -> u64 {
        let base: u64 = match h {
            0..=6 => 20,
            7..=9 => 200,
            10..=17 => 600 + u64::try_from((h - 10) * 40).unwrap(),
            18..=21 => 250,
            _ => 60,
        };
        let noise = u64::try_from((day * 7 + h * 13).rem_euclid(11)).unwrap(); // 0..=10 percent
        base * (95 + noise) / 100
    }

    /// Eight days of hourly totals for one group: ~800 tokens a request at $0.002 a request.
    fn seasonal_history(days: i64) -> Vec<(i64, Totals)> {
        let mut out = Vec::new();
        for d in 0..days {
            for h in 0..24 {
                let n = seasonal_requests(d, h);
                let tpr = 780 + u64::try_from((d + h).rem_euclid(5)).unwrap() * 10;
                out.push((T0 + d * DAY_MS + h * HOUR_MS, totals(n, tpr, 2_000_000_000)));
            }
        }
        out
    }

    fn cfg() -> AnomalyConfig {
        AnomalyConfig {
            rate_min_excess: usd("0.10"),
            ..AnomalyConfig::default()
        }
    }

    #[test]
    fn steady_seasonal_traffic_raises_nothing_at_any_minute_of_the_last_day() {
        let hist = seasonal_history(8);
        let all = hist.clone();
        // No team carries a steady ~10 % of the traffic.
        let no_team: Vec<(i64, Totals)> = hist.iter().map(|(b, t)| (*b, scale(t, 1, 10))).collect();
        for minute in (0..24 * 60).step_by(7) {
            let now = T0 + 7 * DAY_MS + minute * 60_000 + 1;
            // The current hour is only partly recorded at `now`.
            let visible: Vec<(i64, Totals)> = hist
                .iter()
                .filter(|(b, _)| *b < Grain::Hour.floor(now))
                .cloned()
                .chain(
                    hist.iter()
                        .filter(|(b, _)| *b == Grain::Hour.floor(now))
                        .map(|(b, t)| (*b, scale(t, now - b, HOUR_MS))),
                )
                .collect();
            let w = window_from_hours(&visible, now, T0, 7);
            assert!(w.baselines.len() >= 6, "{}", w.baselines.len());
            assert_eq!(spend_rate(&w, &cfg()), None, "minute {minute}: {w:?}");
            assert_eq!(prompt_expansion(&w, &cfg()), None, "minute {minute}");
            let nw = window_from_hours(&no_team, now, T0, 7);
            let aw = window_from_hours(&all, now, T0, 7);
            assert_eq!(
                unattributed_share(&nw, &aw, &cfg()),
                None,
                "minute {minute}"
            );
        }
    }

    #[test]
    fn a_spike_against_the_same_hour_of_previous_days_is_flagged() {
        let mut hist = seasonal_history(8);
        // At 03:00 on the last day, a night hour, spend is five times the usual night.
        let spike_hour = T0 + 7 * DAY_MS + 3 * HOUR_MS;
        for (b, t) in hist.iter_mut() {
            if *b == spike_hour {
                *t = scale(t, 5, 1);
            }
        }
        let now = spike_hour + HOUR_MS - 1;
        let w = window_from_hours(&hist, now, T0, 7);
        let s = spend_rate(&w, &cfg()).expect("the night spike is flagged");
        assert!(s.ratio_pct.unwrap() >= 300, "{s:?}");
        // The same absolute spend in the afternoon peak is normal there: seasonality, not an anomaly.
        let afternoon = T0 + 7 * DAY_MS + 15 * HOUR_MS + HOUR_MS - 1;
        assert_eq!(
            spend_rate(&window_from_hours(&hist, afternoon, T0, 7), &cfg()),
            None
        );
    }

    #[test]
    fn small_absolute_moves_and_thin_history_are_not_flagged() {
        let w = Window {
            current: totals(10, 100, 1_000_000_000),
            baselines: vec![totals(1, 100, 1_000_000_000); 7],
        };
        // Ten times the median, but only $0.009 more.
        assert_eq!(spend_rate(&w, &cfg()), None);
        let thin = Window {
            current: totals(1000, 100, 1_000_000_000),
            baselines: vec![totals(1, 100, 1_000_000_000); 2],
        };
        assert_eq!(spend_rate(&thin, &cfg()), None);
        let mut enough = thin.clone();
        enough.baselines.push(totals(1, 100, 1_000_000_000));
        assert!(spend_rate(&enough, &cfg()).is_some());
    }

    #[test]
    fn prompt_expansion_fires_on_longer_prompts_at_flat_volume_only() {
        let base = vec![
            totals(100, 800, 1),
            totals(104, 790, 1),
            totals(96, 810, 1),
            totals(101, 805, 1),
        ];
        let grown = Window {
            current: totals(103, 1_700, 1),
            baselines: base.clone(),
        };
        let e = prompt_expansion(&grown, &cfg()).expect("expansion");
        assert_eq!(e.tokens_per_request, 1_700);
        assert_eq!(e.baseline_tokens_per_request, 802);
        // More requests of the usual size: volume, not expansion.
        let busier = Window {
            current: totals(300, 800, 1),
            baselines: base.clone(),
        };
        assert_eq!(prompt_expansion(&busier, &cfg()), None);
        // Longer prompts, but volume doubled too: not "while volume is flat".
        let both = Window {
            current: totals(200, 1_700, 1),
            baselines: base.clone(),
        };
        assert_eq!(prompt_expansion(&both, &cfg()), None);
        // A modest growth (+20 %) stays quiet.
        let modest = Window {
            current: totals(100, 960, 1),
            baselines: base,
        };
        assert_eq!(prompt_expansion(&modest, &cfg()), None);
    }

    #[test]
    fn prompt_expansion_is_found_in_seasonal_history() {
        let mut hist = seasonal_history(8);
        let hour = T0 + 7 * DAY_MS + 14 * HOUR_MS;
        for (b, t) in hist.iter_mut() {
            // Half of the current hour is recorded at 14:30.
            if *b == hour {
                *t = totals(t.requests / 2, 2_000, 5_000_000_000);
            } else if *b == hour - HOUR_MS {
                *t = totals(t.requests, 2_000, 5_000_000_000);
            }
        }
        let w = window_from_hours(&hist, hour + 30 * 60_000, T0, 7);
        assert!(prompt_expansion(&w, &cfg()).is_some());
    }

    #[test]
    fn rising_unattributed_share_is_flagged() {
        let all: Vec<Totals> = vec![totals(100, 100, 10_000_000_000); 5];
        let no_team: Vec<Totals> = vec![totals(10, 100, 10_000_000_000); 5];
        let aw = Window {
            current: totals(100, 100, 10_000_000_000),
            baselines: all.clone(),
        };
        let quiet = Window {
            current: totals(12, 100, 10_000_000_000),
            baselines: no_team.clone(),
        };
        assert_eq!(unattributed_share(&quiet, &aw, &cfg()), None);
        let risen = Window {
            current: totals(35, 100, 10_000_000_000),
            baselines: no_team,
        };
        let u = unattributed_share(&risen, &aw, &cfg()).expect("rise");
        assert_eq!((u.share_bp, u.baseline_share_bp), (3_500, 1_000));
    }

    #[test]
    fn baseline_days_before_the_history_are_unknown_not_zero() {
        let hist = seasonal_history(3);
        let now = T0 + 2 * DAY_MS + 12 * HOUR_MS;
        let w = window_from_hours(&hist, now, T0, 7);
        assert_eq!(w.baselines.len(), 2);
        // An idle day inside the history is a zero baseline.
        let w = window_from_hours(&[], now, T0, 7);
        assert_eq!(w.baselines.len(), 2);
        assert_eq!(w.baselines[0], Totals::default());
    }

    #[test]
    fn window_counts_the_last_sixty_minutes() {
        let hours = vec![
            (T0 + 9 * HOUR_MS, totals(60, 10, 1)),
            (T0 + 10 * HOUR_MS, totals(15, 10, 1)),
        ];
        // 10:15: the last 60 minutes are 09:15 to 10:15, so 45 minutes' worth of 09:00 plus all of 10:00 so far.
        let w = window_from_hours(&hours, T0 + 10 * HOUR_MS + 15 * 60_000, T0 - DAY_MS, 1);
        assert_eq!(w.current.requests, 45 + 15);
    }

    #[test]
    fn retry_loops_need_many_identical_requests_in_the_window() {
        let row = |key, n, span| RepeatedRequest {
            key_id: key,
            team: None,
            workflow: None,
            fingerprint: 7,
            requests: n,
            first_ms: 0,
            last_ms: span,
            cost: Money::ZERO,
        };
        let rows = vec![
            row(1, 1200, 120_000),
            row(2, 5, 240_000),
            row(3, 19, 60_000),
        ];
        let found = retry_loops(&rows, &cfg());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key_id, 1);
        assert!(retry_loops(&[row(4, 20, 60_000)], &cfg()).len() == 1);
    }

    #[test]
    fn fingerprints_tell_requests_apart_and_are_stable() {
        let a = fingerprint("chat.completions", br#"{"model":"m","messages":[]}"#);
        assert_eq!(
            a,
            fingerprint("chat.completions", br#"{"model":"m","messages":[]}"#)
        );
        assert_ne!(
            a,
            fingerprint("chat.completions", br#"{"model":"m","messages":[1]}"#)
        );
        assert_ne!(
            a,
            fingerprint("embeddings", br#"{"model":"m","messages":[]}"#)
        );
        // XXH64 of nothing, seeded by FNV-1a of nothing (its offset basis), from the reference implementation's
        // Python binding: the hash stays the same across versions and machines.
        assert_eq!(fingerprint("", b""), 0xc3a8_b372_5dd1_ffa2);
    }

    #[test]
    fn medians_are_robust() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5, 1, 1000]), Some(5));
        assert_eq!(median(&[1, 3]), Some(2));
    }
}
