//! A hard budget and a wallet hold whatever a request's shape: `n` completions, images, tools, every name of the
//! output limit, streams or not, and input the body only points at. The upstream here bills like OpenAI at the
//! top of what its rules allow for the request (every choice runs to its limit, every image is the largest the
//! model bills, the tools' prompt is added, the context window caps the prompt), so a hold that misses a part of
//! the shape shows as an overshoot.
//!
//! The property test draws random request shapes from a fixed seed (so a failure replays) and fires them
//! concurrently at a team with a hard budget and a wallet; neither may ever be overshot.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::time::Duration;

use axum::body::Bytes;
use common::{picos, TestServer};
use futures_util::StreamExt;
use serde_json::{json, Value};
use spendgate::config::ProviderConfig;
use spendgate_core::pricing::ModelPrice;

/// The model's limits, as the test's price declares them (gpt-4o-mini's: 128k context, 16,384 output tokens).
const CONTEXT: u64 = 128_000;
const MAX_OUTPUT: u64 = 16_384;

/// What the upstream bills for a chat request: the most the provider's rules allow for it.
fn worst_usage(body: &Value, raw_len: usize) -> (u64, u64) {
    let images = count_images(body);
    let tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let prompt = (raw_len as u64 / 2 + images * 48_169 + if tools { 346 } else { 0 }).min(CONTEXT);
    let n = body["n"].as_u64().unwrap_or(1);
    let limit = body["max_completion_tokens"]
        .as_u64()
        .or(body["max_tokens"].as_u64())
        .unwrap_or(MAX_OUTPUT);
    (prompt, n * limit)
}

fn count_images(v: &Value) -> u64 {
    match v {
        Value::Array(a) => a.iter().map(count_images).sum(),
        Value::Object(o) => {
            u64::from(o.get("type").and_then(Value::as_str) == Some("image_url"))
                + o.values().map(count_images).sum::<u64>()
        }
        _ => 0,
    }
}

/// An OpenAI-compatible upstream that bills the worst case, streamed or not.
async fn greedy_upstream() -> String {
    async fn chat(body: Bytes) -> axum::response::Response {
        use axum::response::IntoResponse;
        let v: Value = serde_json::from_slice(&body).unwrap();
        let (prompt, completion) = worst_usage(&v, body.len());
        let usage = json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion });
        let n = v["n"].as_u64().unwrap_or(1);
        let choices: Vec<Value> = (0..n)
            .map(|i| json!({ "index": i, "message": { "role": "assistant", "content": "ok" }, "finish_reason": "length" }))
            .collect();
        if v["stream"] == true {
            let mut sse = String::new();
            for i in 0..n {
                sse.push_str(&format!(
                    "data: {}\n\n",
                    json!({ "id": "c", "object": "chat.completion.chunk", "choices": [{ "index": i, "delta": { "content": "ok" }, "finish_reason": "length" }] })
                ));
            }
            if v["stream_options"]["include_usage"] == true {
                sse.push_str(&format!("data: {}\n\n", json!({ "id": "c", "object": "chat.completion.chunk", "choices": [], "usage": usage })));
            }
            sse.push_str("data: [DONE]\n\n");
            ([("content-type", "text/event-stream")], sse).into_response()
        } else {
            axum::Json(json!({ "id": "c", "object": "chat.completion", "choices": choices, "usage": usage })).into_response()
        }
    }
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// A gateway in front of the greedy upstream, pricing its model like gpt-4o-mini, with the model's context
/// window declared or not.
async fn server(upstream: &str, context_window: Option<u64>) -> TestServer {
    let upstream = upstream.to_string();
    TestServer::start_with(move |c| {
        let window = context_window.map(|w| format!("context_window = {w}\n")).unwrap_or_default();
        let price: ModelPrice = toml::from_str(&format!(
            "provider = \"greedy\"\nmodel = \"greedy-mini\"\ninput_per_mtok = \"0.15\"\noutput_per_mtok = \"0.60\"\n\
             cached_input_per_mtok = \"0.075\"\nmax_output_tokens = {MAX_OUTPUT}\n{window}"
        ))
        .unwrap();
        c.providers = vec![ProviderConfig {
            name: "greedy".into(),
            kind: "openai".into(),
            base_url: Some(upstream),
            models: vec!["greedy-mini".into()],
            prices: vec![price],
            ..ProviderConfig::default()
        }];
    })
    .await
}

async fn send(s: &TestServer, key: &str, body: &Value) -> u16 {
    let r = s
        .client
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    r.text().await.unwrap();
    status
}

/// Waits until every admitted request is recorded, then returns the team's spend.
async fn settled_spend(s: &TestServer, team: &str, admitted: usize) -> i128 {
    let q = format!("team={team}&window=1h");
    s.wait_for_summary(&q, Duration::from_secs(30), |v| {
        v["requests"] == admitted as u64
    })
    .await;
    s.all_spend_logs(&q)
        .await
        .iter()
        .map(|l| picos(&l["cost"]))
        .sum()
}

fn text(words: usize) -> String {
    "lorem ipsum ".repeat(words)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_choices_and_images_are_held_so_a_hard_budget_and_a_wallet_hold() {
    let up = greedy_upstream().await;
    let s = server(&up, Some(CONTEXT)).await;
    let (_, key) = s.create_key("u", Some("n-team")).await;
    let (st, _) = s.admin_post("/api/v1/budgets",
        json!({ "scope": "team", "subject": "n-team", "period": "day", "amount": "0.01", "hard_limit": true })).await;
    assert_eq!(st, 201);
    let (st, _) = s
        .admin_post(
            "/api/v1/wallets",
            json!({ "scope": "team", "subject": "n-team", "initial_balance": "0.01" }),
        )
        .await;
    assert_eq!(st, 201);
    // 128 choices of 10 tokens cost 1,280 output tokens: affordable, and must be held as such.
    let many = json!({ "model": "greedy-mini", "max_tokens": 10, "n": 128, "messages": [{ "role": "user", "content": "hi" }] });
    // Twenty images with max_tokens 1: the images dominate (the context window caps the prompt at $0.0192).
    let images: Vec<Value> = (0..20)
        .map(|i| json!({ "type": "image_url", "image_url": { "url": format!("https://example.invalid/{i}.png") } }))
        .collect();
    let pictures = json!({ "model": "greedy-mini", "max_tokens": 1, "messages": [{ "role": "user", "content": images }] });
    let mut admitted = 0;
    for body in [
        &many, &many, &pictures, &many, &many, &many, &many, &many, &many, &many, &many, &many,
        &many, &many,
    ] {
        match send(&s, &key, body).await {
            200 => admitted += 1,
            429 | 402 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(admitted > 0, "some requests fit");
    let spent = settled_spend(&s, "n-team", admitted).await;
    let limit = spendgate_core::Money::parse_usd("0.01").unwrap().picos();
    assert!(
        spent <= limit,
        "spend {spent} overshot the hard budget {limit}"
    );
    let (_, list) = s.admin_get("/api/v1/wallets").await;
    assert!(picos(&list["wallets"][0]["balance"]) >= 0, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_the_body_only_points_at_is_refused_under_a_hard_budget_when_no_context_window_bounds_it(
) {
    let up = greedy_upstream().await;
    let s = server(&up, None).await;
    let (_, free) = s.create_key("u", Some("free")).await;
    let (_, capped) = s.create_key("v", Some("capped")).await;
    s.admin_post("/api/v1/budgets",
        json!({ "scope": "team", "subject": "capped", "period": "day", "amount": "5", "hard_limit": true })).await;
    let body = json!({ "model": "greedy-mini", "max_tokens": 5, "web_search_options": {}, "messages": [{ "role": "user", "content": "news" }] });
    assert_eq!(
        send(&s, &free, &body).await,
        200,
        "no hard control: nothing to protect"
    );
    let r = s
        .client
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(&capped)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unbounded_request", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("context_window"));
}

/// One random request shape.
fn random_request(rng: &mut fastrand::Rng) -> Value {
    let mut content: Vec<Value> = vec![json!({ "type": "text", "text": text(rng.usize(1..400)) })];
    for i in 0..[0, 0, 0, 1, 3, 8][rng.usize(0..6)] {
        content.push(json!({ "type": "image_url", "image_url": { "url": format!("https://example.invalid/{i}.png"), "detail": "high" } }));
    }
    let mut body =
        json!({ "model": "greedy-mini", "messages": [{ "role": "user", "content": content }] });
    match rng.usize(0..4) {
        0 => {}
        1 => body["max_tokens"] = json!(rng.u64(1..3_000)),
        2 => body["max_completion_tokens"] = json!(rng.u64(1..3_000)),
        _ => {
            body["max_tokens"] = json!(rng.u64(1..3_000));
            body["max_completion_tokens"] = json!(rng.u64(1..3_000));
        }
    }
    if let Some(n) = [None, None, Some(1), Some(2), Some(7), Some(64)][rng.usize(0..6)] {
        body["n"] = json!(n);
    }
    if rng.bool() {
        body["tools"] = json!([{ "type": "function", "function": { "name": "f", "parameters": { "type": "object" } } }]);
    }
    if rng.bool() {
        body["stream"] = json!(true);
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_request_shapes_never_overshoot_a_hard_budget_or_a_wallet_under_concurrency() {
    let up = greedy_upstream().await;
    let s = server(&up, Some(CONTEXT)).await;
    for seed in [7_u64, 2026, 90_210] {
        let team = format!("prop-{seed}");
        let (_, key) = s.create_key("p", Some(&team)).await;
        let (st, _) = s.admin_post("/api/v1/budgets",
            json!({ "scope": "team", "subject": team, "period": "day", "amount": "0.05", "hard_limit": true })).await;
        assert_eq!(st, 201);
        let (st, w) = s
            .admin_post(
                "/api/v1/wallets",
                json!({ "scope": "team", "subject": team, "initial_balance": "0.04" }),
            )
            .await;
        assert_eq!(st, 201);
        let mut rng = fastrand::Rng::with_seed(seed);
        let bodies: Vec<Value> = (0..120).map(|_| random_request(&mut rng)).collect();
        let statuses: Vec<u16> = futures_util::stream::iter(bodies.iter())
            .map(|b| send(&s, &key, b))
            .buffer_unordered(16)
            .collect()
            .await;
        let admitted = statuses.iter().filter(|&&c| c == 200).count();
        assert!(
            statuses.iter().all(|c| [200, 402, 429].contains(c)),
            "seed {seed}: {statuses:?}"
        );
        assert!(
            admitted > 0,
            "seed {seed}: nothing fit, so nothing was tested"
        );
        assert!(
            admitted < statuses.len(),
            "seed {seed}: nothing was refused, so the limits were never tested"
        );
        let spent = settled_spend(&s, &team, admitted).await;
        let budget = spendgate_core::Money::parse_usd("0.05").unwrap().picos();
        assert!(
            spent <= budget,
            "seed {seed}: spend {spent} overshot the hard budget {budget}"
        );
        let (_, list) = s.admin_get("/api/v1/wallets").await;
        let wallet = list["wallets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == w["id"])
            .unwrap();
        assert!(
            picos(&wallet["balance"]) >= 0,
            "seed {seed}: the wallet went below zero: {wallet}"
        );
        println!(
            "seed {seed}: {admitted} of {} admitted, spend {spent} pico",
            statuses.len()
        );
    }
}
