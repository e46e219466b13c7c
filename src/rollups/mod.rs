//! Rollups: per entity, 5-minute (optional), hourly and daily summaries of its history, so years
//! of history are read from a few thousand rows and raw points can expire.
//!
//! # Design
//!
//! * **One code path for both backends.** HomeIQ computes the rollups itself by reading raw points
//!   back through [`HistoryStore`] ([`HistoryStore::points_between`], the same read for the
//!   embedded store and InfluxDB in either schema) and stores them in a SQLite file of its own,
//!   `<data_dir>/rollups.db` (WAL), whatever the history backend. So they work the same with the
//!   sidecar InfluxDB 1.x, an external InfluxDB 2.x/3 that has no continuous queries, and the
//!   embedded store; and InfluxDB's own downsampling (which cannot do a time-weighted mean,
//!   meter resets or local days) is never needed.
//! * **What a period holds** is defined once in [`compute`] (time-weighted mean as Home
//!   Assistant's statistics, min, max, samples, last, the meter's increases, time per text state)
//!   and the API's raw aggregate uses the same functions ([`read`]), so an answer from rollups
//!   equals the answer from raw points (exactly for count, min, max, last; to float rounding for
//!   the mean).
//! * **When**: a maintenance task ([`task`]) rolls up whole UTC hours (5-minute periods and hours
//!   from the raw points; the cursor `cursor_us` moves an hour-aligned chunk at a time, 1 to 24
//!   hours by the points found) and composes each local day from its hours once the day has
//!   passed (from its 5-minute periods when the day does not start on a whole UTC hour, so the
//!   5-minute tier is then always computed). An existing install catches up from its oldest raw
//!   point in the same chunks, oldest first, never holding more than a chunk in memory; ingest
//!   never waits for it (reads only).
//! * **Heartbeat rewrites** are stored with origin `heartbeat` (the `homeiq` schema's field and the
//!   embedded store's column; in `ha_compat` a `homeiq_origin` point beside Home Assistant's
//!   unchanged point): they hold the value and are never counted as samples.
//! * **Late data** (the InfluxDB spool replayed, the gap backfill, an import): every writer
//!   reports points older than the cursor to the [`WriteLog`](crate::store::written::WriteLog)'s
//!   late-data list (one range per entity, bounded), which the task moves to the `dirty` table and
//!   rolls up again: per entity, from the hour of its earliest late point until its next point
//!   after the latest one, and the local days touched.
//! * **The watermark** ([`Rollups::rolled_up_until`]): every raw point before it is in every
//!   enabled tier (the end of the last composed day, earlier when a dirty range starts before it).
//!   Raw retention deletes nothing at or after it.
//! * **Tier retention** (`retention.five_minute_days`, `hourly_days`, `daily_days`): at most
//!   hourly, rows are deleted in chunks of a few thousand, each its own short transaction, found
//!   entity by entity (a seek into each entity's oldest rows, not a scan of the tier).
//! * **Imported statistics** (tier `imported`, [`Rollups::insert_imported`]): Home Assistant's
//!   hourly statistics; read for hours without own rollups.

pub(crate) mod compute;
mod periods;
pub(crate) mod read;
mod store;
mod task;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tokio::sync::watch;

use crate::config::RetentionSettings;
use crate::ha::HaHandle;
use crate::health::{Health, Verdict};
use crate::store::history::HistoryStore;
use crate::store::written::WriteLog;
use crate::task::OwnedTask;

/// File name of the rollups database inside the data directory.
pub(crate) const ROLLUPS_FILE_NAME: &str = "rollups.db";

pub(crate) use crate::store::history::Tier;

/// One hour of Home Assistant's long-term statistics (`recorder/statistics_during_period`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImportedHour {
    /// The entity (statistic id).
    pub entity_id: String,
    /// The hour's start.
    pub start: DateTime<Utc>,
    /// Mean.
    pub mean: Option<f64>,
    /// Minimum.
    pub min: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// The meter's running sum at the hour's end.
    pub sum: Option<f64>,
    /// The meter's state at the hour's end.
    pub state: Option<f64>,
}

/// Why rollups failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RollupError {
    /// `rollups.db` could not be opened.
    #[error("cannot open the rollups database: {0}")]
    Open(String),
    /// A statement failed.
    #[error("rollups database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The blocking task did not finish (runtime shutting down).
    #[error("rollups task: {0}")]
    Task(String),
    /// The range needs more raw points than a raw read may cover: the rollups are catching up.
    #[error("the rollups are still being built from the existing history; try a shorter range")]
    CatchingUp,
    /// The buckets are finer than the tiers still kept over the range, and raw points would
    /// have to be read for longer than a raw read may cover.
    #[error(
        "buckets this fine over this range need more than {max_raw_days} days of raw points: \
         5-minute rollups are kept {five_minute_days} days and hourly ones {hourly_days}; \
         choose a coarser interval or a shorter range"
    )]
    Expired {
        max_raw_days: u32,
        five_minute_days: u32,
        hourly_days: u32,
    },
    /// Raw history could not be read.
    #[error(transparent)]
    History(#[from] crate::store::history::HistoryError),
}

crate::counters::counters! {
    /// Rollup counters.
    pub(crate) struct RollupCounters => RollupCounts ("homeiq_rollups") {
        /// Chunks of raw history rolled up.
        chunks,
        /// Raw points read to roll up.
        points_read,
        /// Rollup rows written (numeric and state rows, all tiers).
        rows_written,
        /// Local days composed.
        days,
        /// Entity ranges rolled up again after late data.
        recomputed,
        /// Rows deleted by tier retention.
        expired,
        /// Passes that failed (retried at the next).
        failures,
        /// Imported statistics rows stored.
        imported,
    }
}

/// What `/health/deep` shows of rollups.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct RollupStatus {
    /// Every raw point before this is rolled up into every enabled tier.
    pub rolled_up_until: Option<DateTime<Utc>>,
    /// Seconds between now and the hourly cursor.
    pub lag_secs: Option<f64>,
    /// Whether the first catch-up over existing history is still under way.
    pub catching_up: bool,
    /// Share of the history before the first start rolled up, 0–1.
    pub catch_up_progress: Option<f64>,
    /// Entity ranges waiting to be rolled up again after late data.
    pub dirty: usize,
    /// The time zone of the daily periods.
    pub time_zone: Option<String>,
    /// The last failure, if the last pass failed.
    pub last_error: Option<String>,
    /// Bytes of `rollups.db` in use.
    pub bytes: Option<u64>,
    /// Counters.
    pub counts: RollupCounts,
}

impl RollupStatus {
    /// Degraded when the hourly rollups fall more than three hours behind after the catch-up,
    /// or the last pass failed.
    pub(crate) fn health(&self) -> Health {
        let mut h = Health::default();
        if let Some(e) = &self.last_error {
            h.flag(Verdict::Degraded, format!("rollups failing: {e}"));
        }
        if !self.catching_up && self.lag_secs.is_some_and(|l| l > 3.0 * 3600.0) {
            h.flag(
                Verdict::Degraded,
                format!(
                    "rollups are {:.0} hours behind",
                    self.lag_secs.unwrap_or_default() / 3600.0
                ),
            );
        }
        h
    }
}

/// Where the home's time zone comes from.
#[derive(Clone)]
pub(crate) enum ZoneOf {
    /// Home Assistant's `get_config`.
    Ha(HaHandle),
    /// A fixed zone (tests, benchmarks).
    #[cfg_attr(not(test), allow(dead_code))]
    Fixed(Tz),
}

/// What [`Rollups::open`] needs.
pub(crate) struct RollupParts {
    /// `<data_dir>`.
    pub data_dir: std::path::PathBuf,
    /// Raw history.
    pub history: HistoryStore,
    /// The writers' log (late data).
    pub write_log: Arc<WriteLog>,
    /// Tier retention and the 5-minute tier.
    pub retention: RetentionSettings,
    /// The home's zone.
    pub zone: ZoneOf,
    /// `api.max_history_days`: the longest raw read.
    pub max_raw_days: u32,
}

#[derive(Default)]
struct Progress {
    first_us: Option<i64>,
    /// The oldest raw point still stored, as the last pass found it.
    raw_first_us: Option<i64>,
    /// When the store was last asked for it (µs; `None`: ask at the next pass).
    raw_first_asked: Option<i64>,
    /// The write log's deletions when it was asked.
    raw_first_deletions: u64,
    cursor_us: Option<i64>,
    catching_up: bool,
    dirty: usize,
    zone: Option<Tz>,
    last_error: Option<String>,
    /// When tier retention last ran (µs).
    expired_at: Option<i64>,
}

struct Inner {
    db: store::Db,
    history: HistoryStore,
    write_log: Arc<WriteLog>,
    retention: RetentionSettings,
    zone: ZoneOf,
    max_raw_days: u32,
    watermark: watch::Sender<Option<DateTime<Utc>>>,
    counters: RollupCounters,
    progress: Mutex<Progress>,
}

/// The rollups handle; cheap to clone.
#[derive(Clone)]
pub(crate) struct Rollups(Arc<Inner>);

impl std::fmt::Debug for Rollups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollups").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Rollups {
    /// Opens `rollups.db` (creating it) and publishes the stored watermark.
    pub(crate) async fn open(parts: RollupParts) -> Result<Rollups, RollupError> {
        let db = store::Db::open(&parts.data_dir.join(ROLLUPS_FILE_NAME)).await?;
        let (watermark, _) = watch::channel(None);
        let me = Rollups(Arc::new(Inner {
            db,
            history: parts.history,
            write_log: parts.write_log,
            retention: parts.retention,
            zone: parts.zone,
            max_raw_days: parts.max_raw_days,
            watermark,
            counters: RollupCounters::default(),
            progress: Mutex::new(Progress::default()),
        }));
        me.publish().await?;
        Ok(me)
    }

    /// Starts the maintenance task (stops when `cancel` fires).
    pub(crate) fn start(&self, cancel: tokio_util::sync::CancellationToken) -> OwnedTask {
        let me = self.clone();
        OwnedTask::spawn("rollups", async move { me.run(cancel).await })
    }

    /// "Every raw point earlier than this is in every enabled rollup tier"; `None` until the
    /// first day is composed. Raw retention deletes only before it.
    pub(crate) fn rolled_up_until(&self) -> watch::Receiver<Option<DateTime<Utc>>> {
        self.0.watermark.subscribe()
    }

    /// Stores Home Assistant's hourly statistics as tier `imported` (replacing rows of the same
    /// entity and hour); returns the rows stored.
    pub(crate) async fn insert_imported(&self, rows: &[ImportedHour]) -> Result<u64, RollupError> {
        let n = self.0.db.insert_imported(rows.to_vec()).await?;
        self.0
            .counters
            .imported
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }

    /// The counters (metrics).
    pub(crate) fn counts(&self) -> RollupCounts {
        self.0.counters.snapshot()
    }

    /// What `/health/deep` shows.
    pub(crate) async fn status(&self) -> RollupStatus {
        let bytes = self.0.db.size_bytes().await.ok();
        let p = lock(&self.0.progress);
        let now = Utc::now().timestamp_micros();
        let progress = match (p.first_us, p.cursor_us) {
            (Some(f), Some(c)) if now > f => {
                Some(((c - f) as f64 / (now - f) as f64).clamp(0.0, 1.0))
            }
            _ => None,
        };
        RollupStatus {
            rolled_up_until: *self.0.watermark.borrow(),
            lag_secs: p.cursor_us.map(|c| (now - c).max(0) as f64 / 1e6),
            catching_up: p.catching_up,
            catch_up_progress: progress,
            dirty: p.dirty,
            time_zone: p.zone.map(|z| z.name().to_owned()),
            last_error: p.last_error.clone(),
            bytes,
            counts: self.0.counters.snapshot(),
        }
    }
}
