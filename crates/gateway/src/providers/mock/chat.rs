//! The mock's OpenAI chat completion and embeddings answers (shapes from platform.openai.com/docs/api-reference).

use bytes::Bytes;
use spendgate_core::Usage;

use super::{sse, Answer, Shape};

pub struct Chat;
pub struct Embeddings;

pub fn usage_json(u: &Usage) -> serde_json::Value {
    serde_json::json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": { "cached_tokens": u.cached_input_tokens },
    })
}

/// OpenAI's error shape: `{"error":{"message","type","code"}}`.
pub fn openai_error(message: &str) -> serde_json::Value {
    serde_json::json!({
        "error": { "message": message, "type": "server_error", "code": "mock_failure" }
    })
}

impl Shape for Chat {
    fn body(&self, a: &Answer<'_>) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": format!("chatcmpl-mock-{}", a.id), "object": "chat.completion", "created": a.created,
            "model": a.model,
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": a.text() },
                          "finish_reason": "stop" }],
        });
        if let Some(u) = &a.usage {
            v["usage"] = usage_json(u);
        }
        v
    }

    /// One chunk per output token, the finish chunk, the usage chunk when asked for, then `[DONE]`.
    fn events(&self, a: &Answer<'_>) -> Vec<Bytes> {
        let chunk = |delta: serde_json::Value, finish: Option<&str>| {
            sse(
                None,
                &serde_json::json!({
                    "id": format!("chatcmpl-mock-{}", a.id), "object": "chat.completion.chunk",
                    "created": a.created, "model": a.model,
                    "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
                }),
            )
        };
        let mut events = Vec::with_capacity(a.words.len() + 4);
        events.push(chunk(
            serde_json::json!({ "role": "assistant", "content": "" }),
            None,
        ));
        for w in &a.words {
            events.push(chunk(serde_json::json!({ "content": w }), None));
        }
        events.push(chunk(serde_json::json!({}), Some("stop")));
        if let (Some(u), true) = (&a.usage, a.stream_usage) {
            events.push(sse(
                None,
                &serde_json::json!({
                    "id": format!("chatcmpl-mock-{}", a.id), "object": "chat.completion.chunk",
                    "created": a.created, "model": a.model, "choices": [], "usage": usage_json(u),
                }),
            ));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events
    }

    fn error(&self, message: &str) -> serde_json::Value {
        openai_error(message)
    }
}

impl Shape for Embeddings {
    fn body(&self, a: &Answer<'_>) -> serde_json::Value {
        let mut v = serde_json::json!({
            "object": "list",
            "data": [{ "object": "embedding", "index": 0, "embedding": [0.0125, -0.5, 0.25, 0.75] }],
            "model": a.model,
        });
        if let Some(u) = &a.usage {
            v["usage"] = serde_json::json!({ "prompt_tokens": u.input_tokens, "total_tokens": u.input_tokens });
        }
        v
    }

    fn events(&self, _a: &Answer<'_>) -> Vec<Bytes> {
        Vec::new()
    }

    fn error(&self, message: &str) -> serde_json::Value {
        openai_error(message)
    }
}
