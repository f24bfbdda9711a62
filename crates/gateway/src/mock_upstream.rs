//! A stand-alone mock upstream speaking the OpenAI API (chat completions, embeddings, Responses), Anthropic's
//! Messages API, Google's Gemini API (`/v1beta/models/{model}:generateContent`) and Bedrock's Converse
//! (`/model/{modelId}/converse` and `/converse-stream`, in AWS's binary event stream), for benchmarks and for
//! trying a real provider configuration (`kind = "openai"`, `"anthropic"`, `"gemini-native"` or `"bedrock"` with
//! its `base_url`) without a real provider. Served by `spendgate mock-upstream`.
//!
//! A Converse request must carry a well-formed AWS Signature Version 4 (`x-amz-date` and an `Authorization`
//! naming the access key, a scope for the service `bedrock` on the same day, the signed headers, `host` and
//! `x-amz-date` among them, and a 64-digit signature), as Bedrock refuses one without with a 403. The mock does
//! not know the secret, so it cannot check the signature itself; tests that know it do. A Bedrock API key
//! (`Authorization: Bearer <key>`) is accepted in its place, as Bedrock accepts one.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
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
    answer(mock, req).await
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
    answer(mock, req).await
}

/// A Converse call: the model from the path (already percent-decoded), streamed when the path says so.
async fn converse(
    mock: Arc<MockProvider>,
    model: String,
    stream: bool,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(why) = signed(&headers) {
        let body = serde_json::json!({ "message": why }).to_string();
        return (
            StatusCode::FORBIDDEN,
            [
                (header::CONTENT_TYPE, "application/json"),
                (
                    header::HeaderName::from_static("x-amzn-errortype"),
                    "InvalidSignatureException",
                ),
            ],
            body,
        )
            .into_response();
    }
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        let body = serde_json::json!({ "message": "The request body is not JSON." }).to_string();
        return (StatusCode::BAD_REQUEST, body).into_response();
    }
    let req = UpstreamRequest {
        endpoint: Endpoint::Converse,
        model,
        stream,
        body,
        headers: Vec::new(),
    };
    answer(mock, req).await
}

/// Whether a request carries a well-formed Signature Version 4 (see the module's comment), or a Bedrock API key
/// as a bearer token; why not, otherwise.
fn signed(headers: &HeaderMap) -> Result<(), &'static str> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // A Bedrock API key replaces the signature (docs.aws.amazon.com/bedrock/latest/userguide/api-keys-use.html).
    if let Some(key) = text("authorization").and_then(|a| a.strip_prefix("Bearer ")) {
        return if key.trim().is_empty() {
            Err("The bearer token is empty.")
        } else {
            Ok(())
        };
    }
    let date = text("x-amz-date").ok_or("Missing x-amz-date.")?;
    let well_dated = date.len() == 16
        && date.as_bytes()[8] == b'T'
        && date.ends_with('Z')
        && date[..8]
            .bytes()
            .chain(date[9..15].bytes())
            .all(|b| b.is_ascii_digit());
    if !well_dated {
        return Err("x-amz-date is not a time like 20150830T123600Z.");
    }
    let auth = text("authorization").ok_or("Missing Authentication Token")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .ok_or("The Authorization header is not AWS4-HMAC-SHA256.")?;
    let (credential, rest) = rest
        .split_once(", SignedHeaders=")
        .ok_or("No SignedHeaders.")?;
    let (signed, signature) = rest.split_once(", Signature=").ok_or("No Signature.")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let scoped = matches!(scope.as_slice(), [key, day, region, "bedrock", "aws4_request"]
        if !key.is_empty() && *day == &date[..8] && !region.is_empty());
    if !scoped {
        return Err("The credential scope is not <key>/<date>/<region>/bedrock/aws4_request for x-amz-date's day.");
    }
    let names: Vec<&str> = signed.split(';').collect();
    if !names.contains(&"host") || !names.contains(&"x-amz-date") || !names.is_sorted() {
        return Err("SignedHeaders must list host and x-amz-date, sorted.");
    }
    if signature.len() != 64
        || !signature
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err("The signature is not 64 lower-case hex digits.");
    }
    Ok(())
}

async fn answer(mock: Arc<MockProvider>, req: UpstreamRequest) -> Response {
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
    let m = Arc::clone(&mock);
    let mut router = Router::new()
        .route(
            "/v1beta/models/{target}",
            post(move |Path(target): Path<String>, b: Bytes| {
                serve_gemini(Arc::clone(&gemini), target, b)
            }),
        )
        .route(
            "/model/{model}/converse",
            post(move |Path(model): Path<String>, h: HeaderMap, b: Bytes| {
                converse(Arc::clone(&m), model, false, h, b)
            }),
        )
        .route("/model/{model}/converse-stream", {
            let m = Arc::clone(&mock);
            post(move |Path(model): Path<String>, h: HeaderMap, b: Bytes| {
                converse(Arc::clone(&m), model, true, h, b)
            })
        });
    for endpoint in Endpoint::ALL
        .into_iter()
        .filter(|e| !e.is_gemini() && *e != Endpoint::Converse)
    {
        let mock = Arc::clone(&mock);
        router = router.route(
            &format!("/v1{}", endpoint.path()),
            post(move |b: Bytes| serve(Arc::clone(&mock), endpoint, b)),
        );
    }
    router
}
