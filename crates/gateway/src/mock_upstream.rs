//! A stand-alone mock upstream speaking the OpenAI API (chat completions, embeddings, Responses), Anthropic's
//! Messages API and Google's Gemini API (`/v1beta/models/{model}:generateContent`), for benchmarks and for trying
//! a real provider configuration (`kind = "openai"`, `"anthropic"` or `"gemini-native"` with its `base_url`)
//! without a real provider. Served by `spendgate mock-upstream`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Path;
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
    send(&mock, req).await
}

/// Gemini's `models/{model}:generateContent` and `:streamGenerateContent`: the model and the stream are in the URL.
async fn serve_gemini(mock: Arc<MockProvider>, target: String, body: Bytes) -> Response {
    let (model, stream) = match target.rsplit_once(':') {
        Some((m, "generateContent")) => (m, false),
        Some((m, "streamGenerateContent")) => (m, true),
        _ => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "unsupported_method",
                format!("the mock serves generateContent and streamGenerateContent, not {target}"),
            )
            .shaped(error_shape(Endpoint::GenerateContent))
            .into_response()
        }
    };
    let req = UpstreamRequest {
        endpoint: Endpoint::GenerateContent,
        model: model.to_string(),
        stream,
        body,
        headers: Vec::new(),
    };
    send(&mock, req).await
}

async fn send(mock: &MockProvider, req: UpstreamRequest) -> Response {
    let shape = error_shape(req.endpoint);
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
    let gemini = Arc::clone(&mock);
    let mut router = Router::new().route(
        "/v1beta/models/{target}",
        post(move |Path(target): Path<String>, b: Bytes| {
            serve_gemini(Arc::clone(&gemini), target, b)
        }),
    );
    for endpoint in Endpoint::ALL.into_iter().filter(|e| !e.is_gemini()) {
        let mock = Arc::clone(&mock);
        router = router.route(
            &format!("/v1{}", endpoint.path()),
            post(move |b: Bytes| serve(Arc::clone(&mock), endpoint, b)),
        );
    }
    router
}
