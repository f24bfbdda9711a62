//! Latency statistics in whole microseconds (integers, so no float rounding questions), and their display.

use serde_json::{json, Value};

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    us: Vec<u64>,
    sorted: bool,
}

impl Samples {
    pub fn push(&mut self, us: u64) {
        self.us.push(us);
        self.sorted = false;
    }

    pub fn extend(&mut self, other: &Samples) {
        self.us.extend_from_slice(&other.us);
        self.sorted = false;
    }

    pub fn len(&self) -> usize {
        self.us.len()
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.us.sort_unstable();
            self.sorted = true;
        }
    }

    /// Nearest-rank percentile, `permille` in 1..=1000 (500 = p50, 990 = p99). 0 when empty.
    pub fn percentile(&mut self, permille: u64) -> u64 {
        self.sort();
        let n = self.us.len() as u64;
        if n == 0 {
            return 0;
        }
        let rank = (permille * n).div_ceil(1000).clamp(1, n);
        self.us[usize::try_from(rank - 1).unwrap_or(0)]
    }

    pub fn max(&mut self) -> u64 {
        self.sort();
        self.us.last().copied().unwrap_or(0)
    }

    pub fn mean(&self) -> u64 {
        if self.us.is_empty() {
            return 0;
        }
        self.us.iter().sum::<u64>() / self.us.len() as u64
    }

    /// `{count, p50_us, p95_us, p99_us, max_us, mean_us}`.
    pub fn summary(&mut self) -> Value {
        json!({
            "count": self.len(),
            "p50_us": self.percentile(500),
            "p95_us": self.percentile(950),
            "p99_us": self.percentile(990),
            "max_us": self.max(),
            "mean_us": self.mean(),
        })
    }
}

/// Microseconds as milliseconds with three decimals: 1234 -> "1.234 ms"; negative values keep their sign.
pub fn ms(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let a = us.unsigned_abs();
    format!("{sign}{}.{:03} ms", a / 1000, a % 1000)
}

/// A count per second from a count and a duration in microseconds.
pub fn per_sec(count: u64, elapsed_us: u64) -> u64 {
    if elapsed_us == 0 {
        return 0;
    }
    u64::try_from(u128::from(count) * 1_000_000 / u128::from(elapsed_us)).unwrap_or(u64::MAX)
}

/// A ratio in thousandths (`num / den * 1000`), for ratios shown as "0.734".
pub fn ratio_milli(num: u64, den: u64) -> u64 {
    if den == 0 {
        return 0;
    }
    u64::try_from(u128::from(num) * 1000 / u128::from(den)).unwrap_or(u64::MAX)
}

pub fn milli_str(m: u64) -> String {
    format!("{}.{:03}", m / 1000, m % 1000)
}

/// 1234567 -> "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for v in 1..=100 {
            s.push(v);
        }
        assert_eq!(s.percentile(500), 50);
        assert_eq!(s.percentile(990), 99);
        assert_eq!(s.percentile(1000), 100);
        assert_eq!(s.max(), 100);
        assert_eq!(Samples::default().percentile(500), 0);
    }

    #[test]
    fn formatting() {
        assert_eq!(ms(1234), "1.234 ms");
        assert_eq!(ms(-56), "-0.056 ms");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(per_sec(500, 250_000), 2000);
        assert_eq!(milli_str(ratio_milli(1, 2)), "0.500");
    }
}
