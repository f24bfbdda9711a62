//! The mock's Anthropic Messages answers. Shapes from Anthropic's API reference (docs.anthropic.com/en/api/messages,
//! .../messages-streaming, .../docs/build-with-claude/tool-use and .../prompt-caching) and its SDK's types
//! (anthropic-sdk-python `types/message.py`, `usage.py`, `cache_creation.py`, `tool_use_block.py`,
//! `raw_content_block_start_event.py`, `input_json_delta.py`):
//! - a `message` with `content` blocks: `text`, or, when the request offers a tool to call, a `tool_use` block
//!   (`id` "toolu_...", `name`, `input` conforming to the tool's `input_schema`) with `stop_reason` `tool_use`;
//!   `max_tokens` when the output limit cut the text short, `end_turn` otherwise;
//! - `usage`: `input_tokens` (excluding cache reads and writes), `cache_creation_input_tokens`,
//!   `cache_read_input_tokens`, `cache_creation` split into `ephemeral_5m_input_tokens` and
//!   `ephemeral_1h_input_tokens` by the breakpoints' `ttl`, and `output_tokens`;
//! - a stream of named events: `message_start` (usage with the input counts), `content_block_start`, `ping`,
//!   `content_block_delta`s (`text_delta`, or `input_json_delta` with `partial_json` for a tool's input),
//!   `content_block_stop`, `message_delta` (stop reason and the final `output_tokens`) and `message_stop`.

use bytes::Bytes;
use serde_json::{json, Value};
use spendgate_core::Usage;

use super::{sse, Answer, Shape};

pub struct Messages;

fn usage_json(a: &Answer<'_>, u: &Usage, output_tokens: u64) -> Value {
    json!({
        "input_tokens": u.uncached_input_tokens(),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": u.cache_write_tokens - a.one_hour_writes,
            "ephemeral_1h_input_tokens": a.one_hour_writes,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    })
}

fn message(a: &Answer<'_>, content: Value, output_tokens: u64) -> Value {
    let mut v = json!({
        "id": format!("msg_mock_{}", a.id), "type": "message", "role": "assistant", "model": a.model,
        "content": content, "stop_reason": null, "stop_sequence": null,
    });
    if let Some(u) = &a.usage {
        v["usage"] = usage_json(a, u, output_tokens);
    }
    v
}

fn tool_use_id(a: &Answer<'_>) -> String {
    format!("toolu_mock{}", a.id)
}

fn stop_reason(a: &Answer<'_>) -> &'static str {
    a.first().ending(["tool_use", "max_tokens", "end_turn"])
}

impl Shape for Messages {
    fn body(&self, a: &Answer<'_>) -> Value {
        let c = a.first();
        let block = match c.call_name() {
            Some(name) => {
                let input: Value = serde_json::from_str(&c.text()).unwrap_or_else(|_| json!({}));
                json!({ "type": "tool_use", "id": tool_use_id(a), "name": name, "input": input })
            }
            None => json!({ "type": "text", "text": c.text() }),
        };
        let mut v = message(a, json!([block]), a.usage.map_or(0, |u| u.output_tokens));
        v["stop_reason"] = stop_reason(a).into();
        v
    }

    fn events(&self, a: &Answer<'_>) -> Vec<Bytes> {
        let event = |kind: &str, mut data: Value| {
            data["type"] = kind.into();
            sse(Some(kind), &data)
        };
        let c = a.first();
        let mut events = Vec::with_capacity(c.pieces().len() + 6);
        events.push(event(
            "message_start",
            json!({ "message": message(a, json!([]), 1) }),
        ));
        let (start, delta_kind, key) = match c.call_name() {
            Some(name) => (
                json!({ "type": "tool_use", "id": tool_use_id(a), "name": name, "input": {} }),
                "input_json_delta",
                "partial_json",
            ),
            None => (json!({ "type": "text", "text": "" }), "text_delta", "text"),
        };
        events.push(event(
            "content_block_start",
            json!({ "index": 0, "content_block": start }),
        ));
        events.push(event("ping", json!({})));
        for p in c.pieces() {
            events.push(event(
                "content_block_delta",
                json!({ "index": 0, "delta": { "type": delta_kind, key: p } }),
            ));
        }
        events.push(event("content_block_stop", json!({ "index": 0 })));
        let mut delta =
            json!({ "delta": { "stop_reason": stop_reason(a), "stop_sequence": null } });
        if let Some(u) = &a.usage {
            delta["usage"] = json!({ "output_tokens": u.output_tokens });
        }
        events.push(event("message_delta", delta));
        events.push(event("message_stop", json!({})));
        events
    }

    /// Anthropic's error shape: `{"type":"error","error":{"type","message"}}`.
    fn error(&self, message: &str) -> Value {
        json!({ "type": "error", "error": { "type": "api_error", "message": message } })
    }
}
