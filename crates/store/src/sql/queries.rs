//! The SQL text of every read, written once for both backends. Sums are cast so that both drivers read them
//! alike: counts as 64-bit integers and money as decimal text (PostgreSQL sums money as NUMERIC, which may exceed
//! 64 bits; the text is parsed into an exact `i128`).

use spendgate_core::query::{Filters, GroupBy};
use spendgate_core::time::{plan_span, Grain};

use super::plan::{group_column, rollup_table, source, LabelKind, Source, ROLLUP_TABLES};
use super::{Dialect, Query};
use crate::ResolvedWindow;

/// The sums every rollup read returns, in the order `rows::totals_at` reads them.
pub const SUMS: &str = "CAST(SUM(requests) AS BIGINT), CAST(SUM(errors) AS BIGINT), \
    CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT), \
    CAST(SUM(cached_input_tokens) AS BIGINT), CAST(SUM(cache_write_tokens) AS BIGINT), \
    CAST(SUM(cost_pico) AS TEXT), CAST(SUM(avoided_cost_pico) AS TEXT)";

const MEASURES: &str =
    "requests, errors, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, \
    cost_pico, avoided_cost_pico";

/// `MEASURES` taken away, under the same names.
const NEGATED_MEASURES: &str = "-requests AS requests, -errors AS errors, -input_tokens AS input_tokens, \
    -output_tokens AS output_tokens, -cached_input_tokens AS cached_input_tokens, \
    -cache_write_tokens AS cache_write_tokens, -cost_pico AS cost_pico, -avoided_cost_pico AS avoided_cost_pico";

impl Dialect {
    /// The placeholder of the `n`th parameter (from 1).
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }
}

/// ` AND <prefix><column> = <param>` for every dimension filter.
fn where_dims(q: &mut Query, prefix: &str, dims: &[(&'static str, i64)]) -> String {
    let mut out = String::new();
    for (col, id) in dims {
        let p = q.bind(*id);
        out.push_str(&format!(" AND {prefix}{col} = {p}"));
    }
    out
}

/// The rows one source holds for a grain between two bound buckets: `(group expression, FROM ... WHERE ...)`.
/// The group expression is `None` when the query has no group (the caller then selects a constant).
fn source_rows(
    q: &mut Query,
    source: Source,
    grain: Grain,
    (lo, hi): (&str, &str),
    group: Option<&'static str>,
    dims: &[(&'static str, i64)],
) -> (Option<&'static str>, String) {
    let range = format!("bucket >= {lo} AND bucket < {hi}");
    match (source, source.table(grain)) {
        (Source::Narrow { dim, value }, Some(table)) => {
            let dim = q.bind(dim);
            let mut sql = format!("FROM {table} WHERE {range} AND dim = {dim}");
            if let Some(v) = value {
                let v = q.bind(v);
                sql.push_str(&format!(" AND value = {v}"));
            }
            (group.map(|_| "value"), sql)
        }
        (
            Source::Pair {
                filter,
                filter_value,
                dim,
            },
            Some(table),
        ) => {
            let (f, fv, d) = (q.bind(filter), q.bind(filter_value), q.bind(dim));
            (
                group.map(|_| "value"),
                format!(
                    "FROM {table} WHERE fdim = {f} AND fvalue = {fv} AND dim = {d} AND {range}"
                ),
            )
        }
        _ => {
            let filter = where_dims(q, "", dims);
            (
                group,
                format!("FROM {} WHERE {range}{filter}", rollup_table(grain)),
            )
        }
    }
}

/// `SELECT g, sums FROM (<one sub-select per span piece>) GROUP BY g` over the rollups (or the sums alone when
/// there is no group). Whole hours and days come from the smallest rollup that answers the query
/// (`plan::source`), the rest from the all-dimension ones: the same sums, from far fewer rows.
pub fn rollup_query(
    d: Dialect,
    group: Option<&'static str>,
    w: ResolvedWindow,
    dims: &[(&'static str, i64)],
) -> Query {
    let mut q = Query::new(d);
    let source = source(group, dims);
    let mut parts = Vec::new();
    let pieces = plan_span(w.from_ms, w.to_ms, w.open_end);
    for piece in &pieces {
        let grain = piece.grain;
        let (lo, hi) = (
            q.bind(grain.bucket(piece.from_ms)),
            q.bind(grain.bucket(piece.to_ms)),
        );
        // A subtracted piece (the hours of a first day before the window) reads its measures negated.
        let measures = if piece.subtract {
            NEGATED_MEASURES
        } else {
            MEASURES
        };
        let (g, rows) = source_rows(&mut q, source, grain, (&lo, &hi), group, dims);
        parts.push(format!(
            "SELECT {} AS g, {measures} {rows}",
            g.unwrap_or("0")
        ));
    }
    if parts.is_empty() {
        parts.push(format!(
            "SELECT 0 AS g, {MEASURES} FROM {} WHERE 1 = 0",
            ROLLUP_TABLES[0]
        ));
    }
    let from = parts.join(" UNION ALL ");
    q.sql = match group {
        // With a subtracted piece, a group whose only traffic lay before the window nets to zero requests: it
        // had none in the window and is left out, as it would be without the subtraction.
        Some(_) if pieces.iter().any(|p| p.subtract) => {
            format!("SELECT g, {SUMS} FROM ({from}) AS u GROUP BY g HAVING SUM(requests) <> 0")
        }
        Some(_) => format!("SELECT g, {SUMS} FROM ({from}) AS u GROUP BY g"),
        None => format!("SELECT {SUMS} FROM ({from}) AS u"),
    };
    q
}

/// Totals per bucket of `grain` (and per group), oldest first: (bucket, group id, sums...).
pub fn series_query(
    d: Dialect,
    f: &Filters,
    grain: Grain,
    g: Option<GroupBy>,
    dims: &[(&'static str, i64)],
) -> Query {
    let mut q = Query::new(d);
    let lo = q.bind(grain.bucket(f.from_ms));
    let hi = q.bind(grain.bucket(grain.ceil(f.to_ms)));
    let group_col = g.map(group_column);
    let (group, rows) = source_rows(
        &mut q,
        source(group_col, dims),
        grain,
        (&lo, &hi),
        group_col,
        dims,
    );
    q.sql = match group {
        Some(col) => {
            format!("SELECT bucket, {col}, {SUMS} {rows} GROUP BY bucket, {col} ORDER BY bucket")
        }
        None => format!(
            "SELECT bucket, CAST(0 AS BIGINT), {SUMS} {rows} GROUP BY bucket ORDER BY bucket"
        ),
    };
    q
}

/// Totals per bucket of `grain`, key, user, team, workflow and gateway, read from the rollup of that grain.
pub fn activity_query(
    d: Dialect,
    f: &Filters,
    grain: Grain,
    dims: &[(&'static str, i64)],
) -> Query {
    let mut q = Query::new(d);
    let lo = q.bind(grain.bucket(f.from_ms));
    let hi = q.bind(grain.bucket(grain.ceil(f.to_ms)));
    let filter = where_dims(&mut q, "", dims);
    q.sql = format!(
        "SELECT bucket, key_id, user_id, team_id, workflow_id, gateway_id, {SUMS} FROM {} \
         WHERE bucket >= {lo} AND bucket < {hi}{filter} \
         GROUP BY bucket, key_id, user_id, team_id, workflow_id, gateway_id ORDER BY bucket, key_id",
        rollup_table(grain)
    );
    q
}

/// A spend log with its names, in the order `rows::stored_log` reads it.
pub const LOG_SELECT: &str = "SELECT s.seq, s.event_id, s.ts_ms, s.started_ms, s.latency_ms,
    (SELECT name FROM labels WHERE id = s.gateway_id), (SELECT name FROM labels WHERE id = s.provider_id),
    (SELECT name FROM labels WHERE id = s.model_id), s.key_id, (SELECT name FROM labels WHERE id = s.user_id),
    (SELECT name FROM labels WHERE id = s.team_id), (SELECT name FROM labels WHERE id = s.workflow_id),
    s.endpoint, s.stream, s.cache_outcome, s.status, s.http_status, s.input_tokens, s.output_tokens,
    s.cached_input_tokens, s.cache_write_tokens, s.cost_pico, s.usage_source, s.price_confidence, s.detail,
    (SELECT wallet_id FROM ledger WHERE request_id = s.event_id), s.fingerprint, s.attempts, s.avoided_cost_pico
  FROM spend_logs s";

/// One page of spend logs, newest first, one more row than `limit` (to know whether a next page exists).
pub fn spend_logs_query(
    d: Dialect,
    f: &Filters,
    dims: &[(&'static str, i64)],
    limit: usize,
    cursor: Option<(i64, i64)>,
) -> Query {
    newest_page(
        d,
        (LOG_SELECT, "s."),
        (f.from_ms, f.to_ms),
        dims,
        limit,
        cursor,
    )
}

/// One page of a table kept by time and sequence (spend logs, refusals), newest first, one more row than
/// `limit`: `select` reads the table under the alias `prefix` ("s."), within `[from, to)`.
pub fn newest_page(
    d: Dialect,
    (select, prefix): (&str, &str),
    (from_ms, to_ms): (i64, i64),
    dims: &[(&'static str, i64)],
    limit: usize,
    cursor: Option<(i64, i64)>,
) -> Query {
    let mut q = Query::new(d);
    // After a cursor the window ends just past the cursor's time. The pair below implies it, but only a bound on
    // the time alone narrows the time index's range: on SQLite that index holds (time, event id), not (time,
    // seq), and SQLite takes one upper bound of two without knowing which is the lower.
    let end = match cursor {
        Some((ts, _)) => to_ms.min(ts.saturating_add(1)),
        None => to_ms,
    };
    let (lo, hi) = (q.bind(from_ms), q.bind(end));
    let mut sql = format!("{select} WHERE {prefix}ts_ms >= {lo} AND {prefix}ts_ms < {hi}");
    sql.push_str(&where_dims(&mut q, prefix, dims));
    if let Some((ts, seq)) = cursor {
        let (a, b) = (q.bind(ts), q.bind(seq));
        sql.push_str(&format!(" AND ({prefix}ts_ms, {prefix}seq) < ({a}, {b})"));
    }
    let n = q.bind(i64::try_from(limit + 1).unwrap_or(1001));
    sql.push_str(&format!(
        " ORDER BY {prefix}ts_ms DESC, {prefix}seq DESC LIMIT {n}"
    ));
    q.sql = sql;
    q
}

/// Pairs of (key, fingerprint) repeated at least `min_repeats` times since `since_ms`, most repeated first.
pub fn repeated_query(d: Dialect, since_ms: i64, min_repeats: u64) -> Query {
    let mut q = Query::new(d);
    let since = q.bind(since_ms);
    let min = q.bind(i64::try_from(min_repeats).unwrap_or(i64::MAX));
    q.sql = format!(
        "SELECT key_id, fingerprint, CAST(COUNT(*) AS BIGINT), MIN(ts_ms), MAX(ts_ms), CAST(SUM(cost_pico) AS TEXT),
                MAX(team_id), MAX(workflow_id)
           FROM spend_logs WHERE ts_ms >= {since} AND fingerprint IS NOT NULL
          GROUP BY key_id, fingerprint HAVING COUNT(*) >= {min}
          ORDER BY COUNT(*) DESC LIMIT 100"
    );
    q
}

/// The names of every label of one kind: (id, name).
pub fn names_query(d: Dialect, kind: LabelKind) -> Query {
    let mut q = Query::new(d);
    let k = q.bind(kind.code());
    q.sql = format!("SELECT id, name FROM labels WHERE kind = {k}");
    q
}

/// Every key as (id, user, hint), to name a grouping by key.
pub const KEY_NAMES: &str = "SELECT id, user_name, hint FROM keys";

/// The names of these label ids: (id, name). `None` when there is nothing to look up.
pub fn labels_by_id(d: Dialect, ids: &[i64]) -> Option<Query> {
    if ids.is_empty() {
        return None;
    }
    let mut q = Query::new(d);
    let list = ids.iter().map(|id| q.bind(*id)).collect::<Vec<_>>();
    q.sql = format!(
        "SELECT id, name FROM labels WHERE id IN ({})",
        list.join(", ")
    );
    Some(q)
}

/// The id of one label by kind and name (for filters): (kind, name) are bound by the backend as $1/?1, $2/?2.
pub fn find_label_sql(d: Dialect) -> String {
    format!(
        "SELECT id FROM labels WHERE kind = {} AND name = {}",
        d.placeholder(1),
        d.placeholder(2)
    )
}
