//! The mock's OpenAI legacy completions answers (platform.openai.com/docs/api-reference/completions/object): a
//! `text_completion` object with `n` choices, each with its `text` and `finish_reason` (`stop`, or `length` when
//! the output limit cut it short), and, streamed, one such object per piece of a choice's text (the choices
//! interleaved), then one per choice with its finish reason. With `stream_options.include_usage` every chunk has
//! `"usage": null` and a last chunk with empty `choices` carries the usage, as in chat streams; `[DONE]` ends it.

use bytes::Bytes;
use serde_json::{json, Value};

use super::chat::{openai_error, usage_json};
use super::{sse, Answer, Choice, Shape};

pub struct Completions;

fn finish_reason(c: &Choice) -> &'static str {
    c.ending(["stop", "length", "stop"])
}

fn choice(index: usize, text: &str, finish: Option<&str>) -> Value {
    json!({ "text": text, "index": index, "logprobs": null, "finish_reason": finish })
}

impl Shape for Completions {
    fn body(&self, a: &Answer<'_>) -> Value {
        let choices: Vec<Value> = a
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| choice(i, &c.text(), Some(finish_reason(c))))
            .collect();
        let mut v = json!({
            "id": format!("cmpl-mock-{}", a.id), "object": "text_completion", "created": a.created,
            "model": a.model, "choices": choices,
        });
        if let Some(u) = &a.usage {
            v["usage"] = usage_json(u, a.reasoning_tokens());
        }
        v
    }

    fn events(&self, a: &Answer<'_>) -> Vec<Bytes> {
        let usage_field = a.stream_usage && a.usage.is_some();
        let chunk = |choices: Value, usage: Option<Value>| {
            let mut v = json!({
                "id": format!("cmpl-mock-{}", a.id), "object": "text_completion", "created": a.created,
                "model": a.model, "choices": choices,
            });
            if usage_field {
                v["usage"] = usage.unwrap_or(Value::Null);
            }
            sse(None, &v)
        };
        let pieces = a
            .choices
            .iter()
            .map(|c| c.pieces().len())
            .max()
            .unwrap_or(0);
        let mut events = Vec::with_capacity((pieces + 1) * a.choices.len() + 2);
        for k in 0..pieces {
            for (i, c) in a.choices.iter().enumerate() {
                if let Some(piece) = c.pieces().get(k) {
                    events.push(chunk(json!([choice(i, piece, None)]), None));
                }
            }
        }
        for (i, c) in a.choices.iter().enumerate() {
            events.push(chunk(json!([choice(i, "", Some(finish_reason(c)))]), None));
        }
        if let (Some(u), true) = (&a.usage, usage_field) {
            events.push(chunk(json!([]), Some(usage_json(u, a.reasoning_tokens()))));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events
    }

    fn error(&self, message: &str) -> Value {
        openai_error(message)
    }
}
