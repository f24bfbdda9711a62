//! The spine over real HTTP: keys, proxying (streaming and not), exact pricing, rollups that reconcile with
//! spend logs, and clean errors for bad input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::time::Duration;

use common::reconcile::{catalog, expected_cost};
use common::{chat_body, picos, TestServer};
use futures_util::StreamExt;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_and_plain_requests_are_priced_exactly_and_reconcile() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("alice", Some("support")).await;
    let long = "please summarise this ticket ".repeat(200);
    for i in 0..10 {
        // Plain requests; one has a long prompt so cached-input pricing is exercised.
        let text = if i == 0 {
            long.clone()
        } else {
            format!("question {i}")
        };
        let res = s.chat(&key, chat_body("gpt-4o-mini", &text, false)).await;
        assert_eq!(res.status(), 200);
        assert!(res.headers().contains_key("x-spendgate-request-id"));
        let v: Value = res.json().await.unwrap();
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    }
    for i in 0..10 {
        let res = s
            .chat(
                &key,
                chat_body("gpt-4.1-mini", &format!("stream {i}"), true),
            )
            .await;
        assert_eq!(res.status(), 200);
        let body = res.text().await.unwrap();
        assert!(body.contains("data: [DONE]"), "the stream reaches its end");
        // The gateway asked the upstream for usage, and took it out again: the client did not ask for it.
        assert!(!body.contains("\"usage\""));
    }
    let waited = s
        .wait_for_summary("team=support&window=1h", Duration::from_secs(10), |v| {
            v["requests"] == 20
        })
        .await;
    println!("freshness: the 20th request was visible in the summary {waited:?} after its response ended");

    let catalog = catalog();
    let logs = s.all_spend_logs("team=support&window=1h").await;
    assert_eq!(logs.len(), 20);
    let mut sum = 0i128;
    for l in &logs {
        assert_eq!(
            picos(&l["cost"]),
            expected_cost(&catalog, l),
            "cost = tokens x catalog price: {l}"
        );
        assert_eq!(l["usage_source"], "reported");
        assert_eq!(l["price_confidence"], "exact");
        assert_eq!(l["team"], "support");
        assert_eq!(l["gateway"], "test-gw");
        sum += picos(&l["cost"]);
    }
    assert_eq!(logs.iter().filter(|l| l["stream"] == true).count(), 10);
    assert!(
        logs.iter()
            .any(|l| l["cached_input_tokens"].as_u64().unwrap() > 0),
        "the long prompt hit the cache"
    );
    let (_, summary) = s
        .admin_get("/api/v1/usage/summary?team=support&window=1h")
        .await;
    assert_eq!(picos(&summary["cost"]), sum);
    let (_, explorer) = s
        .admin_get("/api/v1/usage/explorer?group_by=team&window=1h")
        .await;
    let row = explorer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "support")
        .unwrap()
        .clone();
    assert_eq!(picos(&row["cost"]), sum);
    assert_eq!(row["requests"], 20);
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_openai_shaped_errors_and_no_spend_log() {
    let s = TestServer::start_with(|c| c.limits.max_body_bytes = 2048).await;
    let (_, key) = s.create_key("bob", None).await;
    let url = format!("{}/v1/chat/completions", s.base);
    let check = |status: u16, code: &'static str| {
        move |(got, v): (u16, Value)| {
            assert_eq!(got, status, "{v}");
            assert_eq!(v["error"]["code"], code, "{v}");
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
            assert!(v["error"]["type"].is_string());
        }
    };
    async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
    let malformed = s
        .client
        .post(&url)
        .bearer_auth(&key)
        .body("{not json")
        .header("content-type", "application/json");
    check(400, "invalid_json")(send(malformed).await);
    let no_model = s
        .client
        .post(&url)
        .bearer_auth(&key)
        .json(&serde_json::json!({"messages": []}));
    check(400, "missing_model")(send(no_model).await);
    let bad_key = s
        .client
        .post(&url)
        .bearer_auth("sk-sg-wrong")
        .json(&chat_body("gpt-4o-mini", "hi", false));
    let (status, v) = send(bad_key).await;
    check(401, "invalid_api_key")((status, v.clone()));
    assert!(
        !v.to_string().contains("sk-sg-wrong"),
        "a key is never echoed back"
    );
    check(401, "invalid_api_key")(
        send(
            s.client
                .post(&url)
                .json(&chat_body("gpt-4o-mini", "hi", false)),
        )
        .await,
    );
    let unknown =
        s.client
            .post(&url)
            .bearer_auth(&key)
            .json(&chat_body("no-such-model", "hi", false));
    check(404, "model_not_found")(send(unknown).await);
    let big = s.client.post(&url).bearer_auth(&key).json(&chat_body(
        "gpt-4o-mini",
        &"x".repeat(5000),
        false,
    ));
    check(413, "request_too_large")(send(big).await);
    let bad_wf = s
        .client
        .post(&url)
        .bearer_auth(&key)
        .header("x-spendgate-workflow", "@evil")
        .json(&chat_body("gpt-4o-mini", "hi", false));
    check(400, "invalid_workflow")(send(bad_wf).await);

    // A good request afterwards is the only spend log.
    assert_eq!(
        s.chat(&key, chat_body("gpt-4o-mini", "hi", false))
            .await
            .status(),
        200
    );
    s.wait_for_summary("window=1h", Duration::from_secs(10), |v| v["requests"] == 1)
        .await;
    assert_eq!(s.all_spend_logs("window=1h").await.len(), 1);
    // The admin API refuses requests without the admin token.
    let r = s
        .client
        .get(format!("{}/api/v1/usage/summary", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .client
        .get(format!("{}/api/v1/usage/summary", s.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a virtual key is not an admin token");
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_mixed_requests_reconcile_to_the_last_unit() {
    let s = TestServer::start().await;
    common::reconcile::mixed_requests_reconcile_to_the_last_unit(&s, 2_000).await;
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_stream_is_still_billed_with_reported_usage() {
    let s = TestServer::start_with(|c| {
        for p in &mut c.providers {
            p.chunk_delay_ms = 5;
        }
    })
    .await;
    let (_, key) = s.create_key("erin", Some("growth")).await;
    let res = s
        .chat(&key, chat_body("gpt-4o-mini", "tell me a long story", true))
        .await;
    let id = res.headers()["x-spendgate-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut body = res.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(body); // hang up after the first chunk
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["status"], "client_disconnected");
    assert_eq!(
        log["usage_source"], "reported",
        "the upstream was read to its usage"
    );
    assert!(log["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(picos(&log["cost"]), expected_cost(&catalog(), &log));
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_a_clear_error_and_a_recorded_failure() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = TestServer::start_with(|c| {
        c.providers = vec![spendgate::config::ProviderConfig {
            kind: "openai".into(),
            base_url: Some(format!("http://127.0.0.1:{port}/v1")),
            models: vec!["gpt-4o-mini".into()],
            catalog: false,
            ..common::mock_provider("openai")
        }];
    })
    .await;
    let (_, key) = s.create_key("frank", Some("data")).await;
    let res = s.chat(&key, chat_body("gpt-4o-mini", "hi", false)).await;
    assert_eq!(res.status(), 502);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_unavailable");
    s.wait_for_summary("window=1h", Duration::from_secs(10), |v| v["requests"] == 1)
        .await;
    let logs = s.all_spend_logs("window=1h").await;
    assert_eq!(logs[0]["status"], "upstream_error");
    assert_eq!(logs[0]["http_status"], 502);
    assert_eq!(logs[0]["cost"], "0.00");
    let (_, summary) = s.admin_get("/api/v1/usage/summary?window=1h").await;
    assert_eq!(summary["errors"], 1);
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_writes_every_pending_event() {
    let s = TestServer::start_with(|c| c.writer.flush_ms = 60_000).await;
    let (_, key) = s.create_key("gina", Some("ops")).await;
    for i in 0..25 {
        assert_eq!(
            s.chat(&key, chat_body("gpt-4o-mini", &format!("q{i}"), false))
                .await
                .status(),
            200
        );
    }
    let store = std::sync::Arc::clone(&s.running.store);
    let dir = s.dir;
    s.running.stop().await.unwrap();
    // The writer held them for a minute-long flush interval; shutdown must have written them anyway.
    let now = spendgate_core::time::now_ms();
    let f = spendgate_core::Filters {
        from_ms: now - 3_600_000,
        to_ms: now + 60_000,
        ..Default::default()
    };
    assert_eq!(store.summary(&f).await.unwrap().requests, 25);
    drop(dir);
}

/// While no page listens for live updates, the writer may hold a batch (here for an hour, to make it plain), and
/// readers never see that: the API, the pages and the metrics have what finished more than `flush_ms` ago
/// written before they read. The summary counts every request, the spend logs list them, the queue is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_what_a_quiet_writer_holds() {
    let s = TestServer::start_with(|c| {
        c.writer.flush_ms = 100;
        c.writer.quiet_flush_ms = 3_600_000;
    })
    .await;
    let (_, key) = s.create_key("quinn", Some("ops")).await;
    for i in 0..5 {
        let res = s
            .chat(&key, chat_body("gpt-4o-mini", &format!("q{i}"), false))
            .await;
        assert_eq!(res.status(), 200);
    }
    // Only a read that has the writer commit can see them within the hour.
    s.wait_for_summary("window=1h", Duration::from_secs(60), |v| v["requests"] == 5)
        .await;
    assert_eq!(s.all_spend_logs("window=1h").await.len(), 5);
    let (_, status) = s.admin_get("/api/v1/status").await;
    assert_eq!(status["queue"]["pending"], 0, "{status}");
    // The five waited for the read together: one commit.
    assert_eq!(status["queue"]["largest_batch"], 5, "{status}");
    s.running.stop().await.unwrap();
}
