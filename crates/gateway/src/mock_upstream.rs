//! A stand-alone mock upstream speaking the OpenAI API (chat completions, embeddings, Responses) and Anthropic's
//! Messages API, for benchmarks and for trying a real provider configuration (`kind = "openai"` or
//! `"anthropic"` with its `base_url`) without a real provider. Served by `spendgate mock-upstream`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;

use crate::error::ApiError;
use crate::forward::error_shape;
use crate::protocol::RequestHead;
use crate::provider::{Endpoint, Provider, UpstreamBody, UpstreamRequest};
use crate::providers::MockProvider;

async fn serve(mock: Arc<MockProvider>, endpoint: Endpoint, body: Bytes) -> Response {
    let shape = error_shape(endpoint);
    let head: RequestHead = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => {
            return ApiError::invalid_request("invalid_json", e.to_string())
                .shaped(shape)
                .into_response()
        }
    };
    let req = UpstreamRequest {
        endpoint,
        model: head.model.clone().unwrap_or_default(),
        stream: head.wants_stream(),
        body,
        headers: Vec::new(),
    };
    match mock.send(req).await {
        Ok(up) => {
            let ct = up.content_type.unwrap_or_else(|| "application/json".into());
            let body = match up.body {
                UpstreamBody::Full(b) => Body::from(b),
                UpstreamBody::Stream(s) => Body::from_stream(s),
            };
            let status =
                StatusCode::from_u16(up.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, [(header::CONTENT_TYPE, ct)], body).into_response()
        }
        Err(e) => ApiError::internal(e.to_string())
            .shaped(shape)
            .into_response(),
    }
}

pub fn mock_upstream_router(mock: Arc<MockProvider>) -> Router {
    let mut router = Router::new();
    for endpoint in Endpoint::ALL {
        let mock = Arc::clone(&mock);
        router = router.route(
            &format!("/v1{}", endpoint.path()),
            post(move |b: Bytes| serve(Arc::clone(&mock), endpoint, b)),
        );
    }
    router
}
