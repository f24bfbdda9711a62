//! The OpenAI Responses API (`POST /v1/responses`).
//!
//! Shapes follow OpenAI's API reference (developers.openai.com/api/reference/resources/responses and its
//! "Responses streaming events" page): a response object's `usage` has `input_tokens` (the whole prompt, cached
//! tokens included), `input_tokens_details.cached_tokens`, `output_tokens` (reasoning included) and
//! `total_tokens`. A stream is a series of typed events; usage arrives in the final `response.completed` (or
//! `response.incomplete` / `response.failed`) event's `response.usage`, and there is no `[DONE]`.

use serde::Deserialize;
use spendgate_core::Usage;

use super::{contains, normalised, StreamState, WireFormat};

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
}

#[derive(Debug, Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: u64,
}

impl WireUsage {
    fn normalise(&self) -> Usage {
        let cached = self
            .input_tokens_details
            .as_ref()
            .map_or(0, |d| d.cached_tokens);
        normalised(self.input_tokens, self.output_tokens, cached, 0)
    }
}

#[derive(Debug, Deserialize)]
struct ResponseObject {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct Event {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    response: Option<ResponseObject>,
}

/// The events that end a stream.
const TERMINAL: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// The OpenAI Responses API.
#[derive(Debug, Clone, Copy)]
pub struct Responses;

impl WireFormat for Responses {
    fn body_usage(&self, body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
        Ok(serde_json::from_slice::<ResponseObject>(body)?
            .usage
            .map(|u| u.normalise()))
    }

    fn stream_event(&self, data: &[u8], state: &mut StreamState) {
        // Only the terminal events carry usage; the many text deltas are not parsed.
        if !TERMINAL.iter().any(|t| contains(data, t.as_bytes())) {
            return;
        }
        let Ok(event) = serde_json::from_slice::<Event>(data) else {
            return;
        };
        if TERMINAL.contains(&event.kind.as_str()) {
            state.done = true;
            if let Some(u) = event.response.and_then(|r| r.usage) {
                state.usage = Some(u.normalise());
            }
        }
    }

    fn text_key(&self, stream: bool) -> &'static [u8] {
        // Streams send text as `response.output_text.delta` events' `delta`; the final event repeats the whole
        // answer as `text`, which must not be counted twice.
        if stream {
            b"delta"
        } else {
            b"text"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_from_a_body_and_from_the_completed_event() {
        let body = br#"{"id":"resp_1","object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"hi"}]}],
            "usage":{"input_tokens":2000,"input_tokens_details":{"cached_tokens":1024},"output_tokens":30,"output_tokens_details":{"reasoning_tokens":10},"total_tokens":2030}}"#;
        let u = Responses.body_usage(body).unwrap().unwrap();
        assert_eq!(
            (u.input_tokens, u.cached_input_tokens, u.output_tokens),
            (2000, 1024, 30)
        );
        assert!(Responses.body_usage(b"{}").unwrap().is_none());

        let mut s = StreamState::default();
        Responses.stream_event(
            br#"{"type":"response.output_text.delta","delta":"response.completed"}"#,
            &mut s,
        );
        assert!(!s.done, "a delta that quotes an event name is not the end");
        Responses.stream_event(
            br#"{"type":"response.completed","sequence_number":9,"response":{"usage":{"input_tokens":12,"output_tokens":3}}}"#,
            &mut s,
        );
        assert!(s.done);
        let u = s.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (12, 3));
    }
}
