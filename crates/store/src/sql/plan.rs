//! Query plans shared by the backends: how a window is aligned, which filters a view applies, which rollup (all
//! dimensions or one) can answer it, and how group ids become the names people read.

use std::collections::HashMap;

use spendgate_core::query::{
    sort_rows, Filters, GroupBy, GroupRow, SortBy, Totals, NO_TEAM_FILTER, NO_TEAM_LABEL,
    NO_WORKFLOW_LABEL,
};
use spendgate_core::time::Grain;
use spendgate_core::CacheOutcome;

use crate::{ResolvedWindow, Result, SeriesPoint, SpendLogPage, StoreError, StoredSpendLog};

/// Label kinds, as stored in `labels.kind`. Dimension values are interned into `labels` so that spend logs and
/// rollups hold small integers; id 0 means "none" (the No team bucket, no workflow) so that it takes part in
/// unique keys like any other value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LabelKind {
    Team = 1,
    User = 2,
    Provider = 3,
    Model = 4,
    Gateway = 5,
    Workflow = 6,
}

impl LabelKind {
    pub const ALL: [LabelKind; 6] = [
        LabelKind::Team,
        LabelKind::User,
        LabelKind::Provider,
        LabelKind::Model,
        LabelKind::Gateway,
        LabelKind::Workflow,
    ];

    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(c: i64) -> Option<LabelKind> {
        LabelKind::ALL.into_iter().find(|k| k.code() == c)
    }
}

/// The three all-dimension rollup tables, one per grain.
pub const ROLLUP_TABLES: [&str; 3] = ["rollup_minute", "rollup_hour", "rollup_day"];

/// Index changes for stores of millions of spend logs, in both backends' migrations.
///
/// Indexes by team, user and model on the hour and day all-dimension rollups: every view of one team, user or
/// model reads those rollups (a team viewer sees nothing else, and clicking a row narrows the page to it), and
/// without an index a 30-day view of one team out of fifty scans all fifty. Dimensions with a handful of values
/// (provider, gateway, cache outcome) get none: a value holding a third of the traffic is read faster by the scan.
///
/// The `(key_id, fingerprint, ts_ms)` index on spend logs goes: the retry-loop detector, the only reader it was
/// made for, asks for the last minutes of traffic grouped by key and fingerprint, and SQLite answered that by
/// scanning the whole index in group order (1.2 s at 10 million spend logs, at every run of the detector) where
/// the `ts_ms` index reads only those minutes. Every spend log also paid a random insert into it.
pub const INDEX_TUNING: &str = "
CREATE INDEX IF NOT EXISTS rollup_hour_team ON rollup_hour (team_id, bucket);
CREATE INDEX IF NOT EXISTS rollup_day_team ON rollup_day (team_id, bucket);
CREATE INDEX IF NOT EXISTS rollup_hour_user ON rollup_hour (user_id, bucket);
CREATE INDEX IF NOT EXISTS rollup_day_user ON rollup_day (user_id, bucket);
CREATE INDEX IF NOT EXISTS rollup_hour_model ON rollup_hour (model_id, bucket);
CREATE INDEX IF NOT EXISTS rollup_day_model ON rollup_day (model_id, bucket);
DROP INDEX IF EXISTS spend_logs_key_fp_ts;
";

/// The dimension columns of the all-dimension rollups and their codes in the per-dimension ones.
pub const DIM_CODES: [(&str, i64); 8] = [
    ("team_id", 1),
    ("user_id", 2),
    ("key_id", 3),
    ("provider_id", 4),
    ("model_id", 5),
    ("gateway_id", 6),
    ("workflow_id", 7),
    ("cache_outcome", 8),
];

pub fn dim_code(column: &str) -> Option<i64> {
    DIM_CODES
        .iter()
        .find(|(c, _)| *c == column)
        .map(|(_, code)| *code)
}

pub fn rollup_table(g: Grain) -> &'static str {
    match g {
        Grain::Minute => ROLLUP_TABLES[0],
        Grain::Hour => ROLLUP_TABLES[1],
        Grain::Day => ROLLUP_TABLES[2],
    }
}

/// The per-dimension rollup of a grain; minutes have none (their windows are short).
pub fn narrow_table(g: Grain) -> Option<&'static str> {
    match g {
        Grain::Minute => None,
        Grain::Hour => Some(NARROW_TABLES[0]),
        Grain::Day => Some(NARROW_TABLES[1]),
    }
}

pub fn group_column(g: GroupBy) -> &'static str {
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

/// The dimensions that the pair rollups (`rollup_pair_hour`, `rollup_pair_day`) hold under a filter: one row per
/// bucket, value of this dimension and value of another. These are the filters of the pages whose values each
/// hold a large share of the traffic, so that neither an index nor the all-dimension rollups answer them fast
/// (a 30-day view of one provider out of two read ~400,000 all-dimension rows per grouping, and a page asks for
/// four groupings). Each filter held at a grain adds, to every batch, one upsert per distinct pair of its value
/// and a value of each other dimension, which for users and keys is about one per event (the cost is measured
/// in docs/BENCHMARKS-HISTORY.md). Providers, gateways and cache outcomes are held per hour
/// and per day; models and workflows, which have more values, per day only: views longer than a week read days,
/// and their hours come from the all-dimension rollups through the model index or a scan. Teams and users have
/// indexes and are not held.
pub fn pair_filters(g: Grain) -> &'static [&'static str] {
    match g {
        Grain::Minute => &[],
        Grain::Hour => &["provider_id", "gateway_id", "cache_outcome"],
        Grain::Day => &[
            "provider_id",
            "model_id",
            "gateway_id",
            "workflow_id",
            "cache_outcome",
        ],
    }
}

/// Whether the pair rollups hold rows under `filter = value`. Cache outcomes are held for hits and misses only:
/// the cache-savings panel filters on those, and the traffic a cache does not serve (most of it, all of it with
/// the cache off) would cost as many rows as a provider's for no view that needs them.
pub fn paired(filter: &str, value: i64) -> bool {
    filter != "cache_outcome" || PAIRED_CACHE_OUTCOMES.contains(&value)
}

/// The cache outcomes (`CacheOutcome::code`: hit, miss) that the pair rollups hold.
pub const PAIRED_CACHE_OUTCOMES: [i64; 2] = [1, 2];

/// The per-dimension rollups of hours and days.
pub const NARROW_TABLES: [&str; 2] = ["rollup_dim_hour", "rollup_dim_day"];

/// The pair rollups of hours and days, and their key columns in key order.
pub const PAIR_TABLES: [&str; 2] = ["rollup_pair_hour", "rollup_pair_day"];
pub const PAIR_KEY: &str = "fdim, fvalue, dim, bucket, value";

/// The pair rollup of a grain; minutes have none (their windows are short).
pub fn pair_table(g: Grain) -> Option<&'static str> {
    match g {
        Grain::Minute => None,
        Grain::Hour => Some(PAIR_TABLES[0]),
        Grain::Day => Some(PAIR_TABLES[1]),
    }
}

/// Marks the migration that creates the pair rollups and fills them from the all-dimension ones: each backend's
/// migration runs `pair_migration` in its place, so the tables and the fill follow `pair_filters` and
/// `DIM_CODES` instead of repeating them.
pub const PAIR_MIGRATION: &str = "-- pair rollups: see sql::plan::pair_migration";

/// Logged before the pair migration runs on a store: on a large one it takes minutes (measured in
/// docs/BENCHMARKS-HISTORY.md), and the gateway does not listen until it is done.
pub const PAIR_MIGRATION_NOTE: &str = "Upgrading the store once: filling the pair rollups from the hour and day \
    rollups. This takes about five minutes at 10 million spend logs; the gateway starts listening when it is done.";

/// Marks the migration that makes the hour rollups' model index carry the measures (`model_hour_index`).
pub const MODEL_HOUR_INDEX: &str = "-- covering model index: see sql::plan::model_hour_index";

/// The SQL of a migration marked `marker` for a backend, when it is generated rather than written out.
pub fn generated_migration(marker: &str, d: super::Dialect) -> Option<String> {
    match marker {
        PAIR_MIGRATION => Some(pair_migration(d)),
        MODEL_HOUR_INDEX => Some(model_hour_index(d)),
        super::refusals::MIGRATION => Some(super::refusals::migration(d)),
        _ => None,
    }
}

/// The hour rollups' index by model, carrying every measure, so that a read of one model's hours (a week's chart
/// of one model, which the pair rollups hold per day only) is answered from the index alone instead of visiting
/// the table for each of its ~36,000 rows at 10 million spend logs: 62-226 ms -> 27-29 ms for that read.
pub fn model_hour_index(d: super::Dialect) -> String {
    let measures = super::batch::ROLLUP_MEASURES;
    let columns = match d {
        super::Dialect::Sqlite => format!("(model_id, bucket, {measures})"),
        super::Dialect::Postgres => format!("(model_id, bucket) INCLUDE ({measures})"),
    };
    format!(
        "DROP INDEX IF EXISTS rollup_hour_model;
CREATE INDEX rollup_hour_model ON rollup_hour {columns};"
    )
}

/// The SQL of `PAIR_MIGRATION` for a backend: both pair tables, then every pair row the all-dimension hour and day
/// rollups imply.
pub fn pair_migration(d: super::Dialect) -> String {
    let (int, money, rowid) = match d {
        super::Dialect::Sqlite => ("INTEGER", "INTEGER", " WITHOUT ROWID"),
        super::Dialect::Postgres => ("BIGINT", "NUMERIC(38, 0)", ""),
    };
    let case = |on: &str| {
        let whens: Vec<String> = DIM_CODES
            .iter()
            .map(|(col, code)| format!("WHEN {code} THEN r.{col}"))
            .collect();
        format!("CASE {on} {} END", whens.join(" "))
    };
    let mut sql = String::new();
    for (grain, table) in [(Grain::Hour, PAIR_TABLES[0]), (Grain::Day, PAIR_TABLES[1])] {
        sql.push_str(&format!(
            "CREATE TABLE {table} (
    fdim {int} NOT NULL, fvalue {int} NOT NULL, dim {int} NOT NULL, bucket {int} NOT NULL, value {int} NOT NULL,
    requests {int} NOT NULL, errors {int} NOT NULL, input_tokens {int} NOT NULL, output_tokens {int} NOT NULL,
    cached_input_tokens {int} NOT NULL, cache_write_tokens {int} NOT NULL, cost_pico {money} NOT NULL,
    latency_ms_sum {int} NOT NULL, avoided_cost_pico {money} NOT NULL,
    PRIMARY KEY ({PAIR_KEY})
){rowid};
"
        ));
        let filters = pair_filters(grain)
            .iter()
            .filter_map(|c| dim_code(c))
            .map(|c| format!("SELECT {c} AS code"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let dims = DIM_CODES
            .iter()
            .map(|(_, c)| format!("SELECT {c} AS code"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let cache = dim_code("cache_outcome").unwrap_or(0);
        let held = PAIRED_CACHE_OUTCOMES.map(|c| c.to_string()).join(", ");
        sql.push_str(&format!(
            "INSERT INTO {table} ({PAIR_KEY}, {measures})
SELECT f.code, {fvalue}, d.code, r.bucket, {value}, {sums}
  FROM {source} AS r, ({filters}) AS f, ({dims}) AS d
 WHERE f.code <> d.code AND (f.code <> {cache} OR r.cache_outcome IN ({held}))
 GROUP BY 1, 2, 3, 4, 5;
",
            measures = super::batch::ROLLUP_MEASURES,
            fvalue = case("f.code"),
            value = case("d.code"),
            sums = super::batch::ROLLUP_MEASURES
                .split(',')
                .map(|m| format!("SUM(r.{})", m.trim()))
                .collect::<Vec<_>>()
                .join(", "),
            source = rollup_table(grain),
        ));
    }
    sql
}

/// Which rollups answer a query, given the column it groups by (if any) and its dimension filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The per-dimension rollups, rows of dimension `dim`, of one `value` when the query filters on it.
    Narrow { dim: i64, value: Option<i64> },
    /// The pair rollups: rows of dimension `dim` under the filter `filter = filter_value`.
    Pair {
        filter: i64,
        filter_value: i64,
        dim: i64,
    },
    /// The all-dimension rollups, with every filter.
    All,
}

impl Source {
    /// The rollup table of this source at `grain`, or `None` when the grain has no such rollup (minutes) and the
    /// all-dimension rollup must answer instead.
    pub fn table(self, grain: Grain) -> Option<&'static str> {
        match self {
            Source::Narrow { .. } => narrow_table(grain),
            Source::Pair { filter, .. } => {
                let held = pair_filters(grain)
                    .iter()
                    .any(|c| dim_code(c) == Some(filter));
                pair_table(grain).filter(|_| held)
            }
            Source::All => None,
        }
    }
}

/// The smallest rollup that answers a query: the per-dimension rollups when it groups by one dimension (or by
/// none) and filters on no other dimension; the pair rollups when it groups by one dimension and filters on one
/// other that they hold (`PAIR_FILTERS`); the all-dimension rollups otherwise.
pub fn source(group: Option<&'static str>, dims: &[(&'static str, i64)]) -> Source {
    let code = |c: &str| dim_code(c).unwrap_or(0);
    match (group, dims) {
        (Some(g), []) => Source::Narrow {
            dim: code(g),
            value: None,
        },
        (Some(g), [(c, v)]) if *c == g => Source::Narrow {
            dim: code(g),
            value: Some(*v),
        },
        // Days hold every paired filter (hours a subset, see the test); `Source::table` sends a grain that does
        // not hold this one to the all-dimension rollups.
        (Some(g), [(c, v)]) if pair_filters(Grain::Day).contains(c) && paired(c, *v) => {
            Source::Pair {
                filter: code(c),
                filter_value: *v,
                dim: code(g),
            }
        }
        // A total is the same over any dimension; the gateway has the fewest values.
        (None, []) => Source::Narrow {
            dim: code("gateway_id"),
            value: None,
        },
        (None, [(c, v)]) => Source::Narrow {
            dim: code(c),
            value: Some(*v),
        },
        _ => Source::All,
    }
}

/// Aligns a window to minutes, and to hours where it reaches back past the minute rollups' retention.
pub fn resolve_window(
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
        // The end, once aligned, is at or after the present: nothing can have been recorded beyond it yet.
        open_end: to.max(from) >= now_ms,
    }
}

/// The window a store reads for these filters now (see `resolve_window`).
pub fn window_of(f: &Filters, minute_retention_ms: i64) -> ResolvedWindow {
    resolve_window(
        f.from_ms,
        f.to_ms,
        spendgate_core::time::now_ms(),
        minute_retention_ms,
    )
}

/// How long minute rollups are kept, from the setting in hours (two at least: windows reach back an hour).
pub fn minute_retention_ms(hours: i64) -> i64 {
    hours.max(2) * spendgate_core::time::HOUR_MS
}

/// One dimension filter of a query: a fixed id, or a name still to be looked up in `labels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Fixed(&'static str, i64),
    Named(&'static str, LabelKind, String),
}

/// The dimension filters of a query, in the order the plans expect (the viewer's scope first).
pub fn filter_terms(f: &Filters) -> Vec<Term> {
    let mut out = Vec::new();
    if let Some(team) = &f.scope_team {
        out.push(Term::Named("team_id", LabelKind::Team, team.clone()));
    }
    let named = [
        ("user_id", LabelKind::User, &f.user),
        ("provider_id", LabelKind::Provider, &f.provider),
        ("model_id", LabelKind::Model, &f.model),
        ("gateway_id", LabelKind::Gateway, &f.gateway),
    ];
    for (col, kind, value) in named {
        if let Some(name) = value {
            out.push(Term::Named(col, kind, name.clone()));
        }
    }
    if let Some(team) = &f.team {
        out.push(if team == NO_TEAM_FILTER {
            Term::Fixed("team_id", 0)
        } else {
            Term::Named("team_id", LabelKind::Team, team.clone())
        });
    }
    if let Some(wf) = &f.workflow {
        out.push(if wf == NO_WORKFLOW_LABEL {
            Term::Fixed("workflow_id", 0)
        } else {
            Term::Named("workflow_id", LabelKind::Workflow, wf.clone())
        });
    }
    if let Some(co) = f.cache_outcome {
        out.push(Term::Fixed("cache_outcome", co.code()));
    }
    if let Some(k) = f.key_id {
        out.push(Term::Fixed("key_id", k));
    }
    out
}

/// Resolves filter terms to (column, id) pairs with the ids found. `None` when a named value was never recorded,
/// so no row can match.
pub fn resolve_terms(
    terms: Vec<Term>,
    found: &HashMap<(LabelKind, String), i64>,
) -> Option<Vec<(&'static str, i64)>> {
    let mut out = Vec::with_capacity(terms.len());
    for t in terms {
        match t {
            Term::Fixed(col, id) => out.push((col, id)),
            Term::Named(col, kind, name) => out.push((col, *found.get(&(kind, name))?)),
        }
    }
    Some(out)
}

/// The label kind whose names a grouping shows (`None` for keys and cache outcomes, named otherwise).
pub fn group_kind(g: GroupBy) -> Option<LabelKind> {
    match g {
        GroupBy::Team => Some(LabelKind::Team),
        GroupBy::User => Some(LabelKind::User),
        GroupBy::Provider => Some(LabelKind::Provider),
        GroupBy::Model => Some(LabelKind::Model),
        GroupBy::Gateway => Some(LabelKind::Gateway),
        GroupBy::Workflow => Some(LabelKind::Workflow),
        GroupBy::Key | GroupBy::CacheOutcome => None,
    }
}

/// How a key is named in a grouping: its id, its user and the last characters of its secret.
pub fn key_label(id: i64, user: &str, hint: &str) -> String {
    format!("key {id} ({user}, …{hint})")
}

/// The filter key and label of one value of a grouping, given its name when it has one.
pub fn identity(g: GroupBy, id: i64, name: Option<String>) -> (Option<String>, String) {
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

/// Explorer rows from (group id, totals) pairs, named and sorted by cost.
pub fn group_rows(
    g: GroupBy,
    raw: Vec<(i64, Totals)>,
    mut names: HashMap<i64, String>,
) -> Vec<GroupRow> {
    let mut rows = Vec::with_capacity(raw.len());
    for (id, totals) in raw {
        let (key, label) = identity(g, id, names.remove(&id));
        rows.push(GroupRow { key, label, totals });
    }
    sort_rows(&mut rows, SortBy::Cost);
    rows
}

/// Series points from (bucket, group id, totals) rows.
pub fn series_points(
    g: Option<GroupBy>,
    grain: Grain,
    raw: Vec<(i64, i64, Totals)>,
    names: &HashMap<i64, String>,
) -> Vec<SeriesPoint> {
    raw.into_iter()
        .map(|(bucket, id, totals)| SeriesPoint {
            bucket_start_ms: bucket * grain.ms(),
            group: g.map(|g| identity(g, id, names.get(&id).cloned()).1),
            totals,
        })
        .collect()
}

/// A page from up to `limit + 1` spend logs: the extra row only says that a next page exists.
pub fn page_of(mut items: Vec<StoredSpendLog>, limit: usize) -> SpendLogPage {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items
            .last()
            .map(|l| cursor_of(l.event.finished_at_ms, l.seq))
    } else {
        None
    };
    SpendLogPage { items, next_cursor }
}

/// A spend-log cursor: the position (time, sequence) of the last row of the previous page.
pub fn parse_cursor(s: &str) -> Result<(i64, i64)> {
    let bad = || {
        StoreError::Invalid(format!(
            "cursor '{s}' is not valid; pass the next_cursor of a previous page"
        ))
    };
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

pub fn cursor_of(ts_ms: i64, seq: i64) -> String {
    format!("{ts_ms}-{seq}")
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

    #[test]
    fn queries_read_the_smallest_rollup_that_answers_them() {
        assert_eq!(
            source(Some("user_id"), &[]),
            Source::Narrow {
                dim: 2,
                value: None
            }
        );
        assert_eq!(
            source(Some("user_id"), &[("provider_id", 9)]),
            Source::Pair {
                filter: 4,
                filter_value: 9,
                dim: 2
            }
        );
        assert_eq!(
            source(Some("model_id"), &[("gateway_id", 3)]),
            Source::Pair {
                filter: 6,
                filter_value: 3,
                dim: 5
            }
        );
        // Teams, users and models are filtered through their indexes on the all-dimension rollups, and two
        // filters need every dimension.
        assert_eq!(source(Some("model_id"), &[("team_id", 3)]), Source::All);
        assert_eq!(
            source(Some("model_id"), &[("provider_id", 1), ("gateway_id", 3)]),
            Source::All
        );
        assert_eq!(
            source(None, &[("provider_id", 1)]),
            Source::Narrow {
                dim: 4,
                value: Some(1)
            }
        );
        assert!(pair_filters(Grain::Hour)
            .iter()
            .all(|c| pair_filters(Grain::Day).contains(c)));
        // Models are held per day only: their hours come from the all-dimension rollups.
        let by_model = source(Some("team_id"), &[("model_id", 4)]);
        assert!(matches!(by_model, Source::Pair { .. }));
        assert_eq!(by_model.table(Grain::Day), Some("rollup_pair_day"));
        assert_eq!(by_model.table(Grain::Hour), None);
        // Cache outcomes are paired for hits and misses only.
        assert!(matches!(
            source(Some("team_id"), &[("cache_outcome", 1)]),
            Source::Pair { .. }
        ));
        assert_eq!(
            source(Some("team_id"), &[("cache_outcome", 0)]),
            Source::All
        );
        assert_eq!(Source::All.table(Grain::Day), None);
        assert_eq!(
            source(Some("user_id"), &[("provider_id", 9)]).table(Grain::Minute),
            None
        );
    }

    #[test]
    fn unknown_names_match_nothing_and_no_team_is_id_zero() {
        let f = Filters {
            team: Some(NO_TEAM_FILTER.into()),
            model: Some("m".into()),
            ..Filters::default()
        };
        let terms = filter_terms(&f);
        assert_eq!(resolve_terms(terms.clone(), &HashMap::new()), None);
        let found = HashMap::from([((LabelKind::Model, "m".to_string()), 7)]);
        assert_eq!(
            resolve_terms(terms, &found),
            Some(vec![("model_id", 7), ("team_id", 0)])
        );
    }
}
