//! Rate limits over real HTTP: requests and tokens a minute for a key or a team, refused with 429, `Retry-After`
//! and an error in the client's own shape (OpenAI's and Anthropic's), counted in the gateway's status, changed
//! through the admin API with clear refusals and audit entries, and enforced together by two replicas that share
//! one store from the moment the API answers.
//!
//! A limit counts over a sliding window of the last 60 seconds, so none of these tests depends on where a minute
//! begins: everything a test sends falls within one window.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::{replica, scratch_pg, until_listed, TestServer};
use futures_util::StreamExt;
use serde_json::{json, Value};
use spendgate::config::Config;

fn chat_body(text: &str, max_tokens: u64) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "max_tokens": max_tokens,
        "messages": [{ "role": "user", "content": text }],
    })
}

/// (status, Retry-After, body) of an answer.
async fn answer(r: reqwest::Response) -> (u16, Option<u64>, Value) {
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

async fn set_limit(s: &TestServer, body: Value) -> Value {
    let (status, v) = s.admin_post("/api/v1/rate-limits", body).await;
    assert_eq!(status, 201, "{v}");
    v
}

async fn delete_limit(s: &TestServer, id: &str) -> (u16, Value) {
    let r = s
        .client
        .delete(format!("{}/api/v1/rate-limits/{id}", s.base))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Checks a refusal: 429, a Retry-After within the window, and the message saying what to do.
fn assert_limited(status: u16, retry: Option<u64>, message: &str) {
    assert_eq!(status, 429);
    let retry = retry.expect("a rate-limited answer carries Retry-After");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(
        message.contains("Retry after") && message.contains("raise the limit"),
        "{message}"
    );
}

#[tokio::test]
async fn requests_over_a_keys_rpm_get_429_with_retry_after_in_the_clients_own_shape() {
    let s = TestServer::start().await;
    let (openai_id, openai_key) = s.create_key("ana", Some("search")).await;
    let (anthropic_id, anthropic_key) = s.create_key("ben", Some("search")).await;
    set_limit(
        &s,
        json!({ "scope": "key", "subject": openai_id.to_string(), "rpm": 5 }),
    )
    .await;
    // A key id may be given as a number too.
    set_limit(
        &s,
        json!({ "scope": "key", "subject": anthropic_id.to_string(), "rpm": 3 }),
    )
    .await;

    // OpenAI's route: 5 of 8 pass, the other 3 are refused as OpenAI refuses them.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let (status, retry, body) =
            answer(s.chat(&openai_key, chat_body(&format!("q{i}"), 16)).await).await;
        if status != 200 {
            assert_limited(status, retry, body["error"]["message"].as_str().unwrap());
            assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
            assert_eq!(body["error"]["type"], "requests", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("key {openai_id} may send 5 requests a minute")),
                "{body}"
            );
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);

    // Anthropic's route, sent together: 3 of 5 pass, the others get Anthropic's error shape.
    let client = s.client.clone();
    let sent = futures_util::stream::iter(0..5)
        .map(|i| {
            let (client, base, key) = (client.clone(), s.base.clone(), anthropic_key.clone());
            async move {
                let r = client
                    .post(format!("{base}/v1/messages"))
                    .header("x-api-key", key)
                    .header("anthropic-version", "2023-06-01")
                    .json(&json!({
                        "model": "claude-haiku-4-5", "max_tokens": 16,
                        "messages": [{ "role": "user", "content": format!("m{i}") }],
                    }))
                    .send()
                    .await
                    .unwrap();
                answer(r).await
            }
        })
        .buffer_unordered(5)
        .collect::<Vec<_>>()
        .await;
    let passed = sent.iter().filter(|a| a.0 == 200).count();
    assert_eq!(passed, 3, "{sent:?}");
    for (status, retry, body) in sent.iter().filter(|a| a.0 != 200) {
        assert_limited(*status, *retry, body["error"]["message"].as_str().unwrap());
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    }

    // The refusals count in the gateway's status under their reason; the key of another limit is unaffected.
    let (_, status) = s.admin_get("/api/v1/status").await;
    assert_eq!(
        status["gateway"]["rejected_by_reason"]["rate_limit"], 5,
        "{status}"
    );
    let (_, list) = s.admin_get("/api/v1/rate-limits").await;
    let counted: Vec<u64> = list["rate_limits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["last_minute"]["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(counted, [5, 3], "refused requests are not counted: {list}");
    let metrics = common::text_of(
        s.client
            .get(format!("{}/metrics", s.base))
            .bearer_auth("test-admin-token"),
    )
    .await;
    assert!(
        metrics.contains("spendgate_rejected_requests_by_reason_total{gateway=\"test-gw\",reason=\"rate_limit\"} 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn tokens_a_minute_count_what_a_request_may_use_then_what_it_used() {
    let s = TestServer::start().await;
    let (id, key) = s.create_key("cy", Some("labs")).await;
    let tpm = 1_500;
    set_limit(
        &s,
        json!({ "scope": "key", "subject": id.to_string(), "tpm": tpm }),
    )
    .await;

    // A request that may use more than the whole limit can never run: refused without a Retry-After.
    let (status, retry, body) = answer(s.chat(&key, chat_body("too big", 4_000)).await).await;
    assert_eq!((status, retry), (429, None), "{body}");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert_eq!(body["error"]["type"], "tokens", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Lower max_tokens"),
        "{body}"
    );

    // One request at a time, each held at its prompt's estimate plus max_tokens (300) while it runs and then
    // counted at its reported usage: far more of them fit than five holds of 300+ tokens would.
    let mut used = Vec::new();
    let refusal = loop {
        let body = chat_body(&format!("request {}", used.len()), 300);
        let hold = body.to_string().len().div_ceil(4) as u64 + 300;
        let (status, retry, answer) = answer(s.chat(&key, body).await).await;
        if status != 200 {
            break (status, retry, answer, hold);
        }
        let u = &answer["usage"];
        used.push(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap());
        assert!(used.len() < 200, "the token limit never refused");
    };
    let (status, retry, body, hold) = refusal;
    assert_limited(status, retry, body["error"]["message"].as_str().unwrap());
    assert_eq!(body["error"]["type"], "tokens", "{body}");
    let total: u64 = used.iter().sum();
    assert!(
        total + hold > tpm && total - used.last().unwrap() + hold <= tpm,
        "the request after {total} tokens (holding {hold}) is the first that did not fit {tpm}: {used:?}"
    );
    assert!(
        used.len() as u64 > tpm / hold,
        "settled requests count what they used, not what they held: {used:?}"
    );
}

#[tokio::test]
async fn a_team_limit_counts_every_key_of_the_team_and_no_other() {
    let s = TestServer::start().await;
    let (_, first) = s.create_key("dee", Some("ops")).await;
    let (_, second) = s.create_key("eli", Some("ops")).await;
    let (_, other) = s.create_key("fay", Some("growth")).await;
    set_limit(&s, json!({ "scope": "team", "subject": "ops", "rpm": 4 })).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let key = if i % 2 == 0 { &first } else { &second };
        statuses.push(s.chat(key, chat_body("ops", 8)).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
    for _ in 0..6 {
        assert_eq!(s.chat(&other, chat_body("growth", 8)).await.status(), 200);
    }
}

#[tokio::test]
async fn rate_limits_are_set_listed_changed_and_deleted_with_clear_refusals_and_audit_entries() {
    let s = TestServer::start().await;
    let (id, key) = s.create_key("gus", Some("support")).await;
    let (revoked, _) = s.create_key("hal", Some("support")).await;
    let (st, _) = s
        .admin_post(&format!("/api/v1/keys/{revoked}/revoke"), json!({}))
        .await;
    assert_eq!(st, 200);

    let refused = [
        (
            json!({ "scope": "key", "subject": id.to_string(), "rpm": 0 }),
            "rpm must be a whole number from 1",
        ),
        (
            json!({ "scope": "key", "subject": id.to_string(), "rpm": -3 }),
            "rpm must be a whole number from 1",
        ),
        (
            json!({ "scope": "key", "subject": id.to_string(), "tpm": 1.5 }),
            "tpm must be a whole number from 1",
        ),
        (
            json!({ "scope": "key", "subject": id.to_string(), "tpm": "100" }),
            "tpm must be a whole number from 1",
        ),
        (
            json!({ "scope": "key", "subject": id.to_string() }),
            "needs rpm",
        ),
        (
            json!({ "scope": "user", "subject": "gus", "rpm": 5 }),
            "scope must be key or team",
        ),
        (
            json!({ "scope": "org", "rpm": 5 }),
            "scope must be key or team",
        ),
        (
            json!({ "scope": "team", "subject": "@none", "rpm": 5 }),
            "No team bucket",
        ),
        (json!({ "scope": "team", "rpm": 5 }), "needs a subject"),
        (
            json!({ "scope": "key", "subject": "9999", "rpm": 5 }),
            "there is no key 9999",
        ),
        (
            json!({ "scope": "key", "subject": "abc", "rpm": 5 }),
            "key id",
        ),
        (
            json!({ "scope": "key", "subject": 12, "rpm": 5 }),
            "subject must be text",
        ),
        (
            json!({ "scope": "key", "subject": revoked.to_string(), "rpm": 5 }),
            "is revoked",
        ),
        (
            json!({ "scope": "key", "subject": id.to_string(), "rpm": 5, "burst": 2 }),
            "burst",
        ),
    ];
    for (body, says) in refused {
        let (status, v) = s.admin_post("/api/v1/rate-limits", body.clone()).await;
        // A key that does not exist is not found, a revoked one or no limit at all a conflict; the rest are
        // malformed.
        let expected = match says {
            "there is no key 9999" => 404,
            "is revoked" | "needs rpm" => 409,
            _ => 400,
        };
        assert_eq!(status, expected, "{body} -> {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let (_, list) = s.admin_get("/api/v1/rate-limits").await;
    assert_eq!(list["rate_limits"], json!([]), "nothing refused was stored");

    // Created (201), then changed (200): the second body replaces the first, so rpm is gone.
    let created = set_limit(
        &s,
        json!({ "scope": "key", "subject": id.to_string(), "rpm": 1 }),
    )
    .await;
    let limit_id = created["id"].as_i64().unwrap();
    assert_eq!(s.chat(&key, chat_body("a", 8)).await.status(), 200);
    assert_eq!(s.chat(&key, chat_body("b", 8)).await.status(), 429);
    let (status, changed) = s
        .admin_post(
            "/api/v1/rate-limits",
            json!({ "scope": "key", "subject": id.to_string(), "tpm": 100_000 }),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["id"].as_i64(), &changed["rpm"], &changed["tpm"]),
        (Some(limit_id), &Value::Null, &json!(100_000))
    );
    assert_eq!(s.chat(&key, chat_body("c", 8)).await.status(), 200);
    let team = set_limit(
        &s,
        json!({ "scope": "team", "subject": " support ", "rpm": 50 }),
    )
    .await;
    assert_eq!(
        team["subject"], "support",
        "the team's name is trimmed: {team}"
    );
    let (_, list) = s.admin_get("/api/v1/rate-limits").await;
    assert_eq!(list["rate_limits"].as_array().unwrap().len(), 2, "{list}");

    // The page lists both, under the budgets.
    let cookie = s.login("test-admin-token").await;
    let page = s.page("/budgets", &cookie).await;
    assert!(
        page.contains(&format!("id=\"rate-limit-{limit_id}\"")),
        "{page}"
    );
    assert!(page.contains("100,000</b> tokens a minute"), "{page}");

    // Deleted: the key runs freely again; a second delete is a 404, a bad id a 400.
    let (status, v) = delete_limit(&s, &limit_id.to_string()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["deleted"]["id"], limit_id);
    let (status, v) = delete_limit(&s, &limit_id.to_string()).await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = delete_limit(&s, "0").await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = delete_limit(&s, "x").await;
    assert_eq!(status, 400, "{v}");

    // Each change is an admin change in the activity history, with who made it.
    let (_, activity) = s
        .admin_get("/api/v1/activity?window=1h&source=admin_change")
        .await;
    let changes: Vec<(String, String)> = activity["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["action"].as_str().unwrap().starts_with("rate_limit."))
        .map(|i| {
            (
                i["action"].as_str().unwrap().to_string(),
                i["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let target = format!("rate_limit:{limit_id}");
    let team_target = format!("rate_limit:{}", team["id"]);
    let expected = [
        ("rate_limit.delete", target.as_str()),
        ("rate_limit.set", team_target.as_str()),
        ("rate_limit.set", target.as_str()),
        ("rate_limit.set", target.as_str()),
    ];
    assert_eq!(
        changes,
        expected.map(|(a, t)| (a.to_string(), t.to_string())),
        "{activity}"
    );
    for _ in 0..3 {
        assert_eq!(s.chat(&key, chat_body("free", 8)).await.status(), 200);
    }
}

/// A limit created through one replica holds for both from the moment the API answers: requests fired at both
/// at once get through only as many times as the limit allows, together.
async fn two_replicas_enforce_one_limit_together(store: &(dyn Fn(&mut Config) + Sync)) {
    let a = replica("rate-a", store).await;
    let b = replica("rate-b", store).await;
    until_listed(&a, "rate-b").await;
    let (_, key) = a.create_key("ivy", Some("shared")).await;
    // Warm the other replica's key cache, so that the burst below meets the limit and not a key lookup.
    assert_eq!(b.chat(&key, chat_body("warm", 8)).await.status(), 200);
    let rpm = 10;
    set_limit(
        &a,
        json!({ "scope": "team", "subject": "shared", "rpm": rpm }),
    )
    .await;

    let client = a.client.clone();
    let bases = [a.base.clone(), b.base.clone()];
    let sent: Vec<(usize, u16, Option<u64>, Value)> = futures_util::stream::iter(0..30)
        .map(|i| {
            let (client, base, key) = (client.clone(), bases[i % 2].clone(), key.clone());
            async move {
                let r = client
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&chat_body(&format!("burst {i}"), 8))
                    .send()
                    .await
                    .unwrap();
                let (status, retry, body) = answer(r).await;
                (i % 2, status, retry, body)
            }
        })
        .buffer_unordered(30)
        .collect()
        .await;
    let passed = sent.iter().filter(|r| r.1 == 200).count();
    for (_, status, retry, body) in sent.iter().filter(|r| r.1 != 200) {
        assert_limited(*status, *retry, body["error"]["message"].as_str().unwrap());
    }
    let on = |replica: usize| sent.iter().filter(|r| r.0 == replica && r.1 == 200).count();
    println!(
        "rpm {rpm} over two replicas: {passed} of 30 passed ({} on rate-a, {} on rate-b)",
        on(0),
        on(1)
    );
    assert!(passed <= rpm, "{passed} requests passed a limit of {rpm}");
    // Each replica had more requests than the limit: every share granted was used, so the limit was reached.
    assert_eq!(passed, rpm, "{sent:?}");
    a.running.stop().await.unwrap();
    b.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_sqlite_file_enforce_one_rate_limit_together() {
    let shared = tempfile::tempdir().unwrap();
    let dir = shared.path().to_path_buf();
    two_replicas_enforce_one_limit_together(&move |c: &mut Config| c.data_dir = dir.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_postgres_enforce_one_rate_limit_together() {
    let Some(db) = scratch_pg().await else { return };
    let url = db.url().to_string();
    two_replicas_enforce_one_limit_together(&move |c: &mut Config| {
        c.store.url = Some(url.clone());
    })
    .await;
}
