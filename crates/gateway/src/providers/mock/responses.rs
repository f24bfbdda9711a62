//! The mock's OpenAI Responses API answers. Shapes from OpenAI's API reference
//! (developers.openai.com/api/reference/resources/responses and its streaming events) and the types generated
//! from its OpenAPI spec (openai-python `types/responses/`: `response.py`, `response_usage.py`,
//! `response_output_message.py`, `response_function_tool_call.py`, `response_reasoning_item.py` and the
//! `response_*_event.py` files):
//! - a `response` whose `output` holds a `reasoning` item for reasoning models, then a `message` with one
//!   `output_text` part or, when the request offers a function tool to call, a `function_call` item
//!   (`call_id`, `name`, `arguments` as JSON text); `usage` with `input_tokens_details.cached_tokens` and
//!   `output_tokens_details.reasoning_tokens` (part of `output_tokens`); an output limit that cut the text
//!   short makes it `incomplete` with `incomplete_details.reason` `max_output_tokens`;
//! - a stream of typed events, each with its `sequence_number`: `response.created`, `response.in_progress`,
//!   then per output item `response.output_item.added`, its content (`response.content_part.added`,
//!   `response.output_text.delta`s, `response.output_text.done`, `response.content_part.done`; or
//!   `response.function_call_arguments.delta`s and `.done`) and `response.output_item.done`, and last
//!   `response.completed` (or `response.incomplete`) with the final response and its usage. This is the sequence
//!   openai-python's `responses.stream()` helper accumulates.

use bytes::Bytes;
use serde_json::{json, Value};

use super::chat::openai_error;
use super::{sse, Answer, Shape};

pub struct Responses;

/// The first choice's output items in their final state.
fn output(a: &Answer<'_>) -> Vec<Value> {
    let c = a.first();
    let mut items = Vec::with_capacity(2);
    if c.reasoning_tokens > 0 {
        items
            .push(json!({ "type": "reasoning", "id": format!("rs_mock_{}", a.id), "summary": [] }));
    }
    items.push(match c.call_name() {
        Some(name) => json!({
            "type": "function_call", "id": format!("fc_mock_{}", a.id), "call_id": format!("call_mock_{}", a.id),
            "name": name, "arguments": c.text(), "status": "completed",
        }),
        None => json!({
            "type": "message", "id": format!("msg_mock_{}", a.id), "role": "assistant",
            "status": if c.capped { "incomplete" } else { "completed" },
            "content": [text_part(&c.text())],
        }),
    });
    items
}

fn text_part(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] })
}

/// Whether the output limit cut the answer's text short.
fn incomplete(a: &Answer<'_>) -> bool {
    a.first().capped && a.first().call_name().is_none()
}

/// The response object; `done` gives its final state (output and usage), otherwise its state while in progress.
fn object(a: &Answer<'_>, done: bool) -> Value {
    let usage = a.usage.as_ref().filter(|_| done).map(|u| {
        json!({
            "input_tokens": u.input_tokens,
            "input_tokens_details": { "cached_tokens": u.cached_input_tokens, "cache_write_tokens": 0 },
            "output_tokens": u.output_tokens,
            "output_tokens_details": { "reasoning_tokens": a.reasoning_tokens() },
            "total_tokens": u.input_tokens + u.output_tokens,
        })
    });
    let status = match (done, incomplete(a)) {
        (false, _) => "in_progress",
        (true, false) => "completed",
        (true, true) => "incomplete",
    };
    let incomplete_details =
        (done && incomplete(a)).then(|| json!({ "reason": "max_output_tokens" }));
    json!({
        "id": format!("resp_mock_{}", a.id), "object": "response", "created_at": a.created, "status": status,
        "model": a.model, "service_tier": a.ask.service_tier, "output": if done { output(a) } else { Vec::new() },
        "usage": usage, "error": null, "incomplete_details": incomplete_details, "instructions": null,
        "metadata": {}, "parallel_tool_calls": true, "temperature": 1.0, "top_p": 1.0,
        "tool_choice": a.ask.tool_choice.clone().unwrap_or_else(|| "auto".into()),
        "tools": a.ask.tools,
        "text": a.ask.text.clone().unwrap_or_else(|| json!({ "format": { "type": "text" } })),
    })
}

impl Shape for Responses {
    fn body(&self, a: &Answer<'_>) -> Value {
        let mut v = object(a, true);
        if a.usage.is_none() {
            if let Some(o) = v.as_object_mut() {
                o.remove("usage");
            }
        }
        v
    }

    fn events(&self, a: &Answer<'_>) -> Vec<Bytes> {
        let mut seq = 0u64;
        let mut event = |kind: &str, mut data: Value| {
            data["type"] = kind.into();
            data["sequence_number"] = seq.into();
            seq += 1;
            sse(Some(kind), &data)
        };
        let pieces = a.first().pieces();
        let mut events = Vec::with_capacity(pieces.len() + 12);
        events.push(event(
            "response.created",
            json!({ "response": object(a, false) }),
        ));
        events.push(event(
            "response.in_progress",
            json!({ "response": object(a, false) }),
        ));
        for (index, item) in output(a).into_iter().enumerate() {
            let id = item["id"].clone();
            let mut added = item.clone();
            match item["type"].as_str() {
                Some("message") => added["content"] = json!([]),
                Some("function_call") => added["arguments"] = "".into(),
                _ => {}
            }
            if added.get("status").is_some() {
                added["status"] = "in_progress".into();
            }
            events.push(event(
                "response.output_item.added",
                json!({ "output_index": index, "item": added }),
            ));
            let at = json!({ "item_id": id, "output_index": index });
            let with = |extra: Value| {
                let mut v = at.clone();
                if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
                    o.extend(e);
                }
                v
            };
            match item["type"].as_str() {
                Some("message") => {
                    let text = item["content"][0]["text"].clone();
                    events.push(event(
                        "response.content_part.added",
                        with(json!({ "content_index": 0, "part": text_part("") })),
                    ));
                    for p in pieces {
                        events.push(event(
                            "response.output_text.delta",
                            with(json!({ "content_index": 0, "delta": p, "logprobs": [] })),
                        ));
                    }
                    events.push(event(
                        "response.output_text.done",
                        with(json!({ "content_index": 0, "text": text, "logprobs": [] })),
                    ));
                    events.push(event(
                        "response.content_part.done",
                        with(json!({ "content_index": 0, "part": item["content"][0] })),
                    ));
                }
                Some("function_call") => {
                    for p in pieces {
                        events.push(event(
                            "response.function_call_arguments.delta",
                            with(json!({ "delta": p })),
                        ));
                    }
                    events.push(event(
                        "response.function_call_arguments.done",
                        with(json!({ "arguments": item["arguments"], "name": item["name"] })),
                    ));
                }
                _ => {}
            }
            events.push(event(
                "response.output_item.done",
                json!({ "output_index": index, "item": item }),
            ));
        }
        let end = if incomplete(a) {
            "response.incomplete"
        } else {
            "response.completed"
        };
        events.push(event(end, json!({ "response": object(a, true) })));
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

    const RESPONSES: Endpoint = Endpoint::Responses;

    fn tool() -> Value {
        json!({ "type": "function", "name": "get_weather", "strict": true, "parameters": {
            "type": "object", "required": ["city"], "properties": { "city": { "type": "string" } } } })
    }

    #[test]
    fn a_complete_response_has_its_items_and_usage_details() {
        let body = json!({ "model": "o4-mini", "input": "hi" });
        let v = full(RESPONSES, &body);
        assert_eq!(
            (&v["object"], &v["status"]),
            (&json!("response"), &json!("completed"))
        );
        assert_eq!(
            v["output"][0]["type"], "reasoning",
            "reasoning models show their reasoning item"
        );
        assert_eq!(v["output"][0]["summary"], json!([]));
        let message = &v["output"][1];
        assert_eq!(
            (&message["type"], &message["role"]),
            (&json!("message"), &json!("assistant"))
        );
        assert_eq!(message["content"][0]["type"], "output_text");
        assert!(!message["content"][0]["text"].as_str().unwrap().is_empty());
        let u = &v["usage"];
        assert_eq!(u["output_tokens"], outputs(RESPONSES, &body, 1));
        assert_eq!(u["input_tokens_details"]["cached_tokens"], 0);
        assert_eq!(
            u["output_tokens_details"]["reasoning_tokens"].as_u64(),
            Some(u["output_tokens"].as_u64().unwrap() / 2)
        );
        let plain = full(
            RESPONSES,
            &json!({ "model": "gpt-4.1-mini", "input": "hi" }),
        );
        assert_eq!(plain["output"][0]["type"], "message");
        assert_eq!(
            plain["usage"]["output_tokens_details"]["reasoning_tokens"],
            0
        );
    }

    #[test]
    fn function_tools_and_text_formats_are_honoured() {
        let v = full(
            RESPONSES,
            &json!({ "model": "m", "input": "weather?", "tools": [tool()] }),
        );
        let call = &v["output"][0];
        assert_eq!(
            (&call["type"], &call["name"]),
            (&json!("function_call"), &json!("get_weather"))
        );
        assert!(call["call_id"].as_str().unwrap().starts_with("call_"));
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert!(args["city"].is_string());
        assert_eq!(
            v["tools"],
            json!([tool()]),
            "the request's tools are echoed"
        );
        let answered = full(
            RESPONSES,
            &json!({ "model": "m", "tools": [tool()], "input": [
            { "role": "user", "content": "weather?" },
            { "type": "function_call_output", "call_id": "call_1", "output": "sunny" }] }),
        );
        assert_eq!(answered["output"][0]["type"], "message");
        let format = json!({ "type": "json_schema", "name": "w", "strict": true, "schema": {
            "type": "object", "required": ["n"], "properties": { "n": { "type": "integer" } } } });
        let v = full(
            RESPONSES,
            &json!({ "model": "m", "input": "x", "text": { "format": format } }),
        );
        let text: Value =
            serde_json::from_str(v["output"][0]["content"][0]["text"].as_str().unwrap()).unwrap();
        assert!(text["n"].is_i64());
        assert_eq!(v["text"]["format"], format);
        let capped = full(
            RESPONSES,
            &json!({ "model": "m", "input": "x", "max_output_tokens": 3 }),
        );
        assert_eq!(capped["status"], "incomplete");
        assert_eq!(capped["incomplete_details"]["reason"], "max_output_tokens");
    }

    /// The event types of a stream, checking that sequence numbers count from 0 and the response keeps its id.
    fn kinds(evs: &[(Option<String>, Value)]) -> Vec<String> {
        let id = &evs[0].1["response"]["id"];
        for (n, (name, data)) in evs.iter().enumerate() {
            assert_eq!(name.as_deref(), data["type"].as_str());
            assert_eq!(data["sequence_number"], n);
            if let Some(r) = data.get("response") {
                assert_eq!(&r["id"], id);
            }
        }
        evs.iter().map(|(n, _)| n.clone().unwrap()).collect()
    }

    #[tokio::test]
    async fn a_text_stream_has_every_event_the_sdk_accumulates() {
        let body = json!({ "model": "o3", "input": "hi", "stream": true });
        let evs = events(RESPONSES, &body).await;
        let kinds = kinds(&evs);
        let deltas = kinds
            .iter()
            .filter(|k| *k == "response.output_text.delta")
            .count();
        let mut expected: Vec<&str> = vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
        ];
        expected.extend(std::iter::repeat_n("response.output_text.delta", deltas));
        expected.extend([
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]);
        assert_eq!(kinds, expected);
        assert!(deltas > 0);
        let message = &evs[4].1;
        assert_eq!(
            (&message["output_index"], &message["item"]["status"]),
            (&json!(1), &json!("in_progress"))
        );
        assert_eq!(message["item"]["content"], json!([]));
        let text: String = evs
            .iter()
            .filter_map(|(_, d)| d["delta"].as_str())
            .collect();
        let done = &evs[evs.len() - 4].1;
        assert_eq!(done["text"], text);
        assert_eq!(done["item_id"], message["item"]["id"]);
        let completed = &evs.last().unwrap().1["response"];
        assert_eq!(completed["output"][1]["content"][0]["text"], text);
        assert_eq!(
            completed["usage"]["output_tokens"],
            outputs(RESPONSES, &body, 1)
        );
        assert_eq!(evs[0].1["response"]["status"], "in_progress");
    }

    #[tokio::test]
    async fn a_function_call_streams_its_arguments() {
        let evs = events(
            RESPONSES,
            &json!({ "model": "m", "input": "w?", "tools": [tool()], "stream": true }),
        )
        .await;
        let kinds = kinds(&evs);
        assert_eq!(kinds[2], "response.output_item.added");
        assert_eq!(evs[2].1["item"]["arguments"], "");
        assert_eq!(
            kinds[kinds.len() - 3],
            "response.function_call_arguments.done"
        );
        let args: String = evs
            .iter()
            .filter(|(n, _)| n.as_deref() == Some("response.function_call_arguments.delta"))
            .map(|(_, d)| d["delta"].as_str().unwrap())
            .collect();
        assert_eq!(evs[evs.len() - 3].1["arguments"], args);
        assert_eq!(evs[evs.len() - 3].1["name"], "get_weather");
        assert!(serde_json::from_str::<Value>(&args).unwrap()["city"].is_string());
        assert_eq!(evs[evs.len() - 2].1["item"]["status"], "completed");
    }
}
