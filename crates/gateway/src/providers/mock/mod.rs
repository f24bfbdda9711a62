//! The built-in mock provider: answers in the shape of each API it is asked (OpenAI chat completions,
//! embeddings, Responses; Anthropic Messages) with deterministic usage, for the demo, the tests and the
//! benchmarks. It never calls out.
//!
//! Usage is a pure function of the request, so tests can compute the exact expected cost:
//! - prompt tokens (the whole prompt): the request body's length in bytes divided by four, rounded up;
//! - chat and Responses (not embeddings): for prompts of 1,024 tokens or more, half of the prompt rounded down to a multiple of 128
//!   is read from the cache (OpenAI caches prompt prefixes of 1,024 tokens and more in 128-token steps);
//! - Messages: only when the request marks a `cache_control` breakpoint and the prompt has 1,024 tokens or
//!   more, half of the prompt rounded down to a multiple of 128 is read from the cache and a quarter, rounded the
//!   same way, is written to it; the rest is reported as `input_tokens`, as Anthropic does;
//! - output tokens: 8 + (a hash of the body modulo 56), capped by the request's output limit; embeddings produce
//!   none.
//!
//! The answers' shapes live in one file per API (`chat.rs`, `responses.rs`, `messages.rs`). For fault tests it
//! misbehaves on request, or on every request when configured to: see [`Fault`].

mod chat;
mod completions;
mod free;
mod messages;
mod responses;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use spendgate_core::usage::estimate_tokens;
use spendgate_core::Usage;

use crate::protocol::{contains, RequestHead};
use crate::provider::{
    Endpoint, Provider, ProviderError, UpstreamBody, UpstreamRequest, UpstreamResponse,
};

#[derive(Debug, Clone, Default)]
pub struct MockConfig {
    /// The provider name shown on spend logs ("mock", or the name of the provider it stands in for).
    pub name: String,
    /// Delay before the first byte.
    pub latency: Duration,
    /// Delay between stream chunks.
    pub chunk_delay: Duration,
    /// Misbehave on every request (to try fallbacks), not only on tagged ones.
    pub fault: Option<Fault>,
}

#[derive(Debug, Clone)]
pub struct MockProvider {
    config: MockConfig,
}

const WORDS: [&str; 16] = [
    "spend",
    " is",
    " visible",
    " per",
    " team",
    " right",
    " now,",
    " not",
    " at",
    " month",
    " end;",
    " budgets",
    " hold",
    " and",
    " costs",
    " reconcile.",
];

/// FNV-1a: a small, stable hash so that the same body always gets the same answer.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `n` rounded down to a multiple of 128.
fn steps_of_128(n: u64) -> u64 {
    n / 128 * 128
}

/// The usage the mock reports for a request body, normalised (the prompt includes cache reads and writes).
pub fn mock_usage(endpoint: Endpoint, body: &[u8], max_output: Option<u64>) -> Usage {
    let input = estimate_tokens(body.len());
    let big = input >= 1024;
    let (cached, written) = match endpoint {
        Endpoint::Messages if big && contains(body, b"\"cache_control\"") => {
            (steps_of_128(input / 2), steps_of_128(input / 4))
        }
        Endpoint::Messages | Endpoint::Embeddings => (0, 0),
        _ if big => (steps_of_128(input / 2), 0),
        _ => (0, 0),
    };
    let output = match endpoint {
        Endpoint::Embeddings => 0,
        _ => {
            let natural = 8 + fnv(body) % 56;
            max_output.map_or(natural, |m| natural.min(m))
        }
    };
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        cache_write_tokens: written,
    }
}

/// What the mock answers, before it is put in an API's shape.
struct Answer<'a> {
    id: String,
    created: i64,
    model: &'a str,
    /// The answer's words, one per output token.
    words: Vec<&'static str>,
    /// The usage to report; `None` for an upstream that reports none.
    usage: Option<Usage>,
    /// Chat streams carry usage only when the request asked for it.
    stream_usage: bool,
}

impl Answer<'_> {
    fn text(&self) -> String {
        self.words.concat()
    }
}

/// One API's shapes: a complete body, a stream's events and an error.
trait Shape {
    fn body(&self, a: &Answer<'_>) -> serde_json::Value;
    fn events(&self, a: &Answer<'_>) -> Vec<Bytes>;
    fn error(&self, message: &str) -> serde_json::Value;
}

fn shape_of(endpoint: Endpoint) -> &'static dyn Shape {
    match endpoint {
        Endpoint::ChatCompletions => &chat::Chat,
        Endpoint::Completions => &completions::Completions,
        // The free endpoints answer before any shape is asked for (`free::answer`); errors are OpenAI's shape
        // for moderations and Anthropic's for token counts.
        Endpoint::Embeddings | Endpoint::Moderations => &chat::Embeddings,
        Endpoint::CountTokens => &messages::Messages,
        Endpoint::Responses => &responses::Responses,
        Endpoint::Messages => &messages::Messages,
    }
}

/// One server-sent event, with its `event:` name when the API uses them.
fn sse(event: Option<&str>, data: &serde_json::Value) -> Bytes {
    Bytes::from(match event {
        Some(e) => format!("event: {e}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    })
}

impl MockProvider {
    pub fn new(config: MockConfig) -> MockProvider {
        MockProvider { config }
    }

    /// The complete answer to a request, as the mock upstream would send it.
    pub fn respond(&self, req: &UpstreamRequest) -> Result<UpstreamResponse, ProviderError> {
        let head: RequestHead = serde_json::from_slice(&req.body).map_err(|e| {
            ProviderError::Body(format!("the mock could not read the request: {e}"))
        })?;
        let shape = shape_of(req.endpoint);
        let fault = self.config.fault.or_else(|| Fault::of(&req.body));
        if fault == Some(Fault::Status500) {
            let body = shape.error("The mock upstream failed on purpose.");
            return Ok(UpstreamResponse {
                status: 500,
                content_type: Some("application/json".into()),
                body: UpstreamBody::Full(Bytes::from(body.to_string())),
            });
        }
        if let Some(v) = free::answer(req.endpoint, &req.body, &format!("{:016x}", fnv(&req.body)))
        {
            return Ok(json_bytes(Bytes::from(v.to_string())));
        }
        let usage = mock_usage(req.endpoint, &req.body, head.max_output());
        let answer = Answer {
            id: format!("{:016x}", fnv(&req.body)),
            created: spendgate_core::time::now_ms() / 1000,
            model: &req.model,
            words: (0..usage.output_tokens)
                .map(|i| WORDS[(i % WORDS.len() as u64) as usize])
                .collect(),
            usage: (fault != Some(Fault::NoUsage)).then_some(usage),
            stream_usage: head.asked_for_usage(),
        };
        if !(head.wants_stream() && req.endpoint.can_stream()) {
            if fault == Some(Fault::BadJson) {
                return Ok(json_bytes(Bytes::from_static(
                    b"{\"id\": \"mock\", \"choices\": [{\"message\"",
                )));
            }
            return Ok(json_bytes(Bytes::from(shape.body(&answer).to_string())));
        }
        let mut events = shape.events(&answer);
        if fault == Some(Fault::Truncate) {
            // Half the answer, then the connection ends: no end marker (and, in most shapes, no usage).
            events.truncate(events.len() / 2 + 1);
        }
        let delay = self.config.chunk_delay;
        let stream = futures_util::stream::iter(events).then(move |b| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, ProviderError>(b)
        });
        Ok(UpstreamResponse {
            status: 200,
            content_type: Some("text/event-stream".into()),
            body: UpstreamBody::Stream(stream.boxed()),
        })
    }
}

fn json_bytes(b: Bytes) -> UpstreamResponse {
    UpstreamResponse {
        status: 200,
        content_type: Some("application/json".into()),
        body: UpstreamBody::Full(b),
    }
}

/// Misbehaviour on request, for fault tests: a request whose body contains `[mock:fault=NAME]` gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 with an error in the API's shape.
    Status500,
    /// Wait a minute before answering (to trip the gateway's read timeout).
    Slow,
    /// A stream that stops halfway, without its end marker.
    Truncate,
    /// A 200 answer whose body is not valid JSON.
    BadJson,
    /// A correct answer without any usage.
    NoUsage,
}

impl Fault {
    pub fn of(body: &[u8]) -> Option<Fault> {
        const TAG: &[u8] = b"[mock:fault=";
        let at = body.windows(TAG.len()).position(|w| w == TAG)? + TAG.len();
        let rest = &body[at..];
        let end = rest.iter().position(|&b| b == b']')?;
        Fault::parse(&rest[..end])
    }

    /// A fault by name (`status500`, `slow`, `truncate`, `badjson`, `nousage`).
    pub fn parse(name: &[u8]) -> Option<Fault> {
        match name {
            b"status500" => Some(Fault::Status500),
            b"slow" => Some(Fault::Slow),
            b"truncate" => Some(Fault::Truncate),
            b"badjson" => Some(Fault::BadJson),
            b"nousage" => Some(Fault::NoUsage),
            _ => None,
        }
    }
}

#[async_trait]
impl Provider for MockProvider {
    fn name(&self) -> &str {
        &self.config.name
    }

    /// A mock standing in for OpenAI or Anthropic (the demo names its mocks after the providers they pose as)
    /// speaks only that provider's APIs, as the real one does; a mock of any other name speaks every API.
    fn speaks(&self, endpoint: Endpoint) -> bool {
        match self.config.name.as_str() {
            "openai" => !endpoint.is_anthropic(),
            "anthropic" => endpoint.is_anthropic(),
            _ => true,
        }
    }

    async fn send(&self, request: UpstreamRequest) -> Result<UpstreamResponse, ProviderError> {
        if self.config.fault.or_else(|| Fault::of(&request.body)) == Some(Fault::Slow) {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        self.respond(&request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::format_of;
    use crate::sse::UsageScanner;

    #[test]
    fn usage_is_deterministic_and_capped() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let a = mock_usage(Endpoint::ChatCompletions, body, None);
        assert_eq!(a, mock_usage(Endpoint::ChatCompletions, body, None));
        assert_eq!(a.input_tokens, (body.len() as u64).div_ceil(4));
        assert!((8..64).contains(&a.output_tokens));
        assert_eq!(
            mock_usage(Endpoint::ChatCompletions, body, Some(3)).output_tokens,
            3
        );
        assert_eq!(
            mock_usage(Endpoint::Embeddings, body, None).output_tokens,
            0
        );
        let big = vec![b'x'; 8192];
        let u = mock_usage(Endpoint::ChatCompletions, &big, None);
        assert_eq!(u.cached_input_tokens, 1024);
        assert_eq!(
            mock_usage(Endpoint::Messages, &big, None).cached_input_tokens,
            0
        );
        let mut marked = big.clone();
        marked.extend_from_slice(b"\"cache_control\"");
        let m = mock_usage(Endpoint::Messages, &marked, None);
        assert_eq!((m.cached_input_tokens, m.cache_write_tokens), (1024, 512));
    }

    /// Every shape's answer, complete or streamed, reads back through the gateway's own wire formats with the
    /// usage the mock meant to report.
    #[tokio::test]
    async fn every_shape_reads_back_with_its_usage() {
        let mock = MockProvider::new(MockConfig::default());
        let long = "y".repeat(6000);
        for endpoint in [
            Endpoint::ChatCompletions,
            Endpoint::Embeddings,
            Endpoint::Responses,
            Endpoint::Messages,
        ] {
            for stream in [false, true] {
                let body = serde_json::json!({
                    "model": "m", "stream": stream, "stream_options": { "include_usage": true },
                    "input": long, "cache_control": { "type": "ephemeral" },
                })
                .to_string();
                let req = UpstreamRequest {
                    endpoint,
                    model: "m".into(),
                    stream,
                    body: Bytes::from(body.clone()),
                    headers: Vec::new(),
                };
                let expected = mock_usage(endpoint, body.as_bytes(), None);
                let got = match mock.respond(&req).unwrap().body {
                    UpstreamBody::Full(b) => format_of(endpoint).body_usage(&b).unwrap(),
                    UpstreamBody::Stream(s) => {
                        let chunks: Vec<_> = s.collect().await;
                        let mut scanner = UsageScanner::for_format(format_of(endpoint));
                        for c in chunks {
                            scanner.feed(&c.unwrap());
                        }
                        assert!(scanner.saw_done(), "{endpoint:?} stream ends");
                        assert!(scanner.estimated_output_tokens() > 0, "text is counted");
                        scanner.reported()
                    }
                };
                assert_eq!(got, Some(expected), "{endpoint:?} stream={stream}");
            }
        }
    }
}
