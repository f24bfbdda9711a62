//! Fault tests: a gateway killed with SIGKILL under load, a store that cannot be written for a while, a thousand
//! clients hanging up mid-stream, and an upstream that misbehaves in every way the mock can. Each is bounded in
//! time and checks that nothing is lost and nothing is counted twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{chat_body, free_port, picos, wait_healthy, TestServer};
use futures_util::StreamExt;
use serde_json::{json, Value};

fn start_binary(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_spendgate"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn admin_get(client: &reqwest::Client, base: &str, path: &str) -> Value {
    client
        .get(format!("{base}{path}"))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_answered_request_and_duplicates_none() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("spendgate.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ngateway_name = \"crashy\"\nadmin_token = \"test-admin-token\"\n\
             [writer]\nflush_ms = 50\n\
             [[providers]]\nname = \"openai\"\nkind = \"mock\"\ncatalog = true\nchunk_delay_ms = 1\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let client = common::client();
    let mut child = start_binary(&config);
    wait_healthy(&client, &base).await;
    let key: Value = client
        .post(format!("{base}/api/v1/keys"))
        .bearer_auth("test-admin-token")
        .json(&json!({ "user": "load", "team": "crash" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_string();

    // Sixteen clients send requests back to back; every fully answered request's id is kept.
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..16 {
        let (client, base, key, answered, stop) = (
            client.clone(),
            base.clone(),
            key.clone(),
            Arc::clone(&answered),
            Arc::clone(&stop),
        );
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let stream = (w + i).is_multiple_of(2);
                let body = chat_body("gpt-4o-mini", &format!("worker {w} request {i}"), stream);
                let Ok(r) = client
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                else {
                    continue;
                };
                let id = r
                    .headers()
                    .get("x-spendgate-request-id")
                    .map(|v| v.to_str().unwrap().to_string());
                let ok = r.status() == 200;
                let Ok(text) = r.text().await else { continue };
                // A stream counts as answered only if the client saw its end.
                if ok && (!stream || text.contains("[DONE]")) {
                    answered.lock().unwrap().push(id.unwrap());
                }
            }
        }));
    }
    let t0 = Instant::now();
    while answered.lock().unwrap().len() < 400 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the load did not get going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL: no chance to flush anything
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let answered: Vec<String> = answered.lock().unwrap().clone();

    let mut child = start_binary(&config);
    wait_healthy(&client, &base).await;
    let mut logs = Vec::new();
    let mut cursor = String::new();
    loop {
        let v = admin_get(
            &client,
            &base,
            &format!("/api/v1/spend-logs?window=1h&limit=1000&cursor={cursor}"),
        )
        .await;
        logs.extend(
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["id"].as_str().unwrap().to_string()),
        );
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &logs {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    assert!(
        counts.values().all(|n| *n == 1),
        "no spend log is duplicated"
    );
    let missing: Vec<_> = answered
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    println!(
        "kill -9: {} answered before the kill, {} spend logs after restart, {} missing",
        answered.len(),
        logs.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "answered requests without a spend log: {missing:?}"
    );
    let summary = admin_get(&client, &base, "/api/v1/usage/summary?window=1h").await;
    assert_eq!(
        summary["requests"].as_u64().unwrap() as usize,
        logs.len(),
        "rollups agree with the spend logs"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_written_for_a_while_loses_nothing() {
    let s = TestServer::start_with(|c| c.store.busy_timeout_ms = 50).await;
    let (_, key) = s.create_key("outage", Some("ops")).await;
    // Another process holds the database's write lock: every write the gateway tries fails while it does.
    let lock = rusqlite::Connection::open(s.dir.path().join("spendgate.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let results = futures_util::stream::iter(0..200)
        .map(|i| {
            let (client, base, key) = (s.client.clone(), s.base.clone(), key.clone());
            async move {
                let body = chat_body("gpt-4o-mini", &format!("during the outage {i}"), i % 2 == 0);
                let r = client
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let ok = r.status() == 200;
                let _ = r.bytes().await.unwrap();
                ok
            }
        })
        .buffer_unordered(20)
        .collect::<Vec<bool>>()
        .await;
    assert!(
        results.iter().all(|ok| *ok),
        "traffic keeps flowing while the store is down"
    );
    // The queue state says so.
    let t0 = Instant::now();
    loop {
        let (_, st) = s.admin_get("/api/v1/status").await;
        if st["queue"]["pending"].as_u64().unwrap() > 0
            && st["queue"]["failed_writes"].as_u64().unwrap() > 0
        {
            assert!(st["queue"]["last_error"].is_string());
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the queue never showed the outage: {st}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    s.wait_for_summary("window=1h", Duration::from_secs(30), |v| {
        v["requests"] == 200
    })
    .await;
    let logs = s.all_spend_logs("window=1h").await;
    let ids: HashSet<_> = logs.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(
        (logs.len(), ids.len()),
        (200, 200),
        "nothing lost, nothing duplicated"
    );
    let (_, summary) = s.admin_get("/api/v1/usage/summary?window=1h").await;
    assert_eq!(
        picos(&summary["cost"]),
        logs.iter().map(|l| picos(&l["cost"])).sum::<i128>()
    );
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_hanging_up_mid_stream_are_each_billed_with_reported_usage() {
    let s = TestServer::start_with(|c| {
        for p in &mut c.providers {
            p.chunk_delay_ms = 1;
        }
    })
    .await;
    let (_, key) = s.create_key("flaky", Some("mobile")).await;
    let ids = futures_util::stream::iter(0..1000u64)
        .map(|i| {
            let (client, base, key) = (s.client.clone(), s.base.clone(), key.clone());
            async move {
                let body = chat_body("gpt-4o-mini", &format!("story {i}"), true);
                let r = client
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let id = r.headers()["x-spendgate-request-id"]
                    .to_str()
                    .unwrap()
                    .to_string();
                // Hang up after a pseudo-random number of chunks (zero: right after the headers).
                let keep = (i * 7919) % 40;
                let mut stream = r.bytes_stream();
                for _ in 0..keep {
                    if stream.next().await.is_none() {
                        break;
                    }
                }
                drop(stream);
                id
            }
        })
        .buffer_unordered(50)
        .collect::<Vec<String>>()
        .await;
    s.wait_for_summary("window=1h", Duration::from_secs(60), |v| {
        v["requests"] == 1000
    })
    .await;
    let logs = s.all_spend_logs("window=1h").await;
    let by_id: HashMap<_, _> = logs
        .iter()
        .map(|l| (l["id"].as_str().unwrap().to_string(), l))
        .collect();
    let catalog =
        spendgate_core::Catalog::with_overrides(vec![], spendgate_core::UnknownModelPolicy::Refuse)
            .unwrap();
    let price = catalog.get("gpt-4o-mini").unwrap();
    let mut disconnected = 0;
    for id in &ids {
        let l = by_id
            .get(id)
            .unwrap_or_else(|| panic!("request {id} has no spend log"));
        assert!(
            l["status"] == "client_disconnected" || l["status"] == "ok",
            "{l}"
        );
        disconnected += usize::from(l["status"] == "client_disconnected");
        assert_eq!(
            l["usage_source"], "reported",
            "read to the end upstream, so the provider's usage is billed"
        );
        let usage = spendgate_core::Usage {
            input_tokens: l["input_tokens"].as_u64().unwrap(),
            output_tokens: l["output_tokens"].as_u64().unwrap(),
            cached_input_tokens: l["cached_input_tokens"].as_u64().unwrap(),
            cache_write_tokens: 0,
            ..spendgate_core::Usage::default()
        };
        assert!(usage.output_tokens > 0);
        assert_eq!(picos(&l["cost"]), price.price(&usage).cost.picos());
    }
    println!("disconnects: {disconnected} of 1000 hung up before the end");
    assert!(disconnected > 500);
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_give_clear_errors_and_correct_records() {
    // The mock served over real HTTP, behind an OpenAI-compatible provider with a short read timeout.
    let mock =
        spendgate_gateway::providers::MockProvider::new(spendgate_gateway::providers::MockConfig {
            name: "mock".into(),
            ..Default::default()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            spendgate_gateway::mock_upstream_router(Arc::new(mock)),
        )
        .await
    });
    let s = TestServer::start_with(|c| {
        c.providers = vec![spendgate::config::ProviderConfig {
            kind: "openai".into(),
            base_url: Some(upstream.clone()),
            read_timeout_secs: 1,
            ..common::mock_provider("openai")
        }];
    })
    .await;
    let (_, key) = s.create_key("faulty", Some("qa")).await;
    let cases = [
        (
            "status500",
            false,
            500,
            Some("mock_failure"),
            "upstream_error",
        ),
        (
            "slow",
            false,
            504,
            Some("upstream_timeout"),
            "upstream_error",
        ),
        (
            "badjson",
            false,
            502,
            Some("upstream_bad_response"),
            "upstream_error",
        ),
        ("nousage", false, 200, None, "ok"),
        ("nousage", true, 200, None, "ok"),
        ("truncate", true, 200, None, "upstream_error"),
    ];
    for (fault, stream, status, code, record) in cases {
        let body = chat_body(
            "gpt-4o-mini",
            &format!("please misbehave [mock:fault={fault}]"),
            stream,
        );
        let r = s.chat(&key, body).await;
        assert_eq!(r.status().as_u16(), status, "{fault}");
        let id = r.headers()["x-spendgate-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let text = r.text().await.unwrap();
        if let Some(code) = code {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["code"], code, "{fault}: {v}");
            assert!(v["error"]["message"].as_str().unwrap().len() > 10);
        }
        let log = s.wait_for_log(&id).await;
        assert_eq!(log["status"], record, "{fault} (stream: {stream}): {log}");
        match (fault, record) {
            (_, "upstream_error") if fault != "truncate" => {
                assert_eq!(
                    log["cost"], "0.00",
                    "a failed call that delivered nothing costs nothing"
                );
                assert_eq!(log["http_status"].as_u64().unwrap(), u64::from(status));
            }
            _ => {
                assert_eq!(
                    log["usage_source"], "estimated",
                    "{fault}: no usage came back, so tokens were counted"
                );
                assert!(
                    picos(&log["cost"]) > 0,
                    "{fault}: what was delivered is billed"
                );
            }
        }
        assert!(
            log["error"].is_string(),
            "{fault}: the record says what went wrong"
        );
    }
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_limited_budgets_can_fail_closed_while_the_store_is_down() {
    let s = TestServer::start_with(|c| {
        c.store.busy_timeout_ms = 50;
        c.limits.fail_closed_for_hard_limits = true;
    })
    .await;
    let (_, capped) = s.create_key("cap", Some("capped")).await;
    let (_, free) = s.create_key("free", Some("open")).await;
    let r = s
        .client
        .post(format!("{}/api/v1/budgets", s.base))
        .bearer_auth("test-admin-token")
        .json(&json!({ "scope": "team", "subject": "capped", "period": "day", "amount": "100", "hard_limit": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let lock = rusqlite::Connection::open(s.dir.path().join("spendgate.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    assert_eq!(
        s.chat(&free, chat_body("gpt-4o-mini", "before", false))
            .await
            .status(),
        200
    );
    let t0 = Instant::now();
    loop {
        let (_, st) = s.admin_get("/api/v1/status").await;
        if st["queue"]["failed_writes"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the store never failed: {st}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = s
        .chat(&capped, chat_body("gpt-4o-mini", "during", false))
        .await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "store_unavailable");
    assert_eq!(
        s.chat(&free, chat_body("gpt-4o-mini", "during", false))
            .await
            .status(),
        200,
        "others flow"
    );
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let t0 = Instant::now();
    loop {
        let r = s
            .chat(&capped, chat_body("gpt-4o-mini", "after", false))
            .await;
        if r.status() == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the capped team never got through again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.wait_for_summary("window=1h", Duration::from_secs(20), |v| v["requests"] == 3)
        .await;
    s.running.stop().await.unwrap();
}
