//! The mock's OpenAI legacy completions answers (platform.openai.com/docs/api-reference/completions/object): a
//! `text_completion` object with `choices[].text`, and, streamed, one such object per piece of text, the usage
//! chunk (empty `choices`) when `stream_options.include_usage` asks for it, then `[DONE]`.

use bytes::Bytes;

use super::chat::{openai_error, usage_json};
use super::{sse, Answer, Shape};

pub struct Completions;

impl Shape for Completions {
    fn body(&self, a: &Answer<'_>) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": format!("cmpl-mock-{}", a.id), "object": "text_completion", "created": a.created,
            "model": a.model,
            "choices": [{ "text": a.text(), "index": 0, "logprobs": null, "finish_reason": "stop" }],
        });
        if let Some(u) = &a.usage {
            v["usage"] = usage_json(u);
        }
        v
    }

    fn events(&self, a: &Answer<'_>) -> Vec<Bytes> {
        let chunk = |text: &str, finish: Option<&str>| {
            sse(
                None,
                &serde_json::json!({
                    "id": format!("cmpl-mock-{}", a.id), "object": "text_completion", "created": a.created,
                    "model": a.model,
                    "choices": [{ "text": text, "index": 0, "logprobs": null, "finish_reason": finish }],
                }),
            )
        };
        let mut events: Vec<Bytes> = a.words.iter().map(|w| chunk(w, None)).collect();
        events.push(chunk("", Some("stop")));
        if let (Some(u), true) = (&a.usage, a.stream_usage) {
            events.push(sse(
                None,
                &serde_json::json!({
                    "id": format!("cmpl-mock-{}", a.id), "object": "text_completion", "created": a.created,
                    "model": a.model, "choices": [], "usage": usage_json(u),
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
