//! The response cache: an exact-match cache of successful answers, in front of the proxy.
//!
//! A request is keyed by SHA-256 of its scope (the key's team, the key itself, or the whole org), its endpoint
//! and its body in canonical JSON (`key.rs`). `stream` and `stream_options` are part of the body and so of the
//! key: a streamed request is only ever answered with a stored stream (its SSE bytes replayed) and a plain one
//! with a stored plain answer. The layer (`layer.rs`) authenticates first, so a bad key never sees a cached
//! answer; a hit is answered from memory and recorded as one spend log with outcome `hit`, zero tokens and zero
//! cost (no wallet is charged, no budget spends), carrying the **avoided cost**: the stored answer's usage priced
//! at today's price. A miss goes through the proxy with a [`Ticket`] in its extensions; the meter feeds the
//! ticket the answer's bytes and, when it records the request, asks it for the outcome (`ticket.rs`): `miss`
//! when the answer was stored (a 200 with reported usage, complete, within `max_entry_bytes`), `not_cacheable`
//! otherwise. So `miss` always means "filled", and fills and their cost can be read from the rollups.
//!
//! Answers are held in memory (`memory.rs`, bounded by bytes, least recently used first out, each for
//! `ttl_secs`), or in Redis when `redis_addr` is set (`redis.rs` over the small RESP client in `resp.rs`, TLS and
//! credentials from the URL read by `target.rs`);
//! nothing of a request or answer is written to disk by the gateway. [`AnswerStore`] is the seam.

mod key;
mod layer;
mod memory;
mod redis;
mod resp;
mod target;
mod ticket;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use spendgate_core::Usage;

pub use key::{canonical_json, CacheKey};
pub use layer::layer;
pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use resp::RespError;
pub use target::RedisTarget;
pub use ticket::Ticket;

/// The request header that skips the cache (`bypass`) and the response header that says what the cache did
/// (`hit`, `miss` or `bypass`).
pub const CACHE_HEADER: &str = "x-spendgate-cache";

/// Whose requests may share answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Keys of the same team (keys without a team share the No team bucket).
    Team,
    /// Each virtual key on its own.
    Key,
    /// Every key of the gateway.
    Org,
}

/// `[cache]` in the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Off by default: a cached answer is the same answer again, which changes what sampling-based clients get.
    pub enabled: bool,
    /// The most bytes of answers held at once; the least recently used go first.
    pub max_bytes: usize,
    /// How long an answer may be served from the cache.
    pub ttl_secs: u64,
    pub scope: Scope,
    /// Answers larger than this are never stored.
    pub max_entry_bytes: usize,
    /// The Redis to keep answers in (shared by every gateway using it) instead of this process's memory:
    /// `host:port`, or `redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS. Redis bounds its own
    /// memory (`maxmemory`), so `max_bytes` does not apply there.
    pub redis_addr: Option<String>,
    /// A PEM file of the CAs that may sign a `rediss://` server's certificate; without it, the operating
    /// system's trusted CAs.
    pub redis_ca_file: Option<std::path::PathBuf>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: false,
            max_bytes: 64 << 20,
            ttl_secs: 3600,
            scope: Scope::Team,
            max_entry_bytes: 1 << 20,
            redis_addr: None,
            redis_ca_file: None,
        }
    }
}

/// A stored answer: the exact bytes the client got, and what the provider reported it cost in tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    pub body: Bytes,
    /// A stored SSE stream (replayed as `text/event-stream`) rather than one JSON body.
    pub stream: bool,
    pub usage: Usage,
    /// The provider that answered (a route may fall back to another target): a hit's avoided cost is priced
    /// at that target's price.
    pub provider: String,
}

impl CachedAnswer {
    /// What an entry counts against `max_bytes`: its body plus a fixed allowance for the key and bookkeeping.
    pub fn charged_bytes(&self) -> usize {
        self.body
            .len()
            .saturating_add(self.provider.len())
            .saturating_add(ENTRY_OVERHEAD)
    }
}

/// Bookkeeping per entry (key, usage, index links), charged so that many tiny answers still respect the bound.
pub const ENTRY_OVERHEAD: usize = 128;

/// Where answers are kept. One trait for the seam: the in-memory store now, Redis later.
#[async_trait::async_trait]
pub trait AnswerStore: Send + Sync + std::fmt::Debug {
    /// The answer stored under `key`, unless it is absent or expired.
    async fn get(&self, key: &CacheKey) -> Option<Arc<CachedAnswer>>;
    /// Stores an answer. Never blocks the caller (it runs as a request is recorded): a backend that does IO
    /// queues the write.
    fn put(&self, key: CacheKey, answer: Arc<CachedAnswer>);
}

/// The cache as the gateway holds it: its settings and its store.
#[derive(Debug)]
pub struct ResponseCache {
    pub config: CacheConfig,
    pub store: Arc<dyn AnswerStore>,
}

impl ResponseCache {
    /// A cache in memory with the configured bounds.
    pub fn in_memory(config: CacheConfig) -> ResponseCache {
        let store = Arc::new(MemoryStore::new(
            config.max_bytes,
            Duration::from_secs(config.ttl_secs),
        ));
        ResponseCache { config, store }
    }

    /// A cache in the Redis at `config.redis_addr`, checked with a `PING` so that a wrong address, password or
    /// certificate is found at start.
    pub async fn in_redis(config: CacheConfig, addr: &str) -> Result<ResponseCache, RespError> {
        let target = RedisTarget::parse(addr, config.redis_ca_file.as_deref())?;
        let store = RedisStore::new(target, Duration::from_secs(config.ttl_secs));
        store.ping().await?;
        Ok(ResponseCache {
            config,
            store: Arc::new(store),
        })
    }
}
