//! Google's own route, for clients written against Google's Gemini SDKs (`google-genai` and the like) pointed at
//! the gateway: `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`
//! (ai.google.dev/api/generate-content). The virtual key comes in `x-goog-api-key`, as Google's SDKs send their
//! key, or as the `key` query parameter (ai.google.dev/gemini-api/docs/api-key); the query is never logged, and the
//! refusal records and spend logs name the endpoint only.
//!
//! The request is passed to a provider speaking Gemini's API byte for byte (the model is in the URL, so renaming it
//! for the upstream touches no byte of the body) and metered from the answer's `usageMetadata`
//! (`protocol::gemini`). A stream must ask for server-sent events (`alt=sse`, what the SDKs send): without it
//! Google answers one JSON array sent piecemeal, which the gateway does not meter, so it is refused with a 400
//! that says so.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use crate::error::ApiError;
use crate::provider::Endpoint;
use crate::proxy::{check_key, prepare_intake, run, Intake};
use crate::refusals::Door;
use crate::Gateway;

/// The path prefix of Google's route, below which `{model}:{method}` follows.
pub const PREFIX: &str = "/v1beta/models/";

/// The header Google's SDKs send their key in.
const KEY_HEADER: &str = "x-goog-api-key";

/// The query parameters Google's API reads here.
#[derive(Debug, Default, Deserialize)]
struct GoogleQuery {
    /// The key, for clients that send it in the URL. Never logged.
    #[serde(default)]
    key: Option<String>,
    /// `sse`: a stream of server-sent events.
    #[serde(default)]
    alt: Option<String>,
}

/// `{model}:generateContent` or `{model}:streamGenerateContent`: the model and whether it streams.
fn method_of(target: &str) -> Result<(&str, bool), ApiError> {
    let (model, method) = target.rsplit_once(':').ok_or_else(|| {
        not_found(format!(
            "'{PREFIX}{target}' names no method; call {PREFIX}{{model}}:generateContent or :streamGenerateContent."
        ))
    })?;
    match method {
        "generateContent" => Ok((model, false)),
        "streamGenerateContent" => Ok((model, true)),
        other => Err(not_found(format!(
            "The method '{other}' of Google's API is not served by this gateway; only generateContent and \
             streamGenerateContent (with alt=sse) are metered."
        ))),
    }
}

fn not_found(message: String) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "unsupported_method",
        message,
    )
}

/// The virtual key: `x-goog-api-key`, else `?key=`, else `Authorization: Bearer` (a plain HTTP client's habit).
fn secret<'a>(headers: &'a HeaderMap, query: &'a GoogleQuery) -> Result<&'a str, ApiError> {
    if let Some(v) = headers.get(KEY_HEADER) {
        return v.to_str().map(str::trim).map_err(|_| {
            ApiError::invalid_key(
                "malformed x-goog-api-key header",
                "The x-goog-api-key header must be a spendgate virtual key.",
            )
        });
    }
    if let Some(k) = query.key.as_deref() {
        return Ok(k.trim());
    }
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        return v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::invalid_key(
                    "malformed Authorization header",
                    "The Authorization header must be 'Bearer <virtual key>'.",
                )
            });
    }
    Err(ApiError::invalid_key(
        "no key sent",
        "No API key was sent. Send a spendgate virtual key as 'x-goog-api-key: sk-sg-...' (Google's SDKs do, given \
         it as their API key) or as the 'key' query parameter.",
    ))
}

/// `POST /v1beta/models/{model}:{method}`.
pub(crate) async fn generate(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let endpoint = Endpoint::GenerateContent;
    let mut door = Door::default();
    let prepared = prepare(&gw, req, &mut door).await;
    run(gw, endpoint, prepared, &door).await
}

async fn prepare(
    gw: &Arc<Gateway>,
    req: Request,
    door: &mut Door,
) -> Result<crate::forward::Prepared, ApiError> {
    let (parts, body) = req.into_parts();
    let target = parts
        .uri
        .path()
        .strip_prefix(PREFIX)
        .unwrap_or_default()
        .to_string();
    let query = Query::<GoogleQuery>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let key = check_key(gw, secret(&parts.headers, &query)?).await?;
    door.key = Some(Arc::clone(&key));
    let (model, stream) = method_of(&target)?;
    door.model = Some(model.to_string());
    if stream && query.alt.as_deref() != Some("sse") {
        return Err(ApiError::invalid_request(
            "stream_needs_sse",
            "streamGenerateContent is metered as server-sent events only: add '?alt=sse' to the URL (Google's \
             SDKs do).",
        ));
    }
    let intake = Intake::read(gw, (Endpoint::GenerateContent, parts, key), body, |b| {
        crate::protocol::gemini::head(model, stream, b).map_err(|e| {
            ApiError::invalid_request(
                "invalid_json",
                format!("The request body is not a GenerateContentRequest: {e}."),
            )
        })
    })
    .await?;
    prepare_intake(gw, intake, door).await
}

/// Whether a path is on Google's route (for the shape of an error answered before the route's handler).
pub fn is_google_path(path: &str) -> bool {
    path.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_names_the_model_and_whether_it_streams() {
        assert_eq!(
            method_of("gemini-2.5-flash:generateContent").unwrap(),
            ("gemini-2.5-flash", false)
        );
        assert_eq!(
            method_of("gemini-2.5-flash:streamGenerateContent").unwrap(),
            ("gemini-2.5-flash", true)
        );
        assert_eq!(method_of("m:countTokens").unwrap_err().status, 404);
        assert_eq!(method_of("m").unwrap_err().status, 404);
    }

    #[test]
    fn the_key_comes_from_googles_header_then_the_query() {
        let mut headers = HeaderMap::new();
        let query = GoogleQuery {
            key: Some("sk-sg-query".into()),
            alt: None,
        };
        assert_eq!(secret(&headers, &query).unwrap(), "sk-sg-query");
        headers.insert(KEY_HEADER, "sk-sg-header".parse().unwrap());
        assert_eq!(secret(&headers, &query).unwrap(), "sk-sg-header");
        assert_eq!(
            secret(&HeaderMap::new(), &GoogleQuery::default())
                .unwrap_err()
                .status,
            401
        );
    }
}
