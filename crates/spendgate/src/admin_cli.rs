//! `spendgate budgets ...`, `spendgate wallets ...`, `spendgate rate-limits ...` and `spendgate keys
//! list|revoke|rotate|revoke-viewer`: thin clients of a running server's admin API, so that the server that
//! enforces budgets, wallets and rate limits is the one place that changes them.

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

/// The rate limits of `GET /api/v1/rate-limits` (or one under "rate_limits"), with what the server counted in the
/// last minute.
pub fn rate_limits_table(v: &Value) -> String {
    let limit = |r: &Value, name: &str, measure: &str| -> String {
        if r[name].is_null() {
            return "-".into();
        }
        format!(
            "{} ({} in the last minute)",
            s(&r[name]),
            s(&r["last_minute"][measure])
        )
    };
    let rows: Vec<Vec<String>> = v["rate_limits"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    vec![
                        s(&r["id"]),
                        format!("{} {}", s(&r["scope"]), s(&r["subject"])),
                        limit(r, "rpm", "requests"),
                        limit(r, "tpm", "tokens"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["ID", "SCOPE", "RPM", "TPM"], &rows)
}

pub fn keys_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|k| {
                    let state = if !k["revoked_at"].is_null() {
                        format!("revoked {}", s(&k["revoked_at"]))
                    } else if !k["expires_at"].is_null() {
                        format!("expires {}", s(&k["expires_at"]))
                    } else {
                        "active".into()
                    };
                    vec![
                        s(&k["id"]),
                        s(&k["user"]),
                        s(&k["team"]),
                        format!("...{}", s(&k["hint"])),
                        s(&k["created_at"]),
                        state,
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["ID", "USER", "TEAM", "KEY", "CREATED", "STATE"], &rows)
}

/// Percent-encodes a query-string value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from pairs, skipping empty values.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// The window parameters of `--since`: a preset the server knows (1h, 24h, 7d, 30d, mtd) is passed as is;
/// any other "<n>m", "<n>h" or "<n>d" becomes an explicit start, so `--since 3d` works too.
pub fn since_params(since: &str, now_ms: i64) -> anyhow::Result<(String, String)> {
    let since = since.trim();
    if ["1h", "24h", "7d", "30d", "mtd"].contains(&since) {
        return Ok(("window".into(), since.into()));
    }
    let (n, unit) = since.split_at(since.len().saturating_sub(1));
    let ms = match (n.parse::<i64>(), unit) {
        (Ok(n), "m") if n > 0 => n * 60_000,
        (Ok(n), "h") if n > 0 => n * 3_600_000,
        (Ok(n), "d") if n > 0 => n * 86_400_000,
        _ => bail!(
            "--since '{since}' is not a duration; use e.g. 90m, 12h, 7d, or mtd for the month to date"
        ),
    };
    Ok((
        "from".into(),
        spendgate_core::time::to_rfc3339(now_ms.saturating_sub(ms)),
    ))
}

/// The explanation of a change, for a terminal: the sentence, the effects, and the sub-groups that drive
/// them.
pub fn explain_text(v: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{}\n\nwindow   {} → {}\nbaseline {} → {}\n\n",
        s(&v["sentence"]),
        s(&v["window"]["from"]),
        s(&v["window"]["to"]),
        s(&v["baseline_window"]["from"]),
        s(&v["baseline_window"]["to"]),
    ));
    let rc = &v["relative_changes"];
    out.push_str(&table(
        &[
            "EFFECT", "AMOUNT", "FACTOR", "BASELINE", "CURRENT", "CHANGE",
        ],
        &[
            vec![
                "volume".into(),
                s(&v["effects"]["volume"]),
                "requests".into(),
                s(&v["baseline"]["requests"]),
                s(&v["current"]["requests"]),
                s(&rc["requests"]),
            ],
            vec![
                "intensity".into(),
                s(&v["effects"]["intensity"]),
                "tokens/request".into(),
                s(&v["baseline"]["avg_tokens_per_request"]),
                s(&v["current"]["avg_tokens_per_request"]),
                s(&rc["tokens_per_request"]),
            ],
            vec![
                "price/mix".into(),
                s(&v["effects"]["price_mix"]),
                "cost/token".into(),
                "".into(),
                "".into(),
                s(&rc["cost_per_token"]),
            ],
            vec![
                "total".into(),
                s(&v["change"]),
                "cost".into(),
                s(&v["baseline"]["cost"]),
                s(&v["current"]["cost"]),
                s(&rc["cost"]),
            ],
        ],
    ));
    out.push('\n');
    let parts: Vec<Vec<String>> = v["parts"]
        .as_array()
        .map(|a| {
            a.iter()
                .take(15)
                .map(|p| {
                    vec![
                        s(&p["label"]),
                        s(&p["baseline"]["cost"]),
                        s(&p["current"]["cost"]),
                        s(&p["change"]),
                        s(&p["volume"]),
                        s(&p["intensity"]),
                        s(&p["price_mix"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let by = format!("BY {}", s(&v["breakdown"]).to_uppercase());
    out.push_str(&table(
        &[
            &by,
            "BASELINE",
            "CURRENT",
            "CHANGE",
            "VOLUME",
            "INTENSITY",
            "PRICE/MIX",
        ],
        &parts,
    ));
    out
}

/// One CSV field, quoted when it holds a separator, a quote or a line break.
fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The explorer for a terminal: `table` for people, `csv` for scripts, `json` as the API answered.
pub fn report(v: &Value, format: &str) -> anyhow::Result<String> {
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    match format {
        "json" => Ok(format!("{}\n", serde_json::to_string_pretty(v)?)),
        "csv" => {
            let cols = [
                "key",
                "label",
                "cost",
                "requests",
                "errors",
                "input_tokens",
                "output_tokens",
                "cached_input_tokens",
                "tokens",
                "avg_cost_per_request",
                "avg_tokens_per_request",
                "share",
            ];
            let mut out = cols.join(",");
            out.push('\n');
            for r in &rows {
                let cells: Vec<String> = cols
                    .iter()
                    .map(|c| match &r[*c] {
                        Value::Null => String::new(),
                        other => csv(&s(other)),
                    })
                    .collect();
                out.push_str(&cells.join(","));
                out.push('\n');
            }
            Ok(out)
        }
        "table" => {
            let mut body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        s(&r["label"]),
                        s(&r["cost"]),
                        s(&r["requests"]),
                        s(&r["tokens"]),
                        s(&r["avg_cost_per_request"]),
                        s(&r["avg_tokens_per_request"]),
                        format!("{}%", s(&r["share"])),
                    ]
                })
                .collect();
            let t = &v["total"];
            body.push(vec![
                "TOTAL".into(),
                s(&t["cost"]),
                s(&t["requests"]),
                s(&t["tokens"]),
                s(&t["avg_cost_per_request"]),
                s(&t["avg_tokens_per_request"]),
                "100%".into(),
            ]);
            let head = s(&v["group_by"]).to_uppercase();
            Ok(format!(
                "{} → {}\n{}",
                s(&v["window"]["from"]),
                s(&v["window"]["to"]),
                table(
                    &[
                        &head,
                        "COST",
                        "REQUESTS",
                        "TOKENS",
                        "COST/REQ",
                        "TOKENS/REQ",
                        "SHARE"
                    ],
                    &body
                )
            ))
        }
        other => bail!("--format '{other}' is not one of table, csv, json"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_presets_and_durations() {
        assert_eq!(since_params("7d", 0).unwrap().0, "window");
        let (k, v) = since_params("3d", 4 * 86_400_000).unwrap();
        assert_eq!(k, "from");
        assert_eq!(v, "1970-01-02T00:00:00Z");
        assert!(since_params("yesterday", 0).is_err());
        assert_eq!(query(&[("a", "x y"), ("b", "")]), "?a=x%20y");
    }

    #[test]
    fn report_formats() {
        let v = serde_json::json!({
            "group_by": "team", "window": {"from": "a", "to": "b"},
            "total": {"cost": "3.00", "requests": 3, "tokens": 30},
            "rows": [{"key": "s,x", "label": "s,x", "cost": "3.00", "requests": 3, "tokens": 30, "share": "100.00"}],
        });
        let csv = report(&v, "csv").unwrap();
        assert!(csv
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("\"s,x\",\"s,x\",3.00,3,"));
        let t = report(&v, "table").unwrap();
        assert!(t.contains("TEAM") && t.contains("TOTAL"));
        assert!(report(&v, "xml").is_err());
    }
}
