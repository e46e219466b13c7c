//! The ingest facade: [`start`] wires the Home Assistant client, the pipeline, the registry task,
//! the gap backfill's cursor and the heartbeat, and returns an [`Ingest`] that owns their tasks
//! and stops them in the order the shutdown stages need.
//!
//! ```text
//! Home Assistant ─▶ ha client ─messages─▶ pipeline ─points─▶ writer
//!                                            ├─registry jobs─▶ registry task ─▶ SQLite, catalog
//!                                            ├─live events─▶ live bus
//!                                            └─events, snapshots─▶ backfill (cursor task)
//!                          heartbeat (current states ─▶ writer)
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    BackfillHandle, BackfillOptions, EntityFilter, Heartbeat, HeartbeatCounters, IngestCounters,
    LiveBus, Pipeline, heartbeat::HeartbeatPause,
};
use crate::ha::{self, ClientOptions, HaHandle};
use crate::registry::{
    CatalogHandle, REGISTRY_QUEUE, RegistryStore, RegistrySyncState, run_registry_task,
};
use crate::store::schema::PointMapper;
use crate::store::sink::HistoryWriter;
use crate::store::states::CurrentStates;
use crate::task::OwnedTask;

/// What the ingest is built from.
pub(crate) struct IngestParts {
    /// How to reach Home Assistant.
    pub(crate) client: ClientOptions,
    /// Which entities are recorded.
    pub(crate) filter: EntityFilter,
    /// The schema's mapper.
    pub(crate) mapper: PointMapper,
    /// Where points go.
    pub(crate) writer: HistoryWriter,
    /// The SQLite registry mirror the registry task writes.
    pub(crate) registry: RegistryStore,
    /// The in-memory catalog the registry task reloads.
    pub(crate) catalog: CatalogHandle,
    /// Where accepted changes are published (subscribe before [`start`]: nothing published
    /// before is kept).
    pub(crate) live: LiveBus,
    /// The gap backfill's options.
    pub(crate) backfill: BackfillOptions,
    /// Time between heartbeat rounds; `None`: no heartbeat.
    pub(crate) heartbeat: Option<Duration>,
    /// Holds heartbeat rounds back while the storage is critical (the storage guard sets it).
    pub(crate) heartbeat_pause: HeartbeatPause,
}

/// A running ingest: the handles the API reads, and the tasks it owns.
pub(crate) struct Ingest {
    /// The Home Assistant client.
    pub(crate) ha: HaHandle,
    /// The gap backfill.
    pub(crate) backfill: BackfillHandle,
    /// The pipeline's counters.
    pub(crate) counters: Arc<IngestCounters>,
    /// The heartbeat's counters.
    pub(crate) heartbeat: Arc<HeartbeatCounters>,
    /// Current states.
    pub(crate) states: CurrentStates,
    /// The registry task's status.
    pub(crate) registry_sync: RegistrySyncState,
    cancel: CancellationToken,
    ha_task: OwnedTask,
    pipeline_task: OwnedTask,
    heartbeat_task: Option<OwnedTask>,
    cursor_task: OwnedTask,
    registry_task: OwnedTask,
}

/// Starts reading from Home Assistant and recording. `cancel` (or [`Ingest::stop_reading`])
/// closes the connection; the pipeline then drains what was read.
pub(crate) fn start(parts: IngestParts, cancel: CancellationToken) -> Ingest {
    let IngestParts {
        client,
        filter,
        mapper,
        writer,
        registry,
        catalog,
        live,
        backfill,
        heartbeat,
        heartbeat_pause,
    } = parts;
    let (ha, messages, ha_task) = ha::spawn(client, cancel.child_token());
    let states = CurrentStates::default();
    let counters = Arc::new(IngestCounters::default());
    let registry_sync = RegistrySyncState::default();
    let (jobs_tx, jobs_rx) = mpsc::channel(REGISTRY_QUEUE);
    let registry_task = OwnedTask::spawn(
        "registry",
        run_registry_task(registry.clone(), jobs_rx, registry_sync.clone(), catalog),
    );
    let backfill = BackfillHandle::open(backfill, ha.clone(), mapper.clone(), writer.clone());
    let heartbeat_counters = Arc::new(HeartbeatCounters::default());
    let heartbeat_task = heartbeat.map(|interval| {
        let heartbeat = Heartbeat {
            interval,
            filter: filter.clone(),
            mapper: mapper.clone(),
            writer: writer.clone(),
            states: states.clone(),
            registry,
            counters: heartbeat_counters.clone(),
            pause: heartbeat_pause,
        };
        OwnedTask::spawn("heartbeat", heartbeat.run(cancel.child_token()))
    });
    let mut pipeline = Pipeline::new(
        ha.clone(),
        filter,
        mapper,
        writer,
        jobs_tx,
        states.clone(),
        counters.clone(),
    )
    .with_live_bus(live);
    if backfill.enabled() {
        pipeline = pipeline.with_backfill(backfill.feed());
    }
    let cursor_task = OwnedTask::spawn(
        "backfill cursor",
        backfill.clone().run_cursor(cancel.child_token()),
    );
    let pipeline_task = OwnedTask::spawn("pipeline", pipeline.run(messages));
    Ingest {
        ha,
        backfill,
        counters,
        heartbeat: heartbeat_counters,
        states,
        registry_sync,
        cancel,
        ha_task: OwnedTask::of("home assistant client", ha_task),
        pipeline_task,
        heartbeat_task,
        cursor_task,
        registry_task,
    }
}

impl Ingest {
    /// Closes the connection to Home Assistant, ends the heartbeat and the cursor task, and stops
    /// a backfill run under way (the next start repeats it). Returns at once.
    pub(crate) fn stop_reading(&self) {
        self.cancel.cancel();
        self.backfill.stop_run();
    }

    /// Waits until the Home Assistant client has stopped: nothing more is read.
    pub(crate) async fn connection_closed(&mut self) {
        self.ha_task.join().await;
    }

    /// Waits until the pipeline has handled everything read and the heartbeat has ended.
    pub(crate) async fn drained(&mut self) {
        self.pipeline_task.join().await;
        if let Some(heartbeat) = &mut self.heartbeat_task {
            heartbeat.join().await;
        }
    }

    /// After the writer's flush: records how far everything is durable (`flushed`: nothing was
    /// left in the writer's memory).
    pub(crate) async fn persist_cursor(&mut self, flushed: bool) {
        self.cursor_task.join().await;
        self.backfill.shutdown(flushed).await;
    }

    /// Waits until the registry task has applied the pipeline's last jobs.
    pub(crate) async fn registry_applied(&mut self) {
        self.registry_task.join().await;
    }
}
