//! Errors the gateway returns to clients, in the shape of the API the client called: OpenAI's
//! `{"error":{"message","type","code"}}`, or on the Anthropic Messages route Anthropic's
//! `{"type":"error","error":{"type","message"}}` (docs.anthropic.com/en/api/errors), so each SDK raises its own
//! typed error.
//!
//! Building the response has no side effects; logging happens where the error is raised.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use spendgate_core::RefusalReason;
use spendgate_store::KeyRecord;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for `Retry-After` on rate and budget errors.
    pub retry_after: Option<u64>,
    pub shape: ErrorShape,
    /// What the refusal's record says beyond the status, when the error refuses a request at the door and its
    /// raiser knows more (which budget, whose revoked key). Never sent to the client.
    pub cause: Option<Box<Cause>>,
}

/// Why a request was refused, for its refusal record (`crate::refusals`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: RefusalReason,
    /// A short human sentence: "unknown key", "budget 'support daily' is hard and full".
    pub detail: String,
    /// A key that was recognised but may not be used (revoked, expired): its owner is who was refused.
    pub key: Option<Arc<KeyRecord>>,
    pub budget_id: Option<i64>,
    pub wallet_id: Option<i64>,
}

impl Cause {
    pub fn new(reason: RefusalReason, detail: impl Into<String>) -> Cause {
        Cause {
            reason,
            detail: detail.into(),
            key: None,
            budget_id: None,
            wallet_id: None,
        }
    }
}

/// Which API's error body to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorShape {
    #[default]
    OpenAi,
    Anthropic,
    /// Google's APIs (the Gemini API): `{"error":{"code","message","status"}}`.
    Google,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            kind,
            code,
            message: message.into(),
            retry_after: None,
            shape: ErrorShape::OpenAi,
            cause: None,
        }
    }

    /// The same error, saying why the request was refused for its refusal record.
    pub fn because(mut self, cause: Cause) -> ApiError {
        self.cause = Some(Box::new(cause));
        self
    }

    /// The same error with a refusal reason and detail.
    pub fn refusing(self, reason: RefusalReason, detail: impl Into<String>) -> ApiError {
        self.because(Cause::new(reason, detail))
    }

    /// The same error in another API's shape.
    pub fn shaped(mut self, shape: ErrorShape) -> ApiError {
        self.shape = shape;
        self
    }

    pub fn invalid_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        )
    }

    /// A 401; `detail` says for the refusal's record what was wrong with the key ("unknown key").
    pub fn invalid_key(detail: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            message,
        )
        .refusing(RefusalReason::Auth, detail)
    }

    pub fn model_not_found(model: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!(
                "The model '{model}' is not served by this gateway. GET /v1/models lists the models it serves; \
                 an operator can add it to a provider's models and to the pricing catalog."
            ),
        )
        .refusing(
            RefusalReason::UnknownModel,
            format!("model '{model}' is not served here"),
        )
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("The request body is larger than this gateway accepts ({limit} bytes); send a smaller request."),
        )
        .refusing(
            RefusalReason::BodyTooLarge,
            format!("body over the {limit}-byte limit"),
        )
    }

    pub fn upstream(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError::new(status, "upstream_error", code, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            message,
        )
    }

    pub fn body(&self) -> serde_json::Value {
        match self.shape {
            ErrorShape::OpenAi => serde_json::json!({
                "error": { "message": self.message, "type": self.kind, "code": self.code, "param": null }
            }),
            ErrorShape::Anthropic => serde_json::json!({
                "type": "error",
                "error": { "type": anthropic_type(self.status), "message": self.message, "code": self.code },
            }),
            // Google's errors carry the HTTP status as `code` and the gRPC status name as `status`
            // (cloud.google.com/apis/design/errors#http_mapping); Google's SDKs raise by the HTTP status.
            ErrorShape::Google => serde_json::json!({
                "error": { "code": self.status.as_u16(), "message": self.message, "status": google_status(self.status) },
            }),
        }
    }
}

/// Anthropic's error type for an HTTP status (docs.anthropic.com/en/api/errors).
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// The gRPC status name Google's APIs send beside an HTTP status (cloud.google.com/apis/design/errors).
fn google_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 | 422 | 431 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        402 | 429 => "RESOURCE_EXHAUSTED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res
    }
}
