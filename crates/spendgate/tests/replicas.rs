//! Several replicas sharing one store: hard budgets and wallets hold across them through leases, totals agree
//! on every replica, and every replica lists the others from their heartbeats.
//!
//! Here the replicas share one SQLite file (several processes on one machine can); `postgres.rs` runs the same
//! checks on PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::time::Duration;

use common::{chat_body, picos, replica, scratch_pg, until_listed, TestServer};
use futures_util::StreamExt;
use serde_json::{json, Value};
use spendgate::config::Config;

/// Sends `n` requests at once, spread round-robin over `bases`; returns (status, error code) of each.
async fn spread(bases: &[String], key: &str, n: usize) -> Vec<(u16, Option<String>)> {
    let client = reqwest::Client::new();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let (client, base, key) = (
                client.clone(),
                bases[i % bases.len()].clone(),
                key.to_string(),
            );
            async move {
                let mut body = chat_body("gpt-4o-mini", &format!("request number {i}"), i % 2 == 0);
                body["max_tokens"] = json!(20);
                let r = client
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let text = r.text().await.unwrap();
                let code = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
                (status, code)
            }
        })
        .buffer_unordered(200)
        .collect()
        .await
}

/// Lease requests all replicas sent to the store so far.
async fn round_trips(replicas: &[&TestServer]) -> u64 {
    let mut trips = 0;
    for r in replicas {
        let (_, st) = r.admin_get("/api/v1/status").await;
        assert_eq!(st["leases"]["enabled"], true);
        trips += st["leases"]["round_trips"].as_u64().unwrap();
    }
    trips
}

/// The whole scenario, on whatever store `store` configures.
pub async fn three_replicas_share_budgets_and_wallets(store: &(dyn Fn(&mut Config) + Sync)) {
    let r1 = replica("replica-1", store).await;
    let (_, research) = r1.create_key("hana", Some("research")).await;
    let (_, labs) = r1.create_key("ivan", Some("labs")).await;
    let (_, big) = r1.create_key("jo", Some("big")).await;
    let (st, b) = r1
        .admin_post(
            "/api/v1/budgets",
            json!({ "scope": "team", "subject": "research", "period": "day", "amount": "0.0005", "hard_limit": true }),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let (st, w) = r1
        .admin_post(
            "/api/v1/wallets",
            json!({ "scope": "team", "subject": "labs", "initial_balance": "0.0004" }),
        )
        .await;
    assert_eq!(st, 201, "{w}");
    let wallet_id = w["id"].as_i64().unwrap();
    let (st, _) = r1
        .admin_post(
            "/api/v1/budgets",
            json!({ "scope": "team", "subject": "big", "period": "month", "amount": "1000", "hard_limit": true }),
        )
        .await;
    assert_eq!(st, 201);
    let r2 = replica("replica-2", store).await;
    let r3 = replica("replica-3", store).await;
    let bases = vec![r1.base.clone(), r2.base.clone(), r3.base.clone()];

    // Spend through one replica reaches another's live pages (its /events stream) without a reload. Nothing
    // else is spent yet, so the only thing replica-2 can announce is replica-1's request.
    let cookie = r2.login("test-admin-token").await;
    let mut events = r2
        .client
        .get(format!("{}/events", r2.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let (st, _) = (
        r1.client
            .post(format!("{}/v1/chat/completions", r1.base))
            .bearer_auth(&big)
            .json(&chat_body("gpt-4o-mini", "seen elsewhere", false))
            .send()
            .await
            .unwrap()
            .status(),
        (),
    );
    assert_eq!(st, 200);
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        let mut seen = String::new();
        while let Some(chunk) = events.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: spend") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        got.ok(),
        Some(true),
        "replica-2's live stream announced replica-1's spend"
    );
    drop(events);

    // A hard budget: 200 requests over three replicas never spend more than the amount.
    let results = spread(&bases, &research, 200).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let ok_budget = ok;
    assert!(
        results
            .iter()
            .all(|r| r.0 == 200 || (r.0 == 429 && r.1.as_deref() == Some("budget_exceeded"))),
        "{results:?}"
    );
    assert!(ok > 0 && ok < 200, "{ok} ran");
    r1.wait_for_summary("team=research&window=1h", Duration::from_secs(20), |v| {
        v["requests"] == ok as u64
    })
    .await;
    let logs = r1.all_spend_logs("team=research&window=1h").await;
    let spent: i128 = logs.iter().map(|l| picos(&l["cost"])).sum();
    let amount = spendgate_core::Money::parse_usd("0.0005").unwrap().picos();
    let gateways: std::collections::BTreeSet<&str> = logs
        .iter()
        .map(|l| l["gateway"].as_str().unwrap())
        .collect();
    println!(
        "budget across 3 replicas: {ok} of 200 ran on {gateways:?}, spent {spent} of {amount}"
    );
    assert!(spent <= amount, "spent {spent} must not pass {amount}");

    println!(
        "lease round trips with the budget exhausted: {} for 200 requests",
        round_trips(&[&r1, &r2, &r3]).await
    );

    // A small wallet: never below zero, balance = top-up - spend.
    let results = spread(&bases, &labs, 200).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    assert!(
        results
            .iter()
            .all(|r| r.0 == 200 || (r.0 == 402 && r.1.as_deref() == Some("insufficient_funds"))),
        "{results:?}"
    );
    assert!(ok > 0, "the wallet paid for some");
    r1.wait_for_summary("team=labs&window=1h", Duration::from_secs(20), |v| {
        v["requests"] == ok as u64
    })
    .await;
    let logs = r1.all_spend_logs("team=labs&window=1h").await;
    let wallet_spent: i128 = logs.iter().map(|l| picos(&l["cost"])).sum();
    let top_up = spendgate_core::Money::parse_usd("0.0004").unwrap().picos();
    let balance = r1
        .running
        .store
        .ledger_sum(wallet_id)
        .await
        .unwrap()
        .picos();
    println!("wallet across 3 replicas: {ok} of 200 ran, spent {wallet_spent} of {top_up}");
    assert!(balance >= 0, "the wallet never goes below zero: {balance}");
    assert_eq!(balance, top_up - wallet_spent);

    // A budget with room: leases are taken once and then spent from in memory.
    let before: u64 = round_trips(&[&r1, &r2, &r3]).await;
    let results = spread(&bases, &big, 600).await;
    let refused: Vec<_> = results.iter().filter(|r| r.0 != 200).collect();
    assert!(refused.is_empty(), "{} refused: {refused:?}", refused.len());
    let trips = round_trips(&[&r1, &r2, &r3]).await - before;
    println!(
        "lease round trips with room: {trips} for 600 requests ({} per 1,000)",
        trips * 1000 / 600
    );
    assert!(
        trips < 600,
        "requests are held against leases in memory, not one store trip each"
    );

    // Every replica reads the same totals, to the last unit, once everything is written.
    let all = 1 + ok_budget + ok + 600;
    for r in [&r1, &r2, &r3] {
        r.wait_for_summary("window=1h", Duration::from_secs(20), |v| {
            v["requests"] == all as u64
        })
        .await;
    }
    let mut totals = Vec::new();
    for r in [&r1, &r2, &r3] {
        let (_, v) = r.admin_get("/api/v1/usage/summary?window=1h").await;
        let (_, e) = r
            .admin_get("/api/v1/usage/explorer?window=1h&group_by=gateway")
            .await;
        totals.push((v["cost"].clone(), v["requests"].clone(), e["rows"].clone()));
    }
    assert!(totals.windows(2).all(|w| w[0] == w[1]), "{totals:?}");

    // Every replica's overview lists all three from their heartbeats.
    for r in [&r1, &r2, &r3] {
        let page = r
            .page("/overview", &r.login("test-admin-token").await)
            .await;
        for name in ["replica-1", "replica-2", "replica-3"] {
            assert!(page.contains(name), "{name} is on {}'s overview", r.base);
        }
    }

    // A replica that stops gives its leases back, keeping what it spent; the others can then use the room.
    r3.running.stop().await.unwrap();
    let live = r1
        .running
        .store
        .list_leases(spendgate_core::time::now_ms())
        .await
        .unwrap();
    assert!(
        live.iter()
            .filter(|l| l.gateway == "replica-3")
            .all(|l| l.granted == l.recorded),
        "replica-3 kept only what it wrote: {live:?}"
    );
    r1.running.stop().await.unwrap();
    r2.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_one_sqlite_file_never_overshoot() {
    let shared = tempfile::tempdir().unwrap();
    let dir = shared.path().to_path_buf();
    three_replicas_share_budgets_and_wallets(&move |c: &mut Config| c.data_dir = dir.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_postgres_never_overshoot() {
    let Some(db) = scratch_pg().await else { return };
    let url = db.url().to_string();
    three_replicas_share_budgets_and_wallets(&move |c: &mut Config| {
        c.store.url = Some(url.clone());
    })
    .await;
}

/// A replica killed with SIGKILL cannot give its lease back; the lease expires and its room returns to the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replicas_lease_expires_and_its_room_returns() {
    let Some(db) = scratch_pg().await else { return };
    let url = db.url().to_string();
    let live = replica("survivor", &|c: &mut Config| {
        c.store.url = Some(url.clone())
    })
    .await;
    let (_, key) = live.create_key("kim", Some("ops")).await;
    // A budget of about forty requests' worth of holds.
    let (st, b) = live
        .admin_post(
            "/api/v1/budgets",
            json!({ "scope": "team", "subject": "ops", "period": "day", "amount": "0.0008", "hard_limit": true }),
        )
        .await;
    assert_eq!(st, 201, "{b}");

    // The doomed replica: a child process on the same database, with short leases.
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = dir.path().join("spendgate.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ngateway_name = \"doomed\"\nadmin_token = \"test-admin-token\"\n\
             [[providers]]\nname = \"openai\"\nkind = \"mock\"\ncatalog = true\n\
             [replicas]\nleases = true\nlease_ttl_secs = 6\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_spendgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--store", &url])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let doomed = format!("http://127.0.0.1:{port}");
    common::wait_healthy(&live.client, &doomed).await;
    // A burst through the doomed replica takes a lease bigger than what it spends.
    let results = spread(std::slice::from_ref(&doomed), &key, 4).await;
    assert!(results.iter().all(|r| r.0 == 200), "{results:?}");
    // Its four spend logs reach the store before it dies (what a killed replica had not yet written waits in
    // its journal for its restart; that is the journal's test, not this one).
    live.wait_for_summary("team=ops&window=1h", Duration::from_secs(20), |v| {
        v["requests"] == 4
    })
    .await;
    let leases = live
        .running
        .store
        .list_leases(spendgate_core::time::now_ms())
        .await
        .unwrap();
    let held = leases
        .iter()
        .find(|l| l.gateway == "doomed")
        .expect("the doomed replica holds a lease")
        .clone();
    assert!(
        held.granted > held.recorded,
        "it holds room it has not spent: {held:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // Until it expires, the lease counts; then it stops counting and the survivor can take the room.
    let t0 = std::time::Instant::now();
    loop {
        let now = spendgate_core::time::now_ms();
        let live_leases = live.running.store.list_leases(now).await.unwrap();
        if !live_leases.iter().any(|l| l.id == held.id) {
            assert!(
                now >= held.expires_at_ms,
                "it stopped counting only at its expiry"
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let results = spread(std::slice::from_ref(&live.base), &key, 200).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    live.wait_for_summary("team=ops&window=1h", Duration::from_secs(20), |v| {
        v["requests"] == (ok + 4) as u64
    })
    .await;
    let logs = live.all_spend_logs("team=ops&window=1h").await;
    let spent: i128 = logs.iter().map(|l| picos(&l["cost"])).sum();
    let amount = spendgate_core::Money::parse_usd("0.0008").unwrap().picos();
    println!("after the crash: the survivor ran {ok} more; spent {spent} of {amount}");
    assert!(
        ok > 4,
        "the survivor used the room the dead replica's lease had held"
    );
    assert!(spent <= amount);
    live.running.stop().await.unwrap();
}

/// A control created (or lowered) through one replica binds the very next request on another: the API answers
/// only once every live replica confirmed it enforces the change. Before, the other replica went on for up to
/// half a minute without knowing the budget (60 requests: 33 ran, 205 % of the budget).
pub async fn a_control_made_on_one_replica_binds_the_next_request_on_another(
    store: &(dyn Fn(&mut Config) + Sync),
) {
    let a = replica("replica-a", store).await;
    let b = replica("replica-b", store).await;
    until_listed(&a, "replica-b").await;
    let (_, key) = a.create_key("late", Some("late")).await;
    // Warm the other replica's key cache and spend a little, so that the budget is created over existing spend.
    let warm = spread(std::slice::from_ref(&b.base), &key, 2).await;
    assert!(warm.iter().all(|r| r.0 == 200), "{warm:?}");
    let (st, budget) = a
        .admin_post(
            "/api/v1/budgets",
            json!({ "scope": "team", "subject": "late", "period": "day", "amount": "0.0008", "hard_limit": true }),
        )
        .await;
    assert_eq!(st, 201, "{budget}");
    let first = spread(std::slice::from_ref(&b.base), &key, 60).await;
    let ok = first.iter().filter(|r| r.0 == 200).count();
    assert!(
        first.iter().any(|r| r.0 == 429),
        "the other replica enforces the new budget: {first:?}"
    );
    let q = "team=late&window=1h";
    a.wait_for_summary(q, Duration::from_secs(30), |v| {
        v["requests"] == (ok + 2) as u64
    })
    .await;
    let spent: i128 = a
        .all_spend_logs(q)
        .await
        .iter()
        .map(|l| picos(&l["cost"]))
        .sum();
    let limit = spendgate_core::Money::parse_usd("0.0008").unwrap().picos();
    assert!(spent <= limit, "spend {spent} overshot the budget {limit}");

    // Lowering the amount below what was spent binds at once too: nothing more runs on either replica.
    let (st, _) = a
        .admin_post(
            "/api/v1/budgets",
            json!({ "scope": "team", "subject": "late", "period": "day", "amount": "0.0001", "hard_limit": true }),
        )
        .await;
    assert!(st == 200 || st == 201, "{st}");
    let after = spread(&[b.base.clone(), a.base.clone()], &key, 20).await;
    assert!(after.iter().all(|r| r.0 == 429), "{after:?}");
    a.running.stop().await.unwrap();
    b.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_control_made_on_one_replica_binds_at_once_on_sqlite() {
    let shared = tempfile::tempdir().unwrap();
    let dir = shared.path().to_path_buf();
    a_control_made_on_one_replica_binds_the_next_request_on_another(&move |c: &mut Config| {
        c.data_dir = dir.clone()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_control_made_on_one_replica_binds_at_once_on_postgres() {
    let Some(db) = scratch_pg().await else { return };
    let url = db.url().to_string();
    a_control_made_on_one_replica_binds_the_next_request_on_another(&move |c: &mut Config| {
        c.store.url = Some(url.clone());
    })
    .await;
}

/// A key revoked, or given a new secret, through one replica is refused by another on the very next request,
/// although that replica had the key in its in-memory cache: the API answers only once every live replica has
/// forgotten its cached keys and confirmed the change. Before, nothing could revoke a key, and a key revoked in
/// the database went on working wherever it was cached.
pub async fn a_key_revoked_on_one_replica_is_refused_by_another_on_its_next_request(
    store: &(dyn Fn(&mut Config) + Sync),
) {
    let a = replica("replica-a", store).await;
    let b = replica("replica-b", store).await;
    until_listed(&a, "replica-b").await;
    let (gone, gone_key) = a.create_key("leaver", Some("ops")).await;
    let (kept, old_key) = a.create_key("stayer", Some("ops")).await;
    // Both keys are in replica B's key cache.
    let warm = spread(std::slice::from_ref(&b.base), &gone_key, 1).await;
    assert_eq!(warm[0].0, 200, "{warm:?}");
    let warm = spread(std::slice::from_ref(&b.base), &old_key, 1).await;
    assert_eq!(warm[0].0, 200, "{warm:?}");

    let (st, v) = a
        .admin_post(&format!("/api/v1/keys/{gone}/revoke"), json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    let r = b
        .chat(&gone_key, chat_body("gpt-4o-mini", "hello", false))
        .await;
    assert_eq!(r.status(), 401, "replica B refuses the revoked key at once");
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked on"),
        "{v}"
    );

    let (st, v) = a
        .admin_post(&format!("/api/v1/keys/{kept}/rotate"), json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    let new_key = v["key"].as_str().unwrap().to_string();
    assert_eq!(
        b.chat(&old_key, chat_body("gpt-4o-mini", "hello", false))
            .await
            .status(),
        401,
        "replica B refuses the rotated key's old secret at once"
    );
    assert_eq!(
        b.chat(&new_key, chat_body("gpt-4o-mini", "hello", false))
            .await
            .status(),
        200
    );
    a.running.stop().await.unwrap();
    b.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_revoked_on_one_replica_is_refused_by_another_on_sqlite() {
    let shared = tempfile::tempdir().unwrap();
    let dir = shared.path().to_path_buf();
    a_key_revoked_on_one_replica_is_refused_by_another_on_its_next_request(
        &move |c: &mut Config| c.data_dir = dir.clone(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_revoked_on_one_replica_is_refused_by_another_on_postgres() {
    let Some(db) = scratch_pg().await else { return };
    let url = db.url().to_string();
    a_key_revoked_on_one_replica_is_refused_by_another_on_its_next_request(
        &move |c: &mut Config| {
            c.store.url = Some(url.clone());
        },
    )
    .await;
}

/// `GET /api/v1/gateways` lists every replica with the status `/overview` shows: this one first (from its live
/// counters), one heard from lately as ok, one silent past `stale_after_secs` as not responding, one that said
/// goodbye as stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_api_lists_every_replica_with_its_status() {
    use spendgate_store::replicas::GatewayBeat;
    let s = TestServer::start_with(|c| c.gateway_name = "here".into()).await;
    let now = spendgate_core::time::now_ms();
    let beat = |name: &str, ago_s: i64, stopped: bool| GatewayBeat {
        name: name.into(),
        version: "0.0.1".into(),
        started_at_ms: now - 3_600_000,
        last_seen_ms: now - ago_s * 1000,
        requests_per_minute: 7,
        error_rate_bp: 12,
        latency_p50_ms: Some(3),
        latency_p95_ms: Some(9),
        queue_pending: 0,
        queue_oldest_age_ms: 0,
        stopped,
    };
    for b in [
        beat("lively", 2, false),
        beat("silent", 600, false),
        beat("gone", 30, true),
    ] {
        s.running.store.heartbeat(b).await.unwrap();
    }
    let (status, v) = s.admin_get("/api/v1/gateways").await;
    assert_eq!(status, 200, "{v}");
    let list = v["gateways"].as_array().unwrap();
    let of = |name: &str| {
        list.iter()
            .find(|g| g["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {v}"))
    };
    assert_eq!(list[0]["name"], "here");
    assert_eq!(list[0]["this_replica"], true);
    assert_eq!(of("here")["status"], "ok");
    assert_eq!(of("lively")["status"], "ok");
    assert_eq!(of("lively")["requests_per_minute"], 7);
    assert_eq!(of("silent")["status"], "not_responding");
    assert_eq!(of("gone")["status"], "stopped");
    assert_eq!(list.len(), 4, "{v}");
    // Admin only, like every other route of the kind.
    let r = s
        .client
        .get(format!("{}/api/v1/gateways", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    s.running.stop().await.unwrap();
}
