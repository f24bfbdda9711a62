//! The wire formats the gateway reads, one module per API shape. Everything else in a body passes through
//! untouched: the gateway reads only a request's head and an answer's usage.
//!
//! - [`chat`]: OpenAI chat completions and embeddings (`usage.prompt_tokens`, ...; streams end with `[DONE]`);
//! - [`responses`]: the OpenAI Responses API (`usage.input_tokens`, ...; streams end with `response.completed`);
//! - [`messages`]: the Anthropic Messages API (cache reads and writes reported apart from `input_tokens`;
//!   streams carry usage in `message_start` and `message_delta` and end with `message_stop`);
//! - [`gemini`]: Google's Gemini API (`usageMetadata`, thoughts billed as output; every stream chunk carries the
//!   usage so far and the last one a `finishReason`).
//! - [`converse`]: Amazon Bedrock's Converse API (`usage.inputTokens`, cache reads and writes apart, as
//!   Anthropic's; streams are AWS's binary event stream, [`eventstream`], with the usage in `metadata`).
//!
//! Each shape implements [`WireFormat`]; the metering code (`meter.rs`, `sse.rs`) is the same for all of them.

#[cfg(test)]
mod billing;
pub mod chat;
pub mod converse;
pub mod eventstream;
pub mod extent;
pub mod gemini;
pub mod messages;
pub mod responses;

use serde::Deserialize;
use spendgate_core::usage::MAX_TOKENS;
use spendgate_core::Usage;

use crate::provider::Endpoint;

pub use chat::{usage_of_body, WireUsage, WithUsage};

/// The head of a request, whatever its shape: what routing, metering and budgets need.
#[derive(Debug, Deserialize)]
pub struct RequestHead {
    pub model: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Chat completions (legacy name) and Anthropic Messages.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Chat completions.
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// The Responses API.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// Chat completions: how many completions to generate (each billed as output).
    #[serde(default)]
    pub n: Option<u64>,
    /// Legacy completions: how many completions are generated server-side (each billed) to return the best.
    #[serde(default)]
    pub best_of: Option<u64>,
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
        self.max_completion_tokens
            .or(self.max_output_tokens)
            .or(self.max_tokens)
    }

    /// How many completions the provider generates and bills: `n` choices, or `best_of` candidates.
    pub fn completions(&self) -> u64 {
        self.n.unwrap_or(1).max(self.best_of.unwrap_or(1)).max(1)
    }
}

/// What a stream has told so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamState {
    pub usage: Option<Usage>,
    /// The stream told all billing needs: its final usage or its end marker (`[DONE]`, `response.completed`,
    /// `message_stop`). A stream that ends before this was cut short.
    pub done: bool,
}

/// How one API shape reports usage.
pub trait WireFormat: Send + Sync + 'static {
    /// The usage in a complete (non-streaming) response body: `Err` when the body is not JSON at all, `Ok(None)`
    /// when it is but carries no usage.
    fn body_usage(&self, body: &[u8]) -> Result<Option<Usage>, serde_json::Error>;

    /// Reads one server-sent event's `data:` payload.
    fn stream_event(&self, data: &[u8], state: &mut StreamState);

    /// How the API's streams are framed: server-sent events, or AWS's binary event stream.
    fn framing(&self) -> Framing {
        Framing::Sse
    }

    /// Reads one message of an event stream ([`Framing::EventStream`]): its `:event-type` (or exception type),
    /// whether it is an exception, and its payload.
    fn stream_message(&self, name: &str, exception: bool, payload: &[u8], state: &mut StreamState) {
        let _ = (name, exception);
        self.stream_event(payload, state);
    }

    /// The JSON key whose string values are answer text, in a stream's events or in a complete body: counted
    /// (about four bytes a token) when the upstream reports no usage.
    fn text_key(&self, stream: bool) -> &'static [u8];

    /// Whether streams carry usage only when the request asks (`stream_options.include_usage`), so the gateway
    /// asks on the client's behalf.
    fn usage_on_request(&self) -> bool {
        false
    }
}

/// How a stream is cut into events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Server-sent events: `data:` lines.
    Sse,
    /// AWS's `application/vnd.amazon.eventstream` ([`eventstream`]).
    EventStream,
}

/// The wire format of an endpoint.
pub fn format_of(endpoint: Endpoint) -> &'static dyn WireFormat {
    match endpoint {
        // The free endpoints are never metered; their answers are read as chat bodies would be, for nothing.
        Endpoint::ChatCompletions
        | Endpoint::Embeddings
        | Endpoint::CountTokens
        | Endpoint::Moderations => &chat::Chat,
        Endpoint::Completions => &chat::Completions,
        Endpoint::Responses => &responses::Responses,
        Endpoint::Messages => &messages::Messages,
        Endpoint::GenerateContent => &gemini::Gemini,
        Endpoint::Converse => &converse::Converse,
    }
}

/// Normalised usage from the counts a provider reports, with `prompt` the **total** prompt (cache reads and
/// writes included). Counts come from the upstream; a broken or hostile one must not be able to produce an absurd
/// bill, so each is capped, and cache reads and writes never exceed the prompt together.
pub fn normalised(prompt: u64, output: u64, cache_read: u64, cache_write: u64) -> Usage {
    let input = prompt.min(MAX_TOKENS);
    let cached = cache_read.min(input);
    Usage {
        input_tokens: input,
        output_tokens: output.min(MAX_TOKENS),
        cached_input_tokens: cached,
        cache_write_tokens: cache_write.min(input - cached),
        ..Usage::default()
    }
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// A substring searcher for a fixed needle, built once on first use. `memmem::find` (and [`contains`]) builds
/// one on every call, which on a request body or a stream chunk cost more than the search itself: about 500
/// instructions a call, a dozen calls a request (`bench/callgrind.sh`). Searches made per request or per chunk
/// use this; `finder!(b"...").find(hay)`.
macro_rules! finder {
    ($needle:expr) => {{
        static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new($needle));
        &*FINDER
    }};
}
pub(crate) use finder;

/// [`finder!`], searching from the end.
macro_rules! finder_rev {
    ($needle:expr) => {{
        static FINDER: std::sync::LazyLock<memchr::memmem::FinderRev<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::FinderRev::new($needle));
        &*FINDER
    }};
}
pub(crate) use finder_rev;

/// Bytes inside the string values of `"key":"..."` in `data` (escapes counted as written).
pub fn text_len(data: &[u8], key: &[u8]) -> usize {
    // One searcher for every look: `find_key` may look many times.
    let key = memchr::memmem::Finder::new(key);
    let mut total = 0;
    let mut i = 0;
    while let Some(off) = find_key(&data[i..], &key) {
        let start = i + off;
        // The string ends at the first quote not escaped: jump from one quote or backslash to the next (a
        // vectorised search, where a byte at a time cost about four instructions a byte of a long prompt), and
        // step over what a backslash escapes.
        let mut j = start;
        while let Some(k) = memchr::memchr2(b'\\', b'"', data.get(j..).unwrap_or_default()) {
            j += k;
            if data[j] == b'"' {
                break;
            }
            j += 2;
        }
        if j >= data.len() || data[j] != b'"' {
            j = data.len();
        }
        total += j.min(data.len()) - start;
        i = j.min(data.len());
        if i >= data.len() {
            break;
        }
    }
    total
}

/// The offset just after `"key":"` in `data`.
fn find_key(data: &[u8], key: &memchr::memmem::Finder<'_>) -> Option<usize> {
    let key_len = key.needle().len();
    let mut from = 0;
    while from + key_len + 4 <= data.len() {
        let off = key.find(&data[from..])? + from;
        let end = off + key_len;
        if off > 0 && data[off - 1] == b'"' && data[end..].starts_with(b"\":\"") {
            return Some(end + 3);
        }
        from = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_capped_and_cache_never_exceeds_the_prompt() {
        let u = normalised(u64::MAX, u64::MAX, u64::MAX, u64::MAX);
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cached_input_tokens,
                u.cache_write_tokens
            ),
            (MAX_TOKENS, MAX_TOKENS, MAX_TOKENS, 0)
        );
        let u = normalised(100, 5, 30, 90);
        assert_eq!((u.cached_input_tokens, u.cache_write_tokens), (30, 70));
        assert_eq!(u.uncached_input_tokens(), 0);
    }

    #[test]
    fn text_is_measured_by_key() {
        let data = br#"{"delta":{"content":"abc\"d"},"text":"xy","context":"no"}"#;
        assert_eq!(text_len(data, b"content"), 6);
        assert_eq!(text_len(data, b"text"), 2);
        assert_eq!(text_len(data, b"missing"), 0);
        assert_eq!(text_len(br#"{"content":"unterminated"#, b"content"), 12);
    }
}
