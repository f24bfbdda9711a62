//! One test per billing rule: an answer shaped as the provider's API reference shows it, read by its wire format
//! and priced from the shipped catalog, to the exact picodollar, with the bill line that shows why.

use spendgate_core::pricing::{
    Catalog, ModelPrice, PriceLine, Rate, TokenKind, UnknownModelPolicy,
};
use spendgate_core::{Money, PricePerMtok};

use super::{chat::Chat, gemini::Gemini, messages::Messages, responses::Responses, WireFormat};

fn catalog() -> Catalog {
    Catalog::with_overrides(Vec::new(), UnknownModelPolicy::Refuse).unwrap()
}

fn price(provider: &str, model: &str) -> ModelPrice {
    catalog().get_for(provider, model).unwrap().clone()
}

/// Micro-dollars per million tokens are picodollars per token: `tokens x micros` is a line's cost.
fn pico(tokens: u64, usd_per_mtok: &str) -> i128 {
    i128::from(tokens) * i128::from(PricePerMtok::parse(usd_per_mtok).unwrap().micros())
}

fn line(lines: &[PriceLine], kind: TokenKind) -> PriceLine {
    *lines.iter().find(|l| l.kind == kind).unwrap()
}

/// Anthropic's prompt caching guide ("Tracking cache performance" and "Pricing"): `cache_creation` splits the
/// written tokens by how long they live; a 1-hour write costs 2x the base input price, a 5-minute one 1.25x.
#[test]
fn anthropic_one_hour_cache_writes_cost_twice_the_input_price() {
    let body = br#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"ok"}],
        "usage":{"input_tokens":2048,"cache_read_input_tokens":1800,"cache_creation_input_tokens":556,
                 "cache_creation":{"ephemeral_5m_input_tokens":456,"ephemeral_1h_input_tokens":100},
                 "output_tokens":503}}"#;
    let u = Messages.body_usage(body).unwrap().unwrap();
    assert_eq!((u.cache_write_tokens, u.cache_write_1h_tokens), (556, 100));
    let priced = price("anthropic", "claude-haiku-4-5").price(&u);
    let expected = pico(2048, "1.00")
        + pico(1800, "0.10")
        + pico(456, "1.25")
        + pico(100, "2.00")
        + pico(503, "5.00");
    assert_eq!(priced.cost.picos(), expected);
    assert_eq!(line(&priced.lines, TokenKind::CacheWrite1h).tokens, 100);
    assert_eq!(line(&priced.lines, TokenKind::CacheWrite).tokens, 456);
    // Billed at the 5-minute price, as before this rule, it would have been 35 % short on these 100 tokens.
    assert!(pico(100, "2.00") > pico(100, "1.25"));
}

/// Gemini's pricing page: Gemini 2.5 Pro bills every token of a prompt above 200K tokens at the higher rates
/// (input $2.50, output $15.00). Usage as Gemini's OpenAI-compatible endpoint reports it.
#[test]
fn a_prompt_above_the_long_context_threshold_is_billed_whole_at_the_long_context_rates() {
    let p = price("gemini", "gemini-2.5-pro");
    let at = |prompt: u64| {
        let body = format!(
            r#"{{"id":"c","object":"chat.completion","choices":[],"usage":{{"prompt_tokens":{prompt},"completion_tokens":1000,"total_tokens":{}}}}}"#,
            prompt + 1000
        );
        p.price(&Chat.body_usage(body.as_bytes()).unwrap().unwrap())
    };
    let long = at(250_000);
    assert_eq!(
        long.cost.picos(),
        pico(250_000, "2.50") + pico(1000, "15.00")
    );
    assert!(long
        .billed_lines()
        .iter()
        .all(|l| l.rate == Rate::LongContext));
    let short = at(200_000);
    assert_eq!(
        short.cost.picos(),
        pico(200_000, "1.25") + pico(1000, "10.00")
    );
    assert!(short
        .billed_lines()
        .iter()
        .all(|l| l.rate == Rate::Standard));
}

/// Gemini's own API (ai.google.dev/api/generate-content, `UsageMetadata`) reports the thoughts apart from the
/// answer and the context-cache reads within the prompt; the pricing page bills Gemini 3 Flash at $0.50 input,
/// $3.00 output "including thinking tokens", $0.05 for cached input; past 200K tokens Gemini 2.5 Pro bills the
/// whole prompt at its long-context rates, tool results given back to the model counted in the prompt.
#[test]
fn gemini_thoughts_are_billed_as_output_and_cache_reads_at_the_cache_price() {
    let body = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"ok"}]},"finishReason":"STOP"}],
        "usageMetadata":{"promptTokenCount":5000,"cachedContentTokenCount":4096,"candidatesTokenCount":120,
                         "thoughtsTokenCount":880,"totalTokenCount":6000},"modelVersion":"gemini-3-flash-preview"}"#;
    let u = Gemini.body_usage(body).unwrap().unwrap();
    let priced = price("gemini", "gemini-3-flash-preview").price(&u);
    assert_eq!(
        priced.cost.picos(),
        pico(904, "0.50") + pico(4096, "0.05") + pico(1000, "3.00")
    );
    assert_eq!(line(&priced.lines, TokenKind::Reasoning).tokens, 880);
    assert_eq!(line(&priced.lines, TokenKind::Output).tokens, 120);
    // Counting only `candidatesTokenCount` as output would bill 8.8 % of this answer's output.
    assert!(pico(120, "3.00") * 8 < pico(1000, "3.00"));

    let long = br#"{"usageMetadata":{"promptTokenCount":199000,"toolUsePromptTokenCount":2000,
        "candidatesTokenCount":100,"totalTokenCount":201100}}"#;
    let u = Gemini.body_usage(long).unwrap().unwrap();
    let priced = price("gemini", "gemini-2.5-pro").price(&u);
    assert_eq!(
        priced.cost.picos(),
        pico(201_000, "2.50") + pico(100, "15.00")
    );
}

/// OpenAI's chat completion object: `service_tier` says which tier served the request; Flex processing bills
/// gpt-5 at $0.625 / $5.00, Priority bills gpt-4o-mini at $0.25 / $1.00 (the pricing page's Flex and Priority
/// tabs). Reasoning tokens (`completion_tokens_details.reasoning_tokens`) are output, shown on their own line.
#[test]
fn the_service_tier_the_answer_names_sets_the_rates_and_reasoning_is_its_own_line() {
    let body = br#"{"id":"c","object":"chat.completion","service_tier":"flex","choices":[],
        "usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500,
                 "prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},
                 "completion_tokens_details":{"reasoning_tokens":300,"audio_tokens":0,
                     "accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#;
    let u = Chat.body_usage(body).unwrap().unwrap();
    let priced = price("openai", "gpt-5").price(&u);
    assert_eq!(priced.cost.picos(), pico(1000, "0.625") + pico(500, "5.00"));
    let reasoning = line(&priced.lines, TokenKind::Reasoning);
    assert_eq!((reasoning.tokens, reasoning.rate), (300, Rate::Flex));
    assert_eq!(line(&priced.lines, TokenKind::Output).tokens, 200);

    let body = br#"{"object":"chat.completion","service_tier":"priority","usage":{"prompt_tokens":1000,"completion_tokens":100}}"#;
    let u = Chat.body_usage(body).unwrap().unwrap();
    let priced = price("openai", "gpt-4o-mini").price(&u);
    assert_eq!(priced.cost.picos(), pico(1000, "0.25") + pico(100, "1.00"));
    // `default` (and a tier the model has no rates for) bills the standard rates.
    let body = br#"{"object":"chat.completion","service_tier":"default","usage":{"prompt_tokens":1000,"completion_tokens":100}}"#;
    let u = Chat.body_usage(body).unwrap().unwrap();
    assert_eq!(
        price("openai", "gpt-4o-mini").price(&u).cost.picos(),
        pico(1000, "0.15") + pico(100, "0.60")
    );
}

/// OpenAI's audio models report `prompt_tokens_details.audio_tokens` and `completion_tokens_details.audio_tokens`
/// (chat completion object, "usage"), billed at their own audio prices.
#[test]
fn audio_tokens_are_billed_at_the_audio_prices() {
    let p = ModelPrice {
        provider: "openai".into(),
        model: "audio-model".into(),
        input_per_mtok: PricePerMtok::parse("2.50").unwrap(),
        output_per_mtok: PricePerMtok::parse("10.00").unwrap(),
        audio_input_per_mtok: Some(PricePerMtok::parse("40.00").unwrap()),
        audio_output_per_mtok: Some(PricePerMtok::parse("80.00").unwrap()),
        ..ModelPrice::default()
    };
    let body = br#"{"object":"chat.completion","usage":{"prompt_tokens":100,"completion_tokens":50,
        "prompt_tokens_details":{"cached_tokens":0,"audio_tokens":80},
        "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":40}}}"#;
    let u = Chat.body_usage(body).unwrap().unwrap();
    let priced = p.price(&u);
    assert_eq!(
        priced.cost.picos(),
        pico(20, "2.50") + pico(80, "40.00") + pico(10, "10.00") + pico(40, "80.00")
    );
    assert_eq!(line(&priced.lines, TokenKind::AudioOutput).tokens, 40);
}

/// Web searches are billed per call: OpenAI's Responses API lists each as a `web_search_call` output item ($10
/// per 1K calls on gpt-5), Anthropic reports `usage.server_tool_use.web_search_requests` ($10 per 1K searches).
#[test]
fn web_searches_are_billed_per_call() {
    let body = br#"{"id":"resp_1","object":"response","output":[
            {"type":"web_search_call","id":"ws_1","status":"completed"},
            {"type":"web_search_call","id":"ws_2","status":"completed"},
            {"type":"message","content":[{"type":"output_text","text":"found"}]}],
        "usage":{"input_tokens":500,"output_tokens":100,"output_tokens_details":{"reasoning_tokens":0}}}"#;
    let u = Responses.body_usage(body).unwrap().unwrap();
    assert_eq!(u.web_search_calls, 2);
    let priced = price("openai", "gpt-5").price(&u);
    let fee = Money::parse_usd("0.02").unwrap().picos();
    assert_eq!(
        priced.cost.picos(),
        pico(500, "1.25") + pico(100, "10.00") + fee
    );
    assert_eq!(line(&priced.lines, TokenKind::WebSearch).cost.picos(), fee);

    let body = br#"{"type":"message","content":[],"usage":{"input_tokens":10,"output_tokens":20,
        "server_tool_use":{"web_search_requests":3}}}"#;
    let u = Messages.body_usage(body).unwrap().unwrap();
    let priced = price("anthropic", "claude-sonnet-4-5").price(&u);
    assert_eq!(
        priced.cost.picos(),
        pico(10, "3.00") + pico(20, "15.00") + Money::parse_usd("0.03").unwrap().picos()
    );
}

/// However a broken upstream reports the parts, each token is billed once: parts never exceed what they are
/// parts of, and the lines always add up to the cost.
#[test]
fn parts_are_bounded_and_lines_add_up() {
    let body = br#"{"object":"chat.completion","usage":{"prompt_tokens":10,"completion_tokens":5,
        "prompt_tokens_details":{"cached_tokens":4,"audio_tokens":99},
        "completion_tokens_details":{"reasoning_tokens":99,"audio_tokens":99}}}"#;
    let u = Chat.body_usage(body).unwrap().unwrap();
    assert_eq!(
        (
            u.audio_input_tokens,
            u.reasoning_tokens,
            u.audio_output_tokens
        ),
        (6, 5, 0)
    );
    let priced = price("openai", "gpt-5").price(&u);
    let sum: Money = priced.lines.iter().map(|l| l.cost).sum();
    assert_eq!(sum, priced.cost);
    let tokens: u64 = priced
        .lines
        .iter()
        .filter(|l| l.kind != TokenKind::WebSearch)
        .map(|l| l.tokens)
        .sum();
    assert_eq!(tokens, u.input_tokens + u.output_tokens);
}
