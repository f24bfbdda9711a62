//! `spendgate pricing check FILE` and `spendgate pricing import FILE`: the catalog in force compared with a price
//! list someone else keeps, and the differences written as overrides the configuration can include.
//!
//! Two formats are read. LiteLLM's `model_prices_and_context_window.json` (an object of models, each with
//! `litellm_provider` and per-token prices as JSON numbers such as `1.25e-06`) and OpenRouter's `/api/v1/models`
//! answer (`{"data": [{"id": ..., "pricing": {"prompt": "0.00000125", ...}}]}`, per-token prices as strings).
//! Every price is read from its decimal text, never through a float: a JSON number is kept as the text it was
//! written as (`json.rs` below) and scaled by a power of ten exactly.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use spendgate_core::pricing::{Catalog, ModelPrice};
use spendgate_core::PricePerMtok;

/// A price list's per-token price, scaled to USD per million tokens exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TheirPrice {
    /// The price in microdollars per million tokens, when it has at most six decimals per million tokens (the
    /// catalog's unit); `None` when it has more, which the catalog cannot hold.
    pub micros: Option<i64>,
    /// The price per million tokens as decimal text, for showing.
    pub text: String,
}

/// The prices one price list gives one model, by field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TheirModel {
    pub input: Option<TheirPrice>,
    pub output: Option<TheirPrice>,
    pub cached_input: Option<TheirPrice>,
    pub cache_write: Option<TheirPrice>,
}

/// A price list read from a file: (catalog provider, model name) -> prices.
pub type PriceList = BTreeMap<(String, String), TheirModel>;

/// The fields compared, in the order they are shown.
pub const FIELDS: [&str; 4] = [
    "input_per_mtok",
    "output_per_mtok",
    "cached_input_per_mtok",
    "cache_write_per_mtok",
];

/// One field of one model on which the two lists disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub provider: String,
    pub model: String,
    pub field: &'static str,
    pub ours: String,
    pub theirs: TheirPrice,
}

/// What a comparison found.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Catalog entries the price list also prices.
    pub compared: usize,
    pub differences: Vec<Difference>,
}

#[derive(Debug, thiserror::Error)]
pub enum PriceListError {
    #[error("the price list is not valid JSON: {0}; give LiteLLM's model_prices_and_context_window.json or OpenRouter's /api/v1/models answer")]
    Json(String),
    #[error("the price list is neither LiteLLM's model_prices_and_context_window.json (an object of models) nor OpenRouter's /api/v1/models answer (an object with a \"data\" array)")]
    Format,
    #[error("model '{model}': its {field} '{text}' is not a decimal number")]
    Number {
        model: String,
        field: String,
        text: String,
    },
}

/// LiteLLM's provider names for the catalog's providers; others are kept under their own name.
fn catalog_provider(litellm: &str) -> &str {
    match litellm {
        "together_ai" => "together",
        "fireworks_ai" => "fireworks",
        // LiteLLM files Bedrock's Claude models (called through Converse) apart from its other Bedrock models.
        "bedrock_converse" => "bedrock",
        other => other,
    }
}

/// Reads either format.
pub fn read_price_list(text: &str) -> Result<PriceList, PriceListError> {
    let root = json::parse(text).map_err(PriceListError::Json)?;
    let json::Value::Object(fields) = &root else {
        return Err(PriceListError::Format);
    };
    if let Some(json::Value::Array(models)) = root.get("data") {
        return read_openrouter(models);
    }
    let mut list = PriceList::new();
    for (key, v) in fields {
        let Some(provider) = v.get("litellm_provider").and_then(json::Value::as_str) else {
            // LiteLLM's file opens with a `sample_spec` entry that documents the fields; it prices nothing.
            continue;
        };
        let model = key
            .strip_prefix(provider)
            .and_then(|m| m.strip_prefix('/'))
            .unwrap_or(key);
        let price = |field: &str| -> Result<Option<TheirPrice>, PriceListError> {
            match v.get(field) {
                Some(json::Value::Number(n)) => {
                    per_mtok(n).map(Some).ok_or_else(|| PriceListError::Number {
                        model: key.clone(),
                        field: field.to_string(),
                        text: n.clone(),
                    })
                }
                _ => Ok(None),
            }
        };
        let theirs = TheirModel {
            input: price("input_cost_per_token")?,
            output: price("output_cost_per_token")?,
            cached_input: price("cache_read_input_token_cost")?,
            cache_write: price("cache_creation_input_token_cost")?,
        };
        if theirs.input.is_none() && theirs.output.is_none() {
            continue;
        }
        // A model listed twice (LiteLLM lists some with and without their provider prefix) keeps its first entry.
        list.entry((catalog_provider(provider).to_string(), model.to_string()))
            .or_insert(theirs);
    }
    Ok(list)
}

fn read_openrouter(models: &[json::Value]) -> Result<PriceList, PriceListError> {
    let mut list = PriceList::new();
    for m in models {
        let (Some(id), Some(pricing)) =
            (m.get("id").and_then(json::Value::as_str), m.get("pricing"))
        else {
            continue;
        };
        let price = |field: &str| -> Result<Option<TheirPrice>, PriceListError> {
            match pricing.get(field).and_then(json::Value::as_str) {
                // OpenRouter writes -1 for a price that depends on the route taken (its auto router).
                Some(t) if t.starts_with('-') => Ok(None),
                Some(t) => per_mtok(t).map(Some).ok_or_else(|| PriceListError::Number {
                    model: id.to_string(),
                    field: field.to_string(),
                    text: t.to_string(),
                }),
                None => Ok(None),
            }
        };
        list.insert(
            ("openrouter".to_string(), id.to_string()),
            TheirModel {
                input: price("prompt")?,
                output: price("completion")?,
                cached_input: price("input_cache_read")?,
                cache_write: price("input_cache_write")?,
            },
        );
    }
    Ok(list)
}

/// A per-token price written as decimal text (`0.00000125`, `1.25e-06`, `3E-7`), as USD per million tokens. Exact:
/// the digits are kept and the decimal point moved, so nothing is rounded. `None` when the text is not a
/// non-negative decimal number.
pub fn per_mtok(text: &str) -> Option<TheirPrice> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    // No price is within forty powers of ten of a dollar; a wilder exponent is a mistake, not a price.
    if exponent.abs() > 40 {
        return None;
    }
    let mantissa = mantissa.strip_prefix('+').unwrap_or(mantissa);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits: String = format!("{int}{frac}");
    // value = digits x 10^(exponent - frac.len()); per million tokens, 10^6 more.
    let point = i64::from(exponent) - i64::try_from(frac.len()).ok()? + 6;
    let digits = digits.trim_start_matches('0');
    let text = if digits.is_empty() {
        "0".to_string()
    } else if point >= 0 {
        format!("{digits}{}", "0".repeat(usize::try_from(point).ok()?))
    } else {
        let shift = usize::try_from(-point).ok()?;
        let padded = format!("{}{digits}", "0".repeat(shift.saturating_sub(digits.len())));
        let (i, f) = padded.split_at(padded.len() - shift);
        let f = f.trim_end_matches('0');
        match (i.is_empty(), f.is_empty()) {
            (_, true) if i.is_empty() => "0".to_string(),
            (_, true) => i.to_string(),
            (true, false) => format!("0.{f}"),
            (false, false) => format!("{i}.{f}"),
        }
    };
    let micros = PricePerMtok::parse(&text).ok().map(PricePerMtok::micros);
    Some(TheirPrice { micros, text })
}

/// Compares every catalog entry the price list also prices (by its name or an alias), field by field. A field the
/// price list leaves out is not compared.
pub fn compare(catalog: &Catalog, list: &PriceList) -> Comparison {
    let mut out = Comparison::default();
    for m in catalog.models() {
        let Some(theirs) = std::iter::once(&m.model)
            .chain(&m.aliases)
            .find_map(|name| list.get(&(m.provider.clone(), name.clone())))
        else {
            continue;
        };
        out.compared += 1;
        for (field, ours, theirs) in fields(m, theirs) {
            let Some(theirs) = theirs else { continue };
            if theirs.micros != Some(ours.micros()) {
                out.differences.push(Difference {
                    provider: m.provider.clone(),
                    model: m.model.clone(),
                    field,
                    ours: ours.to_usd_string(),
                    theirs: theirs.clone(),
                });
            }
        }
    }
    out
}

fn fields<'a>(
    m: &ModelPrice,
    t: &'a TheirModel,
) -> [(&'static str, PricePerMtok, Option<&'a TheirPrice>); 4] {
    [
        (FIELDS[0], m.input_per_mtok, t.input.as_ref()),
        (FIELDS[1], m.output_per_mtok, t.output.as_ref()),
        (FIELDS[2], m.cached_input(), t.cached_input.as_ref()),
        (FIELDS[3], m.cache_write(), t.cache_write.as_ref()),
    ]
}

/// The report `pricing check` prints: one line per difference, then the counts.
pub fn report(c: &Comparison) -> String {
    let mut s = String::new();
    if !c.differences.is_empty() {
        let _ = writeln!(
            s,
            "{:<58} {:<22} {:>12} {:>12}",
            "model", "field", "ours", "theirs"
        );
    }
    for d in &c.differences {
        let _ = writeln!(
            s,
            "{:<58} {:<22} {:>12} {:>12}",
            format!("{}/{}", d.provider, d.model),
            d.field,
            d.ours,
            d.theirs.text
        );
    }
    let models: std::collections::BTreeSet<_> = c
        .differences
        .iter()
        .map(|d| (&d.provider, &d.model))
        .collect();
    let _ = writeln!(
        s,
        "{} models compared, {} differences in {} models",
        c.compared,
        c.differences.len(),
        models.len()
    );
    s
}

/// The differences of `providers` as catalog entries taking the price list's prices, in the catalog's format, for
/// a file `[pricing] include` names. A price the catalog cannot hold exactly (more than six decimals per million
/// tokens) is left as it is and named in the returned notes.
pub fn overrides(
    catalog: &Catalog,
    c: &Comparison,
    providers: &[String],
    source: &str,
    day: &str,
) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    let mut changed: BTreeMap<(String, String), ModelPrice> = BTreeMap::new();
    for d in c
        .differences
        .iter()
        .filter(|d| providers.contains(&d.provider))
    {
        let Some(micros) = d.theirs.micros else {
            notes.push(format!(
                "{}/{} {}: {} has more than six decimals per million tokens; left at {}",
                d.provider, d.model, d.field, d.theirs.text, d.ours
            ));
            continue;
        };
        let key = (d.provider.clone(), d.model.clone());
        let Some(entry) = changed.get(&key).cloned().or_else(|| {
            catalog
                .get_for(&d.provider, &d.model)
                .cloned()
                .map(|m| ModelPrice {
                    // Fields the price list did not change keep their effective value, so that the entry stays
                    // whole when its input price moves.
                    cached_input_per_mtok: Some(m.cached_input()),
                    cache_write_per_mtok: m.cache_write_per_mtok,
                    source: Some(source.to_string()),
                    checked: Some(day.to_string()),
                    ..m
                })
        }) else {
            continue;
        };
        let price = PricePerMtok::from_micros(micros);
        let mut entry = entry;
        match d.field {
            "input_per_mtok" => entry.input_per_mtok = price,
            "output_per_mtok" => entry.output_per_mtok = price,
            "cached_input_per_mtok" => entry.cached_input_per_mtok = Some(price),
            _ => entry.cache_write_per_mtok = Some(price),
        }
        changed.insert(key, entry);
    }
    let mut s = format!(
        "# Price overrides written by `spendgate pricing import` from {source} on {day}.\n\
         # Include this file from the configuration: [pricing] include = [\"<this file>\"].\n"
    );
    for m in changed.values() {
        s.push_str(&entry_toml(m));
    }
    (s, notes)
}

/// One catalog entry in the catalog file's format.
fn entry_toml(m: &ModelPrice) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut s = String::from("\n[[model]]\n");
    let _ = writeln!(s, "provider = {}", q(&m.provider));
    let _ = writeln!(s, "model = {}", q(&m.model));
    if !m.aliases.is_empty() {
        let a: Vec<String> = m.aliases.iter().map(|a| q(a)).collect();
        let _ = writeln!(s, "aliases = [{}]", a.join(", "));
    }
    let kind = match m.kind {
        spendgate_core::pricing::ModelKind::Chat => "chat",
        spendgate_core::pricing::ModelKind::Embedding => "embedding",
    };
    let _ = writeln!(s, "kind = \"{kind}\"");
    let _ = writeln!(s, "input_per_mtok = \"{}\"", m.input_per_mtok);
    let _ = writeln!(s, "output_per_mtok = \"{}\"", m.output_per_mtok);
    if let Some(p) = m.cached_input_per_mtok {
        let _ = writeln!(s, "cached_input_per_mtok = \"{p}\"");
    }
    if let Some(p) = m.cache_write_per_mtok {
        let _ = writeln!(s, "cache_write_per_mtok = \"{p}\"");
    }
    if let Some(n) = m.max_output_tokens {
        let _ = writeln!(s, "max_output_tokens = {n}");
    }
    if let Some(n) = m.context_window {
        let _ = writeln!(s, "context_window = {n}");
    }
    if let Some(src) = &m.source {
        let _ = writeln!(s, "source = {}", q(src));
    }
    if let Some(day) = &m.checked {
        let _ = writeln!(s, "checked = {}", q(day));
    }
    s
}

/// A small JSON reader that keeps each number as the text it was written as, so that a price is never read
/// through a float (serde_json's exact-number feature is not in the tree).
mod json {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        /// The number's text, as written.
        Number(String),
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }

        pub fn as_str(&self) -> Option<&str> {
            match self {
                Value::String(s) => Some(s),
                _ => None,
            }
        }
    }

    /// Parses a whole document; the error names the byte offset.
    pub fn parse(text: &str) -> Result<Value, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            at: 0,
            depth: 0,
        };
        let v = p.value()?;
        p.space();
        if p.at != p.s.len() {
            return Err(p.fail("text after the document"));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        at: usize,
        depth: usize,
    }

    /// Deeper nesting than any price list has is refused rather than risk the stack.
    const MAX_DEPTH: usize = 128;

    impl Parser<'_> {
        fn fail(&self, what: &str) -> String {
            format!("{what} at byte {}", self.at)
        }

        fn space(&mut self) {
            while self
                .s
                .get(self.at)
                .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            {
                self.at += 1;
            }
        }

        fn eat(&mut self, b: u8) -> bool {
            self.space();
            if self.s.get(self.at) == Some(&b) {
                self.at += 1;
                true
            } else {
                false
            }
        }

        fn value(&mut self) -> Result<Value, String> {
            self.space();
            match self.s.get(self.at) {
                Some(b'{') => self.nested(|p| p.object()),
                Some(b'[') => self.nested(|p| p.array()),
                Some(b'"') => self.string().map(Value::String),
                Some(b't') => self.word("true", Value::Bool(true)),
                Some(b'f') => self.word("false", Value::Bool(false)),
                Some(b'n') => self.word("null", Value::Null),
                Some(b'-' | b'0'..=b'9') => Ok(self.number()),
                _ => Err(self.fail("expected a value")),
            }
        }

        fn nested(
            &mut self,
            f: impl FnOnce(&mut Self) -> Result<Value, String>,
        ) -> Result<Value, String> {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(self.fail("nesting too deep"));
            }
            self.at += 1;
            let v = f(self);
            self.depth -= 1;
            v
        }

        fn word(&mut self, w: &str, v: Value) -> Result<Value, String> {
            if self.s[self.at..].starts_with(w.as_bytes()) {
                self.at += w.len();
                Ok(v)
            } else {
                Err(self.fail("expected a value"))
            }
        }

        fn number(&mut self) -> Value {
            let start = self.at;
            while self
                .s
                .get(self.at)
                .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
            {
                self.at += 1;
            }
            Value::Number(String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
        }

        fn object(&mut self) -> Result<Value, String> {
            let mut fields = Vec::new();
            if self.eat(b'}') {
                return Ok(Value::Object(fields));
            }
            loop {
                self.space();
                let k = self.string()?;
                if !self.eat(b':') {
                    return Err(self.fail("expected ':'"));
                }
                fields.push((k, self.value()?));
                if self.eat(b',') {
                    continue;
                }
                if self.eat(b'}') {
                    return Ok(Value::Object(fields));
                }
                return Err(self.fail("expected ',' or '}'"));
            }
        }

        fn array(&mut self) -> Result<Value, String> {
            let mut items = Vec::new();
            if self.eat(b']') {
                return Ok(Value::Array(items));
            }
            loop {
                items.push(self.value()?);
                if self.eat(b',') {
                    continue;
                }
                if self.eat(b']') {
                    return Ok(Value::Array(items));
                }
                return Err(self.fail("expected ',' or ']'"));
            }
        }

        fn hex4(&mut self) -> Result<u32, String> {
            let h = self
                .s
                .get(self.at..self.at + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .ok_or_else(|| self.fail("bad \\u escape"))?;
            self.at += 4;
            Ok(h)
        }

        fn string(&mut self) -> Result<String, String> {
            if self.s.get(self.at) != Some(&b'"') {
                return Err(self.fail("expected a string"));
            }
            self.at += 1;
            let mut out: Vec<u8> = Vec::new();
            loop {
                let Some(&b) = self.s.get(self.at) else {
                    return Err(self.fail("unterminated string"));
                };
                self.at += 1;
                match b {
                    b'"' => break,
                    b'\\' => {
                        let Some(&e) = self.s.get(self.at) else {
                            return Err(self.fail("unterminated string"));
                        };
                        self.at += 1;
                        let c = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hi = self.hex4()?;
                                let code = if (0xD800..0xDC00).contains(&hi)
                                    && self.s[self.at..].starts_with(b"\\u")
                                {
                                    self.at += 2;
                                    let lo = self.hex4()?;
                                    0x10000
                                        + ((hi - 0xD800) << 10)
                                        + (lo.wrapping_sub(0xDC00) & 0x3FF)
                                } else {
                                    hi
                                };
                                char::from_u32(code).unwrap_or('\u{FFFD}')
                            }
                            _ => return Err(self.fail("bad escape")),
                        };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => out.push(b),
                }
            }
            String::from_utf8(out).map_err(|_| self.fail("a string that is not UTF-8"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spendgate_core::pricing::UnknownModelPolicy;

    fn builtin() -> Catalog {
        Catalog::with_overrides(Vec::new(), UnknownModelPolicy::Refuse).unwrap()
    }

    #[test]
    fn per_token_decimal_text_becomes_an_exact_price_per_million() {
        let p = |t: &str| per_mtok(t).unwrap();
        assert_eq!(p("1.25e-06").text, "1.25");
        assert_eq!(p("1.25e-06").micros, Some(1_250_000));
        assert_eq!(p("0.00000015").text, "0.15");
        assert_eq!(p("3E-7").text, "0.3");
        assert_eq!(p("2.8e-9").text, "0.0028");
        assert_eq!(p("0").text, "0");
        assert_eq!(p("0.0").micros, Some(0));
        assert_eq!(p("1e-05").text, "10");
        assert_eq!(p("15").text, "15000000");
        // A float would read 1.1e-06 as 1.0999999999999998e-06; the text is kept instead.
        assert_eq!(p("1.1e-06").micros, Some(1_100_000));
        // More than six decimals per million tokens: shown exactly, not representable in the catalog.
        let fine = p("1.234567891e-07");
        assert_eq!(fine.text, "0.1234567891");
        assert_eq!(fine.micros, None);
        for bad in ["", "-1e-6", "abc", "1.2.3", "e5", "1e", "1e-999999"] {
            assert!(per_mtok(bad).is_none(), "{bad}");
        }
    }

    const LITELLM: &str = r#"{
        "sample_spec": {"input_cost_per_token": 0, "litellm_provider": "one of https://docs.litellm.ai/docs/providers"},
        "gpt-4o-mini": {"litellm_provider": "openai", "mode": "chat",
            "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07, "cache_read_input_token_cost": 7.5e-08},
        "gpt-4o-mini-2024-07-18": {"litellm_provider": "openai", "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07},
        "claude-haiku-4-5": {"litellm_provider": "anthropic", "input_cost_per_token": 1e-06, "output_cost_per_token": 5.5e-06,
            "cache_read_input_token_cost": 1e-07, "cache_creation_input_token_cost": 1.25e-06},
        "groq/openai/gpt-oss-120b": {"litellm_provider": "groq", "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07},
        "together_ai/openai/gpt-oss-120b": {"litellm_provider": "together_ai", "input_cost_per_token": 1.5e-07,
            "output_cost_per_token": 6.1234567e-07},
        "no-such-model": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06},
        "tts-1": {"litellm_provider": "openai", "input_cost_per_character": 1.5e-05}
    }"#;

    #[test]
    fn a_litellm_file_is_compared_field_by_field() {
        let list = read_price_list(LITELLM).unwrap();
        assert!(list.contains_key(&("groq".into(), "openai/gpt-oss-120b".into())));
        assert!(list.contains_key(&("together".into(), "openai/gpt-oss-120b".into())));
        let c = compare(&builtin(), &list);
        // gpt-4o-mini (its snapshot is an alias of the same entry), claude-haiku-4-5, and gpt-oss-120b on Groq and
        // on Together.
        assert_eq!(c.compared, 4, "{:?}", c.differences);
        let d: Vec<(&str, &str, &str, &str)> = c
            .differences
            .iter()
            .map(|d| {
                (
                    d.model.as_str(),
                    d.field,
                    d.ours.as_str(),
                    d.theirs.text.as_str(),
                )
            })
            .collect();
        assert!(
            d.contains(&("claude-haiku-4-5", "output_per_mtok", "5.00", "5.5")),
            "{d:?}"
        );
        let together = c
            .differences
            .iter()
            .find(|d| d.provider == "together")
            .unwrap();
        assert_eq!(together.theirs.micros, None);
        assert_eq!(c.differences.len(), 2, "{d:?}");
        let text = report(&c);
        assert!(text.contains("anthropic/claude-haiku-4-5"), "{text}");
        assert!(
            text.ends_with("4 models compared, 2 differences in 2 models\n"),
            "{text}"
        );
    }

    #[test]
    fn an_openrouter_answer_is_read_as_openrouter_prices() {
        let answer = r#"{"data": [
            {"id": "openai/gpt-4o-mini", "name": "OpenAI: GPT-4o-mini",
             "pricing": {"prompt": "0.00000015", "completion": "0.0000007", "input_cache_read": "0.000000075"}},
            {"id": "openrouter/auto", "pricing": {"prompt": "-1", "completion": "-1"}}
        ]}"#;
        let list = read_price_list(answer).unwrap();
        let c = compare(&builtin(), &list);
        assert_eq!(c.compared, 1);
        assert_eq!(c.differences.len(), 1);
        let d = &c.differences[0];
        assert_eq!(
            (d.provider.as_str(), d.model.as_str()),
            ("openrouter", "openai/gpt-4o-mini")
        );
        assert_eq!(
            (d.field, d.ours.as_str(), d.theirs.text.as_str()),
            ("output_per_mtok", "0.60", "0.7")
        );
    }

    #[test]
    fn import_writes_the_differences_of_the_named_providers_as_includable_overrides() {
        let catalog = builtin();
        let c = compare(&catalog, &read_price_list(LITELLM).unwrap());
        let (text, notes) = overrides(
            &catalog,
            &c,
            &["anthropic".to_string(), "together".to_string()],
            "litellm.json",
            "2026-12-07",
        );
        // Together's output price cannot be held exactly; it is named, not rounded.
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("together/openai/gpt-oss-120b"),
            "{notes:?}"
        );
        let parsed = Catalog::parse(&text).unwrap();
        assert_eq!(parsed.len(), 1, "{text}");
        assert_eq!(parsed[0].model, "claude-haiku-4-5");
        assert_eq!(
            parsed[0].output_per_mtok,
            PricePerMtok::parse("5.5").unwrap()
        );
        assert_eq!(parsed[0].checked.as_deref(), Some("2026-12-07"));
        // Applied as overrides, the catalog then agrees with the price list on what was imported.
        let merged = Catalog::with_overrides(parsed, UnknownModelPolicy::Refuse).unwrap();
        let again = compare(&merged, &read_price_list(LITELLM).unwrap());
        assert!(
            again.differences.iter().all(|d| d.provider != "anthropic"),
            "{:?}",
            again.differences
        );
    }

    #[test]
    fn json_strings_numbers_and_errors() {
        let v = json::parse(
            r#"{"a": "x\"\u00e9\ud83d\ude00", "b": [1.5e-7, -2, true, null], "c": {}}"#,
        )
        .unwrap();
        assert_eq!(v.get("a").and_then(json::Value::as_str), Some("x\"é😀"));
        assert_eq!(
            v.get("b"),
            Some(&json::Value::Array(vec![
                json::Value::Number("1.5e-7".into()),
                json::Value::Number("-2".into()),
                json::Value::Bool(true),
                json::Value::Null
            ]))
        );
        for bad in ["{", "[1,]", "{\"a\" 1}", "\"abc", "[1] x", "nul"] {
            assert!(json::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            read_price_list("[1]"),
            Err(PriceListError::Format)
        ));
        assert!(matches!(
            read_price_list(r#"{"m": {"litellm_provider": "openai", "input_cost_per_token": 1e}}"#),
            Err(PriceListError::Number { .. })
        ));
    }
}
