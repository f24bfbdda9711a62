//! Forwarding a prepared request: its route's targets are tried in order until one answers (fallbacks and
//! retries, bounded by the route, and only before any byte reached the client), then the answer is passed back
//! byte for byte while its usage is read, and the request is recorded once.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use spendgate_core::RequestStatus;
use uuid::Uuid;

use crate::error::{ApiError, ErrorShape};
use crate::meter::{Meter, MeteredStream, Outcome};
use crate::protocol::{format_of, text_len, RequestHead};
use crate::provider::{Endpoint, ProviderError, UpstreamBody, UpstreamRequest, UpstreamResponse};
use crate::proxy::{upstream_body, REQUEST_ID_HEADER};
use crate::routes::{Route, Target};
use crate::translate::Translation;
use crate::Gateway;

/// A request that passed every check and is ready to go upstream.
pub(crate) struct Prepared {
    pub meter: Meter,
    /// The API the client called.
    pub endpoint: Endpoint,
    /// Set when the first target's provider speaks another API: the request goes upstream translated, and the
    /// answer comes back translated.
    pub translation: Option<Translation>,
    /// The client of a chat completion stream asked for the usage chunk (for the translations of later targets).
    pub include_usage: bool,
    /// The head of `body`.
    pub head: RequestHead,
    /// The body as the client sent it (translated for targets in other APIs).
    pub client_body: Bytes,
    /// The body in the first target's API: as the client sent it, or translated.
    pub body: Bytes,
    /// The body for the first target (usage requested, model renamed), built before any upstream call.
    pub first_body: Bytes,
    pub stream: bool,
    /// Protocol headers passed on to an upstream in Anthropic's API.
    pub headers: Vec<(&'static str, String)>,
    pub route: Arc<Route>,
    /// Held while a stream is open, so one key cannot open more than its share.
    pub slot: Option<crate::limits::StreamSlot>,
    /// The gateway asks an upstream in the client's API for stream usage the client did not ask for: it is taken
    /// out of the answer.
    pub strip_usage: bool,
}

/// The error shape of an endpoint's API.
pub(crate) fn error_shape(endpoint: Endpoint) -> ErrorShape {
    if endpoint.is_anthropic() {
        ErrorShape::Anthropic
    } else if endpoint.is_gemini() {
        ErrorShape::Google
    } else {
        ErrorShape::OpenAi
    }
}

pub(crate) fn provider_error(e: &ProviderError) -> ApiError {
    match e {
        ProviderError::Timeout => ApiError::upstream(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "The provider did not answer in time. Retry, or raise the provider's read timeout.",
        ),
        other => ApiError::upstream(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            format!("The provider failed: {other}."),
        ),
    }
}

/// Why an attempt may be followed by the next target: an upstream 5xx, a connect error or a timeout. Nothing
/// has reached the client then (error bodies are read whole), and providers do not bill failed calls.
fn retryable(result: &Result<UpstreamResponse, ProviderError>) -> Option<(u16, String)> {
    match result {
        Err(e @ (ProviderError::Timeout | ProviderError::Connect(_))) => {
            Some((provider_error(e).status.as_u16(), e.to_string()))
        }
        Ok(up) if up.status >= 500 => {
            Some((up.status, format!("the upstream answered {}", up.status)))
        }
        _ => None,
    }
}

pub(crate) async fn forward(gw: Arc<Gateway>, p: Prepared) -> Response {
    let Prepared {
        mut meter,
        endpoint,
        translation,
        include_usage,
        head,
        client_body,
        body,
        first_body,
        stream,
        headers,
        route,
        slot,
        strip_usage,
    } = p;
    let request_id = meter.id;
    let shape = error_shape(endpoint);
    // Every target the request reaches, in the route's order, each in its own API: the client's, or translated.
    // `prepare` started with the first of them, and built its body.
    let plans: Vec<(&Target, Option<Translation>)> = route
        .targets
        .iter()
        .filter_map(|t| crate::proxy::reach(t, endpoint, include_usage).map(|tr| (t, tr)))
        .collect();
    let mut wires = Wires {
        client: endpoint,
        beta: headers
            .iter()
            .find(|(h, _)| *h == "anthropic-beta")
            .map(|(_, v)| v.clone()),
        client_body,
        built: vec![(translation.map_or(endpoint, |t| t.upstream), body, head)],
    };
    let mut next_body = Some(first_body);
    let mut i = 0;
    let mut res = loop {
        let Some(&(target, tr)) = plans.get(i) else {
            break ApiError::internal("the route has no target for this API")
                .shaped(shape)
                .into_response();
        };
        let wire = tr.map_or(endpoint, |t| t.upstream);
        meter.aim(target);
        meter.upstream_api = tr.map(|t| t.upstream);
        let body = match next_body.take() {
            Some(b) => Ok(b),
            None => wires
                .body(tr, target)
                .and_then(|(b, h)| upstream_body(b.clone(), h, wire, &target.upstream_model)),
        };
        let result = match body {
            Ok(body) => {
                let req = UpstreamRequest {
                    endpoint: wire,
                    model: target.upstream_model.clone(),
                    stream,
                    body,
                    headers: if wire.is_anthropic() {
                        headers.clone()
                    } else {
                        Vec::new()
                    },
                };
                target.provider.send(req).await
            }
            Err(e) => Err(ProviderError::Body(e.message)),
        };
        // The next target the request can go to: one whose API the request translates into (a parameter another
        // API cannot take leaves that target out, and the answer already had is the client's).
        let mut next = || {
            (i + 1..plans.len()).find(|&j| {
                let (t, tr) = plans[j];
                match wires.body(tr, t) {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(request_id = %request_id, provider = %t.provider_name, error = %e.message,
                            "A fallback target cannot take this request in its API; it is left out.");
                        false
                    }
                }
            })
        };
        match retryable(&result).map(|r| (r, next())) {
            Some(((status, error), Some(j))) => {
                tracing::warn!(request_id = %request_id, provider = %target.provider_name, status, error = %error,
                    "An upstream attempt failed; trying the route's next target.");
                meter.failed_attempt(&target.upstream_model, status, error);
                i = j;
            }
            _ => {
                let how = Passing {
                    shape,
                    slot,
                    strip_usage: strip_usage && tr.is_none(),
                    translation: tr,
                };
                break answer(&gw, meter, result, how).await;
            }
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    res
}

/// The request's body and head in each API it goes upstream in, each built once, when an attempt first needs it.
struct Wires {
    /// The API the client called, and its body.
    client: Endpoint,
    client_body: Bytes,
    /// The client's `anthropic-beta` header, which a translation into Converse carries in the body.
    beta: Option<String>,
    built: Vec<(Endpoint, Bytes, RequestHead)>,
}

impl Wires {
    /// The body and head for `target`, reached through `translation` (or in the client's API).
    fn body(
        &mut self,
        translation: Option<Translation>,
        target: &Target,
    ) -> Result<(&Bytes, &RequestHead), ApiError> {
        let wire = translation.map_or(self.client, |t| t.upstream);
        let at = match self.built.iter().position(|(e, ..)| *e == wire) {
            Some(at) => at,
            None => {
                let body = match translation {
                    Some(t) => t.request_with_betas(
                        &self.client_body,
                        crate::translate::max_tokens_for(&target.price),
                        self.beta.as_deref(),
                    )?,
                    None => self.client_body.clone(),
                };
                let head = crate::proxy::parse_head(&body)?;
                self.built.push((wire, body, head));
                self.built.len() - 1
            }
        };
        let (_, body, head) = &self.built[at];
        Ok((body, head))
    }
}

/// How an answer is passed to the client.
struct Passing {
    shape: ErrorShape,
    slot: Option<crate::limits::StreamSlot>,
    strip_usage: bool,
    translation: Option<Translation>,
}

/// Passes the last attempt's answer to the client and records the request.
async fn answer(
    gw: &Gateway,
    meter: Meter,
    result: Result<UpstreamResponse, ProviderError>,
    how: Passing,
) -> Response {
    let Passing {
        shape,
        slot,
        strip_usage,
        translation,
    } = how;
    let request_id = meter.id;
    let up = match result {
        Ok(up) => up,
        Err(e) => {
            let err = provider_error(&e).shaped(shape);
            tracing::warn!(request_id = %request_id, provider = %meter.provider, error = %e, "The upstream call failed.");
            let ack = meter.finish(Outcome {
                status: RequestStatus::UpstreamError,
                http_status: err.status.as_u16(),
                reported: None,
                counted_output_tokens: 0,
                error: Some(e.to_string()),
            });
            journaled(ack, request_id).await;
            return err.into_response();
        }
    };
    let status = StatusCode::from_u16(up.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = up.content_type.and_then(|c| HeaderValue::from_str(&c).ok());
    match up.body {
        UpstreamBody::Full(bytes) => {
            full_answer(meter, (status, content_type), bytes, shape, translation).await
        }
        UpstreamBody::Stream(s) => {
            let translator = translation
                .filter(|_| status.is_success())
                .map(|t| t.stream(&meter.model));
            let content_type = if translator.is_some() {
                None
            } else {
                content_type
            };
            let metered =
                MeteredStream::new(s, meter, gw.limits.max_stream_duration, slot, strip_usage)
                    .translated(translator);
            let mut r = Response::new(Body::from_stream(metered));
            *r.status_mut() = status;
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                content_type.unwrap_or(HeaderValue::from_static("text/event-stream")),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
    }
}

/// A complete answer: its usage read from the body, recorded, then the bytes passed on unchanged.
async fn full_answer(
    meter: Meter,
    (status, content_type): (StatusCode, Option<HeaderValue>),
    bytes: Bytes,
    shape: ErrorShape,
    translation: Option<Translation>,
) -> Response {
    let request_id = meter.id;
    let format = format_of(meter.wire_endpoint());
    let parsed = if status.is_success() {
        Some(format.body_usage(&bytes))
    } else {
        None
    };
    let (outcome_status, reported, error) = match &parsed {
        None => (
            RequestStatus::UpstreamError,
            None,
            Some(format!("the upstream answered {}", status.as_u16())),
        ),
        Some(Err(_)) => (
            RequestStatus::UpstreamError,
            None,
            Some("the upstream's answer was not valid JSON".to_string()),
        ),
        Some(Ok(None)) => (
            RequestStatus::Ok,
            None,
            Some("the upstream sent no usage; tokens were counted".to_string()),
        ),
        Some(Ok(Some(u))) => (RequestStatus::Ok, Some(*u), None),
    };
    let counted = spendgate_core::usage::estimate_tokens(text_len(&bytes, format.text_key(false)));
    let broken = matches!(parsed, Some(Err(_)));
    // Metered above on the upstream's bytes; the client (and the cache, which answers the client's API) gets
    // them in its own API.
    let translated = match translation {
        Some(t) if status.is_success() && !broken => match t.response(&bytes, &meter.model) {
            Some(b) => Translated::Body(b),
            None => Translated::Error(ApiError::upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_bad_response",
                "The provider's answer could not be translated; retry the request.",
            )),
        },
        Some(t) if !status.is_success() => Translated::Error(t.error(status, &bytes)),
        _ => Translated::Body(bytes),
    };
    if let Translated::Body(b) = &translated {
        meter.cache.answer(b);
    }
    let http_status = if broken {
        StatusCode::BAD_GATEWAY
    } else {
        status
    };
    let ack = meter.finish(Outcome {
        status: outcome_status,
        http_status: http_status.as_u16(),
        reported,
        counted_output_tokens: counted,
        error,
    });
    journaled(ack, request_id).await;
    if broken {
        // Passing a broken body on would only move the failure into the client's JSON parser.
        return ApiError::upstream(
            StatusCode::BAD_GATEWAY,
            "upstream_bad_response",
            "The provider answered with a body that is not valid JSON; retry the request.",
        )
        .shaped(shape)
        .into_response();
    }
    let bytes = match translated {
        Translated::Body(b) => b,
        Translated::Error(e) => return e.shaped(shape).into_response(),
    };
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    if translation.is_some() {
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    } else if let Some(ct) = content_type {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

/// A complete answer as the client gets it.
enum Translated {
    Body(Bytes),
    Error(ApiError),
}

/// Waits until a spend event is in the journal: an answer is sent only once its spend log cannot be lost.
async fn journaled(ack: spendgate_store::Ack, request_id: Uuid) {
    if !ack.await {
        tracing::error!(request_id = %request_id, "A spend event arrived after the writer stopped; it was not recorded.");
    }
}
