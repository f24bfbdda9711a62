//! Answers for the past days of a window, kept for a minute.
//!
//! A dashboard asks the same long-window questions again and again: every live update of `/usage?window=30d`
//! re-reads thirty days of rollups, although only today's can have changed. So the explorer and the series split
//! a window at the start of today (UTC): the part before it is answered once and kept, the part from it is read
//! every time, and the two are added up. Both parts are whole buckets of every grain (the boundary is a day
//! boundary), so the sum is exactly the answer for the whole window.
//!
//! At most `MAX_ITEMS` rows and points are kept, the oldest answers going first. A kept answer goes when this
//! store writes a spend event older than today (a late batch, a replayed journal), and after `TTL_MS` in any
//! case: another gateway writing to the same database can also write a late event, and this store does not see
//! it. So a late event for a past day shows within a minute; new spend, which is always today's, shows at once.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;

use spendgate_core::query::{sort_rows, Filters, GroupRow, SortBy, Totals};
use spendgate_core::time::{now_ms, Grain};
use spendgate_core::SpendEvent;

use crate::{Result, SeriesPoint};

/// How long a kept answer may be used.
pub const TTL_MS: i64 = 60_000;
/// How many rows and series points are kept in all (the oldest answer goes first), so that memory stays bounded
/// (about 150 bytes each, so some 15 MB at most): a 30-day chart by user at 1,000 users is 31,000 points, the
/// rest of its page about 2,000 rows.
const MAX_ITEMS: usize = 100_000;

#[derive(Clone)]
enum Answer {
    Rows(Vec<GroupRow>),
    Points(Vec<SeriesPoint>),
}

impl Answer {
    fn items(&self) -> usize {
        match self {
            Answer::Rows(r) => r.len(),
            Answer::Points(p) => p.len(),
        }
    }
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, (i64, Answer)>,
    order: VecDeque<String>,
    /// Rows and points held, in all.
    items: usize,
    /// Bumped by every write of a past-day event, so that an answer computed while such a write committed is
    /// not kept.
    generation: u64,
}

#[derive(Default)]
pub struct SealedAnswers {
    entries: Mutex<Entries>,
}

impl std::fmt::Debug for SealedAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedAnswers").finish_non_exhaustive()
    }
}

/// A window cut at the start of today: the part before it (kept) and the part from it (read every time).
struct Cut {
    past: Filters,
    today: Option<Filters>,
}

/// `aligned_from` is where the store starts reading the window (`Store::resolve_window`): the past part starts
/// there, which reads the same, and so a window asked for again a few seconds later is the same question.
fn cut(f: &Filters, aligned_from: i64, now: i64) -> Option<Cut> {
    let start_of_today = Grain::Day.floor(now);
    if f.from_ms >= start_of_today {
        return None;
    }
    let past = Filters {
        from_ms: aligned_from.min(f.from_ms),
        to_ms: f.to_ms.min(start_of_today),
        ..f.clone()
    };
    let today = (f.to_ms > start_of_today).then(|| Filters {
        from_ms: start_of_today,
        ..f.clone()
    });
    Some(Cut { past, today })
}

impl SealedAnswers {
    /// Forgets every kept answer when `events` hold spend older than today.
    pub fn note_write(&self, events: &[SpendEvent]) {
        if let Some(oldest) = events.iter().map(|e| e.finished_at_ms).min() {
            self.note_oldest(oldest);
        }
    }

    /// Forgets every kept answer when rollups of spend as old as `oldest_ms` were written and it is older than
    /// today (rollups a store carried and wrote later than its spend logs).
    pub fn note_oldest(&self, oldest_ms: i64) {
        let start_of_today = Grain::Day.floor(now_ms());
        if oldest_ms < start_of_today {
            if let Ok(mut e) = self.entries.lock() {
                e.map.clear();
                e.order.clear();
                e.items = 0;
                e.generation += 1;
            }
        }
    }

    fn get(&self, key: &str, now: i64) -> (Option<Answer>, u64) {
        let Ok(e) = self.entries.lock() else {
            return (None, 0);
        };
        let hit = e
            .map
            .get(key)
            .filter(|(at, _)| now - at < TTL_MS)
            .map(|(_, a)| a.clone());
        (hit, e.generation)
    }

    fn put(&self, key: String, answer: Answer, now: i64, generation: u64) {
        let Ok(mut e) = self.entries.lock() else {
            return;
        };
        if e.generation != generation || answer.items() > MAX_ITEMS {
            return;
        }
        e.items += answer.items();
        match e.map.insert(key.clone(), (now, answer)) {
            Some((_, replaced)) => e.items -= replaced.items(),
            None => e.order.push_back(key),
        }
        while e.items > MAX_ITEMS {
            let Some(old) = e.order.pop_front() else {
                break;
            };
            if let Some((_, a)) = e.map.remove(&old) {
                e.items -= a.items();
            }
        }
    }

    /// The answer of `run` (an explorer or a series) for `f`: the part of the window before today from the kept
    /// answers (or from `run`, then kept), joined with `run` over the part from today. `kind` names the question
    /// apart from its filters (the grouping, the grain). `aligned_from` is `Store::resolve_window(f).from_ms`.
    // `Kept` is an implementation detail: only the two kinds of answer below implement it.
    #[allow(private_bounds)]
    pub async fn answer<T, F, Fut>(
        &self,
        f: &Filters,
        aligned_from: i64,
        kind: String,
        run: F,
    ) -> Result<T>
    where
        T: Kept,
        F: Fn(Filters) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let now = now_ms();
        let Some(c) = cut(f, aligned_from, now) else {
            return run(f.clone()).await;
        };
        let key = format!("{kind} {:?}", c.past);
        let (hit, generation) = self.get(&key, now);
        // Keys name their kind, so a kept answer always has the type asked for.
        let past = match hit.and_then(T::from_answer) {
            Some(past) => past,
            None => {
                let past = run(c.past.clone()).await?;
                self.put(key, past.clone().into_answer(), now, generation);
                past
            }
        };
        match c.today {
            None => Ok(past),
            Some(t) => Ok(T::join(past, run(t).await?)),
        }
    }
}

/// What can be kept: an explorer's rows or a series' points, and how the two parts of a window join.
trait Kept: Clone + Sized {
    fn into_answer(self) -> Answer;
    fn from_answer(a: Answer) -> Option<Self>;
    fn join(past: Self, today: Self) -> Self;
}

impl Kept for Vec<GroupRow> {
    fn into_answer(self) -> Answer {
        Answer::Rows(self)
    }
    fn from_answer(a: Answer) -> Option<Self> {
        match a {
            Answer::Rows(r) => Some(r),
            Answer::Points(_) => None,
        }
    }
    fn join(past: Self, today: Self) -> Self {
        add_rows(past, today)
    }
}

impl Kept for Vec<SeriesPoint> {
    fn into_answer(self) -> Answer {
        Answer::Points(self)
    }
    fn from_answer(a: Answer) -> Option<Self> {
        match a {
            Answer::Points(p) => Some(p),
            Answer::Rows(_) => None,
        }
    }
    /// Buckets are at most a day long, so none straddles the cut: the parts are one after the other.
    fn join(mut past: Self, today: Self) -> Self {
        past.extend(today);
        past
    }
}

/// The rows of two disjoint parts of a window added up by group, sorted by cost as the stores return them.
fn add_rows(a: Vec<GroupRow>, b: Vec<GroupRow>) -> Vec<GroupRow> {
    let mut by_group: HashMap<(Option<String>, String), Totals> = HashMap::new();
    for r in a.into_iter().chain(b) {
        by_group.entry((r.key, r.label)).or_default().add(&r.totals);
    }
    let mut rows: Vec<GroupRow> = by_group
        .into_iter()
        .map(|((key, label), totals)| GroupRow { key, label, totals })
        .collect();
    sort_rows(&mut rows, SortBy::Cost);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use spendgate_core::Money;

    fn row(key: Option<&str>, label: &str, requests: u64, cost: i128) -> GroupRow {
        GroupRow {
            key: key.map(str::to_string),
            label: label.into(),
            totals: Totals {
                requests,
                cost: Money::from_picos(cost),
                ..Totals::default()
            },
        }
    }

    #[test]
    fn parts_of_a_window_add_up_by_group_and_sort_by_cost() {
        let past = vec![row(None, "No team", 2, 10), row(Some("a"), "a", 1, 5)];
        let today = vec![row(Some("b"), "b", 4, 40), row(None, "No team", 1, 1)];
        let rows = add_rows(past, today);
        assert_eq!(
            rows,
            vec![
                row(Some("b"), "b", 4, 40),
                row(None, "No team", 3, 11),
                row(Some("a"), "a", 1, 5)
            ]
        );
    }

    #[test]
    fn windows_are_cut_at_the_start_of_today() {
        let now = 100 * spendgate_core::time::DAY_MS + 5_000;
        let start = 100 * spendgate_core::time::DAY_MS;
        let f = |from_ms, to_ms| Filters {
            from_ms,
            to_ms,
            ..Filters::default()
        };
        assert!(
            cut(&f(start + 1, now), start, now).is_none(),
            "nothing before today"
        );
        let c = cut(&f(start - 10, now), start - 60, now).expect("a past part");
        assert_eq!(
            (c.past.from_ms, c.past.to_ms),
            (start - 60, start),
            "from where the store reads"
        );
        assert_eq!(c.today.map(|t| (t.from_ms, t.to_ms)), Some((start, now)));
        let old = cut(&f(start - 100, start - 50), start - 100, now).expect("all past");
        assert!(old.today.is_none());
    }

    #[test]
    fn kept_rows_and_points_stay_under_the_bound_oldest_going_first() {
        let sealed = SealedAnswers::default();
        let rows = |n: usize| Answer::Rows((0..n).map(|_| row(Some("a"), "a", 1, 1)).collect());
        for i in 0..5 {
            sealed.put(format!("k{i}"), rows(MAX_ITEMS / 3), 0, 0);
        }
        let e = sealed.entries.lock().expect("the lock");
        assert!(e.items <= MAX_ITEMS, "{}", e.items);
        assert_eq!(e.items, 3 * (MAX_ITEMS / 3));
        assert!(!e.map.contains_key("k0") && !e.map.contains_key("k1"));
        assert!(e.map.contains_key("k4"));
        drop(e);
        // An answer larger than the bound alone is not kept.
        sealed.put("big".into(), rows(MAX_ITEMS + 1), 0, 0);
        assert!(sealed.get("big", 0).0.is_none());
    }
}
