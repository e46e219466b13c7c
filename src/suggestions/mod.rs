//! Suggestions: what the analysis learned, turned into Home Assistant automations that are
//! validated, deployed, watched and undone.
//!
//! - **Built** after every analysis run that stored patterns, and once Home Assistant is
//!   connected after start: one suggestion per pattern HomeIQ can act on ([`generate`]), plus
//!   synergies from the registry (a motion, presence or door sensor and the lights or climate of
//!   its area). Patterns and synergies an existing automation already covers are left out: every
//!   automation's config is read with the WebSocket command `automation/config`, YAML ones
//!   included ([`coverage`]). Ids are stable (`p<pattern id>`, `s<hash of the devices>`), so a
//!   habit that drifts keeps its suggestion and a dismissed one stays dismissed.
//! - **Lifecycle** ([`model::next`]): `new` → `deployed` → `undone`, or `dismissed`;
//!   `deployed` → `modified_in_ha` / `removed_in_ha` when the automation is edited or deleted
//!   in Home Assistant (checked every [`CHECK_INTERVAL`], after every run and on
//!   `GET /api/v1/suggestions/{id}`). An undone suggestion is offered again only when its
//!   pattern's confidence grew by [`REOFFER_MARGIN`]. Every change is a version (who, when, the
//!   automation).
//! - **Deploy**: every entity and device the automation names must be in the registry mirror
//!   (HA accepts unknown entity ids), then HA's `validate_config`, then
//!   `POST /api/config/automation/config/homeiq_<id>`, then HomeIQ waits (at most
//!   [`DEPLOY_WAIT`]) until the automation's entity exists. **Undo** deletes it; where the
//!   Supervisor's proxy has no `DELETE` it turns the automation off and says so. An automation
//!   edited in HA since is only undone with `force`.

pub(crate) mod api;
mod coverage;
mod generate;
mod ha_api;
pub(crate) mod model;
mod store;
mod yaml;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::analysis::store::Trigger;
use crate::analysis::{Analysis, Clock};
use crate::config::{HaEndpoint, SuggestionSettings};
use crate::ha::{ConnectionPhase, HaHandle};
use crate::registry::catalog::PageMemo;
use crate::registry::{Catalog, CatalogHandle};
use crate::store::states::CurrentStates;
use crate::task::OwnedTask;
use coverage::Start;
pub(crate) use generate::{EntityInfo, Lookup};
use generate::{SensorRole, Synergy, automation_id};
pub(crate) use ha_api::HaApiError;
use ha_api::{Deleted, HaConfig};
use model::{
    Actor, Event, InHa, NotAllowed, Status, SuggestionKind, SuggestionView, Transition, VersionView,
};
use store::{Change, Record, SuggestionStore};

/// How often deployed automations are compared with Home Assistant's.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(300);

/// How long a deploy waits for the automation's entity.
pub(crate) const DEPLOY_WAIT: Duration = Duration::from_secs(15);

/// How long the first build waits for the states snapshot after connecting.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

/// How much an undone suggestion's confidence must grow before it is offered again.
pub(crate) const REOFFER_MARGIN: f64 = 0.1;

/// Lights (or climate devices) one synergy drives at most.
const SYNERGY_TARGETS: usize = 10;

/// Why a suggestion request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SuggestionError {
    /// No suggestion with that id.
    #[error("no suggestion `{0}`")]
    NotFound(String),
    /// The status does not allow it.
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    /// The automation was edited in Home Assistant since HomeIQ deployed it.
    #[error(
        "the automation was edited in Home Assistant since HomeIQ deployed it; undo with force=true to delete it anyway"
    )]
    Edited,
    /// The automation names an entity or device the registry does not have.
    #[error(
        "{key} `{id}` is not in Home Assistant's registry ({path}); nothing was sent to Home Assistant"
    )]
    Unknown {
        /// `entity_id` or `device_id`.
        key: &'static str,
        /// The id.
        id: String,
        /// Where in the automation.
        path: String,
    },
    /// The automation given is not one.
    #[error("{0}")]
    Invalid(String),
    /// No recorded version with that number.
    #[error("suggestion `{0}` has no version {1}")]
    NoVersion(String, i64),
    /// Home Assistant refused or failed.
    #[error(transparent)]
    Ha(#[from] HaApiError),
    /// The metadata database failed.
    #[error("the metadata database failed: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// Every suggestion, best first, with the list pages rendered from exactly these: a change
/// replaces the whole snapshot, so a kept page is never out of date.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    entries: Vec<Entry>,
    /// Rendered `GET /api/v1/suggestions` pages (see `api::list`).
    pub pages: PageMemo,
}

impl Listing {
    fn new(entries: Vec<Entry>) -> Self {
        Listing {
            entries,
            pages: PageMemo::compact(),
        }
    }
}

impl std::ops::Deref for Listing {
    type Target = [Entry];
    fn deref(&self) -> &[Entry] {
        &self.entries
    }
}

/// A suggestion with its automation as YAML.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The record.
    pub record: Record,
    /// `record.automation()` as YAML.
    pub yaml: String,
}

impl Entry {
    fn new(record: Record) -> Self {
        Entry {
            yaml: yaml::to_yaml(record.automation()),
            record,
        }
    }
}

/// What a deploy answered.
#[derive(Debug, Clone)]
pub(crate) struct Deployed {
    /// The suggestion after it.
    pub view: SuggestionView,
    /// Request received → automation entity present, ms (`None`: not seen within the wait).
    pub round_trip_ms: Option<u64>,
}

/// What an undo did.
#[derive(Debug, Clone)]
pub(crate) struct Undone {
    /// The suggestion after it.
    pub view: SuggestionView,
    /// `deleted`, `disabled` (no `DELETE` through the proxy) or `already_gone`.
    pub how: &'static str,
}

/// What [`Suggestions::open`] needs.
pub(crate) struct SuggestionParts {
    pub settings: SuggestionSettings,
    pub db: sea_orm::DatabaseConnection,
    pub ha: HaHandle,
    pub endpoint: HaEndpoint,
    pub catalog: CatalogHandle,
    pub states: CurrentStates,
    pub analysis: Analysis,
    pub clock: Arc<dyn Clock>,
    /// Optional plain-language wording (a disabled client when `llm.enabled` is off).
    pub llm: crate::llm::Llm,
}

/// Suggestions a language model rewords per build at most.
const REWORD_PER_BUILD: usize = 20;

struct Inner {
    settings: SuggestionSettings,
    store: SuggestionStore,
    ha: HaConfig,
    connection: HaHandle,
    catalog: CatalogHandle,
    states: CurrentStates,
    analysis: Analysis,
    clock: Arc<dyn Clock>,
    llm: crate::llm::Llm,
    /// Every suggestion, best first.
    entries: ArcSwap<Listing>,
    /// Held by every change (builds, deploys, undos, checks).
    write: tokio::sync::Mutex<()>,
    /// The configs of Home Assistant's automations last read.
    automations: Mutex<Option<Vec<Value>>>,
}

/// Suggestions; cheap to clone.
#[derive(Clone)]
pub(crate) struct Suggestions(Arc<Inner>);

impl std::fmt::Debug for Suggestions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suggestions").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Entities as the catalog and the current states know them.
struct CatalogLookup<'a> {
    catalog: &'a Catalog,
    states: &'a CurrentStates,
}

impl Lookup for CatalogLookup<'_> {
    fn info(&self, entity_id: &str) -> EntityInfo {
        let state = self.states.get(entity_id);
        let Some(e) = self.catalog.entity(entity_id) else {
            return EntityInfo {
                name: state
                    .as_ref()
                    .and_then(|s| {
                        s.attributes
                            .get("friendly_name")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| entity_id.to_owned()),
                device_class: state
                    .as_ref()
                    .and_then(|s| s.device_class().map(str::to_owned)),
                area_id: None,
            };
        };
        let device = e
            .device_id
            .as_deref()
            .and_then(|d| self.catalog.device(d))
            .map(|d| d.display_name().to_owned());
        EntityInfo {
            name: crate::registry::catalog::entity_display_name(e, device.as_deref(), None)
                .into_owned(),
            device_class: e.device_class.clone().or_else(|| {
                state
                    .as_ref()
                    .and_then(|s| s.device_class().map(str::to_owned))
            }),
            area_id: e.effective_area_id.clone(),
        }
    }
}

/// Synergy candidates of the catalog: per area, each motion/presence sensor with the area's
/// lights (and, for occupancy/presence, its climate devices), each door contact with its lights.
fn synergies(catalog: &Catalog) -> Vec<Synergy> {
    let mut out = Vec::new();
    for area in &catalog.areas {
        let members: Vec<_> = catalog
            .entities
            .iter()
            .filter(|e| {
                e.effective_area_id.as_deref() == Some(area.area_id.as_str())
                    && e.disabled_by.is_none()
            })
            .collect();
        let of_domain = |d: &str| -> Vec<String> {
            let mut v: Vec<String> = members
                .iter()
                .filter(|e| e.domain == d)
                .map(|e| e.entity_id.clone())
                .collect();
            v.sort();
            v.truncate(SYNERGY_TARGETS);
            v
        };
        let (lights, climate) = (of_domain("light"), of_domain("climate"));
        for e in &members {
            let class = e.device_class.as_deref();
            let mut add = |kind, targets: &Vec<String>| {
                if !targets.is_empty() {
                    out.push(Synergy {
                        kind,
                        area_id: area.area_id.clone(),
                        area_name: area.name.clone(),
                        sensor: e.entity_id.clone(),
                        targets: targets.clone(),
                    });
                }
            };
            match generate::sensor_role(&e.entity_id, class) {
                Some(SensorRole::Presence) => {
                    add(SuggestionKind::MotionLight, &lights);
                    if matches!(class, Some("occupancy" | "presence")) {
                        add(SuggestionKind::PresenceClimate, &climate);
                    }
                }
                Some(SensorRole::Door) => add(SuggestionKind::DoorLight, &lights),
                None => {}
            }
        }
    }
    out
}

/// Builds every proposal from `patterns`, the catalog's synergies and HA's `automations`,
/// leaving out what an automation already covers. Pure.
pub(crate) fn proposals(
    patterns: &[crate::patterns::Pattern],
    synergy_candidates: &[Synergy],
    automations: &[Value],
    lookup: &dyn Lookup,
) -> Vec<(String, model::Proposal)> {
    let others = |own: &str| {
        let own = own.to_owned();
        automations
            .iter()
            .filter(move |a| a.get("id").and_then(Value::as_str) != Some(own.as_str()))
    };
    let mut out: Vec<(String, model::Proposal)> = Vec::new();
    // what each learned proposal does: its target entity and state
    let mut actions: Vec<(String, String)> = Vec::new();
    for p in patterns {
        let (Some(first), Some(target)) = (p.entities.first(), p.entities.last()) else {
            continue;
        };
        let Some((service, _)) = generate::service_for(&target.entity_id, &target.state) else {
            continue;
        };
        let Some(proposal) = generate::from_pattern(p, lookup) else {
            continue;
        };
        let id = generate::pattern_suggestion_id(&p.id);
        let start = match p.kind {
            crate::patterns::PatternKind::TimeOfDay => Start::Time,
            crate::patterns::PatternKind::CoOccurrence => Start::Entity(first.entity_id.clone()),
        };
        if others(&automation_id(&id))
            .any(|a| coverage::covers(a, &start, &target.entity_id, &service))
        {
            continue;
        }
        actions.push((target.entity_id.clone(), target.state.clone()));
        out.push((id, proposal));
    }
    // one action, one suggestion near the top: a light a person turns on at 07:50 that also
    // follows their arrival is one automation to deploy, not three; the best-ranked keeps its
    // score and the others sink below every first proposal of an action
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|&a, &b| {
        out[b]
            .1
            .score
            .total_cmp(&out[a].1.score)
            .then_with(|| out[a].0.cmp(&out[b].0))
    });
    let mut proposed = std::collections::HashSet::new();
    for i in order {
        if !proposed.insert(&actions[i]) {
            out[i].1.score = generate::repeated_action(out[i].1.score);
        }
    }
    for s in synergy_candidates {
        let id = generate::synergy_id(s);
        if others(&automation_id(&id)).any(|a| coverage::links(a, &s.sensor, &s.targets)) {
            continue;
        }
        let learned = out.iter().any(|(_, p)| {
            p.entities.first() == Some(&s.sensor)
                && p.entities.iter().skip(1).any(|e| s.targets.contains(e))
        });
        if !learned {
            out.push((id, generate::from_synergy(s, lookup)));
        }
    }
    out
}

fn sort_entries(entries: &mut [Entry]) {
    entries.sort_by(|a, b| {
        b.record
            .proposal
            .score
            .total_cmp(&a.record.proposal.score)
            .then_with(|| a.record.id.cmp(&b.record.id))
    });
}

impl Suggestions {
    /// Loads the stored suggestions.
    pub(crate) async fn open(parts: SuggestionParts) -> Result<Self, sea_orm::DbErr> {
        let store = SuggestionStore::new(parts.db);
        let mut entries: Vec<Entry> = store.load().await?.into_iter().map(Entry::new).collect();
        sort_entries(&mut entries);
        Ok(Suggestions(Arc::new(Inner {
            settings: parts.settings,
            store,
            ha: HaConfig::new(parts.ha.clone(), &parts.endpoint),
            connection: parts.ha,
            catalog: parts.catalog,
            states: parts.states,
            analysis: parts.analysis,
            clock: parts.clock,
            llm: parts.llm,
            entries: ArcSwap::from_pointee(Listing::new(entries)),
            write: tokio::sync::Mutex::new(()),
            automations: Mutex::new(None),
        })))
    }

    /// Every suggestion, best first.
    pub(crate) fn entries(&self) -> Arc<Listing> {
        self.0.entries.load_full()
    }

    fn find(&self, id: &str) -> Result<Record, SuggestionError> {
        self.entries()
            .iter()
            .find(|e| e.record.id == id)
            .map(|e| e.record.clone())
            .ok_or_else(|| SuggestionError::NotFound(id.to_owned()))
    }

    fn put(&self, record: Record) {
        let mut entries: Vec<Entry> = self.entries().to_vec();
        entries.retain(|e| e.record.id != record.id);
        entries.push(Entry::new(record));
        sort_entries(&mut entries);
        self.0.entries.store(Arc::new(Listing::new(entries)));
    }

    /// Automation config id → its entity and state, from the current states.
    pub(crate) fn automation_entities(&self) -> HashMap<String, InHa> {
        // a scan of the states under their lock: the list asks on every request
        self.0
            .states
            .select(|s| {
                if !s.entity_id.starts_with("automation.") {
                    return None;
                }
                let id = s.attributes.get("id").and_then(Value::as_str)?.to_owned();
                Some((
                    id,
                    InHa {
                        entity_id: Some(s.entity_id.clone()),
                        state: Some(s.state.clone()),
                    },
                ))
            })
            .into_iter()
            .collect()
    }

    /// The API view of `entry`.
    pub(crate) fn view(entry: &Entry, in_ha: &HashMap<String, InHa>) -> SuggestionView {
        let r = &entry.record;
        let p = &r.proposal;
        let automation_id = automation_id(&r.id);
        SuggestionView {
            ha: (r.status.in_ha() || in_ha.contains_key(&automation_id)).then(|| {
                in_ha.get(&automation_id).cloned().unwrap_or(InHa {
                    entity_id: None,
                    state: None,
                })
            }),
            id: r.id.clone(),
            status: r.status,
            source: p.source,
            kind: p.kind,
            pattern_id: p.pattern_id.clone(),
            area_id: p.area_id.clone(),
            entities: p.entities.clone(),
            title: p.title.clone(),
            explanation: p.explanation.clone(),
            wording: p.wording,
            evidence: p.evidence.clone(),
            score: p.score,
            notify_only: p.notify_only,
            automation_id,
            automation: r.automation().clone(),
            automation_yaml: entry.yaml.clone(),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }

    fn view_of(&self, id: &str) -> Result<SuggestionView, SuggestionError> {
        let entries = self.entries();
        let entry = entries
            .iter()
            .find(|e| e.record.id == id)
            .ok_or_else(|| SuggestionError::NotFound(id.to_owned()))?;
        Ok(Self::view(entry, &self.automation_entities()))
    }

    /// Saves `record` with `change` as its next version, and shows it.
    async fn commit(
        &self,
        mut record: Record,
        change: Option<Change>,
    ) -> Result<(), SuggestionError> {
        record.updated_at = self.0.clock.now();
        if change.is_some() {
            record.version += 1;
        }
        self.0.store.save(&record, change.as_ref()).await?;
        self.put(record);
        Ok(())
    }

    /// The configs of every automation in Home Assistant (`None`: not connected).
    async fn read_automations(&self) -> Option<Vec<Value>> {
        if self.0.connection.status().state.phase() != ConnectionPhase::Connected {
            return None;
        }
        let mut ids: Vec<String> = self
            .0
            .states
            .entity_ids()
            .into_iter()
            .filter(|e| e.starts_with("automation."))
            .collect();
        ids.sort();
        let mut configs = Vec::with_capacity(ids.len());
        for entity_id in ids {
            match self.0.ha.automation_config(&entity_id).await {
                Ok(config) => configs.push(config),
                Err(HaApiError::Unavailable(e)) if e.contains("not_found") => {}
                Err(HaApiError::Unavailable(e)) if e.contains("unknown_command") => {
                    tracing::warn!(error = %e, "Home Assistant does not serve automation/config; suggestions cannot be checked against its automations");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(%entity_id, error = %e, "an automation's config could not be read");
                    if matches!(e, HaApiError::Unavailable(ref m) if m.contains("not connected")) {
                        return None;
                    }
                }
            }
        }
        Some(configs)
    }

    /// Rebuilds the suggestions from the stored patterns and the registry; `trigger` is the run
    /// it follows (a scheduled one may notify). Returns how many are new.
    pub(crate) async fn rebuild(&self, trigger: Option<Trigger>) -> Result<usize, SuggestionError> {
        let started = Instant::now();
        let automations = match self.read_automations().await {
            Some(a) => {
                *lock(&self.0.automations) = Some(a.clone());
                a
            }
            None => {
                tracing::warn!(
                    "Home Assistant's automations could not be read; suggestions are checked against the last ones read"
                );
                lock(&self.0.automations).clone().unwrap_or_default()
            }
        };
        let catalog = self.0.catalog.current();
        let patterns: Vec<crate::patterns::Pattern> = self
            .0
            .analysis
            .patterns()
            .iter()
            .map(|s| s.pattern.clone())
            .collect();
        let lookup = CatalogLookup {
            catalog: &catalog,
            states: &self.0.states,
        };
        let built = proposals(&patterns, &synergies(&catalog), &automations, &lookup);
        let _write = self.0.write.lock().await;
        let now = self.0.clock.now();
        let current: HashMap<String, Record> = self
            .entries()
            .iter()
            .map(|e| (e.record.id.clone(), e.record.clone()))
            .collect();
        let merged = merge(&current, built, now);
        let new = merged.new;
        for (record, change) in merged.writes {
            self.commit(record, change).await?;
        }
        let stale = merged.stale;
        if !stale.is_empty() {
            self.0.store.delete(&stale).await?;
            let mut entries: Vec<Entry> = self.entries().to_vec();
            entries.retain(|e| !stale.contains(&e.record.id));
            self.0.entries.store(Arc::new(Listing::new(entries)));
        }
        drop(_write);
        tracing::info!(
            new,
            withdrawn = stale.len(),
            total = self.entries().len(),
            took_ms = started.elapsed().as_millis() as u64,
            "suggestions built"
        );
        self.reword(&patterns, &lookup).await;
        if new > 0 && trigger == Some(Trigger::Scheduled) && self.0.settings.notify {
            self.notify(new).await;
        }
        Ok(new)
    }

    /// Lets the language model (when `llm.enabled`) reword the best new suggestions that still
    /// carry the template's wording, at most [`REWORD_PER_BUILD`] per build; its budget and
    /// breaker bound it further. A failure leaves the template's wording: a suggestion is
    /// complete without it.
    async fn reword(
        &self,
        patterns: &[crate::patterns::Pattern],
        lookup: &(dyn generate::Lookup + Sync),
    ) {
        if !self.0.llm.enabled() {
            return;
        }
        let todo: Vec<Record> = self
            .entries()
            .iter()
            .filter(|e| e.record.status == Status::New)
            .filter(|e| e.record.proposal.wording == model::Wording::Template)
            .take(REWORD_PER_BUILD)
            .map(|e| e.record.clone())
            .collect();
        let (mut reworded, mut failed) = (0usize, 0usize);
        for record in todo {
            let p = &record.proposal;
            let pattern = p
                .pattern_id
                .as_deref()
                .and_then(|id| patterns.iter().find(|pattern| pattern.id == id));
            let request = generate::wording_request(p, pattern, lookup);
            let worded = self.0.llm.reword_or_template(&request).await;
            match worded.error {
                None => {}
                Some(
                    crate::llm::LlmError::Disabled
                    | crate::llm::LlmError::BudgetExhausted { .. }
                    | crate::llm::LlmError::CircuitOpen { .. }
                    | crate::llm::LlmError::RateLimited { .. },
                ) => break,
                Some(e) => {
                    failed += 1;
                    tracing::debug!(id = %record.id, error = %e, "suggestion kept its own wording");
                    continue;
                }
            }
            let wording = worded.wording;
            let _write = self.0.write.lock().await;
            // unchanged meanwhile (no build, deploy or dismiss came between)
            let Some(mut current) = self
                .entries()
                .iter()
                .find(|e| e.record.id == record.id && e.record == record)
                .map(|e| e.record.clone())
            else {
                continue;
            };
            current
                .proposal
                .reworded(wording.title, wording.explanation);
            if let Err(e) = self.commit(current, None).await {
                tracing::warn!(error = %e, "cannot store a suggestion's wording");
                break;
            }
            reworded += 1;
        }
        if reworded + failed > 0 {
            tracing::info!(
                reworded,
                failed,
                "suggestions reworded by the language model"
            );
        }
    }

    /// The persistent notification of `new` suggestions.
    async fn notify(&self, new: usize) {
        let (title, mut message) = notification_text(new);
        if let Some(path) = self.0.ha.panel_path().await {
            message.push_str(&format!(" [Open HomeIQ]({path})"));
        }
        let data =
            json!({"title": title, "message": message, "notification_id": "homeiq_suggestions"});
        if let Err(e) = self
            .0
            .ha
            .call_service("persistent_notification", "create", data)
            .await
        {
            tracing::warn!(error = %e, "the notification of new suggestions was not shown");
        }
    }

    /// Compares every deployed automation with Home Assistant's and records edits and deletions.
    pub(crate) async fn check_deployed(&self) {
        let ids: Vec<String> = self
            .entries()
            .iter()
            .filter(|e| e.record.status.in_ha())
            .map(|e| e.record.id.clone())
            .collect();
        for id in ids {
            if let Err(e) = self.check_one(&id).await {
                tracing::debug!(%id, error = %e, "a deployed suggestion could not be checked");
            }
        }
    }

    /// Compares one deployed automation with Home Assistant's.
    async fn check_one(&self, id: &str) -> Result<(), SuggestionError> {
        let _write = self.0.write.lock().await;
        let record = self.find(id)?;
        if !record.status.in_ha() {
            return Ok(());
        }
        let in_ha = self.0.ha.get(&automation_id(id)).await?;
        let (transition, event, automation) = match in_ha {
            None => (Transition::SeenRemoved, Event::RemovedInHa, None),
            Some(config) if Some(&config) != record.deployed.as_ref() => {
                (Transition::SeenModified, Event::ModifiedInHa, Some(config))
            }
            Some(_) => return Ok(()),
        };
        if let Some(status) = model::next(record.status, transition)? {
            let mut r = record;
            r.status = status;
            let change = Change {
                actor: Actor::HomeAssistant,
                event,
                note: None,
                automation,
            };
            self.commit(r, Some(change)).await?;
        }
        Ok(())
    }

    /// One suggestion, its state in Home Assistant checked first when deployed.
    pub(crate) async fn get(&self, id: &str) -> Result<SuggestionView, SuggestionError> {
        let record = self.find(id)?;
        if record.status.in_ha()
            && let Err(e) = self.check_one(id).await
        {
            tracing::debug!(%id, error = %e, "the deployed automation could not be checked");
        }
        self.view_of(id)
    }

    /// HomeIQ's own check: every entity and device `automation` names is in the registry.
    fn check_references(&self, automation: &Value) -> Result<(), SuggestionError> {
        let catalog = self.0.catalog.current();
        for r in coverage::references(automation) {
            let known = match r.key {
                "device_id" => catalog.device(&r.id).is_some(),
                _ => catalog.entity(&r.id).is_some() || self.0.states.get(&r.id).is_some(),
            };
            if !known {
                return Err(SuggestionError::Unknown {
                    key: r.key,
                    id: r.id,
                    path: r.path,
                });
            }
        }
        Ok(())
    }

    /// Checks, validates and writes `automation` as `homeiq_<id>`, then waits for its entity.
    async fn write_to_ha(
        &self,
        id: &str,
        automation: &Value,
    ) -> Result<Option<String>, SuggestionError> {
        self.check_references(automation)?;
        self.0.ha.validate(automation).await?;
        let automation_id = automation_id(id);
        self.0.ha.post(&automation_id, automation).await?;
        let deadline = Instant::now() + DEPLOY_WAIT;
        loop {
            if let Some(entity) = self.automation_entities().remove(&automation_id) {
                return Ok(entity.entity_id);
            }
            if Instant::now() >= deadline {
                tracing::warn!(%automation_id, "Home Assistant took the automation but its entity did not appear in time");
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Deploys suggestion `id` (with `edited` instead of its automation when given).
    pub(crate) async fn deploy(
        &self,
        id: &str,
        edited: Option<Value>,
        received: Instant,
    ) -> Result<Deployed, SuggestionError> {
        let _write = self.0.write.lock().await;
        let record = self.find(id)?;
        let status = model::next(record.status, Transition::Deploy)?.unwrap_or(record.status);
        let automation = match edited {
            Some(a) => normalise(a, id, record.proposal.automation.get("description"))?,
            None => record.proposal.automation.clone(),
        };
        let entity = self.write_to_ha(id, &automation).await?;
        let round_trip_ms = entity
            .as_ref()
            .map(|_| received.elapsed().as_millis() as u64);
        let mut r = record;
        r.status = status;
        r.deployed = Some(automation);
        let note = match (&entity, round_trip_ms) {
            (Some(e), Some(ms)) => format!("{e} present {ms} ms after the request"),
            _ => format!(
                "Home Assistant took it; its entity did not appear within {} s",
                DEPLOY_WAIT.as_secs()
            ),
        };
        self.commit(
            r,
            Some(Change::new(Actor::Person, Event::Deployed).note(note)),
        )
        .await?;
        tracing::info!(%id, ?round_trip_ms, "suggestion deployed");
        Ok(Deployed {
            view: self.view_of(id)?,
            round_trip_ms,
        })
    }

    /// Dismisses suggestion `id`.
    pub(crate) async fn dismiss(&self, id: &str) -> Result<SuggestionView, SuggestionError> {
        let _write = self.0.write.lock().await;
        let record = self.find(id)?;
        if let Some(status) = model::next(record.status, Transition::Dismiss)? {
            let mut r = record;
            r.status = status;
            self.commit(r, Some(Change::new(Actor::Person, Event::Dismissed)))
                .await?;
        }
        self.view_of(id)
    }

    /// Undoes suggestion `id`: deletes its automation (or turns it off where HA cannot delete).
    /// An automation edited in HA since is only undone with `force`.
    pub(crate) async fn undo(&self, id: &str, force: bool) -> Result<Undone, SuggestionError> {
        let _write = self.0.write.lock().await;
        let record = self.find(id)?;
        let status = model::next(record.status, Transition::Undo)?.unwrap_or(record.status);
        let automation_id = automation_id(id);
        let mut how = "already_gone";
        let mut note = None;
        if record.status.in_ha() {
            let current = self.0.ha.get(&automation_id).await?;
            if let Some(current) = &current
                && Some(current) != record.deployed.as_ref()
                && !force
            {
                return Err(SuggestionError::Edited);
            }
            if current.is_some() {
                match self.0.ha.delete(&automation_id).await? {
                    Deleted::Removed => how = "deleted",
                    Deleted::Missing => {}
                    Deleted::NotSupported => {
                        let entity = self
                            .automation_entities()
                            .remove(&automation_id)
                            .and_then(|e| e.entity_id)
                            .ok_or_else(|| HaApiError::Unavailable("Home Assistant cannot delete the automation here (no DELETE through the Supervisor's proxy), and its entity is not known to turn it off".into()))?;
                        self.0
                            .ha
                            .call_service("automation", "turn_off", json!({"entity_id": entity}))
                            .await?;
                        how = "disabled";
                        note = Some(format!(
                            "the Supervisor's proxy cannot delete automations: {entity} was turned off instead; delete it in Home Assistant to remove it"
                        ));
                    }
                }
            }
        }
        let mut r = record;
        r.status = status;
        r.proposal.strength_at_undo = Some(r.proposal.strength());
        let event = if how == "disabled" {
            Event::Disabled
        } else {
            Event::Undone
        };
        let automation = r.deployed.take();
        let mut change = Change::new(Actor::Person, event);
        change.note = note.or_else(|| Some(how.replace('_', " ")));
        change.automation = automation;
        self.commit(r, Some(change)).await?;
        Ok(Undone {
            view: self.view_of(id)?,
            how,
        })
    }

    /// The versions of suggestion `id`, oldest first.
    pub(crate) async fn versions(&self, id: &str) -> Result<Vec<VersionView>, SuggestionError> {
        self.find(id)?;
        Ok(self
            .0
            .store
            .versions(id)
            .await?
            .into_iter()
            .map(|v| VersionView {
                version: v.version,
                at: chrono::DateTime::from_timestamp_millis(v.at).unwrap_or_default(),
                actor: v.actor,
                event: v.event,
                status: v.status,
                automation: serde_json::from_str(&v.automation).unwrap_or(Value::Null),
                note: v.note,
            })
            .collect())
    }

    /// Makes the automation of version `version` the suggestion's; redeployed when it is in
    /// Home Assistant.
    pub(crate) async fn restore(
        &self,
        id: &str,
        version: i64,
    ) -> Result<SuggestionView, SuggestionError> {
        let _write = self.0.write.lock().await;
        let record = self.find(id)?;
        let v = self
            .0
            .store
            .versions(id)
            .await?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| SuggestionError::NoVersion(id.to_owned(), version))?;
        let automation: Value = serde_json::from_str(&v.automation).map_err(|e| {
            SuggestionError::Invalid(format!("version {version} holds no automation: {e}"))
        })?;
        let automation = normalise(
            automation,
            id,
            record.proposal.automation.get("description"),
        )?;
        let status = model::next(record.status, Transition::Restore)?.unwrap_or(record.status);
        let mut r = record;
        if r.status.in_ha() {
            self.write_to_ha(id, &automation).await?;
            r.deployed = Some(automation.clone());
        }
        r.proposal.automation = automation;
        r.status = status;
        self.commit(
            r,
            Some(Change::new(Actor::Person, Event::Restored).note(format!("version {version}"))),
        )
        .await?;
        self.view_of(id)
    }

    /// Rebuilds after each stored run and once connected; checks deployed automations every
    /// [`CHECK_INTERVAL`]. Stops with `cancel`.
    pub(crate) fn spawn(&self, cancel: CancellationToken) -> OwnedTask {
        let me = self.clone();
        OwnedTask::spawn("suggestions", async move {
            let mut finished = me.0.analysis.subscribe_finished();
            // the first build waits for Home Assistant (its automations decide what is covered)
            let connected = async {
                while me.0.connection.status().state.phase() != ConnectionPhase::Connected {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                // the snapshot of states (the automation entities) follows the connection
                let deadline = Instant::now() + SNAPSHOT_WAIT;
                while me.0.states.is_empty() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = connected => {}
            }
            if let Err(e) = me.rebuild(None).await {
                tracing::warn!(error = %e, "suggestions could not be built");
            }
            let mut tick = tokio::time::interval(CHECK_INTERVAL);
            tick.tick().await;
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    changed = finished.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let run = *finished.borrow_and_update();
                        if let Err(e) = me.rebuild(run.map(|r| r.trigger)).await {
                            tracing::warn!(error = %e, "suggestions could not be built");
                        }
                        me.check_deployed().await;
                    }
                    _ = tick.tick() => me.check_deployed().await,
                }
            }
        })
    }
}

/// What a build changes: records to write (with the version to record), and ids to withdraw.
#[derive(Debug, Default)]
pub(crate) struct Merged {
    /// Records to save, each with its change (`None`: no new version).
    pub writes: Vec<(Record, Option<Change>)>,
    /// `new` suggestions no longer backed by a pattern (or now covered): deleted.
    pub stale: Vec<String>,
    /// Suggestions offered for the first time, or again.
    pub new: usize,
}

/// Merges a build's proposals into the current records (pure): new ids are offered; a `new`
/// one takes the fresh proposal (a version when its automation changed); a dismissed one never
/// changes; an undone one is offered again only when its pattern's confidence grew by
/// [`REOFFER_MARGIN`]; deployed ones keep their automation (the proposal is refreshed).
pub(crate) fn merge(
    current: &HashMap<String, Record>,
    built: Vec<(String, model::Proposal)>,
    now: chrono::DateTime<chrono::Utc>,
) -> Merged {
    let mut out = Merged::default();
    let mut offered = HashSet::new();
    for (id, mut proposal) in built {
        offered.insert(id.clone());
        if let Some(r) = current.get(&id) {
            proposal.keep_llm_wording(&r.proposal);
        }
        let Some(r) = current.get(&id) else {
            let record = Record {
                id,
                status: Status::New,
                proposal,
                deployed: None,
                created_at: now,
                updated_at: now,
                version: 0,
            };
            out.writes
                .push((record, Some(Change::new(Actor::Homeiq, Event::Created))));
            out.new += 1;
            continue;
        };
        let mut r = r.clone();
        match r.status {
            Status::Dismissed => {}
            Status::Undone => {
                let before = r.proposal.strength_at_undo.unwrap_or(r.proposal.strength());
                if proposal.strength() >= before + REOFFER_MARGIN - 1e-9
                    && let Ok(Some(status)) = model::next(r.status, Transition::Reoffer)
                {
                    r.status = status;
                    r.proposal = proposal;
                    let change = Change::new(Actor::Homeiq, Event::Reoffered).note(format!(
                        "the pattern grew stronger: confidence {before:.2} when undone"
                    ));
                    out.writes.push((r, Some(change)));
                    out.new += 1;
                }
            }
            Status::New => {
                if r.proposal != proposal {
                    let changed = r.proposal.automation != proposal.automation;
                    r.proposal = proposal;
                    let change = changed.then(|| Change::new(Actor::Homeiq, Event::Updated));
                    out.writes.push((r, change));
                }
            }
            Status::Deployed | Status::ModifiedInHa | Status::RemovedInHa => {
                if r.proposal != proposal {
                    r.proposal = proposal;
                    out.writes.push((r, None));
                }
            }
        }
    }
    out.stale = current
        .values()
        .filter(|r| r.status == Status::New && !offered.contains(&r.id))
        .map(|r| r.id.clone())
        .collect();
    out.stale.sort();
    out
}

/// The notification's title and message for `new` suggestions.
pub(crate) fn notification_text(new: usize) -> (String, String) {
    let title = if new == 1 {
        "HomeIQ has a new suggestion".to_owned()
    } else {
        format!("HomeIQ has {new} new suggestions")
    };
    let message = format!(
        "HomeIQ learned {new} new routine{} it could automate. Open HomeIQ from the sidebar and go to Suggestions to review, deploy or dismiss {}.",
        if new == 1 { "" } else { "s" },
        if new == 1 { "it" } else { "them" }
    );
    (title, message)
}

/// An automation given by the person: an object, with HomeIQ's id and a description.
fn normalise(
    automation: Value,
    id: &str,
    description: Option<&Value>,
) -> Result<Value, SuggestionError> {
    let Value::Object(mut map) = automation else {
        return Err(SuggestionError::Invalid(
            "automation must be a JSON object in Home Assistant's automation form".into(),
        ));
    };
    for part in ["triggers", "actions"] {
        if !map.contains_key(part) && !map.contains_key(part.trim_end_matches('s')) {
            return Err(SuggestionError::Invalid(format!(
                "automation.{part} is missing"
            )));
        }
    }
    map.insert("id".into(), Value::String(automation_id(id)));
    if !map.get("description").is_some_and(Value::is_string)
        && let Some(d) = description
    {
        map.insert("description".into(), d.clone());
    }
    map.entry("alias")
        .or_insert_with(|| Value::String(format!("HomeIQ suggestion {id}")));
    Ok(Value::Object(map))
}
