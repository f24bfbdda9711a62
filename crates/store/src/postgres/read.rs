//! The read path on PostgreSQL: the shared plans and SQL (`crate::sql`) bound to a pooled connection.
//! Summary, explorer and series read the rollups only; spend-log pages read the spend logs by index.

use std::collections::HashMap;

use spendgate_core::anomaly::RepeatedRequest;
use spendgate_core::query::{Filters, GroupBy, GroupRow, Totals};
use spendgate_core::time::Grain;
use tokio_postgres::{Client, GenericClient};

use super::run;
use crate::sql::plan::{self, group_column, group_kind, Term};
use crate::sql::queries;
use crate::sql::{rows, Dialect};
use crate::{ActivityRow, ResolvedWindow, Result, SeriesPoint, SpendLogPage};

const D: Dialect = Dialect::Postgres;

type Dims = Vec<(&'static str, i64)>;

/// The dimension filters of a query as (column, id) pairs; `None` when a named value was never recorded.
async fn dimension_filters(c: &impl GenericClient, f: &Filters) -> Result<Option<Dims>> {
    resolve(c, plan::filter_terms(f)).await
}

/// Filter terms as (column, id) pairs, with their names looked up. `None` when a named value was never recorded.
pub(super) async fn resolve(c: &impl GenericClient, terms: Vec<Term>) -> Result<Option<Dims>> {
    let sql = queries::find_label_sql(D);
    let mut found = HashMap::new();
    for t in &terms {
        if let Term::Named(_, kind, name) = t {
            if let Some(row) = c.query_opt(&sql, &[&kind.code(), name]).await? {
                found.insert((*kind, name.clone()), row.try_get::<_, i64>(0)?);
            }
        }
    }
    Ok(plan::resolve_terms(terms, &found))
}

pub(super) async fn names_for(c: &Client, g: GroupBy) -> Result<HashMap<i64, String>> {
    let pairs = match (g, group_kind(g)) {
        (_, Some(kind)) => run(c, &queries::names_query(D, kind), rows::name_row).await?,
        (GroupBy::Key, None) => super::all(c, queries::KEY_NAMES, &[], rows::key_name_row).await?,
        _ => Vec::new(),
    };
    Ok(pairs.into_iter().collect())
}

pub(super) async fn labels_by_id(c: &Client, ids: &[i64]) -> Result<HashMap<i64, String>> {
    Ok(match queries::labels_by_id(D, ids) {
        Some(q) => run(c, &q, rows::name_row).await?.into_iter().collect(),
        None => HashMap::new(),
    })
}

pub(super) async fn summary(
    c: &impl GenericClient,
    f: &Filters,
    w: ResolvedWindow,
) -> Result<Totals> {
    let Some(dims) = dimension_filters(c, f).await? else {
        return Ok(Totals::default());
    };
    let q = queries::rollup_query(D, None, w, &dims);
    Ok(run(c, &q, |r| rows::totals_at(r, 0))
        .await?
        .pop()
        .unwrap_or_default())
}

pub(super) async fn explorer(
    c: &Client,
    f: &Filters,
    w: ResolvedWindow,
    g: GroupBy,
) -> Result<Vec<GroupRow>> {
    let Some(dims) = dimension_filters(c, f).await? else {
        return Ok(Vec::new());
    };
    let q = queries::rollup_query(D, Some(group_column(g)), w, &dims);
    let raw = run(c, &q, rows::group_row).await?;
    Ok(plan::group_rows(g, raw, names_for(c, g).await?))
}

pub(super) async fn series(
    c: &Client,
    f: &Filters,
    grain: Grain,
    g: Option<GroupBy>,
) -> Result<Vec<SeriesPoint>> {
    let Some(dims) = dimension_filters(c, f).await? else {
        return Ok(Vec::new());
    };
    let q = queries::series_query(D, f, grain, g, &dims);
    let raw = run(c, &q, rows::series_row).await?;
    let names = match g {
        Some(g) => names_for(c, g).await?,
        None => HashMap::new(),
    };
    Ok(plan::series_points(g, grain, raw, &names))
}

pub(super) async fn request_activity(
    c: &Client,
    f: &Filters,
    grain: Grain,
) -> Result<Vec<ActivityRow>> {
    let Some(dims) = dimension_filters(c, f).await? else {
        return Ok(Vec::new());
    };
    let q = queries::activity_query(D, f, grain, &dims);
    let raw = run(c, &q, rows::activity_row).await?;
    let names = labels_by_id(c, &rows::activity_label_ids(&raw)).await?;
    Ok(rows::activity_rows(grain, raw, &names))
}

pub(super) async fn spend_logs(
    c: &Client,
    f: &Filters,
    limit: usize,
    cursor: Option<(i64, i64)>,
) -> Result<SpendLogPage> {
    let Some(dims) = dimension_filters(c, f).await? else {
        return Ok(SpendLogPage {
            items: Vec::new(),
            next_cursor: None,
        });
    };
    let limit = limit.clamp(1, 1000);
    let q = queries::spend_logs_query(D, f, &dims, limit, cursor);
    let items = run(c, &q, rows::stored_log).await?;
    Ok(plan::page_of(items, limit))
}

pub(super) async fn repeated_requests(
    c: &Client,
    since_ms: i64,
    min_repeats: u64,
) -> Result<Vec<RepeatedRequest>> {
    let q = queries::repeated_query(D, since_ms, min_repeats);
    let raw = run(c, &q, rows::repeated_row).await?;
    let names = labels_by_id(c, &rows::repeated_label_ids(&raw)).await?;
    Ok(rows::repeated_rows(raw, &names))
}
