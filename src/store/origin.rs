//! Who caused a state change: the `origin` HomeIQ stores beside each change (a field, never a tag:
//! it must not change a series' identity) and serves in the history API and the live stream.
//!
//! Home Assistant's context alone does not say it (a time-triggered automation's changes carry
//! neither a user nor a parent); `ingest` attributes each change the way HA's logbook does, by
//! matching its context against the `automation_triggered` and `script_started` events and the
//! user list. History read from Home Assistant (backfill, import) has no context: `unknown`.

use serde::{Deserialize, Serialize};

/// The kind of actor behind a change.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OriginKind {
    /// A person acted (a dashboard, the app, a voice assistant): the context has a user who is
    /// not system-generated.
    User,
    /// An automation's run (its `automation_triggered` context, or a change it caused).
    Automation,
    /// A script's run not started by an automation.
    Script,
    /// A system-generated user: the Supervisor, add-ons acting through it (Node-RED,
    /// AppDaemon, HomeIQ itself).
    System,
    /// The device or its integration reported it (no user, no parent, no run matched), seen live.
    Device,
    /// Not known: history read back from Home Assistant carries no context.
    Unknown,
    /// HomeIQ's heartbeat re-wrote the current value (no change happened): rollups never count
    /// it as a sample.
    Heartbeat,
}

impl OriginKind {
    /// Every kind, in declaration order.
    pub const ALL: [OriginKind; 7] = [
        OriginKind::User,
        OriginKind::Automation,
        OriginKind::Script,
        OriginKind::System,
        OriginKind::Device,
        OriginKind::Unknown,
        OriginKind::Heartbeat,
    ];

    /// The stored (and serialised) name.
    pub fn as_str(self) -> &'static str {
        match self {
            OriginKind::User => "user",
            OriginKind::Automation => "automation",
            OriginKind::Script => "script",
            OriginKind::System => "system",
            OriginKind::Device => "device",
            OriginKind::Unknown => "unknown",
            OriginKind::Heartbeat => "heartbeat",
        }
    }

    /// The kind stored as `s`; anything else (an older or foreign point) is `Unknown`.
    pub fn parse(s: &str) -> OriginKind {
        OriginKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or(OriginKind::Unknown)
    }

    /// Whether a change of this origin was made by a machine acting on a rule (an automation,
    /// or a system user such as an add-on): such changes are never learned as habits.
    pub fn is_automated(self) -> bool {
        matches!(self, OriginKind::Automation | OriginKind::System)
    }
}

/// Who caused a change: the kind and, where known, the automation's or script's entity id
/// (`automation.wake_up`) or the user's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Origin {
    /// The kind of actor.
    pub kind: OriginKind,
    /// The automation or script entity id, or the user id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Origin {
    /// An origin without an id.
    pub fn of(kind: OriginKind) -> Self {
        Origin { kind, id: None }
    }

    /// `Unknown`, for history without a context.
    pub fn unknown() -> Self {
        Origin::of(OriginKind::Unknown)
    }

    /// The origin stored as `kind` (the [`OriginKind`] name) and `id`.
    pub(crate) fn stored(kind: &str, id: Option<String>) -> Self {
        Origin {
            kind: OriginKind::parse(kind),
            id: id.filter(|i| !i.is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_foreign_ones_are_unknown() {
        for k in OriginKind::ALL {
            assert_eq!(OriginKind::parse(k.as_str()), k);
            assert_eq!(
                serde_json::to_value(k).ok(),
                Some(serde_json::json!(k.as_str()))
            );
        }
        assert_eq!(OriginKind::parse("robot"), OriginKind::Unknown);
        assert!(OriginKind::Automation.is_automated());
        assert!(OriginKind::System.is_automated());
        assert!(!OriginKind::User.is_automated());
        assert!(!OriginKind::Device.is_automated());
    }
}
