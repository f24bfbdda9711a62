//! Google's Gemini API as a provider (issue 27): Google's own route (`/v1beta/models/{model}:generateContent`,
//! what Google's SDKs call) passed through byte for byte to a provider speaking Gemini and billed from its
//! `usageMetadata`; and Gemini models called through OpenAI's chat completions and Anthropic's Messages,
//! translated. The upstream is the mock, named `gemini` (it then speaks only Google's API, as Google's does), or
//! served over HTTP by `mock_upstream_router` for a `gemini-native` provider.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use common::{catalog_cost, mock_provider, picos, request_id, TestServer};
use serde_json::{json, Value};
use spendgate::config::ProviderConfig;

/// A thinking model (its thoughts are billed as output), at $0.50 / $3.00 / $0.05 cached per million tokens
/// (ai.google.dev/gemini-api/docs/pricing: "Gemini 3 Flash Preview ... Input price $0.50 (text / image / video),
/// Output price (including thinking tokens) $3.00, Context caching price $0.05").
const THINKING: &str = "gemini-3-flash-preview";

/// Picodollars per token of a price in dollars per million tokens: $1.00 / Mtok is 1,000,000 pUSD a token.
const INPUT: i128 = 500_000;
const OUTPUT: i128 = 3_000_000;
const CACHED: i128 = 50_000;

/// Long enough (over 1,024 tokens) that the mock reports context-cache reads.
fn long() -> String {
    "Summarise the ticket history and list every promised refund with its date. ".repeat(80)
}

async fn server() -> TestServer {
    TestServer::start_with(|c| c.providers.push(mock_provider("gemini"))).await
}

/// `POST /v1beta/models/{model}:{method}{query}` with the key in `x-goog-api-key`, as Google's SDKs send it.
async fn google(s: &TestServer, key: Option<&str>, path: &str, body: &Value) -> reqwest::Response {
    let mut r = s
        .client
        .post(format!("{}/v1beta/models/{path}", s.base))
        .json(body);
    if let Some(k) = key {
        r = r.header("x-goog-api-key", k);
    }
    r.send().await.unwrap()
}

/// The `data:` payloads of a server-sent event stream.
fn data_of(sse: &str) -> Vec<Value> {
    sse.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_string())))
        .collect()
}

/// A successful stream's spend-log id and its events' data.
async fn streamed(res: reqwest::Response) -> (String, Vec<Value>) {
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let id = request_id(&res);
    (id, data_of(&res.text().await.unwrap()))
}

/// Checks a spend log against the `usageMetadata` the client saw and the price of [`THINKING`], to the picodollar.
fn assert_billed_as_gemini(log: &Value, u: &Value) {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    assert_eq!(log["status"], "ok", "{log}");
    assert_eq!(log["usage_source"], "reported", "{log}");
    assert_eq!(
        log["input_tokens"].as_u64().unwrap(),
        n("promptTokenCount"),
        "{log} {u}"
    );
    assert_eq!(
        log["output_tokens"].as_u64().unwrap(),
        n("candidatesTokenCount") + n("thoughtsTokenCount"),
        "thoughts are billed as output: {log} {u}"
    );
    assert_eq!(
        log["cached_input_tokens"].as_u64().unwrap(),
        n("cachedContentTokenCount")
    );
    let reasoning = log["price_lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "reasoning")
        .map_or(0, |l| l["tokens"].as_u64().unwrap());
    assert_eq!(reasoning, n("thoughtsTokenCount"), "{log}");
    let t = |k: &str| i128::from(n(k));
    let cost = (t("promptTokenCount") - t("cachedContentTokenCount")) * INPUT
        + t("cachedContentTokenCount") * CACHED
        + (t("candidatesTokenCount") + t("thoughtsTokenCount")) * OUTPUT;
    assert_eq!(picos(&log["cost"]), cost, "{log}");
    assert_eq!(picos(&log["cost"]), catalog_cost(log), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn googles_route_is_metered_from_usage_metadata_plain_and_streamed() {
    let s = server().await;
    let (_, key) = s.create_key("gia", Some("research")).await;
    let body = json!({
        "systemInstruction": { "parts": [{ "text": "Be brief." }] },
        "contents": [{ "role": "user", "parts": [{ "text": long() }] }],
        "generationConfig": { "maxOutputTokens": 200, "temperature": 0.2 },
    });
    let res = google(
        &s,
        Some(&key),
        &format!("{THINKING}:generateContent"),
        &body,
    )
    .await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["candidates"][0]["finishReason"], "STOP", "{v}");
    let u = &v["usageMetadata"];
    assert!(u["cachedContentTokenCount"].as_u64().unwrap() > 0, "{u}");
    assert!(u["thoughtsTokenCount"].as_u64().unwrap() > 0, "{u}");
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["endpoint"], "generate_content");
    assert_eq!(log["provider"], "gemini");
    assert_eq!(log["model"], THINKING);
    assert_eq!(log["stream"], false);
    assert_eq!(
        log["upstream_api"],
        Value::Null,
        "the client's own API: nothing translated"
    );
    assert_billed_as_gemini(&log, u);

    // Streamed (the key in the query, as `?key=` clients send it), billed from the last chunk's usage.
    let res = s
        .client
        .post(format!(
            "{}/v1beta/models/{THINKING}:streamGenerateContent?alt=sse&key={key}",
            s.base
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (id, chunks) = streamed(res).await;
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["stream"], true);
    assert_billed_as_gemini(&log, &last["usageMetadata"]);
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn googles_route_refuses_in_googles_error_shape() {
    let s = server().await;
    let (_, key) = s.create_key("gia", Some("research")).await;
    let body = json!({ "contents": [{ "role": "user", "parts": [{ "text": "hi" }] }] });
    let refused = [
        (
            None,
            format!("{THINKING}:generateContent"),
            401,
            "UNAUTHENTICATED",
        ),
        (
            Some("sk-sg-not-a-key"),
            format!("{THINKING}:generateContent"),
            401,
            "UNAUTHENTICATED",
        ),
        (
            Some(key.as_str()),
            "no-such-model:generateContent".to_string(),
            404,
            "NOT_FOUND",
        ),
        (
            Some(key.as_str()),
            format!("{THINKING}:countTokens"),
            404,
            "NOT_FOUND",
        ),
        // A stream must be server-sent events: the JSON-array stream is not metered.
        (
            Some(key.as_str()),
            format!("{THINKING}:streamGenerateContent"),
            400,
            "INVALID_ARGUMENT",
        ),
        // A model whose provider does not speak Google's API.
        (
            Some(key.as_str()),
            "gpt-4o-mini:generateContent".to_string(),
            400,
            "INVALID_ARGUMENT",
        ),
    ];
    for (k, path, status, name) in refused {
        let res = google(&s, k, &path, &body).await;
        assert_eq!(res.status(), status, "{path}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], status, "{path}: {v}");
        assert_eq!(v["error"]["status"], name, "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10, "{v}");
    }
    // Refused at the door: recorded as refusals, never as spend.
    assert!(s.all_spend_logs("window=1h").await.is_empty());
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_native_provider_gets_the_clients_bytes_its_key_and_the_model_in_its_url() {
    let (v1, seen) = common::recording_upstream().await;
    let base = v1.replace("/v1", "/v1beta");
    std::env::set_var("SPENDGATE_TEST_GOOGLE_KEY", "google-secret");
    let s = TestServer::start_with(|c| {
        c.providers.push(ProviderConfig {
            name: "google".into(),
            kind: "gemini-native".into(),
            base_url: Some(base),
            api_key_env: Some("SPENDGATE_TEST_GOOGLE_KEY".into()),
            models: vec!["gemini-flash".into()],
            model_map: [("gemini-flash".to_string(), "gemini-2.5-flash".to_string())].into(),
            read_timeout_secs: 30,
            ..ProviderConfig::default()
        });
    })
    .await;
    let (_, key) = s.create_key("gia", None).await;
    // Unusual spacing and key order: the upstream must get these very bytes.
    let raw = "{ \"contents\" : [{\"parts\":[{\"text\":\"hi\"}],\"role\":\"user\"}],\n \"generationConfig\":{\"maxOutputTokens\":30} }";
    for (method, query) in [
        ("generateContent", ""),
        ("streamGenerateContent", "?alt=sse"),
    ] {
        let before = seen.lock().unwrap().len();
        let res = s
            .client
            .post(format!(
                "{}/v1beta/models/gemini-flash:{method}{query}",
                s.base
            ))
            .header("x-goog-api-key", &key)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{method}");
        let id = request_id(&res);
        let text = res.text().await.unwrap();
        let got = seen.lock().unwrap()[before..].to_vec();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].path_and_query,
            format!("/v1beta/models/gemini-2.5-flash:{method}{query}"),
            "the upstream's own name for the model, in the URL"
        );
        assert_eq!(got[0].headers["x-goog-api-key"], "google-secret");
        assert!(got[0].headers.get("authorization").is_none());
        assert_eq!(got[0].body, serde_json::from_str::<Value>(raw).unwrap());
        assert_eq!(
            got[0].headers["content-length"],
            raw.len().to_string().as_str(),
            "byte for byte"
        );
        let log = s.wait_for_log(&id).await;
        assert_eq!(log["provider"], "google");
        assert_eq!(log["model"], "gemini-flash");
        assert_eq!(log["usage_source"], "reported", "{log}");
        let u = if query.is_empty() {
            serde_json::from_str::<Value>(&text).unwrap()["usageMetadata"].clone()
        } else {
            data_of(&text).last().unwrap()["usageMetadata"].clone()
        };
        assert_eq!(log["input_tokens"], u["promptTokenCount"], "{log} {u}");
        assert!(log["output_tokens"].as_u64().unwrap() > 0);
    }
    s.running.stop().await.unwrap();
}
