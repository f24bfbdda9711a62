//! A ConverseStream answer (AWS's binary event stream) as Anthropic's server-sent events, message by message:
//! only an unfinished message is held back.
//!
//! From Bedrock's ConverseStream reference (the `ConverseStreamOutput` union) and Anthropic's streaming
//! documentation (docs.anthropic.com/en/docs/build-with-claude/streaming):
//!
//! - `messageStart` -> `message_start` (a Message without content; Converse reports the usage last, so the
//!   counts come in `message_delta`, as the chat completion translator does it);
//! - `contentBlockStart` (a tool call's id and name) -> `content_block_start` of a `tool_use` block; a text or
//!   reasoning block has no start in Converse, so its first delta opens it;
//! - `contentBlockDelta` -> `content_block_delta`: `text` -> `text_delta`, `toolUse.input` -> `input_json_delta`,
//!   `reasoningContent.text` -> `thinking_delta`, `.signature` -> `signature_delta` (`.redactedContent` opens a
//!   `redacted_thinking` block whole);
//! - `contentBlockStop` -> `content_block_stop`;
//! - `messageStop` keeps the stop reason, and `metadata` (the usage) ends the message: `message_delta` with the
//!   stop reason and the whole usage, then `message_stop`; a stream cut after `messageStop` still ends so;
//! - an exception message -> an `error` event of the nearest Anthropic type.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use super::converse::{message_id, stop_reason, usage};
use super::stream::write_event;
use crate::protocol::eventstream::Decoder;

/// Converse's event stream into Anthropic's events.
#[derive(Debug)]
pub struct ToMessages {
    frames: Decoder,
    model: String,
    started: bool,
    /// Per Converse block index, the Anthropic index it became, while it is open.
    open: Vec<(u64, usize)>,
    blocks: usize,
    stop_reason: Option<&'static str>,
    ended: bool,
    /// An unreadable stream is reported once.
    broken: bool,
}

impl ToMessages {
    /// `model` names the Message (Converse's answers name none): the model the client asked for.
    pub fn new(model: &str) -> ToMessages {
        ToMessages {
            frames: Decoder::new(),
            model: model.to_string(),
            started: false,
            open: Vec::new(),
            blocks: 0,
            stop_reason: None,
            ended: false,
            broken: false,
        }
    }

    /// Anthropic's events for every message `chunk` completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        self.frames.feed(chunk);
        while let Some(m) = self.frames.next_message() {
            match m {
                Ok(m) => {
                    let (kind, name) = m.kind();
                    let payload: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                    if kind == "event" {
                        self.event(name, &payload, &mut out);
                    } else {
                        let message = payload["message"].as_str().unwrap_or(name);
                        error(&mut out, error_type(name), message);
                    }
                }
                Err(e) => {
                    if !self.broken {
                        self.broken = true;
                        error(&mut out, "api_error", &e.to_string());
                    }
                    break;
                }
            }
        }
        out.freeze()
    }

    /// When the upstream ended: a message whose stop came without its usage still ends.
    pub fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        if self.stop_reason.is_some() {
            self.end(&json!({}), &mut out);
        }
        out.freeze()
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        write_event(
            out,
            "message_start",
            &json!({ "type": "message_start", "message": {
                "id": message_id(), "type": "message", "role": "assistant", "model": self.model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": { "input_tokens": 0, "output_tokens": 0 },
            } }),
        );
    }

    /// The Anthropic index of Converse block `at`, opening it as `block` when it is not open yet.
    fn index(&mut self, at: u64, block: impl FnOnce() -> Value, out: &mut BytesMut) -> usize {
        if let Some((_, i)) = self.open.iter().find(|(c, _)| *c == at) {
            return *i;
        }
        self.start(out);
        let index = self.blocks;
        self.blocks += 1;
        self.open.push((at, index));
        write_event(
            out,
            "content_block_start",
            &json!({ "type": "content_block_start", "index": index, "content_block": block() }),
        );
        index
    }

    fn close(&mut self, at: u64, out: &mut BytesMut) {
        if let Some(pos) = self.open.iter().position(|(c, _)| *c == at) {
            let (_, index) = self.open.remove(pos);
            write_event(
                out,
                "content_block_stop",
                &json!({ "type": "content_block_stop", "index": index }),
            );
        }
    }

    fn event(&mut self, name: &str, v: &Value, out: &mut BytesMut) {
        let at = v["contentBlockIndex"].as_u64().unwrap_or(0);
        match name {
            "messageStart" => self.start(out),
            "contentBlockStart" => {
                if let Some(call) = v["start"].get("toolUse") {
                    let block = || json!({ "type": "tool_use", "id": call["toolUseId"], "name": call["name"], "input": {} });
                    self.index(at, block, out);
                }
            }
            "contentBlockDelta" => self.delta(at, &v["delta"], out),
            "contentBlockStop" => self.close(at, out),
            "messageStop" => {
                self.stop_reason =
                    Some(stop_reason(v["stopReason"].as_str().unwrap_or("end_turn")));
            }
            "metadata" => self.end(&v["usage"], out),
            _ => {}
        }
    }

    fn delta(&mut self, at: u64, d: &Value, out: &mut BytesMut) {
        let (block, delta) = if let Some(text) = d.get("text") {
            (
                json!({ "type": "text", "text": "" }),
                json!({ "type": "text_delta", "text": text }),
            )
        } else if let Some(input) = d["toolUse"].get("input") {
            (
                json!({ "type": "tool_use", "id": null, "name": null, "input": {} }),
                json!({ "type": "input_json_delta", "partial_json": input }),
            )
        } else if let Some(r) = d.get("reasoningContent") {
            if let Some(data) = r.get("redactedContent") {
                self.index(
                    at,
                    || json!({ "type": "redacted_thinking", "data": data }),
                    out,
                );
                return;
            }
            let block = json!({ "type": "thinking", "thinking": "" });
            match (r.get("text"), r.get("signature")) {
                (Some(t), _) => (block, json!({ "type": "thinking_delta", "thinking": t })),
                (None, Some(s)) => (block, json!({ "type": "signature_delta", "signature": s })),
                (None, None) => return,
            }
        } else {
            // Citations and tool results in a stream answer only requests this translation never writes.
            return;
        };
        let index = self.index(at, || block, out);
        write_event(
            out,
            "content_block_delta",
            &json!({ "type": "content_block_delta", "index": index, "delta": delta }),
        );
    }

    /// The message's end: blocks left open closed, the stop reason with the whole usage, and `message_stop`.
    fn end(&mut self, u: &Value, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.start(out);
        for (at, _) in self.open.clone() {
            self.close(at, out);
        }
        write_event(
            out,
            "message_delta",
            &json!({ "type": "message_delta",
                "delta": { "stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null },
                "usage": usage(u) }),
        );
        write_event(out, "message_stop", &json!({ "type": "message_stop" }));
        self.stop_reason = None;
    }
}

fn error(out: &mut BytesMut, kind: &str, message: &str) {
    write_event(
        out,
        "error",
        &json!({ "type": "error", "error": { "type": kind, "message": message } }),
    );
}

/// A Converse stream exception as Anthropic's error type (docs.anthropic.com/en/api/errors).
fn error_type(exception: &str) -> &'static str {
    match exception {
        "throttlingException" => "rate_limit_error",
        "validationException" => "invalid_request_error",
        "serviceUnavailableException" => "overloaded_error",
        _ => "api_error",
    }
}
