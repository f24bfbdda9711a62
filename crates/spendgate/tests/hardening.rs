//! Holding the line: bodies, connections and memory stay bounded before anyone is authenticated. What the
//! admin side checks (the login's redirect, changes checked before anything is written, JSON errors) is in
//! `admin_checks.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{chat_body, free_port, wait_healthy, TestServer};
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
