//! The import against a fake recorder (answers computed from a planted history) and the real
//! embedded store: counts, nothing twice, resume after a stop, hostile answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::recorder::{Recorder, Reply};
use super::sink::MemorySink;
use super::*;
use crate::config::EntityFilterSettings;
use crate::ha::model::State;
use crate::store::embedded::{self, EmbeddedOptions};

const HOUR: i64 = 3_600_000_000;

/// The planted history: two entities with a state every 10 minutes for 30 hours before `now`,
/// hourly statistics for 60 days.
struct Planted {
    now: i64,
    hostile_statistics: AtomicBool,
    huge_statistics: AtomicBool,
    no_statistics: AtomicBool,
}

impl Planted {
    fn new() -> Self {
        Planted {
            now: floor_hour(Utc::now().timestamp_micros()),
            hostile_statistics: AtomicBool::new(false),
            huge_statistics: AtomicBool::new(false),
            no_statistics: AtomicBool::new(false),
        }
    }

    fn state_times(&self) -> Vec<i64> {
        (1..=180)
            .map(|k| self.now - 30 * HOUR + k * 600_000_000 - 7)
            .collect()
    }

    fn stat_hours(&self) -> Vec<i64> {
        (0..60 * 24)
            .map(|h| self.now - 60 * 24 * HOUR + h * HOUR)
            .collect()
    }

    fn answer(&self, cmd: &Value) -> String {
        let t = |k: &str| {
            DateTime::parse_from_rfc3339(cmd[k].as_str().unwrap_or_default())
                .map(|d| d.timestamp_micros())
                .unwrap_or(0)
        };
        let ids: Vec<&str> = cmd["entity_ids"]
            .as_array()
            .or(cmd["statistic_ids"].as_array())
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match cmd["type"].as_str().unwrap_or_default() {
            "history/history_during_period" => {
                let (start, end) = (t("start_time"), t("end_time"));
                let probe = cmd["include_start_time_state"] == json!(true);
                let mut out = serde_json::Map::new();
                for id in ids.iter().filter(|i| i.starts_with("sensor.")) {
                    let states: Vec<Value> = self
                        .state_times()
                        .into_iter()
                        .enumerate()
                        .filter(|(_, lu)| if probe { *lu < start } else { *lu > start && *lu < end })
                        .map(|(k, lu)| json!({"s": format!("{k}"), "a": {"unit_of_measurement": "W"}, "lu": lu as f64 / 1e6}))
                        .collect();
                    let states = if probe {
                        states.last().cloned().into_iter().collect()
                    } else {
                        states
                    };
                    if !states.is_empty() {
                        out.insert((*id).to_owned(), Value::Array(states));
                    }
                }
                Value::Object(out).to_string()
            }
            "recorder/list_statistic_ids" => json!([
                {"statistic_id": "sensor.a", "source": "recorder"},
                {"statistic_id": "sensor.excluded", "source": "recorder"},
                {"statistic_id": "demo:energy", "source": "demo"},
            ])
            .to_string(),
            "recorder/statistics_during_period"
                if self.huge_statistics.load(Ordering::Relaxed)
                    && cmd["period"] == json!("hour") =>
            {
                let row = r#"{"start":0,"mean":1.0},"#;
                let rows = row.repeat(super::recorder::MAX_REPLY_BYTES / row.len() + 1);
                format!(r#"{{"sensor.a":[{}{{"start":0}}]}}"#, rows)
            }
            "recorder/statistics_during_period" => {
                let (start, end) = (t("start_time"), t("end_time"));
                let hostile = self.hostile_statistics.load(Ordering::Relaxed)
                    && cmd["period"] == json!("hour");
                let mut out = serde_json::Map::new();
                for id in &ids {
                    let rows: Vec<Value> = self
                        .stat_hours()
                        .into_iter()
                        .filter(|h| *h >= start && *h < end)
                        .map(|h| {
                            if hostile {
                                json!({"mean": 1.0})
                            } else {
                                json!({"start": h / 1000, "end": h / 1000 + 3_600_000, "mean": 1.5, "min": 1.0, "max": 2.0, "sum": null, "state": null})
                            }
                        })
                        .collect();
                    let rows = if cmd["period"] == json!("month") {
                        rows.into_iter().take(1).collect()
                    } else {
                        rows
                    };
                    if !rows.is_empty() {
                        out.insert((*id).to_owned(), Value::Array(rows));
                    }
                }
                Value::Object(out).to_string()
            }
            other => panic!("unexpected command {other}"),
        }
    }
}

struct Fake(Arc<Planted>);

impl Recorder for Fake {
    fn request(&self, command: Value) -> Reply<'_> {
        if self.0.no_statistics.load(Ordering::Relaxed)
            && command["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("recorder/"))
        {
            return Box::pin(async {
                Err(CommandError::Failed {
                    code: "unknown_command".into(),
                    message: "Unknown command.".into(),
                })
            });
        }
        let text = self.0.answer(&command);
        Box::pin(async move { Ok(RawValue::from_string(text).expect("json")) })
    }

    fn connected(&self) -> bool {
        true
    }
}

struct Env {
    _dir: tempfile::TempDir,
    db_path: std::path::PathBuf,
    history: HistoryStore,
    writer: HistoryWriter,
    sink: Arc<MemorySink>,
    planted: Arc<Planted>,
    states: CurrentStates,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let (writer, history) =
        embedded::open(&dir.path().join("history.db"), EmbeddedOptions::default())
            .await
            .expect("embedded store");
    let states = CurrentStates::default();
    let now = Utc::now();
    states.insert(State {
        entity_id: "sensor.a".into(),
        state: "1".into(),
        attributes: Default::default(),
        last_changed: now,
        last_updated: now,
        last_reported: None,
        context: None,
    });
    let planted = Arc::new(Planted::new());
    Env {
        db_path: dir.path().join("homeiq.db"),
        _dir: dir,
        history: HistoryStore::Embedded(history),
        writer: writer.into(),
        sink: Arc::new(MemorySink::default()),
        planted,
        states,
    }
}

async fn open(env: &Env) -> Import {
    let registry = crate::registry::RegistryStore::open(&env.db_path)
        .await
        .expect("metadata db");
    let exclude = EntityFilterSettings {
        entities: vec!["sensor.excluded".into()],
        ..Default::default()
    };
    Import::open(ImportParts {
        settings: ImportSettings {
            on_first_start: true,
            requests_per_second: 100,
        },
        db: registry.connection().clone(),
        recorder: Arc::new(Fake(env.planted.clone())),
        history: env.history.clone(),
        writer: env.writer.clone(),
        mapper: PointMapper::homeiq(&[]),
        filter: EntityFilter::new(&EntityFilterSettings::default(), &exclude).expect("filter"),
        catalog: CatalogHandle::default(),
        states: env.states.clone(),
        sink: env.sink.clone(),
        durability: Durability {
            max_queued: 10_000,
            residence: Duration::from_secs(5),
            small_backlog: 1_000,
        },
    })
    .await
    .expect("open")
}

async fn finished(import: &Import) -> ImportRunView {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while import.running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the import did not end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    import.status().run.expect("a run")
}

async fn stored(env: &Env, entity: &str) -> Vec<i64> {
    let q = HistoryQuery {
        entity_ids: vec![entity.into()],
        start: Utc::now() - chrono::Duration::days(400),
        end: Utc::now() + chrono::Duration::days(1),
        order: Order::Ascending,
        limit: 10_000,
        after: None,
    };
    let page = env.history.history(&q).await.expect("history");
    page.items
        .iter()
        .map(|r| r.time.timestamp_micros())
        .collect()
}

fn sink_rows(env: &Env) -> usize {
    env.sink.rows.lock().expect("lock").len()
}

#[tokio::test]
async fn imports_every_state_and_the_hours_before_them_and_nothing_twice() {
    let env = env().await;
    let import = open(&env).await;
    import.start().await.expect("first start");
    let run = finished(&import).await;
    assert_eq!(run.status, ImportRunStatus::Succeeded, "{run:?}");
    assert_eq!(run.trigger, ImportTrigger::FirstStart);
    let times = stored(&env, "sensor.a").await;
    assert_eq!(
        times,
        env.planted.state_times(),
        "every state, at its own time"
    );
    assert_eq!(run.states.imported, 180);
    assert_eq!((run.states.total, run.states.done), (1, 1));
    // hours that end at or before the first state (30 h ago, minus 7 µs): 60 days − 30 h
    let first = env.planted.state_times()[0];
    let hours = env
        .planted
        .stat_hours()
        .iter()
        .filter(|h| **h + HOUR <= first)
        .count();
    assert_eq!(hours, 60 * 24 - 30);
    assert_eq!(sink_rows(&env), hours);
    assert_eq!(run.statistics.imported, hours as u64);
    assert_eq!(run.external_statistics_skipped, 1, "demo:energy");
    assert_eq!(run.statistics.total, 1, "sensor.excluded is not recorded");
    assert!(run.recorder_oldest_state.is_some());

    // again: the first record is now the oldest imported state; nothing older exists
    import.request(ImportTrigger::Manual).await.expect("again");
    let again = finished(&import).await;
    assert_eq!(again.status, ImportRunStatus::Succeeded, "{again:?}");
    assert_eq!(again.states.imported, 0);
    assert_eq!(stored(&env, "sensor.a").await.len(), 180);
    assert_eq!(sink_rows(&env), hours, "the same hours, replaced");
    assert_eq!(import.counts().runs, 2);
}

#[tokio::test]
async fn a_stop_after_the_first_chunks_resumes_where_it_stopped() {
    let env = env().await;
    let import = open(&env).await;
    // the first window (an hour from the bisection's lower bound) may hold no state yet; the
    // slices grow, the third holds some
    import.0.stop_after_chunks.store(3, Ordering::Relaxed);
    import.start().await.expect("first start");
    let run = finished(&import).await;
    assert_eq!(run.status, ImportRunStatus::Interrupted, "{run:?}");
    assert_eq!(run.position.phase, ImportPhase::States);
    let first_chunk = run.states.imported;
    assert!(first_chunk > 0 && first_chunk < 180, "{run:?}");
    // the position is saved once the writer no longer holds a chunk's points: here, the first
    // window or the batch's start
    assert_eq!(run.position.batch, 0, "{run:?}");
    let planned = (run.planned_at, run.recorder_oldest_state);

    // a restart: the interrupted import resumes by itself
    let import = open(&env).await;
    import.start().await.expect("resume");
    let run = finished(&import).await;
    assert_eq!(run.status, ImportRunStatus::Succeeded, "{run:?}");
    assert_eq!(run.trigger, ImportTrigger::FirstStart, "the same run");
    assert_eq!(
        (run.planned_at, run.recorder_oldest_state),
        planned,
        "with its plan"
    );
    assert_eq!(stored(&env, "sensor.a").await, env.planted.state_times());
    assert!(run.states.imported >= 180, "{run:?}");
    assert_eq!(sink_rows(&env), 60 * 24 - 30);
}

#[tokio::test]
async fn a_hostile_answer_fails_clearly_keeps_what_came_before_and_resumes() {
    let env = env().await;
    env.planted
        .hostile_statistics
        .store(true, Ordering::Relaxed);
    let import = open(&env).await;
    import.start().await.expect("first start");
    let run = finished(&import).await;
    assert_eq!(run.status, ImportRunStatus::Failed, "{run:?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("recorder/statistics_during_period"),
        "{error}"
    );
    assert_eq!(run.position.phase, ImportPhase::Statistics);
    assert_eq!(
        stored(&env, "sensor.a").await.len(),
        180,
        "the states are kept"
    );
    assert_eq!(import.health().warnings.len(), 1);

    env.planted
        .hostile_statistics
        .store(false, Ordering::Relaxed);
    import.request(ImportTrigger::Manual).await.expect("resume");
    let run = finished(&import).await;
    assert_eq!(run.status, ImportRunStatus::Succeeded, "{run:?}");
    assert_eq!(run.states.imported, 180, "no state read twice");
    assert_eq!(sink_rows(&env), 60 * 24 - 30);
    assert!(import.health().warnings.is_empty());
}

#[tokio::test]
async fn a_huge_answer_fails_clearly_and_keeps_the_states() {
    let env = env().await;
    env.planted.huge_statistics.store(true, Ordering::Relaxed);
    let import = open(&env).await;
    import.start().await.expect("first start");
    let run = finished(&import).await;
    assert_eq!(run.status, ImportRunStatus::Failed, "{:?}", run.error);
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("recorder/statistics_during_period") && error.contains("32 MiB"),
        "{error}"
    );
    assert_eq!(
        stored(&env, "sensor.a").await.len(),
        180,
        "the states are kept"
    );
    assert_eq!(sink_rows(&env), 0);
}

#[tokio::test]
async fn a_home_assistant_without_statistics_imports_its_states() {
    let env = env().await;
    env.planted.no_statistics.store(true, Ordering::Relaxed);
    let import = open(&env).await;
    import.start().await.expect("first start");
    let run = finished(&import).await;
    assert_eq!(run.status, ImportRunStatus::Succeeded, "{run:?}");
    assert_eq!(run.states.imported, 180);
    assert_eq!((run.statistics.total, run.statistics.imported), (0, 0));
    assert!(import.health().warnings.is_empty());
}

#[tokio::test]
async fn a_second_request_while_one_runs_is_refused() {
    let env = env().await;
    let import = open(&env).await;
    import.request(ImportTrigger::Manual).await.expect("first");
    assert!(matches!(
        import.request(ImportTrigger::Manual).await,
        Err(Refusal::Busy)
    ));
    finished(&import).await;
}

#[test]
fn chunk_planning_and_resume_positions() {
    assert_eq!(batch_count(0, 50), 0);
    assert_eq!(batch_count(101, 50), 3);
    let plan: Vec<(String, i64)> = (0..5).map(|i| (format!("sensor.{i}"), i)).collect();
    assert_eq!(batch_of(&plan, 2, 2).len(), 1);
    assert!(batch_of(&plan, 9, 2).is_empty());
    assert_eq!(resume_from(None, 100), 100);
    assert_eq!(resume_from(Some(500), 100), 500);
    assert_eq!(
        resume_from(Some(50), 100),
        100,
        "never before the batch's start"
    );
    // bisection converges to the precision in log2(span / precision) probes
    let (mut lo, mut hi, oldest) = (0i64, PROBE_SPAN_US, 1_234_567_890_123i64);
    let mut probes = 0;
    while let Some(mid) = next_probe(lo, hi, PROBE_PRECISION_US) {
        probes += 1;
        if oldest < mid {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    assert!(lo <= oldest && oldest < hi && hi - lo <= PROBE_PRECISION_US);
    assert!(probes <= 17, "{probes}");
}

#[test]
fn only_hours_that_end_before_the_first_raw_record_are_kept() {
    let hour = |h: i64| ImportedHour {
        entity_id: "sensor.a".into(),
        start: DateTime::from_timestamp_micros(h * HOUR).expect("time"),
        mean: Some(1.0),
        min: None,
        max: None,
        sum: None,
        state: None,
    };
    let rows = (0..10).map(hour).collect();
    // raw data from 5.5 h on: hours 0..=4 end before it; window [1, 9)
    let (kept, left) = hours_before(rows, 5 * HOUR + HOUR / 2, HOUR, 9 * HOUR);
    let starts: Vec<i64> = kept
        .iter()
        .map(|h| h.start.timestamp_micros() / HOUR)
        .collect();
    assert_eq!(starts, [1, 2, 3, 4]);
    assert_eq!(left, 6);
}
