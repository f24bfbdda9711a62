//! `spendgate-bench`: the benchmark harness of issue 9. `bench/run.sh` builds everything and runs
//! `spendgate-bench all`; see docs/BENCHMARKS.md for what each figure measures and how.
// A command-line tool: it reports on the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod gen;
mod ingest;
mod load;
mod loadgen;
mod procs;
mod query;
mod report;
mod stats;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{json, Map, Value};

use report::Row;

#[derive(Debug, Parser)]
#[command(
    name = "spendgate-bench",
    about = "spendgate's benchmark harness (docs/BENCHMARKS.md)."
)]
struct Cli {
    /// A few seconds per figure and small data sets: checks that the harness works, not how fast anything is.
    #[arg(long, global = true)]
    short: bool,
    /// The spendgate binary to benchmark (build it in release mode for real figures).
    #[arg(long, global = true, default_value = "target/release/spendgate")]
    bin: PathBuf,
    /// Scratch space: data directories, configurations and the servers' logs. Emptied first.
    #[arg(long, global = true, default_value = "bench/out/work")]
    work: PathBuf,
    /// Where the results are written as JSON.
    #[arg(long, global = true, default_value = "bench/out/results.json")]
    out: PathBuf,
    /// The commit measured, recorded in the results.
    #[arg(long, global = true, default_value = "unknown")]
    commit: String,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Every figure, in order (the default).
    All,
    /// Figure 3: spend events ingested per second into SQLite and PostgreSQL (`SPENDGATE_BENCH_PG`).
    Ingest {
        #[arg(long)]
        events: Option<usize>,
        /// PostgreSQL's two figures only (no SQLite, no journal): for comparing PostgreSQL write paths.
        #[arg(long)]
        postgres: bool,
    },
    /// Figures 1 and 2 (and 5): added latency at fixed rates, throughput ratio, freshness.
    Load,
    /// Figure 2 alone: the maximum rate, with the gateway's CPU and disk writes per request.
    Throughput,
    /// Figure 5 alone: freshness of the summary API.
    Freshness {
        /// The background load's rate (500 in the full run).
        #[arg(long)]
        background_rps: Option<u64>,
    },
    /// Figure 5's disk writes at fixed rates while nobody reads (no page open, no API call), and what the first
    /// reader afterwards sees.
    Disk {
        /// The rates, requests per second, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,10,25,100,500")]
        rates: Vec<u64>,
        /// Seconds at each rate.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Figure 6: gateway RSS with concurrent streams.
    Rss {
        #[arg(long, default_value_t = 1000)]
        streams: usize,
    },
    /// Figure 4: explorer and summary latency over generated spend logs (sizes comma-separated).
    Query {
        #[arg(long, value_delimiter = ',')]
        logs: Vec<u64>,
        /// Fill and query a PostgreSQL scratch database (on `SPENDGATE_BENCH_PG`) instead of SQLite.
        #[arg(long)]
        postgres: bool,
    },
}

/// The gateway's allocator (see `crates/spendgate/src/main.rs`), so that the ingest figure, which runs the store
/// and the batching writer inside this process, measures them as the gateway runs them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Durations and sizes of one mode.
struct Plan {
    ingest_events: usize,
    rates: Vec<u64>,
    latency_per_side: Duration,
    warm_up: Duration,
    max_concurrency: usize,
    max_per_side: Duration,
    fresh_samples: usize,
    fresh_budget: Duration,
    fresh_background_rps: u64,
    rss_streams: usize,
    rss_hold: Duration,
    query_sizes: Vec<u64>,
    query_reps: usize,
}

impl Plan {
    fn new(short: bool) -> Plan {
        if short {
            Plan {
                ingest_events: 50_000,
                rates: vec![500, 1000, 2000],
                latency_per_side: Duration::from_secs(1),
                warm_up: Duration::from_millis(300),
                max_concurrency: 32,
                max_per_side: Duration::from_secs(1),
                fresh_samples: 30,
                fresh_budget: Duration::from_secs(3),
                fresh_background_rps: 500,
                rss_streams: 200,
                rss_hold: Duration::from_secs(2),
                query_sizes: vec![20_000],
                query_reps: 3,
            }
        } else {
            Plan {
                ingest_events: 1_000_000,
                rates: vec![500, 1000, 2000],
                latency_per_side: Duration::from_secs(10),
                warm_up: Duration::from_secs(2),
                max_concurrency: 32,
                max_per_side: Duration::from_secs(10),
                fresh_samples: 500,
                fresh_budget: Duration::from_secs(20),
                fresh_background_rps: 500,
                rss_streams: 1000,
                rss_hold: Duration::from_secs(10),
                query_sizes: vec![1_000_000, 10_000_000],
                query_reps: 20,
            }
        }
    }
}

struct Ctx {
    cli: Cli,
    plan: Plan,
    rows: Vec<Row>,
    figures: Map<String, Value>,
    failures: Vec<String>,
}

impl Ctx {
    fn record(&mut self, name: &str, r: anyhow::Result<Value>) {
        match r {
            Ok(v) => {
                self.figures.insert(name.to_string(), v);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                eprintln!("spendgate-bench: {name} failed: {msg}");
                self.rows.push(Row::new(name, "FAILED", msg.clone()));
                self.figures
                    .insert(name.to_string(), json!({ "error": msg }));
                self.failures.push(name.to_string());
            }
        }
        // Keep what is measured so far on disk: a long run stopped half way still leaves its figures.
        let partial = json!({
            "partial": true,
            "commit": self.cli.commit,
            "table": self.rows.iter().map(Row::json).collect::<Vec<_>>(),
            "figures": self.figures,
        });
        if let Ok(text) = serde_json::to_string_pretty(&partial) {
            if let Some(parent) = self.cli.out.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(&self.cli.out, text);
        }
        eprint!("{}", report::table(&self.rows));
    }
}

async fn load_figures(
    ctx: &mut Ctx,
    latency: bool,
    throughput: bool,
    freshness: bool,
) -> anyhow::Result<()> {
    let Some((mut s, client)) = warmed_setup(ctx, "load").await else {
        return Ok(());
    };
    if latency {
        eprintln!(
            "spendgate-bench: figure 1, added latency at {:?} rps",
            ctx.plan.rates
        );
        let r = load::added_latency(
            &client,
            &mut s,
            &ctx.plan.rates,
            ctx.plan.latency_per_side,
            &mut ctx.rows,
        )
        .await;
        ctx.record("1_added_latency", r);
    }
    if throughput {
        eprintln!("spendgate-bench: figure 2, maximum rate");
        let r = load::throughput(
            &client,
            &mut s,
            ctx.plan.max_concurrency,
            ctx.plan.max_per_side,
            &mut ctx.rows,
        )
        .await;
        ctx.record("2_throughput", r);
    }
    if freshness {
        eprintln!("spendgate-bench: figure 5, freshness");
        // Let the writer drain the load above first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let p = &ctx.plan;
        let r = load::freshness(
            &client,
            &mut s,
            p.fresh_samples,
            p.fresh_background_rps,
            p.fresh_budget,
            &mut ctx.rows,
        )
        .await;
        ctx.record("5_freshness", r);
    }
    let rss = procs::proc_status_kb(s.gateway.pid(), "VmHWM").ok();
    ctx.figures
        .insert("load_gateway_vm_hwm_kb".into(), json!(rss));
    drop(s);
    Ok(())
}

/// The load figures' gateway, upstream and client, warmed up; `None` (recorded under `figure`) when either failed.
async fn warmed_setup(ctx: &mut Ctx, figure: &str) -> Option<(load::Setup, loadgen::Http)> {
    let bin = ctx.cli.bin.clone();
    let work = ctx.cli.work.clone();
    let s = match load::Setup::start(&bin, &work).await {
        Ok(s) => s,
        Err(e) => {
            ctx.record(figure, Err(e));
            return None;
        }
    };
    let client = loadgen::client();
    if let Err(e) = load::warm_up(&client, &s, ctx.plan.warm_up).await {
        ctx.record(figure, Err(e));
        return None;
    }
    Some((s, client))
}

async fn disk_figure(ctx: &mut Ctx, rates: &[u64], per_rate: Duration) -> anyhow::Result<()> {
    let Some((mut s, client)) = warmed_setup(ctx, "disk").await else {
        return Ok(());
    };
    eprintln!("spendgate-bench: disk writes at {rates:?} rps, nobody reading");
    let r = load::disk(&client, &mut s, rates, per_rate, &mut ctx.rows).await;
    ctx.record("5_disk", r);
    Ok(())
}

/// The 1, 5 and 15-minute load averages: a 2-core machine shared with builds is noisy, and this says how much.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
    });
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "os": std::env::consts::OS,
        "loadavg_at_end": loadavg(),
    })
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let started = Instant::now();
    anyhow::ensure!(
        cli.bin.exists(),
        "{} does not exist: build it first (bench/run.sh does)",
        cli.bin.display()
    );
    procs::fresh_dir(&cli.work)?;
    let loadavg_at_start = loadavg();
    let plan = Plan::new(cli.short);
    let mut ctx = Ctx {
        cli,
        plan,
        rows: Vec::new(),
        figures: Map::new(),
        failures: Vec::new(),
    };
    let cmd = ctx.cli.command.take().unwrap_or(Cmd::All);
    let all = matches!(cmd, Cmd::All);
    let bin = ctx.cli.bin.clone();
    let work = ctx.cli.work.clone();

    let mut postgres_only = false;
    if let Cmd::Ingest { events, postgres } = &cmd {
        ctx.plan.ingest_events = events.unwrap_or(ctx.plan.ingest_events);
        postgres_only = *postgres;
    }
    if all || matches!(cmd, Cmd::Ingest { .. }) {
        eprintln!(
            "spendgate-bench: figure 3, ingest of {} events",
            ctx.plan.ingest_events
        );
        let r = if postgres_only {
            ingest::run_postgres(ctx.plan.ingest_events, &mut ctx.rows).await
        } else {
            ingest::run(&work, ctx.plan.ingest_events, &mut ctx.rows).await
        };
        ctx.record("3_ingest", r);
    }
    if all || matches!(cmd, Cmd::Load) {
        load_figures(&mut ctx, true, true, true).await?;
    }
    if matches!(cmd, Cmd::Throughput) {
        load_figures(&mut ctx, false, true, false).await?;
    }
    if let Cmd::Freshness { background_rps } = &cmd {
        if let Some(r) = background_rps {
            ctx.plan.fresh_background_rps = *r;
        }
        load_figures(&mut ctx, false, false, true).await?;
    }
    if let Cmd::Disk { rates, seconds } = &cmd {
        disk_figure(&mut ctx, rates, Duration::from_secs(*seconds)).await?;
    }
    if let Cmd::Rss { streams } = &cmd {
        ctx.plan.rss_streams = *streams;
    }
    if all || matches!(cmd, Cmd::Rss { .. }) {
        eprintln!(
            "spendgate-bench: figure 6, RSS with {} streams",
            ctx.plan.rss_streams
        );
        let r = load::rss(
            &bin,
            &work,
            ctx.plan.rss_streams,
            ctx.plan.rss_hold,
            &mut ctx.rows,
        )
        .await;
        ctx.record("6_rss", r);
    }
    let query_on_postgres = matches!(cmd, Cmd::Query { postgres: true, .. });
    if let Cmd::Query { logs, .. } = &cmd {
        if !logs.is_empty() {
            ctx.plan.query_sizes = logs.clone();
        }
    }
    if all || matches!(cmd, Cmd::Query { .. }) {
        eprintln!(
            "spendgate-bench: figure 4, queries over {:?} spend logs",
            ctx.plan.query_sizes
        );
        let r = query::run(
            &bin,
            &work,
            &ctx.plan.query_sizes,
            ctx.plan.query_reps,
            query_on_postgres,
            &mut ctx.rows,
        )
        .await;
        ctx.record("4_queries", r);
    }

    let table = report::table(&ctx.rows);
    println!();
    println!(
        "spendgate benchmarks ({} mode, commit {})",
        if ctx.cli.short { "short" } else { "full" },
        ctx.cli.commit
    );
    println!(
        "(load average at start {loadavg_at_start}, at end {})",
        loadavg()
    );
    println!();
    print!("{table}");
    if ctx.cli.short {
        println!("\nShort mode: a few seconds per figure, to check the harness; its figures are not measurements.");
    }
    let result = json!({
        "commit": ctx.cli.commit,
        "mode": if ctx.cli.short { "short" } else { "full" },
        "binary": ctx.cli.bin.display().to_string(),
        "machine": machine(),
        "loadavg_at_start": loadavg_at_start,
        "measured_at": spendgate_core::time::to_rfc3339(spendgate_core::time::now_ms()),
        "elapsed_s": started.elapsed().as_secs(),
        "table": ctx.rows.iter().map(Row::json).collect::<Vec<_>>(),
        "table_text": table,
        "figures": ctx.figures,
        "failures": ctx.failures,
    });
    if let Some(parent) = ctx.cli.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&ctx.cli.out, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("could not write {}", ctx.cli.out.display()))?;
    println!("\nResults: {}", ctx.cli.out.display());
    Ok(ctx.failures.is_empty())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !run(cli).await? {
        anyhow::bail!("some figures could not be measured (see above); the harness is broken");
    }
    Ok(())
}
