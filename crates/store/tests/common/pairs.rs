//! Views filtered on one value of a dimension that the pair rollups hold (`sql::plan::pair_filters`), checked
//! against the events themselves on every backend.

use std::sync::Arc;

use spendgate_core::query::{Filters, GroupBy};
use spendgate_core::time::{now_ms, DAY_MS, HOUR_MS};
use spendgate_core::{CacheOutcome, Money, SpendEvent};
use spendgate_store::Store;

use super::event;

/// A view filtered on one provider, gateway or cache outcome and grouped by any dimension reads the pair rollups
/// (hours and days) and the all-dimension ones (minutes, and edges of days): each row, each series point and the summary
/// equal the sums of the events inside, whatever the window and the grouping, and a second filter (read from
/// the all-dimension rollups alone) agrees too. Written in two batches, so pair rows are added to as well as
/// created.
pub async fn views_of_one_provider_or_gateway_sum_exactly_the_events_inside(store: &dyn Store) {
    let events = provider_and_gateway_events();
    write_in_two_batches(store, &events).await;
    check_views_of_one_provider_or_gateway(store, &events).await;
}

/// A batch that repeats events already stored (a journal replayed after a crash) adds only its new events to
/// every rollup. SQLite folds a large batch's rollup rows while it inserts the spend logs, assuming every event is
/// new, so such a batch must be folded again; this batch is large enough to take that path.
pub async fn a_large_batch_repeating_stored_events_adds_only_the_new_ones(store: &dyn Store) {
    let events = provider_and_gateway_events();
    let first = store
        .write_batch(Arc::new(events[..1_200].to_vec()))
        .await
        .unwrap();
    assert_eq!(first.inserted, 1_200);
    let again = store.write_batch(Arc::new(events.clone())).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (1_800, 1_200));
    check_views_of_one_provider_or_gateway(store, &events).await;
}

/// Four days of traffic over two providers, three gateways, teams, users, keys, models, a workflow and cache hits.
pub fn provider_and_gateway_events() -> Vec<SpendEvent> {
    let now = now_ms();
    let mut events = Vec::new();
    for i in 0..3_000i64 {
        let ts = now - (i * 89_137) % (4 * DAY_MS);
        let mut e = event(
            ts,
            [Some("red"), Some("blue"), None][(i % 3) as usize],
            &format!("u{}", i % 5),
            ["m1", "m2", "m3", "m4"][(i % 4) as usize],
            1 + (i % 17) as u64,
            1 + (i % 3) as u64,
            500 + i as i128,
        );
        e.provider = ["openai", "anthropic"][(i % 7 % 2) as usize].into();
        e.gateway = ["gw-a", "gw-b", "gw-c"][(i % 11 % 3) as usize].into();
        e.attribution.key_id = 1 + i % 6;
        e.attribution.workflow = (i % 4 == 0).then(|| "nightly".to_string());
        if i % 9 == 0 {
            e.cache_outcome = CacheOutcome::Hit;
            e.avoided_cost = e.cost;
            e.cost = Money::ZERO;
        }
        events.push(e);
    }
    events
}

pub async fn write_in_two_batches(store: &dyn Store, events: &[SpendEvent]) {
    let (first, second) = events.split_at(events.len() / 2);
    store.write_batch(Arc::new(first.to_vec())).await.unwrap();
    store.write_batch(Arc::new(second.to_vec())).await.unwrap();
}

/// The checks of `views_of_one_provider_or_gateway_sum_exactly_the_events_inside` over `events`, once written.
pub async fn check_views_of_one_provider_or_gateway(store: &dyn Store, events: &[SpendEvent]) {
    let now = now_ms();

    type Sums = (u64, u64, u64, Money, Money);
    let sums = |list: &[&SpendEvent]| -> Sums {
        list.iter().fold(Sums::default(), |mut s, e| {
            s.0 += 1;
            s.1 += e.usage.input_tokens;
            s.2 += e.usage.output_tokens;
            s.3 += e.cost;
            s.4 += e.avoided_cost;
            s
        })
    };
    let of = |t: &spendgate_core::Totals| -> Sums {
        (
            t.requests,
            t.input_tokens,
            t.output_tokens,
            t.cost,
            t.avoided_cost,
        )
    };
    let label = |g: GroupBy, e: &SpendEvent| -> String {
        let a = &e.attribution;
        match g {
            GroupBy::Team => a.team.clone().unwrap_or_else(|| "No team".into()),
            GroupBy::User => a.user.clone(),
            GroupBy::Key => a.key_id.to_string(),
            GroupBy::Provider => e.provider.clone(),
            GroupBy::Model => e.model.clone(),
            GroupBy::Gateway => e.gateway.clone(),
            GroupBy::Workflow => a
                .workflow
                .clone()
                .unwrap_or_else(|| spendgate_core::query::NO_WORKFLOW_LABEL.into()),
            GroupBy::CacheOutcome => e.cache_outcome.as_str().to_string(),
        }
    };
    let day_start = spendgate_core::time::Grain::Day.floor(now);
    let windows = [
        (now - 30 * 60_000, now + 60_000),
        (now - 30 * HOUR_MS, now + 60_000),
        (day_start - 3 * DAY_MS + 5 * HOUR_MS, now + 60_000),
        (
            day_start - 2 * DAY_MS + 20 * HOUR_MS,
            day_start - 6 * HOUR_MS,
        ),
    ];
    let filters = [
        Filters {
            provider: Some("openai".into()),
            ..Filters::default()
        },
        Filters {
            gateway: Some("gw-b".into()),
            ..Filters::default()
        },
        Filters {
            provider: Some("anthropic".into()),
            gateway: Some("gw-c".into()),
            ..Filters::default()
        },
        // Models and workflows are held per day only (`plan::pair_filters`).
        Filters {
            model: Some("m2".into()),
            ..Filters::default()
        },
        Filters {
            workflow: Some("nightly".into()),
            ..Filters::default()
        },
        // Hits are held in the pair rollups, other outcomes are not (`plan::paired`).
        Filters {
            cache_outcome: Some(CacheOutcome::Hit),
            ..Filters::default()
        },
        Filters {
            cache_outcome: Some(CacheOutcome::NotCacheable),
            ..Filters::default()
        },
    ];
    let matches = |f: &Filters, e: &SpendEvent| {
        f.provider.as_deref().is_none_or(|p| e.provider == p)
            && f.gateway.as_deref().is_none_or(|g| e.gateway == g)
            && f.cache_outcome.is_none_or(|c| e.cache_outcome == c)
            && f.model.as_deref().is_none_or(|m| e.model == m)
            && f.workflow
                .as_deref()
                .is_none_or(|w| e.attribution.workflow.as_deref() == Some(w))
    };
    for (from, to) in windows {
        for base in &filters {
            let f = Filters {
                from_ms: from,
                to_ms: to,
                ..base.clone()
            };
            let w = store.resolve_window(&f);
            let inside: Vec<&SpendEvent> = events
                .iter()
                .filter(|e| e.finished_at_ms >= w.from_ms && e.finished_at_ms < w.to_ms)
                .filter(|e| matches(&f, e))
                .collect();
            assert!(!inside.is_empty(), "window {w:?} {f:?}");
            assert_eq!(
                of(&store.summary(&f).await.unwrap()),
                sums(&inside),
                "summary {w:?} {f:?}"
            );
            for g in GroupBy::ALL {
                let mut want = std::collections::BTreeMap::<String, Vec<&SpendEvent>>::new();
                for e in &inside {
                    want.entry(label(g, e)).or_default().push(e);
                }
                let want: std::collections::BTreeMap<String, Sums> =
                    want.iter().map(|(k, v)| (k.clone(), sums(v))).collect();
                let rows = store.explorer(&f, g).await.unwrap();
                let got: std::collections::BTreeMap<String, Sums> = rows
                    .iter()
                    .map(|r| {
                        let name = match g {
                            GroupBy::Key => r.key.clone().unwrap_or_default(),
                            _ => r.label.clone(),
                        };
                        (name, of(&r.totals))
                    })
                    .collect();
                assert_eq!(got, want, "explorer by {g:?} {w:?} {f:?}");
            }
            // Series points of whole buckets inside the window, by model, per hour and per day.
            for grain in [
                spendgate_core::time::Grain::Hour,
                spendgate_core::time::Grain::Day,
            ] {
                let aligned = Filters {
                    from_ms: grain.floor(w.from_ms),
                    to_ms: grain.ceil(w.to_ms),
                    ..f.clone()
                };
                let points = store
                    .series(&aligned, grain, Some(GroupBy::Model))
                    .await
                    .unwrap();
                let mut want = std::collections::BTreeMap::<(i64, String), Vec<&SpendEvent>>::new();
                for e in events.iter().filter(|e| {
                    e.finished_at_ms >= aligned.from_ms
                        && e.finished_at_ms < aligned.to_ms
                        && matches(&f, e)
                }) {
                    want.entry((grain.floor(e.finished_at_ms), e.model.clone()))
                        .or_default()
                        .push(e);
                }
                let want: std::collections::BTreeMap<(i64, String), Sums> =
                    want.iter().map(|(k, v)| (k.clone(), sums(v))).collect();
                let got: std::collections::BTreeMap<(i64, String), Sums> = points
                    .iter()
                    .map(|p| {
                        (
                            (p.bucket_start_ms, p.group.clone().unwrap_or_default()),
                            of(&p.totals),
                        )
                    })
                    .collect();
                assert_eq!(got, want, "series {grain:?} {w:?} {f:?}");
            }
        }
    }
}
