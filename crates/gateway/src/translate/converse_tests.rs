//! Messages and chat completions <-> Bedrock's Converse: requests, answers, refusals, a round trip through the
//! mock, and golden streams built from ConverseStream answers (`tests/fixtures/eventstream/converse_*`).

use serde_json::{json, Value};

use super::stream::Translator;
use super::tests::{golden, translate_fixture};
use super::*;

fn messages_request() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "stream": true,
        "metadata": { "user_id": "u-42" },
        "system": [{ "type": "text", "text": "Be brief.", "cache_control": { "type": "ephemeral", "ttl": "1h" } }],
        "thinking": { "type": "enabled", "budget_tokens": 1024 },
        "messages": [
            { "role": "user", "content": [
                { "type": "text", "text": "Weather in these?" },
                { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" },
                  "cache_control": { "type": "ephemeral" } },
            ] },
            { "role": "assistant", "content": [
                { "type": "thinking", "thinking": "Call the tool.", "signature": "sig==" },
                { "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": { "city": "Paris" } },
            ] },
            { "role": "user", "content": [
                { "type": "tool_result", "tool_use_id": "toolu_1", "content": "18C", "is_error": false },
                { "type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                  "content": [{ "type": "text", "text": "timeout" }] },
            ] },
            { "role": "assistant", "content": "Paris is warm." },
        ],
        "tools": [{ "name": "get_weather", "description": "Weather by city",
            "input_schema": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] },
            "cache_control": { "type": "ephemeral" } }],
        "tool_choice": { "type": "tool", "name": "get_weather" },
    })
}

#[test]
fn a_messages_request_becomes_converse_field_by_field() {
    let c = converse::request_from_messages(messages_request()).unwrap();
    assert_eq!(
        c,
        json!({
            "system": [{ "text": "Be brief." }, { "cachePoint": { "type": "default", "ttl": "1h" } }],
            "messages": [
                { "role": "user", "content": [
                    { "text": "Weather in these?" },
                    { "image": { "format": "png", "source": { "bytes": "iVBORw0KGgo=" } } },
                    { "cachePoint": { "type": "default" } },
                ] },
                { "role": "assistant", "content": [
                    { "reasoningContent": { "reasoningText": { "text": "Call the tool.", "signature": "sig==" } } },
                    { "toolUse": { "toolUseId": "toolu_1", "name": "get_weather", "input": { "city": "Paris" } } },
                ] },
                { "role": "user", "content": [
                    { "toolResult": { "toolUseId": "toolu_1", "content": [{ "text": "18C" }] } },
                    { "toolResult": { "toolUseId": "toolu_2", "content": [{ "text": "timeout" }], "status": "error" } },
                ] },
                { "role": "assistant", "content": [{ "text": "Paris is warm." }] },
            ],
            "inferenceConfig": { "maxTokens": 512, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"] },
            "toolConfig": {
                "tools": [
                    { "toolSpec": { "name": "get_weather", "description": "Weather by city", "inputSchema": { "json": {
                        "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } } },
                    { "cachePoint": { "type": "default" } },
                ],
                "toolChoice": { "tool": { "name": "get_weather" } },
            },
            "additionalModelRequestFields": { "thinking": { "type": "enabled", "budget_tokens": 1024 } },
            "requestMetadata": { "user_id": "u-42" },
        })
    );
}

#[test]
fn what_converse_cannot_say_is_refused_by_name() {
    let cases: [(&str, Value); 8] = [
        ("top_k", json!({ "top_k": 5 })),
        (
            "tool_choice",
            json!({ "tools": [], "tool_choice": { "type": "none" } }),
        ),
        (
            "tool_choice.disable_parallel_tool_use",
            json!({ "tools": [], "tool_choice": { "type": "auto", "disable_parallel_tool_use": true } }),
        ),
        (
            "messages[0].content[0].source",
            json!({ "messages": [{ "role": "user", "content": [
                { "type": "image", "source": { "type": "url", "url": "https://example.com/a.png" } }] }] }),
        ),
        (
            "messages[0].content[0]",
            json!({ "messages": [{ "role": "user", "content": [
                { "type": "document", "source": { "type": "base64", "media_type": "application/pdf", "data": "JVBE" } }] }] }),
        ),
        (
            "tools[0].type",
            json!({ "tools": [{ "type": "web_search_20250305", "name": "web_search" }] }),
        ),
        ("service_tier", json!({ "service_tier": "auto" })),
        (
            "system[0].cache_control.ttl",
            json!({ "system": [{ "type": "text", "text": "x", "cache_control": { "type": "ephemeral", "ttl": "1d" } }] }),
        ),
    ];
    for (param, body) in cases {
        match converse::request_from_messages(body) {
            Err(TranslateError::Untranslatable {
                param: p, target, ..
            }) => {
                assert_eq!(p, param);
                assert!(target.contains("Converse"), "{target}");
            }
            other => panic!("{param}: {other:?}"),
        }
    }
}

fn chat_to_converse() -> Translation {
    Translation {
        client: Endpoint::ChatCompletions,
        upstream: Endpoint::Converse,
        include_usage: true,
    }
}

fn messages_to_converse() -> Translation {
    Translation {
        client: Endpoint::Messages,
        upstream: Endpoint::Converse,
        include_usage: false,
    }
}

/// A chat completion request reaches Converse through Messages: a data: URL's bytes, the output limit, the
/// system prompt; what Messages refuses (`n` > 1) is refused on the way.
#[test]
fn a_chat_request_goes_to_converse_through_messages() {
    let body = json!({
        "model": "claude-sonnet-4-5", "stream": true, "stream_options": { "include_usage": true },
        "max_completion_tokens": 100,
        "messages": [
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": [
                { "type": "text", "text": "What is this?" },
                { "type": "image_url", "image_url": { "url": "data:image/jpeg;base64,/9j/4AAQ" } }] },
        ],
    });
    let out: Value = serde_json::from_slice(
        &chat_to_converse()
            .request(body.to_string().as_bytes(), 4096)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(out["system"], json!([{ "text": "Be brief." }]));
    assert_eq!(out["inferenceConfig"], json!({ "maxTokens": 100 }));
    assert_eq!(
        out["messages"][0]["content"][1],
        json!({ "image": { "format": "jpeg", "source": { "bytes": "/9j/4AAQ" } } })
    );
    assert!(
        out.get("model").is_none() && out.get("stream").is_none(),
        "{out}"
    );
    let e = chat_to_converse()
        .request(
            br#"{"model":"m","n":2,"messages":[{"role":"user","content":"hi"}]}"#,
            4096,
        )
        .unwrap_err();
    assert!(e.message.contains("'n'"), "{}", e.message);
}

fn converse_answer() -> Value {
    json!({
        "output": { "message": { "role": "assistant", "content": [
            { "reasoningContent": { "reasoningText": { "text": "Think.", "signature": "s1" } } },
            { "text": "Checking." },
            { "toolUse": { "toolUseId": "tooluse_1", "name": "get_weather", "input": { "city": "Paris" } } },
        ] } },
        "stopReason": "tool_use",
        "usage": { "inputTokens": 30, "outputTokens": 12, "totalTokens": 2090, "cacheReadInputTokens": 1024,
            "cacheWriteInputTokens": 1024, "cacheDetails": [{ "ttl": "1h", "inputTokens": 1024 }] },
        "metrics": { "latencyMs": 300 },
    })
}

#[test]
fn a_converse_answer_becomes_a_message_and_a_chat_completion() {
    let body = converse_answer().to_string();
    let m: Value = serde_json::from_slice(
        &messages_to_converse()
            .response(body.as_bytes(), "claude-sonnet-4-5")
            .unwrap(),
    )
    .unwrap();
    assert!(m["id"].as_str().unwrap().starts_with("msg_bdrk_"));
    assert_eq!(m["model"], "claude-sonnet-4-5");
    assert_eq!(
        m["content"],
        json!([
            { "type": "thinking", "thinking": "Think.", "signature": "s1" },
            { "type": "text", "text": "Checking." },
            { "type": "tool_use", "id": "tooluse_1", "name": "get_weather", "input": { "city": "Paris" } },
        ])
    );
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(
        m["usage"],
        json!({ "input_tokens": 30, "cache_creation_input_tokens": 1024, "cache_read_input_tokens": 1024,
            "cache_creation": { "ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1024 },
            "output_tokens": 12 })
    );
    let c: Value = serde_json::from_slice(
        &chat_to_converse()
            .response(body.as_bytes(), "claude-sonnet-4-5")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["model"], "claude-sonnet-4-5");
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(c["choices"][0]["message"]["content"], "Checking.");
    assert_eq!(
        c["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(c["usage"]["prompt_tokens"], 30 + 1024 + 1024);
    assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 1024);
    assert_eq!(c["usage"]["completion_tokens"], 12);
    for (bedrock, anthropic) in [
        ("end_turn", "end_turn"),
        ("max_tokens", "max_tokens"),
        ("stop_sequence", "stop_sequence"),
        ("guardrail_intervened", "refusal"),
        ("content_filtered", "refusal"),
        (
            "model_context_window_exceeded",
            "model_context_window_exceeded",
        ),
        ("malformed_tool_use", "end_turn"),
    ] {
        assert_eq!(converse::stop_reason(bedrock), anthropic);
    }
}

/// A Messages request with a tool goes to the mock as Converse, and the mock's answer comes back as a Message
/// calling that tool with input conforming to the schema the client wrote.
#[test]
fn a_tool_call_goes_round_through_the_mocks_converse() {
    use crate::provider::{UpstreamBody, UpstreamRequest};
    let request = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 64,
        "messages": [{ "role": "user", "content": "Weather in Paris?" }],
        "tools": [{ "name": "get_weather", "input_schema": { "type": "object",
            "properties": { "city": { "type": "string" }, "days": { "type": "integer" } }, "required": ["city", "days"] } }],
        "tool_choice": { "type": "any" },
    });
    let t = messages_to_converse();
    let body = t.request(request.to_string().as_bytes(), 4096).unwrap();
    let mock = crate::providers::MockProvider::new(crate::providers::MockConfig::default());
    let up = mock
        .respond(&UpstreamRequest {
            endpoint: Endpoint::Converse,
            model: "anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
            stream: false,
            body,
            headers: Vec::new(),
        })
        .unwrap();
    let UpstreamBody::Full(answer) = up.body else {
        panic!("a whole answer was expected")
    };
    let m: Value =
        serde_json::from_slice(&t.response(&answer, "claude-sonnet-4-5").unwrap()).unwrap();
    assert_eq!(m["stop_reason"], "tool_use");
    let call = &m["content"][0];
    assert_eq!(
        (call["type"].as_str(), call["name"].as_str()),
        (Some("tool_use"), Some("get_weather"))
    );
    assert!(
        call["input"]["city"].is_string() && call["input"]["days"].is_i64(),
        "{call}"
    );
    assert!(m["usage"]["output_tokens"].as_u64().unwrap() > 0);
}

/// The translated stream with each Message id (made up per answer: Converse has none) set to one value.
fn converse_stream(name: &str, make: fn() -> Translator, split: Option<usize>) -> String {
    let text = translate_fixture(&format!("../eventstream/{name}"), make(), split);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("msg_bdrk_") {
        out.push_str(&rest[..at]);
        out.push_str("msg_bdrk_0");
        rest = rest[at + 9..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
    }
    out.push_str(rest);
    out
}

#[test]
fn golden_converse_streams_translate_alike_however_they_are_split() {
    type Make = fn() -> Translator;
    let cases: [(&str, &str, Make); 5] = [
        (
            "converse_text.eventstream",
            "converse_text.anthropic.golden",
            || Translator::from_converse("claude-sonnet-4-5", None),
        ),
        (
            "converse_text.eventstream",
            "converse_text.openai.golden",
            || Translator::from_converse("claude-sonnet-4-5", Some(true)),
        ),
        (
            "converse_tool_use.eventstream",
            "converse_tool_use.anthropic.golden",
            || Translator::from_converse("claude-sonnet-4-5", None),
        ),
        (
            "converse_tool_use.eventstream",
            "converse_tool_use.openai.golden",
            || Translator::from_converse("claude-sonnet-4-5", Some(false)),
        ),
        (
            "converse_throttled.eventstream",
            "converse_throttled.anthropic.golden",
            || Translator::from_converse("claude-sonnet-4-5", None),
        ),
    ];
    for (input, output, make) in cases {
        let whole = converse_stream(input, make, None);
        golden(output, &whole);
        for n in [1, 7, 64] {
            assert_eq!(
                converse_stream(input, make, Some(n)),
                whole,
                "{input} in pieces of {n}"
            );
        }
    }
}

/// The translated text stream read as an Anthropic client reads it: the text, the stop reason and Bedrock's usage
/// in Anthropic's fields.
#[test]
fn a_translated_converse_stream_reads_back_as_bedrocks_answer() {
    let out = converse_stream(
        "converse_text.eventstream",
        || Translator::from_converse("m", None),
        None,
    );
    let mut text = String::new();
    let mut delta = Value::Null;
    for l in out.lines() {
        let Some(d) = l.strip_prefix("data: ") else {
            continue;
        };
        let v: Value = serde_json::from_str(d).unwrap();
        if v["type"] == "content_block_delta" {
            text.push_str(v["delta"]["text"].as_str().unwrap());
        }
        if v["type"] == "message_delta" {
            delta = v;
        }
    }
    assert_eq!(text, "Hello from Bedrock.");
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["input_tokens"], 22);
    assert_eq!(delta["usage"]["cache_read_input_tokens"], 1024);
    assert_eq!(delta["usage"]["cache_creation_input_tokens"], 1024);
    assert_eq!(delta["usage"]["output_tokens"], 9);
    assert!(out
        .trim_end()
        .ends_with("data: {\"type\":\"message_stop\"}"));
}

/// The features an `anthropic-beta` header turns on reach Converse in the body, beside what the request set.
#[test]
fn anthropic_betas_go_in_the_models_own_fields() {
    let body = json!({ "model": "m", "max_tokens": 10, "thinking": { "type": "enabled", "budget_tokens": 1024 },
        "messages": [{ "role": "user", "content": "hi" }] });
    let out: Value = serde_json::from_slice(
        &messages_to_converse()
            .request_with_betas(
                body.to_string().as_bytes(),
                4096,
                Some("interleaved-thinking-2025-05-14, context-1m-2025-08-07"),
            )
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        out["additionalModelRequestFields"],
        json!({ "thinking": { "type": "enabled", "budget_tokens": 1024 },
            "anthropic_beta": ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"] })
    );
    let plain: Value = serde_json::from_slice(
        &messages_to_converse()
            .request_with_betas(body.to_string().as_bytes(), 4096, None)
            .unwrap(),
    )
    .unwrap();
    assert!(plain["additionalModelRequestFields"]
        .get("anthropic_beta")
        .is_none());
}
