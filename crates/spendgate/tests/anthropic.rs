//! The Anthropic Messages route and the OpenAI Responses route over real HTTP: streamed and not, usage with
//! cache reads and writes priced each at its own catalog price, Anthropic-shaped errors, the key passed either
//! way, and the Anthropic provider kind against a recording upstream (its headers, and no virtual key leaking).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use common::{catalog_cost, picos, recording_upstream, request_id, TestServer};
use serde_json::{json, Value};

/// A prompt long enough (over 1,024 tokens) for the mock to read and write its cache when asked to.
fn long_prompt() -> String {
    "Summarise the contract clause by clause and flag every liability cap. ".repeat(80)
}

fn messages_body(text: &str, stream: bool) -> Value {
    json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 200,
        "stream": stream,
        "system": [{ "type": "text", "text": text, "cache_control": { "type": "ephemeral" } }],
        "messages": [{ "role": "user", "content": "Which clauses matter most?" }],
    })
}

async fn post(s: &TestServer, path: &str, auth: (&str, &str), body: &Value) -> reqwest::Response {
    s.client
        .post(format!("{}{path}", s.base))
        .header(auth.0, auth.1)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The usage an Anthropic stream reported: `message_start`'s, with `message_delta`'s counts laid over it.
fn stream_usage(sse: &str) -> Value {
    let mut usage = json!({});
    for line in sse.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let v: Value = serde_json::from_str(data).unwrap();
        let part = match v["type"].as_str() {
            Some("message_start") => &v["message"]["usage"],
            Some("message_delta") => &v["usage"],
            _ => continue,
        };
        for (k, n) in part.as_object().unwrap() {
            usage[k] = n.clone();
        }
    }
    usage
}

fn assert_anthropic_usage(log: &Value, usage: &Value) {
    let n = |k: &str| usage[k].as_u64().unwrap();
    assert_eq!(
        log["input_tokens"].as_u64().unwrap(),
        n("input_tokens") + n("cache_read_input_tokens") + n("cache_creation_input_tokens"),
        "the prompt is input plus cache reads plus cache writes: {log}"
    );
    assert_eq!(log["cached_input_tokens"], usage["cache_read_input_tokens"]);
    assert_eq!(
        log["cache_write_tokens"],
        usage["cache_creation_input_tokens"]
    );
    assert_eq!(log["output_tokens"], usage["output_tokens"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_streamed_or_not_bill_cache_reads_and_writes_at_their_own_prices() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("dana", Some("legal")).await;
    let text = long_prompt();

    // Not streamed, the key as Anthropic's SDK sends it.
    let res = post(
        &s,
        "/v1/messages",
        ("x-api-key", &key),
        &messages_body(&text, false),
    )
    .await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["type"], "text");
    assert!(v["usage"]["cache_read_input_tokens"].as_u64().unwrap() > 0);
    assert!(v["usage"]["cache_creation_input_tokens"].as_u64().unwrap() > 0);
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["endpoint"], "messages");
    assert_eq!(log["provider"], "anthropic");
    assert_eq!(log["usage_source"], "reported");
    assert_anthropic_usage(&log, &v["usage"]);
    assert_eq!(picos(&log["cost"]), catalog_cost(&log));
    let kinds: Vec<&str> = log["price_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["input", "cached_input", "cache_write", "output"]);
    // Each kind at its own price: a cache write at 1.25x the input price, a read at 0.1x.
    let line = |k: &str| {
        log["price_lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["kind"] == k)
            .unwrap()["price_per_mtok"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        (line("input"), line("cached_input"), line("cache_write")),
        ("1.00".into(), "0.10".into(), "1.25".into())
    );

    // Streamed, the key as a bearer token: the events pass through, usage comes from message_start and
    // message_delta.
    let res = post(
        &s,
        "/v1/messages",
        ("authorization", &format!("Bearer {key}")),
        &messages_body(&text, true),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let id = request_id(&res);
    let sse = res.text().await.unwrap();
    assert!(sse.starts_with("event: message_start\n"), "{sse}");
    assert!(sse.contains("event: message_stop"));
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["stream"], true);
    assert_eq!(log["status"], "ok");
    assert_anthropic_usage(&log, &stream_usage(&sse));
    assert_eq!(picos(&log["cost"]), catalog_cost(&log));

    // The usage page shows the cache writes next to the cached (read) tokens.
    s.wait_for_summary("window=1h", std::time::Duration::from_secs(10), |v| {
        v["requests"] == 2
    })
    .await;
    let cookie = s.login("test-admin-token").await;
    let html = s.page("/usage?window=1h", &cookie).await;
    assert!(html.contains("<span id=\"cache-writes\">"), "{html}");
    assert!(
        !html.contains("<span id=\"cache-writes\">0</span>"),
        "{html}"
    );
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_streamed_or_not_are_priced_from_their_usage() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("frank", Some("data-science")).await;
    let auth = format!("Bearer {key}");
    for stream in [false, true] {
        let body = json!({ "model": "gpt-4.1-mini", "input": long_prompt(), "stream": stream, "max_output_tokens": 40 });
        let res = post(&s, "/v1/responses", ("authorization", &auth), &body).await;
        assert_eq!(res.status(), 200);
        let id = request_id(&res);
        let usage = if stream {
            let sse = res.text().await.unwrap();
            assert!(!sse.contains("[DONE]"), "Responses streams have no [DONE]");
            let completed = sse
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str::<Value>(d).unwrap())
                .find(|v| v["type"] == "response.completed")
                .expect("the stream completes");
            completed["response"]["usage"].clone()
        } else {
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["object"], "response");
            v["usage"].clone()
        };
        let log = s.wait_for_log(&id).await;
        assert_eq!(log["endpoint"], "responses");
        assert_eq!(log["stream"], stream);
        assert_eq!(log["input_tokens"], usage["input_tokens"]);
        assert_eq!(
            log["cached_input_tokens"],
            usage["input_tokens_details"]["cached_tokens"]
        );
        assert!(log["cached_input_tokens"].as_u64().unwrap() > 0);
        assert_eq!(log["output_tokens"], usage["output_tokens"]);
        assert!(
            log["output_tokens"].as_u64().unwrap() <= 40,
            "max_output_tokens caps the answer"
        );
        assert_eq!(log["usage_source"], "reported");
        assert_eq!(picos(&log["cost"]), catalog_cost(&log));
    }
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_on_the_messages_route_are_in_anthropics_shape() {
    let dead = common::free_port();
    let s = TestServer::start_with(|c| {
        c.providers.push(spendgate::config::ProviderConfig {
            name: "remote-openai".into(),
            kind: "openai".into(),
            base_url: Some(format!("http://127.0.0.1:{dead}/v1")),
            models: vec!["gpt-4.1-nano".into()],
            catalog: false,
            ..common::mock_provider("remote-openai")
        });
    })
    .await;
    let (_, key) = s.create_key("erin", Some("growth")).await;
    let url = format!("{}/v1/messages", s.base);
    let check = |status: u16, kind: &'static str| {
        move |(got, v): (u16, Value)| {
            assert_eq!(got, status, "{v}");
            assert_eq!(v["type"], "error", "{v}");
            assert_eq!(v["error"]["type"], kind, "{v}");
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
    };
    async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
    let body = messages_body("hi", false);
    check(401, "authentication_error")(send(s.client.post(&url).json(&body)).await);
    let (status, v) = send(
        s.client
            .post(&url)
            .header("x-api-key", "sk-sg-wrong")
            .json(&body),
    )
    .await;
    check(401, "authentication_error")((status, v.clone()));
    assert!(
        !v.to_string().contains("sk-sg-wrong"),
        "a key is never echoed back"
    );
    let mut unknown = body.clone();
    unknown["model"] = "claude-nonexistent".into();
    check(404, "not_found_error")(
        send(s.client.post(&url).header("x-api-key", &key).json(&unknown)).await,
    );
    check(400, "invalid_request_error")(
        send(
            s.client
                .post(&url)
                .header("x-api-key", &key)
                .body("{not json"),
        )
        .await,
    );
    // A model whose provider speaks only OpenAI's APIs is reached by translation (crates/spendgate/tests/
    // translate.rs); a parameter chat completions lack is refused before any upstream call.
    let mut openai_only = body.clone();
    openai_only["model"] = "gpt-4.1-nano".into();
    openai_only["top_k"] = 5.into();
    let (status, v) = send(
        s.client
            .post(&url)
            .header("x-api-key", &key)
            .json(&openai_only),
    )
    .await;
    check(400, "invalid_request_error")((status, v.clone()));
    assert_eq!(v["error"]["code"], "untranslatable_parameter");
    // The upstream's own error passes through in its shape, and is recorded at zero cost.
    let failing = messages_body("please misbehave [mock:fault=status500]", false);
    let res = s
        .client
        .post(&url)
        .header("x-api-key", &key)
        .json(&failing)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    let id = request_id(&res);
    let v: Value = res.json().await.unwrap();
    check(500, "api_error")((500, v));
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["status"], "upstream_error");
    assert_eq!(picos(&log["cost"]), 0);
    // Only the upstream failure reached a provider, so it is the only spend log.
    assert_eq!(s.all_spend_logs("window=1h").await.len(), 1);
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_provider_sends_its_own_key_and_version_never_the_virtual_key() {
    let (upstream, seen) = recording_upstream().await;
    std::env::set_var("SG_TEST_ANTHROPIC_KEY", "sk-ant-test-provider-key");
    let s = TestServer::start_with(|c| {
        c.providers = vec![spendgate::config::ProviderConfig {
            name: "anthropic".into(),
            kind: "anthropic".into(),
            base_url: Some(upstream.clone()),
            api_key_env: Some("SG_TEST_ANTHROPIC_KEY".into()),
            ..common::mock_provider("anthropic")
        }];
    })
    .await;
    let (_, key) = s.create_key("dana", Some("legal")).await;
    let mut answers = Vec::new();
    for stream in [false, true] {
        let res = s
            .client
            .post(format!("{}/v1/messages", s.base))
            .header("x-api-key", &key)
            .header("anthropic-beta", "prompt-caching-2024-07-31")
            .json(&messages_body(&long_prompt(), stream))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let id = request_id(&res);
        let text = res.text().await.unwrap();
        let log = s.wait_for_log(&id).await;
        let usage = if stream {
            stream_usage(&text)
        } else {
            serde_json::from_str::<Value>(&text).unwrap()["usage"].clone()
        };
        assert_anthropic_usage(&log, &usage);
        assert_eq!(picos(&log["cost"]), catalog_cost(&log));
        assert!(!log.to_string().contains("sk-ant-test-provider-key"));
        answers.push((stream, text));
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    // The bytes passed through unchanged: the same request sent straight to the upstream gets the same answer.
    for (stream, through_gateway) in answers {
        let direct = common::text_of(
            s.client
                .post(format!("{upstream}/messages"))
                .json(&messages_body(&long_prompt(), stream)),
        )
        .await;
        assert_eq!(through_gateway, direct, "stream={stream}");
    }
    for r in &seen {
        assert_eq!(r.path_and_query, "/v1/messages");
        assert_eq!(r.headers["x-api-key"], "sk-ant-test-provider-key");
        assert_eq!(r.headers["anthropic-version"], "2023-06-01");
        assert_eq!(r.headers["anthropic-beta"], "prompt-caching-2024-07-31");
        assert!(r.headers.get("authorization").is_none());
        assert!(
            !format!("{:?}", r.headers).contains(&key),
            "the virtual key never goes upstream"
        );
        assert_eq!(r.body["model"], "claude-haiku-4-5");
    }
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_a_messages_stream_is_billed_with_the_reported_usage() {
    let s = TestServer::start_with(|c| c.providers[1].chunk_delay_ms = 5).await;
    let (_, key) = s.create_key("dana", Some("legal")).await;
    let body = messages_body(&long_prompt(), true);
    // The same request read to its end: what the provider reports for it (the mock is deterministic).
    let whole = post(&s, "/v1/messages", ("x-api-key", &key), &body).await;
    let usage = stream_usage(&whole.text().await.unwrap());

    let res = post(&s, "/v1/messages", ("x-api-key", &key), &body).await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let mut stream = res.bytes_stream();
    use futures_util::StreamExt;
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"event: message_start"));
    drop(stream);
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["status"], "client_disconnected");
    assert_eq!(log["usage_source"], "reported");
    // The rest of the stream was read upstream after the client left, so the bill has the final output count.
    assert_anthropic_usage(&log, &usage);
    assert!(log["output_tokens"].as_u64().unwrap() > 1, "{log}");
    assert_eq!(picos(&log["cost"]), catalog_cost(&log));
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messages_stream_cut_short_is_an_upstream_error_billed_for_what_was_reported_and_delivered(
) {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("erin", Some("growth")).await;
    let body = messages_body(&format!("{} [mock:fault=truncate]", long_prompt()), true);
    let res = post(&s, "/v1/messages", ("x-api-key", &key), &body).await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let sse = res.text().await.unwrap();
    assert!(sse.contains("message_start") && !sse.contains("message_stop"));
    let delivered: usize = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter(|v| v["type"] == "content_block_delta")
        .map(|v| v["delta"]["text"].as_str().unwrap().len())
        .sum();
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["status"], "upstream_error");
    assert!(log["error"].as_str().unwrap().contains("ended early"));
    // The input counts came in message_start; the output is at least what was delivered (four bytes a token).
    let started = stream_usage(&sse);
    assert_eq!(
        log["cached_input_tokens"],
        started["cache_read_input_tokens"]
    );
    assert_eq!(
        log["cache_write_tokens"],
        started["cache_creation_input_tokens"]
    );
    assert_eq!(
        log["output_tokens"].as_u64().unwrap(),
        u64::try_from(delivered.div_ceil(4)).unwrap().max(1)
    );
    assert_eq!(picos(&log["cost"]), catalog_cost(&log));
    s.running.stop().await.unwrap();
}
