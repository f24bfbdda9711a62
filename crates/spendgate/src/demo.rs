//! `spendgate demo`: the product on its embedded store with the mock provider and live synthetic traffic.
//!
//! The traffic goes over real HTTP through the gateway, like any client's: several teams and users, several
//! workflows, one integration whose key has no team, streaming and not, over every API the gateway speaks (OpenAI
//! chat completions, embeddings and Responses; Anthropic Messages with a cached system prompt, so cache reads and
//! writes show; Claude and Gemini models through chat completions, translated), and after a minute a planted spike
//! in one team: a retry loop sending the same request fast.

use std::time::Duration;

use spendgate_gateway::controls::Controls;
use spendgate_store::Store;
use tokio::sync::watch;

use crate::config::{Config, ProviderConfig};

mod actors;

/// The demo's configuration: every catalog model served by the mock, under its catalog provider's name so the
/// pages look like a real deployment (spend logs say "openai", "anthropic" or "gemini"; the answers are
/// synthetic). The mock named "gemini" speaks Google's own Gemini API, as Google does.
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
        providers: vec![mock("openai"), mock("anthropic"), mock("gemini")],
        open_pages: true,
        // The demo's traffic repeats some questions, so the cache has answers to give and /usage savings to show.
        cache: spendgate_gateway::cache::CacheConfig {
            enabled: true,
            ..spendgate_gateway::cache::CacheConfig::default()
        },
        ..Config::default()
    }
}

/// Writes the demo's 30 days of history into the store `config` names when it holds no spend yet, before anything
/// serves (`demo_history.rs`); `None` when it already held some. `progress` hears about each day written.
pub async fn write_history(
    config: &Config,
    progress: impl FnMut(crate::demo_history::Progress),
) -> anyhow::Result<Option<crate::demo_history::Written>> {
    let catalog = config.catalog()?;
    std::fs::create_dir_all(&config.data_dir)?;
    let store = crate::app::open_store(config).await?;
    let now = spendgate_core::time::now_ms();
    Ok(
        crate::demo_history::write_if_empty(&store, &catalog, &config.gateway_name, now, progress)
            .await?,
    )
}

/// The API a simulated client calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Chat,
    Embeddings,
    /// OpenAI's Responses API.
    Responses,
    /// Anthropic's Messages API, with the long context marked for the prompt cache.
    Messages,
}

impl Api {
    /// The gateway's name for this API, as its spend logs record it.
    pub(crate) fn endpoint(self) -> spendgate_gateway::provider::Endpoint {
        use spendgate_gateway::provider::Endpoint;
        match self {
            Api::Chat => Endpoint::ChatCompletions,
            Api::Embeddings => Endpoint::Embeddings,
            Api::Responses => Endpoint::Responses,
            Api::Messages => Endpoint::Messages,
        }
    }

    /// The provider that serves this API in the demo: the mock answers Claude only on Anthropic's API, like
    /// Anthropic, and everything else under OpenAI's name.
    pub(crate) fn provider(self) -> &'static str {
        match self {
            Api::Messages => "anthropic",
            _ => "openai",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Embeddings => "/v1/embeddings",
            Api::Responses => "/v1/responses",
            Api::Messages => "/v1/messages",
        }
    }
}

/// One simulated client. Its models and prompt sizes are today's; `history` says how it got there.
pub(crate) struct Actor {
    pub(crate) user: &'static str,
    pub(crate) team: Option<&'static str>,
    pub(crate) workflow: Option<&'static str>,
    pub(crate) models: &'static [&'static str],
    every_ms: u64,
    pub(crate) prompt_words: (usize, usize),
    pub(crate) stream_percent: u32,
    pub(crate) api: Api,
    /// A pilot that stops after this many seconds (its spend then stays put, so its budget sits near).
    active_secs: Option<u64>,
    /// Its past 30 days (`demo_history.rs`); `None` for a client that is new today.
    pub(crate) history: Option<Past>,
}

/// An actor's past: how many requests an hour it sent at a weekday's busiest time, and what changed.
pub(crate) struct Past {
    pub(crate) per_hour: u32,
    /// A scheduled job runs around the clock, every day alike; people work by day and less at weekends.
    pub(crate) around_the_clock: bool,
    pub(crate) story: Story,
}

/// What the history tells about one actor (each is one of the effects `/explain` separates).
pub(crate) enum Story {
    Steady,
    /// Volume: a rollout 7 days ago brought 40% more requests of the same size.
    Rollout,
    /// Intensity: prompts were `before` words long until 3 days ago, then grew steadily to today's size.
    PromptGrowth {
        before: (usize, usize),
    },
    /// Price/mix: the actor used `before` until `days_ago` days ago, then today's (pricier) models.
    ModelMove {
        before: &'static [&'static str],
        days_ago: i64,
    },
    /// Unattributed spend creeping up: from 60% to 140% of `per_hour` over the 30 days.
    Creep,
}

/// How much slower than `every_ms` the live actors send: the history is written at a few hundred requests an
/// hour, and live traffic at full pace (tens of thousands an hour) outweighed the whole week in /explain within
/// twenty minutes and tripped spend-rate alerts against it. The planted retry loop keeps its own pace.
const LIVE_PACE: u64 = 4;

pub(crate) use actors::ACTORS;

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

pub(crate) fn prompt(rng: &mut fastrand::Rng, words: (usize, usize)) -> String {
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

pub(crate) fn body(model: &str, text: &str, stream: bool, api: Api) -> serde_json::Value {
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

/// Who the demo's own changes are recorded as in the audit log (the activity history shows them as admin actions).
pub const DEMO_ACTOR: &str = "demo";

/// The audit action that marks the demo's budgets and wallets as seeded: they are seeded once per data
/// directory, so a budget or wallet the user deleted or changed later is never put back.
const SEEDED: &str = "demo.seed";

/// What [`seed_controls`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seeded {
    /// Names of the budgets and wallets the demo created.
    pub created: Vec<String>,
    /// Names of those left out because one for the same scope and period (budgets) or the same name or scope
    /// (wallets) was already there: the user's own.
    pub kept: Vec<String>,
    /// The demo had seeded this data directory before, so nothing was looked at.
    pub seeded_before: bool,
}

/// Seeds budgets and wallets once the traffic has run for a while (after the legal team's pilot has stopped),
/// sized from what was really spent: team legal sits near its daily budget (87 %) and stays there, team support's
/// daily budget is twice what it spent so far, so the planted retry loop pushes it near and then over (alerts),
/// and the data-science wallet is low.
///
/// The demo's changes are admin actions like anyone's: each is recorded in the audit log as actor "demo". It
/// seeds a data directory once, creates only what is absent and never updates a budget or wallet that exists,
/// so a budget the user set in the first minute stays as the user set it.
pub async fn seed_controls(controls: std::sync::Arc<Controls>) -> anyhow::Result<Seeded> {
    use spendgate_core::controls::{Period, Scope};
    use spendgate_core::Money;
    use spendgate_store::controls::{AuditEntry, NewBudget, NewWallet, Transfer};
    let usd = |s: &str| Money::parse_usd(s).unwrap_or_default();
    let store = std::sync::Arc::clone(controls.store());
    let now = spendgate_core::time::now_ms();
    let mut out = Seeded::default();
    if store
        .list_audit(0, now + 1, 100_000)
        .await?
        .iter()
        .any(|a| a.entry.actor == DEMO_ACTOR && a.entry.action == SEEDED)
    {
        out.seeded_before = true;
        return Ok(out);
    }
    let audit = |action: &'static str, target: String, after: serde_json::Value| {
        let store = std::sync::Arc::clone(&store);
        async move {
            let entry = AuditEntry {
                actor: DEMO_ACTOR.into(),
                action: action.into(),
                target,
                before: None,
                after: Some(after),
            };
            if let Err(e) = store.record_audit(entry).await {
                tracing::warn!(error = %e, "Recording a demo change in the audit log failed.");
            }
        }
    };
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
    let budget =
        |name: &str, scope: Scope, period: Period, amount: Money, hard_limit: bool| NewBudget {
            name: Some(name.into()),
            scope,
            period,
            amount,
            thresholds: vec![80, 100],
            hard_limit,
        };
    let budgets = [
        budget("Org monthly", Scope::Org, Period::Month, usd("250"), false),
        budget(
            "Support daily",
            Scope::Team("support".into()),
            Period::Day,
            support_amount,
            false,
        ),
        budget(
            "Legal daily",
            Scope::Team("legal".into()),
            Period::Day,
            legal_amount,
            false,
        ),
        budget(
            "Search weekly cap",
            Scope::Team("search".into()),
            Period::Week,
            usd("20"),
            true,
        ),
    ];
    let existing = store.list_budgets().await?;
    for b in budgets {
        let name = b.name.clone().unwrap_or_default();
        if existing
            .iter()
            .any(|e| e.def.scope == b.scope && e.def.period == b.period)
        {
            out.kept.push(name);
            continue;
        }
        let (before, after) = controls.set_budget(b).await?;
        if let Some(theirs) = before {
            // Someone set a budget for this scope and period between the look and the write: theirs wins.
            controls.set_budget(theirs.def).await?;
            out.kept.push(name);
            continue;
        }
        audit(
            "budget.set",
            format!("budget:{}", after.id),
            serde_json::json!({
                "id": after.id,
                "name": after.def.name,
                "scope": after.def.scope.kind(),
                "subject": after.def.scope.subject(),
                "period": after.def.period.as_str(),
                "amount": after.def.amount,
                "thresholds": after.def.thresholds,
                "hard_limit": after.def.hard_limit,
            }),
        )
        .await;
        out.created.push(name);
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
    let existing = store.list_wallets().await?;
    for (w, amount) in wallets {
        if existing
            .iter()
            .any(|e| e.def.name == w.name || e.def.scope == w.scope)
        {
            out.kept.push(w.name);
            continue;
        }
        let name = w.name.clone();
        let rec = match controls.create_wallet(w).await {
            Ok(rec) => rec,
            Err(e) => {
                // Created by someone else since the look: theirs stays.
                tracing::debug!(error = %e, "A demo wallet exists already.");
                out.kept.push(name);
                continue;
            }
        };
        audit(
            "wallet.create",
            format!("wallet:{}", rec.id),
            serde_json::json!({
                "id": rec.id,
                "name": rec.def.name,
                "scope": rec.def.scope.kind(),
                "subject": rec.def.scope.subject(),
                "low_threshold": rec.def.low_threshold,
            }),
        )
        .await;
        let topped = controls
            .transfer(
                Transfer::TopUp {
                    wallet: rec.id,
                    amount,
                },
                DEMO_ACTOR,
                "demo seed",
            )
            .await?;
        for t in topped {
            audit(
                "wallet.topup",
                format!("wallet:{}", t.id),
                serde_json::json!({ "balance": t.balance, "reason": "demo seed" }),
            )
            .await;
        }
        out.created.push(name);
    }
    audit(
        SEEDED,
        "demo".into(),
        serde_json::json!({ "created": out.created, "kept": out.kept }),
    )
    .await;
    Ok(out)
}

/// How many frequent questions each actor asks again. A quarter of an actor's requests are one of these, so the
/// cache has answers to give; the pool is large enough that even the fastest actor asks any one of them only a
/// few times in the retry-loop detector's window (5 minutes, 20 repeats), so only the planted loop looks like
/// one (`frequent_questions_stay_under_the_retry_detector` checks the arithmetic).
const FREQUENT_QUESTIONS: u64 = 64;

/// The percentage of an actor's requests that ask one of its frequent questions again.
const REPEAT_PERCENT: u32 = 25;

/// How the live traffic runs.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// When the planted retry loop first starts (a minute in, so the dashboard shows a calm start first).
    pub spike_after: Duration,
    /// Keys made earlier for the actors (by the history, whose spend is theirs), by user; an actor without one
    /// gets a new key.
    pub keys: std::collections::HashMap<String, String>,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            spike_after: Duration::from_secs(60),
            keys: std::collections::HashMap::new(),
        }
    }
}

/// Runs the demo traffic until `stop` turns true.
pub async fn run_traffic(
    store: std::sync::Arc<dyn Store>,
    base: String,
    stop: watch::Receiver<bool>,
    traffic: Traffic,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut tasks = Vec::new();
    for (i, actor) in ACTORS.iter().enumerate() {
        let key = match traffic.keys.get(actor.user) {
            Some(k) => k.clone(),
            None => {
                spendgate_gateway::keys::create_key(&*store, actor.user, actor.team, None)
                    .await?
                    .1
            }
        };
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
                let every = actor.every_ms * LIVE_PACE;
                let jitter = rng.u64(0..=every / 2);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(every + jitter)) => {}
                    _ = stop.wait_for(|v| *v) => break,
                }
                // A quarter of the requests ask one of the actor's frequent questions again: the same model,
                // stream choice and text each time, so the cache can answer them. Every other request is new
                // text (random words), so it never repeats.
                let repeat = rng.u32(0..100) < REPEAT_PERCENT;
                let mut question = fastrand::Rng::with_seed(
                    (i as u64 + 1) * 1_000 + rng.u64(0..FREQUENT_QUESTIONS),
                );
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
    // The planted spike: from the first minute on (`spike_after`), a support integration retries one request in
    // a tight loop for two minutes, then pauses for five, again and again.
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
        if wait(traffic.spike_after, &mut stop_spike).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequent_questions_stay_under_the_retry_detector() {
        let cfg = spendgate_core::anomaly::AnomalyConfig::default();
        let window_ms = u64::try_from(cfg.retry_window_ms).unwrap();
        for a in ACTORS {
            // The shortest wait between two requests is `every_ms` (no jitter): the most requests in a window.
            let most = window_ms / a.every_ms;
            let per_question = most * u64::from(REPEAT_PERCENT) / 100 / FREQUENT_QUESTIONS;
            // Expected repeats of one question stay under a quarter of the threshold, so chance stays far from it.
            assert!(
                per_question * 4 < cfg.retry_min_repeats,
                "{} asks each frequent question about {per_question} times in {} s",
                a.user,
                window_ms / 1000
            );
        }
    }
}
