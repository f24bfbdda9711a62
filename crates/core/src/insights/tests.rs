//! Scenarios of the decomposition: pure volume, pure intensity, a pricier model, mixed changes, and the exact
//! sums of effects and parts.
use super::*;

/// A row with `requests` requests of `tokens_each` tokens at `pico_per_token` picodollars a token.
fn row(label: &str, requests: u64, tokens_each: u64, pico_per_token: i128) -> GroupRow {
    let tokens = requests * tokens_each;
    GroupRow {
        key: Some(label.to_string()),
        label: label.to_string(),
        totals: Totals {
            requests,
            input_tokens: tokens * 3 / 4,
            output_tokens: tokens - tokens * 3 / 4,
            cost: Money::from_picos(i128::from(tokens) * pico_per_token),
            ..Totals::default()
        },
    }
}

fn assert_exact(e: &Explanation) {
    let fx = e.effects;
    assert_eq!(fx.volume + fx.intensity + fx.price_mix, fx.change);
    assert_eq!(fx.change, e.current.cost - e.baseline.cost);
    for x in Effect::ALL {
        let sum: Money = e.parts.iter().map(|p| p.effects.get(x)).sum();
        assert_eq!(sum, fx.get(x), "parts of {x:?} sum to it");
    }
    for p in &e.parts {
        assert_eq!(p.effects.change, p.current.cost - p.baseline.cost);
    }
}

/// Within `tolerance` picodollars (the rounding of the integer maths).
fn near(m: Money, picos: i128, tolerance: i128) -> bool {
    (m.picos() - picos).abs() <= tolerance
}

const MINI: i128 = 150_000; // $0.15 per million tokens, in picodollars per token
const BIG: i128 = 2_500_000; // $2.50 per million tokens

#[test]
fn a_pure_volume_rise_is_all_volume() {
    let base = [row("gpt-4o-mini", 1_000, 800, MINI)];
    let cur = [row("gpt-4o-mini", 1_400, 800, MINI)];
    let e = explain(&base, &cur);
    assert_exact(&e);
    assert_eq!(e.effects.volume, e.effects.change);
    assert_eq!(e.effects.intensity, Money::ZERO);
    assert_eq!(e.effects.price_mix, Money::ZERO);
    assert_eq!(e.driver, Driver::Mostly(Effect::Volume));
    let s = sentence(
        &e,
        "Team support",
        "in the last 24 hours against the 24 hours before",
        "model",
    );
    assert!(s.contains("spend rose 40.0%"), "{s}");
    assert!(s.contains("Requests (1,000 → 1,400) rose 40.0%"), "{s}");
    assert!(s.contains("tokens per request stayed flat (+0.0%)"), "{s}");
    assert!(s.contains("volume-driven"), "{s}");
}

#[test]
fn a_pure_prompt_expansion_is_all_intensity() {
    let base = [row("gpt-4.1", 1_000, 800, BIG)];
    let cur = [row("gpt-4.1", 1_000, 2_000, BIG)];
    let e = explain(&base, &cur);
    assert_exact(&e);
    assert_eq!(e.effects.volume, Money::ZERO);
    assert_eq!(e.effects.intensity, e.effects.change);
    assert_eq!(e.effects.price_mix, Money::ZERO);
    assert_eq!(e.driver, Driver::Mostly(Effect::Intensity));
    let s = sentence(&e, "Team search", "today", "model");
    assert!(s.contains("tokens per request rose 150.0%"), "{s}");
    assert!(s.contains("intensity-driven"), "{s}");
}

#[test]
fn a_switch_to_a_pricier_model_is_price_mix_and_names_the_model() {
    let base = [row("gpt-4o-mini", 1_000, 800, MINI)];
    let cur = [row("gpt-4.1", 1_000, 800, BIG)];
    let e = explain(&base, &cur);
    assert_exact(&e);
    assert_eq!(e.effects.volume, Money::ZERO);
    assert_eq!(e.effects.intensity, Money::ZERO);
    assert_eq!(e.effects.price_mix, e.effects.change);
    assert!(e.effects.change.picos() > 0);
    assert_eq!(e.driver, Driver::Mostly(Effect::PriceMix));
    // The pricier model carries the rise; the cheaper one's disappearance is a negative price/mix part.
    let big = e.parts.iter().find(|p| p.label == "gpt-4.1").unwrap();
    let mini = e.parts.iter().find(|p| p.label == "gpt-4o-mini").unwrap();
    assert!(big.effects.price_mix.picos() > 0);
    assert!(mini.effects.price_mix.picos() < 0);
    assert_eq!(big.effects.volume + mini.effects.volume, Money::ZERO);
    let s = sentence(&e, "Team growth", "this week", "model");
    assert!(s.contains("price/mix-driven"), "{s}");
    assert!(s.contains("cost per token rose"), "{s}");
    assert!(s.contains("comes mostly from model gpt-4.1"), "{s}");
}

#[test]
fn a_mixed_change_splits_exactly_and_symmetrically() {
    // Requests double, tokens per request go up by half, and a quarter of the traffic moves to a
    // pricier model.
    let base = [row("mini", 1_000, 1_000, MINI)];
    let cur = [row("mini", 1_500, 1_500, MINI), row("big", 500, 1_500, BIG)];
    let e = explain(&base, &cur);
    assert_exact(&e);
    assert!(e.effects.volume.picos() > 0);
    assert!(e.effects.intensity.picos() > 0);
    assert!(e.effects.price_mix.picos() > 0);
    // Hand-computed Shapley values: requests 1000 → 2000, tokens per request 1000 → 1500, cost per token
    // 150 000 → (2.25e6 × 150 000 + 0.75e6 × 2 500 000) / 3e6 = 737 500 picodollars.
    let (x0, x1, y0, y1, z0, z1) = (1000i128, 2000, 1000, 1500, 150_000, 737_500);
    // Six times each effect, so that the check itself is exact.
    let ex6 = (x1 - x0) * (2 * y0 * z0 + 2 * y1 * z1 + y0 * z1 + y1 * z0);
    let ey6 = (y1 - y0) * (2 * x0 * z0 + 2 * x1 * z1 + x0 * z1 + x1 * z0);
    let ez6 = (z1 - z0) * (2 * x0 * y0 + 2 * x1 * y1 + x0 * y1 + x1 * y0);
    assert_eq!(ex6 + ey6 + ez6, 6 * e.effects.change.picos());
    assert!(near(e.effects.volume, ex6 / 6, 10));
    assert!(near(e.effects.intensity, ey6 / 6, 10));
    assert!(near(e.effects.price_mix, ez6 / 6, 10));
    assert!(matches!(e.driver, Driver::Mixed(_, _) | Driver::Mostly(_)));
    let s = sentence(
        &e,
        "Everything",
        "in the last hour against the hour before",
        "model",
    );
    assert!(s.contains("Requests (1,000 → 2,000) rose 100.0%"), "{s}");
}

#[test]
fn new_and_vanished_groups_are_volume() {
    let e = explain(&[], &[row("a", 10, 100, MINI)]);
    assert_exact(&e);
    assert_eq!(e.effects.volume, e.effects.change);
    let s = sentence(&e, "Team x", "today", "model");
    assert!(s.contains("spend rose from $0.00"), "{s}");
    assert!(s.contains("whole change is volume (10 requests)"), "{s}");
    let e = explain(&[row("a", 10, 100, MINI)], &[]);
    assert_exact(&e);
    assert_eq!(e.effects.volume, e.effects.change);
    assert!(e.effects.change.picos() < 0);
    let e = explain(&[], &[]);
    assert_eq!(e.driver, Driver::Unchanged);
    assert!(sentence(&e, "Team x", "today", "model").contains("unchanged"));
}

#[test]
fn awkward_numbers_still_sum_exactly() {
    // Prime-ish counts make every division inexact; the remainder and the part settlement keep the sums.
    let base = [
        row("a", 997, 331, 7_919),
        row("b", 13, 7_001, 104_729),
        row("c", 1, 1, 3),
    ];
    let cur = [
        row("a", 1_009, 313, 7_927),
        row("b", 29, 6_997, 130_003),
        row("d", 7, 17, 11),
    ];
    let e = explain(&base, &cur);
    assert_exact(&e);
    // A very large group (a year of a big organisation) does not overflow.
    let base = [row("a", 2_000_000_000, 50_000, 10_000_000)];
    let cur = [
        row("a", 3_000_000_000, 60_000, 12_000_000),
        row("b", 5, 5, 5),
    ];
    let e = explain(&base, &cur);
    assert_exact(&e);
    assert!(e.effects.volume.picos() > 0 && e.effects.intensity.picos() > 0);
}

#[test]
fn a_shift_between_models_at_flat_volume_is_not_volume() {
    let base = [row("mini", 800, 1_000, MINI), row("big", 200, 1_000, BIG)];
    let cur = [row("mini", 500, 1_000, MINI), row("big", 500, 1_000, BIG)];
    let e = explain(&base, &cur);
    assert_exact(&e);
    assert_eq!(e.effects.volume, Money::ZERO);
    assert_eq!(e.effects.intensity, Money::ZERO);
    assert_eq!(e.effects.price_mix, e.effects.change);
    assert_eq!(e.top_part(Effect::PriceMix).unwrap().label, "big");
}

#[test]
fn mul_div_is_exact_beyond_i128_products() {
    assert_eq!(mul_div(7, 3, 2), Some(10));
    assert_eq!(mul_div(-7, 3, 2), Some(-10));
    let big = 10i128.pow(30);
    assert_eq!(mul_div(big, big, big), Some(big));
    assert_eq!(mul_div(big, 3 * big, 2 * big), Some(big + big / 2));
    assert_eq!(mul_div(i128::MAX, i128::MAX, 1), None);
    assert_eq!(mul_div(1, 1, 0), None);
    assert_eq!(percent(1234), "+12.3%");
    assert_eq!(percent(-5), "−0.1%");
}
