//! Google's Gemini API (`models/{model}:generateContent` and `:streamGenerateContent?alt=sse`).
//!
//! Shapes follow Google's API reference (ai.google.dev/api/generate-content, `GenerateContentResponse` and
//! `UsageMetadata`) and its SDK's types (googleapis/python-genai `types.py`,
//! `GenerateContentResponseUsageMetadata`):
//! - `usageMetadata.promptTokenCount` is the whole prompt, **including** `cachedContentTokenCount` (the part
//!   read from a context cache, billed at the cache price);
//! - `candidatesTokenCount` is the answer without the model's thoughts; `thoughtsTokenCount` counts those, billed
//!   as output ("Output price (including thinking tokens)", ai.google.dev/gemini-api/docs/pricing), so the output
//!   billed is their sum and the thoughts are its reasoning part;
//! - `toolUsePromptTokenCount` counts the results of tools the model ran (search, code execution) given back to it
//!   as input: billed as input, so the prompt billed is `promptTokenCount` plus it (`totalTokenCount` is the sum
//!   of all four);
//! - `promptTokensDetails` / `cacheTokensDetails` split counts by modality; audio is billed at its own input price.
//!
//! A stream is a series of `data:` events, each a whole `GenerateContentResponse` whose parts are the answer's
//! next pieces; each carries `usageMetadata` as known so far, and the last one (with a candidate's
//! `finishReason`) the final counts. Some servers send a first chunk's usage without counts (Vertex AI's
//! `trafficType` alone): a usage without `promptTokenCount` is not taken. A prompt refused outright
//! (`promptFeedback.blockReason`) ends the stream without candidates.

use serde::Deserialize;
use spendgate_core::Usage;

use super::{finder, normalised, RequestHead, StreamState, WireFormat};

/// The parts of a `GenerateContentRequest` the gateway reads: the output limit and how many candidates are
/// generated (each billed), from `generationConfig` (ai.google.dev/api/generate-content#generationconfig). Google's
/// API reads protocol buffers' JSON, which takes a field by its lowerCamelCase name or by its proto name
/// (protobuf.dev/programming-guides/json: parsers accept both), and Google's SDKs send either
/// (`google-genai` sends `parameters_json_schema`): both are read.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest {
    #[serde(default, alias = "generation_config")]
    generation_config: Option<GenerationConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    #[serde(default, alias = "max_output_tokens")]
    max_output_tokens: Option<u64>,
    #[serde(default, alias = "candidate_count")]
    candidate_count: Option<u64>,
}

/// The head of a Gemini request: its model and whether it streams come from the URL, the rest from the body. `Err`
/// when the body is not a JSON object.
pub fn head(model: &str, stream: bool, body: &[u8]) -> Result<RequestHead, serde_json::Error> {
    let wire: WireRequest = serde_json::from_slice(body)?;
    let config = wire.generation_config.unwrap_or_default();
    Ok(RequestHead {
        model: Some(model.to_string()),
        stream: Some(stream),
        stream_options: None,
        max_tokens: None,
        max_completion_tokens: None,
        max_output_tokens: config.max_output_tokens,
        n: config.candidate_count,
        best_of: None,
    })
}

/// A modality's share of a count (`ModalityTokenCount`).
#[derive(Debug, Deserialize)]
struct ModalityCount {
    #[serde(default)]
    modality: Option<String>,
    #[serde(default, rename = "tokenCount")]
    token_count: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    prompt_token_count: Option<u64>,
    #[serde(default)]
    candidates_token_count: Option<u64>,
    #[serde(default)]
    cached_content_token_count: Option<u64>,
    #[serde(default)]
    thoughts_token_count: Option<u64>,
    #[serde(default)]
    tool_use_prompt_token_count: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<Vec<ModalityCount>>,
    #[serde(default)]
    cache_tokens_details: Option<Vec<ModalityCount>>,
}

/// The audio tokens of a modality breakdown.
fn audio(details: &Option<Vec<ModalityCount>>) -> u64 {
    details
        .iter()
        .flatten()
        .filter(|d| d.modality.as_deref() == Some("AUDIO"))
        .map(|d| d.token_count.unwrap_or(0))
        .fold(0, u64::saturating_add)
}

impl WireUsage {
    /// Normalised usage, or `None` when the object carries no prompt count (a placeholder, not a report).
    fn normalise(&self) -> Option<Usage> {
        let prompt = self.prompt_token_count?;
        let thoughts = self.thoughts_token_count.unwrap_or(0);
        let u = normalised(
            prompt.saturating_add(self.tool_use_prompt_token_count.unwrap_or(0)),
            self.candidates_token_count
                .unwrap_or(0)
                .saturating_add(thoughts),
            self.cached_content_token_count.unwrap_or(0),
            0,
        );
        Some(
            Usage {
                reasoning_tokens: thoughts,
                // Audio read from the cache is billed at the cache price; the rest at audio's input price.
                audio_input_tokens: audio(&self.prompt_tokens_details)
                    .saturating_sub(audio(&self.cache_tokens_details)),
                ..u
            }
            .with_parts_bounded(),
        )
    }
}

#[derive(Debug, Deserialize)]
struct Candidate {
    #[serde(default, rename = "finishReason")]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PromptFeedback {
    #[serde(default, rename = "blockReason")]
    block_reason: Option<String>,
}

/// A `GenerateContentResponse`, read only for its usage and whether it ends the answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    usage_metadata: Option<WireUsage>,
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
}

impl Response {
    fn usage(&self) -> Option<Usage> {
        self.usage_metadata.as_ref().and_then(WireUsage::normalise)
    }

    /// Whether this is the answer's last piece: a candidate says why it finished, or the prompt was refused.
    fn ends(&self) -> bool {
        self.candidates.iter().any(|c| c.finish_reason.is_some())
            || self
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.block_reason.is_some())
    }
}

/// Google's Gemini API.
#[derive(Debug, Clone, Copy)]
pub struct Gemini;

impl WireFormat for Gemini {
    fn body_usage(&self, body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
        Ok(serde_json::from_slice::<Response>(body)?.usage())
    }

    fn stream_event(&self, data: &[u8], state: &mut StreamState) {
        // A chunk without usage or an ending tells billing nothing: not parsed.
        let interesting = [
            finder!(b"\"usageMetadata\""),
            finder!(b"\"finishReason\""),
            finder!(b"\"blockReason\""),
        ];
        if !interesting.iter().any(|k| k.find(data).is_some()) {
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Response>(data) else {
            return;
        };
        // Each chunk's usage is the whole so far: the latest replaces the earlier.
        if let Some(u) = chunk.usage() {
            state.usage = Some(u);
        }
        if chunk.ends() {
            state.done = true;
        }
    }

    fn text_key(&self, _stream: bool) -> &'static [u8] {
        // Text parts, in a body and in each chunk alike.
        b"text"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requests_head_takes_its_limits_from_the_generation_config() {
        let h = head(
            "gemini-2.5-flash",
            true,
            br#"{"contents":[],"generationConfig":{"maxOutputTokens":64,"candidateCount":2}}"#,
        )
        .unwrap();
        assert_eq!(h.model.as_deref(), Some("gemini-2.5-flash"));
        assert!(h.wants_stream());
        assert_eq!((h.max_output(), h.completions()), (Some(64), 2));
        assert!(head("m", false, b"[1]").is_err());
        let proto_names = head(
            "m",
            false,
            br#"{"generation_config":{"max_output_tokens":9,"candidate_count":3}}"#,
        )
        .unwrap();
        assert_eq!(
            (proto_names.max_output(), proto_names.completions()),
            (Some(9), 3)
        );
    }

    #[test]
    fn thoughts_are_output_and_reasoning_tool_results_are_input_and_the_cache_is_apart() {
        let body = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"}]},"finishReason":"STOP","index":0}],
            "usageMetadata":{"promptTokenCount":2000,"candidatesTokenCount":40,"totalTokenCount":2395,
              "cachedContentTokenCount":1024,"thoughtsTokenCount":300,"toolUsePromptTokenCount":55,
              "promptTokensDetails":[{"modality":"TEXT","tokenCount":1800},{"modality":"AUDIO","tokenCount":200}],
              "cacheTokensDetails":[{"modality":"AUDIO","tokenCount":50}]},
            "modelVersion":"gemini-2.5-flash","responseId":"abc"}"#;
        let u = Gemini.body_usage(body).unwrap().unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cached_input_tokens,
                u.output_tokens,
                u.reasoning_tokens,
                u.audio_input_tokens
            ),
            (2055, 1024, 340, 300, 150)
        );
        assert_eq!(u.cache_write_tokens, 0);
        assert!(Gemini.body_usage(b"{\"candidates\":[]}").unwrap().is_none());
        assert!(Gemini.body_usage(b"[").is_err());
    }

    #[test]
    fn a_stream_takes_the_last_counted_usage_and_ends_at_a_finish_reason() {
        let mut s = StreamState::default();
        for data in [
            &br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]}}],"usageMetadata":{"trafficType":"ON_DEMAND"}}"#[..],
            br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"lo"}]}}],"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9}}"#,
        ] {
            Gemini.stream_event(data, &mut s);
        }
        assert!(!s.done);
        assert_eq!(
            s.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((9, 0))
        );
        Gemini.stream_event(
            br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"!"}]},"finishReason":"STOP"}],
                "usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":3,"thoughtsTokenCount":12,"totalTokenCount":24}}"#,
            &mut s,
        );
        assert!(s.done);
        let u = s.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.reasoning_tokens),
            (9, 15, 12)
        );
        let mut blocked = StreamState::default();
        Gemini.stream_event(
            br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}"#,
            &mut blocked,
        );
        assert!(blocked.done);
        assert_eq!(blocked.usage.map(|u| u.input_tokens), Some(7));
    }
}
