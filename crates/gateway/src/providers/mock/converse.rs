//! The mock's Bedrock Converse answers. Shapes from Bedrock's API reference (API_runtime_Converse.html,
//! API_runtime_ConverseStream.html, API_runtime_TokenUsage.html) and botocore's `bedrock-runtime` service model:
//! - a complete answer: `output.message` (`role` `assistant`, `content` blocks: `{"text"}`, or `{"toolUse":
//!   {"toolUseId","name","input"}}` when the request offers a tool to call), `stopReason` (`tool_use`,
//!   `max_tokens` when the output limit cut the text short, `end_turn`), `usage` and `metrics`;
//! - `usage`: `inputTokens` (the prompt tokens neither read from nor written to the cache),
//!   `cacheReadInputTokens`, `cacheWriteInputTokens` with `cacheDetails` by lifetime (`ttl` `1h` or `5m`, the
//!   hour-long first), `outputTokens` and `totalTokens` (all of them);
//! - a stream in AWS's binary event stream: `messageStart`, for a tool call a `contentBlockStart` with the tool's
//!   id and name (text blocks have none), `contentBlockDelta`s (`{"text"}` or `{"toolUse":{"input"}}` with a
//!   piece of the input's JSON), `contentBlockStop`, `messageStop` with the stop reason and `metadata` with the
//!   usage. Every event carries the `p` padding field Bedrock adds to hide the events' lengths.

use bytes::Bytes;
use serde_json::{json, Value};
use spendgate_core::Usage;

use super::{Answer, Shape};
use crate::protocol::eventstream::encode_event;

pub struct Converse;

/// What Bedrock pads its events with (the content is meaningless; its length varies in real streams).
const PADDING: &str = "abcdefghijklmnop";

fn usage_json(a: &Answer<'_>, u: &Usage) -> Value {
    let mut v = json!({
        "inputTokens": u.uncached_input_tokens(),
        "outputTokens": u.output_tokens,
        "totalTokens": u.input_tokens + u.output_tokens,
        "cacheReadInputTokens": u.cached_input_tokens,
        "cacheWriteInputTokens": u.cache_write_tokens,
    });
    if u.cache_write_tokens > 0 {
        v["cacheDetails"] = json!([
            { "ttl": "1h", "inputTokens": a.one_hour_writes },
            { "ttl": "5m", "inputTokens": u.cache_write_tokens - a.one_hour_writes },
        ]);
    }
    v
}

fn tool_use_id(a: &Answer<'_>) -> String {
    format!("tooluse_mock{}", a.id)
}

fn stop_reason(a: &Answer<'_>) -> &'static str {
    a.first().ending(["tool_use", "max_tokens", "end_turn"])
}

fn event(name: &str, mut payload: Value) -> Bytes {
    payload["p"] = PADDING.into();
    Bytes::from(encode_event(name, payload.to_string().as_bytes()))
}

impl Shape for Converse {
    fn body(&self, a: &Answer<'_>) -> Value {
        let c = a.first();
        let block = match c.call_name() {
            Some(name) => {
                let input: Value = serde_json::from_str(&c.text()).unwrap_or_else(|_| json!({}));
                json!({ "toolUse": { "toolUseId": tool_use_id(a), "name": name, "input": input } })
            }
            None => json!({ "text": c.text() }),
        };
        let mut v = json!({
            "output": { "message": { "role": "assistant", "content": [block] } },
            "stopReason": stop_reason(a),
            "metrics": { "latencyMs": 0 },
        });
        if let Some(u) = &a.usage {
            v["usage"] = usage_json(a, u);
        }
        v
    }

    fn events(&self, a: &Answer<'_>) -> Vec<Bytes> {
        let c = a.first();
        let mut events = Vec::with_capacity(c.pieces().len() + 6);
        events.push(event("messageStart", json!({ "role": "assistant" })));
        if let Some(name) = c.call_name() {
            events.push(event(
                "contentBlockStart",
                json!({ "contentBlockIndex": 0,
                    "start": { "toolUse": { "toolUseId": tool_use_id(a), "name": name } } }),
            ));
        }
        for p in c.pieces() {
            let delta = match c.call_name() {
                Some(_) => json!({ "toolUse": { "input": p } }),
                None => json!({ "text": p }),
            };
            events.push(event(
                "contentBlockDelta",
                json!({ "contentBlockIndex": 0, "delta": delta }),
            ));
        }
        events.push(event("contentBlockStop", json!({ "contentBlockIndex": 0 })));
        events.push(event(
            "messageStop",
            json!({ "stopReason": stop_reason(a) }),
        ));
        if let Some(u) = &a.usage {
            events.push(event(
                "metadata",
                json!({ "usage": usage_json(a, u), "metrics": { "latencyMs": 0 } }),
            ));
        }
        events
    }

    /// Bedrock's error shape: `{"message"}` (the exception's name goes in the `x-amzn-ErrorType` header).
    fn error(&self, message: &str) -> Value {
        json!({ "message": message })
    }
}

/// The request's output limit: `inferenceConfig.maxTokens`.
pub(super) fn max_tokens(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Config {
        #[serde(default)]
        max_tokens: Option<u64>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        #[serde(default)]
        inference_config: Option<Config>,
    }
    serde_json::from_slice::<Head>(body)
        .ok()?
        .inference_config?
        .max_tokens
}

#[cfg(test)]
mod tests {
    use super::super::testing::full;
    use crate::protocol::eventstream::Decoder;
    use crate::provider::Endpoint;
    use serde_json::json;

    #[test]
    fn a_tool_offered_is_called_with_input_conforming_to_its_schema() {
        let v = full(
            Endpoint::Converse,
            &json!({
                "messages": [{ "role": "user", "content": [{ "text": "weather?" }] }],
                "toolConfig": { "tools": [{ "toolSpec": { "name": "get_weather", "inputSchema": { "json": {
                    "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } } }],
                    "toolChoice": { "any": {} } },
            }),
        );
        assert_eq!(v["stopReason"], "tool_use");
        let call = &v["output"]["message"]["content"][0]["toolUse"];
        assert_eq!(call["name"], "get_weather");
        assert!(call["input"]["city"].is_string(), "{call}");
        // The tool's result as the last turn is answered in words.
        let v = full(
            Endpoint::Converse,
            &json!({
                "messages": [{ "role": "user", "content": [{ "toolResult": { "toolUseId": "t", "content": [{ "text": "sunny" }] } }] }],
                "toolConfig": { "tools": [{ "toolSpec": { "name": "get_weather", "inputSchema": { "json": {} } } }] },
            }),
        );
        assert_eq!(v["stopReason"], "end_turn");
        assert!(v["output"]["message"]["content"][0]["text"].is_string());
    }

    #[test]
    fn the_output_limit_is_read_from_the_inference_config() {
        let v = full(
            Endpoint::Converse,
            &json!({ "messages": [{ "role": "user", "content": [{ "text": "hi" }] }], "inferenceConfig": { "maxTokens": 2 } }),
        );
        assert_eq!(v["stopReason"], "max_tokens");
        assert_eq!(v["usage"]["outputTokens"], 2);
    }

    #[tokio::test]
    async fn a_stream_is_framed_event_by_event_and_ends_with_its_usage() {
        use crate::provider::{Provider, UpstreamBody, UpstreamRequest};
        use futures_util::StreamExt;
        let body =
            json!({ "messages": [{ "role": "user", "content": [{ "text": "hi" }] }] }).to_string();
        let mock = super::super::MockProvider::new(super::super::MockConfig {
            name: "bedrock".into(),
            ..Default::default()
        });
        let up = mock
            .send(UpstreamRequest {
                endpoint: Endpoint::Converse,
                model: "amazon.nova-micro-v1:0".into(),
                stream: true,
                body: bytes::Bytes::from(body),
                headers: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(
            up.content_type.as_deref(),
            Some("application/vnd.amazon.eventstream")
        );
        let UpstreamBody::Stream(s) = up.body else {
            panic!("a stream was expected")
        };
        let mut d = Decoder::new();
        let mut names = Vec::new();
        for chunk in s.collect::<Vec<_>>().await {
            d.feed(&chunk.unwrap());
            while let Some(m) = d.next_message() {
                names.push(m.unwrap().kind().1.to_string());
            }
        }
        assert_eq!(names.first().map(String::as_str), Some("messageStart"));
        assert_eq!(names.last().map(String::as_str), Some("metadata"));
        assert!(names.iter().any(|n| n == "contentBlockDelta"));
        assert!(!mock.speaks(Endpoint::Messages) && mock.speaks(Endpoint::Converse));
    }
}
