//! Logging in to the pages with the admin token.
//!
//! A successful login creates a session in memory (a random 256-bit id, an expiry and a CSRF token) and sends
//! its id in a cookie that scripts cannot read (HttpOnly) and other sites cannot send (SameSite=Strict).
//! Sessions do not survive a restart, which is acceptable: logging in again takes one paste of the token.
//!
//! Every form that changes something carries a CSRF token: the login form a double-submit token (cookie and
//! hidden field must match, since there is no session yet), the logout form the session's own token.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use spendgate_core::time::{now_ms, HOUR_MS};

use super::html::{esc, layout, url_encode, Chrome};
use super::{html_response, Pages, SessionCsrf};

pub const SESSION_COOKIE: &str = "sg_session";
const LOGIN_CSRF_COOKIE: &str = "sg_login_csrf";
const SESSION_TTL_MS: i64 = 12 * HOUR_MS;
/// More sessions than any team of operators needs; beyond it the oldest are dropped so memory stays bounded.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    expires_ms: i64,
    role: crate::auth::Role,
}

/// The live sessions, by id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes as hex. `None` only if the operating system has no randomness to give.
fn random_token() -> Option<String> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).ok()?;
    let mut s = String::with_capacity(64);
    for b in raw {
        let _ = write!(s, "{b:02x}");
    }
    Some(s)
}

/// Compares two secrets without stopping at the first difference.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// Creates a session; returns its id.
    fn create(&self, role: crate::auth::Role) -> Option<String> {
        let id = random_token()?;
        let csrf = random_token()?;
        let now = now_ms();
        let mut map = self.inner.lock().ok()?;
        map.retain(|_, s| s.expires_ms > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                csrf,
                expires_ms: now + SESSION_TTL_MS,
                role,
            },
        );
        Some(id)
    }

    /// The CSRF token and role of a live session.
    fn csrf_of(&self, id: &str) -> Option<(String, crate::auth::Role)> {
        self.csrf_at(id, now_ms())
    }

    /// The CSRF token and role of a session live at `now`; a session past its expiry is forgotten.
    fn csrf_at(&self, id: &str, now: i64) -> Option<(String, crate::auth::Role)> {
        let mut map = self.inner.lock().ok()?;
        match map.get(id) {
            Some(s) if s.expires_ms > now => Some((s.csrf.clone(), s.role.clone())),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    fn remove(&self, id: &str) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(id);
        }
    }
}

/// The value of a cookie in the request.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Middleware for the pages: without a session, a page request goes to the login form and a script request
/// (live refresh, event stream) gets 401. In demo mode every request passes.
pub(crate) async fn require_login(
    State(p): State<Arc<Pages>>,
    mut req: Request,
    next: Next,
) -> Response {
    if p.app.open_pages {
        req.extensions_mut().insert(SessionCsrf(None));
        return next.run(req).await;
    }
    let session_id = cookie(req.headers(), SESSION_COOKIE).map(str::to_string);
    let mut csrf = session_id.as_deref().and_then(|id| p.sessions.csrf_of(id));
    // Why a session that was live has just ended, for the login page to say.
    let mut ended = None;
    // A session made with a viewer token lasts only as long as the token: once it is revoked (through any
    // replica, since the store says) or expires, the session ends at its next request.
    if let (Some((_, crate::auth::Role::Viewer { token_id, .. })), Some(id)) = (&csrf, &session_id)
    {
        match p.app.store.viewer_by_id(*token_id).await {
            Ok(Some(v)) if !v.expired_at(now_ms()) => {}
            Ok(found) => {
                let why = if found.is_some() {
                    "expired"
                } else {
                    "revoked"
                };
                tracing::info!(
                    token_id,
                    "A page session ended: its viewer token was {why}."
                );
                p.sessions.remove(id);
                csrf = None;
                ended = Some(why);
            }
            Err(e) => {
                tracing::warn!(error = %e, "Checking a session's viewer token failed.");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The store could not confirm this session's token right now; retry shortly.",
                )
                    .into_response();
            }
        }
    }
    match csrf {
        Some((token, role)) => {
            // A team viewer reads /usage and request details for its team; the org-wide pages are not for it.
            let path = req.uri().path();
            let viewer_may = [
                "/usage",
                "/requests/",
                "/events",
                "/static/",
                "/logout",
                "/favicon",
            ]
            .iter()
            .any(|prefix| path.starts_with(prefix));
            if matches!(role, crate::auth::Role::Viewer { .. }) && !viewer_may {
                return Redirect::to("/usage").into_response();
            }
            req.extensions_mut().insert(SessionCsrf(Some(token)));
            req.extensions_mut().insert(role.clone());
            crate::auth::in_scope(&role, next.run(req)).await
        }
        None => {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/overview", |pq| pq.as_str());
            let is_script = req.uri().path() == "/events"
                || req
                    .uri()
                    .query()
                    .is_some_and(|q| q.split('&').any(|kv| kv == "fragment=1"));
            let ended_query = ended.map_or(String::new(), |why| format!("&ended={why}"));
            if is_script || req.method() != axum::http::Method::GET {
                let message = match ended {
                    Some(why) => format!(
                        "This session's viewer token was {why}: ask an admin for a new token and log in again at \
                         /login."
                    ),
                    None => "Log in at /login first.".into(),
                };
                (StatusCode::UNAUTHORIZED, message).into_response()
            } else {
                Redirect::to(&format!("/login?next={}{ended_query}", url_encode(path)))
                    .into_response()
            }
        }
    }
}

/// Where to go after logging in: only a path on this site, never another origin.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_local_path(n) => n.to_string(),
        _ => "/overview".to_string(),
    }
}

/// A path on this site: one `/` followed by anything but `/` or `\`, with no backslash or control character
/// anywhere. Browsers drop tabs and newlines from a URL and read `\` as `/`, so `/\t/evil.example` or
/// `/\\evil.example` would take the reader to another host, and a newline cannot go in a `Location` header at all.
fn is_local_path(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next() == Some('/')
        && !matches!(chars.next(), Some('/' | '\\'))
        && !n.chars().any(|c| c == '\\' || c.is_control())
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    /// Why the session that sent the reader here ended: its viewer token `expired` or was `revoked`.
    ended: Option<String>,
}

fn login_page(p: &Pages, status: StatusCode, next: &str, message: Option<&str>) -> Response {
    let Some(csrf) = random_token() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "No randomness available for a login token.",
        )
            .into_response();
    };
    let chrome = Chrome {
        title: "Log in",
        active: "",
        gateway: &p.app.gateway_name,
        version: p.app.version,
        csrf: None,
        live: false,
    };
    let mut main = String::from("<section class=\"panel login\"><h1>Log in to spendgate</h1>");
    if let Some(m) = message {
        let _ = write!(main, "<p class=\"alert\" role=\"alert\">{}</p>", esc(m));
    }
    let _ = write!(
        main,
        "<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label for=\"token\">Admin token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <button class=\"primary\">Log in</button></form>\
         <p class=\"muted\">The admin token is in <code>&lt;data-dir&gt;/admin-token</code>, or set by \
         <code>SPENDGATE_ADMIN_TOKEN</code>. A session lasts 12 hours.</p></section>",
        next = esc(next),
    );
    let mut res = html_response(status, layout(&chrome, "", &main));
    let cookie =
        format!("{LOGIN_CSRF_COOKIE}={csrf}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

pub(crate) async fn login_form(
    State(p): State<Arc<Pages>>,
    q: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if p.app.open_pages {
        return Redirect::to("/overview").into_response();
    }
    let q = q.as_ref().ok();
    let next = safe_next(q.and_then(|q| q.next.as_deref()));
    let message = match q.and_then(|q| q.ended.as_deref()) {
        Some("expired") => {
            Some("Your session ended: its viewer token expired. Ask an admin for a new one.")
        }
        Some("revoked") => {
            Some("Your session ended: its viewer token was revoked. Ask an admin for a new one.")
        }
        _ => None,
    };
    login_page(&p, StatusCode::OK, &next, message)
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

pub(crate) async fn login(
    State(p): State<Arc<Pages>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return crate::too_large("/login", p.app.max_body_bytes);
        }
        Err(_) => {
            return login_page(
                &p,
                StatusCode::BAD_REQUEST,
                "/overview",
                Some("The login form was incomplete; try again."),
            )
        }
    };
    let next = safe_next(form.next.as_deref());
    let csrf_ok = cookie(&headers, LOGIN_CSRF_COOKIE)
        .is_some_and(|c| !c.is_empty() && same_secret(c, &form.csrf));
    if !csrf_ok {
        return login_page(
            &p,
            StatusCode::FORBIDDEN,
            &next,
            Some("The form expired or did not come from this page (CSRF check failed). Try again."),
        );
    }
    let role = match crate::auth::role_of(&p.app, form.token.trim()).await {
        Ok(role) => role,
        Err(crate::auth::Refused::Unknown) => {
            tracing::warn!("A page login with a wrong token was refused.");
            return login_page(
                &p,
                StatusCode::UNAUTHORIZED,
                &next,
                Some("That is neither the admin token nor a team viewer token."),
            );
        }
        Err(expired) => {
            tracing::info!("A page login with an expired viewer token was refused.");
            return login_page(
                &p,
                StatusCode::UNAUTHORIZED,
                &next,
                Some(&expired.message()),
            );
        }
    };
    let next = if matches!(role, crate::auth::Role::Viewer { .. }) {
        "/usage".to_string()
    } else {
        next
    };
    let Some(id) = p.sessions.create(role) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "Could not create a session.",
        )
            .into_response();
    };
    let mut res = Redirect::to(&next).into_response();
    let max_age = SESSION_TTL_MS / 1000;
    let cookies = [
        format!("{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}"),
        format!("{LOGIN_CSRF_COOKIE}=; HttpOnly; SameSite=Strict; Path=/login; Max-Age=0"),
    ];
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

#[derive(Debug, Deserialize)]
pub(crate) struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn logout(
    State(p): State<Arc<Pages>>,
    axum::Extension(session): axum::Extension<SessionCsrf>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(expected) = session.0 else {
        // Open pages (demo) have no session to end.
        return Redirect::to("/overview").into_response();
    };
    let given = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !same_secret(&expected, &given) {
        return (
            StatusCode::FORBIDDEN,
            "CSRF check failed: log out from the page's own button.",
        )
            .into_response();
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        p.sessions.remove(id);
    }
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    )) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/usage?team=a")), "/usage?team=a");
        assert_eq!(safe_next(Some("//evil.example")), "/overview");
        assert_eq!(safe_next(Some("https://evil.example")), "/overview");
        assert_eq!(safe_next(Some("/\\evil.example")), "/overview");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/overview");
        assert_eq!(safe_next(Some("/\n/x")), "/overview");
        assert_eq!(safe_next(Some("/usage\\x")), "/overview");
        assert_eq!(safe_next(Some("/")), "/");
        assert_eq!(safe_next(None), "/overview");
    }

    #[test]
    fn sessions_are_random_and_removable() {
        let s = Sessions::default();
        let a = s.create(crate::auth::Role::Admin).unwrap_or_default();
        let b = s.create(crate::auth::Role::Admin).unwrap_or_default();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(s.csrf_of(&a).is_some());
        s.remove(&a);
        assert!(s.csrf_of(&a).is_none());
        assert!(s.csrf_of("nope").is_none());
    }

    #[test]
    fn a_session_ends_at_its_expiry() {
        let s = Sessions::default();
        let id = s.create(crate::auth::Role::Admin).unwrap_or_default();
        let now = now_ms();
        assert!(s.csrf_at(&id, now + SESSION_TTL_MS - 60_000).is_some());
        assert!(s.csrf_at(&id, now + SESSION_TTL_MS + 1).is_none());
        // Forgotten, not only refused: a clock that went back would not bring it back.
        assert!(s.csrf_at(&id, now).is_none());
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sg_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
