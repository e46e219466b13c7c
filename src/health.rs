//! The vocabulary every component uses to say how it is: a [`Verdict`] with reasons in plain
//! words, and warnings about past losses that do not change the verdict.
//!
//! Each component judges itself from its own status snapshot (`HaStatus::health`,
//! `StorageStatus::health`, `WebhookStatus::health`…); `/health/deep`, the dashboard's realtime
//! numbers and the panel combine those judgements with [`Health::merge`]. This module is a leaf:
//! it imports no other part of HomeIQ, so any component can use it.

use serde::Serialize;
use utoipa::ToSchema;

/// How a component (or HomeIQ as a whole) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// All good.
    #[default]
    Ok,
    /// Working, but something needs attention.
    Degraded,
    /// Not working until someone acts.
    Failed,
}

/// A component's judgement of itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// The worst level among the reasons (`ok` without reasons).
    pub verdict: Verdict,
    /// Current problems, in plain words.
    pub reasons: Vec<String>,
    /// Past losses worth knowing; they do not change the verdict.
    pub warnings: Vec<String>,
}

impl Health {
    /// Records a current problem at `level`.
    pub fn flag(&mut self, level: Verdict, reason: impl Into<String>) {
        self.verdict = self.verdict.max(level);
        self.reasons.push(reason.into());
    }

    /// Records a past loss.
    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    /// Adds another component's judgement: the worse verdict, both reasons and warnings.
    #[must_use]
    pub fn merge(mut self, other: Health) -> Health {
        self.verdict = self.verdict.max(other.verdict);
        self.reasons.extend(other.reasons);
        self.warnings.extend(other.warnings);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_verdict_wins_and_warnings_leave_it_alone() {
        let mut a = Health::default();
        a.warn("lost 3 points");
        assert_eq!(a.verdict, Verdict::Ok);
        let mut b = Health::default();
        b.flag(Verdict::Failed, "refused");
        let mut c = Health::default();
        c.flag(Verdict::Degraded, "slow");
        let all = a.merge(b).merge(c);
        assert_eq!(all.verdict, Verdict::Failed);
        assert_eq!(all.reasons, ["refused", "slow"]);
        assert_eq!(all.warnings, ["lost 3 points"]);
    }
}
