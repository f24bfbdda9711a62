//! `spendgate budgets ...` and `spendgate wallets ...`: thin clients of a running server's admin API, so that
//! the server that enforces budgets and wallets is the one place that changes them.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// Where the running server is and how to authenticate to it.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The server's address.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SPENDGATE_URL")]
    pub url: String,
    /// The admin token; without it, it is read from <data-dir>/admin-token.
    #[arg(long, env = "SPENDGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, default_value = "spendgate-data", env = "SPENDGATE_DATA_DIR")]
    pub data_dir: PathBuf,
}

impl Target {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let path = self.data_dir.join("admin-token");
        let t = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no --token given and {} could not be read; pass --token or --data-dir",
                path.display()
            )
        })?;
        Ok(t.trim().to_string())
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let client = reqwest::Client::new();
        let mut req = client
            .request(
                method,
                format!("{}{}", self.url.trim_end_matches('/'), path),
            )
            .bearer_auth(self.token()?)
            .header(
                "x-spendgate-actor",
                format!(
                    "cli:{}",
                    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
                ),
            );
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let res = req.send().await.with_context(|| {
            format!("could not reach spendgate at {}; is it running?", self.url)
        })?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let msg = v["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            bail!("spendgate answered {}: {msg}", status.as_u16());
        }
        Ok(v)
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints rows as an aligned table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

pub fn budgets_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["budgets"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| {
                    vec![
                        s(&b["id"]),
                        format!(
                            "{} {}",
                            s(&b["scope"]),
                            if b["subject"].is_null() {
                                String::new()
                            } else {
                                s(&b["subject"])
                            }
                        ),
                        s(&b["period"]),
                        s(&b["amount"]),
                        s(&b["spent"]),
                        format!("{}%", s(&b["percent_used"])),
                        s(&b["state"]),
                        if b["hard_limit"] == json!(true) {
                            "hard".into()
                        } else {
                            "soft".into()
                        },
                        s(&b["resets_at"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &[
            "ID",
            "SCOPE",
            "PERIOD",
            "AMOUNT",
            "SPENT",
            "USED",
            "STATE",
            "LIMIT",
            "RESETS AT",
        ],
        &rows,
    )
}

pub fn wallets_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["wallets"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| {
                    vec![
                        s(&w["id"]),
                        s(&w["name"]),
                        format!(
                            "{} {}",
                            s(&w["scope"]),
                            if w["subject"].is_null() {
                                String::new()
                            } else {
                                s(&w["subject"])
                            }
                        ),
                        s(&w["balance"]),
                        s(&w["reserved"]),
                        s(&w["total_spent"]),
                        s(&w["status"]),
                        s(&w["burn_per_day"]),
                        s(&w["projected_depletion"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &[
            "ID", "NAME", "SCOPE", "BALANCE", "RESERVED", "SPENT", "STATUS", "BURN/DAY", "DEPLETES",
        ],
        &rows,
    )
}
