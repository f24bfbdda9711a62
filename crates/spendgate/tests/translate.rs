//! One API for every model: a Claude model called through OpenAI's `/v1/chat/completions` and a GPT model
//! through Anthropic's `/v1/messages`, with the mock (which speaks each provider's API only, as the providers
//! do) as upstream. Each answer comes back in the client's API, and each spend log is billed exactly from the
//! usage the upstream reported (tokens x catalog price), records the API the client spoke and the one its
//! provider was reached through.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use common::{catalog_cost, picos, request_id, TestServer};
use serde_json::{json, Value};

/// The `data:` payloads of a server-sent event stream, `[DONE]` as a string.
fn data_of(sse: &str) -> Vec<Value> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_string())))
        .collect()
}

/// Checks a spend log of a Claude model answered through chat completions against the OpenAI usage the client
/// saw.
fn assert_billed_as_seen(log: &Value, usage: &Value, endpoint: &str, upstream: &str) {
    assert_eq!(log["endpoint"], endpoint, "{log}");
    assert_eq!(log["upstream_api"], upstream, "{log}");
    assert_eq!(log["usage_source"], "reported", "{log}");
    assert_eq!(log["status"], "ok", "{log}");
    if endpoint == "chat.completions" {
        assert_eq!(log["input_tokens"], usage["prompt_tokens"], "{log} {usage}");
        assert_eq!(log["output_tokens"], usage["completion_tokens"]);
        assert_eq!(
            log["cached_input_tokens"],
            usage["prompt_tokens_details"]["cached_tokens"]
        );
    } else {
        let n = |k: &str| usage[k].as_u64().unwrap_or(0);
        assert_eq!(
            log["input_tokens"].as_u64().unwrap(),
            n("input_tokens") + n("cache_read_input_tokens") + n("cache_creation_input_tokens"),
            "{log} {usage}"
        );
        assert_eq!(log["output_tokens"], usage["output_tokens"]);
        assert_eq!(
            log["cached_input_tokens"].as_u64().unwrap(),
            n("cache_read_input_tokens")
        );
    }
    assert!(log["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(picos(&log["cost"]), catalog_cost(log), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_model_answers_on_chat_completions_plain_and_streamed() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("ana", Some("apps")).await;
    let body = json!({
        "model": "claude-haiku-4-5",
        "messages": [
            { "role": "system", "content": "Answer in one line." },
            { "role": "user", "content": "Name three rivers." },
        ],
        "max_completion_tokens": 100,
        "stop": ["\n\n"],
    });
    let res = s.chat(&key, body.clone()).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let id = request_id(&res);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(!v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["provider"], "anthropic");
    assert_eq!(log["model"], "claude-haiku-4-5");
    assert_billed_as_seen(&log, &v["usage"], "chat.completions", "messages");
    // The request's page names both APIs.
    let cookie = s.login("test-admin-token").await;
    let page = s.page(&format!("/requests/{id}"), &cookie).await;
    assert!(
        page.contains("chat.completions</span> (translated to the provider's messages API)"),
        "{page}"
    );

    // Streamed, with the usage chunk asked for.
    let mut streamed = body.clone();
    streamed["stream"] = true.into();
    streamed["stream_options"] = json!({ "include_usage": true });
    let res = s.chat(&key, streamed.clone()).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let id = request_id(&res);
    let events = data_of(&res.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = &events[..events.len() - 1];
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"),
        "{chunks:?}"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!text.is_empty());
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["stream"], true);
    assert_billed_as_seen(&log, &usage_chunk["usage"], "chat.completions", "messages");

    // Without it, no chunk carries usage, and every chunk has a choice.
    streamed.as_object_mut().unwrap().remove("stream_options");
    let res = s.chat(&key, streamed).await;
    let id = request_id(&res);
    let events = data_of(&res.text().await.unwrap());
    assert!(events
        .iter()
        .all(|e| e == "[DONE]" || e["choices"].as_array().is_some_and(|c| c.len() == 1)));
    assert!(events.iter().all(|e| e.get("usage").is_none()));
    let log = s.wait_for_log(&id).await;
    assert_eq!(
        log["usage_source"], "reported",
        "billed from Anthropic's usage all the same"
    );
    assert_eq!(picos(&log["cost"]), catalog_cost(&log));
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_model_calls_tools_through_chat_completions() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("ana", Some("apps")).await;
    let tools = json!([{ "type": "function", "function": { "name": "get_weather", "description": "Weather by city",
        "parameters": { "type": "object", "required": ["city"], "properties": { "city": { "type": "string" } } } } }]);
    let mut body = json!({
        "model": "claude-haiku-4-5",
        "messages": [{ "role": "user", "content": "Weather in Paris?" }],
        "tools": tools,
        "tool_choice": "required",
    });
    for stream in [false, true] {
        body["stream"] = stream.into();
        body["stream_options"] = if stream {
            json!({ "include_usage": true })
        } else {
            Value::Null
        };
        let res = s.chat(&key, body.clone()).await;
        assert_eq!(res.status(), 200);
        let id = request_id(&res);
        let (call, usage, finish) = if stream {
            let events = data_of(&res.text().await.unwrap());
            let mut call = json!({ "id": null, "name": null, "arguments": "" });
            let mut finish = Value::Null;
            for e in events.iter().filter(|e| e.is_object()) {
                let d = &e["choices"][0]["delta"]["tool_calls"][0];
                if d["id"].is_string() {
                    call["id"] = d["id"].clone();
                    call["name"] = d["function"]["name"].clone();
                }
                if let Some(a) = d["function"]["arguments"].as_str() {
                    let sofar = call["arguments"].as_str().unwrap().to_string();
                    call["arguments"] = (sofar + a).into();
                }
                if !e["choices"][0]["finish_reason"].is_null() {
                    finish = e["choices"][0]["finish_reason"].clone();
                }
            }
            (call, events[events.len() - 2]["usage"].clone(), finish)
        } else {
            let v: Value = res.json().await.unwrap();
            let c = &v["choices"][0]["message"]["tool_calls"][0];
            let call = json!({ "id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"] });
            (
                call,
                v["usage"].clone(),
                v["choices"][0]["finish_reason"].clone(),
            )
        };
        assert_eq!(finish, "tool_calls", "stream {stream}");
        assert_eq!(call["name"], "get_weather");
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert!(args["city"].is_string(), "{args}");
        let log = s.wait_for_log(&id).await;
        assert_billed_as_seen(&log, &usage, "chat.completions", "messages");

        // The tool's result goes back as a tool message, and the model answers in text.
        let follow = json!({
            "model": "claude-haiku-4-5",
            "messages": [
                { "role": "user", "content": "Weather in Paris?" },
                { "role": "assistant", "content": null, "tool_calls": [{ "id": call["id"], "type": "function",
                    "function": { "name": "get_weather", "arguments": call["arguments"] } }] },
                { "role": "tool", "tool_call_id": call["id"], "content": "18C and sunny" },
            ],
            "tools": tools,
        });
        let res = s.chat(&key, follow).await;
        assert_eq!(res.status(), 200);
        let id = request_id(&res);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
        assert!(v["choices"][0]["message"]["content"].is_string());
        let log = s.wait_for_log(&id).await;
        assert_billed_as_seen(&log, &v["usage"], "chat.completions", "messages");
    }
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpt_model_answers_on_messages_plain_and_streamed() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("bo", Some("research")).await;
    let body = json!({
        "model": "gpt-4.1-nano",
        "max_tokens": 200,
        "system": "Be brief.",
        "messages": [{ "role": "user", "content": "Name three rivers." }],
    });
    let res = s.messages(&key, body.clone()).await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["stop_reason"], "end_turn");
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["provider"], "openai");
    assert_billed_as_seen(&log, &v["usage"], "messages", "chat.completions");

    let mut streamed = body;
    streamed["stream"] = true.into();
    let res = s.messages(&key, streamed).await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let sse = res.text().await.unwrap();
    let names: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    assert!(names.contains(&"content_block_delta"));
    let events = data_of(&sse);
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    let log = s.wait_for_log(&id).await;
    assert_billed_as_seen(&log, &delta["usage"], "messages", "chat.completions");
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_that_cannot_be_translated_is_refused_by_name_before_any_upstream_call() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("cy", None).await;
    let res = s
        .chat(
            &key,
            json!({ "model": "claude-haiku-4-5", "n": 2, "messages": [{ "role": "user", "content": "hi" }] }),
        )
        .await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "untranslatable_parameter", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("'n'"),
        "{v}"
    );
    let res = s
        .messages(
            &key,
            json!({ "model": "gpt-4.1-nano", "max_tokens": 10, "top_k": 5,
                "messages": [{ "role": "user", "content": "hi" }] }),
        )
        .await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["type"], "error", "in Anthropic's shape: {v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("'top_k'"),
        "{v}"
    );
    // Neither reached a provider, so neither is billed or logged.
    assert!(s.all_spend_logs("window=1h").await.is_empty());
    s.running.stop().await.unwrap();
}
