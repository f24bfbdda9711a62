//! Fidelity to what real clients send and read: each test here failed on the gateway before its fix (see the
//! closing note of the issue "Real clients, real traffic").
//!
//! - a chat stream gets exactly the chunks its client asked for (no usage chunk it did not request), while the
//!   gateway still bills the provider's own usage;
//! - dated snapshots, other aliases and `provider/model` names are routed, to the provider the catalog names;
//! - every unmatched answer on `/v1` is JSON in the client's API shape;
//! - `/v1/models` lists only what the client can call, in its API's shape;
//! - a request whose usage was estimated is never marked exact.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use common::{catalog_cost, chat_body, mock_provider, request_id, TestServer};
use serde_json::{json, Value};
use spendgate::config::ProviderConfig;

/// Sends a request and reads its answer as JSON.
async fn json_of(req: reqwest::RequestBuilder) -> Value {
    req.send().await.unwrap().json().await.unwrap()
}

/// The `data:` payloads of an SSE body.
fn events(body: &str) -> Vec<&str> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_include_usage_gets_no_usage_chunk_but_is_billed_from_the_providers_usage()
{
    let s = TestServer::start().await;
    let (_, key) = s.create_key("u", Some("t")).await;

    let res = s
        .chat(&key, chat_body("gpt-4o-mini", "tell me a story", true))
        .await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let body = res.text().await.unwrap();
    let chunks = events(&body);
    assert_eq!(chunks.last(), Some(&"[DONE]"), "{body}");
    for c in &chunks[..chunks.len() - 1] {
        let v: Value = serde_json::from_str(c).unwrap();
        // What `chunk.choices[0].delta.content` needs: a choice on every chunk, and no usage member at all.
        assert!(
            v["choices"].as_array().is_some_and(|a| !a.is_empty()),
            "a chunk without choices reached a client that did not ask for usage: {c}"
        );
        assert!(
            v.get("usage").is_none(),
            "usage the client did not ask for: {c}"
        );
    }
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["usage_source"], "reported", "{log}");
    assert_eq!(log["price_confidence"], "exact");
    assert!(log["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(common::picos(&log["cost"]), catalog_cost(&log));

    // `include_usage: false` is the same as not asking.
    let mut b = chat_body("gpt-4o-mini", "tell me a story", true);
    b["stream_options"] = json!({ "include_usage": false });
    let body = s.chat(&key, b).await.text().await.unwrap();
    assert!(!body.contains("\"usage\""), "{body}");

    // A client that asks gets the usage chunk, as the provider sends it.
    let mut b = chat_body("gpt-4o-mini", "tell me a story", true);
    b["stream_options"] = json!({ "include_usage": true });
    let body = s.chat(&key, b).await.text().await.unwrap();
    let chunks = events(&body);
    let usage: Value = serde_json::from_str(chunks[chunks.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]), "{body}");
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dated_snapshots_aliases_and_provider_prefixes_are_routed_and_priced() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("u", Some("t")).await;
    for model in [
        "gpt-4o-mini-2024-07-18",
        "gpt-5-2025-08-07",
        "openai/gpt-4o-mini",
    ] {
        let res = s.chat(&key, chat_body(model, "hi", false)).await;
        assert_eq!(res.status(), 200, "{model}: {}", res.text().await.unwrap());
        let log = s.wait_for_log(&request_id(&res)).await;
        assert_eq!(log["provider"], "openai", "{model}");
        assert_eq!(common::picos(&log["cost"]), catalog_cost(&log), "{model}");
        if model == "openai/gpt-4o-mini" {
            assert_eq!(
                log["model"], "gpt-4o-mini",
                "one model, however it is spelled"
            );
        }
    }
    for model in [
        "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5-20251001",
        "anthropic/claude-sonnet-4-5",
    ] {
        let res = s.messages(&key, json!({ "model": model, "max_tokens": 50, "messages": [{ "role": "user", "content": "hi" }] })).await;
        assert_eq!(res.status(), 200, "{model}: {}", res.text().await.unwrap());
        let log = s.wait_for_log(&request_id(&res)).await;
        assert_eq!(log["provider"], "anthropic", "{model}");
        assert_eq!(common::picos(&log["cost"]), catalog_cost(&log), "{model}");
    }
    // A provider prefix that names no configured provider is still an unknown model.
    let res = s
        .chat(&key, chat_body("nobody/gpt-4o-mini", "hi", false))
        .await;
    assert_eq!(res.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_default_provider_a_catalog_model_goes_to_the_provider_the_catalog_names() {
    let s = TestServer::start_with(|c| {
        let mut openai = mock_provider("openai");
        openai.catalog = false;
        openai.default = true;
        let mut anthropic = mock_provider("anthropic");
        anthropic.catalog = false;
        c.providers = vec![openai, anthropic];
    })
    .await;
    let (_, key) = s.create_key("u", None).await;
    for (model, provider, path) in [
        ("claude-haiku-4-5-20251001", "anthropic", "/v1/messages"),
        ("anthropic/claude-haiku-4-5", "anthropic", "/v1/messages"),
        ("gpt-4o-mini-2024-07-18", "openai", "/v1/chat/completions"),
    ] {
        let res = s
            .client
            .post(format!("{}{path}", s.base))
            .header("x-api-key", &key)
            .json(&json!({ "model": model, "max_tokens": 20, "messages": [{ "role": "user", "content": "hi" }] }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{model}");
        let log = s.wait_for_log(&request_id(&res)).await;
        assert_eq!(log["provider"], provider, "{model}");
    }
}

/// A server with a real Anthropic provider (never called: listing needs only what it speaks) beside the mock
/// serving OpenAI's models.
async fn openai_and_anthropic() -> TestServer {
    TestServer::start_with(|c| {
        c.providers = vec![
            mock_provider("openai"),
            ProviderConfig {
                name: "anthropic".into(),
                kind: "anthropic".into(),
                catalog: true,
                base_url: Some("http://127.0.0.1:9/v1".into()),
                ..ProviderConfig::default()
            },
        ];
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_what_each_client_can_call_in_its_apis_shape() {
    let s = openai_and_anthropic().await;
    let (_, key) = s.create_key("u", None).await;
    let get = |path: &str, anthropic: bool| {
        let r = s.client.get(format!("{}{path}", s.base));
        if anthropic {
            r.header("x-api-key", &key)
                .header("anthropic-version", "2023-06-01")
        } else {
            r.bearer_auth(&key)
        }
    };
    let openai: Value = json_of(get("/v1/models", false)).await;
    assert_eq!(openai["object"], "list");
    let ids: Vec<&str> = openai["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"gpt-4o-mini") && ids.contains(&"gpt-4o-mini-2024-07-18"),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"claude-haiku-4-5"),
        "OpenAI clients call Claude through chat completions (translated): {ids:?}"
    );
    assert_eq!(openai["data"][0]["object"], "model");

    let page: Value = json_of(get("/v1/models?limit=2", true)).await;
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{page}");
    assert_eq!(data[0]["type"], "model");
    assert!(data[0]["created_at"].is_string() && data[0]["display_name"].is_string());
    assert_eq!(page["has_more"], true);
    assert_eq!(page["first_id"], data[0]["id"]);
    // Paging through `after_id` reaches every Claude model once, and nothing else.
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let q = if after.is_empty() {
            "/v1/models?limit=3".to_string()
        } else {
            format!("/v1/models?limit=3&after_id={after}")
        };
        let p: Value = json_of(get(&q, true)).await;
        all.extend(
            p["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string()),
        );
        if p["has_more"] != true {
            break;
        }
        after = p["last_id"].as_str().unwrap().to_string();
    }
    // Anthropic clients call GPT models through Messages (translated), but no embedding model.
    assert!(all.iter().any(|m| m == "gpt-4o-mini"), "{all:?}");
    assert!(
        !all.iter().any(|m| m.starts_with("text-embedding")),
        "{all:?}"
    );
    assert!(
        all.contains(&"claude-haiku-4-5-20251001".to_string()),
        "aliases are listed: {all:?}"
    );

    // One model: found in the client's shape, or a 404 in that shape.
    let one: Value = json_of(get("/v1/models/gpt-4o-mini-2024-07-18", false)).await;
    assert_eq!(
        (one["id"].as_str(), one["object"].as_str()),
        (Some("gpt-4o-mini-2024-07-18"), Some("model"))
    );
    let one: Value = json_of(get("/v1/models/anthropic/claude-haiku-4-5", true)).await;
    assert_eq!(one["type"], "model", "{one}");
    let one: Value = json_of(get("/v1/models/claude-haiku-4-5", false)).await;
    assert_eq!(
        one["object"], "model",
        "callable through chat completions: {one}"
    );
    let missing = get("/v1/models/text-embedding-3-small", true)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let v: Value = missing.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "not_found_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unmatched_answer_on_v1_is_json_in_the_clients_shape() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("u", None).await;
    let cases: [(&str, &str, bool, u16, &str); 8] = [
        (
            "POST",
            "/v1/images/generations",
            false,
            404,
            "unsupported_endpoint",
        ),
        (
            "POST",
            "/v1/audio/speech",
            false,
            404,
            "unsupported_endpoint",
        ),
        (
            "POST",
            "/v1/messages/batches",
            true,
            404,
            "unsupported_endpoint",
        ),
        ("POST", "/v1/no/such/thing", false, 404, "unknown_route"),
        ("POST", "/chat/completions", false, 404, "unknown_route"),
        (
            "GET",
            "/v1/chat/completions",
            false,
            405,
            "method_not_allowed",
        ),
        ("GET", "/v1/messages", true, 405, "method_not_allowed"),
        ("DELETE", "/v1/models", false, 405, "method_not_allowed"),
    ];
    for (method, path, anthropic, status, code) in cases {
        let mut r = s
            .client
            .request(method.parse().unwrap(), format!("{}{path}", s.base))
            .json(&json!({ "model": "gpt-4o-mini" }));
        r = if anthropic {
            r.header("x-api-key", &key)
                .header("anthropic-version", "2023-06-01")
        } else {
            r.bearer_auth(&key)
        };
        let res = r.send().await.unwrap();
        assert_eq!(res.status(), status, "{method} {path}");
        let v: Value = res
            .json()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON: {e}"));
        if anthropic {
            assert_eq!(v["type"], "error", "{method} {path}: {v}");
            assert_eq!(v["error"]["code"], code, "{method} {path}: {v}");
            assert!(v["error"]["type"].is_string());
        } else {
            assert_eq!(v["error"]["code"], code, "{method} {path}: {v}");
        }
        assert!(!v.to_string().contains(&key), "the key is never echoed");
    }
    // The header limit answers in the Anthropic shape for Anthropic clients.
    let res = s
        .client
        .post(format!("{}/v1/messages", s.base))
        .header("x-api-key", &key)
        .header("x-big", "a".repeat(40 << 10))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 431);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_usage_was_estimated_is_never_marked_exact() {
    let s = TestServer::start_with(|c| {
        let mut openai = mock_provider("openai");
        openai.fault = Some("nousage".into());
        c.providers = vec![openai];
    })
    .await;
    let (_, key) = s.create_key("u", None).await;
    for stream in [false, true] {
        let res = s
            .chat(&key, chat_body("gpt-4o-mini", "count me", stream))
            .await;
        assert_eq!(res.status(), 200);
        let id = request_id(&res);
        res.text().await.unwrap();
        let log = s.wait_for_log(&id).await;
        assert_eq!(log["usage_source"], "estimated", "{log}");
        assert_eq!(
            log["price_confidence"], "estimated",
            "stream {stream}: {log}"
        );
        assert!(common::picos(&log["cost"]) > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_completions_are_metered_and_the_free_helpers_pass_through_unrecorded() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("u", Some("helpers")).await;
    let post = |path: &str, body: Value| {
        s.client
            .post(format!("{}{path}", s.base))
            .bearer_auth(&key)
            .json(&body)
    };
    // Legacy completions: metered like chat, the text in choices[].text, no unrequested usage chunk in a stream.
    let res = post(
        "/v1/completions",
        json!({ "model": "gpt-4o-mini", "prompt": "Say hi", "max_tokens": 7 }),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    assert!(v["choices"][0]["text"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["endpoint"], "completions");
    assert_eq!(log["output_tokens"], v["usage"]["completion_tokens"]);
    assert_eq!(common::picos(&log["cost"]), catalog_cost(&log));
    let res = post(
        "/v1/completions",
        json!({ "model": "gpt-4o-mini", "prompt": "Say hi", "stream": true }),
    )
    .send()
    .await
    .unwrap();
    let id = request_id(&res);
    let body = res.text().await.unwrap();
    assert!(!body.contains("\"usage\""), "{body}");
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["usage_source"], "reported", "{log}");

    // One metered message, then the free helpers: answered by the provider, never recorded.
    let res = s
        .messages(&key, json!({ "model": "claude-haiku-4-5", "max_tokens": 9, "messages": [{ "role": "user", "content": "count me" }] }))
        .await;
    assert_eq!(res.status(), 200);
    let res = s
        .client
        .post(format!("{}/v1/messages/count_tokens", s.base))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({ "model": "claude-haiku-4-5", "messages": [{ "role": "user", "content": "count me" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() > 0, "{v}");
    let v = json_of(post("/v1/moderations", json!({ "input": ["a", "b"] }))).await;
    assert_eq!(v["results"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["results"][0]["flagged"], false);
    // A bad key is refused on the free routes too, in the client's shape.
    let res = s
        .client
        .post(format!("{}/v1/messages/count_tokens", s.base))
        .header("x-api-key", "sk-sg-wrong")
        .json(&json!({ "model": "claude-haiku-4-5", "messages": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
    // Three requests were metered (two completions and the message); the helpers wrote nothing.
    s.wait_for_summary(
        "team=helpers&window=1h",
        std::time::Duration::from_secs(10),
        |v| v["requests"] == 3,
    )
    .await;
    let logs = s.all_spend_logs("team=helpers&window=1h").await;
    assert_eq!(logs.len(), 3, "{logs:?}");
}

/// The billing rules end to end: the mock, like Anthropic, splits a 1-hour cache write from 5-minute ones in
/// `usage.cache_creation`, and the spend log bills it on its own line at 2x the input price; the lines add up to
/// the cost, and the request page shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_hour_cache_write_is_its_own_line_of_the_spend_logs_bill() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("u", Some("caching")).await;
    let document = "a long contract clause ".repeat(400);
    let res = s
        .messages(
            &key,
            json!({ "model": "claude-haiku-4-5", "max_tokens": 20,
                    "system": [{ "type": "text", "text": document, "cache_control": { "type": "ephemeral", "ttl": "1h" } }],
                    "messages": [{ "role": "user", "content": "Summarise." }] }),
        )
        .await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let v: Value = res.json().await.unwrap();
    let one_hour = v["usage"]["cache_creation"]["ephemeral_1h_input_tokens"]
        .as_u64()
        .unwrap();
    assert!(one_hour > 0, "{v}");
    let log = s.wait_for_log(&id).await;
    let lines = log["price_lines"].as_array().unwrap();
    let line = lines
        .iter()
        .find(|l| l["kind"] == "cache_write_1h")
        .unwrap_or_else(|| panic!("no 1-hour line: {lines:?}"));
    assert_eq!(line["tokens"].as_u64(), Some(one_hour));
    assert_eq!(
        line["price_per_mtok"], "2.00",
        "2x claude-haiku-4-5's input price"
    );
    let sum: i128 = lines.iter().map(|l| common::picos(&l["cost"])).sum();
    assert_eq!(sum, common::picos(&log["cost"]));
    let cookie = s.login("test-admin-token").await;
    let page = s.page(&format!("/requests/{id}"), &cookie).await;
    assert!(
        page.contains("Cache write (1 h)"),
        "the request page names the line"
    );
}

/// OpenAI answers the `service_tier` a request asked for; a Flex answer is billed at Flex rates, line by line,
/// reasoning on its own line (the mock reports reasoning tokens for gpt-5, as OpenAI does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flex_answer_is_billed_at_flex_rates_with_reasoning_on_its_own_line() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("u", Some("batchy")).await;
    let mut body = chat_body("gpt-5", "think it over", false);
    body["service_tier"] = json!("flex");
    let res = s.chat(&key, body).await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["service_tier"], "flex");
    let reasoning = v["usage"]["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    assert!(reasoning > 0, "{v}");
    let log = s.wait_for_log(&id).await;
    let lines = log["price_lines"].as_array().unwrap();
    assert!(lines.iter().all(|l| l["rate"] == "flex"), "{lines:?}");
    let r = lines.iter().find(|l| l["kind"] == "reasoning").unwrap();
    assert_eq!(r["tokens"].as_u64(), Some(reasoning));
    // gpt-5 Flex: $0.625 in, $0.0625 cached, $5.00 out per million tokens (micro-dollars = picodollars a token).
    let t = |k: &str| i128::from(log[k].as_u64().unwrap());
    let cached = t("cached_input_tokens");
    let expected =
        (t("input_tokens") - cached) * 625_000 + cached * 62_500 + t("output_tokens") * 5_000_000;
    assert_eq!(common::picos(&log["cost"]), expected);
}

/// A workflow named like the untagged bucket, or a team named like No team, would be shown and added up as that
/// bucket: both names are refused with a message that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_no_team_and_no_workflow_labels_cannot_be_taken_by_a_client() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("u", Some("t")).await;
    let res = s
        .client
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(&key)
        .header("x-spendgate-workflow", "(none)")
        .json(&chat_body("gpt-4o-mini", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_workflow", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("reserved"));
    let (st, v) = s
        .admin_post("/api/v1/keys", json!({ "user": "x", "team": "No team" }))
        .await;
    assert_eq!(st, 400, "{v}");
}
