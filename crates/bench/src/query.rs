//! Figure 4: /usage explorer and summary latency over 1 and 10 million spend logs spread over 90 days.
//!
//! The logs are generated into a fresh SQLite store (the same store grows from one size to the next), then a
//! `spendgate serve` process answers the JSON API over it and each query is timed over HTTP, as a dashboard
//! would see it: explorer grouped by team, model and user, and the summary, each for 24h, 7d and 30d.

use std::path::Path;

use serde_json::{json, Value};
use spendgate_store::sqlite::SqliteOptions;
use spendgate_store::SqliteStore;

use crate::gen::Generator;
use crate::ingest::fill_history;
use crate::load::ADMIN_TOKEN;
use crate::loadgen;
use crate::procs;
use crate::report::Row;
use crate::stats::{ms, per_sec, thousands, Samples};

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub async fn run(
    bin: &Path,
    work: &Path,
    sizes: &[u64],
    reps: usize,
    postgres: bool,
    rows: &mut Vec<Row>,
) -> anyhow::Result<Value> {
    let dir = procs::fresh_dir(&work.join("query-data"))?;
    // On PostgreSQL: one scratch database for every size (dropped at the end), filled the same way.
    let pg = if postgres {
        match crate::ingest::postgres_store().await? {
            Ok(pair) => Some(pair),
            Err(why) => anyhow::bail!("--postgres: {why}"),
        }
    } else {
        None
    };
    let backend = if pg.is_some() { "PostgreSQL" } else { "SQLite" };
    let mut g = Generator::new(2)?;
    let mut have = 0u64;
    let mut out = Vec::new();
    let client = loadgen::client();
    for &size in sizes {
        let sqlite;
        let store: &dyn spendgate_store::Store = match &pg {
            Some((_, s)) => s,
            None => {
                sqlite = SqliteStore::open(&dir, SqliteOptions::default())?;
                &sqlite
            }
        };
        let (written, write_us) = fill_history(
            store,
            &mut g,
            size.saturating_sub(have),
            &format!("query data {}", thousands(size)),
        )
        .await?;
        have = have.max(size);
        let db_bytes = dir_bytes(&dir);

        let config = procs::write_config(work, "query-gateway", None)?;
        let store_args: Vec<&str> = match &pg {
            Some((db, _)) => vec!["--store", db.url()],
            None => Vec::new(),
        };
        let mut gw = procs::serve_with(
            bin,
            work,
            "query-gateway",
            &config,
            &dir,
            ADMIN_TOKEN,
            &store_args,
        )
        .await?;
        let base = format!("http://{}/api/v1/usage", gw.addr);
        let mut queries: Vec<(String, String, Samples)> = Vec::new();
        for window in ["24h", "7d", "30d"] {
            for group in ["team", "model", "user"] {
                queries.push((
                    format!("explorer {group} {window}"),
                    format!("{base}/explorer?group_by={group}&window={window}"),
                    Samples::default(),
                ));
            }
            queries.push((
                format!("summary {window}"),
                format!("{base}/summary?window={window}"),
                Samples::default(),
            ));
        }
        // One pass to warm the page cache, then `reps` timed passes, interleaved.
        // The first pass is also the first time each question is asked: nothing is kept yet for the past days of
        // its window (`store::sealed`), so it is reported apart; the timed passes ask again, as a dashboard does.
        let mut check_rows = 0u64;
        let mut first_worst = (0u64, String::new());
        for pass in 0..=reps {
            for (name, uri, samples) in queries.iter_mut() {
                let (us, v) = loadgen::get_json(&client, uri, ADMIN_TOKEN).await?;
                if pass > 0 {
                    samples.push(us);
                    continue;
                }
                if name.starts_with("explorer") {
                    if us >= first_worst.0 {
                        first_worst = (us, name.clone());
                    }
                    if name.ends_with("30d") {
                        check_rows += v["rows"].as_array().map_or(0, |r| r.len() as u64);
                    }
                }
            }
        }
        gw.check_alive()?;
        drop(gw);
        let mut per_query = Vec::new();
        let (mut worst_explorer, mut worst_summary) =
            ((0u64, String::new()), (0u64, String::new()));
        for (name, _, samples) in queries.iter_mut() {
            let p95 = samples.percentile(950);
            let slot = if name.starts_with("explorer") {
                &mut worst_explorer
            } else {
                &mut worst_summary
            };
            if p95 >= slot.0 {
                *slot = (p95, name.clone());
            }
            per_query.push(json!({ "query": name, "latency": samples.summary() }));
        }
        let label = format!("{} logs ({backend})", thousands(size));
        let mut explorer_all = Samples::default();
        let mut summary_all = Samples::default();
        for (name, _, s) in &queries {
            if name.starts_with("explorer") {
                explorer_all.extend(s);
            } else {
                summary_all.extend(s);
            }
        }
        rows.push(Row::new(
            "4 queries",
            format!("{label}: explorer p50 (all groupings, 24h/7d/30d)"),
            ms(explorer_all.percentile(500) as i64),
        ));
        let row = Row::new(
            "4 queries",
            format!("{label}: explorer p95, worst query ({})", worst_explorer.1),
            ms(worst_explorer.0 as i64),
        );
        rows.push(if size >= 10_000_000 {
            row.target("<= 50 ms", worst_explorer.0 <= 50_000)
        } else {
            row
        });
        rows.push(Row::new(
            "4 queries",
            format!(
                "{label}: explorer asked the first time, worst query ({})",
                first_worst.1
            ),
            ms(first_worst.0 as i64),
        ));
        rows.push(Row::new(
            "4 queries",
            format!("{label}: summary p50 / worst p95 ({})", worst_summary.1),
            format!(
                "{} / {}",
                ms(summary_all.percentile(500) as i64),
                ms(worst_summary.0 as i64)
            ),
        ));
        rows.push(Row::new(
            "4 queries",
            format!("{label}: generation into the store (events/s, 90 days of history)"),
            thousands(per_sec(written, write_us)),
        ));
        out.push(json!({
            "spend_logs": size,
            "generated": { "events": written, "elapsed_us": write_us, "events_per_sec": per_sec(written, write_us) },
            "db_bytes": db_bytes,
            "explorer_30d_groups_seen": check_rows,
            "reps": reps,
            "explorer": explorer_all.summary(),
            "summary": summary_all.summary(),
            "worst_explorer_p95": { "query": worst_explorer.1, "us": worst_explorer.0 },
            "worst_summary_p95": { "query": worst_summary.1, "us": worst_summary.0 },
            "worst_explorer_first_ask": { "query": first_worst.1, "us": first_worst.0 },
            "queries": per_query,
        }));
    }
    Ok(Value::Array(out))
}
