//! Spend logs are partitioned by calendar month (UTC) of their finish time, `spend_logs_pYYYYMM`. Partitions are
//! created ahead: the current and next month when the store opens, and any other month the moment a batch
//! brings an event for it. Retention drops whole partitions whose month ended before the horizon; rollups,
//! the ledger and everything else are never touched, so totals stay complete after their spend logs are gone.

use std::collections::{BTreeSet, HashSet};

use spendgate_core::time::DAY_MS;
use time::{Date, Month, OffsetDateTime};
use tokio_postgres::Client;

use crate::{Result, StoreError};

/// The advisory lock key that serialises partition changes across processes.
const PARTITION_LOCK: i64 = 0x7370_656e_6467_0002;

const PREFIX: &str = "spend_logs_p";

/// A month as a number: year x 12 + (month - 1).
pub fn month_of(ms: i64) -> Result<i64> {
    let t = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map_err(|_| StoreError::Invalid(format!("time {ms} ms is out of range")))?;
    Ok(i64::from(t.year()) * 12 + i64::from(u8::from(t.month())) - 1)
}

fn year_month(m: i64) -> (i64, i64) {
    (m.div_euclid(12), m.rem_euclid(12) + 1)
}

/// The first millisecond of a month.
pub fn month_start_ms(m: i64) -> Result<i64> {
    let (y, mo) = year_month(m);
    let bad = || StoreError::Invalid(format!("month {y}-{mo} is out of range"));
    let month = Month::try_from(u8::try_from(mo).map_err(|_| bad())?).map_err(|_| bad())?;
    let date = Date::from_calendar_date(i32::try_from(y).map_err(|_| bad())?, month, 1)
        .map_err(|_| bad())?;
    Ok(date.midnight().assume_utc().unix_timestamp() * 1000)
}

pub fn partition_name(m: i64) -> String {
    let (y, mo) = year_month(m);
    format!("{PREFIX}{y:04}{mo:02}")
}

fn parse_name(name: &str) -> Option<i64> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.len() != 6 {
        return None;
    }
    let y: i64 = digits[..4].parse().ok()?;
    let mo: i64 = digits[4..].parse().ok()?;
    (1..=12).contains(&mo).then_some(y * 12 + mo - 1)
}

/// Whether an event finishing at `ts_ms` falls in a month that retention drops (or has dropped).
pub fn expired(ts_ms: i64, retention_days: Option<u32>, now_ms: i64) -> Result<bool> {
    let Some(days) = retention_days else {
        return Ok(false);
    };
    let horizon = now_ms - i64::from(days) * DAY_MS;
    Ok(month_start_ms(month_of(ts_ms)? + 1)? <= horizon)
}

/// Creates the partitions of these months that `known` does not list yet, and remembers them.
pub(super) async fn ensure(
    client: &mut Client,
    known: &mut HashSet<i64>,
    months: impl IntoIterator<Item = i64>,
) -> Result<()> {
    let missing: BTreeSet<i64> = months.into_iter().filter(|m| !known.contains(m)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
        .await?;
    for m in &missing {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF spend_logs FOR VALUES FROM ({}) TO ({})",
            partition_name(*m),
            month_start_ms(*m)?,
            month_start_ms(*m + 1)?
        ))
        .await?;
    }
    tx.commit().await?;
    known.extend(missing);
    Ok(())
}

/// The spend-log partitions that exist, oldest first: (name, first ms, end ms).
pub(super) async fn list(client: &Client) -> Result<Vec<(String, i64, i64)>> {
    let rows = client
        .query(
            "SELECT c.relname::TEXT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'spend_logs'::regclass",
            &[],
        )
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let name: String = r.try_get(0)?;
        if let Some(m) = parse_name(&name) {
            out.push((name, month_start_ms(m)?, month_start_ms(m + 1)?));
        }
    }
    out.sort_by_key(|p| p.1);
    Ok(out)
}

/// Drops the partitions whose whole month ended `retention_days` or more before `now_ms`; returns their names.
pub(super) async fn drop_expired(
    client: &mut Client,
    known: &mut HashSet<i64>,
    retention_days: u32,
    now_ms: i64,
) -> Result<Vec<String>> {
    let horizon = now_ms - i64::from(retention_days) * DAY_MS;
    let expired: Vec<String> = list(client)
        .await?
        .into_iter()
        .filter(|(_, _, end)| *end <= horizon)
        .map(|(name, _, _)| name)
        .collect();
    if expired.is_empty() {
        return Ok(expired);
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
        .await?;
    for name in &expired {
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
            .await?;
        if let Some(m) = parse_name(name) {
            known.remove(&m);
        }
    }
    tx.commit().await?;
    tracing::info!(partitions = ?expired, retention_days, "Dropped spend-log partitions past their retention; rollups keep their totals.");
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_round_trip_through_names_and_bounds() {
        // 2026-11-28T00:00:00Z
        let ms = 1_795_824_000_000;
        let m = month_of(ms).unwrap();
        assert_eq!(partition_name(m), "spend_logs_p202611");
        assert_eq!(parse_name("spend_logs_p202611"), Some(m));
        assert!(month_start_ms(m).unwrap() <= ms && ms < month_start_ms(m + 1).unwrap());
        assert_eq!(partition_name(m + 2), "spend_logs_p202701");
        assert_eq!(parse_name("spend_logs_p202613"), None);
    }

    #[test]
    fn only_months_wholly_past_the_horizon_expire() {
        let now = 1_795_824_000_000; // 2026-11-28
        assert!(!expired(now - 10 * DAY_MS, Some(30), now).unwrap());
        // 2026-09-15 ended (2026-10-01) more than 30 days before now.
        assert!(expired(now - 74 * DAY_MS, Some(30), now).unwrap());
        assert!(!expired(now - 74 * DAY_MS, None, now).unwrap());
    }
}
