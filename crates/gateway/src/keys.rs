//! Virtual keys: generated here, shown once, stored as SHA-256 hashes, checked on every request from memory.
//!
//! A key is 40 random base62 characters (about 238 bits), so a plain SHA-256 is enough: no dictionary can
//! reach it and a slow hash would only cost latency on every request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

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
    };
    Ok(GeneratedKey { secret, new_key })
}

/// Creates a key in the store and returns the record and the secret.
pub async fn create_key(
    store: &dyn Store,
    user: &str,
    team: Option<&str>,
) -> Result<(KeyRecord, String), StoreError> {
    // Names are kept trimmed, as budgets, wallets and filters read them: a key of team " search " would otherwise
    // be a team of its own that no budget for "search" covers.
    let user = user.trim();
    let team = team.map(str::trim);
    spendgate_core::validate_name("user", user).map_err(StoreError::Invalid)?;
    if let Some(t) = team {
        spendgate_core::validate_name("team", t).map_err(StoreError::Invalid)?;
    }
    let g = generate_key(user, team)
        .map_err(|e| StoreError::Invalid(format!("no randomness available: {e}")))?;
    let rec = store.create_key(g.new_key).await?;
    Ok((rec, g.secret))
}

/// Keys by hash, in memory. A miss asks the store once and remembers a found key, so steady traffic never
/// touches the database to authenticate.
pub struct KeyCache {
    store: Arc<dyn Store>,
    known: RwLock<HashMap<[u8; 32], Arc<KeyRecord>>>,
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
        }
    }

    /// The active key with this secret, or `None`.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let hash = hash_key(secret);
        if let Some(k) = self.known.read().ok().and_then(|m| m.get(&hash).cloned()) {
            return Ok(Some(k));
        }
        let Some(rec) = self.store.key_by_hash(hash).await? else {
            return Ok(None);
        };
        if rec.revoked_at_ms.is_some() {
            return Ok(None);
        }
        let rec = Arc::new(rec);
        if let Ok(mut m) = self.known.write() {
            m.insert(hash, Arc::clone(&rec));
        }
        Ok(Some(rec))
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
