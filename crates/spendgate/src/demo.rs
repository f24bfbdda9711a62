//! `spendgate demo`: the product on its embedded store with the mock provider and live synthetic traffic.
//!
//! The traffic goes over real HTTP through the gateway, like any client's: several teams and users, several
//! workflows, one integration whose key has no team, streaming and not, over every API the gateway speaks (OpenAI
//! chat completions, embeddings and Responses; Anthropic Messages with a cached system prompt, so cache reads and
//! writes show), and after a minute a planted spike in one team: a retry loop sending the same request fast.

use std::time::Duration;

use spendgate_gateway::controls::Controls;
use spendgate_store::Store;
use tokio::sync::watch;

use crate::config::{Config, ProviderConfig};

/// The demo's configuration: every catalog model served by the mock, under its catalog provider's name so the
/// pages look like a real deployment (spend logs say "openai" or "anthropic"; the answers are synthetic).
pub fn demo_config(listen: String, data_dir: std::path::PathBuf, gateway_name: String) -> Config {
    let mock = |name: &str| ProviderConfig {
        name: name.to_string(),
        kind: "mock".into(),
        catalog: true,
        read_timeout_secs: 30,
        latency_ms: 40,
        chunk_delay_ms: 2,
        ..ProviderConfig::default()
    };
    Config {
        listen,
        data_dir,
        gateway_name,
        providers: vec![mock("openai"), mock("anthropic")],
        open_pages: true,
        // The demo's traffic repeats some questions, so the cache has answers to give and /usage savings to show.
        cache: spendgate_gateway::cache::CacheConfig {
            enabled: true,
            ..spendgate_gateway::cache::CacheConfig::default()
        },
        ..Config::default()
    }
}

/// The API a simulated client calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Embeddings,
    /// OpenAI's Responses API.
    Responses,
    /// Anthropic's Messages API, with the long context marked for the prompt cache.
    Messages,
}

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Embeddings => "/v1/embeddings",
            Api::Responses => "/v1/responses",
            Api::Messages => "/v1/messages",
        }
    }
}

/// One simulated client.
struct Actor {
    user: &'static str,
    team: Option<&'static str>,
    workflow: Option<&'static str>,
    models: &'static [&'static str],
    every_ms: u64,
    prompt_words: (usize, usize),
    stream_percent: u32,
    api: Api,
    /// A pilot that stops after this many seconds (its spend then stays put, so its budget sits near).
    active_secs: Option<u64>,
}

const ACTORS: &[Actor] = &[
    Actor {
        user: "alice",
        team: Some("support"),
        workflow: Some("ticket-triage"),
        models: &["gpt-4o-mini", "gpt-4o-mini-2024-07-18"],
        every_ms: 700,
        prompt_words: (150, 500),
        stream_percent: 50,
        api: Api::Chat,
        active_secs: None,
    },
    // The same team's other triage bot speaks Anthropic's API (the mock, like Anthropic, serves Claude only there).
    Actor {
        user: "amir",
        team: Some("support"),
        workflow: Some("ticket-triage"),
        models: &["claude-haiku-4-5", "claude-haiku-4-5-20251001"],
        every_ms: 1_400,
        prompt_words: (150, 500),
        stream_percent: 50,
        api: Api::Messages,
        active_secs: None,
    },
    Actor {
        user: "bob",
        team: Some("support"),
        workflow: Some("reply-draft"),
        models: &["gpt-4.1"],
        every_ms: 2_000,
        prompt_words: (300, 900),
        stream_percent: 80,
        api: Api::Chat,
        active_secs: None,
    },
    Actor {
        user: "carol",
        team: Some("search"),
        workflow: Some("semantic-search"),
        models: &["text-embedding-3-small"],
        every_ms: 300,
        prompt_words: (20, 120),
        stream_percent: 0,
        api: Api::Embeddings,
        active_secs: None,
    },
    Actor {
        user: "dave",
        team: Some("search"),
        workflow: Some("rerank"),
        models: &["gpt-4.1-mini"],
        every_ms: 1_500,
        prompt_words: (200, 700),
        stream_percent: 30,
        api: Api::Chat,
        active_secs: None,
    },
    Actor {
        user: "erin",
        team: Some("growth"),
        workflow: Some("campaign-copy"),
        models: &["claude-sonnet-4-5"],
        every_ms: 4_000,
        prompt_words: (800, 2_500),
        stream_percent: 100,
        api: Api::Messages,
        active_secs: None,
    },
    Actor {
        user: "frank",
        team: Some("data-science"),
        workflow: Some("notebook"),
        models: &["o4-mini", "gpt-5-mini"],
        every_ms: 3_000,
        prompt_words: (100, 1_500),
        stream_percent: 20,
        api: Api::Responses,
        active_secs: None,
    },
    Actor {
        user: "batch-integration",
        team: None,
        workflow: None,
        models: &["gpt-4o"],
        every_ms: 2_500,
        prompt_words: (400, 1_200),
        stream_percent: 0,
        api: Api::Chat,
        active_secs: None,
    },
    Actor {
        user: "dana",
        team: Some("legal"),
        workflow: Some("contract-review"),
        models: &["claude-sonnet-4-5"],
        every_ms: 1_500,
        prompt_words: (1_000, 2_000),
        stream_percent: 50,
        api: Api::Messages,
        active_secs: Some(40),
    },
];

const WORDS: &[&str] = &[
    "customer",
    "invoice",
    "refund",
    "order",
    "shipping",
    "delayed",
    "account",
    "password",
    "reset",
    "please",
    "summarize",
    "the",
    "following",
    "ticket",
    "and",
    "classify",
    "its",
    "urgency",
    "product",
    "search",
];

fn prompt(rng: &mut fastrand::Rng, words: (usize, usize)) -> String {
    let n = rng.usize(words.0..=words.1);
    let mut s = String::with_capacity(n * 8);
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.usize(..WORDS.len())]);
    }
    s
}

fn body(model: &str, text: &str, stream: bool, api: Api) -> serde_json::Value {
    match api {
        Api::Embeddings => serde_json::json!({ "model": model, "input": text }),
        Api::Chat => serde_json::json!({
            "model": model,
            "stream": stream,
            "messages": [{ "role": "system", "content": "You are a helpful assistant." }, { "role": "user", "content": text }],
        }),
        Api::Responses => serde_json::json!({
            "model": model,
            "stream": stream,
            "instructions": "You are a helpful assistant.",
            "input": text,
        }),
        // The document goes in a system block marked for the cache, as an Anthropic client would send it.
        Api::Messages => serde_json::json!({
            "model": model,
            "stream": stream,
            "max_tokens": 1024,
            "system": [{ "type": "text", "text": text, "cache_control": { "type": "ephemeral" } }],
            "messages": [{ "role": "user", "content": "Review the document above." }],
        }),
    }
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    workflow: Option<&str>,
    api: Api,
    body: &serde_json::Value,
    cache_bypass: bool,
) {
    let mut req = client.post(format!("{base}{}", api.path()));
    // Anthropic's clients send their key as x-api-key; OpenAI's as a bearer token. The gateway takes both.
    req = if api == Api::Messages {
        req.header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
    } else {
        req.bearer_auth(key)
    };
    let mut req = req
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(w) = workflow {
        req = req.header("x-spendgate-workflow", w);
    }
    if cache_bypass {
        req = req.header(spendgate_gateway::cache::CACHE_HEADER, "bypass");
    }
    match req.send().await {
        Ok(res) => {
            // Read the whole answer, streamed or not, as a client would.
            let _ = res.bytes().await;
        }
        Err(e) => tracing::debug!(error = %e, "A demo request failed."),
    }
}

/// Seeds budgets and wallets once the traffic has run for a while (after the legal team's pilot has stopped),
/// sized from what was really spent: team legal sits near its daily budget (87 %) and stays there, team support's
/// daily budget is twice what it spent so far, so the planted retry loop pushes it near and then over (alerts),
/// and the data-science wallet is low. Runs once per demo start; a second start keeps existing wallets.
pub async fn seed_controls(controls: std::sync::Arc<Controls>) -> anyhow::Result<()> {
    use spendgate_core::controls::{Period, Scope};
    use spendgate_core::Money;
    use spendgate_store::controls::{NewBudget, NewWallet, Transfer};
    let usd = |s: &str| Money::parse_usd(s).unwrap_or_default();
    let store = std::sync::Arc::clone(controls.store());
    let now = spendgate_core::time::now_ms();
    let (start, _) = Period::Day.bounds(&controls.config().time_zone, now);
    let today = |team: &'static str| {
        let store = std::sync::Arc::clone(&store);
        async move {
            let f = spendgate_core::Filters {
                from_ms: start,
                to_ms: now + 1,
                team: Some(team.into()),
                ..Default::default()
            };
            store.summary(&f).await.map(|t| t.cost)
        }
    };
    let legal_amount =
        Money::from_picos((today("legal").await?.picos() * 100 / 87).max(usd("0.01").picos()));
    let support_amount =
        Money::from_picos((today("support").await?.picos() * 2).max(usd("0.05").picos()));
    let budgets = [
        NewBudget {
            name: Some("Org monthly".into()),
            scope: Scope::Org,
            period: Period::Month,
            amount: usd("250"),
            thresholds: vec![80, 100],
            hard_limit: false,
        },
        NewBudget {
            name: Some("Support daily".into()),
            scope: Scope::Team("support".into()),
            period: Period::Day,
            amount: support_amount,
            thresholds: vec![80, 100],
            hard_limit: false,
        },
        NewBudget {
            name: Some("Legal daily".into()),
            scope: Scope::Team("legal".into()),
            period: Period::Day,
            amount: legal_amount,
            thresholds: vec![80, 100],
            hard_limit: false,
        },
        NewBudget {
            name: Some("Search weekly cap".into()),
            scope: Scope::Team("search".into()),
            period: Period::Week,
            amount: usd("20"),
            thresholds: vec![80, 100],
            hard_limit: true,
        },
    ];
    for b in budgets {
        controls.set_budget(b).await?;
    }
    let wallets = [
        (
            NewWallet {
                name: "Company credits".into(),
                scope: Scope::Org,
                low_threshold: usd("10"),
            },
            usd("100"),
        ),
        (
            NewWallet {
                name: "Data science pilot".into(),
                scope: Scope::Team("data-science".into()),
                low_threshold: usd("0.45"),
            },
            usd("0.46"),
        ),
    ];
    for (w, amount) in wallets {
        match controls.create_wallet(w).await {
            Ok(rec) => {
                controls
                    .transfer(
                        Transfer::TopUp {
                            wallet: rec.id,
                            amount,
                        },
                        "demo",
                        "demo seed",
                    )
                    .await?;
            }
            Err(e) => tracing::debug!(error = %e, "A demo wallet exists already."),
        }
    }
    Ok(())
}

/// Runs the demo traffic until `stop` turns true.
pub async fn run_traffic(
    store: std::sync::Arc<dyn Store>,
    base: String,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut tasks = Vec::new();
    for (i, actor) in ACTORS.iter().enumerate() {
        let (_, key) =
            spendgate_gateway::keys::create_key(&*store, actor.user, actor.team, None).await?;
        let client = client.clone();
        let base = base.clone();
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(i as u64 + 1);
            let started = tokio::time::Instant::now();
            loop {
                if actor
                    .active_secs
                    .is_some_and(|secs| started.elapsed() >= Duration::from_secs(secs))
                {
                    break;
                }
                let jitter = rng.u64(0..=actor.every_ms / 2);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(actor.every_ms + jitter)) => {}
                    _ = stop.wait_for(|v| *v) => break,
                }
                // A quarter of the requests ask one of the actor's five frequent questions again: the same
                // model, stream choice and text each time, so the cache can answer them.
                let repeat = rng.u32(0..100) < 25;
                let mut question = fastrand::Rng::with_seed((i as u64 + 1) * 1_000 + rng.u64(0..5));
                let r = if repeat { &mut question } else { &mut rng };
                let model = actor.models[r.usize(..actor.models.len())];
                let stream = r.u32(0..100) < actor.stream_percent;
                let text = prompt(r, actor.prompt_words);
                let b = body(model, &text, stream, actor.api);
                let (c, base, key) = (client.clone(), base.clone(), key.clone());
                tokio::spawn(async move {
                    send(&c, &base, &key, actor.workflow, actor.api, &b, false).await
                });
            }
        }));
    }
    // The planted spike: from the first minute on, a support integration retries one request in a tight loop
    // for two minutes, then pauses for five, again and again.
    let (_, retry_key) =
        spendgate_gateway::keys::create_key(&*store, "triage-bot", Some("support"), None).await?;
    let mut stop_spike = stop.clone();
    tasks.push(tokio::spawn(async move {
        let same = body(
            "gpt-4.1",
            &prompt(&mut fastrand::Rng::with_seed(42), (600, 600)),
            false,
            Api::Chat,
        );
        let wait = |d: Duration, stop: &mut watch::Receiver<bool>| {
            let mut stop = stop.clone();
            async move {
                tokio::select! {
                    _ = tokio::time::sleep(d) => false,
                    _ = stop.wait_for(|v| *v) => true,
                }
            }
        };
        if wait(Duration::from_secs(60), &mut stop_spike).await {
            return;
        }
        loop {
            tracing::info!("Demo: the planted retry loop in team 'support' starts now.");
            let until = tokio::time::Instant::now() + Duration::from_secs(120);
            while tokio::time::Instant::now() < until {
                let (c, base, key, b) = (
                    client.clone(),
                    base.clone(),
                    retry_key.clone(),
                    same.clone(),
                );
                tokio::spawn(async move {
                    // The loop skips the cache (as a client retrying past a bad answer would), so its spend spikes.
                    send(&c, &base, &key, Some("ticket-triage"), Api::Chat, &b, true).await
                });
                if wait(Duration::from_millis(100), &mut stop_spike).await {
                    return;
                }
            }
            if wait(Duration::from_secs(300), &mut stop_spike).await {
                return;
            }
        }
    }));
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
