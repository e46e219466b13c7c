//! Raw retention: raw points older than `retention.raw_days` deleted daily (and once shortly
//! after start), never before their rollups exist.
//!
//! # The watermark
//!
//! The rollups publish "every raw point earlier than this is rolled up" on a
//! `watch::Receiver<Option<DateTime<Utc>>>` ([`RetentionInputs::rolled_up_until`]); `None` means
//! nothing is rolled up yet. A run deletes the points earlier than
//! `min(now − raw_days, watermark)` ([`cutoff`]): with the rollups behind, the points at and after
//! the watermark stay, whatever their age; with no watermark nothing is deleted.
//!
//! # Where
//!
//! * embedded store: chunked deletes on the writer's connection, then the incremental vacuum, and
//!   first the one-time conversion of an older `history.db` to incremental auto-vacuum when
//!   there is room ([`crate::store::embedded::retention`]);
//! * InfluxDB 1.x: whole shards dropped, the straddling one trimmed with `DELETE`
//!   ([`crate::store::influx::retention`]).
//!
//! # Shortened while critical
//!
//! With `storage_guard.may_shorten_raw`, the storage guard shortens the raw retention while the
//! disk is critical ([`Retention::set_shortened`]): half of `raw_days`, never below the analysis
//! window (when the analysis is on) nor one day, and runs retention at once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::config::Settings;
use crate::health::{Health, Verdict};
use crate::store::embedded::EmbeddedWriter;
use crate::store::embedded::retention::{self as embedded, Conversion};
use crate::store::influx::InfluxClient;
use crate::store::influx::retention as influx;
use crate::store::written::WriteLog;
use crate::task::OwnedTask;

/// Delay of the first run after start: the start-up's own writes (snapshot, backfill) go first.
pub(crate) const FIRST_RUN_DELAY: Duration = Duration::from_secs(5 * 60);
/// Time between runs.
pub(crate) const INTERVAL: Duration = Duration::from_secs(24 * 3600);

crate::counters::counters! {
    /// Retention counters; `/metrics` publishes them as `homeiq_retention_*`.
    pub struct RetentionCounters => RetentionCounts ("homeiq_retention") {
        /// Retention runs finished (successful or not).
        runs,
        /// Raw points deleted (embedded store; InfluxDB drops shards without counting).
        points_deleted,
        /// InfluxDB shards dropped.
        shards_dropped,
        /// Runs that failed.
        failures,
        /// Runs whose cutoff the rollups' watermark held back (points kept beyond raw_days).
        held_by_rollups,
    }
}

/// What the retention task reads from the rest of HomeIQ.
#[derive(Debug, Clone)]
pub(crate) struct RetentionInputs {
    /// Every raw point earlier than this is rolled up (`None`: nothing yet).
    pub rolled_up_until: watch::Receiver<Option<DateTime<Utc>>>,
    /// The writers' log: a run that deleted is noted there ([`WriteLog::note_deleted`]), so the
    /// rollups learn the oldest raw point again.
    pub write_log: Arc<WriteLog>,
}

/// Where raw points are deleted.
#[derive(Debug, Clone)]
pub(crate) enum RetentionTarget {
    /// The embedded store's writer and its file.
    Embedded {
        /// The writer owning the write connection.
        writer: EmbeddedWriter,
        /// `history.db`.
        path: PathBuf,
    },
    /// InfluxDB 1.x.
    Influx(InfluxClient),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum RunOutcome {
    /// Deleted what was due (possibly nothing).
    Done,
    /// Nothing deleted: the rollups have no watermark yet.
    NothingRolledUp,
    /// Nothing deleted: `retention.raw_days` is 0 (forever).
    KeepForever,
    /// Failed; retried at the next run.
    Failed {
        /// What went wrong.
        message: String,
    },
}

/// One retention run.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct RetentionRun {
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// Raw days it applied.
    pub raw_days: Option<u32>,
    /// The rollups' watermark it saw.
    pub rolled_up_until: Option<DateTime<Utc>>,
    /// Points earlier than this were deleted.
    pub cutoff: Option<DateTime<Utc>>,
    /// Points deleted (embedded store).
    pub points_deleted: u64,
    /// Shards dropped (InfluxDB).
    pub shards_dropped: u64,
    /// Chunks (transactions) of the embedded delete.
    pub chunks: u64,
    /// Longest write-lock hold of one chunk, ms (embedded).
    pub max_lock_hold_ms: f64,
    /// 95th percentile of the chunks' write-lock holds, ms (embedded).
    pub p95_lock_hold_ms: f64,
    /// Pages returned to the file system (embedded).
    pub pages_freed: u64,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: RunOutcome,
}

/// The retention's state for `/api/v1/storage` and `/health/deep`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct RetentionStatus {
    /// `retention.raw_days` in effect from the settings (`null`: forever).
    pub raw_days: Option<u32>,
    /// Days actually applied now: shorter than `raw_days` while the storage guard shortened it.
    pub raw_days_in_effect: Option<u32>,
    /// Whether the storage guard shortened raw retention (critical, `may_shorten_raw`).
    pub shortened: bool,
    /// The rollups' watermark: every raw point earlier is rolled up.
    pub rolled_up_until: Option<DateTime<Utc>>,
    /// The last run.
    pub last_run: Option<RetentionRun>,
    /// When the next run is due.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The embedded file's conversion to incremental auto-vacuum (embedded store only).
    pub conversion: Option<Conversion>,
    /// Counters.
    pub counts: RetentionCounts,
}

struct Shared {
    raw_days: Option<u32>,
    /// Shortest raw retention the guard may shorten to.
    floor_days: u32,
    shortened: AtomicBool,
    counters: RetentionCounters,
    state: Mutex<State>,
    run_now: Notify,
}

#[derive(Default)]
struct State {
    last_run: Option<RetentionRun>,
    next_run_at: Option<DateTime<Utc>>,
    conversion: Option<Conversion>,
    rolled_up_until: Option<DateTime<Utc>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The points earlier than this are due: `now − raw_days`, held back to the rollups' watermark;
/// `None` when nothing may be deleted (no watermark, or kept forever).
pub(crate) fn cutoff(
    now: DateTime<Utc>,
    raw_days: Option<u32>,
    rolled_up_until: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let by_age = now - chrono::Duration::days(i64::from(raw_days?));
    Some(by_age.min(rolled_up_until?))
}

/// The raw retention while shortened: half, not below `floor_days` nor one day.
pub(crate) fn shortened_days(raw_days: u32, floor_days: u32) -> u32 {
    (raw_days / 2).max(floor_days).max(1).min(raw_days)
}

/// The retention's handle: status, counters, the guard's switch. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Retention {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retention")
            .field("raw_days", &self.shared.raw_days)
            .finish_non_exhaustive()
    }
}

impl Retention {
    /// The retention `settings` ask for.
    pub(crate) fn new(settings: &Settings) -> Self {
        let floor_days = if settings.analysis.enabled {
            settings.analysis.window_days
        } else {
            1
        };
        Retention {
            shared: Arc::new(Shared {
                raw_days: settings.retention.raw_days_in_effect(&settings.analysis),
                floor_days,
                shortened: AtomicBool::new(false),
                counters: RetentionCounters::default(),
                state: Mutex::new(State::default()),
                run_now: Notify::new(),
            }),
        }
    }

    /// Days applied now (`None`: forever).
    pub(crate) fn raw_days_in_effect(&self) -> Option<u32> {
        let days = self.shared.raw_days?;
        Some(if self.shared.shortened.load(Ordering::Relaxed) {
            shortened_days(days, self.shared.floor_days)
        } else {
            days
        })
    }

    /// Shortens (critical storage, `may_shorten_raw`) or restores the raw retention; shortening
    /// runs retention at once.
    pub(crate) fn set_shortened(&self, shortened: bool) {
        let was = self.shared.shortened.swap(shortened, Ordering::Relaxed);
        if shortened && !was {
            self.shared.run_now.notify_one();
        }
    }

    /// The counters.
    pub(crate) fn counts(&self) -> RetentionCounts {
        self.shared.counters.snapshot()
    }

    /// The status.
    pub(crate) fn status(&self) -> RetentionStatus {
        let state = lock(&self.shared.state);
        RetentionStatus {
            raw_days: self.shared.raw_days,
            raw_days_in_effect: self.raw_days_in_effect(),
            shortened: self.shared.shortened.load(Ordering::Relaxed),
            rolled_up_until: state.rolled_up_until,
            last_run: state.last_run.clone(),
            next_run_at: state.next_run_at,
            conversion: state.conversion.clone(),
            counts: self.counts(),
        }
    }

    /// Its judgement: a failed last run degrades; a file that could not be converted for lack
    /// of room is a warning.
    pub(crate) fn health(&self) -> Health {
        let mut health = Health::default();
        let state = lock(&self.shared.state);
        if let Some(RetentionRun {
            outcome: RunOutcome::Failed { message },
            ..
        }) = &state.last_run
        {
            health.flag(
                Verdict::Degraded,
                format!("raw retention failed: {message}"),
            );
        }
        if let Some(Conversion::NoRoom {
            needed_bytes,
            available_bytes,
            dir,
        }) = &state.conversion
        {
            health.warn(format!(
                "history.db is not yet converted to return deleted space to the disk: it needs \
                 {needed_bytes} bytes free in {dir}, {available_bytes} are; retried at the next \
                 retention run"
            ));
        }
        health
    }

    /// One run at `now` against `target` with the rollups' watermark `rolled_up_until`.
    pub(crate) async fn run_once(
        &self,
        target: &RetentionTarget,
        rolled_up_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> RetentionRun {
        let started = Instant::now();
        let raw_days = self.raw_days_in_effect();
        let c = &self.shared.counters;
        let mut run = RetentionRun {
            started_at: now,
            duration_ms: 0,
            raw_days,
            rolled_up_until,
            cutoff: cutoff(now, raw_days, rolled_up_until),
            points_deleted: 0,
            shards_dropped: 0,
            chunks: 0,
            max_lock_hold_ms: 0.0,
            p95_lock_hold_ms: 0.0,
            pages_freed: 0,
            outcome: RunOutcome::Done,
        };
        lock(&self.shared.state).rolled_up_until = rolled_up_until;
        if let RetentionTarget::Embedded { writer, path } = target {
            let done = matches!(
                lock(&self.shared.state).conversion,
                Some(Conversion::Incremental | Conversion::Converted { .. })
            );
            if !done {
                match embedded::convert(writer, path.clone()).await {
                    Ok(conversion) => {
                        match &conversion {
                            Conversion::Converted { took_ms } => {
                                tracing::info!(
                                    took_ms,
                                    "history.db converted to incremental auto-vacuum"
                                );
                            }
                            Conversion::NoRoom {
                                needed_bytes,
                                available_bytes,
                                dir,
                            } => {
                                tracing::warn!(
                                    needed_bytes,
                                    available_bytes,
                                    dir,
                                    "history.db not converted to incremental auto-vacuum: not enough room; retried at the next run"
                                );
                            }
                            Conversion::Incremental => {}
                        }
                        lock(&self.shared.state).conversion = Some(conversion);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot convert history.db"),
                }
            }
        }
        match (raw_days, run.cutoff) {
            (None, _) => run.outcome = RunOutcome::KeepForever,
            (Some(_), None) => run.outcome = RunOutcome::NothingRolledUp,
            (Some(days), Some(cut)) => {
                if cut < now - chrono::Duration::days(i64::from(days)) {
                    // the rollups are behind: what they do not cover stays
                    c.held_by_rollups.fetch_add(1, Ordering::Relaxed);
                }
                let result = match target {
                    RetentionTarget::Embedded { writer, .. } => {
                        embedded::delete_before(writer, cut.timestamp_micros())
                            .await
                            .map(|r| {
                                run.points_deleted = r.deleted;
                                run.chunks = r.chunks;
                                run.max_lock_hold_ms = r.max_hold_ms;
                                run.p95_lock_hold_ms = r.p95_hold_ms;
                                run.pages_freed = r.pages_freed;
                            })
                            .map_err(|e| e.to_string())
                    }
                    RetentionTarget::Influx(client) => influx::delete_before(client, cut)
                        .await
                        .map(|r| run.shards_dropped = r.shards_dropped)
                        .map_err(|e| e.to_string()),
                };
                if let Err(message) = result {
                    c.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %message, "raw retention failed; retried at the next run");
                    run.outcome = RunOutcome::Failed { message };
                }
            }
        }
        c.runs.fetch_add(1, Ordering::Relaxed);
        c.points_deleted
            .fetch_add(run.points_deleted, Ordering::Relaxed);
        c.shards_dropped
            .fetch_add(run.shards_dropped, Ordering::Relaxed);
        run.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            deleted = run.points_deleted,
            shards = run.shards_dropped,
            duration_ms = run.duration_ms,
            cutoff = ?run.cutoff,
            "raw retention ran"
        );
        lock(&self.shared.state).last_run = Some(run.clone());
        run
    }

    /// Runs retention [`FIRST_RUN_DELAY`] after start, then every [`INTERVAL`] (and at once
    /// when the guard shortens it), until `cancel`.
    pub(crate) fn spawn(
        &self,
        target: RetentionTarget,
        inputs: RetentionInputs,
        first_delay: Duration,
        cancel: CancellationToken,
    ) -> OwnedTask {
        let this = self.clone();
        OwnedTask::spawn("retention", async move {
            let mut delay = first_delay;
            loop {
                lock(&this.shared.state).next_run_at = chrono::Duration::from_std(delay)
                    .ok()
                    .map(|d| Utc::now() + d);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = this.shared.run_now.notified() => {}
                    () = cancel.cancelled() => return,
                }
                let watermark = *inputs.rolled_up_until.borrow();
                tokio::select! {
                    run = this.run_once(&target, watermark, Utc::now()) => {
                        if run.outcome == RunOutcome::Done && run.cutoff.is_some() {
                            inputs.write_log.note_deleted();
                        }
                    }
                    () = cancel.cancelled() => return,
                }
                delay = INTERVAL;
            }
        })
    }
}

#[cfg(test)]
mod tests;
