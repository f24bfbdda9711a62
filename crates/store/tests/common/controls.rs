//! Store checks of the controls, shared by every backend: leases, rate limits, wallet charges and their ledger,
//! and keys, budgets, alerts and the audit log.

use std::sync::Arc;

use spendgate_core::controls::{Period, Scope};
use spendgate_core::query::{Filters, NO_TEAM_FILTER};
use spendgate_core::time::{now_ms, HOUR_MS};
use spendgate_core::{Money, SpendEvent};
use spendgate_store::controls::{AuditEntry, NewAlert, NewBudget, NewWallet, Transfer};
use spendgate_store::{NewKey, Store};

use super::{event, window, write};

/// Leases: a grant never exceeds what is left of a budget or a wallet once the other replicas' live leases are
/// counted; spend written against a lease is recorded in the same transaction; a released lease keeps only what
/// was spent, and an expired one stops counting.
pub async fn leases_never_grant_more_than_is_left(store: &dyn Store) {
    use spendgate_store::replicas::{LeaseRequest, LeaseTarget};
    let now = now_ms();
    let budget = LeaseTarget::Budget {
        id: 7,
        period_start_ms: now - HOUR_MS,
        filters: Box::new(Filters {
            team: Some("leased".into()),
            ..window(now - HOUR_MS, now + 1)
        }),
        amount: Money::from_picos(1_000),
    };
    let ask = |gateway: &str, keep: i128, want: i128, ttl_ms: i64| LeaseRequest {
        target: budget.clone(),
        gateway: gateway.into(),
        keep: Money::from_picos(keep),
        want: Money::from_picos(want),
        ttl_ms,
    };
    let a = store.lease(ask("a", 0, 600, 60_000)).await.unwrap();
    assert_eq!(a.granted, Money::from_picos(600));
    let b = store.lease(ask("b", 0, 600, 60_000)).await.unwrap();
    assert_eq!(
        b.granted,
        Money::from_picos(400),
        "only what a did not take"
    );
    assert_eq!(b.unleased, Money::ZERO);
    // Spend written against a's lease is recorded with it and counted once (in the rollups, not the lease).
    let mut e = event(now - 1_000, Some("leased"), "u", "a", 10, 5, 250);
    e.leases = vec![a.id];
    store.write_batch(Arc::new(vec![e])).await.unwrap();
    let live = store.list_leases(now).await.unwrap();
    let a_row = live.iter().find(|l| l.id == a.id).unwrap();
    assert_eq!(a_row.recorded, Money::from_picos(250));
    // a gives back what it did not spend: b can now take it.
    store
        .release_lease(a.id, Money::from_picos(250))
        .await
        .unwrap();
    let b2 = store.lease(ask("b", 400, 600, 60_000)).await.unwrap();
    assert_eq!(b2.granted, Money::from_picos(750), "1,000 - 250 spent");
    // A lease that expired stops counting: c's short lease is gone once its time has passed.
    let c = store.lease(ask("c", 0, 100, 1)).await.unwrap();
    assert_eq!(
        c.granted,
        Money::ZERO,
        "nothing left while b holds the rest"
    );
    let live = store.list_leases(now_ms() + 10).await.unwrap();
    assert!(live.iter().all(|l| l.gateway != "c"));
}

/// Rate limits: one per key or team, replaced by the next for the same subject, refused when they could never be
/// enforced as meant, deleted by id. Their leases share the limit like a budget's amount, apart for requests and
/// tokens, and a lease's share stays taken for a minute after it ends (what it counted is still in the window).
pub async fn rate_limits_round_trip_and_their_leases_share_the_limit(store: &dyn Store) {
    use spendgate_store::controls::NewRateLimit;
    use spendgate_store::replicas::{count_of, units, LeaseRequest, LeaseTarget, RateMeasure};
    let def = NewRateLimit {
        scope: Scope::Key(7),
        rpm: Some(10),
        tpm: None,
    };
    let (before, first) = store.upsert_rate_limit(def.clone()).await.unwrap();
    assert!(before.is_none());
    assert_eq!(first.def, def);
    let changed = NewRateLimit {
        rpm: None,
        tpm: Some(20_000),
        ..def
    };
    let (before, second) = store.upsert_rate_limit(changed.clone()).await.unwrap();
    assert_eq!(before.map(|b| b.def), Some(first.def.clone()));
    assert_eq!((second.id, second.def.clone()), (first.id, changed));
    for bad in [
        NewRateLimit {
            scope: Scope::Org,
            rpm: Some(1),
            tpm: None,
        },
        NewRateLimit {
            scope: Scope::Team(NO_TEAM_FILTER.into()),
            rpm: Some(1),
            tpm: None,
        },
        NewRateLimit {
            scope: Scope::Team("t".into()),
            rpm: Some(0),
            tpm: None,
        },
        NewRateLimit {
            scope: Scope::Team("t".into()),
            rpm: None,
            tpm: None,
        },
    ] {
        assert!(
            store.upsert_rate_limit(bad.clone()).await.is_err(),
            "{bad:?}"
        );
    }
    assert_eq!(
        store.list_rate_limits().await.unwrap(),
        vec![second.clone()]
    );
    assert_eq!(
        store.delete_rate_limit(second.id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(store.delete_rate_limit(second.id).await.unwrap(), None);
    assert!(store.list_rate_limits().await.unwrap().is_empty());

    let target =
        |id: i64, measure: RateMeasure, limit: u64| LeaseTarget::Rate { id, measure, limit };
    let ask =
        |target: LeaseTarget, gateway: &str, keep: u64, want: u64, ttl_ms: i64| LeaseRequest {
            target,
            gateway: gateway.into(),
            keep: units(keep),
            want: units(want),
            ttl_ms,
        };
    let requests = target(1, RateMeasure::Requests, 10);
    let a = store
        .lease(ask(requests.clone(), "a", 0, 6, 60_000))
        .await
        .unwrap();
    let b = store
        .lease(ask(requests.clone(), "b", 0, 6, 60_000))
        .await
        .unwrap();
    assert_eq!((count_of(a.granted), count_of(b.granted)), (6, 4));
    // The same limit's tokens are shared on their own.
    let tokens = store
        .lease(ask(
            target(1, RateMeasure::Tokens, 500),
            "a",
            0,
            300,
            60_000,
        ))
        .await
        .unwrap();
    assert_eq!(count_of(tokens.granted), 300);
    // a stops, keeping the 2 it counted: b may grow into the rest of a's share.
    store.release_lease(a.id, units(2)).await.unwrap();
    let b2 = store
        .lease(ask(requests, "b", 4, 10, 60_000))
        .await
        .unwrap();
    assert_eq!(count_of(b2.granted), 8);
    // A lease that expired still holds its share for the window after it: its counts are in it.
    let short = target(2, RateMeasure::Requests, 5);
    let d = store.lease(ask(short.clone(), "d", 0, 2, 1)).await.unwrap();
    assert_eq!(count_of(d.granted), 2);
    let t0 = std::time::Instant::now();
    while store
        .list_leases(now_ms())
        .await
        .unwrap()
        .iter()
        .any(|l| l.id == d.id)
    {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "d's 1 ms lease never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let e = store.lease(ask(short, "e", 0, 5, 60_000)).await.unwrap();
    assert_eq!(
        count_of(e.granted),
        3,
        "d's expired lease still holds its 2"
    );
}

pub async fn wallet_charges_keep_the_ledger_equal_to_the_balance(store: &dyn Store) {
    let w = store
        .create_wallet(NewWallet {
            name: "support".into(),
            scope: Scope::Team("support".into()),
            low_threshold: Money::from_picos(1),
        })
        .await
        .unwrap();
    let top_up = Money::from_picos(10_000_000_000_000);
    store
        .transfer(
            Transfer::TopUp {
                wallet: w.id,
                amount: top_up,
            },
            "admin",
            "first",
        )
        .await
        .unwrap();
    let now = now_ms();
    let events: Vec<SpendEvent> = (0..200i64)
        .map(|i| {
            let mut e = event(
                now - i * 1000,
                Some("support"),
                "u",
                "m",
                10,
                5,
                7_000 + i128::from(i),
            );
            e.wallet_id = Some(w.id);
            e
        })
        .collect();
    let spent: Money = events.iter().map(|e| e.cost).sum();
    let batch = Arc::new(events);
    assert_eq!(write(store, &batch).await.inserted, 200);
    assert_eq!(write(store, &batch).await.duplicates, 200);
    let after = store
        .list_wallets()
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.id == w.id)
        .unwrap();
    assert_eq!(
        after.balance,
        top_up - spent,
        "a replayed batch charges nothing twice"
    );
    assert_eq!(after.total_spent, spent);
    assert_eq!(store.ledger_sum(w.id).await.unwrap(), after.balance);
    assert_eq!(
        store.wallet_spent_since(w.id, now - HOUR_MS).await.unwrap(),
        spent
    );
    let entries = store.ledger(w.id, 1000, None).await.unwrap();
    assert_eq!(entries.len(), 201);
    assert!(entries.iter().filter(|e| e.request_id.is_some()).count() == 200);

    // A batch that mixes stored events, new ones and new ones repeated within it (SQLite writes it many rows per
    // statement, so repeats land inside one statement and across two) stores and charges each new event once.
    let stored = batch.iter().step_by(4).cloned();
    let new: Vec<SpendEvent> = (0..40i64)
        .map(|i| {
            let mut e = event(
                now - i * 1000 - 500,
                Some("support"),
                "u",
                "m",
                10,
                5,
                9_000,
            );
            e.wallet_id = Some(w.id);
            e
        })
        .collect();
    let mut mixed: Vec<SpendEvent> = Vec::new();
    for (i, old) in stored.enumerate() {
        mixed.push(old);
        if let Some(e) = new.get(i) {
            mixed.push(e.clone());
        }
        if i % 5 == 0 {
            mixed.push(new[i / 2].clone());
        }
    }
    let repeated = mixed.len() - 50 - new.len();
    let report = write(store, &Arc::new(mixed)).await;
    assert_eq!(
        (report.inserted, report.duplicates),
        (new.len(), 50 + repeated)
    );
    let spent = spent + new.iter().map(|e| e.cost).sum::<Money>();
    let wallet = store.list_wallets().await.unwrap();
    let after = wallet.into_iter().find(|x| x.id == w.id).unwrap();
    assert_eq!((after.balance, after.total_spent), (top_up - spent, spent));
    assert_eq!(store.ledger_sum(w.id).await.unwrap(), after.balance);
    let total = store
        .summary(&window(now - HOUR_MS, now + HOUR_MS))
        .await
        .unwrap();
    assert_eq!((total.requests, total.cost), (240, spent));
    // Refusals: moving more than a wallet holds, and wallets for keys.
    let child = store
        .create_wallet(NewWallet {
            name: "child".into(),
            scope: Scope::User("u".into()),
            low_threshold: Money::ZERO,
        })
        .await
        .unwrap();
    let err = store
        .transfer(
            Transfer::Allocate {
                from: w.id,
                to: child.id,
                amount: top_up,
            },
            "admin",
            "too much",
        )
        .await;
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("does not hold enough"));
    assert_eq!(
        store.ledger_sum(w.id).await.unwrap(),
        after.balance,
        "a refused transfer leaves nothing"
    );
    assert_eq!(store.ledger_sum(child.id).await.unwrap(), Money::ZERO);
    assert!(store
        .create_wallet(NewWallet {
            name: "k".into(),
            scope: Scope::Key(1),
            low_threshold: Money::ZERO,
        })
        .await
        .is_err());
}

pub async fn controls_keys_and_audit_round_trip(store: &dyn Store) {
    let budget = NewBudget {
        name: Some("team budget".into()),
        scope: Scope::Team("search".into()),
        period: Period::Month,
        amount: Money::from_picos(5_000_000_000_000),
        thresholds: vec![50, 100],
        hard_limit: true,
    };
    let (before, first) = store.upsert_budget(budget.clone()).await.unwrap();
    assert!(before.is_none());
    assert_eq!(first.def, budget);
    let changed = NewBudget {
        amount: Money::from_picos(6),
        hard_limit: false,
        ..budget
    };
    let (before, second) = store.upsert_budget(changed.clone()).await.unwrap();
    assert_eq!(before.unwrap().def.amount, first.def.amount);
    assert_eq!((second.id, second.def.clone()), (first.id, changed));
    assert_eq!(store.list_budgets().await.unwrap().len(), 1);

    let alert = NewAlert {
        kind: "budget_near".into(),
        subject: format!("budget:{}", first.id),
        team: Some("search".into()),
        period_start_ms: 1_000,
        threshold: 50,
        message: "half spent".into(),
        link: Some("/usage".into()),
    };
    let recorded = store.record_alert(alert.clone()).await.unwrap().unwrap();
    assert!(
        store.record_alert(alert.clone()).await.unwrap().is_none(),
        "an alert fires once per crossing"
    );
    let listed = store.list_alerts(10).await.unwrap();
    assert_eq!((listed.len(), listed[0].alert.clone()), (1, alert));
    store
        .record_delivery(spendgate_store::controls::Delivery {
            id: 0,
            alert_id: recorded.id,
            target: "http://127.0.0.1:1/hook".into(),
            attempt: 2,
            ok: false,
            detail: "refused".into(),
            at_ms: 5,
        })
        .await
        .unwrap();
    let d = store.list_deliveries(10).await.unwrap();
    assert_eq!(
        (d[0].alert_id, d[0].attempt, d[0].ok),
        (recorded.id, 2, false)
    );

    store
        .record_audit(AuditEntry {
            actor: "admin".into(),
            action: "budget.set".into(),
            target: "budget:1".into(),
            before: None,
            after: Some(serde_json::json!({ "amount": "5.00" })),
        })
        .await
        .unwrap();
    let audit = store.list_audit(0, now_ms() + 1000, 10).await.unwrap();
    assert_eq!(
        audit[0].entry.after,
        Some(serde_json::json!({ "amount": "5.00" }))
    );

    let key = store
        .create_key(NewKey {
            hash: [7; 32],
            hint: "abcd".into(),
            user: "alice".into(),
            team: None,
            expires_at_ms: Some(4_000_000_000_000),
        })
        .await
        .unwrap();
    assert_eq!(store.key_by_hash([7; 32]).await.unwrap(), Some(key.clone()));
    assert_eq!(store.key_by_hash([8; 32]).await.unwrap(), None);
    assert_eq!(store.list_keys().await.unwrap(), vec![key.clone()]);

    // A rotated key keeps its identity under a new hash; the old hash finds nothing.
    let rotated = store
        .rotate_key(key.id, [8; 32], "wxyz".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rotated.id, rotated.hint.as_str()), (key.id, "wxyz"));
    assert_eq!(rotated.expires_at_ms, key.expires_at_ms);
    assert_eq!(store.key_by_hash([7; 32]).await.unwrap(), None);
    assert_eq!(store.key_by_hash([8; 32]).await.unwrap(), Some(rotated));
    // Revoking keeps the first revocation time; a revoked key cannot be rotated back to life.
    let revoked = store.revoke_key(key.id, 1_000).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at_ms, Some(1_000));
    let again = store.revoke_key(key.id, 2_000).await.unwrap().unwrap();
    assert_eq!(again.revoked_at_ms, Some(1_000));
    assert_eq!(
        store.rotate_key(key.id, [6; 32], "x".into()).await.unwrap(),
        None
    );
    assert_eq!(store.revoke_key(key.id + 100, 1).await.unwrap(), None);

    let viewer = store
        .create_viewer_token(
            [9; 32],
            "search".into(),
            "dash".into(),
            Some(4_102_444_800_000),
        )
        .await
        .unwrap();
    // The expiry is kept and read back; an expired token is still found (the caller says why it is refused).
    assert_eq!(viewer.expires_at_ms, Some(4_102_444_800_000));
    assert!(!viewer.expired_at(4_102_444_799_999) && viewer.expired_at(4_102_444_800_000));
    assert_eq!(
        store.viewer_by_hash([9; 32]).await.unwrap(),
        Some(viewer.clone())
    );
    assert_eq!(
        store.viewer_by_id(viewer.id).await.unwrap(),
        Some(viewer.clone())
    );
    assert_eq!(
        store.list_viewer_tokens().await.unwrap(),
        vec![viewer.clone()]
    );
    assert_eq!(
        store.revoke_viewer_token(viewer.id, 5).await.unwrap(),
        Some(viewer.clone())
    );
    assert_eq!(store.viewer_by_hash([9; 32]).await.unwrap(), None);
    assert_eq!(store.viewer_by_id(viewer.id).await.unwrap(), None);
    assert_eq!(store.list_viewer_tokens().await.unwrap(), vec![]);
    assert_eq!(store.revoke_viewer_token(viewer.id, 6).await.unwrap(), None);
}
