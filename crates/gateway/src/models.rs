//! `GET /v1/models` and `GET /v1/models/{id}`, in the shape of the API the client speaks, listing only what that
//! client can call.
//!
//! - OpenAI (platform.openai.com/docs/api-reference/models): `{"object":"list","data":[{"id","object":"model",
//!   "created","owned_by"}]}`, and one such object for `/v1/models/{id}`.
//! - Anthropic (docs.anthropic.com/en/api/models-list, .../models): `{"data":[{"type":"model","id",
//!   "display_name","created_at"}],"first_id","last_id","has_more"}`, paged by `limit` (1..=1000, default 20),
//!   `after_id` and `before_id`; the SDKs page through `has_more` and `last_id`.
//!
//! A client is taken to speak Anthropic's API when it sends `anthropic-version` (every Anthropic SDK does), or
//! its key in `x-api-key` without an `Authorization` header.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorShape};
use crate::provider::Endpoint;
use crate::proxy::authenticate;
use crate::refusals::Door;
use crate::routes::Route;
use crate::Gateway;

/// The endpoints an OpenAI client can call a model on.
const OPENAI_ENDPOINTS: [Endpoint; 3] = [
    Endpoint::ChatCompletions,
    Endpoint::Embeddings,
    Endpoint::Responses,
];

/// Anthropic's default and largest page (docs.anthropic.com/en/api/models-list).
const ANTHROPIC_DEFAULT_LIMIT: usize = 20;
const ANTHROPIC_MAX_LIMIT: usize = 1000;

/// Whether the client speaks Anthropic's API, from the headers its SDK sends.
pub fn speaks_anthropic(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version")
        || (headers.contains_key("x-api-key")
            && !headers.contains_key(axum::http::header::AUTHORIZATION))
}

/// The error shape for a request on `path` with `headers`.
pub fn shape_of_request(path: &str, headers: &HeaderMap) -> ErrorShape {
    if path.starts_with("/v1/messages") || speaks_anthropic(headers) {
        ErrorShape::Anthropic
    } else {
        ErrorShape::OpenAi
    }
}

/// Whether a client of `shape` can call the route: in its own API, or translated between chat completions and
/// Messages (`translate`), which only a chat model can answer, or into Bedrock's Converse from either.
fn callable(route: &Route, shape: ErrorShape) -> bool {
    route.targets.iter().any(|t| match shape {
        ErrorShape::Anthropic => {
            t.provider.speaks(Endpoint::Messages)
                || t.provider.speaks(Endpoint::Converse)
                || (t.provider.speaks(Endpoint::ChatCompletions)
                    && t.price.kind == spendgate_core::pricing::ModelKind::Chat)
        }
        ErrorShape::OpenAi => {
            OPENAI_ENDPOINTS.iter().any(|&e| t.provider.speaks(e))
                || t.provider.speaks(Endpoint::Messages)
                || t.provider.speaks(Endpoint::Converse)
        }
    })
}

fn openai_model(id: &str, route: &Route) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "object": "model",
        // The gateway does not know when the provider published the model; 0 is the Unix epoch.
        "created": 0,
        "owned_by": &*route.first().provider_name,
    })
}

fn anthropic_model(id: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "model",
        "id": id,
        "display_name": id,
        // Unknown to the gateway, like OpenAI's `created`: the epoch, in the RFC 3339 form the API uses.
        "created_at": "1970-01-01T00:00:00Z",
    })
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct Page {
    limit: Option<String>,
    after_id: Option<String>,
    before_id: Option<String>,
}

pub(crate) async fn list(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    let shape = shape_of_request("/v1/models", &headers);
    if let Err(e) = authenticate(&gw, &headers).await {
        gw.refuse(&e, "models", &Door::default()).await;
        return e.shaped(shape).into_response();
    }
    let routes = gw.routes.current();
    let models: Vec<(&str, &Route)> = routes
        .list()
        .into_iter()
        .filter(|(_, r)| callable(r, shape))
        .collect();
    match shape {
        ErrorShape::OpenAi => {
            let data: Vec<_> = models.iter().map(|(id, r)| openai_model(id, r)).collect();
            axum::Json(serde_json::json!({ "object": "list", "data": data })).into_response()
        }
        ErrorShape::Anthropic => match anthropic_page(&models, &page) {
            Ok(body) => axum::Json(body).into_response(),
            Err(e) => e.shaped(shape).into_response(),
        },
    }
}

/// One page of Anthropic's list, in the list's (sorted) order.
fn anthropic_page(models: &[(&str, &Route)], page: &Page) -> Result<serde_json::Value, ApiError> {
    let limit = match page.limit.as_deref() {
        None => ANTHROPIC_DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=ANTHROPIC_MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_request(
                    "invalid_limit",
                    format!("limit must be a whole number from 1 to {ANTHROPIC_MAX_LIMIT}."),
                )
            })?,
    };
    let ids: Vec<&str> = models.iter().map(|(id, _)| *id).collect();
    let position = |id: &str| {
        ids.iter().position(|m| *m == id).ok_or_else(|| {
            ApiError::invalid_request(
                "invalid_cursor",
                format!("No model '{id}' is listed; page from an id of an earlier answer."),
            )
        })
    };
    let (start, end) = match (&page.after_id, &page.before_id) {
        (Some(after), _) => {
            let s = position(after)? + 1;
            (s, (s + limit).min(ids.len()))
        }
        (None, Some(before)) => {
            let e = position(before)?;
            (e.saturating_sub(limit), e)
        }
        (None, None) => (0, limit.min(ids.len())),
    };
    let slice = &ids[start..end];
    let has_more = match (&page.after_id, &page.before_id) {
        (None, Some(_)) => start > 0,
        _ => end < ids.len(),
    };
    Ok(serde_json::json!({
        "data": slice.iter().map(|id| anthropic_model(id)).collect::<Vec<_>>(),
        "first_id": slice.first(),
        "last_id": slice.last(),
        "has_more": has_more,
    }))
}

/// `GET /v1/models/{id}`: the model if this client can call it (any name the gateway routes: aliases and
/// `provider/model` included), else 404 in the client's shape. The id may contain `/`.
pub(crate) async fn get(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let shape = shape_of_request("/v1/models", &headers);
    if let Err(e) = authenticate(&gw, &headers).await {
        gw.refuse(&e, "models", &Door::default()).await;
        return e.shaped(shape).into_response();
    }
    match gw.routes.current().get(&id) {
        Some(route) if callable(&route, shape) => match shape {
            ErrorShape::OpenAi => axum::Json(openai_model(&id, &route)).into_response(),
            ErrorShape::Anthropic => axum::Json(anthropic_model(&id)).into_response(),
        },
        _ => ApiError::model_not_found(&id).shaped(shape).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_clients_are_recognised_by_their_headers() {
        let mut h = HeaderMap::new();
        assert!(!speaks_anthropic(&h));
        h.insert("x-api-key", "k".parse().unwrap());
        assert!(speaks_anthropic(&h));
        h.insert("authorization", "Bearer k".parse().unwrap());
        assert!(!speaks_anthropic(&h), "OpenAI clients may send both");
        h.insert("anthropic-version", "2023-06-01".parse().unwrap());
        assert!(speaks_anthropic(&h));
        assert_eq!(
            shape_of_request("/v1/messages/batches", &HeaderMap::new()),
            ErrorShape::Anthropic
        );
    }
}
