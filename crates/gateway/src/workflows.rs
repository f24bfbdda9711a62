//! The workflow labels this replica keeps apart, bounded.
//!
//! A workflow label is chosen by the client (`x-spendgate-workflow`), so without a bound one client could send a
//! new label with every request, and each would become a label in the store, rows in every rollup, a series in the
//! anomaly detector and a row in every workflow list (20,000 labels took a replica from 24 MB to 288 MB). At most
//! `limits.max_workflows` distinct labels are kept, for the whole gateway (not per team: the bound is on memory,
//! which all teams share); a request naming a label beyond them is recorded under
//! [`OTHER_WORKFLOW_LABEL`], and its spend log keeps the label it asked for (`Attribution::workflow_requested`).
//! Labels already kept go on working. The set starts from the labels of the last 30 days in the store, so a
//! restart neither forgets the labels in use nor lets a flood take their place.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use spendgate_core::query::{Filters, GroupBy, NO_WORKFLOW_LABEL};
use spendgate_core::time::{now_ms, DAY_MS};
use spendgate_store::Store;

pub use spendgate_core::query::OTHER_WORKFLOW_LABEL;

/// How far back a starting gateway looks for the labels in use.
const IN_USE_DAYS: i64 = 30;

/// The workflow labels of the last 30 days in the store, most requested first: the ones a starting gateway keeps
/// apart before any request arrives. A store that cannot answer gives none (logged); the set then fills as
/// requests come.
pub async fn in_use(store: &dyn Store) -> Vec<String> {
    let now = now_ms();
    let f = Filters {
        from_ms: now - IN_USE_DAYS * DAY_MS,
        to_ms: now,
        ..Filters::default()
    };
    match store.explorer(&f, GroupBy::Workflow).await {
        Ok(mut rows) => {
            rows.sort_by_key(|r| std::cmp::Reverse(r.totals.requests));
            rows.into_iter()
                .map(|r| r.label)
                .filter(|l| l != NO_WORKFLOW_LABEL && l != OTHER_WORKFLOW_LABEL)
                .collect()
        }
        Err(e) => {
            tracing::warn!(error = %e, "Reading the workflow labels in use failed; they are learnt again from requests.");
            Vec::new()
        }
    }
}

/// A request's workflow, once the bound has been applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// A label kept apart: recorded as sent.
    Kept(String),
    /// A label past the bound: recorded as [`OTHER_WORKFLOW_LABEL`]; this is the label the client sent.
    Folded(String),
}

impl Admitted {
    /// The label recorded, and the label asked for when that was folded.
    pub fn into_parts(self) -> (String, Option<String>) {
        match self {
            Admitted::Kept(label) => (label, None),
            Admitted::Folded(asked) => (OTHER_WORKFLOW_LABEL.to_string(), Some(asked)),
        }
    }
}

/// The labels kept apart. Reads take a shared lock; only a label seen for the first time takes the exclusive one.
#[derive(Debug)]
pub struct WorkflowLabels {
    max: usize,
    known: RwLock<HashSet<String>>,
    /// Whether the bound has been reported in the log (once per process: every later fold is on its spend log).
    reported: AtomicBool,
}

impl WorkflowLabels {
    pub fn new(max: usize) -> WorkflowLabels {
        WorkflowLabels {
            max,
            known: RwLock::new(HashSet::new()),
            reported: AtomicBool::new(false),
        }
    }

    /// Keeps these labels apart from the start (the ones in use before a restart), up to the bound.
    pub fn seed(&self, labels: impl IntoIterator<Item = String>) {
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        for label in labels {
            if known.len() >= self.max {
                break;
            }
            known.insert(label);
        }
    }

    /// The workflow a request with this label is recorded under.
    pub fn admit(&self, label: String) -> Admitted {
        // The set holds plain strings: a panic elsewhere cannot leave it in a state that matters.
        if self
            .known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&label)
        {
            return Admitted::Kept(label);
        }
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        if known.contains(&label) || known.len() < self.max {
            known.insert(label.clone());
            return Admitted::Kept(label);
        }
        drop(known);
        if !self.reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max_workflows = self.max,
                label = %label,
                "limits.max_workflows distinct workflow labels are in use: requests with a new label are recorded \
                 as workflow {OTHER_WORKFLOW_LABEL} from now on (each spend log keeps the label it sent). Raise \
                 the limit if these labels are wanted."
            );
        }
        Admitted::Folded(label)
    }

    /// How many labels are kept apart.
    pub fn tracked(&self) -> usize {
        self.known.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The bound (`limits.max_workflows`).
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_past_the_bound_are_folded_and_known_ones_kept() {
        let w = WorkflowLabels::new(3);
        w.seed(["old".to_string()]);
        for l in ["a", "b"] {
            assert_eq!(w.admit(l.into()), Admitted::Kept(l.into()));
        }
        assert_eq!(w.admit("c".into()), Admitted::Folded("c".into()));
        assert_eq!(
            w.admit("d".into()).into_parts(),
            (OTHER_WORKFLOW_LABEL.to_string(), Some("d".to_string()))
        );
        // Labels kept before the bound was reached, the seeded one included, keep working.
        assert_eq!(w.admit("old".into()), Admitted::Kept("old".into()));
        assert_eq!(w.admit("a".into()).into_parts(), ("a".to_string(), None));
        assert_eq!(w.tracked(), 3);
        // Seeding never goes past the bound either.
        let s = WorkflowLabels::new(2);
        s.seed((0..10).map(|i| i.to_string()));
        assert_eq!(s.tracked(), 2);
    }
}
