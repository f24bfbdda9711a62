//! The interfaces other tools read: streamed CSV/JSON exports of spend logs and the explorer (API and pages),
//! Prometheus `/metrics`, and the OpenAPI document.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{chat_body, picos, TestServer};
use serde_json::Value;

/// Splits CSV text into rows of fields (quoted fields with doubled quotes; no line breaks inside fields, which
/// our exports never have).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| {
            let mut fields = Vec::new();
            let mut cur = String::new();
            let mut quoted = false;
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match (c, quoted) {
                    ('"', true) if chars.peek() == Some(&'"') => {
                        cur.push('"');
                        chars.next();
                    }
                    ('"', _) => quoted = !quoted,
                    (',', false) => fields.push(std::mem::take(&mut cur)),
                    (c, _) => cur.push(c),
                }
            }
            fields.push(cur);
            fields
        })
        .collect()
}

async fn get_text(s: &TestServer, token: Option<&str>, path: &str) -> (u16, String, String) {
    let mut req = s.client.get(format!("{}{path}", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, r.text().await.unwrap())
}

/// Sends `n` requests over a few keys and waits until all are in the summary.
async fn traffic(s: &TestServer, n: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for (user, team) in [
        ("ann", Some("search")),
        ("bob", Some("support")),
        ("cy", None),
    ] {
        keys.push(s.create_key(user, team).await.1);
    }
    let mut tasks = Vec::new();
    for i in 0..n {
        let key = keys[i % keys.len()].clone();
        let c = s.client.clone();
        let base = s.base.clone();
        let model = ["gpt-4o-mini", "gpt-4o", "claude-haiku-4-5"][i % 3];
        tasks.push(tokio::spawn(async move {
            let (path, body) = common::chat_request(model, &"word ".repeat(i % 40 + 1), i % 4 == 0);
            let r = c
                .post(format!("{base}{path}"))
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
        }));
        if tasks.len() >= 32 {
            for t in tasks.drain(..) {
                t.await.unwrap();
            }
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let want = n as u64;
    s.wait_for_summary("window=1h", Duration::from_secs(20), |v| {
        v["requests"] == want
    })
    .await;
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_log_exports_stream_every_log_once_and_reconcile() {
    let s = TestServer::start().await;
    // More than two export pages (500 each), so the stream crosses cursors.
    traffic(&s, 1_203).await;
    let (_, summary) = s.admin_get("/api/v1/usage/summary?window=1h").await;
    let total = picos(&summary["cost"]);

    // JSON: one array of every log, newest (by finish time) first.
    let (st, ctype, body) = get_text(
        &s,
        Some("test-admin-token"),
        "/api/v1/spend-logs/export?window=1h&format=json",
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let logs: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(logs.len(), 1_203);
    let ids: std::collections::HashSet<&str> =
        logs.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1_203, "every log exactly once");
    assert_eq!(logs.iter().map(|l| picos(&l["cost"])).sum::<i128>(), total);
    let starts: Vec<i64> = logs
        .iter()
        .map(|l| spendgate_core::time::parse_rfc3339(l["finished_at"].as_str().unwrap()).unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // CSV: a header and one line a log, costs summing to the same total; a filter narrows it.
    let (st, ctype, body) = get_text(
        &s,
        Some("test-admin-token"),
        "/api/v1/spend-logs/export?window=1h&format=csv",
    )
    .await;
    assert_eq!(st, 200);
    assert!(ctype.starts_with("text/csv"), "{ctype}");
    let rows = parse_csv(&body);
    let head = &rows[0];
    let col = |name: &str| head.iter().position(|h| h == name).unwrap();
    assert_eq!(rows.len() - 1, 1_203);
    let (cost, team, lines) = (col("cost"), col("team"), col("price_lines"));
    let sum: i128 = rows[1..]
        .iter()
        .map(|r| spendgate_core::Money::parse_usd(&r[cost]).unwrap().picos())
        .sum();
    assert_eq!(sum, total);
    // The price lines column carries JSON (commas and quotes) intact through the quoting.
    let first_lines: Value = serde_json::from_str(&rows[1][lines]).unwrap();
    assert!(first_lines.as_array().is_some_and(|a| !a.is_empty()));
    let (_, _, no_team) = get_text(
        &s,
        Some("test-admin-token"),
        "/api/v1/spend-logs/export?window=1h&format=csv&team=@none",
    )
    .await;
    let no_team = parse_csv(&no_team);
    assert_eq!(no_team.len() - 1, 401);
    assert!(no_team[1..].iter().all(|r| r[team].is_empty()));

    // Bad input gets a message saying what to do.
    let (st, _, body) = get_text(
        &s,
        Some("test-admin-token"),
        "/api/v1/spend-logs/export?format=xml",
    )
    .await;
    assert_eq!(st, 400);
    assert!(body.contains("json, csv"), "{body}");

    // A team viewer exports its own team's logs only.
    let (_, v) = s
        .admin_post(
            "/api/v1/viewer-tokens",
            serde_json::json!({ "team": "search" }),
        )
        .await;
    let viewer = v["token"].as_str().unwrap();
    let (st, _, body) = get_text(
        &s,
        Some(viewer),
        "/api/v1/spend-logs/export?window=1h&format=json",
    )
    .await;
    assert_eq!(st, 200);
    let mine: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(mine.len(), 401);
    assert!(mine.iter().all(|l| l["team"] == "search"));

    // Without a token: refused.
    let (st, _, _) = get_text(&s, None, "/api/v1/spend-logs/export?format=csv").await;
    assert_eq!(st, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explorer_exports_match_the_explorer_from_the_api_and_the_page() {
    let s = TestServer::start().await;
    traffic(&s, 60).await;
    let (_, explorer) = s
        .admin_get("/api/v1/usage/explorer?window=1h&group_by=team")
        .await;
    let want: HashMap<String, i128> = explorer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["label"].as_str().unwrap().to_string(), picos(&r["cost"])))
        .collect();
    assert_eq!(want.len(), 3, "two teams and No team");

    let (st, _, body) = get_text(
        &s,
        Some("test-admin-token"),
        "/api/v1/usage/explorer/export?window=1h&group_by=team&format=csv",
    )
    .await;
    assert_eq!(st, 200);
    let rows = parse_csv(&body);
    let head = &rows[0];
    let (label, cost) = (
        head.iter().position(|h| h == "label").unwrap(),
        head.iter().position(|h| h == "cost").unwrap(),
    );
    let got: HashMap<String, i128> = rows[1..]
        .iter()
        .map(|r| {
            (
                r[label].clone(),
                spendgate_core::Money::parse_usd(&r[cost]).unwrap().picos(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(got.contains_key("No team"));

    // From the page, with a session: the links are on /usage and serve the same file.
    let cookie = s.login("test-admin-token").await;
    let page = s.page("/usage?window=1h&group_by=team", &cookie).await;
    let href = page
        .split("id=\"export-explorer-json\"")
        .next()
        .unwrap()
        .rsplit("href=\"")
        .next()
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(href.contains("export=explorer"), "{href}");
    let r = s
        .client
        .get(format!("{}{href}", s.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get("content-disposition")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("spendgate-explorer-by-team.json"));
    let v: Value = r.json().await.unwrap();
    let page_rows: HashMap<String, i128> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["label"].as_str().unwrap().to_string(), picos(&r["cost"])))
        .collect();
    assert_eq!(page_rows, want);
    assert!(page.contains("id=\"export-logs-csv\""));
}

/// A sample's value from a Prometheus text exposition, by its exact name and label set.
fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .map(|l| l[series.len() + 1..].trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_usage_cost_latency_queue_budgets_and_wallets() {
    // With the response cache on, the traffic's repeated questions become hits with an avoided cost.
    let s = TestServer::start_with(|c| c.cache.enabled = true).await;
    let (_, b) = s
        .admin_post(
            "/api/v1/budgets",
            serde_json::json!({ "name": "search monthly", "scope": "team", "subject": "search",
                                "period": "month", "amount": "100.00" }),
        )
        .await;
    assert!(b["id"].is_number(), "{b}");
    let (_, w) = s
        .admin_post(
            "/api/v1/wallets",
            serde_json::json!({ "name": "support prepaid", "scope": "team", "subject": "support",
                                "initial_balance": "5.00" }),
        )
        .await;
    assert!(w["id"].is_number(), "{w}");
    let keys = traffic(&s, 88).await;
    // The same question twice: the second is answered from the cache.
    for _ in 0..2 {
        let r = s
            .chat(
                &keys[0],
                chat_body("gpt-4o-mini", "what is a budget?", false),
            )
            .await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    s.wait_for_summary("window=1h", Duration::from_secs(20), |v| {
        v["requests"] == 90
    })
    .await;

    // Outside demo, the scrape needs the admin token.
    let (st, _, _) = get_text(&s, None, "/metrics").await;
    assert_eq!(st, 401);
    let (st, ctype, text) = get_text(&s, Some("test-admin-token"), "/metrics").await;
    assert_eq!(st, 200);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");

    // Cost by team/provider/model sums exactly to the summary; requests likewise.
    let (_, summary) = s.admin_get("/api/v1/usage/summary?window=1h").await;
    let mut cost = 0i128;
    let mut requests = 0u64;
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("spendgate_cost_usd_total{") {
            let v = rest.rsplit(' ').next().unwrap();
            cost += spendgate_core::Money::parse_usd(v).unwrap().picos();
        }
        if let Some(rest) = l.strip_prefix("spendgate_requests_total{") {
            requests += rest.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
        }
    }
    assert_eq!(cost, picos(&summary["cost"]));
    assert_eq!(requests, 90);
    let avoided: i128 = text
        .lines()
        .filter_map(|l| l.strip_prefix("spendgate_cache_avoided_usd_total{"))
        .map(|rest| {
            let v = rest.rsplit(' ').next().unwrap();
            spendgate_core::Money::parse_usd(v).unwrap().picos()
        })
        .sum();
    assert!(avoided > 0, "some requests were cache hits");
    assert_eq!(avoided, picos(&summary["avoided_cost"]));
    assert!(
        text.contains("team=\"No team\""),
        "unattributed traffic is its own series"
    );
    assert!(text.contains("# TYPE spendgate_request_duration_seconds histogram"));
    assert_eq!(
        sample(
            &text,
            "spendgate_request_duration_seconds_count{gateway=\"test-gw\"}"
        ),
        Some("90")
    );
    assert_eq!(
        sample(
            &text,
            "spendgate_request_duration_seconds_bucket{gateway=\"test-gw\",le=\"+Inf\"}"
        ),
        Some("90")
    );
    assert!(sample(&text, "spendgate_queue_pending_events{gateway=\"test-gw\"}").is_some());
    // The budget's utilisation is its enforced spend over its amount; the wallet's balance is 5 minus spend.
    let budget_labels = "gateway=\"test-gw\",budget=\"search monthly\",scope=\"team\",subject=\"search\",period=\"month\"";
    let spent = sample(
        &text,
        &format!("spendgate_budget_spent_usd{{{budget_labels}}}"),
    )
    .unwrap();
    let (_, search) = s
        .admin_get("/api/v1/usage/summary?window=1h&team=search")
        .await;
    assert_eq!(
        spendgate_core::Money::parse_usd(spent).unwrap().picos(),
        picos(&search["cost"])
    );
    assert!(sample(
        &text,
        &format!("spendgate_budget_utilisation_ratio{{{budget_labels}}}")
    )
    .is_some());
    let balance = sample(
        &text,
        "spendgate_wallet_balance_usd{gateway=\"test-gw\",wallet=\"support prepaid\",scope=\"team\",subject=\"support\"}",
    )
    .unwrap();
    let (_, support) = s
        .admin_get("/api/v1/usage/summary?window=1h&team=support")
        .await;
    assert_eq!(
        spendgate_core::Money::parse_usd(balance).unwrap().picos(),
        5_000_000_000_000 - picos(&support["cost"])
    );
}

/// Route paths written as literals in `.route("...")` calls of a source file.
fn route_literals(src: &str) -> Vec<String> {
    src.split(".route(")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start();
            let rest = rest.strip_prefix('"')?;
            // OpenAPI has no catch-all segment: axum's `{*id}` is documented as `{id}`.
            Some(rest[..rest.find('"')?].replace("{*", "{"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_covers_every_route_with_the_access_it_claims() {
    let s = TestServer::start().await;
    let (st, _, text) = get_text(&s, None, "/api/openapi.json").await;
    assert_eq!(st, 200);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();

    // Every route literal outside the pages (and the stand-alone mock upstream) is documented.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sources = vec![root.join("gateway/src/proxy.rs")];
    let mut dirs = vec![root.join("web/src")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.ends_with("pages") {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                sources.push(p);
            }
        }
    }
    let mut seen = 0;
    for file in sources {
        let src = std::fs::read_to_string(&file).unwrap();
        let src = src.split("pub fn mock_upstream_router").next().unwrap();
        for path in route_literals(src) {
            seen += 1;
            assert!(
                paths.contains_key(&path),
                "{path} (in {}) is not in /api/openapi.json: add it through openapi::ApiRouter or PROXY_OPS",
                file.display()
            );
        }
    }
    assert!(seen >= 3, "the proxy routes were found by the scan");
    assert!(paths.len() >= 25, "{} paths", paths.len());

    // Every documented operation exists and enforces the access it documents. Key 1 and viewer token 1 exist
    // for the routes that revoke or rotate them (`{id}` = 1); the viewer token the checks use is another one.
    let (key_id, _) = s.create_key("openapi", None).await;
    assert_eq!(key_id, 1);
    let (st, v) = s
        .admin_post(
            "/api/v1/viewer-tokens",
            serde_json::json!({ "team": "revoked" }),
        )
        .await;
    assert_eq!((st, v["id"].as_i64()), (201, Some(1)), "{v}");
    let (_, v) = s
        .admin_post(
            "/api/v1/viewer-tokens",
            serde_json::json!({ "team": "search" }),
        )
        .await;
    let viewer = v["token"].as_str().unwrap().to_string();
    // Wallet 1 exists, so that the wallet routes below (`{id}` = 1) answer for the route, not for a missing wallet
    // (404 of its own).
    let (status, v) = s
        .admin_post("/api/v1/wallets", serde_json::json!({ "scope": "org" }))
        .await;
    assert_eq!((status, v["id"].as_i64()), (201, Some(1)), "{v}");
    // Rate limit 1 exists too, for `DELETE /api/v1/rate-limits/{id}`.
    let (status, v) = s
        .admin_post(
            "/api/v1/rate-limits",
            serde_json::json!({ "scope": "team", "subject": "search", "rpm": 1000 }),
        )
        .await;
    assert_eq!((status, v["id"].as_i64()), (201, Some(1)), "{v}");
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let url = format!("{}{}", s.base, path.replace("{id}", "1"));
            let call = |token: Option<String>| {
                let mut req = match method.as_str() {
                    "get" => s.client.get(&url),
                    "post" => s.client.post(&url).json(&serde_json::json!({})),
                    "delete" => s.client.delete(&url),
                    other => panic!("unexpected method {other}"),
                };
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                async move { req.send().await.unwrap().status().as_u16() }
            };
            let schemes: Vec<&str> = op["security"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|o| o.as_object().unwrap().keys().map(String::as_str))
                .collect();
            if schemes.contains(&"virtualKey") {
                let st = call(None).await;
                assert_eq!(st, 401, "{method} {path} without a key");
                continue;
            }
            let admin = call(Some("test-admin-token".into())).await;
            assert!(
                admin != 404 && admin != 405 && admin < 500,
                "{method} {path} with the admin token answered {admin}"
            );
            if schemes.is_empty() {
                continue;
            }
            assert_eq!(call(None).await, 401, "{method} {path} without a token");
            let as_viewer = call(Some(viewer.clone())).await;
            if schemes.contains(&"viewerToken") {
                assert!(
                    as_viewer != 401 && as_viewer != 403,
                    "{method} {path} documented as readable by a viewer answered {as_viewer}"
                );
            } else {
                assert!(
                    as_viewer == 403 || as_viewer == 401,
                    "{method} {path} documented as admin-only answered {as_viewer} to a viewer"
                );
            }
        }
    }
}
