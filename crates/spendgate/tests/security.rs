//! Secrets stay secret, hostile text stays text, and every limit answers with a clear error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{chat_body, free_port, wait_healthy, TestServer};
use futures_util::StreamExt;
use serde_json::{json, Value};

const PROVIDER_SECRET: &str = "sk-provider-NEVER-PRINT-4f2a9c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_and_virtual_keys_never_appear_in_output_responses_or_the_database() {
    // A real upstream (the mock over HTTP) that needs the provider key, and the real binary with debug logging.
    let mock = spendgate_gateway::providers::MockProvider::new(Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            spendgate_gateway::mock_upstream_router(Arc::new(mock)),
        )
        .await
    });
    let dead = free_port();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nadmin_token = \"test-admin-token\"\n\
             [[providers]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"{upstream}\"\napi_key_env = \"SG_TEST_PROVIDER_KEY\"\nmodels = [\"gpt-4o-mini\"]\n\
             [[providers]]\nname = \"down\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{dead}/v1\"\napi_key_env = \"SG_TEST_PROVIDER_KEY\"\nmodels = [\"gpt-4.1\"]\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spendgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("SG_TEST_PROVIDER_KEY", PROVIDER_SECRET)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = common::client();
    wait_healthy(&client, &base).await;
    let mut seen = String::new();
    let created: Value = client
        .post(format!("{base}/api/v1/keys"))
        .bearer_auth("test-admin-token")
        .json(&json!({ "user": "sam", "team": "sec" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let wrong_key = "sk-sg-WRONGwrongWRONGwrongWRONGwrong0000000000";
    for (k, model, stream) in [
        (&key as &str, "gpt-4o-mini", false),
        (&key, "gpt-4o-mini", true),
        (&key, "gpt-4.1", false),
        (wrong_key, "gpt-4o-mini", false),
    ] {
        let r = client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(k)
            .json(&chat_body(model, "hello", stream))
            .send()
            .await
            .unwrap();
        seen.push_str(&format!("{:?}", r.headers()));
        seen.push_str(&r.text().await.unwrap());
    }
    let r = client
        .get(format!("{base}/v1/models"))
        .bearer_auth(wrong_key)
        .send()
        .await
        .unwrap();
    seen.push_str(&r.text().await.unwrap());
    for path in [
        "/api/v1/spend-logs?window=1h",
        "/api/v1/usage/explorer?group_by=key",
        "/api/v1/keys",
        "/api/v1/status",
        "/login",
    ] {
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth("test-admin-token")
            .send()
            .await
            .unwrap();
        seen.push_str(&r.text().await.unwrap());
    }
    // Stop it gracefully so that everything is written, then read all it printed.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child.wait().unwrap();
    assert!(
        out.contains("spendgate is listening"),
        "the log was captured"
    );
    assert!(
        seen.contains("\"status\":\"upstream_error\"") || seen.contains("upstream_error"),
        "the failure path ran"
    );
    let mut db = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            db.extend(std::fs::read(&p).unwrap());
        }
    }
    let db = String::from_utf8_lossy(&db);
    for secret in [PROVIDER_SECRET, key.as_str(), wrong_key] {
        assert!(!out.contains(secret), "a secret is in the process output");
        assert!(!seen.contains(secret), "a secret is in an API answer");
        assert!(
            !db.contains(secret),
            "a secret is stored in the data directory"
        );
    }
    assert!(
        !String::from_utf8_lossy(&std::fs::read(dir.path().join("data/spendgate.db")).unwrap())
            .contains("hello"),
        "no prompt in the database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_and_html_in_every_free_text_field_stay_plain_text() {
    let s = TestServer::start_with(|c| c.open_pages = true).await;
    let team = "<script>alert(1)</script>";
    let user = "'; DROP TABLE spend_logs; --";
    let workflow = "\" OR 1=1 -- <img src=x onerror=alert(2)>";
    let (_, key) = s.create_key(user, Some(team)).await;
    let r = s
        .client
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(&key)
        .header("x-spendgate-workflow", workflow)
        .json(&chat_body("gpt-4o-mini", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.wait_for_summary("window=1h", Duration::from_secs(10), |v| v["requests"] == 1)
        .await;
    let (_, e) = s
        .admin_get("/api/v1/usage/explorer?group_by=team&window=1h")
        .await;
    assert_eq!(e["rows"][0]["label"], team, "names are kept exactly");
    let (_, logs) = s.admin_get("/api/v1/spend-logs?window=1h").await;
    assert_eq!(logs["items"][0]["user"], user);
    assert_eq!(logs["items"][0]["workflow"], workflow);
    // Filtering by the hostile values works and matches exactly one request (parameters, not SQL text).
    let q = |k: &str, v: &str| format!("/api/v1/usage/summary?window=1h&{k}={}", urlencode(v));
    for (k, v) in [("team", team), ("user", user), ("workflow", workflow)] {
        let (_, sum) = s.admin_get(&q(k, v)).await;
        assert_eq!(sum["requests"], 1, "filter {k}");
    }
    let (_, sum) = s.admin_get(&q("user", "' OR '1'='1")).await;
    assert_eq!(sum["requests"], 0);
    // Pages show them as text.
    for path in [
        "/usage?window=1h&group_by=team",
        "/usage?window=1h&group_by=workflow",
        "/overview",
    ] {
        let html = s
            .client
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !html.contains("<script>alert(1)"),
            "{path} renders the team name as markup"
        );
        assert!(
            !html.contains("<img src=x"),
            "{path} renders the workflow as markup"
        );
    }
    let html = s
        .client
        .get(format!("{}/usage?window=1h&group_by=team", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the team name is shown, escaped"
    );
    s.running.stop().await.unwrap();
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_answers_with_a_clear_error() {
    let s = TestServer::start_with(|c| {
        c.limits.max_header_bytes = 4096;
        c.limits.max_streams_per_key = 2;
        c.limits.max_stream_seconds = 1;
        for p in &mut c.providers {
            p.chunk_delay_ms = 100;
        }
    })
    .await;
    let (_, key) = s.create_key("lim", Some("its")).await;
    let url = format!("{}/v1/chat/completions", s.base);
    // Headers.
    let r = s
        .client
        .post(&url)
        .bearer_auth(&key)
        .header("x-padding", "a".repeat(5000))
        .json(&chat_body("gpt-4o-mini", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "headers_too_large");
    // Concurrent streams: two open, the third refused.
    let open1 = s.chat(&key, chat_body("gpt-4o-mini", "one", true)).await;
    let open2 = s.chat(&key, chat_body("gpt-4o-mini", "two", true)).await;
    assert_eq!(
        (open1.status(), open2.status()),
        (reqwest::StatusCode::OK, reqwest::StatusCode::OK)
    );
    let third = s.chat(&key, chat_body("gpt-4o-mini", "three", true)).await;
    assert_eq!(third.status(), 429);
    let v: Value = third.json().await.unwrap();
    assert_eq!(v["error"]["code"], "too_many_streams");
    // Stream duration: 100 ms a chunk runs past the one-second limit and is cut, with a record saying so.
    let id = open1.headers()["x-spendgate-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut body = open1.bytes_stream();
    let mut cut = false;
    while let Some(chunk) = body.next().await {
        if chunk.is_err() {
            cut = true;
            break;
        }
    }
    assert!(cut, "the stream was cut at the time limit");
    drop(open2);
    let log = s.wait_for_log(&id).await;
    assert!(log["error"].as_str().unwrap().contains("limit"), "{log}");
    // With both streams gone, a new one is accepted again.
    let t0 = Instant::now();
    loop {
        let r = s.chat(&key, chat_body("gpt-4o-mini", "again", true)).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the stream slots were not freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.running.stop().await.unwrap();
}
