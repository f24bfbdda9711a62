//! The pricing file: `Catalog::parse` on any UTF-8 text; for a catalog that parses, `Catalog::new`, lookups, and
//! the price of fixed usages with every model.
//!
//! Invariants: nothing panics or overflows; every cost is the sum of its lines, never negative; every model and
//! alias of a catalog that builds is found under its name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spendgate_core::pricing::{Catalog, UnknownModelPolicy};
use spendgate_core::{Money, Usage};

const USAGES: [Usage; 3] = [
    Usage {
        input_tokens: 1_000,
        output_tokens: 200,
        cached_input_tokens: 400,
        cache_write_tokens: 100,
    },
    // What a broken or hostile upstream could report: every count as large as it can be.
    Usage {
        input_tokens: u64::MAX,
        output_tokens: u64::MAX,
        cached_input_tokens: 0,
        cache_write_tokens: 0,
    },
    Usage {
        input_tokens: u64::MAX,
        output_tokens: u64::MAX,
        cached_input_tokens: u64::MAX / 2,
        cache_write_tokens: u64::MAX / 2,
    },
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(models) = Catalog::parse(text) else {
        return;
    };
    for m in &models {
        for u in &USAGES {
            let p = m.price(u);
            let sum = p
                .lines
                .iter()
                .try_fold(Money::ZERO, |a, l| a.checked_add(l.cost));
            assert_eq!(sum, Some(p.cost));
            assert!(p.cost >= Money::ZERO, "{m:?} {u:?}");
        }
    }
    if let Ok(catalog) = Catalog::new(models.clone(), UnknownModelPolicy::Refuse) {
        for m in catalog.models() {
            for name in std::iter::once(&m.model).chain(&m.aliases) {
                assert!(catalog.get(name).is_some(), "{name} not found");
                assert!(catalog.lookup(&m.provider, name).is_some());
            }
        }
    }
    // As the configuration applies it: on top of the built-in catalog.
    let _ = Catalog::with_overrides(models, UnknownModelPolicy::Refuse);
});
