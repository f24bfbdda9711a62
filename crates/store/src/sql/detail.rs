//! A spend log's `detail` column: what a spend log keeps beside its other columns (its price lines, its error
//! and its failed attempts), in one of two forms, written and read alike by both backends.
//!
//! - **Prices only.** Most requests succeed at the first attempt, and every line of their bill is one of the
//!   row's own token counts times a price. For those, `detail` holds just the prices, one `<kind><price>` per
//!   line separated by spaces, the price in micro-dollars per million tokens (`PricePerMtok::micros`):
//!   `i2000000 o8000000` is input at $2.00 and output at $8.00 per million tokens. The lines are rebuilt from
//!   the token columns when the row is read (`PriceLine::of`, which the pricing builds every bill with). An empty text is a request with no line at all.
//! - **JSON** (`{"price_lines":[...],"error":...,"failed_attempts":[...]}`) for everything else, and for every
//!   row written before 2026-12-05.
//!
//! The short form is about 14 bytes against the JSON's 228 (averages of real rows), and the bytes of a spend log are most of what
//! writing it costs (issue 9: the B-tree pages it fills, the WAL frames and the checkpoint that copies them). A
//! row gets it only when rebuilding its lines gives back exactly the lines it was written with, so reading
//! never depends on how the gateway happened to build them.

use std::fmt::Write as _;

use spendgate_core::pricing::{PriceLine, TokenKind};
use spendgate_core::{FailedAttempt, PricePerMtok, SpendEvent, Usage};

/// What a spend log's `detail` holds, read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    pub price_lines: Vec<PriceLine>,
    pub error: Option<String>,
    pub failed_attempts: Vec<FailedAttempt>,
    /// What the provider said the request cost, where it says (`Usage::provider_cost`).
    pub provider_cost: Option<spendgate_core::Money>,
    /// The workflow label the request named when it was recorded as `(other)`
    /// (`Attribution::workflow_requested`).
    pub workflow_requested: Option<String>,
    /// The API the provider was reached through when it was not the client's (`SpendEvent::upstream_api`).
    pub upstream_api: Option<String>,
}

/// The letter of a kind in the short form: only the four kinds the row's token columns count on their own. The
/// parts billed apart (audio, 1-hour writes, reasoning) and fees are not in the columns, so their lines need the
/// JSON form.
fn letter(kind: TokenKind) -> Option<char> {
    match kind {
        TokenKind::Input => Some('i'),
        TokenKind::CachedInput => Some('c'),
        TokenKind::CacheWrite => Some('w'),
        TokenKind::Output => Some('o'),
        TokenKind::AudioInput
        | TokenKind::CacheWrite1h
        | TokenKind::Reasoning
        | TokenKind::AudioOutput
        | TokenKind::WebSearch => None,
    }
}

fn kind_of(letter: char) -> Option<TokenKind> {
    Some(match letter {
        'i' => TokenKind::Input,
        'c' => TokenKind::CachedInput,
        'w' => TokenKind::CacheWrite,
        'o' => TokenKind::Output,
        _ => return None,
    })
}

/// Whether the short form can hold this event's detail: no error, no failed attempt, and every line is what
/// `PriceLine::of` rebuilds from the usage, each kind once.
fn fits_short_form(e: &SpendEvent) -> bool {
    let mut seen = [false; 4];
    e.error.is_none()
        && e.failed_attempts.is_empty()
        && e.upstream_api.is_none()
        && e.usage.provider_cost.is_none()
        && e.attribution.workflow_requested.is_none()
        && e.price_lines.iter().all(|l| {
            let Some(slot) = letter(l.kind).and_then(|_| seen.get_mut(l.kind as usize)) else {
                return false;
            };
            let first = !std::mem::replace(slot, true);
            // Rebuilt from the row's columns alone: the usage without its parts, at the standard rate.
            first && *l == PriceLine::of(l.kind, l.price_per_mtok, &e.usage.totals_only())
        })
}

/// The `detail` text of an event.
pub fn detail_text(e: &SpendEvent) -> String {
    if fits_short_form(e) {
        let mut out = String::with_capacity(12 * e.price_lines.len());
        for (i, l) in e.price_lines.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            // Writing to a String cannot fail.
            let _ = write!(
                out,
                "{}{}",
                letter(l.kind).unwrap_or('?'),
                l.price_per_mtok.micros()
            );
        }
        return out;
    }
    /// The JSON form, serialised straight from the event's fields (no intermediate JSON tree).
    #[derive(serde::Serialize)]
    struct Json<'a> {
        price_lines: &'a [PriceLine],
        error: &'a Option<String>,
        failed_attempts: &'a [FailedAttempt],
        #[serde(skip_serializing_if = "Option::is_none")]
        provider_cost: Option<spendgate_core::Money>,
        #[serde(skip_serializing_if = "Option::is_none")]
        workflow_requested: &'a Option<String>,
        upstream_api: &'a Option<String>,
    }
    serde_json::to_string(&Json {
        price_lines: &e.price_lines,
        error: &e.error,
        failed_attempts: &e.failed_attempts,
        provider_cost: e.usage.provider_cost,
        workflow_requested: &e.attribution.workflow_requested,
        upstream_api: &e.upstream_api,
    })
    .unwrap_or_default()
}

/// Reads a `detail` text back, given the usage of the same row. A text that is neither form (which no version
/// writes) reads as no lines, no error, rather than failing the whole page it is shown on.
pub fn read_detail(text: &str, usage: &Usage) -> Detail {
    if text.starts_with('{') {
        return read_json(text);
    }
    let short: Option<Vec<PriceLine>> = text
        .split_ascii_whitespace()
        .map(|item| {
            let mut chars = item.chars();
            let kind = kind_of(chars.next()?)?;
            let micros: i64 = chars.as_str().parse().ok()?;
            Some(PriceLine::of(
                kind,
                PricePerMtok::from_micros(micros),
                usage,
            ))
        })
        .collect();
    Detail {
        price_lines: short.unwrap_or_default(),
        ..Detail::default()
    }
}

fn read_json(text: &str) -> Detail {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Json {
        price_lines: Vec<PriceLine>,
        error: Option<String>,
        failed_attempts: Vec<FailedAttempt>,
        provider_cost: Option<spendgate_core::Money>,
        workflow_requested: Option<String>,
        upstream_api: Option<String>,
    }
    let j: Json = serde_json::from_str(text).unwrap_or_default();
    Detail {
        price_lines: j.price_lines,
        error: j.error,
        failed_attempts: j.failed_attempts,
        provider_cost: j.provider_cost,
        workflow_requested: j.workflow_requested,
        upstream_api: j.upstream_api,
    }
}

#[cfg(test)]
mod tests {
    use spendgate_core::pricing::{ModelKind, ModelPrice};
    use spendgate_core::{
        Attribution, CacheOutcome, Money, PriceConfidence, RequestStatus, UsageSource,
    };

    use super::*;

    fn usage() -> Usage {
        Usage {
            input_tokens: 3_000,
            output_tokens: 19,
            cached_input_tokens: 300,
            cache_write_tokens: 44,
            ..Usage::default()
        }
    }

    /// An event billed as the gateway bills one (`gateway::meter`): every priced line with tokens.
    fn billed(usage: Usage) -> SpendEvent {
        let price = ModelPrice {
            provider: "openai".into(),
            model: "m".into(),
            aliases: Vec::new(),
            kind: ModelKind::Chat,
            input_per_mtok: PricePerMtok::from_micros(2_000_000),
            output_per_mtok: PricePerMtok::from_micros(8_000_000),
            cached_input_per_mtok: Some(PricePerMtok::from_micros(500_000)),
            cache_write_per_mtok: Some(PricePerMtok::from_micros(2_500_000)),
            max_output_tokens: None,
            context_window: None,
            source: None,
            checked: None,
            ..ModelPrice::default()
        };
        let priced = price.price(&usage);
        SpendEvent {
            id: uuid::Uuid::nil(),
            started_at_ms: 0,
            finished_at_ms: 100,
            latency_ms: 100,
            gateway: "gw-1".into(),
            provider: "openai".into(),
            model: "m".into(),
            endpoint: "chat.completions".into(),
            stream: false,
            attribution: Attribution {
                key_id: 1,
                user: "u".into(),
                team: None,
                workflow: None,
                workflow_requested: None,
            },
            cache_outcome: CacheOutcome::NotCacheable,
            status: RequestStatus::Ok,
            http_status: 200,
            usage,
            usage_source: UsageSource::Reported,
            cost: priced.cost,
            price_confidence: PriceConfidence::Exact,
            price_lines: priced.billed_lines(),
            error: None,
            wallet_id: None,
            fingerprint: None,
            leases: Vec::new(),
            attempts: 1,
            failed_attempts: Vec::new(),
            avoided_cost: Money::ZERO,
            upstream_api: None,
        }
    }

    #[test]
    fn a_plain_bill_is_kept_as_its_prices_and_read_back_whole() {
        let e = billed(usage());
        let text = detail_text(&e);
        assert_eq!(text, "i2000000 c500000 w2500000 o8000000");
        let back = read_detail(&text, &e.usage);
        assert_eq!(back.price_lines, e.price_lines);
        assert_eq!(back.error, None);
        let cost: Money = back.price_lines.iter().map(|l| l.cost).sum();
        assert_eq!(cost, e.cost);
    }

    #[test]
    fn a_bill_without_lines_is_an_empty_text() {
        let e = billed(Usage::default());
        assert!(e.price_lines.is_empty());
        assert_eq!(detail_text(&e), "");
        assert_eq!(read_detail("", &e.usage), Detail::default());
    }

    #[test]
    fn anything_the_columns_cannot_rebuild_is_json() {
        let mut with_error = billed(usage());
        with_error.error = Some("The provider failed: upstream answered 502.".into());
        let mut with_attempt = billed(usage());
        with_attempt.failed_attempts.push(FailedAttempt {
            provider: "openai".into(),
            model: "m".into(),
            http_status: 502,
            error: "connect error".into(),
        });
        let mut other_tokens = billed(usage());
        other_tokens.price_lines[0].tokens += 1;
        let mut other_cost = billed(usage());
        other_cost.price_lines[1].cost = Money::from_picos(1);
        let mut twice = billed(usage());
        twice.price_lines.push(twice.price_lines[0]);
        for e in [with_error, with_attempt, other_tokens, other_cost, twice] {
            let text = detail_text(&e);
            assert!(text.starts_with('{'), "{text}");
            let back = read_detail(&text, &e.usage);
            assert_eq!(back.price_lines, e.price_lines);
            assert_eq!(back.error, e.error);
            assert_eq!(back.failed_attempts, e.failed_attempts);
        }
    }

    #[test]
    fn rows_written_before_the_short_form_still_read() {
        let old = r#"{"price_lines":[{"kind":"input","tokens":2656,"price_per_mtok":"2.00","cost":"0.005312"},{"kind":"output","tokens":19,"price_per_mtok":"8.00","cost":"0.000152"}],"error":null,"failed_attempts":[]}"#;
        let back = read_detail(old, &Usage::default());
        assert_eq!(back.price_lines.len(), 2);
        assert_eq!(back.price_lines[0].tokens, 2656);
        assert_eq!(
            back.price_lines[1].cost,
            Money::parse_usd("0.000152").unwrap()
        );
    }

    #[test]
    fn a_text_of_neither_form_reads_as_nothing() {
        for text in ["x12", "i", "i12 o", "i1.5", "{not json"] {
            assert_eq!(read_detail(text, &usage()), Detail::default(), "{text}");
        }
    }
}
