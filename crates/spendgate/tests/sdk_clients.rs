//! Real clients: the official `openai` and `anthropic` Python SDKs (pinned in `requirements-sdk.txt`) drive the
//! real server with the mock provider through `tests/sdk/clients.py`: chat completions streamed and not,
//! embeddings, the Responses API streamed and not, Anthropic Messages streamed and not, and typed errors. Each
//! resulting spend log must carry the usage the SDK itself saw and cost exactly tokens x catalog prices.
//!
//! The SDKs live in `.venv-sdk` at the repository root, made by `.ci/run` (or by hand:
//! `python3 -m venv .venv-sdk && .venv-sdk/bin/pip install -r requirements-sdk.txt`). Without it the test says it
//! was skipped and returns.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::path::PathBuf;

use common::{catalog_cost, picos, TestServer};
use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's python, when the venv exists (`SPENDGATE_SDK_PYTHON` may name another).
fn sdk_python() -> Option<PathBuf> {
    let python = std::env::var_os("SPENDGATE_SDK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-sdk/bin/python"));
    python.exists().then_some(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdks_work_and_their_requests_cost_exactly_their_tokens() {
    let Some(python) = sdk_python() else {
        println!(
            "skipped: the Python SDK venv is missing; run .ci/run, or python3 -m venv .venv-sdk && \
             .venv-sdk/bin/pip install -r requirements-sdk.txt"
        );
        return;
    };
    let s = TestServer::start().await;
    let (_, key) = s.create_key("sdk-user", Some("sdk")).await;
    let script = repo_root().join("tests/sdk/clients.py");
    let base = s.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .env("SG_BASE", base)
            .env("SG_KEY", key)
            // The gateway is on loopback; a proxy configured for the machine must not be in the way.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the SDK script failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let cases: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = cases.iter().map(|c| c["case"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "chat",
            "chat-stream",
            "chat-stream-unasked",
            "embeddings",
            "responses",
            "responses-stream",
            "messages",
            "messages-stream",
            "errors"
        ]
    );
    for case in cases.iter().filter(|c| c.get("workflow").is_some()) {
        let workflow = case["workflow"].as_str().unwrap();
        let logs = s
            .all_spend_logs(&format!("window=1h&workflow={workflow}"))
            .await;
        assert_eq!(logs.len(), 1, "{workflow}: one request, one spend log");
        let log = &logs[0];
        assert_eq!(log["endpoint"], case["endpoint"], "{workflow}");
        assert_eq!(log["stream"], case["stream"], "{workflow}");
        assert_eq!(log["status"], "ok", "{workflow}: {log}");
        assert_eq!(log["usage_source"], "reported", "{workflow}");
        for k in [
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
        ] {
            assert_eq!(
                log[k], case["usage"][k],
                "{workflow}: {k} as the SDK saw it"
            );
        }
        assert!(picos(&log["cost"]) > 0, "{workflow}");
        assert_eq!(
            picos(&log["cost"]),
            catalog_cost(log),
            "{workflow}: cost = tokens x catalog prices, to the picodollar"
        );
    }
    // The refused requests (unknown models, a bad key) reached no provider and left no spend log.
    assert_eq!(s.all_spend_logs("window=1h").await.len(), 8);
    s.running.stop().await.unwrap();
}
