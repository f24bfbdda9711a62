use super::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/eventstream/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Every message `bytes` holds, fed in pieces of `step` bytes.
fn decode_in_steps(bytes: &[u8], step: usize) -> Result<Vec<Message>, FrameError> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(step) {
        d.feed(piece);
        while let Some(m) = d.next_message() {
            out.push(m?);
        }
    }
    assert_eq!(d.pending(), 0, "nothing is left over");
    Ok(out)
}

/// A header as the fixture's JSON writes it: `[name, type, value]` (bytes and UUIDs as text).
fn header_json((name, value): &(String, HeaderValue)) -> serde_json::Value {
    let (kind, v) = match value {
        HeaderValue::Bool(b) => ("bool", serde_json::json!(b)),
        HeaderValue::Byte(v) => ("byte", serde_json::json!(v)),
        HeaderValue::Short(v) => ("short", serde_json::json!(v)),
        HeaderValue::Integer(v) => ("integer", serde_json::json!(v)),
        HeaderValue::Long(v) => ("long", serde_json::json!(v)),
        HeaderValue::Bytes(v) => ("bytes", serde_json::json!(String::from_utf8_lossy(v))),
        HeaderValue::String(v) => ("string", serde_json::json!(v)),
        HeaderValue::Timestamp(v) => ("timestamp", serde_json::json!(v)),
        HeaderValue::Uuid(v) => ("uuid", serde_json::json!(String::from_utf8_lossy(v))),
    };
    serde_json::json!([name, kind, v])
}

/// botocore's published well-formed messages decode to what botocore says, however the bytes are split, and
/// encode back to the same bytes.
#[test]
fn botocores_messages_decode_as_published_however_split() {
    let bytes = fixture("botocore_positive.bin");
    let expected: serde_json::Value =
        serde_json::from_slice(&fixture("botocore_positive.json")).unwrap();
    for step in [1, 2, 3, 7, 16, bytes.len()] {
        let messages = decode_in_steps(&bytes, step).unwrap();
        let got: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| {
                serde_json::json!({
                    "headers": m.headers.iter().map(header_json).collect::<Vec<_>>(),
                    "payload": String::from_utf8_lossy(&m.payload),
                })
            })
            .collect();
        assert_eq!(serde_json::Value::Array(got), expected, "step {step}");
        let again: Vec<u8> = messages
            .iter()
            .flat_map(|m| {
                let headers: Vec<(&str, HeaderValue)> = m
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.clone()))
                    .collect();
                encode(&headers, &m.payload)
            })
            .collect();
        assert_eq!(again, bytes, "the encoder writes the same bytes");
    }
}

#[test]
fn botocores_malformed_messages_are_refused() {
    for (name, expected) in [
        ("corrupted_length", FrameError::PreludeChecksum),
        ("corrupted_header_length", FrameError::PreludeChecksum),
        ("corrupted_payload", FrameError::MessageChecksum),
        ("corrupted_headers", FrameError::MessageChecksum),
        (
            "duplicate_header",
            FrameError::DuplicateHeader("test".into()),
        ),
        ("invalid_headers_length", FrameError::TooLarge(0x3d)),
    ] {
        let got = decode_in_steps(&fixture(&format!("botocore_{name}.bin")), 5);
        assert_eq!(got, Err(expected), "{name}");
    }
}

/// A message announcing more than the format allows ends the stream at its prelude, before its bytes arrive.
#[test]
fn an_oversized_message_is_refused_before_it_is_buffered() {
    let mut prelude = Vec::new();
    prelude.extend_from_slice(&(32 * 1024 * 1024u32).to_be_bytes());
    prelude.extend_from_slice(&0u32.to_be_bytes());
    let crc = crc32(&prelude);
    prelude.extend_from_slice(&crc.to_be_bytes());
    let mut d = Decoder::new();
    d.feed(&prelude);
    assert_eq!(
        d.next_message(),
        Some(Err(FrameError::TooLarge(32 * 1024 * 1024)))
    );
    d.feed(b"more");
    assert!(
        matches!(d.next_message(), Some(Err(_))),
        "nothing after an error is read"
    );
    assert_eq!(d.pending(), 0);
}

/// The check value of CRC-32 (IEEE): the CRC of the nine digits "123456789".
#[test]
fn crc32_has_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

/// A ConverseStream answer framed by Python's own CRC-32 (`make.py`) reads back event by event, with Bedrock's
/// headers, and an exception in the middle of a stream is a message of its own kind.
#[test]
fn a_converse_stream_reads_event_by_event() {
    let messages = decode_in_steps(&fixture("converse_text.eventstream"), 13).unwrap();
    let kinds: Vec<(&str, &str)> = messages.iter().map(Message::kind).collect();
    assert_eq!(
        kinds,
        [
            ("event", "messageStart"),
            ("event", "contentBlockDelta"),
            ("event", "contentBlockDelta"),
            ("event", "contentBlockStop"),
            ("event", "messageStop"),
            ("event", "metadata"),
        ]
    );
    assert_eq!(
        messages[1].header(":content-type"),
        Some("application/json")
    );
    let delta: serde_json::Value = serde_json::from_slice(&messages[1].payload).unwrap();
    assert_eq!(delta["delta"]["text"], "Hello");
    let thrown = decode_in_steps(&fixture("converse_throttled.eventstream"), 64).unwrap();
    assert_eq!(
        thrown.last().map(Message::kind),
        Some(("exception", "throttlingException"))
    );
    assert_eq!(
        encode_event("messageStart", &messages[0].payload),
        fixture("converse_text.eventstream")
            [..encode_event("messageStart", &messages[0].payload).len()],
        "the gateway's encoder frames an event as Bedrock does"
    );
}
