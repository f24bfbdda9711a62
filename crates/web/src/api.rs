//! The JSON API. Money is a decimal string of USD, times are RFC 3339.

use std::sync::Arc;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use spendgate_core::query::{format_share, GroupBy, GroupRow, SortBy, Totals};
use spendgate_core::time::to_rfc3339;

use spendgate_gateway::ApiError;
use spendgate_store::{StoreError, StoredSpendLog};

use crate::auth::{admin_only, authenticate};
use crate::openapi::{p, Access, ApiRouter, Op, Ty, EXPLORER_QUERY, FILTERS, FORMAT};
use crate::params::{parse_group_by, parse_sort, FilterParams};
use crate::AppState;

const SUMMARY: Op = Op::get(
    "/api/v1/usage/summary",
    "Totals for a window and filters: cost, requests, errors, tokens by kind, per-request averages, and `refused`: \
     the requests refused at the door (total, by reason, by team; null under filters refusals do not carry).",
    Access::Reader,
)
.query(FILTERS);
const EXPLORER: Op = Op::get(
    "/api/v1/usage/explorer",
    "Totals grouped by one dimension, with each group's share; the No team row included.",
    Access::Reader,
)
.query(FILTERS)
.also(EXPLORER_QUERY);
const EXPLORER_EXPORT: Op = Op::get(
    "/api/v1/usage/explorer/export",
    "The explorer as a CSV or JSON file.",
    Access::Reader,
)
.query(FILTERS)
.also(EXPLORER_QUERY)
.also(FORMAT)
.produces(EXPORTED);
const SPEND_LOGS: Op = Op::get(
    "/api/v1/spend-logs",
    "Spend logs matching the filters, newest first, paged by cursor.",
    Access::Reader,
)
.query(FILTERS)
.also(&[
    p("limit", Ty::Int(1, 1000), "Logs per page (default 50)."),
    p(
        "cursor",
        CURSOR,
        "next_cursor of the previous page (a position: time and sequence).",
    ),
]);
/// A spend-log cursor as `spendgate_store::sql::plan::cursor_of` writes it (the time is never negative).
pub(crate) const CURSOR: Ty = Ty::Pattern(r"^[0-9]{1,18}-[0-9]{1,18}$");
/// What an export answers: JSON by default, or CSV.
const EXPORTED: &[&str] = &["application/json", "text/csv"];
const SPEND_LOGS_EXPORT: Op = Op::get(
    "/api/v1/spend-logs/export",
    "Every spend log matching the filters as CSV or a JSON array, newest first, streamed.",
    Access::Reader,
)
.query(FILTERS)
.also(FORMAT)
.produces(EXPORTED);
const SPEND_LOG: Op = Op::get(
    "/api/v1/spend-logs/{id}",
    "One spend log with its price lines.",
    Access::Reader,
)
.id(Ty::Uuid)
.statuses(&[404]);
const PRICING: Op = Op::get(
    "/api/v1/pricing",
    "The pricing catalog in force, with each price's source.",
    Access::Admin,
);
const PRICING_RELOAD: Op = Op::post(
    "/api/v1/pricing/reload",
    "Reloads prices (the catalog, [pricing] overrides and includes, providers' prices) and routes from the \
     configuration file without a restart, as SIGHUP does; answers what changed. Requests already under way keep \
     their prices; past spend logs keep their bills. Recorded in the activity history with before and after.",
    Access::Admin,
)
.statuses(&[409]);
const STATUS: Op = Op::get(
    "/api/v1/status",
    "This replica: version, writer queue and gateway counters.",
    Access::Admin,
);
const GATEWAYS: Op = Op::get(
    "/api/v1/gateways",
    "Every replica sharing the store, from its heartbeats: status (ok, not_responding, stopped), version, uptime, \
     requests per minute, error rate, latency and queue.",
    Access::Admin,
);
const HEALTHZ: Op = Op::get("/healthz", "Liveness.", Access::Public);
const METRICS: Op = Op::get(
    "/metrics",
    "Prometheus text exposition: usage, cost, latency, queue, budgets and wallets.",
    Access::AdminOutsideDemo,
)
.produces(&["text/plain"]);
const OPENAPI: Op = Op::get("/api/openapi.json", "This document.", Access::Public);

pub fn router(state: Arc<AppState>) -> Router {
    // What a team viewer may read: usage and spend logs, confined to its team by the store.
    let readable = ApiRouter::default()
        .op(&SUMMARY, get(summary))
        .op(&EXPLORER, get(explorer))
        .op(&EXPLORER_EXPORT, get(explorer_export))
        .op(&SPEND_LOGS, get(spend_logs))
        .op(&SPEND_LOGS_EXPORT, get(spend_logs_export))
        .op(&SPEND_LOG, get(spend_log))
        .merge(crate::refusals_api::routes());
    let admin = ApiRouter::default()
        .merge(crate::keys_api::routes())
        .op(&PRICING, get(pricing))
        .op(&PRICING_RELOAD, post(reload_pricing))
        .op(&STATUS, get(status))
        .op(&GATEWAYS, get(gateways))
        .merge(crate::controls_api::routes())
        .merge(crate::rate_limits_api::routes())
        .merge(crate::insights_api::routes())
        .map(|r| r.route_layer(middleware::from_fn(admin_only)));
    let authed = readable.merge(admin).map(|r| {
        r.route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authenticate,
        ))
    });
    let (routes, ops) = ApiRouter::default()
        .op(&HEALTHZ, get(healthz))
        .op(&METRICS, get(crate::metrics::metrics))
        .merge(authed)
        .into_parts();
    // The document is built once from the same table as the router, with itself in it.
    let mut ops = ops;
    ops.push(&OPENAPI);
    let doc = Arc::new(crate::openapi::document(&ops, state.version));
    routes
        .route(
            OPENAPI.path,
            get(move || {
                let doc = Arc::clone(&doc);
                async move { Json((*doc).clone()) }
            }),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// What a replica's last heartbeat says about it: it said goodbye (`stopped`), it has not been heard from
/// within `stale_after_ms` (`not_responding`), or it is running (`ok`). `/overview` and `/api/v1/gateways` say
/// the same.
pub(crate) fn replica_status(
    b: &spendgate_store::replicas::GatewayBeat,
    now: i64,
    stale_after_ms: i64,
) -> &'static str {
    if b.stopped {
        "stopped"
    } else if now - b.last_seen_ms > stale_after_ms {
        "not_responding"
    } else {
        "ok"
    }
}

/// Every replica from its heartbeat, this one first and from its live counters (its own heartbeat may not
/// have been written yet, and is up to a heartbeat interval old).
async fn gateways(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let now = spendgate_core::time::now_ms();
    let beats = s.store.list_gateways().await.map_err(store_error)?;
    let g = s.gateway_stats.snapshot();
    let q = s.writer_stats.snapshot();
    let own = &*s.gateway_name;
    let mut out = vec![json!({
        "name": own,
        "this_replica": true,
        "status": "ok",
        "version": s.version,
        "started_at": to_rfc3339(g.started_at_ms),
        "last_seen": to_rfc3339(now),
        "requests_per_minute": beats.iter().find(|b| b.name == own).map(|b| b.requests_per_minute),
        "error_rate_bp": beats.iter().find(|b| b.name == own).map(|b| b.error_rate_bp),
        "latency_p50_ms": g.latency_percentile_ms(50),
        "latency_p95_ms": g.latency_percentile_ms(95),
        "queue_pending": q.pending,
        "queue_oldest_age_ms": q.oldest_pending_age_ms,
    })];
    out.extend(beats.iter().filter(|b| b.name != own).map(|b| {
        json!({
            "name": b.name,
            "this_replica": false,
            "status": replica_status(b, now, s.gateway_stale_after_ms),
            "version": b.version,
            "started_at": to_rfc3339(b.started_at_ms),
            "last_seen": to_rfc3339(b.last_seen_ms),
            "requests_per_minute": b.requests_per_minute,
            "error_rate_bp": b.error_rate_bp,
            "latency_p50_ms": b.latency_p50_ms,
            "latency_p95_ms": b.latency_p95_ms,
            "queue_pending": b.queue_pending,
            "queue_oldest_age_ms": b.queue_oldest_age_ms,
        })
    }));
    Ok(Json(json!({
        "evaluated_at": to_rfc3339(now),
        "stale_after_seconds": s.gateway_stale_after_ms / 1000,
        "gateways": out,
    })))
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Invalid(m) => ApiError::invalid_request("invalid_request", m),
        other => {
            tracing::error!(error = %other, "A store query failed.");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "store_unavailable",
                "The store could not answer right now; retry shortly.",
            )
        }
    }
}

/// A JSON body extractor whose rejections use the API's error shape.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rej) => Err(rejected("invalid_json", rej.status(), rej.body_text())),
        }
    }
}

/// Whole numbers in JSON bodies. The document types them as JSON Schema integers, and to JSON Schema `7.0` is the
/// integer 7: serde's integer types refuse it, so these read any number that is whole and in range.
pub(crate) mod whole {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};
    use serde_json::Number;

    /// `n` as an integer of type `T`, if it is a whole number that fits.
    fn of<T: TryFrom<i64>>(n: &Number) -> Option<T> {
        let i = match n.as_i64() {
            Some(i) => i,
            // Every float that is whole and below 2^63 in size converts to i64 exactly.
            None => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.223_372_036_854_775e18)
                .map(|f| f as i64)?,
        };
        T::try_from(i).ok()
    }

    fn one<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
        let n = Number::deserialize(d)?;
        of(&n).ok_or_else(|| D::Error::custom(format!("{n} is not a whole number in range")))
    }

    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        one(d)
    }

    /// An optional list of whole numbers (null or absent for none).
    pub fn u32_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u32>>, D::Error> {
        let Some(list) = Option::<Vec<Number>>::deserialize(d)? else {
            return Ok(None);
        };
        list.iter()
            .map(|n| {
                of(n).ok_or_else(|| D::Error::custom(format!("{n} is not a whole number in range")))
            })
            .collect::<Result<Vec<u32>, _>>()
            .map(Some)
    }
}

/// An extractor of the URL (`Checked<Path<T>>`, `Checked<Query<T>>`) whose rejections use the API's error shape
/// instead of axum's plain text.
pub struct Checked<E>(pub E);

/// What an axum rejection says: its status and its text.
pub trait Rejection {
    fn status(&self) -> StatusCode;
    fn body_text(&self) -> String;
    /// The error code in the API's answer.
    const CODE: &'static str;
}

impl Rejection for axum::extract::rejection::PathRejection {
    const CODE: &'static str = "invalid_path";
    fn status(&self) -> StatusCode {
        self.status()
    }
    fn body_text(&self) -> String {
        self.body_text()
    }
}

impl Rejection for axum::extract::rejection::QueryRejection {
    const CODE: &'static str = "invalid_query";
    fn status(&self) -> StatusCode {
        self.status()
    }
    fn body_text(&self) -> String {
        self.body_text()
    }
}

impl<S, E> axum::extract::FromRequestParts<S> for Checked<E>
where
    S: Send + Sync,
    E: axum::extract::FromRequestParts<S>,
    E::Rejection: Rejection,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match E::from_request_parts(parts, state).await {
            Ok(e) => Ok(Checked(e)),
            Err(rej) => Err(rejected(
                <E::Rejection as Rejection>::CODE,
                Rejection::status(&rej),
                Rejection::body_text(&rej),
            )),
        }
    }
}

/// An extractor's rejection in the API's error shape: a body over the limit is a 413, anything else the client's
/// mistake (400).
fn rejected(code: &'static str, status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            "invalid_request_error",
            "request_too_large",
            "The request body is larger than the admin API accepts (limits.max_admin_body_bytes); send a smaller \
             one.",
        );
    }
    ApiError::invalid_request(code, text)
}

/// The answer to a method an API route does not take, in the API's JSON error shape.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        format!(
            "{} does not take {method}; /api/openapi.json lists each route's methods.",
            uri.path()
        ),
    )
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn pricing(State(s): State<Arc<AppState>>) -> Json<Value> {
    let catalog = s.catalog();
    let models: Vec<_> = catalog
        .models()
        .iter()
        .map(|m| {
            json!({
                "provider": m.provider,
                "model": m.model,
                "aliases": m.aliases,
                "kind": m.kind,
                "input_per_mtok": m.input_per_mtok,
                "output_per_mtok": m.output_per_mtok,
                "cached_input_per_mtok": m.cached_input(),
                "cache_write_per_mtok": m.cache_write(),
                // The billing rules that apply on top of the standard rates, as the catalog writes them.
                "cache_write_1h_per_mtok": m.cache_write_1h_per_mtok,
                "audio_input_per_mtok": m.audio_input_per_mtok,
                "audio_output_per_mtok": m.audio_output_per_mtok,
                "web_search_per_1k_calls": m.web_search_per_1k_calls,
                "flex": m.flex,
                "priority": m.priority,
                "long_context": m.long_context,
                "max_output_tokens": m.max_output_tokens,
                "context_window": m.context_window,
                "source": m.source,
                "checked": m.checked,
            })
        })
        .collect();
    Json(json!({ "models": models }))
}

async fn reload_pricing(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let Some(reload) = s.reload_pricing.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "no_config_file",
            "This gateway was started without a configuration file, so there are no prices to reload; start it \
             with `spendgate serve --config FILE`.",
        ));
    };
    reload(crate::controls_api::actor(&headers))
        .await
        .map(Json)
        .map_err(|m| {
            ApiError::invalid_request(
                "reload_failed",
                format!("The prices were not reloaded (the ones in force stay): {m}"),
            )
        })
}

pub(crate) fn totals_json(t: &Totals) -> Value {
    json!({
        "cost": t.cost,
        "requests": t.requests,
        "errors": t.errors,
        "input_tokens": t.input_tokens,
        "output_tokens": t.output_tokens,
        "cached_input_tokens": t.cached_input_tokens,
        "cache_write_tokens": t.cache_write_tokens,
        "avoided_cost": t.avoided_cost,
        "tokens": t.tokens(),
        "avg_cost_per_request": t.cost_per_request(),
        "avg_tokens_per_request": t.tokens_per_request(),
    })
}

fn window_json(s: &AppState, f: &spendgate_core::Filters) -> Value {
    window_json_of(s.store.resolve_window(f))
}

pub(crate) fn window_json_of(w: spendgate_store::ResolvedWindow) -> Value {
    json!({ "from": to_rfc3339(w.from_ms), "to": to_rfc3339(w.to_ms) })
}

async fn summary(
    State(s): State<Arc<AppState>>,
    Checked(Query(p)): Checked<Query<FilterParams>>,
) -> Result<Json<Value>, ApiError> {
    let f = p.to_filters()?;
    let (t, refused) = tokio::try_join!(
        async { s.store.summary(&f).await.map_err(store_error) },
        crate::refusals_api::summary_json(&s, &f),
    )?;
    let mut v = totals_json(&t);
    v["window"] = window_json(&s, &f);
    v["refused"] = refused;
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ExplorerParams {
    #[serde(flatten)]
    pub(crate) filters: FilterParams,
    pub(crate) group_by: Option<String>,
    pub(crate) sort: Option<String>,
    /// For the export only: `csv` or `json`.
    pub(crate) format: Option<String>,
}

impl ExplorerParams {
    /// The filters, grouping and sort the explorer and its export read.
    fn parsed(&self) -> Result<(spendgate_core::Filters, GroupBy, SortBy), ApiError> {
        Ok((
            self.filters.to_filters()?,
            parse_group_by(self.group_by.as_deref().filter(|g| !g.is_empty()))?,
            parse_sort(self.sort.as_deref().filter(|g| !g.is_empty()))?,
        ))
    }
}

/// `GET /api/v1/usage/explorer/export?format=csv|json&group_by=..&<filters>`: the explorer as a file.
async fn explorer_export(
    State(s): State<Arc<AppState>>,
    Checked(Query(p)): Checked<Query<ExplorerParams>>,
) -> Result<Response, ApiError> {
    let format = crate::export::Format::parse(p.format.as_deref())?;
    let (f, group_by, sort) = p.parsed()?;
    crate::export::explorer_export(&s, &f, group_by, sort, format).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct ExportParams {
    #[serde(flatten)]
    pub(crate) filters: FilterParams,
    pub(crate) format: Option<String>,
}

/// `GET /api/v1/spend-logs/export?format=csv|json&<filters>`: every matching spend log, newest first, streamed.
async fn spend_logs_export(
    State(s): State<Arc<AppState>>,
    Checked(Query(p)): Checked<Query<ExportParams>>,
) -> Result<Response, ApiError> {
    let format = crate::export::Format::parse(p.format.as_deref())?;
    let f = p.filters.to_filters()?;
    Ok(crate::export::spend_logs_export(
        Arc::clone(&s.store),
        f,
        format,
    ))
}

pub(crate) fn row_json(r: &GroupRow, share: u32) -> Value {
    let mut v = totals_json(&r.totals);
    v["key"] = json!(r.key);
    v["label"] = json!(r.label);
    v["share"] = json!(format_share(share));
    v
}

async fn explorer(
    State(s): State<Arc<AppState>>,
    Checked(Query(p)): Checked<Query<ExplorerParams>>,
) -> Result<Json<Value>, ApiError> {
    let (f, group_by, sort) = p.parsed()?;
    Ok(Json(
        crate::export::explorer_view(&s, &f, group_by, sort).await?,
    ))
}

pub(crate) fn log_json(l: &StoredSpendLog) -> Value {
    let e = &l.event;
    json!({
        "id": e.id,
        "started_at": to_rfc3339(e.started_at_ms),
        "finished_at": to_rfc3339(e.finished_at_ms),
        "latency_ms": e.latency_ms,
        "gateway": e.gateway,
        "provider": e.provider,
        "model": e.model,
        "endpoint": e.endpoint,
        "stream": e.stream,
        "key_id": e.attribution.key_id,
        "user": e.attribution.user,
        "team": e.attribution.team,
        "workflow": e.attribution.workflow,
        // The label the request named, when it came past limits.max_workflows and was recorded as (other).
        "workflow_requested": e.attribution.workflow_requested,
        "cache_outcome": e.cache_outcome.as_str(),
        "status": e.status.as_str(),
        "http_status": e.http_status,
        "input_tokens": e.usage.input_tokens,
        "output_tokens": e.usage.output_tokens,
        "cached_input_tokens": e.usage.cached_input_tokens,
        "cache_write_tokens": e.usage.cache_write_tokens,
        "cost": e.cost,
        "avoided_cost": e.avoided_cost,
        "usage_source": e.usage_source.as_str(),
        "price_confidence": e.price_confidence.as_str(),
        // The provider's own figure where it reports one (OpenRouter), beside spendgate's: a difference is flagged.
        "provider_cost": e.usage.provider_cost,
        "provider_cost_differs": e.usage.provider_cost.is_some_and(|p| p != e.cost),
        "price_lines": e.price_lines,
        "error": e.error,
        "wallet_id": e.wallet_id,
        "attempts": e.attempts,
        "failed_attempts": e.failed_attempts,
        "upstream_api": e.upstream_api,
    })
}

#[derive(Debug, Deserialize)]
struct LogParams {
    #[serde(flatten)]
    filters: FilterParams,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn spend_logs(
    State(s): State<Arc<AppState>>,
    Checked(Query(p)): Checked<Query<LogParams>>,
) -> Result<Json<Value>, ApiError> {
    let f = p.filters.to_filters()?;
    let limit = page_limit(p.limit.as_deref())?;
    let cursor = p.cursor.as_deref().filter(|c| !c.is_empty());
    let page = s
        .store
        .spend_logs(&f, limit, cursor)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({
        "items": page.items.iter().map(log_json).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
    })))
}

/// A page's `limit` parameter: 1 to 1000, 50 when not given.
pub(crate) fn page_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    match limit.filter(|l| !l.is_empty()) {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_request("invalid_limit", "limit must be a number from 1 to 1000")
            }),
        None => Ok(50),
    }
}

async fn spend_log(
    State(s): State<Arc<AppState>>,
    Checked(Path(id)): Checked<Path<String>>,
) -> Result<Json<Value>, ApiError> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| {
        ApiError::invalid_request("invalid_id", format!("'{id}' is not a spend log id"))
    })?;
    match s.store.spend_log(id).await.map_err(store_error)? {
        Some(l) if crate::auth::visible(&l) => Ok(Json(log_json(&l))),
        // A log of another team is answered like a missing one: a viewer learns nothing about it.
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "not_found",
            "No spend log has this id.",
        )),
    }
}

async fn status(State(s): State<Arc<AppState>>) -> Json<Value> {
    let q = s.writer_stats.snapshot();
    let g = s.gateway_stats.snapshot();
    Json(json!({
        "version": s.version,
        "queue": {
            "pending": q.pending,
            "oldest_pending_age_ms": q.oldest_pending_age_ms,
            "written_total": q.written_total,
            "duplicates_total": q.duplicates_total,
            "written_per_sec": q.written_per_sec,
            "failed_writes": q.failed_writes,
            "last_error": q.last_error,
            "refusals_recorded": q.refusals_total,
            // The queue's memory against its bound (`writer.max_queue_bytes`), and the events that waited for room.
            "bytes": q.room.queued_bytes,
            "bytes_bound": q.room.bound_bytes,
            "bytes_peak": q.room.peak_bytes,
            "waited_for_room": q.room.waited,
            "over_bound": q.room.over_bound,
            // How large the batches grew when the store fell behind (a batch holds at most half the bound).
            "largest_batch": q.largest_batch,
        },
        "gateway": {
            "name": &*s.gateway_name,
            "started_at": to_rfc3339(g.started_at_ms),
            "requests": g.requests,
            "upstream_errors": g.upstream_errors,
            "rejected": g.rejected,
            // Refusals by reason; only rate limits are told apart so far.
            "rejected_by_reason": { "rate_limit": g.rate_limited },
            "latency_p50_ms": g.latency_percentile_ms(50),
            "latency_p95_ms": g.latency_percentile_ms(95),
        },
        "leases": {
            "enabled": s.controls.leased(),
            "round_trips": s.controls.lease_round_trips(),
        },
        // Past `max`, requests with a new label are recorded as workflow (other).
        "workflows": {
            "tracked": s.workflows.tracked(),
            "max": s.workflows.max(),
        },
    }))
}
