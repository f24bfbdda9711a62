//! The parts of the OpenAI wire format the gateway reads. Everything else in a body passes through untouched.
//!
//! Shapes follow OpenAI's API reference (platform.openai.com/docs/api-reference/chat, .../embeddings):
//! `usage.prompt_tokens`, `usage.completion_tokens`, `usage.prompt_tokens_details.cached_tokens`, and for
//! streams the final chunk carrying `usage` when `stream_options.include_usage` is true.

use serde::Deserialize;
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
        Usage {
            input_tokens: self.prompt_tokens,
            output_tokens: self.completion_tokens,
            // A cached count above the prompt is a broken upstream; never bill more cached tokens than prompt.
            cached_input_tokens: cached.min(self.prompt_tokens),
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
