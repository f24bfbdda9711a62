//! The journal's record format: each record framed by its length and a checksum, its body in a compact binary
//! form with a version byte.
//!
//! ```text
//! record  := len:u32le  crc:u32le  payload[len]
//! payload := version:u8 (1)  kind:u8 (1 spend event, 2 refusal)  body
//! crc     := CRC-32 (IEEE, crc32fast) of len's four bytes, then of the payload
//! ```
//!
//! The body writes every field in a fixed order: integers as LEB128 varints (signed ones zigzag-encoded first,
//! as Protocol Buffers do: protobuf.dev/programming-guides/encoding), strings as a varint length and their UTF-8
//! bytes, enums as one byte (their position in this file's tables, which only ever grow at the end), optional
//! fields as bits of one `flags` varint followed by the fields that are present, UUIDs as their 16 bytes.
//!
//! Why not JSON any more: encoding an event as JSON was the largest single cost of a request outside the store
//! (about 18,800 instructions of 134,600, serde's string escaping and the price lines most of it), and its line
//! about 800 bytes of the disk a request writes. The checksum covers the length, so a torn or damaged length
//! is caught too; the reader then looks for the next record that checks (`read`). A new version gets a new
//! version byte: readers keep decoding every older one, and a record of a version they do not know is skipped
//! with an error logged, never misread.

use spendgate_core::pricing::{PriceLine, Rate, TokenKind};
use spendgate_core::{
    Attribution, CacheOutcome, FailedAttempt, Money, PriceConfidence, PricePerMtok, RefusalEvent,
    RefusalReason, RequestStatus, ServiceTier, SpendEvent, Usage, UsageSource,
};
use uuid::Uuid;

use crate::writer::Record;

/// The version this build writes.
pub(crate) const VERSION: u8 = 1;
const KIND_SPEND: u8 = 1;
const KIND_REFUSAL: u8 = 2;
/// The length and the checksum.
pub(crate) const HEADER_BYTES: usize = 8;
/// No record comes near this (an event is a few hundred bytes); a length above it is a damaged one.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 1 << 24;

/// Why a record's payload could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("the record ends early")]
    Short,
    #[error("record version {0} is not one this build reads (it writes version {VERSION})")]
    Version(u8),
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("field {0} holds a value this build does not know")]
    Value(&'static str),
}

// The wire tables: a value's code is its position. Append only; never reorder.
const CACHE_OUTCOMES: [CacheOutcome; 4] = [
    CacheOutcome::NotCacheable,
    CacheOutcome::Hit,
    CacheOutcome::Miss,
    CacheOutcome::Bypass,
];
const STATUSES: [RequestStatus; 3] = [
    RequestStatus::Ok,
    RequestStatus::UpstreamError,
    RequestStatus::ClientDisconnected,
];
const SOURCES: [UsageSource; 2] = [UsageSource::Reported, UsageSource::Estimated];
const CONFIDENCES: [PriceConfidence; 4] = [
    PriceConfidence::Exact,
    PriceConfidence::Fallback,
    PriceConfidence::Estimated,
    PriceConfidence::Inferred,
];
const TIERS: [ServiceTier; 3] = [
    ServiceTier::Standard,
    ServiceTier::Flex,
    ServiceTier::Priority,
];
const KINDS: [TokenKind; 9] = [
    TokenKind::Input,
    TokenKind::CachedInput,
    TokenKind::CacheWrite,
    TokenKind::Output,
    TokenKind::AudioInput,
    TokenKind::CacheWrite1h,
    TokenKind::Reasoning,
    TokenKind::AudioOutput,
    TokenKind::WebSearch,
];
const RATES: [Rate; 4] = [
    Rate::Standard,
    Rate::Flex,
    Rate::Priority,
    Rate::LongContext,
];

// The bits of a spend event's `flags`.
const F_STREAM: u64 = 1;
const F_TEAM: u64 = 1 << 1;
const F_WORKFLOW: u64 = 1 << 2;
const F_WORKFLOW_REQUESTED: u64 = 1 << 3;
const F_PROVIDER_COST: u64 = 1 << 4;
const F_ERROR: u64 = 1 << 5;
const F_WALLET: u64 = 1 << 6;
const F_FINGERPRINT: u64 = 1 << 7;
const F_UPSTREAM_API: u64 = 1 << 8;
// The bits of a refusal's `flags`.
const R_KEY: u64 = 1;
const R_USER: u64 = 1 << 1;
const R_TEAM: u64 = 1 << 2;
const R_MODEL: u64 = 1 << 3;
const R_BUDGET: u64 = 1 << 4;
const R_WALLET: u64 = 1 << 5;

/// Appends `record`, framed, to `buf`.
pub(crate) fn encode(buf: &mut Vec<u8>, record: &Record) {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_BYTES]);
    buf.push(VERSION);
    match record {
        Record::Spend(e) => {
            buf.push(KIND_SPEND);
            spend(buf, e);
        }
        Record::Refusal(r) => {
            buf.push(KIND_REFUSAL);
            refusal(buf, r);
        }
    }
    // A payload is far below 4 GB (`MAX_PAYLOAD_BYTES` is checked on reading).
    let len = u32::try_from(buf.len() - start - HEADER_BYTES).unwrap_or(u32::MAX);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(&buf[start + HEADER_BYTES..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.finalize().to_le_bytes());
}

/// The frame at the start of `data`: `Some(payload_len)` when a whole record is there and its checksum holds.
pub(crate) fn frame_at(data: &[u8]) -> Option<usize> {
    let header = data.get(..HEADER_BYTES)?;
    let len_bytes: [u8; 4] = header[..4].try_into().ok()?;
    let crc_bytes: [u8; 4] = header[4..].try_into().ok()?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_PAYLOAD_BYTES {
        return None;
    }
    let payload = data.get(HEADER_BYTES..HEADER_BYTES + len)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len_bytes);
    crc.update(payload);
    (crc.finalize() == u32::from_le_bytes(crc_bytes)).then_some(len)
}

/// A payload (version, kind, body) back into its record.
pub(crate) fn decode(payload: &[u8]) -> Result<Record, DecodeError> {
    let mut d = Dec(payload);
    let version = d.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    match d.u8()? {
        KIND_SPEND => read_spend(&mut d).map(Record::Spend),
        KIND_REFUSAL => read_refusal(&mut d).map(Record::Refusal),
        k => Err(DecodeError::Kind(k)),
    }
}

fn code<T: PartialEq>(table: &[T], v: &T) -> u8 {
    // Every value is in its table (the tables list each enum whole), so the fallback is never taken.
    table.iter().position(|t| t == v).unwrap_or(0) as u8
}

fn varint(buf: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn uint(buf: &mut Vec<u8>, v: u64) {
    varint(buf, u128::from(v));
}

fn int(buf: &mut Vec<u8>, v: i64) {
    uint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

fn money(buf: &mut Vec<u8>, m: Money) {
    let v = m.picos();
    varint(buf, ((v << 1) ^ (v >> 127)) as u128);
}

fn text(buf: &mut Vec<u8>, s: &str) {
    uint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

fn spend(buf: &mut Vec<u8>, e: &SpendEvent) {
    let a = &e.attribution;
    let bit = |on: bool, f: u64| if on { f } else { 0 };
    let flags = bit(e.stream, F_STREAM)
        | bit(a.team.is_some(), F_TEAM)
        | bit(a.workflow.is_some(), F_WORKFLOW)
        | bit(a.workflow_requested.is_some(), F_WORKFLOW_REQUESTED)
        | bit(e.usage.provider_cost.is_some(), F_PROVIDER_COST)
        | bit(e.error.is_some(), F_ERROR)
        | bit(e.wallet_id.is_some(), F_WALLET)
        | bit(e.fingerprint.is_some(), F_FINGERPRINT)
        | bit(e.upstream_api.is_some(), F_UPSTREAM_API);
    uint(buf, flags);
    buf.extend_from_slice(e.id.as_bytes());
    int(buf, e.finished_at_ms);
    // Most requests last well under a second: the start as a difference takes a byte or two.
    int(buf, e.finished_at_ms.wrapping_sub(e.started_at_ms));
    uint(buf, u64::from(e.latency_ms));
    text(buf, &e.gateway);
    text(buf, &e.provider);
    text(buf, &e.model);
    text(buf, &e.endpoint);
    int(buf, a.key_id);
    text(buf, &a.user);
    for s in [&a.team, &a.workflow, &a.workflow_requested]
        .into_iter()
        .flatten()
    {
        text(buf, s);
    }
    buf.push(code(&CACHE_OUTCOMES, &e.cache_outcome));
    buf.push(code(&STATUSES, &e.status));
    uint(buf, u64::from(e.http_status));
    usage(buf, &e.usage);
    buf.push(code(&SOURCES, &e.usage_source));
    money(buf, e.cost);
    buf.push(code(&CONFIDENCES, &e.price_confidence));
    uint(buf, e.price_lines.len() as u64);
    for l in &e.price_lines {
        buf.push(code(&KINDS, &l.kind));
        uint(buf, l.tokens);
        int(buf, l.price_per_mtok.micros());
        money(buf, l.cost);
        buf.push(code(&RATES, &l.rate));
    }
    if let Some(s) = &e.error {
        text(buf, s);
    }
    if let Some(w) = e.wallet_id {
        int(buf, w);
    }
    if let Some(f) = e.fingerprint {
        // A hash: as a varint it would take nine or ten bytes.
        buf.extend_from_slice(&f.to_le_bytes());
    }
    uint(buf, e.leases.len() as u64);
    for l in &e.leases {
        int(buf, *l);
    }
    uint(buf, u64::from(e.attempts));
    uint(buf, e.failed_attempts.len() as u64);
    for f in &e.failed_attempts {
        text(buf, &f.provider);
        text(buf, &f.model);
        uint(buf, u64::from(f.http_status));
        text(buf, &f.error);
    }
    money(buf, e.avoided_cost);
    if let Some(s) = &e.upstream_api {
        text(buf, s);
    }
}

fn usage(buf: &mut Vec<u8>, u: &Usage) {
    for n in [
        u.input_tokens,
        u.output_tokens,
        u.cached_input_tokens,
        u.cache_write_tokens,
        u.cache_write_1h_tokens,
        u.reasoning_tokens,
        u.audio_input_tokens,
        u.audio_output_tokens,
        u.web_search_calls,
    ] {
        uint(buf, n);
    }
    buf.push(code(&TIERS, &u.service_tier));
    if let Some(c) = u.provider_cost {
        money(buf, c);
    }
}

fn refusal(buf: &mut Vec<u8>, r: &RefusalEvent) {
    let bit = |on: bool, f: u64| if on { f } else { 0 };
    let flags = bit(r.key_id.is_some(), R_KEY)
        | bit(r.user.is_some(), R_USER)
        | bit(r.team.is_some(), R_TEAM)
        | bit(r.model.is_some(), R_MODEL)
        | bit(r.budget_id.is_some(), R_BUDGET)
        | bit(r.wallet_id.is_some(), R_WALLET);
    uint(buf, flags);
    buf.extend_from_slice(r.id.as_bytes());
    int(buf, r.at_ms);
    // The stored code (`RefusalReason::code`), which is small and never reused.
    buf.push(u8::try_from(r.reason.code()).unwrap_or(0));
    uint(buf, u64::from(r.http_status));
    for id in [r.key_id, r.budget_id, r.wallet_id].into_iter().flatten() {
        int(buf, id);
    }
    for s in [&r.user, &r.team, &r.model].into_iter().flatten() {
        text(buf, s);
    }
    text(buf, &r.endpoint);
    text(buf, &r.gateway);
    text(buf, &r.detail);
}

/// A payload being read.
struct Dec<'a>(&'a [u8]);

impl Dec<'_> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.0.split_first().ok_or(DecodeError::Short)?;
        self.0 = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u128, DecodeError> {
        let mut v = 0u128;
        for shift in (0..128).step_by(7) {
            let b = self.u8()?;
            v |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Value("varint"))
    }

    fn uint(&mut self) -> Result<u64, DecodeError> {
        u64::try_from(self.varint()?).map_err(|_| DecodeError::Value("integer"))
    }

    fn small<T: TryFrom<u64>>(&mut self, what: &'static str) -> Result<T, DecodeError> {
        T::try_from(self.uint()?).map_err(|_| DecodeError::Value(what))
    }

    fn int(&mut self) -> Result<i64, DecodeError> {
        let v = self.uint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn money(&mut self) -> Result<Money, DecodeError> {
        let v = self.varint()?;
        Ok(Money::from_picos(((v >> 1) as i128) ^ -((v & 1) as i128)))
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Short);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn text(&mut self) -> Result<String, DecodeError> {
        let n = self.small::<usize>("length")?;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Value("text"))
    }

    fn opt_text(&mut self, present: bool) -> Result<Option<String>, DecodeError> {
        present.then(|| self.text()).transpose()
    }

    fn pick<T: Copy>(&mut self, table: &[T], what: &'static str) -> Result<T, DecodeError> {
        let c = self.u8()?;
        table
            .get(usize::from(c))
            .copied()
            .ok_or(DecodeError::Value(what))
    }

    fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        let b: [u8; 16] = self.bytes(16)?.try_into().map_err(|_| DecodeError::Short)?;
        Ok(Uuid::from_bytes(b))
    }
}

fn read_spend(d: &mut Dec<'_>) -> Result<SpendEvent, DecodeError> {
    let flags = d.uint()?;
    let has = |f: u64| flags & f != 0;
    let id = d.uuid()?;
    let finished_at_ms = d.int()?;
    let started_at_ms = finished_at_ms.wrapping_sub(d.int()?);
    let latency_ms = d.small("latency_ms")?;
    let gateway = d.text()?;
    let provider = d.text()?;
    let model = d.text()?;
    let endpoint = d.text()?;
    let attribution = Attribution {
        key_id: d.int()?,
        user: d.text()?,
        team: d.opt_text(has(F_TEAM))?,
        workflow: d.opt_text(has(F_WORKFLOW))?,
        workflow_requested: d.opt_text(has(F_WORKFLOW_REQUESTED))?,
    };
    let cache_outcome = d.pick(&CACHE_OUTCOMES, "cache_outcome")?;
    let status = d.pick(&STATUSES, "status")?;
    let http_status = d.small("http_status")?;
    let usage = Usage {
        input_tokens: d.uint()?,
        output_tokens: d.uint()?,
        cached_input_tokens: d.uint()?,
        cache_write_tokens: d.uint()?,
        cache_write_1h_tokens: d.uint()?,
        reasoning_tokens: d.uint()?,
        audio_input_tokens: d.uint()?,
        audio_output_tokens: d.uint()?,
        web_search_calls: d.uint()?,
        service_tier: d.pick(&TIERS, "service_tier")?,
        provider_cost: has(F_PROVIDER_COST).then(|| d.money()).transpose()?,
    };
    let usage_source = d.pick(&SOURCES, "usage_source")?;
    let cost = d.money()?;
    let price_confidence = d.pick(&CONFIDENCES, "price_confidence")?;
    let lines = d.small::<usize>("price_lines")?;
    let mut price_lines = Vec::with_capacity(lines.min(KINDS.len()));
    for _ in 0..lines {
        price_lines.push(PriceLine {
            kind: d.pick(&KINDS, "kind")?,
            tokens: d.uint()?,
            price_per_mtok: PricePerMtok::from_micros(d.int()?),
            cost: d.money()?,
            rate: d.pick(&RATES, "rate")?,
        });
    }
    let error = d.opt_text(has(F_ERROR))?;
    let wallet_id = has(F_WALLET).then(|| d.int()).transpose()?;
    let fingerprint = if has(F_FINGERPRINT) {
        let b: [u8; 8] = d.bytes(8)?.try_into().map_err(|_| DecodeError::Short)?;
        Some(u64::from_le_bytes(b))
    } else {
        None
    };
    let n = d.small::<usize>("leases")?;
    let mut leases = Vec::with_capacity(n.min(16));
    for _ in 0..n {
        leases.push(d.int()?);
    }
    let attempts = d.small("attempts")?;
    let n = d.small::<usize>("failed_attempts")?;
    let mut failed_attempts = Vec::with_capacity(n.min(16));
    for _ in 0..n {
        failed_attempts.push(FailedAttempt {
            provider: d.text()?,
            model: d.text()?,
            http_status: d.small("http_status")?,
            error: d.text()?,
        });
    }
    let avoided_cost = d.money()?;
    let upstream_api = d.opt_text(has(F_UPSTREAM_API))?;
    Ok(SpendEvent {
        id,
        started_at_ms,
        finished_at_ms,
        latency_ms,
        gateway,
        provider,
        model,
        endpoint,
        stream: has(F_STREAM),
        attribution,
        cache_outcome,
        status,
        http_status,
        usage,
        usage_source,
        cost,
        price_confidence,
        price_lines,
        error,
        wallet_id,
        fingerprint,
        leases,
        attempts,
        failed_attempts,
        avoided_cost,
        upstream_api,
    })
}

fn read_refusal(d: &mut Dec<'_>) -> Result<RefusalEvent, DecodeError> {
    let flags = d.uint()?;
    let has = |f: u64| flags & f != 0;
    let id = d.uuid()?;
    let at_ms = d.int()?;
    let reason =
        RefusalReason::from_code(i64::from(d.u8()?)).ok_or(DecodeError::Value("reason"))?;
    let http_status = d.small("http_status")?;
    let key_id = has(R_KEY).then(|| d.int()).transpose()?;
    let budget_id = has(R_BUDGET).then(|| d.int()).transpose()?;
    let wallet_id = has(R_WALLET).then(|| d.int()).transpose()?;
    Ok(RefusalEvent {
        id,
        at_ms,
        reason,
        http_status,
        key_id,
        user: d.opt_text(has(R_USER))?,
        team: d.opt_text(has(R_TEAM))?,
        model: d.opt_text(has(R_MODEL))?,
        endpoint: d.text()?,
        gateway: d.text()?,
        detail: d.text()?,
        budget_id,
        wallet_id,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Adding a variant to any of these enums fails to compile here until it is in its wire table (at the end).
    #[test]
    fn every_variant_has_a_code_of_its_own() {
        fn listed<T: PartialEq>(table: &[T], v: T) -> bool {
            table.iter().filter(|t| **t == v).count() == 1
        }
        for c in CACHE_OUTCOMES {
            match c {
                CacheOutcome::Hit
                | CacheOutcome::Miss
                | CacheOutcome::Bypass
                | CacheOutcome::NotCacheable => {
                    assert!(listed(&CACHE_OUTCOMES, c))
                }
            }
        }
        for s in STATUSES {
            match s {
                RequestStatus::Ok
                | RequestStatus::UpstreamError
                | RequestStatus::ClientDisconnected => {
                    assert!(listed(&STATUSES, s))
                }
            }
        }
        for k in KINDS {
            match k {
                TokenKind::Input
                | TokenKind::CachedInput
                | TokenKind::CacheWrite
                | TokenKind::Output
                | TokenKind::AudioInput
                | TokenKind::CacheWrite1h
                | TokenKind::Reasoning
                | TokenKind::AudioOutput
                | TokenKind::WebSearch => assert!(listed(&KINDS, k)),
            }
        }
        for r in RATES {
            match r {
                Rate::Standard | Rate::Flex | Rate::Priority | Rate::LongContext => {
                    assert!(listed(&RATES, r))
                }
            }
        }
        for t in TIERS {
            match t {
                ServiceTier::Standard | ServiceTier::Flex | ServiceTier::Priority => {
                    assert!(listed(&TIERS, t))
                }
            }
        }
        for s in SOURCES {
            match s {
                UsageSource::Reported | UsageSource::Estimated => assert!(listed(&SOURCES, s)),
            }
        }
        for c in CONFIDENCES {
            match c {
                PriceConfidence::Exact
                | PriceConfidence::Fallback
                | PriceConfidence::Estimated
                | PriceConfidence::Inferred => assert!(listed(&CONFIDENCES, c)),
            }
        }
    }

    /// Amounts are exact at both ends of their range, and varints at theirs.
    #[test]
    fn integers_read_back_at_their_extremes() {
        let mut buf = Vec::new();
        let moneys = [0, 1, -1, i128::MAX, i128::MIN, i128::from(i64::MIN) * 3];
        let ints = [0, 1, -1, i64::MAX, i64::MIN];
        for m in moneys {
            money(&mut buf, Money::from_picos(m));
        }
        for i in ints {
            int(&mut buf, i);
        }
        uint(&mut buf, u64::MAX);
        let mut d = Dec(&buf);
        for m in moneys {
            assert_eq!(d.money().unwrap(), Money::from_picos(m));
        }
        for i in ints {
            assert_eq!(d.int().unwrap(), i);
        }
        assert_eq!(d.uint().unwrap(), u64::MAX);
        assert!(d.0.is_empty());
        assert_eq!(Dec(&[0x80]).uint(), Err(DecodeError::Short));
    }
}
