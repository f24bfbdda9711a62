//! One model's price (its rates per million tokens, service tiers and long-context rates) and the pricing of a
//! request's usage with it: the cost, line by line, and how sure the price is.

use serde::{Deserialize, Serialize};

use crate::money::{Money, PricePerMtok};
use crate::usage::{ServiceTier, Usage};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    #[default]
    Chat,
    Embedding,
}

/// One model's prices, as written in a catalog file. (`Default` is a free chat model with no name, for building
/// entries in code with `..ModelPrice::default()`.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Required in a catalog file; a provider's own `prices` in the configuration take the provider's name.
    #[serde(default)]
    pub provider: String,
    pub model: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default = "default_kind")]
    pub kind: ModelKind,
    pub input_per_mtok: PricePerMtok,
    pub output_per_mtok: PricePerMtok,
    /// Cache-read input. Defaults to the input price when a model has no cache discount.
    #[serde(default)]
    pub cached_input_per_mtok: Option<PricePerMtok>,
    /// Cache-write input (Anthropic's 5-minute writes). Defaults to the input price.
    #[serde(default)]
    pub cache_write_per_mtok: Option<PricePerMtok>,
    /// Anthropic's 1-hour cache writes (2x the input price). Defaults to the 5-minute write price.
    #[serde(default)]
    pub cache_write_1h_per_mtok: Option<PricePerMtok>,
    /// Audio input tokens. Defaults to the input price.
    #[serde(default)]
    pub audio_input_per_mtok: Option<PricePerMtok>,
    /// Audio output tokens. Defaults to the output price.
    #[serde(default)]
    pub audio_output_per_mtok: Option<PricePerMtok>,
    /// The fee for 1,000 server-side web searches, in USD (the providers quote it so: "$10 / 1K calls"). No fee
    /// when absent.
    #[serde(default)]
    pub web_search_per_1k_calls: Option<PricePerMtok>,
    /// Higher rates for the whole request when its prompt passes a size (Gemini 2.5 Pro above 200k tokens,
    /// Claude's 1M-token context above 200k).
    #[serde(default)]
    pub long_context: Option<LongContext>,
    /// OpenAI's Flex processing rates (`service_tier: "flex"`).
    #[serde(default)]
    pub flex: Option<TierRates>,
    /// OpenAI's Priority processing rates (`service_tier: "priority"`).
    #[serde(default)]
    pub priority: Option<TierRates>,
    /// The most output tokens one request can produce; caps budget reservations.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// The most input tokens one request can carry (the context window): bounds the hold of a request whose
    /// input the body only points at (a file id, `previous_response_id`, a web search), and of images.
    #[serde(default)]
    pub context_window: Option<u64>,
    /// The public page the prices were taken from.
    #[serde(default)]
    pub source: Option<String>,
    /// The day (`YYYY-MM-DD`) the prices were last compared with `source`.
    #[serde(default)]
    pub checked: Option<String>,
}

fn default_kind() -> ModelKind {
    ModelKind::Chat
}

/// Rates that replace a model's standard ones under a rule; a rate left out keeps the standard one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRates {
    pub input_per_mtok: PricePerMtok,
    pub output_per_mtok: PricePerMtok,
    #[serde(default)]
    pub cached_input_per_mtok: Option<PricePerMtok>,
    #[serde(default)]
    pub cache_write_per_mtok: Option<PricePerMtok>,
    #[serde(default)]
    pub cache_write_1h_per_mtok: Option<PricePerMtok>,
}

/// Long-context rates: when a request's whole prompt (cached and written tokens included) has more than
/// `above_input_tokens` tokens, every token of it is billed at these rates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongContext {
    pub above_input_tokens: u64,
    pub input_per_mtok: PricePerMtok,
    pub output_per_mtok: PricePerMtok,
    #[serde(default)]
    pub cached_input_per_mtok: Option<PricePerMtok>,
    #[serde(default)]
    pub cache_write_per_mtok: Option<PricePerMtok>,
    #[serde(default)]
    pub cache_write_1h_per_mtok: Option<PricePerMtok>,
}

impl LongContext {
    fn rates(&self) -> TierRates {
        TierRates {
            input_per_mtok: self.input_per_mtok,
            output_per_mtok: self.output_per_mtok,
            cached_input_per_mtok: self.cached_input_per_mtok,
            cache_write_per_mtok: self.cache_write_per_mtok,
            cache_write_1h_per_mtok: self.cache_write_1h_per_mtok,
        }
    }
}

/// Why a line was billed at other than the model's standard rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rate {
    #[default]
    Standard,
    Flex,
    Priority,
    LongContext,
}

impl Rate {
    pub fn is_standard(&self) -> bool {
        *self == Rate::Standard
    }

    /// The words a bill shows for the rate.
    pub fn describe(self) -> &'static str {
        match self {
            Rate::Standard => "standard rate",
            Rate::Flex => "Flex processing rate",
            Rate::Priority => "Priority processing rate",
            Rate::LongContext => "long-context rate",
        }
    }
}

/// The rates one request is billed at, after the rules that apply to it.
#[derive(Debug, Clone, Copy)]
struct Rates {
    rate: Rate,
    input: PricePerMtok,
    cached: PricePerMtok,
    write: PricePerMtok,
    write_1h: PricePerMtok,
    output: PricePerMtok,
}

impl Rates {
    fn over(self, rate: Rate, t: &TierRates) -> Rates {
        let write = t.cache_write_per_mtok.unwrap_or(self.write);
        Rates {
            rate,
            input: t.input_per_mtok,
            cached: t.cached_input_per_mtok.unwrap_or(self.cached),
            write,
            write_1h: t.cache_write_1h_per_mtok.unwrap_or(self.write_1h),
            output: t.output_per_mtok,
        }
    }
}

impl ModelPrice {
    pub fn cached_input(&self) -> PricePerMtok {
        self.cached_input_per_mtok.unwrap_or(self.input_per_mtok)
    }

    pub fn cache_write(&self) -> PricePerMtok {
        self.cache_write_per_mtok.unwrap_or(self.input_per_mtok)
    }

    /// The rates `usage` is billed at: the standard ones, replaced by the tier's the provider says it served the
    /// request at, and by the long-context ones when the prompt passed their threshold (the two do not combine
    /// in any provider's price list; long context, the larger, wins).
    fn rates(&self, usage: &Usage) -> Rates {
        let write = self.cache_write();
        let mut r = Rates {
            rate: Rate::Standard,
            input: self.input_per_mtok,
            cached: self.cached_input(),
            write,
            write_1h: self.cache_write_1h_per_mtok.unwrap_or(write),
            output: self.output_per_mtok,
        };
        let tier = match usage.service_tier {
            ServiceTier::Flex => self.flex.as_ref().map(|t| (Rate::Flex, t)),
            ServiceTier::Priority => self.priority.as_ref().map(|t| (Rate::Priority, t)),
            ServiceTier::Standard => None,
        };
        if let Some((rate, t)) = tier {
            r = r.over(rate, t);
        }
        if let Some(lc) = self
            .long_context
            .as_ref()
            .filter(|lc| usage.input_tokens > lc.above_input_tokens)
        {
            r = r.over(Rate::LongContext, &lc.rates());
        }
        r
    }

    /// The exact cost of `usage`, with one line per kind of token (and per fee).
    pub fn price(&self, usage: &Usage) -> Priced {
        let usage = usage.with_parts_bounded();
        let r = self.rates(&usage);
        let line = |kind: TokenKind, price: PricePerMtok| PriceLine {
            rate: r.rate,
            ..PriceLine::of(kind, price, &usage)
        };
        let lines = [
            line(TokenKind::Input, r.input),
            line(
                TokenKind::AudioInput,
                self.audio_input_per_mtok.unwrap_or(r.input),
            ),
            line(TokenKind::CachedInput, r.cached),
            line(TokenKind::CacheWrite, r.write),
            line(TokenKind::CacheWrite1h, r.write_1h),
            line(TokenKind::Output, r.output),
            line(TokenKind::Reasoning, r.output),
            line(
                TokenKind::AudioOutput,
                self.audio_output_per_mtok.unwrap_or(r.output),
            ),
            // A fee per call, whatever the tier: its line's price is per million calls.
            PriceLine::of(
                TokenKind::WebSearch,
                self.web_search_per_1k_calls
                    .map_or(PricePerMtok::ZERO, |p| p.times(1_000)),
                &usage,
            ),
        ];
        let cost = lines.iter().map(|l| l.cost).sum();
        Priced { cost, lines }
    }
}

/// The kinds of token a request is billed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Uncached text (and image) input.
    Input,
    CachedInput,
    /// Cache writes that live five minutes (Anthropic's default), or every write where no split is reported.
    CacheWrite,
    /// Text output.
    Output,
    /// Audio input.
    AudioInput,
    /// Cache writes that live an hour.
    #[serde(rename = "cache_write_1h")]
    CacheWrite1h,
    /// Reasoning output: billed at the output price, shown apart.
    Reasoning,
    AudioOutput,
    /// Server-side web searches: a fee per call (its line's `tokens` are calls).
    WebSearch,
}

/// One line of a request's bill: tokens of one kind times their price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceLine {
    pub kind: TokenKind,
    pub tokens: u64,
    pub price_per_mtok: PricePerMtok,
    pub cost: Money,
    /// Why the price is not the model's standard one, when it is not.
    #[serde(default, skip_serializing_if = "Rate::is_standard")]
    pub rate: Rate,
}

impl TokenKind {
    /// The tokens of this kind in `usage`: each token is on exactly one line, so input is billed without its
    /// cached, written and audio parts, and output without its reasoning and audio parts.
    pub fn tokens_in(self, usage: &Usage) -> u64 {
        match self {
            TokenKind::Input => usage
                .uncached_input_tokens()
                .saturating_sub(usage.audio_input_tokens),
            TokenKind::AudioInput => usage.audio_input_tokens,
            TokenKind::CachedInput => usage.cached_input_tokens,
            TokenKind::CacheWrite => usage
                .cache_write_tokens
                .saturating_sub(usage.cache_write_1h_tokens),
            TokenKind::CacheWrite1h => usage.cache_write_1h_tokens,
            TokenKind::Output => usage
                .output_tokens
                .saturating_sub(usage.reasoning_tokens)
                .saturating_sub(usage.audio_output_tokens),
            TokenKind::Reasoning => usage.reasoning_tokens,
            TokenKind::AudioOutput => usage.audio_output_tokens,
            TokenKind::WebSearch => usage.web_search_calls,
        }
    }

    /// What a bill calls the line.
    pub fn label(self) -> &'static str {
        match self {
            TokenKind::Input => "input",
            TokenKind::CachedInput => "cached input",
            TokenKind::CacheWrite => "cache write (5 min)",
            TokenKind::Output => "output",
            TokenKind::AudioInput => "audio input",
            TokenKind::CacheWrite1h => "cache write (1 h)",
            TokenKind::Reasoning => "reasoning",
            TokenKind::AudioOutput => "audio output",
            TokenKind::WebSearch => "web searches",
        }
    }
}

impl PriceLine {
    /// The line for tokens of `kind` in `usage` at `price_per_mtok`. The pricing builds every bill from these,
    /// and a stored spend log rebuilds its lines with it from its token columns and prices.
    pub fn of(kind: TokenKind, price_per_mtok: PricePerMtok, usage: &Usage) -> PriceLine {
        let tokens = kind.tokens_in(usage);
        PriceLine {
            kind,
            tokens,
            price_per_mtok,
            cost: price_per_mtok.cost_of(tokens),
            rate: Rate::Standard,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priced {
    pub cost: Money,
    pub lines: [PriceLine; 9],
}

impl Priced {
    /// The lines a bill shows: those with tokens, in the pricing's order. They sum to `cost`.
    pub fn billed_lines(&self) -> Vec<PriceLine> {
        self.lines
            .iter()
            .filter(|l| l.tokens > 0)
            .copied()
            .collect()
    }
}

/// How a price was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceConfidence {
    /// The model is in the catalog.
    Exact,
    /// The model is not in the catalog and was priced by the configured fallback: a low-confidence figure.
    Fallback,
    /// The price is the catalog's, but the provider reported no usage, so the tokens (and the cost) are the
    /// gateway's estimate. Never shown as exact.
    Estimated,
    /// The model is a dated snapshot the catalog does not list (`gpt-4o-2024-11-20`), priced as the model it is a
    /// snapshot of. Snapshots of one model are usually priced alike, but not always, so it is flagged.
    Inferred,
}

impl PriceConfidence {
    pub fn as_str(self) -> &'static str {
        match self {
            PriceConfidence::Exact => "exact",
            PriceConfidence::Fallback => "fallback",
            PriceConfidence::Estimated => "estimated",
            PriceConfidence::Inferred => "inferred",
        }
    }
    /// The number the stores keep in their `price_confidence` column.
    pub fn code(self) -> i64 {
        match self {
            PriceConfidence::Exact => 0,
            PriceConfidence::Fallback => 1,
            PriceConfidence::Estimated => 2,
            PriceConfidence::Inferred => 3,
        }
    }
    /// The confidence a stored code stands for. A code this version does not know (written by a newer one) reads
    /// as `Fallback`, so that a price nobody can vouch for is never shown as exact.
    pub fn from_code(c: i64) -> PriceConfidence {
        match c {
            0 => PriceConfidence::Exact,
            1 => PriceConfidence::Fallback,
            2 => PriceConfidence::Estimated,
            3 => PriceConfidence::Inferred,
            _ => PriceConfidence::Fallback,
        }
    }

    /// The confidence of a bill whose tokens came from `source`: estimated tokens make any exact price an
    /// estimate (a fallback or inferred price keeps its own flag, which is the larger doubt).
    pub fn with_usage(self, source: crate::UsageSource) -> PriceConfidence {
        match (self, source) {
            (PriceConfidence::Exact, crate::UsageSource::Estimated) => PriceConfidence::Estimated,
            (c, _) => c,
        }
    }
    /// Whether the price came straight from a catalog entry of the model.
    pub fn is_exact(self) -> bool {
        self == PriceConfidence::Exact
    }
}
