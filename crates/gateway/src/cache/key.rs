//! Cache keys: SHA-256 of the scope, the endpoint and the request body in canonical JSON.

use sha2::{Digest, Sha256};
use spendgate_store::KeyRecord;

use super::Scope;
use crate::provider::Endpoint;

/// A SHA-256 digest naming one cache entry. The request it names cannot be recovered from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// The key of a request. Each part is length-prefixed, so no two different triples hash the same input.
    pub fn of(
        scope: Scope,
        key: &KeyRecord,
        endpoint: Endpoint,
        body: &serde_json::Value,
    ) -> CacheKey {
        let scope_value = match scope {
            // "t:" and "n" differ, so the No team bucket never shares with a team named like anything.
            Scope::Team => match &key.team {
                Some(t) => format!("t:{t}"),
                None => "n".to_string(),
            },
            Scope::Key => format!("k:{}", key.id),
            Scope::Org => "o".to_string(),
        };
        let canonical = canonical_json(body);
        let mut h = Sha256::new();
        for part in [
            scope_value.as_bytes(),
            endpoint.as_str().as_bytes(),
            canonical.as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        CacheKey(h.finalize().into())
    }
}

/// JSON with object keys sorted and no insignificant whitespace, so that two bodies meaning the same request
/// hash alike whatever the client's serializer did. Written by hand rather than through `serde_json::Value`'s
/// own order, which depends on a crate feature (`preserve_order`) another crate could switch on.
pub fn canonical_json(v: &serde_json::Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                write(val, out);
            }
            out.push('}');
        }
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, val) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(val, out);
            }
            out.push(']');
        }
        // Scalars print compactly already.
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: i64, team: Option<&str>) -> KeyRecord {
        KeyRecord {
            id,
            hint: "abcd".into(),
            user: "u".into(),
            team: team.map(str::to_string),
            created_at_ms: 0,
            revoked_at_ms: None,
            expires_at_ms: None,
        }
    }

    fn parse(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap_or_default()
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a = parse(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":1}"#);
        let b = parse("{ \"n\" : 1,\n \"messages\": [ {\"content\":\"hi\", \"role\":\"user\"} ], \"model\": \"m\" }");
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            canonical_json(&a),
            r#"{"messages":[{"content":"hi","role":"user"}],"model":"m","n":1}"#
        );
        let k = record(1, Some("t"));
        assert_eq!(
            CacheKey::of(Scope::Team, &k, Endpoint::ChatCompletions, &a),
            CacheKey::of(Scope::Team, &k, Endpoint::ChatCompletions, &b)
        );
    }

    #[test]
    fn scope_endpoint_stream_and_content_separate_keys() {
        let body = parse(r#"{"model":"m","input":"x"}"#);
        let streamed = parse(r#"{"model":"m","input":"x","stream":true}"#);
        let other = parse(r#"{"model":"m","input":"y"}"#);
        let (a, a2, b, none) = (
            record(1, Some("a")),
            record(2, Some("a")),
            record(3, Some("b")),
            record(4, None),
        );
        let k = |s, r: &KeyRecord, e, v: &serde_json::Value| CacheKey::of(s, r, e, v);
        let chat = Endpoint::ChatCompletions;
        assert_eq!(
            k(Scope::Team, &a, chat, &body),
            k(Scope::Team, &a2, chat, &body)
        );
        assert_ne!(
            k(Scope::Team, &a, chat, &body),
            k(Scope::Team, &b, chat, &body)
        );
        assert_ne!(
            k(Scope::Team, &a, chat, &body),
            k(Scope::Team, &none, chat, &body)
        );
        assert_ne!(
            k(Scope::Key, &a, chat, &body),
            k(Scope::Key, &a2, chat, &body)
        );
        assert_eq!(
            k(Scope::Org, &a, chat, &body),
            k(Scope::Org, &b, chat, &body)
        );
        assert_ne!(
            k(Scope::Org, &a, chat, &body),
            k(Scope::Org, &a, Endpoint::Embeddings, &body)
        );
        assert_ne!(
            k(Scope::Org, &a, chat, &body),
            k(Scope::Org, &a, chat, &streamed)
        );
        assert_ne!(
            k(Scope::Org, &a, chat, &body),
            k(Scope::Org, &a, chat, &other)
        );
    }
}
