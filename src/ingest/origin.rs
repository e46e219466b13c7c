//! Who caused each change: the [`Origin`] the pipeline stores beside a state, found the way Home
//! Assistant's logbook finds it.
//!
//! A context alone does not say it: a time-triggered automation's changes carry neither a user nor
//! a parent. But every automation and script run is announced, before its first change, by an
//! `automation_triggered` or `script_started` event carrying the run's context; the changes it
//! makes carry that context id (scripts run in their caller's context, so a script started by an
//! automation shares the automation's id and stays the automation's), or have it as their parent.
//! So, for a change's context:
//!
//! 1. its id, else its parent id, is a known run → `automation` / `script` (with its entity id);
//! 2. it has a user → `system` if Home Assistant lists that user as system-generated (the
//!    Supervisor, add-ons acting through it), else `user` (with the user id); a user the list
//!    does not name (the list needs an admin token, or the user is newer) counts as a person;
//! 3. otherwise → `device`: the integration reported it (a sensor reading, a physical switch);
//! 4. no context at all → `unknown`.
//!
//! Runs are remembered in a bounded first-in-first-out table ([`RUNS_KEPT`]): an automation whose
//! actions wait (a `delay` of minutes) still finds its run, and a home firing thousands of runs
//! forgets the oldest first. Written by hand: a `HashMap` plus a ring of keys is all this needs,
//! and it sits on the hot path (one lookup per change, no allocation).

use std::collections::{HashMap, HashSet, VecDeque};

use crate::ha::model::{Context, HaUser, RunKind, RunStarted};
use crate::store::origin::{Origin, OriginKind};

/// Runs remembered at most: at one run per second, over an hour of them.
pub(crate) const RUNS_KEPT: usize = 4_096;

/// Users remembered at most (Home Assistant instances have a handful).
const USERS_KEPT: usize = 1_024;

/// Attributes changes to automations, scripts, users, the system or devices.
#[derive(Debug, Default)]
pub(crate) struct Attributor {
    /// Run context id → (kind, entity id).
    runs: HashMap<String, (RunKind, String)>,
    /// Context ids of `runs`, oldest first.
    order: VecDeque<String>,
    /// Ids of system-generated users.
    system_users: HashSet<String>,
}

impl Attributor {
    /// Remembers a run; the oldest is forgotten beyond [`RUNS_KEPT`]. A context already known
    /// keeps its first run: a script an automation starts shares the automation's context.
    pub(crate) fn note_run(&mut self, run: RunStarted) {
        if self.runs.contains_key(&run.context_id) {
            return;
        }
        if self.order.len() >= RUNS_KEPT
            && let Some(oldest) = self.order.pop_front()
        {
            self.runs.remove(&oldest);
        }
        self.order.push_back(run.context_id.clone());
        self.runs.insert(run.context_id, (run.kind, run.entity_id));
    }

    /// Replaces what is known of users with Home Assistant's list.
    pub(crate) fn set_users(&mut self, users: &[HaUser]) {
        self.system_users = users
            .iter()
            .filter(|u| u.system_generated)
            .take(USERS_KEPT)
            .map(|u| u.id.clone())
            .collect();
    }

    /// Who caused a change with context `ctx`.
    pub(crate) fn attribute(&self, ctx: Option<&Context>) -> Origin {
        let Some(ctx) = ctx else {
            return Origin::unknown();
        };
        let run = self
            .runs
            .get(&ctx.id)
            .or_else(|| ctx.parent_id.as_ref().and_then(|p| self.runs.get(p)));
        if let Some((kind, entity_id)) = run {
            let kind = match kind {
                RunKind::Automation => OriginKind::Automation,
                RunKind::Script => OriginKind::Script,
            };
            return Origin {
                kind,
                id: Some(entity_id.clone()),
            };
        }
        if let Some(user) = ctx.user_id.as_ref().filter(|u| !u.is_empty()) {
            let kind = if self.system_users.contains(user) {
                OriginKind::System
            } else {
                OriginKind::User
            };
            return Origin {
                kind,
                id: Some(user.clone()),
            };
        }
        if ctx.id.is_empty() {
            return Origin::unknown();
        }
        Origin::of(OriginKind::Device)
    }

    /// Runs remembered now.
    #[cfg(test)]
    fn runs_kept(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(id: &str, parent: Option<&str>, user: Option<&str>) -> Context {
        Context {
            id: id.into(),
            parent_id: parent.map(Into::into),
            user_id: user.map(Into::into),
        }
    }

    fn run(kind: RunKind, entity: &str, context: &str) -> RunStarted {
        RunStarted {
            kind,
            entity_id: entity.into(),
            context_id: context.into(),
        }
    }

    #[test]
    fn changes_are_attributed_as_the_logbook_does() {
        let mut a = Attributor::default();
        a.set_users(&[
            HaUser {
                id: "owner".into(),
                system_generated: false,
            },
            HaUser {
                id: "supervisor".into(),
                system_generated: true,
            },
        ]);
        // a time-triggered automation: its changes carry the run's id, no parent, no user
        a.note_run(run(RunKind::Automation, "automation.wake", "R1"));
        assert_eq!(
            a.attribute(Some(&ctx("R1", None, None))),
            Origin {
                kind: OriginKind::Automation,
                id: Some("automation.wake".into())
            }
        );
        // a change made by a change of the run (parent)
        assert_eq!(
            a.attribute(Some(&ctx("C2", Some("R1"), None))).kind,
            OriginKind::Automation
        );
        // a script started by that automation shares its context: still the automation's
        a.note_run(run(RunKind::Script, "script.lights", "R1"));
        assert_eq!(
            a.attribute(Some(&ctx("R1", None, None))).id.as_deref(),
            Some("automation.wake")
        );
        // a script a person started
        a.note_run(run(RunKind::Script, "script.night", "S1"));
        assert_eq!(
            a.attribute(Some(&ctx("S1", None, Some("owner")))),
            Origin {
                kind: OriginKind::Script,
                id: Some("script.night".into())
            }
        );
        // users: a person, the Supervisor, one the list does not name
        assert_eq!(
            a.attribute(Some(&ctx("U1", None, Some("owner")))),
            Origin {
                kind: OriginKind::User,
                id: Some("owner".into())
            }
        );
        assert_eq!(
            a.attribute(Some(&ctx("U2", None, Some("supervisor")))).kind,
            OriginKind::System
        );
        assert_eq!(
            a.attribute(Some(&ctx("U3", None, Some("newcomer")))).kind,
            OriginKind::User
        );
        // a device reporting; a parent that is no known run (another entity's change)
        assert_eq!(
            a.attribute(Some(&ctx("D1", None, None))),
            Origin::of(OriginKind::Device)
        );
        assert_eq!(
            a.attribute(Some(&ctx("D2", Some("D1"), None))).kind,
            OriginKind::Device
        );
        // no context: history read back from Home Assistant
        assert_eq!(a.attribute(None), Origin::unknown());
        assert_eq!(a.attribute(Some(&ctx("", None, None))), Origin::unknown());
    }

    #[test]
    fn the_run_table_is_bounded_and_forgets_the_oldest_first() {
        let mut a = Attributor::default();
        for i in 0..RUNS_KEPT + 10 {
            a.note_run(run(RunKind::Automation, "automation.a", &format!("R{i}")));
        }
        assert_eq!(a.runs_kept(), RUNS_KEPT);
        assert_eq!(
            a.attribute(Some(&ctx("R0", None, None))).kind,
            OriginKind::Device
        );
        let newest = format!("R{}", RUNS_KEPT + 9);
        assert_eq!(
            a.attribute(Some(&ctx(&newest, None, None))).kind,
            OriginKind::Automation
        );
    }
}
