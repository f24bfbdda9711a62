//! Holding the line: bodies, connections and memory stay bounded before anyone is authenticated; the login
//! sends its reader only to this site; admin changes are checked before anything is written, and every `/api`
//! error is JSON.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{chat_body, free_port, no_redirects, wait_healthy, TestServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any one network wait may take before the test calls it a hang. Far above what any of them needs;
/// it only turns a server that never answers (or never closes) into a failure instead of a stuck test.
const GUARD: Duration = Duration::from_secs(60);

/// 256 MiB: what a hostile client announces.
const HUGE: u64 = 256 << 20;

/// Reads one answer from `tcp`: its status and body (by its `Content-Length`), leaving the connection open.
async fn read_answer(tcp: &mut TcpStream, what: &str) -> (u16, String) {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = tcp.read(&mut chunk).await.unwrap_or(0);
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length || n == 0 {
                    let status = text[9..12].parse().unwrap();
                    return (status, text[end + 4..].to_string());
                }
            }
            assert!(n > 0, "the connection closed without an answer: {text:?}");
        }
    };
    tokio::time::timeout(GUARD, read)
        .await
        .unwrap_or_else(|_| panic!("no answer to {what}"))
}

/// Sends `head` (a request line and headers, ending in an empty line, and no body) and reads the answer's status
/// and body. The server must answer without waiting for the announced body.
async fn answer_without_body(addr: std::net::SocketAddr, head: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    read_answer(
        &mut tcp,
        &format!("a request whose body never came: {head:?}"),
    )
    .await
}

/// A request head that announces `length` bytes of body.
fn announcing(method_path: &str, extra: &str, length: u64) -> String {
    format!(
        "{method_path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra}content-length: {length}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_announced_over_the_limit_is_refused_before_it_arrives() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("ann", Some("t")).await;
    let addr = s.running.addr;
    let admin = "authorization: Bearer test-admin-token\r\n";
    let with_key = format!("authorization: Bearer {key}\r\n");
    // The proxy, with a valid key: 413 in OpenAI's shape, and in Anthropic's on /v1/messages.
    for (path, anthropic) in [
        ("/v1/chat/completions", false),
        ("/v1/embeddings", false),
        ("/v1/responses", false),
        ("/v1/messages", true),
    ] {
        let (status, body) =
            answer_without_body(addr, &announcing(&format!("POST {path}"), &with_key, HUGE)).await;
        assert_eq!(status, 413, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "request_too_large", "{path}: {v}");
        assert_eq!(v["type"] == "error", anthropic, "{path}: {v}");
    }
    // Just over the proxy's limit is refused too; at the limit the body is awaited (the key is valid).
    let limit = spendgate::config::LimitsConfig::default().max_body_bytes as u64;
    let (status, _) = answer_without_body(
        addr,
        &announcing("POST /v1/chat/completions", &with_key, limit + 1),
    )
    .await;
    assert_eq!(status, 413);
    // Everything else takes 64 KiB by default, with or without a token: the admin API in its JSON shape...
    for (path, extra) in [
        ("POST /api/v1/keys", admin),
        ("POST /api/v1/keys", ""),
        ("POST /api/v1/wallets", admin),
        ("POST /api/v1/budgets", ""),
    ] {
        let (status, body) = answer_without_body(addr, &announcing(path, extra, 65_537)).await;
        assert_eq!(status, 413, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "request_too_large", "{path}: {v}");
    }
    // ... and the login and page forms as a page.
    for path in ["POST /login", "POST /logout", "POST /overview"] {
        let (status, body) = answer_without_body(
            addr,
            &announcing(
                path,
                "content-type: application/x-www-form-urlencoded\r\n",
                HUGE,
            ),
        )
        .await;
        assert_eq!(status, 413, "{path}: {body}");
        assert!(body.contains("larger than"), "{path}: {body}");
    }
}

/// A body of `total` bytes that is made as it is sent (never held whole), in chunks of 64 KiB.
fn lazy_body(total: u64) -> reqwest::Body {
    static CHUNK: [u8; 64 << 10] = [b'a'; 64 << 10];
    let chunks = total / CHUNK.len() as u64;
    let stream = futures_util::stream::iter(
        (0..chunks).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from_static(&CHUNK))),
    );
    reqwest::Body::wrap_stream(stream)
}

/// A body just over the 64 KiB limit, sent chunked (without a Content-Length): small enough that the server has
/// all of it when it answers, so its answer is not lost to a reset of the connection.
fn chunked_just_over_the_limit() -> reqwest::Body {
    let chunks = [vec![b' '; 64 << 10], vec![b' '; 2 << 10]];
    reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks.map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_unannounced_length_is_cut_off_at_the_limit() {
    let s = TestServer::start().await;
    // The admin API refuses it in JSON (before, it read any size: 200 MB took the server to 425 MB).
    let r = s
        .client
        .post(format!("{}/api/v1/keys", s.base))
        .bearer_auth("test-admin-token")
        .header("content-type", "application/json")
        .body(chunked_just_over_the_limit())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "request_too_large", "{v}");
    // The login form likewise, as a page.
    let r = s
        .client
        .post(format!("{}/login", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(chunked_just_over_the_limit())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("larger than"));
    // A small body still works.
    let (status, v) = s
        .admin_post("/api/v1/keys", json!({ "user": "small", "team": "t" }))
        .await;
    assert_eq!(status, 201, "{v}");
}

/// Reads from `tcp` until the server closes the connection; whatever it sent first (a 408, an answer) is
/// returned. Fails if the server keeps it open past the guard.
async fn read_to_close(tcp: &mut TcpStream, what: &str) -> String {
    let read = async {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&got).to_string(),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(GUARD, read)
        .await
        .unwrap_or_else(|_| panic!("the server kept {what} open"))
}

/// Far beyond the guard: a connection that is closed within the guard was closed by the other deadline.
const NEVER: u64 = 3600;

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_does_not_finish_its_headers_is_closed() {
    // Idle connections may stay (for longer than the test waits); headers must come within a second.
    let s = TestServer::start_with(|c| {
        c.limits.header_read_timeout_secs = 1;
        c.limits.idle_timeout_secs = NEVER;
    })
    .await;
    let addr = s.running.addr;
    // A new connection that never says anything: a client that connects has a request to send.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // A new connection that sends half a header and stops.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"POST /login HTTP/1.1\r\nhost: x\r\ncontent-ty")
        .await
        .unwrap();
    // A kept-alive connection that starts its second request and stops halfway through the headers: idle
    // connections may stay, but the second request's headers are timed from its first byte.
    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_answer(&mut second, "/healthz").await.0, 200);
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nho")
        .await
        .unwrap();
    read_to_close(&mut silent, "a silent connection").await;
    read_to_close(&mut half, "a connection with half a header").await;
    read_to_close(&mut second, "a second request with half a header").await;
    let (status, _) = s.admin_get("/healthz").await;
    assert_eq!(status, 200, "the server still answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed() {
    // Headers may take long (longer than the test waits); an idle connection is closed after a second.
    let s = TestServer::start_with(|c| {
        c.limits.header_read_timeout_secs = NEVER;
        c.limits.idle_timeout_secs = 1;
    })
    .await;
    let mut idle = TcpStream::connect(s.running.addr).await.unwrap();
    idle.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_answer(&mut idle, "/healthz").await.0, 200);
    // A second request on the same connection is answered: the connection is kept alive between them.
    idle.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_answer(&mut idle, "/healthz again").await.0, 200);
    let after = read_to_close(&mut idle, "an idle kept-alive connection").await;
    assert!(
        after.is_empty() || after.starts_with("HTTP/1.1 408"),
        "nothing but a timeout answer after the last answer: {after:?}"
    );
}

/// The resident memory of a process, in kB: now (`VmRSS`) and at its peak (`VmHWM`).
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A client that sends a request's header one short line at a time, until the server closes the connection.
async fn slow_client(addr: std::net::SocketAddr) -> bool {
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return false;
    };
    if tcp
        .write_all(b"POST /login HTTP/1.1\r\nhost: x\r\n")
        .await
        .is_err()
    {
        return true;
    }
    let mut interval = tokio::time::interval(Duration::from_millis(200));
    let mut buf = [0u8; 1024];
    for i in 0u32.. {
        tokio::select! {
            r = tcp.read(&mut buf) => {
                if matches!(r, Ok(0) | Err(_)) {
                    return true;
                }
            }
            _ = interval.tick() => {
                if tcp.write_all(format!("x-slow-{i}: 1\r\n").as_bytes()).await.is_err() {
                    return true;
                }
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_and_huge_uploads_to_every_open_route_leave_memory_bounded() {
    // The real binary, so that its memory is its own (mimalloc, as in production), with a short header timeout
    // so that the slow clients' fate is seen in a few seconds.
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nadmin_token = \"test-admin-token\"\n\
             [[providers]]\nname = \"openai\"\nkind = \"mock\"\ncatalog = true\n\
             [limits]\nheader_read_timeout_secs = 2\nidle_timeout_secs = 2\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spendgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = common::client();
    wait_healthy(&client, &base).await;

    // 200 slow clients, all at once.
    let slow: Vec<_> = (0..200).map(|_| tokio::spawn(slow_client(addr))).collect();
    // 1 GB to every route that takes a body without authentication, announced and not: sent as it is made, and
    // stopped at the first refusal or error.
    let routes = [
        "/login",
        "/logout",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
        "/api/v1/keys",
        "/api/v1/wallets",
        "/api/v1/budgets",
        "/overview",
        "/nothing-here",
    ];
    for path in routes {
        for announced in [true, false] {
            let mut req = client
                .post(format!("{base}{path}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(lazy_body(1 << 30));
            if announced {
                req = req.header("content-length", (1u64 << 30).to_string());
            }
            if let Ok(r) = tokio::time::timeout(GUARD, req.send())
                .await
                .unwrap_or_else(|_| panic!("{path}: no answer to a 1 GB upload"))
            {
                assert!(
                    r.status().is_client_error(),
                    "{path} (announced: {announced}): {}",
                    r.status()
                );
            }
        }
    }
    let mut closed = 0;
    for c in slow {
        if tokio::time::timeout(GUARD, c).await.unwrap().unwrap() {
            closed += 1;
        }
    }
    assert_eq!(closed, 200, "every slow client was disconnected");

    // A normal request still answers.
    let api = common::Api { base, client };
    let (_, key) = api.create_key("after", Some("t")).await;
    let r = api
        .chat(&key, chat_body("gpt-4o-mini", "still here?", false))
        .await;
    assert_eq!(r.status(), 200);

    let (rss, peak) = memory_kb(child.id());
    let _ = child.kill();
    let _ = child.wait();
    println!("RSS {rss} kB, peak {peak} kB");
    assert!(
        peak < 100 * 1024,
        "the server's memory peaked at {peak} kB (now {rss} kB)"
    );
}

/// Logs in with the admin token and `next` (already URL-encoded); returns the status and `Location`.
async fn login_with_next(s: &TestServer, next: &str) -> (u16, String) {
    let client = no_redirects();
    let (cookie, csrf, html) = s.login_form(&format!("?next={next}")).await;
    assert!(
        html.contains("name=\"next\" value=\"/overview\""),
        "the form carries a safe next only: {next}"
    );
    let r = client
        .post(format!("{}/login", s.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token=test-admin-token&csrf={csrf}&next={next}"))
        .send()
        .await
        .unwrap();
    let location = r
        .headers()
        .get("location")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
        .unwrap_or_default();
    (r.status().as_u16(), location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_sends_its_reader_to_this_site_only() {
    let s = TestServer::start().await;
    for next in [
        "/%09/evil.example",
        "/%0A/x",
        "/%0D%0ASet-Cookie:%20x=1",
        "//evil.example",
        "/%5Cevil.example",
        "https://evil.example",
    ] {
        assert_eq!(
            login_with_next(&s, next).await,
            (303, "/overview".to_string()),
            "next={next}"
        );
    }
    // A path on this site is kept.
    let (_, _, html) = s.login_form("?next=%2Fusage%3Fteam%3Da").await;
    assert!(html.contains("name=\"next\" value=\"/usage?team=a\""));
}

/// Asserts an `/api` error answer: its status, and a JSON body in the API's error shape.
fn api_error(got: (u16, Value), status: u16, what: &str) -> Value {
    assert_eq!(got.0, status, "{what}: {}", got.1);
    let e = &got.1["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty())
            && e["type"].is_string()
            && e["code"].is_string(),
        "{what}: not the API's error shape: {}",
        got.1
    );
    got.1
}

async fn wallets(s: &TestServer) -> Vec<Value> {
    let (status, v) = s.admin_get("/api/v1/wallets").await;
    assert_eq!(status, 200);
    v["wallets"].as_array().unwrap().clone()
}

async fn create_wallet(s: &TestServer, scope: &str, subject: Option<&str>) -> i64 {
    let (status, v) = s
        .admin_post(
            "/api/v1/wallets",
            json!({ "scope": scope, "subject": subject }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_changes_are_checked_before_anything_is_written() {
    let s = TestServer::start().await;
    // An invalid first top-up: refused, and no wallet was created.
    api_error(
        s.admin_post(
            "/api/v1/wallets",
            json!({ "scope": "team", "subject": "w", "initial_balance": "lots" }),
        )
        .await,
        400,
        "invalid initial balance",
    );
    api_error(
        s.admin_post(
            "/api/v1/wallets",
            json!({ "scope": "team", "subject": "w", "initial_balance": "99999999" }),
        )
        .await,
        400,
        "an initial balance no wallet can hold",
    );
    assert!(
        wallets(&s).await.is_empty(),
        "a refused wallet is not created"
    );
    let (status, v) = s
        .admin_post(
            "/api/v1/wallets",
            json!({ "scope": "team", "subject": "w", "initial_balance": "10" }),
        )
        .await;
    assert_eq!((status, v["balance"].as_str()), (201, Some("10.00")), "{v}");

    // Top-ups the wallet could not hold: a conflict with its balance (409) that says so, and the balance is as
    // before.
    let org = create_wallet(&s, "org", None).await;
    let topup = |id: i64, amount: &str| {
        let path = format!("/api/v1/wallets/{id}/topup");
        let body = json!({ "amount": amount });
        let s = &s;
        async move { s.admin_post(&path, body).await }
    };
    assert_eq!(topup(org, "9000000").await.0, 200);
    let e = api_error(topup(org, "9000000").await, 409, "overflowing top-up");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("at most"),
        "{e}"
    );
    let org_row = wallets(&s)
        .await
        .into_iter()
        .find(|w| w["id"] == org)
        .unwrap();
    assert_eq!(org_row["balance"], "9000000.00");

    // Unknown and impossible wallet ids.
    api_error(topup(999_999, "1").await, 404, "unknown wallet");
    api_error(topup(0, "1").await, 400, "wallet 0");
    api_error(topup(-3, "1").await, 400, "negative wallet id");
    api_error(
        s.admin_get("/api/v1/wallets/999999/ledger").await,
        404,
        "ledger of a missing wallet",
    );

    // Money moves between parent and child only: other pairs are a conflict with how the wallets stand (409).
    let team_a = v["id"].as_i64().unwrap();
    let team_b = create_wallet(&s, "team", Some("b")).await;
    let user = create_wallet(&s, "user", Some("u")).await;
    let post = |path: String, body: Value| {
        let s = &s;
        async move { s.admin_post(&path, body).await }
    };
    api_error(
        post(
            format!("/api/v1/wallets/{org}/allocate"),
            json!({ "amount": "1", "wallet": org }),
        )
        .await,
        409,
        "allocating to itself",
    );
    api_error(
        post(
            format!("/api/v1/wallets/{team_b}/reclaim"),
            json!({ "amount": "1", "wallet": team_a }),
        )
        .await,
        409,
        "reclaiming from an unrelated wallet",
    );
    api_error(
        post(
            format!("/api/v1/wallets/{user}/reclaim"),
            json!({ "amount": "1", "wallet": team_a }),
        )
        .await,
        409,
        "a child reclaiming from its parent",
    );
    api_error(
        post(
            format!("/api/v1/wallets/{org}/reclaim"),
            json!({ "amount": "1", "wallet": 424242 }),
        )
        .await,
        404,
        "reclaiming from a missing wallet",
    );
    let (status, v) = post(
        format!("/api/v1/wallets/{org}/allocate"),
        json!({ "amount": "3", "wallet": team_b }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(
        format!("/api/v1/wallets/{org}/reclaim"),
        json!({ "amount": "2", "wallet": team_b }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(
        format!("/api/v1/wallets/{team_a}/allocate"),
        json!({ "amount": "1", "wallet": user }),
    )
    .await;
    assert_eq!(status, 200, "a team's wallet gives to a user's: {v}");
    let balances: Vec<(i64, String)> = wallets(&s)
        .await
        .iter()
        .map(|w| {
            (
                w["id"].as_i64().unwrap(),
                w["balance"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        balances,
        vec![
            (team_a, "9.00".to_string()),
            (org, "8999999.00".to_string()),
            (team_b, "1.00".to_string()),
            (user, "1.00".to_string()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_error_is_json() {
    let s = TestServer::start().await;
    let delete = s
        .client
        .delete(format!("{}/api/v1/keys", s.base))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap();
    let status = delete.status().as_u16();
    api_error(
        (status, delete.json().await.unwrap_or(Value::Null)),
        405,
        "a method the route does not take",
    );
    api_error(
        s.admin_get("/api/v1/nothing-here").await,
        404,
        "an unknown route",
    );
    api_error(
        s.admin_get("/api/v1/wallets/abc/ledger").await,
        400,
        "a path that is not a number",
    );
    let id = create_wallet(&s, "org", None).await;
    api_error(
        s.admin_get(&format!("/api/v1/wallets/{id}/ledger?limit=many"))
            .await,
        400,
        "a query that cannot be read",
    );
    api_error(
        s.admin_get("/api/v1/usage/summary?window=1h&key=x").await,
        400,
        "a filter that cannot be read",
    );
    // The proxy's unknown paths and wrong methods are JSON too, in the shape of the API called.
    let get = s
        .client
        .get(format!("{}/v1/messages", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let v: Value = get.json().await.unwrap();
    assert_eq!(v["type"], "error", "Anthropic's shape on /v1/messages: {v}");
    let r = s
        .client
        .get(format!("{}/v1/nothing", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_no_team_bucket_is_not_a_payer_and_names_are_trimmed() {
    let s = TestServer::start().await;
    for (path, body) in [
        (
            "/api/v1/budgets",
            json!({ "scope": "team", "subject": "@none", "period": "month", "amount": "10" }),
        ),
        (
            "/api/v1/wallets",
            json!({ "scope": "team", "subject": "@none" }),
        ),
        (
            "/api/v1/wallets",
            json!({ "scope": "user", "subject": "@none" }),
        ),
    ] {
        let e = api_error(s.admin_post(path, body).await, 400, path);
        assert!(
            e["error"]["message"].as_str().unwrap().contains("@none"),
            "{e}"
        );
    }
    let (_, budgets) = s.admin_get("/api/v1/budgets").await;
    assert_eq!(budgets["budgets"], json!([]));
    assert!(wallets(&s).await.is_empty());

    // A key's team and user are kept trimmed, through the API and the function the CLI calls.
    let (status, v) = s
        .admin_post(
            "/api/v1/keys",
            json!({ "user": " sam ", "team": " spaced " }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        (v["user"].as_str(), v["team"].as_str()),
        (Some("sam"), Some("spaced"))
    );
    let (rec, _) =
        spendgate_gateway::keys::create_key(&*s.running.store, " cli ", Some(" spaced "), None)
            .await
            .unwrap();
    assert_eq!(
        (rec.user.as_str(), rec.team.as_deref()),
        ("cli", Some("spaced"))
    );
    // A team of spaces is no team, as an empty one is.
    let (status, v) = s
        .admin_post("/api/v1/keys", json!({ "user": "nobody", "team": "   " }))
        .await;
    assert_eq!((status, v["team"].clone()), (201, Value::Null), "{v}");
    // The budget for the trimmed team covers the keys.
    let (status, v) = s
        .admin_post(
            "/api/v1/budgets",
            json!({ "scope": "team", "subject": " spaced ", "period": "month", "amount": "10" }),
        )
        .await;
    assert_eq!(
        (status, v["subject"].as_str()),
        (201, Some("spaced")),
        "{v}"
    );
}

/// A chat completion with `key` and this workflow header; its request id.
async fn chat_in_workflow(api: &common::Api, key: &str, workflow: &str) -> String {
    let r = api
        .client
        .post(format!("{}/v1/chat/completions", api.base))
        .bearer_auth(key)
        .header("x-spendgate-workflow", workflow)
        .json(&chat_body("gpt-4o-mini", "hello", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "workflow {workflow}");
    common::request_id(&r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_labels_past_the_bound_are_recorded_as_other() {
    let bound = |c: &mut spendgate::config::Config| c.limits.max_workflows = 3;
    let s = TestServer::start_with(bound).await;
    let (_, key) = s.create_key("labeller", Some("search")).await;
    let mut sent = Vec::new();
    for label in ["wf-0", "wf-1", "wf-2", "wf-3", "wf-4", "wf-0"] {
        sent.push((label, chat_in_workflow(&s, &key, label).await));
    }
    // The first three labels are kept; the two after them are (other), and their spend logs keep what they
    // asked for; a kept label goes on working after the bound was reached.
    for (label, id) in &sent {
        let log = s.wait_for_log(id).await;
        let expected = if matches!(*label, "wf-3" | "wf-4") {
            ("(other)", json!(label))
        } else {
            (*label, Value::Null)
        };
        assert_eq!(
            (
                log["workflow"].as_str().unwrap(),
                &log["workflow_requested"]
            ),
            (expected.0, &expected.1),
            "{log}"
        );
    }
    let (_, status) = s.admin_get("/api/v1/status").await;
    assert_eq!(status["workflows"], json!({ "tracked": 3, "max": 3 }));
    let (_, v) = s
        .admin_get("/api/v1/usage/explorer?window=1h&group_by=workflow&sort=requests")
        .await;
    let mut rows: Vec<(String, u64)> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["label"].as_str().unwrap().to_string(),
                r["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [("(other)", 2), ("wf-0", 2), ("wf-1", 1), ("wf-2", 1)]
            .map(|(l, n)| (l.to_string(), n))
            .to_vec()
    );
    // A client cannot pick the bucket itself.
    let r = s
        .client
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(&key)
        .header("x-spendgate-workflow", "(other)")
        .json(&chat_body("gpt-4o-mini", "hello", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // A restart keeps the labels in use (from the store) rather than the first new ones to arrive.
    let TestServer { running, dir, .. } = s;
    running.stop().await.unwrap();
    let mut config = common::test_config(dir.path());
    bound(&mut config);
    let running = spendgate::app::start(&config).await.unwrap();
    let api = common::Api {
        base: format!("http://{}", running.addr),
        client: reqwest::Client::new(),
    };
    let fresh = chat_in_workflow(&api, &key, "wf-5").await;
    let kept = chat_in_workflow(&api, &key, "wf-2").await;
    assert_eq!(api.wait_for_log(&fresh).await["workflow"], "(other)");
    assert_eq!(api.wait_for_log(&kept).await["workflow"], "wf-2");
    running.stop().await.unwrap();
}
