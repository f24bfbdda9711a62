//! Reads usage out of a server-sent-event stream as its bytes go by, without changing them.
//!
//! Chunks arrive split anywhere, so the scanner keeps the unfinished last line between chunks. Each `data:` line
//! goes to the stream's [`WireFormat`] (OpenAI chat, Responses or Anthropic Messages), which picks out usage and
//! the end marker; for every line it also counts the bytes of answer text, which gives an estimate of the output
//! when the upstream sends no usage at all. A stream in AWS's binary event stream (Bedrock's Converse) is cut into
//! messages instead ([`Framing::EventStream`]), each given to the format with its event type, and the same text
//! counted from its payload; a message whose checksum fails ends the reading, and the stream is billed as cut.

use spendgate_core::usage::estimate_tokens;
use spendgate_core::Usage;

use crate::protocol::eventstream::Decoder;
use crate::protocol::{chat::Chat, text_len, Framing, StreamState, WireFormat};

pub struct UsageScanner {
    format: &'static dyn WireFormat,
    /// Set for a format framed as AWS's event stream: its messages, instead of lines.
    frames: Option<Decoder>,
    partial: Vec<u8>,
    state: StreamState,
    content_bytes: usize,
    /// Lines longer than this are not kept whole (a hostile upstream cannot make us buffer without bound).
    max_line: usize,
}

impl std::fmt::Debug for UsageScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageScanner")
            .field("state", &self.state)
            .finish()
    }
}

impl Default for UsageScanner {
    fn default() -> Self {
        UsageScanner::new()
    }
}

const MAX_LINE: usize = 1 << 20;

impl UsageScanner {
    /// A scanner for OpenAI chat completion streams.
    pub fn new() -> UsageScanner {
        UsageScanner::for_format(&Chat)
    }

    pub fn for_format(format: &'static dyn WireFormat) -> UsageScanner {
        UsageScanner {
            format,
            frames: (format.framing() == Framing::EventStream).then(Decoder::new),
            partial: Vec::new(),
            state: StreamState::default(),
            content_bytes: 0,
            max_line: MAX_LINE,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if let Some(frames) = self.frames.as_mut() {
            frames.feed(chunk);
            while let Some(Ok(m)) = frames.next_message() {
                let (kind, name) = m.kind();
                self.format
                    .stream_message(name, kind != "event", &m.payload, &mut self.state);
                self.content_bytes += text_len(&m.payload, self.format.text_key(true));
            }
            return;
        }
        let mut rest = chunk;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(pos);
            rest = &tail[1..];
            if self.partial.is_empty() {
                self.line(line);
            } else {
                let mut full = std::mem::take(&mut self.partial);
                full.extend_from_slice(line);
                self.line(&full);
                full.clear();
                self.partial = full;
            }
        }
        if !rest.is_empty() && self.partial.len() + rest.len() <= self.max_line {
            self.partial.extend_from_slice(rest);
        }
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        self.format.stream_event(data, &mut self.state);
        self.content_bytes += text_len(data, self.format.text_key(true));
    }

    /// The usage the stream reported, if any.
    pub fn reported(&self) -> Option<Usage> {
        self.state.usage
    }

    /// The usage to bill: as reported, except that a stream cut short before its end (Anthropic reports usage in
    /// its first event) is billed for at least the output that was counted.
    pub fn usage(&self) -> Option<Usage> {
        self.state.usage.map(|mut u| {
            if !self.state.done {
                u.output_tokens = u.output_tokens.max(self.estimated_output_tokens());
            }
            u
        })
    }

    /// Output tokens estimated from the content seen so far.
    pub fn estimated_output_tokens(&self) -> u64 {
        estimate_tokens(self.content_bytes)
    }

    /// Whether the stream told all billing needs (its final usage or its end marker).
    pub fn saw_done(&self) -> bool {
        self.state.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n\
data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world\"}}],\"usage\":null}\n\n\
data: {\"id\":\"1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2,\"total_tokens\":14,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn finds_usage_however_the_stream_is_split() {
        let bytes = STREAM.as_bytes();
        for split in 1..bytes.len() {
            let mut s = UsageScanner::new();
            s.feed(&bytes[..split]);
            s.feed(&bytes[split..]);
            let u = s.reported().expect("usage found");
            assert_eq!(
                (u.input_tokens, u.output_tokens, u.cached_input_tokens),
                (12, 2, 4),
                "split at {split}"
            );
            assert!(s.saw_done());
        }
        // One byte at a time too.
        let mut s = UsageScanner::new();
        for b in bytes {
            s.feed(std::slice::from_ref(b));
        }
        assert!(s.reported().is_some());
    }

    #[test]
    fn estimates_output_when_no_usage_is_sent() {
        let mut s = UsageScanner::new();
        s.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"abcdefgh\"}}]}\n\ndata: [DONE]\n\n");
        assert_eq!(s.reported(), None);
        assert_eq!(s.estimated_output_tokens(), 2);
    }

    #[test]
    fn an_anthropic_stream_split_anywhere_gives_its_usage_and_text() {
        let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"cache_read_input_tokens\":1024,\"output_tokens\":1}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"abcdefgh\"}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":2}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let bytes = stream.as_bytes();
        for split in 1..bytes.len() {
            let mut s = UsageScanner::for_format(&crate::protocol::messages::Messages);
            s.feed(&bytes[..split]);
            s.feed(&bytes[split..]);
            let u = s.reported().expect("usage found");
            assert_eq!(
                (u.input_tokens, u.cached_input_tokens, u.output_tokens),
                (1029, 1024, 2),
                "split at {split}"
            );
            assert!(s.saw_done());
            assert_eq!(s.estimated_output_tokens(), 2);
        }
    }

    #[test]
    fn a_converse_event_stream_split_anywhere_gives_its_usage_and_text() {
        let bytes = std::fs::read(format!(
            "{}/tests/fixtures/eventstream/converse_text.eventstream",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        for split in (1..bytes.len()).step_by(7) {
            let mut s = UsageScanner::for_format(&crate::protocol::converse::Converse);
            s.feed(&bytes[..split]);
            s.feed(&bytes[split..]);
            let u = s.reported().expect("usage found");
            assert_eq!(
                (
                    u.input_tokens,
                    u.cached_input_tokens,
                    u.cache_write_tokens,
                    u.output_tokens
                ),
                (2070, 1024, 1024, 9),
                "split at {split}"
            );
            assert!(s.saw_done());
            // "Hello from Bedrock." is 19 bytes of text.
            assert_eq!(s.estimated_output_tokens(), 5);
        }
        // Cut before `metadata`: no usage, not done, and the text seen so far counted.
        let cut = bytes.len() - 100;
        let mut s = UsageScanner::for_format(&crate::protocol::converse::Converse);
        s.feed(&bytes[..cut]);
        assert!(s.reported().is_none() && !s.saw_done());
        // A corrupted byte ends the reading: what follows is not trusted.
        let mut broken = bytes.clone();
        broken[20] ^= 1;
        let mut s = UsageScanner::for_format(&crate::protocol::converse::Converse);
        s.feed(&broken);
        assert!(s.reported().is_none() && !s.saw_done());
    }

    #[test]
    fn garbage_is_ignored_not_fatal() {
        let mut s = UsageScanner::new();
        s.feed(b"data: {\"usage\": {not json\n\n: comment\nevent: x\ndata: \"content\":\"\\\"\n");
        assert_eq!(s.reported(), None);
    }
}
