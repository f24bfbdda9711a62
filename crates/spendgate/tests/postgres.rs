//! The spendgate binary on PostgreSQL: started as a child process with `serve --store postgres://...` on a
//! database of its own, it passes the spine's reconciliation (the same body as the SQLite test in
//! `gateway.rs`), and the store it wrote holds exactly what the API answered. The server is
//! `SPENDGATE_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/postgres`); when it cannot be reached the
//! test says so on stderr and returns.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::process::{Child, Command, Stdio};

use common::{free_port, picos, wait_healthy, Api};
use spendgate_store::postgres::PostgresOptions;
use spendgate_store::{PostgresStore, Store};

/// A child process that is killed when the test ends, however it ends.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_mixed_requests_reconcile_to_the_last_unit_on_postgres() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(db) = common::scratch_pg().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("spendgate.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ngateway_name = \"test-gw\"\nadmin_token = \"test-admin-token\"\n\
             [[providers]]\nname = \"openai\"\nkind = \"mock\"\ncatalog = true\n\
             [[providers]]\nname = \"anthropic\"\nkind = \"mock\"\ncatalog = true\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_spendgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--store", db.url()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let gateway = Gateway(child);
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
    };
    wait_healthy(&api.client, &api.base).await;
    common::reconcile::mixed_requests_reconcile_to_the_last_unit(&api, 2_000).await;

    // The figures came from PostgreSQL: the database itself holds every request, at the same total.
    let (_, summary) = api.admin_get("/api/v1/usage/summary?window=1h").await;
    let store = PostgresStore::connect(PostgresOptions::new(db.url()))
        .await
        .unwrap();
    let now = spendgate_core::time::now_ms();
    let totals = store
        .summary(&spendgate_core::Filters {
            from_ms: now - 2 * 3_600_000,
            to_ms: now + 60_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(totals.requests, 2_000);
    assert_eq!(totals.cost.picos(), picos(&summary["cost"]));
    drop(gateway);
}
