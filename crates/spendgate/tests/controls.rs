//! Budgets, wallets and alerts over real HTTP: hard limits and wallets hold under concurrency, alerts fire once
//! per crossing and reach webhooks, and the ledger, the spend logs and the budgets reconcile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{chat_body, picos, TestServer};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Sends `n` requests at once with `key`; returns the statuses and the error codes seen.
async fn burst(
    s: &TestServer,
    key: &str,
    n: usize,
    model: &str,
) -> Vec<(u16, Option<String>, Option<String>)> {
    futures_util::stream::iter(0..n)
        .map(|i| {
            let (client, base, key) = (s.client.clone(), s.base.clone(), key.to_string());
            let model = model.to_string();
            async move {
                let mut body = chat_body(&model, &format!("request number {i}"), i % 2 == 0);
                body["max_tokens"] = json!(20);
                let r = client
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let retry = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                let text = r.text().await.unwrap();
                let code = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
                (status, code, retry)
            }
        })
        .buffer_unordered(200)
        .collect()
        .await
}

async fn settled(s: &TestServer, query: &str, n: usize) -> Vec<Value> {
    s.wait_for_summary(query, Duration::from_secs(20), |v| {
        v["requests"] == n as u64
    })
    .await;
    s.all_spend_logs(query).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_limited_budget_is_never_overshot_by_200_concurrent_requests() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("hana", Some("research")).await;
    let (status, b) = s.admin_post("/api/v1/budgets",
        json!({ "scope": "team", "subject": "research", "period": "day", "amount": "0.0005", "hard_limit": true }),
    )
    .await;
    assert_eq!(status, 201, "{b}");
    let results = burst(&s, &key, 200, "gpt-4o-mini").await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(
        ok + refused.len(),
        200,
        "every request either ran or was refused by the budget: {results:?}"
    );
    assert!(
        ok > 0 && !refused.is_empty(),
        "the budget let some through and stopped the rest ({ok} ran)"
    );
    for r in &refused {
        assert_eq!(r.1.as_deref(), Some("budget_exceeded"));
        assert!(
            r.2.as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|secs| secs > 0),
            "Retry-After is set"
        );
    }
    let logs = settled(&s, "team=research&window=1h", ok).await;
    let spent: i128 = logs.iter().map(|l| picos(&l["cost"])).sum();
    let amount = spendgate_core::Money::parse_usd("0.0005").unwrap().picos();
    println!("budget: {ok} of 200 ran, spent {spent} of {amount} picodollars");
    assert!(
        spent <= amount,
        "spent {spent} must not pass the amount {amount}"
    );
    let (_, list) = s.admin_get("/api/v1/budgets").await;
    let b = &list["budgets"][0];
    assert_eq!(
        picos(&b["spent"]),
        spent,
        "the budget's spend is the spend logs' sum"
    );
    assert_eq!(b["reserved"], "0.00", "every hold was settled or released");
    // It refused requests, so it blocks the team whatever its percentage.
    assert_eq!(b["state"], "blocking", "{b}");
    assert!(b["resets_at"].as_str().unwrap() > b["period_start"].as_str().unwrap());
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_wallet_never_goes_below_zero_and_its_ledger_reconciles() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("ivan", Some("labs")).await;
    let (status, w) = s.admin_post("/api/v1/wallets",
        json!({ "scope": "team", "subject": "labs", "initial_balance": "0.0004", "low_threshold": "0.0001" }),
    )
    .await;
    assert_eq!(status, 201, "{w}");
    let wallet_id = w["id"].as_i64().unwrap();
    let results = burst(&s, &key, 200, "gpt-4o-mini").await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let refused = results.iter().filter(|r| r.0 == 402).count();
    assert_eq!(ok + refused, 200, "{results:?}");
    assert!(ok > 0 && refused > 0);
    assert!(results
        .iter()
        .filter(|r| r.0 == 402)
        .all(|r| r.1.as_deref() == Some("insufficient_funds")));
    let logs = settled(&s, "team=labs&window=1h", ok).await;
    let spent: i128 = logs.iter().map(|l| picos(&l["cost"])).sum();
    let (_, list) = s.admin_get("/api/v1/wallets").await;
    let w = &list["wallets"][0];
    let initial = spendgate_core::Money::parse_usd("0.0004").unwrap().picos();
    assert!(
        picos(&w["balance"]) >= 0,
        "the wallet never goes below zero: {w}"
    );
    assert_eq!(
        picos(&w["balance"]),
        initial - spent,
        "balance = top-up - spend"
    );
    assert_eq!(picos(&w["total_spent"]), spent);
    assert_eq!(w["reserved"], "0.00");
    // The ledger: one top-up and one settle per request, summing to the balance.
    let mut entries = Vec::new();
    let mut before = String::new();
    loop {
        let (_, page) = s
            .admin_get(&format!(
                "/api/v1/wallets/{wallet_id}/ledger?limit=1000{before}"
            ))
            .await;
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_i64() {
            Some(b) => before = format!("&before={b}"),
            None => break,
        }
    }
    assert_eq!(entries.iter().filter(|e| e["kind"] == "settle").count(), ok);
    assert_eq!(entries.iter().filter(|e| e["kind"] == "top_up").count(), 1);
    let sum: i128 = entries.iter().map(|e| picos(&e["amount"])).sum();
    assert_eq!(sum, picos(&w["balance"]));
    let ledger_sum = s.running.store.ledger_sum(wallet_id).await.unwrap();
    assert_eq!(ledger_sum.picos(), picos(&w["balance"]));
    s.running.stop().await.unwrap();
}

/// A webhook receiver on loopback that fails its first `fail_first` calls.
async fn webhook_receiver(
    fail_first: usize,
) -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<Value>>>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, b) = (Arc::clone(&calls), Arc::clone(&bodies));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (c, b) = (Arc::clone(&c), Arc::clone(&b));
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst);
                if n < fail_first {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                b.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_once_per_crossing_and_reach_the_webhook_with_retries() {
    let (url, _calls, bodies) = webhook_receiver(1).await;
    let s = TestServer::start_with(|c| c.alerts.webhooks = vec![url.clone()]).await;
    let (_, key) = s.create_key("jo", Some("ops")).await;
    // A soft budget: traffic keeps flowing past it, alerts fire at 50 % and at 100 %.
    let (status, _) = s.admin_post("/api/v1/budgets",
        json!({ "scope": "user", "subject": "jo", "period": "month", "amount": "0.0002", "thresholds": [50, 100] }),
    )
    .await;
    assert_eq!(status, 201);
    let results = burst(&s, &key, 60, "gpt-4o-mini").await;
    assert!(
        results.iter().all(|r| r.0 == 200),
        "a soft budget never refuses: {results:?}"
    );
    settled(&s, "user=jo&window=1h", 60).await;
    let t0 = std::time::Instant::now();
    let alerts = loop {
        let (_, v) = s.admin_get("/api/v1/alerts").await;
        let ok_deliveries = v["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["ok"] == true)
            .count();
        if ok_deliveries >= 2 {
            break v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "alerts were not delivered: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let list = alerts["alerts"].as_array().unwrap();
    assert_eq!(
        list.iter().filter(|a| a["kind"] == "budget_near").count(),
        1,
        "{list:?}"
    );
    assert_eq!(
        list.iter().filter(|a| a["kind"] == "budget_over").count(),
        1,
        "{list:?}"
    );
    let deliveries = alerts["deliveries"].as_array().unwrap();
    assert!(
        deliveries
            .iter()
            .any(|d| d["ok"] == false && d["attempt"] == 1),
        "the first attempt failed and was logged"
    );
    assert!(
        deliveries
            .iter()
            .any(|d| d["ok"] == true && d["attempt"] == 2),
        "and the retry succeeded"
    );
    let received = bodies.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    assert!(received
        .iter()
        .all(|b| b["text"].as_str().unwrap().contains("budget of user jo")));
    // More traffic in the same period does not alert again.
    burst(&s, &key, 10, "gpt-4o-mini").await;
    settled(&s, "user=jo&window=1h", 70).await;
    let (_, again) = s.admin_get("/api/v1/alerts").await;
    assert_eq!(again["alerts"].as_array().unwrap().len(), 2);
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_spend_logs_and_budgets_reconcile_after_a_mixed_run_with_failures() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = TestServer::start_with(|c| {
        // One model goes to an upstream that is down: its calls fail, are recorded at zero cost, release holds.
        c.providers.push(spendgate::config::ProviderConfig {
            name: "broken".into(),
            kind: "openai".into(),
            base_url: Some(format!("http://127.0.0.1:{port}/v1")),
            models: vec!["gpt-4.1-nano".into()],
            catalog: false,
            ..common::mock_provider("broken")
        });
        c.providers[0].models = vec![];
    })
    .await;
    let (_, k1) = s.create_key("kim", Some("platform")).await;
    let (_, k2) = s.create_key("lee", Some("platform")).await;
    s.admin_post(
        "/api/v1/wallets",
        json!({ "scope": "org", "initial_balance": "10" }),
    )
    .await;
    let (_, team_wallet) = s
        .admin_post(
            "/api/v1/wallets",
            json!({ "scope": "team", "subject": "platform", "initial_balance": "0.001" }),
        )
        .await;
    s.admin_post(
        "/api/v1/budgets",
        json!({ "scope": "org", "period": "month", "amount": "100" }),
    )
    .await;
    s.admin_post("/api/v1/budgets", json!({ "scope": "team", "subject": "platform", "period": "week", "amount": "50", "hard_limit": true })).await;
    let mut all = Vec::new();
    for (key, model) in [
        (&k1, "gpt-4o-mini"),
        (&k2, "gpt-4.1-mini"),
        (&k1, "gpt-4.1-nano"),
        (&k2, "gpt-4o-mini"),
    ] {
        all.extend(burst(&s, key, 50, model).await);
    }
    let ok = all.iter().filter(|r| r.0 == 200).count();
    let failed = all.iter().filter(|r| r.0 == 502).count();
    assert_eq!(failed, 50, "the broken upstream's calls failed");
    assert_eq!(ok, 150);
    let logs = settled(&s, "window=1h", 200).await;
    let total: i128 = logs.iter().map(|l| picos(&l["cost"])).sum();
    assert!(logs
        .iter()
        .filter(|l| l["status"] == "upstream_error")
        .all(|l| l["cost"] == "0.00"));
    // Wallets: the team wallet paid until it could not, then the org wallet took over.
    let (_, wl) = s.admin_get("/api/v1/wallets").await;
    let wallets = wl["wallets"].as_array().unwrap();
    let mut charged = 0i128;
    for w in wallets {
        let id = w["id"].as_i64().unwrap();
        let paid: i128 = logs
            .iter()
            .filter(|l| l["wallet_id"] == id)
            .map(|l| picos(&l["cost"]))
            .sum();
        assert_eq!(
            picos(&w["total_spent"]),
            paid,
            "wallet {id}'s spend is what its spend logs cost"
        );
        assert_eq!(
            s.running.store.ledger_sum(id).await.unwrap().picos(),
            picos(&w["balance"])
        );
        assert_eq!(w["reserved"], "0.00");
        charged += paid;
    }
    let team_spent = picos(
        &wallets
            .iter()
            .find(|w| w["id"] == team_wallet["id"])
            .unwrap()["total_spent"],
    );
    assert!(
        team_spent > 0 && team_spent < total,
        "both wallets paid a part"
    );
    assert_eq!(
        charged, total,
        "every cent of spend was charged to exactly one wallet"
    );
    let (_, bl) = s.admin_get("/api/v1/budgets").await;
    for b in bl["budgets"].as_array().unwrap() {
        assert_eq!(
            picos(&b["spent"]),
            total,
            "budget {} sees the same spend",
            b["id"]
        );
        assert_eq!(b["reserved"], "0.00");
    }
    s.running.stop().await.unwrap();
}

/// A wallet minutes old burns over its own age, not a week: its rate, range and depletion say which window they
/// are over, and a budget's forecast extends the rate since the first request of the period, not since the
/// period began (the store here is seconds old, however far into the month it is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecasts_use_the_time_that_really_elapsed() {
    let started = spendgate_core::time::now_ms();
    let s = TestServer::start().await;
    let (_, key) = s.create_key("rosa", Some("young")).await;
    let (status, w) = s
        .admin_post(
            "/api/v1/wallets",
            json!({ "scope": "team", "subject": "young", "initial_balance": "1", "low_threshold": "0.01" }),
        )
        .await;
    assert_eq!(status, 201, "{w}");
    let (status, b) = s
        .admin_post(
            "/api/v1/budgets",
            json!({ "scope": "team", "subject": "young", "period": "month", "amount": "100" }),
        )
        .await;
    assert!(status == 201 || status == 200, "{b}");
    let results = burst(&s, &key, 20, "gpt-4o").await;
    assert!(results.iter().all(|r| r.0 == 200), "{results:?}");
    let logs = settled(&s, "team=young&window=1h", 20).await;
    let spent: i128 = logs.iter().map(|l| picos(&l["cost"])).sum();
    assert!(spent > 0);

    let (_, list) = s.admin_get("/api/v1/wallets").await;
    let w = &list["wallets"][0];
    let now = spendgate_core::time::now_ms();
    let burn = &w["burn"];
    let window_s = burn["window_seconds"].as_i64().unwrap_or(i64::MAX);
    assert!(
        window_s <= (now - started) / 1000 + 60,
        "the burn is over the wallet's age (at least a minute), not a week: {w}"
    );
    assert!(
        burn["description"]
            .as_str()
            .unwrap()
            .contains("since the wallet was created"),
        "{w}"
    );
    // Everything was spent within the window, which is shorter than an hour: the hourly rate exceeds the spend.
    let per_hour = picos(&burn["per_hour"]);
    assert!(per_hour >= spent, "{w}");
    assert!(picos(&burn["low_per_hour"]) <= per_hour && per_hour <= picos(&burn["high_per_hour"]));
    // $1 at this rate runs dry within days; a week's average put it months or years away.
    let dry =
        spendgate_core::time::parse_rfc3339(w["projected_depletion"].as_str().unwrap()).unwrap();
    let available = picos(&w["available"]);
    let expect = now + i64::try_from(available * 3_600_000 / per_hour).unwrap();
    assert!(
        (dry - expect).abs() < 60_000,
        "depletion = available / rate per hour: {w}"
    );
    let earliest =
        spendgate_core::time::parse_rfc3339(w["projected_depletion_earliest"].as_str().unwrap())
            .unwrap();
    assert!(earliest <= dry, "{w}");

    let (_, budgets) = s.admin_get("/api/v1/budgets").await;
    let b = &budgets["budgets"][0];
    let rate = &b["forecast_rate"];
    let from = spendgate_core::time::parse_rfc3339(rate["window_from"].as_str().unwrap_or(""))
        .unwrap_or(0);
    assert!(
        from >= started - started.rem_euclid(60_000) - 60_000,
        "the budget's rate starts at the first request of the period, not at its start: {b}"
    );
    assert!(
        picos(&b["forecast_low"]) <= picos(&b["forecast"])
            && picos(&b["forecast"]) <= picos(&b["forecast_high"])
    );
    assert!(picos(&b["forecast"]) >= picos(&b["spent"]));
    // The page says what the rates are over.
    let cookie = s.login("test-admin-token").await;
    let page = s.page("/wallets", &cookie).await;
    assert!(
        page.contains("Burn / hour") && page.contains("/h"),
        "{page}"
    );
    let page = s.page("/budgets", &cookie).await;
    assert!(
        page.contains("forecast-rate") && page.contains("over the last"),
        "{page}"
    );
    s.running.stop().await.unwrap();
}

/// A hard budget that refuses requests tells someone at its first refusal and shows as blocking, whatever its
/// percentage: 40 concurrent requests against a small budget used to leave it at "ok, 51 %" with no alert while
/// most of them were refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_budget_raises_an_alert_and_shows_as_blocking() {
    let s = TestServer::start().await;
    let (_, key) = s.create_key("rita", Some("blocked")).await;
    let (st, b) = s
        .admin_post(
            "/api/v1/budgets",
            json!({ "scope": "team", "subject": "blocked", "period": "day", "amount": "0.0002", "hard_limit": true }),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let results = burst(&s, &key, 40, "gpt-4o-mini").await;
    let refused = results.iter().filter(|r| r.0 == 429).count();
    assert!(refused > 0, "{results:?}");
    let t0 = std::time::Instant::now();
    let alert = loop {
        let (_, alerts) = s.admin_get("/api/v1/alerts").await;
        let found = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "budget_refusing")
            .cloned()
            .collect::<Vec<_>>();
        if !found.is_empty() {
            assert_eq!(found.len(), 1, "once per period: {found:?}");
            break found[0].clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no refusing alert: {alerts}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let message = alert["message"].as_str().unwrap();
    assert!(
        message.contains("is refusing team blocked's requests"),
        "{message}"
    );
    let (_, list) = s.admin_get("/api/v1/budgets").await;
    let budget = &list["budgets"][0];
    assert_eq!(budget["state"], "blocking", "{budget}");
    assert!(budget["refusing_since"].is_string());
}
