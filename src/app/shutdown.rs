//! Shutdown as named stages under one deadline.
//!
//! [`SHUTDOWN_BUDGET`] starts at the stop signal. Each [`Stage`] runs in order and gets a slot: its
//! [`Stage::share`] of the time left, the later stages' shares kept back. A stage that hangs is cut
//! off at the end of its slot (its future dropped), so it cannot eat the time of the stages after
//! it; a stage that ends early leaves its unused time to the later ones. Each stage logs how long
//! it took and how much of the budget was left.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Everything that accepted data must be written or handed over within this time after SIGTERM
/// (DOCS.md: "within 8 seconds"; the Supervisor waits `timeout: 20` s in `config.yaml`).
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(8);

/// What the async runtime may still wait for blocking work after the last stage, in `main`.
pub const EXIT_GRACE: Duration = Duration::from_millis(200);

/// The stages of a shutdown, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Stop accepting HTTP requests; requests under way may end.
    StopHttp,
    /// Close the connection to Home Assistant: nothing more is read.
    StopHaConnection,
    /// The pipeline handles what was read; the heartbeat ends.
    DrainPipeline,
    /// The history writer writes what it holds, spooling what it cannot.
    FlushWriter,
    /// The backfill cursor records how far everything is durable.
    PersistCursor,
    /// The rule engine evaluates the last changes; deliveries under way end.
    Webhooks,
    /// The registry task applies its last jobs; the SQLite pool closes (WAL checkpoint).
    CloseRegistry,
}

impl Stage {
    /// Every stage, in order.
    pub(crate) const ALL: [Stage; 7] = [
        Stage::StopHttp,
        Stage::StopHaConnection,
        Stage::DrainPipeline,
        Stage::FlushWriter,
        Stage::PersistCursor,
        Stage::Webhooks,
        Stage::CloseRegistry,
    ];

    /// Its name in the log.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stage::StopHttp => "stop HTTP",
            Stage::StopHaConnection => "stop Home Assistant connection",
            Stage::DrainPipeline => "drain pipeline",
            Stage::FlushWriter => "flush writer",
            Stage::PersistCursor => "persist backfill cursor",
            Stage::Webhooks => "webhooks",
            Stage::CloseRegistry => "close registry store",
        }
    }

    /// Its share of the budget (the shares add up to 100): the writer, which may have to spool
    /// a backlog, gets the most.
    pub(crate) fn share(self) -> u32 {
        match self {
            // a slot over the server's own 1 s limit for open live streams
            Stage::StopHttp | Stage::DrainPipeline => 15,
            Stage::StopHaConnection => 10,
            Stage::FlushWriter => 35,
            Stage::PersistCursor => 5,
            Stage::Webhooks | Stage::CloseRegistry => 10,
        }
    }

    fn position(self) -> usize {
        Stage::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StageEnd {
    /// It finished within its slot.
    Done,
    /// It was cut off at the end of its slot.
    CutOff,
}

/// What one stage did, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StageReport {
    pub(crate) stage: Stage,
    pub(crate) slot: Duration,
    pub(crate) took: Duration,
    pub(crate) end: StageEnd,
}

/// A shutdown under way: one deadline, stages run in order (see the module documentation).
pub(crate) struct Shutdown {
    started: Instant,
    deadline: Instant,
    reports: Vec<StageReport>,
}

impl Shutdown {
    /// Starts the clock: everything must be done within `budget` from now.
    pub(crate) fn start(budget: Duration) -> Self {
        let started = Instant::now();
        Shutdown {
            started,
            deadline: started + budget,
            reports: Vec::new(),
        }
    }

    /// Time left of the budget.
    pub(crate) fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Runs `stage`: `work` gets the stage's slot (so it can fit its own steps into it) and is cut
    /// off when the slot is over. Returns its output, or `None` when it was cut off. Stages run in
    /// [`Stage::ALL`] order; one not run leaves its share to the later ones.
    pub(crate) async fn run<T, F, Fut>(&mut self, stage: Stage, work: F) -> Option<T>
    where
        F: FnOnce(Duration) -> Fut,
        Fut: Future<Output = T>,
    {
        debug_assert!(
            self.reports
                .last()
                .is_none_or(|r| r.stage.position() < stage.position()),
            "{stage:?} out of order"
        );
        let kept: u32 = Stage::ALL[stage.position()..]
            .iter()
            .map(|s| s.share())
            .sum();
        let slot = self
            .left()
            .mul_f64(f64::from(stage.share()) / f64::from(kept.max(1)));
        let begun = Instant::now();
        let out = tokio::time::timeout(slot, work(slot)).await.ok();
        let report = StageReport {
            stage,
            slot,
            took: begun.elapsed(),
            end: if out.is_some() {
                StageEnd::Done
            } else {
                StageEnd::CutOff
            },
        };
        let left_ms = self.left().as_millis() as u64;
        let took_ms = report.took.as_millis() as u64;
        let slot_ms = slot.as_millis() as u64;
        let cut_off = report.end == StageEnd::CutOff;
        tracing::info!(
            stage = stage.name(),
            took_ms,
            slot_ms,
            left_ms,
            cut_off,
            "shutdown stage"
        );
        if cut_off {
            tracing::warn!(
                stage = stage.name(),
                "shutdown stage cut off at the end of its slot"
            );
        }
        self.reports.push(report);
        out
    }

    /// Logs the whole shutdown's duration and returns what each stage did.
    pub(crate) fn finish(self) -> Vec<StageReport> {
        let cut_off = self
            .reports
            .iter()
            .filter(|r| r.end == StageEnd::CutOff)
            .count();
        tracing::info!(
            took_ms = self.started.elapsed().as_millis() as u64,
            left_ms = self.left().as_millis() as u64,
            cut_off,
            "HomeIQ stopped"
        );
        self.reports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_whole_budget() {
        assert_eq!(Stage::ALL.iter().map(|s| s.share()).sum::<u32>(), 100);
    }

    /// A stage that never ends is cut off at the end of its slot; every later stage still gets
    /// at least its share of the budget, and the whole shutdown keeps the deadline.
    #[tokio::test]
    async fn a_hanging_stage_is_cut_off_and_later_stages_keep_their_share() {
        let budget = Duration::from_millis(2_000);
        let mut shutdown = Shutdown::start(budget);
        let started = Instant::now();
        let http = shutdown.run(Stage::StopHttp, |_| async { 1 }).await;
        assert_eq!(http, Some(1));
        let hung = shutdown
            .run(Stage::StopHaConnection, |_| std::future::pending::<()>())
            .await;
        assert_eq!(hung, None);
        for stage in &Stage::ALL[2..] {
            // each later stage uses much of its slot (with room for a late timer on a busy
            // machine)
            let got = shutdown
                .run(*stage, |slot| async move {
                    tokio::time::sleep(slot.mul_f64(0.6)).await;
                    slot
                })
                .await;
            assert!(got.is_some(), "{stage:?} was cut off");
        }
        let reports = shutdown.finish();
        let total = started.elapsed();
        assert!(
            total <= budget + Duration::from_millis(250),
            "took {total:?}"
        );
        let hung = reports[1];
        assert_eq!(hung.end, StageEnd::CutOff);
        assert!(hung.took >= hung.slot, "{hung:?}");
        // the hanging stage took no more than its share of what was left: 10 of 85 shares
        assert!(
            hung.slot <= budget.mul_f64(10.0 / 85.0) + Duration::from_millis(50),
            "{hung:?}"
        );
        for r in &reports[2..] {
            let share = budget.mul_f64(f64::from(r.stage.share()) / 100.0);
            assert_eq!(r.end, StageEnd::Done, "{r:?}");
            assert!(
                r.slot + Duration::from_millis(50) >= share,
                "{:?} got {:?}, its share is {share:?}",
                r.stage,
                r.slot
            );
        }
    }

    /// A stage that ends early leaves its time to the later ones.
    #[tokio::test]
    async fn unused_time_goes_to_the_later_stages() {
        let budget = Duration::from_millis(1_000);
        let mut shutdown = Shutdown::start(budget);
        for stage in &Stage::ALL[..3] {
            shutdown.run(*stage, |_| async {}).await;
        }
        let slot = shutdown
            .run(Stage::FlushWriter, |slot| async move { slot })
            .await
            .unwrap_or_default();
        // 35 of the 60 shares left, of almost the whole budget
        assert!(slot >= budget.mul_f64(0.35 / 0.60 * 0.95), "{slot:?}");
    }
}
