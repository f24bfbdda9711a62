//! The pages over real HTTP, without a browser: what they show, that they escape names, their security
//! headers, the login with sessions and CSRF, the live event stream and the request detail page.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::time::{Duration, Instant};

use common::{chat_body, TestServer};

const HOSTILE: &str = "<script>alert(1)</script>";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn open_server() -> TestServer {
    TestServer::start_with(|c| c.open_pages = true).await
}

/// Sends `n` requests with `key` and returns the request id of the last.
async fn send(s: &TestServer, key: &str, n: usize) -> String {
    let mut id = String::new();
    for i in 0..n {
        let res = s
            .chat(key, chat_body("gpt-4o-mini", &format!("hello {i}"), false))
            .await;
        assert_eq!(res.status(), 200);
        id = res.headers()["x-spendgate-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let _ = res.bytes().await;
    }
    id
}

async fn wait_for_requests(s: &TestServer, n: u64) {
    s.wait_for_summary("window=1h", Duration::from_secs(10), |v| {
        v["requests"].as_u64() == Some(n)
    })
    .await;
}

async fn get_page(
    client: &reqwest::Client,
    url: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let res = client.get(url).send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_spend_teams_and_the_no_team_row_and_escape_names() {
    let s = open_server().await;
    let (_, support) = s.create_key("alice", Some("support")).await;
    let (_, hostile) = s.create_key("mallory", Some(HOSTILE)).await;
    let (_, none) = s.create_key("batch", None).await;
    send(&s, &support, 3).await;
    send(&s, &hostile, 1).await;
    send(&s, &none, 2).await;
    wait_for_requests(&s, 6).await;
    let client = no_redirects();

    let (status, headers, html) = get_page(&client, &format!("{}/overview", s.base)).await;
    assert_eq!(status, 200);
    assert!(html.contains("Spend, month to date"));
    assert!(
        html.contains("test-gw"),
        "the gateway row names this gateway"
    );
    assert!(html.contains("id=\"gateways\""));
    assert!(html.contains("id=\"budget-alerts\"") && html.contains("No budget alerts"));
    assert!(html.contains("support"), "movers list the team");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(!html.contains("<script>"), "no inline script: {html}");

    let (status, _, html) = get_page(&client, &format!("{}/usage?group_by=team", s.base)).await;
    assert_eq!(status, 200);
    assert!(html.contains(">support</a>"));
    assert!(html.contains(">No team</a>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        !html.contains(HOSTILE),
        "a hostile team name must never reach the page as markup"
    );
    assert!(
        html.contains("team=%40none&amp;group_by=key"),
        "No team drills into keys"
    );

    // No team lists its keys and users.
    let (status, _, html) = get_page(
        &client,
        &format!("{}/usage?team=%40none&group_by=key", s.base),
    )
    .await;
    assert_eq!(status, 200);
    let table = &html[html.find("id=\"explorer-table\"").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(table.contains("batch, …"), "{table}");
    assert!(
        !table.contains("alice"),
        "only keys without a team: {table}"
    );

    // A live refresh returns only the live region.
    let (status, _, frag) = get_page(
        &client,
        &format!("{}/usage?group_by=model&fragment=1", s.base),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!frag.contains("<html") && frag.contains("gpt-4o-mini") && frag.contains("Updated"));

    // `/` goes to the overview; static files are served with their types.
    let res = client.get(format!("{}/", s.base)).send().await.unwrap();
    assert!(res.status().is_redirection());
    assert_eq!(res.headers()["location"], "/overview");
    let res = client
        .get(format!("{}/static/app.js", s.base))
        .send()
        .await
        .unwrap();
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(res.text().await.unwrap().contains("EventSource"));
    let res = client
        .get(format!("{}/static/app.css", s.base))
        .send()
        .await
        .unwrap();
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_views_get_an_html_error_page_and_empty_windows_say_what_to_do() {
    let s = open_server().await;
    let client = no_redirects();
    let (status, headers, html) = get_page(&client, &format!("{}/usage?window=2y", s.base)).await;
    assert_eq!(status, 400);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(html.contains("window &#39;2y&#39; is not known"), "{html}");
    let (status, _, html) = get_page(&client, &format!("{}/usage?group_by=%3Cb%3E", s.base)).await;
    assert_eq!(status, 400);
    assert!(html.contains("&lt;b&gt;") && !html.contains("<b>'"));
    let (status, _, html) = get_page(&client, &format!("{}/usage", s.base)).await;
    assert_eq!(status, 200);
    assert!(html.contains("No traffic in this window yet"));
    assert!(html.contains("spendgate keys create"));
    assert!(html.contains("/v1/chat/completions"));
    let (status, _, html) = get_page(&client, &format!("{}/requests/not-an-id", s.base)).await;
    assert_eq!(status, 400);
    assert!(html.contains("is not a request id"));
    let (status, _, _) = get_page(
        &client,
        &format!("{}/requests/0190c1a0-0000-7000-8000-000000000000", s.base),
    )
    .await;
    assert_eq!(status, 404);
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_detail_shows_every_field_and_the_price_lines() {
    let s = open_server().await;
    let (key_id, key) = s.create_key("alice", Some("support")).await;
    let id = send(&s, &key, 1).await;
    wait_for_requests(&s, 1).await;
    let (_, log) = s.admin_get(&format!("/api/v1/spend-logs/{id}")).await;
    let client = no_redirects();
    let (status, _, html) = get_page(&client, &format!("{}/requests/{id}", s.base)).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&id));
    assert!(html.contains("gpt-4o-mini") && html.contains("support") && html.contains("alice"));
    assert!(html.contains(&format!("key {key_id}")));
    assert!(html.contains("id=\"price-lines\""));
    assert!(html.contains("Reported"), "the usage source is shown");
    let exact = log["cost"].as_str().unwrap();
    assert!(
        html.contains(&format!("${exact}")),
        "the exact cost {exact} is shown"
    );
    for line in log["price_lines"].as_array().unwrap() {
        let cost = line["cost"].as_str().unwrap();
        assert!(html.contains(&format!("${cost}")), "price line {line}");
    }
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_logs_are_paged_by_cursor_newest_first() {
    let s = open_server().await;
    let (_, key) = s.create_key("alice", Some("support")).await;
    let last = send(&s, &key, 30).await;
    wait_for_requests(&s, 30).await;
    let client = no_redirects();
    let (_, _, html) = get_page(&client, &format!("{}/usage?group_by=team", s.base)).await;
    let first_row = html.find("/requests/").unwrap();
    assert_eq!(
        &html[first_row + 10..first_row + 10 + last.len()],
        last,
        "newest first"
    );
    let start = html
        .find("rel=\"next\"")
        .map(|i| html[..i].rfind("href=\"").unwrap() + 6);
    let start = start.expect("a next page link");
    let end = start + html[start..].find('"').unwrap();
    let next = html[start..end].replace("&amp;", "&");
    assert!(next.contains("cursor="));
    let (status, _, page2) = get_page(&client, &format!("{}{next}", s.base)).await;
    assert_eq!(status, 200);
    let rows = |h: &str| h.matches("<tr data-href=\"/requests/").count();
    assert_eq!(rows(&html), 25);
    assert_eq!(rows(&page2), 5);
    assert!(!page2.contains(&format!("/requests/{last}\"")));
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_announce_new_spend() {
    let s = open_server().await;
    let (_, key) = s.create_key("alice", Some("support")).await;
    let mut res = reqwest::Client::new()
        .get(format!("{}/events", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    send(&s, &key, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while !seen.contains("event: spend") {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no spend event arrived: {seen:?}");
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, res.chunk()).await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    drop(res);
    s.running.stop().await.unwrap();
}

fn set_cookies(h: &reqwest::header::HeaderMap) -> Vec<String> {
    h.get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie_value(cookies: &[String], name: &str) -> Option<String> {
    cookies.iter().find_map(|c| {
        let first = c.split(';').next()?;
        let (k, v) = first.split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_string())
    })
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let i = html.find(&marker).unwrap() + marker.len();
    html[i..i + html[i..].find('"').unwrap()].to_string()
}

async fn post_form(
    client: &reqwest::Client,
    url: &str,
    cookie: &str,
    body: String,
) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_demo_pages_need_a_login_with_the_admin_token() {
    let s = TestServer::start().await;
    let client = no_redirects();
    let base = &s.base;

    // Without a session: pages go to the login, scripts get 401.
    let res = client
        .get(format!("{base}/usage?team=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login?next=%2Fusage%3Fteam%3Da");
    for path in ["/events", "/usage?fragment=1", "/requests/x"] {
        let res = client.get(format!("{base}{path}")).send().await.unwrap();
        let code = res.status().as_u16();
        assert!(code == 401 || code == 303, "{path}: {code}");
        if path != "/requests/x" {
            assert_eq!(code, 401, "{path}");
        }
    }
    // The admin token as a bearer does not open pages: only a session does.
    let res = client
        .get(format!("{base}/overview"))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);

    // The login form sets a CSRF cookie that the form must echo.
    let res = client
        .get(format!("{base}/login?next=%2Fusage"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookies = set_cookies(res.headers());
    let csrf_cookie = cookie_value(&cookies, "sg_login_csrf").unwrap();
    let html = res.text().await.unwrap();
    let csrf = hidden(&html, "csrf");
    assert_eq!(csrf, csrf_cookie);
    let login = format!("{base}/login");
    let cookie = format!("sg_login_csrf={csrf_cookie}");

    // Missing or wrong CSRF token: refused even with the right admin token.
    let res = post_form(
        &client,
        &login,
        "",
        format!("csrf={csrf}&token=test-admin-token"),
    )
    .await;
    assert_eq!(res.status(), 403);
    let res = post_form(
        &client,
        &login,
        &cookie,
        "csrf=forged&token=test-admin-token".into(),
    )
    .await;
    assert_eq!(res.status(), 403);
    // Wrong token: refused, no session.
    let res = post_form(&client, &login, &cookie, format!("csrf={csrf}&token=wrong")).await;
    assert_eq!(res.status(), 401);
    assert!(cookie_value(&set_cookies(res.headers()), "sg_session").is_none());

    // The right token: a session cookie that scripts cannot read and other sites cannot send.
    let res = post_form(
        &client,
        &login,
        &cookie,
        format!("csrf={csrf}&token=test-admin-token&next=%2F%2Fevil.example"),
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        "/overview",
        "never redirects off-site"
    );
    let cookies = set_cookies(res.headers());
    let session_line = cookies
        .iter()
        .find(|c| c.starts_with("sg_session="))
        .unwrap();
    assert!(session_line.contains("HttpOnly"));
    assert!(session_line.contains("SameSite=Strict"));
    let session = cookie_value(&cookies, "sg_session").unwrap();
    assert_eq!(session.len(), 64);
    let auth = format!("sg_session={session}");

    let res = client
        .get(format!("{base}/overview"))
        .header("cookie", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Log out"));
    let logout_csrf = hidden(&html, "csrf");
    let res = client
        .get(format!("{base}/events"))
        .header("cookie", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    // A made-up session id opens nothing.
    let res = client
        .get(format!("{base}/overview"))
        .header("cookie", format!("sg_session={}", "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);

    // Logout needs the session's CSRF token, then ends the session.
    let res = post_form(
        &client,
        &format!("{base}/logout"),
        &auth,
        "csrf=nope".into(),
    )
    .await;
    assert_eq!(res.status(), 403);
    let res = post_form(
        &client,
        &format!("{base}/logout"),
        &auth,
        format!("csrf={logout_csrf}"),
    )
    .await;
    assert_eq!(res.status(), 303);
    let res = client
        .get(format!("{base}/overview"))
        .header("cookie", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "the session is gone after logout");
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrow_the_explorer_and_form_values_are_kept() {
    let s = open_server().await;
    let (_, a) = s.create_key("alice", Some("support")).await;
    let (_, b) = s.create_key("carol", Some("search")).await;
    send(&s, &a, 2).await;
    let res = s.messages(&b, serde_json::json!({ "model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{ "role": "user", "content": "hi" }] })).await;
    assert_eq!(res.status(), 200);
    wait_for_requests(&s, 3).await;
    let client = no_redirects();
    let (_, _, html) = get_page(
        &client,
        &format!("{}/usage?window=1h&group_by=model&team=search", s.base),
    )
    .await;
    let table = &html[html.find("id=\"explorer-table\"").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(table.contains("claude-haiku-4-5"));
    assert!(
        !table.contains("gpt-4o-mini"),
        "the team filter narrows the table"
    );
    assert!(html.contains("<option value=\"search\" selected>search</option>"));
    assert!(html.contains("<option value=\"1h\" selected>"));
    // A custom range from the form's datetime-local inputs is read as UTC.
    let (status, _, html) = get_page(
        &client,
        &format!(
            "{}/usage?window=custom&from=2020-01-01T00%3A00&to=2020-01-02T00%3A00",
            s.base
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("2020-01-01 00:00:00 → 2020-01-02 00:00:00 UTC"),
        "{html}"
    );
    assert!(html.contains("<option value=\"custom\" selected>"));
    s.running.stop().await.unwrap();
}
