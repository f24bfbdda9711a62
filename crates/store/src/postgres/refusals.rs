//! Refusals on PostgreSQL: one transaction per batch (rows with `ON CONFLICT DO NOTHING RETURNING`, so only new
//! refusals are counted; rollups upserted in key order; retention), and the reads, on the shared SQL of
//! `crate::sql::refusals`.

use std::collections::HashSet;

use spendgate_core::time::now_ms;
use spendgate_core::{GroupBy, RefusalEvent};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;
use uuid::Uuid;

use super::labels::{intern_labels, label_id};
use super::pool::Pool;
use super::read::{labels_by_id, names_for, resolve};
use super::write::{columns_of, unnest_ints};
use super::{run, PostgresOptions, WriterState};
use crate::refusals::{RefusalCount, RefusalFilters, RefusalGroup, RefusalPage};
use crate::sql::batch::{minute_prune_cutoff, MAINTENANCE_EVERY_MS};
use crate::sql::plan::minute_retention_ms;
use crate::sql::refusals::{self as sql, ROLLUPS, ROLLUP_KEY};
use crate::sql::Dialect;
use crate::{ResolvedWindow, Result, WriteReport};

const D: Dialect = Dialect::Postgres;

pub(super) async fn write(
    w: &mut WriterState,
    pool: &Pool,
    refusals: &[RefusalEvent],
    options: &PostgresOptions,
) -> Result<WriteReport> {
    let now = now_ms();
    let (live, mut report) = sql::live(refusals, options.refusal_retention_days, now);
    let mut labels = std::mem::take(&mut w.labels);
    let client = w.client(pool).await?;
    let interned = intern_labels(
        client,
        &mut labels,
        live.iter().flat_map(|r| sql::label_names(r)),
    )
    .await;
    w.labels = labels;
    interned?;
    let dims = live
        .iter()
        .map(|r| sql::dims_of(r, |kind, name| label_id(&w.labels, kind, name)))
        .collect::<Result<Vec<_>>>()?;

    let maintain = now - w.last_refusal_maintenance_ms > MAINTENANCE_EVERY_MS;
    let client = w.client(pool).await?;
    let tx = client.transaction().await?;
    let ids: Vec<Uuid> = live.iter().map(|r| r.id).collect();
    let (models, details): (Vec<Option<String>>, Vec<String>) =
        live.iter().map(|r| sql::texts_of(r)).unzip();
    let endpoints: Vec<&str> = live.iter().map(|r| r.endpoint.as_str()).collect();
    let mut ints: Vec<Vec<Option<i64>>> =
        vec![Vec::with_capacity(live.len()); sql::INT_COLUMNS.len()];
    for (r, d) in live.iter().zip(&dims) {
        for (col, v) in ints.iter_mut().zip(sql::ints_of(r, d)) {
            col.push(v);
        }
    }
    let insert = format!(
        "INSERT INTO refusals (event_id, model, endpoint, detail, {})
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], {})
         ON CONFLICT DO NOTHING RETURNING event_id",
        sql::INT_COLUMNS.join(", "),
        unnest_ints(5, sql::INT_COLUMNS.len())
    );
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&ids, &models, &endpoints, &details];
    params.extend(ints.iter().map(|c| c as &(dyn ToSql + Sync)));
    let mut stored: HashSet<Uuid> = HashSet::new();
    if !live.is_empty() {
        for row in tx.query(insert.as_str(), &params).await? {
            stored.insert(row.try_get(0)?);
        }
    }
    let mut fresh = Vec::with_capacity(stored.len());
    for (r, d) in live.iter().zip(&dims) {
        // `remove`, so that an id twice in one batch counts once.
        if sql::tally(&mut report, stored.remove(&r.id)) {
            fresh.push((*r, d));
        }
    }
    let grains = sql::fold(fresh.into_iter());
    for (table, rows) in ROLLUPS.iter().zip(&grains) {
        if rows.is_empty() {
            continue;
        }
        let cols = columns_of(rows.iter().map(|(k, n)| [k[0], k[1], k[2], k[3], k[4], *n]));
        let sql = format!(
            "INSERT INTO {table} AS r ({ROLLUP_KEY}, refusals) SELECT * FROM unnest({})
             ON CONFLICT ({ROLLUP_KEY}) DO UPDATE SET refusals = r.refusals + excluded.refusals",
            unnest_ints(1, cols.len())
        );
        let params: Vec<&(dyn ToSql + Sync)> =
            cols.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        tx.execute(sql.as_str(), &params).await?;
    }
    if maintain {
        let cutoff = sql::cutoff(options.refusal_retention_days, now);
        tx.execute("DELETE FROM refusals WHERE ts_ms < $1", &[&cutoff])
            .await?;
        let minutes = minute_prune_cutoff(now, minute_retention_ms(options.minute_retention_hours));
        tx.execute(
            &format!("DELETE FROM {} WHERE bucket < $1", ROLLUPS[0]),
            &[&minutes],
        )
        .await?;
    }
    tx.commit().await?;
    if maintain {
        w.last_refusal_maintenance_ms = now;
    }
    Ok(report)
}

pub(super) async fn list(
    c: &Client,
    f: &RefusalFilters,
    limit: usize,
    cursor: Option<(i64, i64)>,
) -> Result<RefusalPage> {
    sql::check(f)?;
    let Some(dims) = resolve(c, sql::terms(f)).await? else {
        return Ok(RefusalPage::default());
    };
    let limit = limit.clamp(1, 1000);
    let q = sql::list_query(D, f, &dims, limit, cursor);
    let items = run(c, &q, sql::stored_refusal).await?;
    Ok(sql::page_of(items, limit))
}

pub(super) async fn counts(
    c: &Client,
    f: &RefusalFilters,
    w: ResolvedWindow,
    group: Option<RefusalGroup>,
) -> Result<Vec<RefusalCount>> {
    sql::check(f)?;
    let Some(dims) = resolve(c, sql::terms(f)).await? else {
        return Ok(Vec::new());
    };
    let raw = run(c, &sql::counts_query(D, group, w, &dims), sql::count_row).await?;
    let names = match group {
        Some(RefusalGroup::Key) => names_for(c, GroupBy::Key).await?,
        g => labels_by_id(c, &sql::label_ids(g, &raw)).await?,
    };
    Ok(sql::counts(group, raw, &names))
}
