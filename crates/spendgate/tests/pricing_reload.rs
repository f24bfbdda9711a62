//! Prices reload without a restart: through `POST /api/v1/pricing/reload` and on SIGHUP, from the configuration
//! file the gateway was started with. A new price applies from the moment it is loaded; past spend logs keep the
//! bill they were written with; every reload is an admin action with before and after.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::time::{Duration, Instant};

use common::{chat_body, picos, request_id, TestServer};
use serde_json::Value;

/// A configuration file serving the mock as `openai`, with its own price for gpt-4o-mini.
fn write_config(path: &std::path::Path, input: &str, output: &str) {
    std::fs::write(
        path,
        format!(
            "[[providers]]\nname = \"openai\"\nkind = \"mock\"\ncatalog = true\n\
             [[providers.prices]]\nmodel = \"gpt-4o-mini\"\ninput_per_mtok = \"{input}\"\noutput_per_mtok = \"{output}\"\n\
             source = \"our negotiated rate\"\n"
        ),
    )
    .unwrap();
}

/// What a spend log costs at (input, output) USD per million tokens.
fn cost_at(log: &Value, input: i128, output: i128) -> i128 {
    let t = |k: &str| i128::from(log[k].as_u64().unwrap());
    t("input_tokens") * input * 1_000_000 + t("output_tokens") * output * 1_000_000
}

async fn gpt_mini_log(s: &TestServer, key: &str) -> Value {
    let res = s
        .chat(key, chat_body("gpt-4o-mini", "price me", false))
        .await;
    assert_eq!(res.status(), 200);
    s.wait_for_log(&request_id(&res)).await
}

async fn start(file: &std::path::Path) -> TestServer {
    let file = file.to_path_buf();
    TestServer::start_with(move |c| {
        let loaded = spendgate::config::Config::load(Some(&file)).unwrap();
        c.providers = loaded.providers;
        c.source_path = loaded.source_path;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_prices_the_next_request_and_leaves_past_bills_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spendgate.toml");
    write_config(&file, "1.00", "2.00");
    let s = start(&file).await;
    let (_, key) = s.create_key("u", Some("t")).await;
    let first = gpt_mini_log(&s, &key).await;
    assert_eq!(picos(&first["cost"]), cost_at(&first, 1, 2));

    write_config(&file, "3.00", "4.00");
    let (st, v) = s
        .admin_post("/api/v1/pricing/reload", serde_json::json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["changed"], 1, "{v}");
    assert_eq!(v["before"]["gpt-4o-mini@openai"]["input_per_mtok"], "1.00");
    assert_eq!(v["after"]["gpt-4o-mini@openai"]["input_per_mtok"], "3.00");

    let second = gpt_mini_log(&s, &key).await;
    assert_eq!(picos(&second["cost"]), cost_at(&second, 3, 4));
    let (_, again) = s
        .admin_get(&format!(
            "/api/v1/spend-logs/{}",
            first["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(again["cost"], first["cost"], "a past bill is kept");
    let (_, pricing) = s.admin_get("/api/v1/pricing").await;
    assert!(pricing["models"].as_array().unwrap().len() > 100);

    // The reload is an admin action with before and after.
    let (_, activity) = s.admin_get("/api/v1/activity?source=admin_change").await;
    let reload = activity["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["action"] == "pricing.reload")
        .unwrap_or_else(|| panic!("no reload in {activity}"));
    assert_eq!(
        reload["before"]["gpt-4o-mini@openai"]["output_per_mtok"],
        "2.00"
    );

    // A broken file is refused and the prices in force stay.
    std::fs::write(&file, "[[providers]]\nname = ").unwrap();
    let (st, v) = s
        .admin_post("/api/v1/pricing/reload", serde_json::json!({}))
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "reload_failed");
    let third = gpt_mini_log(&s, &key).await;
    assert_eq!(picos(&third["cost"]), cost_at(&third, 3, 4));

    // SIGHUP reloads too, as daemons do.
    write_config(&file, "5.00", "6.00");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t0 = Instant::now();
    loop {
        let log = gpt_mini_log(&s, &key).await;
        if picos(&log["cost"]) == cost_at(&log, 5, 6) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configuration_file_there_is_nothing_to_reload() {
    let s = TestServer::start().await;
    let (st, v) = s
        .admin_post("/api/v1/pricing/reload", serde_json::json!({}))
        .await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["error"]["code"], "no_config_file");
}
