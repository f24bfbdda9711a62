//! Figure 3: spend events ingested per second into SQLite, and the store generation behind figure 4.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spendgate_core::time::{now_ms, DAY_MS};
use spendgate_core::SpendEvent;
use spendgate_store::sqlite::SqliteOptions;
use spendgate_store::{spawn_writer, SqliteStore, Store, WriterConfig};

use crate::gen::Generator;
use crate::procs;
use crate::report::Row;
use crate::stats::{per_sec, thousands};

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Live traffic: events that finished within the last minute.
fn live_batch(g: &mut Generator, n: usize) -> Vec<SpendEvent> {
    let now = now_ms();
    (0..n)
        .map(|_| {
            let back = g.rng().i64(0..60_000);
            g.event(now - back)
        })
        .collect()
}

/// Ingest rate two ways: `write_batch` calls with batches of the writer's size (the store alone), and the
/// whole path a gateway uses (`SpendWriter::record` for each event, the writer's batching, then the store).
pub async fn run(work: &Path, events: usize, rows: &mut Vec<Row>) -> anyhow::Result<Value> {
    let batch = WriterConfig::default().max_batch;
    let mut g = Generator::new(1)?;

    // 1. The store alone. Generation is outside the timed part.
    let dir = procs::fresh_dir(&work.join("ingest-store"))?;
    let store = SqliteStore::open(&dir, SqliteOptions::default())?;
    let mut written = 0u64;
    let mut write_us = 0u64;
    let mut left = events;
    while left > 0 {
        let n = left.min(batch);
        left -= n;
        let b = Arc::new(live_batch(&mut g, n));
        let t = Instant::now();
        let r = store.write_batch(b).await?;
        write_us += us(t.elapsed());
        written += r.inserted as u64;
    }
    drop(store);
    let direct_rate = per_sec(written, write_us);

    // 2. Through the writer, as the gateway records them.
    let dir = procs::fresh_dir(&work.join("ingest-writer"))?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir, SqliteOptions::default())?);
    let all = live_batch(&mut g, events);
    let (writer, handle) = spawn_writer(Arc::clone(&store), WriterConfig::default(), None)?;
    let t = Instant::now();
    for e in all {
        drop(writer.record(e));
    }
    handle.shutdown().await;
    let writer_us = us(t.elapsed());
    let snap = writer.stats().snapshot();
    let writer_rate = per_sec(snap.written_total, writer_us);
    anyhow::ensure!(
        snap.written_total == events as u64,
        "the writer wrote {} of {events} events",
        snap.written_total
    );

    rows.push(
        Row::new(
            "3 ingest",
            "SQLite, through the batching writer (events/s)",
            thousands(writer_rate),
        )
        .target(">= 200,000", writer_rate >= 200_000),
    );
    rows.push(Row::new(
        "3 ingest",
        format!("SQLite, write_batch of {batch} alone (events/s)"),
        thousands(direct_rate),
    ));
    Ok(json!({
        "events": events,
        "batch": batch,
        "sqlite_write_batch": { "events": written, "elapsed_us": write_us, "events_per_sec": direct_rate },
        "sqlite_via_writer": { "events": snap.written_total, "elapsed_us": writer_us, "events_per_sec": writer_rate },
        "postgresql": "not measured: no PostgreSQL backend exists yet",
    }))
}

/// Adds `n` spend logs spread evenly (with jitter) over the 90 days before now, oldest first, in batches of
/// the writer's size. Returns (events written, microseconds spent writing).
pub async fn fill_history(
    store: &SqliteStore,
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
