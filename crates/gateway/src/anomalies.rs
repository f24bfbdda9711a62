//! Anomaly signals: the detectors of [`spendgate_core::anomaly`] run over the store's numbers, each finding
//! turned into a [`Signal`] with a sentence and links to its evidence.
//!
//! [`evaluate`] answers "what is anomalous right now" (the API calls it on demand); [`run_detector`] calls it
//! every few seconds and raises each signal as an alert through [`Controls::raise`], so that it is recorded once
//! per episode (the store keeps `(kind, subject, period_start)` unique) and reaches the webhooks.
//!
//! Spend rate, prompt expansion and the unattributed share read hourly rollups (`Store::series`) over the last
//! eight days; the retry-loop detector reads the writer's counts of the last few minutes' requests per key and
//! fingerprint (`spendgate_store::repeats`), kept as the writer stores them, so that no background task reads spend
//! logs in proportion to traffic. Without them (the detectors turned off, asked on demand) it reads the spend
//! logs of the window by their time index (`Store::repeated_requests`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use spendgate_core::anomaly::{
    prompt_expansion, retry_loops, spend_rate, unattributed_share, window_from_hours,
    AnomalyConfig, RepeatedRequest, Window,
};
use spendgate_core::insights::{explain, sentence};
use spendgate_core::query::{
    format_share, Filters, GroupBy, Totals, NO_TEAM_FILTER, NO_TEAM_LABEL, NO_WORKFLOW_LABEL,
};
use spendgate_core::time::{now_ms, to_rfc3339, Grain, DAY_MS, HOUR_MS, MINUTE_MS};
use spendgate_store::controls::NewAlert;
use spendgate_store::repeats::Repeats;
use spendgate_store::{Store, StoreError};
use tokio::sync::watch;

use crate::controls::Controls;

/// One current anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// anomaly_retry_loop, anomaly_spend_rate, anomaly_prompt_expansion or anomaly_unattributed.
    pub kind: &'static str,
    /// "key:12", "team:support", "team:@none" or "workflow:ticket-triage".
    pub subject: String,
    /// The team it concerns (`None` for workflows, which can span teams).
    pub team: Option<String>,
    /// What a person reads: "Key 12 (triage-bot)", "Team support".
    pub label: String,
    /// The window the detector looked at.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Where the episode started: alerts fire once per (kind, subject, episode).
    pub episode_start_ms: i64,
    /// The detector's numbers.
    pub figures: Value,
    pub sentence: String,
    /// For retry loops: why the team's spend moved (the explain decomposition's sentence) and its driver.
    pub explanation: Option<String>,
    pub driver: Option<String>,
    /// The filtered `/usage` view, the spend-log API query and the `/explain` page behind the signal.
    pub usage_url: String,
    pub spend_logs_url: String,
    pub explain_url: Option<String>,
}

impl Signal {
    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind,
            "subject": self.subject,
            "team": self.team,
            "label": self.label,
            "window": { "from": to_rfc3339(self.from_ms), "to": to_rfc3339(self.to_ms) },
            "episode_start": to_rfc3339(self.episode_start_ms),
            "figures": self.figures,
            "sentence": self.sentence,
            "explanation": self.explanation,
            "driver": self.driver,
            "evidence": {
                "usage": self.usage_url,
                "spend_logs": self.spend_logs_url,
                "explain": self.explain_url,
            },
        })
    }

    /// The alert this signal raises. The message carries the sentence, the explanation and the evidence links
    /// so that a webhook receiver has all of it.
    pub fn to_alert(&self) -> NewAlert {
        let mut message = self.sentence.clone();
        if let Some(e) = &self.explanation {
            message.push(' ');
            message.push_str(e);
        }
        message.push_str(&format!(
            " Evidence: {} and {}.",
            self.usage_url, self.spend_logs_url
        ));
        NewAlert {
            kind: self.kind.to_string(),
            subject: self.subject.clone(),
            team: self.team.clone(),
            period_start_ms: self.episode_start_ms,
            threshold: 0,
            message,
            link: Some(self.usage_url.clone()),
        }
    }
}

/// Retry-loop episodes seen by the detector: an episode continues while the loop keeps showing up, so a loop
/// that runs longer than the detector's window is still one alert.
#[derive(Debug, Default)]
pub struct Episodes {
    /// subject -> (episode start, last seen).
    seen: HashMap<String, (i64, i64)>,
}

impl Episodes {
    fn start_of(&mut self, subject: &str, first_ms: i64, now: i64, window_ms: i64) -> i64 {
        let start = match self.seen.get(subject) {
            Some((start, last)) if now - last <= window_ms => *start,
            _ => Grain::Minute.floor(first_ms),
        };
        self.seen.insert(subject.to_string(), (start, now));
        self.seen.retain(|_, (_, last)| now - *last <= window_ms);
        start
    }
}

fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What a signal concerns, as filters and as URL parameters.
#[derive(Debug, Clone, Default)]
struct Subject {
    team: Option<String>,
    workflow: Option<String>,
    key: Option<i64>,
}

impl Subject {
    fn pairs(&self, from_ms: i64, to_ms: i64) -> Vec<(&'static str, String)> {
        vec![
            ("from", to_rfc3339(from_ms)),
            ("to", to_rfc3339(to_ms)),
            ("team", self.team.clone().unwrap_or_default()),
            ("workflow", self.workflow.clone().unwrap_or_default()),
            ("key", self.key.map(|k| k.to_string()).unwrap_or_default()),
        ]
    }

    fn usage_url(&self, from_ms: i64, to_ms: i64, group_by: GroupBy) -> String {
        let mut p = self.pairs(from_ms, to_ms);
        p.push(("group_by", group_by.as_str().to_string()));
        format!("/usage?{}", query(&p))
    }

    fn spend_logs_url(&self, from_ms: i64, to_ms: i64) -> String {
        format!("/api/v1/spend-logs?{}", query(&self.pairs(from_ms, to_ms)))
    }

    /// The `/explain` page for this subject's group: a team or a workflow (a key's team for retry loops).
    fn explain_url(
        &self,
        from_ms: i64,
        to_ms: i64,
        base_from: i64,
        base_to: i64,
    ) -> Option<String> {
        let (g, s) = match (&self.workflow, &self.team) {
            (Some(w), _) if self.key.is_none() => ("workflow", w.clone()),
            (_, Some(t)) => ("team", t.clone()),
            _ => return None,
        };
        Some(format!(
            "/explain?{}",
            query(&[
                ("group_by", g.to_string()),
                ("subject", s),
                ("from", to_rfc3339(from_ms)),
                ("to", to_rfc3339(to_ms)),
                ("baseline_from", to_rfc3339(base_from)),
                ("baseline_to", to_rfc3339(base_to)),
            ])
        ))
    }
}

/// "4.2×" from a percentage.
fn times(pct: u64) -> String {
    format!("{}.{}×", pct / 100, pct % 100 / 10)
}

/// Hourly totals per group label, from a grouped series.
fn by_group(points: &[spendgate_store::SeriesPoint]) -> BTreeMap<String, Vec<(i64, Totals)>> {
    let mut out: BTreeMap<String, Vec<(i64, Totals)>> = BTreeMap::new();
    for p in points {
        if let Some(g) = &p.group {
            out.entry(g.clone())
                .or_default()
                .push((p.bucket_start_ms, p.totals));
        }
    }
    out
}

/// Every current signal at `now`. `scope_team` confines the answer to one team (a team viewer's): its
/// teams' signals and its keys' retry loops; workflow-wide and unattributed signals are then left out.
pub async fn evaluate(
    store: &dyn Store,
    repeats: Option<&Repeats>,
    cfg: &AnomalyConfig,
    now: i64,
    scope_team: Option<&str>,
    episodes: &mut Episodes,
) -> Result<Vec<Signal>, StoreError> {
    let mut out = retry_signals(store, repeats, cfg, now, scope_team, episodes).await?;
    out.extend(rate_signals(store, cfg, now, scope_team).await?);
    Ok(out)
}

async fn retry_signals(
    store: &dyn Store,
    repeats: Option<&Repeats>,
    cfg: &AnomalyConfig,
    now: i64,
    scope_team: Option<&str>,
    episodes: &mut Episodes,
) -> Result<Vec<Signal>, StoreError> {
    let since = now - cfg.retry_window_ms;
    let min = cfg.retry_min_repeats.max(2);
    let rows = match repeats {
        Some(r) => r.repeated(since, min),
        None => store.repeated_requests(since, min).await?,
    };
    let mut loops = retry_loops(&rows, cfg);
    if let Some(t) = scope_team {
        loops.retain(|r| r.team.as_deref() == Some(t));
    }
    // One signal per key: its most repeated request (loops come most repeated first).
    let mut seen_keys = Vec::new();
    loops.retain(|r| {
        let fresh = !seen_keys.contains(&r.key_id);
        seen_keys.push(r.key_id);
        fresh
    });
    let users: HashMap<i64, String> = store
        .list_keys()
        .await?
        .into_iter()
        .map(|k| (k.id, k.user))
        .collect();
    let mut out = Vec::with_capacity(loops.len());
    for r in loops {
        out.push(retry_signal(store, cfg, now, &r, users.get(&r.key_id), episodes).await?);
    }
    Ok(out)
}

async fn retry_signal(
    store: &dyn Store,
    cfg: &AnomalyConfig,
    now: i64,
    r: &RepeatedRequest,
    user: Option<&String>,
    episodes: &mut Episodes,
) -> Result<Signal, StoreError> {
    let subject = format!("key:{}", r.key_id);
    let episode = episodes.start_of(&subject, r.first_ms, now, cfg.retry_window_ms);
    let team_label = r
        .team
        .clone()
        .map_or_else(|| NO_TEAM_LABEL.to_string(), |t| format!("team {t}"));
    let label = match user {
        Some(u) => format!("Key {} ({u})", r.key_id),
        None => format!("Key {}", r.key_id),
    };
    let span_s = ((r.last_ms - r.first_ms) / 1000).max(1);
    let sentence = format!(
        "{label} in {team_label}{} sent the same request {} times in {} s ({}), which looks like a retry loop.",
        r.workflow
            .as_deref()
            .map(|w| format!(", workflow {w},"))
            .unwrap_or_default(),
        r.requests,
        span_s,
        r.cost.display_usd(),
    );
    // Why spend moved in the team since the loop began, against an equally long window just before it. The
    // sentence and driver are the loop key's own decomposition within the team: its requests are identical, so
    // a loop is volume by nature, whereas the team as a whole may also shift its model mix because of the loop
    // (the team-level effects are in the figures, so the two can be compared).
    let from = Grain::Minute.floor(r.first_ms).min(episode);
    let to = now.max(from + MINUTE_MS);
    let len = to - from;
    let team_filter = r.team.clone().unwrap_or_else(|| NO_TEAM_FILTER.to_string());
    let cur = Filters {
        from_ms: from,
        to_ms: to,
        team: Some(team_filter.clone()),
        ..Filters::default()
    };
    let base = Filters {
        from_ms: from - len,
        to_ms: from,
        ..cur.clone()
    };
    let key_cur = Filters {
        key_id: Some(r.key_id),
        ..cur.clone()
    };
    let key_base = Filters {
        key_id: Some(r.key_id),
        ..base.clone()
    };
    let (c, b, kc, kb) = tokio::join!(
        store.explorer(&cur, GroupBy::Model),
        store.explorer(&base, GroupBy::Model),
        store.explorer(&key_cur, GroupBy::Model),
        store.explorer(&key_base, GroupBy::Model)
    );
    let e = explain(&b?, &c?);
    let k = explain(&kb?, &kc?);
    let explanation = sentence_of(
        &k,
        &format!("{label} in {team_label}"),
        "since the loop began against the same time before it",
    );
    let subj = Subject {
        team: Some(team_filter.clone()),
        workflow: None,
        key: Some(r.key_id),
    };
    let team_subject = Subject {
        team: Some(team_filter),
        ..Subject::default()
    };
    Ok(Signal {
        kind: "anomaly_retry_loop",
        subject,
        team: r.team.clone(),
        label,
        from_ms: r.first_ms,
        to_ms: r.last_ms + 1,
        episode_start_ms: episode,
        figures: json!({
            "key_id": r.key_id,
            "fingerprint": format!("{:016x}", r.fingerprint),
            "requests": r.requests,
            "window_seconds": cfg.retry_window_ms / 1000,
            "first": to_rfc3339(r.first_ms),
            "last": to_rfc3339(r.last_ms),
            "cost": r.cost,
            "workflow": r.workflow,
            "key_change": k.effects.change,
            "key_volume_effect": k.effects.volume,
            "team_change": e.effects.change,
            "team_volume_effect": e.effects.volume,
            "team_intensity_effect": e.effects.intensity,
            "team_price_mix_effect": e.effects.price_mix,
        }),
        sentence,
        explanation: Some(explanation),
        driver: Some(k.driver.as_str()),
        usage_url: subj.usage_url(
            Grain::Minute.floor(r.first_ms),
            Grain::Minute.ceil(to),
            GroupBy::Key,
        ),
        spend_logs_url: subj.spend_logs_url(r.first_ms, r.last_ms + 1),
        explain_url: team_subject.explain_url(from, to, from - len, from),
    })
}

fn sentence_of(e: &spendgate_core::insights::Explanation, who: &str, windows: &str) -> String {
    let mut subject = who.to_string();
    if let Some(f) = subject.get_mut(0..1) {
        f.make_ascii_uppercase();
    }
    sentence(e, &subject, windows, "model")
}

async fn rate_signals(
    store: &dyn Store,
    cfg: &AnomalyConfig,
    now: i64,
    scope_team: Option<&str>,
) -> Result<Vec<Signal>, StoreError> {
    let days = cfg.baseline_days.max(1);
    let hour = Grain::Hour.floor(now);
    let lookback = Filters {
        from_ms: hour - HOUR_MS - i64::try_from(days).unwrap_or(7) * DAY_MS,
        to_ms: now,
        scope_team: scope_team.map(str::to_string),
        ..Filters::default()
    };
    let (all, teams, workflows) = tokio::join!(
        store.series(&lookback, Grain::Hour, None),
        store.series(&lookback, Grain::Hour, Some(GroupBy::Team)),
        store.series(&lookback, Grain::Hour, Some(GroupBy::Workflow)),
    );
    let all: Vec<(i64, Totals)> = all?
        .into_iter()
        .map(|p| (p.bucket_start_ms, p.totals))
        .collect();
    // The history begins with the first hour that has any spend: earlier days are unknown, not idle.
    let Some(history_start) = all.iter().map(|(b, _)| *b).min() else {
        return Ok(Vec::new());
    };
    let from = now - HOUR_MS;
    let mut out = Vec::new();
    let mut groups: Vec<(Subject, String, Option<String>, Window)> = Vec::new();
    for (label, hours) in by_group(&teams?) {
        let no_team = label == NO_TEAM_LABEL;
        if no_team && scope_team.is_some() {
            continue;
        }
        let subject = Subject {
            team: Some(if no_team {
                NO_TEAM_FILTER.to_string()
            } else {
                label.clone()
            }),
            ..Subject::default()
        };
        let text = if no_team {
            NO_TEAM_LABEL.to_string()
        } else {
            format!("Team {label}")
        };
        let team = (!no_team).then(|| label.clone());
        groups.push((
            subject,
            text,
            team,
            window_from_hours(&hours, now, history_start, days),
        ));
    }
    if scope_team.is_none() {
        for (label, hours) in by_group(&workflows?) {
            if label == NO_WORKFLOW_LABEL {
                continue;
            }
            let subject = Subject {
                workflow: Some(label.clone()),
                ..Subject::default()
            };
            groups.push((
                subject,
                format!("Workflow {label}"),
                None,
                window_from_hours(&hours, now, history_start, days),
            ));
        }
    }
    let subject_key = |s: &Subject| match (&s.team, &s.workflow) {
        (_, Some(w)) => format!("workflow:{w}"),
        (Some(t), None) => format!("team:{t}"),
        _ => "org".to_string(),
    };
    let yesterday = |s: &Subject| s.explain_url(from, now, from - DAY_MS, now - DAY_MS);
    for (subject, text, team, w) in &groups {
        if let Some(r) = spend_rate(w, cfg) {
            out.push(Signal {
                kind: "anomaly_spend_rate",
                subject: subject_key(subject),
                team: team.clone(),
                label: text.clone(),
                from_ms: from,
                to_ms: now,
                episode_start_ms: hour,
                figures: json!({
                    "current": r.current,
                    "baseline_median": r.baseline_median,
                    "baseline_days": r.baseline_days,
                    "ratio_percent": r.ratio_pct,
                }),
                sentence: format!(
                    "{text} spent {} in the last 60 minutes, {} the median of {} at this time of day over the previous {} days.",
                    r.current.display_usd(),
                    r.ratio_pct.map_or_else(|| "far above".to_string(), |p| format!("{} of", times(p))),
                    r.baseline_median.display_usd(),
                    r.baseline_days,
                ),
                explanation: None,
                driver: None,
                usage_url: subject.usage_url(from, now, GroupBy::Key),
                spend_logs_url: subject.spend_logs_url(from, now),
                explain_url: yesterday(subject),
            });
        }
        if let Some(x) = prompt_expansion(w, cfg) {
            out.push(Signal {
                kind: "anomaly_prompt_expansion",
                subject: subject_key(subject),
                team: team.clone(),
                label: text.clone(),
                from_ms: from,
                to_ms: now,
                episode_start_ms: hour,
                figures: json!({
                    "tokens_per_request": x.tokens_per_request,
                    "baseline_tokens_per_request": x.baseline_tokens_per_request,
                    "requests": x.requests,
                    "baseline_requests": x.baseline_requests,
                    "baseline_days": x.baseline_days,
                }),
                sentence: format!(
                    "{text}'s requests grew to {} tokens each in the last 60 minutes against a usual {} at this time of day, while the number of requests stayed about the same ({} against {}): prompts are expanding.",
                    x.tokens_per_request,
                    x.baseline_tokens_per_request,
                    x.requests,
                    x.baseline_requests,
                ),
                explanation: None,
                driver: None,
                usage_url: subject.usage_url(from, now, GroupBy::Model),
                spend_logs_url: subject.spend_logs_url(from, now),
                explain_url: yesterday(subject),
            });
        }
    }
    if scope_team.is_none() {
        let no_team = groups
            .iter()
            .find(|(s, _, _, _)| s.team.as_deref() == Some(NO_TEAM_FILTER))
            .map(|g| g.3.clone());
        let all_w = window_from_hours(&all, now, history_start, days);
        if let Some(u) = no_team.and_then(|n| unattributed_share(&n, &all_w, cfg)) {
            let subject = Subject {
                team: Some(NO_TEAM_FILTER.to_string()),
                ..Subject::default()
            };
            out.push(Signal {
                kind: "anomaly_unattributed",
                subject: "team:@none".into(),
                team: None,
                label: NO_TEAM_LABEL.into(),
                from_ms: from,
                to_ms: now,
                episode_start_ms: hour,
                figures: json!({
                    "share_percent": format_share(u.share_bp),
                    "baseline_share_percent": format_share(u.baseline_share_bp),
                    "unattributed": u.unattributed,
                    "total": u.total,
                    "baseline_days": u.baseline_days,
                }),
                sentence: format!(
                    "Unattributed spend (No team) is {}% of the last 60 minutes' {} against a usual {}% at this time of day: keys without a team are taking a growing share.",
                    format_share(u.share_bp),
                    u.total.display_usd(),
                    format_share(u.baseline_share_bp),
                ),
                explanation: None,
                driver: None,
                usage_url: subject.usage_url(from, now, GroupBy::Key),
                spend_logs_url: subject.spend_logs_url(from, now),
                explain_url: yesterday(&subject),
            });
        }
    }
    Ok(out)
}

/// Evaluates the detectors every `interval` and raises each signal as an alert, until `stop` turns true.
pub async fn run_detector(
    store: Arc<dyn Store>,
    repeats: Option<Arc<Repeats>>,
    controls: Arc<Controls>,
    cfg: AnomalyConfig,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut episodes = Episodes::default();
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        match evaluate(
            &*store,
            repeats.as_deref(),
            &cfg,
            now_ms(),
            None,
            &mut episodes,
        )
        .await
        {
            Ok(signals) => {
                for s in signals {
                    controls.raise(s.to_alert());
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Evaluating the anomaly detectors failed; they run again shortly.")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_lasts_while_the_loop_keeps_showing_up() {
        let mut e = Episodes::default();
        let w = 5 * MINUTE_MS;
        let s1 = e.start_of("key:1", 61_000, 100_000, w);
        assert_eq!(s1, 60_000);
        // Ten minutes later the window no longer holds the loop's start, but the loop was seen all along.
        let mut now = 100_000;
        while now < 700_000 {
            now += 15_000;
            assert_eq!(e.start_of("key:1", now - w + 1, now, w), s1);
        }
        // After a pause longer than the window, a new episode.
        let later = now + w + 60_000;
        assert_ne!(e.start_of("key:1", later - 30_000, later, w), s1);
    }

    #[test]
    fn evidence_urls_are_encoded() {
        let s = Subject {
            team: Some("@none".into()),
            workflow: Some("a b&c".into()),
            key: None,
        };
        let u = s.usage_url(0, 60_000, GroupBy::Key);
        assert!(u.starts_with("/usage?from=1970-01-01T00%3A00%3A00Z"), "{u}");
        assert!(u.contains("team=%40none"), "{u}");
        assert!(u.contains("workflow=a%20b%26c"), "{u}");
        assert!(s.spend_logs_url(0, 1).starts_with("/api/v1/spend-logs?"));
    }
}
