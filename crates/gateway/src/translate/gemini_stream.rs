//! Gemini's stream (`streamGenerateContent?alt=sse`: each event a whole `GenerateContentResponse` with the answer's
//! next parts) as Anthropic's events, event by event: `message_start` at the first chunk (with the prompt's count,
//! which Gemini reports from the first chunk on), a text block for text parts (`text_delta`s), a thinking block for
//! thought parts (`thinking_delta`s, and the signature as a `signature_delta`), a `tool_use` block for each
//! `functionCall` (Gemini sends a call whole, so its arguments are one `input_json_delta`), and at the chunk with
//! a `finishReason` (or a refused prompt's `promptFeedback.blockReason`) the open block's stop, `message_delta`
//! with the stop reason and the whole usage, and `message_stop`. A stream that ends before that was cut short
//! upstream, and the client sees it end without `message_stop`, as it would from Anthropic.
//!
//! Shapes: Google's API reference (ai.google.dev/api/generate-content#method:-models.streamgeneratecontent) and
//! Anthropic's streaming documentation (docs.anthropic.com/en/docs/build-with-claude/streaming).

use bytes::BytesMut;
use serde_json::{json, Value};

use super::gemini::{args, message_id, parts, stop_reason, tool_id, usage};
use super::stream::{write_event, Blocks};

/// The open content block's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
}

/// Gemini -> Anthropic.
#[derive(Debug, Default)]
pub(super) struct FromGemini {
    /// Usage with the pivot's reasoning count, for a chat completion built from these events.
    pivot: bool,
    started: bool,
    blocks: Blocks<Open>,
    calls: usize,
    /// The latest usage (every chunk carries the whole so far).
    usage: Value,
    done: bool,
}

impl FromGemini {
    pub(super) fn new(pivot: bool) -> FromGemini {
        FromGemini {
            pivot,
            ..FromGemini::default()
        }
    }

    /// The index of the open block of `kind`, opening one when another (or none) is open.
    fn block(&mut self, out: &mut BytesMut, kind: Open) -> usize {
        match self.blocks.open() {
            Some((i, k)) if k == kind => i,
            _ => {
                let block = match kind {
                    Open::Text => json!({ "type": "text", "text": "" }),
                    Open::Thinking => {
                        json!({ "type": "thinking", "thinking": "", "signature": "" })
                    }
                };
                self.blocks.start(out, block, Some(kind))
            }
        }
    }

    fn delta(out: &mut BytesMut, index: usize, delta: Value) {
        write_event(
            out,
            "content_block_delta",
            &json!({ "type": "content_block_delta", "index": index, "delta": delta }),
        );
    }

    pub(super) fn event(&mut self, data: &[u8], out: &mut BytesMut) {
        if self.done {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if let Some(e) = v.get("error") {
            write_event(
                out,
                "error",
                &json!({ "type": "error", "error": { "type": "api_error", "message": e["message"] } }),
            );
            return;
        }
        if v["usageMetadata"]["promptTokenCount"].is_u64() {
            self.usage = v["usageMetadata"].clone();
        }
        if !self.started {
            self.started = true;
            let mut u = usage(&self.usage, false);
            u["output_tokens"] = 0.into();
            write_event(
                out,
                "message_start",
                &json!({ "type": "message_start", "message": {
                    "id": message_id(&v), "type": "message", "role": "assistant", "model": v["modelVersion"],
                    "content": [], "stop_reason": null, "stop_sequence": null, "usage": u,
                } }),
            );
        }
        // One answer per request: only the first candidate (`candidateCount` is never sent).
        let candidate = &v["candidates"][0];
        let response_id = v["responseId"].as_str().unwrap_or("");
        for p in parts(&v) {
            let signature = p["thoughtSignature"].as_str();
            if let Some(call) = p.get("functionCall") {
                let id = tool_id(call, signature, response_id, self.calls);
                self.calls += 1;
                let index = self.blocks.start(
                    out,
                    json!({ "type": "tool_use", "id": id, "name": call["name"], "input": {} }),
                    None,
                );
                Self::delta(
                    out,
                    index,
                    json!({ "type": "input_json_delta", "partial_json": args(call).to_string() }),
                );
                write_event(
                    out,
                    "content_block_stop",
                    &json!({ "type": "content_block_stop", "index": index }),
                );
            } else if let Some(text) = p["text"].as_str() {
                if p["thought"] == true {
                    let index = self.block(out, Open::Thinking);
                    if !text.is_empty() {
                        Self::delta(
                            out,
                            index,
                            json!({ "type": "thinking_delta", "thinking": text }),
                        );
                    }
                    if let Some(s) = signature {
                        Self::delta(
                            out,
                            index,
                            json!({ "type": "signature_delta", "signature": s }),
                        );
                    }
                } else if !text.is_empty() {
                    let index = self.block(out, Open::Text);
                    Self::delta(out, index, json!({ "type": "text_delta", "text": text }));
                }
            }
        }
        let finish = candidate["finishReason"].as_str();
        let blocked = v["promptFeedback"]["blockReason"].is_string();
        if finish.is_some() || blocked {
            self.end(
                out,
                finish.map_or("refusal", |f| stop_reason(f, self.calls > 0)),
            );
        }
    }

    /// The open block's stop, the stop reason with the whole usage, and `message_stop`.
    fn end(&mut self, out: &mut BytesMut, stop: &str) {
        self.done = true;
        self.blocks.close(out);
        write_event(
            out,
            "message_delta",
            &json!({ "type": "message_delta",
                "delta": { "stop_reason": stop, "stop_sequence": null },
                "usage": usage(&self.usage, self.pivot) }),
        );
        write_event(out, "message_stop", &json!({ "type": "message_stop" }));
    }
}
