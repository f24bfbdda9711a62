//! Round trips (a request or answer translated there and back keeps every field the translation carries) and
//! golden streams built from the providers' documented examples (`tests/fixtures/translate/`).

use serde_json::{json, Value};

use super::stream::Translator;
use super::*;

fn openai_request() -> Value {
    json!({
        "model": "claude-haiku-4-5",
        "messages": [
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": [
                { "type": "text", "text": "What is in these images?" },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } },
                { "type": "image_url", "image_url": { "url": "https://example.com/cat.png" } },
            ] },
            { "role": "assistant", "content": null, "tool_calls": [
                { "id": "call_1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
                { "id": "call_2", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}" } },
            ] },
            { "role": "tool", "tool_call_id": "call_1", "content": "18C and sunny" },
            { "role": "tool", "tool_call_id": "call_2", "content": "2C and snow" },
            { "role": "assistant", "content": "Paris is warmer." },
            { "role": "user", "content": "Thanks" },
        ],
        "tools": [{ "type": "function", "function": { "name": "get_weather", "description": "Weather by city",
            "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } }],
        "tool_choice": { "type": "function", "function": { "name": "get_weather" } },
        "parallel_tool_calls": false,
        "stop": ["END"],
        "max_completion_tokens": 300,
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "u-42",
        "stream": true,
        "stream_options": { "include_usage": true },
    })
}

#[test]
fn an_openai_request_goes_to_anthropic_and_back_unchanged() {
    let original = openai_request();
    let anthropic = to_anthropic::request(original.clone(), 4096).unwrap();
    assert_eq!(anthropic["system"], "Be brief.");
    assert_eq!(anthropic["max_tokens"], 300);
    assert_eq!(anthropic["stop_sequences"], json!(["END"]));
    assert_eq!(anthropic["metadata"], json!({ "user_id": "u-42" }));
    assert_eq!(
        anthropic["tool_choice"],
        json!({ "type": "tool", "name": "get_weather", "disable_parallel_tool_use": true })
    );
    assert_eq!(
        anthropic["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );
    let m = &anthropic["messages"];
    assert_eq!(
        m[0]["content"][1]["source"],
        json!({ "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" })
    );
    assert_eq!(
        m[0]["content"][2]["source"],
        json!({ "type": "url", "url": "https://example.com/cat.png" })
    );
    assert_eq!(
        m[1]["content"][1],
        json!({ "type": "tool_use", "id": "call_2", "name": "get_weather", "input": { "city": "Oslo" } })
    );
    // Both tool results answer one assistant turn, so they are one user turn.
    assert_eq!(m[2]["content"].as_array().unwrap().len(), 2);
    assert_eq!(m[2]["content"][1]["tool_use_id"], "call_2");
    assert_eq!(m.as_array().unwrap().len(), 5);
    assert!(anthropic.get("stream_options").is_none());

    let back = to_openai::request(anthropic).unwrap();
    assert_eq!(back, original);
}

fn anthropic_request() -> Value {
    json!({
        "model": "gpt-4.1-nano",
        "max_tokens": 256,
        "system": "Be brief.",
        "messages": [
            { "role": "user", "content": [
                { "type": "text", "text": "Look" },
                { "type": "image", "source": { "type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ" } },
                { "type": "image", "source": { "type": "url", "url": "https://example.com/dog.jpg" } },
            ] },
            { "role": "assistant", "content": [
                { "type": "text", "text": "Checking." },
                { "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": { "city": "Paris" } },
            ] },
            { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "toolu_1", "content": "18C" }] },
            { "role": "assistant", "content": "Sunny." },
            { "role": "user", "content": "Thanks" },
        ],
        "tools": [{ "name": "get_weather", "description": "Weather",
            "input_schema": { "type": "object", "properties": { "city": { "type": "string" } } } }],
        "tool_choice": { "type": "any", "disable_parallel_tool_use": true },
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "top_p": 0.8,
        "metadata": { "user_id": "u-7" },
        "stream": true,
    })
}

#[test]
fn an_anthropic_request_goes_to_openai_and_back_unchanged() {
    let original = anthropic_request();
    let openai = to_openai::request(original.clone()).unwrap();
    assert_eq!(
        openai["messages"][0],
        json!({ "role": "system", "content": "Be brief." })
    );
    assert_eq!(openai["max_completion_tokens"], 256);
    assert_eq!(openai["stop"], json!(["END"]));
    assert_eq!(openai["user"], "u-7");
    assert_eq!(openai["tool_choice"], "required");
    assert_eq!(openai["parallel_tool_calls"], false);
    assert_eq!(
        openai["stream_options"],
        json!({ "include_usage": true }),
        "the gateway bills the usage chunk"
    );
    assert_eq!(
        openai["tools"][0]["function"]["parameters"]["type"],
        "object"
    );
    let m = &openai["messages"];
    assert_eq!(
        m[1]["content"][1]["image_url"]["url"],
        "data:image/jpeg;base64,/9j/4AAQ"
    );
    assert_eq!(
        m[1]["content"][2]["image_url"]["url"],
        "https://example.com/dog.jpg"
    );
    assert_eq!(m[2]["content"], "Checking.");
    assert_eq!(
        m[2]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(
        m[3],
        json!({ "role": "tool", "tool_call_id": "toolu_1", "content": "18C" })
    );

    let back = to_anthropic::request(openai, 4096).unwrap();
    assert_eq!(back, original);
}

#[test]
fn anthropic_gets_a_max_tokens_and_openai_json_mode_is_refused_by_name() {
    let mut r = openai_request();
    r.as_object_mut().unwrap().remove("max_completion_tokens");
    assert_eq!(
        to_anthropic::request(r.clone(), 64_000).unwrap()["max_tokens"],
        64_000
    );
    r["max_tokens"] = 12.into();
    assert_eq!(to_anthropic::request(r, 64_000).unwrap()["max_tokens"], 12);
    let refused = |extra: Value, param: &str| {
        let mut r = openai_request();
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        let e = to_anthropic::request(r, 10).unwrap_err();
        assert!(e.to_string().contains(&format!("'{param}'")), "{e}");
        let api: ApiError = e.into();
        assert_eq!(
            (api.status.as_u16(), api.code),
            (400, "untranslatable_parameter")
        );
    };
    refused(json!({ "n": 2 }), "n");
    refused(json!({ "logprobs": true }), "logprobs");
    refused(json!({ "presence_penalty": 0.5 }), "presence_penalty");
    refused(
        json!({ "response_format": { "type": "json_object" } }),
        "response_format",
    );
    refused(json!({ "audio": { "voice": "alloy" } }), "audio");
    refused(json!({ "temperature": 1.5 }), "temperature");
    refused(json!({ "seed": 7 }), "seed");
    // The defaults translate to nothing.
    let mut r = openai_request();
    r["n"] = 1.into();
    r["presence_penalty"] = 0.into();
    r["response_format"] = json!({ "type": "text" });
    assert!(to_anthropic::request(r, 10).is_ok());

    let mut a = anthropic_request();
    a["top_k"] = 5.into();
    assert!(to_openai::request(a)
        .unwrap_err()
        .to_string()
        .contains("'top_k'"));
    let mut a = anthropic_request();
    a["thinking"] = json!({ "type": "enabled", "budget_tokens": 1024 });
    assert!(to_openai::request(a)
        .unwrap_err()
        .to_string()
        .contains("'thinking'"));
}

#[test]
fn tool_choices_map_both_ways() {
    for (openai, anthropic) in [
        (json!("auto"), json!({ "type": "auto" })),
        (json!("none"), json!({ "type": "none" })),
        (json!("required"), json!({ "type": "any" })),
    ] {
        let mut r = openai_request();
        r["tool_choice"] = openai.clone();
        r.as_object_mut().unwrap().remove("parallel_tool_calls");
        let a = to_anthropic::request(r, 10).unwrap();
        assert_eq!(a["tool_choice"], anthropic);
        assert_eq!(to_openai::request(a).unwrap()["tool_choice"], openai);
    }
}

fn anthropic_message() -> Value {
    json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [
            { "type": "text", "text": "Let me check." },
            { "type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": { "city": "Paris" } },
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": { "input_tokens": 30, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1200, "output_tokens": 25 },
    })
}

#[test]
fn an_anthropic_answer_goes_to_openai_and_back_unchanged() {
    let original = anthropic_message();
    let chat = to_openai::response(&original);
    assert_eq!(chat["id"], original["id"]);
    assert_eq!(chat["object"], "chat.completion");
    let c = &chat["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls");
    assert_eq!(c["message"]["content"], "Let me check.");
    assert_eq!(
        c["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(chat["usage"]["prompt_tokens"], 1230);
    assert_eq!(
        chat["usage"]["prompt_tokens_details"]["cached_tokens"],
        1200
    );
    assert_eq!(chat["usage"]["total_tokens"], 1255);
    assert_eq!(to_anthropic::response(&chat), original);
}

#[test]
fn an_openai_answer_goes_to_anthropic_and_back_unchanged() {
    let original = json!({
        "id": "chatcmpl-123", "object": "chat.completion", "created": 1, "model": "gpt-4.1-nano",
        "choices": [{ "index": 0, "logprobs": null, "finish_reason": "length",
            "message": { "role": "assistant", "content": "Hello", "refusal": null } }],
        "usage": { "prompt_tokens": 2000, "completion_tokens": 9, "total_tokens": 2009,
            "prompt_tokens_details": { "cached_tokens": 1536 }, "completion_tokens_details": { "reasoning_tokens": 0 } },
    });
    let message = to_anthropic::response(&original);
    assert_eq!(message["stop_reason"], "max_tokens");
    assert_eq!(
        message["content"],
        json!([{ "type": "text", "text": "Hello" }])
    );
    assert_eq!(
        message["usage"],
        json!({ "input_tokens": 464, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1536, "output_tokens": 9 })
    );
    let mut back = to_openai::response(&message);
    back["created"] = 1.into();
    assert_eq!(back, original);
}

#[test]
fn stop_reasons_map_both_ways() {
    for (anthropic, openai) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        assert_eq!(to_openai::finish_reason(anthropic), openai);
    }
    for (openai, anthropic) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ] {
        assert_eq!(to_anthropic::stop_reason(openai), anthropic);
    }
}

#[test]
fn an_upstream_error_takes_the_clients_shape() {
    let t = Translation {
        client: Endpoint::ChatCompletions,
        upstream: Endpoint::Messages,
        include_usage: false,
    };
    let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let e = t.error(StatusCode::from_u16(529).unwrap(), body);
    let v = e.body();
    assert_eq!(v["error"]["type"], "api_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Overloaded"));
    let e = t.error(
        StatusCode::TOO_MANY_REQUESTS,
        br#"{"error":{"message":"slow down"}}"#,
    );
    let v = e.shaped(crate::error::ErrorShape::Anthropic).body();
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

/// The fixture, translated, with the `created` times (the clock's) set to 0.
pub(super) fn translate_fixture(name: &str, mut t: Translator, split: Option<usize>) -> String {
    let path = format!(
        "{}/tests/fixtures/translate/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let input = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    match split {
        Some(n) => {
            for c in input.chunks(n) {
                out.extend_from_slice(&t.feed(c));
            }
        }
        None => out.extend_from_slice(&t.feed(&input)),
    }
    out.extend_from_slice(&t.finish());
    let text = String::from_utf8(out).unwrap();
    text.lines()
        .map(|l| match l.strip_prefix("data: ") {
            Some(d) if d.starts_with('{') => {
                let mut v: Value = serde_json::from_str(d).unwrap();
                if v.get("created").is_some() {
                    v["created"] = 0.into();
                }
                format!("data: {v}")
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compares with the golden file; `SPENDGATE_UPDATE_GOLDEN=1` writes it instead (then review the diff).
pub(super) fn golden(name: &str, translated: &str) {
    let path = format!(
        "{}/tests/fixtures/translate/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    if std::env::var_os("SPENDGATE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, translated).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(translated, want, "{name}");
}

#[test]
fn golden_streams_translate_alike_however_they_are_split() {
    type Make = fn() -> Translator;
    let cases: [(&str, &str, Make); 5] = [
        ("anthropic_text.sse", "anthropic_text.openai.golden", || {
            Translator::to_openai(true)
        }),
        (
            "anthropic_text.sse",
            "anthropic_text.openai_no_usage.golden",
            || Translator::to_openai(false),
        ),
        (
            "anthropic_tool_use.sse",
            "anthropic_tool_use.openai.golden",
            || Translator::to_openai(true),
        ),
        (
            "openai_text.sse",
            "openai_text.anthropic.golden",
            Translator::to_anthropic,
        ),
        (
            "openai_tool_calls.sse",
            "openai_tool_calls.anthropic.golden",
            Translator::to_anthropic,
        ),
    ];
    for (input, output, make) in cases {
        let whole = translate_fixture(input, make(), None);
        golden(output, &whole);
        for n in [1, 7, 64] {
            assert_eq!(
                translate_fixture(input, make(), Some(n)),
                whole,
                "{input} in pieces of {n}"
            );
        }
    }
}

#[test]
fn a_translated_stream_reads_back_as_the_upstreams_answer() {
    // The chunks of Anthropic's tool-use example, read as an OpenAI client would.
    let out = translate_fixture("anthropic_tool_use.sse", Translator::to_openai(true), None);
    let mut text = String::new();
    let mut args = String::new();
    let mut usage = Value::Null;
    let mut finish = Value::Null;
    for l in out.lines() {
        let Some(d) = l.strip_prefix("data: ").filter(|d| d.starts_with('{')) else {
            continue;
        };
        let v: Value = serde_json::from_str(d).unwrap();
        if let Some(c) = v["choices"][0].as_object() {
            text.push_str(c["delta"]["content"].as_str().unwrap_or(""));
            if let Some(a) = c["delta"]["tool_calls"][0]["function"]["arguments"].as_str() {
                args.push_str(a);
            }
            if !c["finish_reason"].is_null() {
                finish = c["finish_reason"].clone();
            }
        }
        if v["usage"].is_object() {
            usage = v["usage"].clone();
        }
    }
    assert_eq!(text, "Okay, let's check the weather.");
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({ "location": "San Francisco, CA" })
    );
    assert_eq!(finish, "tool_calls");
    assert_eq!(usage["prompt_tokens"], 472 + 100 + 20);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 100);
    assert_eq!(usage["completion_tokens"], 89);
    assert!(out.trim_end().ends_with("data: [DONE]"));
}
