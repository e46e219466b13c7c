//! The heartbeat: every `heartbeat.interval_minutes`, re-write each recorded entity's current
//! value at the current time, so graphs of rarely changing entities have no gaps (the most requested
//! feature Home Assistant's own InfluxDB integration lacks).
//!
//! A heartbeat point is the entity's current state mapped as a state change fired now: in the
//! `homeiq` schema it carries the same tags and fields as the state's own point, stamped with the
//! heartbeat time instead of `last_updated`; in `ha_compat` it is exactly what the integration would
//! write for that state at that time. It runs on its own task, reads the current states and (once a
//! round) each entity's device and area from the SQLite mirror, so it never delays the pipeline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use std::collections::HashMap;

use super::filter::EntityFilter;
use crate::config::SchemaMode;
use crate::ha::model::StateChanged;
use crate::registry::RegistryStore;
use crate::store::origin::{Origin, OriginKind};
use crate::store::point::FieldValue;
use crate::store::schema::{EntityMeta, ORIGIN_FIELDS, PointMapper};
use crate::store::sink::HistoryWriter;
use crate::store::states::CurrentStates;

crate::counters::counters! {
    /// Heartbeat counters.
    pub struct HeartbeatCounters => HeartbeatCounts ("homeiq_heartbeat") {
        /// Heartbeat rounds run.
        rounds,
        /// Current values re-written by the heartbeat.
        points,
        /// Rounds skipped because the storage is critical (`storage_guard.critical_percent`).
        skipped_rounds,
    }
}

/// Whether heartbeat rounds are held back: set by the storage guard while the data directory's
/// disk is critical, cleared when it is below again. Cheap to clone; every clone is the same
/// switch.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeartbeatPause(Arc<std::sync::atomic::AtomicBool>);

impl HeartbeatPause {
    /// Holds rounds back (`true`) or lets them run again.
    pub(crate) fn set(&self, paused: bool) {
        self.0.store(paused, Ordering::Relaxed);
    }

    /// Whether rounds are held back.
    pub(crate) fn is_paused(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a heartbeat needs.
pub struct Heartbeat {
    /// Time between rounds.
    pub interval: Duration,
    /// Which entities are recorded.
    pub filter: EntityFilter,
    /// The schema's mapper.
    pub mapper: PointMapper,
    /// Where points go.
    pub writer: HistoryWriter,
    /// The current states.
    pub states: CurrentStates,
    /// The registry mirror: device and area per entity, for the `homeiq` tags.
    pub registry: RegistryStore,
    /// Counters for health.
    pub counters: Arc<HeartbeatCounters>,
    /// Held back while the storage is critical.
    pub(crate) pause: HeartbeatPause,
}

impl Heartbeat {
    /// Runs rounds every `interval` until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if self.pause.is_paused() {
                        self.counters.skipped_rounds.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.round().await;
                    }
                }
                () = cancel.cancelled() => return,
            }
        }
    }

    /// One round: a point per recorded entity with a state. Returns the points pushed.
    pub async fn round(&self) -> usize {
        let placement: HashMap<String, EntityMeta> = match self.registry.list_entities().await {
            Ok(rows) => rows
                .into_iter()
                .map(|e| {
                    let meta = EntityMeta {
                        device_id: e.device_id,
                        area_id: e.effective_area_id,
                    };
                    (e.entity_id, meta)
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat without registry tags: mirror unreadable");
                HashMap::new()
            }
        };
        let now = Utc::now();
        let mut pushed = 0;
        for entity_id in self.states.entity_ids() {
            if !self.filter.allows(&entity_id) {
                continue;
            }
            let Some(state) = self.states.get(&entity_id) else {
                continue;
            };
            let event = StateChanged {
                entity_id: entity_id.clone(),
                had_old_state: false,
                new_state: Some((*state).clone()),
                time_fired: now,
            };
            let meta = placement.get(&entity_id).cloned().unwrap_or_default();
            let Some(mut point) = self.mapper.map_change(&event, &meta) else {
                continue;
            };
            point.time = self.mapper.precision().timestamp(&now);
            // marked, so rollups never count it as a sample: a field of the `homeiq` point, a
            // `homeiq_origin` point beside the (unchanged) `ha_compat` one
            let beat = Origin::of(OriginKind::Heartbeat);
            let beside = self.mapper.origin_point(state.as_ref(), now, &beat);
            if self.mapper.mode() == SchemaMode::Homeiq {
                point.fields.push((
                    ORIGIN_FIELDS[0].into(),
                    FieldValue::Str(OriginKind::Heartbeat.as_str().to_owned()),
                ));
            }
            self.writer.push(point);
            if let Some(p) = beside {
                self.writer.push(p);
            }
            pushed += 1;
        }
        self.counters.rounds.fetch_add(1, Ordering::Relaxed);
        self.counters
            .points
            .fetch_add(pushed as u64, Ordering::Relaxed);
        tracing::debug!(points = pushed, "heartbeat written");
        pushed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InfluxSettings;
    use crate::ha::model::State;
    use crate::store::influx::{InfluxClient, spawn_writer};

    fn state(entity_id: &str, value: &str) -> State {
        let then = Utc::now() - chrono::Duration::hours(3);
        State {
            entity_id: entity_id.into(),
            state: value.into(),
            attributes: serde_json::from_str(r#"{"unit_of_measurement":"W"}"#).expect("json"),
            last_changed: then,
            last_updated: then,
            last_reported: None,
            context: None,
        }
    }

    /// Every recorded entity gets a point stamped now with its current value; excluded ones none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_rewrites_current_values_at_the_current_time() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = std::env::var("INFLUX_URL").expect("INFLUX_URL: this test needs a real InfluxDB");
        let settings = InfluxSettings {
            url,
            database: format!("t_heartbeat_{}", std::process::id()),
            flush_interval_ms: 10,
            ..InfluxSettings::default()
        };
        let client = InfluxClient::new(&settings).expect("client");
        client.create_database().await.expect("create");
        let mapper = PointMapper::new(&settings);
        let writer: HistoryWriter =
            spawn_writer(&settings, client.clone(), mapper.precision()).into();
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = RegistryStore::open(&dir.path().join(crate::config::METADATA_DB_FILE))
            .await
            .expect("registry");
        let states = CurrentStates::default();
        states.insert(state("sensor.kept", "12.5"));
        states.insert(state("sensor.excluded", "3"));
        let exclude = crate::config::EntityFilterSettings {
            entities: vec!["sensor.excluded".into()],
            ..Default::default()
        };
        let heartbeat = Heartbeat {
            interval: Duration::from_secs(60),
            filter: EntityFilter::new(&Default::default(), &exclude).expect("filter"),
            mapper,
            writer: writer.clone(),
            states,
            registry,
            counters: Arc::default(),
            pause: HeartbeatPause::default(),
        };
        let before = Utc::now();
        assert_eq!(heartbeat.round().await, 1);
        writer.clone().shutdown(Duration::from_secs(5)).await;
        let result = client
            .query("SELECT value, state, origin FROM sensor")
            .await
            .expect("query");
        let rows = &result.first_series()[0].values;
        client.drop_database().await.expect("drop");
        assert_eq!(rows.len(), 1, "{rows:?}");
        let time = rows[0][0].as_i64().expect("epoch ms");
        assert!(
            time >= before.timestamp_millis(),
            "stamped now, not at last_updated"
        );
        assert_eq!(rows[0][1], 12.5);
        // marked: rollups never count it as a sample
        assert_eq!(rows[0][3], "heartbeat");
        assert_eq!(heartbeat.counters.points.load(Ordering::Relaxed), 1);
    }

    /// While the storage guard holds it (critical storage) a round is skipped and counted; it
    /// resumes when released.
    #[tokio::test]
    async fn a_paused_heartbeat_skips_rounds_until_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (writer, _history) = crate::store::embedded::open(
            &crate::store::embedded::history_path(dir.path()),
            Default::default(),
        )
        .await
        .expect("embedded");
        let registry = RegistryStore::open(&dir.path().join(crate::config::METADATA_DB_FILE))
            .await
            .expect("registry");
        let states = CurrentStates::default();
        states.insert(state("sensor.kept", "12.5"));
        let pause = HeartbeatPause::default();
        pause.set(true);
        let counters = Arc::new(HeartbeatCounters::default());
        let heartbeat = Heartbeat {
            interval: Duration::from_millis(10),
            filter: EntityFilter::new(&Default::default(), &Default::default()).expect("filter"),
            mapper: PointMapper::homeiq(&[]),
            writer: HistoryWriter::from(writer.clone()),
            states,
            registry,
            counters: counters.clone(),
            pause: pause.clone(),
        };
        let cancel = CancellationToken::new();
        let task = tokio::spawn(heartbeat.run(cancel.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let until = |what: &'static str, done: &dyn Fn() -> bool| {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            done()
        };
        while !until("skipped rounds", &|| {
            counters.skipped_rounds.load(Ordering::Relaxed) >= 2
        }) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            counters.rounds.load(Ordering::Relaxed),
            0,
            "nothing rewritten"
        );
        pause.set(false);
        while !until("a round after the release", &|| {
            counters.points.load(Ordering::Relaxed) >= 1
        }) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cancel.cancel();
        task.await.expect("heartbeat task");
        writer.shutdown(Duration::from_secs(5)).await;
    }
}
