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

#[cfg(test)]
mod tests {
    use super::*;

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
