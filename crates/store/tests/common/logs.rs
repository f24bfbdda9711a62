//! Spend logs read back: what a spend log keeps beside its columns survives the store.

use std::sync::Arc;

use spendgate_core::pricing::{ModelKind, ModelPrice};
use spendgate_core::time::now_ms;
use spendgate_core::{PricePerMtok, Usage};
use spendgate_store::Store;

use super::event;

/// A spend log reads back as the event it was written from: its price lines (kept as bare prices when the token
/// columns rebuild them, as JSON otherwise), its error and its failed attempts.
pub async fn spend_logs_read_back_as_written(store: &dyn Store) {
    let price = ModelPrice {
        provider: "mock".into(),
        model: "m".into(),
        aliases: Vec::new(),
        kind: ModelKind::Chat,
        input_per_mtok: PricePerMtok::parse("3.00").unwrap(),
        output_per_mtok: PricePerMtok::parse("15.00").unwrap(),
        cached_input_per_mtok: Some(PricePerMtok::parse("0.30").unwrap()),
        cache_write_per_mtok: Some(PricePerMtok::parse("3.75").unwrap()),
        max_output_tokens: None,
        source: None,
    };
    let priced = |usage: Usage, error: Option<&str>| {
        let p = price.price(&usage);
        let mut e = event(now_ms(), Some("t"), "u", "m", 0, 0, 0);
        e.usage = usage;
        e.cost = p.cost;
        e.price_lines = p.billed_lines();
        e.error = error.map(str::to_string);
        e
    };
    let usage = |input, output, cached, write| Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        cache_write_tokens: write,
    };
    let mut retried = priced(usage(900, 40, 0, 0), None);
    retried.attempts = 2;
    retried.failed_attempts = vec![spendgate_core::FailedAttempt {
        provider: "first".into(),
        model: "m".into(),
        http_status: 503,
        error: "overloaded".into(),
    }];
    let mut odd_line = priced(usage(500, 10, 0, 0), None);
    odd_line.price_lines[0].tokens = 499;
    let events = vec![
        priced(usage(2_656, 19, 0, 0), None),
        priced(usage(10_000, 700, 6_000, 1_500), None),
        priced(
            usage(0, 0, 0, 0),
            Some("The provider failed: upstream answered 502."),
        ),
        priced(
            usage(120, 0, 0, 0),
            Some("The client went away mid-stream."),
        ),
        retried,
        odd_line,
    ];
    store.write_batch(Arc::new(events.clone())).await.unwrap();
    for e in &events {
        let stored = store.spend_log(e.id).await.unwrap().expect("the spend log");
        assert_eq!(stored.event, *e);
    }
}
