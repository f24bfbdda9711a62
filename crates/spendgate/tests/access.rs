//! Roles: a team viewer token reads one team's usage and spend logs, through the API and the pages, and
//! nothing else; the No team bucket and other teams are invisible to it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::time::Duration;

use common::{chat_body, no_redirects, TestServer};
use serde_json::{json, Value};

async fn get_as(s: &TestServer, token: &str, path: &str) -> (u16, Value) {
    let r = s
        .client
        .get(format!("{}{path}", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_viewer_sees_its_team_and_nothing_else() {
    let s = TestServer::start().await;
    let (_, support) = s.create_key("ann", Some("support")).await;
    let (_, search) = s.create_key("ben", Some("search")).await;
    let (_, orphan) = s.create_key("cat", None).await;
    for k in [&support, &support, &search, &orphan] {
        assert_eq!(
            s.chat(k, chat_body("gpt-4o-mini", "hi", false))
                .await
                .status(),
            200
        );
    }
    s.wait_for_summary("window=1h", Duration::from_secs(10), |v| v["requests"] == 4)
        .await;
    let r = s
        .client
        .post(format!("{}/api/v1/viewer-tokens", s.base))
        .bearer_auth("test-admin-token")
        .json(&json!({ "team": "support" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let viewer = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();

    // The API.
    let (st, sum) = get_as(&s, &viewer, "/api/v1/usage/summary?window=1h").await;
    assert_eq!((st, sum["requests"].as_u64()), (200, Some(2)));
    let (_, teams) = get_as(
        &s,
        &viewer,
        "/api/v1/usage/explorer?group_by=team&window=1h",
    )
    .await;
    let rows = teams["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "only its own team, no No team row: {teams}");
    assert_eq!(rows[0]["key"], "support");
    let (_, other) = get_as(&s, &viewer, "/api/v1/usage/summary?window=1h&team=search").await;
    assert_eq!(
        other["requests"], 0,
        "asking for another team gives nothing"
    );
    let (_, none) = get_as(&s, &viewer, "/api/v1/usage/summary?window=1h&team=@none").await;
    assert_eq!(none["requests"], 0);
    let (_, logs) = get_as(&s, &viewer, "/api/v1/spend-logs?window=1h").await;
    assert!(logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["team"] == "support"));
    let (_, all) = s.admin_get("/api/v1/spend-logs?window=1h").await;
    let foreign = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["team"] == "search")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _) = get_as(&s, &viewer, &format!("/api/v1/spend-logs/{foreign}")).await;
    assert_eq!(st, 404, "another team's request is invisible");
    for path in [
        "/api/v1/keys",
        "/api/v1/budgets",
        "/api/v1/status",
        "/api/v1/activity",
        "/api/v1/pricing",
    ] {
        let (st, v) = get_as(&s, &viewer, path).await;
        assert_eq!(st, 403, "{path}: {v}");
        assert_eq!(v["error"]["code"], "admin_only");
    }
    let r = s
        .client
        .post(format!("{}/api/v1/keys", s.base))
        .bearer_auth(&viewer)
        .json(&json!({"user": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (st, _) = get_as(&s, "sgview-not-a-real-token", "/api/v1/usage/summary").await;
    assert_eq!(st, 401);

    // The pages: log in with the viewer token, then only the team's figures show.
    let session = s.login(&viewer).await;
    let no_redirect = no_redirects();
    let page = |path: &str| {
        no_redirect
            .get(format!("{}{path}", s.base))
            .header("cookie", session.clone())
            .send()
    };
    let usage = page("/usage?window=1h&group_by=team").await.unwrap();
    assert_eq!(usage.status(), 200);
    let html = usage.text().await.unwrap();
    assert!(html.contains("support"));
    assert!(
        !html.contains("No team"),
        "the No team bucket is invisible to a viewer"
    );
    assert!(
        !html.contains(">search<") && !html.contains("\"search\""),
        "other teams are invisible"
    );
    let overview = page("/overview").await.unwrap();
    assert_eq!(
        overview.status(),
        303,
        "org-wide pages send a viewer to /usage"
    );
    s.running.stop().await.unwrap();
}
