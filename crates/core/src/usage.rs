//! Token usage of one request, normalised across provider protocols.

use serde::{Deserialize, Serialize};

/// Token counts of one request.
///
/// `input_tokens` is the **total** prompt size, including cached and cache-write tokens, as OpenAI reports
/// `prompt_tokens`. Protocols that report them apart (Anthropic's `input_tokens` excludes cache reads and
/// writes) are normalised into this shape by the provider code, so pricing has one formula:
/// `(input - cached - cache_write) * input_price + cached * cached_price + cache_write * write_price
///  + output * output_price`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Input tokens billed at the full input price.
    pub fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cached_input_tokens)
            .saturating_sub(self.cache_write_tokens)
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
