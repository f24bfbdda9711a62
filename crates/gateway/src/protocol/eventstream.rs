//! AWS's binary event stream (`application/vnd.amazon.eventstream`), the framing of Bedrock's ConverseStream.
//!
//! The format, as AWS's SDKs read it (botocore `eventstream.py`, aws-c-event-stream `event_stream.c`; the
//! "Event stream encoding" page of the Transcribe and S3 Select guides): each message is
//!
//! ```text
//! total length (u32, big-endian) | headers length (u32) | prelude CRC (CRC-32 of the 8 bytes before)
//! headers | payload | message CRC (CRC-32 of everything before it, prelude CRC included)
//! ```
//!
//! and each header is a name (u8 length, then its bytes), a type byte and a value: 0 true, 1 false (no value),
//! 2 byte, 3 short, 4 integer, 5 long (signed, big-endian), 6 bytes and 7 string (u16 length, then the bytes),
//! 8 timestamp (i64 milliseconds), 9 UUID (16 bytes). Bedrock's messages carry `:message-type` (`event` or
//! `exception`), `:event-type` (or `:exception-type`) and `:content-type`; the payload is JSON.
//!
//! [`Decoder`] reads messages out of chunks split anywhere, keeping only the unfinished one; every CRC is
//! checked, and a message larger than the format allows ends the stream rather than being buffered.

use bytes::{Buf, BytesMut};

/// Total length, headers length and the prelude's CRC.
const PRELUDE: usize = 12;
/// The message CRC at the end.
const TRAILER: usize = 4;
/// The limits botocore enforces: 128 KiB of headers and 24 MiB of payload.
const MAX_HEADERS: usize = 128 * 1024;
const MAX_PAYLOAD: usize = 24 * 1024 * 1024;

/// CRC-32 (IEEE 802.3, the polynomial 0x04C11DB7 reflected), the checksum the format uses, from a table built at
/// compile time.
pub fn crc32(data: &[u8]) -> u32 {
    crc32_on(0, data)
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The CRC-32 of `data` continued from the CRC `crc` of what came before.
fn crc32_on(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// A header's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Integer(i32),
    Long(i64),
    Bytes(Vec<u8>),
    String(String),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// One message: its headers in order, and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Vec<u8>,
}

impl Message {
    /// The value of a string header (`:event-type`, ...).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(n, v)| match v {
            HeaderValue::String(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }

    /// What the message is, in Bedrock's terms: `(":message-type", the event or exception type)`, e.g.
    /// `("event", "contentBlockDelta")` or `("exception", "throttlingException")`.
    pub fn kind(&self) -> (&str, &str) {
        let message_type = self.header(":message-type").unwrap_or("event");
        let name = match message_type {
            "exception" => self.header(":exception-type"),
            "error" => self.header(":error-code"),
            _ => self.header(":event-type"),
        };
        (message_type, name.unwrap_or(""))
    }
}

/// Why a stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("an event stream message's prelude checksum does not match")]
    PreludeChecksum,
    #[error("an event stream message's checksum does not match")]
    MessageChecksum,
    #[error("an event stream message is larger than the format allows ({0} bytes)")]
    TooLarge(usize),
    #[error("an event stream message's lengths do not add up")]
    BadLength,
    #[error("an event stream message has a header that cannot be read")]
    BadHeader,
    #[error("an event stream message repeats the header '{0}'")]
    DuplicateHeader(String),
}

/// Encodes one message (the mock's streams, and tests).
pub fn encode(headers: &[(&str, HeaderValue)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        let name = &name.as_bytes()[..name.len().min(255)];
        h.push(name.len() as u8);
        h.extend_from_slice(name);
        let short_len = |v: &[u8], out: &mut Vec<u8>| {
            let v = &v[..v.len().min(usize::from(u16::MAX))];
            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
            out.extend_from_slice(v);
        };
        match value {
            HeaderValue::Bool(true) => h.push(0),
            HeaderValue::Bool(false) => h.push(1),
            HeaderValue::Byte(v) => {
                h.push(2);
                h.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Short(v) => {
                h.push(3);
                h.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Integer(v) => {
                h.push(4);
                h.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Long(v) => {
                h.push(5);
                h.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Bytes(v) => {
                h.push(6);
                short_len(v, &mut h);
            }
            HeaderValue::String(v) => {
                h.push(7);
                short_len(v.as_bytes(), &mut h);
            }
            HeaderValue::Timestamp(v) => {
                h.push(8);
                h.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Uuid(v) => {
                h.push(9);
                h.extend_from_slice(v);
            }
        }
    }
    let total = PRELUDE + h.len() + payload.len() + TRAILER;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// An event of Bedrock's shape: `:event-type` `name`, JSON `payload`.
pub fn encode_event(name: &str, payload: &[u8]) -> Vec<u8> {
    encode_json(("event", ":event-type"), name, payload)
}

/// An exception of Bedrock's shape: `:exception-type` `name`, JSON `payload` (`{"message":...}`).
pub fn encode_exception(name: &str, payload: &[u8]) -> Vec<u8> {
    encode_json(("exception", ":exception-type"), name, payload)
}

/// A JSON message of `kind` (`:message-type`) named `name` in the header `key`.
fn encode_json((kind, key): (&str, &str), name: &str, payload: &[u8]) -> Vec<u8> {
    encode(
        &[
            (key, HeaderValue::String(name.to_string())),
            (
                ":content-type",
                HeaderValue::String("application/json".into()),
            ),
            (":message-type", HeaderValue::String(kind.into())),
        ],
        payload,
    )
}

/// Reads messages out of a byte stream split anywhere.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    /// Set once the stream could not be read: nothing after it is trusted.
    failed: Option<FrameError>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Adds the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The next complete message, `None` while it is unfinished; after an error, that error every time.
    pub fn next_message(&mut self) -> Option<Result<Message, FrameError>> {
        if let Some(e) = &self.failed {
            return Some(Err(e.clone()));
        }
        match self.try_next() {
            Ok(m) => m.map(Ok),
            Err(e) => {
                self.buf.clear();
                self.failed = Some(e.clone());
                Some(Err(e))
            }
        }
    }

    /// Bytes of an unfinished message held.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    fn try_next(&mut self) -> Result<Option<Message>, FrameError> {
        if self.buf.len() < PRELUDE {
            return Ok(None);
        }
        let word = |at: usize| {
            u32::from_be_bytes([
                self.buf[at],
                self.buf[at + 1],
                self.buf[at + 2],
                self.buf[at + 3],
            ])
        };
        let (total, headers_len, prelude_crc) = (word(0) as usize, word(4) as usize, word(8));
        if crc32(&self.buf[..8]) != prelude_crc {
            return Err(FrameError::PreludeChecksum);
        }
        if headers_len > MAX_HEADERS {
            return Err(FrameError::TooLarge(total));
        }
        let payload_len = total
            .checked_sub(PRELUDE + TRAILER + headers_len)
            .ok_or(FrameError::BadLength)?;
        if payload_len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(total));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let crc = word(total - TRAILER);
        if crc32(&self.buf[..total - TRAILER]) != crc {
            return Err(FrameError::MessageChecksum);
        }
        let headers = read_headers(&self.buf[PRELUDE..PRELUDE + headers_len])?;
        let payload = self.buf[PRELUDE + headers_len..total - TRAILER].to_vec();
        self.buf.advance(total);
        Ok(Some(Message { headers, payload }))
    }
}

fn read_headers(mut b: &[u8]) -> Result<Vec<(String, HeaderValue)>, FrameError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], FrameError> {
        if b.len() < n {
            return Err(FrameError::BadHeader);
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn array<const N: usize>(b: &mut &[u8]) -> Result<[u8; N], FrameError> {
        let mut a = [0u8; N];
        a.copy_from_slice(take(b, N)?);
        Ok(a)
    }
    let mut out: Vec<(String, HeaderValue)> = Vec::new();
    while !b.is_empty() {
        let name_len = usize::from(take(&mut b, 1)?[0]);
        let name = std::str::from_utf8(take(&mut b, name_len)?)
            .map_err(|_| FrameError::BadHeader)?
            .to_string();
        let value = match take(&mut b, 1)?[0] {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(array(&mut b)?)),
            3 => HeaderValue::Short(i16::from_be_bytes(array(&mut b)?)),
            4 => HeaderValue::Integer(i32::from_be_bytes(array(&mut b)?)),
            5 => HeaderValue::Long(i64::from_be_bytes(array(&mut b)?)),
            t @ (6 | 7) => {
                let len = usize::from(u16::from_be_bytes(array(&mut b)?));
                let v = take(&mut b, len)?.to_vec();
                if t == 6 {
                    HeaderValue::Bytes(v)
                } else {
                    HeaderValue::String(String::from_utf8(v).map_err(|_| FrameError::BadHeader)?)
                }
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(array(&mut b)?)),
            9 => HeaderValue::Uuid(array(&mut b)?),
            _ => return Err(FrameError::BadHeader),
        };
        if out.iter().any(|(n, _)| *n == name) {
            return Err(FrameError::DuplicateHeader(name));
        }
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
