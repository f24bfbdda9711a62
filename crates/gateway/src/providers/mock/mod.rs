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
//!   none. Chat completions with `n` choices bill each: the first as above, each other with the hash continued by
//!   its index, and `completion_tokens` is their sum (OpenAI bills `n` completions). Reasoning models (o-series,
//!   GPT-5) spend half of each choice's output tokens, rounded down, on reasoning, reported in the usage details
//!   and included in the output tokens, as OpenAI does;
//! - Messages: of the cache writes, the share of breakpoints marked `"ttl":"1h"` is reported as one-hour writes;
//! - Bedrock's Converse: as Messages, with `cachePoint` blocks for breakpoints; the request's output limit is
//!   `inferenceConfig.maxTokens`, and whether it streams is the path it was sent to (`/converse-stream`).
//!
//! What the answer says follows the request as the real APIs do (`request.rs` reads it): a call of the offered
//! tool, with arguments conforming to its schema (`schema.rs`), unless tool choice is `none` or the last turn is
//! the tool's result; JSON (conforming to the schema, if one is given) when a JSON format is asked for; the
//! stop reason of an output limit when it cut the answer short. The answers' shapes live in one file per API
//! (`chat.rs`, `embeddings.rs`, `responses.rs`, `messages.rs`, `gemini.rs`, `converse.rs`). For fault tests it misbehaves on request, or on
//! every request when configured to: see [`Fault`].

mod chat;
mod completions;
mod converse;
mod embeddings;
mod free;
mod gemini;
mod messages;
mod request;
mod responses;
mod schema;

use std::borrow::Cow;
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
use request::{Ask, Format};

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
    fnv_on(0xcbf2_9ce4_8422_2325, bytes)
}

/// FNV-1a of `bytes` continued from the hash `h`.
fn fnv_on(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// `n` rounded down to a multiple of 128.
fn steps_of_128(n: u64) -> u64 {
    n / 128 * 128
}

/// The output tokens of each of `choices` choices: 8 + (a hash of the body, and of the choice after the first,
/// modulo 56), each capped by the request's output limit; with whether the limit cut it short.
fn choice_outputs(body: &[u8], max_output: Option<u64>, choices: u64) -> Vec<(u64, bool)> {
    let hash = fnv(body);
    (0..choices)
        .map(|i| {
            let h = if i == 0 {
                hash
            } else {
                fnv_on(hash, &i.to_le_bytes())
            };
            let natural = 8 + h % 56;
            max_output.map_or((natural, false), |m| (natural.min(m), natural > m))
        })
        .collect()
}

/// The usage the mock reports for a request body answered with `choices` choices (chat completions' `n`; 1
/// elsewhere), normalised (the prompt includes cache reads and writes).
pub fn mock_usage(endpoint: Endpoint, body: &[u8], max_output: Option<u64>, choices: u64) -> Usage {
    let output = match endpoint {
        Endpoint::Embeddings => 0,
        _ => choice_outputs(body, max_output, choices)
            .iter()
            .map(|&(n, _)| n)
            .sum(),
    };
    usage_with_output(endpoint, body, output)
}

fn usage_with_output(endpoint: Endpoint, body: &[u8], output: u64) -> Usage {
    let input = estimate_tokens(body.len());
    let big = input >= 1024;
    let (cached, written) = match endpoint {
        Endpoint::Messages | Endpoint::Converse if big && contains(body, breakpoint(endpoint)) => {
            (steps_of_128(input / 2), steps_of_128(input / 4))
        }
        Endpoint::Messages | Endpoint::Converse | Endpoint::Embeddings => (0, 0),
        _ if big => (steps_of_128(input / 2), 0),
        _ => (0, 0),
    };
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        cache_write_tokens: written,
        ..Usage::default()
    }
}

/// What marks a cache breakpoint in a request of `endpoint`: Anthropic's `cache_control`, Bedrock's `cachePoint`.
fn breakpoint(endpoint: Endpoint) -> &'static [u8] {
    match endpoint {
        Endpoint::Converse => b"\"cachePoint\"",
        _ => b"\"cache_control\"",
    }
}

/// Whether a model reasons before it answers (OpenAI's o-series and GPT-5 models; Gemini 2.5 and 3 models but
/// the Flash-Lite ones, which think only when asked): part of its output tokens are reasoning tokens, reported in
/// the usage details and never shown.
fn reasons(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    let gemini = [
        "gemini-2.5",
        "gemini-3",
        "gemini-pro-latest",
        "gemini-flash-latest",
    ]
    .iter()
    .any(|p| name.starts_with(p))
        && !name.contains("lite");
    gemini
        || ["o1", "o3", "o4", "gpt-5"]
            .iter()
            .any(|p| name.starts_with(p))
}

/// What one choice says.
#[derive(Debug)]
enum Reply {
    /// Text, in the pieces a stream sends (one per output token for words).
    Text(Vec<Cow<'static, str>>),
    /// A call of one of the request's tools: its name and its arguments (JSON text) in a stream's pieces.
    Call {
        name: String,
        arguments: Vec<Cow<'static, str>>,
    },
}

/// One answer of the model (chat completions answer `n` of them; the other APIs one).
#[derive(Debug)]
struct Choice {
    reply: Reply,
    output_tokens: u64,
    /// Of `output_tokens`, those spent reasoning.
    reasoning_tokens: u64,
    /// The request's output limit stopped it.
    capped: bool,
}

impl Choice {
    /// The whole text, or the whole arguments of a call.
    fn text(&self) -> String {
        match &self.reply {
            Reply::Text(pieces)
            | Reply::Call {
                arguments: pieces, ..
            } => pieces.concat(),
        }
    }

    /// Why the choice ended, in an API's words for: a tool call, the output limit, a natural stop.
    fn ending(&self, [call, limit, stop]: [&'static str; 3]) -> &'static str {
        if self.call_name().is_some() {
            call
        } else if self.capped {
            limit
        } else {
            stop
        }
    }

    fn call_name(&self) -> Option<&str> {
        match &self.reply {
            Reply::Call { name, .. } => Some(name),
            Reply::Text(_) => None,
        }
    }

    fn pieces(&self) -> &[Cow<'static, str>] {
        match &self.reply {
            Reply::Text(pieces)
            | Reply::Call {
                arguments: pieces, ..
            } => pieces,
        }
    }
}

/// `text` cut into `parts` pieces of about equal length (at least one), on character boundaries.
fn split(text: &str, parts: u64) -> Vec<Cow<'static, str>> {
    let size = text.len().div_ceil(parts.max(1) as usize).max(1);
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + size).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        pieces.push(Cow::Owned(text[start..end].to_string()));
        start = end;
    }
    if pieces.is_empty() {
        pieces.push(Cow::Borrowed(""));
    }
    pieces
}

/// The choice the mock makes with `visible` output tokens to show: a tool call when the request offers one to
/// call, otherwise text in the asked format.
fn reply(ask: &Ask, visible: u64) -> Reply {
    let words = || (0..visible).map(|i| Cow::Borrowed(WORDS[(i % WORDS.len() as u64) as usize]));
    if let Some(tool) = &ask.call {
        let arguments = schema::example(&tool.schema).to_string();
        return Reply::Call {
            name: tool.name.clone(),
            arguments: split(&arguments, visible),
        };
    }
    match &ask.format {
        Format::Text => Reply::Text(words().collect()),
        Format::JsonObject => {
            let text: String = words().collect();
            Reply::Text(split(
                &serde_json::json!({ "answer": text }).to_string(),
                visible,
            ))
        }
        Format::Schema(schema) => Reply::Text(split(&schema::example(schema).to_string(), visible)),
    }
}

/// What the mock answers, before it is put in an API's shape.
struct Answer<'a> {
    id: String,
    created: i64,
    model: &'a str,
    choices: Vec<Choice>,
    /// The usage to report; `None` for an upstream that reports none.
    usage: Option<Usage>,
    /// Anthropic: of the cache writes, those with a one-hour lifetime.
    one_hour_writes: u64,
    /// Chat streams carry usage only when the request asked for it.
    stream_usage: bool,
    ask: &'a Ask,
}

impl Answer<'_> {
    /// The first (for every API but chat completions, the only) choice. Every answer but an embeddings one has
    /// at least one (`n` is at least 1), and the embeddings shape does not ask.
    fn first(&self) -> &Choice {
        &self.choices[0]
    }

    fn reasoning_tokens(&self) -> u64 {
        self.choices.iter().map(|c| c.reasoning_tokens).sum()
    }

    /// The choices' pieces in the order a stream of several choices sends them, each with its choice's index:
    /// the first piece of every choice, then the second of every choice, and so on (OpenAI interleaves the `n`
    /// choices of a stream).
    fn interleaved(&self) -> Vec<(usize, &Choice, &str)> {
        let rounds = self
            .choices
            .iter()
            .map(|c| c.pieces().len())
            .max()
            .unwrap_or(0);
        (0..rounds)
            .flat_map(|k| {
                self.choices
                    .iter()
                    .enumerate()
                    .filter_map(move |(i, c)| Some((i, c, c.pieces().get(k)?.as_ref())))
            })
            .collect()
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
        Endpoint::Embeddings | Endpoint::Moderations => &embeddings::Embeddings,
        Endpoint::CountTokens => &messages::Messages,
        Endpoint::Responses => &responses::Responses,
        Endpoint::Messages => &messages::Messages,
        Endpoint::GenerateContent => &gemini::Gemini,
        Endpoint::Converse => &converse::Converse,
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
        let head = if req.endpoint.is_gemini() {
            crate::protocol::gemini::head(&req.model, req.stream, &req.body)
        } else {
            serde_json::from_slice::<RequestHead>(&req.body)
        }
        .map_err(|e| ProviderError::Body(format!("the mock could not read the request: {e}")))?;
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
        let mut ask = Ask::read(&req.body);
        if req.endpoint.is_gemini() {
            (ask.call, ask.format) = gemini::ask(&req.body);
        }
        let answer = answer(req, &head, &ask, fault);
        // A Converse request says it streams by its path, not its body.
        let streamed = match req.endpoint {
            Endpoint::Converse => req.stream,
            e => head.wants_stream() && e.can_stream(),
        };
        if !streamed {
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
        let content_type = match req.endpoint {
            Endpoint::Converse => "application/vnd.amazon.eventstream",
            _ => "text/event-stream",
        };
        Ok(UpstreamResponse {
            status: 200,
            content_type: Some(content_type.into()),
            body: UpstreamBody::Stream(stream.boxed()),
        })
    }
}

/// The answer to a request: its choices and their usage.
fn answer<'a>(
    req: &'a UpstreamRequest,
    head: &RequestHead,
    ask: &'a Ask,
    fault: Option<Fault>,
) -> Answer<'a> {
    let choices = match req.endpoint {
        Endpoint::ChatCompletions | Endpoint::Completions => ask.choices,
        // Gemini generates at most 8 candidates (`generationConfig.candidateCount`).
        Endpoint::GenerateContent => head.completions().min(8),
        _ => 1,
    };
    let max_output = match req.endpoint {
        Endpoint::Converse => converse::max_tokens(&req.body),
        _ => head.max_output(),
    };
    let choices: Vec<Choice> = match req.endpoint {
        Endpoint::Embeddings => Vec::new(),
        _ => choice_outputs(&req.body, max_output, choices)
            .into_iter()
            .map(|(output_tokens, capped)| {
                let reasoning_tokens = if reasons(&req.model) {
                    output_tokens / 2
                } else {
                    0
                };
                Choice {
                    reply: reply(ask, output_tokens - reasoning_tokens),
                    output_tokens,
                    reasoning_tokens,
                    capped,
                }
            })
            .collect(),
    };
    let output = choices.iter().map(|c| c.output_tokens).sum();
    let usage = usage_with_output(req.endpoint, &req.body, output);
    Answer {
        id: format!("{:016x}", fnv(&req.body)),
        created: spendgate_core::time::now_ms() / 1000,
        model: &req.model,
        one_hour_writes: request::one_hour_writes(
            &req.body,
            breakpoint(req.endpoint),
            usage.cache_write_tokens,
        ),
        choices,
        usage: (fault != Some(Fault::NoUsage)).then_some(usage),
        stream_usage: head.asked_for_usage(),
        ask,
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

    /// A mock standing in for OpenAI, Anthropic, Google's Gemini API or Bedrock (the demo names its mocks after the
    /// providers they pose as) speaks only that provider's APIs, as the real one does (`gemini`: Google's native
    /// API, not its OpenAI-compatible one; `bedrock`: Converse); a mock of any other name speaks every API.
    fn speaks(&self, endpoint: Endpoint) -> bool {
        match self.config.name.as_str() {
            "openai" => endpoint.is_openai(),
            "anthropic" => endpoint.is_anthropic(),
            "gemini" => endpoint.is_gemini(),
            "bedrock" => endpoint == Endpoint::Converse,
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

/// What the shapes' tests share: a request to the mock and its answer read back as JSON.
#[cfg(test)]
mod testing {
    use super::*;
    use serde_json::Value;

    fn request(endpoint: Endpoint, body: &Value) -> UpstreamRequest {
        let model = body["model"].as_str().unwrap_or("m");
        upstream(endpoint, model, body["stream"] == true, body)
    }

    fn upstream(endpoint: Endpoint, model: &str, stream: bool, body: &Value) -> UpstreamRequest {
        UpstreamRequest {
            endpoint,
            model: model.to_string(),
            stream,
            body: Bytes::from(body.to_string()),
            headers: Vec::new(),
        }
    }

    /// The complete answer to `body`.
    pub fn full(endpoint: Endpoint, body: &Value) -> Value {
        match MockProvider::new(MockConfig::default())
            .respond(&request(endpoint, body))
            .unwrap()
            .body
        {
            UpstreamBody::Full(b) => serde_json::from_slice(&b).unwrap(),
            UpstreamBody::Stream(_) => panic!("a complete answer was expected"),
        }
    }

    /// The streamed answer to `body`: each event's name (if any) and data (`[DONE]` as a JSON string).
    pub async fn events(endpoint: Endpoint, body: &Value) -> Vec<(Option<String>, Value)> {
        let res = MockProvider::new(MockConfig::default())
            .respond(&request(endpoint, body))
            .unwrap();
        events_of(res).await
    }

    async fn events_of(res: UpstreamResponse) -> Vec<(Option<String>, Value)> {
        let UpstreamBody::Stream(s) = res.body else {
            panic!("a stream was expected");
        };
        let chunks: Vec<_> = s.collect().await;
        chunks
            .into_iter()
            .map(|c| {
                let text = String::from_utf8(c.unwrap().to_vec()).unwrap();
                let mut name = None;
                let mut data = Value::Null;
                for line in text.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_string());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.into()));
                    }
                }
                (name, data)
            })
            .collect()
    }

    fn gemini(model: &str, stream: bool, body: &Value) -> UpstreamResponse {
        let req = upstream(Endpoint::GenerateContent, model, stream, body);
        MockProvider::new(MockConfig::default())
            .respond(&req)
            .unwrap()
    }

    /// The complete Gemini answer of `model` to `body`.
    pub fn gemini_full(model: &str, body: &Value) -> Value {
        match gemini(model, false, body).body {
            UpstreamBody::Full(b) => serde_json::from_slice(&b).unwrap(),
            UpstreamBody::Stream(_) => panic!("a complete answer was expected"),
        }
    }

    /// The streamed Gemini answer of `model` to `body`: each event's data.
    pub async fn gemini_events(model: &str, body: &Value) -> Vec<Value> {
        let res = gemini(model, true, body);
        events_of(res).await.into_iter().map(|(_, d)| d).collect()
    }

    /// The raw chunks of a streamed Gemini answer.
    pub async fn gemini_chunks(model: &str, body: &Value) -> Vec<Bytes> {
        let UpstreamBody::Stream(s) = gemini(model, true, body).body else {
            panic!("a stream was expected");
        };
        s.map(Result::unwrap).collect().await
    }

    /// The mock's output tokens for `body` answered with `choices` choices.
    pub fn outputs(endpoint: Endpoint, body: &Value, choices: u64) -> u64 {
        mock_usage(endpoint, body.to_string().as_bytes(), None, choices).output_tokens
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
        let a = mock_usage(Endpoint::ChatCompletions, body, None, 1);
        assert_eq!(a, mock_usage(Endpoint::ChatCompletions, body, None, 1));
        assert_eq!(a.input_tokens, (body.len() as u64).div_ceil(4));
        assert!((8..64).contains(&a.output_tokens));
        assert_eq!(
            mock_usage(Endpoint::ChatCompletions, body, Some(3), 1).output_tokens,
            3
        );
        assert_eq!(
            mock_usage(Endpoint::Embeddings, body, None, 1).output_tokens,
            0
        );
        let big = vec![b'x'; 8192];
        let u = mock_usage(Endpoint::ChatCompletions, &big, None, 1);
        assert_eq!(u.cached_input_tokens, 1024);
        assert_eq!(
            mock_usage(Endpoint::Messages, &big, None, 1).cached_input_tokens,
            0
        );
        let mut marked = big.clone();
        marked.extend_from_slice(b"\"cache_control\"");
        let m = mock_usage(Endpoint::Messages, &marked, None, 1);
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
            Endpoint::GenerateContent,
            Endpoint::Converse,
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
                let expected = mock_usage(endpoint, body.as_bytes(), None, 1);
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
