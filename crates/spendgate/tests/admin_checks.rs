//! Holding the line on the admin side: the login sends its reader only to this site; admin changes are checked
//! before anything is written; every `/api` error is JSON; the No team bucket is not a payer and names are
//! trimmed; workflow labels past their bound are recorded as "other".
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use common::{chat_body, no_redirects, TestServer};
use serde_json::{json, Value};

/// Logs in with the admin token and `next` (already URL-encoded); returns the status and `Location`.
async fn login_with_next(s: &TestServer, next: &str) -> (u16, String) {
    let client = no_redirects();
    let (cookie, csrf, html) = s.login_form(&format!("?next={next}")).await;
    assert!(
        html.contains("name=\"next\" value=\"/overview\""),
        "the form carries a safe next only: {next}"
    );
    let r = client
        .post(format!("{}/login", s.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token=test-admin-token&csrf={csrf}&next={next}"))
        .send()
        .await
        .unwrap();
    let location = r
        .headers()
        .get("location")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
        .unwrap_or_default();
    (r.status().as_u16(), location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_sends_its_reader_to_this_site_only() {
    let s = TestServer::start().await;
    for next in [
        "/%09/evil.example",
        "/%0A/x",
        "/%0D%0ASet-Cookie:%20x=1",
        "//evil.example",
        "/%5Cevil.example",
        "https://evil.example",
    ] {
        assert_eq!(
            login_with_next(&s, next).await,
            (303, "/overview".to_string()),
            "next={next}"
        );
    }
    // A path on this site is kept.
    let (_, _, html) = s.login_form("?next=%2Fusage%3Fteam%3Da").await;
    assert!(html.contains("name=\"next\" value=\"/usage?team=a\""));
}

/// Asserts an `/api` error answer: its status, and a JSON body in the API's error shape.
fn api_error(got: (u16, Value), status: u16, what: &str) -> Value {
    assert_eq!(got.0, status, "{what}: {}", got.1);
    let e = &got.1["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty())
            && e["type"].is_string()
            && e["code"].is_string(),
        "{what}: not the API's error shape: {}",
        got.1
    );
    got.1
}

async fn wallets(s: &TestServer) -> Vec<Value> {
    let (status, v) = s.admin_get("/api/v1/wallets").await;
    assert_eq!(status, 200);
    v["wallets"].as_array().unwrap().clone()
}

async fn create_wallet(s: &TestServer, scope: &str, subject: Option<&str>) -> i64 {
    let (status, v) = s
        .admin_post(
            "/api/v1/wallets",
            json!({ "scope": scope, "subject": subject }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_changes_are_checked_before_anything_is_written() {
    let s = TestServer::start().await;
    // An invalid first top-up: refused, and no wallet was created.
    api_error(
        s.admin_post(
            "/api/v1/wallets",
            json!({ "scope": "team", "subject": "w", "initial_balance": "lots" }),
        )
        .await,
        400,
        "invalid initial balance",
    );
    api_error(
        s.admin_post(
            "/api/v1/wallets",
            json!({ "scope": "team", "subject": "w", "initial_balance": "99999999" }),
        )
        .await,
        400,
        "an initial balance no wallet can hold",
    );
    assert!(
        wallets(&s).await.is_empty(),
        "a refused wallet is not created"
    );
    let (status, v) = s
        .admin_post(
            "/api/v1/wallets",
            json!({ "scope": "team", "subject": "w", "initial_balance": "10" }),
        )
        .await;
    assert_eq!((status, v["balance"].as_str()), (201, Some("10.00")), "{v}");

    // Top-ups the wallet could not hold: a conflict with its balance (409) that says so, and the balance is as
    // before.
    let org = create_wallet(&s, "org", None).await;
    let topup = |id: i64, amount: &str| {
        let path = format!("/api/v1/wallets/{id}/topup");
        let body = json!({ "amount": amount });
        let s = &s;
        async move { s.admin_post(&path, body).await }
    };
    assert_eq!(topup(org, "9000000").await.0, 200);
    let e = api_error(topup(org, "9000000").await, 409, "overflowing top-up");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("at most"),
        "{e}"
    );
    let org_row = wallets(&s)
        .await
        .into_iter()
        .find(|w| w["id"] == org)
        .unwrap();
    assert_eq!(org_row["balance"], "9000000.00");

    // Unknown and impossible wallet ids.
    api_error(topup(999_999, "1").await, 404, "unknown wallet");
    api_error(topup(0, "1").await, 400, "wallet 0");
    api_error(topup(-3, "1").await, 400, "negative wallet id");
    api_error(
        s.admin_get("/api/v1/wallets/999999/ledger").await,
        404,
        "ledger of a missing wallet",
    );

    // Money moves between parent and child only: other pairs are a conflict with how the wallets stand (409).
    let team_a = v["id"].as_i64().unwrap();
    let team_b = create_wallet(&s, "team", Some("b")).await;
    let user = create_wallet(&s, "user", Some("u")).await;
    let post = |path: String, body: Value| {
        let s = &s;
        async move { s.admin_post(&path, body).await }
    };
    api_error(
        post(
            format!("/api/v1/wallets/{org}/allocate"),
            json!({ "amount": "1", "wallet": org }),
        )
        .await,
        409,
        "allocating to itself",
    );
    api_error(
        post(
            format!("/api/v1/wallets/{team_b}/reclaim"),
            json!({ "amount": "1", "wallet": team_a }),
        )
        .await,
        409,
        "reclaiming from an unrelated wallet",
    );
    api_error(
        post(
            format!("/api/v1/wallets/{user}/reclaim"),
            json!({ "amount": "1", "wallet": team_a }),
        )
        .await,
        409,
        "a child reclaiming from its parent",
    );
    api_error(
        post(
            format!("/api/v1/wallets/{org}/reclaim"),
            json!({ "amount": "1", "wallet": 424242 }),
        )
        .await,
        404,
        "reclaiming from a missing wallet",
    );
    let (status, v) = post(
        format!("/api/v1/wallets/{org}/allocate"),
        json!({ "amount": "3", "wallet": team_b }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(
        format!("/api/v1/wallets/{org}/reclaim"),
        json!({ "amount": "2", "wallet": team_b }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(
        format!("/api/v1/wallets/{team_a}/allocate"),
        json!({ "amount": "1", "wallet": user }),
    )
    .await;
    assert_eq!(status, 200, "a team's wallet gives to a user's: {v}");
    let balances: Vec<(i64, String)> = wallets(&s)
        .await
        .iter()
        .map(|w| {
            (
                w["id"].as_i64().unwrap(),
                w["balance"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        balances,
        vec![
            (team_a, "9.00".to_string()),
            (org, "8999999.00".to_string()),
            (team_b, "1.00".to_string()),
            (user, "1.00".to_string()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_error_is_json() {
    let s = TestServer::start().await;
    let delete = s
        .client
        .delete(format!("{}/api/v1/keys", s.base))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap();
    let status = delete.status().as_u16();
    api_error(
        (status, delete.json().await.unwrap_or(Value::Null)),
        405,
        "a method the route does not take",
    );
    api_error(
        s.admin_get("/api/v1/nothing-here").await,
        404,
        "an unknown route",
    );
    api_error(
        s.admin_get("/api/v1/wallets/abc/ledger").await,
        400,
        "a path that is not a number",
    );
    let id = create_wallet(&s, "org", None).await;
    api_error(
        s.admin_get(&format!("/api/v1/wallets/{id}/ledger?limit=many"))
            .await,
        400,
        "a query that cannot be read",
    );
    api_error(
        s.admin_get("/api/v1/usage/summary?window=1h&key=x").await,
        400,
        "a filter that cannot be read",
    );
    // The proxy's unknown paths and wrong methods are JSON too, in the shape of the API called.
    let get = s
        .client
        .get(format!("{}/v1/messages", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let v: Value = get.json().await.unwrap();
    assert_eq!(v["type"], "error", "Anthropic's shape on /v1/messages: {v}");
    let r = s
        .client
        .get(format!("{}/v1/nothing", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_no_team_bucket_is_not_a_payer_and_names_are_trimmed() {
    let s = TestServer::start().await;
    for (path, body) in [
        (
            "/api/v1/budgets",
            json!({ "scope": "team", "subject": "@none", "period": "month", "amount": "10" }),
        ),
        (
            "/api/v1/wallets",
            json!({ "scope": "team", "subject": "@none" }),
        ),
        (
            "/api/v1/wallets",
            json!({ "scope": "user", "subject": "@none" }),
        ),
    ] {
        let e = api_error(s.admin_post(path, body).await, 400, path);
        assert!(
            e["error"]["message"].as_str().unwrap().contains("@none"),
            "{e}"
        );
    }
    let (_, budgets) = s.admin_get("/api/v1/budgets").await;
    assert_eq!(budgets["budgets"], json!([]));
    assert!(wallets(&s).await.is_empty());

    // A key's team and user are kept trimmed, through the API and the function the CLI calls.
    let (status, v) = s
        .admin_post(
            "/api/v1/keys",
            json!({ "user": " sam ", "team": " spaced " }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        (v["user"].as_str(), v["team"].as_str()),
        (Some("sam"), Some("spaced"))
    );
    let (rec, _) =
        spendgate_gateway::keys::create_key(&*s.running.store, " cli ", Some(" spaced "), None)
            .await
            .unwrap();
    assert_eq!(
        (rec.user.as_str(), rec.team.as_deref()),
        ("cli", Some("spaced"))
    );
    // A team of spaces is no team, as an empty one is.
    let (status, v) = s
        .admin_post("/api/v1/keys", json!({ "user": "nobody", "team": "   " }))
        .await;
    assert_eq!((status, v["team"].clone()), (201, Value::Null), "{v}");
    // The budget for the trimmed team covers the keys.
    let (status, v) = s
        .admin_post(
            "/api/v1/budgets",
            json!({ "scope": "team", "subject": " spaced ", "period": "month", "amount": "10" }),
        )
        .await;
    assert_eq!(
        (status, v["subject"].as_str()),
        (201, Some("spaced")),
        "{v}"
    );
}

/// A chat completion with `key` and this workflow header; its request id.
async fn chat_in_workflow(api: &common::Api, key: &str, workflow: &str) -> String {
    let r = api
        .client
        .post(format!("{}/v1/chat/completions", api.base))
        .bearer_auth(key)
        .header("x-spendgate-workflow", workflow)
        .json(&chat_body("gpt-4o-mini", "hello", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "workflow {workflow}");
    common::request_id(&r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_labels_past_the_bound_are_recorded_as_other() {
    let bound = |c: &mut spendgate::config::Config| c.limits.max_workflows = 3;
    let s = TestServer::start_with(bound).await;
    let (_, key) = s.create_key("labeller", Some("search")).await;
    let mut sent = Vec::new();
    for label in ["wf-0", "wf-1", "wf-2", "wf-3", "wf-4", "wf-0"] {
        sent.push((label, chat_in_workflow(&s, &key, label).await));
    }
    // The first three labels are kept; the two after them are (other), and their spend logs keep what they
    // asked for; a kept label goes on working after the bound was reached.
    for (label, id) in &sent {
        let log = s.wait_for_log(id).await;
        let expected = if matches!(*label, "wf-3" | "wf-4") {
            ("(other)", json!(label))
        } else {
            (*label, Value::Null)
        };
        assert_eq!(
            (
                log["workflow"].as_str().unwrap(),
                &log["workflow_requested"]
            ),
            (expected.0, &expected.1),
            "{log}"
        );
    }
    let (_, status) = s.admin_get("/api/v1/status").await;
    assert_eq!(status["workflows"], json!({ "tracked": 3, "max": 3 }));
    let (_, v) = s
        .admin_get("/api/v1/usage/explorer?window=1h&group_by=workflow&sort=requests")
        .await;
    let mut rows: Vec<(String, u64)> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["label"].as_str().unwrap().to_string(),
                r["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [("(other)", 2), ("wf-0", 2), ("wf-1", 1), ("wf-2", 1)]
            .map(|(l, n)| (l.to_string(), n))
            .to_vec()
    );
    // A client cannot pick the bucket itself.
    let r = s
        .client
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(&key)
        .header("x-spendgate-workflow", "(other)")
        .json(&chat_body("gpt-4o-mini", "hello", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // A restart keeps the labels in use (from the store) rather than the first new ones to arrive.
    let TestServer { running, dir, .. } = s;
    running.stop().await.unwrap();
    let mut config = common::test_config(dir.path());
    bound(&mut config);
    let running = spendgate::app::start(&config).await.unwrap();
    let api = common::Api {
        base: format!("http://{}", running.addr),
        client: reqwest::Client::new(),
    };
    let fresh = chat_in_workflow(&api, &key, "wf-5").await;
    let kept = chat_in_workflow(&api, &key, "wf-2").await;
    assert_eq!(api.wait_for_log(&fresh).await["workflow"], "(other)");
    assert_eq!(api.wait_for_log(&kept).await["workflow"], "wf-2");
    running.stop().await.unwrap();
}
