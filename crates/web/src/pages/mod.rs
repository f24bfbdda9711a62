//! The pages people read: `/overview`, `/usage`, `/requests/{id}`, `/explain`, `/history`, `/budgets`,
//! `/wallets` (and a wallet's ledger) and `/notifications`, rendered here as plain HTML with SVG charts, plus
//! what they need around them: the login (admin token, in-memory sessions, CSRF), security headers, the
//! embedded static files, and `/events`, the server-sent event stream that tells open pages that new spend was
//! written so they refresh their live region.
//!
//! Nothing here writes to the store; pages read the rollups through [`spendgate_store::Store`] only.

mod budgets;
mod chart;
mod explain;
mod history;
mod html;
mod notifications;
mod overview;
mod rate_limits;
mod request;
mod session;
mod usage;
mod wallets;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use spendgate_store::StoreError;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::AppState;
pub(crate) use html::url_encode;
use html::{esc, Chrome};
pub(crate) use session::Sessions;

/// What page handlers share: the app's state and the login sessions.
pub(crate) struct Pages {
    pub app: Arc<AppState>,
    pub sessions: Sessions,
}

/// The CSRF token of the request's session, put into the request by [`require_login`]. `None` when the pages
/// are open (demo), where there is no session and no form that changes anything.
#[derive(Debug, Clone)]
pub(crate) struct SessionCsrf(pub Option<String>);

impl Pages {
    pub(crate) fn chrome<'a>(
        &'a self,
        title: &'a str,
        active: &'a str,
        csrf: &'a SessionCsrf,
        live: bool,
    ) -> Chrome<'a> {
        Chrome {
            title,
            active,
            gateway: &self.app.gateway_name,
            version: self.app.version,
            csrf: csrf.0.as_deref(),
            live,
        }
    }
}

/// The pages, the login, the static files and the live event stream.
pub fn router(state: Arc<AppState>) -> Router {
    let pages = Arc::new(Pages {
        app: state,
        sessions: Sessions::default(),
    });
    let protected = Router::new()
        .route("/", get(|| async { Redirect::to("/overview") }))
        .route("/overview", get(overview::page))
        .route("/usage", get(usage::page))
        .route("/requests/{id}", get(request::page))
        .route("/explain", get(explain::page))
        .route("/history", get(history::page))
        .route("/budgets", get(budgets::page))
        .route("/wallets", get(wallets::page))
        .route("/wallets/{id}", get(wallets::ledger_page))
        .route("/notifications", get(notifications::page))
        .route("/events", get(events))
        .route("/logout", axum::routing::post(session::logout))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&pages),
            session::require_login,
        ));
    Router::new()
        .route("/login", get(session::login_form).post(session::login))
        .route("/static/{file}", get(static_file))
        .merge(protected)
        .layer(middleware::from_fn(security_headers))
        .with_state(pages)
}

/// Security headers on every page response: no inline script (scripts only from /static), no framing, no
/// content-type sniffing, and no caching of pages that show spend.
async fn security_headers(req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

const APP_CSS: &str = include_str!("../../static/app.css");
const APP_JS: &str = include_str!("../../static/app.js");
const FAVICON: &str = include_str!("../../static/favicon.svg");

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "favicon.svg" => (FAVICON, "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    // The files are part of the binary, and the pages link them with the version in the URL, so a browser
    // may keep them for an hour without missing an upgrade.
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// `GET /events`: one `spend` event at most once a second, after the writer committed new spend events.
/// Pages re-fetch their live region when they receive it. A team viewer gets one on a fixed beat instead: a tick
/// per commit would tell it when other teams' requests end (a timing channel), and commits carry no team.
async fn events(State(p): State<Arc<Pages>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = p.app.writer.subscribe();
    let viewer = crate::auth::viewer_team().is_some();
    let stream = futures_util::stream::unfold(
        (rx, None::<tokio::time::Instant>),
        move |(mut rx, last)| async move {
            if viewer {
                tokio::time::sleep(VIEWER_BEAT).await;
                let event = Event::default()
                    .event("spend")
                    .data(spendgate_core::time::now_ms().to_string());
                return Some((Ok(event), (rx, last)));
            }
            // Wait for a commit; a lagging receiver still means "something was written".
            if let Err(RecvError::Closed) = rx.recv().await {
                return None;
            }
            // At most one event a second, so a busy gateway does not make every open page re-render constantly.
            if let Some(last) = last {
                tokio::time::sleep_until(last + Duration::from_secs(1)).await;
            }
            // Commits that arrived while waiting are covered by this one event.
            while let Ok(_) | Err(TryRecvError::Lagged(_)) = rx.try_recv() {}
            let event = Event::default()
                .event("spend")
                .data(spendgate_core::time::now_ms().to_string());
            Some((Ok(event), (rx, Some(tokio::time::Instant::now()))))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// How often a team viewer's pages refresh: a fixed beat, whatever the traffic.
const VIEWER_BEAT: Duration = Duration::from_secs(5);

/// Whether the request asks for the live region only (the script's refresh), not the whole document.
pub(crate) fn wants_fragment(fragment: Option<&str>) -> bool {
    matches!(fragment, Some("1") | Some("true"))
}

/// An HTML page for a response.
pub(crate) fn html_response(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

/// The answer to a view whose URL cannot be read: what is wrong, in the site's layout.
pub(crate) fn invalid_view(p: &Pages, csrf: &SessionCsrf, message: &str) -> Response {
    error_page(
        p,
        csrf,
        StatusCode::BAD_REQUEST,
        "This view is not valid",
        message,
    )
}

/// A page that explains what went wrong, in the site's layout.
pub(crate) fn error_page(
    p: &Pages,
    csrf: &SessionCsrf,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    let main = format!(
        "<section class=\"panel error\"><h1>{}</h1><p>{}</p><p><a href=\"/overview\">Back to the overview</a></p></section>",
        esc(title),
        esc(message)
    );
    html_response(
        status,
        html::layout(&p.chrome(title, "", csrf, false), "", &main),
    )
}

/// An error page for a failed store query. The details go to the log, not to the page.
pub(crate) fn store_error_page(p: &Pages, csrf: &SessionCsrf, e: StoreError) -> Response {
    match e {
        StoreError::Invalid(m) => invalid_view(p, csrf, &m),
        other => {
            tracing::error!(error = %other, "A store query for a page failed.");
            error_page(
                p,
                csrf,
                StatusCode::SERVICE_UNAVAILABLE,
                "The store could not answer",
                "The store could not answer right now. Reload the page in a few seconds.",
            )
        }
    }
}

/// The host the reader used, for copy-paste examples ("curl http://HOST/v1/..."). Falls back to a placeholder.
pub(crate) fn host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        })
        .map_or_else(|| "localhost:8080".to_string(), str::to_string)
}
