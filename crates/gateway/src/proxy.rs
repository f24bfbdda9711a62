//! The HTTP handlers of the OpenAI-compatible API. Thin: each step is a function named for what it does.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use spendgate_core::{Attribution, RequestStatus};
use uuid::Uuid;

use crate::error::ApiError;
use crate::meter::{Meter, MeteredStream, Outcome};
use crate::protocol::{usage_of_body, RequestHead};
use crate::provider::{Endpoint, ProviderError, UpstreamBody, UpstreamRequest};
use crate::providers::MockProvider;
use crate::Gateway;

/// The header that tags a request with a workflow.
pub const WORKFLOW_HEADER: &str = "x-spendgate-workflow";
/// The header every proxied response carries: the id of its spend log.
pub const REQUEST_ID_HEADER: &str = "x-spendgate-request-id";

/// The client-facing API: `/v1/chat/completions`, `/v1/embeddings`, `/v1/models`.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&gateway),
            crate::limits::header_limit,
        ))
        .with_state(gateway)
}

async fn chat_completions(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    handle(gw, Endpoint::ChatCompletions, req).await
}

async fn embeddings(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    handle(gw, Endpoint::Embeddings, req).await
}

async fn models(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Err(e) = authenticate(&gw, &headers).await {
        gw.stats.reject();
        return e.into_response();
    }
    let data: Vec<_> = gw
        .routes
        .list()
        .into_iter()
        .map(|(id, owner)| serde_json::json!({ "id": id, "object": "model", "created": 0, "owned_by": owner }))
        .collect();
    axum::Json(serde_json::json!({ "object": "list", "data": data })).into_response()
}

async fn handle(gw: Arc<Gateway>, endpoint: Endpoint, req: Request) -> Response {
    match prepare(&gw, endpoint, req).await {
        Ok(prepared) => {
            // Forward in a task of its own: if the client hangs up, the handler is dropped but the task runs on,
            // so the upstream's answer (which the provider bills) is still recorded.
            let task = tokio::spawn(forward(gw, prepared));
            match task.await {
                Ok(res) => res,
                Err(_) => {
                    ApiError::internal("the request failed inside the gateway").into_response()
                }
            }
        }
        Err(e) => {
            gw.stats.reject();
            e.into_response()
        }
    }
}

/// A request that passed every check and is ready to go upstream.
struct Prepared {
    meter: Meter,
    upstream: UpstreamRequest,
    route: Arc<crate::routes::Route>,
    /// Held while a stream is open, so one key cannot open more than its share.
    slot: Option<crate::limits::StreamSlot>,
}

async fn authenticate(
    gw: &Gateway,
    headers: &HeaderMap,
) -> Result<Arc<spendgate_store::KeyRecord>, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::invalid_key("No API key was sent. Send a spendgate virtual key as 'Authorization: Bearer sk-sg-...'."))?;
    let secret = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::invalid_key("The Authorization header must be 'Bearer <virtual key>'.")
        })?;
    match gw.keys.authenticate(secret).await {
        Ok(Some(k)) => Ok(k),
        // The key itself is never echoed back or logged.
        Ok(None) => Err(ApiError::invalid_key(
            "The API key is not valid for this gateway. Ask an operator for a virtual key (spendgate keys create).",
        )),
        Err(e) => {
            tracing::error!(error = %e, "Looking up a virtual key failed.");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "key_store_unavailable",
                "The gateway could not check the API key right now; retry shortly.",
            ))
        }
    }
}

fn workflow_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(WORKFLOW_HEADER) else {
        return Ok(None);
    };
    let s = v.to_str().map_err(|_| {
        ApiError::invalid_request(
            "invalid_workflow",
            format!("The {WORKFLOW_HEADER} header must be text."),
        )
    })?;
    spendgate_core::validate_name("workflow", s.trim()).map_err(|m| {
        ApiError::invalid_request(
            "invalid_workflow",
            format!("The {WORKFLOW_HEADER} header is not valid: {m}."),
        )
    })?;
    Ok(Some(s.trim().to_string()))
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::too_large(limit)
        } else {
            ApiError::invalid_request("unreadable_body", "The request body could not be read.")
        }
    })
}

/// Rewrites the body when the upstream needs something the client did not send: usage in streams, or another
/// model name. Otherwise the client's bytes go upstream untouched.
fn upstream_body(
    body: Bytes,
    head: &RequestHead,
    endpoint: Endpoint,
    upstream_model: &str,
) -> Result<Bytes, ApiError> {
    let needs_usage =
        endpoint == Endpoint::ChatCompletions && head.wants_stream() && !head.asked_for_usage();
    let renamed = head.model.as_deref() != Some(upstream_model);
    if !needs_usage && !renamed {
        return Ok(body);
    }
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&body).map_err(|_| {
            ApiError::invalid_request("invalid_json", "The request body must be a JSON object.")
        })?;
    if needs_usage {
        let opts = v
            .entry("stream_options")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(o) = opts.as_object_mut() {
            o.insert("include_usage".into(), serde_json::Value::Bool(true));
        }
    }
    if renamed {
        v.insert(
            "model".into(),
            serde_json::Value::String(upstream_model.to_string()),
        );
    }
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("could not encode the request: {e}")))
}

async fn prepare(
    gw: &Arc<Gateway>,
    endpoint: Endpoint,
    req: Request,
) -> Result<Prepared, ApiError> {
    let (parts, body) = req.into_parts();
    let key = authenticate(gw, &parts.headers).await?;
    let workflow = workflow_of(&parts.headers)?;
    let started = Instant::now();
    let started_at_ms = spendgate_core::time::now_ms();
    let body = read_body(body, gw.limits.max_body_bytes).await?;
    let head: RequestHead = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid_request(
            "invalid_json",
            format!("The request body is not valid JSON for this endpoint: {e}."),
        )
    })?;
    let model = head
        .model
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::invalid_request("missing_model", "The request must name a 'model'.")
        })?;
    let route = gw
        .routes
        .get(&model)
        .ok_or_else(|| ApiError::model_not_found(&model))?;
    let stream = head.wants_stream() && endpoint == Endpoint::ChatCompletions;
    let request_bytes = body.len();
    // Hashed before the body is rewritten for the upstream, so it is what the client really sent.
    let fingerprint = Some(spendgate_core::anomaly::fingerprint(
        endpoint.as_str(),
        &body,
    ));
    let upstream_body = upstream_body(body, &head, endpoint, &route.upstream_model)?;
    let slot = if stream {
        let max = gw.limits.max_streams_per_key;
        Some(gw.streams.take(key.id, max).ok_or_else(|| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "too_many_streams",
                format!("This key already has {max} streams open; wait for one to end, or ask an operator to raise limits.max_streams_per_key."),
            )
        })?)
    } else {
        None
    };
    let hold = reserve(gw, &key, &head, endpoint, &route, request_bytes).await?;
    let meter = Meter {
        id: Uuid::now_v7(),
        writer: gw.writer.clone(),
        stats: Arc::clone(&gw.stats),
        gateway: Arc::clone(&gw.name),
        provider: Arc::clone(&route.provider_name),
        model,
        endpoint,
        stream,
        attribution: Attribution {
            key_id: key.id,
            user: key.user.clone(),
            team: key.team.clone(),
            workflow,
        },
        price: Arc::clone(&route.price),
        confidence: route.confidence,
        started_at_ms,
        started,
        request_bytes,
        fingerprint,
        hold,
    };
    let upstream = UpstreamRequest {
        endpoint,
        model: route.upstream_model.clone(),
        stream,
        body: upstream_body,
    };
    Ok(Prepared {
        meter,
        upstream,
        route,
        slot,
    })
}

/// Holds the request's worst-case cost against budgets and wallets. The prompt is taken at one token per byte of
/// the body (no tokenizer makes more tokens than bytes of UTF-8 text, and the JSON around the messages covers
/// the per-message overhead), the answer at `max_tokens`, else the model's output cap, else the configured
/// default; so a hold is never smaller than the cost it stands for.
async fn reserve(
    gw: &Gateway,
    key: &spendgate_store::KeyRecord,
    head: &RequestHead,
    endpoint: Endpoint,
    route: &crate::routes::Route,
    request_bytes: usize,
) -> Result<crate::controls::Hold, ApiError> {
    let output = match endpoint {
        Endpoint::Embeddings => 0,
        Endpoint::ChatCompletions => head
            .max_output()
            .or(route.price.max_output_tokens.filter(|m| *m > 0))
            .unwrap_or(gw.controls.config().default_max_output_tokens),
    };
    let worst = spendgate_core::Usage {
        input_tokens: request_bytes as u64,
        output_tokens: output,
        cached_input_tokens: 0,
        cache_write_tokens: 0,
    };
    let estimate = route.price.price(&worst).cost;
    if gw.limits.fail_closed_for_hard_limits
        && gw.writer.stats().store_failing()
        && gw
            .controls
            .hard_limited(key.id, &key.user, key.team.as_deref())
    {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "store_unavailable",
            "The spend store is not taking writes right now and a hard budget covers this key, so the request is \
             refused rather than let through unaccounted (limits.fail_closed_for_hard_limits); retry shortly.",
        ));
    }
    gw.controls
        .reserve_leased(key.id, &key.user, key.team.as_deref(), estimate)
        .await
        .map_err(|r| match r {
            crate::controls::Refusal::Budget {
                description,
                retry_after_secs,
            } => {
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "budget_exceeded",
                    "budget_exceeded",
                    description,
                );
                e.retry_after = Some(retry_after_secs);
                e
            }
            crate::controls::Refusal::Funds { description } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_funds",
                "insufficient_funds",
                description,
            ),
        })
}

fn provider_error(e: &ProviderError) -> ApiError {
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

async fn forward(gw: Arc<Gateway>, p: Prepared) -> Response {
    let Prepared {
        meter,
        upstream,
        route,
        slot,
    } = p;
    let request_id = meter.id;
    let result = route.provider.send(upstream).await;
    let mut res = match result {
        Err(e) => {
            let err = provider_error(&e);
            tracing::warn!(request_id = %request_id, provider = %meter.provider, error = %e, "The upstream call failed.");
            let ack = meter.finish(Outcome {
                status: RequestStatus::UpstreamError,
                http_status: err.status.as_u16(),
                reported: None,
                counted_output_tokens: 0,
                error: Some(e.to_string()),
            });
            journaled(ack, request_id).await;
            err.into_response()
        }
        Ok(up) => {
            let status = StatusCode::from_u16(up.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = up.content_type.and_then(|c| HeaderValue::from_str(&c).ok());
            match up.body {
                UpstreamBody::Full(bytes) => {
                    let parsed = if status.is_success() {
                        Some(usage_of_body(&bytes))
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
                    let counted = spendgate_core::usage::estimate_tokens(content_bytes(&bytes));
                    let http_status = if matches!(parsed, Some(Err(_))) {
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
                    if matches!(parsed, Some(Err(_))) {
                        // Passing a broken body on would only move the failure into the client's JSON parser.
                        ApiError::upstream(
                            StatusCode::BAD_GATEWAY,
                            "upstream_bad_response",
                            "The provider answered with a body that is not valid JSON; retry the request.",
                        )
                        .into_response()
                    } else {
                        let mut r = Response::new(Body::from(bytes));
                        *r.status_mut() = status;
                        if let Some(ct) = content_type {
                            r.headers_mut().insert(header::CONTENT_TYPE, ct);
                        }
                        r
                    }
                }
                UpstreamBody::Stream(s) => {
                    let metered = MeteredStream::new(s, meter, gw.limits.max_stream_duration, slot);
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
    };
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    res
}

/// Waits until a spend event is in the journal: an answer is sent only once its spend log cannot be lost.
async fn journaled(ack: spendgate_store::Ack, request_id: Uuid) {
    if !ack.await {
        tracing::error!(request_id = %request_id, "A spend event arrived after the writer stopped; it was not recorded.");
    }
}

/// Bytes of `"content"` strings in a complete answer, to count output when no usage was sent.
fn content_bytes(body: &[u8]) -> usize {
    let mut s = crate::sse::UsageScanner::new();
    s.feed(b"data: ");
    s.feed(body);
    s.feed(b"\n");
    usize::try_from(s.estimated_output_tokens()).unwrap_or(0) * 4
}

/// A stand-alone mock upstream speaking the OpenAI API, for benchmarks and for trying a real
/// OpenAI-compatible provider configuration without a real provider.
pub fn mock_upstream_router(mock: Arc<MockProvider>) -> Router {
    async fn serve(mock: Arc<MockProvider>, endpoint: Endpoint, body: Bytes) -> Response {
        let head: RequestHead = match serde_json::from_slice(&body) {
            Ok(h) => h,
            Err(e) => {
                return ApiError::invalid_request("invalid_json", e.to_string()).into_response()
            }
        };
        let req = UpstreamRequest {
            endpoint,
            model: head.model.clone().unwrap_or_default(),
            stream: head.wants_stream(),
            body,
        };
        use crate::provider::Provider;
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
            Err(e) => ApiError::internal(e.to_string()).into_response(),
        }
    }
    let chat = Arc::clone(&mock);
    Router::new()
        .route(
            "/v1/chat/completions",
            post(move |b: Bytes| serve(Arc::clone(&chat), Endpoint::ChatCompletions, b)),
        )
        .route(
            "/v1/embeddings",
            post(move |b: Bytes| serve(Arc::clone(&mock), Endpoint::Embeddings, b)),
        )
}
