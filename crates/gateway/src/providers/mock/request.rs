//! What the mock reads from a request beyond its head: how many choices, whether to call a tool, the answer's
//! format, and the embeddings' inputs. One reading serves every API, since the fields that matter have different
//! names but never collide:
//!
//! - tools: chat completions `{"type":"function","function":{"name","parameters"}}`, Responses
//!   `{"type":"function","name","parameters"}`, Messages `{"name","input_schema"}` (OpenAI's API reference,
//!   platform.openai.com/docs/api-reference/chat/create and .../responses/create; Anthropic's
//!   docs.anthropic.com/en/api/messages), Bedrock's Converse `toolConfig.tools[].toolSpec{name,inputSchema.json}`
//!   with `toolConfig.toolChoice` `{"auto":{}}`, `{"any":{}}` or `{"tool":{"name"}}`;
//! - `tool_choice`: OpenAI's `"none"`, `"auto"`, `"required"`, `{"type":"function","function":{"name"}}` (chat) or
//!   `{"type":"function","name"}` (Responses); Anthropic's `{"type":"none"|"auto"|"any"|"tool","name"}`;
//! - a tool's result as the last input: chat's `{"role":"tool"}` message, Responses' `function_call_output` item,
//!   Anthropic's user message with a `tool_result` block, Converse's with a `toolResult` block;
//! - the format: chat's `response_format` (`{"type":"json_schema","json_schema":{"name","schema","strict"}}`)
//!   and Responses' `text.format` (`{"type":"json_schema","name","schema","strict"}`), or `json_object`.

use serde::Deserialize;
use serde_json::Value;

use crate::protocol::contains;

/// The most choices OpenAI accepts in `n`.
const MAX_CHOICES: u64 = 128;

/// The request's fields the mock answers to (anything else is skipped unread).
#[derive(Debug, Default, Deserialize)]
struct Wire {
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    text: Option<Value>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    service_tier: Option<String>,
    /// Bedrock's Converse: `{"tools", "toolChoice"}`.
    #[serde(default, rename = "toolConfig")]
    tool_config: Option<Value>,
}

/// The conversation, read only when the mock is about to call a tool (to see whether it just got its result).
#[derive(Debug, Default, Deserialize)]
struct Conversation {
    #[serde(default)]
    messages: Vec<Value>,
    #[serde(default)]
    input: Option<Value>,
}

/// A tool the request offers: its name and the JSON schema of its arguments.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Tool {
    pub name: String,
    pub schema: Value,
}

/// The shape of the answer's text.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Format {
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON conforming to this schema.
    Schema(Value),
}

/// What the mock read from a request.
#[derive(Debug)]
pub(super) struct Ask {
    /// Chat completions' `n`: how many choices to answer with.
    pub choices: u64,
    /// The tool to call instead of answering with text.
    pub call: Option<Tool>,
    pub format: Format,
    /// The request's tools, tool choice and text configuration, echoed by the Responses API.
    pub tools: Vec<Value>,
    pub tool_choice: Option<Value>,
    pub text: Option<Value>,
    /// Embeddings: how many inputs, how long each vector, and whether as base64.
    pub inputs: usize,
    pub dimensions: Option<usize>,
    pub base64: bool,
    /// The tier the answer says it was served at, as OpenAI answers a request's `service_tier`: `flex` and
    /// `priority` as asked, anything else (`auto`, `default`, none) `default` (platform.openai.com/docs/
    /// api-reference/chat/create, `service_tier`).
    pub service_tier: &'static str,
}

impl Ask {
    /// Reads a request body (already known to be JSON: the head was read from it).
    pub fn read(body: &[u8]) -> Ask {
        let wire: Wire = serde_json::from_slice(body).unwrap_or_default();
        let format = wire
            .response_format
            .as_ref()
            .or_else(|| wire.text.as_ref().and_then(|t| t.get("format")))
            .map_or(Format::Text, format_of);
        let converse = |key: &str| wire.tool_config.as_ref().and_then(|c| c.get(key)).cloned();
        let tools = wire
            .tools
            .or_else(|| converse("tools").and_then(|t| serde_json::from_value(t).ok()))
            .unwrap_or_default();
        let tool_choice = wire.tool_choice.or_else(|| converse("toolChoice"));
        let call =
            chosen_tool(&tools, tool_choice.as_ref()).filter(|_| !answers_a_tool_result(body));
        Ask {
            choices: wire.n.unwrap_or(1).clamp(1, MAX_CHOICES),
            call,
            format,
            tools,
            tool_choice,
            text: wire.text,
            inputs: wire.input.as_ref().map_or(1, input_count),
            dimensions: wire.dimensions.filter(|&d| d > 0),
            base64: wire.encoding_format.as_deref() == Some("base64"),
            service_tier: match wire.service_tier.as_deref() {
                Some("flex") => "flex",
                Some("priority") => "priority",
                _ => "default",
            },
        }
    }
}

fn format_of(f: &Value) -> Format {
    match f.get("type").and_then(Value::as_str) {
        Some("json_object") => Format::JsonObject,
        Some("json_schema") => {
            // Chat nests the schema under `json_schema`; Responses puts it beside `type`.
            let schema = f
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .or_else(|| f.get("schema"));
            Format::Schema(schema.cloned().unwrap_or_else(|| serde_json::json!({})))
        }
        _ => Format::Text,
    }
}

/// A function tool (OpenAI) or a client tool with an input schema (Anthropic); built-in tools are not called.
fn tool_of(t: &Value) -> Option<Tool> {
    let kind = t.get("type").and_then(Value::as_str);
    let (name, schema) = if let Some(f) = t.get("function").filter(|_| kind == Some("function")) {
        (f.get("name"), f.get("parameters"))
    } else if kind == Some("function") {
        (t.get("name"), t.get("parameters"))
    } else if let Some(schema) = t.get("input_schema") {
        (t.get("name"), Some(schema))
    } else if let Some(spec) = t.get("toolSpec") {
        (
            spec.get("name"),
            spec.get("inputSchema").and_then(|s| s.get("json")),
        )
    } else {
        return None;
    };
    Some(Tool {
        name: name?.as_str()?.to_string(),
        schema: schema
            .cloned()
            .unwrap_or_else(|| serde_json::json!({ "type": "object", "properties": {} })),
    })
}

/// The tool `tool_choice` asks for: none for `"none"`, the named one, or else the first.
fn chosen_tool(tools: &[Value], choice: Option<&Value>) -> Option<Tool> {
    let kind = choice.and_then(|c| c.as_str().or_else(|| c.get("type")?.as_str()));
    if kind == Some("none") {
        return None;
    }
    let named = choice.and_then(|c| {
        c.get("function")
            .or_else(|| c.get("tool"))
            .and_then(|f| f.get("name"))
            .or_else(|| c.get("name"))?
            .as_str()
    });
    let mut offered = tools.iter().filter_map(tool_of);
    match named {
        Some(n) => offered.find(|t| t.name == n),
        None => offered.next(),
    }
}

/// Whether the conversation's last turn is a tool's result, which the model answers in words (so that agent loops
/// end). Only read when there is a tool to call.
fn answers_a_tool_result(body: &[u8]) -> bool {
    let Ok(c) = serde_json::from_slice::<Conversation>(body) else {
        return false;
    };
    let last_item = c
        .input
        .as_ref()
        .and_then(Value::as_array)
        .and_then(|items| items.last());
    if let Some(item) = last_item {
        return item.get("type").and_then(Value::as_str) == Some("function_call_output");
    }
    let Some(last) = c.messages.last() else {
        return false;
    };
    match last.get("role").and_then(Value::as_str) {
        Some("tool" | "function") => true,
        Some("user") => last
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|blocks| {
                blocks.iter().any(|b| {
                    b.get("type").and_then(Value::as_str) == Some("tool_result")
                        || b.get("toolResult").is_some()
                })
            }),
        _ => false,
    }
}

/// Embeddings' inputs: a string, an array of strings, one array of tokens, or an array of token arrays.
fn input_count(input: &Value) -> usize {
    match input.as_array() {
        Some(items) if items.iter().all(Value::is_number) => 1,
        Some(items) => items.len().max(1),
        None => 1,
    }
}

/// Of `written` cache-write tokens, those written with a one-hour lifetime: the share of the request's
/// breakpoints (`key`: `"cache_control"`, or Bedrock's `"cachePoint"`) marked `"ttl":"1h"` (Anthropic:
/// `{"type":"ephemeral","ttl":"5m"|"1h"}`, five minutes by default; docs.anthropic.com/en/docs/build-with-claude/
/// prompt-caching; Bedrock: `{"type":"default","ttl":"5m"|"1h"}`). Read from the bytes: a breakpoint's object
/// holds no other object, so it ends at the first `}`.
pub(super) fn one_hour_writes(body: &[u8], key: &[u8], written: u64) -> u64 {
    let (mut marks, mut hours) = (0u64, 0u64);
    let mut rest = body;
    while let Some(at) = memchr::memmem::find(rest, key) {
        rest = &rest[at + key.len()..];
        let end = memchr::memchr(b'}', rest).map_or(rest.len(), |e| e + 1);
        marks += 1;
        if contains(&rest[..end], b"\"1h\"") {
            hours += 1;
        }
        rest = &rest[end..];
    }
    if marks == 0 {
        return 0;
    }
    written * hours / marks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(v: Value) -> Ask {
        Ask::read(v.to_string().as_bytes())
    }

    #[test]
    fn reads_each_apis_tools_and_choices() {
        let schema =
            serde_json::json!({ "type": "object", "properties": { "city": { "type": "string" } } });
        let chat = ask(serde_json::json!({
            "n": 3, "messages": [{ "role": "user", "content": "hi" }],
            "tools": [{ "type": "function", "function": { "name": "weather", "parameters": schema } },
                      { "type": "function", "function": { "name": "time" } }],
            "tool_choice": { "type": "function", "function": { "name": "time" } },
        }));
        assert_eq!(chat.choices, 3);
        assert_eq!(chat.call.map(|t| t.name), Some("time".to_string()));
        let responses = ask(serde_json::json!({
            "input": "hi", "tools": [{ "type": "web_search" }, { "type": "function", "name": "weather", "parameters": schema }],
        }));
        assert_eq!(
            responses.call,
            Some(Tool {
                name: "weather".into(),
                schema: schema.clone()
            })
        );
        let messages = ask(serde_json::json!({
            "messages": [{ "role": "user", "content": "hi" }],
            "tools": [{ "name": "weather", "input_schema": schema }], "tool_choice": { "type": "any" },
        }));
        assert_eq!(messages.call.map(|t| t.name), Some("weather".to_string()));
        for none in [
            serde_json::json!("none"),
            serde_json::json!({ "type": "none" }),
        ] {
            let a = ask(serde_json::json!({
                "tools": [{ "name": "weather", "input_schema": schema }], "tool_choice": none,
            }));
            assert!(a.call.is_none());
        }
        assert_eq!(ask(serde_json::json!({ "n": 0 })).choices, 1);
        assert_eq!(ask(serde_json::json!({})).call, None);
    }

    #[test]
    fn a_tools_result_is_answered_in_words() {
        let tools = serde_json::json!([{ "type": "function", "function": { "name": "f" } }]);
        let chat = ask(serde_json::json!({ "tools": tools, "messages": [
            { "role": "user", "content": "hi" },
            { "role": "assistant", "tool_calls": [] },
            { "role": "tool", "tool_call_id": "call_1", "content": "sunny" }] }));
        assert!(chat.call.is_none());
        let responses = ask(serde_json::json!({
            "tools": [{ "type": "function", "name": "f" }],
            "input": [{ "role": "user", "content": "hi" }, { "type": "function_call_output", "call_id": "c", "output": "1" }],
        }));
        assert!(responses.call.is_none());
        let messages = ask(
            serde_json::json!({ "tools": [{ "name": "f", "input_schema": {} }], "messages": [
            { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "toolu_1", "content": "1" }] }] }),
        );
        assert!(messages.call.is_none());
    }

    #[test]
    fn reads_formats_and_embedding_inputs() {
        let schema = serde_json::json!({ "type": "object" });
        let chat = ask(serde_json::json!({ "response_format": {
            "type": "json_schema", "json_schema": { "name": "x", "schema": schema, "strict": true } } }));
        assert_eq!(chat.format, Format::Schema(schema.clone()));
        let responses = ask(serde_json::json!({ "text": { "format": {
            "type": "json_schema", "name": "x", "schema": schema, "strict": true } } }));
        assert_eq!(responses.format, Format::Schema(schema));
        let object = ask(serde_json::json!({ "response_format": { "type": "json_object" } }));
        assert_eq!(object.format, Format::JsonObject);
        assert_eq!(ask(serde_json::json!({ "input": "a" })).inputs, 1);
        assert_eq!(ask(serde_json::json!({ "input": ["a", "b"] })).inputs, 2);
        assert_eq!(ask(serde_json::json!({ "input": [1, 2, 3] })).inputs, 1);
        assert_eq!(ask(serde_json::json!({ "input": [[1], [2]] })).inputs, 2);
        let e =
            ask(serde_json::json!({ "input": "a", "encoding_format": "base64", "dimensions": 8 }));
        assert!(e.base64);
        assert_eq!(e.dimensions, Some(8));
    }

    const KEY: &[u8] = b"\"cache_control\"";

    #[test]
    fn one_hour_writes_follow_the_marked_breakpoints() {
        let one = br#"{"system":[{"text":"x","cache_control":{"type":"ephemeral","ttl":"1h"}}]}"#;
        assert_eq!(one_hour_writes(one, KEY, 512), 512);
        let both = br#"[{"cache_control":{"type":"ephemeral","ttl":"1h"}},{"cache_control": {"type":"ephemeral"}}]"#;
        assert_eq!(one_hour_writes(both, KEY, 512), 256);
        assert_eq!(
            one_hour_writes(br#"{"cache_control":{"type":"ephemeral"}}"#, KEY, 512),
            0
        );
    }
}
