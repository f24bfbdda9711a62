//! The HTTP handlers of the client-facing API: OpenAI's chat completions, embeddings and Responses, and
//! Anthropic's Messages. Thin: each step is a function named for what it does; forwarding is in `forward.rs`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use spendgate_core::Attribution;
use uuid::Uuid;

use crate::error::{ApiError, Cause};
use crate::forward::{error_shape, forward, Prepared};
use crate::keys::KeyCheck;
use crate::meter::Meter;
use crate::protocol::extent::Extent;
use crate::protocol::{format_of, RequestHead};
use crate::provider::Endpoint;
use crate::refusals::Door;
use crate::translate::Translation;
use crate::Gateway;
use spendgate_core::RefusalReason;

/// The header that tags a request with a workflow.
pub const WORKFLOW_HEADER: &str = "x-spendgate-workflow";
/// The header every proxied response carries: the id of its spend log.
pub const REQUEST_ID_HEADER: &str = "x-spendgate-request-id";

/// Anthropic's protocol headers that are passed on to the upstream (never credentials).
const ANTHROPIC_HEADERS: [&str; 2] = ["anthropic-version", "anthropic-beta"];

/// The client-facing API: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/responses`,
/// `/v1/messages`, Google's `/v1beta/models/{model}:generateContent` (metered); `/v1/messages/count_tokens`,
/// `/v1/moderations` (free, passed through); `/v1/models`.
pub fn router(gateway: Arc<Gateway>) -> Router {
    use crate::unrouted::method_not_allowed as other;
    Router::new()
        .route(
            "/v1/chat/completions",
            post(chat_completions).fallback(other),
        )
        .route("/v1/embeddings", post(embeddings).fallback(other))
        .route("/v1/responses", post(responses).fallback(other))
        .route("/v1/messages", post(messages).fallback(other))
        .route("/v1/completions", post(completions).fallback(other))
        .route(
            "/v1/messages/count_tokens",
            post(count_tokens).fallback(other),
        )
        .route("/v1/moderations", post(moderations).fallback(other))
        .route("/v1/models", get(crate::models::list).fallback(other))
        .route("/v1/models/{*id}", get(crate::models::get).fallback(other))
        // Google's own route (`{model}:generateContent`), for clients of Google's SDKs.
        .route(
            "/v1beta/models/{target}",
            post(crate::gemini_route::generate).fallback(other),
        )
        // Inside the header limit: the cache reads headers only once they passed it.
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&gateway),
            crate::cache::layer,
        ))
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

async fn responses(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    handle(gw, Endpoint::Responses, req).await
}

async fn messages(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    handle(gw, Endpoint::Messages, req).await
}

async fn completions(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    handle(gw, Endpoint::Completions, req).await
}

async fn count_tokens(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    crate::free::pass(gw, Endpoint::CountTokens, req).await
}

async fn moderations(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    crate::free::pass(gw, Endpoint::Moderations, req).await
}

async fn handle(gw: Arc<Gateway>, endpoint: Endpoint, req: Request) -> Response {
    let mut door = Door::default();
    let prepared = prepare(&gw, endpoint, req, &mut door).await;
    run(gw, endpoint, prepared, &door).await
}

/// Forwards a prepared request, or records and answers its refusal.
pub(crate) async fn run(
    gw: Arc<Gateway>,
    endpoint: Endpoint,
    prepared: Result<Prepared, ApiError>,
    door: &Door,
) -> Response {
    match prepared {
        Ok(prepared) => {
            // Forward in a task of its own: if the client hangs up, the handler is dropped but the task runs on,
            // so the upstream's answer (which the provider bills) is still recorded.
            let task = tokio::spawn(forward(gw, prepared));
            match task.await {
                Ok(res) => res,
                Err(_) => ApiError::internal("the request failed inside the gateway")
                    .shaped(error_shape(endpoint))
                    .into_response(),
            }
        }
        Err(e) => {
            gw.refuse(&e, endpoint.as_str(), door).await;
            e.shaped(error_shape(endpoint)).into_response()
        }
    }
}

/// The virtual key of a request: `Authorization: Bearer <key>` (OpenAI SDKs) or `x-api-key: <key>` (Anthropic
/// SDKs), on every route.
fn key_of(headers: &HeaderMap) -> Result<&str, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::invalid_key(
                    "malformed Authorization header",
                    "The Authorization header must be 'Bearer <virtual key>'.",
                )
            });
    }
    match headers.get("x-api-key") {
        Some(value) => value.to_str().map(str::trim).map_err(|_| {
            ApiError::invalid_key(
                "malformed x-api-key header",
                "The x-api-key header must be a spendgate virtual key.",
            )
        }),
        None => Err(ApiError::invalid_key(
            "no key sent",
            "No API key was sent. Send a spendgate virtual key as 'Authorization: Bearer sk-sg-...' or as \
             'x-api-key: sk-sg-...'.",
        )),
    }
}

pub(crate) async fn authenticate(
    gw: &Gateway,
    headers: &HeaderMap,
) -> Result<Arc<spendgate_store::KeyRecord>, ApiError> {
    check_key(gw, key_of(headers)?).await
}

/// The key record of a virtual key's secret, or the 401 (or 503) that says why it cannot be used.
pub(crate) async fn check_key(
    gw: &Gateway,
    secret: &str,
) -> Result<Arc<spendgate_store::KeyRecord>, ApiError> {
    match gw.keys.authenticate(secret).await {
        Ok(KeyCheck::Active(k)) => Ok(k),
        // The key itself is never echoed back or logged; its state is, so that its holder knows what to ask for.
        Ok(KeyCheck::Revoked { at_ms, key }) => Err(unusable_key(
            RefusalReason::Revoked,
            key,
            format!("revoked on {}", spendgate_core::time::to_rfc3339(at_ms)),
        )),
        Ok(KeyCheck::Expired { at_ms, key }) => Err(unusable_key(
            RefusalReason::Expired,
            key,
            format!("expired on {}", spendgate_core::time::to_rfc3339(at_ms)),
        )),
        Ok(KeyCheck::Unknown) => Err(ApiError::invalid_key(
            "unknown key",
            "The API key is not valid for this gateway (a rotated key's old secret is not either). Ask an operator \
             for a virtual key (spendgate keys create).",
        )),
        Err(e) => {
            tracing::error!(error = %e, "Looking up a virtual key failed.");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "key_store_unavailable",
                "The gateway could not check the API key right now; retry shortly.",
            )
            .refusing(RefusalReason::Unavailable, "the key store could not be read"))
        }
    }
}

/// A key that exists but may not be used (revoked, expired): a 401 that says since when, recorded against the
/// key's owner.
fn unusable_key(
    reason: RefusalReason,
    key: Arc<spendgate_store::KeyRecord>,
    state: String,
) -> ApiError {
    let message = format!(
        "This API key was {state}. Ask an operator for a new virtual key (spendgate keys create)."
    );
    let detail = format!("key {state}");
    ApiError::invalid_key(&detail, message).because(Cause {
        key: Some(key),
        ..Cause::new(reason, detail)
    })
}

/// The workflow a request is recorded under (its label, or `(other)` past `limits.max_workflows`), from its
/// `x-spendgate-workflow` header; `None` without one.
pub(crate) fn workflow_of(
    gw: &Gateway,
    headers: &HeaderMap,
) -> Result<Option<crate::workflows::Admitted>, ApiError> {
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
    Ok(Some(gw.workflows.admit(s.trim().to_string())))
}

/// The attribution of a request by `key` with this workflow.
pub(crate) fn attribution(
    key: &spendgate_store::KeyRecord,
    workflow: Option<crate::workflows::Admitted>,
) -> Attribution {
    let (workflow, workflow_requested) = match workflow.map(crate::workflows::Admitted::into_parts)
    {
        Some((recorded, asked)) => (Some(recorded), asked),
        None => (None, None),
    };
    Attribution {
        key_id: key.id,
        user: key.user.clone(),
        team: key.team.clone(),
        workflow,
        workflow_requested,
    }
}

pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
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

/// The head of a JSON request body, or a 400 that says why it is not one.
pub(crate) fn parse_head(body: &[u8]) -> Result<RequestHead, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_request(
            "invalid_json",
            format!("The request body is not valid JSON for this endpoint: {e}."),
        )
    })
}

/// Anthropic's protocol headers of the client's request, to pass on upstream.
pub(crate) fn anthropic_headers(headers: &HeaderMap) -> Vec<(&'static str, String)> {
    ANTHROPIC_HEADERS
        .iter()
        .filter_map(|&h| Some((h, headers.get(h)?.to_str().ok()?.to_string())))
        .collect()
}

/// Whether the gateway asks the upstream for stream usage that the client did not ask for (and so takes it out of
/// the answer again).
fn asks_usage_for_client(head: &RequestHead, endpoint: Endpoint) -> bool {
    format_of(endpoint).usage_on_request()
        && endpoint.can_stream()
        && head.wants_stream()
        && !head.asked_for_usage()
}

/// Rewrites the body when the upstream needs something the client did not send: usage in streams, or another
/// model name. Otherwise the client's bytes go upstream untouched.
pub(crate) fn upstream_body(
    body: Bytes,
    head: &RequestHead,
    endpoint: Endpoint,
    upstream_model: &str,
) -> Result<Bytes, ApiError> {
    let needs_usage = asks_usage_for_client(head, endpoint);
    // Gemini and Converse name the model in the URL (`UpstreamRequest::model`), never in the body.
    let renamed = endpoint.model_in_body() && head.model.as_deref() != Some(upstream_model);
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

/// Everything a request needs before it is forwarded, checked in order; `door` learns the key and the model as
/// they are known, for the record of a refusal.
async fn prepare(
    gw: &Arc<Gateway>,
    endpoint: Endpoint,
    req: Request,
    door: &mut Door,
) -> Result<Prepared, ApiError> {
    let (parts, body) = req.into_parts();
    let key = authenticate(gw, &parts.headers).await?;
    door.key = Some(Arc::clone(&key));
    let intake = Intake::read(gw, (endpoint, parts, key), body, parse_head).await?;
    prepare_intake(gw, intake, door).await
}

/// A request as it arrived, authenticated and read: what every route hands to [`prepare_intake`].
pub(crate) struct Intake {
    /// The API the client called.
    pub endpoint: Endpoint,
    pub parts: axum::http::request::Parts,
    pub key: Arc<spendgate_store::KeyRecord>,
    pub workflow: Option<crate::workflows::Admitted>,
    pub started: Instant,
    pub started_at_ms: i64,
    pub body: Bytes,
    /// The body's head; for Gemini's route, built from its URL and `generationConfig`.
    pub head: RequestHead,
}

impl Intake {
    /// Reads the body of an authenticated request (`who`: the API it called, its head, its key) under the size
    /// limit, and its head with `head`.
    pub(crate) async fn read(
        gw: &Gateway,
        who: (
            Endpoint,
            axum::http::request::Parts,
            Arc<spendgate_store::KeyRecord>,
        ),
        body: Body,
        head: impl FnOnce(&[u8]) -> Result<RequestHead, ApiError>,
    ) -> Result<Intake, ApiError> {
        let (endpoint, parts, key) = who;
        let workflow = workflow_of(gw, &parts.headers)?;
        let started = Instant::now();
        let started_at_ms = spendgate_core::time::now_ms();
        let body = read_body(body, gw.limits.max_body_bytes).await?;
        let head = head(&body)?;
        Ok(Intake {
            endpoint,
            parts,
            key,
            workflow,
            started,
            started_at_ms,
            body,
            head,
        })
    }
}

/// Routes, translates, admits and reserves a read request (`Intake`).
pub(crate) async fn prepare_intake(
    gw: &Arc<Gateway>,
    intake: Intake,
    door: &mut Door,
) -> Result<Prepared, ApiError> {
    let Intake {
        endpoint,
        parts,
        key,
        workflow,
        body,
        head,
        ..
    } = intake;
    let (started, started_at_ms) = (intake.started, intake.started_at_ms);
    let model = head
        .model
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::invalid_request("missing_model", "The request must name a 'model'.")
        })?;
    door.model = Some(model.clone());
    let route = gw
        .routes
        .current()
        .get(&model)
        .ok_or_else(|| ApiError::model_not_found(&model))?;
    // `openai/gpt-4o-mini` is recorded as the model it names, so that both spellings add up as one.
    let model = route.model.to_string();
    let (first, translation) = target_for(&route, endpoint, &head).ok_or_else(|| {
            ApiError::invalid_request(
                "unsupported_api",
                format!(
                    "The model '{model}' is served by provider '{}', which does not speak the {} API. Call \
                     the route its provider speaks, or ask an operator to route the model to a provider that \
                     speaks this one.",
                    route.first().provider_name,
                    endpoint.as_str()
                ),
            )
        })?;
    // A request in the other API is what goes upstream from here on; holds and limits still read the client's.
    let wire_endpoint = translation.map_or(endpoint, |t| t.upstream);
    let (wire_body, wire_head) = match translation {
        Some(t) => {
            let beta = parts
                .headers
                .get("anthropic-beta")
                .and_then(|v| v.to_str().ok())
                .filter(|_| endpoint.is_anthropic());
            let b =
                t.request_with_betas(&body, crate::translate::max_tokens_for(&first.price), beta)?;
            let h = parse_head(&b)?;
            (b, Some(h))
        }
        None => (body.clone(), None),
    };
    let stream = head.wants_stream() && endpoint.can_stream();
    let request_bytes = body.len();
    // Hashed before the body is rewritten for the upstream, so it is what the client really sent.
    let fingerprint = Some(spendgate_core::anomaly::fingerprint(
        endpoint.as_str(),
        &body,
    ));
    let first_body = upstream_body(
        wire_body.clone(),
        wire_head.as_ref().unwrap_or(&head),
        wire_endpoint,
        &first.upstream_model,
    )?;
    let cover = gw.controls.rate_cover(key.id, key.team.as_deref());
    // The body's extent (a scan of it) is read once, and only when a tokens-a-minute limit or a budget or wallet
    // needs it.
    let extent = if cover == crate::controls::RateCover::Tokens || gw.controls.has_any() {
        Extent::of(&body, endpoint == Endpoint::Responses)
    } else {
        Extent::default()
    };
    let rate = admit(
        gw,
        &key,
        cover,
        (&head, endpoint, &route),
        body.len(),
        extent,
    )
    .await?;
    let slot = if stream {
        let max = gw.limits.max_streams_per_key;
        Some(gw.streams.take(key.id, max).ok_or_else(|| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "too_many_streams",
                format!("This key already has {max} streams open; wait for one to end, or ask an operator to raise limits.max_streams_per_key."),
            )
            .refusing(RefusalReason::StreamLimit, format!("key already has {max} streams open"))
        })?)
    } else {
        None
    };
    let hold = reserve(gw, &key, &head, endpoint, &route, &body, extent).await?;
    // Passed on to attempts in Anthropic's API (`forward`).
    let headers = if endpoint.is_anthropic() {
        anthropic_headers(&parts.headers)
    } else {
        Vec::new()
    };
    // For attempts in the client's API; a translated stream is rebuilt for the client, with the usage chunk only
    // if it asked for it.
    let strip_usage = asks_usage_for_client(&head, endpoint);
    let include_usage = head.asked_for_usage();
    let meter = Meter {
        id: Uuid::now_v7(),
        writer: gw.writer.clone(),
        stats: Arc::clone(&gw.stats),
        gateway: Arc::clone(&gw.name),
        provider: Arc::clone(&first.provider_name),
        model,
        endpoint,
        upstream_api: translation.map(|t| t.upstream),
        stream,
        attribution: attribution(&key, workflow),
        price: Arc::clone(&first.price),
        confidence: first.confidence,
        started_at_ms,
        started,
        request_bytes,
        fingerprint,
        hold,
        rate,
        failed_attempts: Vec::new(),
        cache: parts
            .extensions
            .get::<crate::cache::Ticket>()
            .cloned()
            .unwrap_or_default(),
    };
    Ok(Prepared {
        meter,
        endpoint,
        translation,
        include_usage,
        head: wire_head.unwrap_or(head),
        client_body: body,
        body: wire_body,
        first_body,
        stream,
        headers,
        strip_usage,
        route,
        slot,
    })
}

/// The target a request starts with, and whether it is translated: the route's first target it can reach
/// ([`reach`]). The route's order is the operator's preference, so a first target reached by translation goes
/// before a later one that needs none. The attempts that follow take the route's other reachable targets in
/// order, each in its own API (`forward`), so a fallback may be another API's provider (Anthropic, then Bedrock).
fn target_for<'r>(
    route: &'r crate::routes::Route,
    endpoint: Endpoint,
    head: &RequestHead,
) -> Option<(&'r crate::routes::Target, Option<Translation>)> {
    let include_usage = head.asked_for_usage();
    route
        .targets
        .iter()
        .find_map(|t| reach(t, endpoint, include_usage).map(|tr| (t, tr)))
}

/// How a request to `endpoint` reaches `target`: in the client's API (`Some(None)`), translated into the first API
/// its provider speaks of those the client's translates into (`Some(Some(..))`: the other client API, then the
/// APIs reached through Messages, `translate::counterparts`), or not at all (`None`).
pub(crate) fn reach(
    target: &crate::routes::Target,
    endpoint: Endpoint,
    include_usage: bool,
) -> Option<Option<Translation>> {
    let upstream = crate::translate::upstream_for(endpoint, |e| target.provider.speaks(e))?;
    Some((upstream != endpoint).then_some(Translation {
        client: endpoint,
        upstream,
        include_usage,
    }))
}

/// The output tokens a request may be billed for on a model with `price`: `n` (or `best_of`) completions of its
/// output limit, else of the model's output cap, else of the configured default; none for embeddings.
fn output_limit(
    gw: &Gateway,
    head: &RequestHead,
    endpoint: Endpoint,
    price: &spendgate_core::ModelPrice,
) -> u64 {
    match endpoint {
        Endpoint::Embeddings => 0,
        _ => head
            .max_output()
            .or(price.max_output_tokens.filter(|m| *m > 0))
            .unwrap_or(gw.controls.config().default_max_output_tokens)
            .saturating_mul(head.completions()),
    }
}

/// Counts the request against the rate limits of its key and team, or refuses it with 429 and `Retry-After`. A
/// tokens-a-minute limit counts what the request may use at the largest of its route's targets: its prompt
/// estimated at four bytes a token (images and the tools' prompt as its extent counts them, at most the model's
/// context window) plus its output limit; the count is corrected to the reported usage when the request ends.
async fn admit(
    gw: &Gateway,
    key: &spendgate_store::KeyRecord,
    cover: crate::controls::RateCover,
    (head, endpoint, route): (&RequestHead, Endpoint, &crate::routes::Route),
    body_len: usize,
    extent: Extent,
) -> Result<crate::controls::RateHold, ApiError> {
    use crate::controls::RateCover;
    if cover == RateCover::None {
        return Ok(crate::controls::RateHold::none());
    }
    let mut tokens = 0;
    if cover == RateCover::Tokens {
        let prompt = spendgate_core::usage::estimate_tokens(body_len);
        for t in &route.targets {
            // Input the body only points at counts at the context window, or at the body's estimate without one.
            let input = extent
                .input_tokens(prompt, t.price.context_window)
                .unwrap_or(prompt);
            tokens = tokens.max(input.saturating_add(output_limit(gw, head, endpoint, &t.price)));
        }
    }
    gw.controls
        .admit(key.id, key.team.as_deref(), tokens)
        .await
        .map_err(|r| {
            gw.stats.refuse_rate_limit();
            let kind = match r.measure {
                spendgate_store::replicas::RateMeasure::Requests => "requests",
                spendgate_store::replicas::RateMeasure::Tokens => "tokens",
            };
            // Recorded as a refusal with the limit's own words, like a budget's.
            let cause = Cause::new(RefusalReason::RateLimit, r.description.clone());
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                kind,
                "rate_limit_exceeded",
                r.description,
            )
            .because(cause);
            e.retry_after = r.retry_after_secs;
            e
        })
}

/// Holds the request's worst-case cost against budgets and wallets, so that a hard limit or a wallet holds
/// whatever the request's shape (`protocol::extent`): the prompt at one token per byte of the body, plus every
/// image at the most an image can cost and the tools' system prompt, bounded by the model's context window; the
/// answer at `n` (or `best_of`) completions of `max_tokens` (or its newer names), else of the model's output cap,
/// else of the configured default. A prompt written to the cache may be billed above the input price, so the
/// dearer of the two is held. A route with fallbacks holds the cost at its dearest target, since any of them may
/// answer. A request whose input the body only points at (`previous_response_id`, a file id, a server-side
/// search) on a model with no known context window cannot be bounded: under a hard budget or a wallet it is
/// refused rather than risked.
async fn reserve(
    gw: &Gateway,
    key: &spendgate_store::KeyRecord,
    head: &RequestHead,
    endpoint: Endpoint,
    route: &crate::routes::Route,
    body: &[u8],
    extent: Extent,
) -> Result<crate::controls::Hold, ApiError> {
    if !gw.controls.has_any() {
        return Ok(crate::controls::Hold::none());
    }
    let worst = |price: &spendgate_core::ModelPrice| -> Option<spendgate_core::Money> {
        let input = extent.input_tokens(body.len() as u64, price.context_window)?;
        let output = output_limit(gw, head, endpoint, price);
        let usage = spendgate_core::Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            ..spendgate_core::Usage::default()
        };
        let written = spendgate_core::Usage {
            cache_write_tokens: usage.input_tokens,
            ..usage
        };
        Some(price.price(&usage).cost.max(price.price(&written).cost))
    };
    let mut estimate = spendgate_core::Money::ZERO;
    for t in &route.targets {
        match worst(&t.price) {
            Some(cost) => estimate = estimate.max(cost),
            None => {
                if gw
                    .controls
                    .hard_limited(key.id, &key.user, key.team.as_deref())
                    || gw
                        .controls
                        .pays_from_wallet(key.id, &key.user, key.team.as_deref())
                {
                    return Err(ApiError::invalid_request(
                        "unbounded_request",
                        format!(
                            "This request's input is not all in its body ({}), and the model '{}' has no context \
                             window in the pricing catalog, so its cost cannot be bounded before it is sent; a hard \
                             budget or a wallet covers this key, so it is refused rather than risked. Send the \
                             input itself, or ask an operator to set context_window for the model's price.",
                            extent.unbounded_input.unwrap_or("input by reference"),
                            t.upstream_model
                        ),
                    ));
                }
                // Nothing hard is at stake: soft budgets count the request when its bill arrives.
            }
        }
    }
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
                budget_id,
                detail,
            } => {
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "budget_exceeded",
                    "budget_exceeded",
                    description,
                )
                .because(Cause {
                    budget_id: Some(budget_id),
                    ..Cause::new(RefusalReason::Budget, detail)
                });
                e.retry_after = Some(retry_after_secs);
                e
            }
            crate::controls::Refusal::Funds {
                description,
                wallet_id,
                detail,
            } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_funds",
                "insufficient_funds",
                description,
            )
            .because(Cause {
                wallet_id,
                ..Cause::new(RefusalReason::Wallet, detail)
            }),
        })
}
