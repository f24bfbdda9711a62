//! The read path. Summary, explorer and series read the rollups only; spend-log pages read the spend-log table
//! by index.

use std::collections::HashMap;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};
use spendgate_core::anomaly::RepeatedRequest;
use spendgate_core::pricing::PriceLine;
use spendgate_core::query::{
    sort_rows, Filters, GroupBy, GroupRow, SortBy, Totals, NO_TEAM_FILTER, NO_TEAM_LABEL,
    NO_WORKFLOW_LABEL,
};
use spendgate_core::time::{split_span, Grain};
use spendgate_core::{
    Attribution, CacheOutcome, Money, PriceConfidence, RequestStatus, SpendEvent, Usage,
    UsageSource,
};
use uuid::Uuid;

use super::schema::{LabelKind, ROLLUP_TABLES};
use super::write::find_label;
use crate::{ResolvedWindow, Result, SeriesPoint, SpendLogPage, StoreError, StoredSpendLog};

/// Aligns a window to minutes, and to hours where it reaches back past the minute rollups' retention.
pub(super) fn resolve_window(
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
    minute_retention_ms: i64,
) -> ResolvedWindow {
    let horizon = now_ms - minute_retention_ms;
    let from = if from_ms < horizon {
        Grain::Hour.floor(from_ms)
    } else {
        Grain::Minute.floor(from_ms)
    };
    let to = if to_ms < horizon {
        Grain::Hour.ceil(to_ms)
    } else {
        Grain::Minute.ceil(to_ms)
    };
    ResolvedWindow {
        from_ms: from,
        to_ms: to.max(from),
    }
}

/// The dimension filters of a query as (column, id) pairs. `None` when a named value was never recorded, so no
/// row can match.
fn dimension_filters(c: &Connection, f: &Filters) -> Result<Option<Vec<(&'static str, i64)>>> {
    let mut out = Vec::new();
    if let Some(team) = &f.scope_team {
        match find_label(c, LabelKind::Team, team)? {
            Some(id) => out.push(("team_id", id)),
            None => return Ok(None),
        }
    }
    let named = [
        ("user_id", LabelKind::User, &f.user),
        ("provider_id", LabelKind::Provider, &f.provider),
        ("model_id", LabelKind::Model, &f.model),
        ("gateway_id", LabelKind::Gateway, &f.gateway),
    ];
    for (col, kind, value) in named {
        if let Some(name) = value {
            match find_label(c, kind, name)? {
                Some(id) => out.push((col, id)),
                None => return Ok(None),
            }
        }
    }
    if let Some(team) = &f.team {
        if team == NO_TEAM_FILTER {
            out.push(("team_id", 0));
        } else {
            match find_label(c, LabelKind::Team, team)? {
                Some(id) => out.push(("team_id", id)),
                None => return Ok(None),
            }
        }
    }
    if let Some(wf) = &f.workflow {
        if wf == NO_WORKFLOW_LABEL {
            out.push(("workflow_id", 0));
        } else {
            match find_label(c, LabelKind::Workflow, wf)? {
                Some(id) => out.push(("workflow_id", id)),
                None => return Ok(None),
            }
        }
    }
    if let Some(co) = f.cache_outcome {
        out.push(("cache_outcome", co.code()));
    }
    if let Some(k) = f.key_id {
        out.push(("key_id", k));
    }
    Ok(Some(out))
}

fn group_column(g: GroupBy) -> &'static str {
    match g {
        GroupBy::Team => "team_id",
        GroupBy::User => "user_id",
        GroupBy::Key => "key_id",
        GroupBy::Provider => "provider_id",
        GroupBy::Model => "model_id",
        GroupBy::Gateway => "gateway_id",
        GroupBy::Workflow => "workflow_id",
        GroupBy::CacheOutcome => "cache_outcome",
    }
}

const SUMS: &str =
    "SUM(requests), SUM(errors), SUM(input_tokens), SUM(output_tokens), SUM(cached_input_tokens), \
                    SUM(cache_write_tokens), SUM(cost_pico), SUM(avoided_cost_pico)";

const MEASURES: &str =
    "requests, errors, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cost_pico, \
     avoided_cost_pico";

/// The per-dimension rollup column a query can read instead of the all-dimension rollups: possible when it
/// groups by one dimension (or by none) and filters on no other dimension.
fn narrow_column(
    group: Option<&'static str>,
    dims: &[(&'static str, i64)],
) -> Option<&'static str> {
    match (group, dims) {
        (Some(g), []) => Some(g),
        (Some(g), [(c, _)]) if *c == g => Some(g),
        // A total is the same over any dimension; the gateway has the fewest values.
        (None, []) => Some("gateway_id"),
        (None, [(c, _)]) => Some(c),
        _ => None,
    }
}

fn narrow_table(g: Grain) -> Option<&'static str> {
    match g {
        Grain::Minute => None,
        Grain::Hour => Some("rollup_dim_hour"),
        Grain::Day => Some("rollup_dim_day"),
    }
}

/// Builds `SELECT g, sums FROM (<one sub-select per span piece>) GROUP BY g` over the rollups (or the sums alone
/// when there is no group). Whole hours and days come from the per-dimension rollups when the query allows it,
/// the rest from the all-dimension ones: the same sums, from far fewer rows.
fn rollup_query(
    group: Option<&'static str>,
    w: ResolvedWindow,
    dims: &[(&'static str, i64)],
    params: &mut Vec<Value>,
) -> String {
    let narrow = narrow_column(group, dims).and_then(super::schema::dim_code);
    let mut parts = Vec::new();
    for (grain, a, b) in split_span(w.from_ms, w.to_ms) {
        params.push(Value::Integer(grain.bucket(a)));
        params.push(Value::Integer(grain.bucket(b)));
        match (narrow, narrow_table(grain)) {
            (Some(code), Some(table)) => {
                let mut sql =
                    format!("SELECT value AS g, {MEASURES} FROM {table} WHERE bucket >= ? AND bucket < ? AND dim = ?");
                params.push(Value::Integer(code));
                // At most one filter, on the same dimension (see `narrow_column`).
                for (_, id) in dims {
                    sql.push_str(" AND value = ?");
                    params.push(Value::Integer(*id));
                }
                parts.push(sql);
            }
            _ => {
                let table = rollup_table(grain);
                let mut sql = format!(
                    "SELECT {} AS g, {MEASURES} FROM {table} WHERE bucket >= ? AND bucket < ?",
                    group.unwrap_or("0")
                );
                for (col, id) in dims {
                    sql.push_str(&format!(" AND {col} = ?"));
                    params.push(Value::Integer(*id));
                }
                parts.push(sql);
            }
        }
    }
    if parts.is_empty() {
        parts.push(format!(
            "SELECT 0 AS g, {MEASURES} FROM {} WHERE 0",
            ROLLUP_TABLES[0]
        ));
    }
    let from = parts.join(" UNION ALL ");
    match group {
        Some(_) => format!("SELECT g, {SUMS} FROM ({from}) GROUP BY g"),
        None => format!("SELECT {SUMS} FROM ({from})"),
    }
}

fn rollup_table(g: Grain) -> &'static str {
    match g {
        Grain::Minute => ROLLUP_TABLES[0],
        Grain::Hour => ROLLUP_TABLES[1],
        Grain::Day => ROLLUP_TABLES[2],
    }
}

fn totals_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Totals> {
    let n = |k: usize| -> rusqlite::Result<u64> {
        Ok(u64::try_from(r.get::<_, Option<i64>>(i + k)?.unwrap_or(0)).unwrap_or(0))
    };
    Ok(Totals {
        requests: n(0)?,
        errors: n(1)?,
        input_tokens: n(2)?,
        output_tokens: n(3)?,
        cached_input_tokens: n(4)?,
        cache_write_tokens: n(5)?,
        cost: Money::from_picos(i128::from(r.get::<_, Option<i64>>(i + 6)?.unwrap_or(0))),
        avoided_cost: Money::from_picos(i128::from(r.get::<_, Option<i64>>(i + 7)?.unwrap_or(0))),
    })
}

pub(super) fn summary(c: &Connection, f: &Filters, w: ResolvedWindow) -> Result<Totals> {
    let Some(dims) = dimension_filters(c, f)? else {
        return Ok(Totals::default());
    };
    let mut params = Vec::new();
    let sql = rollup_query(None, w, &dims, &mut params);
    let mut st = c.prepare(&sql)?;
    Ok(st.query_row(rusqlite::params_from_iter(params), |r| totals_at(r, 0))?)
}

/// The label and filter key of a group id.
/// The names of every value of a grouping in one query (labels of its kind, or keys): naming a thousand rows
/// one query at a time would cost more than summing them.
fn names_for(c: &Connection, g: GroupBy) -> Result<HashMap<i64, String>> {
    let kind = match g {
        GroupBy::Team => LabelKind::Team,
        GroupBy::User => LabelKind::User,
        GroupBy::Provider => LabelKind::Provider,
        GroupBy::Model => LabelKind::Model,
        GroupBy::Gateway => LabelKind::Gateway,
        GroupBy::Workflow => LabelKind::Workflow,
        GroupBy::CacheOutcome => return Ok(HashMap::new()),
        GroupBy::Key => {
            let mut st = c.prepare_cached("SELECT id, user_name, hint FROM keys")?;
            let rows = st
                .query_map([], |r| {
                    let id: i64 = r.get(0)?;
                    Ok((
                        id,
                        format!(
                            "key {id} ({}, …{})",
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?
                        ),
                    ))
                })?
                .collect::<rusqlite::Result<HashMap<_, _>>>()?;
            return Ok(rows);
        }
    };
    let mut st = c.prepare_cached("SELECT id, name FROM labels WHERE kind = ?1")?;
    let rows = st
        .query_map([kind as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<HashMap<_, _>>>()?;
    Ok(rows)
}

/// The filter key and label of one value of a grouping, given its name when it has one.
fn identity(g: GroupBy, id: i64, name: Option<String>) -> (Option<String>, String) {
    match g {
        GroupBy::Team if id == 0 => (None, NO_TEAM_LABEL.to_string()),
        GroupBy::Workflow if id == 0 => (
            Some(NO_WORKFLOW_LABEL.to_string()),
            NO_WORKFLOW_LABEL.to_string(),
        ),
        GroupBy::CacheOutcome => {
            let co = CacheOutcome::from_code(id);
            (Some(co.as_str().to_string()), co.as_str().to_string())
        }
        GroupBy::Key => (
            Some(id.to_string()),
            name.unwrap_or_else(|| format!("key {id}")),
        ),
        _ => {
            let l = name.unwrap_or_else(|| format!("#{id}"));
            (Some(l.clone()), l)
        }
    }
}

pub(super) fn explorer(
    c: &Connection,
    f: &Filters,
    w: ResolvedWindow,
    g: GroupBy,
) -> Result<Vec<GroupRow>> {
    let Some(dims) = dimension_filters(c, f)? else {
        return Ok(Vec::new());
    };
    let col = group_column(g);
    let mut params = Vec::new();
    let sql = rollup_query(Some(col), w, &dims, &mut params);
    let mut st = c.prepare(&sql)?;
    let raw = st
        .query_map(rusqlite::params_from_iter(params), |r| {
            Ok((r.get::<_, i64>(0)?, totals_at(r, 1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut names = names_for(c, g)?;
    let mut rows = Vec::with_capacity(raw.len());
    for (id, totals) in raw {
        let (key, label) = identity(g, id, names.remove(&id));
        rows.push(GroupRow { key, label, totals });
    }
    sort_rows(&mut rows, SortBy::Cost);
    Ok(rows)
}

pub(super) fn series(
    c: &Connection,
    f: &Filters,
    grain: Grain,
    g: Option<GroupBy>,
) -> Result<Vec<SeriesPoint>> {
    let Some(dims) = dimension_filters(c, f)? else {
        return Ok(Vec::new());
    };
    let mut params: Vec<Value> = vec![
        Value::Integer(grain.bucket(f.from_ms)),
        Value::Integer(grain.bucket(grain.ceil(f.to_ms))),
    ];
    let group_col = g.map(group_column);
    let narrow = narrow_column(group_col, &dims).and_then(super::schema::dim_code);
    let sql = match (narrow, narrow_table(grain)) {
        (Some(code), Some(table)) => {
            // One series per value of one dimension (or the total): read the per-dimension rollup.
            params.push(Value::Integer(code));
            let mut filter = String::new();
            for (_, id) in &dims {
                filter.push_str(" AND value = ?");
                params.push(Value::Integer(*id));
            }
            let (select, group) = match g {
                Some(_) => ("bucket, value", "bucket, value"),
                None => ("bucket, 0", "bucket"),
            };
            format!(
                "SELECT {select}, {SUMS} FROM {table} WHERE bucket >= ? AND bucket < ? AND dim = ?{filter} \
                 GROUP BY {group} ORDER BY bucket"
            )
        }
        _ => {
            let table = rollup_table(grain);
            let mut filter = String::new();
            for (col, id) in &dims {
                filter.push_str(&format!(" AND {col} = ?"));
                params.push(Value::Integer(*id));
            }
            let (select, group) = match g {
                Some(g) => (
                    format!("bucket, {}", group_column(g)),
                    format!("bucket, {}", group_column(g)),
                ),
                None => ("bucket, 0".to_string(), "bucket".to_string()),
            };
            format!(
                "SELECT {select}, {SUMS} FROM {table} WHERE bucket >= ? AND bucket < ?{filter} GROUP BY {group} \
                 ORDER BY bucket"
            )
        }
    };
    let mut st = c.prepare(&sql)?;
    let raw = st
        .query_map(rusqlite::params_from_iter(params), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, totals_at(r, 2)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(raw.len());
    let names = match g {
        Some(g) => names_for(c, g)?,
        None => HashMap::new(),
    };
    for (bucket, id, totals) in raw {
        let group = g.map(|g| identity(g, id, names.get(&id).cloned()).1);
        out.push(SeriesPoint {
            bucket_start_ms: bucket * grain.ms(),
            group,
            totals,
        });
    }
    Ok(out)
}

/// Request activity for the activity history: totals per bucket of `grain`, key, workflow and gateway, read
/// from the rollup of that grain (never the spend logs). Rows come oldest bucket first.
pub(super) fn request_activity(
    c: &Connection,
    f: &Filters,
    grain: Grain,
) -> Result<Vec<crate::ActivityRow>> {
    let Some(dims) = dimension_filters(c, f)? else {
        return Ok(Vec::new());
    };
    let table = rollup_table(grain);
    let mut params: Vec<Value> = vec![
        Value::Integer(grain.bucket(f.from_ms)),
        Value::Integer(grain.bucket(grain.ceil(f.to_ms))),
    ];
    let mut filter = String::new();
    for (col, id) in &dims {
        filter.push_str(&format!(" AND {col} = ?"));
        params.push(Value::Integer(*id));
    }
    let sql = format!(
        "SELECT bucket, key_id, user_id, team_id, workflow_id, gateway_id, {SUMS} FROM {table} \
         WHERE bucket >= ? AND bucket < ?{filter} \
         GROUP BY bucket, key_id, user_id, team_id, workflow_id, gateway_id ORDER BY bucket, key_id"
    );
    let mut st = c.prepare(&sql)?;
    let raw = st
        .query_map(rusqlite::params_from_iter(params), |r| {
            Ok((
                [
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ],
                totals_at(r, 6)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut names: std::collections::HashMap<i64, Option<String>> =
        std::collections::HashMap::new();
    let mut name = |id: i64| -> Result<Option<String>> {
        if id == 0 {
            return Ok(None);
        }
        if let Some(n) = names.get(&id) {
            return Ok(n.clone());
        }
        let n = c
            .query_row("SELECT name FROM labels WHERE id = ?1", [id], |r| {
                r.get::<_, String>(0)
            })
            .optional()?;
        names.insert(id, n.clone());
        Ok(n)
    };
    let mut out = Vec::with_capacity(raw.len());
    for ([bucket, key_id, user, team, workflow, gateway], totals) in raw {
        out.push(crate::ActivityRow {
            bucket_start_ms: bucket * grain.ms(),
            key_id,
            user: name(user)?.unwrap_or_default(),
            team: name(team)?,
            workflow: name(workflow)?,
            gateway: name(gateway)?.unwrap_or_default(),
            totals,
        });
    }
    Ok(out)
}

/// A spend-log cursor: the position (time, sequence) of the last row of the previous page.
pub(super) fn parse_cursor(s: &str) -> Result<(i64, i64)> {
    let bad = || {
        StoreError::Invalid(format!(
            "cursor '{s}' is not valid; pass the next_cursor of a previous page"
        ))
    };
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

const LOG_SELECT: &str = "SELECT s.seq, s.event_id, s.ts_ms, s.started_ms, s.latency_ms,
    (SELECT name FROM labels WHERE id = s.gateway_id), (SELECT name FROM labels WHERE id = s.provider_id),
    (SELECT name FROM labels WHERE id = s.model_id), s.key_id, (SELECT name FROM labels WHERE id = s.user_id),
    (SELECT name FROM labels WHERE id = s.team_id), (SELECT name FROM labels WHERE id = s.workflow_id),
    s.endpoint, s.stream, s.cache_outcome, s.status, s.http_status, s.input_tokens, s.output_tokens,
    s.cached_input_tokens, s.cache_write_tokens, s.cost_pico, s.usage_source, s.price_confidence, s.detail,
    (SELECT wallet_id FROM ledger WHERE request_id = s.event_id), s.fingerprint, s.attempts,
    s.avoided_cost_pico
  FROM spend_logs s";

fn log_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredSpendLog> {
    let id_bytes: Vec<u8> = r.get(1)?;
    let id = Uuid::from_slice(&id_bytes).unwrap_or_default();
    let detail: String = r.get(24)?;
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
    let price_lines: Vec<PriceLine> =
        serde_json::from_value(detail.get("price_lines").cloned().unwrap_or_default())
            .unwrap_or_default();
    let failed_attempts =
        serde_json::from_value(detail.get("failed_attempts").cloned().unwrap_or_default())
            .unwrap_or_default();
    let error = detail
        .get("error")
        .and_then(|e| e.as_str())
        .map(str::to_string);
    let u =
        |i: usize| -> rusqlite::Result<u64> { Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0)) };
    let team_id_name: Option<String> = r.get(10)?;
    Ok(StoredSpendLog {
        seq: r.get(0)?,
        event: SpendEvent {
            id,
            finished_at_ms: r.get(2)?,
            started_at_ms: r.get(3)?,
            latency_ms: r.get(4)?,
            gateway: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
            provider: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
            model: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
            attribution: Attribution {
                key_id: r.get(8)?,
                user: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
                team: team_id_name,
                workflow: r.get(11)?,
            },
            endpoint: r.get(12)?,
            stream: r.get(13)?,
            cache_outcome: CacheOutcome::from_code(r.get(14)?),
            status: RequestStatus::from_code(r.get(15)?),
            http_status: r.get(16)?,
            usage: Usage {
                input_tokens: u(17)?,
                output_tokens: u(18)?,
                cached_input_tokens: u(19)?,
                cache_write_tokens: u(20)?,
            },
            cost: Money::from_picos(i128::from(r.get::<_, i64>(21)?)),
            usage_source: UsageSource::from_code(r.get(22)?),
            price_confidence: PriceConfidence::from_code(r.get(23)?),
            price_lines,
            error,
            wallet_id: r.get(25)?,
            fingerprint: r
                .get::<_, Option<i64>>(26)?
                .map(super::fingerprint_from_sql),
            leases: Vec::new(),
            attempts: r.get(27)?,
            failed_attempts,
            avoided_cost: Money::from_picos(i128::from(r.get::<_, i64>(28)?)),
        },
    })
}

pub(super) fn spend_logs(
    c: &Connection,
    f: &Filters,
    limit: usize,
    cursor: Option<(i64, i64)>,
) -> Result<SpendLogPage> {
    let Some(dims) = dimension_filters(c, f)? else {
        return Ok(SpendLogPage {
            items: Vec::new(),
            next_cursor: None,
        });
    };
    let limit = limit.clamp(1, 1000);
    let mut sql = format!("{LOG_SELECT} WHERE s.ts_ms >= ? AND s.ts_ms < ?");
    let mut params = vec![Value::Integer(f.from_ms), Value::Integer(f.to_ms)];
    for (col, id) in &dims {
        sql.push_str(&format!(" AND s.{col} = ?"));
        params.push(Value::Integer(*id));
    }
    if let Some((ts, seq)) = cursor {
        sql.push_str(" AND (s.ts_ms, s.seq) < (?, ?)");
        params.push(Value::Integer(ts));
        params.push(Value::Integer(seq));
    }
    sql.push_str(" ORDER BY s.ts_ms DESC, s.seq DESC LIMIT ?");
    params.push(Value::Integer(i64::try_from(limit + 1).unwrap_or(1001)));
    let mut st = c.prepare(&sql)?;
    let mut items = st
        .query_map(rusqlite::params_from_iter(params), log_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items
            .last()
            .map(|l| format!("{}-{}", l.event.finished_at_ms, l.seq))
    } else {
        None
    };
    Ok(SpendLogPage { items, next_cursor })
}

pub(super) fn spend_log(c: &Connection, id: Uuid) -> Result<Option<StoredSpendLog>> {
    Ok(c.query_row(
        &format!("{LOG_SELECT} WHERE s.event_id = ?1"),
        [&id.as_bytes()[..]],
        log_from_row,
    )
    .optional()?)
}

/// Identical requests (same key and fingerprint) since `since_ms`, where one pair occurs at least `min_repeats`
/// times. It reads the spend logs by their time index, so it is meant for short windows (minutes): the
/// retry-loop detector's.
pub(super) fn repeated_requests(
    c: &Connection,
    since_ms: i64,
    min_repeats: u64,
) -> Result<Vec<RepeatedRequest>> {
    let mut st = c.prepare_cached(
        "SELECT key_id, fingerprint, COUNT(*), MIN(ts_ms), MAX(ts_ms), SUM(cost_pico), MAX(team_id), MAX(workflow_id)
           FROM spend_logs WHERE ts_ms >= ?1 AND fingerprint IS NOT NULL
          GROUP BY key_id, fingerprint HAVING COUNT(*) >= ?2
          ORDER BY COUNT(*) DESC LIMIT 100",
    )?;
    let raw = st
        .query_map(
            rusqlite::params![since_ms, i64::try_from(min_repeats).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let name = |id: i64| -> Result<Option<String>> {
        if id == 0 {
            return Ok(None);
        }
        Ok(
            // Cached statements: an explorer of a thousand users names a thousand rows.
            c.prepare_cached("SELECT name FROM labels WHERE id = ?1")?
                .query_row([id], |r| r.get::<_, String>(0))
                .optional()?,
        )
    };
    let mut out = Vec::with_capacity(raw.len());
    for (key_id, fp, n, first, last, cost, team, workflow) in raw {
        out.push(RepeatedRequest {
            key_id,
            team: name(team)?,
            workflow: name(workflow)?,
            fingerprint: super::fingerprint_from_sql(fp),
            requests: u64::try_from(n).unwrap_or(0),
            first_ms: first,
            last_ms: last,
            cost: Money::from_picos(i128::from(cost)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spendgate_core::time::HOUR_MS;

    #[test]
    fn windows_align_to_minutes_recently_and_hours_beyond_retention() {
        let now = 1000 * HOUR_MS;
        let w = resolve_window(now - HOUR_MS - 1, now - 5, now, 48 * HOUR_MS);
        assert_eq!(w.from_ms % 60_000, 0);
        assert!(w.from_ms < now - HOUR_MS);
        assert!(w.to_ms >= now - 5);
        let old = resolve_window(now - 100 * HOUR_MS - 1234, now, now, 48 * HOUR_MS);
        assert_eq!(old.from_ms % HOUR_MS, 0);
    }
}
