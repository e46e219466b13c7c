//! The embedded store's writer: a bounded in-memory queue and one task owning the write
//! connection (see the module documentation of [`crate::store::embedded`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use rusqlite::Connection;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::intern::{Interned, origin_field_code, stored_value};
use super::{EmbeddedOptions, Row, row_of};
use crate::store::latency::RecentLatencies;
use crate::store::point::Point;
use crate::store::sink::ShutdownReport;
use crate::store::sink::{StorageBackend, StorageStatus, WriterCounters};
use crate::store::written::WriteLog;

/// Buckets of the transaction latency histogram, seconds (as the InfluxDB writer's).
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Retry delays after a failed transaction.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Work run on the write connection between two write transactions (retention's chunked
/// deletes, the incremental vacuum, the one-time conversion).
pub(crate) type Maintenance = Box<dyn FnOnce(&mut Connection) + Send + 'static>;

#[derive(Default)]
struct Queue {
    points: VecDeque<(Instant, Point)>,
    /// Maintenance waiting for the connection; dropped unrun at shutdown.
    jobs: VecDeque<Maintenance>,
    /// Points in the transaction under way (or waiting for its retry).
    in_flight: usize,
    closed: bool,
}

#[derive(Default)]
struct Texts {
    last_write_at: Option<chrono::DateTime<chrono::Utc>>,
    last_error: Option<String>,
}

struct Shared {
    options: EmbeddedOptions,
    queue: Mutex<Queue>,
    wake: Notify,
    /// Told when a transaction ends (queue room may have appeared) and at shutdown.
    room: Notify,
    counts: WriterCounters,
    transactions: AtomicU64,
    latency_total_us: AtomicU64,
    last_latency_us: AtomicU64,
    healthy: AtomicBool,
    texts: Mutex<Texts>,
    latency: Histogram,
    recent_latency: RecentLatencies,
    task: Mutex<Option<JoinHandle<()>>>,
    write_log: Arc<WriteLog>,
    /// Page cache (KiB) maintenance under way needs; write transactions keep at least this much
    /// instead of shrinking it (0: none).
    maintenance_cache_kib: AtomicI64,
    /// Bumped by maintenance that deleted attribute sets: the write path's cache of them is then
    /// stale.
    attribute_epoch: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Handle to the embedded writer. Cheap to clone; every clone feeds the same queue.
#[derive(Clone)]
pub struct EmbeddedWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EmbeddedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedWriter")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl EmbeddedWriter {
    /// Starts the writer task owning `conn`.
    pub(super) fn spawn(conn: Connection, options: EmbeddedOptions) -> Self {
        let shared = Arc::new(Shared {
            options: EmbeddedOptions {
                batch_size: options.batch_size.max(1),
                capacity: options.capacity.max(1),
                linger: options.linger,
            },
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            room: Notify::new(),
            counts: WriterCounters::default(),
            transactions: AtomicU64::new(0),
            latency_total_us: AtomicU64::new(0),
            last_latency_us: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            texts: Mutex::new(Texts::default()),
            latency: Histogram::new(LATENCY_BUCKETS),
            recent_latency: RecentLatencies::default(),
            task: Mutex::new(None),
            write_log: Arc::default(),
            maintenance_cache_kib: AtomicI64::new(0),
            attribute_epoch: Arc::default(),
        });
        let task = tokio::spawn(run(Arc::clone(&shared), conn));
        *lock(&shared.task) = Some(task);
        EmbeddedWriter { shared }
    }

    /// Queues a point. Never blocks or awaits; when `capacity` points are held the oldest queued
    /// point is dropped (and counted); after shutdown the point itself is dropped (and counted).
    pub fn push(&self, point: Point) {
        let shared = &*self.shared;
        let (len, dropped) = {
            let mut q = lock(&shared.queue);
            if q.closed {
                (None, true)
            } else if q.points.len() + q.in_flight >= shared.options.capacity {
                if q.points.pop_front().is_some() {
                    q.points.push_back((Instant::now(), point));
                    (Some(q.points.len()), true)
                } else {
                    (None, true)
                }
            } else {
                q.points.push_back((Instant::now(), point));
                (Some(q.points.len()), false)
            }
        };
        if dropped {
            shared
                .counts
                .dropped_overflow
                .fetch_add(1, Ordering::Relaxed);
        }
        if len == Some(1) || len == Some(shared.options.batch_size) {
            shared.wake.notify_one();
        }
    }

    /// Waits until a point can be queued without dropping another: the queue is under
    /// `capacity`, or the writer is failing (then waiting would stall ingestion for as long as
    /// the disk is broken, and the oldest points give way as with `push`), or it was shut down.
    /// The pipeline calls it before each change, so a burst beyond what SQLite can take slows
    /// the WebSocket reader (and Home Assistant's sending) instead of losing points.
    pub async fn wait_for_room(&self) {
        let shared = &*self.shared;
        loop {
            let room = shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let q = lock(&shared.queue);
                if q.closed
                    || q.points.len() + q.in_flight < shared.options.capacity
                    || !shared.healthy.load(Ordering::Relaxed)
                {
                    return;
                }
            }
            // re-checked at least every second: a failing writer does not always end a transaction
            let _ = tokio::time::timeout(Duration::from_secs(1), room).await;
        }
    }

    /// Runs `job` on the write connection, between two write transactions, and returns its
    /// result; `None` once the writer is shut down. A job and a due batch take turns, so a
    /// caller sending small jobs one after another never starves the writes.
    pub(crate) async fn with_connection<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut q = lock(&self.shared.queue);
            if q.closed {
                return None;
            }
            q.jobs.push_back(Box::new(move |c: &mut Connection| {
                let _ = tx.send(job(c));
            }));
        }
        self.shared.wake.notify_one();
        rx.await.ok()
    }

    /// Keeps the write connection's page cache at least `kib` KiB between write transactions while
    /// maintenance needs it (a retention run: its deletes revisit the same leaves of every entity);
    /// 0 gives it back.
    pub(crate) fn set_maintenance_cache(&self, kib: i64) {
        self.shared
            .maintenance_cache_kib
            .store(kib.max(0), Ordering::Relaxed);
    }

    /// The counter maintenance bumps (on the write connection, before the next write) when it
    /// deleted attribute sets the write path may have cached.
    pub(crate) fn attribute_epoch(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.shared.attribute_epoch)
    }

    /// The log of committed writes (which entities, in which order).
    pub fn write_log(&self) -> Arc<WriteLog> {
        Arc::clone(&self.shared.write_log)
    }

    /// The histogram of transaction durations (seconds), for Prometheus.
    pub fn latency_histogram(&self) -> Histogram {
        self.shared.latency.clone()
    }

    /// A snapshot of the counters: `reachable` is whether the last transaction succeeded.
    pub fn stats(&self) -> StorageStatus {
        let s = &*self.shared;
        let (queued, in_flight) = {
            let q = lock(&s.queue);
            (q.points.len(), q.in_flight)
        };
        let texts = lock(&s.texts);
        let transactions = s.transactions.load(Ordering::Relaxed);
        let ms = |us: u64| us as f64 / 1000.0;
        let (p50, p95) = s.recent_latency.p50_p95_ms();
        StorageStatus {
            backend: StorageBackend::Embedded,
            reachable: s.healthy.load(Ordering::Relaxed),
            queued,
            in_flight,
            counts: s.counts.snapshot(),
            last_write_at: texts.last_write_at.map(|t| t.to_rfc3339()),
            last_error: texts.last_error.clone(),
            last_latency_ms: (transactions > 0)
                .then(|| ms(s.last_latency_us.load(Ordering::Relaxed))),
            mean_latency_ms: (transactions > 0)
                .then(|| ms(s.latency_total_us.load(Ordering::Relaxed)) / transactions as f64),
            p50_latency_ms: p50,
            p95_latency_ms: p95,
            influxdb: None,
        }
    }

    /// Stops accepting points and writes what is queued until `deadline`; what is left then is
    /// lost (and reported).
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        let shared = &self.shared;
        lock(&shared.queue).closed = true;
        shared.wake.notify_one();
        shared.room.notify_waiters();
        let task = lock(&shared.task).take();
        if let Some(mut task) = task
            && tokio::time::timeout(deadline, &mut task).await.is_err()
        {
            task.abort();
            let _ = task.await;
        }
        let left = {
            let q = lock(&shared.queue);
            q.points.len() + q.in_flight
        };
        ShutdownReport {
            written: shared.counts.written.load(Ordering::Relaxed),
            spooled: 0,
            left,
        }
    }
}

/// The writer task: cut batches, write them, until closed and empty. Transactions run on
/// Tokio's blocking pool (SQLite calls block), the connection travelling with them.
async fn run(shared: Arc<Shared>, conn: Connection) {
    let mut conn = Some(conn);
    let mut interned = Some(Box::new(Interned::default()));
    let mut failures = 0_u32;
    // whether the connection last ran a maintenance job: a due batch goes next
    let mut after_job = false;
    loop {
        let batch = loop {
            let (due, closed, oldest, job) = {
                let mut q = lock(&shared.queue);
                let oldest = q.points.front().map(|(t, _)| *t);
                let due = q.points.len() >= shared.options.batch_size
                    || (q.closed && !q.points.is_empty())
                    || oldest.is_some_and(|t| t.elapsed() >= shared.options.linger);
                if q.closed {
                    q.jobs.clear();
                }
                let job = if due && after_job {
                    None
                } else {
                    q.jobs.pop_front()
                };
                (due, q.closed, oldest, job)
            };
            if let Some(job) = job {
                if !run_job(&mut conn, job).await {
                    return;
                }
                after_job = true;
                continue;
            }
            after_job = false;
            if due {
                let mut q = lock(&shared.queue);
                let n = q.points.len().min(shared.options.batch_size);
                let batch: Vec<Point> = q.points.drain(..n).map(|(_, p)| p).collect();
                q.in_flight = batch.len();
                break batch;
            }
            if closed {
                if let Some(conn) = conn.take() {
                    let _ = tokio::task::spawn_blocking(move || conn.close()).await;
                }
                return;
            }
            match oldest {
                Some(t) => {
                    let _ =
                        tokio::time::timeout_at(t + shared.options.linger, shared.wake.notified())
                            .await;
                }
                None => shared.wake.notified().await,
            }
        };
        let rows: Vec<Row> = batch.iter().filter_map(row_of).collect();
        let invalid = batch.len() - rows.len();
        if invalid > 0 {
            shared
                .counts
                .dropped_invalid
                .fetch_add(invalid as u64, Ordering::Relaxed);
        }
        drop(batch);
        // late points are noted before they become readable, so the rollups' watermark never
        // passes one they have not redone
        shared
            .write_log
            .note_times(rows.iter().map(|r| (r.entity_id.as_str(), r.time_us)));
        let rows = Arc::new(rows);
        loop {
            let started = Instant::now();
            let (Some(c), Some(cache)) = (conn.take(), interned.take()) else {
                return;
            };
            let job = Arc::clone(&rows);
            let floor_kib = shared.maintenance_cache_kib.load(Ordering::Relaxed);
            let epoch = Arc::clone(&shared.attribute_epoch);
            let (c, cache, result) = match tokio::task::spawn_blocking(move || {
                let (mut c, mut cache) = (c, cache);
                cache.sync_epoch(epoch.load(Ordering::Acquire));
                let result = write_rows(&mut c, &job, floor_kib, &mut cache);
                (c, cache, result)
            })
            .await
            {
                Ok(done) => done,
                // the blocking pool is shutting down with the runtime: nothing more can be written
                Err(_) => return,
            };
            conn = Some(c);
            interned = Some(cache);
            match result {
                Ok(()) => {
                    record_success(&shared, rows.len(), started.elapsed());
                    shared
                        .write_log
                        .record(rows.iter().map(|r| r.entity_id.as_str()));
                    failures = 0;
                    break;
                }
                Err(e) => {
                    shared.counts.write_errors.fetch_add(1, Ordering::Relaxed);
                    shared.counts.retries.fetch_add(1, Ordering::Relaxed);
                    shared.healthy.store(false, Ordering::Relaxed);
                    let message = format!("SQLite write failed: {e}");
                    if lock(&shared.texts).last_error.as_deref() != Some(message.as_str()) {
                        tracing::warn!(error = %message, points = rows.len(), "embedded history write failed; retrying");
                    }
                    lock(&shared.texts).last_error = Some(message);
                    failures = failures.saturating_add(1);
                    let delay = BACKOFF_MIN
                        .saturating_mul(2_u32.saturating_pow(failures.min(10)))
                        .min(BACKOFF_MAX);
                    if lock(&shared.queue).closed {
                        // at shutdown: one more try, then give up the batch
                        if failures > 2 {
                            break;
                        }
                    }
                    if is_disk_full(&e) {
                        shared.counts.disk_full.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(delay).await;
                    // maintenance waiting meanwhile runs before the retry: a retention delete
                    // frees pages the batch can use
                    loop {
                        let job = lock(&shared.queue).jobs.pop_front();
                        let Some(job) = job else { break };
                        if !run_job(&mut conn, job).await {
                            return;
                        }
                    }
                }
            }
        }
        lock(&shared.queue).in_flight = 0;
        shared.room.notify_waiters();
    }
}

/// Runs one maintenance job on the connection (on the blocking pool); `false` when the
/// connection is gone (the runtime is shutting down).
async fn run_job(conn: &mut Option<Connection>, job: Maintenance) -> bool {
    let Some(mut c) = conn.take() else {
        return false;
    };
    match tokio::task::spawn_blocking(move || {
        job(&mut c);
        c
    })
    .await
    {
        Ok(c) => {
            *conn = Some(c);
            true
        }
        Err(_) => false,
    }
}

/// Whether SQLite refused a write because the disk (or the file's `max_page_count`) is full.
pub(crate) fn is_disk_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

fn record_success(shared: &Shared, rows: usize, took: Duration) {
    let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    shared
        .counts
        .written
        .fetch_add(rows as u64, Ordering::Relaxed);
    shared.transactions.fetch_add(1, Ordering::Relaxed);
    shared.latency_total_us.fetch_add(us, Ordering::Relaxed);
    shared.last_latency_us.store(us, Ordering::Relaxed);
    shared.healthy.store(true, Ordering::Relaxed);
    shared.latency.observe(took.as_secs_f64());
    shared.recent_latency.record(us);
    let mut texts = lock(&shared.texts);
    texts.last_write_at = Some(chrono::Utc::now());
    texts.last_error = None;
}

/// The row insert: an upsert on the primary key, so a point written again overwrites itself, but
/// a rewrite without an origin (snapshot, backfill) keeps the one stored, as InfluxDB keeps
/// fields a rewrite leaves out.
pub(super) const INSERT: &str = "INSERT INTO points (entity, time_us, state, value, attributes, origin, origin_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
    ON CONFLICT (entity, time_us) DO UPDATE SET state = excluded.state, value = excluded.value, attributes = excluded.attributes, \
    origin = coalesce(excluded.origin, origin), origin_id = CASE WHEN excluded.origin IS NULL THEN origin_id ELSE excluded.origin_id END";

/// Page cache of the write connection, KiB, for transactions of at most / above
/// [`LARGE_TRANSACTION`] rows. A busy home's transactions touch the newest leaf of nearly every
/// entity, so a large cache keeps them from being re-read; a quiet home's small transactions do
/// not need it, and the memory is given back (`shrink_memory`) when the load drops.
const CACHE_KIB: (i64, i64) = (2 * 1024, 8 * 1024);

/// Rows from which a transaction counts as large (see [`CACHE_KIB`]).
const LARGE_TRANSACTION: usize = 10_000;

/// Sizes the write connection's page cache for a transaction of `rows` rows.
fn size_cache(conn: &Connection, rows: usize, floor_kib: i64) -> Result<(), rusqlite::Error> {
    let want = -(if rows > LARGE_TRANSACTION {
        CACHE_KIB.1
    } else {
        CACHE_KIB.0
    })
    .max(floor_kib);
    let have: i64 = conn.pragma_query_value(None, "cache_size", |r| r.get(0))?;
    if have != want {
        conn.pragma_update(None, "cache_size", want)?;
        if want > have {
            // smaller than before (sizes in KiB are negative): release what is over
            conn.execute_batch("PRAGMA shrink_memory")?;
        }
    }
    Ok(())
}

/// Writes `rows` in one transaction, one prepared statement executed per row (in
/// SQLite's own process space there is no round trip to amortise, unlike a multi-row `INSERT`
/// sent to a server); entity ids and attribute sets are interned through `interned`, which is
/// cleared when the transaction fails (the ids it created are rolled back).
pub(super) fn write_rows(
    conn: &mut Connection,
    rows: &[Row],
    floor_kib: i64,
    interned: &mut Interned,
) -> Result<(), rusqlite::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    size_cache(conn, rows.len(), floor_kib)?;
    let result = insert_rows(conn, rows, interned);
    if result.is_err() {
        interned.clear();
    }
    result
}

fn insert_rows(
    conn: &mut Connection,
    rows: &[Row],
    interned: &mut Interned,
) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(INSERT)?;
        for r in rows {
            let entity = interned.entity(&tx, &r.entity_id, &r.domain)?;
            let attributes = interned.attributes(&tx, &r.attributes, r.time_us)?;
            insert.execute(rusqlite::params![
                entity,
                r.time_us,
                r.state,
                stored_value(r.state.as_deref(), r.value),
                attributes,
                origin_field_code(r.origin.as_deref()),
                r.origin_id
            ])?;
        }
    }
    tx.commit()
}
