//! Wiring: from a [`Config`] to a running server. Used by `serve`, `demo` and the integration tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use spendgate_core::Catalog;
use spendgate_gateway::alerts::WebhookConfig;
use spendgate_gateway::controls::{Controls, ControlsConfig, LeaseSettings};
use spendgate_gateway::heartbeat::Heart;
use spendgate_gateway::provider::Provider;
use spendgate_gateway::providers::aws::CredentialChain;
use spendgate_gateway::providers::mock::Fault;
use spendgate_gateway::providers::BedrockAuth;
use spendgate_gateway::providers::{
    Anthropic, Bedrock, Gemini, HttpConfig, MockConfig, MockProvider, OpenAiCompatible,
};
use spendgate_gateway::workflows::WorkflowLabels;
use spendgate_gateway::{Gateway, GatewayStats, KeyCache, Limits, Routes, SharedRoutes};
use spendgate_store::journal::{JournalConfig, SyncMode};
use spendgate_store::postgres::{redact_url, PostgresOptions};
use spendgate_store::sqlite::SqliteOptions;
use spendgate_store::{
    spawn_writer, PostgresStore, SpendWriter, SqliteStore, Store, WriterConfig, WriterHandle,
};
use spendgate_web::{AdminToken, AppState};
use tokio::net::TcpListener;

use crate::config::{Api, Config, ProviderConfig, StoreLocation, MAX_ATTEMPTS};
use crate::connections::Deadlines;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How often a gateway that shares its store with no replica writes its heartbeat, at most.
const SOLO_HEARTBEAT_SECS: u64 = 60;

/// A running spendgate: its address, its parts, and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub writer: SpendWriter,
    pub catalog: Arc<Catalog>,
    pub controls: Arc<Controls>,
    /// Where the generated admin token was written, when it was generated.
    pub admin_token_file: Option<std::path::PathBuf>,
    pub admin_token: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    writer_handle: WriterHandle,
    gateway_name: Arc<str>,
    heart: Heart,
    heartbeat: tokio::task::JoinHandle<()>,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("addr", &self.addr).finish()
    }
}

impl Running {
    /// A receiver that turns true when shutdown begins (for background tasks such as the demo traffic).
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops accepting connections, lets requests in flight finish, then writes every pending spend event.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let served = self.server.await;
        // Leases go back keeping what was spent; the last heartbeat says this replica stopped on purpose.
        self.controls.release_leases().await;
        self.heartbeat.abort();
        if let Some(w) = &self.watcher {
            w.abort();
        }
        self.heart.goodbye().await;
        lifecycle(&*self.store, "gateway.stop", &self.gateway_name, None).await;
        self.writer_handle.shutdown().await;
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(anyhow::anyhow!("the server task failed: {e}")),
        }
    }
}

fn build_provider(p: &ProviderConfig) -> anyhow::Result<Arc<dyn Provider>> {
    let r = p.resolve(|var| std::env::var(var).ok())?;
    if p.fault.is_some() && r.api != Api::Mock {
        bail!("provider '{}': fault is for kind \"mock\" only", p.name);
    }
    let http = || HttpConfig {
        name: p.name.clone(),
        base_url: r.base_url.clone().unwrap_or_default(),
        api_key: r.api_key.clone(),
        api_key_header: r.api_key_header.clone(),
        headers: p.headers.clone().into_iter().collect(),
        query: p.query.clone().into_iter().collect(),
        connect_timeout: Duration::from_secs(p.connect_timeout_secs),
        read_timeout: Duration::from_secs(p.read_timeout_secs),
    };
    Ok(match r.api {
        Api::Mock => Arc::new(MockProvider::new(MockConfig {
            name: p.name.clone(),
            latency: Duration::from_millis(p.latency_ms),
            chunk_delay: Duration::from_millis(p.chunk_delay_ms),
            fault: match &p.fault {
                None => None,
                Some(f) => Some(Fault::parse(f.as_bytes()).with_context(|| {
                    format!(
                        "provider '{}': fault \"{f}\" is not one of status500, slow, truncate, badjson, nousage",
                        p.name
                    )
                })?),
            },
        })),
        Api::OpenAi => Arc::new(OpenAiCompatible::new(http())?),
        Api::Anthropic => Arc::new(Anthropic::new(http())?),
        Api::Gemini => Arc::new(Gemini::new(http())?),
        Api::Bedrock => {
            if p.api_key_header.is_some() {
                bail!(
                    "provider '{}' (Bedrock): api_key_header is not used; a Bedrock API key goes as a bearer token \
                     (name its variable in api_key_env, or set AWS_BEARER_TOKEN_BEDROCK)",
                    p.name
                );
            }
            let auth = bedrock_auth(p, r.api_key.clone(), r.region.as_deref().unwrap_or_default())?;
            Arc::new(Bedrock::new(
                http(),
                r.region.clone().unwrap_or_default(),
                auth,
            )?)
        }
    })
}

/// How a Bedrock provider authenticates, in the order AWS's SDKs take (docs.aws.amazon.com/bedrock/latest/
/// userguide/api-keys-use.html): a Bedrock API key, from the variable `api_key_env` names (`api_key`) or else
/// from `AWS_BEARER_TOKEN_BEDROCK`, as a bearer token; without one, SigV4 with credentials from the standard
/// chain (`providers/aws/chain.rs`), whose temporary credentials start being fetched now.
fn bedrock_auth(
    p: &ProviderConfig,
    api_key: Option<String>,
    region: &str,
) -> anyhow::Result<BedrockAuth> {
    let key = api_key.or_else(|| {
        std::env::var("AWS_BEARER_TOKEN_BEDROCK")
            .ok()
            .filter(|k| !k.trim().is_empty())
    });
    if let Some(key) = key {
        tracing::info!(provider = %p.name, "Bedrock requests carry a Bedrock API key.");
        return Ok(BedrockAuth::ApiKey(key));
    }
    let credentials = CredentialChain::resolve(p.aws_profile.as_deref(), region, &|var| {
        std::env::var(var).ok()
    })
    .with_context(|| format!("provider '{}' (Bedrock)", p.name))?;
    tracing::info!(provider = %p.name, source = ?credentials.source(), "Bedrock requests are signed with AWS credentials.");
    credentials.prime();
    Ok(BedrockAuth::SigV4(credentials))
}

fn build_routes(config: &Config, catalog: &Arc<Catalog>) -> anyhow::Result<Routes> {
    let mut routes = Routes::new(Arc::clone(catalog));
    let mut by_name: HashMap<&str, (Arc<dyn Provider>, &ProviderConfig)> = HashMap::new();
    for p in &config.providers {
        let provider = build_provider(p)?;
        if by_name
            .insert(&p.name, (Arc::clone(&provider), p))
            .is_some()
        {
            bail!(
                "two providers are named '{}'; give each its own name",
                p.name
            );
        }
        let mut models = p.models.clone();
        if p.catalog {
            models.extend(
                catalog
                    .models()
                    .iter()
                    .filter(|m| m.provider == p.catalog_provider())
                    // Dated snapshots and other aliases are names clients send (`gpt-4o-mini-2024-07-18`):
                    // each is routed, and passed upstream as the client wrote it.
                    .flat_map(|m| std::iter::once(&m.model).chain(&m.aliases))
                    .cloned(),
            );
        }
        models.extend(p.model_map.keys().cloned());
        models.extend(p.prices.iter().map(|o| o.model.clone()));
        models.sort();
        models.dedup();
        for m in &models {
            let upstream = p.model_map.get(m).map(String::as_str);
            let target = routes.target(
                m,
                Arc::clone(&provider),
                upstream,
                p.catalog_price(catalog, m, upstream),
            )?;
            routes.insert(m, vec![target])?;
        }
        routes.add_provider(&p.name, Arc::clone(&provider));
        if p.default {
            routes.set_default(provider);
        }
    }
    for r in &config.routes {
        let mut targets = Vec::new();
        for t in &r.targets {
            let (provider, p) = by_name.get(t.provider.as_str()).with_context(|| {
                format!(
                    "the route for model '{}' names provider '{}', which is not configured",
                    r.model, t.provider
                )
            })?;
            let upstream = t
                .model
                .as_deref()
                .or(p.model_map.get(&r.model).map(String::as_str));
            let target = routes.target(
                &r.model,
                Arc::clone(provider),
                upstream,
                p.catalog_price(catalog, &r.model, upstream),
            )?;
            for _ in 0..=r.retries.min(MAX_ATTEMPTS) {
                targets.push(target.clone());
            }
        }
        let max = r
            .max_attempts
            .unwrap_or(MAX_ATTEMPTS)
            .clamp(1, MAX_ATTEMPTS);
        targets.truncate(max as usize);
        routes.insert(&r.model, targets)?;
    }
    Ok(routes)
}

/// The admin token: from the config or environment, else read from (or generated into) the data directory.
fn admin_token(config: &Config) -> anyhow::Result<(String, Option<std::path::PathBuf>)> {
    if let Some(t) = config.admin_token.clone().filter(|t| !t.is_empty()) {
        return Ok((t, None));
    }
    let path = config.data_dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok((t, Some(path)));
        }
    }
    let g = spendgate_gateway::keys::generate_key("admin", None)
        .map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let token = g.secret.replacen("sk-sg-", "sgadm-", 1);
    write_private(&path, &token)?;
    Ok((token, Some(path)))
}

fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("could not write {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    Ok(())
}

/// Records a gateway start or stop in the audit log, for the activity history.
async fn lifecycle(
    store: &dyn Store,
    action: &str,
    gateway: &str,
    after: Option<serde_json::Value>,
) {
    let entry = spendgate_store::controls::AuditEntry {
        actor: format!("gateway:{gateway}"),
        action: action.into(),
        target: format!("gateway:{gateway}"),
        before: None,
        after,
    };
    if let Err(e) = store.record_audit(entry).await {
        tracing::warn!(error = %e, "Recording a gateway start or stop in the audit log failed.");
    }
}

/// Opens the store `[store] url` names: SQLite (the default, in the data directory) or PostgreSQL.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let s = &config.store;
    match config.store_location()? {
        StoreLocation::Sqlite(dir) => {
            if s.retention_days.is_some() {
                bail!("[store] retention_days drops PostgreSQL partitions; SQLite keeps every spend log, so remove it or set [store] url to a postgres:// URL");
            }
            let store = SqliteStore::open(
                &dir,
                SqliteOptions {
                    minute_retention_hours: s.minute_retention_hours,
                    busy_timeout: Duration::from_millis(s.busy_timeout_ms),
                    refusal_retention_days: s.refusal_retention_days,
                    ..SqliteOptions::default()
                },
            )?;
            Ok(Arc::new(store))
        }
        StoreLocation::Postgres(url) => {
            let store = PostgresStore::connect(PostgresOptions {
                minute_retention_hours: s.minute_retention_hours,
                retention_days: s.retention_days,
                pool_size: s.pool_size,
                refusal_retention_days: s.refusal_retention_days,
                ..PostgresOptions::new(url)
            })
            .await?;
            Ok(Arc::new(store))
        }
    }
}

/// Where the store is, fit for a log line (a PostgreSQL password is never shown).
fn store_shown(config: &Config) -> String {
    match config.store_location() {
        Ok(StoreLocation::Sqlite(dir)) => dir.join("spendgate.db").display().to_string(),
        Ok(StoreLocation::Postgres(url)) => redact_url(&url),
        Err(_) => "(invalid)".into(),
    }
}

/// Serves `app` on `listener` until `shutdown` turns true, then lets the connections finish their requests.
///
/// This is what `axum::serve` does, with hyper's HTTP/1 builder in reach: axum's sets no timer, so no connection
/// was ever timed out, and a client that sent nothing, half a header, or nothing more after an answer held its
/// connection (and a task) for as long as it liked; 500 such clients stayed connected for good. Each connection
/// now has `deadlines` (`connections.rs`).
async fn serve(
    listener: TcpListener,
    app: axum::Router,
    deadlines: Deadlines,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    // TCP_NODELAY: streamed chunks go out as they come instead of waiting for the client's delayed ACK
    // (Nagle), which stalled SSE streams by ~40 ms.
    use axum::serve::{Listener, ListenerExt};
    let mut listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper times the wait for a request's head only when given a duration; the connection's own timer decides
    // how long the wait really is.
    builder.header_read_timeout(deadlines.header);
    // Each connection task holds a receiver; when the last is gone, every connection has finished.
    let (finished_tx, finished_rx) = tokio::sync::watch::channel(());
    loop {
        // `Listener::accept` retries failed accepts itself (waiting a moment when out of file descriptors).
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut shutdown) => break,
        };
        // The router is shared, not rebuilt, per connection (cloning it clones an `Arc`): axum rebuilds it
        // for each connection when a `Router` is served as is, about 18 KB each.
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let (io, timer) = crate::connections::watch(tcp, deadlines);
        let connection = builder
            .clone()
            .timer(timer)
            .serve_connection(hyper_util::rt::TokioIo::new(io), service);
        let mut stop = shutdown.clone();
        let finished = finished_rx.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stopped(&mut stop) => {
                    // Answer the request in progress, then close.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(finished);
        });
    }
    drop(finished_rx);
    drop(listener);
    finished_tx.closed().await;
    Ok(())
}

/// Returns once shutdown has begun (or its sender is gone).
async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here: it cannot be held across an await in a spawned task.
    let _ = shutdown.wait_for(|v| *v).await;
}

/// Reloads prices and routes from the configuration file, on SIGHUP or through the admin API.
struct PricingReloader {
    path: std::path::PathBuf,
    routes: Arc<SharedRoutes>,
    store: Arc<dyn Store>,
}

impl PricingReloader {
    /// Reads the file again, builds its catalog and routes (any mistake leaves the ones in force untouched),
    /// puts them in force, and records what changed as an admin action with before and after.
    async fn reload(&self, actor: &str) -> anyhow::Result<serde_json::Value> {
        let config = Config::load(Some(&self.path))?;
        let catalog = Arc::new(config.catalog()?);
        let routes = build_routes(&config, &catalog)?;
        let (before, after) = price_changes(&self.routes.current(), &routes);
        let changed = before.len().max(after.len());
        self.routes.replace(routes);
        tracing::info!(changed, path = %self.path.display(), "Prices reloaded.");
        let entry = spendgate_store::controls::AuditEntry {
            actor: actor.to_string(),
            action: "pricing.reload".into(),
            target: self.path.display().to_string(),
            before: Some(serde_json::Value::Object(before.clone())),
            after: Some(serde_json::Value::Object(after.clone())),
        };
        if let Err(e) = self.store.record_audit(entry).await {
            tracing::warn!(error = %e, "Recording a price reload in the activity history failed.");
        }
        Ok(serde_json::json!({ "changed": changed, "before": before, "after": after }))
    }

    /// Reloads on every SIGHUP, as daemons do, for as long as the process runs.
    fn on_sighup(self: &Arc<Self>) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::warn!("SIGHUP cannot be watched here; reload prices through POST /api/v1/pricing/reload.");
                return;
            };
            let me = Arc::downgrade(self);
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let Some(r) = me.upgrade() else { return };
                    if let Err(e) = r.reload("SIGHUP").await {
                        tracing::error!(error = %format!("{e:#}"), "Reloading prices on SIGHUP failed; the ones in force stay.");
                    }
                }
            });
        }
    }
}

/// The prices that differ between two sets of routes, by `model@provider`: (before, after), each only the
/// entries that changed (absent on one side when a model was added or removed).
fn price_changes(
    old: &Routes,
    new: &Routes,
) -> (
    serde_json::Map<String, serde_json::Value>,
    serde_json::Map<String, serde_json::Value>,
) {
    let prices = |r: &Routes| -> std::collections::BTreeMap<String, serde_json::Value> {
        r.list()
            .into_iter()
            .flat_map(|(name, route)| {
                route.targets.iter().map(move |t| {
                    (
                        format!("{name}@{}", t.provider_name),
                        serde_json::to_value(&*t.price).unwrap_or_default(),
                    )
                })
            })
            .collect()
    };
    let (old, new) = (prices(old), prices(new));
    let mut before = serde_json::Map::new();
    let mut after = serde_json::Map::new();
    for (k, v) in &old {
        if new.get(k) != Some(v) {
            before.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &new {
        if old.get(k) != Some(v) {
            after.insert(k.clone(), v.clone());
        }
    }
    (before, after)
}

/// Starts spendgate on `config.listen` (port 0 picks a free port).
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let catalog = Arc::new(config.catalog()?);
    // The data directory holds the journal and the admin token whatever the store; SQLite creates it for its
    // file, PostgreSQL does not.
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "could not create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let store = open_store(config).await?;
    let routes = Arc::new(SharedRoutes::new(build_routes(config, &catalog)?));
    let (token, token_file) = admin_token(config)?;
    // Events left in the journal by a previous run that died reach the store before any new traffic.
    let journal_dir = config.data_dir.join("journal");
    let (replayed, already) = spendgate_store::journal::replay(&*store, &journal_dir).await?;
    if replayed + already > 0 {
        tracing::info!(
            replayed,
            already_stored = already,
            "Recovered spend events from the journal."
        );
    }
    let journal = config.journal.enabled.then(|| JournalConfig {
        sync: if config.journal.fsync {
            SyncMode::Fsync
        } else {
            SyncMode::Write
        },
        ..JournalConfig::new(journal_dir)
    });
    let anomaly_config = config.anomalies.detector_config()?;
    let (writer, writer_handle) = spawn_writer(
        Arc::clone(&store),
        WriterConfig {
            max_batch: config.writer.max_batch,
            flush_interval: Duration::from_millis(config.writer.flush_ms),
            flush_events: config.writer.flush_events,
            // Only this replica reads its waiting events first: with replicas sharing the store, another one's
            // pages would see them late. Without a journal, a longer wait is more to lose in a crash.
            quiet_interval: (config.journal.enabled
                && !config.leases_on()
                && config.writer.quiet_flush_ms > 0)
                .then(|| Duration::from_millis(config.writer.quiet_flush_ms)),
            max_queue_bytes: config.writer.max_queue_bytes,
            max_wait: Duration::from_millis(config.writer.max_wait_ms),
            // The retry-loop detector counts requests as they are recorded instead of reading them back.
            repeats_window_ms: config
                .anomalies
                .enabled
                .then_some(anomaly_config.retry_window_ms),
        },
        journal,
    )?;
    let name: Arc<str> = Arc::from(config.gateway_name.as_str());
    spendgate_core::validate_name("gateway", &name).map_err(anyhow::Error::msg)?;
    let stats = Arc::new(GatewayStats::default());
    let time_zone = spendgate_core::controls::time_zone(&config.budgets.time_zone)
        .map_err(|e| anyhow::anyhow!("budgets.time_zone: {e}"))?;
    let (controls, alerts_rx) = Controls::load(
        Arc::clone(&store),
        ControlsConfig {
            time_zone,
            default_max_output_tokens: config.budgets.default_max_output_tokens,
            leases: config.leases_on().then(|| LeaseSettings {
                gateway: config.gateway_name.clone(),
                ttl_ms: i64::try_from(config.replicas.lease_ttl_secs.max(1) * 1000)
                    .unwrap_or(30_000),
                horizon_ms: i64::try_from(config.replicas.lease_horizon_secs.max(1) * 1000)
                    .unwrap_or(10_000),
                writer: Some(writer.clone()),
            }),
        },
    )
    .await?;
    controls.spawn_renewal();
    tokio::spawn(spendgate_gateway::alerts::run_dispatcher(
        Arc::clone(&store),
        alerts_rx,
        WebhookConfig {
            urls: config.alerts.webhooks.clone(),
            attempts: config.alerts.attempts,
            ..WebhookConfig::default()
        },
    ));
    let keys = Arc::new(KeyCache::new(Arc::clone(&store)));
    controls.attach_keys(Arc::clone(&keys));
    let workflows = Arc::new(WorkflowLabels::new(config.limits.max_workflows));
    workflows.seed(spendgate_gateway::workflows::in_use(&*store).await);
    let gateway = Arc::new(Gateway {
        name: Arc::clone(&name),
        routes: Arc::clone(&routes),
        keys,
        writer: writer.clone(),
        limits: Limits {
            max_body_bytes: config.limits.max_body_bytes,
            max_stream_duration: Duration::from_secs(config.limits.max_stream_seconds),
            max_header_bytes: config.limits.max_header_bytes,
            max_streams_per_key: config.limits.max_streams_per_key,
            fail_closed_for_hard_limits: config.limits.fail_closed_for_hard_limits,
        },
        streams: Arc::default(),
        stats: Arc::clone(&stats),
        controls: Arc::clone(&controls),
        cache: config.response_cache().await?,
        workflows: Arc::clone(&workflows),
    });
    let reload = config.source_path.clone().map(|path| {
        let reloader = Arc::new(PricingReloader {
            path,
            routes: Arc::clone(&routes),
            store: Arc::clone(&store),
        });
        reloader.on_sighup();
        reloader
    });
    let state = Arc::new(AppState {
        store: Arc::clone(&store),
        routes: Arc::clone(&routes),
        reload_pricing: reload.map(|r| -> spendgate_web::ReloadPricing {
            Arc::new(move |actor: String| {
                let r = Arc::clone(&r);
                Box::pin(async move { r.reload(&actor).await.map_err(|e| format!("{e:#}")) })
            })
        }),
        writer_stats: Arc::clone(writer.stats()),
        writer: writer.clone(),
        gateway_stats: Arc::clone(&stats),
        gateway_name: Arc::clone(&name),
        gateway_stale_after_ms: i64::try_from(config.replicas.stale_after_secs.max(1) * 1000)
            .unwrap_or(20_000),
        admin_token: AdminToken::new(&token),
        version: VERSION,
        open_pages: config.open_pages,
        controls: Arc::clone(&controls),
        anomalies: anomaly_config.clone(),
        max_body_bytes: config.limits.max_admin_body_bytes,
        workflows,
    });
    // The proxy reads bodies up to `limits.max_body_bytes` itself and answers in the API's shape, so axum's
    // default limit is lifted on its routes only (`limits::header_limit` refuses a Content-Length over the limit
    // before the body arrives). The other routes have their own, smaller limit (`spendgate_web::router`).
    let app = spendgate_gateway::router(gateway)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .merge(spendgate_web::router(state))
        // Every unmatched request gets an answer that says what to do, in the shape its client reads.
        .fallback(spendgate_gateway::unrouted::fallback);

    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("could not listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    if config.anomalies.enabled {
        // Next to the alert dispatcher: signals become alerts through the same channel, recorded once each.
        tokio::spawn(spendgate_gateway::anomalies::run_detector(
            Arc::clone(&store),
            writer.repeats().cloned(),
            Arc::clone(&controls),
            anomaly_config,
            Duration::from_millis(config.anomalies.interval_ms),
            shutdown.subscribe(),
        ));
    }
    let deadlines = Deadlines {
        header: Duration::from_secs(config.limits.header_read_timeout_secs.max(1)),
        idle: Duration::from_secs(config.limits.idle_timeout_secs.max(1)),
    };
    let server = tokio::spawn(serve(listener, app, deadlines, rx));
    crate::idle::spawn_trim(
        Arc::clone(&store),
        Arc::clone(&stats),
        Arc::clone(writer.stats()),
        shutdown.subscribe(),
    );
    let heart = Heart {
        name: config.gateway_name.clone(),
        version: VERSION.to_string(),
        stats,
        writer: Arc::clone(writer.stats()),
        store: Arc::clone(&store),
    };
    // With no replica sharing the store, nobody reads this one's beats while it runs (its own pages show it from
    // memory): one a minute keeps its row current for the next start, where one every 5 s was most of what an
    // idle gateway wrote to disk (docs/BENCHMARKS-HISTORY.md, eleventh session).
    let beat_secs = if config.leases_on() {
        config.replicas.heartbeat_secs
    } else {
        config.replicas.heartbeat_secs.max(SOLO_HEARTBEAT_SECS)
    };
    let heartbeat = heart.clone().spawn(Duration::from_secs(beat_secs.max(1)));
    // Other replicas' spend reaches this replica's live pages within half a second.
    let watcher = config.leases_on().then(|| {
        spendgate_gateway::heartbeat::watch_other_replicas(
            Arc::clone(&store),
            writer.clone(),
            Duration::from_millis(500),
        )
    });
    tracing::info!(%addr, gateway = %config.gateway_name, data_dir = %config.data_dir.display(), store = %store_shown(config), "spendgate is listening.");

    let started = serde_json::json!({ "version": VERSION, "listen": addr.to_string() });
    lifecycle(
        &*store,
        "gateway.start",
        &config.gateway_name,
        Some(started),
    )
    .await;
    Ok(Running {
        addr,
        store,
        writer,
        catalog,
        controls,
        admin_token_file: token_file,
        admin_token: token,
        shutdown,
        server,
        writer_handle,
        gateway_name: Arc::from(config.gateway_name.as_str()),
        heart,
        heartbeat,
        watcher,
    })
}
