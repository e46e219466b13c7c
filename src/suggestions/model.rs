//! What a suggestion is: its status and the lifecycle between them (pure), its source, kind and
//! wording, and the view the API serves.

use chrono::{DateTime, Utc};
use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Where a suggestion is in its life.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// Offered, not acted on.
    #[sea_orm(string_value = "new")]
    New,
    /// Its automation is in Home Assistant as HomeIQ wrote it.
    #[sea_orm(string_value = "deployed")]
    Deployed,
    /// Deployed, then taken back (deleted, or disabled where HA cannot delete).
    #[sea_orm(string_value = "undone")]
    Undone,
    /// Declined: never offered again for the same pattern.
    #[sea_orm(string_value = "dismissed")]
    Dismissed,
    /// Deployed, and the person has since edited the automation in Home Assistant.
    #[sea_orm(string_value = "modified_in_ha")]
    ModifiedInHa,
    /// Deployed, and the automation is no longer in Home Assistant.
    #[sea_orm(string_value = "removed_in_ha")]
    RemovedInHa,
}

impl Status {
    /// Whether HomeIQ believes its automation is in Home Assistant.
    pub(crate) fn in_ha(self) -> bool {
        matches!(self, Status::Deployed | Status::ModifiedInHa)
    }
}

/// Where a suggestion comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    /// A habit learned from the home's history.
    Pattern,
    /// Devices of one area that usually work together (from the registry), not linked yet.
    Synergy,
}

impl Source {
    /// The stored name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Pattern => "pattern",
            Source::Synergy => "synergy",
        }
    }
}

/// What a suggestion proposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SuggestionKind {
    /// At a time of day (a time-of-day pattern).
    TimeOfDay,
    /// When one thing happens, do another (a co-occurrence pattern).
    CoOccurrence,
    /// Motion in an area turns its lights on (and off when it clears).
    MotionLight,
    /// A door opening turns the area's lights on.
    DoorLight,
    /// Presence in an area turns its climate on (and off when it is empty).
    PresenceClimate,
}

/// Who wrote the title and explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Wording {
    /// HomeIQ's template, from the pattern's numbers.
    Template,
    /// A language model rewrote the template.
    Llm,
}

/// Who made a change.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub(crate) enum Actor {
    /// HomeIQ (an analysis built or re-offered it).
    #[sea_orm(string_value = "homeiq")]
    Homeiq,
    /// The person, through the API or panel.
    #[sea_orm(string_value = "person")]
    Person,
    /// Seen in Home Assistant (edited or deleted there).
    #[sea_orm(string_value = "home_assistant")]
    HomeAssistant,
}

/// What a version records.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub(crate) enum Event {
    /// First offered.
    #[sea_orm(string_value = "created")]
    Created,
    /// A later analysis changed its proposal (a drifted time, new evidence).
    #[sea_orm(string_value = "updated")]
    Updated,
    /// Written to Home Assistant.
    #[sea_orm(string_value = "deployed")]
    Deployed,
    /// Declined.
    #[sea_orm(string_value = "dismissed")]
    Dismissed,
    /// Deleted from Home Assistant.
    #[sea_orm(string_value = "undone")]
    Undone,
    /// Turned off in Home Assistant (it could not be deleted).
    #[sea_orm(string_value = "disabled")]
    Disabled,
    /// Edited in Home Assistant (the automation recorded is HA's).
    #[sea_orm(string_value = "modified_in_ha")]
    ModifiedInHa,
    /// Deleted in Home Assistant.
    #[sea_orm(string_value = "removed_in_ha")]
    RemovedInHa,
    /// A recorded version's automation was restored.
    #[sea_orm(string_value = "restored")]
    Restored,
    /// An undone suggestion whose pattern grew clearly stronger, offered again.
    #[sea_orm(string_value = "reoffered")]
    Reoffered,
}

/// A change asked of a suggestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Write the automation to Home Assistant.
    Deploy,
    /// Decline it.
    Dismiss,
    /// Take the deployed automation back.
    Undo,
    /// HomeIQ saw the automation edited in Home Assistant.
    SeenModified,
    /// HomeIQ saw the automation gone from Home Assistant.
    SeenRemoved,
    /// The pattern of an undone suggestion grew clearly stronger.
    Reoffer,
    /// A recorded version replaces the automation (redeployed when it is in Home Assistant).
    Restore,
}

/// A change the current status does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a suggestion that is {from:?} cannot be {what}")]
pub(crate) struct NotAllowed {
    /// The current status.
    pub from: Status,
    /// What was asked, in words.
    pub what: &'static str,
}

/// The status after `t` from `from`; `Ok(None)`: nothing changes (seen again).
pub(crate) fn next(from: Status, t: Transition) -> Result<Option<Status>, NotAllowed> {
    use Status::*;
    use Transition as T;
    let refuse = |what| Err(NotAllowed { from, what });
    match (t, from) {
        (T::Deploy, New | Undone | RemovedInHa | Dismissed) => Ok(Some(Deployed)),
        (T::Deploy, Deployed | ModifiedInHa) => {
            refuse("deployed again (undo it, or restore a version)")
        }
        (T::Dismiss, New | Undone | RemovedInHa) => Ok(Some(Dismissed)),
        (T::Dismiss, Dismissed) => Ok(None),
        (T::Dismiss, Deployed | ModifiedInHa) => refuse("dismissed while deployed (undo it first)"),
        (T::Undo, Deployed | ModifiedInHa | RemovedInHa) => Ok(Some(Undone)),
        (T::Undo, New | Undone | Dismissed) => refuse("undone: it is not deployed"),
        (T::SeenModified, Deployed) => Ok(Some(ModifiedInHa)),
        (T::SeenModified, _) => Ok(None),
        (T::SeenRemoved, Deployed | ModifiedInHa) => Ok(Some(RemovedInHa)),
        (T::SeenRemoved, _) => Ok(None),
        (T::Reoffer, Undone) => Ok(Some(New)),
        (T::Reoffer, _) => Ok(None),
        (T::Restore, Deployed | ModifiedInHa) => Ok(Some(Deployed)),
        (T::Restore, s) => Ok(Some(s)),
    }
}

/// The evidence behind a suggestion, in numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct Evidence {
    /// Times it happened (days for a time of day; follow-ups for a sequence; 0 for a synergy).
    pub occurrences: u32,
    /// Out of how many (eligible days; times the first thing happened).
    pub out_of: Option<u32>,
    /// The pattern's confidence (0..1); none for a synergy.
    pub confidence: Option<f64>,
    /// The first occurrence.
    pub first_seen: Option<DateTime<Utc>>,
    /// The last occurrence.
    pub last_seen: Option<DateTime<Utc>>,
}

/// Why a suggestion only notifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Sensitive {
    /// Unlocking a lock.
    Unlock,
    /// Opening a garage, door or gate cover.
    OpenCover,
    /// Disarming an alarm.
    Disarm,
}

/// A suggestion's proposal: what a build computes (stored as JSON in `suggestions.body`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Proposal {
    /// What it proposes.
    pub kind: SuggestionKind,
    /// Where it comes from.
    pub source: Source,
    /// The pattern it was built from.
    pub pattern_id: Option<String>,
    /// The area of its entities (the first that has one).
    pub area_id: Option<String>,
    /// Every entity it names.
    pub entities: Vec<String>,
    /// A short title.
    pub title: String,
    /// The plain explanation with the evidence.
    pub explanation: String,
    /// Who wrote title and explanation.
    pub wording: Wording,
    /// The evidence.
    pub evidence: Evidence,
    /// Ranking score (learned suggestions rank above every synergy).
    pub score: f64,
    /// Set when the action is security-sensitive: the automation only notifies.
    pub notify_only: Option<Sensitive>,
    /// The automation (Home Assistant's config form, with its `id`).
    pub automation: Value,
    /// The pattern's strength when it was undone (re-offered only when clearly stronger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength_at_undo: Option<f64>,
    /// The template's title and explanation, kept while `wording` is `llm`: a later build that
    /// words the suggestion the same keeps the language model's wording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<(String, String)>,
}

impl Proposal {
    /// Keeps `old`'s language-model wording in this fresh proposal when the template words it
    /// the same as when the model rewrote it (the evidence has not changed).
    pub(crate) fn keep_llm_wording(&mut self, old: &Proposal) {
        let same = old.template.as_ref().is_some_and(|(title, explanation)| {
            *title == self.title && *explanation == self.explanation
        });
        if old.wording == Wording::Llm && same {
            self.template = old.template.clone();
            self.title = old.title.clone();
            self.explanation = old.explanation.clone();
            self.wording = Wording::Llm;
        }
    }

    /// Takes a language model's wording, keeping the template's.
    pub(crate) fn reworded(&mut self, title: String, explanation: String) {
        if self.wording == Wording::Template {
            self.template = Some((
                std::mem::take(&mut self.title),
                std::mem::take(&mut self.explanation),
            ));
        }
        self.title = title;
        self.explanation = explanation;
        self.wording = Wording::Llm;
    }

    /// How strong the evidence is, for "clearly stronger".
    pub(crate) fn strength(&self) -> f64 {
        self.evidence.confidence.unwrap_or(self.score)
    }
}

/// The automation as Home Assistant runs it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct InHa {
    /// The automation's entity (`automation.…`), when HomeIQ has seen it.
    pub entity_id: Option<String>,
    /// Its state: `on` (enabled) or `off`.
    pub state: Option<String>,
}

/// A suggestion as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct SuggestionView {
    /// Stable id (from the pattern, or the synergy's devices): a drifting habit keeps it.
    pub id: String,
    /// Where it is in its life.
    pub status: Status,
    /// `pattern` (learned) or `synergy` (from the registry).
    pub source: Source,
    /// What it proposes.
    pub kind: SuggestionKind,
    /// The pattern it was built from (`GET /api/v1/patterns`).
    pub pattern_id: Option<String>,
    /// The area of its entities.
    pub area_id: Option<String>,
    /// Every entity it names.
    pub entities: Vec<String>,
    /// A short title.
    pub title: String,
    /// The explanation with the evidence.
    pub explanation: String,
    /// `template` (HomeIQ's) or `llm`.
    pub wording: Wording,
    /// The evidence.
    pub evidence: Evidence,
    /// Ranking score, 0..1: learned suggestions from 0.35, synergies below 0.3.
    pub score: f64,
    /// Set when the habit is security-sensitive: the automation only notifies and never acts.
    pub notify_only: Option<Sensitive>,
    /// The automation's id in Home Assistant (`homeiq_<id>`).
    pub automation_id: String,
    /// The automation proposed (or, once deployed, as deployed), in Home Assistant's form.
    #[schema(value_type = Object)]
    pub automation: Value,
    /// The same automation as YAML, as Home Assistant's editor shows it.
    pub automation_yaml: String,
    /// The automation in Home Assistant (deployed ones).
    pub ha: Option<InHa>,
    /// Number of the latest version.
    pub version: i64,
    /// When it was first offered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// One recorded version of a suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct VersionView {
    /// 1, 2, … per suggestion.
    pub version: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `homeiq`, `person` or `home_assistant`.
    pub actor: Actor,
    /// What happened.
    pub event: Event,
    /// The status after it.
    pub status: Status,
    /// The automation at that moment (for `modified_in_ha`: as Home Assistant holds it).
    #[schema(value_type = Object)]
    pub automation: Value,
    /// Details (HA's answer, why it was disabled rather than deleted).
    pub note: Option<String>,
}
