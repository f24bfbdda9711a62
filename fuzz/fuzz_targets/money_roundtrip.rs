//! Money and prices: parsing any string never panics, and what is parsed formats back to a string that parses
//! to the same value (parse(format(x)) == x), for amounts and for prices.
//!
//! Input: a string to parse. Its first 16 bytes (when there are that many) are also read as an amount in
//! picodollars and its first 8 as a price in microdollars, to round-trip values that no short string reaches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spendgate_core::{Money, PricePerMtok};

fn money_round_trips(m: Money) {
    let s = m.to_usd_string();
    assert_eq!(Money::parse_usd(&s), Ok(m), "{s}");
    let _ = m.display_usd();
}

fn price_round_trips(p: PricePerMtok) {
    let s = p.to_usd_string();
    assert_eq!(PricePerMtok::parse(&s), Ok(p), "{s}");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Money::parse_usd(&String::from_utf8_lossy(data)) {
        money_round_trips(m);
    }
    if let Ok(p) = PricePerMtok::parse(&String::from_utf8_lossy(data)) {
        price_round_trips(p);
        assert!(p.micros() >= 0);
    }
    if let Some(b) = data.first_chunk::<16>() {
        let picos = i128::from_le_bytes(*b);
        // The one amount whose magnitude has no i128: "-170141183460469231731.687303715884105728" is refused as
        // too large rather than read back. Known and harmless (no sum gets near it); everything else round-trips.
        if picos != i128::MIN {
            money_round_trips(Money::from_picos(picos));
        }
    }
    if let Some(b) = data.first_chunk::<8>() {
        let micros = i64::from_le_bytes(*b);
        if micros >= 0 {
            price_round_trips(PricePerMtok::from_micros(micros));
        }
    }
});
