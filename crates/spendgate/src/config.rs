//! Configuration: a TOML file, then `SPENDGATE_*` environment variables and command-line flags on top.
//! Every setting is documented in `docs/configuration.md`; `spendgate.example.toml` shows them all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;
use spendgate_core::pricing::{Catalog, ModelPrice, UnknownModelPolicy};
use spendgate_core::PricePerMtok;
use spendgate_store::WriterConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The file the configuration was read from (`Config::load`): prices reload from it (SIGHUP,
    /// `POST /api/v1/pricing/reload`). Not a setting.
    #[serde(skip)]
    pub source_path: Option<PathBuf>,
    pub listen: String,
    pub data_dir: PathBuf,
    pub gateway_name: String,
    /// Prefer SPENDGATE_ADMIN_TOKEN or the generated file; a token in a file is only as safe as the file.
    pub admin_token: Option<String>,
    pub pricing: PricingConfig,
    pub providers: Vec<ProviderConfig>,
    /// Models served by several targets in turn (fallbacks and retries). A route replaces the single-provider
    /// route its model would otherwise have.
    pub routes: Vec<RouteConfig>,
    pub limits: LimitsConfig,
    pub writer: WriterSettings,
    pub store: StoreSettings,
    pub budgets: BudgetSettings,
    pub alerts: AlertSettings,
    pub journal: JournalSettings,
    pub anomalies: AnomalySettings,
    pub replicas: ReplicaSettings,
    /// The response cache (off unless `enabled = true`).
    pub cache: spendgate_gateway::cache::CacheConfig,
    /// Set by `demo` only: pages need no login. Not settable from a file.
    #[serde(skip)]
    pub open_pages: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source_path: None,
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("spendgate-data"),
            gateway_name: "gateway-1".into(),
            admin_token: None,
            pricing: PricingConfig::default(),
            providers: Vec::new(),
            routes: Vec::new(),
            limits: LimitsConfig::default(),
            writer: WriterSettings::default(),
            store: StoreSettings::default(),
            budgets: BudgetSettings::default(),
            alerts: AlertSettings::default(),
            journal: JournalSettings::default(),
            anomalies: AnomalySettings::default(),
            replicas: ReplicaSettings::default(),
            cache: spendgate_gateway::cache::CacheConfig::default(),
            open_pages: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// "refuse" (default) or "fallback".
    pub unknown_models: String,
    pub fallback_input_per_mtok: Option<PricePerMtok>,
    pub fallback_output_per_mtok: Option<PricePerMtok>,
    /// Entries that replace or extend the built-in catalog, in the catalog's format.
    pub model: Vec<ModelPrice>,
    /// Catalog files (the catalog's format, e.g. written by `spendgate pricing import`) whose entries replace or
    /// extend the built-in catalog before `model`'s do. A relative path is taken from the configuration file's
    /// directory.
    pub include: Vec<PathBuf>,
}

impl Default for PricingConfig {
    fn default() -> Self {
        PricingConfig {
            unknown_models: "refuse".into(),
            fallback_input_per_mtok: None,
            fallback_output_per_mtok: None,
            model: Vec::new(),
            include: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The name shown on spend logs; also the catalog provider its models are priced under.
    pub name: String,
    /// "openai" (any OpenAI-compatible API at `base_url`), "anthropic" (the Messages API), "gemini-native"
    /// (Google's Gemini API in its own shape), "bedrock" (Amazon Bedrock's Converse API, signed with AWS
    /// credentials), "mock", or one of the presets of `PRESETS` ("gemini", "mistral", "deepseek", "xai", "groq",
    /// "together", "fireworks", "openrouter", "azure", "vllm", "ollama"), which speak the OpenAI-compatible API
    /// with their own base URL, key header and key variable filled in.
    pub kind: String,
    /// Required for "openai", "azure", "vllm" and "ollama"; the other kinds have a default (`PRESETS`).
    /// `{model}` is replaced by the upstream model name (Azure OpenAI deployments).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The environment variable holding the API key (the key itself never goes in the file). Presets have a
    /// default (`GEMINI_API_KEY`, ...). For "bedrock", a Bedrock API key, sent instead of a signature (default:
    /// `$AWS_BEARER_TOKEN_BEDROCK` when set).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Send the key raw in this header (Azure OpenAI: "api-key") instead of `Authorization: Bearer` ("openai")
    /// or `x-api-key` ("anthropic").
    #[serde(default)]
    pub api_key_header: Option<String>,
    /// "bedrock" only: the AWS region (default: `$AWS_REGION`, else `$AWS_DEFAULT_REGION`).
    #[serde(default)]
    pub region: Option<String>,
    /// "bedrock" only: the profile of the shared credentials file to sign with (default: AWS's credential chain:
    /// the environment's keys, web identity, `$AWS_PROFILE` or `default` in the file, container credentials,
    /// EC2 instance metadata).
    #[serde(default)]
    pub aws_profile: Option<String>,
    /// Extra headers on every upstream request (not for secrets).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra query parameters on every upstream request (Azure OpenAI: `api-version`).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Models this provider serves. Empty with `catalog = true`: every catalog model of the provider's name.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub catalog: bool,
    /// Client model name -> the name the upstream knows it by (an Azure deployment, an OpenRouter slug). A
    /// mapped model is served even when `models` does not list it.
    #[serde(default)]
    pub model_map: BTreeMap<String, String>,
    /// Prices for this provider's models that replace the catalog's (a negotiated rate, a self-hosted model), in
    /// the catalog's format without `provider`.
    #[serde(default)]
    pub prices: Vec<ModelPrice>,
    /// Serve models no provider lists (priced by the fallback, or refused).
    #[serde(default)]
    pub default: bool,
    #[serde(default = "default_timeout")]
    pub read_timeout_secs: u64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub chunk_delay_ms: u64,
    /// "mock" only: misbehave on every request ("status500", "slow", "truncate", "badjson", "nousage"), to try
    /// fallbacks.
    #[serde(default)]
    pub fault: Option<String>,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            name: String::new(),
            kind: String::new(),
            base_url: None,
            api_key_env: None,
            api_key_header: None,
            region: None,
            aws_profile: None,
            headers: BTreeMap::new(),
            query: BTreeMap::new(),
            models: Vec::new(),
            catalog: false,
            model_map: BTreeMap::new(),
            prices: Vec::new(),
            default: false,
            read_timeout_secs: default_timeout(),
            connect_timeout_secs: default_connect_timeout(),
            latency_ms: 0,
            chunk_delay_ms: 0,
            fault: None,
        }
    }
}

/// Which implementation speaks to a kind of provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Chat Completions, Embeddings and Responses in OpenAI's shape (`providers/openai.rs`).
    OpenAi,
    /// Anthropic's Messages API (`providers/anthropic.rs`).
    Anthropic,
    /// Google's Gemini API in its own shape (`providers/gemini.rs`).
    Gemini,
    /// Amazon Bedrock's Converse API, signed with AWS credentials (`providers/bedrock.rs`).
    Bedrock,
    /// The built-in mock provider.
    Mock,
}

mod presets;
pub use presets::{Preset, PRESETS};

/// How one configured provider is reached, presets applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub api: Api,
    pub base_url: Option<String>,
    /// The key, read from its variable; `None` when no variable is named or an optional key's variable is unset.
    pub api_key: Option<String>,
    pub api_key_header: Option<String>,
    /// "bedrock": the AWS region requests are signed for.
    pub region: Option<String>,
}

impl ProviderConfig {
    /// The preset of this provider's kind.
    pub fn preset(&self) -> anyhow::Result<&'static Preset> {
        PRESETS
            .iter()
            .find(|p| p.kind == self.kind)
            .with_context(|| {
                let kinds: Vec<&str> = PRESETS.iter().map(|p| p.kind).collect();
                format!(
                    "provider '{}' has kind \"{}\"; use one of {}",
                    self.name,
                    self.kind,
                    kinds.join(", ")
                )
            })
    }

    /// The catalog provider this provider's models are priced under: the preset's (`gemini`, ...; Azure OpenAI
    /// deployments are priced as OpenAI's models), else the provider's name.
    pub fn catalog_provider(&self) -> &str {
        PRESETS
            .iter()
            .find(|p| p.kind == self.kind)
            .and_then(|p| p.catalog)
            .unwrap_or(&self.name)
    }

    /// The base URL, key and key header, with the preset filling what the configuration leaves out. `env` reads
    /// an environment variable (`std::env::var` outside tests).
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Resolved> {
        let preset = self.preset()?;
        if (self.region.is_some() || self.aws_profile.is_some()) && preset.api != Api::Bedrock {
            bail!(
                "provider '{}': region and aws_profile are for kind \"bedrock\" only",
                self.name
            );
        }
        // Bedrock's region is the configuration's, else AWS's usual variables (docs.aws.amazon.com/sdkref/latest/
        // guide/feature-region.html); it names the host and is part of every signature.
        let region = match preset.api {
            Api::Bedrock => Some(
                self.region
                    .clone()
                    .or_else(|| env("AWS_REGION").filter(|r| !r.is_empty()))
                    .or_else(|| env("AWS_DEFAULT_REGION").filter(|r| !r.is_empty()))
                    .with_context(|| {
                        format!(
                            "provider '{}' (Bedrock) needs a region: set region = \"us-east-1\" (or the region of \
                             your models), or export AWS_REGION",
                            self.name
                        )
                    })?,
            ),
            _ => None,
        };
        let base_url = self
            .base_url
            .clone()
            .or(preset.base_url.map(str::to_string))
            .or_else(|| {
                region
                    .as_deref()
                    .map(spendgate_gateway::providers::bedrock::base_url)
            });
        if base_url.is_none() && preset.api != Api::Mock {
            bail!(
                "provider '{}' of kind \"{}\" needs base_url (see docs/configuration.md for an example)",
                self.name,
                self.kind
            );
        }
        if self.kind == "azure"
            && base_url
                .as_deref()
                .is_some_and(|u| u.contains("/deployments/"))
            && !self.query.contains_key("api-version")
        {
            bail!(
                "provider '{}' (Azure OpenAI deployments) needs query = {{ api-version = \"...\" }}; use the API \
                 version of your resource, e.g. \"2024-10-21\"",
                self.name
            );
        }
        let named = self.api_key_env.is_some();
        let api_key = match self.api_key_env.as_deref().or(preset.key_env) {
            None => None,
            Some(var) => match env(var) {
                Some(key) => Some(key),
                // A variable the file names must be set; a preset's default only when the preset needs a key.
                None if named || !preset.key_optional => bail!(
                    "provider '{}' reads its API key from ${var}, which is not set; export it, or set \
                     api_key_env to the variable that holds the key",
                    self.name
                ),
                None => None,
            },
        };
        Ok(Resolved {
            api: preset.api,
            base_url,
            api_key,
            api_key_header: self
                .api_key_header
                .clone()
                .or(preset.key_header.map(str::to_string)),
            region,
        })
    }

    /// The price of `model` on this provider, asked for upstream as `upstream`: its own `prices`, else the catalog
    /// entry its catalog provider lists under either name. `None` leaves the choice to the route (the only entry
    /// of that name, a snapshot's family, or the fallback).
    pub fn catalog_price(
        &self,
        catalog: &Catalog,
        model: &str,
        upstream: Option<&str>,
    ) -> Option<ModelPrice> {
        let own = self.catalog_provider();
        self.price_of(model)
            .or_else(|| catalog.get_for(own, model).cloned())
            .or_else(|| upstream.and_then(|u| catalog.get_for(own, u)).cloned())
    }

    /// This provider's own price for `model`, when it sets one.
    pub fn price_of(&self, model: &str) -> Option<ModelPrice> {
        self.prices
            .iter()
            .find(|p| p.model == model)
            .map(|p| ModelPrice {
                provider: self.name.clone(),
                ..p.clone()
            })
    }
}

/// A model served by several targets, tried in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The model name clients send.
    pub model: String,
    /// Providers in the order they are tried. An upstream 5xx, a connect error or a timeout moves on to the next,
    /// as long as nothing was sent to the client yet.
    pub targets: Vec<TargetConfig>,
    /// Extra tries of each target before moving on (0: each target once).
    #[serde(default)]
    pub retries: u32,
    /// The most upstream calls one request may make (default: every target with its retries; at most 10).
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// A provider's `name`.
    pub provider: String,
    /// The name the upstream knows the model by (default: the provider's `model_map`, else the route's model).
    #[serde(default)]
    pub model: Option<String>,
}

/// The most upstream calls one request may make, whatever a route says.
pub const MAX_ATTEMPTS: u32 = 10;

fn default_connect_timeout() -> u64 {
    10
}

fn default_timeout() -> u64 {
    120
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// A proxy request's body, in bytes (HTTP 413 above it).
    pub max_body_bytes: usize,
    /// A body sent to anything but the proxy (the admin API's JSON, the login and page forms), in bytes: none of
    /// them needs more, and the login reads its form before anyone is authenticated.
    pub max_admin_body_bytes: usize,
    /// Seconds a client has to send a request's headers: from a new connection's start, and on a kept-alive
    /// connection from the first byte of the request. A connection that sends nothing, or only part of a header,
    /// is closed when they run out.
    pub header_read_timeout_secs: u64,
    /// Seconds a kept-alive connection may stay idle between an answer and the next request before it is closed.
    pub idle_timeout_secs: u64,
    pub max_stream_seconds: u64,
    /// All request headers together, in bytes (HTTP 431 above it).
    pub max_header_bytes: usize,
    /// Streams one virtual key may have open at once (HTTP 429 `too_many_streams` above it).
    pub max_streams_per_key: usize,
    /// While the store refuses writes, refuse requests covered by a hard-limited budget (HTTP 503).
    pub fail_closed_for_hard_limits: bool,
    /// Distinct workflow labels (`x-spendgate-workflow`) kept apart, for the whole gateway; requests with a label
    /// beyond them are recorded as workflow `(other)` (`spendgate_gateway::workflows`).
    pub max_workflows: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 4 << 20,
            max_admin_body_bytes: 64 << 10,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_stream_seconds: 600,
            max_header_bytes: 32 << 10,
            max_streams_per_key: 64,
            fail_closed_for_hard_limits: false,
            max_workflows: 1_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterSettings {
    pub max_batch: usize,
    pub flush_ms: u64,
    pub flush_events: usize,
    /// How long a batch may wait while no page watches the live updates (0: never longer than `flush_ms`).
    /// Readers have what waits written first, so they see no difference; applies with the journal on and no
    /// other replica sharing the store (`WriterConfig::quiet_interval`).
    pub quiet_flush_ms: u64,
    pub max_queue_bytes: usize,
    pub max_wait_ms: u64,
}

impl Default for WriterSettings {
    /// The writer's own defaults, so that the two cannot drift apart.
    fn default() -> Self {
        let w = WriterConfig::default();
        WriterSettings {
            max_batch: w.max_batch,
            flush_ms: u64::try_from(w.flush_interval.as_millis()).unwrap_or(250),
            flush_events: w.flush_events,
            // At 25 requests a second a commit every 250 ms cost about 10 KB of disk a request; every 10 s, a
            // tenth of that (docs/BENCHMARKS-HISTORY.md, eleventh session).
            quiet_flush_ms: 10_000,
            max_queue_bytes: w.max_queue_bytes,
            max_wait_ms: u64::try_from(w.max_wait.as_millis()).unwrap_or(2_000),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Where the store lives: unset (SQLite in `data_dir`), a directory or `sqlite://<dir>` (SQLite there), or
    /// `postgres://user[:password]@host[:port]/database` (PostgreSQL). `--store` overrides it.
    pub url: Option<String>,
    pub minute_retention_hours: i64,
    /// How long a database write waits for a lock before it fails (and the writer retries it). SQLite only.
    pub busy_timeout_ms: u64,
    /// PostgreSQL only: spend logs are dropped, a whole month at a time, once their month ended this many days
    /// ago. Unset keeps them forever. Rollups (every total, chart and explorer figure) are never dropped.
    pub retention_days: Option<u32>,
    /// PostgreSQL only: connections used for reads at most (the writer has one more of its own).
    pub pool_size: usize,
    /// Refused requests are kept this many days (both stores); their counts in the refusal rollups are kept for
    /// good.
    pub refusal_retention_days: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: None,
            minute_retention_hours: 48,
            busy_timeout_ms: 5000,
            retention_days: None,
            pool_size: 8,
            refusal_retention_days: spendgate_store::refusals::DEFAULT_RETENTION_DAYS,
        }
    }
}

/// Several replicas sharing one store: heartbeats and budget/wallet leases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicaSettings {
    /// Enforce hard budgets and wallets through leases (needed when several replicas share one store). Unset:
    /// on with PostgreSQL, off with SQLite.
    pub leases: Option<bool>,
    /// How long a lease lives unless renewed (renewed every third of it).
    pub lease_ttl_secs: u64,
    /// How many seconds of spend, at the recent rate, a lease is sized for.
    pub lease_horizon_secs: u64,
    /// How often this replica writes its heartbeat.
    pub heartbeat_secs: u64,
    /// A replica not heard from for this long is shown as not responding.
    pub stale_after_secs: u64,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        ReplicaSettings {
            leases: None,
            lease_ttl_secs: 30,
            lease_horizon_secs: 10,
            heartbeat_secs: 5,
            stale_after_secs: 20,
        }
    }
}

/// Where the store lives, as `[store] url` (or `--store`) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The directory holding `spendgate.db`.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (shown only through `spendgate_store::postgres::redact_url`).
    Postgres(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetSettings {
    /// The IANA time zone budget periods follow ("UTC", "Europe/Paris", ...).
    pub time_zone: String,
    /// Output tokens a reservation assumes when a request sets no max_tokens and the catalog has no cap.
    pub default_max_output_tokens: u64,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            time_zone: "UTC".into(),
            default_max_output_tokens: 4096,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalSettings {
    /// Journal every spend event before its response ends (survives a crash of the process).
    pub enabled: bool,
    /// Also flush the journal to disk per group of events (survives a power cut; costs a disk flush).
    pub fsync: bool,
}

impl Default for JournalSettings {
    fn default() -> Self {
        JournalSettings {
            enabled: true,
            fsync: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Webhook URLs that receive every new alert (Slack-compatible JSON body).
    pub webhooks: Vec<String>,
    pub attempts: u32,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            webhooks: Vec::new(),
            attempts: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalySettings {
    /// Run the anomaly detectors in the background and raise their signals as alerts.
    pub enabled: bool,
    /// How often the detectors run.
    pub interval_ms: u64,
    /// How far back the retry-loop detector looks, and how many identical requests from one key make a loop.
    pub retry_window_secs: u64,
    pub retry_min_repeats: u64,
    /// A spend rate is flagged at this percentage of its usual rate at that time of day (300 = 3x) ...
    pub rate_factor_percent: u32,
    /// ... when it is also at least this much (USD) above it over the last 60 minutes.
    pub rate_min_excess_usd: String,
}

impl Default for AnomalySettings {
    fn default() -> Self {
        AnomalySettings {
            enabled: true,
            interval_ms: 15_000,
            retry_window_secs: 300,
            retry_min_repeats: 20,
            rate_factor_percent: 300,
            rate_min_excess_usd: "0.50".into(),
        }
    }
}

impl AnomalySettings {
    /// The detectors' thresholds; the rest keep their defaults.
    pub fn detector_config(&self) -> anyhow::Result<spendgate_core::anomaly::AnomalyConfig> {
        let excess = spendgate_core::Money::parse_non_negative_usd(&self.rate_min_excess_usd)
            .map_err(|e| anyhow::anyhow!("anomalies.rate_min_excess_usd: {e}"))?;
        Ok(spendgate_core::anomaly::AnomalyConfig {
            retry_window_ms: i64::try_from(self.retry_window_secs.clamp(10, 3600) * 1000)
                .unwrap_or(300_000),
            retry_min_repeats: self.retry_min_repeats.max(2),
            rate_factor_pct: self.rate_factor_percent.max(101),
            rate_min_excess: excess,
            ..spendgate_core::anomaly::AnomalyConfig::default()
        })
    }
}

impl Config {
    /// The response cache, or `None` when it is off. Bounds that cannot work are named.
    pub async fn response_cache(
        &self,
    ) -> anyhow::Result<Option<std::sync::Arc<spendgate_gateway::cache::ResponseCache>>> {
        let c = &self.cache;
        if !c.enabled {
            return Ok(None);
        }
        if c.max_bytes == 0 || c.max_entry_bytes == 0 || c.ttl_secs == 0 {
            bail!("cache.max_bytes, cache.max_entry_bytes and cache.ttl_secs must be above 0 when cache.enabled = true");
        }
        if c.max_entry_bytes > c.max_bytes {
            bail!(
                "cache.max_entry_bytes ({}) must not exceed cache.max_bytes ({}); lower it or raise max_bytes",
                c.max_entry_bytes,
                c.max_bytes
            );
        }
        let cache = match &c.redis_addr {
            None => spendgate_gateway::cache::ResponseCache::in_memory(c.clone()),
            Some(addr) => {
                use spendgate_gateway::cache::{RespError, ResponseCache};
                match ResponseCache::in_redis(c.clone(), addr).await {
                    Ok(cache) => cache,
                    // A setting that cannot work says so itself; the Redis was never asked.
                    Err(e @ RespError::Config(_)) => return Err(e.into()),
                    Err(e) => {
                        return Err(anyhow::Error::new(e).context(format!(
                            "cache.redis_addr: Redis at {} does not answer or refused the connection; start it, \
                             fix the address, or remove redis_addr to cache in memory",
                            spendgate_store::redact_url(addr)
                        )))
                    }
                }
            }
        };
        Ok(Some(std::sync::Arc::new(cache)))
    }

    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the config file {}", path.display()))?;
        let mut config = Config::parse(&text)
            .with_context(|| format!("the config file {} is not valid", path.display()))?;
        config.read_includes(path.parent().unwrap_or(Path::new(".")))?;
        config.source_path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Reads the catalog files `[pricing] include` names (relative to `dir`) into `pricing.model`, ahead of the
    /// file's own entries so that those win.
    pub fn read_includes(&mut self, dir: &Path) -> anyhow::Result<()> {
        let mut included = Vec::new();
        for file in &self.pricing.include {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "could not read {} (named in [pricing] include)",
                    path.display()
                )
            })?;
            included.extend(Catalog::parse(&text).with_context(|| {
                format!(
                    "{} (named in [pricing] include) is not a valid catalog file",
                    path.display()
                )
            })?);
        }
        included.append(&mut self.pricing.model);
        self.pricing.model = included;
        Ok(())
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        Ok(toml::from_str(text)?)
    }

    /// Whether hard budgets and wallets go through leases: as configured, else on for a store that several
    /// replicas can share over the network (PostgreSQL), off for the embedded one.
    pub fn leases_on(&self) -> bool {
        self.replicas
            .leases
            .unwrap_or_else(|| matches!(self.store_location(), Ok(StoreLocation::Postgres(_))))
    }

    pub fn store_location(&self) -> anyhow::Result<StoreLocation> {
        let url = self.store.url.as_deref().map(str::trim).unwrap_or("");
        if url.is_empty() {
            return Ok(StoreLocation::Sqlite(self.data_dir.clone()));
        }
        if let Some(dir) = url.strip_prefix("sqlite://") {
            return Ok(StoreLocation::Sqlite(PathBuf::from(dir)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(url.to_string()));
        }
        if url.contains("://") {
            bail!(
                "[store] url '{}' is not a store spendgate knows; use a directory, sqlite://<dir> or \
                 postgres://user@host:port/database",
                spendgate_store::postgres::redact_url(url)
            );
        }
        Ok(StoreLocation::Sqlite(PathBuf::from(url)))
    }

    pub fn catalog(&self) -> anyhow::Result<Catalog> {
        let policy = match self.pricing.unknown_models.as_str() {
            "refuse" => UnknownModelPolicy::Refuse,
            "fallback" => match (self.pricing.fallback_input_per_mtok, self.pricing.fallback_output_per_mtok) {
                (Some(i), Some(o)) => UnknownModelPolicy::Fallback { input_per_mtok: i, output_per_mtok: o },
                _ => bail!(
                    "pricing.unknown_models = \"fallback\" needs fallback_input_per_mtok and fallback_output_per_mtok"
                ),
            },
            other => bail!("pricing.unknown_models must be \"refuse\" or \"fallback\", not \"{other}\""),
        };
        if let Some(m) = self.pricing.model.iter().find(|m| m.provider.is_empty()) {
            bail!(
                "pricing.model '{}' names no provider; add provider = \"...\" (or put the price in that \
                 provider's prices)",
                m.model
            );
        }
        Ok(Catalog::with_overrides(self.pricing.model.clone(), policy)?)
    }
}

#[cfg(test)]
mod tests;
