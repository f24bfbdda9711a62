//! The cache as a layer around the proxy routes: bypass, look up, answer a hit, or send a miss on with a ticket.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use spendgate_core::{CacheOutcome, Money, RequestStatus, SpendEvent, Usage, UsageSource};
use spendgate_store::KeyRecord;
use uuid::Uuid;

use super::{CacheKey, CachedAnswer, Ticket, CACHE_HEADER};
use crate::provider::Endpoint;
use crate::proxy::{attribution, authenticate, read_body, workflow_of, REQUEST_ID_HEADER};
use crate::refusals::Door;
use crate::Gateway;

/// The routes whose answers may be cached; everything else passes through untouched (and is `not_cacheable`).
fn cacheable(path: &str) -> Option<Endpoint> {
    match path {
        "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
        "/v1/embeddings" => Some(Endpoint::Embeddings),
        _ => None,
    }
}

/// `x-spendgate-cache: bypass`, or `Cache-Control: no-cache` / `no-store` as HTTP clients say it.
fn wants_bypass(headers: &HeaderMap) -> bool {
    let has = |name: &str, word: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(word))
            })
        })
    };
    has(CACHE_HEADER, "bypass")
        || has("cache-control", "no-cache")
        || has("cache-control", "no-store")
}

fn tagged(mut res: Response, what: &'static str) -> Response {
    res.headers_mut()
        .insert(CACHE_HEADER, HeaderValue::from_static(what));
    res
}

pub async fn layer(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let Some(cache) = gw.cache.clone() else {
        return next.run(req).await;
    };
    let Some(endpoint) = cacheable(req.uri().path()) else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    if wants_bypass(&parts.headers) {
        parts.extensions.insert(Ticket::bypass());
        return tagged(next.run(Request::from_parts(parts, body)).await, "bypass");
    }
    // The key is checked before the cache is read, so a bad key never gets a cached answer. A refusal is left
    // to the handler, which words it.
    let Ok(key) = authenticate(&gw, &parts.headers).await else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let started = Instant::now();
    let started_at_ms = spendgate_core::time::now_ms();
    let body = match read_body(body, gw.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            let door = Door {
                key: Some(Arc::clone(&key)),
                model: None,
            };
            gw.refuse(&e, endpoint.as_str(), &door).await;
            return e.into_response();
        }
    };
    // A body that is not a JSON object is the handler's to refuse.
    let parsed = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .filter(serde_json::Value::is_object);
    let Some(parsed) = parsed else {
        return next.run(Request::from_parts(parts, Body::from(body))).await;
    };
    let cache_key = CacheKey::of(cache.config.scope, &key, endpoint, &parsed);
    if let Some(answer) = cache.store.get(&cache_key).await {
        let hit = Hit {
            key: &key,
            endpoint,
            body: &body,
            parsed: &parsed,
            started,
            started_at_ms,
        };
        if let Some(res) = hit.answer(&gw, &parts.headers, &answer).await {
            return res;
        }
    }
    let stream = endpoint == Endpoint::ChatCompletions
        && parsed.get("stream").and_then(serde_json::Value::as_bool) == Some(true);
    let ticket = Ticket::fill(Arc::clone(&cache), cache_key, stream);
    parts.extensions.insert(ticket.clone());
    let res = next.run(Request::from_parts(parts, Body::from(body))).await;
    if res.status() != StatusCode::OK {
        ticket.refuse();
    }
    tagged(res, "miss")
}

/// A request the cache can answer.
struct Hit<'a> {
    key: &'a KeyRecord,
    endpoint: Endpoint,
    body: &'a [u8],
    parsed: &'a serde_json::Value,
    started: Instant,
    started_at_ms: i64,
}

impl Hit<'_> {
    /// Records the hit and answers it with the stored bytes. `None` when the model is no longer routed (the
    /// handler then refuses the request as it would any other).
    async fn answer(
        &self,
        gw: &Gateway,
        headers: &HeaderMap,
        answer: &CachedAnswer,
    ) -> Option<Response> {
        let model = self.parsed.get("model")?.as_str()?;
        let route = gw.routes.current().get(model)?;
        // Priced as the target that answered, if the route still has it.
        let target = route
            .targets
            .iter()
            .find(|t| *t.provider_name == *answer.provider)
            .unwrap_or(route.first());
        let workflow = match workflow_of(gw, headers) {
            Ok(w) => w,
            Err(e) => {
                let door = Door {
                    key: Some(Arc::new(self.key.clone())),
                    model: Some(model.to_string()),
                };
                gw.refuse(&e, self.endpoint.as_str(), &door).await;
                return Some(e.into_response());
            }
        };
        let id = Uuid::now_v7();
        let latency = self.started.elapsed();
        gw.stats.observe(latency, false);
        let avoided = target.price.price(&answer.usage).cost;
        gw.stats.usage.record(
            self.key.team.as_deref(),
            &target.provider_name,
            &route.model,
            &Usage::default(),
            crate::usage_stats::Amounts {
                cost: Money::ZERO,
                avoided_cost: avoided,
                error: false,
            },
        );
        // The hit itself is free: no tokens billed, no wallet charged, no budget spent. What it saved is the
        // stored answer's usage at today's price.
        let event = SpendEvent {
            id,
            started_at_ms: self.started_at_ms,
            finished_at_ms: spendgate_core::time::now_ms(),
            latency_ms: u32::try_from(latency.as_millis()).unwrap_or(u32::MAX),
            gateway: gw.name.to_string(),
            provider: target.provider_name.to_string(),
            model: route.model.to_string(),
            endpoint: self.endpoint.as_str().to_string(),
            stream: answer.stream,
            attribution: attribution(self.key, workflow),
            cache_outcome: CacheOutcome::Hit,
            status: RequestStatus::Ok,
            http_status: 200,
            usage: Usage::default(),
            usage_source: UsageSource::Reported,
            cost: Money::ZERO,
            price_confidence: target.confidence,
            price_lines: Vec::new(),
            error: None,
            wallet_id: None,
            fingerprint: Some(spendgate_core::anomaly::fingerprint(
                self.endpoint.as_str(),
                self.body,
            )),
            leases: Vec::new(),
            // No upstream call was made.
            attempts: 0,
            failed_attempts: Vec::new(),
            avoided_cost: avoided,
            upstream_api: None,
        };
        // As for any answer: it is sent only once its spend log cannot be lost.
        if !gw.writer.record(event).await {
            tracing::error!(request_id = %id, "A cache hit arrived after the writer stopped; it was not recorded.");
        }
        let mut res = Response::new(Body::from(answer.body.clone()));
        *res.status_mut() = StatusCode::OK;
        let h = res.headers_mut();
        let content_type = if answer.stream {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            "text/event-stream"
        } else {
            "application/json"
        };
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
            h.insert(REQUEST_ID_HEADER, v);
        }
        Some(tagged(res, "hit"))
    }
}
