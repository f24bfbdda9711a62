//! The embedded SQLite backend: one file in the data directory, WAL mode, one writer connection and a small
//! pool of reader connections. Every call runs on tokio's blocking pool so the async runtime never waits on
//! disk.

mod checkpoint;
mod controls;
mod plans;
mod read;
mod refusals;
mod replicas;
mod schema;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Params, Row};
use spendgate_core::query::{Filters, GroupBy, GroupRow, Totals};
use spendgate_core::time::{now_ms, Grain};
use spendgate_core::{Money, RefusalEvent, SpendEvent};
use uuid::Uuid;

use crate::controls::{
    AlertRecord, AuditEntry, AuditRecord, BudgetRecord, Delivery, LedgerEntry, NewAlert, NewBudget,
    NewRateLimit, NewWallet, RateLimitRecord, Transfer, WalletRecord,
};
use crate::sql::plan::LabelKind;
use crate::sql::rows::{self, Cells};
use crate::sql::Query;
use crate::{
    KeyRecord, NewKey, RefusalCount, RefusalFilters, RefusalGroup, RefusalPage, ResolvedWindow,
    Result, SeriesPoint, SpendLogPage, Store, StoreError, StoredSpendLog, ViewerToken, WriteReport,
};

/// Settings of the SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long minute-grain rollups are kept. Older windows are read at hour precision.
    pub minute_retention_hours: i64,
    /// Reader connections kept open (more are opened while every one is busy, and closed after their read).
    pub readers: usize,
    /// How long a statement waits for a lock held by another connection or process before it fails.
    pub busy_timeout: std::time::Duration,
    /// How long refused requests are kept (their counts in the rollups are kept for good).
    pub refusal_retention_days: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            minute_retention_hours: 48,
            readers: 4,
            busy_timeout: std::time::Duration::from_secs(5),
            refusal_retention_days: crate::sql::refusals::DEFAULT_RETENTION_DAYS,
        }
    }
}

/// Label ids by kind and name, so the writer resolves a known name without a query.
type LabelCache = HashMap<LabelKind, HashMap<String, i64>>;

/// The writer connection and what it remembers between batches.
struct WriterConn {
    conn: Connection,
    labels: LabelCache,
    texts: write::Texts,
    last_prune_ms: i64,
    /// When refusals past their retention were last deleted.
    last_refusal_prune_ms: i64,
}

pub struct SqliteStore {
    path: PathBuf,
    options: SqliteOptions,
    writer: Arc<Mutex<WriterConn>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    sealed: crate::sealed::SealedAnswers,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn open_conn(path: &Path, write: bool, busy: std::time::Duration) -> Result<Connection> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) `spendgate.db` in `dir` and applies pending migrations.
    pub fn open(dir: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let path = dir.join("spendgate.db");
        let mut conn = open_conn(&path, true, options.busy_timeout)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Migrations checkpoint as they go, at the checkpointer's size; after them, `checkpoint` takes over.
        conn.pragma_update(None, "wal_autocheckpoint", checkpoint::CHECKPOINT_PAGES)?;
        migrate(&mut conn)?;
        checkpoint::start(&mut conn, open_conn(&path, true, options.busy_timeout)?)?;
        // The writer's statements (a batch's inserts and upserts, each in six sizes, and the controls') must all
        // stay prepared: rusqlite's default cache holds 16.
        conn.set_prepared_statement_cache_capacity(128);
        let mut readers = Vec::new();
        for _ in 0..options.readers.max(1) {
            readers.push(open_conn(&path, false, options.busy_timeout)?);
        }
        Ok(SqliteStore {
            path,
            options,
            writer: Arc::new(Mutex::new(WriterConn {
                conn,
                labels: HashMap::new(),
                texts: write::Texts::new(),
                last_prune_ms: 0,
                last_refusal_prune_ms: 0,
            })),
            readers: Arc::new(Mutex::new(readers)),
            sealed: Default::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn minute_retention_ms(&self) -> i64 {
        crate::sql::plan::minute_retention_ms(self.options.minute_retention_hours)
    }

    /// Runs `f` with the writer connection on the blocking pool.
    async fn with_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WriterConn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || {
            let mut guard = writer.lock().map_err(|_| StoreError::WorkerGone)?;
            f(&mut guard)
        })
        .await
        .map_err(|_| StoreError::WorkerGone)?
    }

    /// Runs `f` with a reader connection from the pool (opening another when all are busy).
    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let pool = Arc::clone(&self.readers);
        let path = self.path.clone();
        let busy = self.options.busy_timeout;
        let keep = self.options.readers.max(1);
        tokio::task::spawn_blocking(move || {
            let taken = pool.lock().map_err(|_| StoreError::WorkerGone)?.pop();
            let conn = match taken {
                Some(c) => c,
                None => open_conn(&path, false, busy)?,
            };
            let out = f(&conn);
            // A connection opened because every pooled one was busy is closed after its read rather than kept:
            // each holds a page cache of its own (up to 32 MB), so the pool would otherwise grow to the most
            // reads a burst ran at once, and keep their caches.
            if let Ok(mut p) = pool.lock() {
                if p.len() < keep {
                    p.push(conn);
                }
            }
            out
        })
        .await
        .map_err(|_| StoreError::WorkerGone)?
    }
}

/// SQLite cells for the shared row mappers. Flags are stored as 0/1 integers and UUIDs as 16-byte blobs.
impl Cells for Row<'_> {
    rows::plain_cells!(get);

    fn opt_uuid(&self, i: usize) -> Result<Option<Uuid>> {
        let bytes: Option<Vec<u8>> = self.get(i)?;
        Ok(bytes.and_then(|b| Uuid::from_slice(&b).ok()))
    }

    fn money(&self, i: usize) -> Result<Money> {
        match self.get_ref(i)? {
            ValueRef::Null => Ok(Money::ZERO),
            ValueRef::Integer(v) => Ok(Money::from_picos(i128::from(v))),
            ValueRef::Text(t) => rows::parse_picos(&String::from_utf8_lossy(t)),
            other => Err(StoreError::Database(format!(
                "column {i} holds {:?}, not an amount",
                other.data_type()
            ))),
        }
    }
}

/// Every row of a statement, mapped by a shared mapper.
fn all<T>(
    st: &mut rusqlite::Statement<'_>,
    params: impl Params,
    f: impl Fn(&dyn Cells) -> Result<T>,
) -> Result<Vec<T>> {
    let mut rows = st.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(r as &dyn Cells)?);
    }
    Ok(out)
}

/// The first row of a query, if any, mapped by a shared mapper.
fn first<T>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    f: impl Fn(&dyn Cells) -> Result<T>,
) -> Result<Option<T>> {
    let mut st = c.prepare_cached(sql)?;
    let mut rows = st.query(params)?;
    rows.next()?.map(|r| f(r as &dyn Cells)).transpose()
}

/// Runs a shared query (integer parameters) and maps every row.
fn run<T>(c: &Connection, q: &Query, f: impl Fn(&dyn Cells) -> Result<T>) -> Result<Vec<T>> {
    let mut st = c.prepare(&q.sql)?;
    all(&mut st, rusqlite::params_from_iter(q.params.iter()), f)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tx = conn.transaction()?;
    for (i, m) in schema::MIGRATIONS.iter().enumerate() {
        if (i as i64) < version {
            continue;
        }
        // Only a store that existed before holds rollups to fill; a new one is created in an instant.
        if *m == crate::sql::plan::PAIR_MIGRATION && version > 0 {
            tracing::info!("{}", crate::sql::plan::PAIR_MIGRATION_NOTE);
        }
        if *m == schema::LOG_KEY && version > 0 {
            tracing::info!("{}", schema::LOG_KEY_NOTE);
        }
        match crate::sql::plan::generated_migration(m, crate::sql::Dialect::Sqlite) {
            Some(sql) => tx.execute_batch(&sql)?,
            None => tx.execute_batch(m)?,
        }
        if i == 0 {
            for t in schema::ROLLUP_TABLES {
                tx.execute_batch(&schema::rollup_ddl(t))?;
            }
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    /// Empties the page caches of the writer's connection and of the idle readers (`sqlite3_db_release_memory`):
    /// up to 32 MB each once a burst has filled them. The pages are read again from the file when needed (the
    /// operating system's cache usually has them).
    async fn release_memory(&self) {
        let readers = Arc::clone(&self.readers);
        let released = self
            .with_writer(move |w| {
                w.conn.release_memory()?;
                if let Ok(pool) = readers.lock() {
                    for conn in pool.iter() {
                        conn.release_memory()?;
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = released {
            tracing::debug!(error = %e, "Releasing SQLite's page caches failed; they stay as they are.");
        }
    }

    async fn write_batch(&self, events: Arc<Vec<SpendEvent>>) -> Result<WriteReport> {
        let retention = self.minute_retention_ms();
        let written = Arc::clone(&events);
        let report = self
            .with_writer(move |w| write::write_batch(w, &events, retention))
            .await;
        self.sealed.note_write(&written);
        report
    }

    async fn create_key(&self, key: NewKey) -> Result<KeyRecord> {
        self.with_writer(move |w| {
            let now = now_ms();
            w.conn.execute(
                "INSERT INTO keys (hash, hint, user_name, team_name, created_at_ms, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![&key.hash[..], key.hint, key.user, key.team, now, key.expires_at_ms],
            )?;
            let id = w.conn.last_insert_rowid();
            Ok(KeyRecord { id, user: key.user, team: key.team, hint: key.hint, created_at_ms: now, revoked_at_ms: None, expires_at_ms: key.expires_at_ms })
        })
        .await
    }

    async fn key_by_hash(&self, hash: [u8; 32]) -> Result<Option<KeyRecord>> {
        self.with_reader(move |c| {
            let sql = format!("SELECT {} FROM keys WHERE hash = ?1", rows::KEY_COLUMNS);
            first(c, &sql, [&hash[..]], rows::key_record)
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        self.with_reader(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM keys ORDER BY id",
                rows::KEY_COLUMNS
            ))?;
            all(&mut st, [], rows::key_record)
        })
        .await
    }

    async fn revoke_key(&self, id: i64, at_ms: i64) -> Result<Option<KeyRecord>> {
        self.with_writer(move |w| {
            let sql = format!(
                "UPDATE keys SET revoked_at_ms = COALESCE(revoked_at_ms, ?2) WHERE id = ?1 RETURNING {}",
                rows::KEY_COLUMNS
            );
            first(&w.conn, &sql, rusqlite::params![id, at_ms], rows::key_record)
        })
        .await
    }

    async fn rotate_key(&self, id: i64, hash: [u8; 32], hint: String) -> Result<Option<KeyRecord>> {
        self.with_writer(move |w| {
            let sql = format!(
                "UPDATE keys SET hash = ?2, hint = ?3 WHERE id = ?1 AND revoked_at_ms IS NULL RETURNING {}",
                rows::KEY_COLUMNS
            );
            first(&w.conn, &sql, rusqlite::params![id, &hash[..], hint], rows::key_record)
        })
        .await
    }

    async fn create_viewer_token(
        &self,
        hash: [u8; 32],
        team: String,
        name: String,
        expires_at_ms: Option<i64>,
    ) -> Result<ViewerToken> {
        self.with_writer(move |w| {
            let now = now_ms();
            w.conn.execute(
                "INSERT INTO viewer_tokens (hash, team, name, created_at_ms, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![&hash[..], team, name, now, expires_at_ms],
            )?;
            Ok(ViewerToken { id: w.conn.last_insert_rowid(), team, name, created_at_ms: now, expires_at_ms })
        })
        .await
    }

    async fn viewer_by_hash(&self, hash: [u8; 32]) -> Result<Option<ViewerToken>> {
        self.with_reader(move |c| {
            let sql = format!(
                "SELECT {} FROM viewer_tokens WHERE hash = ?1 AND revoked_at_ms IS NULL",
                rows::VIEWER_COLUMNS
            );
            first(c, &sql, [&hash[..]], rows::viewer_token)
        })
        .await
    }

    async fn list_viewer_tokens(&self) -> Result<Vec<ViewerToken>> {
        self.with_reader(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM viewer_tokens WHERE revoked_at_ms IS NULL ORDER BY id",
                rows::VIEWER_COLUMNS
            ))?;
            all(&mut st, [], rows::viewer_token)
        })
        .await
    }

    async fn viewer_by_id(&self, id: i64) -> Result<Option<ViewerToken>> {
        self.with_reader(move |c| {
            let sql = format!(
                "SELECT {} FROM viewer_tokens WHERE id = ?1 AND revoked_at_ms IS NULL",
                rows::VIEWER_COLUMNS
            );
            first(c, &sql, [id], rows::viewer_token)
        })
        .await
    }

    async fn revoke_viewer_token(&self, id: i64, at_ms: i64) -> Result<Option<ViewerToken>> {
        self.with_writer(move |w| {
            let sql = format!(
                "UPDATE viewer_tokens SET revoked_at_ms = ?2 WHERE id = ?1 AND revoked_at_ms IS NULL RETURNING {}",
                rows::VIEWER_COLUMNS
            );
            first(&w.conn, &sql, rusqlite::params![id, at_ms], rows::viewer_token)
        })
        .await
    }

    fn resolve_window(&self, filters: &Filters) -> ResolvedWindow {
        crate::sql::plan::window_of(filters, self.minute_retention_ms())
    }

    async fn summary(&self, filters: &Filters) -> Result<Totals> {
        let f = filters.clone();
        let w = self.resolve_window(filters);
        self.with_reader(move |c| read::summary(c, &f, w)).await
    }

    async fn explorer(&self, filters: &Filters, group_by: GroupBy) -> Result<Vec<GroupRow>> {
        let aligned_from = self.resolve_window(filters).from_ms;
        self.sealed
            .answer(
                filters,
                aligned_from,
                format!("explorer {group_by:?}"),
                |f| {
                    let w = self.resolve_window(&f);
                    self.with_reader(move |c| read::explorer(c, &f, w, group_by))
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
            .answer(filters, aligned_from, kind, |f| {
                self.with_reader(move |c| read::series(c, &f, grain, group_by))
            })
            .await
    }

    async fn request_activity(
        &self,
        filters: &Filters,
        grain: Grain,
    ) -> Result<Vec<crate::ActivityRow>> {
        let f = filters.clone();
        self.with_reader(move |c| read::request_activity(c, &f, grain))
            .await
    }

    async fn spend_logs(
        &self,
        filters: &Filters,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<SpendLogPage> {
        let f = filters.clone();
        let cursor = cursor.map(crate::sql::plan::parse_cursor).transpose()?;
        self.with_reader(move |c| read::spend_logs(c, &f, limit, cursor))
            .await
    }

    async fn spend_log(&self, id: Uuid) -> Result<Option<StoredSpendLog>> {
        self.with_reader(move |c| read::spend_log(c, id)).await
    }

    async fn write_refusals(&self, list: Arc<Vec<RefusalEvent>>) -> Result<WriteReport> {
        let retention = refusals::Retention {
            days: self.options.refusal_retention_days,
            minute_ms: self.minute_retention_ms(),
        };
        self.with_writer(move |w| refusals::write(w, &list, retention))
            .await
    }

    async fn refusals(
        &self,
        filters: &RefusalFilters,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<RefusalPage> {
        let f = filters.clone();
        let cursor = cursor.map(crate::sql::plan::parse_cursor).transpose()?;
        self.with_reader(move |c| refusals::list(c, &f, limit, cursor))
            .await
    }

    async fn refusal_counts(
        &self,
        filters: &RefusalFilters,
        group: Option<RefusalGroup>,
    ) -> Result<Vec<RefusalCount>> {
        let f = filters.clone();
        let w = self.resolve_window(&filters.filters);
        self.with_reader(move |c| refusals::counts(c, &f, w, group))
            .await
    }

    async fn repeated_requests(
        &self,
        since_ms: i64,
        min_repeats: u64,
    ) -> Result<Vec<spendgate_core::anomaly::RepeatedRequest>> {
        self.with_reader(move |c| read::repeated_requests(c, since_ms, min_repeats))
            .await
    }

    async fn upsert_budget(
        &self,
        budget: NewBudget,
    ) -> Result<(Option<BudgetRecord>, BudgetRecord)> {
        self.with_writer(move |w| controls::upsert_budget(&mut w.conn, &budget))
            .await
    }

    async fn list_budgets(&self) -> Result<Vec<BudgetRecord>> {
        self.with_reader(controls::list_budgets).await
    }

    async fn upsert_rate_limit(
        &self,
        limit: NewRateLimit,
    ) -> Result<(Option<RateLimitRecord>, RateLimitRecord)> {
        self.with_writer(move |w| controls::upsert_rate_limit(&mut w.conn, &limit))
            .await
    }

    async fn list_rate_limits(&self) -> Result<Vec<RateLimitRecord>> {
        self.with_reader(controls::list_rate_limits).await
    }

    async fn delete_rate_limit(&self, id: i64) -> Result<Option<RateLimitRecord>> {
        self.with_writer(move |w| controls::delete_rate_limit(&w.conn, id))
            .await
    }

    async fn create_wallet(&self, wallet: NewWallet) -> Result<WalletRecord> {
        self.with_writer(move |w| controls::create_wallet(&mut w.conn, &wallet))
            .await
    }

    async fn list_wallets(&self) -> Result<Vec<WalletRecord>> {
        self.with_reader(controls::list_wallets).await
    }

    async fn transfer(
        &self,
        transfer: Transfer,
        actor: &str,
        reason: &str,
    ) -> Result<Vec<WalletRecord>> {
        let (actor, reason) = (actor.to_string(), reason.to_string());
        self.with_writer(move |w| controls::transfer(&mut w.conn, &transfer, &actor, &reason))
            .await
    }

    async fn ledger(
        &self,
        wallet: i64,
        limit: usize,
        before_id: Option<i64>,
    ) -> Result<Vec<LedgerEntry>> {
        self.with_reader(move |c| controls::ledger(c, wallet, limit, before_id))
            .await
    }

    async fn ledger_sum(&self, wallet: i64) -> Result<Money> {
        self.with_reader(move |c| controls::ledger_sum(c, wallet))
            .await
    }

    async fn wallet_spent_since(&self, wallet: i64, since_ms: i64) -> Result<Money> {
        self.with_reader(move |c| controls::spent_since(c, wallet, since_ms))
            .await
    }

    async fn record_alert(&self, alert: NewAlert) -> Result<Option<AlertRecord>> {
        self.with_writer(move |w| controls::record_alert(&w.conn, &alert))
            .await
    }

    async fn list_alerts(&self, limit: usize) -> Result<Vec<AlertRecord>> {
        self.with_reader(move |c| controls::list_alerts(c, limit))
            .await
    }

    async fn record_delivery(&self, delivery: Delivery) -> Result<()> {
        self.with_writer(move |w| controls::record_delivery(&w.conn, &delivery))
            .await
    }

    async fn list_deliveries(&self, limit: usize) -> Result<Vec<Delivery>> {
        self.with_reader(move |c| controls::list_deliveries(c, limit))
            .await
    }

    async fn record_audit(&self, entry: AuditEntry) -> Result<()> {
        self.with_writer(move |w| controls::record_audit(&w.conn, &entry))
            .await
    }

    async fn list_audit(&self, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.with_reader(move |c| controls::list_audit(c, from_ms, to_ms, limit))
            .await
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
        self.with_writer(move |w| replicas::lease(&mut w.conn, &req, now_ms(), window))
            .await
    }

    async fn release_lease(&self, id: i64, keep: Money) -> Result<()> {
        self.with_writer(move |w| replicas::release(&w.conn, id, keep, now_ms()))
            .await
    }

    async fn list_leases(&self, now: i64) -> Result<Vec<crate::replicas::LeaseRecord>> {
        self.with_reader(move |c| replicas::list_leases(c, now))
            .await
    }

    async fn heartbeat(&self, beat: crate::replicas::GatewayBeat) -> Result<()> {
        self.with_writer(move |w| replicas::heartbeat(&w.conn, &beat))
            .await
    }

    async fn list_gateways(&self) -> Result<Vec<crate::replicas::GatewayBeat>> {
        self.with_reader(replicas::list_gateways).await
    }

    async fn controls_epoch(&self) -> Result<i64> {
        self.with_reader(replicas::controls_epoch).await
    }

    async fn bump_controls_epoch(&self) -> Result<i64> {
        self.with_writer(|w| replicas::bump_controls_epoch(&w.conn))
            .await
    }

    async fn ack_controls_epoch(&self, gateway: &str, epoch: i64, now_ms: i64) -> Result<()> {
        let gateway = gateway.to_string();
        self.with_writer(move |w| replicas::ack_controls_epoch(&w.conn, &gateway, epoch, now_ms))
            .await
    }

    async fn controls_acks(&self) -> Result<Vec<(String, i64)>> {
        self.with_reader(replicas::controls_acks).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Reads that find every pooled connection busy open their own, and those are closed afterwards: a burst of
    /// eight reads at once leaves the pool at its two, not at eight page caches. Their caches can then be given
    /// back, and the store reads and writes on as before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_reads_leaves_the_pool_at_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions {
            readers: 2,
            ..SqliteOptions::default()
        };
        let store = Arc::new(SqliteStore::open(dir.path(), options).unwrap());
        let together = Arc::new(std::sync::Barrier::new(8));
        let mut reads = Vec::new();
        for _ in 0..8 {
            let (store, together) = (Arc::clone(&store), Arc::clone(&together));
            reads.push(tokio::spawn(async move {
                store
                    .with_reader(move |conn| {
                        // All eight hold a connection at this point: six were opened for the burst.
                        together.wait();
                        Ok(conn.query_row("SELECT count(*) FROM spend_logs", [], |r| {
                            r.get::<_, i64>(0)
                        })?)
                    })
                    .await
            }));
        }
        for r in reads {
            assert_eq!(r.await.unwrap().unwrap(), 0);
        }
        assert_eq!(store.readers.lock().unwrap().len(), 2);

        store.release_memory().await;
        let key = store
            .create_key(crate::NewKey {
                hash: [7; 32],
                hint: "sk-...7".into(),
                user: "u".into(),
                team: None,
                expires_at_ms: None,
            })
            .await
            .unwrap();
        let keys = store.list_keys().await.unwrap();
        assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), [key.id]);
        let n = store
            .with_reader(|conn| {
                Ok(conn.query_row("SELECT count(*) FROM spend_logs", [], |r| {
                    r.get::<_, i64>(0)
                })?)
            })
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}
