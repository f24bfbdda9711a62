//! The Redis answer store: entries under `spendgate:cache:<hex key>` with Redis's own expiry (`PX`), so several
//! gateways can share answers. Redis bounds its memory itself (`maxmemory` and an LRU policy); `max_bytes` is
//! not applied here. A Redis that is down or slow is a miss, never an error for the client.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use spendgate_core::Usage;

use super::resp::{Reply, RespClient, RespError};
use super::target::RedisTarget;
use super::{AnswerStore, CacheKey, CachedAnswer};

/// The format tag of a stored entry; a value without it (another writer, an older format) is ignored.
const MAGIC: &[u8; 4] = b"SGC2";
const HEADER: usize = MAGIC.len() + 1 + 4 * 8 + 2;

/// An answer as stored in Redis: tag, stream flag, the four token counts (little endian), the provider's name
/// (length as u16, then the bytes), then the body.
pub fn encode(a: &CachedAnswer) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + a.provider.len() + a.body.len());
    out.extend_from_slice(MAGIC);
    out.push(u8::from(a.stream));
    for n in [
        a.usage.input_tokens,
        a.usage.output_tokens,
        a.usage.cached_input_tokens,
        a.usage.cache_write_tokens,
    ] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    // Provider names are short identifiers from the configuration; a longer one is cut, never overflowed.
    let name = &a.provider.as_bytes()[..a.provider.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&a.body);
    out
}

pub fn decode(v: &[u8]) -> Option<CachedAnswer> {
    let rest = v.strip_prefix(MAGIC)?;
    let (&stream, rest) = rest.split_first()?;
    let mut n = [0u64; 4];
    for (i, slot) in n.iter_mut().enumerate() {
        *slot = u64::from_le_bytes(rest.get(i * 8..i * 8 + 8)?.try_into().ok()?);
    }
    let len = usize::from(u16::from_le_bytes(rest.get(32..34)?.try_into().ok()?));
    let provider = String::from_utf8(rest.get(34..34 + len)?.to_vec()).ok()?;
    Some(CachedAnswer {
        provider,
        body: Bytes::copy_from_slice(rest.get(34 + len..)?),
        stream: stream == 1,
        usage: Usage {
            input_tokens: n[0],
            output_tokens: n[1],
            cached_input_tokens: n[2],
            cache_write_tokens: n[3],
            ..Usage::default()
        },
    })
}

fn redis_key(key: &CacheKey) -> String {
    let mut s = String::from("spendgate:cache:");
    for b in key.0 {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[derive(Debug)]
pub struct RedisStore {
    client: Arc<RespClient>,
    ttl: Duration,
    /// Whether the last command failed: a failing Redis is logged once when it starts and once when it recovers,
    /// not on every request.
    failing: Arc<AtomicBool>,
}

impl RedisStore {
    /// A store in the Redis of `target`. Connections open on first use.
    pub fn new(target: RedisTarget, ttl: Duration) -> RedisStore {
        RedisStore {
            client: Arc::new(RespClient::new(target, 8, Duration::from_millis(500))),
            ttl,
            failing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Checks that Redis answers (`PING`), for start-up.
    pub async fn ping(&self) -> Result<(), RespError> {
        self.client.command(&[b"PING"]).await.map(|_| ())
    }

    fn note<T>(failing: &AtomicBool, r: Result<T, RespError>) -> Option<T> {
        match r {
            Ok(v) => {
                if failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("The Redis response cache answers again.");
                }
                Some(v)
            }
            Err(e) => {
                if !failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "The Redis response cache failed; requests go to providers meanwhile.");
                }
                None
            }
        }
    }
}

#[async_trait::async_trait]
impl AnswerStore for RedisStore {
    async fn get(&self, key: &CacheKey) -> Option<Arc<CachedAnswer>> {
        let k = redis_key(key);
        let reply = Self::note(
            &self.failing,
            self.client.command(&[b"GET", k.as_bytes()]).await,
        )?;
        match reply {
            Reply::Bulk(Some(v)) => decode(&v).map(Arc::new),
            _ => None,
        }
    }

    fn put(&self, key: CacheKey, answer: Arc<CachedAnswer>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, failing) = (Arc::clone(&self.client), Arc::clone(&self.failing));
        let ttl_ms = self.ttl.as_millis().max(1).to_string();
        rt.spawn(async move {
            let (k, v) = (redis_key(&key), encode(&answer));
            let r = client
                .command(&[b"SET", k.as_bytes(), &v, b"PX", ttl_ms.as_bytes()])
                .await;
            RedisStore::note(&failing, r);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_foreign_values_are_ignored() {
        let a = CachedAnswer {
            body: Bytes::from_static(b"data: {}\n\ndata: [DONE]\n\n"),
            stream: true,
            usage: Usage {
                input_tokens: 1,
                output_tokens: u64::MAX,
                cached_input_tokens: 3,
                cache_write_tokens: 4,
                ..Usage::default()
            },
            provider: "openai".into(),
        };
        assert_eq!(decode(&encode(&a)), Some(a));
        assert_eq!(decode(b"hello"), None);
        assert_eq!(decode(&encode_truncated()), None);
        assert_eq!(
            redis_key(&CacheKey([0xab; 32])),
            format!("spendgate:cache:{}", "ab".repeat(32))
        );
    }

    fn encode_truncated() -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&[1, 2, 3]);
        v
    }
}
