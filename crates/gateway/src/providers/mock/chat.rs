//! The mock's OpenAI chat completion answers. Shapes from OpenAI's API reference
//! (platform.openai.com/docs/api-reference/chat/object and .../chat/streaming) and the types generated from its
//! OpenAPI spec (openai-python `types/chat/chat_completion.py`, `chat_completion_chunk.py`,
//! `types/completion_usage.py`):
//! - a `chat.completion` with `n` choices, each a `message` with `content` (null for tool calls), `tool_calls`
//!   (`{"id":"call_...","type":"function","function":{"name","arguments"}}`, arguments as JSON text), `refusal`,
//!   and its `finish_reason` (`stop`, `length`, `tool_calls`);
//! - `usage` with `prompt_tokens_details` and `completion_tokens_details` (reasoning tokens are part of
//!   `completion_tokens`);
//! - a stream of `chat.completion.chunk`s: per choice a first delta with the role, then its pieces (content, or
//!   a tool call's arguments after a first delta with its index, id, type, name and empty arguments), the choices
//!   interleaved, then one chunk per choice with its `finish_reason`. With `stream_options.include_usage` every
//!   chunk has `"usage": null` and a last chunk with no choices carries the usage; without it no chunk has usage.
//!   `data: [DONE]` ends it.

use bytes::Bytes;
use serde_json::{json, Value};
use spendgate_core::Usage;

use super::{fnv, sse, Answer, Choice, Shape};

pub struct Chat;

/// OpenAI's usage object for chat (and legacy) completions, `reasoning` of the completion tokens spent reasoning.
pub fn usage_json(u: &Usage, reasoning: u64) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": { "cached_tokens": u.cached_input_tokens, "audio_tokens": 0 },
        "completion_tokens_details": {
            "reasoning_tokens": reasoning, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
        },
    })
}

/// OpenAI's error shape: `{"error":{"message","type","code"}}`.
pub fn openai_error(message: &str) -> Value {
    json!({
        "error": { "message": message, "type": "server_error", "code": "mock_failure" }
    })
}

fn finish_reason(c: &Choice) -> &'static str {
    c.ending(["tool_calls", "length", "stop"])
}

/// The id of choice `index`'s tool call.
fn call_id(a: &Answer<'_>, index: usize) -> String {
    format!("call_mock{}{index}", a.id)
}

/// What every chat object carries beside its choices: id, object, created, model, the backend's fingerprint.
fn envelope(a: &Answer<'_>, object: &str) -> Value {
    json!({
        "id": format!("chatcmpl-mock-{}", a.id), "object": object, "created": a.created, "model": a.model,
        "service_tier": "default", "system_fingerprint": format!("fp_{:010x}", fnv(a.model.as_bytes()) >> 24),
    })
}

impl Shape for Chat {
    fn body(&self, a: &Answer<'_>) -> Value {
        let choices: Vec<Value> = a
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut message = json!({ "role": "assistant", "content": null, "refusal": null, "annotations": [] });
                match c.call_name() {
                    Some(name) => {
                        message["tool_calls"] = json!([{
                            "id": call_id(a, i), "type": "function",
                            "function": { "name": name, "arguments": c.text() },
                        }]);
                    }
                    None => message["content"] = c.text().into(),
                }
                json!({ "index": i, "message": message, "logprobs": null, "finish_reason": finish_reason(c) })
            })
            .collect();
        let mut v = envelope(a, "chat.completion");
        v["choices"] = choices.into();
        if let Some(u) = &a.usage {
            v["usage"] = usage_json(u, a.reasoning_tokens());
        }
        v
    }

    fn events(&self, a: &Answer<'_>) -> Vec<Bytes> {
        let usage_field = a.stream_usage && a.usage.is_some();
        let head = envelope(a, "chat.completion.chunk");
        let chunk = |choices: Value| {
            let mut v = head.clone();
            v["choices"] = choices;
            if usage_field {
                v["usage"] = Value::Null;
            }
            sse(None, &v)
        };
        let one = |index: usize, delta: Value, finish: Option<&str>| {
            chunk(
                json!([{ "index": index, "delta": delta, "logprobs": null, "finish_reason": finish }]),
            )
        };
        let pieces = a
            .choices
            .iter()
            .map(|c| c.pieces().len())
            .max()
            .unwrap_or(0);
        let mut events = Vec::with_capacity((pieces + 2) * a.choices.len() + 2);
        for (i, c) in a.choices.iter().enumerate() {
            let delta = match c.call_name() {
                Some(name) => json!({
                    "role": "assistant", "content": null, "refusal": null,
                    "tool_calls": [{ "index": 0, "id": call_id(a, i), "type": "function",
                                     "function": { "name": name, "arguments": "" } }],
                }),
                None => json!({ "role": "assistant", "content": "", "refusal": null }),
            };
            events.push(one(i, delta, None));
        }
        for k in 0..pieces {
            for (i, c) in a.choices.iter().enumerate() {
                let Some(piece) = c.pieces().get(k) else {
                    continue;
                };
                let delta = match c.call_name() {
                    Some(_) => {
                        json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] })
                    }
                    None => json!({ "content": piece }),
                };
                events.push(one(i, delta, None));
            }
        }
        for (i, c) in a.choices.iter().enumerate() {
            events.push(one(i, json!({}), Some(finish_reason(c))));
        }
        if let (Some(u), true) = (&a.usage, a.stream_usage) {
            let mut v = head.clone();
            v["choices"] = json!([]);
            v["usage"] = usage_json(u, a.reasoning_tokens());
            events.push(sse(None, &v));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events
    }

    fn error(&self, message: &str) -> Value {
        openai_error(message)
    }
}
