//! Why spend changed: an exact decomposition of a change in cost into volume, intensity and price/mix effects,
//! and the sentence that tells a person what happened.
//!
//! # The decomposition
//!
//! Cost is a product of three factors: `C = R × (T/R) × (C/T)`, that is requests (volume) times tokens per
//! request (intensity) times cost per token (price/mix: model and provider choice, cache hits). Between a
//! baseline window (index 0) and a current one (index 1) each factor moves, and the change in cost is split
//! with the **Shapley value** of the three factors: each factor's effect is its change weighted by the average
//! of the other two over every order in which the factors could have moved. For factors `x, y, z`:
//!
//! ```text
//! E_x = Δx · (2·y0·z0 + 2·y1·z1 + y0·z1 + y1·z0) / 6        (and likewise for y and z)
//! ```
//!
//! Shapley was chosen over a sequential (chained) split because it does not depend on an arbitrary order of
//! the factors: a sequential split gives different answers for "volume first" and "price first", and the
//! reader cannot tell which was used. Mathematically the three effects sum to `C1 − C0`; in integer
//! picodollars the volume and intensity effects are each rounded toward zero (an error of a few picodollars)
//! and the price/mix effect is computed as the **remainder** `ΔC − volume − intensity`, so the three add up to
//! the change exactly, by construction.
//!
//! Each effect is also split across sub-groups (models, by default) that drive it. Every factor's change is a
//! sum of per-sub-group parts: `ΔR = Σ ΔR_i`, `Δ(T/R) = Σ (T_i1/R1 − T_i0/R0)` and
//! `Δ(C/T) = Σ (C_i1/T1 − C_i0/T0)`, and an effect is linear in its factor's change, so sub-group `i` gets
//! the effect computed with its own part of the change. Its price/mix part, for example, is large when that
//! model's share of tokens or its cost per token grew. The parts are rounded like the effects and the rounding
//! difference (a few picodollars) is given to the largest part, so the parts of each effect also sum to the
//! effect exactly.
//!
//! Windows where a factor is undefined are handled so that the effect is still meaningful: when either window
//! has no requests, the whole change is volume (a group that appeared or disappeared); when a window has no
//! tokens, cost per token is taken from the other window (it did not change, as far as anyone can tell).
//!
//! Everything is integer arithmetic. Intermediate products can reach 10^40 for very large groups, beyond
//! `i128`, so they go through [`mul_div`], which multiplies into 256 bits before dividing.

use crate::money::{group_thousands, Money};
use crate::query::{GroupRow, Totals};

/// The three effects a change in cost is split into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// More or fewer requests.
    Volume,
    /// More or fewer tokens per request: longer prompts or answers.
    Intensity,
    /// A different cost per token: model and provider choice, cache hits.
    PriceMix,
}

impl Effect {
    pub const ALL: [Effect; 3] = [Effect::Volume, Effect::Intensity, Effect::PriceMix];

    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Volume => "volume",
            Effect::Intensity => "intensity",
            Effect::PriceMix => "price_mix",
        }
    }

    /// What a person reads.
    pub fn label(self) -> &'static str {
        match self {
            Effect::Volume => "volume",
            Effect::Intensity => "intensity",
            Effect::PriceMix => "price/mix",
        }
    }
}

/// The three effects of one group or sub-group. `volume + intensity + price_mix == change`, always.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects {
    pub change: Money,
    pub volume: Money,
    pub intensity: Money,
    pub price_mix: Money,
}

impl Effects {
    pub fn get(&self, e: Effect) -> Money {
        match e {
            Effect::Volume => self.volume,
            Effect::Intensity => self.intensity,
            Effect::PriceMix => self.price_mix,
        }
    }

    fn get_mut(&mut self, e: Effect) -> &mut Money {
        match e {
            Effect::Volume => &mut self.volume,
            Effect::Intensity => &mut self.intensity,
            Effect::PriceMix => &mut self.price_mix,
        }
    }
}

/// One sub-group (e.g. a model) with its totals in both windows and its part of each effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub key: Option<String>,
    pub label: String,
    pub baseline: Totals,
    pub current: Totals,
    /// This sub-group's share of each group-level effect; `change` is its own change in cost.
    pub effects: Effects,
}

/// What drove a change, in a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Unchanged,
    /// One effect is at least two thirds of the movement (the sum of the effects' magnitudes).
    Mostly(Effect),
    /// Two effects share the movement.
    Mixed(Effect, Effect),
}

impl Driver {
    pub fn as_str(self) -> String {
        match self {
            Driver::Unchanged => "unchanged".into(),
            Driver::Mostly(e) => e.as_str().into(),
            Driver::Mixed(a, b) => format!("{}+{}", a.as_str(), b.as_str()),
        }
    }
}

/// A change in cost between two windows, explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub baseline: Totals,
    pub current: Totals,
    pub effects: Effects,
    /// Sub-groups, largest absolute change in cost first.
    pub parts: Vec<Part>,
    pub driver: Driver,
}

impl Explanation {
    /// Relative change in requests, basis points; `None` without a baseline.
    pub fn requests_change_bp(&self) -> Option<i128> {
        ratio_change_bp(
            i128::from(self.current.requests),
            1,
            i128::from(self.baseline.requests),
            1,
        )
    }

    /// Relative change in tokens per request, basis points.
    pub fn tokens_per_request_change_bp(&self) -> Option<i128> {
        ratio_change_bp(
            i128::from(self.current.tokens()),
            i128::from(self.current.requests),
            i128::from(self.baseline.tokens()),
            i128::from(self.baseline.requests),
        )
    }

    /// Relative change in cost per token, basis points.
    pub fn cost_per_token_change_bp(&self) -> Option<i128> {
        ratio_change_bp(
            self.current.cost.picos(),
            i128::from(self.current.tokens()),
            self.baseline.cost.picos(),
            i128::from(self.baseline.tokens()),
        )
    }

    /// Relative change in cost, basis points.
    pub fn cost_change_bp(&self) -> Option<i128> {
        ratio_change_bp(self.current.cost.picos(), 1, self.baseline.cost.picos(), 1)
    }

    /// The sub-group contributing most to an effect in the effect's direction, if any does.
    pub fn top_part(&self, e: Effect) -> Option<&Part> {
        let total = self.effects.get(e).picos();
        self.parts
            .iter()
            .filter(|p| {
                let v = p.effects.get(e).picos();
                v != 0 && (total == 0 || v.signum() == total.signum())
            })
            .max_by_key(|p| p.effects.get(e).picos().abs())
    }
}

/// `(n1/d1 − n0/d0) / (n0/d0)` in basis points; `None` when either ratio is undefined or the base is zero.
fn ratio_change_bp(n1: i128, d1: i128, n0: i128, d0: i128) -> Option<i128> {
    if d1 <= 0 || d0 <= 0 || n0 <= 0 {
        return None;
    }
    // (n1·d0 − n0·d1) / (n0·d1) × 10 000
    let num = n1.checked_mul(d0)?.checked_sub(n0.checked_mul(d1)?)?;
    mul_div(num, 10_000, n0.checked_mul(d1)?)
}

/// `a × b / c`, rounded toward zero, computed through a 256-bit product so that it is exact whenever the
/// result fits in an `i128`. `None` when `c` is zero or the result does not fit.
pub fn mul_div(a: i128, b: i128, c: i128) -> Option<i128> {
    if c == 0 {
        return None;
    }
    let negative = (a < 0) ^ (b < 0) ^ (c < 0);
    let (ua, ub, uc) = (a.unsigned_abs(), b.unsigned_abs(), c.unsigned_abs());
    let (hi, lo) = mul_wide(ua, ub);
    if hi >= uc {
        return None;
    }
    // Long division of the 256-bit (hi, lo) by uc, one bit at a time. The remainder stays below uc ≤ 2^127,
    // so shifting it left by one never overflows.
    let mut rem = hi;
    let mut q: u128 = 0;
    for i in (0..128).rev() {
        rem = (rem << 1) | ((lo >> i) & 1);
        q <<= 1;
        if rem >= uc {
            rem -= uc;
            q |= 1;
        }
    }
    let q = i128::try_from(q).ok()?;
    Some(if negative { -q } else { q })
}

/// The 256-bit product of two `u128` as (high, low) halves.
fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    const MASK: u128 = u64::MAX as u128;
    let (a1, a0) = (a >> 64, a & MASK);
    let (b1, b0) = (b >> 64, b & MASK);
    let ll = a0 * b0;
    let lh = a0 * b1;
    let hl = a1 * b0;
    let hh = a1 * b1;
    let mid = (ll >> 64) + (lh & MASK) + (hl & MASK);
    let lo = (ll & MASK) | ((mid & MASK) << 64);
    let hi = hh + (lh >> 64) + (hl >> 64) + (mid >> 64);
    (hi, lo)
}

/// A non-negative rational with a positive denominator.
#[derive(Debug, Clone, Copy)]
struct Frac {
    n: i128,
    d: i128,
}

impl Frac {
    fn new(n: i128, d: i128) -> Frac {
        Frac { n, d }
    }
}

/// The three factors of one window: requests, tokens per request, cost per token.
#[derive(Debug, Clone, Copy)]
struct Factors {
    x: Frac,
    y: Frac,
    z: Frac,
}

/// `Δ · (2·g0·h0 + 2·g1·h1 + g0·h1 + g1·h0) / 6`: the Shapley weight of a factor's change `delta`, given the
/// other two factors `g` and `h` in both windows. Terms that cannot be computed (absurdly large groups) count
/// as zero; the remainder absorbs them, so the sum of the effects stays exact.
fn shapley(delta: Frac, g: (Frac, Frac), h: (Frac, Frac)) -> i128 {
    let term = |w: i128, g: Frac, h: Frac| -> i128 {
        let b = g.n.checked_mul(h.n).and_then(|v| v.checked_mul(w));
        let c = delta
            .d
            .checked_mul(g.d)
            .and_then(|v| v.checked_mul(h.d))
            .and_then(|v| v.checked_mul(6));
        match (b, c) {
            (Some(b), Some(c)) => mul_div(delta.n, b, c).unwrap_or(0),
            _ => 0,
        }
    };
    let parts = [
        term(2, g.0, h.0),
        term(2, g.1, h.1),
        term(1, g.0, h.1),
        term(1, g.1, h.0),
    ];
    parts.iter().fold(0i128, |acc, v| acc.saturating_add(*v))
}

fn tokens(t: &Totals) -> i128 {
    i128::from(t.tokens())
}

fn requests(t: &Totals) -> i128 {
    i128::from(t.requests)
}

/// Explains the change in cost from `baseline` to `current`, both given as the same group's rows split by a
/// sub-grouping (e.g. `Store::explorer(filters, GroupBy::Model)` for each window). The group's totals are the
/// sums of its rows, so the parts always add up to the whole.
pub fn explain(baseline: &[GroupRow], current: &[GroupRow]) -> Explanation {
    // Merge the two windows' rows by sub-group identity, keeping a stable order.
    let mut parts: Vec<Part> = Vec::new();
    for (rows, is_current) in [(baseline, false), (current, true)] {
        for r in rows {
            let i = match parts.iter().position(|p| p.key == r.key) {
                Some(i) => i,
                None => {
                    parts.push(Part {
                        key: r.key.clone(),
                        label: r.label.clone(),
                        baseline: Totals::default(),
                        current: Totals::default(),
                        effects: Effects::default(),
                    });
                    parts.len() - 1
                }
            };
            if let Some(p) = parts.get_mut(i) {
                if is_current {
                    p.current.add(&r.totals);
                } else {
                    p.baseline.add(&r.totals);
                }
            }
        }
    }
    let mut b = Totals::default();
    let mut c = Totals::default();
    for p in &parts {
        b.add(&p.baseline);
        c.add(&p.current);
        // Each part's own change; its effects are filled in below.
    }
    for p in &mut parts {
        p.effects.change = p.current.cost - p.baseline.cost;
    }
    let change = c.cost - b.cost;
    let (r0, r1) = (requests(&b), requests(&c));
    let (t0, t1) = (tokens(&b), tokens(&c));
    let (c0, c1) = (b.cost.picos(), c.cost.picos());

    let mut effects = Effects {
        change,
        ..Effects::default()
    };
    if r0 == 0 || r1 == 0 {
        // A group that appeared or disappeared: tokens per request and cost per token have nothing to be
        // compared with, so the whole change is volume, part by part.
        effects.volume = change;
        for p in &mut parts {
            p.effects.volume = p.effects.change;
        }
    } else {
        // Cost per token of a window without tokens is taken from the other window (no observed change).
        let (z0, z1) = match (t0 > 0, t1 > 0) {
            (true, true) => (Frac::new(c0, t0), Frac::new(c1, t1)),
            (true, false) => (Frac::new(c0, t0), Frac::new(c0, t0)),
            (false, true) => (Frac::new(c1, t1), Frac::new(c1, t1)),
            (false, false) => (Frac::new(0, 1), Frac::new(0, 1)),
        };
        let f0 = Factors {
            x: Frac::new(r0, 1),
            y: Frac::new(t0, r0),
            z: z0,
        };
        let f1 = Factors {
            x: Frac::new(r1, 1),
            y: Frac::new(t1, r1),
            z: z1,
        };
        let z_moves = t0 > 0 && t1 > 0;
        // Each factor's change, as a sum of per-part changes with a common denominator.
        let dx = |p: &Part| Frac::new(requests(&p.current) - requests(&p.baseline), 1);
        let dy = |p: &Part| {
            Frac::new(
                tokens(&p.current)
                    .saturating_mul(r0)
                    .saturating_sub(tokens(&p.baseline).saturating_mul(r1)),
                r0.saturating_mul(r1),
            )
        };
        let dz = |p: &Part| {
            if z_moves {
                Frac::new(
                    p.current
                        .cost
                        .picos()
                        .saturating_mul(t0)
                        .saturating_sub(p.baseline.cost.picos().saturating_mul(t1)),
                    t0.saturating_mul(t1),
                )
            } else {
                Frac::new(0, 1)
            }
        };
        let group = Part {
            key: None,
            label: String::new(),
            baseline: b,
            current: c,
            effects: Effects::default(),
        };
        let ex = |d: Frac| shapley(d, (f0.y, f1.y), (f0.z, f1.z));
        let ey = |d: Frac| shapley(d, (f0.x, f1.x), (f0.z, f1.z));
        let ez = |d: Frac| shapley(d, (f0.x, f1.x), (f0.y, f1.y));
        effects.volume = Money::from_picos(ex(dx(&group)));
        effects.intensity = Money::from_picos(ey(dy(&group)));
        // The remainder: exact by construction.
        effects.price_mix = change - effects.volume - effects.intensity;
        for p in &mut parts {
            p.effects.volume = Money::from_picos(ex(dx(p)));
            p.effects.intensity = Money::from_picos(ey(dy(p)));
            p.effects.price_mix = Money::from_picos(ez(dz(p)));
        }
    }
    for e in Effect::ALL {
        settle_rounding(&mut parts, e, effects.get(e));
    }
    parts.sort_by(|a, b| {
        b.effects
            .change
            .picos()
            .abs()
            .cmp(&a.effects.change.picos().abs())
            .then_with(|| a.label.cmp(&b.label))
    });
    let driver = driver(&effects);
    Explanation {
        baseline: b,
        current: c,
        effects,
        parts,
        driver,
    }
}

/// Gives the rounding difference between an effect and the sum of its parts to the largest part, so that
/// the parts sum to the effect exactly.
fn settle_rounding(parts: &mut [Part], e: Effect, total: Money) {
    let sum: Money = parts.iter().map(|p| p.effects.get(e)).sum();
    let diff = total - sum;
    if diff == Money::ZERO {
        return;
    }
    let target = parts.iter_mut().max_by_key(|p| {
        (
            p.effects.get(e).picos().abs(),
            p.effects.change.picos().abs(),
        )
    });
    if let Some(p) = target {
        *p.effects.get_mut(e) = p.effects.get(e) + diff;
    }
}

/// The effect that moved the cost most; two when none reaches two thirds of the movement.
fn driver(e: &Effects) -> Driver {
    let mut mags: Vec<(Effect, i128)> = Effect::ALL
        .iter()
        .map(|f| (*f, e.get(*f).picos().abs()))
        .collect();
    let movement: i128 = mags.iter().map(|m| m.1).sum();
    if movement == 0 {
        return Driver::Unchanged;
    }
    mags.sort_by_key(|m| std::cmp::Reverse(m.1));
    let (first, second) = (mags[0], mags[1]);
    if first.1.saturating_mul(3) >= movement.saturating_mul(2) {
        Driver::Mostly(first.0)
    } else {
        Driver::Mixed(first.0, second.0)
    }
}

/// "+12.3%" from basis points, rounded half away from zero to one decimal.
pub fn percent(bp: i128) -> String {
    let tenths = (bp.unsigned_abs() + 5) / 10;
    let sign = if bp < 0 { "−" } else { "+" };
    format!("{sign}{}.{}%", group_thousands(tenths / 10), tenths % 10)
}

/// "$12.34" with an explicit sign for changes.
pub fn signed_usd(m: Money) -> String {
    if m.picos() > 0 {
        format!("+{}", m.display_usd())
    } else if m.picos() < 0 {
        format!("−{}", Money::from_picos(-m.picos()).display_usd())
    } else {
        m.display_usd()
    }
}

/// A change under this many basis points (5 %) is described as flat.
pub const FLAT_BP: i128 = 500;

fn movement(what: &str, bp: Option<i128>) -> String {
    match bp {
        None => format!("{what} had no baseline"),
        Some(bp) if bp.abs() < FLAT_BP => format!("{what} stayed flat ({})", percent(bp)),
        Some(bp) if bp > 0 => format!("{what} rose {}", percent(bp).trim_start_matches('+')),
        Some(bp) => format!("{what} fell {}", percent(bp).trim_start_matches('−')),
    }
}

fn driver_words(d: Driver, rising: bool) -> String {
    let one = |e: Effect| {
        match (e, rising) {
        (Effect::Volume, true) => "volume-driven (more requests) rather than longer prompts or pricier models",
        (Effect::Volume, false) => "volume-driven (fewer requests)",
        (Effect::Intensity, true) => {
            "intensity-driven (more tokens per request, e.g. longer prompts) rather than more requests"
        }
        (Effect::Intensity, false) => "intensity-driven (fewer tokens per request)",
        (Effect::PriceMix, true) => {
            "price/mix-driven (a higher cost per token: pricier models or providers, fewer cache hits)"
        }
        (Effect::PriceMix, false) => {
            "price/mix-driven (a lower cost per token: cheaper models or providers, more cache hits)"
        }
    }
    };
    match d {
        Driver::Unchanged => "unchanged".into(),
        Driver::Mostly(e) => one(e).into(),
        Driver::Mixed(a, b) => format!("driven by both {} and {}", a.label(), b.label()),
    }
}

/// The plain-language explanation: what changed, by how much, which effect drove it, and which sub-group
/// drove that effect. `subject` names the group ("Team support"), `windows` the comparison ("in the last 24
/// hours against the 24 hours before"), `part_kind` the sub-grouping ("model").
pub fn sentence(e: &Explanation, subject: &str, windows: &str, part_kind: &str) -> String {
    let fx = &e.effects;
    let (b, c) = (e.baseline.cost, e.current.cost);
    if fx.change == Money::ZERO {
        return format!(
            "{subject}: spend is unchanged at {} {windows} ({} requests).",
            c.display_usd(),
            group_thousands(u128::from(e.current.requests)),
        );
    }
    let rising = fx.change.picos() > 0;
    let verb = if rising { "rose" } else { "fell" };
    if e.baseline.requests == 0 || e.current.requests == 0 {
        // Nothing to compare per request or per token with: the group appeared or went quiet.
        let (what, n) = if rising {
            ("had no requests in the baseline", e.current.requests)
        } else {
            ("has no requests now", e.baseline.requests)
        };
        let mut s = format!(
            "{subject}: spend {verb} from {} to {} ({}) {windows}. It {what}, so the whole change is volume ({} request{}).",
            b.display_usd(),
            c.display_usd(),
            signed_usd(fx.change),
            group_thousands(u128::from(n)),
            if n == 1 { "" } else { "s" },
        );
        if let Some(p) = e.top_part(Effect::Volume).filter(|_| e.parts.len() > 1) {
            s.push_str(&format!(
                " Most of it is {part_kind} {} ({}).",
                p.label,
                signed_usd(p.effects.volume)
            ));
        }
        return s;
    }
    let how_much = match e.cost_change_bp() {
        Some(bp) => format!("{verb} {}", percent(bp).trim_start_matches(['+', '−'])),
        None => format!("{verb} from nothing"),
    };
    let mut s = format!(
        "{subject}: spend {how_much} ({} → {}, {}) {windows}. {}, {} and {}, so the {} is {} ({} {}, {} {}, {} {}).",
        b.display_usd(),
        c.display_usd(),
        signed_usd(fx.change),
        movement(
            &format!(
                "Requests ({} → {})",
                group_thousands(u128::from(e.baseline.requests)),
                group_thousands(u128::from(e.current.requests))
            ),
            e.requests_change_bp()
        ),
        movement("tokens per request", e.tokens_per_request_change_bp()),
        movement("cost per token", e.cost_per_token_change_bp()),
        if rising { "increase" } else { "decrease" },
        driver_words(e.driver, rising),
        Effect::Volume.label(),
        signed_usd(fx.volume),
        Effect::Intensity.label(),
        signed_usd(fx.intensity),
        Effect::PriceMix.label(),
        signed_usd(fx.price_mix),
    );
    let main = match e.driver {
        Driver::Mostly(x) | Driver::Mixed(x, _) => Some(x),
        Driver::Unchanged => None,
    };
    if let Some(x) = main {
        if let Some(p) = e.top_part(x) {
            if e.parts.len() > 1 {
                s.push_str(&format!(
                    " The {} effect comes mostly from {part_kind} {} ({}).",
                    x.label(),
                    p.label,
                    signed_usd(p.effects.get(x))
                ));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests;
