//! The parts of the OpenAI wire format the gateway reads. Everything else in a body passes through untouched.
//!
//! Shapes follow OpenAI's API reference (platform.openai.com/docs/api-reference/chat, .../embeddings):
//! `usage.prompt_tokens`, `usage.completion_tokens`, `usage.prompt_tokens_details.cached_tokens`, and for
//! streams the final chunk carrying `usage` when `stream_options.include_usage` is true.

use serde::Deserialize;
use spendgate_core::usage::MAX_TOKENS;
use spendgate_core::Usage;

/// The head of a chat or embeddings request: what routing, metering and budgets need.
#[derive(Debug, Deserialize)]
pub struct RequestHead {
    pub model: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

impl RequestHead {
    pub fn wants_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn asked_for_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    pub fn max_output(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

#[derive(Debug, Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Deserialize)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

impl WireUsage {
    pub fn normalise(&self) -> Usage {
        let cached = self
            .prompt_tokens_details
            .as_ref()
            .map_or(0, |d| d.cached_tokens);
        // Counts come from the upstream; a broken or hostile one must not be able to produce an absurd bill.
        let prompt = self.prompt_tokens.min(MAX_TOKENS);
        Usage {
            input_tokens: prompt,
            output_tokens: self.completion_tokens.min(MAX_TOKENS),
            // A cached count above the prompt is a broken upstream; never bill more cached tokens than prompt.
            cached_input_tokens: cached.min(prompt),
            cache_write_tokens: 0,
        }
    }
}

/// A response body or stream chunk, read only for its usage.
#[derive(Debug, Deserialize)]
pub struct WithUsage {
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

/// The usage in a complete (non-streaming) response body: `Err` when the body is not JSON at all, `Ok(None)` when
/// it is but carries no usage.
pub fn usage_of_body(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    Ok(serde_json::from_slice::<WithUsage>(body)?
        .usage
        .map(|u| u.normalise()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
