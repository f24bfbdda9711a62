//! Any OpenAI-compatible upstream (OpenAI itself, Azure OpenAI, vLLM, Ollama, OpenRouter, ...) over HTTP with
//! pooled connections: chat completions, embeddings and the Responses API.

use async_trait::async_trait;

use super::http::{HttpConfig, HttpUpstream, KeyStyle};
use crate::provider::{Endpoint, Provider, ProviderError, UpstreamRequest, UpstreamResponse};

#[derive(Debug)]
pub struct OpenAiCompatible {
    http: HttpUpstream,
}

impl OpenAiCompatible {
    pub fn new(config: HttpConfig) -> Result<OpenAiCompatible, ProviderError> {
        Ok(OpenAiCompatible {
            http: HttpUpstream::new(config)?,
        })
    }
}

#[async_trait]
impl Provider for OpenAiCompatible {
    fn name(&self) -> &str {
        &self.http.config.name
    }

    fn speaks(&self, endpoint: Endpoint) -> bool {
        endpoint.is_openai()
    }

    async fn send(&self, req: UpstreamRequest) -> Result<UpstreamResponse, ProviderError> {
        self.http.post(req, KeyStyle::Bearer, &[]).await
    }
}
