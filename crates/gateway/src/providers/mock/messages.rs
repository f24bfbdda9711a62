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
//!   `content_block_stop`, `message_delta` (stop reason and the cumulative usage: the final `output_tokens` with
//!   the input counts again, `message_delta_usage.py`) and `message_stop`.

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
            // Cumulative, as Anthropic sends it: the input counts again beside the output (`MessageDeltaUsage`).
            delta["usage"] = json!({
                "input_tokens": u.uncached_input_tokens(),
                "cache_creation_input_tokens": u.cache_write_tokens,
                "cache_read_input_tokens": u.cached_input_tokens,
                "output_tokens": u.output_tokens,
            });
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

#[cfg(test)]
mod tests {
    use super::super::testing::{events, full, outputs};
    use crate::provider::Endpoint;
    use serde_json::{json, Value};

    const MESSAGES: Endpoint = Endpoint::Messages;

    fn body(extra: Value) -> Value {
        let mut body = json!({ "model": "claude-haiku-4-5", "max_tokens": 100,
                               "messages": [{ "role": "user", "content": "weather?" }] });
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        body
    }

    fn tools() -> Value {
        json!([{ "name": "get_weather", "input_schema": { "type": "object", "required": ["city", "days"],
            "properties": { "city": { "type": "string" }, "days": { "type": "integer", "minimum": 2 } } } }])
    }

    #[test]
    fn tools_are_used_with_input_of_their_schema() {
        let v = full(MESSAGES, &body(json!({ "tools": tools() })));
        assert_eq!(v["stop_reason"], "tool_use");
        let block = &v["content"][0];
        assert_eq!(
            (&block["type"], &block["name"]),
            (&json!("tool_use"), &json!("get_weather"))
        );
        assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
        assert_eq!(block["input"], json!({ "city": "mock", "days": 2 }));
        let none = full(
            MESSAGES,
            &body(json!({ "tools": tools(), "tool_choice": { "type": "none" } })),
        );
        assert_eq!(
            (&none["content"][0]["type"], &none["stop_reason"]),
            (&json!("text"), &json!("end_turn"))
        );
        let capped = full(MESSAGES, &body(json!({ "max_tokens": 2 })));
        assert_eq!(capped["stop_reason"], "max_tokens");
        assert_eq!(capped["usage"]["output_tokens"], 2);
    }

    #[test]
    fn cache_writes_are_split_by_their_lifetime() {
        let long = "x".repeat(6000);
        let marked = body(json!({ "system": [
            { "type": "text", "text": long, "cache_control": { "type": "ephemeral", "ttl": "1h" } },
            { "type": "text", "text": "rules", "cache_control": { "type": "ephemeral" } }] }));
        let u = full(MESSAGES, &marked)["usage"].clone();
        let written = u["cache_creation_input_tokens"].as_u64().unwrap();
        assert!(
            written > 0 && u["cache_read_input_tokens"].as_u64().unwrap() > 0,
            "{u}"
        );
        assert_eq!(
            u["cache_creation"]["ephemeral_1h_input_tokens"],
            written / 2
        );
        assert_eq!(
            u["cache_creation"]["ephemeral_5m_input_tokens"],
            written - written / 2
        );
        let plain = full(MESSAGES, &body(json!({})))["usage"].clone();
        assert_eq!(
            plain["cache_creation"],
            json!({ "ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0 })
        );
    }

    #[tokio::test]
    async fn a_tool_use_streams_its_input_as_json_deltas() {
        let request = body(json!({ "tools": tools(), "stream": true }));
        let evs = events(MESSAGES, &request).await;
        let kinds: Vec<&str> = evs.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
        let deltas = kinds.len() - 6;
        let mut expected = vec!["message_start", "content_block_start", "ping"];
        expected.extend(std::iter::repeat_n("content_block_delta", deltas));
        expected.extend(["content_block_stop", "message_delta", "message_stop"]);
        assert_eq!(kinds, expected);
        for (name, data) in &evs {
            assert_eq!(name.as_deref(), data["type"].as_str());
        }
        let start = &evs[1].1["content_block"];
        assert_eq!(
            (&start["type"], &start["input"]),
            (&json!("tool_use"), &json!({}))
        );
        let input: String = evs[3..3 + deltas]
            .iter()
            .map(|(_, d)| {
                assert_eq!(d["delta"]["type"], "input_json_delta");
                d["delta"]["partial_json"].as_str().unwrap()
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&input).unwrap(),
            json!({ "city": "mock", "days": 2 })
        );
        let delta = &evs[evs.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            delta["usage"]["output_tokens"],
            outputs(MESSAGES, &request, 1)
        );
        let start = &evs[0].1["message"]["usage"];
        assert!(start["cache_creation"].is_object());
        for k in [
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ] {
            assert_eq!(
                delta["usage"][k], start[k],
                "message_delta's usage is cumulative: {k}"
            );
        }
    }
}
