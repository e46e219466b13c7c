//! Runs over a hand-built month in the embedded store, with an injected clock: what is learned,
//! what is not (an automation's changes), the cooldown, no overlap, and a restart during a run.

use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate, TimeZone};
use serde_json::json;

use super::*;
use crate::config::AnalysisSettings;
use crate::ha::model::State;
use crate::registry::RegistryStore;
use crate::store::embedded::{self, EmbeddedOptions};
use crate::store::origin::{Origin, OriginKind};
use crate::store::schema::{EntityMeta, PointMapper, ScratchPoint};

/// A clock the test sets.
#[derive(Debug)]
struct ManualClock(StdMutex<DateTime<Utc>>);

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn zone() -> Tz {
    "Europe/Amsterdam".parse().expect("zone")
}

/// `hh:mm` local on `date` in Amsterdam.
fn local(date: NaiveDate, h: u32, m: u32) -> DateTime<Utc> {
    zone()
        .from_local_datetime(&date.and_hms_opt(h, m, 0).expect("time"))
        .earliest()
        .expect("exists")
        .with_timezone(&Utc)
}

fn state(entity_id: &str, s: &str, at: DateTime<Utc>) -> State {
    serde_json::from_value(json!({
        "entity_id": entity_id, "state": s, "attributes": {},
        "last_changed": at, "last_updated": at,
    }))
    .expect("state")
}

/// 40 days up to `end`: the kitchen light on by hand around 07:00 (±6 min) and off at 08:00,
/// the coffee machine switched on at 06:30 sharp and off at 07:30 by an automation.
async fn month(dir: &std::path::Path, first: NaiveDate) -> HistoryStore {
    let (writer, history) =
        embedded::open(&embedded::history_path(dir), EmbeddedOptions::default())
            .await
            .expect("open");
    let mapper = PointMapper::homeiq(&[]);
    let mut scratch = ScratchPoint::default();
    let user = Origin {
        kind: OriginKind::User,
        id: Some("u1".into()),
    };
    let automation = Origin {
        kind: OriginKind::Automation,
        id: Some("automation.coffee".into()),
    };
    let mut push = |s: State, origin: &Origin| {
        assert!(mapper.map_event_into(
            &s,
            s.last_updated,
            &EntityMeta::default(),
            Some(origin),
            &mut scratch
        ));
        writer.push(scratch.point().clone());
    };
    for d in 0..40u64 {
        let date = first + Days::new(d);
        let jitter = (d * 7 % 13) as u32;
        let t = 6 * 60 + 54 + jitter % 13; // 06:54..07:06
        push(
            state("light.kitchen", "on", local(date, t / 60, t % 60)),
            &user,
        );
        push(state("light.kitchen", "off", local(date, 8, 0)), &user);
        push(
            state("switch.coffee", "on", local(date, 6, 30)),
            &automation,
        );
        push(
            state("switch.coffee", "off", local(date, 7, 30)),
            &automation,
        );
    }
    let report = writer.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.left, 0);
    HistoryStore::Embedded(history)
}

async fn analysis(
    dir: &std::path::Path,
    history: HistoryStore,
    now: DateTime<Utc>,
    settings: AnalysisSettings,
) -> (Analysis, RegistryStore) {
    let registry = RegistryStore::open(&dir.join("homeiq.db"))
        .await
        .expect("metadata db");
    let analysis = Analysis::open(AnalysisParts {
        settings,
        db: registry.connection().clone(),
        history,
        zone: ZoneSource::Fixed(zone()),
        states: CurrentStates::default(),
        clock: Arc::new(ManualClock(StdMutex::new(now))),
    })
    .await
    .expect("open");
    (analysis, registry)
}

async fn finished(analysis: &Analysis, id: i64) -> run::Model {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = analysis.runs(50, None).await.expect("runs");
        if let Some(r) = rows.into_iter().find(|r| r.id == id)
            && r.outcome != Outcome::Running
        {
            return r;
        }
        assert!(Instant::now() < deadline, "run {id} did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_run_learns_the_habit_not_the_automation_and_requests_wait_their_turn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = NaiveDate::from_ymd_opt(2026, 3, 1).expect("date");
    let history = month(dir.path(), first).await;
    let now = local(first + Days::new(40), 12, 0);
    let (analysis, _registry) =
        analysis(dir.path(), history, now, AnalysisSettings::default()).await;

    let row = analysis.request(Trigger::Manual).await.expect("starts");
    assert_eq!(row.outcome, Outcome::Running);
    assert_eq!(row.time_zone.as_deref(), Some("Europe/Amsterdam"));
    // no overlap: the nightly run finds it busy, and that is recorded
    assert_eq!(
        analysis.request(Trigger::Scheduled).await,
        Err(Refusal::Busy)
    );
    let done = finished(&analysis, row.id).await;
    assert_eq!(done.outcome, Outcome::Succeeded, "{done:?}");
    assert!(done.changes_analysed >= 4 * 30, "{done:?}");
    assert!(done.duration_ms.is_some());

    let patterns = analysis.patterns();
    let kitchen: Vec<_> = patterns
        .iter()
        .filter(|p| {
            p.pattern
                .entities
                .iter()
                .any(|e| e.entity_id == "light.kitchen")
        })
        .collect();
    assert!(
        kitchen.iter().any(
            |p| p.pattern.kind == crate::patterns::PatternKind::TimeOfDay
                && p.pattern.entities[0].state == "on"
                && p.pattern
                    .time_window
                    .as_ref()
                    .is_some_and(|w| w.start.as_str() >= "06:50" && w.end.as_str() <= "07:10")
        ),
        "{patterns:?}"
    );
    assert!(
        !patterns.iter().any(|p| p
            .pattern
            .entities
            .iter()
            .any(|e| e.entity_id == "switch.coffee")),
        "an automation's changes are never a habit: {patterns:?}"
    );
    assert_eq!(done.patterns_found, patterns.len() as i64);

    // a second request inside the cooldown is refused and recorded
    match analysis.request(Trigger::Manual).await {
        Err(Refusal::Cooldown(wait)) => assert!(wait > Duration::from_secs(23 * 3600)),
        other => panic!("not refused: {other:?}"),
    }
    let rows = analysis.runs(10, None).await.expect("runs");
    let refused: Vec<_> = rows
        .iter()
        .filter(|r| r.outcome == Outcome::Refused)
        .collect();
    assert_eq!(refused.len(), 2, "{rows:?}");
    assert!(
        refused
            .iter()
            .all(|r| r.started_at.is_none() && r.error.is_some())
    );

    // the stored patterns come back with the same first-detection time after a restart
    drop(analysis);
    let (again, _r) = super::tests::analysis(
        dir.path(),
        month_store(dir.path()).await,
        now,
        AnalysisSettings::default(),
    )
    .await;
    assert_eq!(again.patterns().len(), patterns.len());
}

async fn month_store(dir: &std::path::Path) -> HistoryStore {
    let (_writer, history) =
        embedded::open(&embedded::history_path(dir), EmbeddedOptions::default())
            .await
            .expect("open");
    HistoryStore::Embedded(history)
}

#[tokio::test]
async fn a_run_cut_short_by_a_restart_is_recorded_as_interrupted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Utc::now();
    let (analysis, registry) = analysis(
        dir.path(),
        month_store(dir.path()).await,
        now,
        AnalysisSettings::default(),
    )
    .await;
    // a run under way when the process died
    let store = AnalysisStore::new(registry.connection().clone());
    let row = store
        .start(Trigger::Scheduled, now, (now, now), "UTC")
        .await
        .expect("row");
    drop(analysis);
    let (again, _r) = super::tests::analysis(
        dir.path(),
        month_store(dir.path()).await,
        now,
        AnalysisSettings::default(),
    )
    .await;
    let rows = again.runs(10, None).await.expect("runs");
    let r = rows.iter().find(|r| r.id == row.id).expect("row");
    assert_eq!(r.outcome, Outcome::Interrupted);
    assert!(r.error.as_deref().is_some_and(|e| e.contains("stopped")));
}

#[tokio::test]
async fn turned_off_analysis_refuses_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = AnalysisSettings {
        enabled: false,
        ..AnalysisSettings::default()
    };
    let (analysis, _r) = analysis(
        dir.path(),
        month_store(dir.path()).await,
        Utc::now(),
        settings,
    )
    .await;
    assert_eq!(
        analysis.request(Trigger::Manual).await,
        Err(Refusal::Disabled)
    );
    let rows = analysis.runs(10, None).await.expect("runs");
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("analysis.enabled"))
    );
}
