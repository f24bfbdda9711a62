//! Reads usage out of an OpenAI server-sent-event stream as its bytes go by, without changing them.
//!
//! Chunks arrive split anywhere, so the scanner keeps the unfinished last line between chunks. Only `data:`
//! lines that mention `"usage"` are parsed as JSON; for every other line it counts the bytes of
//! `"content"` strings, which gives an estimate of the output when the upstream sends no usage at all.

use spendgate_core::usage::estimate_tokens;
use spendgate_core::Usage;

use crate::protocol::WithUsage;

#[derive(Debug, Default)]
pub struct UsageScanner {
    partial: Vec<u8>,
    usage: Option<Usage>,
    content_bytes: usize,
    saw_done: bool,
    /// Lines longer than this are not kept whole (a hostile upstream cannot make us buffer without bound).
    max_line: usize,
}

const MAX_LINE: usize = 1 << 20;

impl UsageScanner {
    pub fn new() -> UsageScanner {
        UsageScanner {
            max_line: MAX_LINE,
            ..UsageScanner::default()
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
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
        if data == b"[DONE]" {
            self.saw_done = true;
            return;
        }
        if contains(data, b"\"usage\"") {
            if let Ok(w) = serde_json::from_slice::<WithUsage>(data) {
                if let Some(u) = w.usage {
                    self.usage = Some(u.normalise());
                }
            }
        }
        self.content_bytes += content_len(data);
    }

    /// The usage the stream reported, if any.
    pub fn reported(&self) -> Option<Usage> {
        self.usage
    }

    /// Output tokens estimated from the content seen so far.
    pub fn estimated_output_tokens(&self) -> u64 {
        estimate_tokens(self.content_bytes)
    }

    pub fn saw_done(&self) -> bool {
        self.saw_done
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Bytes inside `"content":"..."` strings of one data line (escapes counted as written).
fn content_len(data: &[u8]) -> usize {
    const KEY: &[u8] = b"\"content\":\"";
    let mut total = 0;
    let mut i = 0;
    while let Some(off) = data[i..].windows(KEY.len()).position(|w| w == KEY) {
        let start = i + off + KEY.len();
        let mut j = start;
        while j < data.len() {
            match data[j] {
                b'\\' => j += 2,
                b'"' => break,
                _ => j += 1,
            }
        }
        total += j.min(data.len()) - start;
        i = j.min(data.len());
        if i >= data.len() {
            break;
        }
    }
    total
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
    fn garbage_is_ignored_not_fatal() {
        let mut s = UsageScanner::new();
        s.feed(b"data: {\"usage\": {not json\n\n: comment\nevent: x\ndata: \"content\":\"\\\"\n");
        assert_eq!(s.reported(), None);
    }
}
