//! Amazon Bedrock's Converse API (`POST /model/{modelId}/converse` and `/converse-stream`).
//!
//! Shapes from Bedrock's API reference (API_runtime_Converse.html, API_runtime_ConverseStream.html,
//! API_runtime_TokenUsage.html; botocore's `data/bedrock-runtime/2023-09-30/service-2.json`): the usage object is
//! `{inputTokens, outputTokens, totalTokens, cacheReadInputTokens, cacheWriteInputTokens, cacheDetails}`.
//! `inputTokens` counts the prompt tokens neither read from nor written to the cache (the prompt caching guide
//! bills "tokens not read from or written to the cache" at the input rate, and `totalTokens` is the sum of all
//! four counts), so the whole prompt is the sum, as with Anthropic's Messages. `cacheDetails` splits the writes by
//! lifetime (`ttl` `5m` or `1h`). A complete answer carries the usage at the top level, beside `serviceTier`; a
//! stream (AWS's binary event stream) carries it in its last event, `metadata`, after `messageStop`.

use serde::Deserialize;
use spendgate_core::usage::ServiceTier;
use spendgate_core::Usage;

use super::{normalised, Framing, StreamState, WireFormat};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
    #[serde(default)]
    cache_details: Vec<CacheDetail>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheDetail {
    #[serde(default)]
    ttl: String,
    #[serde(default)]
    input_tokens: u64,
}

#[derive(Debug, Default, Deserialize)]
struct Tier {
    #[serde(default, rename = "type")]
    kind: String,
}

/// A complete answer or a stream's `metadata` event: both carry `usage` and `serviceTier` at the top level.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WithUsage {
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    service_tier: Option<Tier>,
}

impl WithUsage {
    fn usage(self) -> Option<Usage> {
        let u = self.usage?;
        let (read, write) = (u.cache_read_input_tokens, u.cache_write_input_tokens);
        let prompt = u.input_tokens.saturating_add(read).saturating_add(write);
        let one_hour = u
            .cache_details
            .iter()
            .filter(|d| d.ttl == "1h")
            .fold(0u64, |n, d| n.saturating_add(d.input_tokens));
        Some(
            Usage {
                cache_write_1h_tokens: one_hour,
                service_tier: self
                    .service_tier
                    .map_or(ServiceTier::Standard, |t| ServiceTier::from_wire(&t.kind)),
                ..normalised(prompt, u.output_tokens, read, write)
            }
            .with_parts_bounded(),
        )
    }
}

/// The Converse API.
#[derive(Debug, Clone, Copy)]
pub struct Converse;

impl WireFormat for Converse {
    fn body_usage(&self, body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
        Ok(serde_json::from_slice::<WithUsage>(body)?.usage())
    }

    fn stream_event(&self, _data: &[u8], _state: &mut StreamState) {
        // Converse streams are not server-sent events: every message comes through `stream_message`.
    }

    fn framing(&self) -> Framing {
        Framing::EventStream
    }

    fn stream_message(&self, name: &str, exception: bool, payload: &[u8], state: &mut StreamState) {
        // The usage comes last, in `metadata`; an exception ends the stream without it, which bills it as cut.
        if exception || name != "metadata" {
            return;
        }
        if let Ok(m) = serde_json::from_slice::<WithUsage>(payload) {
            if let Some(u) = m.usage() {
                state.usage = Some(u);
                state.done = true;
            }
        }
    }

    fn text_key(&self, _stream: bool) -> &'static [u8] {
        // `content[].text` in a body, `delta.text` in a stream.
        b"text"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_reads_and_writes_are_added_to_the_prompt_with_the_hour_long_writes_apart() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[{"text":"hi"}]}},"stopReason":"end_turn",
            "usage":{"inputTokens":50,"outputTokens":7,"totalTokens":3057,"cacheReadInputTokens":2000,
            "cacheWriteInputTokens":1000,"cacheDetails":[{"ttl":"1h","inputTokens":600},{"ttl":"5m","inputTokens":400}]},
            "metrics":{"latencyMs":120},"serviceTier":{"type":"priority"}}"#;
        let u = Converse.body_usage(body).unwrap().unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cached_input_tokens,
                u.cache_write_tokens,
                u.cache_write_1h_tokens,
                u.output_tokens
            ),
            (3050, 2000, 1000, 600, 7)
        );
        assert_eq!(u.uncached_input_tokens(), 50);
        assert_eq!(u.service_tier, ServiceTier::Priority);
        assert!(Converse.body_usage(b"{\"output\":{}}").unwrap().is_none());
        assert!(Converse.body_usage(b"not json").is_err());
    }

    #[test]
    fn a_stream_is_done_at_its_metadata_and_not_before() {
        let mut s = StreamState::default();
        Converse.stream_message(
            "messageStop",
            false,
            br#"{"stopReason":"end_turn"}"#,
            &mut s,
        );
        assert!(!s.done && s.usage.is_none());
        Converse.stream_message(
            "throttlingException",
            true,
            br#"{"message":"Too many requests","usage":{"inputTokens":1}}"#,
            &mut s,
        );
        assert!(
            !s.done && s.usage.is_none(),
            "an exception carries no usage"
        );
        Converse.stream_message(
            "metadata",
            false,
            br#"{"usage":{"inputTokens":22,"outputTokens":9,"totalTokens":31},"metrics":{"latencyMs":5}}"#,
            &mut s,
        );
        assert!(s.done);
        let u = s.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (22, 9));
    }
}
