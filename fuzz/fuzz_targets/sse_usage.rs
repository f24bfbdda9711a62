//! The SSE usage extractor: `UsageScanner` fed an arbitrary stream split at arbitrary points.
//!
//! Input: the first two bytes choose how the rest is cut; the rest is the stream. Invariant: however the bytes
//! are cut (one piece, the chosen cuts, one byte at a time), the scanner reports the same usage, the same end
//! (`[DONE]` or the usage chunk) and the same output estimate. The estimate never exceeds a token per byte of stream, and a reported
//! usage never has more cached tokens than prompt tokens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spendgate_gateway::sse::UsageScanner;

fn scan<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> UsageScanner {
    let mut s = UsageScanner::new();
    for p in pieces {
        s.feed(p);
    }
    s
}

fn summary(s: &UsageScanner) -> (Option<spendgate_core::Usage>, bool, u64) {
    (s.reported(), s.saw_done(), s.estimated_output_tokens())
}

fuzz_target!(|data: &[u8]| {
    let (control, stream) = match data {
        [a, b, rest @ ..] => ((*a, *b), rest),
        _ => return,
    };

    let whole = scan([stream]);
    let expect = summary(&whole);

    if let Some(u) = expect.0 {
        assert!(u.cached_input_tokens <= u.input_tokens, "{u:?}");
        assert!(stream.windows(7).any(|w| w == b"\"usage\""));
    }
    if expect.1 {
        // Done means the end marker or the final usage chunk was seen.
        assert!(stream.windows(6).any(|w| w == b"[DONE]") || expect.0.is_some());
    }
    assert!(expect.2 <= (stream.len() as u64).div_ceil(4));

    // Cuts every `step` bytes, starting at `first` (both from the control bytes; empty pieces included).
    let step = usize::from(control.0 % 64) + 1;
    let first = usize::from(control.1).min(stream.len());
    let mut pieces: Vec<&[u8]> = vec![&stream[..first], &[]];
    let mut at = first;
    while at < stream.len() {
        let end = (at + step).min(stream.len());
        pieces.push(&stream[at..end]);
        at = end;
    }
    assert_eq!(summary(&scan(pieces)), expect, "cut at {first} then every {step}");

    // Cut in two at every point chosen by the control bytes, and one byte at a time.
    let mid = (usize::from(control.0) * 256 + usize::from(control.1)) % (stream.len() + 1);
    assert_eq!(summary(&scan([&stream[..mid], &stream[mid..]])), expect, "cut at {mid}");
    assert_eq!(summary(&scan(stream.chunks(1))), expect, "byte by byte");
});
