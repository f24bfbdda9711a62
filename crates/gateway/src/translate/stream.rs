//! Streamed answers translated event by event: Anthropic's server-sent events (`message_start`,
//! `content_block_*`, `message_delta`, `message_stop`) into `chat.completion.chunk`s ending with `[DONE]`, and
//! chunks into Anthropic's events; Gemini's chunks into Anthropic's events (`gemini_stream.rs`), and through them
//! into chunks. Only an unfinished event is held back; every complete one is translated as it arrives.
//!
//! Shapes from Anthropic's streaming documentation (docs.anthropic.com/en/docs/build-with-claude/streaming) and
//! OpenAI's chunk reference (platform.openai.com/docs/api-reference/chat/streaming). Anthropic's `message_delta`
//! usage is cumulative; a chunk stream's usage comes in one chunk after the last choice (the gateway always asks
//! for it), so the translated `message_delta` is sent at `[DONE]`, with the whole usage.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Value};

/// Events longer than this are dropped rather than held: no event of either API comes near it.
const MAX_EVENT: usize = 4 << 20;

/// Splits a byte stream into server-sent events and returns each event's `data:` payload.
#[derive(Debug, Default)]
struct Events {
    pending: Vec<u8>,
}

impl Events {
    /// The `data:` payloads of every event completed by `chunk`.
    fn feed(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            let lf = memchr::memmem::find(&self.pending, b"\n\n").map(|i| (i, 2));
            let crlf = memchr::memmem::find(&self.pending, b"\r\n\r\n").map(|i| (i, 4));
            let end = match (lf, crlf) {
                (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
                (a, b) => a.or(b),
            };
            let Some((at, len)) = end else { break };
            let event: Vec<u8> = self.pending.drain(..at + len).collect();
            if let Some(d) = data_of(&event[..at]) {
                out.push(d);
            }
        }
        if self.pending.len() > MAX_EVENT {
            self.pending.clear();
        }
        out
    }

    /// The last event, when the stream ended without its closing blank line.
    fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.pending);
        data_of(&rest)
    }
}

/// The payload of an event's `data:` lines (joined by newlines, as the SSE specification says).
fn data_of(event: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(d) = line.strip_prefix(b"data:") else {
            continue;
        };
        let d = d.strip_prefix(b" ").unwrap_or(d);
        match out.as_mut() {
            Some(o) => {
                o.push(b'\n');
                o.extend_from_slice(d);
            }
            None => out = Some(d.to_vec()),
        }
    }
    out
}

/// A stream translator, fed the upstream's bytes and giving the client's.
#[derive(Debug)]
pub struct Translator {
    events: Events,
    kind: Kind,
    /// The translator of what this one gives, when the client's API is reached through a pivot (Gemini's stream
    /// into Anthropic's events, those into chat completion chunks).
    then: Option<Box<Translator>>,
    /// Set when the upstream speaks Bedrock's Converse: its event stream becomes Anthropic's events first
    /// (Messages is the pivot), which `kind` then translates on or passes as they are.
    converse: Option<super::converse_stream::ToMessages>,
}

#[derive(Debug)]
enum Kind {
    ToOpenAi(ToOpenAi),
    ToAnthropic(ToAnthropic),
    FromGemini(super::gemini_stream::FromGemini),
    /// Anthropic's events passed as they are.
    Same,
}

impl Translator {
    /// Anthropic's events into chat completion chunks; `include_usage` adds the usage chunk before `[DONE]`.
    pub fn to_openai(include_usage: bool) -> Translator {
        Translator {
            events: Events::default(),
            kind: Kind::ToOpenAi(ToOpenAi {
                include_usage,
                ..ToOpenAi::default()
            }),
            then: None,
            converse: None,
        }
    }

    /// Chat completion chunks into Anthropic's events.
    pub fn to_anthropic() -> Translator {
        Translator {
            events: Events::default(),
            kind: Kind::ToAnthropic(ToAnthropic::default()),
            then: None,
            converse: None,
        }
    }

    /// Gemini's stream into Anthropic's events; `then` translates those further (into chat completion chunks).
    pub fn from_gemini(then: Option<Translator>) -> Translator {
        Translator {
            events: Events::default(),
            kind: Kind::FromGemini(super::gemini_stream::FromGemini::new(then.is_some())),
            then: then.map(Box::new),
            converse: None,
        }
    }

    /// A ConverseStream answer into Anthropic's events, named `model`, and on into chat completion chunks when
    /// `to_openai` is given (with whether to add the usage chunk).
    pub fn from_converse(model: &str, to_openai: Option<bool>) -> Translator {
        let mut t = match to_openai {
            Some(include_usage) => Translator::to_openai(include_usage),
            None => Translator {
                events: Events::default(),
                kind: Kind::Same,
                then: None,
                converse: None,
            },
        };
        t.converse = Some(super::converse_stream::ToMessages::new(model));
        t
    }

    /// The client's bytes for every event `chunk` completes (empty while an event is unfinished).
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        match self.converse.as_mut() {
            Some(c) => {
                let events = c.feed(chunk);
                self.feed_events(&events)
            }
            None => self.feed_events(chunk),
        }
    }

    fn feed_events(&mut self, chunk: &[u8]) -> Bytes {
        if matches!(self.kind, Kind::Same) {
            return Bytes::copy_from_slice(chunk);
        }
        let mut out = BytesMut::new();
        for data in self.events.feed(chunk) {
            self.event(&data, &mut out);
        }
        match self.then.as_mut() {
            Some(then) => then.feed(&out),
            None => out.freeze(),
        }
    }

    /// What the last, unterminated event translates to when the upstream ends.
    pub fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        if let Some(tail) = self
            .converse
            .as_mut()
            .map(super::converse_stream::ToMessages::finish)
        {
            out.extend_from_slice(&self.feed_events(&tail));
        }
        if let Some(data) = self.events.finish() {
            self.event(&data, &mut out);
        }
        match self.then.as_mut() {
            Some(then) => {
                let mut rest = BytesMut::from(&then.feed(&out)[..]);
                rest.extend_from_slice(&then.finish());
                rest.freeze()
            }
            None => out.freeze(),
        }
    }

    fn event(&mut self, data: &[u8], out: &mut BytesMut) {
        match &mut self.kind {
            Kind::ToOpenAi(t) => t.event(data, out),
            Kind::ToAnthropic(t) => t.event(data, out),
            Kind::FromGemini(t) => t.event(data, out),
            Kind::Same => {}
        }
    }
}

/// Anthropic -> OpenAI.
#[derive(Debug, Default)]
struct ToOpenAi {
    include_usage: bool,
    id: Value,
    model: Value,
    created: i64,
    /// The cumulative usage: `message_start`'s, with `message_delta`'s counts laid over it.
    usage: serde_json::Map<String, Value>,
    /// Per content block index, the tool call's index among this answer's tool calls.
    tool_of_block: Vec<(u64, usize)>,
    tools: usize,
}

fn write_data(out: &mut BytesMut, v: &Value) {
    out.put_slice(b"data: ");
    out.put_slice(v.to_string().as_bytes());
    out.put_slice(b"\n\n");
}

impl ToOpenAi {
    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }],
        })
    }

    fn merge_usage(&mut self, u: &Value) {
        if let Some(u) = u.as_object() {
            for (k, v) in u {
                if !v.is_null() {
                    self.usage.insert(k.clone(), v.clone());
                }
            }
        }
    }

    fn event(&mut self, data: &[u8], out: &mut BytesMut) {
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        match v["type"].as_str() {
            Some("message_start") => {
                let m = &v["message"];
                self.id = m["id"].clone();
                self.model = m["model"].clone();
                self.created = super::now_secs();
                self.merge_usage(&m["usage"]);
                write_data(
                    out,
                    &self.chunk(json!({ "role": "assistant", "content": "" }), None),
                );
            }
            Some("content_block_start") if v["content_block"]["type"] == "tool_use" => {
                let b = &v["content_block"];
                let index = self.tools;
                self.tools += 1;
                self.tool_of_block
                    .push((v["index"].as_u64().unwrap_or(0), index));
                let call = json!({ "index": index, "id": b["id"], "type": "function",
                    "function": { "name": b["name"], "arguments": "" } });
                write_data(out, &self.chunk(json!({ "tool_calls": [call] }), None));
            }
            Some("content_block_delta") => {
                let d = &v["delta"];
                let delta = match d["type"].as_str() {
                    Some("text_delta") => json!({ "content": d["text"] }),
                    Some("input_json_delta") => {
                        let block = v["index"].as_u64().unwrap_or(0);
                        let index = self
                            .tool_of_block
                            .iter()
                            .find(|(b, _)| *b == block)
                            .map_or(0, |(_, i)| *i);
                        json!({ "tool_calls": [{ "index": index, "function": { "arguments": d["partial_json"] } }] })
                    }
                    _ => return,
                };
                write_data(out, &self.chunk(delta, None));
            }
            Some("message_delta") => {
                self.merge_usage(&v["usage"]);
                if let Some(reason) = v["delta"]["stop_reason"].as_str() {
                    let finish = super::to_openai::finish_reason(reason);
                    write_data(out, &self.chunk(json!({}), Some(finish)));
                }
            }
            Some("message_stop") => {
                if self.include_usage {
                    let usage = super::to_openai::usage(&Value::Object(self.usage.clone()));
                    write_data(
                        out,
                        &json!({ "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                            "model": self.model, "choices": [], "usage": usage }),
                    );
                }
                out.put_slice(b"data: [DONE]\n\n");
            }
            Some("error") => {
                let e = &v["error"];
                write_data(
                    out,
                    &json!({ "error": { "message": e["message"], "type": e["type"], "code": null, "param": null } }),
                );
            }
            // `ping`, text and thinking block starts and every block's stop have no chunk of their own.
            _ => {}
        }
    }
}

/// OpenAI -> Anthropic.
#[derive(Debug, Default)]
struct ToAnthropic {
    started: bool,
    /// The content blocks; the open one with, for a tool call, the OpenAI tool call index it is.
    blocks: Blocks<Option<u64>>,
    stop_reason: Option<&'static str>,
    usage: Option<Value>,
    done: bool,
}

/// The content blocks of an Anthropic message being written: the open one (its index and what it holds, `K`)
/// and how many were opened.
#[derive(Debug)]
pub(super) struct Blocks<K> {
    open: Option<(usize, K)>,
    count: usize,
}

impl<K> Default for Blocks<K> {
    fn default() -> Self {
        Blocks {
            open: None,
            count: 0,
        }
    }
}

impl<K: Copy> Blocks<K> {
    /// The open block.
    pub(super) fn open(&self) -> Option<(usize, K)> {
        self.open
    }

    /// Writes the open block's `content_block_stop`.
    pub(super) fn close(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open.take() {
            write_event(
                out,
                "content_block_stop",
                &json!({ "type": "content_block_stop", "index": index }),
            );
        }
    }

    /// Closes the open block and starts `block`, left open as `kind` (or closed by the caller when `None`);
    /// returns its index.
    pub(super) fn start(&mut self, out: &mut BytesMut, block: Value, kind: Option<K>) -> usize {
        self.close(out);
        let index = self.count;
        self.count += 1;
        write_event(
            out,
            "content_block_start",
            &json!({ "type": "content_block_start", "index": index, "content_block": block }),
        );
        self.open = kind.map(|k| (index, k));
        index
    }
}

pub(super) fn write_event(out: &mut BytesMut, name: &str, v: &Value) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(v.to_string().as_bytes());
    out.put_slice(b"\n\n");
}

impl ToAnthropic {
    fn event(&mut self, data: &[u8], out: &mut BytesMut) {
        if data == b"[DONE]" {
            self.end(out);
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if v.get("error").is_some() {
            let e = &v["error"];
            write_event(
                out,
                "error",
                &json!({ "type": "error", "error": { "type": "api_error", "message": e["message"] } }),
            );
            return;
        }
        if !self.started {
            self.started = true;
            write_event(
                out,
                "message_start",
                &json!({ "type": "message_start", "message": {
                    "id": v["id"], "type": "message", "role": "assistant", "model": v["model"], "content": [],
                    "stop_reason": null, "stop_sequence": null,
                    // OpenAI reports the usage at the end only: the prompt's count comes in `message_delta`.
                    "usage": { "input_tokens": 0, "output_tokens": 0 },
                } }),
            );
        }
        if v["usage"].is_object() {
            self.usage = Some(super::to_anthropic::usage(&v["usage"]));
        }
        // One answer per request: only choice 0 exists (`n` > 1 is refused before the request is sent).
        let Some(choice) = v["choices"].as_array().and_then(|c| c.first()) else {
            return;
        };
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            let index = match self.blocks.open() {
                Some((i, None)) => i,
                _ => self
                    .blocks
                    .start(out, json!({ "type": "text", "text": "" }), Some(None)),
            };
            write_event(
                out,
                "content_block_delta",
                &json!({ "type": "content_block_delta", "index": index,
                    "delta": { "type": "text_delta", "text": text } }),
            );
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let tool = call["index"].as_u64().unwrap_or(0);
            let index = match self.blocks.open() {
                Some((i, Some(t))) if t == tool => i,
                _ => self.blocks.start(
                    out,
                    json!({ "type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": {} }),
                    Some(Some(tool)),
                ),
            };
            if let Some(args) = call["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
            {
                write_event(
                    out,
                    "content_block_delta",
                    &json!({ "type": "content_block_delta", "index": index,
                        "delta": { "type": "input_json_delta", "partial_json": args } }),
                );
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.stop_reason = Some(super::to_anthropic::stop_reason(reason));
        }
    }

    /// `[DONE]`: the open block's stop, the stop reason with the whole usage, and `message_stop`.
    fn end(&mut self, out: &mut BytesMut) {
        if self.done || !self.started {
            return;
        }
        self.done = true;
        self.blocks.close(out);
        let usage = self
            .usage
            .take()
            .unwrap_or_else(|| json!({ "output_tokens": 0 }));
        write_event(
            out,
            "message_delta",
            &json!({ "type": "message_delta",
                "delta": { "stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null },
                "usage": usage }),
        );
        write_event(out, "message_stop", &json!({ "type": "message_stop" }));
    }
}
