//! Importing the past: what Home Assistant's recorder already holds, read once into HomeIQ, so a
//! new install does not start with an empty history.
//!
//! # When
//!
//! On HomeIQ's first start (no import recorded in `homeiq.db`; `import.on_first_start`, default
//! on) and on request (`POST /api/v1/import`). An import a stop cut short is resumed by itself at
//! the next start; a failed one by the next request. `GET /api/v1/import` shows the last one.
//!
//! # What, in two phases
//!
//! 1. **States** (`history/history_during_period`, every recorded state with its attributes) for
//!    the window the recorder still holds (`purge_keep_days`). Where that window begins is found
//!    first, by bisection on `include_start_time_state` probes (Home Assistant answers "which
//!    entities had a state before T", a bounded reply; about 17 probes over ten years to an
//!    hour's precision). The states are mapped by the schema's [`PointMapper`] and handed to the
//!    history writer exactly as the gap backfill does ([`push_bounded`]), with origin `unknown`
//!    (history carries no context). A state equal to the entity's previous one in state and
//!    attributes is skipped, as the backfill does (Home Assistant records every entity again at
//!    each of its restarts).
//! 2. **Long-term statistics** (`recorder/list_statistic_ids`, then
//!    `recorder/statistics_during_period` with period `hour` and types mean, min, max, sum and
//!    state, in the unit each entity's state uses now) as [`ImportedHour`] rows to the
//!    [`StatisticsSink`] (the rollups' tier `imported`). Statistic ids with a `:` are external
//!    statistics (`opower:…`, `demo:…`): they belong to no entity, HomeIQ's history and rollups are
//!    per entity, so they are **skipped** and counted (`external_statistics_skipped`).
//!    Each batch first asks the `month` period over the whole span, a reply of at most twelve rows
//!    a year per id, to learn where its statistics begin; then 30-day windows of hours.
//!
//! # Nothing twice
//!
//! The boundary is **per entity**: an entity's states are imported only before HomeIQ's first
//! stored record of it (and before the import was planned, for entities HomeIQ never recorded).
//! A global "before HomeIQ first ran" boundary would either re-import the states HomeIQ's first
//! snapshot already wrote (the snapshot stores each current state at its own `last_updated`,
//! often days old) or, for an install that ran for a while, miss nothing only by luck; per entity
//! it is exact, and it also covers entities added later and entities HomeIQ never saw (removed
//! from Home Assistant, still in its recorder). Hourly statistics are imported only for hours
//! that **end** at or before the entity's first raw record once the states are in, so the
//! `imported` tier and HomeIQ's own rollups (computed from raw data) never cover the same hour.
//! The boundaries are computed when a phase is planned and stored with the plan
//! (`import_plan`): a resumed run uses them, never the first records its own writes moved, and a
//! later request never moves them forward again (raw retention deleting old points cannot make a
//! second import fill what rollups already hold). Points have a fixed identity (entity and
//! time) and imported hours a key (entity and hour), so whatever a crash makes the import read
//! twice overwrites itself.
//!
//! # Bounded, gentle, resumable
//!
//! Requests ask for at most [`ENTITIES_PER_REQUEST`] entities over a time slice that adapts so
//! replies stay near [`TARGET_REPLY_BYTES`] (1 hour to start, at most a day), or
//! [`STATISTICS_PER_REQUEST`] statistic ids over 30 days (about 2 MB); a reply larger than
//! [`recorder::MAX_REPLY_BYTES`] is refused and asked again smaller. Nothing is collected beyond
//! one reply. Requests go through a token bucket of `import.requests_per_second` (default 5:
//! Home Assistant answers each from its recorder's executor, so it keeps serving everything
//! else), and the writer's queue bounds how fast points are handed over.
//!
//! The position (phase, batch, window start) is saved in `import_runs` after each chunk once it is
//! durable: statistics when the sink returned, states when the writer no longer holds them (the
//! backfill's [`DurabilityTracker`] rules: the writer was idle, or held a small backlog long
//! enough with no failed write). A lost connection is waited out and the chunk asked again (up to
//! five times); a reply that cannot be trusted (missing fields, a timestamp that is no time, too
//! large) fails the run with the command named, keeping everything imported before it and the
//! position, so `POST /api/v1/import` resumes there. A stop ends the run as `interrupted`.

pub(crate) mod api;
mod recorder;
pub(crate) mod sink;
mod store;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sea_orm::DbErr;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::config::ImportSettings;
use crate::ha::CommandError;
use crate::ha::model::{State, StateChanged};
use crate::health::Health;
use crate::ingest::EntityFilter;
use crate::ingest::backfill::{
    DurabilityTracker, WriterView, next_slice, push_bounded, same_as_recorded,
};
use crate::registry::CatalogHandle;
use crate::store::history::{HistoryQuery, HistoryStore, Order};
use crate::store::schema::{EntityMeta, PointMapper};
use crate::store::sink::HistoryWriter;
use crate::store::states::CurrentStates;
use crate::task::OwnedTask;
pub(crate) use recorder::{HaRecorder, Recorder};
pub(crate) use sink::StatisticsSink;
use sink::{ImportedHour, SinkError};
use store::{ImportStore, run};

/// Entities per history request.
pub(crate) const ENTITIES_PER_REQUEST: usize = 50;
/// Statistic ids per statistics request.
pub(crate) const STATISTICS_PER_REQUEST: usize = 20;
/// Reply size the history slices aim at.
pub(crate) const TARGET_REPLY_BYTES: usize = 2 << 20;
/// A batch's first history slice.
const FIRST_SLICE_US: i64 = 3_600 * 1_000_000;
/// The shortest history slice.
const MIN_SLICE_US: i64 = 1_000_000;
/// The longest history slice.
const MAX_SLICE_US: i64 = 24 * FIRST_SLICE_US;
/// One statistics request's window.
const STATISTICS_WINDOW_US: i64 = 30 * MAX_SLICE_US;
/// How far back the oldest recorded state is looked for.
const PROBE_SPAN_US: i64 = 3_650 * MAX_SLICE_US;
/// How precisely.
const PROBE_PRECISION_US: i64 = FIRST_SLICE_US;
/// How far back statistics are looked for.
const STATISTICS_SPAN_US: i64 = 20 * 366 * MAX_SLICE_US;
/// One hour, µs.
const HOUR_US: i64 = FIRST_SLICE_US;
/// Attempts of one request while the connection is lost or slow.
const MAX_ATTEMPTS: u32 = 5;
/// How often readiness and durability are checked.
const POLL: Duration = Duration::from_millis(50);
/// How long the plan waits for the writer to store HomeIQ's own first points (the snapshot).
const SETTLE_WAIT: Duration = Duration::from_secs(10);

/// Why an import was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ImportTrigger {
    /// HomeIQ's first start.
    FirstStart,
    /// `POST /api/v1/import`.
    Manual,
}

/// Where an import is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ImportRunStatus {
    /// Under way.
    Running,
    /// Everything imported.
    Succeeded,
    /// Stopped by an error; a request resumes it.
    Failed,
    /// Cut short by a stop; the next start resumes it.
    Interrupted,
}

/// Which part of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ImportPhase {
    /// Choosing the entities and their boundaries, finding the recorder's oldest state.
    Planning,
    /// Importing states.
    States,
    /// Importing hourly statistics.
    Statistics,
    /// Finished.
    Done,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The stored (and serialised) name.
            pub(crate) fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            /// The value of a stored name.
            pub(crate) fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
    };
}
names!(ImportTrigger { FirstStart => "first_start", Manual => "manual" });
names!(ImportRunStatus { Running => "running", Succeeded => "succeeded", Failed => "failed", Interrupted => "interrupted" });
names!(ImportPhase { Planning => "planning", States => "states", Statistics => "statistics", Done => "done" });

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError {
    /// A reply too large to decode.
    #[error(
        "Home Assistant's reply to {command} is {bytes} bytes, more than the {} MiB HomeIQ decodes",
        recorder::MAX_REPLY_BYTES >> 20
    )]
    TooLarge {
        /// The command.
        command: &'static str,
        /// Its size.
        bytes: usize,
    },
    /// A reply that is not what Home Assistant sends.
    #[error("cannot use Home Assistant's reply to {command}: {message}")]
    Decode {
        /// The command.
        command: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A command failed.
    #[error("{command} failed: {source}")]
    Request {
        /// The command.
        command: &'static str,
        /// Why.
        source: CommandError,
    },
    /// The statistics could not be stored.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The metadata database failed.
    #[error("the metadata database failed: {0}")]
    Db(#[from] DbErr),
    /// HomeIQ's own history could not be read.
    #[error("reading HomeIQ's history failed: {0}")]
    History(String),
    /// HomeIQ is stopping.
    #[error("HomeIQ stopped during the import")]
    Cancelled,
}

/// The counts of one phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct ImportPhaseCounts {
    /// Entities (statistic ids) planned.
    pub total: u64,
    /// Of them, finished.
    pub done: u64,
    /// States (hourly rows) imported.
    pub imported: u64,
    /// States skipped (repeating the previous one, or mapped to no point) or rows left out
    /// (hours HomeIQ holds raw data for, or outside the window asked).
    pub skipped: u64,
}

/// What a run has done, saved with its position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Progress {
    states: ImportPhaseCounts,
    statistics: ImportPhaseCounts,
    external_statistics: u64,
    requests: u64,
    batches: u64,
    chunks: u64,
}

crate::counters::counters! {
    /// The import's counters since start.
    pub(crate) struct ImportCounters => ImportCounts ("homeiq_import") {
        /// Imports started or resumed.
        runs,
        /// Imports that failed.
        failures,
        /// Requests sent to Home Assistant's recorder.
        requests,
        /// States imported into HomeIQ's history.
        states => "states_imported",
        /// Hourly statistics rows imported.
        statistics_rows => "statistics_rows_imported",
    }
}

/// Where a run is: what `GET /api/v1/import` shows of its saved position.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ImportPosition {
    /// The phase.
    pub phase: ImportPhase,
    /// The next batch of the phase (0-based).
    pub batch: i64,
    /// Batches in the phase.
    pub batches: u64,
    /// Where the next window of that batch starts (`null`: at its beginning).
    pub window_start: Option<DateTime<Utc>>,
}

/// One import, as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ImportRunView {
    /// Sequence number.
    pub id: i64,
    /// `first_start` or `manual`.
    pub trigger: ImportTrigger,
    /// `running`, `succeeded`, `failed` or `interrupted`.
    pub status: ImportRunStatus,
    /// When it was started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed or stopped.
    pub error: Option<String>,
    /// Nothing at or after this instant is imported (HomeIQ records it itself).
    pub planned_at: Option<DateTime<Utc>>,
    /// The oldest state Home Assistant's recorder holds (an hour's precision).
    pub recorder_oldest_state: Option<DateTime<Utc>>,
    /// States: entities planned and done, states imported and skipped.
    pub states: ImportPhaseCounts,
    /// Statistics: ids planned and done, hourly rows imported and left out.
    pub statistics: ImportPhaseCounts,
    /// External statistics (ids with `:`, no entity) left out.
    pub external_statistics_skipped: u64,
    /// Requests sent to Home Assistant.
    pub requests: u64,
    /// The saved position a resume starts from.
    pub position: ImportPosition,
}

/// `GET /api/v1/import`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ImportStatus {
    /// Whether an import is under way.
    pub running: bool,
    /// `import.on_first_start`.
    pub on_first_start: bool,
    /// `import.requests_per_second`.
    pub requests_per_second: u32,
    /// The last import (`null`: none yet).
    pub run: Option<ImportRunView>,
    /// Counters since HomeIQ started.
    pub counts: ImportCounts,
}

/// Why a request to import was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// One is under way.
    #[error("an import is under way")]
    Busy,
    /// The metadata database failed.
    #[error("the metadata database failed: {0}")]
    Db(#[from] DbErr),
}

/// How the import hands points over durably (from the backfill's options).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Durability {
    /// A push waits while the writer holds more.
    pub max_queued: usize,
    /// See [`DurabilityTracker::new`].
    pub residence: Duration,
    /// See [`DurabilityTracker::new`].
    pub small_backlog: usize,
}

/// What [`Import::open`] needs.
pub(crate) struct ImportParts {
    pub settings: ImportSettings,
    pub db: sea_orm::DatabaseConnection,
    pub recorder: Arc<dyn Recorder>,
    pub history: HistoryStore,
    pub writer: HistoryWriter,
    pub mapper: PointMapper,
    pub filter: EntityFilter,
    pub catalog: CatalogHandle,
    pub states: CurrentStates,
    pub sink: Arc<dyn StatisticsSink>,
    pub durability: Durability,
}

struct Inner {
    parts: ImportParts,
    store: ImportStore,
    limiter: DefaultDirectRateLimiter,
    counters: ImportCounters,
    busy: Arc<tokio::sync::Mutex<()>>,
    current: Mutex<Option<OwnedTask>>,
    stop: CancellationToken,
    latest: Mutex<Option<(run::Model, Progress)>>,
    /// Test seam: the run stops (as at shutdown) after this many chunks.
    #[cfg(test)]
    stop_after_chunks: std::sync::atomic::AtomicU64,
}

/// The import; cheap to clone.
#[derive(Clone)]
pub(crate) struct Import(Arc<Inner>);

impl std::fmt::Debug for Import {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Import").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn progress_of(run: &run::Model) -> Progress {
    serde_json::from_str(&run.progress).unwrap_or_default()
}

fn time_us(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
}

fn floor_hour(us: i64) -> i64 {
    us.div_euclid(HOUR_US) * HOUR_US
}

/// Whether Home Assistant does not know the command (the `history` integration or the
/// recorder's WebSocket API is not loaded, or a simulator): that phase has nothing to import.
fn unknown_command(e: &ImportError) -> bool {
    matches!(e, ImportError::Request { source: CommandError::Failed { code, .. }, .. } if code == "unknown_command")
}

/// Batches of `size` in `n` items.
pub(crate) fn batch_count(n: usize, size: usize) -> u64 {
    n.div_ceil(size.max(1)) as u64
}

/// The plan rows of batch `batch`.
fn batch_of(plan: &[(String, i64)], batch: usize, size: usize) -> &[(String, i64)] {
    let start = batch.saturating_mul(size).min(plan.len());
    &plan[start..(start + size).min(plan.len())]
}

/// Where a batch's windows begin: the saved position when it is inside the batch, else `from`.
pub(crate) fn resume_from(window_us: Option<i64>, from: i64) -> i64 {
    window_us.map_or(from, |w| w.max(from))
}

/// The next bisection probe between `lo` (no state before it) and `hi` (some state before it),
/// `None` once they are within `precision`.
pub(crate) fn next_probe(lo: i64, hi: i64, precision: i64) -> Option<i64> {
    (hi - lo > precision).then(|| lo + (hi - lo) / 2)
}

/// Hours of `rows` that end at or before `before` (µs) and start inside `[from, to)`; returns
/// them and how many were left out.
pub(crate) fn hours_before(
    rows: Vec<ImportedHour>,
    before: i64,
    from: i64,
    to: i64,
) -> (Vec<ImportedHour>, u64) {
    let n = rows.len();
    let kept: Vec<ImportedHour> = rows
        .into_iter()
        .filter(|r| {
            let s = r.start.timestamp_micros();
            s >= from && s < to && s.saturating_add(HOUR_US) <= before
        })
        .collect();
    let left = (n - kept.len()) as u64;
    (kept, left)
}

/// The position after each chunk waits here until the writer no longer holds its points.
struct Pending {
    tracker: DurabilityTracker,
    seq: i64,
    queue: VecDeque<(i64, i64, Option<i64>)>,
}

impl Pending {
    fn new(d: &Durability) -> Self {
        Pending {
            tracker: DurabilityTracker::new(Some(0), d.residence, d.small_backlog),
            seq: 0,
            queue: VecDeque::new(),
        }
    }

    /// A chunk was handed over (`points`: whether it had any); after it the position is `pos`.
    fn handed(&mut self, points: bool, pos: (i64, Option<i64>)) {
        if points {
            self.seq += 1;
        }
        self.queue.push_back((self.seq, pos.0, pos.1));
    }

    /// The newest position whose points are all durable now, if it moved.
    fn durable(&mut self, writer: &HistoryWriter) -> Option<(i64, Option<i64>)> {
        let (held, retries) = writer.held_and_retries();
        self.tracker
            .sample(Instant::now(), Some(self.seq), WriterView { held, retries });
        let done = self.tracker.durable().unwrap_or(0);
        let mut last = None;
        while let Some(&(seq, b, w)) = self.queue.front()
            && seq <= done
        {
            last = Some((b, w));
            self.queue.pop_front();
        }
        last
    }
}

/// One run under way.
struct Ctx {
    run: run::Model,
    progress: Progress,
}

impl Import {
    /// Marks imports a stop cut short as interrupted and loads the last one.
    pub(crate) async fn open(parts: ImportParts) -> Result<Self, DbErr> {
        let store = ImportStore::new(parts.db.clone());
        let interrupted = store.interrupt_leftovers().await?;
        if interrupted > 0 {
            tracing::info!("an import was under way when HomeIQ stopped; it resumes");
        }
        let latest = store.latest().await?.map(|r| {
            let p = progress_of(&r);
            (r, p)
        });
        let rate = NonZeroU32::new(parts.settings.requests_per_second).unwrap_or(NonZeroU32::MIN);
        Ok(Import(Arc::new(Inner {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(NonZeroU32::MIN)),
            parts,
            store,
            counters: ImportCounters::default(),
            busy: Arc::new(tokio::sync::Mutex::new(())),
            current: Mutex::new(None),
            stop: CancellationToken::new(),
            latest: Mutex::new(latest),
            #[cfg(test)]
            stop_after_chunks: std::sync::atomic::AtomicU64::new(u64::MAX),
        })))
    }

    /// At start: resumes an interrupted import, or starts the first one
    /// (`import.on_first_start`).
    pub(crate) async fn start(&self) -> Result<(), Refusal> {
        let latest = lock(&self.0.latest).as_ref().map(|(r, _)| r.status.clone());
        match latest.as_deref().and_then(ImportRunStatus::parse) {
            Some(ImportRunStatus::Interrupted) => {
                self.request(ImportTrigger::Manual).await.map(|_| ())
            }
            None if self.0.parts.settings.on_first_start => {
                self.request(ImportTrigger::FirstStart).await.map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// Starts an import or, when the last one is unfinished (failed or interrupted), resumes it.
    /// Refused while one runs.
    pub(crate) async fn request(&self, trigger: ImportTrigger) -> Result<ImportRunView, Refusal> {
        let inner = &self.0;
        let Ok(guard) = Arc::clone(&inner.busy).try_lock_owned() else {
            return Err(Refusal::Busy);
        };
        let last = lock(&inner.latest).clone();
        let run = match last {
            Some((mut r, p))
                if matches!(
                    ImportRunStatus::parse(&r.status),
                    Some(
                        ImportRunStatus::Failed
                            | ImportRunStatus::Interrupted
                            | ImportRunStatus::Running
                    )
                ) =>
            {
                r.status = ImportRunStatus::Running.as_str().to_owned();
                r.error = None;
                r.finished_at = None;
                inner.store.save(&r).await?;
                tracing::info!(id = r.id, phase = %r.phase, batch = r.batch, "import resumed");
                (r, p)
            }
            _ => {
                let now = Utc::now();
                let r = inner
                    .store
                    .create(trigger, now.timestamp_millis(), now.timestamp_micros())
                    .await?;
                tracing::info!(
                    id = r.id,
                    ?trigger,
                    "import of Home Assistant's past started"
                );
                (r, Progress::default())
            }
        };
        inner.counters.runs.fetch_add(1, Ordering::Relaxed);
        *lock(&inner.latest) = Some(run.clone());
        let view = view(&run.0, &run.1);
        let me = self.clone();
        let task = OwnedTask::spawn("import", async move {
            let (run, progress) = run;
            me.execute(Ctx { run, progress }).await;
            drop(guard);
        });
        *lock(&inner.current) = Some(task);
        Ok(view)
    }

    /// Stops the import under way (recorded as interrupted) and waits for it.
    pub(crate) async fn stop(&self) {
        self.0.stop.cancel();
        let task = lock(&self.0.current).take();
        if let Some(mut task) = task {
            task.join().await;
        }
    }

    /// Whether an import is under way.
    pub(crate) fn running(&self) -> bool {
        self.0.busy.try_lock().is_err()
    }

    /// The status for the API.
    pub(crate) fn status(&self) -> ImportStatus {
        let latest = lock(&self.0.latest).clone();
        ImportStatus {
            running: self.running(),
            on_first_start: self.0.parts.settings.on_first_start,
            requests_per_second: self.0.parts.settings.requests_per_second,
            run: self.view_of(latest.as_ref()),
            counts: self.0.counters.snapshot(),
        }
    }

    /// The counters, for `/metrics`.
    pub(crate) fn counts(&self) -> ImportCounts {
        self.0.counters.snapshot()
    }

    /// A failed import is a warning (it changes no verdict: HomeIQ records as before).
    pub(crate) fn health(&self) -> Health {
        let mut health = Health::default();
        if let Some((run, _)) = lock(&self.0.latest).as_ref()
            && ImportRunStatus::parse(&run.status) == Some(ImportRunStatus::Failed)
        {
            health.warn(format!(
                "the import of Home Assistant's past failed ({}); POST /api/v1/import resumes it",
                run.error.as_deref().unwrap_or("no reason recorded")
            ));
        }
        health
    }

    fn view_of(&self, run: Option<&(run::Model, Progress)>) -> Option<ImportRunView> {
        run.map(|(r, p)| view(r, p))
    }
}

/// The API view of a run.
fn view(r: &run::Model, p: &Progress) -> ImportRunView {
    let phase = ImportPhase::parse(&r.phase).unwrap_or(ImportPhase::Planning);
    ImportRunView {
        id: r.id,
        trigger: ImportTrigger::parse(&r.trigger).unwrap_or(ImportTrigger::Manual),
        status: ImportRunStatus::parse(&r.status).unwrap_or(ImportRunStatus::Failed),
        started_at: DateTime::from_timestamp_millis(r.requested_at),
        finished_at: r.finished_at.and_then(DateTime::from_timestamp_millis),
        error: r.error.clone(),
        planned_at: time_us(r.plan_at_us),
        recorder_oldest_state: r.states_from_us.and_then(time_us),
        states: p.states,
        statistics: p.statistics,
        external_statistics_skipped: p.external_statistics,
        requests: p.requests,
        position: ImportPosition {
            phase,
            batch: r.batch,
            batches: p.batches,
            window_start: r.window_us.and_then(time_us),
        },
    }
}

impl Import {
    /// Saves the run with its progress and shows it.
    async fn save(&self, ctx: &mut Ctx) -> Result<(), DbErr> {
        ctx.run.progress = serde_json::to_string(&ctx.progress).unwrap_or_else(|_| "{}".into());
        self.0.store.save(&ctx.run).await?;
        self.publish(ctx);
        Ok(())
    }

    fn publish(&self, ctx: &Ctx) {
        *lock(&self.0.latest) = Some((ctx.run.clone(), ctx.progress.clone()));
    }

    async fn execute(&self, mut ctx: Ctx) {
        let started = Instant::now();
        let result = self.phases(&mut ctx).await;
        let (status, error) = match &result {
            Ok(()) => (ImportRunStatus::Succeeded, None),
            Err(ImportError::Cancelled) => (
                ImportRunStatus::Interrupted,
                Some(ImportError::Cancelled.to_string()),
            ),
            Err(e) => {
                self.0.counters.failures.fetch_add(1, Ordering::Relaxed);
                (ImportRunStatus::Failed, Some(e.to_string()))
            }
        };
        ctx.run.status = status.as_str().to_owned();
        ctx.run.error = error.clone();
        if status != ImportRunStatus::Interrupted {
            ctx.run.finished_at = Some(Utc::now().timestamp_millis());
        }
        tracing::info!(
            id = ctx.run.id,
            ?status,
            phase = %ctx.run.phase,
            states = ctx.progress.states.imported,
            statistics_rows = ctx.progress.statistics.imported,
            requests = ctx.progress.requests,
            took_ms = started.elapsed().as_millis() as u64,
            error = error.as_deref().unwrap_or(""),
            "import ended"
        );
        if let Err(e) = self.save(&mut ctx).await {
            tracing::error!(error = %e, "could not record how the import ended");
        }
        if status == ImportRunStatus::Succeeded
            && let Err(e) = self.0.store.drop_plan(ctx.run.id).await
        {
            tracing::warn!(error = %e, "could not remove a finished import's plan");
        }
    }

    async fn phases(&self, ctx: &mut Ctx) -> Result<(), ImportError> {
        self.wait_ready().await?;
        loop {
            let phase = ImportPhase::parse(&ctx.run.phase).unwrap_or(ImportPhase::Planning);
            let (started, before) = (Instant::now(), ctx.progress.clone());
            match phase {
                ImportPhase::Planning => self.plan_states(ctx).await?,
                ImportPhase::States => self.import_states(ctx).await?,
                ImportPhase::Statistics => self.import_statistics(ctx).await?,
                ImportPhase::Done => return Ok(()),
            }
            tracing::info!(
                phase = phase.as_str(),
                took_ms = started.elapsed().as_millis() as u64,
                states = ctx.progress.states.imported - before.states.imported,
                statistics_rows = ctx.progress.statistics.imported - before.statistics.imported,
                requests = ctx.progress.requests - before.requests,
                "import phase finished"
            );
        }
    }

    /// Waits until Home Assistant is connected and HomeIQ holds its states snapshot.
    async fn wait_ready(&self) -> Result<(), ImportError> {
        let p = &self.0.parts;
        while !p.recorder.connected() || p.states.is_empty() {
            self.pause(POLL * 4).await?;
        }
        Ok(())
    }

    async fn pause(&self, d: Duration) -> Result<(), ImportError> {
        tokio::select! {
            () = tokio::time::sleep(d) => Ok(()),
            () = self.0.stop.cancelled() => Err(ImportError::Cancelled),
        }
    }

    /// One command through the rate limit, waiting out a lost connection.
    async fn ask(
        &self,
        ctx: &mut Ctx,
        command: &'static str,
        cmd: &Value,
    ) -> Result<Box<RawValue>, ImportError> {
        let inner = &self.0;
        let mut attempt = 0;
        loop {
            while !inner.parts.recorder.connected() {
                self.pause(POLL * 4).await?;
            }
            tokio::select! {
                () = inner.limiter.until_ready() => {}
                () = inner.stop.cancelled() => return Err(ImportError::Cancelled),
            }
            inner.counters.requests.fetch_add(1, Ordering::Relaxed);
            ctx.progress.requests += 1;
            let reply = tokio::select! {
                r = inner.parts.recorder.request(cmd.clone()) => r,
                () = inner.stop.cancelled() => return Err(ImportError::Cancelled),
            };
            match reply {
                Ok(raw) => return Ok(raw),
                Err(
                    e @ (CommandError::NotConnected
                    | CommandError::ConnectionLost
                    | CommandError::Timeout(_)),
                ) if attempt + 1 < MAX_ATTEMPTS => {
                    attempt += 1;
                    tracing::warn!(command, error = %e, attempt, "import request failed; asking again");
                    self.pause(Duration::from_secs(u64::from(attempt))).await?;
                }
                Err(source) => return Err(ImportError::Request { command, source }),
            }
        }
    }

    /// HomeIQ's first stored record of `entity_id` before `before` (µs).
    async fn first_record(&self, entity_id: &str, before: i64) -> Result<Option<i64>, ImportError> {
        let end = time_us(before).unwrap_or_else(Utc::now);
        let q = HistoryQuery {
            entity_ids: vec![entity_id.to_owned()],
            start: end - chrono::Duration::days(365 * 30),
            end,
            order: Order::Ascending,
            limit: 1,
            after: None,
        };
        let page = self
            .0
            .parts
            .history
            .history(&q)
            .await
            .map_err(|e| ImportError::History(e.to_string()))?;
        Ok(page.items.first().map(|r| r.time.timestamp_micros()))
    }

    /// Waits (at most [`SETTLE_WAIT`]) until the writer holds nothing: HomeIQ's own points so
    /// far (the snapshot) are then readable as first records.
    async fn settle(&self) -> Result<(), ImportError> {
        let deadline = Instant::now() + SETTLE_WAIT;
        while self.0.parts.writer.held_and_retries().0 > 0 && Instant::now() < deadline {
            self.pause(POLL).await?;
        }
        Ok(())
    }

    /// The entities whose states are imported (those HomeIQ records), sorted.
    fn entities(&self) -> Vec<String> {
        let p = &self.0.parts;
        let mut ids: HashSet<String> = p.states.entity_ids().into_iter().collect();
        ids.extend(
            p.catalog
                .current()
                .entities
                .iter()
                .map(|e| e.entity_id.clone()),
        );
        let mut ids: Vec<String> = ids.into_iter().filter(|e| p.filter.allows(e)).collect();
        ids.sort();
        ids
    }

    async fn plan_states(&self, ctx: &mut Ctx) -> Result<(), ImportError> {
        self.settle().await?;
        let plan_at = ctx.run.plan_at_us;
        let mut rows = Vec::new();
        for entity_id in self.entities() {
            let before = self
                .first_record(&entity_id, plan_at)
                .await?
                .unwrap_or(plan_at);
            rows.push((entity_id, before.min(plan_at)));
        }
        let ids: Vec<&str> = rows.iter().map(|(e, _)| e.as_str()).collect();
        ctx.run.states_from_us = match self.oldest_state(ctx, &ids, plan_at).await {
            Err(e) if unknown_command(&e) => {
                tracing::warn!(error = %e, "Home Assistant serves no history; no states are imported");
                None
            }
            other => other?,
        };
        ctx.progress.states = ImportPhaseCounts {
            total: rows.len() as u64,
            ..ImportPhaseCounts::default()
        };
        ctx.progress.batches = batch_count(rows.len(), ENTITIES_PER_REQUEST);
        ctx.run.phase = ImportPhase::States.as_str().to_owned();
        ctx.run.batch = 0;
        ctx.run.window_us = None;
        ctx.run.progress = serde_json::to_string(&ctx.progress).unwrap_or_default();
        self.0
            .store
            .put_plan(&ctx.run, ImportPhase::States, &rows)
            .await?;
        self.publish(ctx);
        tracing::info!(
            entities = rows.len(),
            oldest = ?ctx.run.states_from_us.and_then(time_us),
            "import planned"
        );
        Ok(())
    }

    /// The start of the hour holding the oldest state the recorder has of `ids` (before `end`),
    /// found by bisection; `None` when it has none.
    async fn oldest_state(
        &self,
        ctx: &mut Ctx,
        ids: &[&str],
        end: i64,
    ) -> Result<Option<i64>, ImportError> {
        if ids.is_empty() {
            return Ok(None);
        }
        const COMMAND: &str = "history/history_during_period";
        let any_before = async |ctx: &mut Ctx, t: i64| -> Result<bool, ImportError> {
            let raw = self
                .ask(ctx, COMMAND, &recorder::history_command(ids, t, t, true))
                .await?;
            Ok(recorder::decode_states(&raw)?
                .values()
                .any(|v| !v.is_empty()))
        };
        if !any_before(ctx, end).await? {
            return Ok(None);
        }
        let (mut lo, mut hi) = (end.saturating_sub(PROBE_SPAN_US), end);
        if any_before(ctx, lo).await? {
            return Ok(Some(floor_hour(lo)));
        }
        while let Some(mid) = next_probe(lo, hi, PROBE_PRECISION_US) {
            if any_before(ctx, mid).await? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(Some(floor_hour(lo)))
    }

    fn meta(&self, entity_id: &str) -> EntityMeta {
        let catalog = self.0.parts.catalog.current();
        catalog
            .entity(entity_id)
            .map(|e| EntityMeta {
                device_id: e.device_id.clone(),
                area_id: e.effective_area_id.clone(),
            })
            .unwrap_or_default()
    }

    fn chunk_done(&self, ctx: &mut Ctx) -> Result<(), ImportError> {
        ctx.progress.chunks += 1;
        #[cfg(test)]
        if ctx.progress.chunks >= self.0.stop_after_chunks.load(Ordering::Relaxed) {
            self.0.stop.cancel();
        }
        if self.0.stop.is_cancelled() {
            return Err(ImportError::Cancelled);
        }
        Ok(())
    }

    async fn save_durable(&self, ctx: &mut Ctx, pending: &mut Pending) -> Result<(), DbErr> {
        if let Some((batch, window)) = pending.durable(&self.0.parts.writer) {
            ctx.run.batch = batch;
            ctx.run.window_us = window;
            self.save(ctx).await?;
        } else {
            self.publish(ctx);
        }
        Ok(())
    }

    async fn import_states(&self, ctx: &mut Ctx) -> Result<(), ImportError> {
        let plan = self.0.store.plan(ctx.run.id, ImportPhase::States).await?;
        let mut pending = Pending::new(&self.0.parts.durability);
        let result = self.states_batches(ctx, &plan, &mut pending).await;
        // whatever happened, save how far it is durable; at the end, wait until all of it is
        if result.is_ok() {
            while !pending.queue.is_empty() {
                self.save_durable(ctx, &mut pending).await?;
                if pending.queue.is_empty() {
                    break;
                }
                self.pause(POLL).await?;
            }
        } else {
            self.save_durable(ctx, &mut pending).await?;
        }
        result?;
        ctx.run.phase = ImportPhase::Statistics.as_str().to_owned();
        ctx.run.batch = 0;
        ctx.run.window_us = None;
        ctx.progress.batches = 0;
        self.save(ctx).await?;
        Ok(())
    }

    async fn states_batches(
        &self,
        ctx: &mut Ctx,
        plan: &[(String, i64)],
        pending: &mut Pending,
    ) -> Result<(), ImportError> {
        const COMMAND: &str = "history/history_during_period";
        let inner = &self.0;
        let Some(from) = ctx.run.states_from_us else {
            ctx.progress.states.done = ctx.progress.states.total;
            return Ok(());
        };
        // HA reads `lu > start`: one µs earlier keeps a state at the hour itself
        let from = from - 1;
        let batches = batch_count(plan.len(), ENTITIES_PER_REQUEST);
        let mut batch = usize::try_from(ctx.run.batch).unwrap_or(0);
        let mut window = ctx.run.window_us;
        while (batch as u64) < batches {
            let rows = batch_of(plan, batch, ENTITIES_PER_REQUEST);
            let ids: Vec<&str> = rows.iter().map(|(e, _)| e.as_str()).collect();
            let before: HashMap<&str, i64> = rows.iter().map(|(e, b)| (e.as_str(), *b)).collect();
            let metas: HashMap<&str, EntityMeta> = ids.iter().map(|e| (*e, self.meta(e))).collect();
            let end = rows.iter().map(|r| r.1).max().unwrap_or(from);
            let mut t = resume_from(window, from);
            let mut slice = FIRST_SLICE_US;
            let mut previous: HashMap<&str, State> = HashMap::new();
            while t < end {
                let b = t.saturating_add(slice).min(end);
                // HA reads `lu < end`: a millisecond more keeps `b` itself inside (t, b]
                let cmd = recorder::history_command(&ids, t, b.saturating_add(1_000), false);
                let raw = self.ask(ctx, COMMAND, &cmd).await?;
                let bytes = raw.get().len();
                let mut history = match recorder::decode_states(&raw) {
                    Err(ImportError::TooLarge { .. }) if slice > MIN_SLICE_US => {
                        slice = (slice / 4).max(MIN_SLICE_US);
                        continue;
                    }
                    other => other?,
                };
                drop(raw);
                let mut points = Vec::new();
                for id in &ids {
                    let Some(states) = history.remove(*id) else {
                        continue;
                    };
                    let limit = before.get(id).copied().unwrap_or(end);
                    for state in states {
                        let lu = state.last_updated.timestamp_micros();
                        if lu <= t || lu > b || lu >= limit {
                            continue;
                        }
                        if previous
                            .get(id)
                            .is_some_and(|p| same_as_recorded(p, &state))
                        {
                            ctx.progress.states.skipped += 1;
                            continue;
                        }
                        let ev = StateChanged {
                            entity_id: (*id).to_owned(),
                            had_old_state: false,
                            new_state: Some(state),
                            time_fired: time_us(lu).unwrap_or_default(),
                        };
                        match inner.parts.mapper.map_change(&ev, &metas[id]) {
                            Some(p) => points.push(p),
                            None => ctx.progress.states.skipped += 1,
                        }
                        if let Some(s) = ev.new_state {
                            previous.insert(*id, s);
                        }
                    }
                }
                let n = points.len() as u64;
                push_bounded(
                    &inner.parts.writer,
                    points,
                    inner.parts.durability.max_queued,
                )
                .await;
                ctx.progress.states.imported += n;
                inner.counters.states.fetch_add(n, Ordering::Relaxed);
                slice = next_slice(b - t, bytes, TARGET_REPLY_BYTES, MIN_SLICE_US, MAX_SLICE_US);
                t = b;
                pending.handed(n > 0, (batch as i64, Some(t)));
                self.save_durable(ctx, pending).await?;
                self.chunk_done(ctx)?;
            }
            batch += 1;
            window = None;
            ctx.progress.states.done =
                (ctx.progress.states.done + rows.len() as u64).min(ctx.progress.states.total);
            pending.handed(false, (batch as i64, None));
            self.save_durable(ctx, pending).await?;
        }
        Ok(())
    }

    async fn plan_statistics(&self, ctx: &mut Ctx) -> Result<Vec<(String, i64)>, ImportError> {
        const COMMAND: &str = "recorder/list_statistic_ids";
        let cmd = serde_json::json!({"type": COMMAND});
        let raw = match self.ask(ctx, COMMAND, &cmd).await {
            Err(e) if unknown_command(&e) => {
                tracing::warn!(error = %e, "Home Assistant serves no long-term statistics; none are imported");
                ctx.progress.statistics = ImportPhaseCounts::default();
                return Ok(Vec::new());
            }
            other => other?,
        };
        let ids = recorder::decode_statistic_ids(&raw)?;
        drop(raw);
        let plan_at = ctx.run.plan_at_us;
        let mut external = 0;
        let mut wanted: Vec<String> = Vec::new();
        for id in ids {
            if id.external() {
                external += 1;
            } else if self.0.parts.filter.allows(&id.statistic_id) {
                wanted.push(id.statistic_id);
            }
        }
        wanted.sort();
        wanted.dedup();
        // the states are in: each entity's first raw record now bounds its imported hours
        let states_plan: HashMap<String, i64> = self
            .0
            .store
            .plan(ctx.run.id, ImportPhase::States)
            .await?
            .into_iter()
            .collect();
        let mut rows = Vec::with_capacity(wanted.len());
        for id in wanted {
            let first = self.first_record(&id, plan_at).await?;
            let before = first
                .into_iter()
                .chain(states_plan.get(&id).copied())
                .chain([plan_at])
                .min()
                .unwrap_or(plan_at);
            rows.push((id, before));
        }
        ctx.progress.external_statistics = external;
        ctx.progress.statistics = ImportPhaseCounts {
            total: rows.len() as u64,
            ..ImportPhaseCounts::default()
        };
        ctx.progress.batches = batch_count(rows.len(), STATISTICS_PER_REQUEST);
        ctx.run.progress = serde_json::to_string(&ctx.progress).unwrap_or_default();
        self.0
            .store
            .put_plan(&ctx.run, ImportPhase::Statistics, &rows)
            .await?;
        self.publish(ctx);
        Ok(rows)
    }

    async fn import_statistics(&self, ctx: &mut Ctx) -> Result<(), ImportError> {
        const COMMAND: &str = "recorder/statistics_during_period";
        let planned = ctx.progress.batches > 0 || ctx.progress.statistics.total > 0;
        let plan = if planned {
            self.0
                .store
                .plan(ctx.run.id, ImportPhase::Statistics)
                .await?
        } else {
            self.plan_statistics(ctx).await?
        };
        let batches = batch_count(plan.len(), STATISTICS_PER_REQUEST);
        let mut batch = usize::try_from(ctx.run.batch).unwrap_or(0);
        while (batch as u64) < batches {
            let rows = batch_of(&plan, batch, STATISTICS_PER_REQUEST);
            let ids: Vec<&str> = rows.iter().map(|(e, _)| e.as_str()).collect();
            let before: HashMap<&str, i64> = rows.iter().map(|(e, b)| (e.as_str(), *b)).collect();
            let end = rows.iter().map(|r| r.1).max().unwrap_or(0);
            // where the batch's statistics begin: months over the whole span
            let probe = recorder::statistics_command(
                &ids,
                end.saturating_sub(STATISTICS_SPAN_US),
                end,
                "month",
            );
            let raw = self.ask(ctx, COMMAND, &probe).await?;
            let first = recorder::decode_statistics(&raw)?
                .values()
                .filter_map(|v| v.first())
                .map(|h| h.start.timestamp_micros())
                .min();
            drop(raw);
            if let Some(first) = first {
                let mut t = resume_from(ctx.run.window_us, floor_hour(first));
                while t < end {
                    let b = t.saturating_add(STATISTICS_WINDOW_US).min(end);
                    let cmd = recorder::statistics_command(&ids, t, b, "hour");
                    let raw = self.ask(ctx, COMMAND, &cmd).await?;
                    let decoded = recorder::decode_statistics(&raw)?;
                    drop(raw);
                    let mut hours = Vec::new();
                    for (id, rows) in decoded {
                        let Some(limit) = before.get(id.as_str()).copied() else {
                            ctx.progress.statistics.skipped += rows.len() as u64;
                            continue;
                        };
                        let (kept, left) = hours_before(rows, limit, t, b);
                        ctx.progress.statistics.skipped += left;
                        hours.extend(kept);
                    }
                    let stored = if hours.is_empty() {
                        0
                    } else {
                        self.0.parts.sink.put(&hours).await?
                    };
                    ctx.progress.statistics.imported += stored;
                    self.0
                        .counters
                        .statistics_rows
                        .fetch_add(stored, Ordering::Relaxed);
                    t = b;
                    ctx.run.window_us = Some(t);
                    self.save(ctx).await?;
                    self.chunk_done(ctx)?;
                }
            }
            batch += 1;
            ctx.progress.statistics.done = (ctx.progress.statistics.done + rows.len() as u64)
                .min(ctx.progress.statistics.total);
            ctx.run.batch = batch as i64;
            ctx.run.window_us = None;
            self.save(ctx).await?;
        }
        ctx.run.phase = ImportPhase::Done.as_str().to_owned();
        self.save(ctx).await?;
        Ok(())
    }
}
