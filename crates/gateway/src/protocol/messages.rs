//! The Anthropic Messages API (`POST /v1/messages`).
//!
//! Shapes follow Anthropic's API reference (docs.anthropic.com/en/api/messages, .../messages-streaming and the
//! prompt caching guide): `usage.input_tokens` counts only the prompt tokens **after** the last cache breakpoint;
//! `cache_creation_input_tokens` (written to the cache) and `cache_read_input_tokens` (read from it) are reported
//! apart, so the whole prompt is their sum. A stream sends the message's usage in `message_start`
//! (`message.usage`) and the cumulative counts in `message_delta` (`usage.output_tokens`, and the input counts
//! when they changed), and ends with `message_stop`.

use serde::Deserialize;
use spendgate_core::Usage;

use super::{finder, normalised, StreamState, WireFormat};

/// Anthropic's usage object. In `message_delta` every field is optional: a missing one keeps its earlier value.
#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    /// The writes split by how long they live (`ephemeral_5m_input_tokens`, `ephemeral_1h_input_tokens`): the
    /// 1-hour ones cost 2x the input price, the 5-minute ones 1.25x (prompt caching guide, "Pricing").
    #[serde(default)]
    cache_creation: Option<CacheCreation>,
    /// Server tools the model ran (`web_search_requests`), billed per call.
    #[serde(default)]
    server_tool_use: Option<ServerToolUse>,
}

#[derive(Debug, Default, Deserialize)]
struct CacheCreation {
    #[serde(default)]
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct ServerToolUse {
    #[serde(default)]
    web_search_requests: Option<u64>,
}

impl WireUsage {
    /// This usage laid over `before` (the counts seen so far in a stream, if any).
    fn over(&self, before: Option<Usage>) -> Usage {
        let b = before.unwrap_or_default();
        let uncached = self.input_tokens.unwrap_or(b.uncached_input_tokens());
        let write = self
            .cache_creation_input_tokens
            .unwrap_or(b.cache_write_tokens);
        let read = self
            .cache_read_input_tokens
            .unwrap_or(b.cached_input_tokens);
        let output = self.output_tokens.unwrap_or(b.output_tokens);
        let u = normalised(
            uncached.saturating_add(write).saturating_add(read),
            output,
            read,
            write,
        );
        Usage {
            cache_write_1h_tokens: self
                .cache_creation
                .as_ref()
                .and_then(|c| c.ephemeral_1h_input_tokens)
                .unwrap_or(b.cache_write_1h_tokens),
            web_search_calls: self
                .server_tool_use
                .as_ref()
                .and_then(|s| s.web_search_requests)
                .unwrap_or(b.web_search_calls),
            ..u
        }
        .with_parts_bounded()
    }
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct Event {
    #[serde(default, rename = "type")]
    kind: String,
    /// `message_start` carries the message, with its usage.
    #[serde(default)]
    message: Option<Message>,
    /// `message_delta` carries the usage at the top level.
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// The Anthropic Messages API.
#[derive(Debug, Clone, Copy)]
pub struct Messages;

impl WireFormat for Messages {
    fn body_usage(&self, body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
        Ok(serde_json::from_slice::<Message>(body)?
            .usage
            .map(|u| u.over(None)))
    }

    fn stream_event(&self, data: &[u8], state: &mut StreamState) {
        // Text deltas (most events) are not parsed.
        let interesting = [
            finder!(b"\"message_start\""),
            finder!(b"\"message_delta\""),
            finder!(b"\"message_stop\""),
        ];
        if !interesting.iter().any(|k| k.find(data).is_some()) {
            return;
        }
        let Ok(event) = serde_json::from_slice::<Event>(data) else {
            return;
        };
        match event.kind.as_str() {
            "message_start" => {
                if let Some(u) = event.message.and_then(|m| m.usage) {
                    state.usage = Some(u.over(None));
                }
            }
            "message_delta" => {
                if let Some(u) = event.usage {
                    state.usage = Some(u.over(state.usage));
                }
            }
            "message_stop" => state.done = true,
            _ => {}
        }
    }

    fn text_key(&self, _stream: bool) -> &'static [u8] {
        // Text blocks in a body and `text_delta`s in a stream.
        b"text"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_reads_and_writes_are_added_to_the_prompt_and_kept_apart() {
        let body = br#"{"id":"msg_1","type":"message","content":[{"type":"text","text":"hi"}],
            "usage":{"input_tokens":50,"cache_creation_input_tokens":1000,"cache_read_input_tokens":2000,"output_tokens":7}}"#;
        let u = Messages.body_usage(body).unwrap().unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cached_input_tokens,
                u.cache_write_tokens,
                u.output_tokens
            ),
            (3050, 2000, 1000, 7)
        );
        assert_eq!(u.uncached_input_tokens(), 50);
        assert!(Messages
            .body_usage(b"{\"type\":\"message\"}")
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_stream_merges_message_start_and_the_cumulative_deltas() {
        let mut s = StreamState::default();
        for data in [
            &br#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":200,"output_tokens":1}}}"#[..],
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"message_delta"}}"#,
            br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#,
        ] {
            Messages.stream_event(data, &mut s);
        }
        assert!(!s.done);
        let u = s.usage.unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cached_input_tokens,
                u.cache_write_tokens,
                u.output_tokens
            ),
            (310, 200, 100, 15)
        );
        // A later delta may restate the input counts (newer API versions do); they replace the earlier ones.
        Messages.stream_event(
            br#"{"type":"message_delta","usage":{"input_tokens":12,"output_tokens":20}}"#,
            &mut s,
        );
        Messages.stream_event(br#"{"type":"message_stop"}"#, &mut s);
        let u = s.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (312, 20));
        assert!(s.done);
    }
}
