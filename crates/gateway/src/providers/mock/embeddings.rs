//! The mock's OpenAI embeddings answers. Shape from OpenAI's API reference
//! (platform.openai.com/docs/api-reference/embeddings/create and .../embeddings/object): a `list` of `embedding`
//! objects, one per input in order, each a vector of the model's length or of the request's `dimensions`, as
//! numbers or, with `encoding_format: "base64"`, as base64 of the vector's little-endian 32-bit floats (what
//! openai-python decodes with `np.frombuffer(base64.b64decode(...), dtype="float32")`); `usage` has
//! `prompt_tokens` and `total_tokens`.

use bytes::Bytes;
use serde_json::{json, Value};

use super::chat::openai_error;
use super::{fnv, fnv_on, Answer, Shape};

pub struct Embeddings;

/// The length of a model's vectors when the request does not ask for another (text-embedding-3-large: 3,072;
/// text-embedding-3-small and ada-002: 1,536).
fn native_dimensions(model: &str) -> usize {
    if model.contains("3-large") {
        3072
    } else {
        1536
    }
}

/// Input `index`'s vector: deterministic values of unit length, as OpenAI's embeddings are normalised. An
/// embedding is a vector of floats, not money, so float arithmetic is in place here.
#[allow(clippy::float_arithmetic)]
fn vector(model: &str, index: usize, dimensions: usize) -> Vec<f32> {
    let seed = fnv_on(fnv(model.as_bytes()), &index.to_le_bytes());
    let raw: Vec<f32> = (0..dimensions)
        .map(|j| {
            let h = fnv_on(seed, &j.to_le_bytes());
            // Sixteen bits of the hash as a value in [-1, 1).
            (h >> 48) as f32 / 32768.0 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    raw.into_iter().map(|x| x / norm).collect()
}

/// Standard base64 (RFC 4648, with padding).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..4 {
            if k <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * k) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Shape for Embeddings {
    fn body(&self, a: &Answer<'_>) -> Value {
        let dimensions = a
            .ask
            .dimensions
            .unwrap_or_else(|| native_dimensions(a.model));
        let data: Vec<Value> = (0..a.ask.inputs)
            .map(|i| {
                let v = vector(a.model, i, dimensions);
                let embedding = if a.ask.base64 {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Value::String(base64(&bytes))
                } else {
                    v.into()
                };
                json!({ "object": "embedding", "index": i, "embedding": embedding })
            })
            .collect();
        let mut v = json!({ "object": "list", "data": data, "model": a.model });
        if let Some(u) = &a.usage {
            v["usage"] = json!({ "prompt_tokens": u.input_tokens, "total_tokens": u.input_tokens });
        }
        v
    }

    fn events(&self, _a: &Answer<'_>) -> Vec<Bytes> {
        Vec::new()
    }

    fn error(&self, message: &str) -> Value {
        openai_error(message)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::full;
    use super::*;
    use crate::provider::Endpoint;

    #[test]
    fn base64_is_rfc_4648() {
        // RFC 4648 section 10's test vectors.
        for (raw, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), encoded);
        }
    }

    #[test]
    fn one_vector_per_input_as_floats_or_base64() {
        let body =
            json!({ "model": "text-embedding-3-small", "input": ["a", "b", "c"], "dimensions": 4 });
        let v = full(Endpoint::Embeddings, &body);
        assert_eq!(v["object"], "list");
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        for (i, d) in data.iter().enumerate() {
            assert_eq!(
                (&d["object"], &d["index"]),
                (&json!("embedding"), &json!(i))
            );
            assert_eq!(d["embedding"].as_array().unwrap().len(), 4);
        }
        assert_ne!(data[0]["embedding"], data[1]["embedding"]);
        let u = &v["usage"];
        assert!(u["prompt_tokens"].as_u64().unwrap() > 0);
        assert_eq!(u["prompt_tokens"], u["total_tokens"]);
        let mut b64 = body.clone();
        b64["encoding_format"] = "base64".into();
        let v64 = full(Endpoint::Embeddings, &b64);
        for (float, encoded) in data.iter().zip(v64["data"].as_array().unwrap()) {
            let bytes: Vec<u8> = float["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|x| (x.as_f64().unwrap() as f32).to_le_bytes())
                .collect();
            assert_eq!(encoded["embedding"], base64(&bytes));
        }
        let native = full(
            Endpoint::Embeddings,
            &json!({ "model": "text-embedding-3-large", "input": [[1, 2, 3]] }),
        );
        assert_eq!(
            native["data"].as_array().unwrap().len(),
            1,
            "one token array is one input"
        );
        assert_eq!(
            native["data"][0]["embedding"].as_array().unwrap().len(),
            3072
        );
    }
}
