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
        let pieces = a.interleaved();
        let mut events = Vec::with_capacity(pieces.len() + a.choices.len() + 2);
        for (i, _, piece) in pieces {
            events.push(chunk(json!([choice(i, piece, None)]), None));
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

#[cfg(test)]
mod tests {
    use super::super::testing::{events, full, outputs};
    use crate::provider::Endpoint;
    use serde_json::json;

    const COMPLETIONS: Endpoint = Endpoint::Completions;

    #[tokio::test]
    async fn n_completions_complete_and_streamed() {
        let body = json!({ "model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "n": 2 });
        let v = full(COMPLETIONS, &body);
        assert_eq!(v["object"], "text_completion");
        let choices = v["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 2);
        for (i, c) in choices.iter().enumerate() {
            assert_eq!(
                (&c["index"], &c["finish_reason"]),
                (&json!(i), &json!("stop"))
            );
            assert!(!c["text"].as_str().unwrap().is_empty());
        }
        assert_eq!(
            v["usage"]["completion_tokens"],
            outputs(COMPLETIONS, &body, 2)
        );

        let mut streamed = body.clone();
        streamed["stream"] = true.into();
        streamed["stream_options"] = json!({ "include_usage": true });
        let evs = events(COMPLETIONS, &streamed).await;
        assert_eq!(evs.last().unwrap().1, "[DONE]");
        let usage = &evs[evs.len() - 2].1;
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(
            usage["usage"]["completion_tokens"],
            outputs(COMPLETIONS, &streamed, 2)
        );
        let mut texts = [String::new(), String::new()];
        let mut finishes = 0;
        for (_, c) in &evs[..evs.len() - 2] {
            assert!(c.get("usage").is_some_and(|u| u.is_null()));
            let choice = &c["choices"][0];
            texts[choice["index"].as_u64().unwrap() as usize]
                .push_str(choice["text"].as_str().unwrap());
            finishes += usize::from(!choice["finish_reason"].is_null());
        }
        assert_eq!(finishes, 2, "one finish reason per choice");
        assert!(texts.iter().all(|t| !t.is_empty()));
        assert_eq!(
            (
                &evs[0].1["choices"][0]["index"],
                &evs[1].1["choices"][0]["index"]
            ),
            (&json!(0), &json!(1))
        );
    }
}
