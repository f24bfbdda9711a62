//! spendgate's storage.
//!
//! One trait, [`Store`], is the seam between the product and a database; `sqlite` is the embedded default
//! backend and `postgres` the server one. Both share their query plans, SQL and row mappers (`sql`). The [`writer`] batches spend events from the hot path into the store, so that no request waits on
//! a database.

pub mod controls;
pub mod journal;
pub mod postgres;
pub mod refusals;
pub mod repeats;
pub mod replicas;
pub mod sealed;
mod sql;
pub mod sqlite;
pub mod tls;
pub mod writer;

use async_trait::async_trait;
use spendgate_core::query::{Filters, GroupBy, GroupRow, Totals};
use spendgate_core::time::Grain;
use spendgate_core::{Money, RefusalEvent, SpendEvent};
use uuid::Uuid;

use controls::{
    AlertRecord, AuditEntry, AuditRecord, BudgetRecord, Delivery, LedgerEntry, NewAlert, NewBudget,
    NewRateLimit, NewWallet, RateLimitRecord, Transfer, WalletRecord,
};

pub use postgres::{redact_url, PostgresStore};
pub use refusals::{RefusalCount, RefusalFilters, RefusalGroup, RefusalPage, StoredRefusal};
pub use sqlite::SqliteStore;
pub use writer::{spawn_writer, Ack, Record, SpendWriter, WriterConfig, WriterHandle, WriterStats};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database failed: {0}")]
    Database(String),
    #[error("could not open the data directory '{path}': {reason}")]
    Open { path: String, reason: String },
    #[error("could not connect to PostgreSQL at {url}: {reason}; check [store] url (or --store)")]
    Connect { url: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("the database worker stopped unexpectedly")]
    WorkerGone,
    /// The server ended a transaction that may simply be run again (a deadlock or a serialization failure).
    #[error("the database asked for the transaction to be run again: {0}")]
    Retry(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        match e.code() {
            Some(c)
                if *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE =>
            {
                StoreError::Retry(postgres::describe(&e))
            }
            _ => StoreError::Database(postgres::describe(&e)),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A virtual key as stored: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: i64,
    pub user: String,
    pub team: Option<String>,
    /// The last four characters of the secret, so people can tell keys apart.
    pub hint: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// When the key stops working, if it was given an expiry.
    pub expires_at_ms: Option<i64>,
}

impl KeyRecord {
    /// Whether the key may authenticate at `now_ms`: not revoked and not past its expiry.
    pub fn usable_at(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|e| now_ms < e)
    }
}

/// A read-only token confined to one team's data. Only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerToken {
    pub id: i64,
    pub team: String,
    pub name: String,
    pub created_at_ms: i64,
    /// When the token stops working; `None` for one that works until it is revoked (no token the API creates).
    pub expires_at_ms: Option<i64>,
}

impl ViewerToken {
    /// Whether the token (found unrevoked) has passed its expiry at `now_ms`.
    pub fn expired_at(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|e| now_ms >= e)
    }
}

/// What is needed to store a new key.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub hash: [u8; 32],
    pub hint: String,
    pub user: String,
    pub team: Option<String>,
    /// When the key stops working; `None` for a key that works until it is revoked.
    pub expires_at_ms: Option<i64>,
}

/// What one batch write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Events written for the first time.
    pub inserted: usize,
    /// Events that were already stored (same id) and so were not counted again.
    pub duplicates: usize,
    /// Whether the store now holds rollups of stored events that it has not written yet
    /// ([`Store::write_batch_behind`]): the writer then has them written with [`Store::flush_rollups`].
    pub rollups_carried: bool,
}

/// A page of spend logs, newest first.
#[derive(Debug, Clone)]
pub struct SpendLogPage {
    pub items: Vec<StoredSpendLog>,
    pub next_cursor: Option<String>,
}

/// A spend event as read back from the store.
#[derive(Debug, Clone)]
pub struct StoredSpendLog {
    pub seq: i64,
    pub event: SpendEvent,
}

/// One point of a time series: a bucket start, a group and its totals.
#[derive(Debug, Clone)]
pub struct SeriesPoint {
    pub bucket_start_ms: i64,
    pub group: Option<String>,
    pub totals: Totals,
}

/// Request activity of one key, workflow and gateway in one time bucket (for the activity history).
#[derive(Debug, Clone)]
pub struct ActivityRow {
    pub bucket_start_ms: i64,
    pub key_id: i64,
    pub user: String,
    /// `None` is the No team bucket.
    pub team: Option<String>,
    pub workflow: Option<String>,
    pub gateway: String,
    pub totals: Totals,
}

/// The window a query actually covered, after aligning it to the buckets the rollups hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedWindow {
    pub from_ms: i64,
    pub to_ms: i64,
    /// The window reaches the present: nothing can have been recorded at or after `to_ms` yet, so its last
    /// buckets may be read whole.
    pub open_end: bool,
}

/// The storage seam. Every page and API answer is read through it; the batching writer writes through it.
///
/// Architecture invariant: summary, explorer and series queries read rollups only, never the spend-log table,
/// so their cost does not grow with the number of spend logs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Writes spend logs and their rollups in one transaction. Idempotent by event id.
    async fn write_batch(&self, events: std::sync::Arc<Vec<SpendEvent>>) -> Result<WriteReport>;

    /// Writes a batch while the writer is behind (more events wait behind it): like [`Store::write_batch`], but
    /// the store may carry the batch's rollup sums in memory and write them with a later batch's, so that a
    /// backlog pays for each rollup row once rather than once per batch. What is carried is written by the next
    /// `write_batch` or [`Store::flush_rollups`], and is not lost if the process stops first (the backend says
    /// how). By default the same as `write_batch`.
    async fn write_batch_behind(
        &self,
        events: std::sync::Arc<Vec<SpendEvent>>,
    ) -> Result<WriteReport> {
        self.write_batch(events).await
    }

    /// Writes the rollups [`Store::write_batch_behind`] carried, if any; returns whether there were any.
    async fn flush_rollups(&self) -> Result<bool> {
        Ok(false)
    }

    /// Gives back what memory the store's caches can spare, for a gateway gone idle after a burst (an embedded
    /// database's page caches fill up to their bound and stay full otherwise). Nothing for a server database.
    async fn release_memory(&self) {}

    async fn create_key(&self, key: NewKey) -> Result<KeyRecord>;
    async fn key_by_hash(&self, hash: [u8; 32]) -> Result<Option<KeyRecord>>;
    async fn list_keys(&self) -> Result<Vec<KeyRecord>>;
    /// Marks a key revoked at `at_ms` (a key revoked before keeps its first time) and returns it; `None` if no
    /// key has this id.
    async fn revoke_key(&self, id: i64, at_ms: i64) -> Result<Option<KeyRecord>>;
    /// Gives an unrevoked key a new secret (its hash and hint); id, owner and history stay. `None` if no
    /// unrevoked key has this id.
    async fn rotate_key(&self, id: i64, hash: [u8; 32], hint: String) -> Result<Option<KeyRecord>>;

    async fn create_viewer_token(
        &self,
        hash: [u8; 32],
        team: String,
        name: String,
        expires_at_ms: Option<i64>,
    ) -> Result<ViewerToken>;
    /// The unrevoked viewer token with this hash, expired or not (the caller says which: `expired_at`).
    async fn viewer_by_hash(&self, hash: [u8; 32]) -> Result<Option<ViewerToken>>;
    /// The unrevoked viewer tokens, expired ones included, oldest first.
    async fn list_viewer_tokens(&self) -> Result<Vec<ViewerToken>>;
    /// The viewer token with this id if it is not revoked, expired or not (page sessions made with it ask on
    /// every request).
    async fn viewer_by_id(&self, id: i64) -> Result<Option<ViewerToken>>;
    /// Marks a viewer token revoked at `at_ms` and returns it; `None` if no active token has this id.
    async fn revoke_viewer_token(&self, id: i64, at_ms: i64) -> Result<Option<ViewerToken>>;

    /// The window that [`Store::summary`] and friends will really read for these filters.
    fn resolve_window(&self, filters: &Filters) -> ResolvedWindow;
    async fn summary(&self, filters: &Filters) -> Result<Totals>;
    async fn explorer(&self, filters: &Filters, group_by: GroupBy) -> Result<Vec<GroupRow>>;
    async fn series(
        &self,
        filters: &Filters,
        grain: Grain,
        group_by: Option<GroupBy>,
    ) -> Result<Vec<SeriesPoint>>;

    /// Totals per bucket of `grain`, key, workflow and gateway, from that grain's rollup.
    async fn request_activity(&self, filters: &Filters, grain: Grain) -> Result<Vec<ActivityRow>>;

    /// Spend logs matching `filters`, newest first, `limit` at most, after `cursor`.
    async fn spend_logs(
        &self,
        filters: &Filters,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<SpendLogPage>;
    async fn spend_log(&self, id: Uuid) -> Result<Option<StoredSpendLog>>;

    /// Writes refused requests and their rollups (counts per minute, hour and day by team, user, key and reason)
    /// in one transaction. Idempotent by refusal id; refusals older than the refusal retention are not written
    /// (they are reported as duplicates).
    async fn write_refusals(
        &self,
        refusals: std::sync::Arc<Vec<RefusalEvent>>,
    ) -> Result<WriteReport>;
    /// Refusals matching `filters`, newest first, `limit` at most, after `cursor`: one indexed page, like spend
    /// logs. Filters refusals do not carry (provider, model, ...) are an `Invalid` error.
    async fn refusals(
        &self,
        filters: &RefusalFilters,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<RefusalPage>;
    /// How many requests were refused over the filters' window (aligned like [`Store::summary`]'s), per group,
    /// most first; one row labelled "all" without a group. Read from the refusal rollups only.
    async fn refusal_counts(
        &self,
        filters: &RefusalFilters,
        group: Option<RefusalGroup>,
    ) -> Result<Vec<RefusalCount>>;

    /// Pairs of (key, request fingerprint) seen at least `min_repeats` times since `since_ms`, most repeated
    /// first (at most 100). Reads the spend logs by their time index, so callers keep the window short (the
    /// retry-loop detector looks back minutes).
    async fn repeated_requests(
        &self,
        since_ms: i64,
        min_repeats: u64,
    ) -> Result<Vec<spendgate_core::anomaly::RepeatedRequest>>;

    /// Creates a budget or updates the one with the same scope and period; returns (before, after).
    async fn upsert_budget(
        &self,
        budget: NewBudget,
    ) -> Result<(Option<BudgetRecord>, BudgetRecord)>;
    async fn list_budgets(&self) -> Result<Vec<BudgetRecord>>;
    /// Creates the rate limit of a key or team, or changes the one it has (one per subject); returns (before,
    /// after). Refuses a limit [`NewRateLimit::check`] refuses.
    async fn upsert_rate_limit(
        &self,
        limit: NewRateLimit,
    ) -> Result<(Option<RateLimitRecord>, RateLimitRecord)>;
    async fn list_rate_limits(&self) -> Result<Vec<RateLimitRecord>>;
    /// Deletes a rate limit and returns it; `None` if no rate limit has this id.
    async fn delete_rate_limit(&self, id: i64) -> Result<Option<RateLimitRecord>>;
    async fn create_wallet(&self, wallet: NewWallet) -> Result<WalletRecord>;
    async fn list_wallets(&self) -> Result<Vec<WalletRecord>>;
    /// Applies a money movement between wallets (or a top-up) in one transaction; returns the wallets touched.
    async fn transfer(
        &self,
        transfer: Transfer,
        actor: &str,
        reason: &str,
    ) -> Result<Vec<WalletRecord>>;
    /// Ledger entries of a wallet, newest first, older than `before_id`.
    async fn ledger(
        &self,
        wallet: i64,
        limit: usize,
        before_id: Option<i64>,
    ) -> Result<Vec<LedgerEntry>>;
    /// The sum of every ledger entry of a wallet: always equal to its balance.
    async fn ledger_sum(&self, wallet: i64) -> Result<Money>;
    /// What a wallet paid for requests since a time (for burn rates).
    async fn wallet_spent_since(&self, wallet: i64, since_ms: i64) -> Result<Money>;
    /// Records an alert; `None` when the same crossing was recorded before (alerts fire once).
    async fn record_alert(&self, alert: NewAlert) -> Result<Option<AlertRecord>>;
    async fn list_alerts(&self, limit: usize) -> Result<Vec<AlertRecord>>;
    async fn record_delivery(&self, delivery: Delivery) -> Result<()>;
    async fn list_deliveries(&self, limit: usize) -> Result<Vec<Delivery>>;
    async fn record_audit(&self, entry: AuditEntry) -> Result<()>;
    async fn list_audit(&self, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<AuditRecord>>;

    /// Grants, grows, shrinks or renews this replica's lease on a budget or wallet, in one transaction (see
    /// [`replicas`]).
    async fn lease(&self, req: replicas::LeaseRequest) -> Result<replicas::LeaseGrant>;
    /// Ends a lease, keeping `keep` of it (what the replica spent): the rest is free for others at once.
    async fn release_lease(&self, id: i64, keep: Money) -> Result<()>;
    /// Leases still live at `now_ms`.
    async fn list_leases(&self, now_ms: i64) -> Result<Vec<replicas::LeaseRecord>>;
    /// Records a replica's heartbeat (one row per gateway name).
    async fn heartbeat(&self, beat: replicas::GatewayBeat) -> Result<()>;
    /// Every replica that ever beat, most recently seen first.
    async fn list_gateways(&self) -> Result<Vec<replicas::GatewayBeat>>;

    /// The controls' epoch: a counter every change of a budget, a wallet, a rate limit or a key moves on, so that
    /// replicas notice a change with one small read instead of reloading everything (see [`replicas`]).
    async fn controls_epoch(&self) -> Result<i64>;
    /// Moves the epoch on after a change committed; returns the new epoch.
    async fn bump_controls_epoch(&self) -> Result<i64>;
    /// Records that `gateway` enforces every change up to `epoch`.
    async fn ack_controls_epoch(&self, gateway: &str, epoch: i64, now_ms: i64) -> Result<()>;
    /// The epoch each replica last said it enforces.
    async fn controls_acks(&self) -> Result<Vec<(String, i64)>>;
}
