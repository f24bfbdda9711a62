//! Refusals as data: a hard budget that is full, an empty wallet and a bad key refuse requests at the door; each
//! refusal is recorded (through the journal and the writer), listed by `GET /api/v1/refusals` with its reason,
//! sentence and who was refused, counted exactly in the refusal rollups (per reason, team, user and key, and in
//! the usage summary), confined to a team viewer's team, and the first refusal of an empty wallet raises a
//! "wallet X is refusing team Y's requests" alert, once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::time::{Duration, Instant};

use common::{chat_body, TestServer};
use serde_json::{json, Value};

/// What the test set up: the ids of its keys, budget and wallet.
struct Refused {
    sam_key: i64,
    olga_key: i64,
    budget: i64,
    wallet: i64,
}

const BUDGET_REFUSALS: usize = 5;
const WALLET_REFUSALS: usize = 3;
const BAD_KEY_REFUSALS: usize = 2;
const ALL: usize = BUDGET_REFUSALS + WALLET_REFUSALS + BAD_KEY_REFUSALS;

/// A team whose hard daily budget cannot hold one request, a team whose wallet is empty (after one request it
/// made before the wallet existed), and a caller with a key nobody issued; each sends requests, one at a time, and
/// each is refused.
async fn refuse_some(s: &TestServer) -> Refused {
    let (sam_key, sam) = s.create_key("sam", Some("support")).await;
    let (olga_key, olga) = s.create_key("olga", Some("ops")).await;
    let paid = s
        .chat(&olga, chat_body("gpt-4o-mini", "before", false))
        .await;
    assert_eq!(paid.status(), 200);
    let budget = s.full_hard_budget("support", "support daily").await;
    let (st, w) = s
        .admin_post(
            "/api/v1/wallets",
            json!({ "name": "ops wallet", "scope": "team", "subject": "ops", "low_threshold": "1" }),
        )
        .await;
    assert_eq!(st, 201, "{w}");
    for (key, n, status) in [
        (&sam, BUDGET_REFUSALS, 429),
        (&olga, WALLET_REFUSALS, 402),
        (
            &"sk-sg-nobody-issued-this".to_string(),
            BAD_KEY_REFUSALS,
            401,
        ),
    ] {
        for i in 0..n {
            let r = s
                .chat(key, chat_body("gpt-4o-mini", &format!("please {i}"), false))
                .await;
            assert_eq!(r.status().as_u16(), status, "{}", r.text().await.unwrap());
        }
    }
    Refused {
        sam_key,
        olga_key,
        budget,
        wallet: w["id"].as_i64().unwrap(),
    }
}

/// Polls `path` (admin) until `cond` holds, or fails after ten seconds with the last answer.
async fn wait_for(s: &TestServer, path: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let (st, v) = s.admin_get(path).await;
        if st == 200 && cond(&v) {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{path} never answered as expected: {st} {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Counts of a grouping as (label, refusals), in the API's order.
fn counts(v: &Value) -> Vec<(String, u64)> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["label"].as_str().unwrap().to_string(),
                r["refusals"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_wallet_and_key_refusals_are_listed_attributed_and_counted() {
    let s = TestServer::start().await;
    let ids = refuse_some(&s).await;

    // Listed, newest first, each with its reason, its sentence and who was refused.
    let list = wait_for(&s, "/api/v1/refusals?window=1h", |v| {
        v["items"].as_array().unwrap().len() == ALL
    })
    .await;
    let items = list["items"].as_array().unwrap();
    let of = |reason: &str| {
        items
            .iter()
            .filter(|i| i["reason"] == reason)
            .collect::<Vec<_>>()
    };
    let budget = of("budget");
    assert_eq!(budget.len(), BUDGET_REFUSALS, "{list}");
    for r in &budget {
        assert_eq!(r["http_status"], 429);
        assert_eq!(r["team"], "support");
        assert_eq!(r["user"], "sam");
        assert_eq!(r["key_id"], ids.sam_key);
        assert_eq!(r["budget_id"], ids.budget);
        assert_eq!(r["model"], "gpt-4o-mini");
        assert_eq!(r["endpoint"], "chat.completions");
        assert_eq!(r["gateway"], "test-gw");
        assert_eq!(r["reason_label"], "budget full");
        let detail = r["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("budget 'support daily' is hard and full"),
            "{detail}"
        );
    }
    let wallet = of("wallet");
    assert_eq!(wallet.len(), WALLET_REFUSALS, "{list}");
    for r in &wallet {
        assert_eq!(r["http_status"], 402);
        assert_eq!((&r["team"], &r["user"]), (&json!("ops"), &json!("olga")));
        assert_eq!(r["key_id"], ids.olga_key);
        assert_eq!(r["wallet_id"], ids.wallet);
        assert_eq!(r["detail"], "wallet 'ops wallet' is empty");
    }
    let bad_key = of("auth");
    assert_eq!(bad_key.len(), BAD_KEY_REFUSALS, "{list}");
    for r in &bad_key {
        assert_eq!(r["http_status"], 401);
        assert!(r["key_id"].is_null() && r["user"].is_null() && r["team"].is_null());
        assert_eq!(r["detail"], "unknown key");
    }
    let times: Vec<i64> = items
        .iter()
        .map(|i| spendgate_core::time::parse_rfc3339(i["at"].as_str().unwrap()).unwrap())
        .collect();
    assert!(
        times.windows(2).all(|t| t[0] >= t[1]),
        "newest first: {times:?}"
    );

    // Paged by cursor like spend logs.
    let (_, first) = s.admin_get("/api/v1/refusals?window=1h&limit=4").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 4);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, rest) = s
        .admin_get(&format!(
            "/api/v1/refusals?window=1h&limit=100&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), ALL - 4);
    assert!(rest["next_cursor"].is_null());

    // Counted exactly in the rollups, by reason, team, user and key.
    // The three groups of each grouping, most refused first: the budget's, the wallet's, the bad key's.
    for (group, labels) in [
        ("reason", ["budget full", "wallet empty", "bad key"]),
        ("team", ["support", "ops", "No team"]),
        ("user", ["sam", "olga", "unknown key"]),
    ] {
        let (_, v) = s
            .admin_get(&format!(
                "/api/v1/refusals/counts?window=1h&group_by={group}"
            ))
            .await;
        assert_eq!(v["total"], ALL, "{v}");
        let expected: Vec<(String, u64)> = labels
            .iter()
            .zip([BUDGET_REFUSALS, WALLET_REFUSALS, BAD_KEY_REFUSALS])
            .map(|(l, n)| (l.to_string(), n as u64))
            .collect();
        assert_eq!(counts(&v), expected, "by {group}");
    }
    let (_, by_key) = s
        .admin_get(&format!(
            "/api/v1/refusals/counts?window=1h&group_by=key&key={}",
            ids.olga_key
        ))
        .await;
    assert_eq!(by_key["rows"][0]["key"], ids.olga_key.to_string());
    assert_eq!(by_key["total"], WALLET_REFUSALS);
    let (_, one) = s
        .admin_get("/api/v1/refusals?window=1h&team=support&reason=budget")
        .await;
    assert_eq!(one["items"].as_array().unwrap().len(), BUDGET_REFUSALS);
    let (_, none) = s
        .admin_get("/api/v1/refusals?window=1h&team=support&reason=wallet")
        .await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0);

    // The usage summary carries them: refused requests are in none of its spend figures (the one request is
    // ops's, before its wallet existed).
    let (_, summary) = s.admin_get("/api/v1/usage/summary?window=1h").await;
    assert_eq!(summary["requests"], 1, "{summary}");
    assert_eq!(summary["refused"]["total"], ALL, "{summary}");
    assert_eq!(summary["refused"]["by_team"][0]["key"], "support");
    assert_eq!(
        summary["refused"]["by_team"][0]["refusals"],
        BUDGET_REFUSALS
    );
    let (_, team_summary) = s
        .admin_get("/api/v1/usage/summary?window=1h&team=ops")
        .await;
    assert_eq!(team_summary["refused"]["total"], WALLET_REFUSALS);
    // The explorer's rows by team carry their refusals (a team with refusals and no spend has no row there).
    let (_, explorer) = s
        .admin_get("/api/v1/usage/explorer?window=1h&group_by=team")
        .await;
    let rows = explorer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{explorer}");
    assert_eq!(
        (&rows[0]["key"], &rows[0]["refused"]),
        (&json!("ops"), &json!(WALLET_REFUSALS)),
        "{explorer}"
    );

    // Filters refusals do not carry are refused with what to do, not silently ignored.
    let (st, err) = s
        .admin_get("/api/v1/refusals?window=1h&provider=openai")
        .await;
    assert_eq!(st, 400, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Drop the provider filter"));
    let (st, _) = s.admin_get("/api/v1/refusals?reason=nonsense").await;
    assert_eq!(st, 400);
    let (_, filtered) = s
        .admin_get("/api/v1/usage/summary?window=1h&provider=openai")
        .await;
    assert!(filtered["refused"].is_null(), "{filtered}");

    // Each refusal was handed to the writer once, and counted as rejected by the gateway.
    let (_, status) = s.admin_get("/api/v1/status").await;
    assert_eq!(status["queue"]["refusals_recorded"], ALL, "{status}");
    assert_eq!(status["gateway"]["rejected"], ALL, "{status}");

    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_wallet_raises_a_refusing_alert_once_and_shows_as_refusing() {
    let s = TestServer::start().await;
    let ids = refuse_some(&s).await;
    let alerts = wait_for(&s, "/api/v1/alerts", |v| {
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "wallet_refusing")
    })
    .await;
    let refusing: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "wallet_refusing")
        .collect();
    assert_eq!(
        refusing.len(),
        1,
        "once for {WALLET_REFUSALS} refusals: {alerts}"
    );
    let message = refusing[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Wallet 'ops wallet' of team ops is refusing team ops's requests"),
        "{message}"
    );
    assert_eq!(refusing[0]["team"], "ops");
    assert_eq!(refusing[0]["subject"], format!("wallet:{}", ids.wallet));
    // The budget's refusals raised its own alert beside it.
    assert!(alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["kind"] == "budget_refusing"));
    let refusing_since = || async {
        let (_, wallets) = s.admin_get("/api/v1/wallets").await;
        let w = wallets["wallets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == ids.wallet)
            .unwrap()
            .clone();
        w["refusing_since"].clone()
    };
    assert!(refusing_since().await.is_string());
    let cookie = s.login("test-admin-token").await;
    let page = s.page("/wallets", &cookie).await;
    assert!(page.contains("data-status=\"refusing\""), "{page}");

    // A top-up ends the refusing: the wallet pays again.
    let (st, t) = s
        .admin_post(
            &format!("/api/v1/wallets/{}/topup", ids.wallet),
            json!({ "amount": "10" }),
        )
        .await;
    assert_eq!(st, 200, "{t}");
    assert!(refusing_since().await.is_null());
    s.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_viewer_sees_its_own_teams_refusals_only() {
    let s = TestServer::start().await;
    refuse_some(&s).await;
    wait_for(&s, "/api/v1/refusals/counts?window=1h", |v| {
        v["total"] == ALL
    })
    .await;
    let viewer = s.create_viewer("support").await;
    let get = |path: &str| {
        let req = s
            .client
            .get(format!("{}{path}", s.base))
            .bearer_auth(&viewer);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (st, list) = get("/api/v1/refusals?window=1h").await;
    assert_eq!(st, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), BUDGET_REFUSALS, "{list}");
    assert!(items.iter().all(|i| i["team"] == "support"));
    // Asking for another team, or for the No team bucket (the unknown keys), finds nothing.
    for other in ["ops", "@none"] {
        let (_, l) = get(&format!("/api/v1/refusals?window=1h&team={other}")).await;
        assert_eq!(l["items"].as_array().unwrap().len(), 0, "{other}: {l}");
    }
    let (_, c) = get("/api/v1/refusals/counts?window=1h&group_by=team").await;
    assert_eq!(
        counts(&c),
        vec![("support".to_string(), BUDGET_REFUSALS as u64)]
    );
    let (_, summary) = get("/api/v1/usage/summary?window=1h").await;
    assert_eq!(summary["refused"]["total"], BUDGET_REFUSALS, "{summary}");
    s.running.stop().await.unwrap();
}
