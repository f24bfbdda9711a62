//! The mock's answers in Google's Gemini API. Shapes from Google's API reference (ai.google.dev/api/generate-content:
//! `GenerateContentResponse`, `Candidate`, `Content`, `Part`, `FinishReason`, `UsageMetadata`) and its SDK's types
//! (googleapis/python-genai `types.py`):
//! - `candidates`, one per `generationConfig.candidateCount`, each `{"content":{"role":"model","parts":[...]},
//!   "finishReason","index"}`; a part is `{"text"}`, or, when the request offers a function to call,
//!   `{"functionCall":{"name","args"}}` (the arguments as a JSON object, conforming to the declaration's
//!   `parametersJsonSchema` or `parameters`). Thinking models put a `thoughtSignature` on a call's part, which a
//!   client hands back with the call in its next turn. Gemini says `STOP` for a call as for text, and `MAX_TOKENS`
//!   when the output limit cut the answer short;
//! - `usageMetadata`: `promptTokenCount` (the whole prompt, cache reads included), `cachedContentTokenCount`,
//!   `candidatesTokenCount` (without thoughts), `thoughtsTokenCount`, `totalTokenCount`, `promptTokensDetails`;
//!   `modelVersion` and `responseId`;
//! - a stream (`alt=sse`) of `data:` events, each a whole `GenerateContentResponse` with the next pieces: every
//!   chunk carries the usage known so far (the prompt), the last one the final usage and each candidate's
//!   `finishReason` (with an empty text part, as Google sends it). A function call comes whole in one chunk.
//!   Events end with a blank line after CRLF, as Google's servers frame them.
//!
//! The request is read from Gemini's own fields (`request.rs` reads the other APIs'): `tools[].functionDeclarations`,
//! `toolConfig.functionCallingConfig` (`mode` `NONE` / `AUTO` / `ANY`, `allowedFunctionNames`),
//! `generationConfig.responseMimeType` with `responseJsonSchema` or `responseSchema`, and whether the last turn
//! answers a call (`functionResponse` parts).

use bytes::Bytes;
use serde_json::{json, Value};
use spendgate_core::Usage;

use super::request::{Format, Tool};
use super::{Answer, Choice, Reply, Shape};

pub struct Gemini;

fn finish_reason(c: &Choice) -> &'static str {
    c.ending(["STOP", "MAX_TOKENS", "STOP"])
}

/// A thinking model's signature of its thoughts, put on a call's part (base64, as Google sends it).
fn signature(a: &Answer<'_>, c: &Choice) -> Option<String> {
    (c.reasoning_tokens > 0).then(|| format!("bW9jay1zaWduYXR1cmUt{}", a.id))
}

fn usage_json(u: &Usage, reasoning: u64) -> Value {
    let mut v = json!({
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": u.output_tokens - reasoning,
        "totalTokenCount": u.input_tokens + u.output_tokens,
        "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": u.input_tokens }],
    });
    if u.cached_input_tokens > 0 {
        v["cachedContentTokenCount"] = u.cached_input_tokens.into();
        v["cacheTokensDetails"] =
            json!([{ "modality": "TEXT", "tokenCount": u.cached_input_tokens }]);
    }
    if reasoning > 0 {
        v["thoughtsTokenCount"] = reasoning.into();
    }
    v
}

/// A response around `candidates`, with `usage` when there is one to report.
fn response(a: &Answer<'_>, candidates: Vec<Value>, usage: Option<Value>) -> Value {
    let mut v = json!({ "candidates": candidates, "modelVersion": a.model, "responseId": format!("mock{}", a.id) });
    if let Some(u) = usage {
        v["usageMetadata"] = u;
    }
    v
}

fn candidate(index: usize, parts: Value, finish: Option<&str>) -> Value {
    let mut v = json!({ "content": { "role": "model", "parts": parts }, "index": index });
    if let Some(f) = finish {
        v["finishReason"] = f.into();
    }
    v
}

/// A choice's part: its whole text, or its whole call.
fn part(a: &Answer<'_>, c: &Choice) -> Value {
    match c.call_name() {
        Some(name) => {
            let args: Value = serde_json::from_str(&c.text()).unwrap_or_else(|_| json!({}));
            let mut p = json!({ "functionCall": { "name": name, "args": args } });
            if let Some(s) = signature(a, c) {
                p["thoughtSignature"] = s.into();
            }
            p
        }
        None => json!({ "text": c.text() }),
    }
}

fn event(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\r\n\r\n"))
}

impl Shape for Gemini {
    fn body(&self, a: &Answer<'_>) -> Value {
        let candidates = a
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| candidate(i, json!([part(a, c)]), Some(finish_reason(c))))
            .collect();
        let usage = a.usage.map(|u| usage_json(&u, a.reasoning_tokens()));
        response(a, candidates, usage)
    }

    fn events(&self, a: &Answer<'_>) -> Vec<Bytes> {
        // The prompt is known from the first chunk on; the rest only at the end.
        let so_far = a.usage.map(
            |u| json!({ "promptTokenCount": u.input_tokens, "totalTokenCount": u.input_tokens }),
        );
        let mut events = Vec::new();
        for (i, c) in a.choices.iter().enumerate() {
            if c.call_name().is_some() {
                events.push(event(&response(
                    a,
                    vec![candidate(i, json!([part(a, c)]), None)],
                    so_far.clone(),
                )));
            }
        }
        for (i, c, piece) in a.interleaved() {
            if matches!(c.reply, Reply::Text(_)) {
                events.push(event(&response(
                    a,
                    vec![candidate(i, json!([{ "text": piece }]), None)],
                    so_far.clone(),
                )));
            }
        }
        let last = a
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| candidate(i, json!([{ "text": "" }]), Some(finish_reason(c))))
            .collect();
        let usage = a.usage.map(|u| usage_json(&u, a.reasoning_tokens()));
        events.push(event(&response(a, last, usage)));
        events
    }

    /// Google's error shape: `{"error":{"code","message","status"}}`.
    fn error(&self, message: &str) -> Value {
        json!({ "error": { "code": 500, "message": message, "status": "INTERNAL" } })
    }
}

/// The member `name` (lowerCamelCase) of `v`, or the same under its proto name (snake_case): Google's API takes
/// both (protobuf.dev/programming-guides/json), and `google-genai` sends some fields by their proto names.
fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    if let Some(f) = v.get(name) {
        return f;
    }
    let mut snake = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    v.get(&snake).unwrap_or(&Value::Null)
}

/// The function the request asks to call and the answer's format, read from Gemini's fields: `None` for no call
/// (mode `NONE`, no declarations, or the last turn answers a call).
pub(super) fn ask(body: &[u8]) -> (Option<Tool>, Format) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let config = field(&v, "generationConfig");
    let format = match field(config, "responseMimeType").as_str() {
        Some("application/json") => {
            match [
                field(config, "responseJsonSchema"),
                field(config, "responseSchema"),
            ]
            .into_iter()
            .find(|s| !s.is_null())
            {
                Some(schema) => Format::Schema(schema.clone()),
                None => Format::JsonObject,
            }
        }
        _ => Format::Text,
    };
    let calling = field(field(&v, "toolConfig"), "functionCallingConfig");
    let allowed: Vec<&str> = field(calling, "allowedFunctionNames")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let answered = v["contents"]
        .as_array()
        .and_then(|c| c.last())
        .and_then(|turn| turn["parts"].as_array())
        .is_some_and(|parts| {
            parts
                .iter()
                .any(|p| !field(p, "functionResponse").is_null())
        });
    if calling["mode"] == "NONE" || answered {
        return (None, format);
    }
    let call = v["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| {
            field(t, "functionDeclarations")
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter(|d| allowed.is_empty() || allowed.iter().any(|n| d["name"] == *n))
        .find_map(|d| {
            Some(Tool {
                name: d["name"].as_str()?.to_string(),
                schema: [field(d, "parametersJsonSchema"), &d["parameters"]]
                    .into_iter()
                    .find(|s| !s.is_null())
                    .cloned()
                    .unwrap_or_else(|| json!({ "type": "object", "properties": {} })),
            })
        });
    (call, format)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{gemini_chunks, gemini_events, gemini_full as full};
    use serde_json::{json, Value};

    fn body(extra: Value) -> Value {
        let mut body =
            json!({ "contents": [{ "role": "user", "parts": [{ "text": "weather in Oslo?" }] }] });
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        body
    }

    fn weather() -> Value {
        json!([{ "functionDeclarations": [{ "name": "get_weather", "description": "Weather by city",
            "parametersJsonSchema": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } }] }])
    }

    #[test]
    fn text_answers_carry_gemini_usage_with_thoughts_apart() {
        let v = full("gemini-2.5-flash", &body(json!({})));
        let c = &v["candidates"][0];
        assert_eq!(c["content"]["role"], "model");
        assert!(!c["content"]["parts"][0]["text"]
            .as_str()
            .unwrap()
            .is_empty());
        assert_eq!(c["finishReason"], "STOP");
        let u = &v["usageMetadata"];
        let (prompt, candidates, thoughts) = (
            u["promptTokenCount"].as_u64().unwrap(),
            u["candidatesTokenCount"].as_u64().unwrap(),
            u["thoughtsTokenCount"].as_u64().unwrap(),
        );
        assert!(thoughts > 0, "a thinking model reports its thoughts: {u}");
        assert_eq!(u["totalTokenCount"], prompt + candidates + thoughts);
        assert_eq!(v["modelVersion"], "gemini-2.5-flash");
        // Flash-Lite does not think.
        let lite = full("gemini-2.5-flash-lite", &body(json!({})));
        assert!(lite["usageMetadata"].get("thoughtsTokenCount").is_none());
    }

    #[test]
    fn declared_functions_are_called_until_their_response_comes() {
        let v = full(
            "gemini-3-flash-preview",
            &body(json!({ "tools": weather() })),
        );
        let part = &v["candidates"][0]["content"]["parts"][0];
        assert_eq!(part["functionCall"]["name"], "get_weather");
        assert!(part["functionCall"]["args"]["city"].is_string(), "{part}");
        assert!(part["thoughtSignature"].is_string());
        assert_eq!(v["candidates"][0]["finishReason"], "STOP");
        let none = full(
            "gemini-3-flash-preview",
            &body(
                json!({ "tools": weather(), "toolConfig": { "functionCallingConfig": { "mode": "NONE" } } }),
            ),
        );
        assert!(none["candidates"][0]["content"]["parts"][0]["text"].is_string());
        let answered = json!({ "tools": weather(), "contents": [
            { "role": "user", "parts": [{ "text": "weather?" }] },
            { "role": "model", "parts": [{ "functionCall": { "name": "get_weather", "args": { "city": "Oslo" } } }] },
            { "role": "user", "parts": [{ "functionResponse": { "name": "get_weather", "response": { "output": "2C" } } }] },
        ] });
        let v = full("gemini-2.5-flash-lite", &answered);
        assert!(v["candidates"][0]["content"]["parts"][0]["text"].is_string());
    }

    #[test]
    fn json_mode_answers_json_of_the_schema_and_candidates_follow_the_count() {
        let schema = json!({ "type": "object", "properties": { "ticket": { "type": "string" } }, "required": ["ticket"] });
        let v = full(
            "gemini-2.5-flash-lite",
            &body(
                json!({ "generationConfig": { "responseMimeType": "application/json",
                "responseJsonSchema": schema, "candidateCount": 2, "maxOutputTokens": 200 } }),
            ),
        );
        let candidates = v["candidates"].as_array().unwrap();
        assert_eq!(candidates.len(), 2);
        for c in candidates {
            let text = c["content"]["parts"][0]["text"].as_str().unwrap();
            let parsed: Value = serde_json::from_str(text).unwrap();
            assert!(parsed["ticket"].is_string(), "{text}");
        }
        let capped = full(
            "gemini-2.5-flash-lite",
            &body(json!({ "generationConfig": { "maxOutputTokens": 2 } })),
        );
        assert_eq!(capped["candidates"][0]["finishReason"], "MAX_TOKENS");
        assert_eq!(capped["usageMetadata"]["candidatesTokenCount"], 2);
    }

    #[tokio::test]
    async fn a_stream_carries_the_prompt_first_and_the_final_usage_last() {
        let events = gemini_events("gemini-2.5-flash", &body(json!({}))).await;
        let (last, pieces) = events.split_last().unwrap();
        assert!(pieces.len() > 1);
        for p in pieces {
            assert!(p["candidates"][0].get("finishReason").is_none());
            assert!(p["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0);
            assert!(p["usageMetadata"].get("candidatesTokenCount").is_none());
        }
        let whole = full("gemini-2.5-flash", &body(json!({})));
        let text: String = pieces
            .iter()
            .map(|p| {
                p["candidates"][0]["content"]["parts"][0]["text"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(text, whole["candidates"][0]["content"]["parts"][0]["text"]);
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert_eq!(last["usageMetadata"], whole["usageMetadata"]);
        for chunk in gemini_chunks("gemini-2.5-flash", &body(json!({}))).await {
            assert!(
                chunk.starts_with(b"data: ") && chunk.ends_with(b"}\r\n\r\n"),
                "framed as Google's"
            );
        }
        let call = gemini_events("gemini-2.5-flash", &body(json!({ "tools": weather() }))).await;
        assert_eq!(call.len(), 2, "a call comes whole, then the end");
        assert_eq!(
            call[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
            "get_weather"
        );
    }
}
