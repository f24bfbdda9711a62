//! Token usage of one request, normalised across provider protocols.

use serde::{Deserialize, Serialize};

/// Token counts of one request.
///
/// `input_tokens` is the **total** prompt size, including cached and cache-write tokens, as OpenAI reports
/// `prompt_tokens`. Protocols that report them apart (Anthropic's `input_tokens` excludes cache reads and
/// writes) are normalised into this shape by the provider code, so pricing has one formula:
/// `(input - cached - cache_write) * input_price + cached * cached_price + cache_write * write_price
///  + output * output_price`.
///
/// The rest are parts of those four (or fees) that some models bill at other prices; each is a line of the bill:
/// see `pricing::TokenKind`. They are zero when the provider does not report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Of `cache_write_tokens`, those written to the cache for an hour (Anthropic's
    /// `usage.cache_creation.ephemeral_1h_input_tokens`), billed at twice the input price instead of 1.25x.
    #[serde(default)]
    pub cache_write_1h_tokens: u64,
    /// Of `output_tokens`, reasoning (OpenAI's `completion_tokens_details.reasoning_tokens`): billed as output,
    /// shown apart.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Of the uncached input, audio (`prompt_tokens_details.audio_tokens`).
    #[serde(default)]
    pub audio_input_tokens: u64,
    /// Of `output_tokens`, audio (`completion_tokens_details.audio_tokens`).
    #[serde(default)]
    pub audio_output_tokens: u64,
    /// Web searches the provider ran for the request, billed per call (OpenAI's `web_search_call` output
    /// items, Anthropic's `server_tool_use.web_search_requests`).
    #[serde(default)]
    pub web_search_calls: u64,
    /// The tier the provider says it served the request at (OpenAI's `service_tier`).
    #[serde(default)]
    pub service_tier: ServiceTier,
    /// What the provider says the request cost, where it says so (OpenRouter's `usage.cost`): recorded beside
    /// spendgate's own price, never instead of it, so that a difference shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_cost: Option<crate::Money>,
}

/// The processing tier a provider served a request at: some bill other rates for the same model
/// (platform.openai.com/docs/guides/flex-processing, .../priority-processing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceTier {
    #[default]
    Standard,
    Flex,
    Priority,
}

impl ServiceTier {
    /// The tier a provider's `service_tier` names: `flex` and `priority`; anything else (`default`, `auto`,
    /// `scale`, `standard`) is billed at the standard rates.
    pub fn from_wire(s: &str) -> ServiceTier {
        match s {
            "flex" => ServiceTier::Flex,
            "priority" => ServiceTier::Priority,
            _ => ServiceTier::Standard,
        }
    }
}

impl Usage {
    /// No tokens at all (`Default`, usable in constants).
    pub const ZERO: Usage = Usage {
        input_tokens: 0,
        output_tokens: 0,
        cached_input_tokens: 0,
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        reasoning_tokens: 0,
        audio_input_tokens: 0,
        audio_output_tokens: 0,
        web_search_calls: 0,
        service_tier: ServiceTier::Standard,
        provider_cost: None,
    };

    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Input tokens billed at the full input price.
    pub fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cached_input_tokens)
            .saturating_sub(self.cache_write_tokens)
    }

    /// The four counts alone, without parts or fees: what a spend log's token columns keep.
    pub fn totals_only(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cached_input_tokens,
            cache_write_tokens: self.cache_write_tokens,
            ..Usage::default()
        }
    }

    /// The parts kept within what they are parts of (a broken upstream must not bill a part twice): 1-hour
    /// writes within the writes, audio input within the uncached input, reasoning and audio output within the
    /// output.
    pub fn with_parts_bounded(mut self) -> Usage {
        self.cache_write_1h_tokens = self.cache_write_1h_tokens.min(self.cache_write_tokens);
        self.audio_input_tokens = self.audio_input_tokens.min(self.uncached_input_tokens());
        self.reasoning_tokens = self.reasoning_tokens.min(self.output_tokens);
        self.audio_output_tokens = self
            .audio_output_tokens
            .min(self.output_tokens - self.reasoning_tokens);
        self.web_search_calls = self.web_search_calls.min(MAX_TOKENS);
        self
    }
}

/// Where a request's usage came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// The provider reported the token counts.
    Reported,
    /// spendgate counted them (the provider sent none): about four characters a token.
    Estimated,
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Reported => "reported",
            UsageSource::Estimated => "estimated",
        }
    }

    pub fn code(self) -> i64 {
        match self {
            UsageSource::Reported => 0,
            UsageSource::Estimated => 1,
        }
    }

    pub fn from_code(c: i64) -> UsageSource {
        if c == 1 {
            UsageSource::Estimated
        } else {
            UsageSource::Reported
        }
    }
}

/// The most tokens of one kind one request is billed for. No model reads or writes anywhere near this many; an
/// upstream that reports more is broken, and capping keeps every request's cost (with
/// `money::MAX_PRICE_PER_MTOK`) within what a spend log row holds.
pub const MAX_TOKENS: u64 = 100_000_000;

/// A rough token count for text when the provider reports none: one token per four bytes, rounded up.
/// Only used for estimates, which are always marked as such.
pub fn estimate_tokens(text_len_bytes: usize) -> u64 {
    (text_len_bytes as u64).div_ceil(4).min(MAX_TOKENS)
}
