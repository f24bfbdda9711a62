//! The alerts the controls raise: a budget crossing a threshold or refusing requests, a wallet running low,
//! empty or refusing. Each goes to the dispatcher (`crate::alerts`), which records it once and delivers it.

use spendgate_core::controls::{Scope, WalletStatus};
use spendgate_core::Money;
use spendgate_store::controls::{BudgetRecord, NewAlert};

use super::{Controls, LiveWallet};

/// Whose requests a control refuses, as alerts say it: the team's, or for a key without a team the user's.
fn whose(user: &str, team: Option<&str>) -> String {
    match team {
        Some(t) => format!("team {t}'s"),
        None => format!("user {user}'s"),
    }
}

fn team_of(scope: &Scope) -> Option<String> {
    match scope {
        Scope::Team(t) => Some(t.clone()),
        _ => None,
    }
}

impl Controls {
    pub(super) fn alert_budget(
        &self,
        rec: &BudgetRecord,
        period_start_ms: i64,
        threshold: u32,
        spent: Money,
    ) {
        let kind = if threshold >= 100 {
            "budget_over"
        } else {
            "budget_near"
        };
        let message = format!(
            "{} budget of {} crossed {}%: {} spent of {} this {}.",
            rec.def
                .name
                .clone()
                .unwrap_or_else(|| format!("The {}", rec.def.period.as_str())),
            rec.def.scope.describe(),
            threshold,
            spent.display_usd(),
            rec.def.amount.display_usd(),
            rec.def.period.as_str()
        );
        let _ = self.alerts.send(NewAlert {
            kind: kind.into(),
            subject: format!("budget:{}", rec.id),
            team: team_of(&rec.def.scope),
            period_start_ms,
            threshold,
            message,
            link: None,
        });
    }

    /// "Budget X is refusing team Y's requests": once per budget and period, at its first refusal.
    pub(super) fn alert_budget_refusing(
        &self,
        rec: &BudgetRecord,
        period_start_ms: i64,
        user: &str,
        team: Option<&str>,
    ) {
        let whose = whose(user, team);
        let message = format!(
            "{} budget of {} is refusing {whose} requests: it has no room left this {} ({} a {}). Raise it, or the \
             requests wait until it resets.",
            rec.def
                .name
                .clone()
                .unwrap_or_else(|| format!("The {}", rec.def.period.as_str())),
            rec.def.scope.describe(),
            rec.def.period.as_str(),
            rec.def.amount.display_usd(),
            rec.def.period.as_str(),
        );
        let _ = self.alerts.send(NewAlert {
            kind: "budget_refusing".into(),
            subject: format!("budget:{}", rec.id),
            team: team_of(&rec.def.scope),
            period_start_ms,
            threshold: 100,
            message,
            link: Some("/budgets".into()),
        });
    }

    /// "Wallet X is refusing team Y's requests": once per wallet and epoch (the time it last became healthy), at
    /// the first refusal since it last received money.
    pub(super) fn alert_wallet_refusing(&self, w: &LiveWallet, user: &str, team: Option<&str>) {
        let message = format!(
            "Wallet '{}' of {} is refusing {} requests: it cannot pay for them ({} available). Top it up, or move \
             money to it from another wallet.",
            w.rec.def.name,
            w.rec.def.scope.describe(),
            whose(user, team),
            w.available().display_usd(),
        );
        let _ = self.alerts.send(NewAlert {
            kind: "wallet_refusing".into(),
            subject: format!("wallet:{}", w.rec.id),
            team: team_of(&w.rec.def.scope),
            period_start_ms: w.epoch_ms,
            threshold: 0,
            message,
            link: Some(format!("/wallets/{}", w.rec.id)),
        });
    }

    pub(super) fn alert_wallet(&self, w: &LiveWallet, status: WalletStatus) {
        let (kind, threshold) = match status {
            WalletStatus::Low => ("wallet_low", 1),
            WalletStatus::Depleted => ("wallet_depleted", 0),
            WalletStatus::Healthy => return,
        };
        let _ = self.alerts.send(NewAlert {
            kind: kind.into(),
            subject: format!("wallet:{}", w.rec.id),
            team: team_of(&w.rec.def.scope),
            period_start_ms: w.epoch_ms,
            threshold,
            message: format!(
                "Wallet '{}' of {} is {}: {} available.",
                w.rec.def.name,
                w.rec.def.scope.describe(),
                status.as_str(),
                w.available().display_usd()
            ),
            link: None,
        });
    }

    /// Raises an alert from elsewhere (the anomaly detectors): the dispatcher records it once and delivers it to
    /// the webhooks like a budget alert.
    pub fn raise(&self, alert: NewAlert) {
        let _ = self.alerts.send(alert);
    }
}
