//! The `spendgate` command: glue between the command line, the configuration and the library crates.
// The command line is the one place that prints to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use spendgate::admin_cli::{
    budgets_table, explain_text, keys_table, query, rate_limits_table, report, since_params,
    wallets_table, Target,
};
use spendgate::{app, config, demo};

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "spendgate",
    version,
    about = "An AI gateway that shows every team what it spends on AI right now."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway, the API and the pages with the mock provider and live traffic (SQLite unless --store).
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080", env = "SPENDGATE_LISTEN")]
        listen: String,
        #[arg(long, default_value = "spendgate-data", env = "SPENDGATE_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, default_value = "demo-gateway", env = "SPENDGATE_GATEWAY_NAME")]
        gateway_name: String,
        /// Start without the synthetic traffic.
        #[arg(long)]
        no_traffic: bool,
        /// The store: a directory or sqlite://<dir> (SQLite), or postgres://user@host:port/database.
        #[arg(long, env = "SPENDGATE_STORE")]
        store: Option<String>,
    },
    /// Run the gateway with a configuration file.
    Serve {
        #[arg(long, env = "SPENDGATE_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, env = "SPENDGATE_LISTEN")]
        listen: Option<String>,
        #[arg(long, env = "SPENDGATE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, env = "SPENDGATE_GATEWAY_NAME")]
        gateway_name: Option<String>,
        /// The store, overriding [store] url: a directory or sqlite://<dir> (SQLite), or
        /// postgres://user@host:port/database.
        #[arg(long, env = "SPENDGATE_STORE")]
        store: Option<String>,
    },
    /// Manage virtual keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Set and list budgets on a running server.
    Budgets {
        #[command(subcommand)]
        command: BudgetsCommand,
    },
    /// Create, top up and list wallets on a running server.
    Wallets {
        #[command(subcommand)]
        command: WalletsCommand,
    },
    /// Set, list and delete rate limits (requests and tokens a minute of a key or a team) on a running server.
    RateLimits {
        #[command(subcommand)]
        command: RateLimitsCommand,
    },
    /// Explain why a group's spend changed: volume, intensity and price/mix effects, and who drove them.
    Explain {
        /// team, user, key, provider, model, gateway, workflow or cache_outcome; leave out for all spend.
        #[arg(long)]
        group_by: Option<String>,
        /// The group to explain, e.g. support (the No team bucket is @none).
        #[arg(long)]
        subject: Option<String>,
        /// The current window (1h, 24h, 7d, 30d, mtd), compared with the equal window before it.
        #[arg(long, default_value = "24h")]
        window: String,
        /// What each effect is broken down by (default: model).
        #[arg(long)]
        breakdown: Option<String>,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Print the usage explorer: spend per group, the same numbers as the pages.
    Report {
        /// How far back: 1h, 24h, 7d, 30d, mtd, or any <n>m, <n>h, <n>d.
        #[arg(long, default_value = "24h")]
        since: String,
        #[arg(long, default_value = "team")]
        group_by: String,
        /// table, csv or json.
        #[arg(long, default_value = "table")]
        format: String,
        /// cost, requests or tokens.
        #[arg(long, default_value = "cost")]
        sort: String,
        #[command(flatten)]
        target: Target,
    },
    /// Compare the pricing catalog with a price list, or import its differences as overrides.
    Pricing {
        #[command(subcommand)]
        command: PricingCommand,
    },
    /// Serve only the mock provider as an OpenAI-compatible and Anthropic-compatible upstream (for benchmarks and
    /// trials).
    MockUpstream {
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: String,
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
enum PricingCommand {
    /// Print every price on which the catalog in force (with the configuration's overrides) and FILE disagree.
    /// FILE is LiteLLM's model_prices_and_context_window.json or OpenRouter's /api/v1/models answer.
    Check {
        file: PathBuf,
        #[arg(long, env = "SPENDGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write the differences of some providers as overrides, for `[pricing] include` in the configuration.
    Import {
        file: PathBuf,
        /// Catalog providers whose prices to take from FILE, comma-separated (openai,anthropic,...).
        #[arg(long, value_delimiter = ',', required = true)]
        providers: Vec<String>,
        /// Where to write the overrides.
        #[arg(long, default_value = "pricing-overrides.toml")]
        out: PathBuf,
        #[arg(long, env = "SPENDGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print it (only the key, so scripts can capture it). It is shown only this once.
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        team: Option<String>,
        /// When the key stops working, RFC 3339 (e.g. 2027-01-31T00:00:00Z); without it, it works until revoked.
        #[arg(long)]
        expires_at: Option<String>,
        #[arg(long, env = "SPENDGATE_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, env = "SPENDGATE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The store, overriding [store] url (see `serve --store`).
        #[arg(long, env = "SPENDGATE_STORE")]
        store: Option<String>,
    },
    /// List the keys of a running server (hints only).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a key through a running server: refused at once on every replica sharing its store.
    Revoke {
        /// The key's id (spendgate keys list).
        id: i64,
        #[command(flatten)]
        target: Target,
    },
    /// Give a key a new secret through a running server and print it (shown only this once); the old secret
    /// stops working everywhere.
    Rotate {
        /// The key's id (spendgate keys list).
        id: i64,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a team viewer token through a running server; page sessions made with it end at once.
    RevokeViewer {
        /// The viewer token's id (GET /api/v1/viewer-tokens lists them).
        id: i64,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
enum BudgetsCommand {
    /// Create a budget, or update the one with the same scope and period.
    Set {
        /// org, team, user or key.
        #[arg(long)]
        scope: String,
        /// The team or user name, or the key id (not for org).
        #[arg(long)]
        subject: Option<String>,
        /// day, week or month (calendar periods in the configured time zone).
        #[arg(long, default_value = "month")]
        period: String,
        /// USD, e.g. 250 or 99.50.
        #[arg(long)]
        amount: String,
        /// Alert thresholds in percent, comma-separated.
        #[arg(long, default_value = "80,100", value_delimiter = ',')]
        thresholds: Vec<u32>,
        /// Refuse requests (HTTP 429) once the budget is spent, instead of only alerting.
        #[arg(long)]
        hard_limit: bool,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    List {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
enum RateLimitsCommand {
    /// Create the rate limit of a key or a team, or replace the one it has (a limit left out is no limit).
    Set {
        /// key or team.
        #[arg(long)]
        scope: String,
        /// The key id or the team's name.
        #[arg(long)]
        subject: String,
        /// Requests a minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens a minute (prompt and output).
        #[arg(long)]
        tpm: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// List the rate limits with what the server counted against each in the last minute.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Delete a rate limit: its key or team is no longer limited.
    Delete {
        #[arg(long)]
        id: i64,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
enum WalletsCommand {
    Create {
        /// org, team or user.
        #[arg(long)]
        scope: String,
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Under this balance (USD) the wallet is Low.
        #[arg(long)]
        low: Option<String>,
        /// A first top-up (USD).
        #[arg(long)]
        initial: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    Topup {
        #[arg(long)]
        id: i64,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    List {
        #[command(flatten)]
        target: Target,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn wait_for_ctrl_c() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// mimalloc instead of the C library's allocator: the request path allocates many small, short-lived buffers
/// (headers, JSON, the spend event), and glibc's malloc/free took about 13% of the gateway's time under load
/// (docs/BENCHMARKS-HISTORY.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One TLS stack (rustls with ring) for upstream calls; installed once, before any client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Demo {
            listen,
            data_dir,
            gateway_name,
            no_traffic,
            store,
        } => {
            let mut config = demo::demo_config(listen, data_dir, gateway_name);
            config.store.url = store.or(config.store.url);
            // An empty store first gets its past (a few seconds), so every comparison has a baseline.
            let started = std::time::Instant::now();
            let history = demo::write_history(&config, |p| {
                use std::io::Write;
                print!(
                    "\r  Writing {} days of demo history: day {}/{} ({} events)",
                    p.days, p.day, p.days, p.events
                );
                let _ = std::io::stdout().flush();
            })
            .await?;
            if let Some(h) = &history {
                println!(
                    "\r  Wrote {} days of demo history ({} events) in {:.1} s.      ",
                    h.days,
                    h.events,
                    started.elapsed().as_secs_f64()
                );
            }
            let running = app::start(&config).await?;
            let base = format!("http://{}", running.addr);
            println!();
            println!("  spendgate demo is running.");
            println!("  Dashboard and API:   {base}/  (JSON: {base}/api/v1/usage/explorer?group_by=team)");
            let store_flag = match &config.store.url {
                // Never the password, even on the terminal of the person who typed it (screens get shared).
                Some(url) => format!("--store '{}'", spendgate_store::postgres::redact_url(url)),
                None => format!("--data-dir {}", config.data_dir.display()),
            };
            println!("  OpenAI-compatible:   {base}/v1  (create a key: spendgate keys create --user you --team yours {store_flag})");
            match &running.admin_token_file {
                Some(p) => println!("  Admin token:         in {}", p.display()),
                None => println!("  Admin token:         from SPENDGATE_ADMIN_TOKEN"),
            }
            println!("  Stop with Ctrl-C; every pending spend event is written before exit.");
            println!();
            let traffic = (!no_traffic).then(|| {
                tokio::spawn(demo::run_traffic(
                    std::sync::Arc::clone(&running.store),
                    base.clone(),
                    running.shutdown_signal(),
                    demo::Traffic {
                        keys: history.map(|h| h.keys).unwrap_or_default(),
                        ..demo::Traffic::default()
                    },
                ))
            });
            if !no_traffic {
                let controls = std::sync::Arc::clone(&running.controls);
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(45)).await;
                    match demo::seed_controls(controls).await {
                        Ok(s) if !s.kept.is_empty() => tracing::info!(
                            kept = ?s.kept,
                            "The demo left budgets and wallets that were already set as they are."
                        ),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "Seeding the demo's budgets and wallets failed.")
                        }
                    }
                });
            }
            wait_for_ctrl_c().await;
            tracing::info!(
                "Stopping: finishing requests in flight and writing pending spend events."
            );
            let stopping = running.stop();
            if let Some(t) = traffic {
                t.abort();
            }
            stopping.await?;
        }
        Command::Serve {
            config,
            listen,
            data_dir,
            gateway_name,
            store,
        } => {
            let mut c = config::Config::load(config.as_deref())?;
            if store.is_some() {
                c.store.url = store;
            }
            if let Some(l) = listen {
                c.listen = l;
            }
            if let Some(d) = data_dir {
                c.data_dir = d;
            }
            if let Some(g) = gateway_name {
                c.gateway_name = g;
            }
            if let Ok(t) = std::env::var("SPENDGATE_ADMIN_TOKEN") {
                c.admin_token = Some(t);
            }
            let running = app::start(&c).await?;
            if let Some(p) = &running.admin_token_file {
                eprintln!("Admin token: in {}", p.display());
            }
            wait_for_ctrl_c().await;
            tracing::info!(
                "Stopping: finishing requests in flight and writing pending spend events."
            );
            running.stop().await?;
        }
        Command::Keys {
            command:
                KeysCommand::Create {
                    user,
                    team,
                    expires_at,
                    config,
                    data_dir,
                    store,
                },
        } => {
            let expires_at_ms = expires_at
                .as_deref()
                .map(|t| {
                    spendgate_core::time::parse_rfc3339(t).with_context(|| {
                        format!("--expires-at {t:?} is not an RFC 3339 time such as 2027-01-31T00:00:00Z")
                    })
                })
                .transpose()?;
            let mut c = config::Config::load(config.as_deref())?;
            if let Some(d) = data_dir {
                c.data_dir = d;
            }
            if store.is_some() {
                c.store.url = store;
            }
            let store = app::open_store(&c).await?;
            let (_, secret) =
                spendgate_gateway::keys::create_key(&*store, &user, team.as_deref(), expires_at_ms)
                    .await
                    .context("could not create the key")?;
            println!("{secret}");
        }
        Command::Keys {
            command: KeysCommand::List { target },
        } => {
            let v = target
                .call(reqwest::Method::GET, "/api/v1/keys", None)
                .await?;
            print!("{}", keys_table(&v));
        }
        Command::Keys {
            command: KeysCommand::Revoke { id, target },
        } => {
            let v = target
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/keys/{id}/revoke"),
                    None,
                )
                .await?;
            print!("{}", keys_table(&serde_json::json!({ "keys": [v] })));
        }
        Command::Keys {
            command: KeysCommand::Rotate { id, target },
        } => {
            let v = target
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/keys/{id}/rotate"),
                    None,
                )
                .await?;
            // Only the key, as `keys create` prints it, so scripts can capture it.
            println!("{}", v["key"].as_str().unwrap_or_default());
        }
        Command::Keys {
            command: KeysCommand::RevokeViewer { id, target },
        } => {
            target
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/viewer-tokens/{id}/revoke"),
                    None,
                )
                .await?;
            println!("Viewer token {id} is revoked; its page sessions have ended.");
        }
        Command::Budgets { command } => match command {
            BudgetsCommand::Set {
                scope,
                subject,
                period,
                amount,
                thresholds,
                hard_limit,
                name,
                target,
            } => {
                let body = serde_json::json!({
                    "scope": scope, "subject": subject, "period": period, "amount": amount,
                    "thresholds": thresholds, "hard_limit": hard_limit, "name": name,
                });
                let v = target
                    .call(reqwest::Method::POST, "/api/v1/budgets", Some(body))
                    .await?;
                print!("{}", budgets_table(&serde_json::json!({ "budgets": [v] })));
            }
            BudgetsCommand::List { target } => {
                print!(
                    "{}",
                    budgets_table(
                        &target
                            .call(reqwest::Method::GET, "/api/v1/budgets", None)
                            .await?
                    )
                );
            }
        },
        Command::RateLimits { command } => match command {
            RateLimitsCommand::Set {
                scope,
                subject,
                rpm,
                tpm,
                target,
            } => {
                let body = serde_json::json!({ "scope": scope, "subject": subject, "rpm": rpm, "tpm": tpm });
                let v = target
                    .call(reqwest::Method::POST, "/api/v1/rate-limits", Some(body))
                    .await?;
                print!(
                    "{}",
                    rate_limits_table(&serde_json::json!({ "rate_limits": [v] }))
                );
            }
            RateLimitsCommand::List { target } => {
                let v = target
                    .call(reqwest::Method::GET, "/api/v1/rate-limits", None)
                    .await?;
                print!("{}", rate_limits_table(&v));
            }
            RateLimitsCommand::Delete { id, target } => {
                target
                    .call(
                        reqwest::Method::DELETE,
                        &format!("/api/v1/rate-limits/{id}"),
                        None,
                    )
                    .await?;
                println!("Rate limit {id} is deleted; its key or team is no longer limited.");
            }
        },
        Command::Wallets { command } => match command {
            WalletsCommand::Create {
                scope,
                subject,
                name,
                low,
                initial,
                target,
            } => {
                let body = serde_json::json!({
                    "scope": scope, "subject": subject, "name": name, "low_threshold": low, "initial_balance": initial,
                });
                let v = target
                    .call(reqwest::Method::POST, "/api/v1/wallets", Some(body))
                    .await?;
                print!("{}", wallets_table(&serde_json::json!({ "wallets": [v] })));
            }
            WalletsCommand::Topup {
                id,
                amount,
                reason,
                target,
            } => {
                let body = serde_json::json!({ "amount": amount, "reason": reason });
                let v = target
                    .call(
                        reqwest::Method::POST,
                        &format!("/api/v1/wallets/{id}/topup"),
                        Some(body),
                    )
                    .await?;
                print!("{}", wallets_table(&v));
            }
            WalletsCommand::List { target } => {
                print!(
                    "{}",
                    wallets_table(
                        &target
                            .call(reqwest::Method::GET, "/api/v1/wallets", None)
                            .await?
                    )
                );
            }
        },
        Command::Explain {
            group_by,
            subject,
            window,
            breakdown,
            json,
            target,
        } => {
            let path = format!(
                "/api/v1/insights/explain{}",
                query(&[
                    ("group_by", group_by.as_deref().unwrap_or("")),
                    ("subject", subject.as_deref().unwrap_or("")),
                    ("window", &window),
                    ("breakdown", breakdown.as_deref().unwrap_or("")),
                ])
            );
            let v = target.call(reqwest::Method::GET, &path, None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", explain_text(&v));
            }
        }
        Command::Report {
            since,
            group_by,
            format,
            sort,
            target,
        } => {
            if !["table", "csv", "json"].contains(&format.as_str()) {
                anyhow::bail!("--format '{format}' is not one of table, csv, json");
            }
            let (k, v) = since_params(&since, spendgate_core::time::now_ms())?;
            let path = format!(
                "/api/v1/usage/explorer{}",
                query(&[(&k, &v), ("group_by", &group_by), ("sort", &sort)])
            );
            let v = target.call(reqwest::Method::GET, &path, None).await?;
            print!("{}", report(&v, &format)?);
        }
        Command::Pricing { command } => {
            let (file, config) = match &command {
                PricingCommand::Check { file, config }
                | PricingCommand::Import { file, config, .. } => (file.clone(), config.clone()),
            };
            let catalog = config::Config::load(config.as_deref())?.catalog()?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("could not read the price list {}", file.display()))?;
            let list = spendgate::pricing_cli::read_price_list(&text)
                .with_context(|| format!("the price list {} could not be read", file.display()))?;
            let comparison = spendgate::pricing_cli::compare(&catalog, &list);
            match command {
                PricingCommand::Check { .. } => {
                    print!("{}", spendgate::pricing_cli::report(&comparison))
                }
                PricingCommand::Import { providers, out, .. } => {
                    let day = time::OffsetDateTime::now_utc().date().to_string();
                    let source = file
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| file.display().to_string());
                    let (toml, notes) = spendgate::pricing_cli::overrides(
                        &catalog,
                        &comparison,
                        &providers,
                        &source,
                        &day,
                    );
                    std::fs::write(&out, toml)
                        .with_context(|| format!("could not write {}", out.display()))?;
                    for n in notes {
                        eprintln!("not imported: {n}");
                    }
                    println!(
                        "wrote {}; add it to the configuration with [pricing] include = [\"{}\"]",
                        out.display(),
                        out.display()
                    );
                }
            }
        }
        Command::MockUpstream { listen, latency_ms } => {
            let mock = spendgate_gateway::providers::MockProvider::new(
                spendgate_gateway::providers::MockConfig {
                    name: "mock".into(),
                    latency: std::time::Duration::from_millis(latency_ms),
                    chunk_delay: std::time::Duration::ZERO,
                    fault: None,
                },
            );
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("could not listen on {listen}"))?;
            eprintln!("mock upstream on http://{}/v1", listener.local_addr()?);
            axum::serve(
                axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                }),
                spendgate_gateway::mock_upstream_router(std::sync::Arc::new(mock)),
            )
            .with_graceful_shutdown(wait_for_ctrl_c())
            .await?;
        }
    }
    Ok(())
}
