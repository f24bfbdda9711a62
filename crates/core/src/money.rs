//! Exact money. spendgate never uses floating point for money.
//!
//! Amounts are integer **picodollars** (10^-12 USD). Prices are integer **microdollars per million tokens**
//! (10^-6 USD per 10^6 tokens), which is the same unit per token: a price with up to six decimal places of a
//! dollar per million tokens times a whole number of tokens is a whole number of picodollars, so every cost is
//! exact and every sum of costs reconciles to the last unit.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decimal places carried by [`Money`] (picodollars).
pub const MONEY_SCALE: u32 = 12;
/// Decimal places carried by [`PricePerMtok`] (microdollars per million tokens).
pub const PRICE_SCALE: u32 = 6;

/// An amount of USD, in picodollars. Wide enough (i128) that no realistic sum overflows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i128);

/// The highest price accepted: $10,000 per million tokens, far above any published model price.
pub const MAX_PRICE_PER_MTOK: PricePerMtok = PricePerMtok(10_000 * 1_000_000);

/// A price in USD per million tokens, in microdollars per million tokens (= picodollars per token).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PricePerMtok(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseMoneyError {
    #[error("'{0}' is not a decimal number of dollars (write it like \"2.50\")")]
    NotADecimal(String),
    #[error("'{value}' has more than {max} decimal places; spendgate keeps amounts exact and cannot round it")]
    TooPrecise { value: String, max: u32 },
    #[error("'{0}' is too large (prices stop at $10,000 per million tokens)")]
    TooLarge(String),
    #[error("'{0}' is negative; prices and amounts must be zero or more")]
    Negative(String),
}

/// Parses a plain decimal string ("12", "0.075", "-3.5") into an integer scaled by `10^scale`.
fn parse_scaled(s: &str, scale: u32) -> Result<i128, ParseMoneyError> {
    let t = s.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !all_digits(int_part)
        || !all_digits(frac_part)
    {
        return Err(ParseMoneyError::NotADecimal(s.to_string()));
    }
    let frac_trimmed = frac_part.trim_end_matches('0');
    if frac_trimmed.len() as u32 > scale {
        return Err(ParseMoneyError::TooPrecise {
            value: s.to_string(),
            max: scale,
        });
    }
    let too_large = || ParseMoneyError::TooLarge(s.to_string());
    let mut value: i128 = 0;
    for b in int_part.bytes().chain(frac_trimmed.bytes()) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(b - b'0')))
            .ok_or_else(too_large)?;
    }
    let pad = scale - frac_trimmed.len() as u32;
    value = value.checked_mul(10i128.pow(pad)).ok_or_else(too_large)?;
    Ok(if neg { -value } else { value })
}

/// Formats an integer scaled by `10^scale` as a decimal string with at least `min_frac` decimals and no
/// trailing zeros beyond them.
pub fn format_scaled(value: i128, scale: u32, min_frac: usize) -> String {
    // One buffer, written from the digits of the absolute value: this runs for every price line of every spend
    // event (journal and spend-log encoding), so it avoids the intermediate strings of `format!`.
    let abs = value.unsigned_abs();
    let digits = abs.to_string();
    let scale = scale as usize;
    let (int, frac) = if digits.len() > scale {
        digits.split_at(digits.len() - scale)
    } else {
        ("", digits.as_str())
    };
    let pad = scale - frac.len();
    let digit = |i: usize| {
        if i < pad {
            b'0'
        } else {
            frac.as_bytes()[i - pad]
        }
    };
    // Trailing zeros go, down to `min_frac` decimals.
    let mut keep = scale;
    while keep > min_frac && digit(keep - 1) == b'0' {
        keep -= 1;
    }
    let mut out = String::with_capacity(int.len() + scale + 3);
    if value < 0 {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if keep > 0 {
        out.push('.');
        out.extend((0..keep).map(|i| char::from(digit(i))));
    }
    out
}

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_picos(picos: i128) -> Money {
        Money(picos)
    }

    pub const fn picos(self) -> i128 {
        self.0
    }

    /// Parses a decimal string of USD ("12.50"), exactly.
    pub fn parse_usd(s: &str) -> Result<Money, ParseMoneyError> {
        parse_scaled(s, MONEY_SCALE).map(Money)
    }

    /// Reads a JSON number of USD (`0.000123`, `1.23e-4`) from its own digits, never through a float: a provider
    /// that reports its cost as a number (OpenRouter's `usage.cost`). Digits past the picodollar are dropped
    /// (toward zero); `None` for anything that is not a JSON number or does not fit.
    pub fn parse_json_number(text: &str) -> Option<Money> {
        let t = text.trim();
        let (mantissa, exp) = match t.find(['e', 'E']) {
            Some(i) => (&t[..i], t[i + 1..].parse::<i32>().ok()?),
            None => (t, 0),
        };
        let (neg, m) = match mantissa.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, mantissa),
        };
        let (int_part, frac_part) = m.split_once('.').unwrap_or((m, ""));
        let digits: String = int_part.chars().chain(frac_part.chars()).collect();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || exp.abs() > 40 {
            return None;
        }
        // The number is `digits` with `frac` digits after the point; picodollars have MONEY_SCALE of them.
        let frac = i32::try_from(frac_part.len()).ok()? - exp;
        let shift = i32::try_from(MONEY_SCALE).ok()? - frac;
        let kept = if shift >= 0 {
            digits.as_str()
        } else {
            let cut = usize::try_from(-shift).ok()?;
            &digits[..digits.len().saturating_sub(cut)]
        };
        let mut value: i128 = 0;
        for b in kept.bytes() {
            value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        if shift > 0 {
            value = value.checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)?;
        }
        Some(Money(if neg { -value } else { value }))
    }

    /// Like [`Money::parse_usd`] but refuses negative amounts (budgets, top-ups).
    pub fn parse_non_negative_usd(s: &str) -> Result<Money, ParseMoneyError> {
        let m = Money::parse_usd(s)?;
        if m.0 < 0 {
            return Err(ParseMoneyError::Negative(s.to_string()));
        }
        Ok(m)
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }

    /// The exact decimal string in USD, e.g. "0.000375" or "12.50". At least two decimals are shown.
    pub fn to_usd_string(self) -> String {
        format_scaled(self.0, MONEY_SCALE, 2)
    }

    /// A rounded, human-friendly USD string for pages ("$12.34", "$0.0042"). Never used in sums.
    pub fn display_usd(self) -> String {
        let abs = self.0.unsigned_abs();
        let sign = if self.0 < 0 { "-" } else { "" };
        // Show four significant decimals for amounts under a cent so that small costs are not shown as $0.00.
        let digits: u32 = if abs >= 10u128.pow(MONEY_SCALE - 2) {
            2
        } else {
            6
        };
        let step = 10u128.pow(MONEY_SCALE - digits);
        let rounded = (abs + step / 2) / step;
        let int = rounded / 10u128.pow(digits);
        let frac = rounded % 10u128.pow(digits);
        let int_s = group_thousands(int);
        let mut frac_s = format!("{frac:0width$}", width = digits as usize);
        while frac_s.len() > 2 && frac_s.ends_with('0') {
            frac_s.pop();
        }
        format!("{sign}${int_s}.{frac_s}")
    }
}

/// "1234567" -> "1,234,567".
pub fn group_thousands(n: u128) -> String {
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

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        self.0 += rhs.0;
    }
}

impl std::ops::Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_usd_string())
    }
}

impl FromStr for Money {
    type Err = ParseMoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse_usd(s)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_usd_string())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Money::parse_usd(&s).map_err(serde::de::Error::custom)
    }
}

impl PricePerMtok {
    pub const ZERO: PricePerMtok = PricePerMtok(0);

    pub const fn from_micros(micros: i64) -> PricePerMtok {
        PricePerMtok(micros)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    pub fn parse(s: &str) -> Result<PricePerMtok, ParseMoneyError> {
        let v = parse_scaled(s, PRICE_SCALE)?;
        if v < 0 {
            return Err(ParseMoneyError::Negative(s.to_string()));
        }
        // No model costs anywhere near this; a larger figure is a typo. The cap also bounds every request's cost
        // (with `usage::MAX_TOKENS`) well inside what a spend log row holds.
        if v > i128::from(MAX_PRICE_PER_MTOK.0) {
            return Err(ParseMoneyError::TooLarge(s.to_string()));
        }
        i64::try_from(v)
            .map(PricePerMtok)
            .map_err(|_| ParseMoneyError::TooLarge(s.to_string()))
    }

    /// This price times `factor` (a price per thousand of something as a price per million), saturating at the
    /// largest price a catalog accepts.
    pub fn times(self, factor: i64) -> PricePerMtok {
        PricePerMtok(
            self.0
                .saturating_mul(factor)
                .min(MAX_PRICE_PER_MTOK.0 * 1_000),
        )
    }

    /// The exact cost of `tokens` tokens at this price.
    pub fn cost_of(self, tokens: u64) -> Money {
        // microdollars per million tokens == picodollars per token.
        Money(i128::from(self.0) * i128::from(tokens))
    }

    pub fn to_usd_string(self) -> String {
        format_scaled(i128::from(self.0), PRICE_SCALE, 2)
    }
}

impl fmt::Display for PricePerMtok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_usd_string())
    }
}

impl Serialize for PricePerMtok {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_usd_string())
    }
}

impl<'de> Deserialize<'de> for PricePerMtok {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // TOML and JSON numbers would arrive as floats and lose exactness, so only strings are accepted.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PricePerMtok;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a price as a string of USD per million tokens, e.g. \"2.50\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PricePerMtok, E> {
                PricePerMtok::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PricePerMtok, E> {
                PricePerMtok::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PricePerMtok, E> {
                PricePerMtok::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<PricePerMtok, E> {
                Err(E::custom(format!(
                    "price {v} is written as a number; write it as a string (\"{v}\") so it is read exactly"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain way of writing `format_scaled`, kept as its reference.
    fn format_scaled_reference(value: i128, scale: u32, min_frac: usize) -> String {
        let unit = 10u128.pow(scale);
        let sign = if value < 0 { "-" } else { "" };
        let (int, frac) = (value.unsigned_abs() / unit, value.unsigned_abs() % unit);
        let mut frac_s = format!("{frac:0width$}", width = scale as usize);
        while frac_s.len() > min_frac && frac_s.ends_with('0') {
            frac_s.pop();
        }
        if frac_s.is_empty() {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac_s}")
        }
    }

    #[test]
    fn format_scaled_writes_what_the_reference_writes() {
        let mut values = vec![
            0i128,
            1,
            -1,
            10,
            100,
            1_000_000_000_000,
            -1_000_000_000_000,
            i128::MAX,
            i128::MIN + 1,
        ];
        let mut x: i128 = 7;
        for _ in 0..2_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407)
                % 1_000_000_000_000_000_000;
            values.extend([x, -x, x / 1_000 * 1_000, x % 1_000_000]);
        }
        for v in values {
            for (scale, min_frac) in [(12, 2), (12, 0), (6, 2), (2, 2), (0, 0), (3, 5)] {
                assert_eq!(
                    format_scaled(v, scale, min_frac),
                    format_scaled_reference(v, scale, min_frac),
                    "{v} {scale} {min_frac}"
                );
            }
        }
    }

    #[test]
    fn parses_and_formats_exactly() {
        let m = Money::parse_usd("12.5").unwrap();
        assert_eq!(m.picos(), 12_500_000_000_000);
        assert_eq!(m.to_usd_string(), "12.50");
        assert_eq!(Money::parse_usd("0.000000000001").unwrap().picos(), 1);
        assert_eq!(Money::from_picos(375_000_000).to_usd_string(), "0.000375");
        assert_eq!(Money::from_picos(-1).to_usd_string(), "-0.000000000001");
        assert_eq!(Money::parse_usd("-3").unwrap().to_usd_string(), "-3.00");
    }

    #[test]
    fn rejects_what_it_cannot_keep_exact() {
        assert!(matches!(
            Money::parse_usd("0.0000000000001"),
            Err(ParseMoneyError::TooPrecise { .. })
        ));
        assert!(matches!(
            Money::parse_usd("1e5"),
            Err(ParseMoneyError::NotADecimal(_))
        ));
        assert!(matches!(
            Money::parse_usd(""),
            Err(ParseMoneyError::NotADecimal(_))
        ));
        assert!(matches!(
            Money::parse_usd("."),
            Err(ParseMoneyError::NotADecimal(_))
        ));
        assert!(matches!(
            PricePerMtok::parse("0.0000001"),
            Err(ParseMoneyError::TooPrecise { .. })
        ));
        assert!(matches!(
            PricePerMtok::parse("-1"),
            Err(ParseMoneyError::Negative(_))
        ));
        assert!(matches!(
            Money::parse_non_negative_usd("-1"),
            Err(ParseMoneyError::Negative(_))
        ));
        // Trailing zeros beyond the scale are harmless.
        assert_eq!(
            PricePerMtok::parse("2.5000000000").unwrap().micros(),
            2_500_000
        );
    }

    #[test]
    fn cost_is_tokens_times_price() {
        let p = PricePerMtok::parse("0.075").unwrap();
        // 1,000,000 tokens at $0.075 per million is exactly $0.075.
        assert_eq!(p.cost_of(1_000_000).to_usd_string(), "0.075");
        assert_eq!(p.cost_of(1).picos(), 75_000);
        assert_eq!(
            PricePerMtok::parse("0.005")
                .unwrap()
                .cost_of(3)
                .to_usd_string(),
            "0.000000015"
        );
    }

    #[test]
    fn display_is_friendly() {
        assert_eq!(
            Money::parse_usd("1234.567").unwrap().display_usd(),
            "$1,234.57"
        );
        assert_eq!(Money::parse_usd("0.0042").unwrap().display_usd(), "$0.0042");
        assert_eq!(Money::ZERO.display_usd(), "$0.00");
    }

    #[test]
    fn prices_refuse_floats() {
        #[derive(Deserialize)]
        struct P {
            #[allow(dead_code)]
            p: PricePerMtok,
        }
        let err = toml::from_str::<P>("p = 0.15").err().unwrap().to_string();
        assert!(err.contains("write it as a string"), "{err}");
        assert!(toml::from_str::<P>("p = \"0.15\"").is_ok());
        assert!(toml::from_str::<P>("p = 3").is_ok());
    }
}

#[cfg(test)]
mod json_number_tests {
    use super::Money;

    #[test]
    fn json_numbers_are_read_from_their_digits() {
        let p = |s: &str| Money::parse_json_number(s).map(Money::picos);
        assert_eq!(p("0.0001234"), Some(123_400_000));
        assert_eq!(p("1.234e-4"), Some(123_400_000));
        assert_eq!(p("1.234E-04"), Some(123_400_000));
        assert_eq!(p("12"), Some(12_000_000_000_000));
        assert_eq!(p("2e1"), Some(20_000_000_000_000));
        assert_eq!(
            p("0.1234567890129"),
            Some(123_456_789_012),
            "past the picodollar: dropped"
        );
        assert_eq!(p("-0.5"), Some(-500_000_000_000));
        assert_eq!(p("0"), Some(0));
        for bad in ["", "abc", "1.2.3", "1e", "0x10", "1e999", "\"0.1\""] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
