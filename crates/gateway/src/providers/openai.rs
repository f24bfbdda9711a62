//! Any OpenAI-compatible upstream (OpenAI itself, Azure OpenAI, vLLM, Ollama, OpenRouter, ...) over HTTP with
//! pooled connections.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;

use crate::provider::{Provider, ProviderError, UpstreamBody, UpstreamRequest, UpstreamResponse};

#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Shown on spend logs.
    pub name: String,
    /// E.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The API key, read from the environment variable the configuration names. Never logged.
    pub api_key: Option<String>,
    pub connect_timeout: Duration,
    /// Longest wait for any read from the upstream (headers or the next chunk of a stream).
    pub read_timeout: Duration,
}

pub struct OpenAiCompatible {
    config: OpenAiConfig,
    client: reqwest::Client,
}

impl std::fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The API key is deliberately left out.
        f.debug_struct("OpenAiCompatible")
            .field("name", &self.config.name)
            .field("base_url", &self.config.base_url)
            .finish()
    }
}

impl OpenAiCompatible {
    pub fn new(config: OpenAiConfig) -> Result<OpenAiCompatible, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|e| ProviderError::Config(e.to_string()))?;
        Ok(OpenAiCompatible { config, client })
    }
}

fn map_err(e: reqwest::Error) -> ProviderError {
    // reqwest's messages name the URL; keep ours short and free of anything but the cause.
    let mut cause = String::new();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        if !cause.is_empty() {
            cause.push_str(": ");
        }
        cause.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_timeout() {
        ProviderError::Timeout
    } else if e.is_connect() {
        ProviderError::Connect(cause)
    } else {
        ProviderError::Body(cause)
    }
}

#[async_trait]
impl Provider for OpenAiCompatible {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn send(&self, req: UpstreamRequest) -> Result<UpstreamResponse, ProviderError> {
        let url = format!(
            "{}{}",
            self.config.base_url.trim_end_matches('/'),
            req.endpoint.path()
        );
        let mut builder = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(req.body);
        if let Some(key) = &self.config.api_key {
            builder = builder.bearer_auth(key);
        }
        let res = builder.send().await.map_err(map_err)?;
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let is_sse = content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("text/event-stream"));
        let body = if req.stream && is_sse && status < 400 {
            UpstreamBody::Stream(res.bytes_stream().map(|r| r.map_err(map_err)).boxed())
        } else {
            UpstreamBody::Full(res.bytes().await.map_err(map_err)?)
        };
        Ok(UpstreamResponse {
            status,
            content_type,
            body,
        })
    }
}
