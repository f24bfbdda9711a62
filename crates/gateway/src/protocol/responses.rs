//! The OpenAI Responses API (`POST /v1/responses`).
//!
//! Shapes follow OpenAI's API reference (developers.openai.com/api/reference/resources/responses and its
//! "Responses streaming events" page): a response object's `usage` has `input_tokens` (the whole prompt, cached
//! tokens included), `input_tokens_details.cached_tokens`, `output_tokens` (reasoning included) and
//! `total_tokens`. A stream is a series of typed events; usage arrives in the final `response.completed` (or
//! `response.incomplete` / `response.failed`) event's `response.usage`, and there is no `[DONE]`. Reasoning is
//! `output_tokens_details.reasoning_tokens`; the response's `service_tier` names the rates it was billed at; every
//! web search the model ran is a `web_search_call` item of its `output`, billed per call (OpenAI's tools
//! pricing).

use serde::Deserialize;
use spendgate_core::{ServiceTier, Usage};

use super::{finder, normalised, StreamState, WireFormat};

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Debug, Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

/// An item of a response's `output`, read only for its type.
#[derive(Debug, Deserialize)]
struct OutputItem {
    #[serde(default, rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct ResponseObject {
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    service_tier: Option<String>,
    #[serde(default)]
    output: Vec<OutputItem>,
}

impl ResponseObject {
    /// The response's usage with the parts it bills apart, or `None` when it reports none.
    fn usage(&self) -> Option<Usage> {
        let w = self.usage.as_ref()?;
        let cached = w
            .input_tokens_details
            .as_ref()
            .map_or(0, |d| d.cached_tokens);
        let u = normalised(w.input_tokens, w.output_tokens, cached, 0);
        Some(
            Usage {
                reasoning_tokens: w
                    .output_tokens_details
                    .as_ref()
                    .map_or(0, |d| d.reasoning_tokens),
                web_search_calls: self
                    .output
                    .iter()
                    .filter(|i| i.kind == "web_search_call")
                    .count() as u64,
                service_tier: self
                    .service_tier
                    .as_deref()
                    .map(ServiceTier::from_wire)
                    .unwrap_or_default(),
                ..u
            }
            .with_parts_bounded(),
        )
    }
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
        Ok(serde_json::from_slice::<ResponseObject>(body)?.usage())
    }

    fn stream_event(&self, data: &[u8], state: &mut StreamState) {
        // Only the terminal events carry usage; the many text deltas are not parsed.
        let terminal = [
            finder!(b"response.completed"),
            finder!(b"response.incomplete"),
            finder!(b"response.failed"),
        ];
        if !terminal.iter().any(|t| t.find(data).is_some()) {
            return;
        }
        let Ok(event) = serde_json::from_slice::<Event>(data) else {
            return;
        };
        if TERMINAL.contains(&event.kind.as_str()) {
            state.done = true;
            if let Some(u) = event.response.and_then(|r| r.usage()) {
                state.usage = Some(u);
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
