//! Answers for requests no handler takes: every one is JSON in the shape of the API the client speaks, so an SDK
//! raises its own typed error with a message that says what to do, never "404 status code (no body)".
//!
//! Endpoints the gateway cannot meter (images, audio, files, batches, ...) are named as such and refused: they
//! are never forwarded unmetered, since spend that bypasses the gateway is exactly what it exists to show.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::models::shape_of_request;

/// What the gateway serves, for the messages below.
pub const SERVED: &str = "POST /v1/chat/completions, POST /v1/completions, POST /v1/embeddings, POST \
                          /v1/responses, POST /v1/messages, POST /v1/messages/count_tokens, POST /v1/moderations, \
                          GET /v1/models and GET /v1/models/{id}";

/// Provider endpoints the gateway knows of but does not meter, by path prefix below `/v1`.
const UNMETERED: [(&str, &str); 14] = [
    ("/images", "image generation"),
    ("/audio", "audio (speech, transcription, translation)"),
    ("/files", "file storage"),
    ("/uploads", "file uploads"),
    ("/batches", "batch jobs"),
    ("/messages/batches", "Message batches"),
    ("/fine_tuning", "fine-tuning"),
    ("/assistants", "the Assistants API"),
    ("/threads", "the Assistants API"),
    ("/vector_stores", "vector stores"),
    ("/realtime", "the Realtime API"),
    ("/rerank", "reranking"),
    ("/complete", "Anthropic's legacy Text Completions"),
    ("/videos", "video generation"),
];

/// The client-facing routes below `/v1`, for the hint when a client left `/v1` out of its base URL.
const PROXY_PATHS: [&str; 7] = [
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/responses",
    "/messages",
    "/moderations",
    "/models",
];

/// The fallback of the whole application: `/v1/...` and proxy paths without `/v1` answer in the API's shape,
/// `/api/...` in the JSON API's (the OpenAI-like `{"error":{...}}`), and anything else as plain text pointing at
/// the dashboard.
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    let shape = shape_of_request(path, &headers);
    if let Some(rest) = path.strip_prefix("/v1") {
        if let Some((_, what)) = UNMETERED
            .iter()
            .filter(|(p, _)| {
                rest.strip_prefix(p)
                    .is_some_and(|tail| tail.is_empty() || tail.starts_with('/'))
            })
            .max_by_key(|(p, _)| p.len())
        {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "unsupported_endpoint",
                format!(
                    "{method} {path} ({what}) is not served by this gateway: spendgate cannot meter it yet, so it \
                     does not forward it. Call the provider directly for it, or use what the gateway serves: \
                     {SERVED}."
                ),
            )
            .shaped(shape)
            .into_response();
        }
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_route",
            format!("There is no {method} {path} on this gateway. It serves {SERVED}."),
        )
        .shaped(shape)
        .into_response();
    }
    if PROXY_PATHS.contains(&path) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_route",
            format!(
                "There is no {method} {path} on this gateway; did you mean /v1{path}? Set the client's base URL \
                 to this gateway's address followed by /v1 (for example http://127.0.0.1:8080/v1)."
            ),
        )
        .shaped(shape)
        .into_response();
    }
    if path.starts_with("/api/") || path == "/api" {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_route",
            format!(
                "There is no {method} {path} in the JSON API; /api/openapi.json lists its routes."
            ),
        )
        .into_response();
    }
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("Not found: {path}. The dashboard starts at /overview.\n"),
    )
        .into_response()
}

/// The answer to a known route called with a method it does not take (405, with `Allow`).
pub async fn method_not_allowed(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    let allow = if path.starts_with("/v1/models") {
        "GET"
    } else {
        "POST"
    };
    let mut res = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        format!("{path} takes {allow}, not {method}."),
    )
    .shaped(shape_of_request(path, &headers))
    .into_response();
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}
