//! Gemini through the Messages pivot: requests keep every listed field, an answer's function call comes back in
//! the client's next request as Gemini sent it (its thought signature included), what has no faithful equivalent
//! is refused by name, and golden streams built from Google's documented examples (the streaming "magic
//! backpack" prompt of ai.google.dev/gemini-api/docs/text-generation, the `get_current_temperature` call of
//! ai.google.dev/gemini-api/docs/function-calling) translate alike however they are split.

use serde_json::{json, Value};

use super::stream::Translator;
use super::tests::{check_goldens, translate_fixture, Golden};
use super::*;

const WEATHER_SCHEMA: &str = r#"{"type":"object","properties":{"location":{"type":"string"}},"required":["location"],"additionalProperties":false}"#;

fn schema() -> Value {
    serde_json::from_str(WEATHER_SCHEMA).unwrap()
}

fn messages_request() -> Value {
    json!({
        "model": "gemini-3-flash-preview",
        "max_tokens": 300,
        "system": [{ "type": "text", "text": "Be brief.", "cache_control": { "type": "ephemeral" } }],
        "messages": [
            { "role": "user", "content": [
                { "type": "text", "text": "What is in this image, and how warm is London?" },
                { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" } },
            ] },
            { "role": "assistant", "content": [
                { "type": "text", "text": "Checking." },
                { "type": "tool_use", "id": "toolu_1__sig__c2lnbmF0dXJl", "name": "get_current_temperature", "input": { "location": "London" } },
            ] },
            { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "toolu_1__sig__c2lnbmF0dXJl", "content": "18C" }] },
            { "role": "assistant", "content": "A cat; London is 18C." },
            { "role": "user", "content": "Thanks" },
        ],
        "tools": [{ "name": "get_current_temperature", "description": "Gets the current temperature for a given location.",
                    "input_schema": schema() }],
        "tool_choice": { "type": "tool", "name": "get_current_temperature" },
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "top_p": 0.8,
        "top_k": 40,
        "stream": true,
    })
}

#[test]
fn a_messages_request_keeps_every_listed_field_in_geminis_shape() {
    let g = gemini::request_from_messages(messages_request()).unwrap();
    assert!(
        g.get("model").is_none() && g.get("stream").is_none(),
        "both go in the URL"
    );
    assert_eq!(
        g["systemInstruction"],
        json!({ "parts": [{ "text": "Be brief." }] })
    );
    assert_eq!(
        g["generationConfig"],
        json!({ "maxOutputTokens": 300, "stopSequences": ["END"], "temperature": 0.3, "topP": 0.8, "topK": 40 })
    );
    assert_eq!(
        g["tools"],
        json!([{ "functionDeclarations": [{ "name": "get_current_temperature",
            "description": "Gets the current temperature for a given location.", "parametersJsonSchema": schema() }] }])
    );
    assert_eq!(
        g["toolConfig"],
        json!({ "functionCallingConfig": { "mode": "ANY", "allowedFunctionNames": ["get_current_temperature"] } })
    );
    let c = &g["contents"];
    assert_eq!(c.as_array().unwrap().len(), 5);
    assert_eq!(
        c[0]["parts"][1],
        json!({ "inlineData": { "mimeType": "image/png", "data": "iVBORw0KGgo=" } })
    );
    assert_eq!(c[1]["role"], "model");
    assert_eq!(
        c[1]["parts"][1],
        json!({ "functionCall": { "name": "get_current_temperature", "args": { "location": "London" } },
                "thoughtSignature": "c2lnbmF0dXJl" }),
        "the signature goes back on its call; the id is not sent"
    );
    assert_eq!(
        c[2],
        json!({ "role": "user", "parts": [{ "functionResponse": {
            "name": "get_current_temperature", "response": { "output": "18C" } } }] })
    );
    assert_eq!(
        c[3],
        json!({ "role": "model", "parts": [{ "text": "A cat; London is 18C." }] })
    );
    // Every tool choice.
    for (choice, mode) in [("auto", "AUTO"), ("any", "ANY"), ("none", "NONE")] {
        let mut r = messages_request();
        r["tool_choice"] = json!({ "type": choice });
        let g = gemini::request_from_messages(r).unwrap();
        assert_eq!(
            g["toolConfig"]["functionCallingConfig"],
            json!({ "mode": mode })
        );
    }
    // An error result is the response's `error`.
    let mut r = messages_request();
    r["messages"][2]["content"][0]["is_error"] = true.into();
    let g = gemini::request_from_messages(r).unwrap();
    assert_eq!(
        g["contents"][2]["parts"][0]["functionResponse"]["response"],
        json!({ "error": "18C" })
    );
}

fn chat_request() -> Value {
    json!({
        "model": "gemini-3-flash-preview",
        "messages": [
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": [
                { "type": "text", "text": "Extract the refund." },
                { "type": "image_url", "image_url": { "url": "data:image/jpeg;base64,/9j/4AAQ" } },
            ] },
        ],
        "tools": [{ "type": "function", "function": { "name": "get_current_temperature", "parameters": schema() } }],
        "tool_choice": "auto",
        "response_format": { "type": "json_schema", "json_schema": { "name": "refund", "strict": true,
            "schema": { "type": "object", "properties": { "ticket": { "type": "string" } } } } },
        "max_completion_tokens": 200,
        "temperature": 1.5,
        "top_p": 0.9,
        "seed": 7,
        "presence_penalty": 0.5,
        "stop": ["END"],
        "n": 1,
        "parallel_tool_calls": true,
        "stream": true,
        "stream_options": { "include_usage": true },
    })
}

#[test]
fn a_chat_request_reaches_gemini_through_the_pivot_with_what_only_gemini_has() {
    let g = gemini::request_from_chat(chat_request(), 4096).unwrap();
    assert_eq!(
        g["systemInstruction"],
        json!({ "parts": [{ "text": "Be brief." }] })
    );
    assert_eq!(
        g["contents"],
        json!([{ "role": "user", "parts": [{ "text": "Extract the refund." },
            { "inlineData": { "mimeType": "image/jpeg", "data": "/9j/4AAQ" } }] }])
    );
    assert_eq!(
        g["generationConfig"],
        json!({ "maxOutputTokens": 200, "stopSequences": ["END"], "topP": 0.9,
            // Carried from the chat request: OpenAI's temperature range is Gemini's, JSON mode and the rest are
            // Gemini's and not the pivot's.
            "temperature": 1.5, "seed": 7, "presencePenalty": 0.5, "responseMimeType": "application/json",
            "responseJsonSchema": { "type": "object", "properties": { "ticket": { "type": "string" } } } })
    );
    assert_eq!(
        g["toolConfig"]["functionCallingConfig"],
        json!({ "mode": "AUTO" })
    );
    assert_eq!(
        g["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"],
        schema()
    );
    // Without an output limit Gemini's own default applies, not the pivot's required one.
    let mut r = chat_request();
    r.as_object_mut().unwrap().remove("max_completion_tokens");
    let g = gemini::request_from_chat(r, 4096).unwrap();
    assert!(
        g["generationConfig"].get("maxOutputTokens").is_none(),
        "{g}"
    );
    let mut r = chat_request();
    r["response_format"] = json!({ "type": "json_object" });
    let g = gemini::request_from_chat(r, 4096).unwrap();
    assert_eq!(
        g["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert!(g["generationConfig"].get("responseJsonSchema").is_none());
}

/// Google's function-calling example as a complete answer of a thinking model: a call with its signature.
fn gemini_call_answer() -> Value {
    json!({
        "candidates": [{ "content": { "role": "model", "parts": [
            { "text": "Let me look." },
            { "functionCall": { "name": "get_current_temperature", "args": { "location": "London" } },
              "thoughtSignature": "CiQB0e2Kb5wq0l4u" },
        ] }, "finishReason": "STOP", "index": 0 }],
        "usageMetadata": { "promptTokenCount": 2072, "candidatesTokenCount": 18, "thoughtsTokenCount": 56,
            "cachedContentTokenCount": 1024, "totalTokenCount": 2146 },
        "modelVersion": "gemini-3-flash-preview",
        "responseId": "o1ZIaMTrG-2xnvgPqtT2oQw",
    })
}

#[test]
fn an_answers_call_comes_back_in_the_next_request_as_gemini_sent_it() {
    let answer = gemini_call_answer();
    let parts = &answer["candidates"][0]["content"]["parts"];
    // Through the Messages API.
    let m = gemini::response_to_messages(&answer);
    assert_eq!(m["stop_reason"], "tool_use", "Gemini says STOP for a call");
    assert_eq!(
        m["content"][0],
        json!({ "type": "text", "text": "Let me look." })
    );
    assert_eq!(m["model"], "gemini-3-flash-preview");
    assert_eq!(
        m["usage"],
        json!({ "input_tokens": 1048, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024, "output_tokens": 74 })
    );
    let next = json!({ "model": "m", "max_tokens": 10, "messages": [
        { "role": "user", "content": "How warm is London?" },
        { "role": "assistant", "content": m["content"] },
        { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": m["content"][1]["id"], "content": "18C" }] },
    ] });
    let g = gemini::request_from_messages(next).unwrap();
    assert_eq!(&g["contents"][1]["parts"], parts);
    assert_eq!(
        g["contents"][2]["parts"][0]["functionResponse"]["name"],
        "get_current_temperature"
    );

    // Through chat completions: the reasoning count reaches the client's usage.
    let t = Translation {
        client: Endpoint::ChatCompletions,
        upstream: Endpoint::GenerateContent,
        include_usage: false,
    };
    let chat: Value = serde_json::from_slice(
        &t.response(answer.to_string().as_bytes(), "gemini-3-flash-preview")
            .unwrap(),
    )
    .unwrap();
    let c = &chat["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls");
    let u = &chat["usage"];
    assert_eq!(
        (u["prompt_tokens"].as_u64(), u["completion_tokens"].as_u64()),
        (Some(2072), Some(74))
    );
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 1024);
    assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], 56);
    let next = json!({ "model": "m", "messages": [
        { "role": "user", "content": "How warm is London?" },
        c["message"],
        { "role": "tool", "tool_call_id": c["message"]["tool_calls"][0]["id"], "content": "18C" },
    ] });
    let g = gemini::request_from_chat(next, 4096).unwrap();
    assert_eq!(&g["contents"][1]["parts"], parts);
    // A Messages client sees Anthropic's usage fields only.
    assert!(m["usage"].get("reasoning_output_tokens").is_none());
}

#[test]
fn finish_reasons_map_to_stop_reasons() {
    for (finish, called, stop) in [
        ("STOP", false, "end_turn"),
        ("STOP", true, "tool_use"),
        ("MAX_TOKENS", false, "max_tokens"),
        ("SAFETY", false, "refusal"),
        ("RECITATION", false, "refusal"),
        ("PROHIBITED_CONTENT", false, "refusal"),
        ("MALFORMED_FUNCTION_CALL", false, "end_turn"),
        ("OTHER", false, "end_turn"),
    ] {
        assert_eq!(gemini::stop_reason(finish, called), stop, "{finish}");
    }
    let blocked = json!({ "promptFeedback": { "blockReason": "SAFETY" },
        "usageMetadata": { "promptTokenCount": 7, "totalTokenCount": 7 } });
    let m = gemini::response_to_messages(&blocked);
    assert_eq!(
        (
            m["stop_reason"].as_str(),
            m["content"].as_array().map(Vec::len)
        ),
        (Some("refusal"), Some(0))
    );
}

#[test]
fn what_gemini_cannot_carry_is_refused_by_name() {
    let chat = |extra: Value| {
        let mut r = chat_request();
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        gemini::request_from_chat(r, 4096).unwrap_err().to_string()
    };
    for (extra, param) in [
        (json!({ "n": 2 }), "n"),
        (json!({ "user": "u-1" }), "user"),
        (
            json!({ "parallel_tool_calls": false }),
            "parallel_tool_calls",
        ),
        (json!({ "logprobs": true }), "logprobs"),
        (json!({ "audio": { "voice": "alloy" } }), "audio"),
        (
            json!({ "response_format": { "type": "grammar" } }),
            "response_format.type=grammar",
        ),
        (
            json!({ "messages": [{ "role": "user", "content": [{ "type": "image_url", "image_url": { "url": "https://example.com/cat.png" } }] }] }),
            "messages[0].content[0].image_url.url",
        ),
    ] {
        let e = chat(extra);
        assert!(e.contains(&format!("'{param}'")), "{e}");
        assert!(e.contains("Gemini"), "{e}");
    }
    let messages = |extra: Value| {
        let mut r = messages_request();
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        let e = gemini::request_from_messages(r).unwrap_err();
        let api: ApiError = e.clone().into();
        assert_eq!(api.status.as_u16(), 400);
        e.to_string()
    };
    for (extra, param) in [
        (json!({ "metadata": { "user_id": "u" } }), "metadata"),
        (
            json!({ "tool_choice": { "type": "auto", "disable_parallel_tool_use": true } }),
            "tool_choice.disable_parallel_tool_use",
        ),
        (
            json!({ "stop_sequences": ["1", "2", "3", "4", "5", "6"] }),
            "stop_sequences",
        ),
        (json!({ "service_tier": "auto" }), "service_tier"),
        (
            json!({ "tools": [{ "type": "web_search_20250305", "name": "web_search" }] }),
            "tools[].type=web_search_20250305",
        ),
        (
            json!({ "messages": [{ "role": "user", "content": [{ "type": "image", "source": { "type": "url", "url": "https://example.com/a.png" } }] }] }),
            "messages[0].content[0].source.type=url",
        ),
    ] {
        let e = messages(extra);
        assert!(e.contains(&format!("'{param}'")), "{e}");
    }
    // A result whose call is not in the conversation cannot be named for Gemini.
    let orphan = json!({ "model": "m", "max_tokens": 5, "messages": [
        { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "toolu_x", "content": "1" }] }] });
    assert!(gemini::request_from_messages(orphan)
        .unwrap_err()
        .to_string()
        .contains("tool_use_id"));
}

#[test]
fn golden_gemini_streams_translate_alike_however_they_are_split() {
    let cases: [Golden; 4] = [
        ("gemini_text.sse", "gemini_text.anthropic.golden", || {
            Translator::from_gemini(None)
        }),
        ("gemini_text.sse", "gemini_text.openai.golden", || {
            Translator::from_gemini(Some(Translator::to_openai(true)))
        }),
        (
            "gemini_function_call.sse",
            "gemini_function_call.anthropic.golden",
            || Translator::from_gemini(None),
        ),
        (
            "gemini_function_call.sse",
            "gemini_function_call.openai.golden",
            || Translator::from_gemini(Some(Translator::to_openai(true))),
        ),
    ];
    check_goldens(&cases);
}

#[test]
fn a_translated_gemini_stream_reads_back_as_the_answer_with_its_usage() {
    let out = translate_fixture(
        "gemini_text.sse",
        Translator::from_gemini(Some(Translator::to_openai(true))),
        None,
    );
    let mut text = String::new();
    let mut usage = Value::Null;
    let mut finish = Value::Null;
    for d in out
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| d.starts_with('{'))
    {
        let v: Value = serde_json::from_str(d).unwrap();
        if let Some(c) = v["choices"][0].as_object() {
            text.push_str(c["delta"]["content"].as_str().unwrap_or(""));
            if !c["finish_reason"].is_null() {
                finish = c["finish_reason"].clone();
            }
        }
        if v["usage"].is_object() {
            usage = v["usage"].clone();
        }
    }
    assert!(
        text.starts_with("Elara found the backpack") && text.ends_with("\"Adventure awaits.\""),
        "{text}"
    );
    assert_eq!(finish, "stop");
    assert_eq!(usage["prompt_tokens"], 8);
    assert_eq!(usage["completion_tokens"], 61 + 933, "thoughts are output");
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 933);
    assert!(out.trim_end().ends_with("data: [DONE]"));
    // Cut before its last chunk, the stream does not end: no message_stop, no [DONE].
    let path = format!(
        "{}/tests/fixtures/translate/gemini_text.sse",
        env!("CARGO_MANIFEST_DIR")
    );
    let input = std::fs::read_to_string(path).unwrap();
    let cut = &input[..input.rfind("data: ").unwrap()];
    let mut t = Translator::from_gemini(None);
    let mut got = t.feed(cut.as_bytes()).to_vec();
    got.extend_from_slice(&t.finish());
    let got = String::from_utf8(got).unwrap();
    assert!(
        got.contains("message_start") && !got.contains("message_stop"),
        "{got}"
    );
}
