//! Figure 3: spend events ingested per second into SQLite and into PostgreSQL, and the store generation behind
//! figure 4.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spendgate_core::time::{now_ms, DAY_MS};
use spendgate_core::SpendEvent;
use spendgate_store::postgres::scratch::ScratchDatabase;
use spendgate_store::postgres::PostgresOptions;
use spendgate_store::sqlite::SqliteOptions;
use spendgate_store::{spawn_writer, PostgresStore, SqliteStore, Store, StoreError, WriterConfig};

use crate::gen::Generator;
use crate::procs;
use crate::report::Row;
use crate::stats::{per_sec, thousands};

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The timed parts of an ingest figure: events written, wall-clock microseconds, and the CPU milliseconds the
/// whole process used meanwhile (the writer's threads included). On a shared machine the wall clock also counts
/// what others took from it; the CPU time per event does not, so it shows a change that the rate's noise hides.
#[derive(Debug, Default, Clone, Copy)]
struct Spent {
    events: u64,
    us: u64,
    cpu_ms: u64,
    /// For PostgreSQL on this machine: the CPU time of the server's processes meanwhile (`procs::cpu_ms_of_all`).
    server_cpu_ms: Option<u64>,
}

impl Spent {
    fn rate(&self) -> u64 {
        per_sec(self.events, self.us)
    }

    /// CPU nanoseconds per event written.
    fn cpu_ns_per_event(&self) -> u64 {
        (self.cpu_ms * 1_000_000)
            .checked_div(self.events)
            .unwrap_or(0)
    }

    /// The table's value: the rate, and its CPU cost in microseconds with one decimal.
    fn shown(&self) -> String {
        let ns = self.cpu_ns_per_event();
        format!(
            "{} ({}.{} us of CPU per event)",
            thousands(self.rate()),
            ns / 1000,
            ns % 1000 / 100
        )
    }

    /// The rate, and what the harness and a local server used per event, in microseconds of CPU.
    fn shown_with_server(&self) -> String {
        let us = |ms: u64| {
            let ns = (ms * 1_000_000).checked_div(self.events).unwrap_or(0);
            format!("{}.{}", ns / 1000, ns % 1000 / 100)
        };
        match self.server_cpu_ms {
            Some(server) => format!(
                "{} (CPU per event: {} us here, {} us in the server)",
                thousands(self.rate()),
                us(self.cpu_ms),
                us(server)
            ),
            None => thousands(self.rate()),
        }
    }

    fn json(&self) -> Value {
        json!({ "events": self.events, "elapsed_us": self.us, "events_per_sec": self.rate(),
                "cpu_ms": self.cpu_ms, "cpu_ns_per_event": self.cpu_ns_per_event(),
                "server_cpu_ms": self.server_cpu_ms })
    }
}

/// Live traffic: events that finished within the last minute, in the order they finished. That is the order a
/// gateway hands them to its writer (each is journalled as its response ends), so the spend logs' time indexes
/// grow at their ends as they do in production. (Until 2026-12-04 the events came in random order, which made
/// every time-index insert a random one: about a fifth slower.)
fn live_batch(g: &mut Generator, n: usize) -> Vec<SpendEvent> {
    let now = now_ms();
    let mut backs: Vec<i64> = (0..n).map(|_| g.rng().i64(0..60_000)).collect();
    backs.sort_unstable_by(|a, b| b.cmp(a));
    backs.into_iter().map(|back| g.event(now - back)).collect()
}

/// The CPU time of a local server's processes when `server` names them (`procs::cpu_ms_of_all`).
fn server_cpu(server: Option<&str>) -> Option<u64> {
    server.and_then(procs::cpu_ms_of_all)
}

/// `write_batch` calls with batches of the writer's size (the store alone). Generation is outside the timed
/// part. `server` names the processes of a database server on this machine whose CPU time is counted too.
async fn store_alone(
    store: &dyn Store,
    g: &mut Generator,
    events: usize,
    server: Option<&str>,
) -> anyhow::Result<Spent> {
    let batch = WriterConfig::default().max_batch;
    let mut spent = Spent::default();
    let mut left = events;
    while left > 0 {
        let n = left.min(batch);
        left -= n;
        let b = Arc::new(live_batch(g, n));
        let before = server_cpu(server);
        let (t, cpu) = (Instant::now(), procs::cpu_ms("self")?);
        let r = store.write_batch(b).await?;
        spent.us += us(t.elapsed());
        spent.cpu_ms += procs::cpu_ms("self")?.saturating_sub(cpu);
        if let (Some(a), Some(b)) = (before, server_cpu(server)) {
            *spent.server_cpu_ms.get_or_insert(0) += b.saturating_sub(a);
        }
        spent.events += r.inserted as u64;
    }
    Ok(spent)
}

/// The whole path a gateway uses: `SpendWriter::record` for each event, the writer's batching, then the store.
async fn through_writer(
    store: Arc<dyn Store>,
    g: &mut Generator,
    events: usize,
    server: Option<&str>,
) -> anyhow::Result<Spent> {
    let all = live_batch(g, events);
    let (writer, handle) = spawn_writer(store, WriterConfig::default(), None)?;
    let before = server_cpu(server);
    let (t, cpu) = (Instant::now(), procs::cpu_ms("self")?);
    // Each event's acknowledgement is awaited, as a gateway's request awaits it: it resolves at once while the
    // writer's queue has room, and waits for room when the store falls behind (before 2026-12-08 the queue grew
    // without bound and the acknowledgements were dropped).
    for e in all {
        writer.record(e).await;
    }
    handle.shutdown().await;
    let state = writer.stats().snapshot();
    eprintln!(
        "spendgate-bench: through the writer, the largest batch held {} events (queue peak {} MB)",
        state.largest_batch,
        state.room.peak_bytes >> 20
    );
    let spent = Spent {
        us: us(t.elapsed()),
        cpu_ms: procs::cpu_ms("self")?.saturating_sub(cpu),
        events: writer.stats().snapshot().written_total,
        server_cpu_ms: before
            .zip(server_cpu(server))
            .map(|(a, b)| b.saturating_sub(a)),
    };
    anyhow::ensure!(
        spent.events == events as u64,
        "the writer wrote {} of {events} events",
        spent.events
    );
    Ok(spent)
}

/// A fresh PostgreSQL store in a scratch database of its own (dropped with the returned guard), or why there is
/// none: the server named by `SPENDGATE_BENCH_PG` (default `postgres://postgres@127.0.0.1:5432/postgres`).
pub async fn postgres_store() -> anyhow::Result<Result<(ScratchDatabase, PostgresStore), String>> {
    let (url, db) = ScratchDatabase::from_env("SPENDGATE_BENCH_PG").await;
    let db = match db {
        Ok(db) => db,
        Err(e @ StoreError::Connect { .. }) => {
            return Ok(Err(format!("PostgreSQL not reachable at {url} ({e})")))
        }
        Err(e) => return Err(e.into()),
    };
    let store = PostgresStore::connect(PostgresOptions::new(db.url())).await?;
    Ok(Ok((db, store)))
}

/// The PostgreSQL ingest figures, or the reason they were skipped.
async fn postgres_rates(
    g: &mut Generator,
    events: usize,
    rows: &mut Vec<Row>,
) -> anyhow::Result<Value> {
    let batch = WriterConfig::default().max_batch;
    let (_db, store) = match postgres_store().await? {
        Ok(s) => s,
        Err(reason) => {
            eprintln!("spendgate-bench: PostgreSQL ingest skipped: {reason}");
            rows.push(Row::new(
                "3 ingest",
                "PostgreSQL",
                format!("skipped: {reason}"),
            ));
            return Ok(json!({ "skipped": reason }));
        }
    };
    let alone = store_alone(&store, g, events, Some("postgres")).await?;
    drop(store);
    let (_db2, store2) = match postgres_store().await? {
        Ok(s) => s,
        Err(reason) => anyhow::bail!("PostgreSQL went away during the figure: {reason}"),
    };
    let via = through_writer(Arc::new(store2), g, events, Some("postgres")).await?;
    // Most of the work is the server's, in its own processes: beside this process's CPU time, the table gives
    // theirs when the server runs on this machine (the same figures are in the JSON).
    rows.push(Row::new(
        "3 ingest",
        "PostgreSQL, through the batching writer (events/s)",
        via.shown_with_server(),
    ));
    rows.push(Row::new(
        "3 ingest",
        format!("PostgreSQL, write_batch of {batch} alone (events/s)"),
        alone.shown_with_server(),
    ));
    Ok(json!({ "write_batch": alone.json(), "via_writer": via.json() }))
}

/// PostgreSQL's ingest figures alone (`ingest --postgres`), with the same generator seed as `run`.
pub async fn run_postgres(events: usize, rows: &mut Vec<Row>) -> anyhow::Result<Value> {
    let mut g = Generator::new(1)?;
    let postgresql = postgres_rates(&mut g, events, rows).await?;
    Ok(
        json!({ "events": events, "batch": WriterConfig::default().max_batch, "postgresql": postgresql }),
    )
}

/// Ingest rate two ways, into SQLite and into PostgreSQL: `write_batch` calls with batches of the writer's size
/// (the store alone), and the whole path a gateway uses.
pub async fn run(work: &Path, events: usize, rows: &mut Vec<Row>) -> anyhow::Result<Value> {
    let batch = WriterConfig::default().max_batch;
    let mut g = Generator::new(1)?;

    let dir = procs::fresh_dir(&work.join("ingest-store"))?;
    let store = SqliteStore::open(&dir, SqliteOptions::default())?;
    let alone = store_alone(&store, &mut g, events, None).await?;
    drop(store);

    let dir = procs::fresh_dir(&work.join("ingest-writer"))?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir, SqliteOptions::default())?);
    let via = through_writer(store, &mut g, events, None).await?;

    let journal = journal_cost(work, &mut g, (events / 10).clamp(1_000, 20_000)).await?;
    rows.push(Row::new(
        "6 journal",
        "ack wait per event, one at a time (p50 / p99)",
        format!("{:.1} us / {:.1} us", journal.0, journal.1),
    ));
    rows.push(Row::new(
        "6 journal",
        "64 concurrent recorders, acks/s with journal vs without",
        format!("{} vs {}", thousands(journal.2), thousands(journal.3)),
    ));

    rows.push(
        Row::new(
            "3 ingest",
            "SQLite, through the batching writer (events/s)",
            via.shown(),
        )
        .target(">= 200,000", via.rate() >= 200_000),
    );
    rows.push(Row::new(
        "3 ingest",
        format!("SQLite, write_batch of {batch} alone (events/s)"),
        alone.shown(),
    ));
    let postgresql = postgres_rates(&mut g, events, rows).await?;
    Ok(json!({
        "events": events,
        "batch": batch,
        "sqlite_write_batch": alone.json(),
        "sqlite_via_writer": via.json(),
        "postgresql": postgresql,
        "journal": { "ack_p50_us": journal.0, "ack_p99_us": journal.1, "acks_per_sec_64": journal.2,
                     "acks_per_sec_64_without_journal": journal.3 },
    }))
}

/// What waiting for the journal costs a request (issue 6): the time from `record` to its acknowledgement, one
/// event at a time (no group to share the write with), and the rate of acknowledgements when 64 recorders run at
/// once (group commit), against the same without a journal.
#[allow(clippy::float_arithmetic)]
async fn journal_cost(
    work: &Path,
    g: &mut Generator,
    n: usize,
) -> anyhow::Result<(f64, f64, u64, u64)> {
    use spendgate_store::journal::JournalConfig;
    let dir = procs::fresh_dir(&work.join("journal"))?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir, SqliteOptions::default())?);
    let (writer, handle) = spawn_writer(
        Arc::clone(&store),
        WriterConfig::default(),
        Some(JournalConfig::new(dir.join("journal"))),
    )?;
    let mut waits = Vec::with_capacity(n);
    for e in live_batch(g, n) {
        let t = Instant::now();
        anyhow::ensure!(writer.record(e).await, "the journal refused an event");
        waits.push(t.elapsed().as_secs_f64() * 1e6);
    }
    waits.sort_by(f64::total_cmp);
    let pct = |p: usize| waits[(waits.len() * p / 100).min(waits.len() - 1)];
    let (p50, p99) = (pct(50), pct(99));
    let concurrent = |writer: spendgate_store::SpendWriter,
                      events: Vec<spendgate_core::SpendEvent>| async move {
        let t = Instant::now();
        let total = events.len() as u64;
        let mut chunks: Vec<Vec<_>> = (0..64).map(|_| Vec::new()).collect();
        for (i, e) in events.into_iter().enumerate() {
            chunks[i % 64].push(e);
        }
        let tasks: Vec<_> = chunks
            .into_iter()
            .map(|c| {
                let w = writer.clone();
                tokio::spawn(async move {
                    for e in c {
                        w.record(e).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        per_sec(total, us(t.elapsed()))
    };
    let with = concurrent(writer.clone(), live_batch(g, n * 5)).await;
    handle.shutdown().await;
    let dir2 = procs::fresh_dir(&work.join("journal-off"))?;
    let store2: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir2, SqliteOptions::default())?);
    let (writer2, handle2) = spawn_writer(store2, WriterConfig::default(), None)?;
    let without = concurrent(writer2.clone(), live_batch(g, n * 5)).await;
    handle2.shutdown().await;
    Ok((p50, p99, with, without))
}

/// Adds `n` spend logs spread evenly (with jitter) over the 90 days before now, oldest first, in batches of
/// the writer's size. Returns (events written, microseconds spent writing).
pub async fn fill_history(
    store: &dyn Store,
    g: &mut Generator,
    n: u64,
    progress: &str,
) -> anyhow::Result<(u64, u64)> {
    let batch = WriterConfig::default().max_batch as u64;
    let now = now_ms();
    let span = 90 * DAY_MS;
    let start = now - span;
    let step = (span / i64::try_from(n.max(1)).unwrap_or(i64::MAX)).max(1);
    let mut written = 0u64;
    let mut write_us = 0u64;
    let mut i = 0u64;
    let t0 = Instant::now();
    let mut last_note = Instant::now();
    while i < n {
        let m = (n - i).min(batch);
        let mut b = Vec::with_capacity(usize::try_from(m).unwrap_or(0));
        for j in i..i + m {
            let base = start + i64::try_from(j).unwrap_or(i64::MAX).saturating_mul(step);
            let jitter = g.rng().i64(0..step.max(1));
            b.push(g.event((base + jitter).min(now - 1)));
        }
        i += m;
        let t = Instant::now();
        let r = store.write_batch(Arc::new(b)).await?;
        write_us += us(t.elapsed());
        written += r.inserted as u64;
        if last_note.elapsed() > Duration::from_secs(15) {
            last_note = Instant::now();
            eprintln!(
                "  {progress}: {} of {} spend logs written ({} s)",
                thousands(i),
                thousands(n),
                t0.elapsed().as_secs()
            );
        }
    }
    Ok((written, write_us))
}
