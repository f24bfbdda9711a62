//! Anthropic Messages <-> Amazon Bedrock's Converse: a Messages request becomes a Converse request, and a
//! Converse answer a Message. Chat completion clients reach Converse through Messages (the pivot, `mod.rs`).
//!
//! Shapes from Anthropic's API reference (docs.anthropic.com/en/api/messages) and Bedrock's
//! (docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html, and botocore's
//! `data/bedrock-runtime/2023-09-30/service-2.json` for every member's name):
//!
//! - `system` text blocks become `system` `{text}` blocks; `messages` keep their roles, each content block
//!   becoming its Converse union: `text` -> `{text}`, a base64 `image` -> `{image:{format,source:{bytes}}}`,
//!   `tool_use` -> `{toolUse:{toolUseId,name,input}}`, `tool_result` -> `{toolResult:{toolUseId,content,status}}`,
//!   `thinking` -> `{reasoningContent:{reasoningText:{text,signature}}}`, `redacted_thinking` ->
//!   `{reasoningContent:{redactedContent}}`;
//! - a `cache_control` breakpoint on a block, a system block or a tool becomes a `cachePoint` block right after it
//!   (its `ttl` kept), which is how Converse marks where a cached prefix ends;
//! - `max_tokens`, `temperature`, `top_p`, `stop_sequences` go in `inferenceConfig`; `tools` become
//!   `toolConfig.tools[].toolSpec` (`inputSchema.json`), `tool_choice` `auto`/`any`/`tool` its `toolChoice`;
//!   `thinking` goes in `additionalModelRequestFields` as Bedrock's Claude models take it; `metadata.user_id` in
//!   `requestMetadata`;
//! - the answer's `output.message.content`, `stopReason` and `usage` (cache reads and writes, the hour-long writes
//!   from `cacheDetails`) become a Message's.
//!
//! What Converse cannot say (`top_k`, `tool_choice` `none`, parallel tool use switched off, images by URL,
//! documents, server tools, ...) is refused with a 400 naming it.

use serde_json::{json, Map, Value};

use super::TranslateError;

const TARGET: &str = "Amazon Bedrock's Converse API";

fn refuse(param: &str, why: &str) -> TranslateError {
    TranslateError::untranslatable(param, TARGET, why)
}

/// A Messages request as a Converse request (the model goes in the URL, and whether it streams is the URL too).
pub fn request_from_messages(messages: Value) -> Result<Value, TranslateError> {
    let Value::Object(req) = messages else {
        return Err(TranslateError::invalid("body", "it must be a JSON object"));
    };
    let mut out = Map::new();
    let mut inference = Map::new();
    let mut tool_config = Map::new();
    let mut additional = Map::new();
    for (k, v) in &req {
        match k.as_str() {
            "model" | "stream" => {}
            "max_tokens" => {
                inference.insert("maxTokens".into(), v.clone());
            }
            "temperature" => {
                inference.insert("temperature".into(), v.clone());
            }
            "top_p" => {
                inference.insert("topP".into(), v.clone());
            }
            "stop_sequences" => {
                inference.insert("stopSequences".into(), v.clone());
            }
            "system" => {
                let blocks = system(v)?;
                if !blocks.is_empty() {
                    out.insert("system".into(), Value::Array(blocks));
                }
            }
            "messages" => {
                let list = v
                    .as_array()
                    .ok_or_else(|| TranslateError::invalid("messages", "it must be an array"))?;
                let turns = list
                    .iter()
                    .enumerate()
                    .map(|(i, m)| turn(m, &format!("messages[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert("messages".into(), Value::Array(turns));
            }
            "tools" => {
                tool_config.insert("tools".into(), tools(v)?);
            }
            "tool_choice" => {
                if let Some(choice) = tool_choice(v)? {
                    tool_config.insert("toolChoice".into(), choice);
                }
            }
            // Bedrock's Claude models take Anthropic's `thinking` as it is, among the model's own fields
            // (docs.aws.amazon.com/bedrock/latest/userguide/claude-messages-extended-thinking.html).
            "thinking" => {
                additional.insert("thinking".into(), v.clone());
            }
            "metadata" => {
                if let Some(other) = v
                    .as_object()
                    .and_then(|o| o.keys().find(|k| *k != "user_id"))
                {
                    return Err(refuse(&format!("metadata.{other}"), "Converse has no such field"));
                }
                if let Some(user) = v["user_id"].as_str() {
                    out.insert("requestMetadata".into(), json!({ "user_id": user }));
                }
            }
            "top_k" => {
                return Err(refuse(
                    k,
                    "Converse's inferenceConfig has no top_k (each model takes it, if at all, under its own name)",
                ))
            }
            _ => return Err(refuse(k, "Converse has no such parameter")),
        }
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if !tool_config.is_empty() {
        if !tool_config.contains_key("tools") {
            return Err(TranslateError::invalid(
                "tool_choice",
                "it needs the tools it chooses from",
            ));
        }
        out.insert("toolConfig".into(), Value::Object(tool_config));
    }
    if !additional.is_empty() {
        out.insert(
            "additionalModelRequestFields".into(),
            Value::Object(additional),
        );
    }
    Ok(Value::Object(out))
}

/// A Converse request (`body`, as [`request_from_messages`] wrote it) with Anthropic's beta features (the
/// `anthropic-beta` header: names separated by commas) in `additionalModelRequestFields.anthropic_beta`.
pub fn with_betas(body: &[u8], betas: &str) -> Result<Value, TranslateError> {
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|_| TranslateError::invalid("body", "it must be a JSON object"))?;
    let names: Vec<Value> = betas
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| Value::String(b.to_string()))
        .collect();
    if let Some(req) = v.as_object_mut().filter(|_| !names.is_empty()) {
        let fields = req
            .entry("additionalModelRequestFields")
            .or_insert_with(|| json!({}));
        fields["anthropic_beta"] = Value::Array(names);
    }
    Ok(v)
}

/// A `cachePoint` block for a `cache_control` breakpoint (`{"type":"ephemeral","ttl"?}`), if the value has one.
fn cache_point(v: &Value, at: &str) -> Result<Option<Value>, TranslateError> {
    let Some(c) = v.get("cache_control").filter(|c| !c.is_null()) else {
        return Ok(None);
    };
    if c["type"] != "ephemeral" {
        return Err(refuse(
            &format!("{at}.cache_control.type"),
            "only ephemeral breakpoints have a Converse cachePoint",
        ));
    }
    let mut point = json!({ "type": "default" });
    match c.get("ttl").and_then(Value::as_str) {
        None => {}
        Some(ttl @ ("5m" | "1h")) => point["ttl"] = ttl.into(),
        Some(_) => {
            return Err(refuse(
                &format!("{at}.cache_control.ttl"),
                "Converse's cache points last 5m or 1h",
            ))
        }
    }
    Ok(Some(json!({ "cachePoint": point })))
}

/// The system prompt: a string, or text blocks (each with its breakpoint).
fn system(v: &Value) -> Result<Vec<Value>, TranslateError> {
    match v {
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({ "text": s })]),
        Value::Array(blocks) => {
            let mut out = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                let at = format!("system[{i}]");
                if b["type"] != "text" {
                    return Err(refuse(&at, "a system prompt can only be text"));
                }
                out.push(json!({ "text": b["text"] }));
                out.extend(cache_point(b, &at)?);
            }
            Ok(out)
        }
        _ => Err(TranslateError::invalid(
            "system",
            "it must be a string or text blocks",
        )),
    }
}

fn turn(m: &Value, at: &str) -> Result<Value, TranslateError> {
    let role = match m["role"].as_str() {
        Some(r @ ("user" | "assistant")) => r,
        _ => {
            return Err(TranslateError::invalid(
                format!("{at}.role"),
                "it must be user or assistant",
            ))
        }
    };
    let content = match &m["content"] {
        Value::String(s) => vec![json!({ "text": s })],
        Value::Array(blocks) => {
            let mut out = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                let at = format!("{at}.content[{i}]");
                out.push(block(b, &at)?);
                out.extend(cache_point(b, &at)?);
            }
            out
        }
        _ => {
            return Err(TranslateError::invalid(
                format!("{at}.content"),
                "it must be a string or blocks",
            ))
        }
    };
    Ok(json!({ "role": role, "content": content }))
}

/// One content block of a message.
fn block(b: &Value, at: &str) -> Result<Value, TranslateError> {
    match b["type"].as_str() {
        Some("text") => Ok(json!({ "text": b["text"] })),
        Some("image") => image(b, at),
        Some("tool_use") => Ok(json!({ "toolUse": {
            "toolUseId": b["id"], "name": b["name"], "input": b["input"] } })),
        Some("tool_result") => {
            let content = match &b["content"] {
                Value::Null => Vec::new(),
                Value::String(s) => vec![json!({ "text": s })],
                Value::Array(parts) => parts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let at = format!("{at}.content[{i}]");
                        match p["type"].as_str() {
                            Some("text") => Ok(json!({ "text": p["text"] })),
                            Some("image") => image(p, &at),
                            _ => Err(refuse(&at, "a tool's result can be text or images")),
                        }
                    })
                    .collect::<Result<_, _>>()?,
                _ => {
                    return Err(TranslateError::invalid(
                        format!("{at}.content"),
                        "it must be a string or blocks",
                    ))
                }
            };
            let mut result = json!({ "toolUseId": b["tool_use_id"], "content": content });
            if b["is_error"] == true {
                result["status"] = "error".into();
            }
            Ok(json!({ "toolResult": result }))
        }
        Some("thinking") => Ok(json!({ "reasoningContent": { "reasoningText": {
            "text": b["thinking"], "signature": b["signature"] } } })),
        Some("redacted_thinking") => {
            Ok(json!({ "reasoningContent": { "redactedContent": b["data"] } }))
        }
        Some("document") => Err(refuse(
            at,
            "documents are not translated to Converse (which names each document and takes fewer formats)",
        )),
        _ => Err(refuse(at, "this kind of content block has no Converse equivalent")),
    }
}

/// A base64 image (`{"type":"base64","media_type":"image/png","data"}`): Converse takes the bytes (base64 in
/// JSON) and the format's name.
fn image(b: &Value, at: &str) -> Result<Value, TranslateError> {
    let source = &b["source"];
    if source["type"] != "base64" {
        return Err(refuse(
            &format!("{at}.source"),
            "Converse takes an image's bytes (a data: URL) or an S3 object, not a web URL or a file id",
        ));
    }
    let format = match source["media_type"].as_str() {
        Some("image/png") => "png",
        Some("image/jpeg") => "jpeg",
        Some("image/gif") => "gif",
        Some("image/webp") => "webp",
        _ => {
            return Err(refuse(
                &format!("{at}.source.media_type"),
                "Converse takes png, jpeg, gif and webp images",
            ))
        }
    };
    Ok(json!({ "image": { "format": format, "source": { "bytes": source["data"] } } }))
}

fn tools(v: &Value) -> Result<Value, TranslateError> {
    let list = v
        .as_array()
        .ok_or_else(|| TranslateError::invalid("tools", "it must be an array"))?;
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let at = format!("tools[{i}]");
        if t.get("type").is_some_and(|k| k != "custom") {
            return Err(refuse(
                &format!("{at}.type"),
                "Anthropic's server tools do not run on Bedrock's Converse",
            ));
        }
        let mut spec = json!({ "name": t["name"], "inputSchema": { "json": t["input_schema"] } });
        if let Some(d) = t["description"].as_str().filter(|d| !d.is_empty()) {
            spec["description"] = d.into();
        }
        out.push(json!({ "toolSpec": spec }));
        out.extend(cache_point(t, &at)?);
    }
    Ok(Value::Array(out))
}

/// `auto`, `any` and `tool` have Converse equivalents; `none` and switching parallel calls off do not.
fn tool_choice(v: &Value) -> Result<Option<Value>, TranslateError> {
    if v["disable_parallel_tool_use"] == true {
        return Err(refuse(
            "tool_choice.disable_parallel_tool_use",
            "Converse cannot switch parallel tool calls off",
        ));
    }
    match v["type"].as_str() {
        Some("auto") => Ok(Some(json!({ "auto": {} }))),
        Some("any") => Ok(Some(json!({ "any": {} }))),
        Some("tool") => Ok(Some(json!({ "tool": { "name": v["name"] } }))),
        Some("none") => Err(refuse(
            "tool_choice",
            "Converse has no choice that forbids calling the tools offered; remove the tools instead",
        )),
        _ => Err(TranslateError::invalid(
            "tool_choice.type",
            "it must be auto, any, tool or none",
        )),
    }
}

/// Converse's stop reason in Anthropic's words.
pub fn stop_reason(reason: &str) -> &'static str {
    match reason {
        "tool_use" => "tool_use",
        "max_tokens" => "max_tokens",
        "stop_sequence" => "stop_sequence",
        "model_context_window_exceeded" => "model_context_window_exceeded",
        // A guardrail or the content filter stopped the answer: Anthropic's nearest is a refusal.
        "guardrail_intervened" | "content_filtered" => "refusal",
        _ => "end_turn",
    }
}

/// Converse's usage in Anthropic's fields: `input_tokens` without the cache's reads and writes, as both count it.
pub fn usage(u: &Value) -> Value {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let hour: u64 = u["cacheDetails"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["ttl"] == "1h")
        .map(|d| d["inputTokens"].as_u64().unwrap_or(0))
        .sum();
    let written = n("cacheWriteInputTokens");
    json!({
        "input_tokens": n("inputTokens"),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": n("cacheReadInputTokens"),
        "cache_creation": {
            "ephemeral_5m_input_tokens": written.saturating_sub(hour),
            "ephemeral_1h_input_tokens": hour.min(written),
        },
        "output_tokens": n("outputTokens"),
    })
}

/// An id for a Message built from a Converse answer, which has none of its own.
pub fn message_id() -> String {
    format!("msg_bdrk_{}", uuid::Uuid::now_v7().simple())
}

/// A Converse answer as a Message, named `model` (the name the client asked for: Converse answers name none).
pub fn response_to_messages(answer: &Value, model: &str) -> Value {
    let mut content = Vec::new();
    for b in answer["output"]["message"]["content"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(text) = b.get("text") {
            content.push(json!({ "type": "text", "text": text }));
        } else if let Some(call) = b.get("toolUse") {
            content.push(
                json!({ "type": "tool_use", "id": call["toolUseId"], "name": call["name"],
                "input": call["input"] }),
            );
        } else if let Some(r) = b.get("reasoningContent") {
            if let Some(t) = r.get("reasoningText") {
                content.push(json!({ "type": "thinking", "thinking": t["text"],
                    "signature": t["signature"] }));
            } else if let Some(data) = r.get("redactedContent") {
                content.push(json!({ "type": "redacted_thinking", "data": data }));
            }
        }
        // Nothing else comes back for a request this module writes (no documents, so no citations).
    }
    json!({
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(answer["stopReason"].as_str().unwrap_or("end_turn")),
        "stop_sequence": null,
        "usage": usage(&answer["usage"]),
    })
}
