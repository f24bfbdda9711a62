//! The spine's reconciliation, one body for every store: many concurrent requests of every kind, then spend logs,
//! summary and explorer checked against each other and against the catalog, to the picodollar.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use spendgate_core::pricing::{Catalog, UnknownModelPolicy};
use spendgate_core::Usage;

use super::{picos, Api};

/// The exact cost of a spend log, recomputed from its tokens and the shipped catalog.
pub fn expected_cost(catalog: &Catalog, log: &Value) -> i128 {
    let price = catalog.get(log["model"].as_str().unwrap()).unwrap();
    let usage = Usage {
        input_tokens: log["input_tokens"].as_u64().unwrap(),
        output_tokens: log["output_tokens"].as_u64().unwrap(),
        cached_input_tokens: log["cached_input_tokens"].as_u64().unwrap(),
        cache_write_tokens: log["cache_write_tokens"].as_u64().unwrap(),
        ..Usage::default()
    };
    price.price(&usage).cost.picos()
}

pub fn catalog() -> Catalog {
    Catalog::with_overrides(Vec::new(), UnknownModelPolicy::Refuse).unwrap()
}

/// `n` concurrent requests of every kind (plain, streamed, embeddings; four keys, one without a team; with and
/// without a workflow) all succeed, and spend logs, summary and the explorer by every grouping reconcile to the
/// picodollar with each other and with the catalog.
pub async fn mixed_requests_reconcile_to_the_last_unit(s: &Api, n: usize) {
    let mut keys = Vec::new();
    for (user, team) in [
        ("a", Some("support")),
        ("b", Some("search")),
        ("c", None),
        ("d", Some("growth")),
    ] {
        keys.push(s.create_key(user, team).await.1);
    }
    let models = [
        "gpt-4o-mini",
        "gpt-4.1",
        "claude-haiku-4-5",
        "claude-sonnet-4-5",
        "text-embedding-3-small",
    ];
    let client = s.client.clone();
    let base = s.base.clone();
    let results = futures_util::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let base = base.clone();
            let key = keys[i % keys.len()].clone();
            let model = models[i % models.len()];
            async move {
                let embeddings = model.starts_with("text-embedding");
                let stream = !embeddings && i % 3 == 0;
                let (path, body) = if embeddings {
                    (
                        "/v1/embeddings",
                        serde_json::json!({ "model": model, "input": format!("doc {i}") }),
                    )
                } else {
                    super::chat_request(model, &"word ".repeat(i % 300), stream)
                };
                let mut req = client
                    .post(format!("{base}{path}"))
                    .bearer_auth(&key)
                    .json(&body);
                if i % 4 == 0 {
                    req = req.header("x-spendgate-workflow", "nightly");
                }
                let res = req.send().await.unwrap();
                let ok = res.status() == 200;
                let _ = res.bytes().await.unwrap();
                ok
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<bool>>()
        .await;
    assert!(results.iter().all(|ok| *ok), "every request succeeded");
    s.wait_for_summary("window=1h", Duration::from_secs(30), |v| {
        v["requests"] == n as u64
    })
    .await;

    let catalog = catalog();
    let logs = s.all_spend_logs("window=1h").await;
    assert_eq!(logs.len(), n, "one spend log per request");
    let ids: std::collections::HashSet<_> = logs
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), n, "no duplicates");
    let mut sum = 0i128;
    let mut by_team: HashMap<Option<String>, i128> = HashMap::new();
    for l in &logs {
        let c = picos(&l["cost"]);
        assert_eq!(c, expected_cost(&catalog, l));
        sum += c;
        *by_team
            .entry(l["team"].as_str().map(str::to_string))
            .or_default() += c;
    }
    let (_, summary) = s.admin_get("/api/v1/usage/summary?window=1h").await;
    assert_eq!(picos(&summary["cost"]), sum);
    let input: u64 = logs
        .iter()
        .map(|l| l["input_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(summary["input_tokens"].as_u64().unwrap(), input);
    for g in [
        "team",
        "user",
        "provider",
        "model",
        "gateway",
        "workflow",
        "cache_outcome",
        "key",
    ] {
        let (status, e) = s
            .admin_get(&format!("/api/v1/usage/explorer?group_by={g}&window=1h"))
            .await;
        assert_eq!(status, 200, "{e}");
        let rows = e["rows"].as_array().unwrap();
        let total: i128 = rows.iter().map(|r| picos(&r["cost"])).sum();
        let requests: u64 = rows.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
        assert_eq!(
            (total, requests),
            (sum, n as u64),
            "explorer by {g} reconciles"
        );
    }
    let (_, e) = s
        .admin_get("/api/v1/usage/explorer?group_by=team&window=1h")
        .await;
    for r in e["rows"].as_array().unwrap() {
        let team = r["key"].as_str().map(str::to_string);
        if team.is_none() {
            assert_eq!(r["label"], "No team");
        }
        assert_eq!(picos(&r["cost"]), by_team[&team], "team {team:?}");
    }
}
