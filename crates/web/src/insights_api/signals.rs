//! Anomaly signals and forecasts of this moment.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use spendgate_core::query::{Filters, GroupBy, NO_TEAM_FILTER};
use spendgate_core::time::to_rfc3339;
use spendgate_gateway::ApiError;

use crate::api::store_error;
use crate::AppState;

/// The anomaly signals of this moment: the same detectors the background task raises alerts from, evaluated
/// now, each with its figures, its sentence and links to its evidence.
pub(super) async fn anomalies_api(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let now = spendgate_core::time::now_ms();
    let scope = crate::auth::viewer_team();
    let signals = spendgate_gateway::anomalies::evaluate(
        &*s.store,
        s.writer.repeats().map(|r| &**r),
        &s.anomalies,
        now,
        scope.as_deref(),
        &mut spendgate_gateway::anomalies::Episodes::default(),
    )
    .await
    .map_err(store_error)?;
    let c = &s.anomalies;
    Ok(Json(json!({
        "evaluated_at": to_rfc3339(now),
        "signals": signals.iter().map(|x| x.to_json()).collect::<Vec<_>>(),
        "thresholds": {
            "retry_loop": format!("{} identical requests (same key and request fingerprint) within {} s", c.retry_min_repeats, c.retry_window_ms / 1000),
            "spend_rate": format!("last 60 minutes at {}% or more of the median of the same 60 minutes over the previous {} days, and at least {} above it", c.rate_factor_pct, c.baseline_days, c.rate_min_excess.display_usd()),
            "prompt_expansion": format!("tokens per request at {}% or more of the baseline while requests stay within {}%", c.expansion_factor_pct, c.expansion_volume_band_pct),
            "unattributed": format!("No team's share of cost up {} points or more on its baseline", c.unattributed_rise_bp / 100),
        },
    })))
}

/// Month-end spend per team (and No team) at the current burn rate: each team's rate is over the time since its
/// first request this month, the range spans that and the last hour's rate. Budgets carry their own period-end
/// forecast in `GET /api/v1/budgets`, wallets their depletion date in `GET /api/v1/wallets`.
pub(super) async fn forecast_api(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    use super::forecast::{first_spend, period_forecast, rate_from, RECENT_MS};
    use spendgate_core::controls::Period;
    let now = spendgate_core::time::now_ms();
    let (start, end) = Period::Month.bounds(&s.controls.config().time_zone, now);
    let scope = crate::auth::viewer_team();
    let month = Filters {
        from_ms: start,
        to_ms: now.max(start + 1),
        scope_team: scope.clone(),
        ..Filters::default()
    };
    let recent = Filters {
        from_ms: (now - RECENT_MS).max(start),
        ..month.clone()
    };
    let (m, r, first, first_all) = tokio::join!(
        s.store.explorer(&month, GroupBy::Team),
        s.store.explorer(&recent, GroupBy::Team),
        first_spend(&*s.store, &month, Some(GroupBy::Team), now),
        first_spend(&*s.store, &month, None, now),
    );
    let (m, r) = (m.map_err(store_error)?, r.map_err(store_error)?);
    let (first, first_all) = (first.map_err(store_error)?, first_all.map_err(store_error)?);
    let mut total = (spendgate_core::Money::ZERO, spendgate_core::Money::ZERO);
    let mut teams: Vec<(spendgate_core::Money, Value)> = m
        .iter()
        .map(|row| {
            let recent_cost = r
                .iter()
                .find(|x| x.key == row.key)
                .map_or(spendgate_core::Money::ZERO, |x| x.totals.cost);
            total.0 += row.totals.cost;
            total.1 += recent_cost;
            let from = rate_from(first.get(&Some(row.label.clone())).copied(), start, now);
            let (f, rate) = period_forecast(row.totals.cost, recent_cost, from, end, now);
            let filter = row.key.clone().unwrap_or_else(|| NO_TEAM_FILTER.to_string());
            let v = json!({
                "team": row.key,
                "label": row.label,
                "spent": row.totals.cost,
                "last_hour": recent_cost,
                "forecast": f.expected,
                "forecast_low": f.low,
                "forecast_high": f.high,
                "rate": rate,
                "usage": format!("/usage?window=mtd&team={}&group_by=user", crate::pages::url_encode(&filter)),
            });
            (f.expected, v)
        })
        .collect();
    teams.sort_by_key(|t| std::cmp::Reverse(t.0));
    let teams: Vec<Value> = teams.into_iter().map(|t| t.1).collect();
    let from = rate_from(first_all.get(&None).copied(), start, now);
    let (all, rate) = period_forecast(total.0, total.1, from, end, now);
    Ok(Json(json!({
        "period": "month",
        "period_start": to_rfc3339(start),
        "period_end": to_rfc3339(end),
        "method": "expected = spend so far + the rate since the first request this month over what is left of the month; the range spans that and the last hour's rate",
        "total": { "spent": total.0, "forecast": all.expected, "forecast_low": all.low, "forecast_high": all.high, "rate": rate },
        "teams": teams,
    })))
}
