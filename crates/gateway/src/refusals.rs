//! Requests refused at the door, recorded: every place that refuses a request before it reaches a provider
//! calls [`Gateway::refuse`], which counts it in the gateway's stats and hands a [`RefusalEvent`] to the spend
//! writer (through the journal, like a spend event, then batched into the store). Nothing here touches a
//! database: a refusal costs a few allocations and, when the journal is written by the requests themselves, one
//! `write`.

use std::sync::Arc;

use axum::http::StatusCode;
use spendgate_core::{RefusalEvent, RefusalReason};
use spendgate_store::KeyRecord;
use uuid::Uuid;

use crate::error::ApiError;
use crate::provider::Endpoint;
use crate::Gateway;

/// What the gateway knew of a request when it refused it: filled in as the request passes each step.
#[derive(Debug, Clone, Default)]
pub struct Door {
    /// The key, once authenticated.
    pub key: Option<Arc<KeyRecord>>,
    /// The model the body named, once read.
    pub model: Option<String>,
}

impl Gateway {
    /// Counts a refused request and records why: the reason, who (when the key was recognised), the model, the
    /// budget or wallet that refused it. Returns once the record is journaled, as a spend event's response waits
    /// for its own; a writer that has stopped (the process is stopping) only loses the record, never the answer.
    pub async fn refuse(&self, error: &ApiError, endpoint: &str, door: &Door) {
        self.stats.reject();
        let event = self.refusal_of(error, endpoint, door);
        if !self.writer.record_refusal(event).await {
            tracing::debug!("A refusal was not recorded: the writer has stopped.");
        }
    }

    fn refusal_of(&self, error: &ApiError, endpoint: &str, door: &Door) -> RefusalEvent {
        let (reason, detail) = match &error.cause {
            Some(c) => (c.reason, c.detail.clone()),
            None => (reason_of(error.status), error.code.replace('_', " ")),
        };
        let cause = error.cause.as_deref();
        let key = door
            .key
            .as_ref()
            .or_else(|| cause.and_then(|c| c.key.as_ref()));
        RefusalEvent {
            id: Uuid::now_v7(),
            at_ms: spendgate_core::time::now_ms(),
            reason,
            http_status: error.status.as_u16(),
            key_id: key.map(|k| k.id),
            user: key.map(|k| k.user.clone()),
            team: key.and_then(|k| k.team.clone()),
            model: door.model.clone(),
            endpoint: endpoint.to_string(),
            gateway: self.name.to_string(),
            budget_id: cause.and_then(|c| c.budget_id),
            wallet_id: cause.and_then(|c| c.wallet_id),
            detail,
        }
    }
}

/// The reason of a refusal whose raiser gave none, from its status.
fn reason_of(status: StatusCode) -> RefusalReason {
    match status.as_u16() {
        401 => RefusalReason::Auth,
        402 => RefusalReason::Wallet,
        404 => RefusalReason::UnknownModel,
        413 => RefusalReason::BodyTooLarge,
        429 => RefusalReason::RateLimit,
        431 => RefusalReason::HeaderTooLarge,
        503 => RefusalReason::Unavailable,
        _ => RefusalReason::InvalidRequest,
    }
}

/// The endpoint a refused request called, named like a spend log's (`chat.completions`) when the path is one
/// the gateway meters or passes on, else `models` or the path itself.
pub fn endpoint_of_path(path: &str) -> String {
    if crate::gemini_route::is_google_path(path) {
        return Endpoint::GenerateContent.as_str().to_string();
    }
    let route = path.strip_prefix("/v1").unwrap_or(path);
    match Endpoint::ALL.into_iter().find(|e| e.path() == route) {
        Some(e) => e.as_str().to_string(),
        None if route.starts_with("/models") => "models".to_string(),
        None => path.chars().take(64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_named_like_spend_logs() {
        assert_eq!(endpoint_of_path("/v1/chat/completions"), "chat.completions");
        assert_eq!(endpoint_of_path("/v1/messages"), "messages");
        assert_eq!(endpoint_of_path("/v1/models/gpt-4o"), "models");
        assert_eq!(
            endpoint_of_path("/v1beta/models/gemini-2.5-flash:generateContent"),
            "generate_content"
        );
        assert_eq!(
            reason_of(StatusCode::NOT_FOUND),
            RefusalReason::UnknownModel
        );
        assert_eq!(
            reason_of(StatusCode::BAD_REQUEST),
            RefusalReason::InvalidRequest
        );
    }
}
