//! The in-memory answer store: least recently used out first, bounded by the bytes it holds, entries expiring
//! after the TTL. One lock around a map and a use-ordered index: a hit is one map lookup and two index updates,
//! small next to the request around it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{AnswerStore, CacheKey, CachedAnswer};

#[derive(Debug)]
struct Entry {
    answer: Arc<CachedAnswer>,
    expires: Instant,
    /// Position in `by_use`: the entry's last use.
    tick: u64,
}

#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<CacheKey, Entry>,
    /// Last use -> key; the first is the least recently used.
    by_use: BTreeMap<u64, CacheKey>,
    next_tick: u64,
    bytes: usize,
}

impl Lru {
    fn remove(&mut self, key: &CacheKey) {
        if let Some(e) = self.entries.remove(key) {
            self.by_use.remove(&e.tick);
            self.bytes -= e.answer.charged_bytes();
        }
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }
}

/// What the store holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    pub entries: usize,
    pub bytes: usize,
}

#[derive(Debug)]
pub struct MemoryStore {
    max_bytes: usize,
    ttl: Duration,
    lru: Mutex<Lru>,
}

impl MemoryStore {
    pub fn new(max_bytes: usize, ttl: Duration) -> MemoryStore {
        MemoryStore {
            max_bytes,
            ttl,
            lru: Mutex::new(Lru::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        // Every update leaves the map, index and byte count consistent before it can panic (it cannot: no
        // user code runs under the lock), so a poisoned lock still holds a usable cache.
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn usage(&self) -> MemoryUsage {
        let lru = self.lock();
        MemoryUsage {
            entries: lru.entries.len(),
            bytes: lru.bytes,
        }
    }

    fn get_at(&self, key: &CacheKey, now: Instant) -> Option<Arc<CachedAnswer>> {
        let mut lru = self.lock();
        let expired = lru.entries.get(key)?.expires <= now;
        if expired {
            lru.remove(key);
            return None;
        }
        let tick = lru.tick();
        let e = lru.entries.get_mut(key)?;
        let old = std::mem::replace(&mut e.tick, tick);
        let answer = Arc::clone(&e.answer);
        lru.by_use.remove(&old);
        lru.by_use.insert(tick, *key);
        Some(answer)
    }

    fn put_at(&self, key: CacheKey, answer: Arc<CachedAnswer>, now: Instant) {
        let size = answer.charged_bytes();
        if size > self.max_bytes {
            return;
        }
        let mut lru = self.lock();
        lru.remove(&key);
        while lru.bytes + size > self.max_bytes {
            let Some((_, oldest)) = lru.by_use.pop_first() else {
                break;
            };
            if let Some(e) = lru.entries.remove(&oldest) {
                lru.bytes -= e.answer.charged_bytes();
            }
        }
        let tick = lru.tick();
        lru.bytes += size;
        lru.by_use.insert(tick, key);
        lru.entries.insert(
            key,
            Entry {
                answer,
                expires: now + self.ttl,
                tick,
            },
        );
    }
}

#[async_trait::async_trait]
impl AnswerStore for MemoryStore {
    async fn get(&self, key: &CacheKey) -> Option<Arc<CachedAnswer>> {
        self.get_at(key, Instant::now())
    }

    fn put(&self, key: CacheKey, answer: Arc<CachedAnswer>) {
        self.put_at(key, answer, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::ENTRY_OVERHEAD;
    use bytes::Bytes;
    use spendgate_core::Usage;

    fn answer(len: usize) -> Arc<CachedAnswer> {
        Arc::new(CachedAnswer {
            body: Bytes::from(vec![b'x'; len]),
            stream: false,
            usage: Usage::default(),
            provider: String::new(),
        })
    }

    fn key(n: u8) -> CacheKey {
        CacheKey([n; 32])
    }

    #[test]
    fn the_byte_bound_holds_and_the_least_recently_used_go_first() {
        let entry = 100 + ENTRY_OVERHEAD;
        let store = MemoryStore::new(3 * entry, Duration::from_secs(60));
        let now = Instant::now();
        for n in 0..3 {
            store.put_at(key(n), answer(100), now);
        }
        assert_eq!(
            store.usage(),
            MemoryUsage {
                entries: 3,
                bytes: 3 * entry
            }
        );
        // Using 0 makes 1 the least recently used, so 1 is the one a fourth entry pushes out.
        assert!(store.get_at(&key(0), now).is_some());
        store.put_at(key(3), answer(100), now);
        assert!(store.get_at(&key(1), now).is_none());
        for n in [0, 2, 3] {
            assert!(store.get_at(&key(n), now).is_some(), "entry {n}");
        }
        // A large entry evicts as many as it needs, and the total never passes the bound.
        store.put_at(key(9), answer(2 * entry - ENTRY_OVERHEAD), now);
        let u = store.usage();
        assert!(u.bytes <= 3 * entry, "{u:?}");
        assert_eq!(u.entries, 2);
        assert!(store.get_at(&key(9), now).is_some());
        // An entry larger than the whole cache is not stored, and evicts nothing.
        store.put_at(key(10), answer(3 * entry), now);
        assert!(store.get_at(&key(10), now).is_none());
        assert_eq!(store.usage().entries, 2);
    }

    #[test]
    fn entries_expire_after_the_ttl_and_replacing_one_counts_it_once() {
        let store = MemoryStore::new(10_000, Duration::from_secs(60));
        let t0 = Instant::now();
        store.put_at(key(1), answer(10), t0);
        store.put_at(key(1), answer(20), t0);
        assert_eq!(store.usage().bytes, 20 + ENTRY_OVERHEAD);
        assert!(store
            .get_at(&key(1), t0 + Duration::from_secs(59))
            .is_some());
        assert!(store
            .get_at(&key(1), t0 + Duration::from_secs(60))
            .is_none());
        assert_eq!(
            store.usage(),
            MemoryUsage {
                entries: 0,
                bytes: 0
            }
        );
    }
}
