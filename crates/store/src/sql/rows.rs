//! Rows back into records, written once for both drivers. A backend implements [`Cells`] for its row type (how
//! to read an integer, a text, a flag, a UUID or an amount of money) and every mapper here works on either.

use std::collections::HashMap;

use spendgate_core::anomaly::RepeatedRequest;
use spendgate_core::controls::{Period, Scope};
use spendgate_core::query::Totals;
use spendgate_core::time::Grain;
use spendgate_core::{
    Attribution, CacheOutcome, Money, PriceConfidence, RequestStatus, SpendEvent, Usage,
    UsageSource,
};
use uuid::Uuid;

use super::detail::read_detail;
use crate::controls::{
    AlertRecord, AuditEntry, AuditRecord, BudgetRecord, Delivery, LedgerEntry, LedgerKind,
    NewAlert, NewBudget, NewRateLimit, NewWallet, RateLimitRecord, WalletRecord,
};
use crate::{ActivityRow, KeyRecord, Result, StoreError, StoredSpendLog, ViewerToken};

/// Reading one cell of a result row, whatever the driver.
pub trait Cells {
    fn opt_int(&self, i: usize) -> Result<Option<i64>>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
    fn flag(&self, i: usize) -> Result<bool>;
    fn opt_uuid(&self, i: usize) -> Result<Option<Uuid>>;
    /// An amount in picodollars: an integer column, or a decimal text (a sum). NULL (an empty sum) is zero.
    fn money(&self, i: usize) -> Result<Money>;

    fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| StoreError::Database(format!("column {i} is unexpectedly NULL")))
    }

    fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| StoreError::Database(format!("column {i} is unexpectedly NULL")))
    }

    /// A count that cannot be negative; NULL (an empty sum) is zero.
    fn count(&self, i: usize) -> Result<u64> {
        Ok(u64::try_from(self.opt_int(i)?.unwrap_or(0)).unwrap_or(0))
    }
}

/// The `Cells` methods every driver reads the same way, through its own getter (`get` for rusqlite, `try_get`
/// for tokio-postgres): integers, texts and flags.
macro_rules! plain_cells {
    ($get:ident) => {
        fn opt_int(&self, i: usize) -> $crate::Result<Option<i64>> {
            Ok(self.$get(i)?)
        }

        fn opt_text(&self, i: usize) -> $crate::Result<Option<String>> {
            Ok(self.$get(i)?)
        }

        fn flag(&self, i: usize) -> $crate::Result<bool> {
            Ok(self.$get(i)?)
        }
    };
}
pub(crate) use plain_cells;

/// Parses a sum of picodollars written as decimal text (how both backends return money sums).
pub fn parse_picos(s: &str) -> Result<Money> {
    s.trim()
        .parse::<i128>()
        .map(Money::from_picos)
        .map_err(|_| StoreError::Database(format!("'{s}' is not a whole number of picodollars")))
}

/// Fingerprints are 64-bit hashes; database integers are signed, so the same 64 bits are stored as an i64.
pub fn fingerprint_to_sql(fp: u64) -> i64 {
    i64::from_ne_bytes(fp.to_ne_bytes())
}

pub fn fingerprint_from_sql(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

pub fn totals_at(r: &dyn Cells, i: usize) -> Result<Totals> {
    Ok(Totals {
        requests: r.count(i)?,
        errors: r.count(i + 1)?,
        input_tokens: r.count(i + 2)?,
        output_tokens: r.count(i + 3)?,
        cached_input_tokens: r.count(i + 4)?,
        cache_write_tokens: r.count(i + 5)?,
        cost: r.money(i + 6)?,
        avoided_cost: r.money(i + 7)?,
    })
}

/// An explorer row: (group id, totals).
pub fn group_row(r: &dyn Cells) -> Result<(i64, Totals)> {
    Ok((r.int(0)?, totals_at(r, 1)?))
}

/// A series row: (bucket, group id, totals).
pub fn series_row(r: &dyn Cells) -> Result<(i64, i64, Totals)> {
    Ok((r.int(0)?, r.int(1)?, totals_at(r, 2)?))
}

/// A name row: (id, name).
pub fn name_row(r: &dyn Cells) -> Result<(i64, String)> {
    Ok((r.int(0)?, r.text(1)?))
}

/// A key named for a grouping: (id, "key 3 (alice, …abcd)").
pub fn key_name_row(r: &dyn Cells) -> Result<(i64, String)> {
    let id = r.int(0)?;
    Ok((id, super::plan::key_label(id, &r.text(1)?, &r.text(2)?)))
}

/// An activity row before naming: ([bucket, key, user, team, workflow, gateway], totals).
pub type RawActivity = ([i64; 6], Totals);

pub fn activity_row(r: &dyn Cells) -> Result<RawActivity> {
    let mut ids = [0i64; 6];
    for (i, v) in ids.iter_mut().enumerate() {
        *v = r.int(i)?;
    }
    Ok((ids, totals_at(r, 6)?))
}

/// The label ids (other than 0, "none") that activity rows need named.
pub fn activity_label_ids(raw: &[RawActivity]) -> Vec<i64> {
    let mut ids: Vec<i64> = raw
        .iter()
        .flat_map(|([_, _, user, team, workflow, gateway], _)| [*user, *team, *workflow, *gateway])
        .filter(|id| *id != 0)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

pub fn activity_rows(
    grain: Grain,
    raw: Vec<RawActivity>,
    names: &HashMap<i64, String>,
) -> Vec<ActivityRow> {
    let name = |id: i64| (id != 0).then(|| names.get(&id).cloned()).flatten();
    raw.into_iter()
        .map(
            |([bucket, key_id, user, team, workflow, gateway], totals)| ActivityRow {
                bucket_start_ms: bucket * grain.ms(),
                key_id,
                user: name(user).unwrap_or_default(),
                team: name(team),
                workflow: name(workflow),
                gateway: name(gateway).unwrap_or_default(),
                totals,
            },
        )
        .collect()
}

/// A repeated request before naming its team and workflow.
pub fn repeated_row(r: &dyn Cells) -> Result<(RepeatedRequest, i64, i64)> {
    Ok((
        RepeatedRequest {
            key_id: r.int(0)?,
            team: None,
            workflow: None,
            fingerprint: fingerprint_from_sql(r.int(1)?),
            requests: r.count(2)?,
            first_ms: r.int(3)?,
            last_ms: r.int(4)?,
            cost: r.money(5)?,
        },
        r.int(6)?,
        r.int(7)?,
    ))
}

/// The label ids (teams and workflows, other than 0) that repeated requests need named.
pub fn repeated_label_ids(raw: &[(RepeatedRequest, i64, i64)]) -> Vec<i64> {
    let mut ids: Vec<i64> = raw.iter().flat_map(|(_, t, w)| [*t, *w]).collect();
    ids.retain(|id| *id != 0);
    ids.sort_unstable();
    ids.dedup();
    ids
}

pub fn repeated_rows(
    raw: Vec<(RepeatedRequest, i64, i64)>,
    names: &HashMap<i64, String>,
) -> Vec<RepeatedRequest> {
    raw.into_iter()
        .map(|(mut rr, team, workflow)| {
            rr.team = names.get(&team).cloned();
            rr.workflow = names.get(&workflow).cloned();
            rr
        })
        .collect()
}

/// A spend log as selected by `queries::LOG_SELECT`.
pub fn stored_log(r: &dyn Cells) -> Result<StoredSpendLog> {
    let usage = Usage {
        input_tokens: r.count(17)?,
        output_tokens: r.count(18)?,
        cached_input_tokens: r.count(19)?,
        cache_write_tokens: r.count(20)?,
        ..Usage::default()
    };
    let detail = read_detail(&r.text(24)?, &usage);
    let usage = Usage {
        provider_cost: detail.provider_cost,
        ..usage
    };
    Ok(StoredSpendLog {
        seq: r.int(0)?,
        event: SpendEvent {
            id: r.opt_uuid(1)?.unwrap_or_default(),
            finished_at_ms: r.int(2)?,
            started_at_ms: r.int(3)?,
            latency_ms: u32::try_from(r.int(4)?).unwrap_or(u32::MAX),
            gateway: r.opt_text(5)?.unwrap_or_default(),
            provider: r.opt_text(6)?.unwrap_or_default(),
            model: r.opt_text(7)?.unwrap_or_default(),
            attribution: Attribution {
                key_id: r.int(8)?,
                user: r.opt_text(9)?.unwrap_or_default(),
                team: r.opt_text(10)?,
                workflow: r.opt_text(11)?,
                workflow_requested: detail.workflow_requested,
            },
            endpoint: r.text(12)?,
            stream: r.flag(13)?,
            cache_outcome: CacheOutcome::from_code(r.int(14)?),
            status: RequestStatus::from_code(r.int(15)?),
            http_status: u16::try_from(r.int(16)?).unwrap_or(0),
            usage,
            cost: r.money(21)?,
            usage_source: UsageSource::from_code(r.int(22)?),
            price_confidence: PriceConfidence::from_code(r.int(23)?),
            price_lines: detail.price_lines,
            error: detail.error,
            wallet_id: r.opt_int(25)?,
            fingerprint: r.opt_int(26)?.map(fingerprint_from_sql),
            leases: Vec::new(),
            attempts: u32::try_from(r.int(27)?).unwrap_or(1),
            failed_attempts: detail.failed_attempts,
            avoided_cost: r.money(28)?,
            upstream_api: detail.upstream_api,
        },
    })
}

pub const KEY_COLUMNS: &str =
    "id, hint, user_name, team_name, created_at_ms, revoked_at_ms, expires_at_ms";

pub fn key_record(r: &dyn Cells) -> Result<KeyRecord> {
    Ok(KeyRecord {
        id: r.int(0)?,
        hint: r.text(1)?,
        user: r.text(2)?,
        team: r.opt_text(3)?,
        created_at_ms: r.int(4)?,
        revoked_at_ms: r.opt_int(5)?,
        expires_at_ms: r.opt_int(6)?,
    })
}

pub const VIEWER_COLUMNS: &str = "id, team, name, created_at_ms, expires_at_ms";

pub fn viewer_token(r: &dyn Cells) -> Result<ViewerToken> {
    Ok(ViewerToken {
        id: r.int(0)?,
        team: r.text(1)?,
        name: r.text(2)?,
        created_at_ms: r.int(3)?,
        expires_at_ms: r.opt_int(4)?,
    })
}

fn scope_of(kind: &str, subject: &str) -> Scope {
    Scope::parse(kind, Some(subject)).unwrap_or(Scope::Org)
}

pub const BUDGET_COLUMNS: &str =
    "id, name, scope, subject, period, amount_pico, thresholds, hard_limit, created_at_ms, updated_at_ms";

pub fn budget(r: &dyn Cells) -> Result<BudgetRecord> {
    Ok(BudgetRecord {
        id: r.int(0)?,
        def: NewBudget {
            name: r.opt_text(1)?,
            scope: scope_of(&r.text(2)?, &r.text(3)?),
            period: Period::parse(&r.text(4)?).unwrap_or(Period::Month),
            amount: r.money(5)?,
            thresholds: r
                .text(6)?
                .split(',')
                .filter_map(|t| t.parse().ok())
                .collect(),
            hard_limit: r.flag(7)?,
        },
        created_at_ms: r.int(8)?,
        updated_at_ms: r.int(9)?,
    })
}

pub const RATE_LIMIT_COLUMNS: &str = "id, scope, subject, rpm, tpm, created_at_ms, updated_at_ms";

pub fn rate_limit(r: &dyn Cells) -> Result<RateLimitRecord> {
    let limit =
        |i: usize| -> Result<Option<u64>> { Ok(r.opt_int(i)?.and_then(|v| u64::try_from(v).ok())) };
    Ok(RateLimitRecord {
        id: r.int(0)?,
        def: NewRateLimit {
            scope: scope_of(&r.text(1)?, &r.text(2)?),
            rpm: limit(3)?,
            tpm: limit(4)?,
        },
        created_at_ms: r.int(5)?,
        updated_at_ms: r.int(6)?,
    })
}

pub const WALLET_COLUMNS: &str =
    "id, name, scope, subject, low_pico, balance_pico, allocated_pico, spent_pico, created_at_ms";

pub fn wallet(r: &dyn Cells) -> Result<WalletRecord> {
    Ok(WalletRecord {
        id: r.int(0)?,
        def: NewWallet {
            name: r.text(1)?,
            scope: scope_of(&r.text(2)?, &r.text(3)?),
            low_threshold: r.money(4)?,
        },
        balance: r.money(5)?,
        total_allocated: r.money(6)?,
        total_spent: r.money(7)?,
        created_at_ms: r.int(8)?,
    })
}

pub const LEDGER_COLUMNS: &str =
    "id, wallet_id, kind, amount_pico, actor, reason, counterparty, request_id, at_ms";

pub fn ledger_entry(r: &dyn Cells) -> Result<LedgerEntry> {
    Ok(LedgerEntry {
        id: r.int(0)?,
        wallet_id: r.int(1)?,
        kind: LedgerKind::parse(&r.text(2)?).unwrap_or(LedgerKind::Settle),
        amount: r.money(3)?,
        actor: r.text(4)?,
        reason: r.text(5)?,
        counterparty: r.opt_int(6)?,
        request_id: r.opt_uuid(7)?.map(|u| u.to_string()),
        at_ms: r.int(8)?,
    })
}

pub const ALERT_COLUMNS: &str =
    "id, kind, subject, team, period_start_ms, threshold, message, at_ms, link";

pub fn alert(r: &dyn Cells) -> Result<AlertRecord> {
    Ok(AlertRecord {
        id: r.int(0)?,
        alert: NewAlert {
            kind: r.text(1)?,
            subject: r.text(2)?,
            team: r.opt_text(3)?,
            period_start_ms: r.int(4)?,
            threshold: u32::try_from(r.int(5)?).unwrap_or(0),
            message: r.text(6)?,
            link: r.opt_text(8)?,
        },
        at_ms: r.int(7)?,
    })
}

pub const DELIVERY_COLUMNS: &str = "id, alert_id, target, attempt, ok, detail, at_ms";

pub fn delivery(r: &dyn Cells) -> Result<Delivery> {
    Ok(Delivery {
        id: r.int(0)?,
        alert_id: r.int(1)?,
        target: r.text(2)?,
        attempt: u32::try_from(r.int(3)?).unwrap_or(0),
        ok: r.flag(4)?,
        detail: r.text(5)?,
        at_ms: r.int(6)?,
    })
}

pub const AUDIT_COLUMNS: &str = "id, actor, action, target, before, after, at_ms";

pub fn audit(r: &dyn Cells) -> Result<AuditRecord> {
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    Ok(AuditRecord {
        id: r.int(0)?,
        entry: AuditEntry {
            actor: r.text(1)?,
            action: r.text(2)?,
            target: r.text(3)?,
            before: json(r.opt_text(4)?),
            after: json(r.opt_text(5)?),
        },
        at_ms: r.int(6)?,
    })
}
