//! The storage guard: how full the data directory's file system is, HomeIQ's own share of it,
//! how fast it grows, and what HomeIQ does before it is full.
//!
//! # What is measured
//!
//! Every [`CHECK_INTERVAL`] the guard reads the file system holding `data_dir` (`statvfs`: size,
//! used, available to HomeIQ) and the size of each of HomeIQ's stores there ([`StoreKind`]:
//! `history.db`, `homeiq.db`, `rollups.db` with their WAL files, the InfluxDB spool, and the
//! add-on's InfluxDB sidecar under `<data_dir>/influxdb` when that is the backend; an external
//! InfluxDB's files are not reachable and are left out). Once an hour the used bytes of the file
//! system and HomeIQ's total are kept as a sample in a ring of [`SAMPLES`] (8 days), persisted in
//! `<data_dir>/storage_samples.json` so a restart keeps the trend. Growth per day is the change
//! between the oldest sample of the last 7 days and now, and `days_until_full` the available
//! bytes divided by the file system's growth (none while it does not grow).
//!
//! # Levels and what HomeIQ does
//!
//! The used share decides the level: `warning` from `storage_guard.warning_percent` (80),
//! `critical` from `storage_guard.critical_percent` (90). Both degrade `/health/deep`. While
//! critical HomeIQ protects the device: the heartbeat's rewrites stop (they only add points that
//! repeat a value), and with `storage_guard.may_shorten_raw` raw retention is shortened (halved,
//! not below the analysis window) and runs at once. Both end when the level is below critical
//! again. A transition is logged once, never each check.
//!
//! When the disk is full all the same, writes fail cleanly: the embedded writer keeps its batch
//! and retries (`homeiq_storage_disk_full_errors`), the InfluxDB spool counts the append it could
//! not make; both resume when there is room.

pub(crate) mod api;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::config::{METADATA_DB_FILE, Settings, StorageGuardSettings, StorageMode};
use crate::health::{Health, Verdict};
use crate::ingest::heartbeat::HeartbeatPause;
use crate::retention::Retention;
use crate::task::OwnedTask;

/// Time between checks.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// Time between kept samples.
pub(crate) const SAMPLE_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// Samples kept (8 days of hourly samples).
pub(crate) const SAMPLES: usize = 8 * 24;
/// The window growth is computed over.
pub(crate) const GROWTH_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// Shortest span growth is computed over.
const MIN_GROWTH_SPAN: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// The samples' file in the data directory.
pub(crate) const SAMPLES_FILE: &str = "storage_samples.json";
/// The file name of the rollups' database (written by the rollups).
pub(crate) const ROLLUPS_FILE: &str = "rollups.db";

/// A file system's size and use, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct DiskUsage {
    /// Size of the file system.
    pub total_bytes: u64,
    /// Bytes in use (by anyone).
    pub used_bytes: u64,
    /// Bytes HomeIQ may still write (without the blocks reserved for root).
    pub available_bytes: u64,
}

impl DiskUsage {
    /// The used share as `df` shows it: used ÷ (used + available), percent.
    pub(crate) fn used_percent(&self) -> f64 {
        let usable = self.used_bytes.saturating_add(self.available_bytes);
        if usable == 0 {
            return 0.0;
        }
        self.used_bytes as f64 * 100.0 / usable as f64
    }
}

/// Reads a file system's usage: `statvfs` in production, numbers given by tests.
pub(crate) trait UsageProbe: Send + Sync + 'static {
    /// The usage of the file system holding `dir`.
    fn usage(&self, dir: &Path) -> std::io::Result<DiskUsage>;
}

/// The real disk, through `statvfs`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Statvfs;

impl UsageProbe for Statvfs {
    fn usage(&self, dir: &Path) -> std::io::Result<DiskUsage> {
        let s = rustix::fs::statvfs(dir)?;
        let block = s.f_frsize;
        Ok(DiskUsage {
            total_bytes: s.f_blocks.saturating_mul(block),
            used_bytes: s.f_blocks.saturating_sub(s.f_bfree).saturating_mul(block),
            available_bytes: s.f_bavail.saturating_mul(block),
        })
    }
}

/// How full the file system is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StorageLevel {
    /// Below `warning_percent`.
    Ok,
    /// From `warning_percent`.
    Warning,
    /// From `critical_percent`: HomeIQ protects the device.
    Critical,
    /// Not measured yet, or the file system could not be read.
    Unknown,
}

/// The level of a used share under `settings`.
pub(crate) fn level_of(used_percent: f64, settings: &StorageGuardSettings) -> StorageLevel {
    if used_percent >= f64::from(settings.critical_percent) {
        StorageLevel::Critical
    } else if used_percent >= f64::from(settings.warning_percent) {
        StorageLevel::Warning
    } else {
        StorageLevel::Ok
    }
}

/// One of HomeIQ's stores in the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StoreKind {
    /// The embedded history (`history.db`, its WAL and shared memory).
    History,
    /// Registry mirror, webhooks, analysis, suggestions (`homeiq.db`).
    Metadata,
    /// The rollups (`rollups.db`).
    Rollups,
    /// The InfluxDB spool (`spool/`).
    Spool,
    /// The add-on's InfluxDB sidecar (`influxdb/`).
    InfluxdbSidecar,
}

impl StoreKind {
    /// The metrics label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StoreKind::History => "history",
            StoreKind::Metadata => "metadata",
            StoreKind::Rollups => "rollups",
            StoreKind::Spool => "spool",
            StoreKind::InfluxdbSidecar => "influxdb_sidecar",
        }
    }
}

/// A store's size on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct StoreSize {
    /// Which store.
    pub store: StoreKind,
    /// Its file or directory.
    pub path: String,
    /// Bytes on disk (files with their WAL; directories summed).
    pub bytes: u64,
}

/// A kept sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sample {
    /// When.
    pub at: DateTime<Utc>,
    /// The file system's used bytes.
    pub disk_used_bytes: u64,
    /// HomeIQ's stores together.
    pub homeiq_bytes: u64,
}

/// Growth per day over the samples of the last [`GROWTH_WINDOW`] and `now`: (file system,
/// HomeIQ), bytes per day; `None` until they span [`MIN_GROWTH_SPAN`].
pub(crate) fn growth_per_day(samples: &VecDeque<Sample>, now: &Sample) -> Option<(f64, f64)> {
    let first = samples.iter().find(|s| now.at - s.at <= GROWTH_WINDOW)?;
    let span = now.at - first.at;
    if span < MIN_GROWTH_SPAN {
        return None;
    }
    let days = span.as_seconds_f64() / 86_400.0;
    let delta = |a: u64, b: u64| (b as f64 - a as f64) / days;
    Some((
        delta(first.disk_used_bytes, now.disk_used_bytes),
        delta(first.homeiq_bytes, now.homeiq_bytes),
    ))
}

/// Days until `available` bytes are used at `growth` bytes per day; `None` when not growing.
pub(crate) fn days_until_full(available: u64, growth: f64) -> Option<f64> {
    (growth > 0.0).then(|| available as f64 / growth)
}

/// The guard's report: `/api/v1/storage`, the `storage_guard` object of `/health/deep`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct StorageGuardStatus {
    /// The level.
    pub level: StorageLevel,
    /// The data directory.
    pub data_dir: String,
    /// Its file system.
    pub disk: Option<DiskUsage>,
    /// Used share, percent.
    pub used_percent: Option<f64>,
    /// `storage_guard.warning_percent`.
    pub warning_percent: u8,
    /// `storage_guard.critical_percent`.
    pub critical_percent: u8,
    /// HomeIQ's stores in the data directory.
    pub stores: Vec<StoreSize>,
    /// Their total.
    pub homeiq_bytes: u64,
    /// The file system's growth, bytes per day (all its users), once samples span an hour.
    pub growth_bytes_per_day: Option<f64>,
    /// HomeIQ's own growth, bytes per day.
    pub homeiq_growth_bytes_per_day: Option<f64>,
    /// Days until the file system is full at its growth (`null` while it does not grow).
    pub days_until_full: Option<f64>,
    /// Whether heartbeat rewrites are stopped (critical).
    pub heartbeat_paused: bool,
    /// Whether raw retention is shortened (critical with `may_shorten_raw`).
    pub raw_retention_shortened: bool,
    /// When it was last measured.
    pub checked_at: Option<DateTime<Utc>>,
    /// Why the file system could not be read.
    pub error: Option<String>,
}

struct State {
    level: StorageLevel,
    disk: Option<DiskUsage>,
    stores: Vec<StoreSize>,
    samples: VecDeque<Sample>,
    growth: Option<(f64, f64)>,
    checked_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

struct Shared {
    data_dir: PathBuf,
    settings: StorageGuardSettings,
    storage: StorageMode,
    probe: Box<dyn UsageProbe>,
    heartbeat: HeartbeatPause,
    retention: Retention,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Bytes of a file, 0 when missing.
fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Bytes of the files under `dir` (not following links), 0 when missing.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// A SQLite file with its `-wal` and `-shm`; `None` when the file does not exist.
fn sqlite_bytes(path: &Path) -> Option<u64> {
    if !path.exists() {
        return None;
    }
    let side = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        file_bytes(Path::new(&p))
    };
    Some(file_bytes(path) + side("-wal") + side("-shm"))
}

/// HomeIQ's stores under `data_dir` for `storage`.
pub(crate) fn store_sizes(data_dir: &Path, storage: StorageMode) -> Vec<StoreSize> {
    let mut stores = Vec::new();
    let mut add = |store, path: PathBuf, bytes: Option<u64>| {
        if let Some(bytes) = bytes {
            stores.push(StoreSize {
                store,
                path: path.display().to_string(),
                bytes,
            });
        }
    };
    let history = crate::store::embedded::history_path(data_dir);
    add(StoreKind::History, history.clone(), sqlite_bytes(&history));
    let metadata = data_dir.join(METADATA_DB_FILE);
    add(
        StoreKind::Metadata,
        metadata.clone(),
        sqlite_bytes(&metadata),
    );
    let rollups = data_dir.join(ROLLUPS_FILE);
    add(StoreKind::Rollups, rollups.clone(), sqlite_bytes(&rollups));
    let spool = data_dir.join("spool");
    if spool.is_dir() {
        add(StoreKind::Spool, spool.clone(), Some(dir_bytes(&spool)));
    }
    let sidecar = data_dir.join("influxdb");
    if storage == StorageMode::Sidecar && sidecar.is_dir() {
        add(
            StoreKind::InfluxdbSidecar,
            sidecar.clone(),
            Some(dir_bytes(&sidecar)),
        );
    }
    stores
}

fn read_samples(path: &Path) -> VecDeque<Sample> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<VecDeque<Sample>>(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "storage samples unreadable; starting a new trend");
            VecDeque::new()
        }),
        Err(_) => VecDeque::new(),
    }
}

fn write_samples(path: &Path, samples: &VecDeque<Sample>) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(
        &tmp,
        serde_json::to_vec(samples).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

/// What the guard is built from.
pub(crate) struct GuardParts {
    /// The settings (data dir, thresholds, backend).
    pub settings: Settings,
    /// How usage is read ([`Statvfs`] outside tests).
    pub probe: Box<dyn UsageProbe>,
    /// The heartbeat's switch.
    pub heartbeat: HeartbeatPause,
    /// The raw retention, shortened while critical with `may_shorten_raw`.
    pub retention: Retention,
}

/// The storage guard. Cheap to clone.
#[derive(Clone)]
pub(crate) struct StorageGuard {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StorageGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageGuard")
            .field("data_dir", &self.shared.data_dir)
            .finish_non_exhaustive()
    }
}

impl StorageGuard {
    /// A guard over `parts.settings.data_dir`, with the samples kept there before.
    pub(crate) fn new(parts: GuardParts) -> Self {
        let data_dir = parts.settings.data_dir.clone();
        let samples = read_samples(&data_dir.join(SAMPLES_FILE));
        StorageGuard {
            shared: Arc::new(Shared {
                data_dir,
                settings: parts.settings.storage_guard.clone(),
                storage: parts.settings.storage,
                probe: parts.probe,
                heartbeat: parts.heartbeat,
                retention: parts.retention,
                state: Mutex::new(State {
                    level: StorageLevel::Unknown,
                    disk: None,
                    stores: Vec::new(),
                    samples,
                    growth: None,
                    checked_at: None,
                    error: None,
                }),
            }),
        }
    }

    /// Measures once at `now` and acts on a change of level. Returns the level.
    pub(crate) fn check(&self, now: DateTime<Utc>) -> StorageLevel {
        let s = &*self.shared;
        let usage = s.probe.usage(&s.data_dir);
        let stores = store_sizes(&s.data_dir, s.storage);
        let homeiq_bytes = stores.iter().map(|s| s.bytes).sum();
        let mut state = lock(&s.state);
        state.checked_at = Some(now);
        state.stores = stores;
        let previous = state.level;
        let level = match usage {
            Ok(disk) => {
                state.error = None;
                state.disk = Some(disk);
                let sample = Sample {
                    at: now,
                    disk_used_bytes: disk.used_bytes,
                    homeiq_bytes,
                };
                state.growth = growth_per_day(&state.samples, &sample);
                let due = state
                    .samples
                    .back()
                    .is_none_or(|last| now - last.at >= SAMPLE_INTERVAL);
                if due {
                    state.samples.push_back(sample);
                    while state.samples.len() > SAMPLES {
                        state.samples.pop_front();
                    }
                    if let Err(e) = write_samples(&s.data_dir.join(SAMPLES_FILE), &state.samples) {
                        tracing::debug!(error = %e, "cannot keep the storage samples");
                    }
                }
                level_of(disk.used_percent(), &s.settings)
            }
            Err(e) => {
                state.error = Some(format!("cannot read {}: {e}", s.data_dir.display()));
                StorageLevel::Unknown
            }
        };
        state.level = level;
        let used = state.disk.map(|d| d.used_percent());
        drop(state);
        if level != previous {
            self.transition(previous, level, used);
        }
        level
    }

    /// Logs a change of level once and switches the protections.
    fn transition(&self, from: StorageLevel, to: StorageLevel, used_percent: Option<f64>) {
        let s = &*self.shared;
        let used = used_percent.map(|p| format!("{p:.1}"));
        match to {
            StorageLevel::Critical => tracing::error!(
                used_percent = used,
                critical_percent = s.settings.critical_percent,
                shorten_raw = s.settings.may_shorten_raw,
                "storage critical: heartbeat rewrites stopped{}",
                if s.settings.may_shorten_raw {
                    ", raw retention shortened"
                } else {
                    ""
                }
            ),
            StorageLevel::Warning => tracing::warn!(
                used_percent = used,
                warning_percent = s.settings.warning_percent,
                "storage filling up"
            ),
            StorageLevel::Ok => {
                tracing::info!(used_percent = used, ?from, "storage back to normal")
            }
            StorageLevel::Unknown => {
                tracing::warn!(?from, "storage usage cannot be read; protections unchanged");
                return;
            }
        }
        let critical = to == StorageLevel::Critical;
        s.heartbeat.set(critical);
        s.retention
            .set_shortened(critical && s.settings.may_shorten_raw);
    }

    /// The report.
    pub(crate) fn status(&self) -> StorageGuardStatus {
        let s = &*self.shared;
        let state = lock(&s.state);
        let growth = state.growth;
        StorageGuardStatus {
            level: state.level,
            data_dir: s.data_dir.display().to_string(),
            disk: state.disk,
            used_percent: state.disk.map(|d| d.used_percent()),
            warning_percent: s.settings.warning_percent,
            critical_percent: s.settings.critical_percent,
            homeiq_bytes: state.stores.iter().map(|s| s.bytes).sum(),
            stores: state.stores.clone(),
            growth_bytes_per_day: growth.map(|g| g.0),
            homeiq_growth_bytes_per_day: growth.map(|g| g.1),
            days_until_full: state
                .disk
                .zip(growth)
                .and_then(|(d, g)| days_until_full(d.available_bytes, g.0)),
            heartbeat_paused: s.heartbeat.is_paused(),
            raw_retention_shortened: s.retention.status().shortened,
            checked_at: state.checked_at,
            error: state.error.clone(),
        }
    }

    /// Its judgement: warning and critical degrade, an unreadable file system is a warning.
    pub(crate) fn health(&self) -> Health {
        let status = self.status();
        let mut health = Health::default();
        let used = status.used_percent.unwrap_or(0.0);
        match status.level {
            StorageLevel::Critical => health.flag(
                Verdict::Degraded,
                format!(
                    "the data directory's disk is {used:.1}% full (critical from {}%): heartbeat \
                     rewrites are stopped{}; free space or lower retention.raw_days",
                    status.critical_percent,
                    if status.raw_retention_shortened {
                        " and raw retention is shortened"
                    } else {
                        ""
                    }
                ),
            ),
            StorageLevel::Warning => health.flag(
                Verdict::Degraded,
                format!(
                    "the data directory's disk is {used:.1}% full (warning from {}%){}",
                    status.warning_percent,
                    status
                        .days_until_full
                        .map(|d| format!("; full in about {d:.0} days at its growth"))
                        .unwrap_or_default()
                ),
            ),
            StorageLevel::Unknown => {
                if let Some(e) = status.error {
                    health.warn(e);
                }
            }
            StorageLevel::Ok => {}
        }
        health
    }

    /// Checks now and every [`CHECK_INTERVAL`] until `cancel`.
    pub(crate) fn spawn(&self, cancel: CancellationToken) -> OwnedTask {
        let this = self.clone();
        OwnedTask::spawn("storage guard", async move {
            let mut tick = tokio::time::interval(CHECK_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let guard = this.clone();
                        // file sizes and statvfs block briefly
                        let _ = tokio::task::spawn_blocking(move || guard.check(Utc::now())).await;
                    }
                    () = cancel.cancelled() => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
