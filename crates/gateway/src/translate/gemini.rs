//! Between Anthropic's Messages API (the pivot) and Google's Gemini API: a Messages request becomes a
//! `GenerateContentRequest`, and a `GenerateContentResponse` becomes a Message. A chat completion reaches Gemini
//! through the pivot (`mod.rs` chains `to_anthropic`), with the few chat parameters Gemini has and Anthropic lacks
//! carried directly ([`chat_extras`]).
//!
//! Shapes from Google's API reference (ai.google.dev/api/generate-content: `Content`, `Part`, `FunctionCall`,
//! `FunctionResponse`, `Tool`, `ToolConfig`, `GenerationConfig`, `FinishReason`, `UsageMetadata`; ai.google.dev/api/caching
//! for `Content`) and its SDK's types (googleapis/python-genai `types.py`), and Anthropic's
//! (docs.anthropic.com/en/api/messages).
//!
//! - turns: `user` stays `user`, `assistant` is Gemini's `model`; the system prompt is `systemInstruction`;
//! - blocks: text is a text part, a base64 image or PDF an `inlineData` part; an image by URL has no faithful
//!   equivalent (Gemini reads files by URL only from its own Files API) and is refused;
//! - tools: Anthropic tools are `functionDeclarations` with their JSON schema as `parametersJsonSchema` (full JSON
//!   Schema, where `parameters` takes only an OpenAPI subset); `tool_use` is a `functionCall` part, `tool_result`
//!   a `functionResponse` part with the function's name (found from the `tool_use` it answers) and the result as
//!   `{"output": ...}`, or `{"error": ...}` for an error (the field's documented convention);
//! - `tool_choice` is `toolConfig.functionCallingConfig`: `auto` -> `AUTO`, `any` -> `ANY`, `tool` -> `ANY` with
//!   `allowedFunctionNames`, `none` -> `NONE`; Gemini cannot be kept from calling several functions at once, so
//!   `disable_parallel_tool_use` is refused;
//! - thinking models sign their calls (`thoughtSignature`, which Gemini 3 requires back in the next turn): the
//!   signature rides in the tool call's id (`{id}__sig__{signature}`) and goes back on the `functionCall` part,
//!   so a client that keeps only ids (every OpenAI and Anthropic client) hands it back unchanged. Ids are never
//!   sent to Gemini, which matches a response to its call by name and order;
//! - the answer: `finishReason` `STOP` is `end_turn` (or `tool_use` when the answer calls a function: Gemini says
//!   `STOP` for both), `MAX_TOKENS` `max_tokens`, the safety reasons `refusal`; usage as Anthropic's, the
//!   context-cache reads as `cache_read_input_tokens`, the thoughts within `output_tokens`.
//!
//! Gemini says `STOP` at a stop sequence too, without naming it: such an answer ends `end_turn`, never
//! `stop_sequence`.
//!
//! Anthropic's `cache_control` marks are accepted and not sent: Gemini caches prompt prefixes by itself (implicit
//! caching), and the marks change nothing in the answer.

use serde_json::{json, Map, Value};

use super::TranslateError;

const TARGET: &str = "Google's Gemini API";

/// The separator of a tool call's id and the call's thought signature (standard base64 has no `_`).
const SIG: &str = "__sig__";

/// Gemini accepts at most five stop sequences (`GenerationConfig.stopSequences`).
const MAX_STOP: usize = 5;

fn refuse(param: &str, why: &str) -> TranslateError {
    TranslateError::untranslatable(param, TARGET, why)
}

/// A Messages request as a `GenerateContentRequest`. The model and whether it streams are not in the body: they
/// go in the URL.
pub fn request_from_messages(messages: Value) -> Result<Value, TranslateError> {
    let Value::Object(req) = messages else {
        return Err(TranslateError::invalid("body", "it must be a JSON object"));
    };
    let mut out = Map::new();
    let mut config = Map::new();
    let mut calling: Option<Value> = None;
    for (k, v) in &req {
        match k.as_str() {
            "model" | "stream" => {}
            "system" => {
                if let Some(s) = system(v)? {
                    out.insert("systemInstruction".into(), s);
                }
            }
            "messages" => {
                out.insert("contents".into(), contents(v)?);
            }
            "max_tokens" => {
                config.insert("maxOutputTokens".into(), v.clone());
            }
            "temperature" => {
                config.insert("temperature".into(), v.clone());
            }
            "top_p" => {
                config.insert("topP".into(), v.clone());
            }
            "top_k" => {
                config.insert("topK".into(), v.clone());
            }
            "stop_sequences" => {
                if v.as_array().is_some_and(|s| s.len() > MAX_STOP) {
                    return Err(refuse(k, "Gemini accepts at most five stop sequences"));
                }
                config.insert("stopSequences".into(), v.clone());
            }
            "tools" => {
                out.insert("tools".into(), tools(v)?);
            }
            "tool_choice" => calling = Some(tool_choice(v)?),
            "thinking" => {
                config.insert("thinkingConfig".into(), thinking(v)?);
            }
            "metadata" => return Err(refuse(k, "Gemini's API takes no end-user id or metadata")),
            _ => return Err(refuse(k, "Gemini has no such parameter")),
        }
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    if let Some(c) = calling {
        out.insert("toolConfig".into(), json!({ "functionCallingConfig": c }));
    }
    Ok(Value::Object(out))
}

/// The system prompt as `systemInstruction` (text only); `None` when empty.
fn system(v: &Value) -> Result<Option<Value>, TranslateError> {
    let parts: Vec<Value> = match v {
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => vec![json!({ "text": s })],
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b["type"].as_str() {
                Some("text") => Ok(json!({ "text": b["text"] })),
                _ => Err(refuse("system", "a system prompt can only be text")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(TranslateError::invalid("system", "it must be text")),
    };
    Ok((!parts.is_empty()).then(|| json!({ "parts": parts })))
}

/// The conversation as Gemini's `contents`.
fn contents(v: &Value) -> Result<Value, TranslateError> {
    let list = v
        .as_array()
        .ok_or_else(|| TranslateError::invalid("messages", "it must be an array"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        if let Some(k) = m
            .as_object()
            .and_then(|o| o.keys().find(|k| !matches!(k.as_str(), "role" | "content")))
        {
            return Err(refuse(
                &format!("{at}.{k}"),
                "Gemini's contents have no such field",
            ));
        }
        let role = match m["role"].as_str() {
            Some("user") => "user",
            Some("assistant") => "model",
            _ => {
                return Err(TranslateError::invalid(
                    format!("{at}.role"),
                    "it must be user or assistant",
                ))
            }
        };
        let parts = match &m["content"] {
            Value::String(s) => vec![json!({ "text": s })],
            Value::Array(blocks) => blocks
                .iter()
                .enumerate()
                .map(|(j, b)| part(b, &format!("{at}.content[{j}]"), &list[..i]))
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(TranslateError::invalid(
                    format!("{at}.content"),
                    "it must be a string or an array of blocks",
                ))
            }
        };
        out.push(json!({ "role": role, "parts": parts }));
    }
    Ok(Value::Array(out))
}

/// One content block as a part; `before` is the conversation before its turn (where a `tool_result`'s call is).
fn part(b: &Value, at: &str, before: &[Value]) -> Result<Value, TranslateError> {
    match b["type"].as_str() {
        Some("text") => {
            if b.get("citations").is_some_and(|c| !c.is_null()) {
                return Err(refuse(&format!("{at}.citations"), "Gemini's parts carry no citations"));
            }
            Ok(json!({ "text": b["text"] }))
        }
        Some("image" | "document") => inline(&b["source"], at),
        Some("tool_use") => {
            let (_, signature) = split_id(b["id"].as_str().unwrap_or(""));
            let args = if b["input"].is_object() { b["input"].clone() } else { json!({}) };
            let mut p = json!({ "functionCall": { "name": b["name"], "args": args } });
            if let Some(s) = signature {
                p["thoughtSignature"] = s.into();
            }
            Ok(p)
        }
        Some("tool_result") => {
            let id = b["tool_use_id"].as_str().unwrap_or("");
            let name = call_name(before, id).ok_or_else(|| {
                TranslateError::invalid(
                    format!("{at}.tool_use_id"),
                    "no earlier tool_use has this id, and Gemini needs the name of the function it answers",
                )
            })?;
            let text = super::plain_text(&b["content"]).ok_or_else(|| {
                refuse(&format!("{at}.content"), "a function's response can only be text here")
            })?;
            let key = if b["is_error"] == true { "error" } else { "output" };
            Ok(json!({ "functionResponse": { "name": name, "response": { key: text } } }))
        }
        Some("thinking") => {
            let mut p = json!({ "text": b["thinking"], "thought": true });
            if let Some(s) = b["signature"].as_str().filter(|s| !s.is_empty()) {
                p["thoughtSignature"] = s.into();
            }
            Ok(p)
        }
        other => Err(refuse(
            &format!("{at}.type={}", other.unwrap_or("?")),
            "only text, image, document, tool_use, tool_result and thinking blocks have a Gemini equivalent",
        )),
    }
}

/// A base64 image or document as `inlineData`; a source by URL or file id is refused.
fn inline(source: &Value, at: &str) -> Result<Value, TranslateError> {
    match source["type"].as_str() {
        Some("base64") => Ok(json!({ "inlineData": {
            "mimeType": source["media_type"], "data": source["data"] } })),
        Some(kind) => Err(refuse(
            &format!("{at}.source.type={kind}"),
            "Gemini reads files by URL only from its own Files API; send the image or document inline (base64, \
             or a data: URL in OpenAI's API)",
        )),
        None => Err(TranslateError::invalid(format!("{at}.source"), "it must name its type")),
    }
}

/// The name of the function the `tool_use` of `id` called, in the turns before.
fn call_name<'a>(before: &'a [Value], id: &str) -> Option<&'a Value> {
    before
        .iter()
        .rev()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .find(|b| b["type"] == "tool_use" && b["id"] == id)
        .map(|b| &b["name"])
}

/// Anthropic's custom tools as one tool of `functionDeclarations`; server tools (web search, code execution...)
/// have no equivalent here.
fn tools(v: &Value) -> Result<Value, TranslateError> {
    let list = v
        .as_array()
        .ok_or_else(|| TranslateError::invalid("tools", "it must be an array"))?;
    let declarations = list
        .iter()
        .map(|t| {
            if !matches!(t["type"].as_str(), None | Some("custom")) {
                return Err(refuse(
                    &format!("tools[].type={}", t["type"].as_str().unwrap_or("?")),
                    "only custom tools have a Gemini equivalent",
                ));
            }
            if let Some(k) = t.as_object().and_then(|o| {
                o.keys().find(|k| {
                    !matches!(
                        k.as_str(),
                        "type" | "name" | "description" | "input_schema" | "cache_control"
                    )
                })
            }) {
                return Err(refuse(
                    &format!("tools[].{k}"),
                    "Gemini's function declarations have no such field",
                ));
            }
            let mut d = json!({ "name": t["name"] });
            if let Some(desc) = t["description"].as_str() {
                d["description"] = desc.into();
            }
            if t["input_schema"].is_object() {
                d["parametersJsonSchema"] = t["input_schema"].clone();
            }
            Ok(d)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!([{ "functionDeclarations": declarations }]))
}

/// `tool_choice` as `functionCallingConfig`.
fn tool_choice(v: &Value) -> Result<Value, TranslateError> {
    if v["disable_parallel_tool_use"] == true {
        return Err(refuse(
            "tool_choice.disable_parallel_tool_use",
            "Gemini cannot be kept from calling several functions at once",
        ));
    }
    Ok(match v["type"].as_str() {
        Some("auto") => json!({ "mode": "AUTO" }),
        Some("any") => json!({ "mode": "ANY" }),
        Some("none") => json!({ "mode": "NONE" }),
        Some("tool") => json!({ "mode": "ANY", "allowedFunctionNames": [v["name"]] }),
        _ => {
            return Err(TranslateError::invalid(
                "tool_choice.type",
                "it must be auto, none, any or tool",
            ))
        }
    })
}

/// Extended thinking as `thinkingConfig`: a budget of thinking tokens, with the thoughts returned (as Anthropic
/// returns thinking blocks); `disabled` is a budget of none.
fn thinking(v: &Value) -> Result<Value, TranslateError> {
    match v["type"].as_str() {
        Some("enabled") => {
            Ok(json!({ "thinkingBudget": v["budget_tokens"], "includeThoughts": true }))
        }
        Some("disabled") => Ok(json!({ "thinkingBudget": 0 })),
        _ => Err(TranslateError::invalid(
            "thinking.type",
            "it must be enabled or disabled",
        )),
    }
}

/// The chat completion parameters that Gemini has and Anthropic's Messages API lacks, taken out of `chat` before
/// it is translated to the pivot and returned as `generationConfig` members; and whether `chat` set an output
/// limit (without one Gemini's own default applies, rather than the pivot's required `max_tokens`). What the pivot
/// would refuse in Anthropic's words but Gemini refuses for its own reasons is refused here, naming the chat
/// parameter.
pub fn chat_extras(
    chat: &mut Map<String, Value>,
) -> Result<(Map<String, Value>, bool), TranslateError> {
    let mut config = Map::new();
    // Same range (0 to 2) and meaning as OpenAI's, where Anthropic's stops at 1.
    if let Some(t) = chat.remove("temperature").filter(|t| !t.is_null()) {
        config.insert("temperature".into(), t);
    }
    if let Some(seed) = chat.remove("seed").filter(|s| !s.is_null()) {
        config.insert("seed".into(), seed);
    }
    for (k, g) in [
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = chat.remove(k).filter(|v| !v.is_null()) {
            config.insert(g.into(), v);
        }
    }
    if let Some(f) = chat.remove("response_format") {
        match f["type"].as_str() {
            None | Some("text") => {}
            Some("json_object") => {
                config.insert("responseMimeType".into(), "application/json".into());
            }
            Some("json_schema") => {
                let schema = &f["json_schema"]["schema"];
                if !schema.is_object() {
                    return Err(TranslateError::invalid(
                        "response_format.json_schema.schema",
                        "it must be a JSON schema",
                    ));
                }
                // Gemini decodes to the schema (structured output), as `strict` asks.
                config.insert("responseMimeType".into(), "application/json".into());
                config.insert("responseJsonSchema".into(), schema.clone());
            }
            Some(other) => {
                return Err(refuse(
                    &format!("response_format.type={other}"),
                    "Gemini knows JSON objects and JSON schemas",
                ))
            }
        }
    }
    match chat.get("n").and_then(Value::as_u64) {
        Some(n) if n > 1 => {
            return Err(refuse(
                "n",
                "the translated answer carries one choice (Gemini's candidateCount would be lost)",
            ))
        }
        _ => {
            chat.remove("n");
        }
    }
    if chat.get("user").is_some_and(|u| !u.is_null()) {
        return Err(refuse("user", "Gemini's API takes no end-user id"));
    }
    if chat.remove("parallel_tool_calls") == Some(Value::Bool(false)) {
        return Err(refuse(
            "parallel_tool_calls",
            "Gemini cannot be kept from calling several functions at once",
        ));
    }
    for (i, m) in chat
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (j, p) in m["content"].as_array().into_iter().flatten().enumerate() {
            let url = p["image_url"]["url"].as_str().unwrap_or("data:");
            if p["type"] == "image_url" && !url.starts_with("data:") {
                return Err(refuse(
                    &format!("messages[{i}].content[{j}].image_url.url"),
                    "Gemini reads images by URL only from its own Files API; send the image as a data: URL",
                ));
            }
        }
    }
    let limited = ["max_tokens", "max_completion_tokens"]
        .iter()
        .any(|k| chat.get(*k).is_some_and(|v| !v.is_null()));
    Ok((config, limited))
}

/// A chat completion request as a `GenerateContentRequest`, through the Messages pivot: [`chat_extras`] first,
/// then `to_anthropic` and [`request_from_messages`]. `max_tokens` is the pivot's required output limit, dropped
/// again when the client set none.
pub fn request_from_chat(chat: Value, max_tokens: u64) -> Result<Value, TranslateError> {
    let Value::Object(mut chat) = chat else {
        return Err(TranslateError::invalid("body", "it must be a JSON object"));
    };
    let (extras, limited) = chat_extras(&mut chat)?;
    let pivot =
        super::to_anthropic::request(Value::Object(chat), max_tokens).map_err(|e| match e {
            // What the pivot cannot carry does not reach Gemini either.
            TranslateError::Untranslatable { param, why, .. } => TranslateError::Untranslatable {
                param,
                target: "Google's Gemini API (through Anthropic's Messages API)",
                why,
            },
            other => other,
        })?;
    let mut out = request_from_messages(pivot)?;
    let Some(obj) = out.as_object_mut() else {
        return Ok(out);
    };
    let config = obj.entry("generationConfig").or_insert_with(|| json!({}));
    if let Some(c) = config.as_object_mut() {
        if !limited {
            c.remove("maxOutputTokens");
        }
        c.extend(extras);
    }
    if config.as_object().is_some_and(Map::is_empty) {
        obj.remove("generationConfig");
    }
    Ok(out)
}

/// A tool call's id without its thought signature, and the signature.
fn split_id(id: &str) -> (&str, Option<&str>) {
    match id.split_once(SIG) {
        Some((id, sig)) => (id, Some(sig)),
        None => (id, None),
    }
}

/// The id a client sees for the `n`th call of an answer: Gemini's own id when it gave one, else one made from
/// the answer's id, `n` and the function's name; with the call's thought signature after [`SIG`].
pub(super) fn tool_id(
    call: &Value,
    signature: Option<&str>,
    response_id: &str,
    n: usize,
) -> String {
    let base = match call["id"].as_str() {
        Some(id) => id.to_string(),
        None => {
            let seed = format!("{response_id}/{n}/{}", call["name"].as_str().unwrap_or(""));
            format!(
                "toolu_gemini_{:016x}",
                spendgate_core::hash::fnv1a(&[b"gemini.call\0".as_slice(), seed.as_bytes()])
            )
        }
    };
    match signature {
        Some(s) => format!("{base}{SIG}{s}"),
        None => base,
    }
}

/// A `finishReason` as a Message's `stop_reason`; `called`: the answer calls a function.
pub(super) fn stop_reason(finish: &str, called: bool) -> &'static str {
    match finish {
        "STOP" if called => "tool_use",
        "MAX_TOKENS" => "max_tokens",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION"
        | "LANGUAGE" => "refusal",
        _ if called => "tool_use",
        _ => "end_turn",
    }
}

/// Gemini's `usageMetadata` as Anthropic's usage: the uncached prompt (with the tools' results given back to the
/// model) as `input_tokens`, the context-cache reads apart, the thoughts within `output_tokens`. `pivot` adds the
/// thoughts' count as `reasoning_output_tokens`, for the chat completion built from this Message
/// (`to_openai::usage`); an Anthropic client gets Anthropic's fields only.
pub(super) fn usage(u: &Value, pivot: bool) -> Value {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let prompt = n("promptTokenCount").saturating_add(n("toolUsePromptTokenCount"));
    let cached = n("cachedContentTokenCount").min(prompt);
    let thoughts = n("thoughtsTokenCount");
    let mut v = json!({
        "input_tokens": prompt - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": n("candidatesTokenCount").saturating_add(thoughts),
    });
    if pivot {
        v["reasoning_output_tokens"] = thoughts.into();
    }
    v
}

/// The parts of a response's first candidate (the only one: `candidateCount` is never sent).
pub(super) fn parts(response: &Value) -> impl Iterator<Item = &Value> {
    response["candidates"][0]["content"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
}

/// A function call's arguments (an object; none as `{}`).
pub(super) fn args(call: &Value) -> Value {
    if call["args"].is_object() {
        call["args"].clone()
    } else {
        json!({})
    }
}

/// The Message's `id` for a response's `responseId`.
pub(super) fn message_id(answer: &Value) -> String {
    format!("msg_{}", answer["responseId"].as_str().unwrap_or("gemini"))
}

/// A `GenerateContentResponse` (its first candidate) as a Message.
pub fn response_to_messages(answer: &Value) -> Value {
    message(answer, false)
}

/// [`response_to_messages`]; `pivot`: for a chat completion (see [`usage`]).
pub(super) fn message(answer: &Value, pivot: bool) -> Value {
    let candidate = &answer["candidates"][0];
    let response_id = answer["responseId"].as_str().unwrap_or("");
    let mut content: Vec<Value> = Vec::new();
    let mut calls = 0;
    for p in parts(answer) {
        let signature = p["thoughtSignature"].as_str();
        if let Some(call) = p.get("functionCall") {
            let input = args(call);
            content.push(
                json!({ "type": "tool_use", "id": tool_id(call, signature, response_id, calls),
                "name": call["name"], "input": input }),
            );
            calls += 1;
        } else if let Some(text) = p["text"].as_str() {
            if p["thought"] == true {
                content.push(json!({ "type": "thinking", "thinking": text, "signature": signature.unwrap_or("") }));
            } else if !text.is_empty() {
                // Consecutive text parts are one block, as Anthropic would send them.
                match content.last_mut() {
                    Some(last) if last["type"] == "text" => {
                        let joined = format!("{}{text}", last["text"].as_str().unwrap_or(""));
                        last["text"] = joined.into();
                    }
                    _ => content.push(json!({ "type": "text", "text": text })),
                }
            }
        }
    }
    let stop = match candidate["finishReason"].as_str() {
        Some(f) => stop_reason(f, calls > 0),
        // No candidate: the prompt itself was refused (`promptFeedback.blockReason`).
        None if answer["promptFeedback"]["blockReason"].is_string() => "refusal",
        None => "end_turn",
    };
    json!({
        "id": message_id(answer),
        "type": "message",
        "role": "assistant",
        "model": answer["modelVersion"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage(&answer["usageMetadata"], pivot),
    })
}
