//! The batching writer: a bounded in-memory queue in front of [`InfluxClient::write`].
//!
//! [`WriterHandle::push`] never blocks or awaits: it appends to a queue of at most
//! `queue_capacity` points (points in flight count too); when full, the oldest queued point is
//! dropped and counted. One dispatcher task cuts batches of up to `batch_size` points, as soon as
//! a batch is full or the oldest point has waited `flush_interval`, and runs up to
//! `max_in_flight` write requests at once. Each request's outcome decides what happens to its
//! points:
//!
//! * written, partial, rejected: counted; refused points are dropped (never resent) and the
//!   server's explanation logged, at most once per [`LOG_EVERY`];
//! * database not found: the database is created and the batch resent;
//! * too large: the batch is split in halves (a single point too large is dropped);
//! * unauthorized: recorded as a configuration error for health, the points go back to the front
//!   of the queue and are retried after a long back-off;
//! * retryable (timeouts, no connection, `429`, `5xx`): the points go back to the front of the
//!   queue (so they count against its bound, and overflow drops them first, being the oldest) and
//!   the writer backs off exponentially (0.5 s doubling to 30 s, ±25 % jitter, at least the
//!   server's `Retry-After`).
//!
//! The database is created at start in the background (retried while InfluxDB is unreachable).
//! [`WriterHandle::shutdown`] stops accepting points, flushes what is queued and returns by its
//! deadline.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::client::{InfluxClient, InfluxError, WriteOutcome};
use super::line::{Point, Precision, encode_point};
use crate::config::InfluxSettings;

/// Shortest interval between two log lines about refused points.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Tunables of the writer (from [`InfluxSettings`], plus back-off limits tests shorten).
#[derive(Debug, Clone)]
pub(crate) struct WriterConfig {
    /// Points per request.
    pub batch_size: usize,
    /// Longest wait of a point for its batch to fill.
    pub linger: Duration,
    /// Points held (queued, waiting for a retry or in flight).
    pub capacity: usize,
    /// Concurrent write requests.
    pub max_in_flight: usize,
    /// First retry delay.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Retry delay after refused credentials.
    pub auth_backoff: Duration,
}

impl WriterConfig {
    fn from_settings(s: &InfluxSettings) -> Self {
        WriterConfig {
            batch_size: s.batch_size.max(1),
            linger: s.flush_interval(),
            capacity: s.queue_capacity.max(1),
            max_in_flight: s.max_in_flight.max(1),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            auth_backoff: Duration::from_secs(60),
        }
    }
}

/// A snapshot of the writer's counters, for health endpoints and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriterStatus {
    /// Points waiting in the queue (including batches waiting to be retried).
    pub queued: usize,
    /// Points in write requests under way.
    pub in_flight: usize,
    /// Points InfluxDB accepted.
    pub written: u64,
    /// Points InfluxDB refused (parse errors, field type conflicts…); never resent.
    pub dropped_rejected: u64,
    /// Points that could not be encoded (no writable field, bad measurement).
    pub dropped_invalid: u64,
    /// Points dropped because the queue was full (the oldest go first), or pushed after shutdown.
    pub dropped_overflow: u64,
    /// Batches put back for another attempt.
    pub retries: u64,
    /// Write requests that did not fully succeed.
    pub write_errors: u64,
    /// When the last write succeeded (RFC 3339).
    pub last_write_at: Option<String>,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Set while InfluxDB refuses the credentials: a configuration error.
    pub auth_error: Option<String>,
    /// Whether InfluxDB answered the last request.
    pub reachable: bool,
    /// Duration of the last write request, milliseconds.
    pub last_latency_ms: Option<f64>,
    /// Mean duration of write requests, milliseconds.
    pub mean_latency_ms: Option<f64>,
}

/// What [`WriterHandle::shutdown`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Points written over the writer's lifetime.
    pub written: u64,
    /// Points still queued or in flight when it returned (lost).
    pub left: usize,
}

#[derive(Default)]
struct Queue {
    points: VecDeque<(Instant, Point)>,
    in_flight: usize,
    closed: bool,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped_rejected: AtomicU64,
    dropped_invalid: AtomicU64,
    dropped_overflow: AtomicU64,
    retries: AtomicU64,
    write_errors: AtomicU64,
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

struct Shared {
    config: WriterConfig,
    client: InfluxClient,
    precision: Precision,
    queue: Mutex<Queue>,
    wake: Notify,
    counters: Counters,
    texts: Mutex<Texts>,
    backoff: Mutex<Backoff>,
    limiter: Mutex<LogLimiter>,
    body_hint: AtomicUsize,
    task: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
            .finish_non_exhaustive()
    }
}

/// Starts the writer task (and, in the background, database creation) on the current Tokio
/// runtime. `precision` is the precision of the points' timestamps.
pub fn spawn_writer(
    settings: &InfluxSettings,
    client: InfluxClient,
    precision: Precision,
) -> WriterHandle {
    spawn_writer_with(WriterConfig::from_settings(settings), client, precision)
}

pub(crate) fn spawn_writer_with(
    config: WriterConfig,
    client: InfluxClient,
    precision: Precision,
) -> WriterHandle {
    let shared = Arc::new(Shared {
        config,
        client,
        precision,
        queue: Mutex::new(Queue::default()),
        wake: Notify::new(),
        counters: Counters::default(),
        texts: Mutex::new(Texts::default()),
        backoff: Mutex::new(Backoff::default()),
        limiter: Mutex::new(LogLimiter::default()),
        body_hint: AtomicUsize::new(0),
        task: Mutex::new(None),
    });
    tokio::spawn(create_database_at_start(Arc::clone(&shared)));
    let task = tokio::spawn(dispatch(Arc::clone(&shared)));
    *lock(&shared.task) = Some(task);
    WriterHandle { shared }
}

impl WriterHandle {
    /// Queues a point. Never blocks: when the queue is full the oldest point is dropped (and
    /// counted); after shutdown the point itself is dropped.
    pub fn push(&self, point: Point) {
        let shared = &*self.shared;
        let (len, dropped) = {
            let mut q = lock(&shared.queue);
            if q.closed {
                (None, true)
            } else if q.points.len() + q.in_flight >= shared.config.capacity {
                // Full: drop the oldest queued point. If everything held is in flight, the new
                // point is the only one that can go.
                match q.points.pop_front() {
                    Some(_) => {
                        q.points.push_back((Instant::now(), point));
                        (Some(q.points.len()), true)
                    }
                    None => (None, true),
                }
            } else {
                q.points.push_back((Instant::now(), point));
                (Some(q.points.len()), false)
            }
        };
        if dropped {
            shared
                .counters
                .dropped_overflow
                .fetch_add(1, Ordering::Relaxed);
        }
        if len == Some(1) || len == Some(shared.config.batch_size) {
            shared.wake.notify_one();
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> WriterStatus {
        let shared = &*self.shared;
        let (queued, in_flight) = {
            let q = lock(&shared.queue);
            (q.points.len(), q.in_flight)
        };
        let c = &shared.counters;
        let texts = lock(&shared.texts);
        let requests = c.requests.load(Ordering::Relaxed);
        let ms = |us: u64| us as f64 / 1000.0;
        WriterStatus {
            queued,
            in_flight,
            written: c.written.load(Ordering::Relaxed),
            dropped_rejected: c.dropped_rejected.load(Ordering::Relaxed),
            dropped_invalid: c.dropped_invalid.load(Ordering::Relaxed),
            dropped_overflow: c.dropped_overflow.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            last_write_at: texts.last_write_at.map(|t| t.to_rfc3339()),
            last_error: texts.last_error.clone(),
            auth_error: texts.auth_error.clone(),
            reachable: c.reachable.load(Ordering::Relaxed),
            last_latency_ms: (requests > 0).then(|| ms(c.last_latency_us.load(Ordering::Relaxed))),
            mean_latency_ms: (requests > 0)
                .then(|| ms(c.latency_total_us.load(Ordering::Relaxed)) / requests as f64),
        }
    }

    /// Stops accepting points, flushes everything queued and returns once it is written or
    /// `deadline` has passed, whichever comes first.
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        let shared = &*self.shared;
        lock(&shared.queue).closed = true;
        shared.wake.notify_one();
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
            written: shared.counters.written.load(Ordering::Relaxed),
            left,
        }
    }
}

enum Next {
    /// Nothing to send yet: wait for a push (or until the given instant).
    Wait(Option<Instant>),
    /// A batch is due.
    Send,
    /// Closed and drained.
    Done,
}

async fn dispatch(shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(shared.config.max_in_flight));
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let next = {
            let q = lock(&shared.queue);
            match q.points.front() {
                None if q.closed && q.in_flight == 0 => Next::Done,
                None => Next::Wait(None),
                Some(_) if q.closed || q.points.len() >= shared.config.batch_size => Next::Send,
                Some((first, _)) => {
                    let due = *first + shared.config.linger;
                    if Instant::now() >= due {
                        Next::Send
                    } else {
                        Next::Wait(Some(due))
                    }
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
            Next::Send => {}
        }
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
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let batch: Vec<Point> = {
            let mut q = lock(&shared.queue);
            let n = q.points.len().min(shared.config.batch_size);
            q.in_flight += n;
            q.points.drain(..n).map(|(_, p)| p).collect()
        };
        if batch.is_empty() {
            continue;
        }
        let shared = Arc::clone(&shared);
        tasks.spawn(async move {
            let n = batch.len();
            let requeue = send(&shared, batch).await;
            finish_batch(&shared, n, requeue);
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Releases a batch's in-flight count and puts back the points to retry, oldest first.
fn finish_batch(shared: &Shared, sent: usize, requeue: Vec<Point>) {
    let retried = !requeue.is_empty();
    let mut overflow = 0u64;
    {
        let mut q = lock(&shared.queue);
        q.in_flight = q.in_flight.saturating_sub(sent);
        let now = Instant::now();
        for p in requeue.into_iter().rev() {
            q.points.push_front((now, p));
        }
        while q.points.len() + q.in_flight > shared.config.capacity
            && q.points.pop_front().is_some()
        {
            overflow += 1;
        }
    }
    if overflow > 0 {
        shared
            .counters
            .dropped_overflow
            .fetch_add(overflow, Ordering::Relaxed);
    }
    if retried {
        shared.counters.retries.fetch_add(1, Ordering::Relaxed);
    }
    shared.wake.notify_one();
}

/// Encodes points into one body. Points that cannot be encoded are counted, logged and removed
/// from `points` (so a retry does not count them again). Returns the body and its point count.
fn encode(shared: &Shared, points: &mut Vec<Point>) -> (Bytes, usize) {
    let hint = shared.body_hint.load(Ordering::Relaxed);
    let mut body = String::with_capacity(hint.max(points.len() * 128));
    let mut invalid: Vec<usize> = Vec::new();
    let mut first_error = None;
    for (i, p) in points.iter().enumerate() {
        if let Err(e) = encode_point(p, &mut body) {
            invalid.push(i);
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        shared
            .counters
            .dropped_invalid
            .fetch_add(invalid.len() as u64, Ordering::Relaxed);
        log_refused(
            shared,
            &format!("{} point(s) cannot be encoded: {e}", invalid.len()),
        );
        for i in invalid.into_iter().rev() {
            points.remove(i);
        }
    }
    shared
        .body_hint
        .store(body.len() + body.len() / 8, Ordering::Relaxed);
    (Bytes::from(body), points.len())
}

/// Sends one batch, splitting it when too large. Returns the points to put back in the queue.
async fn send(shared: &Shared, points: Vec<Point>) -> Vec<Point> {
    let mut pending = vec![points];
    let mut requeue = Vec::new();
    while let Some(mut points) = pending.pop() {
        match send_once(shared, &mut points).await {
            Sent::Done => {}
            Sent::Split if points.len() > 1 => {
                let mut first = points;
                let second = first.split_off(first.len() / 2);
                pending.push(second);
                pending.push(first);
            }
            Sent::Split => {
                shared
                    .counters
                    .dropped_rejected
                    .fetch_add(1, Ordering::Relaxed);
                log_refused(shared, "a single point is larger than InfluxDB accepts");
            }
            Sent::Retry => {
                requeue.extend(points);
                // Keep the rest too: the server is not taking writes now.
                for rest in pending.drain(..).rev() {
                    requeue.extend(rest);
                }
            }
        }
    }
    requeue
}

enum Sent {
    Done,
    Split,
    Retry,
}

async fn send_once(shared: &Shared, points: &mut Vec<Point>) -> Sent {
    let (body, count) = encode(shared, points);
    if count == 0 {
        return Sent::Done;
    }
    let c = &shared.counters;
    let mut created = false;
    loop {
        let started = Instant::now();
        let outcome = shared.client.write(body.clone(), shared.precision).await;
        let answered = !matches!(outcome, WriteOutcome::Retryable { status: None, .. });
        if answered {
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            c.requests.fetch_add(1, Ordering::Relaxed);
            c.latency_total_us.fetch_add(us, Ordering::Relaxed);
            c.last_latency_us.store(us, Ordering::Relaxed);
        }
        c.reachable.store(answered, Ordering::Relaxed);
        match outcome {
            WriteOutcome::Written => {
                c.written.fetch_add(count as u64, Ordering::Relaxed);
                succeeded(shared);
                return Sent::Done;
            }
            WriteOutcome::Partial { dropped, message } => {
                let dropped = dropped.min(count);
                c.written
                    .fetch_add((count - dropped) as u64, Ordering::Relaxed);
                c.dropped_rejected
                    .fetch_add(dropped as u64, Ordering::Relaxed);
                c.write_errors.fetch_add(1, Ordering::Relaxed);
                succeeded(shared);
                set_error(shared, &message);
                log_refused(shared, &message);
                return Sent::Done;
            }
            WriteOutcome::Rejected { message } => {
                c.dropped_rejected
                    .fetch_add(count as u64, Ordering::Relaxed);
                c.write_errors.fetch_add(1, Ordering::Relaxed);
                succeeded(shared);
                set_error(shared, &message);
                log_refused(shared, &message);
                return Sent::Done;
            }
            WriteOutcome::TooLarge => {
                c.write_errors.fetch_add(1, Ordering::Relaxed);
                set_error(shared, "request body too large: splitting the batch");
                return Sent::Split;
            }
            WriteOutcome::DatabaseNotFound { message } => {
                c.write_errors.fetch_add(1, Ordering::Relaxed);
                set_error(shared, &message);
                if created {
                    failed(shared, None, None);
                    return Sent::Retry;
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
                        return Sent::Retry;
                    }
                }
            }
            WriteOutcome::Unauthorized { message } => {
                c.write_errors.fetch_add(1, Ordering::Relaxed);
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
                return Sent::Retry;
            }
            WriteOutcome::Retryable {
                message,
                retry_after,
                ..
            } => {
                c.write_errors.fetch_add(1, Ordering::Relaxed);
                set_error(shared, &message);
                failed(shared, retry_after, None);
                return Sent::Retry;
            }
        }
    }
}

fn set_error(shared: &Shared, message: &str) {
    lock(&shared.texts).last_error = Some(message.to_owned());
}

/// Records an answered request: clears the back-off and any credentials error.
fn succeeded(shared: &Shared) {
    {
        let mut b = lock(&shared.backoff);
        if b.failures > 0 {
            tracing::info!(failures = b.failures, "InfluxDB writes resumed");
        }
        b.failures = 0;
        b.until = None;
    }
    let mut t = lock(&shared.texts);
    t.auth_error = None;
    t.last_write_at = Some(chrono::Utc::now());
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
            "InfluxDB write failed; keeping the batch and retrying"
        );
    }
    let until = Instant::now() + delay;
    b.until = Some(b.until.map_or(until, |u| u.max(until)));
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
    tracing::warn!(
        error = message,
        suppressed,
        "InfluxDB refused points; they are dropped"
    );
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
