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

/// Checks a translated call's spend log against the chat completion usage the client saw, at [`THINKING`]'s price.
fn assert_billed_as_chat(log: &Value, u: &Value) {
    assert_eq!(log["endpoint"], "chat.completions", "{log}");
    assert_eq!(log["upstream_api"], "generate_content", "{log}");
    assert_eq!(log["provider"], "gemini");
    let prompt = u["prompt_tokens"].as_u64().unwrap();
    let cached = u["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    let thoughts = u["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    let output = u["completion_tokens"].as_u64().unwrap();
    assert!(thoughts > 0 && thoughts < output, "{u}");
    // The same counts as Gemini's own, in its names.
    let gemini = json!({
        "promptTokenCount": prompt, "cachedContentTokenCount": cached,
        "candidatesTokenCount": output - thoughts, "thoughtsTokenCount": thoughts,
    });
    assert_billed_as_gemini(log, &gemini);
}

fn chat_body(content: &str) -> Value {
    json!({
        "model": THINKING,
        "messages": [
            { "role": "system", "content": "Answer in one line." },
            { "role": "user", "content": content },
        ],
        "max_completion_tokens": 300,
        "temperature": 1.2,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_model_answers_on_chat_completions_plain_streamed_and_with_tools() {
    let s = server().await;
    let (_, key) = s.create_key("ana", Some("apps")).await;

    let res = s.chat(&key, chat_body(&long())).await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(!v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    assert!(
        v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            > 0,
        "{v}"
    );
    assert_billed_as_chat(&s.wait_for_log(&id).await, &v["usage"]);

    // Streamed, with the usage chunk; and without, where the client gets none but the call is billed alike.
    for include_usage in [true, false] {
        let mut body = chat_body("Name three rivers.");
        body["stream"] = true.into();
        if include_usage {
            body["stream_options"] = json!({ "include_usage": true });
        }
        let (id, events) = streamed(s.chat(&key, body).await).await;
        assert_eq!(events.last().unwrap(), "[DONE]");
        let chunks = &events[..events.len() - 1];
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert!(!text.is_empty());
        let usage: Vec<&Value> = chunks.iter().filter(|c| c["usage"].is_object()).collect();
        let log = s.wait_for_log(&id).await;
        assert_eq!(log["stream"], true);
        if include_usage {
            assert_eq!(usage.len(), 1, "{chunks:?}");
            assert_billed_as_chat(&log, &usage[0]["usage"]);
        } else {
            assert!(usage.is_empty(), "no usage chunk was asked for");
            assert_eq!(log["usage_source"], "reported");
            assert_eq!(picos(&log["cost"]), catalog_cost(&log));
        }
    }

    // A tool call, signed by the thinking model; its result in the next turn is answered in words.
    let tool = json!({ "type": "function", "function": { "name": "get_weather", "description": "Weather by city",
        "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } });
    let ask = json!({ "role": "user", "content": "Weather in Oslo?" });
    let body =
        json!({ "model": THINKING, "messages": [ask], "tools": [tool], "tool_choice": "required" });
    let res = s.chat(&key, body).await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let v: Value = res.json().await.unwrap();
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls", "{v}");
    let call = &c["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap()
            ["city"]
            .is_string()
    );
    assert!(
        call["id"].as_str().unwrap().contains("__sig__"),
        "the thought signature rides in the id: {call}"
    );
    assert_billed_as_chat(&s.wait_for_log(&id).await, &v["usage"]);
    let result = json!({ "role": "tool", "tool_call_id": call["id"], "content": "2C and snow" });
    let body =
        json!({ "model": THINKING, "messages": [ask, c["message"], result], "tools": [tool] });
    let res = s.chat(&key, body).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");

    // JSON mode: Gemini's structured output, from the chat request's response_format.
    let body = json!({ "model": THINKING, "messages": [{ "role": "user", "content": "Extract: ticket T-1" }],
        "response_format": { "type": "json_schema", "json_schema": { "name": "t", "strict": true,
            "schema": { "type": "object", "properties": { "ticket": { "type": "string" } }, "required": ["ticket"] } } } });
    let v: Value = s.chat(&key, body).await.json().await.unwrap();
    let content: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(content["ticket"].is_string(), "{v}");
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_model_answers_on_messages_plain_and_streamed() {
    let s = server().await;
    let (_, key) = s.create_key("ben", Some("apps")).await;
    let body = json!({ "model": THINKING, "max_tokens": 200, "system": "Be brief.",
        "messages": [{ "role": "user", "content": long() }] });
    let res = s.messages(&key, body.clone()).await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let m: Value = res.json().await.unwrap();
    assert_eq!(
        (m["type"].as_str(), m["stop_reason"].as_str()),
        (Some("message"), Some("end_turn")),
        "{m}"
    );
    assert!(
        m["usage"].get("reasoning_output_tokens").is_none(),
        "Anthropic's fields only: {m}"
    );
    let check = |log: &Value, u: &Value| {
        assert_eq!(log["endpoint"], "messages");
        assert_eq!(log["upstream_api"], "generate_content");
        let n = |k: &str| u[k].as_u64().unwrap();
        assert_eq!(
            log["input_tokens"].as_u64().unwrap(),
            n("input_tokens") + n("cache_read_input_tokens") + n("cache_creation_input_tokens")
        );
        assert_eq!(log["cached_input_tokens"], u["cache_read_input_tokens"]);
        assert_eq!(log["output_tokens"], u["output_tokens"]);
        assert_eq!(picos(&log["cost"]), catalog_cost(log), "{log}");
    };
    check(&s.wait_for_log(&id).await, &m["usage"]);

    let mut streamed_body = body;
    streamed_body["stream"] = true.into();
    let (id, events) = streamed(s.messages(&key, streamed_body).await).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(kinds.last(), Some(&"message_stop"));
    assert!(kinds.contains(&"content_block_delta"));
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    check(&s.wait_for_log(&id).await, &delta["usage"]);
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_gemini_cannot_carry_is_refused_before_any_upstream_call() {
    let s = server().await;
    let (_, key) = s.create_key("cy", None).await;
    let image = json!({ "model": THINKING, "messages": [{ "role": "user", "content": [
        { "type": "text", "text": "What is this?" },
        { "type": "image_url", "image_url": { "url": "https://example.com/cat.png" } }] }] });
    let res = s.chat(&key, image).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "untranslatable_parameter");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'messages[0].content[1].image_url.url'"),
        "{v}"
    );
    let res = s
        .messages(
            &key,
            json!({ "model": THINKING, "max_tokens": 5, "metadata": { "user_id": "u" },
            "messages": [{ "role": "user", "content": "hi" }] }),
        )
        .await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'metadata'"),
        "{v}"
    );
    assert!(s.all_spend_logs("window=1h").await.is_empty());
    // Both clients see the model listed: it is reachable from their APIs.
    for (header, value) in [
        ("authorization", format!("Bearer {key}")),
        ("x-api-key", key.clone()),
    ] {
        let res = s
            .client
            .get(format!("{}/v1/models/{THINKING}", s.base))
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{header}");
    }
    s.running.stop().await.unwrap();
}
