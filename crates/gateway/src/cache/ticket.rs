//! The ticket: what the cache layer hands the meter for one request. The meter feeds it the answer as the client
//! gets it and, when it records the request, asks it for the cache outcome; a storable answer is stored right
//! then, so an outcome of `miss` always means the answer was stored (a fill).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use spendgate_core::{CacheOutcome, RequestStatus, Usage};

use super::{CacheKey, CachedAnswer, ResponseCache};

/// The answer gathered so far.
#[derive(Debug)]
enum Gathered {
    Nothing,
    Full(Bytes),
    Chunks(Vec<u8>),
    /// Past `max_entry_bytes`, or an answer whose HTTP status was not 200: dropped, and never stored.
    Refused,
}

#[derive(Debug)]
struct Fill {
    cache: Arc<ResponseCache>,
    key: CacheKey,
    stream: bool,
    gathered: Mutex<Gathered>,
}

#[derive(Debug)]
enum Kind {
    Bypass,
    Fill(Fill),
}

/// A request's link to the cache. The default ticket (no cache consulted) records `not_cacheable`.
#[derive(Debug, Clone, Default)]
pub struct Ticket(Option<Arc<Kind>>);

impl Ticket {
    /// The client asked to skip the cache.
    pub fn bypass() -> Ticket {
        Ticket(Some(Arc::new(Kind::Bypass)))
    }

    /// The cache had no answer: gather this one and store it if it qualifies.
    pub fn fill(cache: Arc<ResponseCache>, key: CacheKey, stream: bool) -> Ticket {
        Ticket(Some(Arc::new(Kind::Fill(Fill {
            cache,
            key,
            stream,
            gathered: Mutex::new(Gathered::Nothing),
        }))))
    }

    fn gather(&self, add: impl FnOnce(&mut Gathered, usize)) {
        if let Some(Kind::Fill(f)) = self.0.as_deref() {
            let mut g = f.gathered.lock().unwrap_or_else(|p| p.into_inner());
            add(&mut g, f.cache.config.max_entry_bytes);
        }
    }

    /// The answer's status line was not 200 OK (a stream's status is known before its body): never store it.
    pub fn refuse(&self) {
        self.gather(|g, _| *g = Gathered::Refused);
    }

    /// A chunk of a streamed answer, on its way to the client.
    pub fn feed(&self, chunk: &[u8]) {
        self.gather(|g, max| match g {
            Gathered::Nothing => *g = fit(chunk.to_vec(), max),
            Gathered::Chunks(v) if v.len() + chunk.len() <= max => v.extend_from_slice(chunk),
            Gathered::Chunks(_) | Gathered::Full(_) => *g = Gathered::Refused,
            Gathered::Refused => {}
        });
    }

    /// A whole (non-streamed) answer. `Bytes` is shared, not copied.
    pub fn answer(&self, body: &Bytes) {
        self.gather(|g, max| {
            *g = if body.len() <= max {
                Gathered::Full(body.clone())
            } else {
                Gathered::Refused
            }
        });
    }

    /// The cache outcome of the request as it is recorded. Stores the answer when it is a success (HTTP 200,
    /// complete, with usage reported by the provider) that fits `max_entry_bytes`; errors, streams cut short
    /// and answers without reported usage are never stored, and are `not_cacheable`.
    pub fn settle(
        &self,
        status: RequestStatus,
        http_status: u16,
        reported: Option<Usage>,
        provider: &str,
    ) -> CacheOutcome {
        let fill = match self.0.as_deref() {
            None => return CacheOutcome::NotCacheable,
            Some(Kind::Bypass) => return CacheOutcome::Bypass,
            Some(Kind::Fill(f)) => f,
        };
        let gathered = {
            let mut g = fill.gathered.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *g, Gathered::Refused)
        };
        let body = match gathered {
            Gathered::Full(b) => b,
            Gathered::Chunks(v) => Bytes::from(v),
            Gathered::Nothing | Gathered::Refused => return CacheOutcome::NotCacheable,
        };
        let (RequestStatus::Ok, 200, Some(usage)) = (status, http_status, reported) else {
            return CacheOutcome::NotCacheable;
        };
        let answer = CachedAnswer {
            body,
            stream: fill.stream,
            usage,
            provider: provider.to_string(),
        };
        if answer.charged_bytes() > fill.cache.config.max_bytes {
            return CacheOutcome::NotCacheable;
        }
        fill.cache.store.put(fill.key, Arc::new(answer));
        CacheOutcome::Miss
    }
}

fn fit(v: Vec<u8>, max: usize) -> Gathered {
    if v.len() <= max {
        Gathered::Chunks(v)
    } else {
        Gathered::Refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CacheConfig, MemoryStore};
    use std::time::Duration;

    fn cache(max_entry_bytes: usize) -> (Arc<ResponseCache>, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::new(1 << 20, Duration::from_secs(60)));
        let config = CacheConfig {
            enabled: true,
            max_entry_bytes,
            ..CacheConfig::default()
        };
        let cache = Arc::new(ResponseCache {
            config,
            store: Arc::clone(&store) as Arc<dyn crate::cache::AnswerStore>,
        });
        (cache, store)
    }

    const USAGE: Usage = Usage {
        input_tokens: 3,
        output_tokens: 4,
        cached_input_tokens: 0,
        cache_write_tokens: 0,
        ..Usage::ZERO
    };

    #[test]
    fn only_complete_successes_with_usage_within_the_limit_are_stored() {
        let (c, store) = cache(10);
        let t = Ticket::fill(Arc::clone(&c), CacheKey([1; 32]), true);
        t.feed(b"data: a\n\n");
        assert_eq!(
            t.settle(RequestStatus::Ok, 200, Some(USAGE), "p"),
            CacheOutcome::Miss
        );
        assert_eq!(store.usage().entries, 1);

        let over = Ticket::fill(Arc::clone(&c), CacheKey([2; 32]), true);
        over.feed(b"data: a\n\n");
        over.feed(b"data: b\n\n");
        let cases = [
            (over, RequestStatus::Ok, 200, Some(USAGE)),
            (
                Ticket::fill(Arc::clone(&c), CacheKey([3; 32]), false),
                RequestStatus::Ok,
                200,
                Some(USAGE),
            ),
        ];
        for (t, s, h, u) in cases {
            assert_eq!(t.settle(s, h, u, "p"), CacheOutcome::NotCacheable);
        }
        for (s, h, u) in [
            (RequestStatus::UpstreamError, 500, None),
            (RequestStatus::Ok, 200, None),
            (RequestStatus::ClientDisconnected, 200, Some(USAGE)),
            (RequestStatus::UpstreamError, 200, Some(USAGE)),
        ] {
            let t = Ticket::fill(Arc::clone(&c), CacheKey([4; 32]), false);
            t.answer(&Bytes::from_static(b"{}"));
            assert_eq!(
                t.settle(s, h, u, "p"),
                CacheOutcome::NotCacheable,
                "{s:?} {h}"
            );
        }
        assert_eq!(store.usage().entries, 1);
        assert_eq!(
            Ticket::bypass().settle(RequestStatus::Ok, 200, Some(USAGE), "p"),
            CacheOutcome::Bypass
        );
        assert_eq!(
            Ticket::default().settle(RequestStatus::Ok, 200, Some(USAGE), "p"),
            CacheOutcome::NotCacheable
        );
    }
}
