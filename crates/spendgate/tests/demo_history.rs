//! The demo's past: 30 days of history written into an empty store before the demo serves, read back through
//! the JSON API (the explain view over this week against the week before finds each planted effect), the
//! anomaly detectors over that history plus the live traffic's start (only the planted cases are flagged), and
//! the demo's own budgets and wallets (admin actions in the audit log that never overwrite a user's).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{picos, Api};
use serde_json::{json, Value};
use spendgate::app::{start, Running};
use spendgate::config::Config;
use spendgate::demo;
use spendgate_core::anomaly::AnomalyConfig;
use spendgate_core::time::now_ms;

fn demo_config(dir: &std::path::Path) -> Config {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut c = demo::demo_config(
        "127.0.0.1:0".into(),
        dir.to_path_buf(),
        "demo-gateway".into(),
    );
    c.admin_token = Some("test-admin-token".into());
    c
}

async fn serve(config: &Config) -> (Running, Api) {
    let running = start(config).await.unwrap();
    let api = Api {
        base: format!("http://{}", running.addr),
        client: reqwest::Client::new(),
    };
    (running, api)
}

async fn explain(api: &Api, team: &str) -> Value {
    let (status, v) = api
        .admin_get(&format!(
            "/api/v1/insights/explain?group_by=team&subject={team}&window=7d"
        ))
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The actions the audit log records as the demo's, oldest first.
async fn demo_actions(running: &Running) -> Vec<String> {
    let mut audit = running
        .store
        .list_audit(0, now_ms() + 1, 1000)
        .await
        .unwrap();
    audit.sort_by_key(|a| a.id);
    audit
        .into_iter()
        .filter(|a| a.entry.actor == "demo")
        .map(|a| a.entry.action)
        .collect()
}

/// A page's text without its tags (the demo's pages are open, no login).
async fn page(api: &Api, path: &str) -> String {
    let res = api
        .client
        .get(format!("{}{path}", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    let html = res.text().await.unwrap();
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn requests_in_history(api: &Api) -> u64 {
    let (status, v) = api
        .admin_get("/api/v1/usage/summary?from=2000-01-01T00:00:00Z")
        .await;
    assert_eq!(status, 200, "{v}");
    v["requests"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_explains_this_week_against_the_week_before_and_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config(dir.path());
    let t0 = Instant::now();
    let mut days = Vec::new();
    let written = demo::write_history(&config, |p| days.push(p.day))
        .await
        .unwrap()
        .expect("an empty store gets a history");
    println!(
        "history: {} events over {} days written in {:.1} s",
        written.events,
        days.len(),
        t0.elapsed().as_secs_f64()
    );
    // At least 30 days, back to the start of last month (month to date has a whole span to compare with).
    assert!(written.days >= 30, "{} days", written.days);
    assert_eq!(days, (1..=written.days).collect::<Vec<_>>());
    assert!(
        (10_000..=100_000).contains(&written.events),
        "a modest history: {} events",
        written.events
    );

    let (running, api) = serve(&config).await;
    assert_eq!(requests_in_history(&api).await, written.events as u64);
    // Each planted change is found by the explain view, with a real baseline behind it.
    for (team, effect) in [
        ("support", "volume"),
        ("growth", "intensity"),
        ("search", "price_mix"),
    ] {
        let v = explain(&api, team).await;
        let baseline = picos(&v["baseline"]["cost"]);
        let effects: HashMap<&str, i128> = ["volume", "intensity", "price_mix"]
            .into_iter()
            .map(|e| (e, picos(&v["effects"][e])))
            .collect();
        println!(
            "team {team}: baseline {} requests, driver {}, effects {effects:?}; {}",
            v["baseline"]["requests"], v["driver"], v["sentence"]
        );
        assert!(baseline > 0, "team {team} has a baseline: {v}");
        assert!(v["baseline"]["requests"].as_u64().unwrap() > 100, "{v}");
        assert_eq!(v["driver"], json!(effect), "team {team}: {v}");
        assert!(effects[effect] > 0, "team {team}'s {effect} effect: {v}");
        assert!(
            !v["sentence"]
                .as_str()
                .unwrap()
                .contains("no requests in the baseline"),
            "{v}"
        );
    }
    // The pages tell the same from the first minute: the overview compares with real spans before, and the
    // explain page finds the volume behind support's rise.
    let overview = page(&api, "/overview").await;
    for span in ["yesterday by this time", "same span last month"] {
        let baseline = overview
            .split(&format!(" {span}"))
            .next()
            .and_then(|before| before.rsplit("vs $").next())
            .unwrap_or_default();
        let usd = spendgate_core::Money::parse_usd(baseline.trim())
            .unwrap_or_else(|_| panic!("/overview compares with {span}: {overview}"));
        assert!(usd.picos() > 0, "/overview: {span} is ${baseline}");
    }
    let explain_page = page(&api, "/explain?group_by=team&subject=support&window=7d").await;
    assert!(explain_page.contains("volume-driven"), "{explain_page}");
    assert!(
        !explain_page.contains("no requests in the baseline"),
        "{explain_page}"
    );
    // The team whose key has no team spends more than the week before.
    let (_, nobody) = api
        .admin_get("/api/v1/insights/explain?group_by=team&subject=@none&window=7d")
        .await;
    assert!(picos(&nobody["change"]) > 0, "{nobody}");
    // The history is recorded once, as the demo's own action.
    assert_eq!(demo_actions(&running).await, vec!["demo.history"]);
    running.stop().await.unwrap();

    // A second start on the same data directory writes nothing.
    let again = demo::write_history(&config, |_| panic!("no progress on a second start"))
        .await
        .unwrap();
    assert!(again.is_none(), "the history was written twice");
    let (running, api) = serve(&config).await;
    assert_eq!(requests_in_history(&api).await, written.events as u64);
    running.stop().await.unwrap();
}

/// Every signal the detectors raise now, as the API shows them.
async fn signals(
    running: &Running,
    cfg: &AnomalyConfig,
    episodes: &mut spendgate_gateway::anomalies::Episodes,
) -> Vec<Value> {
    let repeats = running.writer.repeats().map(|r| &**r);
    spendgate_gateway::anomalies::evaluate(&*running.store, repeats, cfg, now_ms(), None, episodes)
        .await
        .unwrap()
        .iter()
        .map(|s| s.to_json())
        .collect()
}

/// What a detector signal concerns, as a planted case's name, or `None` for a false positive.
fn planted_case(s: &Value, loop_key: i64) -> Option<&'static str> {
    match (s["kind"].as_str().unwrap(), s["subject"].as_str().unwrap()) {
        ("anomaly_retry_loop", subject) if subject == format!("key:{loop_key}") => {
            Some("retry loop")
        }
        ("anomaly_prompt_expansion", "team:growth" | "workflow:campaign-copy") => {
            Some("prompt growth")
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detectors_find_the_planted_loop_and_prompt_growth_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config(dir.path());
    let written = demo::write_history(&config, |_| {}).await.unwrap().unwrap();
    let (running, _api) = serve(&config).await;
    let cfg = AnomalyConfig::default();
    let mut episodes = spendgate_gateway::anomalies::Episodes::default();

    // Over the history alone: the prompt growth, and no retry loop (every historical request is different).
    let before = signals(&running, &cfg, &mut episodes).await;
    assert!(
        before
            .iter()
            .all(|s| planted_case(s, -1) == Some("prompt growth")),
        "only the prompt growth shows in the history: {before:?}"
    );

    // Live traffic on top, with the planted retry loop from the start.
    let traffic = tokio::spawn(demo::run_traffic(
        std::sync::Arc::clone(&running.store),
        format!("http://{}", running.addr),
        running.shutdown_signal(),
        demo::Traffic {
            spike_after: Duration::ZERO,
            keys: written.keys.clone(),
        },
    ));
    let t0 = Instant::now();
    let signals = loop {
        let signals = signals(&running, &cfg, &mut episodes).await;
        if signals.iter().any(|s| s["kind"] == "anomaly_retry_loop") {
            break signals;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the planted retry loop was never found: {signals:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let keys = running.store.list_keys().await.unwrap();
    let loop_key = keys.iter().find(|k| k.user == "triage-bot").unwrap().id;
    let planted = ["retry loop", "prompt growth"];
    let found: Vec<Option<&str>> = signals.iter().map(|s| planted_case(s, loop_key)).collect();
    let true_positives = found.iter().filter(|f| f.is_some()).count();
    let recalled = planted
        .iter()
        .filter(|p| found.contains(&Some(**p)))
        .count();
    println!(
        "detectors over the demo history + live start: {} signals, precision {}/{}, recall {}/{}",
        signals.len(),
        true_positives,
        signals.len(),
        recalled,
        planted.len()
    );
    for s in &signals {
        println!("  {} {}: {}", s["kind"], s["subject"], s["sentence"]);
    }
    assert_eq!(
        recalled,
        planted.len(),
        "every planted case is found: {signals:?}"
    );
    assert_eq!(
        true_positives,
        signals.len(),
        "nothing else is flagged: {signals:?}"
    );
    running.stop().await.unwrap();
    let _ = traffic.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_seeds_its_controls_once_as_admin_actions_and_keeps_the_users() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config(dir.path());
    let (running, api) = serve(&config).await;
    // The user sets team support's daily budget in the demo's first minute.
    let (status, mine) = api
        .admin_post(
            "/api/v1/budgets",
            json!({ "scope": "team", "subject": "support", "period": "day", "amount": "7.00", "name": "Mine" }),
        )
        .await;
    assert_eq!(status, 201, "{mine}");

    let seeded = demo::seed_controls(std::sync::Arc::clone(&running.controls))
        .await
        .unwrap();
    assert_eq!(seeded.kept, vec!["Support daily".to_string()]);
    assert_eq!(seeded.created.len(), 5, "{seeded:?}");
    let budgets = running.store.list_budgets().await.unwrap();
    let support: Vec<_> = budgets
        .iter()
        .filter(|b| b.def.scope.subject() == "support")
        .collect();
    assert_eq!(support.len(), 1);
    assert_eq!(support[0].def.name.as_deref(), Some("Mine"));
    assert_eq!(
        support[0].def.amount,
        spendgate_core::Money::parse_usd("7.00").unwrap()
    );

    // Each of the demo's changes is in the audit log under its own name.
    let by_demo = demo_actions(&running).await;
    for (action, count) in [("budget.set", 3), ("wallet.create", 2), ("wallet.topup", 2)] {
        assert_eq!(
            by_demo.iter().filter(|a| *a == action).count(),
            count,
            "{by_demo:?}"
        );
    }

    // The user changes one of the demo's budgets; the demo, started again, leaves everything as it is.
    let org = budgets
        .iter()
        .find(|b| b.def.name.as_deref() == Some("Org monthly"))
        .unwrap();
    let (status, v) = api
        .admin_post(
            "/api/v1/budgets",
            json!({ "scope": "org", "period": "month", "amount": "900", "name": "Org monthly" }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    running.stop().await.unwrap();
    let (running, _api) = serve(&config).await;
    let again = demo::seed_controls(std::sync::Arc::clone(&running.controls))
        .await
        .unwrap();
    assert!(again.seeded_before && again.created.is_empty(), "{again:?}");
    let budgets = running.store.list_budgets().await.unwrap();
    let org_now = budgets.iter().find(|b| b.id == org.id).unwrap();
    assert_eq!(
        org_now.def.amount,
        spendgate_core::Money::parse_usd("900").unwrap()
    );
    assert_eq!(demo_actions(&running).await, by_demo);
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_is_written_once_on_postgresql_too() {
    let Some(db) = common::scratch_pg().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = demo_config(dir.path());
    config.store.url = Some(db.url().to_string());
    let written = demo::write_history(&config, |_| {}).await.unwrap().unwrap();
    assert!(demo::write_history(&config, |_| {})
        .await
        .unwrap()
        .is_none());
    let (running, api) = serve(&config).await;
    assert_eq!(requests_in_history(&api).await, written.events as u64);
    assert_eq!(explain(&api, "support").await["driver"], json!("volume"));
    running.stop().await.unwrap();
}
