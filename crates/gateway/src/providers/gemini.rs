//! Google's Gemini API over HTTP (`https://generativelanguage.googleapis.com/v1beta`), in its own shape:
//! `POST models/{model}:generateContent`, or `:streamGenerateContent?alt=sse` for a stream.
//!
//! Per Google's API reference (ai.google.dev/api/generate-content and ai.google.dev/gemini-api/docs/api-key) the
//! key goes in the `x-goog-api-key` header; the model is named in the path, not in the body (`http.rs` builds
//! the URL).

use async_trait::async_trait;

use super::http::{HttpConfig, HttpUpstream, KeyStyle};
use crate::provider::{Endpoint, Provider, ProviderError, UpstreamRequest, UpstreamResponse};

/// The header Google's API takes its key in.
pub const KEY_HEADER: &str = "x-goog-api-key";

#[derive(Debug)]
pub struct Gemini {
    http: HttpUpstream,
}

impl Gemini {
    pub fn new(config: HttpConfig) -> Result<Gemini, ProviderError> {
        Ok(Gemini {
            http: HttpUpstream::new(config)?,
        })
    }
}

#[async_trait]
impl Provider for Gemini {
    fn name(&self) -> &str {
        &self.http.config.name
    }

    fn speaks(&self, endpoint: Endpoint) -> bool {
        endpoint.is_gemini()
    }

    async fn send(&self, req: UpstreamRequest) -> Result<UpstreamResponse, ProviderError> {
        self.http.post(req, KeyStyle::Header(KEY_HEADER), &[]).await
    }
}
