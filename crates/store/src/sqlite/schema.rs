//! The SQLite schema, applied in order by `PRAGMA user_version`.
//!
//! Dimensions (teams, users, providers, models, gateways, workflows) are interned into `labels` so that spend
//! logs and rollups hold small integers: smaller rows, faster group-bys. Id 0 means "none" (the No team bucket,
//! no workflow) so that it takes part in unique keys like any other value (SQLite treats NULLs as distinct).
//! The labels' kinds and the dimension codes of the per-dimension rollups are shared with PostgreSQL
//! (`crate::sql::plan`).

/// The spend log's columns between the id and what later migrations added, written once for the table and its
/// rebuild (`LOG_KEY`).
macro_rules! spend_log_columns {
    () => {
        "ts_ms               INTEGER NOT NULL,
    started_ms          INTEGER NOT NULL,
    latency_ms          INTEGER NOT NULL,
    gateway_id          INTEGER NOT NULL,
    provider_id         INTEGER NOT NULL,
    model_id            INTEGER NOT NULL,
    key_id              INTEGER NOT NULL,
    user_id             INTEGER NOT NULL,
    team_id             INTEGER NOT NULL,
    workflow_id         INTEGER NOT NULL,
    endpoint            TEXT NOT NULL,
    stream              INTEGER NOT NULL,
    cache_outcome       INTEGER NOT NULL,
    status              INTEGER NOT NULL,
    http_status         INTEGER NOT NULL,
    input_tokens        INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cache_write_tokens  INTEGER NOT NULL,
    cost_pico           INTEGER NOT NULL,
    usage_source        INTEGER NOT NULL,
    price_confidence    INTEGER NOT NULL,
    detail              TEXT NOT NULL"
    };
}

pub const MIGRATIONS: &[&str] = &[
    concat!(
        r#"
CREATE TABLE labels (
    id    INTEGER PRIMARY KEY,
    kind  INTEGER NOT NULL,
    name  TEXT NOT NULL,
    UNIQUE (kind, name)
);

CREATE TABLE keys (
    id            INTEGER PRIMARY KEY,
    hash          BLOB NOT NULL UNIQUE,
    hint          TEXT NOT NULL,
    user_name     TEXT NOT NULL,
    team_name     TEXT,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);

CREATE TABLE spend_logs (
    seq                 INTEGER PRIMARY KEY,
    event_id            BLOB NOT NULL UNIQUE,
"#,
        spend_log_columns!(),
        r#"
);
CREATE INDEX spend_logs_ts ON spend_logs (ts_ms);
CREATE INDEX spend_logs_team_ts ON spend_logs (team_id, ts_ms);
"#
    ),
    CONTROLS,
    ACCESS,
    ANOMALIES,
    NARROW,
    super::replicas::REPLICAS,
    ATTEMPTS,
    CACHE,
    crate::sql::plan::INDEX_TUNING,
    crate::sql::plan::PAIR_MIGRATION,
    crate::sql::plan::MODEL_HOUR_INDEX,
    LOG_KEY,
    super::replicas::CONTROL_EPOCH,
    KEY_EXPIRY,
    RATE_LIMITS,
    crate::sql::refusals::MIGRATION,
    // Last: a test turns a store back to the version before it.
    VIEWER_EXPIRY,
];

/// Keys may carry an expiry (`expires_at_ms`, NULL for a key that works until it is revoked). A column added to
/// the existing table, so the migration is instant on any store.
pub const KEY_EXPIRY: &str = "ALTER TABLE keys ADD COLUMN expires_at_ms INTEGER;";

/// Rate limits: requests and tokens a minute for one key or team, one row per subject (`rpm`, `tpm` NULL for no
/// limit). Their counts live in each replica's memory and in its leases (`leases`, kinds `rpm` and `tpm`).
pub const RATE_LIMITS: &str = r#"
CREATE TABLE rate_limits (
    id            INTEGER PRIMARY KEY,
    scope         TEXT NOT NULL,
    subject       TEXT NOT NULL,
    rpm           INTEGER,
    tpm           INTEGER,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    UNIQUE (scope, subject)
);
"#;
/// Viewer tokens expire (`expires_at_ms`; NULL for none, which no token the API creates has). Tokens made before
/// expiry existed get the default lifetime (90 days) from the upgrade, so that none stops working at once and
/// none works forever.
pub const VIEWER_EXPIRY: &str = "
ALTER TABLE viewer_tokens ADD COLUMN expires_at_ms INTEGER;
UPDATE viewer_tokens SET expires_at_ms = CAST(strftime('%s', 'now') AS INTEGER) * 1000 + 7776000000
    WHERE revoked_at_ms IS NULL;
";

/// Each event is kept once by its time and id, `(ts_ms, event_id)`, as on PostgreSQL, instead of by its id
/// alone. Ids are time-ordered by the request's start and a log's time is its end, so the id index took each
/// insert somewhere among the last seconds of the index, where the time index only grows at its end; one unique
/// index on both serves the time ranges and the duplicate check, and ingest is about a sixth faster
/// (docs/BENCHMARKS-HISTORY.md, 2026-12-05, fourth session). A lookup by id alone starts from the time in the id
/// (`read::spend_log`). SQLite cannot drop the index of a `UNIQUE` column, so the table is rebuilt: on a large
/// store this takes a while, and `LOG_KEY_NOTE` says so before it starts.
pub const LOG_KEY: &str = concat!(
    r#"
CREATE TABLE spend_logs_rebuilt (
    seq                 INTEGER PRIMARY KEY,
    event_id            BLOB NOT NULL,
"#,
    spend_log_columns!(),
    r#",
    fingerprint         INTEGER,
    attempts            INTEGER NOT NULL DEFAULT 1,
    avoided_cost_pico   INTEGER NOT NULL DEFAULT 0
);
INSERT INTO spend_logs_rebuilt SELECT seq, event_id, ts_ms, started_ms, latency_ms, gateway_id, provider_id,
    model_id, key_id, user_id, team_id, workflow_id, endpoint, stream, cache_outcome, status, http_status,
    input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cost_pico, usage_source,
    price_confidence, detail, fingerprint, attempts, avoided_cost_pico
  FROM spend_logs ORDER BY seq;
DROP TABLE spend_logs;
ALTER TABLE spend_logs_rebuilt RENAME TO spend_logs;
CREATE UNIQUE INDEX spend_logs_ts ON spend_logs (ts_ms, event_id);
CREATE INDEX spend_logs_team_ts ON spend_logs (team_id, ts_ms);
"#
);

/// Logged before `LOG_KEY` rebuilds an existing store's spend log.
pub const LOG_KEY_NOTE: &str = "Upgrading the store once: rebuilding the spend log with one index for time and \
    duplicates. This takes about a minute per 10 million spend logs and, meanwhile, free disk space of about two \
    thirds of spendgate.db's size (if it runs out, the upgrade is undone and the store is left as it was). The \
    gateway starts listening when it is done.";

/// The three rollup tables, one per grain, created from one template so they cannot drift apart.
pub use crate::sql::plan::ROLLUP_TABLES;

pub fn rollup_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
    bucket              INTEGER NOT NULL,
    team_id             INTEGER NOT NULL,
    user_id             INTEGER NOT NULL,
    key_id              INTEGER NOT NULL,
    provider_id         INTEGER NOT NULL,
    model_id            INTEGER NOT NULL,
    gateway_id          INTEGER NOT NULL,
    workflow_id         INTEGER NOT NULL,
    cache_outcome       INTEGER NOT NULL,
    requests            INTEGER NOT NULL,
    errors              INTEGER NOT NULL,
    input_tokens        INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cache_write_tokens  INTEGER NOT NULL,
    cost_pico           INTEGER NOT NULL,
    latency_ms_sum      INTEGER NOT NULL,
    PRIMARY KEY (bucket, team_id, user_id, key_id, provider_id, model_id, gateway_id, workflow_id, cache_outcome)
) WITHOUT ROWID;"
    )
}

/// Controls: budgets, wallets and their ledger, alerts and deliveries, the audit log.
pub const CONTROLS: &str = r#"
CREATE TABLE budgets (
    id            INTEGER PRIMARY KEY,
    name          TEXT,
    scope         TEXT NOT NULL,
    subject       TEXT NOT NULL,
    period        TEXT NOT NULL,
    amount_pico   INTEGER NOT NULL,
    thresholds    TEXT NOT NULL,
    hard_limit    INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    UNIQUE (scope, subject, period)
);

CREATE TABLE wallets (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL,
    scope            TEXT NOT NULL,
    subject          TEXT NOT NULL,
    low_pico         INTEGER NOT NULL,
    balance_pico     INTEGER NOT NULL DEFAULT 0,
    allocated_pico   INTEGER NOT NULL DEFAULT 0,
    spent_pico       INTEGER NOT NULL DEFAULT 0,
    created_at_ms    INTEGER NOT NULL,
    UNIQUE (scope, subject)
);

CREATE TABLE ledger (
    id            INTEGER PRIMARY KEY,
    wallet_id     INTEGER NOT NULL REFERENCES wallets (id),
    kind          TEXT NOT NULL,
    amount_pico   INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    counterparty  INTEGER,
    request_id    BLOB,
    at_ms         INTEGER NOT NULL
);
CREATE INDEX ledger_wallet_at ON ledger (wallet_id, at_ms);
CREATE UNIQUE INDEX ledger_settle_once ON ledger (request_id) WHERE request_id IS NOT NULL;

CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,
    subject         TEXT NOT NULL,
    team            TEXT,
    period_start_ms INTEGER NOT NULL,
    threshold       INTEGER NOT NULL,
    message         TEXT NOT NULL,
    at_ms           INTEGER NOT NULL,
    UNIQUE (kind, subject, period_start_ms, threshold)
);

CREATE TABLE deliveries (
    id        INTEGER PRIMARY KEY,
    alert_id  INTEGER NOT NULL,
    target    TEXT NOT NULL,
    attempt   INTEGER NOT NULL,
    ok        INTEGER NOT NULL,
    detail    TEXT NOT NULL,
    at_ms     INTEGER NOT NULL
);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    before  TEXT,
    after   TEXT,
    at_ms   INTEGER NOT NULL
);
CREATE INDEX audit_at ON audit_log (at_ms);
"#;

/// Access: read-only tokens confined to one team's data. Only hashes are stored.
pub const ACCESS: &str = r#"
CREATE TABLE viewer_tokens (
    id            INTEGER PRIMARY KEY,
    hash          BLOB NOT NULL UNIQUE,
    team          TEXT NOT NULL,
    name          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
"#;

/// Anomalies: each spend log keeps its request's fingerprint (a hash, never the prompt) so that retry loops can
/// be found by key and fingerprint over a short window, and alerts carry a link to their evidence.
pub const ANOMALIES: &str = r#"
ALTER TABLE spend_logs ADD COLUMN fingerprint INTEGER;
CREATE INDEX spend_logs_key_fp_ts ON spend_logs (key_id, fingerprint, ts_ms);
ALTER TABLE alerts ADD COLUMN link TEXT;
"#;

/// Per-dimension rollups: one row per bucket and value of a single dimension. They collapse many events into
/// one row (30 days of team totals are 30 x teams rows, whatever the traffic; the key starts with the dimension
/// so a query reads only its own), so views that group by one
/// dimension with no filter on another read them instead of the all-dimension rollups. Kept for hours and days;
/// existing data is folded in from the all-dimension rollups. `dim` is a code of `DIM_CODES`.
pub const NARROW: &str = r#"
CREATE TABLE rollup_dim_hour (
    bucket INTEGER NOT NULL, dim INTEGER NOT NULL, value INTEGER NOT NULL,
    requests INTEGER NOT NULL, errors INTEGER NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL, cost_pico INTEGER NOT NULL,
    latency_ms_sum INTEGER NOT NULL,
    PRIMARY KEY (dim, bucket, value)
) WITHOUT ROWID;
CREATE TABLE rollup_dim_day (
    bucket INTEGER NOT NULL, dim INTEGER NOT NULL, value INTEGER NOT NULL,
    requests INTEGER NOT NULL, errors INTEGER NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL, cost_pico INTEGER NOT NULL,
    latency_ms_sum INTEGER NOT NULL,
    PRIMARY KEY (dim, bucket, value)
) WITHOUT ROWID;
INSERT INTO rollup_dim_hour SELECT bucket, 1, team_id, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_hour GROUP BY bucket, team_id;
INSERT INTO rollup_dim_hour SELECT bucket, 2, user_id, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_hour GROUP BY bucket, user_id;
INSERT INTO rollup_dim_hour SELECT bucket, 3, key_id, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_hour GROUP BY bucket, key_id;
INSERT INTO rollup_dim_hour SELECT bucket, 4, provider_id, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_hour GROUP BY bucket, provider_id;
INSERT INTO rollup_dim_hour SELECT bucket, 5, model_id, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_hour GROUP BY bucket, model_id;
INSERT INTO rollup_dim_hour SELECT bucket, 6, gateway_id, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_hour GROUP BY bucket, gateway_id;
INSERT INTO rollup_dim_hour SELECT bucket, 7, workflow_id, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_hour GROUP BY bucket, workflow_id;
INSERT INTO rollup_dim_hour SELECT bucket, 8, cache_outcome, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_hour GROUP BY bucket, cache_outcome;
INSERT INTO rollup_dim_day SELECT bucket, 1, team_id, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_day GROUP BY bucket, team_id;
INSERT INTO rollup_dim_day SELECT bucket, 2, user_id, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_day GROUP BY bucket, user_id;
INSERT INTO rollup_dim_day SELECT bucket, 3, key_id, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_day GROUP BY bucket, key_id;
INSERT INTO rollup_dim_day SELECT bucket, 4, provider_id, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_day GROUP BY bucket, provider_id;
INSERT INTO rollup_dim_day SELECT bucket, 5, model_id, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_day GROUP BY bucket, model_id;
INSERT INTO rollup_dim_day SELECT bucket, 6, gateway_id, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_day GROUP BY bucket, gateway_id;
INSERT INTO rollup_dim_day SELECT bucket, 7, workflow_id, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_day GROUP BY bucket, workflow_id;
INSERT INTO rollup_dim_day SELECT bucket, 8, cache_outcome, SUM(requests), SUM(errors), SUM(input_tokens),
    SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cost_pico), SUM(latency_ms_sum)
  FROM rollup_day GROUP BY bucket, cache_outcome;
"#;

/// Fallbacks and retries: how many upstream calls a request took (1 without a retry). The failed attempts
/// themselves (provider, model, status, error) are kept in `detail` as `failed_attempts`.
pub const ATTEMPTS: &str = r#"
ALTER TABLE spend_logs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
"#;

/// The response cache: a hit costs nothing and records what it avoided, on its spend log and, summed like cost,
/// on every rollup (both shapes, so they keep summing alike). Rows written before are zero: nothing was avoided.
pub const CACHE: &str = r#"
ALTER TABLE spend_logs ADD COLUMN avoided_cost_pico INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_minute ADD COLUMN avoided_cost_pico INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_hour ADD COLUMN avoided_cost_pico INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_day ADD COLUMN avoided_cost_pico INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_dim_hour ADD COLUMN avoided_cost_pico INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_dim_day ADD COLUMN avoided_cost_pico INTEGER NOT NULL DEFAULT 0;
"#;
