//! Takes out of a chat completion stream what the gateway asked for and the client did not: the usage.
//!
//! The gateway sets `stream_options.include_usage` on every chat stream so that it can bill the provider's own
//! count. A client that did not ask for it must not see the result: OpenAI then sends `"usage":null` on every
//! chunk and a last chunk `{"choices":[],"usage":{...}}` before `[DONE]`, and ordinary client code
//! (`chunk.choices[0].delta.content`) fails on a chunk without choices. The usage itself is read before this
//! filter (`sse::UsageScanner` sees the upstream's bytes), so billing does not change.
//!
//! Shapes from OpenAI's API reference (platform.openai.com/docs/api-reference/chat/streaming): with
//! `include_usage`, "an additional chunk will be streamed before the data: [DONE] message. The usage field on this
//! chunk shows the token usage statistics for the entire request, and the choices field will always be an empty
//! array. All other chunks will also include a usage field, but with a null value."

use crate::protocol::{finder, finder_rev};
use bytes::{Bytes, BytesMut};

/// Events longer than this are passed on as they come rather than held whole: a hostile upstream must not make
/// the gateway buffer without bound, and no usage chunk is anywhere near this size.
const MAX_EVENT: usize = 1 << 20;

/// The `usage` members OpenAI-compatible servers write on ordinary chunks: compact (OpenAI) and Python's
/// default separators (several self-hosted servers).
const NULL_USAGE: [&[u8]; 4] = [
    b",\"usage\":null",
    b", \"usage\": null",
    b"\"usage\":null,",
    b"\"usage\": null, ",
];

/// Removes the usage the client did not ask for from a chat completion stream, event by event.
#[derive(Debug, Default)]
pub struct UsageStripper {
    /// The start of an event whose end has not arrived yet.
    pending: BytesMut,
}

impl UsageStripper {
    pub fn new() -> UsageStripper {
        UsageStripper::default()
    }

    /// The part of `chunk` (after what was pending) that can go to the client now: every complete event, filtered.
    /// An unfinished event is held until its end arrives.
    pub fn feed(&mut self, chunk: Bytes) -> Bytes {
        // The usual case costs one search and no copy: whole events, none of which mentions usage.
        if self.pending.is_empty() && ends_an_event(&chunk) && !mentions_usage(&chunk) {
            return chunk;
        }
        self.pending.extend_from_slice(&chunk);
        let Some(end) = last_event_end(&self.pending) else {
            if self.pending.len() > MAX_EVENT {
                return self.pending.split().freeze();
            }
            return Bytes::new();
        };
        let complete = self.pending.split_to(end);
        filter_events(&complete)
    }

    /// What was still held when the stream ended (an event without its closing blank line), filtered.
    pub fn finish(&mut self) -> Bytes {
        if self.pending.is_empty() {
            return Bytes::new();
        }
        let rest = self.pending.split();
        filter_events(&rest)
    }
}

fn mentions_usage(data: &[u8]) -> bool {
    finder!(b"\"usage\"").find(data).is_some()
}

fn ends_an_event(data: &[u8]) -> bool {
    data.ends_with(b"\n\n") || data.ends_with(b"\r\n\r\n")
}

/// The offset just past the last blank line (the end of an event) in `data`.
fn last_event_end(data: &[u8]) -> Option<usize> {
    let lf = finder_rev!(b"\n\n").rfind(data).map(|i| i + 2);
    let crlf = finder_rev!(b"\r\n\r\n").rfind(data).map(|i| i + 4);
    lf.max(crlf)
}

/// Complete events with the usage-only chunk dropped and `"usage":null` members removed; everything else as it
/// came, byte for byte.
fn filter_events(data: &[u8]) -> Bytes {
    if !mentions_usage(data) {
        return Bytes::copy_from_slice(data);
    }
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while !rest.is_empty() {
        let end = next_event_end(rest).unwrap_or(rest.len());
        let (event, tail) = rest.split_at(end);
        rest = tail;
        if is_usage_only(event) {
            continue;
        }
        out.extend_from_slice(&without_null_usage(event));
    }
    Bytes::from(out)
}

fn next_event_end(data: &[u8]) -> Option<usize> {
    let lf = finder!(b"\n\n").find(data).map(|i| i + 2);
    let crlf = finder!(b"\r\n\r\n").find(data).map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The chunk that carries only the usage: a `data:` line whose JSON has an empty `choices` and a `usage` object.
fn is_usage_only(event: &[u8]) -> bool {
    let Some(json) = data_of(event) else {
        return false;
    };
    #[derive(serde::Deserialize)]
    struct Chunk<'a> {
        #[serde(default, borrow)]
        choices: Option<Vec<&'a serde_json::value::RawValue>>,
        #[serde(default, borrow)]
        usage: Option<&'a serde_json::value::RawValue>,
    }
    match serde_json::from_slice::<Chunk<'_>>(json) {
        Ok(c) => {
            c.choices.is_some_and(|v| v.is_empty()) && c.usage.is_some_and(|u| u.get() != "null")
        }
        Err(_) => false,
    }
}

/// The payload of an event's `data:` line (chat chunks have one).
fn data_of(event: &[u8]) -> Option<&[u8]> {
    event.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let data = line.strip_prefix(b"data:")?;
        Some(data.strip_prefix(b" ").unwrap_or(data))
    })
}

/// The event without its `"usage":null` member. Such a member cannot stand inside a JSON string (its quotes would
/// be escaped there), so removing its exact bytes keeps the JSON valid.
fn without_null_usage(event: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    for pattern in NULL_USAGE {
        if let Some(at) = memchr::memmem::find(event, pattern) {
            let mut v = Vec::with_capacity(event.len());
            v.extend_from_slice(&event[..at]);
            v.extend_from_slice(&event[at + pattern.len()..]);
            return std::borrow::Cow::Owned(v);
        }
    }
    std::borrow::Cow::Borrowed(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi \\\"usage\\\":null\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n\
data: [DONE]\n\n";

    const CLIENT: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi \\\"usage\\\":null\"}}]}\n\n\
data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: [DONE]\n\n";

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = UsageStripper::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&s.feed(Bytes::copy_from_slice(c)));
        }
        out.extend_from_slice(&s.finish());
        out
    }

    #[test]
    fn the_usage_chunk_and_null_usage_are_gone_however_the_stream_is_split() {
        let bytes = UPSTREAM.as_bytes();
        assert_eq!(String::from_utf8(run(&[bytes])).unwrap(), CLIENT);
        for split in 1..bytes.len() {
            let out = run(&[&bytes[..split], &bytes[split..]]);
            assert_eq!(String::from_utf8(out).unwrap(), CLIENT, "split at {split}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(String::from_utf8(run(&singles)).unwrap(), CLIENT);
    }

    #[test]
    fn events_without_usage_pass_unchanged_and_uncopied() {
        let chunk =
            Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n");
        let mut s = UsageStripper::new();
        let out = s.feed(chunk.clone());
        assert_eq!(out.as_ptr(), chunk.as_ptr(), "passed on without a copy");
        // Crlf-delimited events and a stream whose last event has no closing blank line.
        let crlf = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\r\n\r\ndata: [DONE]";
        assert_eq!(run(&[crlf]), b"data: [DONE]");
    }

    #[test]
    fn a_usage_on_a_chunk_with_choices_is_left_alone() {
        // Some servers put the usage on the last content chunk; clients read that chunk's choices safely.
        let e =
            b"data: {\"choices\":[{\"index\":0,\"delta\":{}}],\"usage\":{\"prompt_tokens\":1}}\n\n";
        assert_eq!(run(&[e]), e.to_vec());
    }

    #[test]
    fn a_huge_event_is_not_held_without_bound() {
        let mut s = UsageStripper::new();
        let big = vec![b'a'; MAX_EVENT + 10];
        let out = s.feed(Bytes::from(big));
        assert_eq!(out.len(), MAX_EVENT + 10);
    }
}
