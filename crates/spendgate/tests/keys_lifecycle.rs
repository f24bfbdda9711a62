//! Credentials that can be taken back, over real HTTP on one replica: a revoked virtual key is refused on the
//! next request (even one the gateway had cached), an expired key is refused with its expiry, a rotated key keeps
//! its identity while only its new secret works, and a revoked viewer token ends its API access and its page
//! sessions at once. Every change is an admin action in the activity history.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{no_redirects, TestServer};
use serde_json::{json, Value};
use spendgate_core::time::{now_ms, parse_rfc3339, to_rfc3339};

fn chat_body() -> Value {
    json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "hello" }] })
}

/// The status and JSON body of a chat completion with `key`.
async fn chat(s: &TestServer, key: &str) -> (u16, Value) {
    let r = s.chat(key, chat_body()).await;
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The admin changes recorded in the activity history, oldest first, as (action, target).
async fn admin_changes(s: &TestServer) -> Vec<(String, String)> {
    let (status, v) = s
        .admin_get("/api/v1/activity?window=1h&source=admin_change")
        .await;
    assert_eq!(status, 200, "{v}");
    let mut out: Vec<(String, String)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["action"].as_str().unwrap_or_default().to_string(),
                i["target"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.reverse();
    out
}

#[tokio::test]
async fn a_revoked_key_is_refused_on_its_next_request_with_a_message_that_says_so() {
    let s = TestServer::start().await;
    let (id, key) = s.create_key("alice", Some("search")).await;
    // The first request puts the key in the gateway's in-memory cache.
    assert_eq!(chat(&s, &key).await.0, 200);

    let (status, v) = s
        .admin_post(&format!("/api/v1/keys/{id}/revoke"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"], id);
    let revoked_at = v["revoked_at"].as_str().unwrap().to_string();

    // OpenAI's shape on an OpenAI route...
    let (status, v) = chat(&s, &key).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("revoked on {revoked_at}")),
        "{message}"
    );
    assert!(!message.contains(&key), "the secret is never echoed");
    // ...and Anthropic's on the Messages route.
    let r = s
        .messages(
            &key,
            json!({ "model": "claude-haiku-4-5-20251001", "max_tokens": 16,
                    "messages": [{ "role": "user", "content": "hi" }] }),
        )
        .await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked on"));

    // The list shows it; revoking again keeps the first time; an unknown id is a 404 that says where to look.
    let (_, list) = s.admin_get("/api/v1/keys").await;
    assert_eq!(list["keys"][0]["revoked_at"], revoked_at.as_str());
    let (status, again) = s
        .admin_post(&format!("/api/v1/keys/{id}/revoke"), json!({}))
        .await;
    assert_eq!(
        (status, again["revoked_at"].as_str()),
        (200, Some(revoked_at.as_str()))
    );
    let (status, v) = s.admin_post("/api/v1/keys/999/revoke", json!({})).await;
    assert_eq!(status, 404);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("GET /api/v1/keys"));

    // A revocation is an admin action in the activity history.
    let changes = admin_changes(&s).await;
    assert!(
        changes.contains(&("key.revoke".to_string(), format!("key:{id}"))),
        "{changes:?}"
    );
}

#[tokio::test]
async fn a_key_past_its_expiry_is_refused_with_the_time_it_expired() {
    let s = TestServer::start().await;
    // An expiry that cannot be read (400), or that has passed (409: well formed, but the clock is past it), is
    // refused when the key is made.
    let (status, v) = s
        .admin_post(
            "/api/v1/keys",
            json!({ "user": "bob", "expires_at": "tomorrow" }),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("RFC 3339"));
    let (status, _) = s
        .admin_post(
            "/api/v1/keys",
            json!({ "user": "bob", "expires_at": to_rfc3339(now_ms() - 60_000) }),
        )
        .await;
    assert_eq!(status, 409);

    // A key that works now and expires shortly: used once (so it is cached), then used after its expiry.
    let expiry = to_rfc3339(now_ms() + 1_500);
    let (status, v) = s
        .admin_post(
            "/api/v1/keys",
            json!({ "user": "bob", "team": "ops", "expires_at": expiry }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["expires_at"], expiry.as_str());
    let key = v["key"].as_str().unwrap().to_string();
    assert_eq!(chat(&s, &key).await.0, 200);

    // Waiting for the wall clock to pass the expiry is what this test is about, not a synchronisation.
    let expires_ms = parse_rfc3339(&expiry).unwrap();
    let wait = u64::try_from(expires_ms + 1 - now_ms()).unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    let (status, v) = chat(&s, &key).await;
    assert_eq!(status, 401, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("expired on {expiry}")),
        "{message}"
    );
}

#[tokio::test]
async fn a_rotated_key_keeps_its_identity_and_only_its_new_secret_works() {
    let s = TestServer::start().await;
    let (id, old) = s.create_key("carol", Some("search")).await;
    assert_eq!(chat(&s, &old).await.0, 200);

    let (status, v) = s
        .admin_post(&format!("/api/v1/keys/{id}/rotate"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let new = v["key"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(
        (&v["id"], &v["user"], &v["team"]),
        (&json!(id), &json!("carol"), &json!("search"))
    );
    assert!(new.ends_with(v["hint"].as_str().unwrap()));

    let (status, v) = chat(&s, &old).await;
    assert_eq!(status, 401, "the old secret stops at once: {v}");
    assert_eq!(chat(&s, &new).await.0, 200);
    // One key's history: both requests, before and after the rotation, are the same key's spend.
    s.wait_for_summary(
        &format!("window=1h&key={id}"),
        std::time::Duration::from_secs(10),
        |v| v["requests"] == 2,
    )
    .await;

    // A revoked key cannot be rotated back to life.
    s.admin_post(&format!("/api/v1/keys/{id}/revoke"), json!({}))
        .await;
    let (status, v) = s
        .admin_post(&format!("/api/v1/keys/{id}/rotate"), json!({}))
        .await;
    assert_eq!(status, 409, "{v}");
    let changes = admin_changes(&s).await;
    assert!(
        changes.contains(&("key.rotate".to_string(), format!("key:{id}"))),
        "{changes:?}"
    );
}

#[tokio::test]
async fn a_revoked_viewer_token_ends_its_api_access_and_its_page_sessions() {
    let s = TestServer::start().await;
    let (status, v) = s
        .admin_post("/api/v1/viewer-tokens", json!({ "team": "search" }))
        .await;
    assert_eq!(status, 201, "{v}");
    let (id, token) = (
        v["id"].as_i64().unwrap(),
        v["token"].as_str().unwrap().to_string(),
    );
    let summary = || {
        s.client
            .get(format!("{}/api/v1/usage/summary?window=1h", s.base))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(summary().await.unwrap().status(), 200);
    let cookie = s.login(&token).await;
    let usage = || {
        no_redirects()
            .get(format!("{}/usage", s.base))
            .header("cookie", &cookie)
            .send()
    };
    assert_eq!(usage().await.unwrap().status(), 200);

    let (_, listed) = s.admin_get("/api/v1/viewer-tokens").await;
    assert_eq!(listed["viewer_tokens"][0]["id"], id, "{listed}");
    assert!(!listed.to_string().contains(&token), "never the secret");
    let (status, v) = s
        .admin_post(&format!("/api/v1/viewer-tokens/{id}/revoke"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, listed) = s.admin_get("/api/v1/viewer-tokens").await;
    assert_eq!(listed["viewer_tokens"], json!([]));

    assert_eq!(summary().await.unwrap().status(), 401);
    // The session made with the token ends at its next request: back to the login form.
    let r = usage().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login"));
    // And the token cannot log in again.
    let r = s.try_login(&token).await;
    assert_eq!(r.status(), 401);

    let (status, _) = s
        .admin_post(&format!("/api/v1/viewer-tokens/{id}/revoke"), json!({}))
        .await;
    assert_eq!(status, 404);
    let changes = admin_changes(&s).await;
    assert!(
        changes.contains(&("viewer_token.revoke".to_string(), format!("viewer:{id}"))),
        "{changes:?}"
    );
}

#[tokio::test]
async fn a_viewer_token_expires_on_the_api_and_in_its_page_sessions() {
    let s = TestServer::start().await;
    // Without an expiry a token works for 90 days; an unreadable one is a 400, a past one a 409.
    let (status, v) = s
        .admin_post("/api/v1/viewer-tokens", json!({ "team": "search" }))
        .await;
    assert_eq!(status, 201, "{v}");
    let created = parse_rfc3339(v["created_at"].as_str().unwrap()).unwrap();
    let expires = parse_rfc3339(v["expires_at"].as_str().unwrap()).unwrap();
    let ninety_days = 90 * 86_400_000;
    assert!(
        (ninety_days - 60_000..=ninety_days).contains(&(expires - created)),
        "{v}"
    );
    let (status, v) = s
        .admin_post(
            "/api/v1/viewer-tokens",
            json!({ "team": "search", "expires_at": "next week" }),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = s
        .admin_post(
            "/api/v1/viewer-tokens",
            json!({ "team": "search", "expires_at": to_rfc3339(now_ms() - 1_000) }),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("expires_at_past")),
        "{v}"
    );

    // A token that expires shortly: it reads and logs in now.
    let expiry = to_rfc3339(now_ms() + 3_000);
    let (status, v) = s
        .admin_post(
            "/api/v1/viewer-tokens",
            json!({ "team": "search", "name": "brief", "expires_at": expiry }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["expires_at"], expiry.as_str());
    let (id, token) = (
        v["id"].as_i64().unwrap(),
        v["token"].as_str().unwrap().to_string(),
    );
    let summary = || {
        s.client
            .get(format!("{}/api/v1/usage/summary?window=1h", s.base))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(summary().await.unwrap().status(), 200);
    let cookie = s.login(&token).await;
    let usage = || {
        no_redirects()
            .get(format!("{}/usage", s.base))
            .header("cookie", &cookie)
            .send()
    };
    assert_eq!(usage().await.unwrap().status(), 200);

    // Waiting for the wall clock to pass the expiry is what this test is about, not a synchronisation.
    let wait = u64::try_from(parse_rfc3339(&expiry).unwrap() + 1 - now_ms()).unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;

    // The API refuses it with when it expired and how to get another.
    let r = summary().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "viewer_token_expired", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("expired at {expiry}"))
            && message.contains("POST /api/v1/viewer-tokens"),
        "{message}"
    );
    // The page session made with it ends at its next request, and the login page says why.
    let r = usage().await.unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/login") && location.contains("ended=expired"),
        "{location}"
    );
    let login = common::text_of(s.client.get(format!("{}{location}", s.base))).await;
    assert!(login.contains("its viewer token expired"), "{login}");
    // Logging in with it again is refused with the same explanation.
    let r = s.try_login(&token).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("expired at"));
    // The admin still sees it (not revoked), marked expired.
    let (_, listed) = s.admin_get("/api/v1/viewer-tokens").await;
    let row = listed["viewer_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .unwrap();
    assert_eq!(
        (row["expired"].as_bool(), row["expires_at"].as_str()),
        (Some(true), Some(expiry.as_str()))
    );
}
