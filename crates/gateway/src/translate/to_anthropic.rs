//! Into Anthropic's Messages API: a chat completion request becomes a Messages request, and a chat completion
//! answer (from an OpenAI-compatible provider) becomes a Message for an Anthropic client.
//!
//! Shapes from OpenAI's API reference (platform.openai.com/docs/api-reference/chat/create and .../chat/object)
//! and Anthropic's (docs.anthropic.com/en/api/messages).

use serde_json::{json, Map, Value};

use super::TranslateError;

const TARGET: &str = "Anthropic's Messages API";

fn refuse(param: &str, why: &str) -> TranslateError {
    TranslateError::untranslatable(param, TARGET, why)
}

/// A chat completion request as a Messages request. `default_max_tokens` is sent when the client set no output
/// limit, since Anthropic requires one.
pub fn request(chat: Value, default_max_tokens: u64) -> Result<Value, TranslateError> {
    let Value::Object(chat) = chat else {
        return Err(TranslateError::invalid("body", "it must be a JSON object"));
    };
    let mut out = Map::new();
    let mut max_tokens = None;
    let mut tool_choice: Option<Value> = None;
    let mut parallel = true;
    for (k, v) in &chat {
        match k.as_str() {
            "model" | "stream" => {
                out.insert(k.clone(), v.clone());
            }
            // The gateway reads it: the usage chunk is built from Anthropic's usage.
            "stream_options" => {}
            "messages" => {
                let (system, messages) = messages(v)?;
                if let Some(s) = system {
                    out.insert("system".into(), s);
                }
                out.insert("messages".into(), messages);
            }
            "max_tokens" | "max_completion_tokens" if !v.is_null() => {
                max_tokens = Some(v.as_u64().ok_or_else(|| {
                    TranslateError::invalid(k.as_str(), "it must be a positive integer")
                })?);
            }
            "temperature" if !v.is_null() => {
                // OpenAI's range is 0-2, Anthropic's 0-1; the same number means something else above 1.
                match v.as_f64() {
                    Some(t) if (0.0..=1.0).contains(&t) => {
                        out.insert(k.clone(), v.clone());
                    }
                    _ => return Err(refuse(k, "Anthropic accepts a temperature from 0 to 1 only")),
                }
            }
            "top_p" if !v.is_null() => {
                out.insert(k.clone(), v.clone());
            }
            "stop" => match v {
                Value::Null => {}
                Value::String(s) => {
                    out.insert("stop_sequences".into(), json!([s]));
                }
                Value::Array(_) => {
                    out.insert("stop_sequences".into(), v.clone());
                }
                _ => return Err(TranslateError::invalid("stop", "it must be a string or an array")),
            },
            "tools" => {
                out.insert("tools".into(), tools(v)?);
            }
            "tool_choice" if !v.is_null() => tool_choice = Some(tool_choice_of(v)?),
            "parallel_tool_calls" => parallel = v.as_bool() != Some(false),
            "user" if !v.is_null() => {
                out.insert("metadata".into(), json!({ "user_id": v }));
            }
            "response_format" => match v["type"].as_str() {
                None | Some("text") => {}
                Some(_) => {
                    return Err(refuse(
                        "response_format",
                        "Anthropic has no JSON mode; ask for JSON in the prompt, or use a forced tool call",
                    ))
                }
            },
            // Their defaults translate to nothing; anything else has no equivalent.
            "n" if v.is_null() || v.as_u64() == Some(1) => {}
            "presence_penalty" | "frequency_penalty" if v.is_null() || v.as_f64() == Some(0.0) => {}
            "logprobs" | "store" if v.is_null() || v == &Value::Bool(false) => {}
            "n" => return Err(refuse(k, "Anthropic generates one answer per request")),
            _ => return Err(refuse(k, "Anthropic has no such parameter")),
        }
    }
    out.insert(
        "max_tokens".into(),
        json!(max_tokens.unwrap_or(default_max_tokens)),
    );
    if !parallel {
        let mut choice = tool_choice
            .take()
            .unwrap_or_else(|| json!({ "type": "auto" }));
        choice["disable_parallel_tool_use"] = Value::Bool(true);
        tool_choice = Some(choice);
    }
    if let Some(c) = tool_choice {
        out.insert("tool_choice".into(), c);
    }
    Ok(Value::Object(out))
}

/// The system prompt (system and developer messages, joined) and the conversation as Anthropic's turns: an
/// assistant's tool calls become `tool_use` blocks, and the `tool` messages that answer them one user turn of
/// `tool_result` blocks.
fn messages(v: &Value) -> Result<(Option<Value>, Value), TranslateError> {
    let list = v
        .as_array()
        .ok_or_else(|| TranslateError::invalid("messages", "it must be an array"))?;
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<Value> = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let at = |f: &str| format!("messages[{i}].{f}");
        if let Some(obj) = m.as_object() {
            if let Some(k) = obj.keys().find(|k| {
                !matches!(
                    k.as_str(),
                    "role" | "content" | "tool_calls" | "tool_call_id" | "refusal"
                )
            }) {
                return Err(refuse(&at(k), "Anthropic's messages have no such field"));
            }
        }
        match m["role"].as_str() {
            Some("system" | "developer") => match &m["content"] {
                Value::String(s) => system.push(json!({ "type": "text", "text": s })),
                Value::Array(parts) => {
                    for p in parts {
                        if p["type"] != "text" {
                            return Err(refuse(&at("content"), "a system prompt can only be text"));
                        }
                        system.push(json!({ "type": "text", "text": p["text"] }));
                    }
                }
                _ => return Err(TranslateError::invalid(at("content"), "it must be text")),
            },
            Some("user") => turns.push(
                json!({ "role": "user", "content": content(&m["content"], &at("content"))? }),
            ),
            Some("assistant") => turns.push(assistant(m, &at)?),
            Some("tool") => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": m["tool_call_id"],
                    "content": tool_result_content(&m["content"], &at("content"))?,
                });
                // Tool results answering one assistant turn go back in one user turn, as Anthropic requires.
                match turns.last_mut() {
                    Some(last) if last["role"] == "user" && is_tool_results(&last["content"]) => {
                        if let Some(blocks) = last["content"].as_array_mut() {
                            blocks.push(block);
                        }
                    }
                    _ => turns.push(json!({ "role": "user", "content": [block] })),
                }
            }
            _ => {
                return Err(TranslateError::invalid(
                    at("role"),
                    "it must be system, developer, user, assistant or tool",
                ))
            }
        }
    }
    let system = match system.len() {
        0 => None,
        // One plain system message stays a plain string, as a client of Anthropic's API would write it.
        1 if list.iter().any(|m| {
            m["content"].is_string() && matches!(m["role"].as_str(), Some("system" | "developer"))
        }) =>
        {
            Some(system[0]["text"].clone())
        }
        _ => Some(Value::Array(system)),
    };
    Ok((system, Value::Array(turns)))
}

fn is_tool_results(content: &Value) -> bool {
    content
        .as_array()
        .is_some_and(|b| b.iter().all(|b| b["type"] == "tool_result"))
}

/// A user message's content: a string stays a string; parts become blocks (text, and images from `image_url`).
fn content(v: &Value, at: &str) -> Result<Value, TranslateError> {
    let parts = match v {
        Value::String(_) => return Ok(v.clone()),
        Value::Array(parts) => parts,
        _ => {
            return Err(TranslateError::invalid(
                at,
                "it must be a string or an array of parts",
            ))
        }
    };
    parts
        .iter()
        .map(|p| match p["type"].as_str() {
            Some("text") => Ok(json!({ "type": "text", "text": p["text"] })),
            Some("image_url") => image(&p["image_url"], at),
            _ => Err(refuse(
                &format!("{at}[].type={}", p["type"].as_str().unwrap_or("?")),
                "only text and image parts have an Anthropic equivalent",
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// An `image_url` part as an image block: a `data:` URL becomes a base64 source, any other URL a URL source.
fn image(v: &Value, at: &str) -> Result<Value, TranslateError> {
    if !matches!(v["detail"].as_str(), None | Some("auto")) {
        return Err(refuse(
            &format!("{at}[].image_url.detail"),
            "Anthropic chooses an image's resolution itself",
        ));
    }
    let url = v["url"].as_str().ok_or_else(|| {
        TranslateError::invalid(format!("{at}[].image_url.url"), "it must be a URL")
    })?;
    let source = match url.strip_prefix("data:") {
        Some(rest) => {
            let (media_type, data) = rest.split_once(";base64,").ok_or_else(|| {
                TranslateError::invalid(
                    format!("{at}[].image_url.url"),
                    "a data: URL must be base64 ('data:image/png;base64,...')",
                )
            })?;
            json!({ "type": "base64", "media_type": media_type, "data": data })
        }
        None => json!({ "type": "url", "url": url }),
    };
    Ok(json!({ "type": "image", "source": source }))
}

/// An assistant message: its text (a string when it has no tool calls) and its tool calls as `tool_use` blocks.
fn assistant(m: &Value, at: &dyn Fn(&str) -> String) -> Result<Value, TranslateError> {
    let calls = m["tool_calls"].as_array().filter(|c| !c.is_empty());
    let Some(calls) = calls else {
        let text = super::plain_text(&m["content"])
            .ok_or_else(|| refuse(&at("content"), "an assistant turn can only be text"))?;
        return Ok(json!({ "role": "assistant", "content": text }));
    };
    let mut blocks = Vec::new();
    match super::plain_text(&m["content"]) {
        Some(t) if t.is_empty() => {}
        Some(t) => blocks.push(json!({ "type": "text", "text": t })),
        None => return Err(refuse(&at("content"), "an assistant turn can only be text")),
    }
    for c in calls {
        let args = c["function"]["arguments"].as_str().unwrap_or("{}");
        let input: Value = serde_json::from_str(if args.is_empty() { "{}" } else { args })
            .map_err(|_| {
                TranslateError::invalid(
                    at("tool_calls[].function.arguments"),
                    "it must be JSON text",
                )
            })?;
        blocks.push(json!({ "type": "tool_use", "id": c["id"], "name": c["function"]["name"], "input": input }));
    }
    Ok(json!({ "role": "assistant", "content": blocks }))
}

/// A tool message's content as a tool result's: text stays text.
fn tool_result_content(v: &Value, at: &str) -> Result<Value, TranslateError> {
    match v {
        Value::String(_) => Ok(v.clone()),
        Value::Array(_) => content(v, at),
        _ => Err(TranslateError::invalid(at, "it must be text")),
    }
}

/// Function tools as Anthropic tools (`parameters` is the `input_schema`).
fn tools(v: &Value) -> Result<Value, TranslateError> {
    let list = v
        .as_array()
        .ok_or_else(|| TranslateError::invalid("tools", "it must be an array"))?;
    list.iter()
        .map(|t| {
            if t["type"] != "function" {
                return Err(refuse("tools[].type", "only function tools have an Anthropic equivalent"));
            }
            let f = &t["function"];
            if f["strict"] == true {
                return Err(refuse("tools[].function.strict", "Anthropic does not enforce a tool's schema strictly"));
            }
            let mut tool = json!({
                "name": f["name"],
                "input_schema": if f["parameters"].is_object() { f["parameters"].clone() } else { json!({ "type": "object", "properties": {} }) },
            });
            if let Some(d) = f["description"].as_str() {
                tool["description"] = d.into();
            }
            Ok(tool)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// `tool_choice`: `auto`, `none`, `required` (Anthropic's `any`) or a named function (Anthropic's `tool`).
fn tool_choice_of(v: &Value) -> Result<Value, TranslateError> {
    Ok(match v {
        Value::String(s) if s == "auto" => json!({ "type": "auto" }),
        Value::String(s) if s == "none" => json!({ "type": "none" }),
        Value::String(s) if s == "required" => json!({ "type": "any" }),
        Value::Object(_) if v["type"] == "function" && v["function"]["name"].is_string() => {
            json!({ "type": "tool", "name": v["function"]["name"] })
        }
        _ => {
            return Err(TranslateError::invalid(
                "tool_choice",
                "it must be auto, none, required or a named function",
            ))
        }
    })
}

/// A chat completion's `finish_reason` as a Message's `stop_reason`.
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// OpenAI's usage as Anthropic's: the prompt's cached part is reported apart from the rest, as Anthropic does.
/// OpenAI reports no cache writes; its reasoning tokens are part of `completion_tokens`, as Anthropic's thinking
/// is part of `output_tokens`.
pub fn usage(u: &Value) -> Value {
    let prompt = u["prompt_tokens"].as_u64().unwrap_or(0);
    let cached = u["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0)
        .min(prompt);
    json!({
        "input_tokens": prompt - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": u["completion_tokens"].as_u64().unwrap_or(0),
    })
}

/// A chat completion's first choice as a Message.
pub fn response(chat: &Value) -> Value {
    let choice = &chat["choices"][0];
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({ "type": "text", "text": text }));
    }
    if let Some(calls) = message["tool_calls"].as_array() {
        for c in calls {
            let args = c["function"]["arguments"].as_str().unwrap_or("{}");
            let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
            content.push(json!({ "type": "tool_use", "id": c["id"], "name": c["function"]["name"], "input": input }));
        }
    }
    json!({
        "id": chat["id"],
        "type": "message",
        "role": "assistant",
        "model": chat["model"],
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str().unwrap_or("stop")),
        "stop_sequence": null,
        "usage": usage(&chat["usage"]),
    })
}
