//! Anomaly signals over real HTTP: a retry loop sent through the gateway is flagged by the API and raised once
//! as an alert with its evidence; a spend spike against the same hour of previous days (planted in the real
//! store) is flagged while a steady team stays quiet; forecasts come with a range.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{chat_body, TestServer};
use serde_json::{json, Value};
use spendgate_core::time::{now_ms, DAY_MS, MINUTE_MS};
use spendgate_core::SpendEvent;

/// Polls `path` until `cond` finds something in the answer, or fails after a generous deadline.
async fn poll(s: &TestServer, path: &str, cond: impl Fn(&Value) -> Option<Value>) -> Value {
    let t0 = Instant::now();
    loop {
        let (status, v) = s.admin_get(path).await;
        assert_eq!(status, 200, "{v}");
        if let Some(found) = cond(&v) {
            return found;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{path} never showed the expected signal: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn signal(v: &Value, kind: &str, subject: &str) -> Option<Value> {
    v["signals"]
        .as_array()?
        .iter()
        .find(|x| x["kind"] == kind && x["subject"] == subject)
        .cloned()
}

#[tokio::test]
async fn a_retry_loop_is_flagged_explained_as_volume_and_alerted_once_with_its_evidence() {
    let s = TestServer::start_with(|c| {
        c.open_pages = true;
        c.anomalies.interval_ms = 100;
    })
    .await;
    let (loop_id, loop_key) = s.create_key("triage-bot", Some("support")).await;
    let (calm_id, calm_key) = s.create_key("alice", Some("support")).await;
    // Steady traffic: many requests, every one different.
    for i in 0..30 {
        let r = s
            .chat(
                &calm_key,
                chat_body("gpt-4o-mini", &format!("ticket number {i}"), false),
            )
            .await;
        assert_eq!(r.status().as_u16(), 200);
    }
    // The loop: the same request, 30 times, quickly.
    let prompt = "Classify this ticket: my order never arrived and I want a refund";
    for _ in 0..30 {
        let r = s
            .client
            .post(format!("{}/v1/chat/completions", s.base))
            .bearer_auth(&loop_key)
            .header("x-spendgate-workflow", "ticket-triage")
            .json(&chat_body("gpt-4.1", prompt, false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    let loop_subject = format!("key:{loop_id}");
    // The signal appears once 20 are stored (the writer counts them as their batches commit); wait until it counts
    // all 30.
    let v = poll(&s, "/api/v1/insights/anomalies", |v| {
        signal(v, "anomaly_retry_loop", &loop_subject)
            .filter(|x| x["figures"]["requests"].as_u64() == Some(30))
    })
    .await;
    assert_eq!(v["team"], "support");
    assert_eq!(v["figures"]["workflow"], "ticket-triage");
    assert_eq!(v["driver"], "volume", "{v}");
    // Explained as volume, within the team.
    let why = v["explanation"].as_str().unwrap();
    assert!(
        why.contains("volume") && why.contains("in team support"),
        "{v}"
    );
    let usage = v["evidence"]["usage"].as_str().unwrap();
    assert!(
        usage.starts_with("/usage?") && usage.contains(&format!("key={loop_id}")),
        "{usage}"
    );
    let logs = v["evidence"]["spend_logs"].as_str().unwrap();
    assert!(logs.starts_with("/api/v1/spend-logs?"), "{logs}");
    // The evidence link really selects the loop's requests (the detector counts a request once its batch is
    // committed, so they are all stored by now).
    let page = poll(&s, &format!("{logs}&limit=1000"), |page| {
        (page["items"].as_array()?.len() == 30).then(|| page.clone())
    })
    .await;
    // The key sending different requests is not a loop.
    let (_, all) = s.admin_get("/api/v1/insights/anomalies").await;
    assert!(
        signal(&all, "anomaly_retry_loop", &format!("key:{calm_id}")).is_none(),
        "{all}"
    );
    // Nothing of the prompt is kept: the fingerprint is a hash.
    assert!(!all.to_string().contains("never arrived"));
    assert!(!page.to_string().contains("never arrived"));

    // The background detector raises it as an alert with its evidence link.
    let alert = poll(&s, "/api/v1/alerts", |v| {
        v["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["kind"] == "anomaly_retry_loop" && a["subject"] == loop_subject.as_str())
            .cloned()
    })
    .await;
    assert_eq!(alert["team"], "support");
    assert!(
        alert["link"].as_str().unwrap().starts_with("/usage?"),
        "{alert}"
    );
    assert!(
        alert["message"].as_str().unwrap().contains("retry loop"),
        "{alert}"
    );
    // Later runs of the detector see the same episode, so the alert is not repeated: wait until the detector
    // has certainly run again (a second loop from another key gets its own alert), then count.
    let (other_id, other_key) = s.create_key("second-bot", None).await;
    for _ in 0..25 {
        s.chat(&other_key, chat_body("gpt-4o-mini", "same again", false))
            .await;
    }
    let other_subject = format!("key:{other_id}");
    poll(&s, "/api/v1/alerts", |v| {
        v["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["subject"] == other_subject.as_str())
            .cloned()
    })
    .await;
    let (_, alerts) = s.admin_get("/api/v1/alerts").await;
    let copies = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["subject"] == loop_subject.as_str())
        .count();
    assert_eq!(copies, 1, "{alerts}");

    // The overview's runtime signals list it with a link to the evidence.
    let html = s
        .client
        .get(format!("{}/overview", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("anomaly retry loop"), "{html}");
    assert!(html.contains("class=\"evidence\" href=\"/usage?"), "{html}");
    s.running.stop().await.unwrap();
}

/// A request in team `team` at `ts` costing `picos`.
fn event(n: u64, ts: i64, team: &str, picos: i128) -> SpendEvent {
    serde_json::from_value(json!({
        "id": format!("01900000-0000-7000-8000-{n:012x}"),
        "started_at_ms": ts - 50,
        "finished_at_ms": ts,
        "latency_ms": 50,
        "gateway": "test-gw",
        "provider": "openai",
        "model": "gpt-4.1",
        "endpoint": "chat.completions",
        "stream": false,
        "attribution": { "key_id": 900, "user": "planted", "team": team, "workflow": null },
        "cache_outcome": "not_cacheable",
        "status": "ok",
        "http_status": 200,
        "usage": { "input_tokens": 100, "output_tokens": 0, "cached_input_tokens": 0, "cache_write_tokens": 0 },
        "usage_source": "reported",
        "cost": spendgate_core::Money::from_picos(picos).to_usd_string(),
        "price_confidence": "exact",
        "price_lines": [],
        "error": null,
    }))
    .unwrap()
}

#[tokio::test]
async fn a_spend_spike_against_previous_days_is_flagged_and_steady_spend_is_not() {
    let s = TestServer::start_with(|c| c.anomalies.interval_ms = 60_000).await;
    let now = now_ms();
    let cent = 10_000_000_000; // $0.01 in picodollars
    let mut events = Vec::new();
    let mut n = 0;
    // Seven previous days: both teams spend $0.10 around this time of day (ten requests half an hour earlier).
    for day in 1..=7 {
        for _ in 0..10 {
            n += 1;
            for team in ["growth", "search"] {
                n += 1;
                events.push(event(n, now - day * DAY_MS - 30 * MINUTE_MS, team, cent));
            }
        }
    }
    // Today: search as usual, growth at thirty times its usual spend.
    for _ in 0..10 {
        n += 1;
        events.push(event(n, now - 30 * MINUTE_MS, "search", cent));
    }
    for _ in 0..300 {
        n += 1;
        events.push(event(n, now - 30 * MINUTE_MS, "growth", cent));
    }
    s.running.store.write_batch(Arc::new(events)).await.unwrap();

    let (status, v) = s.admin_get("/api/v1/insights/anomalies").await;
    assert_eq!(status, 200, "{v}");
    let spike = signal(&v, "anomaly_spend_rate", "team:growth").expect("growth is flagged");
    assert!(
        spike["figures"]["ratio_percent"].as_u64().unwrap() >= 300,
        "{spike}"
    );
    assert!(
        spike["sentence"].as_str().unwrap().contains("Team growth"),
        "{spike}"
    );
    assert!(spike["evidence"]["usage"]
        .as_str()
        .unwrap()
        .contains("team=growth"));
    assert!(
        signal(&v, "anomaly_spend_rate", "team:search").is_none(),
        "{v}"
    );

    // Forecasts: per team to the end of the month, with a range.
    let (status, f) = s.admin_get("/api/v1/insights/forecast").await;
    assert_eq!(status, 200, "{f}");
    let growth = f["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["team"] == "growth")
        .cloned()
        .unwrap();
    let m = |v: &Value| common::picos(v);
    assert!(m(&growth["forecast_low"]) <= m(&growth["forecast"]));
    assert!(m(&growth["forecast"]) <= m(&growth["forecast_high"]));
    assert!(m(&growth["forecast_low"]) >= m(&growth["spent"]));
    s.running.stop().await.unwrap();
}
