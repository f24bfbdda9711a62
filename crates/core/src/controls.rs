//! Budgets and wallets as plain arithmetic: calendar periods in a time zone, budget states, wallet statuses,
//! burn rates and projections. The gateway enforces them; the store persists them; this module decides.

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ToSpan, Zoned};
use serde::{Deserialize, Serialize};

use crate::money::Money;

/// What a budget or wallet covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", content = "subject", rename_all = "snake_case")]
pub enum Scope {
    /// Every request.
    Org,
    Team(String),
    User(String),
    Key(i64),
}

impl Scope {
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Org => "org",
            Scope::Team(_) => "team",
            Scope::User(_) => "user",
            Scope::Key(_) => "key",
        }
    }

    /// The subject as text ("" for org).
    pub fn subject(&self) -> String {
        match self {
            Scope::Org => String::new(),
            Scope::Team(t) | Scope::User(t) => t.clone(),
            Scope::Key(k) => k.to_string(),
        }
    }

    pub fn parse(kind: &str, subject: Option<&str>) -> Result<Scope, String> {
        let need = |what: &str| {
            subject
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("a {what} scope needs a subject (the {what}'s name or id)"))
        };
        match kind {
            "org" => Ok(Scope::Org),
            "team" => Ok(Scope::Team(need("team")?)),
            "user" => Ok(Scope::User(need("user")?)),
            "key" => need("key")?
                .parse()
                .map(Scope::Key)
                .map_err(|_| "a key scope's subject is the key id (a number)".into()),
            other => Err(format!(
                "scope '{other}' is not one of org, team, user, key"
            )),
        }
    }

    /// Whether a request attributed to (key, user, team) falls under this scope.
    pub fn covers(&self, key_id: i64, user: &str, team: Option<&str>) -> bool {
        match self {
            Scope::Org => true,
            Scope::Team(t) => team == Some(t.as_str()),
            Scope::User(u) => u == user,
            Scope::Key(k) => *k == key_id,
        }
    }

    /// Refuses a subject no budget or wallet can stand for: a team or user whose name is not valid, and the No
    /// team bucket (`@none`), which is a signal (traffic from keys without a team) and not a payer, so nothing
    /// would ever be charged against it.
    pub fn check_subject(&self) -> Result<(), String> {
        let (what, name) = match self {
            Scope::Team(t) => ("team", t),
            Scope::User(u) => ("user", u),
            Scope::Org | Scope::Key(_) => return Ok(()),
        };
        if name == crate::query::NO_TEAM_FILTER {
            return Err(format!(
                "{} is the No team bucket: a signal of traffic from keys without a team, not a payer, so a budget or \
                 wallet for it would never be charged. Give those keys a team, or set an org budget.",
                crate::query::NO_TEAM_FILTER
            ));
        }
        crate::validate_name(what, name)
    }

    /// How wide the scope is: the org stands over teams and users, a team over users.
    fn rank(&self) -> u8 {
        match self {
            Scope::Org => 0,
            Scope::Team(_) => 1,
            Scope::User(_) => 2,
            Scope::Key(_) => 3,
        }
    }

    /// Whether a wallet of this scope is a parent of one of `child`'s: it may allocate money to it and reclaim
    /// money from it. The org's wallet is the parent of every team's and user's, and a team's of every user's
    /// (a user is not tied to one team: each key names its own).
    pub fn is_parent_of(&self, child: &Scope) -> bool {
        self.rank() < child.rank()
    }

    pub fn describe(&self) -> String {
        match self {
            Scope::Org => "the organisation".into(),
            Scope::Team(t) => format!("team {t}"),
            Scope::User(u) => format!("user {u}"),
            Scope::Key(k) => format!("key {k}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    fn step(self) -> Span {
        match self {
            Period::Day => 1.day(),
            Period::Week => 1.week(),
            Period::Month => 1.month(),
        }
    }

    /// The calendar period holding `now_ms` in `tz`: [start, end) in milliseconds since the epoch. Days start at
    /// local midnight (so a daylight-saving day lasts 23 or 25 hours), weeks on Monday, months on the 1st.
    pub fn bounds(self, tz: &TimeZone, now_ms: i64) -> (i64, i64) {
        let ts = Timestamp::from_millisecond(now_ms).unwrap_or(Timestamp::UNIX_EPOCH);
        let local = ts.to_zoned(tz.clone());
        let start = self.start_of(&local);
        let end = start
            .checked_add(self.step())
            .unwrap_or_else(|_| start.clone());
        (
            start.timestamp().as_millisecond(),
            end.timestamp().as_millisecond(),
        )
    }

    fn start_of(self, local: &Zoned) -> Zoned {
        let day = local.start_of_day().unwrap_or_else(|_| local.clone());
        match self {
            Period::Day => day,
            Period::Week => {
                let back = i64::from(local.weekday().to_monday_zero_offset());
                day.checked_sub(back.days())
                    .and_then(|z| z.start_of_day())
                    .unwrap_or(day)
            }
            Period::Month => local
                .first_of_month()
                .and_then(|z| z.start_of_day())
                .unwrap_or(day),
        }
    }
}

/// Parses an IANA time-zone name ("Europe/Paris", "UTC").
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|e| format!("time zone '{name}' is not known: {e}"))
}

/// Where a budget stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetState {
    Ok,
    Near,
    Over,
}

impl BudgetState {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetState::Ok => "ok",
            BudgetState::Near => "near",
            BudgetState::Over => "over",
        }
    }
}

/// Percent of `amount` that `spent` is, rounded down; `u32::MAX` when the amount is zero and spent is not.
pub fn percent_used(spent: Money, amount: Money) -> u32 {
    if amount.picos() <= 0 {
        return if spent.picos() > 0 { u32::MAX } else { 0 };
    }
    u32::try_from(spent.picos().max(0).saturating_mul(100) / amount.picos()).unwrap_or(u32::MAX)
}

/// The state for a budget with alert `thresholds` (percent, ascending; the last one at or above 100 means
/// over): over at or past 100 %, near at or past the first threshold, ok below.
pub fn budget_state(spent: Money, amount: Money, thresholds: &[u32]) -> BudgetState {
    let pct = percent_used(spent, amount);
    let near = thresholds
        .iter()
        .copied()
        .filter(|t| *t < 100)
        .min()
        .unwrap_or(80);
    if pct >= 100 {
        BudgetState::Over
    } else if pct >= near {
        BudgetState::Near
    } else {
        BudgetState::Ok
    }
}

/// The thresholds crossed when spend moves from `before` to `after`.
pub fn crossed(before: Money, after: Money, amount: Money, thresholds: &[u32]) -> Vec<u32> {
    let (a, b) = (percent_used(before, amount), percent_used(after, amount));
    thresholds
        .iter()
        .copied()
        .filter(|t| a < *t && b >= *t)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalletStatus {
    Healthy,
    Low,
    Depleted,
}

impl WalletStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WalletStatus::Healthy => "healthy",
            WalletStatus::Low => "low",
            WalletStatus::Depleted => "depleted",
        }
    }
}

/// Depleted when nothing is available, low under the threshold, healthy otherwise.
pub fn wallet_status(available: Money, low_threshold: Money) -> WalletStatus {
    if available.picos() <= 0 {
        WalletStatus::Depleted
    } else if available < low_threshold {
        WalletStatus::Low
    } else {
        WalletStatus::Healthy
    }
}

/// Spend per day over a window of `window_ms` in which `spent` was spent.
pub fn burn_per_day(spent: Money, window_ms: i64) -> Money {
    rate_over(spent, window_ms, crate::time::DAY_MS)
}

/// Spend per hour over a window of `window_ms` in which `spent` was spent (exact, rounded toward zero).
pub fn per_hour(spent: Money, window_ms: i64) -> Money {
    rate_over(spent, window_ms, crate::time::HOUR_MS)
}

/// `spent` scaled from `window_ms` to `unit_ms`, in integer picodollars; nothing for an empty window.
fn rate_over(spent: Money, window_ms: i64, unit_ms: i64) -> Money {
    if window_ms <= 0 {
        return Money::ZERO;
    }
    Money::from_picos(spent.picos().saturating_mul(i128::from(unit_ms)) / i128::from(window_ms))
}

/// The shortest window a rate is taken over. A rate over a few seconds would turn one request into a wild
/// projection; a minute is the finest grain the rollups keep anyway.
pub const MIN_RATE_WINDOW_MS: i64 = crate::time::MINUTE_MS;

/// The window a burn rate is taken over: from `since_ms` (when the wallet was created, or when the subject
/// first spent in the period) to `now_ms`, at most `max_ms` and at least [`MIN_RATE_WINDOW_MS`]. A rate over
/// a fixed week for something minutes old would divide its spend by days it never existed.
pub fn rate_window_ms(since_ms: i64, now_ms: i64, max_ms: i64) -> i64 {
    (now_ms - since_ms).min(max_ms).max(MIN_RATE_WINDOW_MS)
}

/// A burn rate stated with the windows it was measured over: the window's rate, and a range between it and
/// the rate of the most recent part of it (the last hour), so a burn that sped up or slowed down lately
/// widens the range in the direction it moved. All amounts are exact money per hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Burn {
    pub per_hour: Money,
    pub low_per_hour: Money,
    pub high_per_hour: Money,
    pub window_ms: i64,
    pub recent_ms: i64,
}

/// `spent` over the last `window_ms`, `recent` over the last `recent_ms` of it (clamped to the window).
pub fn burn(spent: Money, window_ms: i64, recent: Money, recent_ms: i64) -> Burn {
    let recent_ms = recent_ms.min(window_ms);
    let (rate, at_recent) = (per_hour(spent, window_ms), per_hour(recent, recent_ms));
    Burn {
        per_hour: rate,
        low_per_hour: rate.min(at_recent),
        high_per_hour: rate.max(at_recent),
        window_ms,
        recent_ms,
    }
}

/// When `available` runs out at `per_hour`: milliseconds from now, or `None` when nothing is being spent.
pub fn depletion_in_ms(available: Money, per_hour: Money) -> Option<i64> {
    if per_hour.picos() <= 0 {
        return None;
    }
    let ms = available
        .picos()
        .max(0)
        .saturating_mul(i128::from(crate::time::HOUR_MS))
        / per_hour.picos();
    Some(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// A window's length in words, for saying what a rate is over: "45 seconds", "12 minutes", "5 hours",
/// "3 days" (rounded down to the largest whole unit, which the windows in use fall on or near).
pub fn describe_window(ms: i64) -> String {
    use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS};
    let unit = |n: i64, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    if ms >= 2 * DAY_MS {
        unit(ms / DAY_MS, "day")
    } else if ms >= 2 * HOUR_MS || ms == HOUR_MS {
        unit(ms / HOUR_MS, "hour")
    } else if ms >= MINUTE_MS {
        unit(ms / MINUTE_MS, "minute")
    } else {
        unit(ms.max(0) / 1000, "second")
    }
}

/// Spend at the end of a period if the current rate holds: spent so far plus the rate over what is left.
pub fn forecast_period_end(spent: Money, start_ms: i64, end_ms: i64, now_ms: i64) -> Money {
    let elapsed = (now_ms - start_ms).max(1);
    let left = (end_ms - now_ms).max(0);
    spent + Money::from_picos(spent.picos().saturating_mul(i128::from(left)) / i128::from(elapsed))
}

/// A period-end forecast with a range: `expected` holds the period-so-far rate, the range spans it and the
/// recent rate (the last `recent_ms` of the period, a day by default), so a burn that sped up or slowed down
/// lately widens the range in the direction it moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Forecast {
    pub expected: Money,
    pub low: Money,
    pub high: Money,
}

/// `spent` is the period's spend so far, `recent` what was spent in the last `recent_ms` (clamped to the
/// period so far).
pub fn forecast_range(
    spent: Money,
    recent: Money,
    recent_ms: i64,
    start_ms: i64,
    end_ms: i64,
    now_ms: i64,
) -> Forecast {
    let expected = forecast_period_end(spent, start_ms, end_ms, now_ms);
    let window = recent_ms.min(now_ms - start_ms).max(1);
    let left = (end_ms - now_ms).max(0);
    let at_recent = spent
        + Money::from_picos(recent.picos().saturating_mul(i128::from(left)) / i128::from(window));
    Forecast {
        expected,
        low: expected.min(at_recent),
        high: expected.max(at_recent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn a_month_is_the_calendar_month_including_leap_february() {
        let utc = TimeZone::UTC;
        assert_eq!(
            Period::Month.bounds(&utc, ms("2028-02-29T23:59:59Z")),
            (ms("2028-02-01T00:00:00Z"), ms("2028-03-01T00:00:00Z"))
        );
        let (s, e) = Period::Month.bounds(&utc, ms("2026-01-31T12:00:00Z"));
        assert_eq!(
            (s, e),
            (ms("2026-01-01T00:00:00Z"), ms("2026-02-01T00:00:00Z"))
        );
        // The first instant of a month belongs to it, the last of the previous to that one.
        assert_eq!(
            Period::Month.bounds(&utc, ms("2026-03-01T00:00:00Z")).0,
            ms("2026-03-01T00:00:00Z")
        );
        assert_eq!(
            Period::Month.bounds(&utc, ms("2026-02-28T23:59:59.999Z")).1,
            ms("2026-03-01T00:00:00Z")
        );
    }

    #[test]
    fn days_follow_daylight_saving_in_the_zone() {
        let paris = time_zone("Europe/Paris").unwrap();
        // 2026-03-29: clocks go forward in Paris, the day has 23 hours.
        let (s, e) = Period::Day.bounds(&paris, ms("2026-03-29T12:00:00Z"));
        assert_eq!(s, ms("2026-03-28T23:00:00Z"));
        assert_eq!(e - s, 23 * 3_600_000);
        // 2026-10-25: clocks go back, 25 hours.
        let (s, e) = Period::Day.bounds(&paris, ms("2026-10-25T12:00:00Z"));
        assert_eq!(e - s, 25 * 3_600_000);
        // A month in Paris starts at local midnight, which is 23:00 UTC the day before in winter.
        assert_eq!(
            Period::Month.bounds(&paris, ms("2026-12-15T00:00:00Z")).0,
            ms("2026-11-30T23:00:00Z")
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        let (s, e) = Period::Week.bounds(&TimeZone::UTC, ms("2026-11-28T10:00:00Z")); // a Saturday
        assert_eq!(s, ms("2026-11-23T00:00:00Z"));
        assert_eq!(e, ms("2026-11-30T00:00:00Z"));
        let kolkata = time_zone("Asia/Kolkata").unwrap();
        assert_eq!(
            Period::Day.bounds(&kolkata, ms("2026-11-28T10:00:00Z")).0,
            ms("2026-11-27T18:30:00Z")
        );
    }

    #[test]
    fn states_and_crossings() {
        let m = |s: &str| Money::parse_usd(s).unwrap();
        assert_eq!(
            budget_state(m("79.99"), m("100"), &[80, 100]),
            BudgetState::Ok
        );
        assert_eq!(
            budget_state(m("80"), m("100"), &[80, 100]),
            BudgetState::Near
        );
        assert_eq!(
            budget_state(m("100"), m("100"), &[80, 100]),
            BudgetState::Over
        );
        assert_eq!(
            crossed(m("70"), m("101"), m("100"), &[80, 100]),
            vec![80, 100]
        );
        assert_eq!(
            crossed(m("81"), m("90"), m("100"), &[80, 100]),
            Vec::<u32>::new()
        );
        assert_eq!(wallet_status(m("0"), m("5")), WalletStatus::Depleted);
        assert_eq!(wallet_status(m("4.99"), m("5")), WalletStatus::Low);
        assert_eq!(wallet_status(m("5"), m("5")), WalletStatus::Healthy);
    }

    #[test]
    fn burn_and_projection_are_integer_exact() {
        let m = |s: &str| Money::parse_usd(s).unwrap();
        let per_day = burn_per_day(m("70"), 7 * crate::time::DAY_MS);
        assert_eq!(per_day, m("10"));
        let rate = per_hour(m("240"), crate::time::DAY_MS);
        assert_eq!(rate, m("10"));
        assert_eq!(
            depletion_in_ms(m("25"), rate),
            Some(2 * crate::time::HOUR_MS + crate::time::HOUR_MS / 2)
        );
        assert_eq!(depletion_in_ms(m("25"), Money::ZERO), None);
        assert_eq!(forecast_period_end(m("10"), 0, 30, 10), m("30"));
    }

    #[test]
    fn a_young_wallet_burns_over_its_own_age_not_a_week() {
        use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS};
        let m = |s: &str| Money::parse_usd(s).unwrap();
        // Created 30 minutes ago and $1 spent since: $2 an hour.
        let window = rate_window_ms(0, 30 * MINUTE_MS, 7 * DAY_MS);
        assert_eq!(window, 30 * MINUTE_MS);
        let b = burn(m("1"), window, m("1"), HOUR_MS);
        assert_eq!(
            b.recent_ms, window,
            "the recent window never exceeds the whole"
        );
        assert_eq!(
            (b.per_hour, b.low_per_hour, b.high_per_hour),
            (m("2"), m("2"), m("2"))
        );
        // $3 left at $2/h: an hour and a half, not 627 days.
        assert_eq!(depletion_in_ms(m("3"), b.per_hour), Some(90 * MINUTE_MS));
        // Old wallets are capped at the trailing week; a quiet last hour widens the range downwards.
        assert_eq!(rate_window_ms(0, 30 * DAY_MS, 7 * DAY_MS), 7 * DAY_MS);
        let b = burn(m("168"), 7 * DAY_MS, m("0.5"), HOUR_MS);
        assert_eq!((b.low_per_hour, b.high_per_hour), (m("0.5"), m("1")));
        // A wallet seconds old is measured over a minute at least.
        assert_eq!(rate_window_ms(1000, 3000, 7 * DAY_MS), MINUTE_MS);
        assert_eq!(describe_window(30 * MINUTE_MS), "30 minutes");
        assert_eq!(describe_window(7 * DAY_MS), "7 days");
        assert_eq!(describe_window(HOUR_MS), "1 hour");
        assert_eq!(describe_window(90 * MINUTE_MS), "90 minutes");
        assert_eq!(describe_window(5 * HOUR_MS + 1), "5 hours");
    }

    #[test]
    fn a_recent_speed_up_widens_the_forecast_upwards() {
        let m = |s: &str| Money::parse_usd(s).unwrap();
        let day = crate::time::DAY_MS;
        // Ten days into a thirty-day month, $100 spent, $30 of it yesterday (three times the average day).
        let f = forecast_range(m("100"), m("30"), day, 0, 30 * day, 10 * day);
        assert_eq!(f.expected, m("300"));
        assert_eq!(f.low, m("300"));
        assert_eq!(f.high, m("700"));
        // A slowdown widens it downwards.
        let f = forecast_range(m("100"), m("1"), day, 0, 30 * day, 10 * day);
        assert_eq!((f.low, f.high), (m("120"), m("300")));
        // Early in the period the recent window is the period so far: no spread.
        let f = forecast_range(m("5"), m("5"), day, 0, 30 * day, day / 2);
        assert_eq!(f.low, f.high);
    }

    #[test]
    fn scopes_cover_the_right_requests() {
        assert!(Scope::Org.covers(1, "a", None));
        assert!(Scope::Team("t".into()).covers(1, "a", Some("t")));
        assert!(!Scope::Team("t".into()).covers(1, "a", None));
        assert!(Scope::Key(7).covers(7, "a", None));
        assert!(Scope::parse("team", None).is_err());
        assert_eq!(Scope::parse("key", Some("12")).unwrap(), Scope::Key(12));
    }
}
