//! Labels on PostgreSQL: the writer's cache of label ids, and the interning of names it does not hold yet.

use std::collections::{HashMap, HashSet};

use tokio_postgres::Client;

use crate::sql::plan::LabelKind;
use crate::{Result, StoreError};

/// Label ids by kind and name: one map per kind (`LabelKind::code` - 1), so that a lookup borrows the name
/// (`&str`) instead of building a `String` key. A batch of 262,144 events looks up about 1.5 million labels,
/// which with the standard SipHash took a tenth of the writer's own CPU time; foldhash is seeded per process (a
/// name chosen to collide cannot be computed ahead), and the names come from keys and bounded workflow labels.
pub(super) type LabelCache =
    [HashMap<String, i64, foldhash::fast::RandomState>; LabelKind::ALL.len()];

fn slot(kind: LabelKind) -> usize {
    usize::try_from(kind.code() - 1).unwrap_or(0)
}

/// The id of an interned label.
pub(super) fn label_id(cache: &LabelCache, kind: LabelKind, name: &str) -> Result<i64> {
    cache[slot(kind)]
        .get(name)
        .copied()
        .ok_or_else(|| StoreError::Database(format!("label '{name}' was not interned")))
}

/// Interns every label of a batch (`names`) that the cache does not hold, in two statements.
pub(super) async fn intern_labels<'a>(
    client: &Client,
    cache: &mut LabelCache,
    names: impl Iterator<Item = (LabelKind, &'a str)>,
) -> Result<()> {
    // Sorted by the table's unique key, so that two writers interning the same new names insert them in the
    // same order (in hash order each could hold one name the other waits for). Gathered in a hash set first: the
    // first batch names every label of each of its events, a few distinct ones many times over.
    let mut missing: HashSet<(i64, &str)> = HashSet::new();
    for (kind, name) in names {
        if !cache[slot(kind)].contains_key(name) {
            missing.insert((kind.code(), name));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let mut missing: Vec<(i64, &str)> = missing.into_iter().collect();
    missing.sort_unstable();
    let kinds: Vec<i64> = missing.iter().map(|(k, _)| *k).collect();
    let names: Vec<&str> = missing.iter().map(|(_, n)| *n).collect();
    client
        .execute(
            "INSERT INTO labels (kind, name) SELECT * FROM unnest($1::bigint[], $2::text[])
             ON CONFLICT DO NOTHING",
            &[&kinds, &names],
        )
        .await?;
    let rows = client
        .query(
            "SELECT l.kind, l.name, l.id FROM labels l
               JOIN unnest($1::bigint[], $2::text[]) AS u (kind, name) ON l.kind = u.kind AND l.name = u.name",
            &[&kinds, &names],
        )
        .await?;
    for r in rows {
        let kind = LabelKind::from_code(r.try_get(0)?)
            .ok_or_else(|| StoreError::Database("a label has an unknown kind".into()))?;
        cache[slot(kind)].insert(r.try_get(1)?, r.try_get(2)?);
    }
    Ok(())
}
