//! Refusals on every backend: kept once by id, counted in their rollups exactly as the refusals inside a window
//! say, listed newest first by cursor with every field as written, confined to a viewer's team, and kept no
//! longer than their retention.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use spendgate_core::query::{Filters, NO_TEAM_FILTER, NO_TEAM_LABEL};
use spendgate_core::time::{now_ms, DAY_MS, HOUR_MS, MINUTE_MS};
use spendgate_core::{RefusalEvent, RefusalReason};
use spendgate_store::{RefusalFilters, RefusalGroup, Store, StoreError, StoredRefusal};
use uuid::Uuid;

/// A refusal at `at_ms` by key `key` (user `u<key>`) of `team`; key 0 is an unknown key (no user, No team).
pub fn refusal(at_ms: i64, key: i64, team: Option<&str>, reason: RefusalReason) -> RefusalEvent {
    let known = key != 0;
    RefusalEvent {
        id: Uuid::now_v7(),
        at_ms,
        reason,
        http_status: match reason {
            RefusalReason::Budget => 429,
            RefusalReason::Wallet => 402,
            RefusalReason::Auth => 401,
            _ => 400,
        },
        key_id: known.then_some(key),
        user: known.then(|| format!("u{key}")),
        team: team.filter(|_| known).map(str::to_string),
        model: known.then(|| "gpt-4o-mini".to_string()),
        endpoint: "chat.completions".into(),
        gateway: "gw-1".into(),
        budget_id: (reason == RefusalReason::Budget).then_some(7),
        wallet_id: (reason == RefusalReason::Wallet).then_some(3),
        detail: format!("{} for key {key}", reason.label()),
    }
}

/// Refusals spread over three days: three keys of two teams and one without a team, and unknown keys.
pub fn spread(now: i64) -> Vec<RefusalEvent> {
    let reasons = [
        RefusalReason::Budget,
        RefusalReason::Wallet,
        RefusalReason::Auth,
        RefusalReason::BodyTooLarge,
    ];
    (0..400i64)
        .map(|i| {
            let at = now - (i * 641_027) % (3 * DAY_MS);
            let (key, team) = match i % 5 {
                0 | 1 => (1, Some("support")),
                2 => (2, Some("search")),
                3 => (3, None),
                _ => (0, None),
            };
            let reason = if key == 0 {
                RefusalReason::Auth
            } else {
                reasons[(i % 4) as usize]
            };
            refusal(at, key, team, reason)
        })
        .collect()
}

fn filters(from: i64, to: i64) -> RefusalFilters {
    RefusalFilters {
        filters: Filters {
            from_ms: from,
            to_ms: to,
            ..Filters::default()
        },
        reason: None,
    }
}

/// The count per group label, as the store answers it.
async fn counts(store: &dyn Store, f: &RefusalFilters, g: RefusalGroup) -> BTreeMap<String, u64> {
    store
        .refusal_counts(f, Some(g))
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.label, c.refusals))
        .collect()
}

/// Every refusal of a window, through the pages.
async fn all_pages(store: &dyn Store, f: &RefusalFilters) -> Vec<StoredRefusal> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.refusals(f, 37, cursor.as_deref()).await.unwrap();
        assert!(page.items.len() <= 37);
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// What the store keeps of a refusal: its texts within their bounds.
fn as_stored(r: &RefusalEvent) -> RefusalEvent {
    let mut r = r.clone();
    r.model = r.model.map(|m| m.chars().take(128).collect());
    r.detail = r.detail.chars().take(300).collect();
    r
}

pub async fn refusals_are_kept_once_counted_and_listed(store: &dyn Store) {
    let now = now_ms();
    let mut events = spread(now);
    // A model name a client made up, far longer than any real one: kept cut, and never a label.
    events[0].model = Some("m".repeat(500));
    events[0].detail = "d".repeat(1000);
    let first = Arc::new(events[..250].to_vec());
    let second = Arc::new(events[150..].to_vec());
    let r1 = store.write_refusals(Arc::clone(&first)).await.unwrap();
    assert_eq!((r1.inserted, r1.duplicates), (250, 0));
    // A retried batch overlapping the first: only the new ones count.
    let r2 = store.write_refusals(Arc::clone(&second)).await.unwrap();
    assert_eq!((r2.inserted, r2.duplicates), (150, 100));
    let again = store.write_refusals(Arc::clone(&first)).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 250));

    // Every window's counts are exactly the refusals inside it, at every alignment the rollups are read at.
    let windows = [
        (now - 3 * DAY_MS - HOUR_MS, now + MINUTE_MS),
        (
            now - DAY_MS - 17 * MINUTE_MS,
            now - 5 * HOUR_MS + 3 * MINUTE_MS,
        ),
        (now - 2 * DAY_MS + 3 * HOUR_MS, now - 2 * HOUR_MS),
        (now - 50 * MINUTE_MS, now + MINUTE_MS),
    ];
    for (from, to) in windows {
        let f = filters(from, to);
        let w = store.resolve_window(&f.filters);
        let inside: Vec<&RefusalEvent> = events
            .iter()
            .filter(|r| r.at_ms >= w.from_ms && r.at_ms < w.to_ms)
            .collect();
        let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_team: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_user: BTreeMap<String, u64> = BTreeMap::new();
        for r in &inside {
            *by_reason.entry(r.reason.label().into()).or_default() += 1;
            let team = r.team.clone().unwrap_or_else(|| NO_TEAM_LABEL.into());
            *by_team.entry(team).or_default() += 1;
            let user = r.user.clone().unwrap_or_else(|| "unknown key".into());
            *by_user.entry(user).or_default() += 1;
        }
        assert_eq!(
            counts(store, &f, RefusalGroup::Reason).await,
            by_reason,
            "{w:?}"
        );
        assert_eq!(
            counts(store, &f, RefusalGroup::Team).await,
            by_team,
            "{w:?}"
        );
        assert_eq!(
            counts(store, &f, RefusalGroup::User).await,
            by_user,
            "{w:?}"
        );
        let total: u64 = store
            .refusal_counts(&f, None)
            .await
            .unwrap()
            .iter()
            .map(|c| c.refusals)
            .sum();
        assert_eq!(total, inside.len() as u64, "{w:?}");

        // The list holds the same refusals, newest first, each as it was written.
        let listed = all_pages(store, &filters(w.from_ms, w.to_ms)).await;
        assert_eq!(listed.len(), inside.len(), "{w:?}");
        assert!(listed
            .windows(2)
            .all(|p| (p[0].refusal.at_ms, p[0].seq) > (p[1].refusal.at_ms, p[1].seq)));
        for item in &listed {
            let written = events.iter().find(|r| r.id == item.refusal.id).unwrap();
            assert_eq!(item.refusal, as_stored(written));
        }
    }

    // Filters: a team, No team, a user, a key, a reason; names never recorded match nothing.
    let all = filters(now - 4 * DAY_MS, now + MINUTE_MS);
    let count_where = |p: &dyn Fn(&RefusalEvent) -> bool| events.iter().filter(|r| p(r)).count();
    let cases: Vec<(RefusalFilters, usize)> = vec![
        (
            RefusalFilters {
                filters: Filters {
                    team: Some("support".into()),
                    ..all.filters.clone()
                },
                reason: None,
            },
            count_where(&|r| r.team.as_deref() == Some("support")),
        ),
        (
            RefusalFilters {
                filters: Filters {
                    team: Some(NO_TEAM_FILTER.into()),
                    ..all.filters.clone()
                },
                reason: None,
            },
            count_where(&|r| r.team.is_none()),
        ),
        (
            RefusalFilters {
                filters: Filters {
                    user: Some("u2".into()),
                    ..all.filters.clone()
                },
                reason: None,
            },
            count_where(&|r| r.user.as_deref() == Some("u2")),
        ),
        (
            RefusalFilters {
                filters: Filters {
                    key_id: Some(3),
                    ..all.filters.clone()
                },
                reason: Some(RefusalReason::Wallet),
            },
            count_where(&|r| r.key_id == Some(3) && r.reason == RefusalReason::Wallet),
        ),
        (
            RefusalFilters {
                filters: Filters {
                    team: Some("nobody".into()),
                    ..all.filters.clone()
                },
                reason: None,
            },
            0,
        ),
    ];
    for (f, expected) in cases {
        assert!(expected > 0 || f.filters.team.as_deref() == Some("nobody"));
        assert_eq!(all_pages(store, &f).await.len(), expected, "{f:?}");
        let total: u64 = counts(store, &f, RefusalGroup::Reason).await.values().sum();
        assert_eq!(total, expected as u64, "{f:?}");
    }

    // A viewer of one team sees that team's refusals only, whatever else it asks for.
    let viewer = RefusalFilters {
        filters: Filters {
            scope_team: Some("search".into()),
            team: None,
            ..all.filters.clone()
        },
        reason: None,
    };
    let seen = all_pages(store, &viewer).await;
    assert_eq!(
        seen.len(),
        count_where(&|r| r.team.as_deref() == Some("search"))
    );
    assert!(seen
        .iter()
        .all(|s| s.refusal.team.as_deref() == Some("search")));
    assert_eq!(
        counts(store, &viewer, RefusalGroup::Team)
            .await
            .into_keys()
            .collect::<Vec<_>>(),
        vec!["search".to_string()]
    );

    // Filters refusals do not carry are refused, not ignored.
    let by_provider = RefusalFilters {
        filters: Filters {
            provider: Some("openai".into()),
            ..all.filters.clone()
        },
        reason: None,
    };
    assert!(matches!(
        store.refusals(&by_provider, 10, None).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.refusal_counts(&by_provider, None).await,
        Err(StoreError::Invalid(_))
    ));

    // Keys are named like the explorer's; refusals without a key are "unknown key".
    let by_key = counts(store, &all, RefusalGroup::Key).await;
    assert!(by_key.contains_key("unknown key"), "{by_key:?}");
    assert_eq!(by_key.len(), 4, "{by_key:?}");
}

pub async fn refusals_past_their_retention_are_not_written(store: &dyn Store) {
    let now = now_ms();
    let old = refusal(now - 40 * DAY_MS, 1, Some("support"), RefusalReason::Budget);
    let recent = refusal(now - HOUR_MS, 1, Some("support"), RefusalReason::Budget);
    let report = store
        .write_refusals(Arc::new(vec![old.clone(), recent.clone()]))
        .await
        .unwrap();
    assert_eq!((report.inserted, report.duplicates), (1, 1));
    let f = filters(now - 60 * DAY_MS, now + MINUTE_MS);
    let ids: HashSet<Uuid> = all_pages(store, &f)
        .await
        .into_iter()
        .map(|s| s.refusal.id)
        .collect();
    assert_eq!(ids, HashSet::from([recent.id]));
    let total: u64 = counts(store, &f, RefusalGroup::Reason).await.values().sum();
    assert_eq!(total, 1);
}
