//! The batching writer: a bounded in-memory queue in front of [`InfluxClient::write`], backed by
//! the durable [spool](super::spool) and the [quarantine](super::quarantine).
//!
//! [`WriterHandle::push`] never blocks, awaits or touches the disk: it appends to an in-memory
//! queue. One dispatcher task cuts batches of up to `batch_size` points, as soon as a batch is
//! full or the oldest point has waited `flush_interval`, encodes them to line protocol once and
//! runs up to `max_in_flight` write requests at once. Each request's outcome decides what happens
//! to its points:
//!
//! * written: counted;
//! * refused (`400`: parse errors, field type conflicts, partial writes): the refused lines are
//!   isolated and moved to the quarantine with the server's reason, the rest is resent (see the
//!   quarantine module); nothing refused is ever retried;
//! * database not found: the database is created and the batch resent;
//! * too large (`413`): the batch is split in halves (a single line too large is quarantined);
//! * retryable (timeouts, no connection, `429`, `5xx`) or unauthorized: the batch goes to the
//!   spool and InfluxDB is *known down*: the writer backs off exponentially (0.5 s doubling to
//!   30 s, ±25 % jitter, at least the server's `Retry-After`; 60 s after refused credentials,
//!   which are also reported as a configuration error for health).
//!
//! # Spool (the writer started by [`spawn_spooled_writer`])
//!
//! Points go to disk instead of being dropped:
//!
//! * while InfluxDB is known down (until the back-off ends), due batches are appended to the spool
//!   instead of being sent: nothing waits in memory for an outage to end;
//! * when the in-memory queue holds more than `queue_capacity` points (InfluxDB slower than the
//!   input), the oldest batches are spilled to the spool instead of being dropped. Disk writes run
//!   on Tokio's blocking pool; should the disk fall behind, a hard limit of twice
//!   `queue_capacity` protects memory, dropping the oldest queued points (`dropped_overflow`).
//!
//! A replay task reads the spool oldest first, coalescing records into requests of up to
//! `max(2 × batch_size, 10,000)` points, with up to `max(max_in_flight, 2)` replay requests in
//! flight. Live writes keep their own `max_in_flight` request slots, so replay never takes a slot
//! from them, and replay pauses while live points are piling up (more than `max_in_flight` full
//! batches waiting). Replay is also the probe that finds InfluxDB back: after the back-off, the
//! oldest spooled batch is sent; when it is written, the writer is up again. A replayed record
//! leaves the spool only once InfluxDB acknowledged it (`204`, or its refused lines are in the
//! quarantine). A replay request that fails gives its records back to the spool, which reads them
//! again from disk at the next attempt: during an outage no replay data waits in memory, and the
//! spool's bounds apply to it. (A request cut off after part of it was written is resent whole;
//! rewriting a point is harmless, and its refused lines may then be quarantined twice.) The
//! spool is reopened and replayed at start, so batches survive restarts.
//!
//! [`WriterHandle::shutdown`] stops accepting points, keeps writing until a third of its deadline
//! (at most 2 s) is left, then appends everything not yet written (queued, and batches whose
//! requests are still under way) to the spool and syncs it: after `SIGTERM`, nothing accepted is
//! lost. A batch whose request was cut off may have reached InfluxDB and is then written twice,
//! which overwrites each point with itself.
//!
//! # Memory only (the writer started by [`spawn_writer`])
//!
//! Without a spool (benchmarks, tools), failed batches go back to the front of the in-memory
//! queue and are retried after the back-off; when the queue is full the oldest points are dropped
//! and counted, and whatever is left at the shutdown deadline is lost (and reported).

use prometheus_client::metrics::histogram::Histogram;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::client::{InfluxClient, InfluxError, WriteOutcome};
use super::line::encode_point;
use super::quarantine::{Quarantine, QuarantinedPoint, culprits, reason_text};
use super::spool::{
    Batch, RecordRef, Spool, SpoolCounts, SpoolError, SpoolGauges, SpoolLimits, now_ms,
};
use crate::config::{InfluxSettings, SpoolSettings};
use crate::store::latency::RecentLatencies;
use crate::store::point::{Point, Precision};
use crate::store::sink::{ShutdownReport, StorageBackend, StorageStatus, WriterCounters};
use crate::store::written::WriteLog;

/// Shortest interval between two log lines about refused points.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The capacity a point encoded on its own starts with, bytes (most lines are shorter).
const LINE_HINT: usize = 256;

/// Splits (extra requests) spent at most on finding the refused lines of one batch.
const MAX_SPLITS: usize = 64;

/// Tunables of the writer (from [`InfluxSettings`], plus limits tests shorten).
#[derive(Debug, Clone)]
pub(crate) struct WriterConfig {
    /// Points per request.
    pub batch_size: usize,
    /// Longest wait of a point for its batch to fill.
    pub linger: Duration,
    /// Points held in memory (queued, waiting for a retry or in flight).
    pub capacity: usize,
    /// Concurrent live write requests.
    pub max_in_flight: usize,
    /// First retry delay.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Retry delay after refused credentials.
    pub auth_backoff: Duration,
    /// Most points per replay request.
    pub replay_points: usize,
    /// About the most bytes per replay request.
    pub replay_bytes: usize,
    /// Concurrent replay requests.
    pub replay_in_flight: usize,
    /// Longest time spooled data waits for an fsync.
    pub sync_every: Duration,
}

impl WriterConfig {
    pub(crate) fn from_settings(s: &InfluxSettings) -> Self {
        let batch_size = s.batch_size.max(1);
        let max_in_flight = s.max_in_flight.max(1);
        WriterConfig {
            batch_size,
            linger: s.flush_interval(),
            capacity: s.queue_capacity.max(1),
            max_in_flight,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            auth_backoff: Duration::from_secs(60),
            replay_points: batch_size.saturating_mul(2).max(10_000),
            replay_bytes: 8 << 20,
            replay_in_flight: max_in_flight.max(2),
            sync_every: Duration::from_secs(1),
        }
    }
}

/// The InfluxDB writer's own counters, beside those every backend reports: its credentials,
/// the quarantine and the spool.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct InfluxWriterStatus {
    /// Set while InfluxDB refuses the credentials: a configuration error.
    pub auth_error: Option<String>,
    /// The writer's own counters: refused, quarantined and replayed points.
    #[serde(flatten)]
    pub counts: InfluxCounts,
    /// Whether points wait in the spool for InfluxDB (working, but degraded).
    pub spooling: bool,
    /// Size of the spool's files, bytes.
    pub spool_bytes: u64,
    /// Points in the spool not yet written.
    pub spool_points: u64,
    /// How long ago the oldest point still in the spool was spooled, seconds.
    pub spool_oldest_age_secs: Option<f64>,
    /// The spool's counters: dropped points and damaged records.
    #[serde(flatten)]
    pub spool: SpoolCounts,
}

impl InfluxWriterStatus {
    /// All zero: what [`StorageStatus::influx`] shows for a backend without these counters.
    pub(crate) const NONE: InfluxWriterStatus = InfluxWriterStatus {
        auth_error: None,
        counts: InfluxCounts::ZERO,
        spooling: false,
        spool_bytes: 0,
        spool_points: 0,
        spool_oldest_age_secs: None,
        spool: SpoolCounts::ZERO,
    };
}

/// A queued point: as pushed, or already encoded ([`WriterHandle::push_ref`]).
enum Queued {
    Point(Point),
    /// One line of line protocol, with its `\n`.
    Line(String),
}

#[derive(Default)]
struct Queue {
    points: VecDeque<(Instant, Queued)>,
    /// Memory-only mode: encoded batches waiting for a retry (older than `points`).
    retry: VecDeque<Batch>,
    retry_points: usize,
    in_flight: usize,
    /// Points cut from the queue and on their way to the spool.
    spilling: usize,
    closed: bool,
}

impl Queue {
    fn held(&self) -> usize {
        self.points.len() + self.retry_points + self.in_flight + self.spilling
    }

    /// Drops the oldest queued point (memory-only mode: retried batches first). False when
    /// nothing queued could be dropped.
    fn drop_oldest(&mut self) -> bool {
        if let Some(front) = self.retry.front_mut() {
            front.drop_front(1);
            self.retry_points -= 1;
            if front.is_empty() {
                self.retry.pop_front();
            }
            return true;
        }
        self.points.pop_front().is_some()
    }
}

crate::counters::counters! {
    /// The InfluxDB writer's own counters, beside the [`WriterCounters`] both backends keep;
    /// `/metrics` publishes them as `homeiq_storage_*{backend="influxdb"}`.
    pub struct InfluxCounters => InfluxCounts ("homeiq_storage") {
        /// Points InfluxDB refused (parse errors, field type conflicts…); never resent, kept in
        /// the quarantine.
        dropped_rejected => "points_rejected",
        /// Points moved to the quarantine since start (see [`WriterHandle::quarantine`]).
        quarantined => "quarantined_points",
        /// Points written from the spool.
        replayed => "spool_replayed_points",
    }
}

#[derive(Default)]
struct Counters {
    /// What both backends count.
    counts: WriterCounters,
    /// What only InfluxDB's writer counts.
    own: InfluxCounters,
    requests: AtomicU64,
    latency_total_us: AtomicU64,
    last_latency_us: AtomicU64,
    reachable: AtomicBool,
}

#[derive(Default)]
struct Texts {
    last_write_at: Option<chrono::DateTime<chrono::Utc>>,
    last_error: Option<String>,
    auth_error: Option<String>,
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
}

#[derive(Default)]
struct LogLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

#[derive(Default)]
struct Tasks {
    dispatcher: Option<JoinHandle<()>>,
    replay: Option<JoinHandle<()>>,
    maintenance: Option<JoinHandle<()>>,
}

struct Shared {
    config: WriterConfig,
    client: InfluxClient,
    precision: Precision,
    queue: Mutex<Queue>,
    /// Wakes the dispatcher.
    wake: Notify,
    /// Wakes the replay task.
    replay_wake: Notify,
    counters: Counters,
    texts: Mutex<Texts>,
    backoff: Mutex<Backoff>,
    limiter: Mutex<LogLimiter>,
    spool_limiter: Mutex<LogLimiter>,
    body_hint: AtomicUsize,
    spool: Option<Arc<Mutex<Spool>>>,
    gauges: Arc<SpoolGauges>,
    quarantine: Arc<Quarantine>,
    /// Encoded batches outside the queue: in write requests or on their way to the spool. What is
    /// still here at the shutdown deadline goes to the spool.
    held: Mutex<HashMap<u64, Batch>>,
    next_key: AtomicU64,
    tasks: Mutex<Tasks>,
    /// Durations of answered write requests, seconds (Prometheus).
    latency: Histogram,
    /// The most recent write durations, for percentiles on the dashboard.
    recent_latency: RecentLatencies,
    /// The entities of every acknowledged batch, for the API's history cache.
    write_log: Arc<WriteLog>,
}

/// Buckets of the write latency histogram, seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs blocking work (file I/O) on Tokio's blocking pool. `None` if it panicked.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Handle to the writer task. Cheap to clone; every clone feeds the same queue.
#[derive(Clone)]
pub struct WriterHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterHandle")
            .field("database", &self.shared.client.database())
            .field("spooled", &self.shared.spool.is_some())
            .finish_non_exhaustive()
    }
}

/// Starts a memory-only writer (no spool; see the module documentation) and, in the background,
/// database creation, on the current Tokio runtime. `precision` is the precision of the points'
/// timestamps. HomeIQ itself runs [`spawn_spooled_writer`].
pub fn spawn_writer(
    settings: &InfluxSettings,
    client: InfluxClient,
    precision: Precision,
) -> WriterHandle {
    spawn_writer_with(WriterConfig::from_settings(settings), client, precision)
}

/// Starts the writer with its durable spool and quarantine in `<data_dir>/spool/` (created when
/// missing): reopens what an earlier run left there (truncating a torn tail) and replays it. Fails
/// only when the spool directory or its files cannot be opened.
pub async fn spawn_spooled_writer(
    settings: &InfluxSettings,
    spool: &SpoolSettings,
    data_dir: &Path,
    client: InfluxClient,
    precision: Precision,
) -> Result<WriterHandle, SpoolError> {
    spawn_spooled_with(
        WriterConfig::from_settings(settings),
        SpoolLimits::new(spool.max_bytes, spool.max_age_hours),
        &data_dir.join("spool"),
        client,
        precision,
    )
    .await
}

pub(crate) fn spawn_writer_with(
    config: WriterConfig,
    client: InfluxClient,
    precision: Precision,
) -> WriterHandle {
    start(
        config,
        client,
        precision,
        None,
        Arc::default(),
        Arc::new(Quarantine::memory()),
    )
}

pub(crate) async fn spawn_spooled_with(
    config: WriterConfig,
    limits: SpoolLimits,
    dir: &Path,
    client: InfluxClient,
    precision: Precision,
) -> Result<WriterHandle, SpoolError> {
    let gauges = Arc::new(SpoolGauges::default());
    let dir = dir.to_path_buf();
    let g = Arc::clone(&gauges);
    let opened = blocking(move || {
        let (spool, report) = Spool::open(&dir, limits, g)?;
        let quarantine = Quarantine::open(&dir.join("quarantine.jsonl"))?;
        Ok::<_, SpoolError>((spool, report, quarantine))
    })
    .await;
    let Some(opened) = opened else {
        return Err(SpoolError::Io {
            op: "open",
            path: PathBuf::from("spool"),
            source: std::io::Error::other("opening the spool panicked"),
        });
    };
    let (spool, report, quarantine) = opened?;
    if report.points > 0 || report.truncated_bytes > 0 || report.corrupt_records > 0 {
        tracing::info!(
            points = report.points,
            segments = report.segments,
            truncated_bytes = report.truncated_bytes,
            corrupt_records = report.corrupt_records,
            "spool reopened; replaying what an earlier run could not write"
        );
    }
    Ok(start(
        config,
        client,
        precision,
        Some(Arc::new(Mutex::new(spool))),
        gauges,
        Arc::new(quarantine),
    ))
}

fn start(
    config: WriterConfig,
    client: InfluxClient,
    precision: Precision,
    spool: Option<Arc<Mutex<Spool>>>,
    gauges: Arc<SpoolGauges>,
    quarantine: Arc<Quarantine>,
) -> WriterHandle {
    let spooled = spool.is_some();
    let shared = Arc::new(Shared {
        config,
        client,
        precision,
        queue: Mutex::new(Queue::default()),
        wake: Notify::new(),
        replay_wake: Notify::new(),
        counters: Counters::default(),
        texts: Mutex::new(Texts::default()),
        backoff: Mutex::new(Backoff::default()),
        limiter: Mutex::new(LogLimiter::default()),
        spool_limiter: Mutex::new(LogLimiter::default()),
        body_hint: AtomicUsize::new(0),
        spool,
        gauges,
        quarantine,
        held: Mutex::new(HashMap::new()),
        next_key: AtomicU64::new(0),
        tasks: Mutex::new(Tasks::default()),
        latency: Histogram::new(LATENCY_BUCKETS),
        recent_latency: RecentLatencies::default(),
        write_log: Arc::default(),
    });
    tokio::spawn(create_database_at_start(Arc::clone(&shared)));
    let mut tasks = Tasks {
        dispatcher: Some(tokio::spawn(dispatch(Arc::clone(&shared)))),
        ..Tasks::default()
    };
    if spooled {
        tasks.replay = Some(tokio::spawn(replay(Arc::clone(&shared))));
        tasks.maintenance = Some(tokio::spawn(maintain(Arc::clone(&shared))));
    }
    *lock(&shared.tasks) = tasks;
    WriterHandle { shared }
}

impl WriterHandle {
    /// Queues a point. Never blocks, awaits or touches the disk. With a spool, a queue over
    /// `queue_capacity` is spilled to disk by the writer's tasks, and only beyond twice that is
    /// the oldest point dropped (and counted); without one, the oldest point is dropped when the
    /// queue is full. After shutdown the point itself is dropped (and counted).
    pub fn push(&self, point: Point) {
        self.push_queued(Queued::Point(point));
    }

    /// [`push`](Self::push) for a point the caller keeps (and reuses): it is encoded at once,
    /// into the one allocation it is queued as. A point that cannot be encoded is counted and
    /// logged as the writer does for its batches.
    pub fn push_ref(&self, point: &Point) {
        let mut line = String::with_capacity(LINE_HINT);
        match encode_point(point, &mut line) {
            Ok(()) => self.push_queued(Queued::Line(line)),
            Err(e) => {
                let shared = &*self.shared;
                shared
                    .counters
                    .counts
                    .dropped_invalid
                    .fetch_add(1, Ordering::Relaxed);
                log_refused(shared, &format!("1 point(s) cannot be encoded: {e}"));
            }
        }
    }

    fn push_queued(&self, point: Queued) {
        let shared = &*self.shared;
        let cap = shared.config.capacity;
        let spooled = shared.spool.is_some();
        let hard = if spooled { cap.saturating_mul(2) } else { cap };
        let (len, dropped, over) = {
            let mut q = lock(&shared.queue);
            if q.closed {
                (None, true, false)
            } else if q.held() >= hard {
                // Full: drop the oldest queued point. If everything held is in flight, the new
                // point is the only one that can go.
                if q.drop_oldest() {
                    q.points.push_back((Instant::now(), point));
                    (Some(q.points.len()), true, spooled)
                } else {
                    (None, true, false)
                }
            } else {
                q.points.push_back((Instant::now(), point));
                (Some(q.points.len()), false, spooled && q.held() > cap)
            }
        };
        if dropped {
            shared
                .counters
                .counts
                .dropped_overflow
                .fetch_add(1, Ordering::Relaxed);
        }
        if over || len == Some(1) || len == Some(shared.config.batch_size) {
            shared.wake.notify_one();
        }
    }

    /// Points held in memory (queued, waiting for a retry or the spool, in flight) and the
    /// batches put back so far: what [`stats`](Self::stats) reports as `queued + in_flight` and
    /// `retries`, without the rest of it.
    pub fn held_and_retries(&self) -> (usize, u64) {
        let held = lock(&self.shared.queue).held();
        (
            held,
            self.shared.counters.counts.retries.load(Ordering::Relaxed),
        )
    }

    /// The log of acknowledged writes (which entities, in which order).
    pub fn write_log(&self) -> Arc<WriteLog> {
        Arc::clone(&self.shared.write_log)
    }

    /// The histogram of write request durations (seconds), for Prometheus.
    pub fn latency_histogram(&self) -> Histogram {
        self.shared.latency.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> StorageStatus {
        let shared = &*self.shared;
        let (queued, in_flight) = {
            let q = lock(&shared.queue);
            (q.points.len() + q.retry_points + q.spilling, q.in_flight)
        };
        let c = &shared.counters;
        let g = &shared.gauges;
        let texts = lock(&shared.texts);
        let requests = c.requests.load(Ordering::Relaxed);
        let ms = |us: u64| us as f64 / 1000.0;
        let spool_points = g.points.load(Ordering::Relaxed);
        let oldest = g.oldest_ms.load(Ordering::Relaxed);
        let (p50, p95) = shared.recent_latency.p50_p95_ms();
        StorageStatus {
            backend: StorageBackend::Influxdb,
            reachable: c.reachable.load(Ordering::Relaxed),
            p50_latency_ms: p50,
            p95_latency_ms: p95,
            queued,
            in_flight,
            counts: c.counts.snapshot(),
            last_write_at: texts.last_write_at.map(|t| t.to_rfc3339()),
            last_error: texts.last_error.clone(),
            last_latency_ms: (requests > 0).then(|| ms(c.last_latency_us.load(Ordering::Relaxed))),
            mean_latency_ms: (requests > 0)
                .then(|| ms(c.latency_total_us.load(Ordering::Relaxed)) / requests as f64),
            influxdb: Some(InfluxWriterStatus {
                auth_error: texts.auth_error.clone(),
                counts: c.own.snapshot(),
                spooling: spool_points > 0,
                spool_bytes: g.bytes.load(Ordering::Relaxed),
                spool_points,
                spool_oldest_age_secs: (spool_points > 0 && oldest != i64::MIN)
                    .then(|| (now_ms().saturating_sub(oldest)).max(0) as f64 / 1000.0),
                spool: g.counts.snapshot(),
            }),
        }
    }

    /// Quarantined points, newest first: at most `limit`, after skipping `offset`. Only the
    /// newest 10,000 are kept.
    pub fn quarantine(&self, limit: usize, offset: usize) -> Vec<QuarantinedPoint> {
        self.shared.quarantine.page(limit, offset)
    }

    /// Number of quarantined points kept (what [`WriterHandle::quarantine`] pages through).
    pub fn quarantine_len(&self) -> usize {
        self.shared.quarantine.len()
    }

    /// Stops accepting points and flushes: writes what it can until a third of `deadline` (at
    /// most 2 s) is left, then puts everything not written into the spool and syncs it. Returns
    /// by `deadline` (plus the time the final spool append takes), with what was written, spooled
    /// and lost. Without a spool, whatever is not written by `deadline` is lost.
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        let shared = &self.shared;
        let started = Instant::now();
        let end = started + deadline;
        lock(&shared.queue).closed = true;
        shared.wake.notify_one();
        shared.replay_wake.notify_one();
        let spooled = shared.spool.is_some();
        let handover = if spooled {
            end - (deadline / 3).min(Duration::from_secs(2))
        } else {
            end
        };
        let tasks = std::mem::take(&mut *lock(&shared.tasks));
        let mut running: Vec<JoinHandle<()>> = [tasks.dispatcher, tasks.replay]
            .into_iter()
            .flatten()
            .collect();
        let finished = tokio::time::timeout_at(handover, async {
            for t in &mut running {
                let _ = t.await;
            }
        })
        .await
        .is_ok();
        if !finished {
            for t in running {
                t.abort();
                let _ = t.await;
            }
        }
        if let Some(m) = tasks.maintenance {
            m.abort();
            let _ = m.await;
        }

        // Everything not written: queued points, retried batches, requests cut off.
        let (points, mut batches) = {
            let mut q = lock(&shared.queue);
            q.retry_points = 0;
            let points: Vec<Queued> = q.points.drain(..).map(|(_, p)| p).collect();
            (points, q.retry.drain(..).collect::<Vec<Batch>>())
        };
        if !points.is_empty() {
            batches.push(encode(shared, points));
        }
        batches.extend(lock(&shared.held).drain().map(|(_, b)| b));
        let leftover: usize = batches.iter().map(Batch::len).sum();
        let mut spooled_points = 0u64;
        if let Some(spool) = shared.spool.clone()
            && leftover > 0
        {
            let s = Arc::clone(shared);
            let sp = Arc::clone(&spool);
            spooled_points = blocking(move || spool_batches(&s, &sp, batches))
                .await
                .unwrap_or(0);
        }
        if let Some(spool) = shared.spool.clone() {
            // The data is in the page cache already; a slow disk must not hold up the exit.
            // after this the writer writes nothing: give up the spool's directory lock too
            let sync = blocking(move || {
                let mut spool = lock(&spool);
                let synced = spool.sync();
                spool.release();
                synced
            });
            let wait = end
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(200));
            match tokio::time::timeout(wait, sync).await {
                Ok(Some(Err(e))) => tracing::warn!(error = %e, "cannot sync the spool"),
                Err(_) => tracing::warn!("syncing the spool takes long; leaving it to the kernel"),
                _ => {}
            }
        }
        if spooled_points > 0 {
            tracing::info!(
                points = spooled_points,
                "spooled what could not be written before the deadline"
            );
        }
        ShutdownReport {
            written: shared.counters.counts.written.load(Ordering::Relaxed),
            spooled: spooled_points,
            left: leftover.saturating_sub(usize::try_from(spooled_points).unwrap_or(usize::MAX)),
        }
    }
}

enum Next {
    /// Nothing to send yet: wait for a push (or until the given instant).
    Wait(Option<Instant>),
    /// Cut points to the spool.
    Spill(Vec<Queued>),
    /// A batch is due.
    Send,
    /// Closed and drained.
    Done,
}

/// Whether InfluxDB failed and its back-off has not ended.
fn known_down(shared: &Shared, now: Instant) -> bool {
    let b = lock(&shared.backoff);
    b.failures > 0 && b.until.is_some_and(|u| u > now)
}

fn hold(shared: &Shared, batch: Batch) -> u64 {
    let key = shared.next_key.fetch_add(1, Ordering::Relaxed);
    lock(&shared.held).insert(key, batch);
    key
}

async fn dispatch(shared: Arc<Shared>) {
    let cfg = &shared.config;
    let spooled = shared.spool.is_some();
    let permits = Arc::new(Semaphore::new(cfg.max_in_flight));
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let now = Instant::now();
        let down = spooled && known_down(&shared, now);
        let next = {
            let mut q = lock(&shared.queue);
            let cut = |q: &mut Queue| {
                let n = q.points.len().min(cfg.batch_size);
                q.spilling += n;
                q.points.drain(..n).map(|(_, p)| p).collect::<Vec<Queued>>()
            };
            if spooled && q.held() > cfg.capacity && !q.points.is_empty() {
                Next::Spill(cut(&mut q))
            } else if q.points.is_empty() && q.retry.is_empty() {
                if q.closed && q.in_flight == 0 && q.spilling == 0 {
                    Next::Done
                } else {
                    Next::Wait(None)
                }
            } else {
                let due = match q.points.front() {
                    _ if !q.retry.is_empty() || q.closed => None,
                    _ if q.points.len() >= cfg.batch_size => None,
                    Some((first, _)) if *first + cfg.linger > now => Some(*first + cfg.linger),
                    _ => None,
                };
                match due {
                    Some(at) => Next::Wait(Some(at)),
                    None if down => Next::Spill(cut(&mut q)),
                    None => Next::Send,
                }
            }
        };
        match next {
            Next::Done => break,
            Next::Wait(None) => {
                shared.wake.notified().await;
                continue;
            }
            Next::Wait(Some(due)) => {
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep_until(due) => {}
                }
                continue;
            }
            Next::Spill(points) => {
                let n = points.len();
                let batch = encode(&shared, points);
                let key = hold(&shared, batch);
                let s = Arc::clone(&shared);
                tasks.spawn(async move {
                    spool_held(&s, vec![key]).await;
                    {
                        let mut q = lock(&s.queue);
                        q.spilling = q.spilling.saturating_sub(n);
                    }
                    s.wake.notify_one();
                });
                continue;
            }
            Next::Send => {}
        }
        if !spooled {
            // Back-off after failures; while shutting down, keep trying at least twice a second.
            let until = lock(&shared.backoff).until;
            if let Some(until) = until
                && until > Instant::now()
            {
                let closed = lock(&shared.queue).closed;
                let until = if closed {
                    until.min(Instant::now() + Duration::from_millis(500))
                } else {
                    until
                };
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep_until(until) => {
                        if closed {
                            lock(&shared.backoff).until = None;
                        }
                    }
                }
                continue;
            }
        }
        // A free request slot; a wake-up meanwhile (a spill may be needed) re-evaluates.
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tokio::select! {
                    p = Arc::clone(&permits).acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = shared.wake.notified() => continue,
                }
            }
        };
        let (batch, n) = {
            let mut q = lock(&shared.queue);
            if let Some(b) = q.retry.pop_front() {
                let n = b.len();
                q.retry_points -= n;
                q.in_flight += n;
                (Ok(b), n)
            } else {
                let n = q.points.len().min(cfg.batch_size);
                q.in_flight += n;
                (Err(q.points.drain(..n).map(|(_, p)| p).collect()), n)
            }
        };
        let batch = batch.unwrap_or_else(|points| encode(&shared, points));
        if batch.is_empty() {
            let mut q = lock(&shared.queue);
            q.in_flight = q.in_flight.saturating_sub(n);
            continue;
        }
        let key = hold(&shared, batch.clone());
        let s = Arc::clone(&shared);
        tasks.spawn(async move {
            let sent = send_batches(&s, vec![batch]).await;
            if sent.retry.is_empty() {
                lock(&s.held).remove(&key);
                release(&s, n);
            } else if s.spool.is_some() {
                let keys: Vec<u64> = {
                    let mut held = lock(&s.held);
                    held.remove(&key);
                    let keys: Vec<u64> = sent
                        .retry
                        .into_iter()
                        .map(|b| {
                            let k = s.next_key.fetch_add(1, Ordering::Relaxed);
                            held.insert(k, b);
                            k
                        })
                        .collect();
                    keys
                };
                s.counters.counts.retries.fetch_add(1, Ordering::Relaxed);
                spool_held(&s, keys).await;
                release(&s, n);
            } else {
                lock(&s.held).remove(&key);
                requeue(&s, sent.retry, n);
            }
            s.wake.notify_one();
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Releases the in-flight count of a finished request.
fn release(shared: &Shared, sent: usize) {
    let mut q = lock(&shared.queue);
    q.in_flight = q.in_flight.saturating_sub(sent);
}

/// Memory-only mode: releases a request's in-flight count and puts its unwritten batches back at
/// the front of the queue, dropping the oldest points beyond the queue's capacity.
fn requeue(shared: &Shared, batches: Vec<Batch>, sent: usize) {
    let mut overflow = 0u64;
    {
        let mut q = lock(&shared.queue);
        q.in_flight = q.in_flight.saturating_sub(sent);
        for b in batches.into_iter().rev() {
            q.retry_points += b.len();
            q.retry.push_front(b);
        }
        while q.held() > shared.config.capacity && q.drop_oldest() {
            overflow += 1;
        }
    }
    if overflow > 0 {
        shared
            .counters
            .counts
            .dropped_overflow
            .fetch_add(overflow, Ordering::Relaxed);
    }
    shared
        .counters
        .counts
        .retries
        .fetch_add(1, Ordering::Relaxed);
}

/// Moves held batches to the spool on the blocking pool. The batches leave `held` inside the
/// blocking call, which runs to completion even if the calling task is aborted, so a batch is
/// either still held (and spooled at shutdown) or in the spool.
async fn spool_held(shared: &Arc<Shared>, keys: Vec<u64>) -> u64 {
    let Some(spool) = shared.spool.clone() else {
        return 0;
    };
    let s = Arc::clone(shared);
    blocking(move || {
        let batches: Vec<Batch> = {
            let mut held = lock(&s.held);
            keys.iter().filter_map(|k| held.remove(k)).collect()
        };
        spool_batches(&s, &spool, batches)
    })
    .await
    .unwrap_or(0)
}

/// Appends batches to the spool (blocking). Returns the points spooled; a batch the disk refuses
/// is counted as dropped.
fn spool_batches(shared: &Shared, spool: &Mutex<Spool>, batches: Vec<Batch>) -> u64 {
    let now = now_ms();
    let mut spooled = 0u64;
    let mut failed: Option<(u64, SpoolError)> = None;
    {
        let mut sp = lock(spool);
        for b in &batches {
            match sp.append(b, now) {
                Ok(_) => spooled += b.len() as u64,
                Err(e) => {
                    let n = b.len() as u64 + failed.as_ref().map_or(0, |f| f.0);
                    failed = Some((n, e));
                }
            }
        }
    }
    if let Some((n, e)) = failed {
        if e.is_disk_full() {
            shared
                .counters
                .counts
                .disk_full
                .fetch_add(1, Ordering::Relaxed);
        }
        shared
            .gauges
            .counts
            .spool_dropped
            .fetch_add(n, Ordering::Relaxed);
        let message = format!("{n} point(s) could not be spooled and are lost: {e}");
        set_error(shared, &message);
        if limit_log(&shared.spool_limiter) {
            tracing::error!(error = %e, points = n, "cannot write to the spool; points lost");
        }
    }
    shared.replay_wake.notify_one();
    spooled
}

/// Encodes points into one batch. Points that cannot be encoded are counted, logged and left
/// out.
fn encode(shared: &Shared, points: Vec<Queued>) -> Batch {
    let hint = shared.body_hint.load(Ordering::Relaxed);
    let mut body = String::with_capacity(hint.max(points.len() * 128));
    let mut ends = Vec::with_capacity(points.len());
    let mut invalid = 0u64;
    let mut first_error = None;
    for p in &points {
        let start = body.len();
        let encoded = match p {
            Queued::Point(p) => encode_point(p, &mut body),
            Queued::Line(line) => {
                body.push_str(line);
                Ok(())
            }
        };
        match encoded {
            Ok(()) => match u32::try_from(body.len()) {
                Ok(end) => ends.push(end),
                Err(_) => {
                    // A batch body beyond 4 GiB: cannot be indexed (and no server takes it).
                    body.truncate(start);
                    invalid += 1;
                }
            },
            Err(e) => {
                invalid += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    if invalid > 0 {
        shared
            .counters
            .counts
            .dropped_invalid
            .fetch_add(invalid, Ordering::Relaxed);
        let why = first_error.map_or_else(|| "too large".to_owned(), |e| e.to_string());
        log_refused(
            shared,
            &format!("{invalid} point(s) cannot be encoded: {why}"),
        );
    }
    shared
        .body_hint
        .store(body.len() + body.len() / 8, Ordering::Relaxed);
    Batch::new(shared.precision, Bytes::from(body), ends)
}

/// What sending some batches achieved.
#[derive(Default)]
struct Sent {
    /// What must be retried later (InfluxDB did not answer, or not usefully).
    retry: Vec<Batch>,
    /// Points written.
    written: u64,
}

/// Sends batches in order: splits what is too large, isolates and quarantines refused lines,
/// stops at the first retryable failure and returns what is left.
async fn send_batches(shared: &Shared, batches: Vec<Batch>) -> Sent {
    let mut pending: Vec<Batch> = batches.into_iter().rev().collect();
    let mut splits = 0usize;
    let mut out = Sent::default();
    while let Some(b) = pending.pop() {
        if b.is_empty() {
            continue;
        }
        // late points are noted before they become readable (see the embedded writer)
        shared
            .write_log
            .note_lines((0..b.len()).map(|i| b.line(i)), b.precision);
        match write_once(shared, &b).await {
            Attempt::Written => {
                let n = b.len() as u64;
                out.written += n;
                shared
                    .counters
                    .counts
                    .written
                    .fetch_add(n, Ordering::Relaxed);
                shared
                    .write_log
                    .record_lines((0..b.len()).map(|i| b.line(i)));
            }
            Attempt::TooLarge if b.len() > 1 => {
                let (first, second) = b.split_at(b.len() / 2);
                pending.push(second);
                pending.push(first);
            }
            Attempt::TooLarge => {
                quarantine(
                    shared,
                    &b,
                    vec![(0, "larger than InfluxDB accepts (HTTP 413)".to_owned())],
                )
                .await;
            }
            Attempt::Refused(message) => {
                let found = if b.len() == 1 {
                    vec![(0, reason_text(&message))]
                } else {
                    culprits(&b, &message)
                };
                if !found.is_empty() {
                    let idx: Vec<usize> = found.iter().map(|(i, _)| *i).collect();
                    if idx.len() < b.len() {
                        // The rest may be written already (partial write): resending overwrites
                        // the same points and confirms nothing else was dropped silently.
                        pending.push(b.without(&idx));
                    }
                    quarantine(shared, &b, found).await;
                } else if splits < MAX_SPLITS {
                    splits += 1;
                    let (first, second) = b.split_at(b.len() / 2);
                    pending.push(second);
                    pending.push(first);
                } else {
                    let reason = reason_text(&message);
                    let all = (0..b.len()).map(|i| (i, reason.clone())).collect();
                    quarantine(shared, &b, all).await;
                }
            }
            Attempt::Retry => {
                out.retry.push(b);
                out.retry.extend(pending.drain(..).rev());
                break;
            }
        }
    }
    out
}

/// Moves lines of `batch` to the quarantine.
async fn quarantine(shared: &Shared, batch: &Batch, lines: Vec<(usize, String)>) {
    let n = lines.len() as u64;
    if n == 0 {
        return;
    }
    let at = chrono::Utc::now();
    let first_reason = lines.first().map(|(_, r)| r.clone()).unwrap_or_default();
    let points: Vec<QuarantinedPoint> = lines
        .into_iter()
        .map(|(i, reason)| QuarantinedPoint {
            line: String::from_utf8_lossy(batch.line(i)).into_owned(),
            reason,
            at,
        })
        .collect();
    let c = &shared.counters;
    c.own.quarantined.fetch_add(n, Ordering::Relaxed);
    c.own.dropped_rejected.fetch_add(n, Ordering::Relaxed);
    log_refused(shared, &format!("{n} point(s) quarantined: {first_reason}"));
    let q = Arc::clone(&shared.quarantine);
    if let Some(Err(e)) = blocking(move || q.add(points)).await {
        tracing::warn!(error = %e, "cannot persist quarantined points (kept in memory)");
    }
}

enum Attempt {
    Written,
    /// A `400` (or another final refusal) with the server's message.
    Refused(String),
    TooLarge,
    Retry,
}

async fn write_once(shared: &Shared, batch: &Batch) -> Attempt {
    let body = batch.bytes();
    let c = &shared.counters;
    let mut created = false;
    loop {
        let started = Instant::now();
        let outcome = shared.client.write(body.clone(), batch.precision).await;
        let answered = !matches!(outcome, WriteOutcome::Retryable { status: None, .. });
        if answered {
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            c.requests.fetch_add(1, Ordering::Relaxed);
            c.latency_total_us.fetch_add(us, Ordering::Relaxed);
            c.last_latency_us.store(us, Ordering::Relaxed);
            shared.latency.observe(us as f64 / 1e6);
            shared.recent_latency.record(us);
        }
        c.reachable.store(answered, Ordering::Relaxed);
        match outcome {
            WriteOutcome::Written => {
                succeeded(shared);
                return Attempt::Written;
            }
            WriteOutcome::Partial { message, .. } | WriteOutcome::Rejected { message } => {
                c.counts.write_errors.fetch_add(1, Ordering::Relaxed);
                succeeded(shared);
                set_error(shared, &message);
                return Attempt::Refused(message);
            }
            WriteOutcome::TooLarge => {
                c.counts.write_errors.fetch_add(1, Ordering::Relaxed);
                set_error(shared, "request body too large: splitting the batch");
                return Attempt::TooLarge;
            }
            WriteOutcome::DatabaseNotFound { message } => {
                c.counts.write_errors.fetch_add(1, Ordering::Relaxed);
                set_error(shared, &message);
                if created {
                    failed(shared, None, None);
                    return Attempt::Retry;
                }
                match shared.client.create_database().await {
                    Ok(()) => {
                        tracing::info!(
                            database = shared.client.database(),
                            "created the InfluxDB database"
                        );
                        created = true;
                    }
                    Err(e) => {
                        set_error(shared, &e.to_string());
                        failed(shared, None, None);
                        return Attempt::Retry;
                    }
                }
            }
            WriteOutcome::Unauthorized { message } => {
                c.counts.write_errors.fetch_add(1, Ordering::Relaxed);
                let first = {
                    let mut t = lock(&shared.texts);
                    let first = t.auth_error.is_none();
                    t.auth_error = Some(message.clone());
                    t.last_error = Some(message.clone());
                    first
                };
                if first {
                    tracing::error!(
                        error = %message,
                        "InfluxDB refused the credentials; check influxdb.username/password/token"
                    );
                }
                failed(shared, None, Some(shared.config.auth_backoff));
                return Attempt::Retry;
            }
            WriteOutcome::Retryable {
                message,
                retry_after,
                ..
            } => {
                c.counts.write_errors.fetch_add(1, Ordering::Relaxed);
                set_error(shared, &message);
                failed(shared, retry_after, None);
                return Attempt::Retry;
            }
        }
    }
}

/// Replays the spool, oldest first, while InfluxDB takes writes.
async fn replay(shared: Arc<Shared>) {
    let Some(spool) = shared.spool.clone() else {
        return;
    };
    let cfg = &shared.config;
    let permits = Arc::new(Semaphore::new(cfg.replay_in_flight));
    let mut tasks = JoinSet::new();
    let mut was_pending = false;
    loop {
        while tasks.try_join_next().is_some() {}
        if lock(&shared.queue).closed {
            break;
        }
        let pending = shared.gauges.points.load(Ordering::Relaxed) > 0;
        if was_pending && !pending {
            tracing::info!(
                replayed = shared.counters.own.replayed.load(Ordering::Relaxed),
                "spool replayed"
            );
        }
        was_pending = pending;
        let until = lock(&shared.backoff).until;
        if let Some(until) = until
            && until > Instant::now()
        {
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = shared.replay_wake.notified() => {}
            }
            continue;
        }
        // Live first: do not add load while live points pile up.
        let behind = lock(&shared.queue).points.len() >= cfg.max_in_flight * cfg.batch_size;
        if behind {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = shared.replay_wake.notified() => {}
            }
            continue;
        }
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = shared.replay_wake.notified() => continue,
        };
        let sp = Arc::clone(&spool);
        let (points, bytes) = (cfg.replay_points, cfg.replay_bytes);
        let chunk = match blocking(move || lock(&sp).read_chunk(points, bytes, now_ms())).await {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                set_error(&shared, &e.to_string());
                if limit_log(&shared.spool_limiter) {
                    tracing::error!(error = %e, "cannot read the spool");
                }
                drop(permit);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            None => None,
        };
        let Some(chunk) = chunk else {
            drop(permit);
            // Nothing to replay: wait for an append (checking now and then anyway).
            tokio::select! {
                () = shared.replay_wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        };
        let s = Arc::clone(&shared);
        let sp = Arc::clone(&spool);
        tasks.spawn(async move {
            let sent = send_batches(&s, vec![chunk.batch]).await;
            s.counters
                .own
                .replayed
                .fetch_add(sent.written, Ordering::Relaxed);
            let records: Vec<RecordRef> = chunk.records;
            let done = sent.retry.is_empty();
            if !done {
                // Given back to the spool, read again from disk at the next attempt (so it stays
                // under the spool's bounds instead of waiting in memory).
                s.counters.counts.retries.fetch_add(1, Ordering::Relaxed);
            }
            let result = blocking(move || {
                let mut sp = lock(&sp);
                if done {
                    sp.ack(&records)
                } else {
                    sp.nack(&records)
                }
            })
            .await;
            if let Some(Err(e)) = result
                && limit_log(&s.spool_limiter)
            {
                tracing::error!(error = %e, "cannot update the spool cursor");
            }
            drop(permit);
            s.replay_wake.notify_one();
        });
    }
    // Shutting down: let requests under way finish (the shutdown deadline bounds this); records
    // not acknowledged stay in the spool.
    while tasks.join_next().await.is_some() {}
}

/// Syncs the spool at most `sync_every` after a write and applies the age bound.
async fn maintain(shared: Arc<Shared>) {
    let Some(spool) = shared.spool.clone() else {
        return;
    };
    let every = shared.config.sync_every;
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sp = Arc::clone(&spool);
        let done = blocking(move || {
            let mut sp = lock(&sp);
            sp.sync()?;
            sp.expire(now_ms())
        })
        .await;
        if let Some(Err(e)) = done
            && limit_log(&shared.spool_limiter)
        {
            tracing::error!(error = %e, "spool maintenance failed");
        }
    }
}

fn set_error(shared: &Shared, message: &str) {
    lock(&shared.texts).last_error = Some(message.to_owned());
}

/// Records an answered request: clears the back-off and any credentials error.
fn succeeded(shared: &Shared) {
    let resumed = {
        let mut b = lock(&shared.backoff);
        let resumed = b.failures > 0;
        if resumed {
            tracing::info!(failures = b.failures, "InfluxDB writes resumed");
        }
        b.failures = 0;
        b.until = None;
        resumed
    };
    {
        let mut t = lock(&shared.texts);
        t.auth_error = None;
        t.last_write_at = Some(chrono::Utc::now());
    }
    if resumed {
        shared.replay_wake.notify_one();
        shared.wake.notify_one();
    }
}

/// Records a failed attempt and sets the next attempt's time.
fn failed(shared: &Shared, retry_after: Option<Duration>, at_least: Option<Duration>) {
    let cfg = &shared.config;
    let mut b = lock(&shared.backoff);
    b.failures = b.failures.saturating_add(1);
    let exp = cfg
        .backoff_min
        .saturating_mul(1u32 << (b.failures - 1).min(16))
        .min(cfg.backoff_max);
    let jitter = 0.75 + rand::random::<f64>() * 0.5;
    let mut delay = exp.mul_f64(jitter);
    if let Some(ra) = retry_after {
        delay = delay.max(ra.min(Duration::from_secs(300)));
    }
    if let Some(min) = at_least {
        delay = delay.max(min);
    }
    if b.failures == 1 || b.failures.is_power_of_two() {
        tracing::warn!(
            failures = b.failures,
            retry_in_ms = delay.as_millis() as u64,
            spooling = shared.spool.is_some(),
            "InfluxDB write failed; keeping the batch and retrying"
        );
    }
    let until = Instant::now() + delay;
    b.until = Some(b.until.map_or(until, |u| u.max(until)));
}

/// Whether a rate-limited log line may be written now.
fn limit_log(limiter: &Mutex<LogLimiter>) -> bool {
    let mut l = lock(limiter);
    let now = Instant::now();
    if l.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
        l.suppressed += 1;
        return false;
    }
    l.suppressed = 0;
    l.last = Some(now);
    true
}

/// Logs refused points, at most once per [`LOG_EVERY`].
fn log_refused(shared: &Shared, message: &str) {
    let mut l = lock(&shared.limiter);
    let now = Instant::now();
    if l.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
        l.suppressed += 1;
        return;
    }
    let suppressed = std::mem::take(&mut l.suppressed);
    l.last = Some(now);
    drop(l);
    tracing::warn!(error = message, suppressed, "InfluxDB refused points");
}

/// Creates the database once at start, retrying while InfluxDB is unreachable.
async fn create_database_at_start(shared: Arc<Shared>) {
    let mut delay = Duration::from_millis(500);
    loop {
        if lock(&shared.queue).closed {
            return;
        }
        match shared.client.create_database().await {
            Ok(()) => {
                shared.counters.reachable.store(true, Ordering::Relaxed);
                return;
            }
            Err(InfluxError::Transport(e)) => {
                shared.counters.reachable.store(false, Ordering::Relaxed);
                set_error(&shared, &format!("cannot reach InfluxDB: {e}"));
            }
            Err(e @ InfluxError::Status { status: 500.., .. }) => {
                shared.counters.reachable.store(true, Ordering::Relaxed);
                set_error(&shared, &e.to_string());
            }
            Err(e) => {
                // Not permitted or not supported (InfluxDB 2.x): writes will tell.
                shared.counters.reachable.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot create the InfluxDB database");
                return;
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
