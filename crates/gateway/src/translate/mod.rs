//! Translation between OpenAI's Chat Completions API and Anthropic's Messages API, both ways, so that a client
//! of either API can call a model whose provider speaks only the other one (a Claude model through
//! `/v1/chat/completions`, a GPT model through `/v1/messages`); and from both into other APIs (Google's Gemini,
//! Bedrock's Converse), through Anthropic's Messages as the **pivot**: a Messages client's request goes to the
//! other API directly, a chat client's is made a Messages request first; the answer comes back as a Message, and
//! for a chat client from there into a chat completion (streams likewise: the other API's events into
//! Anthropic's, those into chunks).
//!
//! - [`to_anthropic`]: a chat completion request into a Messages request, and a chat completion answer into a
//!   Message (for an Anthropic client whose model is served by an OpenAI-compatible provider);
//! - [`to_openai`]: the other way;
//! - [`gemini`]: Messages <-> Gemini's `generateContent` (and the few chat parameters Gemini has and the pivot
//!   lacks, carried from the chat request directly);
//! - [`converse`] and [`converse_stream`]: Messages <-> Bedrock's Converse, requests, answers and event streams;
//! - [`stream`]: streamed answers, event by event (nothing is buffered beyond one unfinished event;
//!   `gemini_stream.rs` Gemini's chunks).
//!
//! What cannot be carried over faithfully (a parameter the other API lacks, such as `n` > 1, `logprobs` or
//! `top_k`) is refused with a 400 naming the parameter rather than dropped: a request must not quietly behave
//! otherwise than its author wrote it. Parameters are translated from an allow-list, so a parameter this module
//! does not know is refused too.
//!
//! Metering never depends on this module: the meter reads the upstream's own bytes, in the upstream's wire
//! format, before they are translated for the client.

pub mod converse;
pub mod converse_stream;
pub mod gemini;
mod gemini_stream;
pub mod stream;
pub mod to_anthropic;
pub mod to_openai;

use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::Value;

use crate::error::ApiError;
use crate::provider::Endpoint;

/// `max_tokens` sent to Anthropic when the client set no output limit and the model's catalog entry has no
/// `max_output_tokens`: Anthropic requires one, and 4,096 is the smallest output cap of its current models, so
/// it is valid for every one of them.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The output limit a translation sends when the client set none: the model's `max_output_tokens`, else
/// [`DEFAULT_MAX_TOKENS`].
pub fn max_tokens_for(price: &spendgate_core::ModelPrice) -> u64 {
    price
        .max_output_tokens
        .filter(|m| *m > 0)
        .unwrap_or(DEFAULT_MAX_TOKENS)
}

/// A request answered in another API than the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The API the client called, and reads the answer in.
    pub client: Endpoint,
    /// The API the provider is reached through.
    pub upstream: Endpoint,
    /// The client of a chat completion stream asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// The APIs a client's request can be translated into, when its model's provider does not speak the client's,
/// in the order they are preferred.
pub fn counterparts(endpoint: Endpoint) -> &'static [Endpoint] {
    match endpoint {
        Endpoint::ChatCompletions => &[
            Endpoint::Messages,
            Endpoint::GenerateContent,
            Endpoint::Converse,
        ],
        Endpoint::Messages => &[
            Endpoint::ChatCompletions,
            Endpoint::GenerateContent,
            Endpoint::Converse,
        ],
        _ => &[],
    }
}

/// The API a client of `client` reaches a provider through: its own when the provider `speaks` it, else the
/// first counterpart the provider speaks; `None` when there is none.
pub fn upstream_for(client: Endpoint, speaks: impl Fn(Endpoint) -> bool) -> Option<Endpoint> {
    if speaks(client) {
        return Some(client);
    }
    counterparts(client).iter().copied().find(|&up| speaks(up))
}

/// Why a request could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// A parameter (or value) the target API has no faithful equivalent for.
    #[error("The parameter '{param}' cannot be translated to {target}: {why}. Remove it, or call a model whose provider speaks this API.")]
    Untranslatable {
        param: String,
        target: &'static str,
        why: String,
    },
    /// A request that is not valid in the client's own API.
    #[error("The parameter '{param}' is not valid: {why}.")]
    Invalid { param: String, why: String },
}

impl TranslateError {
    pub(crate) fn untranslatable(
        param: impl Into<String>,
        target: &'static str,
        why: impl Into<String>,
    ) -> TranslateError {
        TranslateError::Untranslatable {
            param: param.into(),
            target,
            why: why.into(),
        }
    }

    pub(crate) fn invalid(param: impl Into<String>, why: impl Into<String>) -> TranslateError {
        TranslateError::Invalid {
            param: param.into(),
            why: why.into(),
        }
    }
}

impl From<TranslateError> for ApiError {
    fn from(e: TranslateError) -> ApiError {
        let code = match e {
            TranslateError::Untranslatable { .. } => "untranslatable_parameter",
            TranslateError::Invalid { .. } => "invalid_parameter",
        };
        ApiError::invalid_request(code, e.to_string())
    }
}

impl Translation {
    /// The client's request body in the upstream's API. `max_tokens` is what Anthropic is sent when the client
    /// set no output limit.
    pub fn request(&self, body: &[u8], max_tokens: u64) -> Result<Bytes, ApiError> {
        let v: Value = serde_json::from_slice(body).map_err(|_| {
            ApiError::invalid_request("invalid_json", "The request body must be a JSON object.")
        })?;
        let out = match (self.client, self.upstream) {
            (_, Endpoint::Messages) => to_anthropic::request(v, max_tokens)?,
            (_, Endpoint::ChatCompletions) => to_openai::request(v)?,
            (Endpoint::Messages, Endpoint::GenerateContent) => gemini::request_from_messages(v)?,
            (Endpoint::ChatCompletions, Endpoint::GenerateContent) => {
                gemini::request_from_chat(v, max_tokens)?
            }
            (Endpoint::Messages, Endpoint::Converse) => converse::request_from_messages(v)?,
            (Endpoint::ChatCompletions, Endpoint::Converse) => {
                converse::request_from_messages(to_anthropic::request(v, max_tokens)?)?
            }
            (client, upstream) => {
                return Err(ApiError::internal(format!(
                    "no translation from {} to {}",
                    client.as_str(),
                    upstream.as_str()
                )))
            }
        };
        Ok(Bytes::from(out.to_string()))
    }

    /// [`Translation::request`], with the features the client's `anthropic-beta` header turns on: Converse takes
    /// them in the body, as `additionalModelRequestFields.anthropic_beta` (how Bedrock's Claude models are given
    /// them), so that they are not lost on the way.
    pub fn request_with_betas(
        &self,
        body: &[u8],
        max_tokens: u64,
        beta: Option<&str>,
    ) -> Result<Bytes, ApiError> {
        let out = self.request(body, max_tokens)?;
        match beta.filter(|_| self.upstream == Endpoint::Converse) {
            Some(b) => Ok(Bytes::from(converse::with_betas(&out, b)?.to_string())),
            None => Ok(out),
        }
    }

    /// A successful upstream answer in the client's API, or `None` when it is not JSON. `model` is the model the
    /// client asked for, which names the answer when the upstream's does not (Converse's).
    pub fn response(&self, body: &[u8], model: &str) -> Option<Bytes> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let out = match (self.client, self.upstream) {
            (Endpoint::Messages, Endpoint::GenerateContent) => gemini::response_to_messages(&v),
            (_, Endpoint::GenerateContent) => to_openai::response(&gemini::message(&v, true)),
            (Endpoint::Messages, Endpoint::Converse) => converse::response_to_messages(&v, model),
            (_, Endpoint::Converse) => {
                to_openai::response(&converse::response_to_messages(&v, model))
            }
            (Endpoint::Messages, _) => to_anthropic::response(&v),
            _ => to_openai::response(&v),
        };
        Some(Bytes::from(out.to_string()))
    }

    /// An upstream error answer as an error of the client's API, with the upstream's status and message.
    pub fn error(&self, status: StatusCode, body: &[u8]) -> ApiError {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        // OpenAI's `{"error":{"message"}}`, Anthropic's `{"type":"error","error":{"message"}}` and Google's
        // `{"error":{"code","message","status"}}` alike.
        let message = v["error"]["message"]
            .as_str()
            .or_else(|| v["message"].as_str())
            .unwrap_or("no message");
        ApiError::new(
            status,
            openai_error_type(status),
            "upstream_error",
            format!(
                "The provider answered {} to the translated request: {message}",
                status.as_u16()
            ),
        )
    }

    /// A translator of the upstream's stream into the client's; `model` as for [`Translation::response`].
    pub fn stream(&self, model: &str) -> stream::Translator {
        use stream::Translator;
        match (self.client, self.upstream) {
            (Endpoint::Messages, Endpoint::GenerateContent) => Translator::from_gemini(None),
            (_, Endpoint::GenerateContent) => {
                Translator::from_gemini(Some(Translator::to_openai(self.include_usage)))
            }
            (Endpoint::Messages, Endpoint::Converse) => Translator::from_converse(model, None),
            (_, Endpoint::Converse) => Translator::from_converse(model, Some(self.include_usage)),
            (Endpoint::Messages, _) => Translator::to_anthropic(),
            _ => Translator::to_openai(self.include_usage),
        }
    }
}

/// OpenAI's error `type` for an HTTP status (what its SDKs raise is chosen by the status).
fn openai_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 404 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "api_error",
    }
}

/// The text of a string or of an array of text parts/blocks (`{"type":"text","text"}`), which both APIs accept
/// for system prompts and tool results. `None` when an element is not text.
pub(crate) fn plain_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                if p["type"] != "text" {
                    return None;
                }
                out.push_str(p["text"].as_str()?);
            }
            Some(out)
        }
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// The unix time in seconds, for the `created` of OpenAI objects built from Anthropic answers (which have none).
pub(crate) fn now_secs() -> i64 {
    spendgate_core::time::now_ms() / 1000
}

#[cfg(test)]
mod converse_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_gemini;
