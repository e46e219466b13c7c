//! The simulated core: the home behind one lock, the simulated clock, and the event bus.
//!
//! Every change happens under the lock and stages its events; when the lock is released they are
//! numbered (a global sequence) and sent to the bus as one batch. Connections read the bus and
//! know, for a snapshot taken under the lock, which events it already includes — so a reply and
//! the events around it reach a client in the order Home Assistant's single event loop would give.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::HaVersion;
use super::history::{History, Row};
use super::home::{EntityState, Home, slug};
use super::render::{push_context, push_iso, push_str_lit, ulid};
use super::truth::{Plan, Routines};

/// The most entities the REST API may create.
pub(crate) const MAX_ENTITIES: usize = 50_000;
/// The most automations kept.
pub(crate) const MAX_AUTOMATIONS: usize = 1_000;
/// Webhook calls remembered.
pub(crate) const MAX_WEBHOOK_CALLS: usize = 256;
/// Home Assistant's limit on a state string.
pub(crate) const MAX_STATE_LEN: usize = 255;
/// User id of the simulated owner (the token's user).
pub(crate) const OWNER_USER_ID: &str = "5a1b0c0d0e0f41a2b3c4d5e6f7a8b9c0";

/// One event on the bus, rendered once for every subscriber.
#[derive(Debug)]
pub(crate) struct BusEvent {
    /// The event type.
    pub event_type: &'static str,
    /// The event object (`event_type`, `data`, `origin`, `time_fired`, `context`).
    pub body: String,
}

/// Events published together; the first has sequence number `first_seq`.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Sequence number of `events[0]`.
    pub first_seq: u64,
    /// The events.
    pub events: Vec<BusEvent>,
}

/// What went wrong with a request to the simulated core.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum HubError {
    /// The referenced item does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or not allowed.
    #[error("{0}")]
    Invalid(String),
    /// The service is not simulated.
    #[error("Service {0} not found.")]
    ServiceNotFound(String),
    /// A bound was reached.
    #[error("{0}")]
    Full(String),
}

impl HubError {
    /// The WebSocket error code Home Assistant uses for this.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            HubError::NotFound(_) => "not_found",
            HubError::Invalid(_) => "invalid_format",
            HubError::ServiceNotFound(_) => "service_not_found",
            HubError::Full(_) => "home_assistant_error",
        }
    }
}

/// The simulated clock: `speed` simulated seconds per real second from `start`, never ahead of the
/// wall clock.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    real_start: Instant,
    wall_start_us: i64,
    sim_start_us: i64,
    speed: f64,
}

impl Clock {
    /// A clock starting `backdate_us` before now and running at `speed`.
    pub(crate) fn new(speed: f64, backdate_us: i64) -> Self {
        let wall = chrono::Utc::now().timestamp_micros();
        Clock {
            real_start: Instant::now(),
            wall_start_us: wall,
            sim_start_us: wall - backdate_us.max(0),
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
        }
    }

    /// Where the simulated time starts (µs): `backdate` before the wall clock.
    pub(crate) fn start(&self) -> i64 {
        self.sim_start_us
    }

    /// Starts the clock again from its simulated start (a backdated one) or from the wall clock
    /// (one that is not), from now on in real time: the simulator calls it when the home is
    /// ready, so building a large home at a high speed does not eat simulated hours.
    pub(crate) fn restart(&mut self) {
        let wall = chrono::Utc::now().timestamp_micros();
        if self.sim_start_us >= self.wall_start_us {
            self.sim_start_us = wall;
        }
        self.real_start = Instant::now();
        self.wall_start_us = wall;
    }

    /// Simulated now, µs.
    pub(crate) fn now(&self) -> i64 {
        let elapsed = i64::try_from(self.real_start.elapsed().as_micros()).unwrap_or(i64::MAX);
        let wall = self.wall_start_us.saturating_add(elapsed);
        let sim = self
            .sim_start_us
            .saturating_add((elapsed as f64 * self.speed) as i64);
        sim.min(wall)
    }

    /// Whether the simulated time has caught up with the wall clock.
    pub(crate) fn caught_up(&self) -> bool {
        let elapsed = i64::try_from(self.real_start.elapsed().as_micros()).unwrap_or(i64::MAX);
        self.sim_start_us
            .saturating_add((elapsed as f64 * self.speed) as i64)
            >= self.wall_start_us.saturating_add(elapsed)
    }
}

/// Who caused a change: the context a change is made in.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    /// The context id to use (an automation run's changes share its context); a fresh one when
    /// `None`.
    pub id: Option<String>,
    /// Parent context id.
    pub parent_id: Option<String>,
    /// User id.
    pub user_id: Option<String>,
}

impl Origin {
    /// A change made by the simulated owner (REST and WebSocket calls).
    pub(crate) fn user() -> Self {
        Origin::by(OWNER_USER_ID)
    }

    /// A change made by user `user_id` (a person or a system-generated user), in a fresh context.
    pub(crate) fn by(user_id: &str) -> Self {
        Origin {
            id: None,
            parent_id: None,
            user_id: Some(user_id.to_owned()),
        }
    }

    /// A change made in run context `id` (an automation's), whose parent is `parent_id`.
    pub(crate) fn run(id: String, parent_id: Option<String>) -> Self {
        Origin {
            id: Some(id),
            parent_id,
            user_id: None,
        }
    }
}

/// A stored automation.
#[derive(Debug, Clone)]
pub(crate) struct Automation {
    /// The configuration as posted (with `id`).
    pub config: Value,
    /// Its `automation.*` entity.
    pub entity_id: String,
}

/// Everything behind the lock.
pub(crate) struct Inner {
    /// The home.
    pub home: Home,
    /// The recorder.
    pub history: History,
    /// Automations by id.
    pub automations: BTreeMap<String, Automation>,
    /// The latest webhook calls, oldest first.
    pub webhook_calls: VecDeque<Value>,
    /// The release whose registry shapes are spoken.
    pub ha_version: HaVersion,
    /// The home's time zone (`get_config`); daily routines follow its local time.
    pub time_zone: chrono_tz::Tz,
    /// What the routine plants (habits, sequences, automations): the ground truth.
    pub plan: Arc<Plan>,
    /// The simulated time (µs) the routine has run up to (it may lag behind the clock while it
    /// catches up with a backdated start).
    pub routine_at: Option<i64>,
    clock: Clock,
    last_now: i64,
    seq: u64,
    staged: Vec<BusEvent>,
    rng: StdRng,
}

/// The shared core.
pub(crate) struct Hub {
    inner: Mutex<Inner>,
    bus: broadcast::Sender<Arc<Batch>>,
    published: AtomicU64,
    /// The access token clients must present.
    pub token: String,
    /// Pending messages at which a client is dropped.
    pub max_pending: usize,
    /// Clients dropped for being too slow.
    pub dropped_clients: AtomicU64,
}

impl Hub {
    /// A hub for `home`, with a bus holding `bus_batches` batches.
    pub(crate) fn new(
        home: Home,
        clock: Clock,
        seed: u64,
        token: String,
        max_pending: usize,
        bus_batches: usize,
    ) -> Self {
        let history_entities = home.states.len().max(100);
        let mut history = History::new(history_entities);
        for s in &home.states {
            history.push(&s.entity_id, row_of(s));
        }
        let (bus, _) = broadcast::channel(bus_batches.max(4));
        let plan = super::truth::plan(seed, &home);
        let mut clock = clock;
        clock.restart();
        let mut inner = Inner {
            home,
            history,
            automations: BTreeMap::new(),
            webhook_calls: VecDeque::new(),
            ha_version: HaVersion::default(),
            time_zone: chrono_tz::Tz::UTC,
            plan: Arc::new(Plan::default()),
            routine_at: None,
            last_now: clock.now(),
            clock,
            seq: 0,
            staged: Vec::new(),
            rng: StdRng::seed_from_u64(seed ^ 0x5eed_c0de),
        };
        inner.plant(plan);
        Hub {
            inner: Mutex::new(inner),
            bus,
            published: AtomicU64::new(0),
            token,
            max_pending,
            dropped_clients: AtomicU64::new(0),
        }
    }

    /// Speaks the registry shapes of `version` (see [`HaVersion`]).
    pub(crate) fn speaking(self, version: HaVersion) -> Self {
        self.lock().ha_version = version;
        self
    }

    /// Lives in time zone `tz`: `get_config` reports it and daily routines follow its local time.
    pub(crate) fn in_time_zone(self, tz: chrono_tz::Tz) -> Self {
        self.lock().time_zone = tz;
        self
    }

    /// The planted routines: habits, sequences, automations and regularities, in the home's
    /// time zone (the same for a seed and profile).
    pub(crate) fn routines(&self) -> Routines {
        self.lock().routines()
    }

    /// The release whose shapes are spoken.
    pub(crate) fn ha_version(&self) -> HaVersion {
        self.lock().ha_version
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` under the lock and publishes the events it staged. Returns `f`'s value and the
    /// sequence number of the first event after it (everything before is included in what `f`
    /// saw or did).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> (R, u64) {
        let mut g = self.lock();
        let r = f(&mut g);
        if !g.staged.is_empty() {
            let events = std::mem::take(&mut g.staged);
            let first_seq = g.seq;
            g.seq += events.len() as u64;
            self.published.store(g.seq, Ordering::Release);
            // no receiver is fine: nobody listens
            let _ = self.bus.send(Arc::new(Batch { first_seq, events }));
        }
        let seq = g.seq;
        (r, seq)
    }

    /// A bus receiver and the sequence number of the first event it will see.
    pub(crate) fn subscribe(&self) -> (broadcast::Receiver<Arc<Batch>>, u64) {
        let g = self.lock();
        (self.bus.subscribe(), g.seq)
    }

    /// Events published so far.
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }
}

/// The recorder row of a state.
pub(crate) fn row_of(s: &EntityState) -> Row {
    Row {
        state: Arc::from(s.state.as_str()),
        attrs: s.attrs_json.clone(),
        lu: s.last_updated,
        lc: s.last_changed,
    }
}

/// Entity ids named by service data or a target: a string (comma separated) or a list.
pub(crate) fn entity_ids_of(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn now_secs(us: i64) -> f64 {
    us as f64 / 1e6
}

impl Inner {
    /// Takes `plan` as the home's ground truth: its automations become stored automations with
    /// `automation.*` entities (part of the home from the start: no events).
    fn plant(&mut self, mut plan: Plan) {
        let at = Some(self.clock.start());
        for a in &mut plan.truth.automations {
            match self.automation_put_at(at, &a.id, Plan::automation_config(a)) {
                Ok(()) => {
                    if let Some(stored) = self.automations.get(&a.id) {
                        a.entity_id = stored.entity_id.clone();
                    }
                }
                Err(e) => tracing::warn!(automation = %a.id, error = %e, "not planted"),
            }
        }
        for sc in &plan.truth.scripts {
            let attrs = json!({
                "last_triggered": null, "mode": "single", "current": 0,
                "friendly_name": sc.alias,
            });
            if let Value::Object(attrs) = attrs {
                let origin = Origin::default();
                let _ = self.set_state_at(at, &sc.entity_id, "off", Some(attrs), false, &origin);
            }
        }
        self.staged.clear();
        self.plan = Arc::new(plan);
    }

    /// The planted routines (`GET /api/simulator/routines`).
    pub(crate) fn routines(&self) -> Routines {
        self.plan.routines(self.time_zone)
    }

    /// Simulated now (µs), strictly increasing from call to call.
    pub(crate) fn now(&mut self) -> i64 {
        self.stamp(None)
    }

    /// The time to stamp a change with: `at` (a scheduled time the clock has passed), else the
    /// clock's now; never before an earlier stamp.
    pub(crate) fn stamp(&mut self, at: Option<i64>) -> i64 {
        let t = at
            .unwrap_or_else(|| self.clock.now())
            .max(self.last_now + 1);
        self.last_now = t;
        t
    }

    /// The clock.
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// A fresh context id at `now`.
    pub(crate) fn context_id(&mut self, now: i64) -> String {
        let entropy: u128 = self.rng.random();
        ulid(now / 1_000, entropy)
    }

    /// Stages an event with a data object rendered by the caller.
    pub(crate) fn stage(&mut self, event_type: &'static str, data_json: &str, now: i64, ctx: &str) {
        self.stage_in(event_type, data_json, now, ctx, None, None);
    }

    /// [`Inner::stage`] with the whole context (`parent_id`, `user_id`).
    pub(crate) fn stage_in(
        &mut self,
        event_type: &'static str,
        data_json: &str,
        now: i64,
        ctx: &str,
        parent: Option<&str>,
        user: Option<&str>,
    ) {
        let mut body = String::with_capacity(data_json.len() + 160);
        body.push_str("{\"event_type\":");
        push_str_lit(&mut body, event_type);
        body.push_str(",\"data\":");
        body.push_str(data_json);
        body.push_str(",\"origin\":\"LOCAL\",\"time_fired\":\"");
        push_iso(&mut body, now);
        body.push_str("\",\"context\":");
        push_context(&mut body, ctx, parent, user);
        body.push('}');
        self.staged.push(BusEvent { event_type, body });
    }

    /// A `state_changed` event in the change's whole context (as Home Assistant fires it: the
    /// event's context is the new state's).
    fn stage_state_changed(
        &mut self,
        entity_id: &str,
        old: Option<&str>,
        new: Option<&str>,
        now: i64,
        ctx: &str,
        origin: &Origin,
    ) {
        let mut data = String::with_capacity(
            64 + old.map_or(4, str::len) + new.map_or(4, str::len) + entity_id.len(),
        );
        data.push_str("{\"entity_id\":");
        push_str_lit(&mut data, entity_id);
        data.push_str(",\"old_state\":");
        data.push_str(old.unwrap_or("null"));
        data.push_str(",\"new_state\":");
        data.push_str(new.unwrap_or("null"));
        data.push('}');
        self.stage_in(
            "state_changed",
            &data,
            now,
            ctx,
            origin.parent_id.as_deref(),
            origin.user_id.as_deref(),
        );
    }

    /// Sets a state as `hass.states.async_set` does: `last_changed` moves only when the state
    /// string changes, `last_updated` when it or an attribute does, `last_reported` always; an
    /// unchanged write fires no `state_changed` (unless `force_update`). Returns whether the
    /// entity is new and its state object JSON.
    pub(crate) fn set_state(
        &mut self,
        entity_id: &str,
        state: &str,
        attributes: Option<Map<String, Value>>,
        force_update: bool,
        origin: &Origin,
    ) -> Result<(bool, Arc<str>), HubError> {
        self.set_state_at(None, entity_id, state, attributes, force_update, origin)
    }

    /// [`Inner::set_state`] stamped `at` (see [`Inner::stamp`]): the routines stamp each change
    /// at the simulated time it was due, also when the clock runs faster than they are driven.
    pub(crate) fn set_state_at(
        &mut self,
        at: Option<i64>,
        entity_id: &str,
        state: &str,
        attributes: Option<Map<String, Value>>,
        force_update: bool,
        origin: &Origin,
    ) -> Result<(bool, Arc<str>), HubError> {
        if state.chars().count() > MAX_STATE_LEN {
            return Err(HubError::Invalid(format!(
                "Invalid state with length {}. State max length is {MAX_STATE_LEN} characters.",
                state.chars().count()
            )));
        }
        if !valid_entity_id(entity_id) {
            return Err(HubError::Invalid(format!("Invalid entity ID: {entity_id}")));
        }
        let now = self.stamp(at);
        let ctx = match &origin.id {
            Some(id) => id.clone(),
            None => self.context_id(now),
        };
        let Some(&idx) = self.home.index.get(entity_id) else {
            if self.home.states.len() >= MAX_ENTITIES {
                return Err(HubError::Full(format!(
                    "the simulator holds at most {MAX_ENTITIES} entities"
                )));
            }
            let mut st = EntityState::new(entity_id, state, attributes.unwrap_or_default(), now);
            st.context_id = ctx.clone();
            st.context_parent = origin.parent_id.clone();
            st.context_user = origin.user_id.clone();
            st.render();
            self.history.push(entity_id, row_of(&st));
            let json = st.json.clone();
            self.home
                .index
                .insert(entity_id.to_owned(), self.home.states.len());
            self.home.states.push(st);
            self.stage_state_changed(entity_id, None, Some(&json), now, &ctx, origin);
            return Ok((true, json));
        };
        let st = &mut self.home.states[idx];
        let old_json = st.json.clone();
        let state_changed = st.state != state;
        let attrs_changed = attributes.as_ref().is_some_and(|a| *a != st.attributes);
        if !state_changed && !attrs_changed && !force_update {
            st.last_reported = now;
            st.render();
            return Ok((false, st.json.clone()));
        }
        if state_changed {
            st.state = state.to_owned();
            st.last_changed = now;
        }
        if let Some(a) = attributes.filter(|_| attrs_changed) {
            st.set_attributes(a);
        }
        st.last_updated = now;
        st.last_reported = now;
        st.context_id = ctx.clone();
        st.context_parent = origin.parent_id.clone();
        st.context_user = origin.user_id.clone();
        st.render();
        let new_json = st.json.clone();
        let row = row_of(st);
        self.history.push(entity_id, row);
        self.stage_state_changed(
            entity_id,
            Some(&old_json),
            Some(&new_json),
            now,
            &ctx,
            origin,
        );
        Ok((false, new_json))
    }

    /// The fast path of the load generator: a new state string for entity `idx`, attributes
    /// unchanged.
    pub(crate) fn set_state_fast(&mut self, idx: usize, state: String) {
        let now = self.now();
        let entropy: u128 = self.rng.random();
        let ctx = ulid(now / 1_000, entropy);
        let Some(st) = self.home.states.get_mut(idx) else {
            return;
        };
        let old_json = st.json.clone();
        if st.state != state {
            st.last_changed = now;
        }
        st.state = state;
        st.last_updated = now;
        st.last_reported = now;
        st.context_id = ctx;
        st.context_parent = None;
        st.context_user = None;
        st.render();
        let new_json = st.json.clone();
        let row = row_of(st);
        let entity_id = st.entity_id.clone();
        let ctx = st.context_id.clone();
        self.history.push(&entity_id, row);
        self.stage_state_changed(
            &entity_id,
            Some(&old_json),
            Some(&new_json),
            now,
            &ctx,
            &Origin::default(),
        );
    }

    /// Removes an entity's state (`new_state: null`).
    pub(crate) fn remove_state(&mut self, entity_id: &str) -> bool {
        let Some(idx) = self.home.index.remove(entity_id) else {
            return false;
        };
        let old = self.home.states.swap_remove(idx);
        if let Some(moved) = self.home.states.get(idx) {
            self.home.index.insert(moved.entity_id.clone(), idx);
        }
        let now = self.now();
        let ctx = self.context_id(now);
        self.stage_state_changed(
            entity_id,
            Some(&old.json),
            None,
            now,
            &ctx,
            &Origin::default(),
        );
        true
    }

    /// The current state of an entity.
    pub(crate) fn state(&self, entity_id: &str) -> Option<&EntityState> {
        self.home
            .index
            .get(entity_id)
            .and_then(|&i| self.home.states.get(i))
    }

    /// Every state as a JSON array.
    pub(crate) fn states_json(&self) -> String {
        let total: usize = self.home.states.iter().map(|s| s.json.len() + 1).sum();
        let mut out = String::with_capacity(total + 2);
        out.push('[');
        for (i, s) in self.home.states.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&s.json);
        }
        out.push(']');
        out
    }

    // -----------------------------------------------------------------------------------------
    // services
    // -----------------------------------------------------------------------------------------

    /// Calls a service: `light`, `switch` and `automation` `turn_on`/`turn_off`/`toggle` on the
    /// entities in `data.entity_id` (or `target`); an `off` automation does not run. Returns the
    /// states changed, as JSON.
    pub(crate) fn call_service(
        &mut self,
        domain: &str,
        service: &str,
        data: &Value,
        target: Option<&Value>,
        origin: &Origin,
    ) -> Result<Vec<Arc<str>>, HubError> {
        let known = matches!(domain, "light" | "switch" | "automation" | "homeassistant")
            && matches!(service, "turn_on" | "turn_off" | "toggle");
        if !known {
            return Err(HubError::ServiceNotFound(format!("{domain}.{service}")));
        }
        let mut ids = entity_ids_of(data.get("entity_id"));
        if let Some(t) = target {
            ids.extend(entity_ids_of(t.get("entity_id")));
        }
        if ids.iter().any(|i| i == "all") {
            ids = self
                .home
                .states
                .iter()
                .filter(|s| domain == "homeassistant" || s.domain() == domain)
                .map(|s| s.entity_id.clone())
                .collect();
        }
        let mut changed = Vec::new();
        for id in ids {
            let Some(current) = self.state(&id) else {
                continue;
            };
            let d = current.domain().to_owned();
            if !(d == domain || (domain == "homeassistant" && (d == "light" || d == "switch"))) {
                continue;
            }
            let on = match service {
                "turn_on" => true,
                "turn_off" => false,
                _ => current.state != "on",
            };
            let mut attrs = current.attributes.clone();
            if d == "light" {
                if on {
                    let brightness = data
                        .get("brightness")
                        .and_then(Value::as_f64)
                        .or_else(|| {
                            data.get("brightness_pct")
                                .and_then(Value::as_f64)
                                .map(|p| (p * 255.0 / 100.0).round())
                        })
                        .or_else(|| attrs.get("brightness").and_then(Value::as_f64))
                        .unwrap_or(255.0)
                        .clamp(0.0, 255.0);
                    attrs.insert("brightness".into(), json!(brightness as u64));
                    attrs.insert("color_mode".into(), json!("brightness"));
                } else {
                    attrs.insert("brightness".into(), Value::Null);
                    attrs.insert("color_mode".into(), Value::Null);
                }
            }
            let (_, json) = self.set_state(
                &id,
                if on { "on" } else { "off" },
                Some(attrs),
                false,
                origin,
            )?;
            changed.push(json);
        }
        let now = self.now();
        let ctx = self.context_id(now);
        let mut data_json = String::from("{\"domain\":");
        push_str_lit(&mut data_json, domain);
        data_json.push_str(",\"service\":");
        push_str_lit(&mut data_json, service);
        data_json.push_str(",\"service_data\":");
        data_json.push_str(&data.to_string());
        data_json.push('}');
        self.stage("call_service", &data_json, now, &ctx);
        Ok(changed)
    }

    // -----------------------------------------------------------------------------------------
    // registries
    // -----------------------------------------------------------------------------------------

    fn registry_event(&mut self, event_type: &'static str, data: Value) {
        let now = self.now();
        let ctx = self.context_id(now);
        self.stage(event_type, &data.to_string(), now, &ctx);
    }

    /// `config/area_registry/create`.
    pub(crate) fn area_create(&mut self, msg: &Value) -> Result<Value, HubError> {
        let name = msg
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| HubError::Invalid("required key not provided @ data['name']".into()))?;
        if self
            .home
            .areas
            .iter()
            .any(|a| a["name"].as_str() == Some(name))
        {
            return Err(HubError::Invalid(format!(
                "The name {name} ({}) is already in use",
                slug(name)
            )));
        }
        let base = slug(name);
        let mut area_id = base.clone();
        let mut n = 2;
        while self
            .home
            .areas
            .iter()
            .any(|a| a["area_id"] == area_id.as_str())
        {
            area_id = format!("{base}_{n}");
            n += 1;
        }
        let now = now_secs(self.now());
        let mut row = json!({
            "aliases": [], "area_id": area_id, "floor_id": null, "humidity_entity_id": null,
            "icon": null, "labels": [], "name": name, "picture": null,
            "temperature_entity_id": null, "created_at": now, "modified_at": now,
        });
        apply_keys(
            &mut row,
            msg,
            &["floor_id", "icon", "aliases", "labels", "picture"],
        );
        self.home.areas.push(row.clone());
        self.registry_event(
            "area_registry_updated",
            json!({"action": "create", "area_id": area_id}),
        );
        Ok(row)
    }

    /// `config/area_registry/update`.
    pub(crate) fn area_update(&mut self, msg: &Value) -> Result<Value, HubError> {
        let area_id = str_field(msg, "area_id");
        let now = now_secs(self.now());
        let row = self
            .home
            .areas
            .iter_mut()
            .find(|a| a["area_id"] == area_id)
            .ok_or_else(|| HubError::NotFound("Area ID doesn't exist".into()))?;
        apply_keys(
            row,
            msg,
            &["name", "floor_id", "icon", "aliases", "labels", "picture"],
        );
        row["modified_at"] = json!(now);
        let row = row.clone();
        self.registry_event(
            "area_registry_updated",
            json!({"action": "update", "area_id": area_id}),
        );
        Ok(row)
    }

    /// `config/area_registry/delete`: devices and entities in the area lose it.
    pub(crate) fn area_delete(&mut self, msg: &Value) -> Result<Value, HubError> {
        let area_id = str_field(msg, "area_id").to_owned();
        let pos = index_of(
            &self.home.areas,
            "area_id",
            &area_id,
            "Area ID doesn't exist",
        )?;
        self.home.areas.remove(pos);
        let now = now_secs(self.now());
        let mut device_events = Vec::new();
        for d in &mut self.home.devices {
            if d["area_id"] == area_id.as_str() {
                d["area_id"] = Value::Null;
                d["modified_at"] = json!(now);
                device_events.push(json!({"action": "update", "device_id": d["id"], "changes": {"area_id": area_id}}));
            }
        }
        let mut entity_events = Vec::new();
        for e in &mut self.home.entities {
            if e["area_id"] == area_id.as_str() {
                e["area_id"] = Value::Null;
                e["modified_at"] = json!(now);
                entity_events.push(json!({"action": "update", "entity_id": e["entity_id"], "changes": {"area_id": area_id}}));
            }
        }
        for role in &mut self.home.roles {
            if role.area_id == area_id {
                role.area_id.clear();
            }
        }
        self.registry_event(
            "area_registry_updated",
            json!({"action": "remove", "area_id": area_id}),
        );
        for ev in device_events {
            self.registry_event("device_registry_updated", ev);
        }
        for ev in entity_events {
            self.registry_event("entity_registry_updated", ev);
        }
        Ok(json!("success"))
    }

    /// `config/device_registry/update` (area, user name, labels, disabled_by).
    pub(crate) fn device_update(&mut self, msg: &Value) -> Result<Value, HubError> {
        let device_id = str_field(msg, "device_id");
        let now = now_secs(self.now());
        let row = self
            .home
            .devices
            .iter_mut()
            .find(|d| d["id"] == device_id)
            .ok_or_else(|| HubError::NotFound("Device not found".into()))?;
        let changes = apply_keys(
            row,
            msg,
            &["area_id", "name_by_user", "labels", "disabled_by"],
        );
        row["modified_at"] = json!(now);
        let row = row.clone();
        if !changes.is_empty() {
            self.registry_event(
                "device_registry_updated",
                json!({"action": "update", "device_id": device_id, "changes": changes}),
            );
        }
        Ok(row)
    }

    /// `config/entity_registry/update`, including renames through `new_entity_id`: the state
    /// moves to the new id (removed under the old one, added under the new one) and so does its
    /// history.
    pub(crate) fn entity_update(&mut self, msg: &Value) -> Result<Value, HubError> {
        let entity_id = str_field(msg, "entity_id").to_owned();
        let pos = index_of(
            &self.home.entities,
            "entity_id",
            &entity_id,
            "Entity not found",
        )?;
        let new_id = msg
            .get("new_entity_id")
            .and_then(Value::as_str)
            .filter(|n| *n != entity_id)
            .map(str::to_owned);
        if let Some(new_id) = &new_id {
            if !valid_entity_id(new_id)
                || crate::ha::model::domain_of(new_id) != crate::ha::model::domain_of(&entity_id)
            {
                return Err(HubError::Invalid(format!("Invalid entity ID: {new_id}")));
            }
            if self.home.index.contains_key(new_id)
                || self
                    .home
                    .entities
                    .iter()
                    .any(|e| e["entity_id"] == new_id.as_str())
            {
                return Err(HubError::Invalid(format!(
                    "Entity with this ID is already registered: {new_id}"
                )));
            }
        }
        let now = now_secs(self.now());
        let row = &mut self.home.entities[pos];
        let mut changes = apply_keys(
            row,
            msg,
            &[
                "name",
                "icon",
                "area_id",
                "labels",
                "disabled_by",
                "hidden_by",
            ],
        );
        if let Some(new_id) = &new_id {
            changes.insert("entity_id".into(), json!(entity_id));
            row["entity_id"] = json!(new_id);
        }
        row["modified_at"] = json!(now);
        let row = row.clone();
        if let Some(new_id) = &new_id {
            self.rename_state(&entity_id, new_id);
        }
        if !changes.is_empty() {
            let mut data = json!({
                "action": "update",
                "entity_id": new_id.as_deref().unwrap_or(&entity_id),
                "changes": changes,
            });
            if new_id.is_some() {
                data["old_entity_id"] = json!(entity_id);
            }
            self.registry_event("entity_registry_updated", data);
        }
        Ok(json!({"entity_entry": row}))
    }

    /// `config/entity_registry/remove`: the registry entry goes (an `entity_registry_updated`
    /// `remove` event), then the entity's state (`state_changed` with `new_state: null`), as
    /// Home Assistant removes an entity whose registry entry is deleted.
    pub(crate) fn entity_remove(&mut self, msg: &Value) -> Result<Value, HubError> {
        let entity_id = str_field(msg, "entity_id").to_owned();
        let pos = index_of(
            &self.home.entities,
            "entity_id",
            &entity_id,
            "Entity not found",
        )?;
        self.home.entities.remove(pos);
        self.registry_event(
            "entity_registry_updated",
            json!({"action": "remove", "entity_id": entity_id}),
        );
        self.remove_state(&entity_id);
        Ok(Value::Null)
    }

    fn rename_state(&mut self, old: &str, new: &str) {
        let Some(current) = self.state(old).cloned() else {
            return;
        };
        self.remove_state(old);
        self.history.rename(old, new);
        let origin = Origin::default();
        let _ = self.set_state(
            new,
            &current.state,
            Some(current.attributes),
            false,
            &origin,
        );
        for role in &mut self.home.roles {
            for id in role
                .lights
                .iter_mut()
                .chain(role.temperature.iter_mut())
                .chain(role.humidity.iter_mut())
                .chain(role.media.iter_mut())
                .chain(role.batteries.iter_mut())
                .chain(role.motion.iter_mut())
                .chain(role.illuminance.iter_mut())
                .chain(role.door.iter_mut())
                .chain(role.climate.iter_mut())
            {
                if id == old {
                    *id = new.to_owned();
                }
            }
            for (s, p, e) in &mut role.plugs {
                for id in [s, p, e] {
                    if id == old {
                        *id = new.to_owned();
                    }
                }
            }
        }
        for p in &mut self.home.persons {
            if p.entity_id == old {
                p.entity_id = new.to_owned();
            }
        }
        if let Some((p, e)) = &mut self.home.meter {
            for id in [p, e] {
                if id == old {
                    *id = new.to_owned();
                }
            }
        }
        for id in &mut self.home.meter_phases {
            if id == old {
                *id = new.to_owned();
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // automations and webhooks
    // -----------------------------------------------------------------------------------------

    /// Stores (creates or replaces) an automation and its `automation.*` entity.
    pub(crate) fn automation_put(&mut self, id: &str, config: Value) -> Result<(), HubError> {
        self.automation_put_at(None, id, config)
    }

    /// [`Inner::automation_put`] stamped `at` (see [`Inner::stamp`]).
    fn automation_put_at(
        &mut self,
        at: Option<i64>,
        id: &str,
        mut config: Value,
    ) -> Result<(), HubError> {
        let Some(obj) = config.as_object_mut() else {
            return Err(HubError::Invalid(
                "Message malformed: expected a dictionary".into(),
            ));
        };
        let has = |k: &str, legacy: &str| {
            obj.get(k)
                .or_else(|| obj.get(legacy))
                .is_some_and(|v| !v.is_null())
        };
        if !has("triggers", "trigger") {
            return Err(HubError::Invalid(
                "Message malformed: required key not provided @ data['triggers']".into(),
            ));
        }
        if !has("actions", "action") {
            return Err(HubError::Invalid(
                "Message malformed: required key not provided @ data['actions']".into(),
            ));
        }
        if !self.automations.contains_key(id) && self.automations.len() >= MAX_AUTOMATIONS {
            return Err(HubError::Full(format!(
                "the simulator keeps at most {MAX_AUTOMATIONS} automations"
            )));
        }
        obj.insert("id".into(), json!(id));
        let alias = obj
            .get("alias")
            .and_then(Value::as_str)
            .unwrap_or(id)
            .to_owned();
        let entity_id = match self.automations.get(id) {
            Some(a) => a.entity_id.clone(),
            None => {
                let base = format!("automation.{}", slug(&alias));
                let mut candidate = base.clone();
                let mut n = 2;
                while self.home.index.contains_key(&candidate) {
                    candidate = format!("{base}_{n}");
                    n += 1;
                }
                candidate
            }
        };
        let last_triggered = self
            .state(&entity_id)
            .and_then(|s| s.attributes.get("last_triggered").cloned())
            .unwrap_or(Value::Null);
        let attrs = json!({
            "id": id, "last_triggered": last_triggered, "mode": "single", "current": 0,
            "friendly_name": alias,
        });
        let Value::Object(attrs) = attrs else {
            return Ok(());
        };
        self.set_state_at(at, &entity_id, "on", Some(attrs), false, &Origin::default())?;
        self.automations
            .insert(id.to_owned(), Automation { config, entity_id });
        Ok(())
    }

    /// Deletes an automation and its entity.
    pub(crate) fn automation_delete(&mut self, id: &str) -> Result<(), HubError> {
        let a = self
            .automations
            .remove(id)
            .ok_or_else(|| HubError::NotFound("Resource not found".into()))?;
        self.remove_state(&a.entity_id);
        Ok(())
    }

    /// Handles a webhook call: records it and runs every automation it triggers. Returns the
    /// number of automations run.
    pub(crate) fn webhook(
        &mut self,
        webhook_id: &str,
        method: &str,
        body: Value,
        query: Value,
    ) -> usize {
        let now = self.now();
        if self.webhook_calls.len() >= MAX_WEBHOOK_CALLS {
            self.webhook_calls.pop_front();
        }
        self.webhook_calls.push_back(json!({
            "webhook_id": webhook_id, "method": method, "json": body, "query": query,
            "received_at": super::render::iso(now),
        }));
        let triggered: Vec<Automation> = self
            .automations
            .values()
            .filter(|a| webhook_triggers(&a.config, webhook_id, method))
            .filter(|a| self.state(&a.entity_id).is_none_or(|s| s.state != "off"))
            .cloned()
            .collect();
        for automation in &triggered {
            self.run_automation(automation);
        }
        triggered.len()
    }

    /// Starts a run of automation `entity_id` (named `name`) as Home Assistant does: a new run
    /// context (its parent the trigger's context, if a state change triggered it), the
    /// automation's `last_triggered` written in it, then `automation_triggered` (`source`: the
    /// trigger's description) fired in it. Returns the origin the run's actions change things in.
    pub(crate) fn start_run(
        &mut self,
        at: Option<i64>,
        entity_id: &str,
        name: &Value,
        source: &str,
        parent: Option<String>,
    ) -> Origin {
        let now = self.stamp(at);
        let ctx = self.context_id(now);
        let origin = Origin::run(ctx.clone(), parent);
        if let Some(state) = self.state(entity_id) {
            let mut attrs = state.attributes.clone();
            attrs.insert("last_triggered".into(), json!(super::render::iso(now)));
            let st = state.state.clone();
            let _ = self.set_state_at(Some(now), entity_id, &st, Some(attrs), false, &origin);
        }
        let data = json!({"name": name, "entity_id": entity_id, "source": source});
        let now = self.stamp(Some(now));
        self.stage_in(
            "automation_triggered",
            &data.to_string(),
            now,
            &ctx,
            origin.parent_id.as_deref(),
            None,
        );
        origin
    }

    /// Runs script `entity_id` (named `name`) for user `user_id` as Home Assistant does: in the
    /// caller's context — `script_started` is fired in it, then the script's entity turns `on` in
    /// it — and returns that context for its actions; [`Inner::end_script`] turns it `off` again.
    pub(crate) fn start_script(
        &mut self,
        at: Option<i64>,
        entity_id: &str,
        name: &str,
        user_id: &str,
    ) -> Origin {
        let now = self.stamp(at);
        let ctx = self.context_id(now);
        let origin = Origin {
            id: Some(ctx.clone()),
            parent_id: None,
            user_id: Some(user_id.to_owned()),
        };
        let data = json!({"name": name, "entity_id": entity_id});
        self.stage_in(
            "script_started",
            &data.to_string(),
            now,
            &ctx,
            None,
            Some(user_id),
        );
        if let Some(state) = self.state(entity_id) {
            let mut attrs = state.attributes.clone();
            attrs.insert("last_triggered".into(), json!(super::render::iso(now)));
            attrs.insert("current".into(), json!(1));
            let _ = self.set_state_at(Some(now), entity_id, "on", Some(attrs), false, &origin);
        }
        origin
    }

    /// A script's run in `origin` ends: its entity goes back `off`.
    pub(crate) fn end_script(&mut self, at: Option<i64>, entity_id: &str, origin: &Origin) {
        if let Some(state) = self.state(entity_id) {
            let mut attrs = state.attributes.clone();
            attrs.insert("current".into(), json!(0));
            let _ = self.set_state_at(at, entity_id, "off", Some(attrs), false, origin);
        }
    }

    fn run_automation(&mut self, automation: &Automation) {
        let name = automation
            .config
            .get("alias")
            .cloned()
            .unwrap_or(Value::Null);
        // a webhook trigger has no parent context
        let origin = self.start_run(None, &automation.entity_id, &name, "webhook", None);
        let actions = automation
            .config
            .get("actions")
            .or_else(|| automation.config.get("action"));
        let actions: Vec<Value> = match actions {
            Some(Value::Array(a)) => a.clone(),
            Some(v @ Value::Object(_)) => vec![v.clone()],
            _ => Vec::new(),
        };
        for action in actions {
            let Some(call) = action
                .get("action")
                .or_else(|| action.get("service"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let Some((domain, service)) = call.split_once('.') else {
                continue;
            };
            let mut data = action.get("data").cloned().unwrap_or_else(|| json!({}));
            if let (Some(obj), Some(e)) = (data.as_object_mut(), action.get("entity_id")) {
                obj.insert("entity_id".into(), e.clone());
            }
            if let Err(e) = self.call_service(domain, service, &data, action.get("target"), &origin)
            {
                tracing::warn!(automation = %automation.entity_id, error = %e, "automation action failed");
            }
        }
    }
}

/// Whether an automation has a webhook trigger for `webhook_id` that allows `method`.
fn webhook_triggers(config: &Value, webhook_id: &str, method: &str) -> bool {
    let triggers = config.get("triggers").or_else(|| config.get("trigger"));
    let list: Vec<&Value> = match triggers {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    };
    list.into_iter().any(|t| {
        let kind = t
            .get("trigger")
            .or_else(|| t.get("platform"))
            .and_then(Value::as_str);
        let methods = entity_ids_of(t.get("allowed_methods"));
        kind == Some("webhook")
            && t.get("webhook_id").and_then(Value::as_str) == Some(webhook_id)
            && if methods.is_empty() {
                method == "POST" || method == "PUT"
            } else {
                methods.iter().any(|m| m.eq_ignore_ascii_case(method))
            }
    })
}

/// Copies the given keys from `msg` into `row`; returns the old values of those that changed.
fn apply_keys(row: &mut Value, msg: &Value, keys: &[&str]) -> Map<String, Value> {
    let mut changes = Map::new();
    for k in keys {
        if let Some(v) = msg.get(*k)
            && row.get(*k) != Some(v)
        {
            changes.insert((*k).to_owned(), row.get(*k).cloned().unwrap_or(Value::Null));
            row[*k] = v.clone();
        }
    }
    changes
}

/// Whether `id` is a valid entity id (`domain.object_id`, lower case, digits and `_`).
pub(crate) fn valid_entity_id(id: &str) -> bool {
    let Some((domain, object)) = id.split_once('.') else {
        return false;
    };
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('_')
            && !s.ends_with('_')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    ok(domain) && ok(object) && !domain.contains("__")
}

/// The string `key` of a request, empty when missing (Home Assistant answers "not found").
fn str_field<'a>(msg: &'a Value, key: &str) -> &'a str {
    msg.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Position of the registry row whose `key` is `id`, or Home Assistant's `missing` error.
fn index_of(rows: &[Value], key: &str, id: &str, missing: &str) -> Result<usize, HubError> {
    rows.iter()
        .position(|r| r[key] == id)
        .ok_or_else(|| HubError::NotFound(missing.into()))
}

#[cfg(test)]
mod tests {
    use super::super::home::{Profile, generate};
    use super::*;

    fn hub() -> Hub {
        let clock = Clock::new(1.0, 0);
        Hub::new(
            generate(Profile::Small, 1, clock.now()),
            clock,
            1,
            "t".into(),
            4096,
            16,
        )
    }

    #[test]
    fn last_changed_moves_only_with_the_state_string() {
        let h = hub();
        let (mut rx, _) = h.subscribe();
        let (a, _) = h.with(|i| {
            i.set_state("sensor.x", "1", None, false, &Origin::user())
                .expect("set")
        });
        assert!(a.0);
        let (b, _) = h.with(|i| {
            let mut m = Map::new();
            m.insert("k".into(), json!(1));
            i.set_state("sensor.x", "1", Some(m), false, &Origin::user())
                .expect("set");
            i.state("sensor.x").cloned().expect("state")
        });
        assert!(b.last_updated > b.last_changed);
        let (c, _) = h.with(|i| {
            let mut m = Map::new();
            m.insert("k".into(), json!(1));
            i.set_state("sensor.x", "1", Some(m), false, &Origin::user())
                .expect("set");
            i.state("sensor.x").cloned().expect("state")
        });
        // an unchanged write only moves last_reported and fires nothing
        assert_eq!(c.last_updated, b.last_updated);
        assert!(c.last_reported > b.last_reported);
        let mut events = 0;
        while let Ok(batch) = rx.try_recv() {
            events += batch.events.len();
        }
        assert_eq!(events, 2);
    }

    #[test]
    fn services_switch_lights_and_unknown_services_fail() {
        let h = hub();
        let light = h
            .with(|i| {
                i.home
                    .states
                    .iter()
                    .find(|s| s.domain() == "light")
                    .map(|s| s.entity_id.clone())
            })
            .0
            .expect("a light");
        let (r, _) = h.with(|i| {
            i.call_service(
                "light",
                "turn_on",
                &json!({"entity_id": light, "brightness": 77}),
                None,
                &Origin::user(),
            )
        });
        assert_eq!(r.expect("ok").len(), 1);
        let (s, _) = h.with(|i| i.state(&light).cloned().expect("state"));
        assert_eq!(s.state, "on");
        assert_eq!(s.attributes["brightness"], 77);
        let (r, _) =
            h.with(|i| i.call_service("light", "explode", &json!({}), None, &Origin::user()));
        assert_eq!(r.err().map(|e| e.code()), Some("service_not_found"));
    }

    #[test]
    fn entity_rename_moves_state_and_reports_the_old_id() {
        let h = hub();
        let (mut rx, _) = h.subscribe();
        let old = h.with(|i| i.home.states[5].entity_id.clone()).0;
        let domain = crate::ha::model::domain_of(&old).to_owned();
        let new = format!("{domain}.renamed_thing");
        h.with(|i| {
            i.entity_update(&json!({"entity_id": old, "new_entity_id": new}))
                .expect("ok")
        });
        let (moved, _) = h.with(|i| (i.state(&old).is_none(), i.state(&new).is_some()));
        assert_eq!(moved, (true, true));
        let mut types = Vec::new();
        while let Ok(batch) = rx.try_recv() {
            for e in &batch.events {
                let v: Value = serde_json::from_str(&e.body).expect("json");
                types.push(e.event_type);
                if e.event_type == "entity_registry_updated" {
                    assert_eq!(v["data"]["old_entity_id"], old.as_str());
                    assert_eq!(v["data"]["changes"]["entity_id"], old.as_str());
                }
            }
        }
        assert_eq!(
            types,
            ["state_changed", "state_changed", "entity_registry_updated"]
        );
    }

    #[test]
    fn webhook_automation_turns_a_light_on() {
        let h = hub();
        let (mut rx, _) = h.subscribe();
        let light = h
            .with(|i| {
                i.home
                    .states
                    .iter()
                    .find(|s| s.domain() == "light")
                    .map(|s| s.entity_id.clone())
            })
            .0
            .expect("a light");
        h.with(|i| {
            i.automation_put(
                "a1",
                json!({
                    "alias": "Hook", "triggers": [{"trigger": "webhook", "webhook_id": "hook1"}],
                    "actions": [{"action": "light.turn_on", "target": {"entity_id": light}}],
                }),
            )
            .expect("stored");
        });
        assert_eq!(
            h.with(|i| i.webhook("other", "POST", json!({}), json!({})))
                .0,
            0
        );
        assert_eq!(
            h.with(|i| i.webhook("hook1", "GET", json!({}), json!({})))
                .0,
            0
        );
        assert_eq!(
            h.with(|i| i.state(&light).map(|s| s.state.clone()))
                .0
                .as_deref(),
            Some("off")
        );
        assert_eq!(
            h.with(|i| i.webhook("hook1", "POST", json!({}), json!({})))
                .0,
            1
        );
        let (s, _) = h.with(|i| i.state(&light).cloned().expect("light"));
        assert_eq!(s.state, "on");
        // the change is made in the run's context (a webhook trigger has no parent), announced
        // by automation_triggered first
        assert!(s.context_parent.is_none() && s.context_user.is_none());
        let mut triggered = None;
        while let Ok(batch) = rx.try_recv() {
            for e in &batch.events {
                let v: Value = serde_json::from_str(&e.body).expect("json");
                if e.event_type == "automation_triggered" {
                    assert_eq!(v["data"]["source"], "webhook");
                    triggered = v["context"]["id"].as_str().map(str::to_owned);
                } else if v["data"]["entity_id"] == light.as_str() {
                    assert_eq!(triggered.as_deref(), Some(s.context_id.as_str()));
                }
            }
        }
        assert_eq!(triggered.as_deref(), Some(s.context_id.as_str()));
        assert_eq!(h.with(|i| i.webhook_calls.len()).0, 3);
    }

    #[test]
    fn the_clock_never_runs_ahead_of_the_wall_clock() {
        let clock = Clock::new(1e6, 3_600_000_000);
        let first = clock.now();
        assert!(first <= chrono::Utc::now().timestamp_micros() - 3_500_000_000);
        std::thread::sleep(std::time::Duration::from_millis(20));
        // 20 ms at a million times is over five hours: capped at now
        let later = clock.now();
        assert!(later <= chrono::Utc::now().timestamp_micros());
        assert!(clock.caught_up());
        assert!(later - first >= 3_500_000_000);
    }

    #[test]
    fn entity_ids_are_validated() {
        assert!(valid_entity_id("sensor.a_1"));
        assert!(!valid_entity_id("sensor"));
        assert!(!valid_entity_id("Sensor.a"));
        assert!(!valid_entity_id("sensor.a b"));
    }
}
