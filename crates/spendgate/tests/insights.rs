//! Insights over real HTTP: the explain API on spend written into the real store at chosen times, and the
//! activity feed after real admin changes and proxied requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{chat_body, picos, TestServer};
use serde_json::{json, Value};
use spendgate_core::time::{now_ms, Grain, MINUTE_MS};
use spendgate_core::SpendEvent;

/// A spend event at `ts` for team `team` with `tokens` tokens costing `pico_per_token` each. Built from JSON so
/// that fields added later with serde defaults do not break the test.
fn event(
    n: u64,
    ts: i64,
    team: &str,
    model: &str,
    tokens: u64,
    pico_per_token: i128,
) -> SpendEvent {
    let id = format!("01900000-0000-7000-8000-{n:012x}");
    serde_json::from_value(json!({
        "id": id,
        "started_at_ms": ts - 50,
        "finished_at_ms": ts,
        "latency_ms": 50,
        "gateway": "test-gw",
        "provider": "openai",
        "model": model,
        "endpoint": "chat.completions",
        "stream": false,
        "attribution": { "key_id": 900, "user": "planted", "team": team, "workflow": "wf" },
        "cache_outcome": "not_cacheable",
        "status": "ok",
        "http_status": 200,
        "usage": { "input_tokens": tokens, "output_tokens": 0, "cached_input_tokens": 0, "cache_write_tokens": 0 },
        "usage_source": "reported",
        "cost": spendgate_core::Money::from_picos(i128::from(tokens) * pico_per_token).to_usd_string(),
        "price_confidence": "exact",
        "price_lines": [],
        "error": null,
    }))
    .unwrap()
}

#[tokio::test]
async fn explain_splits_a_volume_rise_exactly_and_says_so() {
    let s = TestServer::start_with(|c| c.open_pages = true).await;
    // Two whole windows of 60 minutes ending at the current minute: 10 requests in the first, 14 in the second,
    // same size and model: a pure volume rise of 40 %.
    let now_min = Grain::Minute.floor(now_ms());
    let (base_at, cur_at) = (now_min - 90 * MINUTE_MS, now_min - 30 * MINUTE_MS);
    let mut events = Vec::new();
    for i in 0..10 {
        events.push(event(
            i,
            base_at + i as i64,
            "support",
            "gpt-4o-mini",
            1_000,
            150_000,
        ));
    }
    for i in 0..14 {
        events.push(event(
            100 + i,
            cur_at + i as i64,
            "support",
            "gpt-4o-mini",
            1_000,
            150_000,
        ));
    }
    // Another team moves the other way, so "everything" differs from the team.
    events.push(event(500, base_at, "search", "gpt-4.1", 10_000, 2_500_000));
    s.running.store.write_batch(Arc::new(events)).await.unwrap();

    let (status, v) = s
        .admin_get("/api/v1/insights/explain?group_by=team&subject=support&window=1h")
        .await;
    assert_eq!(status, 200, "{v}");
    let change = picos(&v["change"]);
    let (vol, int, pm) = (
        picos(&v["effects"]["volume"]),
        picos(&v["effects"]["intensity"]),
        picos(&v["effects"]["price_mix"]),
    );
    assert_eq!(
        vol + int + pm,
        change,
        "the effects add up to the change exactly"
    );
    // 4 more requests × 1,000 tokens × $0.15 per million tokens.
    assert_eq!(change, 4 * 1_000 * 150_000);
    assert_eq!(vol, change);
    assert_eq!(v["driver"], "volume");
    let sentence = v["sentence"].as_str().unwrap();
    assert!(sentence.contains("Team support"), "{sentence}");
    assert!(sentence.contains("spend rose 40.0%"), "{sentence}");
    assert!(sentence.contains("volume-driven"), "{sentence}");
    assert_eq!(v["relative_changes"]["requests"], "+40.0%");
    let parts = v["parts"].as_array().unwrap();
    let part_sum: i128 = parts.iter().map(|p| picos(&p["volume"])).sum();
    assert_eq!(part_sum, vol);
    assert_eq!(parts[0]["label"], "gpt-4o-mini");
    assert!(v["evidence"]["usage"]
        .as_str()
        .unwrap()
        .starts_with("/usage?"));

    // Everything: the search team's baseline spend vanished, so all spend fell.
    let (_, all) = s.admin_get("/api/v1/insights/explain?window=1h").await;
    assert!(picos(&all["change"]) < 0, "{all}");
    assert_eq!(all["label"], "All spend");

    // A grouping without a subject narrows nothing; a subject without a grouping names a team.
    let (status, v) = s
        .admin_get("/api/v1/insights/explain?window=1h&group_by=team")
        .await;
    assert_eq!((status, &v["label"]), (200, &json!("All spend")), "{v}");
    let (status, v) = s
        .admin_get("/api/v1/insights/explain?window=1h&subject=support")
        .await;
    assert_eq!((status, picos(&v["change"])), (200, change), "{v}");
    // A subject no group of its grouping can have is not found, and the message says what it must be.
    let (status, e) = s
        .admin_get("/api/v1/insights/explain?group_by=key&subject=support")
        .await;
    assert_eq!(status, 404);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("key id"),
        "{e}"
    );

    // The page shows the same sentence, and the usage explorer links to it.
    let page = s
        .client
        .get(format!(
            "{}/explain?group_by=team&subject=support&window=1h",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("volume-driven"), "{html}");
    s.running.stop().await.unwrap();
}

#[tokio::test]
async fn activity_lists_requests_admin_changes_and_lifecycle_and_exports_csv() {
    let s = TestServer::start_with(|c| c.open_pages = true).await;
    let (key_id, key) = s.create_key("alice", Some("support")).await;
    let res = s
        .chat(&key, chat_body("gpt-4o-mini", "hello there", false))
        .await;
    assert_eq!(res.status().as_u16(), 200);

    // The request reaches the rollups after the writer's batch; poll for it.
    let t0 = Instant::now();
    let items = loop {
        let (status, v) = s.admin_get("/api/v1/activity?window=1h").await;
        assert_eq!(status, 200, "{v}");
        let items = v["items"].as_array().unwrap().clone();
        if items.iter().any(|i| i["source"] == "requests") {
            break items;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no request activity: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let req = items.iter().find(|i| i["source"] == "requests").unwrap();
    assert_eq!(req["key_id"], key_id);
    assert_eq!(req["team"], "support");
    assert_eq!(req["gateway"], "test-gw");
    assert_eq!(req["requests"], 1);
    let admin = items.iter().find(|i| i["action"] == "key.create").unwrap();
    assert_eq!(admin["source"], "admin_change");
    assert_eq!(admin["after"]["user"], "alice");
    assert!(items
        .iter()
        .any(|i| i["source"] == "gateway_lifecycle" && i["action"] == "gateway.start"));

    // Filters: by source, by team, by actor.
    let (_, v) = s
        .admin_get("/api/v1/activity?window=1h&source=admin_change")
        .await;
    let only: Vec<&Value> = v["items"].as_array().unwrap().iter().collect();
    assert!(!only.is_empty());
    assert!(only.iter().all(|i| i["source"] == "admin_change"), "{v}");
    let (_, v) = s.admin_get("/api/v1/activity?window=1h&team=search").await;
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["source"] != "requests"),
        "{v}"
    );
    let (_, v) = s
        .admin_get("/api/v1/activity?window=1h&actor=bob&source=requests")
        .await;
    assert!(v["items"].as_array().unwrap().is_empty(), "{v}");
    let (status, v) = s.admin_get("/api/v1/activity?source=gossip").await;
    assert_eq!(status, 400, "{v}");

    // CSV export.
    let res = s
        .client
        .get(format!("{}/api/v1/activity?window=1h&format=csv", s.base))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = res.text().await.unwrap();
    assert!(csv.starts_with("at,until,source,actor,"), "{csv}");
    assert!(csv.contains(",requests,"), "{csv}");

    // The page renders the same feed.
    let html = s
        .client
        .get(format!("{}/history?view=activity&window=1h", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("key.create"), "{html}");
    s.running.stop().await.unwrap();
}

#[tokio::test]
async fn a_limited_activity_feed_is_the_head_of_the_whole_feed() {
    let s = TestServer::start().await;
    // 30 keys an hour for 20 hours: the feed reads its newest hours first and must still list exactly the
    // newest items, in the same order as a read of the whole day.
    let now_hour = Grain::Hour.floor(now_ms());
    let mut events = Vec::new();
    for h in 0..20i64 {
        for k in 0..30u64 {
            let mut e = event(
                (h as u64) * 100 + k,
                now_hour - h * 60 * MINUTE_MS - 5 * MINUTE_MS,
                "support",
                "gpt-4o-mini",
                100 + k,
                150_000,
            );
            e.attribution.key_id = 1_000 + k as i64;
            events.push(e);
        }
    }
    s.running.store.write_batch(Arc::new(events)).await.unwrap();
    let feed = |limit: usize| {
        let s = &s;
        async move {
            let (status, v) = s
                .admin_get(&format!(
                    "/api/v1/activity?window=24h&source=requests&limit={limit}"
                ))
                .await;
            assert_eq!(status, 200, "{v}");
            v["items"].as_array().unwrap().clone()
        }
    };
    let whole = feed(10_000).await;
    assert_eq!(whole.len(), 600);
    for limit in [1, 29, 30, 31, 50, 125, 599] {
        let head = feed(limit).await;
        assert_eq!(head, whole[..limit], "limit {limit}");
    }
}

/// The default baseline of a 24-hour explain reaches past the minute rollups' 48 hours, where windows start
/// on the hour: it is still exactly as long as the window, and the page names both windows with their lengths
/// and when it was computed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explain_baseline_is_exactly_as_long_as_its_window() {
    let s = TestServer::start_with(|c| c.open_pages = true).await;
    for window in ["24h", "1h", "7d"] {
        let (status, v) = s
            .admin_get(&format!("/api/v1/insights/explain?window={window}"))
            .await;
        assert_eq!(status, 200, "{v}");
        let ms = |w: &Value, k: &str| {
            spendgate_core::time::parse_rfc3339(w[k].as_str().unwrap()).unwrap()
        };
        let (cur, base) = (&v["window"], &v["baseline_window"]);
        assert_eq!(
            ms(cur, "to") - ms(cur, "from"),
            ms(base, "to") - ms(base, "from"),
            "{window}: {v}"
        );
        assert!(ms(base, "to") <= ms(cur, "from"), "{window}: {v}");
    }
    let page = s.page("/explain?window=24h", "").await;
    assert!(page.contains("(24 hours) against"), "{page}");
    assert!(page.contains("As of"), "{page}");
    s.running.stop().await.unwrap();
}

/// Admin changes on the activity page are a list of the fields that changed, "field: before → after", never
/// raw JSON; the page says when it was computed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_changes_are_listed_field_by_field() {
    let s = TestServer::start_with(|c| c.open_pages = true).await;
    let budget = json!({ "scope": "team", "subject": "support", "period": "day", "amount": "10" });
    s.admin_post("/api/v1/budgets", budget.clone()).await;
    let mut changed = budget;
    changed["amount"] = json!("25");
    s.admin_post("/api/v1/budgets", changed).await;
    let page = s
        .page("/history?view=activity&source=admin_change", "")
        .await;
    assert!(
        page.contains("<li><span class=\"field\">amount</span>: <span class=\"before\">10.00</span> → <span class=\"after\">25.00</span></li>"),
        "{page}"
    );
    assert!(!page.contains("{&quot;"), "no raw JSON: {page}");
    assert!(page.contains("As of"), "{page}");
    s.running.stop().await.unwrap();
}

/// /explain compares without URL editing: with the period before (the default), the same time last week, or a
/// chosen range; a week back both windows are exactly as long, seven days apart, and the sentence says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_compares_with_last_week_or_a_chosen_range() {
    let s = TestServer::start_with(|c| c.open_pages = true).await;
    let ms =
        |w: &Value, k: &str| spendgate_core::time::parse_rfc3339(w[k].as_str().unwrap()).unwrap();
    for window in ["1h", "24h", "7d"] {
        let (status, v) = s
            .admin_get(&format!(
                "/api/v1/insights/explain?window={window}&compare=last_week"
            ))
            .await;
        assert_eq!(status, 200, "{v}");
        let (cur, base) = (&v["window"], &v["baseline_window"]);
        assert_eq!(
            ms(cur, "to") - ms(cur, "from"),
            ms(base, "to") - ms(base, "from"),
            "{window}: {v}"
        );
        assert_eq!(
            ms(cur, "from") - ms(base, "from"),
            7 * 24 * 3_600_000,
            "{window}: {v}"
        );
        assert!(
            v["sentence"]
                .as_str()
                .unwrap()
                .contains("same time a week earlier"),
            "{v}"
        );
    }
    let (status, v) = s
        .admin_get("/api/v1/insights/explain?compare=yesterday")
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_compare");
    let page = s.page("/explain?window=24h", "").await;
    assert!(page.contains("id=\"compare\""), "{page}");
    assert!(page.contains("compare=last_week"), "{page}");
    assert!(page.contains("id=\"compare-range\""), "{page}");
    // A browser's datetime-local values are read as UTC times.
    let page = s
        .page(
            "/explain?window=24h&baseline_from=2026-11-01T00:00&baseline_to=2026-11-02T00:00",
            "",
        )
        .await;
    assert!(
        page.contains("(1 day)") || page.contains("(24 hours)"),
        "{page}"
    );
    s.running.stop().await.unwrap();
}
