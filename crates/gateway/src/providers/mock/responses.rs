//! The mock's OpenAI Responses API answers. Shapes from OpenAI's API reference
//! (developers.openai.com/api/reference/resources/responses and its streaming events): a `response` object with
//! `output` message items and `usage`; a stream of typed events, each with a `sequence_number`, from
//! `response.created` through `response.output_text.delta`s to `response.completed`, which carries the usage.

use bytes::Bytes;

use super::chat::openai_error;
use super::{sse, Answer, Shape};

pub struct Responses;

impl Responses {
    /// The response object; `done` gives its final state (output and usage), otherwise its state when created.
    fn object(a: &Answer<'_>, done: bool) -> serde_json::Value {
        let message = serde_json::json!({
            "type": "message", "id": format!("msg_mock_{}", a.id), "status": "completed", "role": "assistant",
            "content": [{ "type": "output_text", "text": a.text(), "annotations": [] }],
        });
        let usage = a.usage.as_ref().filter(|_| done).map(|u| {
            serde_json::json!({
                "input_tokens": u.input_tokens,
                "input_tokens_details": { "cached_tokens": u.cached_input_tokens },
                "output_tokens": u.output_tokens,
                "output_tokens_details": { "reasoning_tokens": 0 },
                "total_tokens": u.input_tokens + u.output_tokens,
            })
        });
        serde_json::json!({
            "id": format!("resp_mock_{}", a.id), "object": "response", "created_at": a.created,
            "status": if done { "completed" } else { "in_progress" },
            "model": a.model, "output": if done { vec![message] } else { Vec::new() },
            "usage": usage, "error": null, "incomplete_details": null, "instructions": null, "metadata": {},
            "parallel_tool_calls": true, "temperature": 1.0, "top_p": 1.0, "tool_choice": "auto", "tools": [],
            "text": { "format": { "type": "text" } },
        })
    }
}

impl Shape for Responses {
    fn body(&self, a: &Answer<'_>) -> serde_json::Value {
        let mut v = Responses::object(a, true);
        if a.usage.is_none() {
            if let Some(o) = v.as_object_mut() {
                o.remove("usage");
            }
        }
        v
    }

    fn events(&self, a: &Answer<'_>) -> Vec<Bytes> {
        let item_id = format!("msg_mock_{}", a.id);
        let mut seq = 0u64;
        let mut event = |kind: &str, mut data: serde_json::Value| {
            data["type"] = kind.into();
            data["sequence_number"] = seq.into();
            seq += 1;
            sse(Some(kind), &data)
        };
        let mut events = Vec::with_capacity(a.words.len() + 3);
        events.push(event(
            "response.created",
            serde_json::json!({ "response": Responses::object(a, false) }),
        ));
        for w in &a.words {
            events.push(event(
                "response.output_text.delta",
                serde_json::json!({ "item_id": item_id, "output_index": 0, "content_index": 0, "delta": w }),
            ));
        }
        events.push(event(
            "response.output_text.done",
            serde_json::json!({ "item_id": item_id, "output_index": 0, "content_index": 0, "text": a.text() }),
        ));
        events.push(event(
            "response.completed",
            serde_json::json!({ "response": Responses::object(a, true) }),
        ));
        events
    }

    fn error(&self, message: &str) -> serde_json::Value {
        openai_error(message)
    }
}
