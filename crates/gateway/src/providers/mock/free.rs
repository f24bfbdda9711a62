//! The mock's answers to the providers' free helper endpoints.
//!
//! - Anthropic's token counting (docs.anthropic.com/en/api/messages-count-tokens): `{"input_tokens": N}`, the
//!   prompt the same request would be billed for on `/v1/messages` (its body's bytes / 4, as everywhere here).
//! - OpenAI's moderation (platform.openai.com/docs/api-reference/moderations/object): one result per input, none
//!   flagged.

use spendgate_core::usage::estimate_tokens;

use crate::provider::Endpoint;

/// The category names OpenAI's moderation results carry (the API reference's `categories` object).
const CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// The answer to a free endpoint's request, or `None` for the metered endpoints.
pub fn answer(endpoint: Endpoint, body: &[u8], id: &str) -> Option<serde_json::Value> {
    match endpoint {
        Endpoint::CountTokens => {
            Some(serde_json::json!({ "input_tokens": estimate_tokens(body.len()) }))
        }
        Endpoint::Moderations => {
            let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let inputs = match &request["input"] {
                serde_json::Value::Array(a) => a.len().max(1),
                _ => 1,
            };
            let categories: serde_json::Map<_, _> = CATEGORIES
                .iter()
                .map(|c| (c.to_string(), false.into()))
                .collect();
            let scores: serde_json::Map<_, _> = CATEGORIES
                .iter()
                .map(|c| (c.to_string(), 0.0001.into()))
                .collect();
            let result = serde_json::json!({
                "flagged": false, "categories": categories, "category_scores": scores,
            });
            Some(serde_json::json!({
                "id": format!("modr-mock-{id}"),
                "model": request["model"].as_str().unwrap_or("omni-moderation-latest"),
                "results": vec![result; inputs],
            }))
        }
        _ => None,
    }
}
