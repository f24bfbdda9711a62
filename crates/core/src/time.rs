//! Time helpers: milliseconds since the epoch, buckets of the rollups, RFC 3339 in and out.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The grains the rollups are kept at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grain {
    Minute,
    Hour,
    Day,
}

impl Grain {
    pub const ALL: [Grain; 3] = [Grain::Minute, Grain::Hour, Grain::Day];

    pub fn ms(self) -> i64 {
        match self {
            Grain::Minute => MINUTE_MS,
            Grain::Hour => HOUR_MS,
            Grain::Day => DAY_MS,
        }
    }

    /// The bucket number (whole grains since the epoch, UTC) that holds `ms`.
    pub fn bucket(self, ms: i64) -> i64 {
        ms.div_euclid(self.ms())
    }

    pub fn floor(self, ms: i64) -> i64 {
        self.bucket(ms) * self.ms()
    }

    pub fn ceil(self, ms: i64) -> i64 {
        let f = self.floor(ms);
        if f == ms {
            f
        } else {
            f + self.ms()
        }
    }
}

pub fn now_ms() -> i64 {
    let ns = OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
}

pub fn to_rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A time span split into pieces that each match whole buckets of one grain: whole days in the middle, whole
/// hours around them, whole minutes at the edges. Reading each piece from its own rollup gives the exact
/// total of the span while reading the fewest rows.
pub fn split_span(from_ms: i64, to_ms: i64) -> Vec<(Grain, i64, i64)> {
    let mut out = Vec::new();
    split_into(from_ms, to_ms, Grain::Day, &mut out);
    out
}

fn split_into(from: i64, to: i64, grain: Grain, out: &mut Vec<(Grain, i64, i64)>) {
    if from >= to {
        return;
    }
    let finer = match grain {
        Grain::Day => Some(Grain::Hour),
        Grain::Hour => Some(Grain::Minute),
        Grain::Minute => None,
    };
    let Some(finer) = finer else {
        out.push((grain, from, to));
        return;
    };
    let a = grain.ceil(from);
    let b = grain.floor(to);
    if a < b {
        split_into(from, a, finer, out);
        out.push((grain, a, b));
        split_into(b, to, finer, out);
    } else {
        split_into(from, to, finer, out);
    }
}

/// One piece of a rollup read: whole buckets of `grain` in `[from_ms, to_ms)`, added to the answer or, when
/// `subtract` is set, taken away from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanPiece {
    pub grain: Grain,
    pub from_ms: i64,
    pub to_ms: i64,
    pub subtract: bool,
}

/// Plans the rollup reads that give the exact total of `[from_ms, to_ms)` from the fewest rows.
///
/// Two things beat `split_span`'s plain split. When `open_end` is set (the window reaches the present, so nothing
/// can have been recorded at or after its end yet) the last day is read whole from the day rollup instead of as
/// hours and minutes. And when a window starts early in a day, that day is read whole and the few hours before
/// the start are subtracted, instead of adding the many hours after it: a 30-day window that starts at 03:00
/// reads one day row less 3 hour rows per group instead of 21 hour rows. So no edge costs more than 12 hours.
/// Only hours and minutes are ever subtracted, and both lie inside what the rollups keep: hours are never
/// pruned, and a window that starts within the minute rollups' retention subtracts at most the minutes of its
/// first hour, which pruning keeps (`minute_prune_cutoff` keeps an hour beyond the retention).
pub fn plan_span(from_ms: i64, to_ms: i64, open_end: bool) -> Vec<SpanPiece> {
    let piece = |(grain, from_ms, to_ms), subtract| SpanPiece {
        grain,
        from_ms,
        to_ms,
        subtract,
    };
    if from_ms >= to_ms {
        return Vec::new();
    }
    let to = if open_end {
        Grain::Day.ceil(to_ms)
    } else {
        to_ms
    };
    let (day_start, day_end) = (Grain::Day.floor(from_ms), Grain::Day.ceil(from_ms));
    let mut out = Vec::new();
    let mut start = from_ms;
    // The first day is read whole, less its hours before the window, when those are fewer (the day row itself
    // counts as one more read).
    let (before, after) = (from_ms - day_start, day_end - from_ms);
    if from_ms != day_start && day_end <= to && before + HOUR_MS < after {
        out.push(piece((Grain::Day, day_start, day_end), false));
        out.extend(
            split_span(day_start, from_ms)
                .into_iter()
                .map(|p| piece(p, true)),
        );
        start = day_end;
    }
    out.extend(split_span(start, to).into_iter().map(|p| piece(p, false)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums `f(t)` over every millisecond-bucket the plan covers, with subtracted pieces taken away: a model of
    /// "what the rollups would answer" for data that lives at each of `points`.
    fn covered(plan: &[SpanPiece], points: &[i64]) -> Vec<i64> {
        points
            .iter()
            .map(|&t| {
                plan.iter()
                    .filter(|p| p.from_ms <= t && t < p.to_ms)
                    .map(|p| if p.subtract { -1 } else { 1 })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn planned_reads_count_every_instant_of_the_window_once_and_nothing_else() {
        let day = 40 * DAY_MS;
        // Every alignment that matters: windows starting early and late in a day, on and off the hour, short
        // and long, open and closed at the end.
        let starts = [
            0,
            5 * MINUTE_MS,
            3 * HOUR_MS,
            13 * HOUR_MS + 7 * MINUTE_MS,
            20 * HOUR_MS,
            23 * HOUR_MS + 59 * MINUTE_MS,
        ];
        let lengths = [
            MINUTE_MS,
            HOUR_MS,
            5 * HOUR_MS + 3 * MINUTE_MS,
            DAY_MS,
            7 * DAY_MS,
            30 * DAY_MS + 2 * HOUR_MS,
        ];
        for s in starts {
            for len in lengths {
                let (from, to) = (day + s, day + s + len);
                for open_end in [false, true] {
                    let plan = plan_span(from, to, open_end);
                    for p in &plan {
                        assert_eq!(p.from_ms % p.grain.ms(), 0, "{p:?}");
                        assert_eq!(p.to_ms % p.grain.ms(), 0, "{p:?}");
                    }
                    // Probe instants around both ends and inside.
                    let mut probes = vec![
                        from - DAY_MS,
                        from - HOUR_MS,
                        from - 1,
                        from,
                        from + 1,
                        to - 1,
                    ];
                    probes.extend((0..50).map(|i| from + (to - from) * i / 50));
                    let got = covered(&plan, &probes);
                    for (t, n) in probes.iter().zip(got) {
                        let want = i64::from(*t >= from && *t < to);
                        assert_eq!(
                            n, want,
                            "instant {t} of [{from}, {to}) open={open_end}: {plan:?}"
                        );
                    }
                    if !open_end {
                        assert_eq!(covered(&plan, &[to, to + HOUR_MS]), vec![0, 0], "{plan:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_window_that_starts_early_in_a_day_subtracts_the_hours_before_it() {
        let from = 50 * DAY_MS + 3 * HOUR_MS;
        let plan = plan_span(from, from + 30 * DAY_MS, true);
        let hours_read = plan
            .iter()
            .filter(|p| p.grain == Grain::Hour)
            .map(|p| (p.to_ms - p.from_ms) / HOUR_MS)
            .sum::<i64>();
        assert_eq!(hours_read, 3, "{plan:?}");
        assert!(plan.iter().any(|p| p.subtract));
        // Late in the day, adding the remaining hours is cheaper.
        let late = plan_span(50 * DAY_MS + 20 * HOUR_MS, 80 * DAY_MS, true);
        assert!(late.iter().all(|p| !p.subtract), "{late:?}");
        // An open end reads the last day whole: no hours or minutes after the last whole day.
        assert!(
            plan.iter().all(|p| p.subtract || p.grain == Grain::Day),
            "{plan:?}"
        );
    }

    #[test]
    fn span_splits_into_whole_buckets_that_cover_it_exactly() {
        let from = 3 * DAY_MS + 5 * HOUR_MS + 7 * MINUTE_MS;
        let to = 6 * DAY_MS + 2 * HOUR_MS + 30 * MINUTE_MS;
        let parts = split_span(from, to);
        let mut cursor = from;
        for (g, a, b) in &parts {
            assert_eq!(*a, cursor, "pieces are contiguous");
            assert_eq!(a % g.ms(), 0);
            assert_eq!(b % g.ms(), 0);
            cursor = *b;
        }
        assert_eq!(cursor, to);
        assert_eq!(parts.iter().filter(|p| p.0 == Grain::Day).count(), 1);
        assert_eq!(parts.len(), 5);
    }

    #[test]
    fn short_spans_use_minutes_only() {
        let parts = split_span(10 * MINUTE_MS, 20 * MINUTE_MS);
        assert_eq!(parts, vec![(Grain::Minute, 10 * MINUTE_MS, 20 * MINUTE_MS)]);
    }

    #[test]
    fn rfc3339_round_trip() {
        let ms = 1_764_000_000_123;
        assert_eq!(parse_rfc3339(&to_rfc3339(ms)), Some(ms));
        assert_eq!(parse_rfc3339("not a time"), None);
    }
}
