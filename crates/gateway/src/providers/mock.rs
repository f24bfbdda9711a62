//! The built-in mock provider: OpenAI-shaped answers with deterministic usage, for the demo, the tests and
//! the benchmarks. It never calls out.
//!
//! Usage is a pure function of the request, so tests can compute the exact expected cost:
//! - input tokens: the request body's length in bytes divided by four, rounded up;
//! - cached input tokens: for prompts of 1,024 tokens or more, half of the prompt rounded down to a multiple of
//!   128 (OpenAI caches prompt prefixes of 1,024 tokens and more in 128-token steps);
//! - output tokens: 8 + (a hash of the body modulo 56), capped by `max_tokens` / `max_completion_tokens`;
//!   embeddings produce none.
//!
//! For fault tests it misbehaves on request: see [`Fault`].

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use spendgate_core::usage::estimate_tokens;
use spendgate_core::Usage;

use crate::protocol::RequestHead;
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

/// The usage the mock reports for a request body.
pub fn mock_usage(endpoint: Endpoint, body: &[u8], max_output: Option<u64>) -> Usage {
    let input = estimate_tokens(body.len());
    let cached = if input >= 1024 {
        (input / 2) / 128 * 128
    } else {
        0
    };
    let output = match endpoint {
        Endpoint::Embeddings => 0,
        Endpoint::ChatCompletions => {
            let natural = 8 + fnv(body) % 56;
            max_output.map_or(natural, |m| natural.min(m))
        }
    };
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        cache_write_tokens: 0,
    }
}

fn usage_json(u: &Usage) -> serde_json::Value {
    serde_json::json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": { "cached_tokens": u.cached_input_tokens },
    })
}

fn text_of(tokens: u64) -> String {
    (0..tokens)
        .map(|i| WORDS[(i % WORDS.len() as u64) as usize])
        .collect()
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
        let fault = Fault::of(&req.body);
        if fault == Some(Fault::Status500) {
            let body = serde_json::json!({
                "error": { "message": "The mock upstream failed on purpose.", "type": "server_error", "code": "mock_failure" }
            });
            return Ok(UpstreamResponse {
                status: 500,
                content_type: Some("application/json".into()),
                body: UpstreamBody::Full(Bytes::from(body.to_string())),
            });
        }
        let usage = mock_usage(req.endpoint, &req.body, head.max_output());
        let id = format!("mock-{:016x}", fnv(&req.body));
        let created = spendgate_core::time::now_ms() / 1000;
        if req.endpoint == Endpoint::Embeddings {
            let body = serde_json::json!({
                "object": "list",
                "data": [{ "object": "embedding", "index": 0, "embedding": [0.0125, -0.5, 0.25, 0.75] }],
                "model": req.model,
                "usage": { "prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens },
            });
            return Ok(json_response(&body));
        }
        if !head.wants_stream() {
            if fault == Some(Fault::BadJson) {
                return Ok(json_bytes(Bytes::from_static(
                    b"{\"id\": \"mock\", \"choices\": [{\"message\"",
                )));
            }
            if fault == Some(Fault::NoUsage) {
                let body = serde_json::json!({
                    "id": id, "object": "chat.completion", "created": created, "model": req.model,
                    "choices": [{ "index": 0, "message": { "role": "assistant", "content": text_of(usage.output_tokens) },
                                  "finish_reason": "stop" }],
                });
                return Ok(json_response(&body));
            }
            let body = serde_json::json!({
                "id": id, "object": "chat.completion", "created": created, "model": req.model,
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": text_of(usage.output_tokens) },
                              "finish_reason": "stop" }],
                "usage": usage_json(&usage),
            });
            return Ok(json_response(&body));
        }
        // One SSE event per output token, then the usage chunk when asked for, then [DONE].
        let mut events: Vec<Bytes> = Vec::with_capacity(usage.output_tokens as usize + 3);
        let chunk = |delta: serde_json::Value, finish: Option<&str>| -> Bytes {
            let v = serde_json::json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": req.model,
                "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
            });
            Bytes::from(format!("data: {v}\n\n"))
        };
        events.push(chunk(
            serde_json::json!({ "role": "assistant", "content": "" }),
            None,
        ));
        for i in 0..usage.output_tokens {
            let word = WORDS[(i % WORDS.len() as u64) as usize];
            events.push(chunk(serde_json::json!({ "content": word }), None));
        }
        if fault == Some(Fault::Truncate) {
            // Half the answer, then the connection ends: no finish chunk, no usage, no [DONE].
            events.truncate(events.len() / 2 + 1);
            let stream = futures_util::stream::iter(events).map(Ok::<_, ProviderError>);
            return Ok(UpstreamResponse {
                status: 200,
                content_type: Some("text/event-stream".into()),
                body: UpstreamBody::Stream(stream.boxed()),
            });
        }
        events.push(chunk(serde_json::json!({}), Some("stop")));
        if head.asked_for_usage() && fault != Some(Fault::NoUsage) {
            let v = serde_json::json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": req.model,
                "choices": [], "usage": usage_json(&usage),
            });
            events.push(Bytes::from(format!("data: {v}\n\n")));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
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

fn json_response(v: &serde_json::Value) -> UpstreamResponse {
    json_bytes(Bytes::from(v.to_string()))
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
    /// HTTP 500 with an OpenAI-shaped error.
    Status500,
    /// Wait a minute before answering (to trip the gateway's read timeout).
    Slow,
    /// A stream that stops halfway, without usage or [DONE].
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
        match &rest[..end] {
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

    async fn send(&self, request: UpstreamRequest) -> Result<UpstreamResponse, ProviderError> {
        if Fault::of(&request.body) == Some(Fault::Slow) {
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
    }
}
