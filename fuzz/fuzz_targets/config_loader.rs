//! The config loader: `Config::parse` on any UTF-8 text, and for a config that parses, its catalog.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spendgate::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text) {
        if let Ok(catalog) = config.catalog() {
            for m in catalog.models() {
                assert!(catalog.get(&m.model).is_some());
            }
        }
    }
});
