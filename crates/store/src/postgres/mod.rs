//! The PostgreSQL backend: the same schema, queries and semantics as SQLite (both share `crate::sql`), on a
//! server several gateways can write to at once. Reads use a small pool of connections; the writer keeps its
//! own connection and its label cache. Spend logs are partitioned by month with an optional retention
//! (`partitions.rs`); everything a page reads comes from rollups, which retention never touches.

mod carry;
mod controls;
mod copy;
mod labels;
mod partitions;
mod pool;
mod read;
mod refusals;
mod replicas;
mod schema;
pub mod scratch;
mod tls;
mod write;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use spendgate_core::query::{Filters, GroupBy, GroupRow, Totals};
use spendgate_core::time::{now_ms, Grain};
use spendgate_core::{Money, RefusalEvent, SpendEvent};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, GenericClient, Row};
use uuid::Uuid;

use crate::controls::{
    AlertRecord, AuditEntry, AuditRecord, BudgetRecord, Delivery, LedgerEntry, NewAlert, NewBudget,
    NewRateLimit, NewWallet, RateLimitRecord, Transfer, WalletRecord,
};
use crate::sql::rows::{self, Cells};
use crate::sql::Query;
use crate::{
    ActivityRow, KeyRecord, NewKey, RefusalCount, RefusalFilters, RefusalGroup, RefusalPage,
    ResolvedWindow, Result, SeriesPoint, SpendLogPage, Store, StoreError, StoredSpendLog,
    ViewerToken, WriteReport,
};
pub use pool::redact_url;

/// Settings of the PostgreSQL backend.
#[derive(Clone)]
pub struct PostgresOptions {
    /// `postgres://user[:password]@host[:port]/database` (or any form `tokio-postgres` reads). Never shown
    /// with its password.
    pub url: String,
    /// How long minute-grain rollups are kept. Older windows are read at hour precision.
    pub minute_retention_hours: i64,
    /// Spend logs are dropped (by whole month) once their month ended this many days ago; `None` keeps them
    /// forever. Rollups are kept whatever this says.
    pub retention_days: Option<u32>,
    /// Reader connections at most.
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// How long refused requests are kept (their counts in the rollups are kept for good).
    pub refusal_retention_days: u32,
}

/// The URL without its password, so that printing the options cannot leak it.
impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &redact_url(&self.url))
            .field("minute_retention_hours", &self.minute_retention_hours)
            .field("retention_days", &self.retention_days)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl PostgresOptions {
    pub fn new(url: impl Into<String>) -> PostgresOptions {
        PostgresOptions {
            url: url.into(),
            minute_retention_hours: 48,
            retention_days: None,
            pool_size: 8,
            connect_timeout: Duration::from_secs(10),
            refusal_retention_days: crate::sql::refusals::DEFAULT_RETENTION_DAYS,
        }
    }
}

/// A driver error with its causes ("error connecting to server: Connection refused"), which its `Display`
/// alone leaves out.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// The writer's connection and what it remembers between batches.
struct WriterState {
    client: Option<Client>,
    labels: labels::LabelCache,
    /// Months whose spend-log partition is known to exist.
    months: HashSet<i64>,
    last_maintenance_ms: i64,
    /// When refusals past their retention were last deleted.
    last_refusal_maintenance_ms: i64,
    /// Whether `client` has its staging tables (`copy.rs`): temporary tables live as long as their connection.
    staged: bool,
    /// The id this connection writes pending batches under and holds the advisory lock of (`carry.rs`); a new
    /// one for every connection.
    carry_id: Option<i32>,
    /// Ids of this process's earlier connections, whose pending batches nobody carries any more.
    retired: Vec<i32>,
    /// Rollup sums of batches committed without them while the writer was behind.
    carry: Option<carry::Carry>,
    /// The sequence number of the next carried batch.
    next_seq: i64,
    /// Whether this process's pending batches must be refolded before the next write: its carry was lost.
    refold_own: bool,
    last_orphan_check_ms: i64,
    /// The earliest event of a carry upserted by the last write, for the answers kept for past days.
    flushed_oldest_ms: Option<i64>,
}

impl WriterState {
    /// The writer's connection, opened again if the last one died (a server restart, a network cut).
    async fn client(&mut self, pool: &pool::Pool) -> Result<&mut Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.staged = false;
            // The carry belonged to the connection's id; its batches' pending rows are refolded instead.
            self.lose_carry();
            let client = pool.connect().await?;
            let id = carry::own_new_id(&client).await?;
            self.retired.extend(self.carry_id.replace(id));
            self.client = Some(client);
        }
        self.client.as_mut().ok_or(StoreError::WorkerGone)
    }

    /// Drops the carried rollups after a failure: the pending rows of their batches are refolded from the spend
    /// logs before the next write.
    fn lose_carry(&mut self) {
        self.carry = None;
        self.refold_own = true;
    }

    /// The writer's connection with its staging tables created.
    async fn staged_client(&mut self, pool: &pool::Pool) -> Result<&mut Client> {
        self.client(pool).await?;
        let staged = self.staged;
        let client = self.client.as_mut().ok_or(StoreError::WorkerGone)?;
        if !staged {
            copy::create_staging(client).await?;
            self.staged = true;
        }
        Ok(client)
    }
}

pub struct PostgresStore {
    options: PostgresOptions,
    pool: pool::Pool,
    writer: tokio::sync::Mutex<WriterState>,
    sealed: crate::sealed::SealedAnswers,
    /// Batches whose transaction the server aborted (a deadlock or a serialization failure) and that were run
    /// again: none are expected, so tests assert on it and each one is logged.
    retried: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.pool.shown())
            .finish()
    }
}

/// PostgreSQL cells for the shared row mappers. Money is a `BIGINT` column or a sum cast to text.
impl Cells for Row {
    rows::plain_cells!(try_get);

    fn opt_uuid(&self, i: usize) -> Result<Option<Uuid>> {
        Ok(self.try_get(i)?)
    }

    fn money(&self, i: usize) -> Result<Money> {
        let ty = self.columns().get(i).map(|c| c.type_().clone());
        match ty {
            Some(Type::INT8) => Ok(Money::from_picos(i128::from(
                self.try_get::<_, Option<i64>>(i)?.unwrap_or(0),
            ))),
            Some(Type::TEXT) => match self.try_get::<_, Option<String>>(i)? {
                Some(s) => rows::parse_picos(&s),
                None => Ok(Money::ZERO),
            },
            other => Err(StoreError::Database(format!(
                "column {i} is {other:?}, not an amount; cast sums to TEXT"
            ))),
        }
    }
}

/// Runs `$body` with a pooled connection bound to `$c`, and keeps the connection out of the pool when the body
/// fails: after a server restart or a network cut the error can arrive before the client knows its connection
/// is closed, and such a connection must not serve the next query.
macro_rules! pooled {
    ($self:ident, $c:ident => $body:expr) => {{
        let mut conn = $self.pool.get().await?;
        let result = {
            let $c: &Client = &conn;
            $body.await
        };
        if result.is_err() {
            conn.discard();
        }
        result
    }};
    ($self:ident, mut $c:ident => $body:expr) => {{
        let mut conn = $self.pool.get().await?;
        let result = {
            let $c: &mut Client = &mut conn;
            $body.await
        };
        if result.is_err() {
            conn.discard();
        }
        result
    }};
}

/// Runs a shared query (integer parameters) and maps every row.
async fn run<T>(
    c: &impl GenericClient,
    q: &Query,
    f: impl Fn(&dyn Cells) -> Result<T>,
) -> Result<Vec<T>> {
    let params: Vec<&(dyn ToSql + Sync)> =
        q.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let rows = c.query(q.sql.as_str(), &params).await?;
    rows.iter().map(|r| f(r)).collect()
}

/// The first row of a query, if any, mapped by a shared mapper.
async fn first<T>(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    f: impl Fn(&dyn Cells) -> Result<T>,
) -> Result<Option<T>> {
    c.query_opt(sql, params)
        .await?
        .as_ref()
        .map(|r| f(r))
        .transpose()
}

/// Every row of a query, mapped by a shared mapper.
async fn all<T>(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    f: impl Fn(&dyn Cells) -> Result<T>,
) -> Result<Vec<T>> {
    c.query(sql, params).await?.iter().map(|r| f(r)).collect()
}

/// A batch write in progress on the writer's connection.
type WriteFuture<'w> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<WriteReport>> + Send + 'w>>;

impl PostgresStore {
    /// Writes one batch with `write`, running it again when the server aborted it as a deadlock.
    async fn write_retrying<T: Sync>(
        &self,
        items: &[T],
        write: impl for<'w> Fn(
            &'w mut WriterState,
            &'w pool::Pool,
            &'w [T],
            &'w PostgresOptions,
        ) -> WriteFuture<'w>,
    ) -> Result<WriteReport> {
        let mut w = self.writer.lock().await;
        let mut attempts = 0;
        loop {
            let result = write(&mut w, &self.pool, items, &self.options).await;
            match result {
                // Two writers whose batches touch the same rollup rows can deadlock; the server aborts one, and
                // running it again is what it asks for (the batch is all-or-nothing, so nothing counts twice).
                Err(StoreError::Retry(e)) if attempts < 5 => {
                    attempts += 1;
                    self.retried
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(error = %e, attempts, "PostgreSQL aborted a batch's transaction; running it again.");
                }
                Err(e) => {
                    // The batch is retried by the writer; on a new connection, because this one may be dead
                    // without knowing it yet (a server restart). A live one costs only a reconnect, and failures
                    // are rare.
                    w.client = None;
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }

    /// Writes a batch (an empty one writes only what is carried); `behind` lets it carry its rollups.
    async fn write_events(&self, events: &[SpendEvent], behind: bool) -> Result<WriteReport> {
        let report = self
            .write_retrying(events, |w, pool, events, options| {
                Box::pin(write::write_batch(w, pool, events, options, behind))
            })
            .await;
        // After the commit (or a failure that may have followed it), so that no answer read before it is kept.
        self.sealed.note_write(events);
        if let Some(oldest) = self.writer.lock().await.flushed_oldest_ms.take() {
            self.sealed.note_oldest(oldest);
        }
        report
    }

    /// Connects, applies pending migrations, creates this month's and next month's spend-log partitions and
    /// applies the retention. The error names the server (without its password) and what to check.
    pub async fn connect(options: PostgresOptions) -> Result<PostgresStore> {
        let pool = pool::Pool::new(&options.url, options.pool_size, options.connect_timeout)?;
        let mut client = pool.connect().await?;
        schema::migrate(&mut client).await?;
        let mut months = HashSet::new();
        let now = now_ms();
        let this = partitions::month_of(now)?;
        partitions::ensure(&mut client, &mut months, [this, this + 1]).await?;
        if let Some(days) = options.retention_days {
            partitions::drop_expired(&mut client, &mut months, days, now).await?;
        }
        drop(client);
        let mut writer = WriterState {
            client: None,
            labels: Default::default(),
            months,
            last_maintenance_ms: now,
            last_refusal_maintenance_ms: 0,
            staged: false,
            carry_id: None,
            retired: Vec::new(),
            carry: None,
            next_seq: 0,
            refold_own: false,
            last_orphan_check_ms: 0,
            flushed_oldest_ms: None,
        };
        // Rollups a writer that stopped had carried and not written are added before this one writes.
        carry::tidy(&mut writer, &pool, now).await?;
        Ok(PostgresStore {
            options,
            pool,
            writer: tokio::sync::Mutex::new(writer),
            sealed: Default::default(),
            retried: Default::default(),
        })
    }

    /// How many times a batch's transaction was aborted by the server and run again since this store opened.
    pub fn retried_batches(&self) -> u64 {
        self.retried.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The server's URL without its password.
    pub fn url(&self) -> &str {
        self.pool.shown()
    }

    fn minute_retention_ms(&self) -> i64 {
        crate::sql::plan::minute_retention_ms(self.options.minute_retention_hours)
    }

    /// The spend-log partitions that exist, oldest first: (name, first ms, end ms).
    pub async fn partitions(&self) -> Result<Vec<(String, i64, i64)>> {
        pooled!(self, c => partitions::list(c))
    }

    /// Applies the retention as of `now_ms` (the writer also does every few minutes); returns the partitions
    /// dropped.
    pub async fn drop_expired_partitions(&self, now_ms: i64) -> Result<Vec<String>> {
        let Some(days) = self.options.retention_days else {
            return Ok(Vec::new());
        };
        let mut w = self.writer.lock().await;
        let WriterState { months, .. } = &mut *w;
        let mut months = std::mem::take(months);
        let client = w.client(&self.pool).await?;
        let dropped = partitions::drop_expired(client, &mut months, days, now_ms).await;
        w.months = months;
        dropped
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn write_batch(&self, events: Arc<Vec<SpendEvent>>) -> Result<WriteReport> {
        self.write_events(&events, false).await
    }

    async fn write_batch_behind(&self, events: Arc<Vec<SpendEvent>>) -> Result<WriteReport> {
        self.write_events(&events, true).await
    }

    async fn flush_rollups(&self) -> Result<bool> {
        if self.writer.lock().await.carry.is_none() {
            return Ok(false);
        }
        self.write_events(&[], false).await?;
        Ok(true)
    }

    async fn create_key(&self, key: NewKey) -> Result<KeyRecord> {
        pooled!(self, c => controls::create_key(c, key))
    }

    async fn key_by_hash(&self, hash: [u8; 32]) -> Result<Option<KeyRecord>> {
        let sql = format!("SELECT {} FROM keys WHERE hash = $1", rows::KEY_COLUMNS);
        pooled!(self, c => first(
            c,
            &sql,
            &[&&hash[..]],
            rows::key_record,
        ))
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        let sql = format!("SELECT {} FROM keys ORDER BY id", rows::KEY_COLUMNS);
        pooled!(self, c => all(c, &sql, &[], rows::key_record))
    }

    async fn revoke_key(&self, id: i64, at_ms: i64) -> Result<Option<KeyRecord>> {
        let sql = format!(
            "UPDATE keys SET revoked_at_ms = COALESCE(revoked_at_ms, $2) WHERE id = $1 RETURNING {}",
            rows::KEY_COLUMNS
        );
        pooled!(self, c => first(c, &sql, &[&id, &at_ms], rows::key_record))
    }

    async fn rotate_key(&self, id: i64, hash: [u8; 32], hint: String) -> Result<Option<KeyRecord>> {
        let sql = format!(
            "UPDATE keys SET hash = $2, hint = $3 WHERE id = $1 AND revoked_at_ms IS NULL RETURNING {}",
            rows::KEY_COLUMNS
        );
        pooled!(self, c => first(c, &sql, &[&id, &&hash[..], &hint], rows::key_record))
    }

    async fn create_viewer_token(
        &self,
        hash: [u8; 32],
        team: String,
        name: String,
        expires_at_ms: Option<i64>,
    ) -> Result<ViewerToken> {
        pooled!(self, c => controls::create_viewer(c, hash, team, name, expires_at_ms))
    }

    async fn viewer_by_hash(&self, hash: [u8; 32]) -> Result<Option<ViewerToken>> {
        let sql = format!(
            "SELECT {} FROM viewer_tokens WHERE hash = $1 AND revoked_at_ms IS NULL",
            rows::VIEWER_COLUMNS
        );
        pooled!(self, c => first(
            c,
            &sql,
            &[&&hash[..]],
            rows::viewer_token,
        ))
    }

    async fn list_viewer_tokens(&self) -> Result<Vec<ViewerToken>> {
        let sql = format!(
            "SELECT {} FROM viewer_tokens WHERE revoked_at_ms IS NULL ORDER BY id",
            rows::VIEWER_COLUMNS
        );
        pooled!(self, c => all(c, &sql, &[], rows::viewer_token))
    }

    async fn viewer_by_id(&self, id: i64) -> Result<Option<ViewerToken>> {
        let sql = format!(
            "SELECT {} FROM viewer_tokens WHERE id = $1 AND revoked_at_ms IS NULL",
            rows::VIEWER_COLUMNS
        );
        pooled!(self, c => first(c, &sql, &[&id], rows::viewer_token))
    }

    async fn revoke_viewer_token(&self, id: i64, at_ms: i64) -> Result<Option<ViewerToken>> {
        let sql = format!(
            "UPDATE viewer_tokens SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL RETURNING {}",
            rows::VIEWER_COLUMNS
        );
        pooled!(self, c => first(c, &sql, &[&id, &at_ms], rows::viewer_token))
    }

    fn resolve_window(&self, filters: &Filters) -> ResolvedWindow {
        crate::sql::plan::window_of(filters, self.minute_retention_ms())
    }

    async fn summary(&self, filters: &Filters) -> Result<Totals> {
        let w = self.resolve_window(filters);
        pooled!(self, c => read::summary(c, filters, w))
    }

    async fn explorer(&self, filters: &Filters, group_by: GroupBy) -> Result<Vec<GroupRow>> {
        let aligned_from = self.resolve_window(filters).from_ms;
        self.sealed
            .answer(
                filters,
                aligned_from,
                format!("explorer {group_by:?}"),
                |f| async move {
                    let w = self.resolve_window(&f);
                    pooled!(self, c => read::explorer(c, &f, w, group_by))
                },
            )
            .await
    }

    async fn series(
        &self,
        filters: &Filters,
        grain: Grain,
        group_by: Option<GroupBy>,
    ) -> Result<Vec<SeriesPoint>> {
        let kind = format!("series {grain:?} {group_by:?}");
        let aligned_from = self.resolve_window(filters).from_ms;
        self.sealed
            .answer(filters, aligned_from, kind, |f| async move {
                pooled!(self, c => read::series(c, &f, grain, group_by))
            })
            .await
    }

    async fn request_activity(&self, filters: &Filters, grain: Grain) -> Result<Vec<ActivityRow>> {
        pooled!(self, c => read::request_activity(c, filters, grain))
    }

    async fn spend_logs(
        &self,
        filters: &Filters,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<SpendLogPage> {
        let cursor = cursor.map(crate::sql::plan::parse_cursor).transpose()?;
        pooled!(self, c => read::spend_logs(c, filters, limit, cursor))
    }

    async fn spend_log(&self, id: Uuid) -> Result<Option<StoredSpendLog>> {
        let sql = format!("{} WHERE s.event_id = $1", crate::sql::queries::LOG_SELECT);
        pooled!(self, c => first(c, &sql, &[&id], rows::stored_log))
    }

    async fn write_refusals(&self, list: Arc<Vec<RefusalEvent>>) -> Result<WriteReport> {
        self.write_retrying(&list, |w, pool, list, options| {
            Box::pin(refusals::write(w, pool, list, options))
        })
        .await
    }

    async fn refusals(
        &self,
        filters: &RefusalFilters,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<RefusalPage> {
        let cursor = cursor.map(crate::sql::plan::parse_cursor).transpose()?;
        pooled!(self, c => refusals::list(c, filters, limit, cursor))
    }

    async fn refusal_counts(
        &self,
        filters: &RefusalFilters,
        group: Option<RefusalGroup>,
    ) -> Result<Vec<RefusalCount>> {
        let w = self.resolve_window(&filters.filters);
        pooled!(self, c => refusals::counts(c, filters, w, group))
    }

    async fn repeated_requests(
        &self,
        since_ms: i64,
        min_repeats: u64,
    ) -> Result<Vec<spendgate_core::anomaly::RepeatedRequest>> {
        pooled!(self, c => read::repeated_requests(c, since_ms, min_repeats))
    }

    async fn upsert_budget(
        &self,
        budget: NewBudget,
    ) -> Result<(Option<BudgetRecord>, BudgetRecord)> {
        pooled!(self, mut c => controls::upsert_budget(c, &budget))
    }

    async fn list_budgets(&self) -> Result<Vec<BudgetRecord>> {
        let sql = format!("SELECT {} FROM budgets ORDER BY id", rows::BUDGET_COLUMNS);
        pooled!(self, c => all(c, &sql, &[], rows::budget))
    }

    async fn upsert_rate_limit(
        &self,
        limit: NewRateLimit,
    ) -> Result<(Option<RateLimitRecord>, RateLimitRecord)> {
        pooled!(self, mut c => controls::upsert_rate_limit(c, &limit))
    }

    async fn list_rate_limits(&self) -> Result<Vec<RateLimitRecord>> {
        let sql = format!(
            "SELECT {} FROM rate_limits ORDER BY id",
            rows::RATE_LIMIT_COLUMNS
        );
        pooled!(self, c => all(c, &sql, &[], rows::rate_limit))
    }

    async fn delete_rate_limit(&self, id: i64) -> Result<Option<RateLimitRecord>> {
        pooled!(self, c => controls::delete_rate_limit(c, id))
    }

    async fn create_wallet(&self, wallet: NewWallet) -> Result<WalletRecord> {
        pooled!(self, c => controls::create_wallet(c, &wallet))
    }

    async fn list_wallets(&self) -> Result<Vec<WalletRecord>> {
        let sql = format!("SELECT {} FROM wallets ORDER BY id", rows::WALLET_COLUMNS);
        pooled!(self, c => all(c, &sql, &[], rows::wallet))
    }

    async fn transfer(
        &self,
        transfer: Transfer,
        actor: &str,
        reason: &str,
    ) -> Result<Vec<WalletRecord>> {
        pooled!(self, mut c => controls::transfer(c, &transfer, actor, reason))
    }

    async fn ledger(
        &self,
        wallet: i64,
        limit: usize,
        before_id: Option<i64>,
    ) -> Result<Vec<LedgerEntry>> {
        pooled!(self, c => controls::ledger(c, wallet, limit, before_id))
    }

    async fn ledger_sum(&self, wallet: i64) -> Result<Money> {
        pooled!(self, c => controls::ledger_sum(c, wallet))
    }

    async fn wallet_spent_since(&self, wallet: i64, since_ms: i64) -> Result<Money> {
        pooled!(self, c => controls::spent_since(c, wallet, since_ms))
    }

    async fn record_alert(&self, alert: NewAlert) -> Result<Option<AlertRecord>> {
        pooled!(self, c => controls::record_alert(c, &alert))
    }

    async fn list_alerts(&self, limit: usize) -> Result<Vec<AlertRecord>> {
        pooled!(self, c => controls::list_alerts(c, limit))
    }

    async fn record_delivery(&self, delivery: Delivery) -> Result<()> {
        pooled!(self, c => controls::record_delivery(c, &delivery))
    }

    async fn list_deliveries(&self, limit: usize) -> Result<Vec<Delivery>> {
        pooled!(self, c => controls::list_deliveries(c, limit))
    }

    async fn record_audit(&self, entry: AuditEntry) -> Result<()> {
        pooled!(self, c => controls::record_audit(c, &entry))
    }

    async fn list_audit(&self, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        pooled!(self, c => controls::list_audit(c, from_ms, to_ms, limit))
    }

    async fn lease(
        &self,
        req: crate::replicas::LeaseRequest,
    ) -> Result<crate::replicas::LeaseGrant> {
        let window = match &req.target {
            crate::replicas::LeaseTarget::Budget { filters, .. } => {
                Some(self.resolve_window(filters))
            }
            crate::replicas::LeaseTarget::Wallet { .. }
            | crate::replicas::LeaseTarget::Rate { .. } => None,
        };
        pooled!(self, mut c => replicas::lease(c, &req, now_ms(), window))
    }

    async fn release_lease(&self, id: i64, keep: Money) -> Result<()> {
        pooled!(self, c => replicas::release(c, id, keep, now_ms()))
    }

    async fn list_leases(&self, now: i64) -> Result<Vec<crate::replicas::LeaseRecord>> {
        pooled!(self, c => replicas::list_leases(c, now))
    }

    async fn heartbeat(&self, beat: crate::replicas::GatewayBeat) -> Result<()> {
        pooled!(self, c => replicas::heartbeat(c, &beat))
    }

    async fn list_gateways(&self) -> Result<Vec<crate::replicas::GatewayBeat>> {
        pooled!(self, c => replicas::list_gateways(c))
    }

    async fn controls_epoch(&self) -> Result<i64> {
        pooled!(self, c => replicas::controls_epoch(c))
    }

    async fn bump_controls_epoch(&self) -> Result<i64> {
        pooled!(self, c => replicas::bump_controls_epoch(c))
    }

    async fn ack_controls_epoch(&self, gateway: &str, epoch: i64, now_ms: i64) -> Result<()> {
        pooled!(self, c => replicas::ack_controls_epoch(c, gateway, epoch, now_ms))
    }

    async fn controls_acks(&self) -> Result<Vec<(String, i64)>> {
        pooled!(self, c => replicas::controls_acks(c))
    }
}
