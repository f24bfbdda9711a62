//! Realistic synthetic spend events: 50 teams, 1,000 users (a few without a team), 20 priced catalog models,
//! 3 gateways and per-team workflows. Each user mostly uses two favourite models and up to two of their
//! team's workflows, and some users are much busier than others, as in a real organisation. Costs are priced
//! exactly by the built-in catalog.

use anyhow::Context;
use spendgate_core::pricing::{ModelKind, ModelPrice};
use spendgate_core::{
    Attribution, CacheOutcome, Catalog, PriceConfidence, RequestStatus, SpendEvent,
    UnknownModelPolicy, Usage, UsageSource,
};

pub const TEAMS: usize = 50;
pub const USERS: usize = 1_000;
pub const MODELS: usize = 20;
pub const GATEWAYS: usize = 3;
const WORKFLOW_KINDS: [&str; 4] = ["triage", "summarize", "search", "draft"];

struct User {
    name: String,
    team: Option<String>,
    key_id: i64,
    models: [usize; 2],
    workflows: [Option<String>; 2],
}

pub struct Generator {
    rng: fastrand::Rng,
    models: Vec<ModelPrice>,
    users: Vec<User>,
    gateways: Vec<String>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("models", &self.models.len())
            .finish()
    }
}

impl Generator {
    pub fn new(seed: u64) -> anyhow::Result<Generator> {
        let catalog = Catalog::with_overrides(Vec::new(), UnknownModelPolicy::Refuse)
            .context("the built-in pricing catalog does not load")?;
        let models: Vec<ModelPrice> = catalog
            .models()
            .iter()
            .filter(|m| m.kind == ModelKind::Chat)
            .take(MODELS)
            .cloned()
            .collect();
        anyhow::ensure!(!models.is_empty(), "the built-in catalog has no chat model");
        let mut rng = fastrand::Rng::with_seed(seed);
        let users = (0..USERS)
            .map(|i| {
                // The last 2% of users are integrations whose keys have no team (the "No team" bucket).
                let team = (i < USERS * 98 / 100).then(|| format!("team-{:02}", i % TEAMS));
                let wf = |rng: &mut fastrand::Rng| -> Option<String> {
                    let t = team.as_deref()?;
                    (rng.u8(..10) < 8).then(|| {
                        format!("{t}-{}", WORKFLOW_KINDS[rng.usize(..WORKFLOW_KINDS.len())])
                    })
                };
                let workflows = [wf(&mut rng), wf(&mut rng)];
                User {
                    name: format!("user-{i:04}"),
                    team,
                    key_id: i as i64 + 1,
                    models: [rng.usize(..models.len()), rng.usize(..models.len())],
                    workflows,
                }
            })
            .collect();
        Ok(Generator {
            rng,
            models,
            users,
            gateways: (1..=GATEWAYS).map(|g| format!("gateway-{g}")).collect(),
        })
    }

    /// One finished request that ended at `finished_at_ms`.
    pub fn event(&mut self, finished_at_ms: i64) -> SpendEvent {
        let rng = &mut self.rng;
        // Skewed choice: a few users send most of the traffic.
        let a = rng.usize(..USERS);
        let b = rng.usize(..USERS);
        let user = &self.users[a.min(b)];
        let model_ix = if rng.u8(..10) == 0 {
            rng.usize(..self.models.len())
        } else {
            user.models[rng.usize(..2)]
        };
        let model = &self.models[model_ix];
        let failed = rng.u8(..100) < 2;
        let usage = if failed {
            Usage::default()
        } else {
            let input = rng.u64(50..6_000);
            let cached = if input >= 1024 && rng.bool() {
                input / 2 / 128 * 128
            } else {
                0
            };
            Usage {
                input_tokens: input,
                output_tokens: rng.u64(5..900),
                cached_input_tokens: cached,
                cache_write_tokens: 0,
                ..Usage::default()
            }
        };
        let priced = model.price(&usage);
        let latency_ms = rng.u32(150..9_000);
        SpendEvent {
            // Time-ordered (v7) from the start time, as the gateway makes them: index inserts land near the end.
            id: uuid::Builder::from_unix_timestamp_millis(
                u64::try_from(finished_at_ms - i64::from(latency_ms)).unwrap_or(0),
                &rng.u128(..).to_le_bytes()[..10]
                    .try_into()
                    .unwrap_or([0; 10]),
            )
            .into_uuid(),
            started_at_ms: finished_at_ms - i64::from(latency_ms),
            finished_at_ms,
            latency_ms,
            gateway: self.gateways[rng.usize(..self.gateways.len())].clone(),
            provider: model.provider.clone(),
            model: model.model.clone(),
            endpoint: "chat.completions".into(),
            stream: rng.bool(),
            attribution: Attribution {
                key_id: user.key_id,
                user: user.name.clone(),
                team: user.team.clone(),
                workflow: user.workflows[rng.usize(..2)].clone(),
                workflow_requested: None,
            },
            cache_outcome: CacheOutcome::NotCacheable,
            status: if failed {
                RequestStatus::UpstreamError
            } else {
                RequestStatus::Ok
            },
            http_status: if failed { 502 } else { 200 },
            usage,
            usage_source: UsageSource::Reported,
            cost: priced.cost,
            price_confidence: PriceConfidence::Exact,
            price_lines: priced.billed_lines(),
            error: failed.then(|| "The provider failed: upstream answered 502.".to_string()),
            wallet_id: None,
            // Every generated request is different, as most real traffic is.
            fingerprint: Some(rng.u64(..)),
            leases: Vec::new(),
            attempts: 1,
            failed_attempts: Vec::new(),
            avoided_cost: spendgate_core::Money::ZERO,
            upstream_api: None,
        }
    }

    pub fn rng(&mut self) -> &mut fastrand::Rng {
        &mut self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_priced_and_attributed() {
        let mut g = Generator::new(7).unwrap();
        let e = g.event(1_000_000);
        assert_eq!(e.finished_at_ms, 1_000_000);
        assert!(e.attribution.user.starts_with("user-"));
        if e.status == RequestStatus::Ok {
            assert!(e.cost.picos() > 0);
        }
        assert_ne!(g.event(1).id, g.event(1).id);
    }
}
