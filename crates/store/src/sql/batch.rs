//! A batch of spend events folded into rollup rows, once for both backends: the all-dimension rows of every grain,
//! and the per-dimension and pair rows of hours and days, the latter two folded from the former (never from
//! single events) so that every kind always holds exactly the same sums.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use spendgate_core::time::{Grain, HOUR_MS};
use spendgate_core::SpendEvent;

use super::plan::{pair_filters, paired, LabelKind, DIM_CODES};
use crate::{Result, StoreError};

/// The dimension columns of the all-dimension rollups, in key order.
pub const ROLLUP_DIMS: &str =
    "bucket, team_id, user_id, key_id, provider_id, model_id, gateway_id, workflow_id, cache_outcome";

/// The measure columns every rollup shares.
pub const ROLLUP_MEASURES: &str =
    "requests, errors, input_tokens, output_tokens, cached_input_tokens, \
    cache_write_tokens, cost_pico, latency_ms_sum, avoided_cost_pico";

/// How many measure columns `ROLLUP_MEASURES` names (what `Acc::values` returns).
pub const MEASURE_COUNT: usize = 9;

/// How an upsert into a rollup aliased `r` adds a batch's sums to the row already there.
pub const ADD_MEASURES: &str = "requests = r.requests + excluded.requests, errors = r.errors + excluded.errors,
    input_tokens = r.input_tokens + excluded.input_tokens, output_tokens = r.output_tokens + excluded.output_tokens,
    cached_input_tokens = r.cached_input_tokens + excluded.cached_input_tokens,
    cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
    cost_pico = r.cost_pico + excluded.cost_pico, latency_ms_sum = r.latency_ms_sum + excluded.latency_ms_sum,
    avoided_cost_pico = r.avoided_cost_pico + excluded.avoided_cost_pico";

/// Batches at least this large fold their rollup rows on a second thread while their spend logs are written:
/// below it, starting the thread costs about what it saves.
pub const PARALLEL_FOLD_FROM: usize = 1024;

/// How often minute rollups are pruned, and old partitions dropped.
pub const MAINTENANCE_EVERY_MS: i64 = 10 * 60_000;

/// Minute rollups older than this bucket can go: the retention plus an hour of margin, so that a query resolved
/// just before the prune still finds its rows.
pub fn minute_prune_cutoff(now_ms: i64, minute_retention_ms: i64) -> i64 {
    Grain::Minute.bucket(now_ms - minute_retention_ms - HOUR_MS)
}

/// The dimensions of one rollup row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dims {
    pub team: i64,
    pub user: i64,
    pub key: i64,
    pub provider: i64,
    pub model: i64,
    pub gateway: i64,
    pub workflow: i64,
    pub cache_outcome: i64,
}

impl Dims {
    /// The values in the order of `DIM_CODES` (and of the rollups' key columns after the bucket).
    pub fn values(&self) -> [i64; 8] {
        [
            self.team,
            self.user,
            self.key,
            self.provider,
            self.model,
            self.gateway,
            self.workflow,
            self.cache_outcome,
        ]
    }
}

/// The dimensions of an event, with label ids from `label` (which interns or looks up a name).
pub fn dims_of(
    e: &SpendEvent,
    mut label: impl FnMut(LabelKind, &str) -> Result<i64>,
) -> Result<Dims> {
    let a = &e.attribution;
    Ok(Dims {
        team: match &a.team {
            Some(t) => label(LabelKind::Team, t)?,
            None => 0,
        },
        user: label(LabelKind::User, &a.user)?,
        key: a.key_id,
        provider: label(LabelKind::Provider, &e.provider)?,
        model: label(LabelKind::Model, &e.model)?,
        gateway: label(LabelKind::Gateway, &e.gateway)?,
        workflow: match &a.workflow {
            Some(wf) => label(LabelKind::Workflow, wf)?,
            None => 0,
        },
        cache_outcome: e.cache_outcome.code(),
    })
}

/// Every (kind, name) an event needs a label for.
pub fn label_names(e: &SpendEvent) -> impl Iterator<Item = (LabelKind, &str)> {
    let a = &e.attribution;
    [
        a.team.as_deref().map(|t| (LabelKind::Team, t)),
        Some((LabelKind::User, a.user.as_str())),
        Some((LabelKind::Provider, e.provider.as_str())),
        Some((LabelKind::Model, e.model.as_str())),
        Some((LabelKind::Gateway, e.gateway.as_str())),
        a.workflow.as_deref().map(|w| (LabelKind::Workflow, w)),
    ]
    .into_iter()
    .flatten()
}

/// Sums of one rollup row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acc {
    pub requests: i64,
    pub errors: i64,
    pub input: i64,
    pub output: i64,
    pub cached: i64,
    pub cache_write: i64,
    pub cost: i64,
    pub latency: i64,
    /// What cache hits avoided (picodollars).
    pub avoided: i64,
}

impl Acc {
    pub fn add(&mut self, o: &Acc) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.input += o.input;
        self.output += o.output;
        self.cached += o.cached;
        self.cache_write += o.cache_write;
        self.cost += o.cost;
        self.latency += o.latency;
        self.avoided += o.avoided;
    }

    pub fn values(&self) -> [i64; MEASURE_COUNT] {
        [
            self.requests,
            self.errors,
            self.input,
            self.output,
            self.cached,
            self.cache_write,
            self.cost,
            self.latency,
            self.avoided,
        ]
    }
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The cost of an event as stored in one spend-log row.
pub fn cost_of(e: &SpendEvent) -> Result<i64> {
    i64::try_from(e.cost.picos()).map_err(|_| {
        StoreError::Invalid(format!(
            "the cost of request {} does not fit a spend log",
            e.id
        ))
    })
}

/// The avoided cost of an event (a cache hit's) as stored in one spend-log row.
pub fn avoided_of(e: &SpendEvent) -> Result<i64> {
    i64::try_from(e.avoided_cost.picos()).map_err(|_| {
        StoreError::Invalid(format!(
            "the avoided cost of request {} does not fit a spend log",
            e.id
        ))
    })
}

/// The token counts of an event as stored: input, output, cached input, cache write.
pub fn tokens_of(e: &SpendEvent) -> [i64; 4] {
    [
        i64_of(e.usage.input_tokens),
        i64_of(e.usage.output_tokens),
        i64_of(e.usage.cached_input_tokens),
        i64_of(e.usage.cache_write_tokens),
    ]
}

/// The integer columns of a spend log, in the order `log_ints` fills them (the other columns are the event id,
/// the endpoint, the detail, the stream flag and the fingerprint).
pub const LOG_INT_COLUMNS: [&str; 22] = [
    "ts_ms",
    "started_ms",
    "latency_ms",
    "gateway_id",
    "provider_id",
    "model_id",
    "key_id",
    "user_id",
    "team_id",
    "workflow_id",
    "cache_outcome",
    "status",
    "http_status",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cost_pico",
    "usage_source",
    "price_confidence",
    "attempts",
    "avoided_cost_pico",
];

pub fn log_ints(e: &SpendEvent, d: &Dims, cost: i64, avoided: i64) -> [i64; 22] {
    let [input, output, cached, cache_write] = tokens_of(e);
    [
        e.finished_at_ms,
        e.started_at_ms,
        i64::from(e.latency_ms),
        d.gateway,
        d.provider,
        d.model,
        d.key,
        d.user,
        d.team,
        d.workflow,
        d.cache_outcome,
        e.status.code(),
        i64::from(e.http_status),
        input,
        output,
        cached,
        cache_write,
        cost,
        e.usage_source.code(),
        e.price_confidence.code(),
        i64::from(e.attempts),
        avoided,
    ]
}

/// The sums one event adds to every rollup row it counts in.
pub fn acc_of(e: &SpendEvent, cost: i64, avoided: i64) -> Acc {
    let [input, output, cached, cache_write] = tokens_of(e);
    Acc {
        requests: 1,
        errors: i64::from(e.status.is_error()),
        input,
        output,
        cached,
        cache_write,
        cost,
        latency: i64::from(e.latency_ms),
        avoided,
    }
}

/// The key of a per-dimension rollup row: (dim code, bucket, value).
pub type NarrowKey = (i64, i64, i64);

/// The key of a pair rollup row: (filter dim code, filter value, dim code, bucket, value).
pub type PairKey = (i64, i64, i64, i64, i64);

/// The rollup rows of a batch, each kind sorted by its table's key, so that rows are written in key order (the
/// B-tree pages a batch touches are visited once, in order) and every writer updates rows in the same order
/// (concurrent writers to a server database then wait for each other instead of deadlocking).
#[derive(Debug, Default)]
pub struct Aggregates {
    /// Per grain (minute, hour, day): (bucket, dims) and sums, filled by `finish`.
    pub grains: [Vec<((i64, Dims), Acc)>; 3],
    /// Per grain, the sums so far: each event is added to its rows as it comes. (Until 2026-12-07 every event
    /// pushed a row per grain, summed at `finish`: 113 MB of rows for a batch of 262,144 events, for the ~100,000
    /// rows it sums to.)
    pending: [FoldMap<(i64, Dims)>; 3],
    /// Per grain (hour, day): (dim code, bucket, value) and sums.
    pub narrow: [Vec<(NarrowKey, Acc)>; 2],
    /// Per grain (hour, day): (filter dim code, filter value, dim code, bucket, value) and sums.
    pub pairs: [Vec<(PairKey, Acc)>; 2],
    /// Lease id -> the cost of the newly stored events drawn against it (added to the lease's recorded spend in
    /// the same transaction, see `crate::replicas`).
    pub leases: BTreeMap<i64, i64>,
}

/// A multiply-rotate hasher for the fold's integer keys. The standard SipHash took a third of a large batch's
/// fold; these keys are ids and buckets of our own batch, so a hash that an attacker could collide costs nothing.
#[derive(Debug, Default, Clone, Copy)]
struct IntHasher(u64);

impl IntHasher {
    fn mix(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for IntHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.mix(u64::from(*b));
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Sums by rollup key.
type FoldMap<K> = HashMap<K, Acc, BuildHasherDefault<IntHasher>>;

/// The sums sorted by key (the order they are written in).
fn sorted<K: Ord + Copy>(sums: FoldMap<K>) -> Vec<(K, Acc)> {
    let mut out: Vec<(K, Acc)> = sums.into_iter().collect();
    out.sort_unstable_by_key(|(k, _)| *k);
    out
}

/// Sums rows that share a key, then sorts the sums by key. Summing first keeps the sort small: a large batch
/// folds ~190,000 pair contributions into ~23,000 rows.
fn merged<K: Ord + Copy + Hash>(rows: impl Iterator<Item = (K, Acc)>) -> Vec<(K, Acc)> {
    let mut sums: FoldMap<K> = HashMap::default();
    for (k, a) in rows {
        sums.entry(k).or_default().add(&a);
    }
    sorted(sums)
}

impl Aggregates {
    /// Adds one newly stored event.
    pub fn add(&mut self, e: &SpendEvent, d: &Dims, cost: i64, avoided: i64) {
        self.add_sums(e.finished_at_ms, d, acc_of(e, cost, avoided), &e.leases);
    }

    /// Adds one newly stored event given by its finish time, dimensions, sums (`acc_of`) and leases: what `add`
    /// takes from the event, for a fold that runs apart from the events.
    pub fn add_sums(&mut self, finished_at_ms: i64, d: &Dims, one: Acc, leases: &[i64]) {
        self.add_leases(leases, one.cost);
        for (i, g) in Grain::ALL.iter().enumerate() {
            self.pending[i]
                .entry((g.bucket(finished_at_ms), *d))
                .or_default()
                .add(&one);
        }
    }

    /// Adds the cost of one newly stored event to the leases it was drawn against (`add_sums` does it too).
    pub fn add_leases(&mut self, leases: &[i64], cost: i64) {
        for lease in leases {
            *self.leases.entry(*lease).or_default() += cost;
        }
    }

    /// Adds the not yet finished sums of `other` (its leases are not taken: a lease's spend is recorded with the
    /// batch that drew on it). For rollups carried across batches (`postgres::carry`).
    pub fn absorb(&mut self, other: Aggregates) {
        for (mine, theirs) in self.pending.iter_mut().zip(other.pending) {
            if mine.is_empty() {
                *mine = theirs;
                continue;
            }
            for (k, a) in theirs {
                mine.entry(k).or_default().add(&a);
            }
        }
    }

    /// The all-dimension rows summed so far and not yet finished, over every grain: what the sums hold in memory.
    pub fn pending_rows(&self) -> usize {
        self.pending.iter().map(HashMap::len).sum()
    }

    /// Merges the rows of every grain, then folds the hour and day rows into the per-dimension and pair rows.
    /// Call once, after the last `add`.
    pub fn finish(&mut self) {
        for (g, sums) in self.grains.iter_mut().zip(&mut self.pending) {
            *g = sorted(std::mem::take(sums));
        }
        for (n, grain) in [(0usize, 1usize), (1, 2)] {
            let held = pair_filters(Grain::ALL[grain]);
            let filters: Vec<(usize, i64, &str)> = DIM_CODES
                .iter()
                .enumerate()
                .filter(|(_, (col, _))| held.contains(col))
                .map(|(i, (col, code))| (i, *code, *col))
                .collect();
            let rows = &self.grains[grain];
            let narrow = rows.iter().flat_map(|((bucket, d), a)| {
                DIM_CODES
                    .iter()
                    .zip(d.values())
                    .map(move |((_, code), value)| ((*code, *bucket, value), *a))
            });
            let pairs = rows.iter().flat_map(|((bucket, d), a)| {
                let values = d.values();
                filters
                    .iter()
                    .filter(move |(f, _, col)| paired(col, values[*f]))
                    .flat_map(move |&(f, fcode, _)| {
                        DIM_CODES
                            .iter()
                            .zip(values)
                            .filter(move |((_, code), _)| *code != fcode)
                            .map(move |((_, code), value)| {
                                ((fcode, values[f], *code, *bucket, value), *a)
                            })
                    })
            });
            self.narrow[n] = merged(narrow);
            self.pairs[n] = merged(pairs);
        }
    }
}

/// Folds newly stored events into the rollup rows of their batch.
pub fn fold<'a>(rows: impl Iterator<Item = (&'a SpendEvent, &'a Dims)>) -> Result<Aggregates> {
    let mut agg = Aggregates::default();
    for (e, d) in rows {
        agg.add(e, d, cost_of(e)?, avoided_of(e)?);
    }
    agg.finish();
    Ok(agg)
}
