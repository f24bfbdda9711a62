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
        "service_tier": a.ask.service_tier, "system_fingerprint": format!("fp_{:010x}", fnv(a.model.as_bytes()) >> 24),
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
        let pieces = a.interleaved();
        let mut events = Vec::with_capacity(pieces.len() + 2 * a.choices.len() + 2);
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
        for (i, c, piece) in pieces {
            let delta = match c.call_name() {
                Some(_) => {
                    json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] })
                }
                None => json!({ "content": piece }),
            };
            events.push(one(i, delta, None));
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

#[cfg(test)]
mod tests {
    use super::super::testing::{events, full, outputs};
    use crate::provider::Endpoint;
    use serde_json::{json, Value};

    const CHAT: Endpoint = Endpoint::ChatCompletions;

    fn weather() -> Value {
        json!({ "type": "function", "function": { "name": "get_weather", "parameters": {
            "type": "object", "required": ["city", "unit"],
            "properties": { "city": { "type": "string" }, "unit": { "type": "string", "enum": ["c", "f"] } } } } })
    }

    fn ask(extra: Value) -> Value {
        let mut body = json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "weather?" }] });
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        body
    }

    #[test]
    fn n_choices_each_with_content_and_billed_together() {
        let body = ask(json!({ "n": 3 }));
        let v = full(CHAT, &body);
        assert_eq!(v["object"], "chat.completion");
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert!(v["system_fingerprint"].as_str().unwrap().starts_with("fp_"));
        assert!(v["created"].is_i64());
        let choices = v["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 3);
        for (i, c) in choices.iter().enumerate() {
            assert_eq!(c["index"], i);
            assert!(!c["message"]["content"].as_str().unwrap().is_empty());
            assert_eq!(c["finish_reason"], "stop");
        }
        let u = &v["usage"];
        assert_eq!(u["completion_tokens"], outputs(CHAT, &body, 3));
        assert!(outputs(CHAT, &body, 3) > outputs(CHAT, &body, 1));
        assert_eq!(
            u["total_tokens"].as_u64(),
            Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
        );
        for k in ["cached_tokens", "audio_tokens"] {
            assert_eq!(u["prompt_tokens_details"][k], 0, "{k}");
        }
        for k in [
            "reasoning_tokens",
            "audio_tokens",
            "accepted_prediction_tokens",
            "rejected_prediction_tokens",
        ] {
            assert_eq!(u["completion_tokens_details"][k], 0, "{k}");
        }
    }

    #[test]
    fn tools_are_called_with_arguments_of_their_schema_until_their_result_comes() {
        let v = full(CHAT, &ask(json!({ "tools": [weather()], "n": 2 })));
        for c in v["choices"].as_array().unwrap() {
            assert_eq!(c["finish_reason"], "tool_calls");
            assert_eq!(c["message"]["content"], Value::Null);
            let call = &c["message"]["tool_calls"][0];
            assert!(call["id"].as_str().unwrap().starts_with("call_"));
            assert_eq!(call["type"], "function");
            assert_eq!(call["function"]["name"], "get_weather");
            let args: Value =
                serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
            assert!(args["city"].is_string() && args["unit"] == "c", "{args}");
        }
        assert_ne!(
            v["choices"][0]["message"]["tool_calls"][0]["id"],
            v["choices"][1]["message"]["tool_calls"][0]["id"]
        );
        let none = full(
            CHAT,
            &ask(json!({ "tools": [weather()], "tool_choice": "none" })),
        );
        assert!(none["choices"][0]["message"]["content"].is_string());
        let answered = full(
            CHAT,
            &json!({ "model": "m", "tools": [weather()], "messages": [
            { "role": "user", "content": "weather?" },
            { "role": "assistant", "content": null, "tool_calls": [{ "id": "call_1", "type": "function",
              "function": { "name": "get_weather", "arguments": "{}" } }] },
            { "role": "tool", "tool_call_id": "call_1", "content": "sunny" }] }),
        );
        assert!(answered["choices"][0]["message"]["content"].is_string());
        assert_eq!(answered["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn json_formats_give_json_content() {
        let schema = json!({ "type": "object", "required": ["name", "age"], "additionalProperties": false,
            "properties": { "name": { "type": "string" }, "age": { "type": "integer" } } });
        let v = full(
            CHAT,
            &ask(json!({ "response_format": { "type": "json_schema",
            "json_schema": { "name": "person", "schema": schema, "strict": true } } })),
        );
        let content: Value =
            serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        assert!(
            content["name"].is_string() && content["age"].is_i64(),
            "{content}"
        );
        let v = full(
            CHAT,
            &ask(json!({ "response_format": { "type": "json_object" } })),
        );
        let content: Value =
            serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        assert!(content.is_object());
    }

    #[test]
    fn reasoning_models_report_reasoning_tokens_within_the_completion() {
        let v = full(
            CHAT,
            &json!({ "model": "o4-mini", "messages": [{ "role": "user", "content": "hi" }] }),
        );
        let u = &v["usage"];
        let reasoning = u["completion_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap();
        let completion = u["completion_tokens"].as_u64().unwrap();
        assert!(reasoning > 0 && reasoning < completion, "{u}");
        assert_eq!(reasoning, completion / 2);
    }

    #[test]
    fn an_output_limit_ends_the_choice_with_length() {
        let v = full(CHAT, &ask(json!({ "max_completion_tokens": 2 })));
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], 2);
    }

    #[tokio::test]
    async fn streams_interleave_choices_and_tool_call_deltas() {
        let body = ask(json!({ "tools": [weather()], "n": 2, "stream": true,
                               "stream_options": { "include_usage": true } }));
        let evs = events(CHAT, &body).await;
        assert_eq!(evs.last().unwrap().1, "[DONE]");
        let chunks: Vec<&Value> = evs[..evs.len() - 1].iter().map(|(_, d)| d).collect();
        let (usage_chunk, rest) = chunks.split_last().unwrap();
        assert_eq!(usage_chunk["choices"], json!([]));
        assert_eq!(
            usage_chunk["usage"]["completion_tokens"],
            outputs(CHAT, &body, 2)
        );
        let mut arguments = [String::new(), String::new()];
        let mut finishes = [0, 0];
        for (k, c) in rest.iter().enumerate() {
            assert_eq!(c["object"], "chat.completion.chunk");
            assert!(
                c.get("usage").is_some_and(Value::is_null),
                "usage: null on every chunk"
            );
            let choice = &c["choices"][0];
            let i = choice["index"].as_u64().unwrap() as usize;
            if k < 2 {
                assert_eq!(i, k, "each choice opens in order");
                let call = &choice["delta"]["tool_calls"][0];
                assert_eq!(choice["delta"]["role"], "assistant");
                assert_eq!(
                    (&call["index"], &call["type"]),
                    (&json!(0), &json!("function"))
                );
                assert!(call["id"].as_str().unwrap().starts_with("call_"));
                assert_eq!(
                    call["function"],
                    json!({ "name": "get_weather", "arguments": "" })
                );
            } else if let Some(piece) =
                choice["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            {
                assert!(choice["delta"]["tool_calls"][0].get("id").is_none());
                arguments[i].push_str(piece);
            }
            if !choice["finish_reason"].is_null() {
                assert_eq!(choice["finish_reason"], "tool_calls");
                finishes[i] += 1;
            }
        }
        assert_eq!(finishes, [1, 1]);
        for a in arguments {
            let args: Value = serde_json::from_str(&a).unwrap();
            assert_eq!(args["unit"], "c");
        }
        // Choices alternate: the third and fourth chunks are the first pieces of choices 0 and 1.
        assert_eq!(
            (
                &rest[2]["choices"][0]["index"],
                &rest[3]["choices"][0]["index"]
            ),
            (&json!(0), &json!(1))
        );
    }

    #[tokio::test]
    async fn streams_carry_usage_only_when_asked() {
        let evs = events(CHAT, &ask(json!({ "stream": true }))).await;
        assert!(evs.iter().all(|(_, d)| d.get("usage").is_none()));
        let text: String = evs
            .iter()
            .filter_map(|(_, d)| d["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert!(!text.is_empty());
        let asked = events(
            CHAT,
            &ask(json!({ "stream": true, "stream_options": { "include_usage": false } })),
        )
        .await;
        assert!(asked.iter().all(|(_, d)| d.get("usage").is_none()));
    }
}
