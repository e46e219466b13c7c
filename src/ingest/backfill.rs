//! Gap backfill from Home Assistant's history: what HomeIQ missed while it was disconnected or not
//! running is read back with `history/history_during_period` and written like live changes.
//!
//! # The cursor: up to when is everything durable
//!
//! The cursor is an instant in Home Assistant's time (a `last_updated`, in µs) such that every
//! state change up to it that HomeIQ had to write has left the writer's memory: written to
//! InfluxDB, spooled to disk, or refused/dropped by the writer (and counted there). The pipeline
//! reports the newest change it has handed to the writer ([`BackfillFeed::on_event`]); a cursor
//! task reads that value and then the writer's status every [`SAMPLE_EVERY`]. The cursor moves to
//! a value read that way by one of two rules:
//!
//! * **idle** (exact): the writer held nothing in memory (`queued + in_flight == 0`, which counts
//!   batches waiting for a retry or on their way to the spool), so every point pushed before has
//!   been written, spooled, quarantined or dropped (the writer counts the last two; the backfill
//!   does not re-fetch them). With a 250 ms linger this happens several times a second at tens of
//!   changes per second, rarely under a sustained load of hundreds;
//! * **bounded residence** (for sustained load): the value was read when the writer held at most
//!   `max_in_flight × batch_size` points, at least `flush_interval + 2 × timeout + 2 s` ago (22 s
//!   with the defaults), and no write has failed since (the writer's `retries` did not move).
//!   Such a point is cut into a batch within the linger, waits for at most one round of requests
//!   and is sent in one, each bounded by the request timeout; had a write failed, its batch would
//!   be spooled or, in the memory-only writer, put back, so the rule then waits for the idle one.
//!
//! The cursor never moves backwards and, while a backfill is pending, never passes the start of
//! its window (the *hold*), so a crash during a backfill repeats it. It is persisted at most every [`PERSIST_EVERY`] to
//! `<data_dir>/backfill_cursor.json` (written to a temporary file, synced, renamed), so after a
//! SIGKILL it lags what was durable by about a second plus the rules' delay; on a clean shutdown
//! whose writer flush left nothing behind it is set to the newest change received. Lagging is
//! harmless: rewriting a point lands on the same series and time in InfluxDB.
//!
//! # When and what
//!
//! After every connection's `get_states` snapshot ([`BackfillFeed::on_snapshot`]) the window is
//! `(cursor − MARGIN, end]`, where `end` is the newest Home Assistant time seen so far on the
//! connection (the snapshot's newest `last_updated` or a live event's): every change before the
//! subscription has a `last_updated` at most `end`, since the snapshot shows it or a later one.
//! Without a cursor (a fresh install) nothing is backfilled and the cursor starts at `end`:
//! HomeIQ records from its first snapshot on (in the `homeiq` schema a later snapshot rewrites the
//! snapshot's points should they be lost). A window longer than `backfill.window_hours` is cut to
//! its newest part, logged and counted (`truncated`).
//!
//! The run is its own task and never blocks the pipeline: requests go through
//! [`HaHandle::request`] for at most [`ENTITIES_PER_REQUEST`] entities (those the include/exclude
//! filter records, plus ones that disappeared from the snapshot) and a time slice that adapts so
//! replies stay near [`TARGET_REPLY_BYTES`] (the WebSocket client refuses frames over 16 MiB).
//! Home Assistant's recorder commits in batches (`commit_interval`, 1 s in the tests, 5 s by
//! default): when a state the snapshot shows inside the slice is not in the history yet, and
//! nothing newer has been committed, the slice is asked again every [`RECORDER_RETRY`], for at
//! most [`RECORDER_WAIT`] per run.
//!
//! A history state is written unless it is already written or is not a change:
//! * its `last_updated` lies in a span the live stream covered without gaps (from the first live
//!   event of the entity on this connection onwards; between the first and last live event of the
//!   previous connection), or it is the snapshot state and that was written;
//! * it equals the preceding state in state and attributes. Home Assistant re-sets entities when
//!   it starts and records them again; as for live events, that is not history. (A sensor with
//!   `force_update` also records repeats; the backfill leaves those out too.) The state before
//!   the first one of the window is only known after a reconnect, not after HomeIQ restarted.
//!   States an entity really passes through while Home Assistant starts (measured with the demo
//!   integration: a device tracker `not_home` before its GPS fix, the backup manager `blocked`)
//!   are history and are written.
//!
//! After HomeIQ restarts, the few seconds the cursor lagged behind what was written before the
//! crash are written again and counted in `total_points` (they cannot be told apart without
//! asking InfluxDB); after a reconnect nothing written live is counted.
//!
//! Points are mapped by the pipeline's [`PointMapper`] as the state change that set the state:
//! `homeiq` points carry the same tags and fields at `last_updated`, so they coincide with what
//! the live path writes. For `ha_compat` the event's `time_fired` is `last_updated` — Home
//! Assistant stamps both from one clock reading for every `state_changed` — so the point is the
//! one its InfluxDB integration would have written. Differences from live points: attributes the
//! recorder does not store (entities' `_unrecorded_attributes`, e.g. `entity_picture`, `options`,
//! light colour-mode lists) are missing, which InfluxDB merges away if the live point exists;
//! entities the recorder excludes and entities created and removed inside the gap cannot be
//! backfilled.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::ha::model::{Attributes, State, StateChanged};
use crate::ha::{CommandError, HaHandle};
use crate::store::point::Point;
use crate::store::schema::{EntityMeta, PointMapper};
use crate::store::sink::HistoryWriter;

/// File name of the persisted cursor inside the data directory.
pub const CURSOR_FILE: &str = "backfill_cursor.json";
/// How far before the cursor a window starts (events may arrive slightly out of time order).
pub const MARGIN: Duration = Duration::from_secs(2);
/// Entities per history request.
pub const ENTITIES_PER_REQUEST: usize = 100;
/// How long one history request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Reply size the time slices aim at.
pub const TARGET_REPLY_BYTES: usize = 2 << 20;
/// The longest time slice a chunk of entities starts with (then adapted to the reply sizes).
pub const FIRST_SLICE: Duration = Duration::from_secs(5 * 60);
/// The shortest time slice.
pub const MIN_SLICE: Duration = Duration::from_secs(1);
/// Longest total wait per run for the recorder to commit states the snapshot shows.
pub const RECORDER_WAIT: Duration = Duration::from_secs(20);
/// Delay between two asks while waiting for the recorder.
pub const RECORDER_RETRY: Duration = Duration::from_millis(500);
/// How often the cursor task samples the writer.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// Shortest interval between two cursor file writes.
pub const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// Samples kept for the residence rule.
const MAX_SAMPLES: usize = 4_096;
/// Points pushed to the writer at once by a run.
const PUSH_CHUNK: usize = 5_000;
/// Timeouts of one slice before the run gives up.
const MAX_TIMEOUTS: u32 = 3;

const NONE_NEWEST: i64 = i64::MIN;
const NO_HOLD: i64 = i64::MAX;

/// Why a backfill run failed.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// Home Assistant does not know the history command.
    #[error(
        "Home Assistant's history is not available (is the `history` integration loaded?): {0}"
    )]
    HistoryUnavailable(String),
    /// The request failed (connection lost, refused, timed out).
    #[error("history request failed: {0}")]
    Request(#[from] CommandError),
    /// The reply was not the expected JSON.
    #[error("cannot decode Home Assistant's history reply: {0}")]
    Decode(#[from] serde_json::Error),
    /// A timestamp in the reply was not a finite number.
    #[error("a history timestamp is not a valid time: {0}")]
    BadTimestamp(String),
}

/// Reading or writing the cursor file failed.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file's content is not a cursor.
    #[error("{path} is not a backfill cursor: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

// ---------------------------------------------------------------------------------------------
// Decoding Home Assistant's compressed history
// ---------------------------------------------------------------------------------------------

/// One state of `history/history_during_period` in the compressed format: `s` state, `a`
/// attributes, `lu` last updated and `lc` last changed (only when it differs), both as Unix
/// seconds. The recorder keeps a row with a `null` state (and attributes) where an entity was
/// removed: such a row is no state and is left out.
#[derive(Deserialize)]
struct CompressedState<'a> {
    /// Required, `null` allowed (a missing `s` is a malformed reply).
    #[serde(deserialize_with = "Option::deserialize")]
    s: Option<String>,
    #[serde(default)]
    a: Option<Attributes>,
    #[serde(borrow)]
    lu: &'a RawValue,
    #[serde(borrow, default)]
    lc: Option<&'a RawValue>,
}

/// Decodes the `result` of `history/history_during_period` (compressed format): entity id → its
/// states, oldest first.
pub fn decode_history(result: &str) -> Result<HashMap<String, Vec<State>>, BackfillError> {
    let raw: HashMap<String, Vec<CompressedState<'_>>> = serde_json::from_str(result)?;
    let mut out = HashMap::with_capacity(raw.len());
    for (entity_id, rows) in raw {
        let mut states = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(state) = row.s else {
                continue;
            };
            let last_updated = timestamp_to_datetime(row.lu.get())
                .ok_or_else(|| BackfillError::BadTimestamp(row.lu.get().to_owned()))?;
            let last_changed = match row.lc {
                Some(lc) => timestamp_to_datetime(lc.get())
                    .ok_or_else(|| BackfillError::BadTimestamp(lc.get().to_owned()))?,
                None => last_updated,
            };
            states.push(State {
                entity_id: entity_id.clone(),
                state,
                attributes: row.a.unwrap_or_default(),
                last_changed,
                last_updated,
                last_reported: None,
                context: None,
            });
        }
        states.sort_by_key(|s| s.last_updated);
        out.insert(entity_id, states);
    }
    Ok(out)
}

/// A Unix timestamp as Home Assistant's recorder stores it (a float in seconds, straight from
/// `time.time()`, so with sub-microsecond digits) → the instant Home Assistant's own datetime has.
///
/// Home Assistant makes its datetimes with `datetime.fromtimestamp`, which rounds the fraction
/// times 10⁶ half to even; this does the same on the same double (parsed exactly from the JSON
/// text, never through a lossy float parser), so history and live events agree to the µs.
pub fn timestamp_to_datetime(text: &str) -> Option<DateTime<Utc>> {
    if text == "null" {
        return None;
    }
    let d: f64 = text.trim().parse().ok()?;
    if !d.is_finite() || d.abs() > 1e14 {
        return None;
    }
    let mut secs = d.trunc();
    let mut micros = ((d - secs) * 1e6).round_ties_even();
    if micros >= 1e6 {
        micros -= 1e6;
        secs += 1.0;
    } else if micros < 0.0 {
        micros += 1e6;
        secs -= 1.0;
    }
    // both are integral and in range after the checks above
    DateTime::from_timestamp(secs as i64, (micros as u32) * 1_000)
}

fn micros(t: &DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
}

fn iso(us: i64) -> String {
    from_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, false)
}

fn duration_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Window arithmetic
// ---------------------------------------------------------------------------------------------

/// The interval a run reads, in µs since the epoch: states with `start < last_updated <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Exclusive start.
    pub start: i64,
    /// Inclusive end.
    pub end: i64,
    /// How much of the gap was left out because it was longer than allowed, µs (0: none).
    pub truncated_us: i64,
}

/// The window for a cursor (µs, `None`: no cursor yet) and the newest time seen (`end`, µs):
/// `(cursor − margin, end]`, cut to its newest `max` µs. `None` when there is no cursor or nothing
/// to read.
pub fn plan_window(cursor: Option<i64>, end: i64, margin: i64, max: i64) -> Option<Window> {
    let start = cursor?.saturating_sub(margin);
    if start >= end {
        return None;
    }
    let earliest = end.saturating_sub(max);
    Some(if start < earliest {
        Window {
            start: earliest,
            end,
            truncated_us: earliest.saturating_sub(start),
        }
    } else {
        Window {
            start,
            end,
            truncated_us: 0,
        }
    })
}

/// The next time slice: scaled so the next reply is near `target` bytes, at most ×4 or ÷4 per
/// step, within `[min, max]`.
pub fn next_slice(slice: i64, reply_bytes: usize, target: usize, min: i64, max: i64) -> i64 {
    let factor = (target as f64 / reply_bytes.max(1) as f64).clamp(0.25, 4.0);
    let next = (slice as f64 * factor) as i64;
    next.clamp(min, max.max(min))
}

// ---------------------------------------------------------------------------------------------
// The durability tracker
// ---------------------------------------------------------------------------------------------

/// What the cursor rules read from a writer status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterView {
    /// Points in the writer's memory: queued (including batches waiting for a retry or on their
    /// way to the spool) and in live write requests.
    pub held: usize,
    /// Batches put back or spooled after a failed write, so far.
    pub retries: u64,
}

/// Decides up to when everything received is durable (see the module documentation for both
/// rules). Times are µs in Home Assistant's clock.
#[derive(Debug)]
pub struct DurabilityTracker {
    durable: Option<i64>,
    residence: Duration,
    small_backlog: usize,
    /// (when, received then, the writer's retries then), oldest first.
    samples: VecDeque<(Instant, i64, u64)>,
}

impl DurabilityTracker {
    /// A tracker starting at a persisted cursor. `residence` bounds how long a point stays in the
    /// writer's memory while no write fails and at most `small_backlog` points are held.
    pub fn new(durable: Option<i64>, residence: Duration, small_backlog: usize) -> Self {
        DurabilityTracker {
            durable,
            residence,
            small_backlog,
            samples: VecDeque::new(),
        }
    }

    /// The cursor.
    pub fn durable(&self) -> Option<i64> {
        self.durable
    }

    /// Moves the cursor forward to `t` (never backwards).
    pub fn advance(&mut self, t: i64) {
        if self.durable.is_none_or(|d| d < t) {
            self.durable = Some(t);
        }
    }

    /// Takes a sample at `now`: `received` is the newest change handed to the writer, read
    /// *before* the writer's status in `writer`. Returns whether the cursor moved.
    pub fn sample(&mut self, now: Instant, received: Option<i64>, writer: WriterView) -> bool {
        let before = self.durable;
        if writer.held == 0 {
            // idle: everything pushed before the status was read has left the writer's memory
            if let Some(r) = received {
                self.advance(r);
            }
            self.samples.clear();
            return self.durable != before;
        }
        // bounded residence: only samples with no failed write since they were taken
        self.samples.retain(|s| s.2 == writer.retries);
        while let Some(&(at, r, _)) = self.samples.front()
            && now.saturating_duration_since(at) >= self.residence
        {
            self.advance(r);
            self.samples.pop_front();
        }
        if let Some(r) = received
            && writer.held <= self.small_backlog
            && self.durable.is_none_or(|d| d < r)
            && self.samples.back().is_none_or(|s| s.1 < r)
        {
            if self.samples.len() >= MAX_SAMPLES {
                self.samples.pop_front();
            }
            self.samples.push_back((now, r, writer.retries));
        }
        self.durable != before
    }
}

// ---------------------------------------------------------------------------------------------
// The cursor file
// ---------------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct CursorFileBody {
    version: u32,
    /// µs since the epoch (authoritative).
    durable_through_us: i64,
    /// The same, readable.
    durable_through: String,
}

/// Reads the cursor; `Ok(None)` when there is no file (a fresh install).
pub fn read_cursor(path: &Path) -> Result<Option<i64>, CursorError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CursorError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let body: CursorFileBody = serde_json::from_slice(&bytes).map_err(|e| CursorError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if body.version != 1 {
        return Err(CursorError::Parse {
            path: path.to_owned(),
            message: format!("unknown version {}", body.version),
        });
    }
    Ok(Some(body.durable_through_us))
}

/// Writes the cursor crash-safely: a temporary file, synced, renamed over the old one, and the
/// directory synced.
pub fn write_cursor(path: &Path, durable_us: i64) -> Result<(), CursorError> {
    let err = |source| CursorError::Write {
        path: path.to_owned(),
        source,
    };
    let body = CursorFileBody {
        version: 1,
        durable_through_us: durable_us,
        durable_through: iso(durable_us),
    };
    let text = serde_json::to_vec(&body).map_err(|e| err(std::io::Error::other(e)))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&text).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        // best effort: not every platform can sync a directory
        let _ = d.sync_all();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

/// What the backfill has done, for `/health/deep` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BackfillStatus {
    /// Whether gaps are backfilled (`backfill.enabled`).
    pub enabled: bool,
    /// Whether a run is under way.
    pub running: bool,
    /// Runs started.
    pub runs: u64,
    /// When the last run started.
    pub last_run_at: Option<DateTime<Utc>>,
    /// When the last run finished (successfully or not).
    pub last_finished_at: Option<DateTime<Utc>>,
    /// Start of the last run's window (exclusive).
    pub last_window_start: Option<DateTime<Utc>>,
    /// End of the last run's window (inclusive).
    pub last_window_end: Option<DateTime<Utc>>,
    /// Points the last run wrote.
    pub last_points: u64,
    /// Points backfilled over the process's life (counted apart from live points).
    pub total_points: u64,
    /// Runs whose gap was longer than `backfill.window_hours` (the older part is not backfilled).
    pub truncated: u64,
    /// Seconds of the last truncated gap that were left out.
    pub last_truncated_secs: Option<f64>,
    /// History states skipped because they were already written (live or by the snapshot).
    pub skipped_written: u64,
    /// History states skipped because they repeat the previous state (restart bursts).
    pub skipped_unchanged: u64,
    /// History states the schema maps to no point.
    pub unmapped: u64,
    /// History requests sent.
    pub requests: u64,
    /// Times a slice was asked again because the recorder had not committed it yet.
    pub recorder_waits: u64,
    /// The last run's error, if it failed.
    pub last_error: Option<String>,
    /// The cursor: every change up to this time is durable.
    pub cursor: Option<DateTime<Utc>>,
    /// When the cursor was last written to disk.
    pub cursor_persisted_at: Option<DateTime<Utc>>,
    /// The last error writing the cursor file, if any.
    pub cursor_error: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The engine and its handle
// ---------------------------------------------------------------------------------------------

/// How the backfill is set up, from [`Settings`].
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// Whether gaps are backfilled.
    pub enabled: bool,
    /// The longest gap backfilled.
    pub window: Duration,
    /// Where the cursor is persisted.
    pub cursor_path: PathBuf,
    /// A run waits while the writer holds more than this many points.
    pub max_queued: usize,
    /// How long a point stays in the writer's memory at most while no write fails and at most
    /// `small_backlog` points are held: the linger, a request ahead of it and its own request
    /// (each bounded by the request timeout), plus 2 s.
    pub residence: Duration,
    /// `max_in_flight × batch_size`: a backlog the writer sends in one round of requests.
    pub small_backlog: usize,
}

impl BackfillOptions {
    /// Options from `backfill.*`, `influxdb.*` and `data_dir`.
    pub fn new(settings: &Settings) -> Self {
        BackfillOptions {
            enabled: settings.backfill.enabled,
            window: Duration::from_secs(settings.backfill.window_hours.saturating_mul(3_600)),
            cursor_path: settings.data_dir.join(CURSOR_FILE),
            max_queued: (settings.influxdb.queue_capacity / 2).max(1),
            residence: settings.influxdb.flush_interval()
                + settings.influxdb.timeout() * 2
                + Duration::from_secs(2),
            small_backlog: settings.influxdb.max_in_flight.max(1)
                * settings.influxdb.batch_size.max(1),
        }
    }
}

struct Inner {
    options: BackfillOptions,
    ha: HaHandle,
    mapper: PointMapper,
    writer: HistoryWriter,
    /// Newest change handed to the writer, µs ([`NONE_NEWEST`]: none yet).
    newest: AtomicI64,
    /// While a run is pending: the cursor may not pass this, µs ([`NO_HOLD`]: none).
    hold: AtomicI64,
    tracker: Mutex<DurabilityTracker>,
    /// Serialises cursor file writes; holds the value last written.
    persisted: tokio::sync::Mutex<Option<i64>>,
    status: Mutex<BackfillStatus>,
    task: Mutex<Option<JoinHandle<()>>>,
    generation: AtomicU64,
    /// Slice length to start the next run with, µs.
    slice_hint: AtomicI64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    /// The newest change handed to the writer, held back to a pending run's window start.
    fn received(&self) -> Option<i64> {
        let newest = self.newest.load(Ordering::SeqCst);
        (newest != NONE_NEWEST).then(|| newest.min(self.hold.load(Ordering::SeqCst)))
    }

    fn observe(&self, us: i64) {
        self.newest.fetch_max(us, Ordering::SeqCst);
    }

    fn durable(&self) -> Option<i64> {
        lock(&self.tracker).durable()
    }
}

/// A cheap handle to the backfill: status, the pipeline's feed, the cursor task and shutdown.
#[derive(Clone)]
pub struct BackfillHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BackfillHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackfillHandle")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl BackfillHandle {
    /// Sets the backfill up and loads the persisted cursor. An unreadable cursor file is reported
    /// (`last_error`) and treated as a gap of the whole window.
    pub fn open(
        options: BackfillOptions,
        ha: HaHandle,
        mapper: PointMapper,
        writer: HistoryWriter,
    ) -> Self {
        let mut status = BackfillStatus {
            enabled: options.enabled,
            ..BackfillStatus::default()
        };
        let cursor = if options.enabled {
            match read_cursor(&options.cursor_path) {
                Ok(Some(c)) => {
                    tracing::info!(cursor = %iso(c), "backfill cursor loaded");
                    Some(c)
                }
                Ok(None) => {
                    tracing::info!("no backfill cursor yet (fresh install); nothing to backfill");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "backfill cursor unreadable; backfilling the whole window");
                    status.last_error = Some(e.to_string());
                    Some(micros(&Utc::now()).saturating_sub(duration_us(options.window)))
                }
            }
        } else {
            None
        };
        let tracker = DurabilityTracker::new(cursor, options.residence, options.small_backlog);
        BackfillHandle {
            inner: Arc::new(Inner {
                slice_hint: AtomicI64::new(duration_us(FIRST_SLICE)),
                options,
                ha,
                mapper,
                writer,
                newest: AtomicI64::new(NONE_NEWEST),
                hold: AtomicI64::new(NO_HOLD),
                tracker: Mutex::new(tracker),
                persisted: tokio::sync::Mutex::new(cursor),
                status: Mutex::new(status),
                task: Mutex::new(None),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// Whether gaps are backfilled.
    pub fn enabled(&self) -> bool {
        self.inner.options.enabled
    }

    /// A copy of the status.
    pub fn status(&self) -> BackfillStatus {
        let mut s = lock(&self.inner.status).clone();
        s.cursor = self.inner.durable().and_then(from_micros);
        s
    }

    /// The cursor: every change up to this time is durable.
    #[cfg(test)]
    pub fn cursor(&self) -> Option<DateTime<Utc>> {
        self.inner.durable().and_then(from_micros)
    }

    /// The pipeline's side: feed it every event and snapshot.
    pub fn feed(&self) -> BackfillFeed {
        BackfillFeed {
            handle: self.clone(),
            coverage: HashMap::new(),
            previous: HashMap::new(),
            newest_on_connection: None,
            snapshot_applied: false,
        }
    }

    /// The cursor task: samples the writer every [`SAMPLE_EVERY`], advances the cursor and
    /// persists it, until `cancel` fires. Does nothing when the backfill is disabled.
    pub async fn run_cursor(self, cancel: CancellationToken) {
        if !self.enabled() {
            return;
        }
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_persist: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = cancel.cancelled() => break,
            }
            let received = self.inner.received();
            let (held, retries) = self.inner.writer.held_and_retries();
            let view = WriterView { held, retries };
            lock(&self.inner.tracker).sample(Instant::now(), received, view);
            if last_persist.is_none_or(|t| t.elapsed() >= PERSIST_EVERY) && self.persist().await {
                last_persist = Some(tokio::time::Instant::now());
            }
        }
    }

    /// Writes the cursor file if the cursor moved. Returns whether it tried.
    async fn persist(&self) -> bool {
        let mut persisted = self.inner.persisted.lock().await;
        let Some(durable) = self.inner.durable() else {
            return false;
        };
        if *persisted == Some(durable) {
            return false;
        }
        let path = self.inner.options.cursor_path.clone();
        let result = tokio::task::spawn_blocking(move || write_cursor(&path, durable)).await;
        let result = result.unwrap_or_else(|e| {
            Err(CursorError::Write {
                path: self.inner.options.cursor_path.clone(),
                source: std::io::Error::other(e),
            })
        });
        let mut status = lock(&self.inner.status);
        match result {
            Ok(()) => {
                *persisted = Some(durable);
                status.cursor_persisted_at = Some(Utc::now());
                status.cursor_error = None;
            }
            Err(e) => {
                let message = e.to_string();
                if status.cursor_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(error = %message, "cannot persist the backfill cursor");
                }
                status.cursor_error = Some(message);
            }
        }
        true
    }

    /// Stops a run under way (at shutdown, before the writer's flush); the next start repeats it.
    pub fn stop_run(&self) {
        let task = lock(&self.inner.task).take();
        if let Some(task) = task {
            task.abort();
            self.inner.generation.fetch_add(1, Ordering::SeqCst);
            lock(&self.inner.status).running = false;
        }
    }

    /// At shutdown, after the writer's flush: stops a run under way; when `flushed` (nothing was
    /// left in the writer's memory) the cursor moves to the newest change received (never past
    /// an unfinished run's window); then it is persisted.
    pub async fn shutdown(&self, flushed: bool) {
        if !self.enabled() {
            return;
        }
        self.stop_run();
        if flushed && let Some(received) = self.inner.received() {
            lock(&self.inner.tracker).advance(received);
        }
        self.persist().await;
    }

    /// Starts a run (stopping one under way, whose window the new one covers).
    fn schedule(&self, job: Job) {
        let inner = &self.inner;
        let generation = inner.generation.fetch_add(1, Ordering::SeqCst) + 1;
        // the cursor may not pass the start of the gap until this run has handed everything over
        let hold = job.window.start.saturating_add(duration_us(MARGIN));
        inner.hold.store(hold, Ordering::SeqCst);
        {
            let mut s = lock(&inner.status);
            s.running = true;
            s.runs += 1;
            s.last_run_at = Some(Utc::now());
            s.last_window_start = from_micros(job.window.start);
            s.last_window_end = from_micros(job.window.end);
            s.last_points = 0;
            if job.window.truncated_us > 0 {
                s.truncated += 1;
                s.last_truncated_secs = Some(job.window.truncated_us as f64 / 1e6);
            }
        }
        if job.window.truncated_us > 0 {
            tracing::warn!(
                left_out_secs = job.window.truncated_us / 1_000_000,
                window_hours = inner.options.window.as_secs() / 3_600,
                "the gap is longer than backfill.window_hours; its older part is not backfilled"
            );
        }
        tracing::info!(
            start = %iso(job.window.start),
            end = %iso(job.window.end),
            entities = job.entities.len(),
            "backfilling a gap from Home Assistant's history"
        );
        let this = self.clone();
        let mut task = lock(&inner.task);
        if let Some(old) = task.take() {
            old.abort();
        }
        *task = Some(tokio::spawn(async move {
            let result = this.run(&job).await;
            this.finish(generation, result);
        }));
    }

    fn finish(&self, generation: u64, result: Result<(), BackfillError>) {
        let inner = &self.inner;
        let mut s = lock(&inner.status);
        if inner.generation.load(Ordering::SeqCst) != generation {
            return; // superseded by a newer run
        }
        s.running = false;
        s.last_finished_at = Some(Utc::now());
        match result {
            Ok(()) => {
                inner.hold.store(NO_HOLD, Ordering::SeqCst);
                s.last_error = None;
                tracing::info!(points = s.last_points, "backfill finished");
            }
            Err(e @ BackfillError::HistoryUnavailable(_)) => {
                // nothing to retry: let the cursor move on
                inner.hold.store(NO_HOLD, Ordering::SeqCst);
                tracing::error!(error = %e, "gaps cannot be backfilled");
                s.last_error = Some(e.to_string());
            }
            Err(e) => {
                // the hold stays: the next connection's run covers this window again
                tracing::warn!(error = %e, "backfill failed; it is retried after the next connect");
                s.last_error = Some(e.to_string());
            }
        }
    }

    async fn request(
        &self,
        ids: &[&str],
        start: i64,
        end: i64,
    ) -> Result<Box<RawValue>, CommandError> {
        lock(&self.inner.status).requests += 1;
        // HA compares `last_updated < end_time`; a millisecond more keeps `end` inside
        let cmd = json!({
            "type": "history/history_during_period",
            "start_time": iso(start),
            "end_time": iso(end.saturating_add(1_000)),
            "entity_ids": ids,
            "include_start_time_state": false,
            "significant_changes_only": false,
            "minimal_response": false,
            "no_attributes": false,
        });
        self.inner.ha.request(cmd, REQUEST_TIMEOUT).await
    }

    async fn run(&self, job: &Job) -> Result<(), BackfillError> {
        let inner = &self.inner;
        let window_len = job.window.end - job.window.start;
        let min_slice = duration_us(MIN_SLICE);
        let mut slice = inner
            .slice_hint
            .load(Ordering::Relaxed)
            .clamp(min_slice, window_len.max(min_slice));
        let mut committed = i64::MIN;
        let mut waited = Duration::ZERO;
        for chunk in job.entities.chunks(ENTITIES_PER_REQUEST) {
            let ids: Vec<&str> = chunk.iter().map(|e| e.entity_id.as_str()).collect();
            let mut preds: Vec<Option<State>> = vec![None; chunk.len()];
            // other entities may be much busier: start each chunk small
            slice = slice.min(duration_us(FIRST_SLICE));
            let mut t = job.window.start;
            let mut timeouts = 0;
            while t < job.window.end {
                let b = t.saturating_add(slice).min(job.window.end);
                let raw = match self.request(&ids, t, b).await {
                    Ok(raw) => raw,
                    Err(CommandError::Timeout(d)) if timeouts < MAX_TIMEOUTS => {
                        timeouts += 1;
                        slice = (slice / 4).max(min_slice);
                        tracing::debug!(?d, "history request timed out; asking for less");
                        continue;
                    }
                    Err(CommandError::ConnectionLost) => {
                        // perhaps a reply larger than the client accepts: start smaller next time
                        inner
                            .slice_hint
                            .store((slice / 8).max(min_slice), Ordering::Relaxed);
                        return Err(CommandError::ConnectionLost.into());
                    }
                    Err(CommandError::Failed { code, message }) if code == "unknown_command" => {
                        return Err(BackfillError::HistoryUnavailable(message));
                    }
                    Err(e) => return Err(e.into()),
                };
                let bytes = raw.get().len();
                let mut history = decode_history(raw.get())?;
                drop(raw);
                if let Some(newest) = history
                    .values()
                    .filter_map(|v| v.last())
                    .map(|s| micros(&s.last_updated))
                    .max()
                {
                    committed = committed.max(newest);
                }
                // states the snapshot shows in this slice must be in the history once committed
                let missing = chunk
                    .iter()
                    .filter(|e| {
                        e.expected.is_some_and(|x| {
                            x > t
                                && x <= b
                                && x > committed
                                && !history
                                    .get(&e.entity_id)
                                    .is_some_and(|v| v.iter().any(|s| micros(&s.last_updated) == x))
                        })
                    })
                    .count();
                if missing > 0 {
                    if waited < RECORDER_WAIT {
                        lock(&inner.status).recorder_waits += 1;
                        tokio::time::sleep(RECORDER_RETRY).await;
                        waited += RECORDER_RETRY;
                        continue;
                    }
                    tracing::info!(
                        missing,
                        "Home Assistant's recorder has not stored some current states; \
                         continuing without them (excluded from the recorder?)"
                    );
                }
                timeouts = 0;
                let mut tally = Tally::default();
                let mut points = Vec::new();
                for (i, entity) in chunk.iter().enumerate() {
                    let Some(states) = history.remove(&entity.entity_id) else {
                        continue;
                    };
                    let before_entity = points.len();
                    for state in states {
                        let lu = micros(&state.last_updated);
                        if lu <= t || lu > b {
                            continue;
                        }
                        let pred = predecessor(preds[i].as_ref(), entity.before.as_deref(), lu);
                        let repeat = pred.is_some_and(|p| same_as_recorded(p, &state));
                        let written = entity.already_written(lu);
                        let mut ev = StateChanged {
                            entity_id: entity.entity_id.clone(),
                            had_old_state: false,
                            new_state: Some(state),
                            time_fired: from_micros(lu).unwrap_or_default(),
                        };
                        if repeat {
                            tally.unchanged += 1;
                        } else if written {
                            tally.written += 1;
                        } else {
                            match inner.mapper.map_change(&ev, &entity.meta) {
                                Some(p) => points.push(p),
                                None => tally.unmapped += 1,
                            }
                        }
                        preds[i] = ev.new_state.take();
                    }
                    if points.len() > before_entity {
                        tracing::debug!(
                            entity_id = %entity.entity_id,
                            points = points.len() - before_entity,
                            "backfilled"
                        );
                    }
                }
                tally.points = points.len() as u64;
                self.push(points).await;
                {
                    let mut s = lock(&inner.status);
                    s.last_points += tally.points;
                    s.total_points += tally.points;
                    s.skipped_written += tally.written;
                    s.skipped_unchanged += tally.unchanged;
                    s.unmapped += tally.unmapped;
                }
                slice = next_slice(b - t, bytes, TARGET_REPLY_BYTES, min_slice, window_len);
                inner.slice_hint.store(slice, Ordering::Relaxed);
                t = b;
            }
        }
        Ok(())
    }

    /// Hands points to the writer, waiting while it holds more than `max_queued`.
    async fn push(&self, points: Vec<Point>) {
        push_bounded(&self.inner.writer, points, self.inner.options.max_queued).await;
    }
}

/// Hands points read from Home Assistant's history to the writer, [`PUSH_CHUNK`] at a time,
/// waiting while it holds more than `max_queued`: the bulk path of the backfill and the import,
/// which must never crowd out live points.
pub(crate) async fn push_bounded(writer: &HistoryWriter, points: Vec<Point>, max_queued: usize) {
    let mut points = points.into_iter().peekable();
    while points.peek().is_some() {
        while writer.stats().queued > max_queued {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for p in points.by_ref().take(PUSH_CHUNK) {
            writer.push(p);
        }
    }
}

/// Whether `recorded` (a state from HA's history) repeats `before`: the same state string and the
/// same value for every attribute the recorder kept. The recorder leaves some attributes out
/// (`device_trackers` of a person, `entity_picture`, …), so a history state never equals the live
/// state it repeats attribute for attribute.
pub(crate) fn same_as_recorded(before: &State, recorded: &State) -> bool {
    before.state == recorded.state
        && recorded
            .attributes
            .iter()
            .all(|(key, value)| before.attributes.get(key) == Some(value))
}

/// The state before the one at `lu`: the later of the previous history state and the state held
/// before the gap (when that is older than `lu`).
fn predecessor<'a>(
    history: Option<&'a State>,
    before: Option<&'a State>,
    lu: i64,
) -> Option<&'a State> {
    let before = before.filter(|b| micros(&b.last_updated) < lu);
    match (history, before) {
        (Some(h), Some(b)) => Some(if b.last_updated > h.last_updated {
            b
        } else {
            h
        }),
        (h, b) => h.or(b),
    }
}

#[derive(Default)]
struct Tally {
    points: u64,
    written: u64,
    unchanged: u64,
    unmapped: u64,
}

// ---------------------------------------------------------------------------------------------
// The pipeline's feed
// ---------------------------------------------------------------------------------------------

/// What the pipeline knows about an entity it records when a snapshot is applied.
#[derive(Debug, Clone)]
pub struct SnapshotEntity {
    /// The entity.
    pub entity_id: String,
    /// Its registry placement, for the `homeiq` tags.
    pub meta: EntityMeta,
    /// The snapshot state's `last_updated`; `None` when the entity is missing from the snapshot.
    pub last_updated: Option<DateTime<Utc>>,
    /// Whether the snapshot state is already written (by the snapshot or a live event).
    pub written: bool,
    /// The state held before the snapshot (the last one before the gap).
    pub before: Option<Arc<State>>,
}

/// One entity of a run.
#[derive(Debug)]
struct JobEntity {
    entity_id: String,
    meta: EntityMeta,
    /// The snapshot's `last_updated` (must show up in the history once committed).
    expected: Option<i64>,
    /// The snapshot state was written at this time.
    written_at: Option<i64>,
    /// From this time on the live stream of this connection covered the entity.
    live_from: Option<i64>,
    /// The previous connection's live stream covered this span.
    covered: Option<(i64, i64)>,
    before: Option<Arc<State>>,
}

impl JobEntity {
    fn already_written(&self, lu: i64) -> bool {
        self.written_at == Some(lu)
            || self.live_from.is_some_and(|f| lu >= f)
            || self.covered.is_some_and(|(a, b)| a <= lu && lu <= b)
    }
}

#[derive(Debug)]
struct Job {
    window: Window,
    entities: Vec<JobEntity>,
}

/// The pipeline's side of the backfill, owned by the pipeline: it records which spans the live
/// stream covered and starts a run after each snapshot.
pub struct BackfillFeed {
    handle: BackfillHandle,
    /// entity → (first, last) `last_updated` received live on this connection, µs.
    coverage: HashMap<String, (i64, i64)>,
    /// The same for the previous connection.
    previous: HashMap<String, (i64, i64)>,
    newest_on_connection: Option<i64>,
    snapshot_applied: bool,
}

impl BackfillFeed {
    /// A new connection: its snapshot follows.
    pub fn on_connected(&mut self) {
        self.previous = std::mem::take(&mut self.coverage);
        self.newest_on_connection = None;
        self.snapshot_applied = false;
    }

    /// A `state_changed` event, after the pipeline has handed its point (if any) to the writer.
    /// `last_updated` is the new state's (`None` when the entity was removed).
    pub fn on_event(
        &mut self,
        entity_id: &str,
        time_fired: DateTime<Utc>,
        last_updated: Option<DateTime<Utc>>,
    ) {
        let mut t = micros(&time_fired);
        if let Some(lu) = last_updated.as_ref().map(micros) {
            t = t.max(lu);
            match self.coverage.get_mut(entity_id) {
                Some(span) => span.1 = span.1.max(lu),
                None => {
                    self.coverage.insert(entity_id.to_owned(), (lu, lu));
                }
            }
        }
        if !self.snapshot_applied {
            self.newest_on_connection = Some(self.newest_on_connection.map_or(t, |n| n.max(t)));
        }
        self.handle.inner.observe(t);
    }

    /// The snapshot has been applied (its points handed to the writer): starts a run for the gap
    /// before it, if there is a cursor. `entities` are those the filter records; `newest` is the
    /// newest `last_updated` in the snapshot.
    pub fn on_snapshot(&mut self, entities: Vec<SnapshotEntity>, newest: Option<DateTime<Utc>>) {
        self.snapshot_applied = true;
        let end = match (newest.as_ref().map(micros), self.newest_on_connection) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => match a.or(b) {
                Some(e) => e,
                None => return,
            },
        };
        let inner = &self.handle.inner;
        let window = plan_window(
            inner.durable(),
            end,
            duration_us(MARGIN),
            duration_us(inner.options.window),
        );
        if let Some(window) = window {
            let entities = entities
                .into_iter()
                .map(|e| JobEntity {
                    live_from: self.coverage.get(&e.entity_id).map(|c| c.0),
                    covered: self.previous.get(&e.entity_id).copied(),
                    expected: e.last_updated.as_ref().map(micros),
                    written_at: e.last_updated.as_ref().filter(|_| e.written).map(micros),
                    entity_id: e.entity_id,
                    meta: e.meta,
                    before: e.before,
                })
                .collect();
            self.handle.schedule(Job { window, entities });
        } else if inner.durable().is_none() {
            // a fresh install records from its first snapshot on; should it be killed before the
            // snapshot's points are written, the next snapshot writes them again
            lock(&inner.tracker).advance(end);
        }
        inner.observe(end);
    }
}

#[cfg(test)]
#[path = "backfill_tests.rs"]
mod tests;
