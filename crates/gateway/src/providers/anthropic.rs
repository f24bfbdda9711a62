//! Anthropic's Messages API over HTTP (`https://api.anthropic.com/v1/messages`).
//!
//! Per Anthropic's API reference (docs.anthropic.com/en/api/overview, .../versioning) every request carries the
//! key in `x-api-key` and an `anthropic-version` header; the client's own `anthropic-version` and
//! `anthropic-beta` are passed on, `2023-06-01` is sent when the client sent none.

use async_trait::async_trait;

use super::http::{HttpConfig, HttpUpstream, KeyStyle};
use crate::provider::{Endpoint, Provider, ProviderError, UpstreamRequest, UpstreamResponse};

/// The API version sent when the client names none.
pub const DEFAULT_VERSION: &str = "2023-06-01";

#[derive(Debug)]
pub struct Anthropic {
    http: HttpUpstream,
}

impl Anthropic {
    pub fn new(config: HttpConfig) -> Result<Anthropic, ProviderError> {
        Ok(Anthropic {
            http: HttpUpstream::new(config)?,
        })
    }
}

#[async_trait]
impl Provider for Anthropic {
    fn name(&self) -> &str {
        &self.http.config.name
    }

    fn speaks(&self, endpoint: Endpoint) -> bool {
        endpoint.is_anthropic()
    }

    async fn send(&self, req: UpstreamRequest) -> Result<UpstreamResponse, ProviderError> {
        self.http
            .post(
                req,
                KeyStyle::Header("x-api-key"),
                &[("anthropic-version", DEFAULT_VERSION)],
            )
            .await
    }
}
