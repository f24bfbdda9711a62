//! Virtual keys: generated here, shown once, stored as SHA-256 hashes, checked on every request from memory.
//!
//! A key is 40 random base62 characters (about 238 bits), so a plain SHA-256 is enough: no dictionary can
//! reach it and a slow hash would only cost latency on every request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use spendgate_core::time::now_ms;

use sha2::{Digest, Sha256};
use spendgate_store::{KeyRecord, NewKey, Store, StoreError};

pub const KEY_PREFIX: &str = "sk-sg-";

/// A freshly made secret and what is stored of it.
#[derive(Debug)]
pub struct GeneratedKey {
    /// The secret: shown to the caller once, never stored or logged.
    pub secret: String,
    pub new_key: NewKey,
}

pub fn hash_key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn generate_key(user: &str, team: Option<&str>) -> Result<GeneratedKey, getrandom::Error> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut raw = [0u8; 40];
    getrandom::fill(&mut raw)?;
    let mut secret = String::with_capacity(KEY_PREFIX.len() + raw.len());
    secret.push_str(KEY_PREFIX);
    for b in raw {
        // 62 * 4 = 248: rejecting bytes above it would remove the slight bias; with 40 characters the bias
        // costs well under a bit of entropy in total, so it is accepted.
        secret.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
    }
    let hint = secret[secret.len() - 4..].to_string();
    let new_key = NewKey {
        hash: hash_key(&secret),
        hint,
        user: user.to_string(),
        team: team.map(str::to_string),
        expires_at_ms: None,
    };
    Ok(GeneratedKey { secret, new_key })
}

/// Creates a key in the store and returns the record and the secret. `expires_at_ms`, if given, must lie ahead.
pub async fn create_key(
    store: &dyn Store,
    user: &str,
    team: Option<&str>,
    expires_at_ms: Option<i64>,
) -> Result<(KeyRecord, String), StoreError> {
    // Names are kept trimmed, as budgets, wallets and filters read them: a key of team " search " would otherwise
    // be a team of its own that no budget for "search" covers.
    let user = user.trim();
    let team = team.map(str::trim);
    spendgate_core::validate_name("user", user).map_err(StoreError::Invalid)?;
    if let Some(t) = team {
        spendgate_core::validate_name("team", t).map_err(StoreError::Invalid)?;
    }
    if expires_at_ms.is_some_and(|e| e <= now_ms()) {
        return Err(StoreError::Invalid(
            "expires_at is in the past; give a time ahead of now, or none for a key that works until revoked"
                .into(),
        ));
    }
    let mut g = generate_key(user, team)
        .map_err(|e| StoreError::Invalid(format!("no randomness available: {e}")))?;
    g.new_key.expires_at_ms = expires_at_ms;
    let rec = store.create_key(g.new_key).await?;
    Ok((rec, g.secret))
}

/// What a secret is, as far as the gateway can tell.
#[derive(Debug, Clone)]
pub enum KeyCheck {
    /// A key that may be used now.
    Active(Arc<KeyRecord>),
    /// A key that was revoked at this time (the record says whose it was, for the refusal's record).
    Revoked { at_ms: i64, key: Arc<KeyRecord> },
    /// A key whose expiry (this time) has passed.
    Expired { at_ms: i64, key: Arc<KeyRecord> },
    /// No key has this secret (never issued, or replaced by a rotation).
    Unknown,
}

impl KeyCheck {
    fn of(rec: Arc<KeyRecord>, now: i64) -> KeyCheck {
        match (rec.revoked_at_ms, rec.expires_at_ms) {
            (Some(at_ms), _) => KeyCheck::Revoked { at_ms, key: rec },
            (None, Some(at_ms)) if now >= at_ms => KeyCheck::Expired { at_ms, key: rec },
            _ => KeyCheck::Active(rec),
        }
    }
}

/// Keys by hash, in memory. A miss asks the store once and remembers a found key, so steady traffic never
/// touches the database to authenticate.
///
/// A key revoked or rotated is forgotten here at once ([`KeyCache::forget`]), and every replica forgets all its
/// keys when the controls' epoch moves ([`KeyCache::clear`], called by the epoch watch before it confirms), so
/// the next request with an old secret asks the store again. The generation closes the window in which a lookup
/// that read the store before the change would put the old record back after it was forgotten.
pub struct KeyCache {
    store: Arc<dyn Store>,
    known: RwLock<HashMap<[u8; 32], Arc<KeyRecord>>>,
    generation: AtomicU64,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").finish()
    }
}

impl KeyCache {
    pub fn new(store: Arc<dyn Store>) -> KeyCache {
        KeyCache {
            store,
            known: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// What the key with this secret is: active, revoked, expired or unknown.
    pub async fn authenticate(&self, secret: &str) -> Result<KeyCheck, StoreError> {
        let hash = hash_key(secret);
        if let Some(k) = self.known.read().ok().and_then(|m| m.get(&hash).cloned()) {
            // Expiry is checked on every use: a cached key does not outlive its time.
            return Ok(match k.expires_at_ms {
                None => KeyCheck::Active(k),
                Some(_) => KeyCheck::of(k, now_ms()),
            });
        }
        let generation = self.generation.load(Ordering::Acquire);
        let Some(rec) = self.store.key_by_hash(hash).await? else {
            return Ok(KeyCheck::Unknown);
        };
        let check = KeyCheck::of(Arc::new(rec), now_ms());
        if let KeyCheck::Active(rec) = &check {
            if let Ok(mut m) = self.known.write() {
                // Under the write lock, so that a forget or clear either happened before (the record read may be
                // stale: keep it out) or waits until it is in (and then removes it).
                if self.generation.load(Ordering::Acquire) == generation {
                    m.insert(hash, Arc::clone(rec));
                }
            }
        }
        Ok(check)
    }

    /// Forgets the key with this id (revoked or given a new secret), whatever secret it was cached under.
    pub fn forget(&self, id: i64) {
        if let Ok(mut m) = self.known.write() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            m.retain(|_, k| k.id != id);
        }
    }

    /// Forgets every key: another replica changed one, and which is not said.
    pub fn clear(&self) {
        if let Ok(mut m) = self.known.write() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            m.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hashed() {
        let a = generate_key("alice", Some("support")).unwrap();
        let b = generate_key("alice", Some("support")).unwrap();
        assert!(a.secret.starts_with(KEY_PREFIX));
        assert_eq!(a.secret.len(), KEY_PREFIX.len() + 40);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.new_key.hash, hash_key(&a.secret));
        assert!(a.secret.ends_with(&a.new_key.hint));
    }
}
