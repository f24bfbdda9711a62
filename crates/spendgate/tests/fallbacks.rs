//! Fallbacks and retries by configuration, and any OpenAI-compatible upstream by configuration: a route's
//! targets are tried in order on a 5xx, a connect error or a timeout; every attempt shows on the spend log and
//! the request page; model names are mapped and prices overridden per provider; extra headers and query
//! parameters reach the upstream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use common::{catalog_cost, chat_body, picos, recording_upstream, request_id, TestServer};
use serde_json::{json, Value};
use spendgate::config::{Config, ProviderConfig, RouteConfig, TargetConfig};

fn failing_mock(name: &str) -> ProviderConfig {
    ProviderConfig {
        catalog: false,
        fault: Some("status500".into()),
        ..common::mock_provider(name)
    }
}

fn unreachable(name: &str) -> ProviderConfig {
    ProviderConfig {
        kind: "openai".into(),
        base_url: Some(format!("http://127.0.0.1:{}/v1", common::free_port())),
        catalog: false,
        ..common::mock_provider(name)
    }
}

fn route(model: &str, providers: &[&str]) -> RouteConfig {
    RouteConfig {
        model: model.into(),
        targets: providers
            .iter()
            .map(|p| TargetConfig {
                provider: (*p).into(),
                model: None,
            })
            .collect(),
        retries: 0,
        max_attempts: None,
    }
}

fn with_route(c: &mut Config, extra: Vec<ProviderConfig>, r: RouteConfig) {
    c.providers.extend(extra);
    c.routes.push(r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_falls_back_and_every_attempt_is_on_the_spend_log() {
    let s = TestServer::start_with(|c| {
        with_route(
            c,
            vec![failing_mock("primary"), unreachable("secondary")],
            route("gpt-4o-mini", &["primary", "secondary", "openai"]),
        )
    })
    .await;
    let (_, key) = s.create_key("alice", Some("support")).await;
    for stream in [false, true] {
        let res = s
            .chat(&key, chat_body("gpt-4o-mini", "fall back please", stream))
            .await;
        assert_eq!(res.status(), 200);
        let id = request_id(&res);
        let text = res.text().await.unwrap();
        assert!(
            !text.contains("failed on purpose"),
            "no byte of a failed attempt reaches the client"
        );
        let log = s.wait_for_log(&id).await;
        assert_eq!(log["status"], "ok");
        assert_eq!(log["stream"], stream);
        assert_eq!(log["attempts"], 3);
        assert_eq!(log["provider"], "openai", "the provider that answered");
        let failed = log["failed_attempts"].as_array().unwrap();
        assert_eq!(failed.len(), 2);
        assert_eq!(
            (
                failed[0]["provider"].as_str(),
                failed[0]["http_status"].as_u64()
            ),
            (Some("primary"), Some(500))
        );
        assert_eq!(
            (
                failed[1]["provider"].as_str(),
                failed[1]["http_status"].as_u64()
            ),
            (Some("secondary"), Some(502))
        );
        assert_eq!(failed[0]["model"], "gpt-4o-mini");
        assert_eq!(picos(&log["cost"]), catalog_cost(&log));
        assert!(picos(&log["cost"]) > 0);
    }

    // The request page shows the attempts.
    let logs = s.all_spend_logs("window=1h").await;
    let cookie = s.login("test-admin-token").await;
    let html = s
        .page(
            &format!("/requests/{}", logs[0]["id"].as_str().unwrap()),
            &cookie,
        )
        .await;
    assert!(html.contains("<span id=\"attempts\">3</span>"), "{html}");
    assert!(html.contains("id=\"failed-attempts\""));
    assert!(html.contains("<td>primary</td>") && html.contains("<td>secondary</td>"));
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_and_the_last_failure_is_what_the_client_gets() {
    let s = TestServer::start_with(|c| {
        let mut r = route("gpt-4o-mini", &["primary", "openai"]);
        r.retries = 2;
        r.max_attempts = Some(2);
        with_route(c, vec![failing_mock("primary")], r);
    })
    .await;
    let (_, key) = s.create_key("bob", None).await;
    let res = s
        .chat(&key, chat_body("gpt-4o-mini", "retry me", false))
        .await;
    assert_eq!(
        res.status(),
        500,
        "two attempts, both at the failing target"
    );
    let id = request_id(&res);
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        v["error"]["code"], "mock_failure",
        "the upstream's error passes through"
    );
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["status"], "upstream_error");
    assert_eq!(log["attempts"], 2);
    assert_eq!(log["provider"], "primary");
    assert_eq!(log["failed_attempts"].as_array().unwrap().len(), 1);
    assert_eq!(picos(&log["cost"]), 0, "failed calls cost nothing");
    assert_eq!(
        s.all_spend_logs("window=1h").await.len(),
        1,
        "one request, one spend log"
    );
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_falls_back_and_a_broken_answer_does_not() {
    // An upstream that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/v1", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let s = TestServer::start_with(|c| {
        let slow = ProviderConfig {
            kind: "openai".into(),
            base_url: Some(silent_url.clone()),
            read_timeout_secs: 1,
            catalog: false,
            ..common::mock_provider("slow")
        };
        with_route(c, vec![slow], route("gpt-4.1-mini", &["slow", "openai"]));
        c.routes.push(route("gpt-4o", &["openai", "anthropic"]));
    })
    .await;
    let (_, key) = s.create_key("carol", Some("search")).await;
    let res = s
        .chat(&key, chat_body("gpt-4.1-mini", "anyone there?", false))
        .await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["attempts"], 2);
    assert_eq!(log["failed_attempts"][0]["provider"], "slow");
    assert_eq!(log["failed_attempts"][0]["http_status"], 504);
    // A broken 200 answer is not a reason to call another provider (it may have been billed): no fallback.
    let res = s
        .client
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(&key)
        .json(&json!({ "model": "gpt-4o", "messages": [{ "role": "user", "content": "[mock:fault=badjson]" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    let id = request_id(&res);
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["attempts"], 1);
    assert_eq!(log["provider"], "openai");
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_compatible_upstream_gets_its_model_name_headers_query_and_price() {
    let (upstream, seen) = recording_upstream().await;
    std::env::set_var("SG_TEST_AZURE_KEY", "azure-test-provider-key");
    let s = TestServer::start_with(|c| {
        let mut azure = ProviderConfig {
            name: "azure".into(),
            kind: "openai".into(),
            base_url: Some(upstream.clone()),
            api_key_env: Some("SG_TEST_AZURE_KEY".into()),
            api_key_header: Some("api-key".into()),
            catalog: false,
            ..common::mock_provider("azure")
        };
        azure
            .query
            .insert("api-version".into(), "2024-10-21".into());
        azure
            .headers
            .insert("x-title".into(), "spendgate-test".into());
        azure
            .model_map
            .insert("gpt-4o-mini".into(), "my-gpt4o-mini-deployment".into());
        azure.prices = spendgate::config::Config::parse(
            r#"[[providers]]
name = "x"
kind = "mock"
[[providers.prices]]
model = "gpt-4o-mini"
input_per_mtok = "0.165"
output_per_mtok = "0.66"
cached_input_per_mtok = "0.0825"
source = "contract 2026"
"#,
        )
        .unwrap()
        .providers[0]
            .prices
            .clone();
        c.providers.push(azure);
    })
    .await;
    let (_, key) = s.create_key("grace", Some("platform")).await;
    let long = "a fairly long prompt that gets cached ".repeat(150);
    let res = s.chat(&key, chat_body("gpt-4o-mini", &long, false)).await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["provider"], "azure");
    assert_eq!(
        log["model"], "gpt-4o-mini",
        "spend logs keep the client's model name"
    );
    assert!(log["cached_input_tokens"].as_u64().unwrap() > 0);
    // Priced by the provider's own rates, not the catalog's.
    let t = |k: &str| i128::from(log[k].as_u64().unwrap());
    let expected = (t("input_tokens") - t("cached_input_tokens")) * 165_000
        + t("cached_input_tokens") * 82_500
        + t("output_tokens") * 660_000;
    assert_eq!(picos(&log["cost"]), expected);
    assert_ne!(picos(&log["cost"]), catalog_cost(&log));

    // The Responses API goes to the same upstream, with the same mapping.
    let res = s
        .client
        .post(format!("{}/v1/responses", s.base))
        .bearer_auth(&key)
        .json(&json!({ "model": "gpt-4o-mini", "input": "hello", "stream": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    assert!(res.text().await.unwrap().contains("response.completed"));
    let responses_log = s.wait_for_log(&id).await;
    assert_eq!(responses_log["endpoint"], "responses");
    assert_eq!(responses_log["provider"], "azure");
    assert_eq!(responses_log["usage_source"], "reported");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].path_and_query,
        "/v1/responses?api-version=2024-10-21"
    );
    assert_eq!(seen[1].body["model"], "my-gpt4o-mini-deployment");
    let r = &seen[0];
    assert_eq!(
        r.path_and_query,
        "/v1/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(r.headers["api-key"], "azure-test-provider-key");
    assert!(r.headers.get("authorization").is_none());
    assert_eq!(r.headers["x-title"], "spendgate-test");
    assert_eq!(r.body["model"], "my-gpt4o-mini-deployment");
    assert!(!log.to_string().contains("azure-test-provider-key"));
    s.running.stop().await.unwrap();
}
