//! Into OpenAI's Chat Completions API: a Messages request becomes a chat completion request, and a Message (from
//! Anthropic) becomes a chat completion for an OpenAI client.
//!
//! Shapes from Anthropic's API reference (docs.anthropic.com/en/api/messages) and OpenAI's
//! (platform.openai.com/docs/api-reference/chat/create and .../chat/object).

use serde_json::{json, Map, Value};

use super::TranslateError;

const TARGET: &str = "OpenAI's Chat Completions API";

/// OpenAI accepts at most four stop sequences.
const MAX_STOP: usize = 4;

fn refuse(param: &str, why: &str) -> TranslateError {
    TranslateError::untranslatable(param, TARGET, why)
}

/// A Messages request as a chat completion request. A stream asks for the usage chunk, which the gateway bills.
pub fn request(messages: Value) -> Result<Value, TranslateError> {
    let Value::Object(req) = messages else {
        return Err(TranslateError::invalid("body", "it must be a JSON object"));
    };
    let mut out = Map::new();
    let mut turns: Vec<Value> = Vec::new();
    let mut parallel = None;
    for (k, v) in &req {
        match k.as_str() {
            "model" => {
                out.insert(k.clone(), v.clone());
            }
            "stream" => {
                out.insert(k.clone(), v.clone());
                if v == &Value::Bool(true) {
                    out.insert("stream_options".into(), json!({ "include_usage": true }));
                }
            }
            "system" => {
                let text = super::plain_text(v)
                    .ok_or_else(|| refuse("system", "a system prompt can only be text"))?;
                if !text.is_empty() {
                    turns.insert(0, json!({ "role": "system", "content": text }));
                }
            }
            "messages" => {
                let list = v
                    .as_array()
                    .ok_or_else(|| TranslateError::invalid("messages", "it must be an array"))?;
                for (i, m) in list.iter().enumerate() {
                    turn(m, &format!("messages[{i}]"), &mut turns)?;
                }
            }
            "max_tokens" => {
                out.insert("max_completion_tokens".into(), v.clone());
            }
            "temperature" | "top_p" => {
                out.insert(k.clone(), v.clone());
            }
            "stop_sequences" => {
                if v.as_array().is_some_and(|s| s.len() > MAX_STOP) {
                    return Err(refuse(k, "OpenAI accepts at most four stop sequences"));
                }
                out.insert("stop".into(), v.clone());
            }
            "tools" => {
                out.insert("tools".into(), tools(v)?);
            }
            "tool_choice" => {
                let (choice, disable_parallel) = tool_choice_of(v)?;
                out.insert("tool_choice".into(), choice);
                if disable_parallel {
                    parallel = Some(false);
                }
            }
            "metadata" => {
                if let Some(obj) = v.as_object() {
                    if let Some(other) = obj.keys().find(|k| *k != "user_id") {
                        return Err(refuse(&format!("metadata.{other}"), "OpenAI has no such field"));
                    }
                }
                if let Some(user) = v["user_id"].as_str() {
                    out.insert("user".into(), user.into());
                }
            }
            "top_k" => return Err(refuse(k, "OpenAI has no top-k sampling")),
            "thinking" => {
                return Err(refuse(
                    k,
                    "extended thinking has no equivalent in chat completions (reasoning models choose their own effort)",
                ))
            }
            _ => return Err(refuse(k, "OpenAI has no such parameter")),
        }
    }
    out.insert("messages".into(), Value::Array(turns));
    if let Some(p) = parallel {
        out.insert("parallel_tool_calls".into(), Value::Bool(p));
    }
    Ok(Value::Object(out))
}

/// One Anthropic turn as chat messages: a user turn's tool results become `tool` messages (first, since they
/// answer the assistant turn before), its other blocks one user message; an assistant turn's `tool_use` blocks
/// become its `tool_calls`.
fn turn(m: &Value, at: &str, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let role = m["role"].as_str();
    let content = &m["content"];
    if let Some(obj) = m.as_object() {
        if let Some(k) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "role" | "content"))
        {
            return Err(refuse(
                &format!("{at}.{k}"),
                "OpenAI's messages have no such field",
            ));
        }
    }
    match role {
        Some("user") => {
            let Value::Array(blocks) = content else {
                out.push(json!({ "role": "user", "content": content }));
                return Ok(());
            };
            let mut parts = Vec::new();
            for (j, b) in blocks.iter().enumerate() {
                let here = format!("{at}.content[{j}]");
                match b["type"].as_str() {
                    Some("tool_result") => {
                        if b["is_error"] == true {
                            return Err(refuse(&format!("{here}.is_error"), "a tool message cannot be marked as an error; say so in its content"));
                        }
                        let text = super::plain_text(&b["content"]).ok_or_else(|| {
                            refuse(
                                &format!("{here}.content"),
                                "a tool's result can only be text",
                            )
                        })?;
                        out.push(json!({ "role": "tool", "tool_call_id": b["tool_use_id"], "content": text }));
                    }
                    Some("text") => parts.push(json!({ "type": "text", "text": b["text"] })),
                    Some("image") => parts.push(image(&b["source"], &here)?),
                    other => {
                        return Err(refuse(
                            &format!("{here}.type={}", other.unwrap_or("?")),
                            "only text, image and tool_result blocks have an OpenAI equivalent",
                        ))
                    }
                }
            }
            if !parts.is_empty() {
                out.push(json!({ "role": "user", "content": parts }));
            }
            Ok(())
        }
        Some("assistant") => {
            let Value::Array(blocks) = content else {
                out.push(json!({ "role": "assistant", "content": content }));
                return Ok(());
            };
            let mut text = String::new();
            let mut calls = Vec::new();
            for (j, b) in blocks.iter().enumerate() {
                match b["type"].as_str() {
                    Some("text") => text.push_str(b["text"].as_str().unwrap_or("")),
                    Some("tool_use") => calls.push(json!({
                        "id": b["id"], "type": "function",
                        "function": { "name": b["name"], "arguments": b["input"].to_string() },
                    })),
                    other => {
                        return Err(refuse(
                            &format!("{at}.content[{j}].type={}", other.unwrap_or("?")),
                            "only text and tool_use blocks have an OpenAI equivalent",
                        ))
                    }
                }
            }
            let mut msg = json!({ "role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() } });
            if !calls.is_empty() {
                msg["tool_calls"] = Value::Array(calls);
            }
            out.push(msg);
            Ok(())
        }
        _ => Err(TranslateError::invalid(
            format!("{at}.role"),
            "it must be user or assistant",
        )),
    }
}

/// An image block as an `image_url` part: a base64 source becomes a `data:` URL.
fn image(source: &Value, at: &str) -> Result<Value, TranslateError> {
    let url = match source["type"].as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            source["media_type"].as_str().unwrap_or("image/png"),
            source["data"].as_str().unwrap_or("")
        ),
        Some("url") => source["url"].as_str().unwrap_or("").to_string(),
        _ => {
            return Err(refuse(
                &format!("{at}.source.type"),
                "only base64 and URL images have an OpenAI equivalent",
            ))
        }
    };
    Ok(json!({ "type": "image_url", "image_url": { "url": url } }))
}

/// Anthropic's custom tools as function tools; server tools (web search, code execution...) have no equivalent.
fn tools(v: &Value) -> Result<Value, TranslateError> {
    let list = v
        .as_array()
        .ok_or_else(|| TranslateError::invalid("tools", "it must be an array"))?;
    list.iter()
        .map(|t| {
            if !matches!(t["type"].as_str(), None | Some("custom")) {
                return Err(refuse(
                    &format!("tools[].type={}", t["type"].as_str().unwrap_or("?")),
                    "only custom tools have an OpenAI equivalent",
                ));
            }
            let mut f = json!({ "name": t["name"], "parameters": t["input_schema"] });
            if let Some(d) = t["description"].as_str() {
                f["description"] = d.into();
            }
            Ok(json!({ "type": "function", "function": f }))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// `tool_choice` and whether it disables parallel tool use.
fn tool_choice_of(v: &Value) -> Result<(Value, bool), TranslateError> {
    let choice = match v["type"].as_str() {
        Some("auto") => json!("auto"),
        Some("none") => json!("none"),
        Some("any") => json!("required"),
        Some("tool") => json!({ "type": "function", "function": { "name": v["name"] } }),
        _ => {
            return Err(TranslateError::invalid(
                "tool_choice.type",
                "it must be auto, none, any or tool",
            ))
        }
    };
    Ok((choice, v["disable_parallel_tool_use"] == true))
}

/// A Message's `stop_reason` as a chat completion's `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Anthropic's usage as OpenAI's: the prompt is the uncached input plus cache reads and writes, the cache reads
/// its `cached_tokens`. Anthropic reports no reasoning count (thinking is within `output_tokens`); a Message that is
/// the pivot of another API's answer (Gemini's) carries its count as `reasoning_output_tokens`.
pub fn usage(u: &Value) -> Value {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let prompt =
        n("input_tokens") + n("cache_read_input_tokens") + n("cache_creation_input_tokens");
    let completion = n("output_tokens");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": { "cached_tokens": n("cache_read_input_tokens") },
        "completion_tokens_details": { "reasoning_tokens": n("reasoning_output_tokens") },
    })
}

/// A Message as a chat completion of one choice.
pub fn response(message: &Value) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in message["content"].as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": b["id"], "type": "function",
                "function": { "name": b["name"], "arguments": b["input"].to_string() },
            })),
            // Thinking is never asked for through this API; anything else has no place in a chat message.
            _ => {}
        }
    }
    let mut msg = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() },
        "refusal": null,
    });
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": message["id"],
        "object": "chat.completion",
        "created": super::now_secs(),
        "model": message["model"],
        "choices": [{
            "index": 0,
            "message": msg,
            "logprobs": null,
            "finish_reason": finish_reason(message["stop_reason"].as_str().unwrap_or("end_turn")),
        }],
        "usage": usage(&message["usage"]),
    })
}
