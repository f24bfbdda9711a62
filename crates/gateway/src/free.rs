//! The provider's free helper endpoints, passed through unmetered: Anthropic's token counting
//! (`/v1/messages/count_tokens`, docs.anthropic.com/en/api/messages-count-tokens) and OpenAI's moderation
//! (`/v1/moderations`, platform.openai.com/docs/api-reference/moderations). Neither is billed, so neither holds a
//! budget or writes a spend log; both still need a virtual key, and go to the provider of the model they name.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::error::ApiError;
use crate::forward::{error_shape, provider_error};
use crate::provider::{Endpoint, Provider, UpstreamBody, UpstreamRequest};
use crate::proxy::{anthropic_headers, authenticate, parse_head, read_body};
use crate::refusals::Door;
use crate::Gateway;

pub(crate) async fn pass(gw: Arc<Gateway>, endpoint: Endpoint, req: Request) -> Response {
    let mut door = FreeDoor::default();
    match forward(&gw, endpoint, req, &mut door).await {
        Ok(res) => res,
        // A call that failed at the provider is counted as before, but it is no refusal: the gateway let it in.
        Err(e) if door.called => {
            gw.stats.reject();
            e.shaped(error_shape(endpoint)).into_response()
        }
        Err(e) => {
            gw.refuse(&e, endpoint.as_str(), &door.at).await;
            e.shaped(error_shape(endpoint)).into_response()
        }
    }
}

/// What `forward` knew when it failed, and whether the provider had been called.
#[derive(Default)]
struct FreeDoor {
    at: Door,
    called: bool,
}

async fn forward(
    gw: &Gateway,
    endpoint: Endpoint,
    req: Request,
    door: &mut FreeDoor,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    door.at.key = Some(authenticate(gw, &parts.headers).await?);
    let body = read_body(body, gw.limits.max_body_bytes).await?;
    let head = parse_head(&body)?;
    door.at.model = head.model.clone();
    let (provider, model, body) = target(gw, endpoint, head.model.as_deref(), body)?;
    let headers = if endpoint.is_anthropic() {
        anthropic_headers(&parts.headers)
    } else {
        Vec::new()
    };
    door.called = true;
    let up = provider
        .send(UpstreamRequest {
            endpoint,
            model,
            stream: false,
            body,
            headers,
        })
        .await
        .map_err(|e| provider_error(&e))?;
    let status = StatusCode::from_u16(up.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut res = match up.body {
        UpstreamBody::Full(b) => Response::new(Body::from(b)),
        UpstreamBody::Stream(s) => Response::new(Body::from_stream(s)),
    };
    *res.status_mut() = status;
    if let Some(ct) = up.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        res.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(res)
}

/// Where the call goes: the provider of the model it names (the body renamed to the upstream's model name), or,
/// for a moderation that names no routed model (its models are not priced, so not routed), the provider that
/// serves moderations with the body as sent.
fn target(
    gw: &Gateway,
    endpoint: Endpoint,
    model: Option<&str>,
    body: Bytes,
) -> Result<(Arc<dyn Provider>, String, Bytes), ApiError> {
    let routes = gw.routes.current();
    let routed = model.and_then(|m| routes.get(m));
    if let Some(route) = routed {
        if let Some(t) = route.targets.iter().find(|t| t.provider.speaks(endpoint)) {
            let body = renamed(body, &t.upstream_model)?;
            return Ok((Arc::clone(&t.provider), t.upstream_model.clone(), body));
        }
    }
    match (endpoint, model) {
        (Endpoint::Moderations, _) => {
            let provider = routes.provider_for(endpoint).ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "unsupported_endpoint",
                    "No provider of this gateway serves moderations; configure an OpenAI provider.",
                )
            })?;
            Ok((provider, model.unwrap_or_default().to_string(), body))
        }
        (_, Some(m)) => Err(ApiError::model_not_found(m)),
        (_, None) => Err(ApiError::invalid_request(
            "missing_model",
            "The request must name a 'model'.",
        )),
    }
}

/// The body with `model` set to the upstream's name, when it differs.
fn renamed(body: Bytes, upstream_model: &str) -> Result<Bytes, ApiError> {
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&body).map_err(|_| {
            ApiError::invalid_request("invalid_json", "The request body must be a JSON object.")
        })?;
    if v.get("model").and_then(|m| m.as_str()) == Some(upstream_model) {
        return Ok(body);
    }
    v.insert("model".into(), upstream_model.into());
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("could not encode the request: {e}")))
}
