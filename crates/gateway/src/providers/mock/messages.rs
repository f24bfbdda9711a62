//! The mock's Anthropic Messages answers. Shapes from Anthropic's API reference (docs.anthropic.com/en/api/messages
//! and .../messages-streaming): a `message` with `content` blocks and `usage` (`input_tokens` excluding cache reads
//! and writes, `cache_creation_input_tokens`, `cache_read_input_tokens`, `output_tokens`); a stream of named
//! events `message_start` (usage with the input counts), `content_block_start`, `ping`, `content_block_delta`s,
//! `content_block_stop`, `message_delta` (the final `output_tokens`) and `message_stop`.

use bytes::Bytes;
use spendgate_core::Usage;

use super::{sse, Answer, Shape};

pub struct Messages;

fn usage_json(u: &Usage, output_tokens: u64) -> serde_json::Value {
    serde_json::json!({
        "input_tokens": u.uncached_input_tokens(),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_input_tokens,
        "output_tokens": output_tokens,
    })
}

fn message(a: &Answer<'_>, content: serde_json::Value, output_tokens: u64) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": format!("msg_mock_{}", a.id), "type": "message", "role": "assistant", "model": a.model,
        "content": content, "stop_reason": null, "stop_sequence": null,
    });
    if let Some(u) = &a.usage {
        v["usage"] = usage_json(u, output_tokens);
    }
    v
}

impl Shape for Messages {
    fn body(&self, a: &Answer<'_>) -> serde_json::Value {
        let mut v = message(
            a,
            serde_json::json!([{ "type": "text", "text": a.text() }]),
            a.usage.map_or(0, |u| u.output_tokens),
        );
        v["stop_reason"] = "end_turn".into();
        v
    }

    fn events(&self, a: &Answer<'_>) -> Vec<Bytes> {
        let event = |kind: &str, mut data: serde_json::Value| {
            data["type"] = kind.into();
            sse(Some(kind), &data)
        };
        let mut events = Vec::with_capacity(a.words.len() + 6);
        events.push(event(
            "message_start",
            serde_json::json!({ "message": message(a, serde_json::json!([]), 1) }),
        ));
        events.push(event(
            "content_block_start",
            serde_json::json!({ "index": 0, "content_block": { "type": "text", "text": "" } }),
        ));
        events.push(event("ping", serde_json::json!({})));
        for w in &a.words {
            events.push(event(
                "content_block_delta",
                serde_json::json!({ "index": 0, "delta": { "type": "text_delta", "text": w } }),
            ));
        }
        events.push(event(
            "content_block_stop",
            serde_json::json!({ "index": 0 }),
        ));
        let mut delta = serde_json::json!({
            "delta": { "stop_reason": "end_turn", "stop_sequence": null },
        });
        if let Some(u) = &a.usage {
            delta["usage"] = serde_json::json!({ "output_tokens": u.output_tokens });
        }
        events.push(event("message_delta", delta));
        events.push(event("message_stop", serde_json::json!({})));
        events
    }

    /// Anthropic's error shape: `{"type":"error","error":{"type","message"}}`.
    fn error(&self, message: &str) -> serde_json::Value {
        serde_json::json!({ "type": "error", "error": { "type": "api_error", "message": message } })
    }
}
