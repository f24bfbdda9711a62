//! OpenAI chat completions and embeddings.
//!
//! Shapes follow OpenAI's API reference (platform.openai.com/docs/api-reference/chat, .../embeddings):
//! `usage.prompt_tokens` (the whole prompt, cached tokens included), `usage.completion_tokens`,
//! `usage.prompt_tokens_details.cached_tokens`; a stream's final chunk carries `usage` when
//! `stream_options.include_usage` is true, and `data: [DONE]` ends it. The parts billed apart:
//! `prompt_tokens_details.audio_tokens`, `completion_tokens_details.reasoning_tokens` and `.audio_tokens`; the
//! answer's top-level `service_tier` (`default`, `flex`, `priority`; platform.openai.com/docs/api-reference/chat/
//! object) names the rates it was billed at.

use serde::Deserialize;
use spendgate_core::{ServiceTier, Usage};

use super::{finder, normalised, StreamState, WireFormat};

#[derive(Debug, Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionDetails>,
    /// OpenRouter's cost of the request in USD (openrouter.ai/docs "Usage accounting": `usage.cost`), read from
    /// the number's own digits.
    #[serde(default)]
    pub cost: Option<Box<serde_json::value::RawValue>>,
}

/// `null` counts (some OpenAI-compatible servers send them) read as zero.
fn count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.unwrap_or(0))
}

#[derive(Debug, Deserialize)]
pub struct PromptDetails {
    #[serde(default, deserialize_with = "count")]
    pub cached_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub audio_tokens: u64,
}

#[derive(Debug, Deserialize)]
pub struct CompletionDetails {
    #[serde(default, deserialize_with = "count")]
    pub reasoning_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub audio_tokens: u64,
}

impl WireUsage {
    pub fn normalise(&self) -> Usage {
        let prompt = self.prompt_tokens_details.as_ref();
        let completion = self.completion_tokens_details.as_ref();
        let u = normalised(
            self.prompt_tokens,
            self.completion_tokens,
            prompt.map_or(0, |d| d.cached_tokens),
            0,
        );
        Usage {
            audio_input_tokens: prompt.map_or(0, |d| d.audio_tokens),
            reasoning_tokens: completion.map_or(0, |d| d.reasoning_tokens),
            audio_output_tokens: completion.map_or(0, |d| d.audio_tokens),
            provider_cost: self
                .cost
                .as_ref()
                .and_then(|c| spendgate_core::Money::parse_json_number(c.get())),
            ..u
        }
        .with_parts_bounded()
    }
}

/// A response body or stream chunk, read only for its usage and the tier it was served at.
#[derive(Debug, Deserialize)]
pub struct WithUsage {
    #[serde(default)]
    pub usage: Option<WireUsage>,
    #[serde(default)]
    pub service_tier: Option<String>,
}

/// The usage in a complete chat or embeddings body.
pub fn usage_of_body(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    let b = serde_json::from_slice::<WithUsage>(body)?;
    let tier = b
        .service_tier
        .as_deref()
        .map(ServiceTier::from_wire)
        .unwrap_or_default();
    Ok(b.usage.map(|u| Usage {
        service_tier: tier,
        ..u.normalise()
    }))
}

/// Whether a chunk's only usage member is `null`: with `include_usage` every chunk carries one, and parsing each
/// whole to find nothing would cost more than the rest of the stream's metering.
fn is_null_usage_chunk(data: &[u8]) -> bool {
    let has_null = finder!(b"\"usage\":null").find(data).is_some()
        || finder!(b"\"usage\": null").find(data).is_some();
    has_null && finder!(b"\"usage\"").find_iter(data).count() == 1
}

/// OpenAI chat completions and embeddings.
#[derive(Debug, Clone, Copy)]
pub struct Chat;

impl WireFormat for Chat {
    fn body_usage(&self, body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
        usage_of_body(body)
    }

    fn stream_event(&self, data: &[u8], state: &mut StreamState) {
        if data == b"[DONE]" {
            state.done = true;
        } else if finder!(b"\"usage\"").find(data).is_some() && !is_null_usage_chunk(data) {
            if let Ok(Some(u)) = usage_of_body(data) {
                // The usage chunk is the stream's summary, sent after the last content chunk.
                state.usage = Some(u);
                state.done = true;
            }
        }
    }

    fn text_key(&self, _stream: bool) -> &'static [u8] {
        b"content"
    }

    fn usage_on_request(&self) -> bool {
        true
    }
}

/// OpenAI's legacy completions (platform.openai.com/docs/api-reference/completions): the same usage as chat, in
/// the body or in a stream's last chunk when `stream_options.include_usage` is set, and the answer text in
/// `choices[].text`.
#[derive(Debug, Clone, Copy)]
pub struct Completions;

impl WireFormat for Completions {
    fn body_usage(&self, body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
        usage_of_body(body)
    }

    fn stream_event(&self, data: &[u8], state: &mut StreamState) {
        Chat.stream_event(data, state);
    }

    fn text_key(&self, _stream: bool) -> &'static [u8] {
        b"text"
    }

    fn usage_on_request(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spendgate_core::usage::MAX_TOKENS;

    #[test]
    fn absurd_upstream_counts_are_capped_and_priced_without_overflow() {
        let body = format!(
            r#"{{"usage":{{"prompt_tokens":{m},"completion_tokens":{m},"prompt_tokens_details":{{"cached_tokens":{m}}}}}}}"#,
            m = u64::MAX
        );
        let u = usage_of_body(body.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cached_input_tokens),
            (MAX_TOKENS, MAX_TOKENS, MAX_TOKENS)
        );
        let price = spendgate_core::PricePerMtok::parse("10000").unwrap();
        let cost = price.cost_of(u.input_tokens) + price.cost_of(u.output_tokens);
        assert!(
            i64::try_from(cost.picos()).is_ok(),
            "the worst request still fits a spend log row"
        );
        assert!(usage_of_body(b"not json").is_err());
        assert!(usage_of_body(b"{}").unwrap().is_none());
    }
}
