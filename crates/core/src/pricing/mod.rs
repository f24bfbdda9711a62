//! The pricing catalog: what one million tokens of each model cost, and how a request's cost is computed.
//!
//! The catalog ships in the repository (`catalog/pricing.toml`, compiled into the binary) and can be overridden
//! and extended from the configuration file. Prices are strings so they are read exactly. This file holds the
//! catalog and its lookups; `price.rs` one model's price and how a request's usage is priced with it.

use std::collections::HashMap;

use serde::Deserialize;

use crate::money::PricePerMtok;

mod price;
pub use price::{
    LongContext, ModelKind, ModelPrice, PriceConfidence, PriceLine, Priced, Rate, TierRates,
    TokenKind,
};

/// The catalog that ships with spendgate.
pub const BUILTIN_CATALOG: &str = include_str!("../../../../catalog/pricing.toml");
/// What to do with a model the catalog has no price for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnknownModelPolicy {
    /// Refuse the request (HTTP 404 with a message naming the missing price).
    Refuse,
    /// Price it with these rates and flag its spend log as low-confidence.
    Fallback {
        input_per_mtok: PricePerMtok,
        output_per_mtok: PricePerMtok,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the pricing file is not valid: {0}")]
    Parse(String),
    #[error("model '{model}' of provider '{provider}' is listed twice in the pricing catalog")]
    Duplicate { provider: String, model: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    model: Vec<ModelPrice>,
}

/// The prices of every known model, looked up by model name (or alias), optionally within a provider.
///
/// Several providers may list the same name (Groq, Together and OpenRouter all serve `openai/gpt-oss-120b`, each
/// at its own price), so a name alone finds an entry only when one provider lists it; `get_for` and `lookup` take
/// the provider and find its own entry first.
#[derive(Debug, Clone)]
pub struct Catalog {
    models: Vec<ModelPrice>,
    /// model name or alias -> the indices in `models` of the entries listing it, one per provider, in file order.
    by_name: HashMap<String, Vec<usize>>,
    unknown: UnknownModelPolicy,
}

/// The price a request will be charged at.
#[derive(Debug, Clone)]
pub struct PriceLookup<'a> {
    pub price: std::borrow::Cow<'a, ModelPrice>,
    pub confidence: PriceConfidence,
}

/// The model a dated snapshot name belongs to: `gpt-4o-2024-11-20` -> `gpt-4o`, `claude-sonnet-4-5-20250929` ->
/// `claude-sonnet-4-5`. `None` when the name does not end in `-YYYY-MM-DD` or `-YYYYMMDD` with a real month
/// and day.
pub fn snapshot_family(model: &str) -> Option<&str> {
    fn digits(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    }
    fn month_day(m: &str, d: &str) -> bool {
        matches!(m.parse::<u32>(), Ok(1..=12)) && matches!(d.parse::<u32>(), Ok(1..=31))
    }
    let (head, tail) = model.rsplit_once('-')?;
    if tail.len() == 8 && digits(tail) {
        // -YYYYMMDD
        return (month_day(&tail[4..6], &tail[6..8]) && !head.is_empty()).then_some(head);
    }
    if tail.len() == 2 && digits(tail) {
        // -YYYY-MM-DD: the day was split off; take the month and the year.
        let (head, month) = head.rsplit_once('-')?;
        let (family, year) = head.rsplit_once('-')?;
        let dated = month.len() == 2 && digits(month) && year.len() == 4 && digits(year);
        return (dated && month_day(month, tail) && !family.is_empty()).then_some(family);
    }
    None
}

/// Whether `s` is a calendar day written `YYYY-MM-DD`.
fn is_day(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && s[..4].bytes().all(|c| c.is_ascii_digit())
        && matches!(s[5..7].parse::<u32>(), Ok(1..=12))
        && matches!(s[8..10].parse::<u32>(), Ok(1..=31))
}

impl Catalog {
    /// Parses one catalog file.
    pub fn parse(text: &str) -> Result<Vec<ModelPrice>, CatalogError> {
        let file: CatalogFile =
            toml::from_str(text).map_err(|e| CatalogError::Parse(e.to_string()))?;
        if let Some(m) = file.model.iter().find(|m| m.provider.is_empty()) {
            return Err(CatalogError::Parse(format!(
                "model '{}' names no provider; add provider = \"...\" to its entry",
                m.model
            )));
        }
        Ok(file.model)
    }

    /// The built-in catalog with `overrides` applied: an override replaces the entry with the same provider and
    /// model, and adds one otherwise.
    pub fn with_overrides(
        overrides: Vec<ModelPrice>,
        unknown: UnknownModelPolicy,
    ) -> Result<Catalog, CatalogError> {
        let mut models = Catalog::parse(BUILTIN_CATALOG)?;
        for o in overrides {
            match models
                .iter_mut()
                .find(|m| m.provider == o.provider && m.model == o.model)
            {
                Some(slot) => *slot = o,
                None => models.push(o),
            }
        }
        Catalog::new(models, unknown)
    }

    pub fn new(
        models: Vec<ModelPrice>,
        unknown: UnknownModelPolicy,
    ) -> Result<Catalog, CatalogError> {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, m) in models.iter().enumerate() {
            if let Some(day) = m.checked.as_deref().filter(|d| !is_day(d)) {
                return Err(CatalogError::Parse(format!(
                    "model '{}' has checked = \"{day}\"; write the day as YYYY-MM-DD",
                    m.model
                )));
            }
            for name in std::iter::once(&m.model).chain(m.aliases.iter()) {
                let entries = by_name.entry(name.clone()).or_default();
                if entries.iter().any(|&j| models[j].provider == m.provider) {
                    return Err(CatalogError::Duplicate {
                        provider: m.provider.clone(),
                        model: name.clone(),
                    });
                }
                entries.push(i);
            }
        }
        Ok(Catalog {
            models,
            by_name,
            unknown,
        })
    }

    /// A catalog with no model, which refuses every unknown one.
    pub fn empty() -> Catalog {
        Catalog {
            models: Vec::new(),
            by_name: HashMap::new(),
            unknown: UnknownModelPolicy::Refuse,
        }
    }

    pub fn models(&self) -> &[ModelPrice] {
        &self.models
    }

    /// The providers the catalog prices, each once, in file order.
    pub fn providers(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for m in &self.models {
            if !seen.contains(&m.provider.as_str()) {
                seen.push(&m.provider);
            }
        }
        seen
    }

    pub fn unknown_policy(&self) -> &UnknownModelPolicy {
        &self.unknown
    }

    /// The catalog entry for `model`, if exactly one provider lists it (else ask `get_for` with the provider).
    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        match self.by_name.get(model).map(Vec::as_slice) {
            Some(&[i]) => Some(&self.models[i]),
            _ => None,
        }
    }

    /// The entry `provider` lists for `model` (by name or alias).
    pub fn get_for(&self, provider: &str, model: &str) -> Option<&ModelPrice> {
        self.by_name
            .get(model)?
            .iter()
            .map(|&i| &self.models[i])
            .find(|m| m.provider == provider)
    }

    /// The entry for `model` served by `provider`: the provider's own, else the only one of that name.
    fn entry(&self, provider: &str, model: &str) -> Option<&ModelPrice> {
        self.get_for(provider, model).or_else(|| self.get(model))
    }

    /// The price to charge for `model` served by `provider`: the catalog entry (exact); for a dated snapshot the
    /// catalog does not list, the entry of the model it is a snapshot of (inferred); else the fallback, or `None`
    /// when the policy refuses unknown models.
    pub fn lookup(&self, provider: &str, model: &str) -> Option<PriceLookup<'_>> {
        if let Some(p) = self.entry(provider, model) {
            return Some(PriceLookup {
                price: std::borrow::Cow::Borrowed(p),
                confidence: PriceConfidence::Exact,
            });
        }
        if let Some(p) = snapshot_family(model).and_then(|f| self.entry(provider, f)) {
            return Some(PriceLookup {
                price: std::borrow::Cow::Borrowed(p),
                confidence: PriceConfidence::Inferred,
            });
        }
        match &self.unknown {
            UnknownModelPolicy::Refuse => None,
            UnknownModelPolicy::Fallback {
                input_per_mtok,
                output_per_mtok,
            } => Some(PriceLookup {
                price: std::borrow::Cow::Owned(ModelPrice {
                    provider: provider.to_string(),
                    model: model.to_string(),
                    aliases: Vec::new(),
                    kind: ModelKind::Chat,
                    input_per_mtok: *input_per_mtok,
                    output_per_mtok: *output_per_mtok,
                    cached_input_per_mtok: None,
                    cache_write_per_mtok: None,
                    max_output_tokens: None,
                    context_window: None,
                    source: Some("fallback price from configuration".to_string()),
                    checked: None,
                    ..ModelPrice::default()
                }),
                confidence: PriceConfidence::Fallback,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;
    use crate::usage::Usage;

    fn builtin() -> Catalog {
        Catalog::with_overrides(Vec::new(), UnknownModelPolicy::Refuse).unwrap()
    }

    #[test]
    fn builtin_catalog_parses_and_every_entry_names_its_source() {
        let c = builtin();
        assert!(c.models().len() >= 10);
        for m in c.models() {
            assert!(
                m.source
                    .as_deref()
                    .is_some_and(|s| s.starts_with("https://")),
                "{} has no source",
                m.model
            );
            assert!(
                m.input_per_mtok > PricePerMtok::ZERO,
                "{} has no input price",
                m.model
            );
        }
        assert!(c.get("gpt-4o-mini").is_some());
        assert!(c.models().iter().any(|m| m.provider == "anthropic"));
    }

    #[test]
    fn anthropic_cache_prices_follow_the_documented_multipliers() {
        // Cache write (5 minutes) = 1.25x input, cache read = 0.1x input, in integer micro-units; Claude 3 Haiku's
        // are rounded on the price page (0.30 and 0.03 for 0.3125 and 0.025). The pricing page lists cheaper cache
        // reads for some Claude 5 models: 0.05x (Opus 5.5, Sonnet 5.5) and 0.025x (Fable 5.1, Mythos 5.1).
        let read_per_mille = |model: &str| match model {
            "claude-opus-5-5" | "claude-sonnet-5-5" => 50,
            "claude-fable-5-1" | "claude-mythos-5-1" => 25,
            _ => 100,
        };
        for m in builtin()
            .models()
            .iter()
            .filter(|m| m.provider == "anthropic" && m.model != "claude-3-haiku-20240307")
        {
            let input = m.input_per_mtok.micros();
            assert_eq!(m.cache_write().micros() * 4, input * 5, "{}", m.model);
            assert_eq!(
                m.cached_input().micros() * 1000,
                input * read_per_mille(&m.model),
                "{}",
                m.model
            );
        }
    }

    #[test]
    fn the_catalog_covers_the_providers_people_run() {
        let c = builtin();
        assert!(c.models().len() >= 150, "{} models", c.models().len());
        let providers = c.providers();
        for p in [
            "openai",
            "anthropic",
            "gemini",
            "mistral",
            "deepseek",
            "xai",
            "groq",
            "together",
            "fireworks",
            "openrouter",
        ] {
            assert!(providers.contains(&p), "no {p} in {providers:?}");
        }
        for m in c.models() {
            assert!(
                m.checked.is_some(),
                "{}/{} has no checked day",
                m.provider,
                m.model
            );
            if m.kind == ModelKind::Embedding {
                assert_eq!(m.output_per_mtok, PricePerMtok::ZERO, "{}", m.model);
            }
        }
    }

    #[test]
    fn one_name_under_several_providers_is_priced_per_provider() {
        let c = builtin();
        let groq = c.get_for("groq", "openai/gpt-oss-120b").unwrap();
        let together = c.get_for("together", "openai/gpt-oss-120b").unwrap();
        assert_eq!(groq.provider, "groq");
        assert_eq!(together.provider, "together");
        // A name several providers list is not priced without knowing which one serves it.
        assert!(c.get("openai/gpt-oss-120b").is_none());
        let l = c.lookup("groq", "openai/gpt-oss-120b").unwrap();
        assert_eq!(l.price.provider, "groq");
        assert!(l.confidence.is_exact());
        assert!(c.lookup("nobody", "openai/gpt-oss-120b").is_none());
        // The same name twice under one provider is still a mistake.
        let twice = "[[model]]\nprovider=\"x\"\nmodel=\"y\"\ninput_per_mtok=\"1\"\noutput_per_mtok=\"1\"\n\
                     [[model]]\nprovider=\"z\"\nmodel=\"y\"\ninput_per_mtok=\"2\"\noutput_per_mtok=\"2\"\n";
        let two = Catalog::new(Catalog::parse(twice).unwrap(), UnknownModelPolicy::Refuse).unwrap();
        assert_eq!(
            two.get_for("z", "y").unwrap().input_per_mtok,
            PricePerMtok::parse("2").unwrap()
        );
    }

    #[test]
    fn snapshot_names_belong_to_their_family() {
        assert_eq!(snapshot_family("gpt-4o-2024-11-20"), Some("gpt-4o"));
        assert_eq!(
            snapshot_family("claude-sonnet-4-5-20991231"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            snapshot_family("openai/gpt-4o-2025-01-31"),
            Some("openai/gpt-4o")
        );
        for not_dated in [
            "gpt-4o",
            "gpt-4o-20241320",
            "gpt-4o-2024-13-01",
            "gpt-4o-2024-11-32",
            "mistral-large-2512",
            "-20240101",
            "o3-mini-2025-1-31",
            "model-2024-11-2a",
        ] {
            assert_eq!(snapshot_family(not_dated), None, "{not_dated}");
        }
    }

    #[test]
    fn a_dated_snapshot_of_a_known_model_is_inferred_never_exact() {
        let c = builtin();
        for (provider, model, family) in [
            ("openai", "gpt-4o-2099-11-20", "gpt-4o"),
            (
                "anthropic",
                "claude-sonnet-4-5-20991231",
                "claude-sonnet-4-5",
            ),
        ] {
            let l = c.lookup(provider, model).unwrap();
            assert_eq!(l.confidence, PriceConfidence::Inferred, "{model}");
            assert!(!l.confidence.is_exact());
            assert_eq!(l.price.model, family);
        }
        // A snapshot the catalog lists is exact, at its own price (gpt-4o-2024-05-13 is not priced as gpt-4o).
        let listed = c.lookup("openai", "gpt-4o-2024-05-13").unwrap();
        assert_eq!(listed.confidence, PriceConfidence::Exact);
        assert_eq!(
            listed.price.input_per_mtok,
            PricePerMtok::parse("5").unwrap()
        );
        // Anything else stays refused, or on the fallback, flagged.
        assert!(c.lookup("openai", "gpt-9-2024-11-20").is_none());
        let fb = Catalog::with_overrides(
            Vec::new(),
            UnknownModelPolicy::Fallback {
                input_per_mtok: PricePerMtok::parse("5").unwrap(),
                output_per_mtok: PricePerMtok::parse("15").unwrap(),
            },
        )
        .unwrap();
        assert_eq!(
            fb.lookup("openai", "gpt-9-2024-11-20").unwrap().confidence,
            PriceConfidence::Fallback
        );
    }

    #[test]
    fn confidence_codes_round_trip_and_unknown_codes_are_never_exact() {
        for c in [
            PriceConfidence::Exact,
            PriceConfidence::Fallback,
            PriceConfidence::Estimated,
            PriceConfidence::Inferred,
        ] {
            assert_eq!(PriceConfidence::from_code(c.code()), c);
        }
        assert_eq!(PriceConfidence::from_code(7), PriceConfidence::Fallback);
    }

    #[test]
    fn a_checked_day_must_be_a_day() {
        let bad = "[[model]]\nprovider=\"x\"\nmodel=\"y\"\ninput_per_mtok=\"1\"\noutput_per_mtok=\"1\"\nchecked=\"28/11/2026\"\n";
        let err = Catalog::new(Catalog::parse(bad).unwrap(), UnknownModelPolicy::Refuse)
            .unwrap_err()
            .to_string();
        assert!(err.contains("YYYY-MM-DD"), "{err}");
    }

    #[test]
    fn cost_uses_each_price_once() {
        let m = ModelPrice {
            provider: "openai".into(),
            model: "m".into(),
            aliases: vec![],
            kind: ModelKind::Chat,
            input_per_mtok: PricePerMtok::parse("2.50").unwrap(),
            output_per_mtok: PricePerMtok::parse("10").unwrap(),
            cached_input_per_mtok: Some(PricePerMtok::parse("1.25").unwrap()),
            cache_write_per_mtok: Some(PricePerMtok::parse("3.75").unwrap()),
            max_output_tokens: None,
            context_window: None,
            source: None,
            checked: None,
            ..ModelPrice::default()
        };
        let u = Usage {
            input_tokens: 1_000,
            output_tokens: 200,
            cached_input_tokens: 400,
            cache_write_tokens: 100,
            ..Usage::default()
        };
        let p = m.price(&u);
        // 500 * 2.50 + 400 * 1.25 + 100 * 3.75 + 200 * 10 = 1250 + 500 + 375 + 2000 = 4125 micro-units per Mtok.
        assert_eq!(p.cost.to_usd_string(), "0.004125");
        assert_eq!(p.lines.iter().map(|l| l.tokens).sum::<u64>(), 1_200);
    }

    #[test]
    fn overrides_replace_and_extend() {
        let text = r#"
[[model]]
provider = "openai"
model = "gpt-4o-mini"
input_per_mtok = "9"
output_per_mtok = "9"

[[model]]
provider = "local"
model = "llama-3-8b"
input_per_mtok = "0"
output_per_mtok = "0"
"#;
        let c = Catalog::with_overrides(Catalog::parse(text).unwrap(), UnknownModelPolicy::Refuse)
            .unwrap();
        assert_eq!(
            c.get("gpt-4o-mini").unwrap().input_per_mtok,
            PricePerMtok::parse("9").unwrap()
        );
        assert!(c.get("llama-3-8b").is_some());
    }

    #[test]
    fn unknown_models_are_refused_or_flagged_never_free() {
        assert!(builtin().lookup("openai", "no-such-model").is_none());
        let fb = UnknownModelPolicy::Fallback {
            input_per_mtok: PricePerMtok::parse("5").unwrap(),
            output_per_mtok: PricePerMtok::parse("15").unwrap(),
        };
        let c = Catalog::with_overrides(Vec::new(), fb).unwrap();
        let l = c.lookup("openai", "no-such-model").unwrap();
        assert_eq!(l.confidence, PriceConfidence::Fallback);
        assert!(
            l.price
                .price(&Usage {
                    input_tokens: 10,
                    ..Usage::default()
                })
                .cost
                > Money::ZERO
        );
    }

    #[test]
    fn a_mistyped_price_is_a_clear_error() {
        let err = Catalog::parse(
            "[[model]]\nprovider=\"x\"\nmodel=\"y\"\ninput_per_mtok=\"abc\"\noutput_per_mtok=\"1\"",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("'abc' is not a decimal number"), "{err}");
        let dup =
            "[[model]]\nprovider=\"x\"\nmodel=\"y\"\ninput_per_mtok=\"1\"\noutput_per_mtok=\"1\"\n";
        let twice = format!("{dup}{dup}");
        assert!(matches!(
            Catalog::new(Catalog::parse(&twice).unwrap(), UnknownModelPolicy::Refuse),
            Err(CatalogError::Duplicate { .. })
        ));
    }
}
