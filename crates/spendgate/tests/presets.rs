//! Provider presets: a request for a model of each preset provider reaches that provider's base URL path with its
//! key in its header, and is billed from the catalog entry of that provider. A loopback server stands in for every
//! provider (each preset's base URL is overridden to it, keeping the preset's path). Also: a dated snapshot the
//! catalog does not list is billed as its model, flagged "inferred" on its spend log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::sync::{Arc, Mutex};

use common::{chat_body, picos, request_id, Seen, TestServer};
use serde_json::json;
use spendgate::config::{ProviderConfig, PRESETS};
use spendgate_core::pricing::{Catalog, UnknownModelPolicy};

const PROMPT_TOKENS: u64 = 1_000;
const COMPLETION_TOKENS: u64 = 200;

/// An OpenAI-compatible provider on a loopback port that answers every POST, whatever its path, with a chat
/// completion of known usage, and records what it received.
async fn stand_in() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let record = Arc::clone(&record);
        async move {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let seen = Seen::of(&parts, &bytes);
            let model = seen.body["model"].clone();
            record.lock().unwrap().push(seen);
            axum::Json(json!({
                "id": "chatcmpl-stand-in",
                "object": "chat.completion",
                "created": 1,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": PROMPT_TOKENS,
                    "completion_tokens": COMPLETION_TOKENS,
                    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS
                }
            }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (origin, seen)
}

/// The path of a preset's base URL (`https://api.groq.com/openai/v1` -> `/openai/v1`).
fn preset_path(kind: &str) -> String {
    let base = PRESETS
        .iter()
        .find(|p| p.kind == kind)
        .and_then(|p| p.base_url)
        .unwrap();
    let after_scheme = base.split_once("://").unwrap().1;
    after_scheme[after_scheme.find('/').unwrap()..].to_string()
}

struct Case {
    kind: &'static str,
    /// The provider's name in the configuration (and on its spend logs).
    name: &'static str,
    /// The model clients ask for.
    model: &'static str,
    /// The path the request must reach, after the stand-in's origin.
    path: String,
    /// The header the key must arrive in, and how.
    header: &'static str,
    bearer: bool,
}

fn cases() -> Vec<Case> {
    let hosted = |kind: &'static str, model: &'static str| Case {
        kind,
        name: kind,
        model,
        path: format!("{}/chat/completions", preset_path(kind)),
        header: "authorization",
        bearer: true,
    };
    vec![
        hosted("gemini", "gemini-2.5-flash"),
        // An alias: priced from the entry it belongs to.
        hosted("mistral", "mistral-large-latest"),
        hosted("deepseek", "deepseek-flash"),
        hosted("xai", "grok-4.3"),
        // A name Together and OpenRouter list too, at their own prices: billed from Groq's entry, although the
        // provider is not named after its kind.
        Case {
            name: "groq-eu",
            ..hosted("groq", "openai/gpt-oss-120b")
        },
        hosted("together", "deepseek-ai/DeepSeek-V3"),
        hosted("fireworks", "accounts/fireworks/models/kimi-k2p5"),
        hosted("openrouter", "anthropic/claude-sonnet-4.5"),
        Case {
            kind: "azure",
            name: "azure",
            model: "gpt-4o-mini",
            path: "/openai/deployments/mini-deployment/chat/completions?api-version=2024-10-21"
                .into(),
            header: "api-key",
            bearer: false,
        },
        Case {
            kind: "vllm",
            name: "vllm",
            model: "house-llama",
            path: "/v1/chat/completions".into(),
            header: "authorization",
            bearer: true,
        },
        Case {
            kind: "ollama",
            name: "ollama",
            model: "llama3.2",
            path: "/v1/chat/completions".into(),
            header: "authorization",
            bearer: true,
        },
    ]
}

/// The environment variable a preset reads its key from.
fn key_env(kind: &str) -> &'static str {
    PRESETS
        .iter()
        .find(|p| p.kind == kind)
        .and_then(|p| p.key_env)
        .unwrap()
}

fn self_hosted_prices(model: &str) -> Vec<spendgate_core::ModelPrice> {
    spendgate::config::Config::parse(&format!(
        "[[providers]]\nname = \"x\"\nkind = \"mock\"\n[[providers.prices]]\nmodel = \"{model}\"\n\
         input_per_mtok = \"0.50\"\noutput_per_mtok = \"1.25\"\nsource = \"our own GPUs\"\n"
    ))
    .unwrap()
    .providers[0]
        .prices
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_preset_reaches_its_path_with_its_key_and_is_billed_from_its_catalog_entry() {
    let (origin, seen) = stand_in().await;
    for c in cases() {
        // Each preset reads its own variable; the values differ so that a key sent to the wrong provider shows.
        std::env::set_var(key_env(c.kind), format!("test-key-{}", c.kind));
    }
    let s = TestServer::start_with(|config| {
        config.providers.clear();
        for c in cases() {
            let mut p = ProviderConfig {
                name: c.name.into(),
                kind: c.kind.into(),
                models: vec![c.model.into()],
                read_timeout_secs: 30,
                ..ProviderConfig::default()
            };
            p.base_url = Some(match c.kind {
                "azure" => format!("{origin}/openai/deployments/{{model}}"),
                "vllm" | "ollama" => format!("{origin}/v1"),
                kind => format!("{origin}{}", preset_path(kind)),
            });
            match c.kind {
                "azure" => {
                    p.query.insert("api-version".into(), "2024-10-21".into());
                    p.model_map.insert(c.model.into(), "mini-deployment".into());
                }
                "vllm" | "ollama" => p.prices = self_hosted_prices(c.model),
                _ => {}
            }
            config.providers.push(p);
        }
    })
    .await;
    let catalog = Catalog::with_overrides(Vec::new(), UnknownModelPolicy::Refuse).unwrap();
    let (_, key) = s.create_key("preset-user", Some("platform")).await;
    for c in cases() {
        let before = seen.lock().unwrap().len();
        let res = s.chat(&key, chat_body(c.model, "hello", false)).await;
        assert_eq!(res.status(), 200, "{}", c.kind);
        let id = request_id(&res);
        let got = seen.lock().unwrap()[before..].to_vec();
        assert_eq!(got.len(), 1, "{}: one upstream call", c.kind);
        let req = &got[0];
        assert_eq!(req.path_and_query, c.path, "{}", c.kind);
        let sent = req.headers[c.header].to_str().unwrap();
        let key_value = format!("test-key-{}", c.kind);
        if c.bearer {
            assert_eq!(sent, format!("Bearer {key_value}"), "{}", c.kind);
        } else {
            assert_eq!(sent, key_value, "{}", c.kind);
            assert!(req.headers.get("authorization").is_none(), "{}", c.kind);
        }
        let upstream_model = if c.kind == "azure" {
            "mini-deployment"
        } else {
            c.model
        };
        assert_eq!(req.body["model"], upstream_model, "{}", c.kind);

        let log = s.wait_for_log(&id).await;
        assert_eq!(log["provider"], c.name);
        assert_eq!(log["model"], c.model);
        assert_eq!(log["price_confidence"], "exact", "{}", c.kind);
        assert_eq!(log["input_tokens"], PROMPT_TOKENS, "{}", c.kind);
        assert_eq!(log["output_tokens"], COMPLETION_TOKENS, "{}", c.kind);
        // Microdollars per million tokens are picodollars per token.
        let (input, output) = match c.kind {
            "vllm" | "ollama" => (500_000, 1_250_000),
            kind => {
                let priced_as = if kind == "azure" { "openai" } else { kind };
                let p = catalog.get_for(priced_as, c.model).unwrap();
                (p.input_per_mtok.micros(), p.output_per_mtok.micros())
            }
        };
        let expected = i128::from(PROMPT_TOKENS) * i128::from(input)
            + i128::from(COMPLETION_TOKENS) * i128::from(output);
        assert_eq!(picos(&log["cost"]), expected, "{}", c.kind);
    }
    // The name several hosts list was billed at Groq's price, which differs from Together's.
    let groq = catalog.get_for("groq", "openai/gpt-oss-120b").unwrap();
    let together = catalog.get_for("together", "openai/gpt-oss-120b").unwrap();
    assert_eq!(groq.provider, "groq");
    assert_eq!(together.provider, "together");
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dated_snapshot_is_billed_as_its_model_and_flagged_inferred() {
    let s = TestServer::start_with(|config| {
        // The mock "openai" serves models no provider lists; their prices come from the catalog.
        config.providers[0].default = true;
    })
    .await;
    let (_, key) = s.create_key("snapshot-user", None).await;
    let res = s
        .chat(
            &key,
            chat_body("gpt-4o-2099-11-20", "a future snapshot", false),
        )
        .await;
    assert_eq!(res.status(), 200);
    let id = request_id(&res);
    let log = s.wait_for_log(&id).await;
    assert_eq!(log["model"], "gpt-4o-2099-11-20");
    // Read back from the store: the new confidence round-trips and never shows as exact.
    assert_eq!(log["price_confidence"], "inferred");
    let catalog = Catalog::with_overrides(Vec::new(), UnknownModelPolicy::Refuse).unwrap();
    let family = catalog.get("gpt-4o").unwrap();
    let t = |k: &str| i128::from(log[k].as_u64().unwrap());
    assert!(t("input_tokens") > 0 && t("output_tokens") > 0);
    let expected = (t("input_tokens") - t("cached_input_tokens") - t("cache_write_tokens"))
        * i128::from(family.input_per_mtok.micros())
        + t("cached_input_tokens") * i128::from(family.cached_input().micros())
        + t("cache_write_tokens") * i128::from(family.cache_write().micros())
        + t("output_tokens") * i128::from(family.output_per_mtok.micros());
    assert_eq!(picos(&log["cost"]), expected);
    // An unknown model that is not a snapshot of a known one is still refused before any upstream call.
    let res = s
        .chat(&key, chat_body("gpt-nonesuch-2099-11-20", "no", false))
        .await;
    assert_eq!(res.status(), 404);
    // The request page says how the price was found.
    let cookie = s.login("test-admin-token").await;
    let page = s.page(&format!("/requests/{id}"), &cookie).await;
    assert!(
        page.contains("Inferred"),
        "the request page flags the price"
    );
    s.running.stop().await.unwrap();
}

/// OpenRouter reports what it charged in `usage.cost` (openrouter.ai/docs, "Usage accounting"). The spend log
/// keeps it beside spendgate's own price, read from the number's digits, and flags a difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_reported_cost_is_recorded_beside_ours_and_a_difference_flagged() {
    let app = axum::Router::new().fallback(|| async {
        // The number as OpenRouter writes it: a JSON float, here in exponent form.
        let body = r#"{"id":"gen-1","object":"chat.completion","model":"anthropic/claude-sonnet-4.5",
            "choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":1000,"completion_tokens":100,"total_tokens":1100,"cost":4.6e-3,"is_byok":false}}"#;
        ([("content-type", "application/json")], body)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    std::env::set_var(key_env("openrouter"), "test-key-openrouter");
    let s = TestServer::start_with(|config| {
        config.providers = vec![ProviderConfig {
            name: "openrouter".into(),
            kind: "openrouter".into(),
            models: vec!["anthropic/claude-sonnet-4.5".into()],
            base_url: Some(format!("{origin}/api/v1")),
            ..ProviderConfig::default()
        }];
    })
    .await;
    let (_, key) = s.create_key("router-user", None).await;
    let res = s
        .chat(
            &key,
            chat_body("anthropic/claude-sonnet-4.5", "hello", false),
        )
        .await;
    assert_eq!(res.status(), 200);
    let log = s.wait_for_log(&request_id(&res)).await;
    assert_eq!(log["provider_cost"], "0.0046", "{log}");
    // 1,000 x $3 + 100 x $15 per million = $0.0045 by the catalog: OpenRouter said $0.0046.
    assert_eq!(log["cost"], "0.0045");
    assert_eq!(log["provider_cost_differs"], true);
}
