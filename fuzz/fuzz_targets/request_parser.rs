//! The request parser: what the gateway reads from a client's request body and from an upstream's answer body.
//!
//! Any bytes: `RequestHead` from JSON and its accessors, `usage_of_body`, and the mock provider's fault tag.
//! Invariants: accessors agree with the fields; a usage never bills more cached tokens than prompt tokens; and
//! a one-line body gives the same usage through `usage_of_body` as through the stream scanner.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spendgate_gateway::protocol::{usage_of_body, RequestHead};
use spendgate_gateway::providers::mock::Fault;
use spendgate_gateway::sse::UsageScanner;

fuzz_target!(|data: &[u8]| {
    if let Ok(head) = serde_json::from_slice::<RequestHead>(data) {
        assert_eq!(head.wants_stream(), head.stream == Some(true));
        let usage = head.asked_for_usage();
        assert!(!usage || head.stream_options.is_some());
        let max = head.max_output();
        assert_eq!(
            max,
            head.max_completion_tokens
                .or(head.max_output_tokens)
                .or(head.max_tokens)
        );
    }

    let body_usage = usage_of_body(data);
    if let Ok(Some(u)) = &body_usage {
        assert!(u.cached_input_tokens <= u.input_tokens, "{u:?}");
        assert_eq!(u.cache_write_tokens, 0);
    }

    // A body on one `data:` line reads the same through the stream scanner, when the scanner looks at it at all
    // (it parses only lines that mention "usage" literally).
    if !data.contains(&b'\n') && data.windows(7).any(|w| w == b"\"usage\"") {
        let mut s = UsageScanner::new();
        s.feed(b"data: ");
        s.feed(data);
        s.feed(b"\n");
        let from_body = body_usage.as_ref().ok().copied().flatten();
        assert_eq!(s.reported(), from_body, "scanner and usage_of_body disagree");
    }

    if let Some(f) = Fault::of(data) {
        // A fault is only ever read from an explicit tag.
        assert!(data.windows(12).any(|w| w == b"[mock:fault="), "{f:?}");
    }
});
