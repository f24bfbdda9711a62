//! Amazon Bedrock through the real gateway: a model served by a `kind = "bedrock"` provider, reached from
//! `/v1/messages` and `/v1/chat/completions`, plain and streamed, with the mock upstream speaking Converse and
//! ConverseStream over real HTTP (AWS's binary event stream for streams). Each upstream request is checked for
//! its SigV4 signature (recomputed here from the bytes that arrived), and each spend log for the exact tokens the
//! mock reported (cache reads, writes and one-hour writes included), the picodollar cost at the provider's price,
//! and `upstream_api = "converse"`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::sync::{Arc, Mutex};

use common::{picos, recording_upstream, request_id, Seen, TestServer};
use serde_json::{json, Value};
use spendgate::config::ProviderConfig;
use spendgate_gateway::provider::Endpoint;
use spendgate_gateway::providers::aws::Credentials;

const KEY_ID: &str = "AKIDBEDROCKTEST";
const SECRET: &str = "bedrock/test/secret+key";
const TOKEN: &str = "session-token-for-tests";
const UPSTREAM_MODEL: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

/// The credentials the gateway finds in the environment: set once, before any test of this file reads the
/// environment (each calls this first), so no variable changes while another thread reads it.
fn aws_environment() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", KEY_ID);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
        std::env::set_var("AWS_SESSION_TOKEN", TOKEN);
    });
}

/// The price this provider bills `claude-bdrk` at (its own `prices`, as a negotiated rate would be).
fn price() -> Value {
    json!({ "model": "claude-bdrk", "input_per_mtok": "3.30", "output_per_mtok": "16.50",
        "cached_input_per_mtok": "0.33", "cache_write_per_mtok": "4.125", "cache_write_1h_per_mtok": "6.60" })
}

fn bedrock_provider(base: &str) -> ProviderConfig {
    ProviderConfig {
        name: "bedrock".into(),
        kind: "bedrock".into(),
        base_url: Some(base.trim_end_matches("/v1").to_string()),
        region: Some("us-east-1".into()),
        model_map: [("claude-bdrk".to_string(), UPSTREAM_MODEL.to_string())].into(),
        prices: vec![serde_json::from_value(price()).unwrap()],
        read_timeout_secs: 30,
        ..ProviderConfig::default()
    }
}

async fn server() -> (TestServer, Arc<Mutex<Vec<Seen>>>) {
    aws_environment();
    let (base, seen) = recording_upstream().await;
    let s = TestServer::start_with(|c| c.providers.push(bedrock_provider(&base))).await;
    (s, seen)
}

/// The last request the upstream received, with its signature checked: recomputed from the path, headers and
/// body as they arrived, with the secret the gateway was given.
fn last_signed(seen: &Arc<Mutex<Vec<Seen>>>) -> Seen {
    let last = seen.lock().unwrap().last().cloned().unwrap();
    let h = |n: &str| last.headers[n].to_str().unwrap().to_string();
    let credentials = Credentials::new(KEY_ID, SECRET, Some(TOKEN.into()));
    assert_eq!(
        h("authorization"),
        last.sigv4_authorization(&credentials, "us-east-1")
    );
    assert_eq!(h("x-amz-security-token"), TOKEN);
    last
}

/// What the mock reported for the request it received (its usage is a function of the body).
fn reported(seen: &Seen, max_output: u64) -> spendgate_core::Usage {
    spendgate_gateway::providers::mock::mock_usage(
        Endpoint::Converse,
        &seen.raw,
        Some(max_output),
        1,
    )
}

/// The cost of `u` (with `one_hour` of its writes living an hour) at [`price`], in picodollars.
fn cost(u: &spendgate_core::Usage, one_hour: u64) -> i128 {
    cost_at(u, one_hour, &serde_json::from_value(price()).unwrap())
}

/// The cost of `u` at `p`, in picodollars: a price in microdollars per million tokens is picodollars a token.
fn cost_at(u: &spendgate_core::Usage, one_hour: u64, p: &spendgate_core::ModelPrice) -> i128 {
    let at = |v: Option<spendgate_core::PricePerMtok>| i128::from(v.unwrap().micros());
    let n = |v: u64| i128::from(v);
    n(u.input_tokens - u.cached_input_tokens - u.cache_write_tokens) * at(Some(p.input_per_mtok))
        + n(u.cached_input_tokens) * at(p.cached_input_per_mtok)
        + n(u.cache_write_tokens - one_hour) * at(p.cache_write_per_mtok)
        + n(one_hour) * at(p.cache_write_1h_per_mtok)
        + n(u.output_tokens) * at(Some(p.output_per_mtok))
}

fn assert_billed(
    log: &Value,
    u: &spendgate_core::Usage,
    one_hour: u64,
    endpoint: &str,
    stream: bool,
) {
    assert_eq!(log["provider"], "bedrock", "{log}");
    assert_eq!(log["model"], "claude-bdrk");
    assert_eq!(log["endpoint"], endpoint);
    assert_eq!(log["upstream_api"], "converse");
    assert_eq!(log["stream"], stream);
    assert_eq!(log["status"], "ok");
    assert_eq!(log["usage_source"], "reported");
    assert_eq!(log["input_tokens"], u.input_tokens, "{log}");
    assert_eq!(log["cached_input_tokens"], u.cached_input_tokens);
    assert_eq!(log["cache_write_tokens"], u.cache_write_tokens);
    assert_eq!(log["output_tokens"], u.output_tokens);
    assert_eq!(picos(&log["cost"]), cost(u, one_hour), "{log}");
    assert!(picos(&log["cost"]) > 0);
}

/// The `data:` payloads of a server-sent event stream.
fn data_of(sse: &str) -> Vec<Value> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_string())))
        .collect()
}

/// A system prompt long enough to be cached (the mock caches from 1,024 tokens), marked for an hour.
fn cached_system() -> Value {
    json!([{ "type": "text", "text": "You are terse. ".repeat(400),
        "cache_control": { "type": "ephemeral", "ttl": "1h" } }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bedrock_model_answers_on_messages_plain_and_streamed_billed_exactly() {
    let (s, seen) = server().await;
    let (_, key) = s.create_key("ana", Some("apps")).await;
    let body = json!({
        "model": "claude-bdrk", "max_tokens": 60, "system": cached_system(),
        "messages": [{ "role": "user", "content": "Name three rivers." }],
    });
    let res = s.messages(&key, body.clone()).await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let m: Value = res.json().await.unwrap();
    assert_eq!(
        (m["type"].as_str(), m["model"].as_str()),
        (Some("message"), Some("claude-bdrk")),
        "{m}"
    );
    assert!(!m["content"][0]["text"].as_str().unwrap().is_empty());
    let up = last_signed(&seen);
    assert_eq!(
        up.path_and_query,
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    );
    assert_eq!(
        up.body["system"][1],
        json!({ "cachePoint": { "type": "default", "ttl": "1h" } })
    );
    assert_eq!(up.body["inferenceConfig"]["maxTokens"], 60);
    let u = reported(&up, 60);
    assert!(
        u.cached_input_tokens > 0 && u.cache_write_tokens > 0,
        "{u:?}"
    );
    // The client reads Bedrock's usage in Anthropic's fields.
    assert_eq!(m["usage"]["input_tokens"], u.uncached_input_tokens());
    assert_eq!(m["usage"]["cache_read_input_tokens"], u.cached_input_tokens);
    assert_eq!(
        m["usage"]["cache_creation_input_tokens"],
        u.cache_write_tokens
    );
    assert_eq!(
        m["usage"]["cache_creation"]["ephemeral_1h_input_tokens"],
        u.cache_write_tokens
    );
    assert_eq!(m["usage"]["output_tokens"], u.output_tokens);
    let log = s.wait_for_log(&id).await;
    assert_billed(&log, &u, u.cache_write_tokens, "messages", false);

    // The features an anthropic-beta header turns on reach Bedrock in the body.
    let res = s
        .client
        .post(format!("{}/v1/messages", s.base))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "context-1m-2025-08-07")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        last_signed(&seen).body["additionalModelRequestFields"]["anthropic_beta"],
        json!(["context-1m-2025-08-07"])
    );

    // Streamed: ConverseStream's frames become Anthropic's events, and the bill is the same kind of exact.
    let mut streamed = body.clone();
    streamed["stream"] = true.into();
    let res = s.messages(&key, streamed).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let id = request_id(&res);
    let events = data_of(&res.text().await.unwrap());
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(&kinds[kinds.len() - 2..], ["message_delta", "message_stop"]);
    let up = last_signed(&seen);
    assert!(
        up.path_and_query.ends_with("%3A0/converse-stream"),
        "{}",
        up.path_and_query
    );
    let u = reported(&up, 60);
    let delta = &events[events.len() - 2];
    assert_eq!(delta["usage"]["output_tokens"], u.output_tokens);
    assert_eq!(
        delta["usage"]["cache_read_input_tokens"],
        u.cached_input_tokens
    );
    let log = s.wait_for_log(&id).await;
    assert_billed(&log, &u, u.cache_write_tokens, "messages", true);
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bedrock_model_answers_on_chat_completions_plain_and_streamed_billed_exactly() {
    let (s, seen) = server().await;
    let (_, key) = s.create_key("bo", None).await;
    let body = json!({
        "model": "claude-bdrk", "max_completion_tokens": 40,
        "messages": [
            { "role": "system", "content": "Answer in one line." },
            { "role": "user", "content": [
                { "type": "text", "text": "What is in this image?" },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } }] },
        ],
        "tools": [{ "type": "function", "function": { "name": "lookup", "parameters": {
            "type": "object", "properties": { "q": { "type": "string" } }, "required": ["q"] } } }],
        "tool_choice": "required",
    });
    let res = s.chat(&key, body.clone()).await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let c: Value = res.json().await.unwrap();
    assert_eq!(c["object"], "chat.completion", "{c}");
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
    let call = &c["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "lookup");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert!(args["q"].is_string(), "{args}");
    let up = last_signed(&seen);
    assert_eq!(
        up.body["messages"][0]["content"][1],
        json!({ "image": { "format": "png", "source": { "bytes": "iVBORw0KGgo=" } } })
    );
    assert_eq!(up.body["toolConfig"]["toolChoice"], json!({ "any": {} }));
    let u = reported(&up, 40);
    assert_eq!(c["usage"]["prompt_tokens"], u.input_tokens);
    assert_eq!(c["usage"]["completion_tokens"], u.output_tokens);
    let log = s.wait_for_log(&id).await;
    assert_billed(&log, &u, 0, "chat.completions", false);

    // Streamed with the usage chunk: the chunks end with it and [DONE].
    let mut streamed = body.clone();
    streamed["stream"] = true.into();
    streamed["stream_options"] = json!({ "include_usage": true });
    let res = s.chat(&key, streamed.clone()).await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let events = data_of(&res.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let usage = &events[events.len() - 2]["usage"];
    let u = reported(&last_signed(&seen), 40);
    assert_eq!(usage["prompt_tokens"], u.input_tokens);
    assert_eq!(usage["completion_tokens"], u.output_tokens);
    let args: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert!(
        serde_json::from_str::<Value>(&args).unwrap()["q"].is_string(),
        "{args}"
    );
    let log = s.wait_for_log(&id).await;
    assert_billed(&log, &u, 0, "chat.completions", true);

    // Without the usage chunk asked for, none is sent, and the bill is still Bedrock's reported usage.
    streamed.as_object_mut().unwrap().remove("stream_options");
    let res = s.chat(&key, streamed).await;
    let id = request_id(&res);
    let events = data_of(&res.text().await.unwrap());
    assert!(events.iter().all(|e| e.get("usage").is_none()));
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["usage_source"], "reported");
    s.running.stop().await.unwrap();
}

/// What Converse cannot take is a 400 naming it, in the client's shape, before any upstream call; Bedrock's own
/// errors come back in the client's shape with their status, recorded at zero cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untranslatable_parameters_and_upstream_errors_take_the_clients_shape() {
    let (s, seen) = server().await;
    let (_, key) = s.create_key("cy", None).await;
    // Both kinds of client see the model among those they can call.
    for anthropic in [false, true] {
        let req = s.client.get(format!("{}/v1/models?limit=1000", s.base));
        let req = if anthropic {
            req.header("x-api-key", &key)
                .header("anthropic-version", "2023-06-01")
        } else {
            req.bearer_auth(&key)
        };
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["id"] == "claude-bdrk"),
            "anthropic={anthropic}: {v}"
        );
    }
    let res = s
        .messages(
            &key,
            json!({ "model": "claude-bdrk", "max_tokens": 10, "top_k": 5,
                "messages": [{ "role": "user", "content": "hi" }] }),
        )
        .await;
    assert_eq!(res.status(), 400);
    let e: Value = res.json().await.unwrap();
    assert_eq!(e["type"], "error");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("'top_k'"),
        "{e}"
    );
    assert!(seen.lock().unwrap().is_empty(), "nothing went upstream");

    let res = s
        .chat(
            &key,
            json!({ "model": "claude-bdrk", "messages": [{ "role": "user", "content": "hi [mock:fault=status500]" }] }),
        )
        .await;
    assert_eq!(res.status(), 500);
    let id = request_id(&res);
    let e: Value = res.json().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("failed on purpose"),
        "{e}"
    );
    let log = s.wait_for_log(&id).await;
    assert_eq!(
        (log["status"].as_str(), log["http_status"].as_u64()),
        (Some("upstream_error"), Some(500))
    );
    assert_eq!(log["upstream_api"], "converse");
    assert_eq!(picos(&log["cost"]), 0);
    s.running.stop().await.unwrap();
}

/// A Claude route whose first target is Anthropic and second Bedrock: when Anthropic answers 5xx, the request goes
/// to Bedrock translated into Converse, from either client API, plain or streamed; the client sees only Bedrock's
/// answer, and the spend log bills Bedrock's catalog price (its Geographic profile's, not Anthropic's) and lists
/// Anthropic's failed attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_route_falls_back_from_anthropic_to_bedrock_billed_at_bedrocks_price() {
    aws_environment();
    let (base, seen) = recording_upstream().await;
    let s = TestServer::start_with(|c| {
        for p in &mut c.providers {
            if p.name == "anthropic" {
                p.fault = Some("status500".into());
            }
        }
        c.providers.push(ProviderConfig {
            model_map: Default::default(),
            prices: Vec::new(),
            ..bedrock_provider(&base)
        });
        c.routes.push(spendgate::config::RouteConfig {
            model: "claude-sonnet-4-5".into(),
            targets: vec![
                spendgate::config::TargetConfig {
                    provider: "anthropic".into(),
                    model: None,
                },
                spendgate::config::TargetConfig {
                    provider: "bedrock".into(),
                    model: Some(UPSTREAM_MODEL.into()),
                },
            ],
            retries: 0,
            max_attempts: None,
        });
    })
    .await;
    let catalog = spendgate_core::pricing::Catalog::with_overrides(
        Vec::new(),
        spendgate_core::pricing::UnknownModelPolicy::Refuse,
    )
    .unwrap();
    let bedrock = catalog.get_for("bedrock", UPSTREAM_MODEL).unwrap().clone();
    let anthropic = catalog.get_for("anthropic", "claude-sonnet-4-5").unwrap();
    assert_ne!(
        bedrock.input_per_mtok, anthropic.input_per_mtok,
        "the two bills differ"
    );
    let (_, key) = s.create_key("dee", Some("apps")).await;
    for (client, stream) in [
        ("messages", false),
        ("messages", true),
        ("chat", false),
        ("chat", true),
    ] {
        let res = if client == "messages" {
            s.messages(
                &key,
                json!({ "model": "claude-sonnet-4-5", "max_tokens": 30, "stream": stream,
                    "messages": [{ "role": "user", "content": "fall back, please" }] }),
            )
            .await
        } else {
            s.chat(
                &key,
                json!({ "model": "claude-sonnet-4-5", "max_completion_tokens": 30, "stream": stream,
                    "stream_options": { "include_usage": true },
                    "messages": [{ "role": "user", "content": "fall back, please" }] }),
            )
            .await
        };
        assert_eq!(res.status(), 200, "{client} stream={stream}");
        let id = request_id(&res);
        let text = res.text().await.unwrap();
        assert!(
            !text.contains("failed on purpose"),
            "no byte of the failed attempt reaches the client"
        );
        let up = last_signed(&seen);
        assert!(up
            .path_and_query
            .starts_with("/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"));
        let u = reported(&up, 30);
        let log = s.wait_for_log(&id).await;
        assert_eq!(log["status"], "ok", "{log}");
        assert_eq!(log["provider"], "bedrock");
        assert_eq!(log["model"], "claude-sonnet-4-5");
        assert_eq!(log["upstream_api"], "converse");
        assert_eq!(log["attempts"], 2);
        let failed = log["failed_attempts"].as_array().unwrap();
        assert_eq!(
            (
                failed[0]["provider"].as_str(),
                failed[0]["http_status"].as_u64()
            ),
            (Some("anthropic"), Some(500))
        );
        assert_eq!(log["input_tokens"], u.input_tokens);
        assert_eq!(log["output_tokens"], u.output_tokens);
        assert_eq!(picos(&log["cost"]), cost_at(&u, 0, &bedrock), "{log}");
    }
    s.running.stop().await.unwrap();
}
