//! Analysis runs: the pattern detectors ([`crate::patterns`]) over stored history, nightly and
//! on request, one at a time, with a status row for every run and every refused request.
//!
//! - **When.** Nightly at `analysis.schedule` on the home's wall clock (its time zone from Home
//!   Assistant's `get_config`, the last one known when it is unreachable, else UTC), and through
//!   `POST /api/v1/analysis/runs`, at most once per `analysis.manual_cooldown_hours` (429 with
//!   `Retry-After` inside it). Never two runs at once (409). A run that HomeIQ's stop or a crash
//!   cut short is recorded as `interrupted` at the next start.
//! - **How.** A run reads the window (`analysis.window_days` up to now, plus a day before it so
//!   every entity's state at the start is known) through the storage interface, in slices of
//!   [`HistoryStore::analysis_slice`], each handed to the detectors on Tokio's blocking pool while the next is read:
//!   memory holds two slices and the detectors' tallies, never the window, and ingestion keeps
//!   its threads (history reads go through the backends' request slots and read-only
//!   connections). Its patterns replace the
//!   previous ones in one transaction (`patterns` table) and in memory, where
//!   `GET /api/v1/patterns` reads them.

pub(crate) mod api;
mod schedule;
pub(crate) mod store;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;

use crate::config::AnalysisSettings;
use crate::ha::HaHandle;
use crate::patterns::{Analyzer, Change, Params};
use crate::registry::catalog::PageMemo;
use crate::store::history::{HistoryStore, time_of};
use crate::store::states::CurrentStates;
use crate::task::OwnedTask;
use store::{AnalysisStore, Outcome, RunCounts, StoredPattern, Trigger, run};

/// How long a run waits for Home Assistant's `get_config`.
const CONFIG_TIMEOUT: Duration = Duration::from_secs(10);

/// The scheduler looks at the clock at least this often (a changed time zone or clock).
const SCHEDULER_TICK: Duration = Duration::from_secs(3_600);

/// Where "now" comes from: the system clock, or a test's.
pub(crate) trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Where the home's time zone comes from.
#[derive(Clone)]
pub(crate) enum ZoneSource {
    /// Home Assistant's `get_config` (`time_zone`).
    Ha(HaHandle),
    /// A fixed zone (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Fixed(Tz),
}

impl std::fmt::Debug for ZoneSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ZoneSource::Ha(_) => f.write_str("ZoneSource::Ha"),
            ZoneSource::Fixed(tz) => write!(f, "ZoneSource::Fixed({tz})"),
        }
    }
}

/// Why a run was not started.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Refusal {
    /// `analysis.enabled` is false.
    #[error("pattern analysis is turned off (analysis.enabled)")]
    Disabled,
    /// Another run is under way.
    #[error("an analysis is already running")]
    Busy,
    /// A requested run came too soon after the last.
    #[error("the last requested analysis was less than analysis.manual_cooldown_hours ago")]
    Cooldown(Duration),
    /// The metadata database failed.
    #[error("the metadata database failed: {0}")]
    Db(String),
}

impl From<sea_orm::DbErr> for Refusal {
    fn from(e: sea_orm::DbErr) -> Self {
        Refusal::Db(e.to_string())
    }
}

struct Inner {
    settings: AnalysisSettings,
    store: AnalysisStore,
    history: HistoryStore,
    zone: ZoneSource,
    /// The last zone Home Assistant named.
    last_zone: Mutex<Option<Tz>>,
    states: CurrentStates,
    clock: Arc<dyn Clock>,
    /// Held by the run under way.
    busy: Arc<tokio::sync::Mutex<()>>,
    patterns: ArcSwap<Learned>,
    /// Cancels the run under way (shutdown).
    stop: CancellationToken,
    /// The run under way.
    current: Mutex<Option<OwnedTask>>,
    /// The last run that stored its patterns (what suggestions are rebuilt after).
    finished: tokio::sync::watch::Sender<Option<FinishedRun>>,
}

/// A run whose patterns replaced the previous ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FinishedRun {
    /// The run's id.
    pub id: i64,
    /// What started it.
    pub trigger: Trigger,
}

/// The analysis: runs, their rows and the patterns learned; cheap to clone.
#[derive(Clone)]
pub(crate) struct Analysis(Arc<Inner>);

impl std::fmt::Debug for Analysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analysis").finish_non_exhaustive()
    }
}

/// What [`Analysis::open`] needs.
pub(crate) struct AnalysisParts {
    pub settings: AnalysisSettings,
    pub db: sea_orm::DatabaseConnection,
    pub history: HistoryStore,
    pub zone: ZoneSource,
    pub states: CurrentStates,
    pub clock: Arc<dyn Clock>,
}

/// What the last successful run learned, and the `GET /api/v1/patterns` pages rendered from it
/// (a run's new patterns come with an empty memo, so no page is ever out of date).
#[derive(Debug)]
pub(crate) struct Learned {
    /// The patterns.
    pub patterns: Vec<StoredPattern>,
    /// Pages rendered from them (each also compressed at most once).
    pub pages: PageMemo,
}

impl std::ops::Deref for Learned {
    type Target = Vec<StoredPattern>;

    fn deref(&self) -> &Vec<StoredPattern> {
        &self.patterns
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Analysis {
    /// Marks runs a stop cut short as interrupted and loads the stored patterns.
    pub(crate) async fn open(parts: AnalysisParts) -> Result<Self, sea_orm::DbErr> {
        let store = AnalysisStore::new(parts.db);
        let interrupted = store.interrupt_leftovers(parts.clock.now()).await?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "an analysis was under way when HomeIQ stopped; it is recorded as interrupted"
            );
        }
        let patterns = store.patterns().await?;
        Ok(Analysis(Arc::new(Inner {
            settings: parts.settings,
            store,
            history: parts.history,
            zone: parts.zone,
            last_zone: Mutex::new(None),
            states: parts.states,
            clock: parts.clock,
            busy: Arc::new(tokio::sync::Mutex::new(())),
            patterns: ArcSwap::from_pointee(Learned {
                patterns,
                pages: PageMemo::compact(),
            }),
            stop: CancellationToken::new(),
            current: Mutex::new(None),
            finished: tokio::sync::watch::Sender::new(None),
        })))
    }

    /// The patterns of the last successful run.
    pub(crate) fn patterns(&self) -> Arc<Learned> {
        self.0.patterns.load_full()
    }

    /// Runs and refused requests, newest first.
    pub(crate) async fn runs(
        &self,
        limit: u64,
        before: Option<i64>,
    ) -> Result<Vec<run::Model>, sea_orm::DbErr> {
        self.0.store.runs(limit, before).await
    }

    /// Changes after each run that stored its patterns.
    pub(crate) fn subscribe_finished(&self) -> tokio::sync::watch::Receiver<Option<FinishedRun>> {
        self.0.finished.subscribe()
    }

    /// Whether a run is under way.
    pub(crate) fn running(&self) -> bool {
        self.0.busy.try_lock().is_err()
    }

    /// The home's time zone: Home Assistant's, else the last one it named, else UTC.
    async fn time_zone(&self) -> Tz {
        let asked = match &self.0.zone {
            ZoneSource::Fixed(tz) => return *tz,
            ZoneSource::Ha(ha) => crate::ha::home_time_zone(ha, CONFIG_TIMEOUT).await,
        };
        match asked {
            Ok(tz) => {
                *lock(&self.0.last_zone) = Some(tz);
                tz
            }
            Err(e) => {
                let last = *lock(&self.0.last_zone);
                let fallback = last.unwrap_or(Tz::UTC);
                if last.is_some() {
                    tracing::warn!(error = %e, %fallback, "the home's time zone could not be read; using the last one Home Assistant named");
                } else {
                    // at start-up, before the first connection: the scheduler asks again within the hour
                    tracing::debug!(error = %e, %fallback, "the home's time zone is not known yet");
                }
                fallback
            }
        }
    }

    /// Starts a run now unless one is under way, analysis is off or (requested runs) the
    /// cooldown has not passed; every refusal is recorded. Returns the run's row.
    pub(crate) async fn request(&self, trigger: Trigger) -> Result<run::Model, Refusal> {
        let inner = &self.0;
        let now = inner.clock.now();
        let refuse = |why: Refusal| async move {
            inner.store.refuse(trigger, now, &why.to_string()).await?;
            Err(why)
        };
        if !inner.settings.enabled {
            return refuse(Refusal::Disabled).await;
        }
        let Ok(guard) = Arc::clone(&inner.busy).try_lock_owned() else {
            return refuse(Refusal::Busy).await;
        };
        if trigger == Trigger::Manual {
            let last = inner.store.last_manual_start().await?;
            if let Some(wait) =
                schedule::cooldown_left(last, now, inner.settings.manual_cooldown_hours)
            {
                return refuse(Refusal::Cooldown(wait)).await;
            }
        }
        let tz = self.time_zone().await;
        let end = inner.clock.now();
        let params = Params::new(&inner.settings, tz, end);
        let row = inner
            .store
            .start(trigger, end, (params.start, params.end), tz.name())
            .await?;
        tracing::info!(id = row.id, ?trigger, time_zone = %tz, "analysis started");
        let me = self.clone();
        let id = row.id;
        let task = OwnedTask::spawn("analysis run", async move {
            me.execute(id, trigger, params).await;
            drop(guard);
        });
        *lock(&inner.current) = Some(task);
        Ok(row)
    }

    /// Runs the detectors and records the outcome.
    async fn execute(&self, id: i64, trigger: Trigger, params: Params) {
        let inner = &self.0;
        let started = inner.clock.now();
        let (outcome, counts, error) = match self.analyse(params).await {
            Ok(Some((patterns, counts))) => {
                match inner
                    .store
                    .replace_patterns(id, patterns, inner.clock.now())
                    .await
                {
                    Ok(stored) => {
                        inner.patterns.store(Arc::new(Learned {
                            patterns: stored,
                            pages: PageMemo::compact(),
                        }));
                        (Outcome::Succeeded, counts, None)
                    }
                    Err(e) => (
                        Outcome::Failed,
                        counts,
                        Some(format!("storing patterns: {e}")),
                    ),
                }
            }
            Ok(None) => (
                Outcome::Interrupted,
                RunCounts::default(),
                Some("HomeIQ stopped during the run".to_owned()),
            ),
            Err(e) => (Outcome::Failed, RunCounts::default(), Some(e)),
        };
        let now = inner.clock.now();
        tracing::info!(
            id,
            ?outcome,
            changes = counts.changes,
            patterns = counts.patterns,
            took_ms = (now - started).num_milliseconds(),
            error = error.as_deref().unwrap_or(""),
            "analysis finished"
        );
        if let Err(e) = inner
            .store
            .finish(id, started, now, outcome, counts, error)
            .await
        {
            tracing::error!(id, error = %e, "could not record how the analysis ended");
        }
        if outcome == Outcome::Succeeded {
            self.0
                .finished
                .send_replace(Some(FinishedRun { id, trigger }));
        }
    }

    /// Reads the window slice by slice into the detectors. `None` when stopped meanwhile.
    async fn analyse(
        &self,
        params: Params,
    ) -> Result<Option<(Vec<crate::patterns::Pattern>, RunCounts)>, String> {
        let inner = &self.0;
        let (start, end) = (params.start, params.end);
        let mut analyzer = Analyzer::new(params);
        // device classes decide how conservative a cover (garage, door) is
        for s in inner.states.all() {
            if let Some(class) = s.device_class() {
                analyzer.set_device_class(&s.entity_id, class);
            }
        }
        let domains = crate::patterns::domains::analysed_domains();
        let mut slices = Vec::new();
        let slice = inner.history.analysis_slice();
        let mut from = start - chrono::Duration::days(1);
        while from < end {
            let to = (from + slice).min(end);
            slices.push((from, to));
            from = to;
        }
        let read = |(from, to): (DateTime<Utc>, DateTime<Utc>)| {
            let domains = &domains;
            async move {
                inner
                    .history
                    .changes(domains, from, to)
                    .await
                    .map_err(|e| format!("reading history: {e}"))
            }
        };
        let mut changes_read = 0u64;
        let mut peak_bytes = 0usize;
        let mut current = match slices.first() {
            Some(&slice) => read(slice).await?,
            None => Vec::new(),
        };
        // the next slice is read while the detectors take this one: reading (the store's and
        // HomeIQ's decoding) and detecting overlap, and memory holds two slices
        for i in 0..slices.len() {
            if inner.stop.is_cancelled() {
                return Ok(None);
            }
            changes_read += current.len() as u64;
            let changes = std::mem::take(&mut current);
            let detect = tokio::task::spawn_blocking(move || {
                for c in &changes {
                    analyzer.push(Change {
                        entity_id: &c.entity_id,
                        state: &c.state,
                        time: time_of(c.time_us),
                        origin: c.origin,
                    });
                }
                analyzer
            });
            let next = async {
                match slices.get(i + 1) {
                    Some(&slice) => read(slice).await,
                    None => Ok(Vec::new()),
                }
            };
            let (detected, next) = tokio::join!(detect, next);
            analyzer = detected.map_err(|e| format!("the analysis task failed: {e}"))?;
            current = next?;
            peak_bytes = peak_bytes.max(analyzer.memory_bytes());
        }
        tracing::debug!(
            changes = changes_read,
            detector_mib = peak_bytes as f64 / 1_048_576.0,
            "history read; finishing the analysis"
        );
        let (patterns, stats) = tokio::task::spawn_blocking(move || analyzer.finish())
            .await
            .map_err(|e| format!("the analysis task failed: {e}"))?;
        let counts = RunCounts {
            changes: changes_read,
            transitions: stats.transitions,
            patterns: patterns.len() as u64,
        };
        Ok(Some((patterns, counts)))
    }

    /// Starts the nightly schedule; it stops with `cancel`.
    pub(crate) fn spawn_scheduler(&self, cancel: CancellationToken) -> OwnedTask {
        let me = self.clone();
        OwnedTask::spawn("analysis scheduler", async move {
            let Ok(at) = me.0.settings.schedule_time() else {
                return;
            };
            if !me.0.settings.enabled {
                return;
            }
            // the next run is computed again after every wake-up with the zone known then: a
            // zone learned late (Home Assistant unreachable at start) moves it, never fires it
            let mut from = me.0.clock.now();
            loop {
                let tz = me.time_zone().await;
                let next = schedule::next_run_after(from, at, tz);
                let now = me.0.clock.now();
                if now >= next {
                    from = now;
                    match me.request(Trigger::Scheduled).await {
                        Ok(_) | Err(Refusal::Busy) => {}
                        Err(e) => tracing::warn!(error = %e, "the nightly analysis did not start"),
                    }
                    continue;
                }
                tracing::debug!(%next, "next nightly analysis");
                let wait = (next - now).to_std().unwrap_or_default();
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(wait.min(SCHEDULER_TICK)) => {}
                }
            }
        })
    }

    /// Stops the run under way (recorded as interrupted) and waits for it.
    pub(crate) async fn stop(&self) {
        self.0.stop.cancel();
        let task = lock(&self.0.current).take();
        if let Some(mut task) = task {
            task.join().await;
        }
    }
}

#[cfg(test)]
mod tests;
