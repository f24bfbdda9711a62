//! The alert dispatcher: records each alert once (the store refuses a second copy of the same crossing) and
//! delivers new ones to the configured webhooks, with retries and a delivery log.
//!
//! The webhook body is Slack-compatible (`{"text": ...}`), with the alert's fields alongside under
//! `"spendgate"` for other receivers.

use std::sync::Arc;
use std::time::Duration;

use spendgate_core::time::now_ms;
use spendgate_store::controls::{AlertRecord, Delivery, NewAlert};
use spendgate_store::Store;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub urls: Vec<String>,
    /// Attempts per alert and URL, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled after each failure.
    pub first_backoff: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            urls: Vec::new(),
            attempts: 3,
            first_backoff: Duration::from_millis(500),
        }
    }
}

/// Runs until the alert channel closes.
pub async fn run_dispatcher(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<NewAlert>,
    webhooks: WebhookConfig,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .ok();
    while let Some(alert) = rx.recv().await {
        let rec = match store.record_alert(alert).await {
            Ok(Some(rec)) => rec,
            Ok(None) => continue, // this crossing was already alerted this period
            Err(e) => {
                tracing::warn!(error = %e, "Recording an alert failed.");
                continue;
            }
        };
        tracing::warn!(kind = %rec.alert.kind, subject = %rec.alert.subject, message = %rec.alert.message, "Alert.");
        if let Some(client) = &client {
            for url in &webhooks.urls {
                let (store, client, url, rec, cfg) = (
                    Arc::clone(&store),
                    client.clone(),
                    url.clone(),
                    rec.clone(),
                    webhooks.clone(),
                );
                // Deliveries run on their own so a slow receiver never delays the next alert.
                tokio::spawn(async move { deliver(&*store, &client, &url, &rec, &cfg).await });
            }
        }
    }
}

async fn deliver(
    store: &dyn Store,
    client: &reqwest::Client,
    url: &str,
    rec: &AlertRecord,
    cfg: &WebhookConfig,
) {
    let body = serde_json::json!({
        "text": format!(":rotating_light: spendgate: {}", rec.alert.message),
        "spendgate": {
            "id": rec.id,
            "kind": rec.alert.kind,
            "subject": rec.alert.subject,
            "team": rec.alert.team,
            "threshold": rec.alert.threshold,
            "at": spendgate_core::time::to_rfc3339(rec.at_ms),
        },
    })
    .to_string();
    let mut backoff = cfg.first_backoff;
    for attempt in 1..=cfg.attempts.max(1) {
        let result = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let (ok, detail) = match result {
            Ok(r) if r.status().is_success() => (true, format!("HTTP {}", r.status().as_u16())),
            Ok(r) => (false, format!("HTTP {}", r.status().as_u16())),
            Err(e) => (
                false,
                if e.is_timeout() {
                    "timed out".to_string()
                } else {
                    "could not connect".to_string()
                },
            ),
        };
        let d = Delivery {
            id: 0,
            alert_id: rec.id,
            target: url.to_string(),
            attempt,
            ok,
            detail,
            at_ms: now_ms(),
        };
        if let Err(e) = store.record_delivery(d).await {
            tracing::warn!(error = %e, "Recording a webhook delivery failed.");
        }
        if ok {
            return;
        }
        if attempt < cfg.attempts {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    tracing::warn!(alert = rec.id, target = %url, "A webhook delivery failed after every attempt.");
}
