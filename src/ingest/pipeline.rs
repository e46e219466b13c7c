//! The pipeline task: consumes [`HaMessage`]s in order and turns them into InfluxDB points,
//! registry-mirror jobs and the in-memory current states.
//!
//! It never waits on InfluxDB (the writer's `push` only queues) and waits on SQLite only for rare
//! registry jobs; state metadata for the mirror is batched and dropped (counted) rather than
//! waited for.
//!
//! Two kinds of repeated events are recognised and not written again:
//! - **duplicates**: the same event delivered twice (same entity, `time_fired`, `last_updated` and
//!   context) — only a doubled subscription could cause this, so the counter must stay at zero;
//! - **unchanged** states (the restart-burst rule): a state *re-announced* with the same state
//!   string and attributes as the one already held. Home Assistant re-sets every entity when it
//!   starts (`old_state` null, often a new `last_updated`); writing those again would add points
//!   for changes that never happened — the duplicate, misdated points users of HA's own InfluxDB
//!   integration get. The rule covers `state_changed` events without an `old_state` and the
//!   connect-time snapshot. A state HA really passes through while starting (a tracker going
//!   `not_home` then `home`) differs from the held one and is written, as HA's recorder keeps it;
//!   ordinary events with an `old_state` are always written (so `force_update` repeats stay).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::backfill::{BackfillFeed, SnapshotEntity};
use super::filter::EntityFilter;
use super::live::{LiveBus, LiveEvent};
use super::origin::Attributor;
use crate::config::SchemaMode;
use crate::ha::model::{HaUser, RegistryEvent, RegistryKind, State, StateChanged};
use crate::ha::{CommandError, HaHandle, HaMessage, ReplyTag};
use crate::registry::record::{Area, Device, EntityEntry, Floor, Label};
use crate::registry::{RegistryJob, RegistryRows, StateMeta};
use crate::store::origin::Origin;
use crate::store::schema::{EntityMeta, PointMapper, ScratchPoint};
use crate::store::sink::HistoryWriter;
use crate::store::states::CurrentStates;

/// The most messages taken from the client's channel at once.
const RECV_BATCH: usize = 256;

/// How often batched state metadata is handed to the registry task.
const STATE_META_FLUSH: Duration = Duration::from_secs(1);

crate::counters::counters! {
    /// Counters of the pipeline, shared with health and metrics.
    pub struct IngestCounters => IngestCounts ("homeiq_ingest") {
        /// `state_changed` events consumed by the pipeline.
        events,
        /// Events of excluded entities.
        filtered,
        /// Events delivered twice (stays 0 unless subscriptions doubled).
        duplicates,
        /// Re-announced states not written again (restart bursts).
        unchanged,
        /// Points handed to the writer from live events.
        points,
        /// Points handed to the writer from connect-time snapshots.
        snapshot_points,
        /// Events the schema maps to no point (removed entities, skipped states).
        unmapped,
        /// State metadata rows dropped because the registry task was busy.
        state_meta_dropped,
        /// Replies from Home Assistant that could not be decoded or were errors.
        reply_errors,
        /// Snapshots (`get_states`) applied.
        snapshots,
    }
}

/// The pipeline's part of `/health/deep`: its counters and the entities it tracks.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IngestStatus {
    /// Counters since start.
    #[serde(flatten)]
    pub counts: IngestCounts,
    /// Entities with a current state.
    pub entities_tracked: usize,
}

/// Identity of a delivered event, to recognise the same event twice.
#[derive(PartialEq, Eq)]
struct EventKey {
    time_fired: DateTime<Utc>,
    last_updated: Option<DateTime<Utc>>,
    context: Option<String>,
}

impl EventKey {
    fn of(ev: &StateChanged) -> Self {
        let new = ev.new_state.as_ref();
        EventKey {
            time_fired: ev.time_fired,
            last_updated: new.map(|s| s.last_updated),
            context: new.and_then(|s| s.context.as_ref()).map(|c| c.id.clone()),
        }
    }

    /// Whether `ev` is the event this key was taken from.
    fn matches(&self, ev: &StateChanged) -> bool {
        let new = ev.new_state.as_ref();
        self.time_fired == ev.time_fired
            && self.last_updated == new.map(|s| s.last_updated)
            && self.context.as_deref()
                == new.and_then(|s| s.context.as_ref()).map(|c| c.id.as_str())
    }

    /// Becomes the key of `ev`, reusing the context's allocation.
    fn set(&mut self, ev: &StateChanged) {
        let new = ev.new_state.as_ref();
        self.time_fired = ev.time_fired;
        self.last_updated = new.map(|s| s.last_updated);
        match (new.and_then(|s| s.context.as_ref()), &mut self.context) {
            (Some(c), Some(held)) => c.id.clone_into(held),
            (c, held) => *held = c.map(|c| c.id.clone()),
        }
    }
}

/// Where an entity sits, from the registries, and each entity's resolved [`EntityMeta`] (cached:
/// the registries change rarely, events come all the time).
#[derive(Default)]
struct Placement {
    entities: HashMap<String, (Option<String>, Option<String>)>,
    device_areas: HashMap<String, Option<String>>,
    resolved: HashMap<String, EntityMeta>,
}

/// The placement of an entity the registries do not know.
const NO_META: EntityMeta = EntityMeta {
    device_id: None,
    area_id: None,
};

impl Placement {
    fn meta(&mut self, entity_id: &str) -> &EntityMeta {
        if !self.resolved.contains_key(entity_id) {
            let meta = match self.entities.get(entity_id) {
                Some((device_id, area_id)) => {
                    let device_area = device_id
                        .as_ref()
                        .and_then(|d| self.device_areas.get(d))
                        .cloned()
                        .flatten();
                    EntityMeta {
                        device_id: device_id.clone(),
                        area_id: area_id.clone().or(device_area),
                    }
                }
                None => NO_META,
            };
            self.resolved.insert(entity_id.to_owned(), meta);
        }
        self.resolved.get(entity_id).unwrap_or(&NO_META)
    }

    fn set_entity(&mut self, e: &EntityEntry) {
        self.resolved.remove(&e.entity_id);
        self.entities.insert(
            e.entity_id.clone(),
            (e.device_id.clone(), e.area_id.clone()),
        );
    }

    fn remove_entity(&mut self, entity_id: &str) {
        self.resolved.remove(entity_id);
        self.entities.remove(entity_id);
    }

    fn set_device_areas(&mut self, device_areas: HashMap<String, Option<String>>) {
        self.resolved.clear();
        self.device_areas = device_areas;
    }

    fn remove_device(&mut self, device_id: &str) {
        self.resolved.clear();
        self.device_areas.remove(device_id);
    }

    fn clear_entities(&mut self) {
        self.resolved.clear();
        self.entities.clear();
    }
}

/// The pipeline's state; run with [`Pipeline::run`].
pub struct Pipeline {
    ha: HaHandle,
    filter: EntityFilter,
    mapper: PointMapper,
    writer: HistoryWriter,
    registry: mpsc::Sender<RegistryJob>,
    states: CurrentStates,
    counters: Arc<IngestCounters>,
    placement: Placement,
    /// The point of the change at hand, rebuilt in place for each.
    scratch: ScratchPoint,
    last_event: HashMap<String, EventKey>,
    pending_meta: Vec<StateMeta>,
    pending_forget: Vec<String>,
    relist_outstanding: HashSet<RegistryKind>,
    relist_dirty: HashSet<RegistryKind>,
    backfill: Option<BackfillFeed>,
    live: Option<LiveBus>,
    /// Who caused each change (runs and users seen so far).
    attributor: Attributor,
}

impl Pipeline {
    /// A pipeline feeding `writer` and the registry task behind `registry`.
    pub fn new(
        ha: HaHandle,
        filter: EntityFilter,
        mapper: PointMapper,
        writer: HistoryWriter,
        registry: mpsc::Sender<RegistryJob>,
        states: CurrentStates,
        counters: Arc<IngestCounters>,
    ) -> Self {
        Pipeline {
            ha,
            filter,
            mapper,
            writer,
            registry,
            states,
            counters,
            placement: Placement::default(),
            scratch: ScratchPoint::default(),
            last_event: HashMap::new(),
            pending_meta: Vec::new(),
            pending_forget: Vec::new(),
            relist_outstanding: HashSet::new(),
            relist_dirty: HashSet::new(),
            backfill: None,
            live: None,
            attributor: Attributor::default(),
        }
    }

    /// Publishes every accepted change (live events and snapshot differences) on `bus`.
    pub fn with_live_bus(mut self, bus: LiveBus) -> Self {
        self.live = Some(bus);
        self
    }

    fn publish(
        &self,
        entity_id: &str,
        old_state: Option<Arc<State>>,
        new_state: Option<Arc<State>>,
        time_fired: DateTime<Utc>,
        origin: impl FnOnce() -> Origin,
    ) {
        if let Some(bus) = self.live.as_ref().filter(|b| b.has_listeners()) {
            bus.publish(LiveEvent {
                entity_id: entity_id.to_owned(),
                old_state,
                new_state,
                time_fired,
                origin: origin(),
            });
        }
    }

    /// Reports every event and snapshot to the gap backfill, which then backfills what was missed
    /// before each snapshot (see [`super::backfill`]).
    pub fn with_backfill(mut self, feed: BackfillFeed) -> Self {
        self.backfill = Some(feed);
        self
    }

    /// Consumes messages until the client's channel closes, then flushes what it holds.
    pub async fn run(mut self, mut messages: mpsc::Receiver<HaMessage>) {
        let mut tick = tokio::time::interval(STATE_META_FLUSH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // what arrived meanwhile is taken at once: one wake-up per burst, not per event
        let mut batch = Vec::with_capacity(RECV_BATCH);
        loop {
            tokio::select! {
                biased;
                n = messages.recv_many(&mut batch, RECV_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    for message in batch.drain(..) {
                        self.handle(message).await;
                    }
                }
                _ = tick.tick() => self.flush_state_meta(),
            }
        }
        self.flush_state_meta();
        tracing::debug!("pipeline drained");
    }

    async fn handle(&mut self, message: HaMessage) {
        match message {
            HaMessage::StateChanged(mut ev) => {
                // a writer that cannot keep up slows the reader instead of losing points
                self.writer.wait_for_room().await;
                let last_updated = ev.new_state.as_ref().map(|s| s.last_updated);
                self.on_state_changed(&mut ev);
                if let Some(feed) = &mut self.backfill {
                    feed.on_event(&ev.entity_id, ev.time_fired, last_updated);
                }
            }
            HaMessage::Registry(ev) => self.on_registry_event(ev).await,
            HaMessage::RunStarted(run) => self.attributor.note_run(run),
            HaMessage::Reply { tag, result } => self.on_reply(tag, result).await,
            HaMessage::Connected { connection, .. } => {
                tracing::debug!(connection, "new connection; snapshot follows");
                self.relist_outstanding.clear();
                self.relist_dirty.clear();
                if let Some(feed) = &mut self.backfill {
                    feed.on_connected();
                }
            }
        }
    }

    /// A `state_changed` event; its new state moves into the current states (`ev.new_state` is
    /// left `None`).
    fn on_state_changed(&mut self, ev: &mut StateChanged) {
        let c = Arc::clone(&self.counters);
        c.events.fetch_add(1, Ordering::Relaxed);
        match self.last_event.get_mut(&ev.entity_id) {
            Some(key) if key.matches(ev) => {
                c.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(key) => key.set(ev),
            None => {
                self.last_event
                    .insert(ev.entity_id.clone(), EventKey::of(ev));
            }
        }

        let Some(new) = ev.new_state.take() else {
            let old = self.states.get(&ev.entity_id);
            self.forget_state(&ev.entity_id);
            self.publish(&ev.entity_id, old, None, ev.time_fired, Origin::unknown);
            c.unmapped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let previous = self.states.get(&ev.entity_id);
        if let Some(prev) = &previous
            && prev.state == new.state
            && prev.attributes == new.attributes
            && (prev.last_updated == new.last_updated || !ev.had_old_state)
        {
            c.unchanged.fetch_add(1, Ordering::Relaxed);
            if prev.last_updated != new.last_updated {
                self.states.insert(new);
            }
            return;
        }
        self.note_state_meta(previous.as_deref(), &new);
        let origin = self.attributor.attribute(new.context.as_ref());
        let current = self.states.insert(new);
        let allowed = self.filter.allows(&ev.entity_id);
        let mapped = allowed.then(|| {
            self.mapper.map_event_into(
                &current,
                ev.time_fired,
                self.placement.meta(&ev.entity_id),
                Some(&origin),
                &mut self.scratch,
            )
        });

        match mapped {
            None => {
                c.filtered.fetch_add(1, Ordering::Relaxed);
            }
            Some(true) => {
                self.writer.push_ref(self.scratch.point());
                c.points.fetch_add(1, Ordering::Relaxed);
                if let Some(beside) = self.mapper.origin_point(&current, ev.time_fired, &origin) {
                    self.writer.push(beside);
                }
            }
            Some(false) => {
                c.unmapped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.publish(
            &ev.entity_id,
            previous,
            Some(current),
            ev.time_fired,
            || origin,
        );
    }

    fn apply_snapshot(&mut self, states: Vec<State>) {
        let c = Arc::clone(&self.counters);
        c.snapshots.fetch_add(1, Ordering::Relaxed);
        let present: HashSet<&str> = states.iter().map(|s| s.entity_id.as_str()).collect();
        let vanished: Vec<String> = self
            .states
            .entity_ids()
            .into_iter()
            .filter(|id| !present.contains(id.as_str()))
            .collect();
        // what the gap backfill needs: every recorded entity, the state held before the gap and
        // whether the snapshot state is written (homeiq: by the snapshot; ha_compat, which writes
        // no snapshot: only if it arrived as a live event)
        let track = self.backfill.is_some();
        let mut newest = None;
        let mut recorded: Vec<SnapshotEntity> = Vec::new();
        for id in vanished {
            if track && self.filter.allows(&id) {
                recorded.push(SnapshotEntity {
                    meta: self.placement.meta(&id).clone(),
                    last_updated: None,
                    written: false,
                    before: self.states.get(&id),
                    entity_id: id.clone(),
                });
            }
            self.forget_state(&id);
        }
        for state in states {
            let previous = self.states.get(&state.entity_id);
            // re-announced with the same value (an HA restart) is not a change and not written
            // here; if it hides a change made meanwhile (A→B→A), the backfill finds it in history
            let unchanged = previous
                .as_ref()
                .is_some_and(|p| p.state == state.state && p.attributes == state.attributes);
            if track {
                newest = newest.max(Some(state.last_updated));
                if self.filter.allows(&state.entity_id) {
                    let written = match self.mapper.mode() {
                        SchemaMode::Homeiq => !unchanged,
                        SchemaMode::HaCompat => self
                            .last_event
                            .get(&state.entity_id)
                            .is_some_and(|k| k.last_updated == Some(state.last_updated)),
                    };
                    recorded.push(SnapshotEntity {
                        entity_id: state.entity_id.clone(),
                        meta: self.placement.meta(&state.entity_id).clone(),
                        last_updated: Some(state.last_updated),
                        written,
                        before: previous.clone(),
                    });
                }
            }
            if unchanged {
                c.unchanged.fetch_add(1, Ordering::Relaxed);
            }
            self.note_state_meta(previous.as_deref(), &state);
            if !unchanged && self.filter.allows(&state.entity_id) {
                let meta = self.placement.meta(&state.entity_id);
                if let Some(point) = self.mapper.map_state(&state, meta) {
                    self.writer.push(point);
                    c.snapshot_points.fetch_add(1, Ordering::Relaxed);
                }
            }
            let current = self.states.insert(state);
            if !unchanged {
                let at = current.last_updated;
                let origin = || self.attributor.attribute(current.context.as_ref());
                self.publish(
                    &current.entity_id,
                    previous,
                    Some(current.clone()),
                    at,
                    origin,
                );
            }
        }
        // the snapshot's points are with the writer: the backfill may start
        if let Some(feed) = &mut self.backfill {
            feed.on_snapshot(recorded, newest);
        }
        // the mirror's device classes and units are complete as soon as the snapshot is applied
        self.flush_state_meta();
    }

    fn note_state_meta(&mut self, previous: Option<&State>, new: &State) {
        fn friendly(s: &State) -> Option<&str> {
            s.attributes.get("friendly_name").and_then(|v| v.as_str())
        }
        let changed = previous.is_none_or(|p| {
            p.device_class() != new.device_class()
                || p.unit() != new.unit()
                || friendly(p) != friendly(new)
        });
        if changed {
            self.pending_forget.retain(|id| *id != new.entity_id);
            self.pending_meta.push(StateMeta {
                entity_id: new.entity_id.clone(),
                device_class: new.device_class().map(str::to_owned),
                unit: new.unit().map(str::to_owned),
                friendly_name: friendly(new).map(str::to_owned),
                last_seen: new.last_updated,
            });
        }
    }

    /// An entity's state is gone (removed, or missing from a snapshot).
    fn forget_state(&mut self, entity_id: &str) {
        self.states.remove(entity_id);
        self.pending_meta.retain(|m| m.entity_id != entity_id);
        self.pending_forget.push(entity_id.to_owned());
    }

    /// Hands batched state metadata to the registry task without waiting; dropped (and counted)
    /// when it is busy, since the next change or snapshot records it again.
    fn flush_state_meta(&mut self) {
        if !self.pending_forget.is_empty() {
            let ids = std::mem::take(&mut self.pending_forget);
            let n = ids.len();
            self.offer_job(RegistryJob::ForgetStates(ids), n);
        }
        if !self.pending_meta.is_empty() {
            let rows = std::mem::take(&mut self.pending_meta);
            let n = rows.len();
            self.offer_job(RegistryJob::StateMeta(rows), n);
        }
    }

    /// Queues a job of `rows` rows if the registry task has room; otherwise counts them dropped.
    fn offer_job(&self, job: RegistryJob, rows: usize) {
        if self.registry.try_send(job).is_err() {
            self.counters
                .state_meta_dropped
                .fetch_add(rows as u64, Ordering::Relaxed);
        }
    }

    async fn on_registry_event(&mut self, ev: RegistryEvent) {
        if ev.action == "remove" {
            match ev.kind {
                RegistryKind::Entity => self.placement.remove_entity(&ev.id),
                RegistryKind::Device => self.placement.remove_device(&ev.id),
                _ => {}
            }
            self.send_job(RegistryJob::Remove(ev.kind, ev.id)).await;
            return;
        }
        if ev.kind == RegistryKind::Entity && !ev.id.is_empty() {
            if let Some(old) = &ev.old_entity_id {
                self.placement.remove_entity(old);
            }
            let cmd = json!({"type": "config/entity_registry/get", "entity_id": ev.id});
            if let Err(e) = self
                .ha
                .request_in_stream(cmd, ReplyTag::EntityGet(ev.id.clone()))
            {
                tracing::debug!(error = %e, "entity lookup not sent; the next full sync covers it");
            }
            return;
        }
        self.relist(ev.kind);
    }

    /// Asks for a fresh list of a registry, at most one request in flight per kind.
    fn relist(&mut self, kind: RegistryKind) {
        if self.relist_outstanding.contains(&kind) {
            self.relist_dirty.insert(kind);
            return;
        }
        let cmd = json!({"type": kind.list_command()});
        match self.ha.request_in_stream(cmd, ReplyTag::RegistryList(kind)) {
            Ok(_) => {
                self.relist_outstanding.insert(kind);
            }
            Err(e) => {
                tracing::debug!(error = %e, "registry list not sent; the next full sync covers it")
            }
        }
    }

    async fn on_reply(&mut self, tag: ReplyTag, result: Result<Box<RawValue>, CommandError>) {
        let raw = match result {
            Ok(raw) => raw,
            Err(e) => {
                if let ReplyTag::RegistryList(kind) = tag {
                    self.relist_outstanding.remove(&kind);
                }
                if tag == ReplyTag::Users {
                    // only an administrator may list users: every user then counts as a person
                    tracing::info!(error = %e, "Home Assistant's user list is not readable; changes by add-ons and the Supervisor count as a person's");
                    return;
                }
                // an entity removed right after its update event is not found: nothing to do
                tracing::debug!(?tag, error = %e, "Home Assistant refused a request");
                self.counters.reply_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match tag {
            ReplyTag::States => {
                if let Some(states) = self.decode::<Vec<State>>(&raw, "get_states") {
                    let present: Vec<String> = states.iter().map(|s| s.entity_id.clone()).collect();
                    self.apply_snapshot(states);
                    // the snapshot is complete: state metadata of any other entity is stale, even
                    // of entities removed while HomeIQ was stopped, which no state held in memory
                    // recalls (their registry rows go with the entity registry's full sync)
                    self.send_job(RegistryJob::RetainStates(present)).await;
                }
            }
            ReplyTag::Users => {
                if let Some(users) = self.decode::<Vec<HaUser>>(&raw, "config/auth/list") {
                    let system = users.iter().filter(|u| u.system_generated).count();
                    tracing::debug!(users = users.len(), system, "user list read");
                    self.attributor.set_users(&users);
                }
            }
            ReplyTag::EntityGet(_) => {
                if let Some(entry) = self.decode::<EntityEntry>(&raw, "entity_registry/get") {
                    self.placement.set_entity(&entry);
                    self.send_job(RegistryJob::UpsertEntity(Box::new(entry)))
                        .await;
                }
            }
            ReplyTag::RegistryList(kind) => {
                self.relist_outstanding.remove(&kind);
                if let Some(rows) = self.decode_rows(kind, &raw) {
                    self.send_job(RegistryJob::FullSync(rows)).await;
                }
                if self.relist_dirty.remove(&kind) {
                    self.relist(kind);
                }
            }
        }
    }

    fn decode_rows(&mut self, kind: RegistryKind, raw: &RawValue) -> Option<RegistryRows> {
        let what = kind.list_command();
        Some(match kind {
            RegistryKind::Area => RegistryRows::Areas(self.decode::<Vec<Area>>(raw, what)?),
            RegistryKind::Floor => RegistryRows::Floors(self.decode::<Vec<Floor>>(raw, what)?),
            RegistryKind::Label => RegistryRows::Labels(self.decode::<Vec<Label>>(raw, what)?),
            RegistryKind::Device => {
                let devices = self.decode::<Vec<Device>>(raw, what)?;
                self.placement.set_device_areas(
                    devices
                        .iter()
                        .map(|d| (d.id.clone(), d.area_id.clone()))
                        .collect(),
                );
                RegistryRows::Devices(devices)
            }
            RegistryKind::Entity => {
                let entities = self.decode::<Vec<EntityEntry>>(raw, what)?;
                self.placement.clear_entities();
                for e in &entities {
                    self.placement.set_entity(e);
                }
                RegistryRows::Entities(entities)
            }
        })
    }

    fn decode<T: DeserializeOwned>(&self, raw: &RawValue, what: &str) -> Option<T> {
        match serde_json::from_str(raw.get()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.counters.reply_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, reply = what, "cannot decode a reply from Home Assistant");
                None
            }
        }
    }

    async fn send_job(&self, job: RegistryJob) {
        if self.registry.send(job).await.is_err() {
            tracing::warn!("registry task stopped; registry change not mirrored");
        }
    }
}
