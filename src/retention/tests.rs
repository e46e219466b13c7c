use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::store::embedded::{self, EmbeddedOptions};
use crate::store::point::{FieldValue, Point};

const HOUR_US: i64 = 3_600_000_000;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0)
        .single()
        .expect("time")
}

fn days_ago(days: i64) -> DateTime<Utc> {
    now() - chrono::Duration::days(days)
}

async fn until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn settings_with(raw_days: u32) -> Settings {
    let mut s = Settings::default();
    s.retention.raw_days = Some(raw_days);
    s
}

/// An embedded store holding one point an hour for 60 days for three sensors.
async fn store(dir: &std::path::Path) -> (RetentionTarget, EmbeddedWriter, u64) {
    let path = embedded::history_path(dir);
    let (writer, _history) = embedded::open(&path, EmbeddedOptions::default())
        .await
        .expect("open");
    let start = days_ago(60).timestamp_micros();
    let mut n = 0;
    for e in 0..3 {
        for h in 0..60 * 24 {
            writer.push(
                Point::new("sensor", start + h * HOUR_US)
                    .tag("entity_id", format!("sensor.s{e}"))
                    .field("value", FieldValue::Float(h as f64)),
            );
            n += 1;
        }
    }
    until(Duration::from_secs(30), "points written", || {
        writer.stats().counts.written == n
    })
    .await;
    (
        RetentionTarget::Embedded {
            writer: writer.clone(),
            path,
        },
        writer,
        n,
    )
}

/// Points before and at/after `t`.
async fn split(writer: &EmbeddedWriter, t: DateTime<Utc>) -> (u64, u64) {
    let t = t.timestamp_micros();
    writer
        .with_connection(move |c| {
            let count = |sql: &str| c.query_row(sql, [t], |r| r.get::<_, i64>(0));
            (
                count("SELECT count(*) FROM points WHERE time_us < ?1").expect("count") as u64,
                count("SELECT count(*) FROM points WHERE time_us >= ?1").expect("count") as u64,
            )
        })
        .await
        .expect("writer open")
}

#[test]
fn the_cutoff_is_the_earlier_of_age_and_watermark() {
    assert_eq!(cutoff(now(), Some(30), None), None, "nothing rolled up");
    assert_eq!(cutoff(now(), None, Some(now())), None, "kept forever");
    assert_eq!(
        cutoff(now(), Some(30), Some(days_ago(45))),
        Some(days_ago(45)),
        "rollups behind"
    );
    assert_eq!(
        cutoff(now(), Some(30), Some(days_ago(1))),
        Some(days_ago(30))
    );
}

#[test]
fn shortened_retention_halves_down_to_the_analysis_window() {
    assert_eq!(shortened_days(90, 30), 45);
    assert_eq!(shortened_days(40, 30), 30);
    assert_eq!(shortened_days(30, 30), 30);
    assert_eq!(shortened_days(10, 1), 5);
    assert_eq!(shortened_days(1, 1), 1);
    let mut s = settings_with(90);
    s.analysis.window_days = 30;
    let retention = Retention::new(&s);
    assert_eq!(retention.raw_days_in_effect(), Some(90));
    retention.set_shortened(true);
    assert_eq!(retention.raw_days_in_effect(), Some(45));
    assert!(retention.status().shortened);
    retention.set_shortened(false);
    assert_eq!(retention.raw_days_in_effect(), Some(90));
}

#[tokio::test]
async fn nothing_at_or_after_the_watermark_is_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (target, writer, total) = store(dir.path()).await;
    let retention = Retention::new(&settings_with(30));

    // nothing rolled up: nothing deleted, however old
    let run = retention.run_once(&target, None, now()).await;
    assert_eq!(run.outcome, RunOutcome::NothingRolledUp);
    assert_eq!(split(&writer, now()).await, (total, 0));

    // rollups 45 days behind: only what they cover goes (a point lies exactly on the watermark)
    let watermark = days_ago(45);
    let run = retention.run_once(&target, Some(watermark), now()).await;
    assert_eq!(run.outcome, RunOutcome::Done);
    assert_eq!(run.cutoff, Some(watermark));
    let (before, after) = split(&writer, watermark).await;
    assert_eq!(before, 0);
    assert_eq!(run.points_deleted + after, total, "deleted + kept = all");
    assert_eq!(
        after,
        3 * (45 * 24),
        "every point at/after the watermark kept"
    );
    assert_eq!(retention.counts().held_by_rollups, 1);

    // rollups caught up: the age cutoff applies
    let run = retention.run_once(&target, Some(days_ago(1)), now()).await;
    assert_eq!(run.cutoff, Some(days_ago(30)));
    assert_eq!(split(&writer, days_ago(30)).await, (0, 3 * 30 * 24));
    assert_eq!(
        retention.counts().points_deleted,
        total - 3 * 30 * 24,
        "counted"
    );
    assert_eq!(retention.counts().runs, 3);
    assert_eq!(
        retention.status().conversion,
        Some(Conversion::Incremental),
        "a new file needs no conversion"
    );
    writer.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn the_task_reads_the_watermark_and_runs_when_shortened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (target, writer, _total) = store(dir.path()).await;
    let mut s = settings_with(1);
    s.analysis.enabled = false;
    let retention = Retention::new(&s);
    let (tx, rx) = watch::channel(None);
    let cancel = CancellationToken::new();
    let write_log = Arc::new(crate::store::written::WriteLog::default());
    let mut task = retention.spawn(
        target,
        RetentionInputs {
            rolled_up_until: rx,
            write_log: write_log.clone(),
        },
        Duration::ZERO,
        cancel.clone(),
    );
    until(Duration::from_secs(30), "first run", || {
        retention.status().last_run.is_some()
    })
    .await;
    assert_eq!(
        retention.status().last_run.map(|r| r.outcome),
        Some(RunOutcome::NothingRolledUp)
    );
    assert!(retention.status().next_run_at.is_some());
    assert_eq!(write_log.deletions(), 0, "nothing deleted: nothing noted");
    // the rollups catch up; shortening runs at once (1 day stays 1 day)
    tx.send_replace(Some(Utc::now()));
    retention.set_shortened(true);
    until(Duration::from_secs(30), "second run", || {
        retention.counts().runs == 2
    })
    .await;
    let last = retention.status().last_run.expect("run");
    assert_eq!(last.outcome, RunOutcome::Done);
    assert!(last.points_deleted > 0, "{last:?}");
    // the rollups learn that the oldest raw point may have moved
    until(Duration::from_secs(10), "deletion noted", || {
        write_log.deletions() == 1
    })
    .await;
    cancel.cancel();
    task.join().await;
    writer.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_failed_run_is_counted_and_degrades_health() {
    let settings = crate::config::InfluxSettings {
        url: format!(
            "http://127.0.0.1:{}",
            crate::store::influx::test_support::closed_port()
        ),
        timeout_secs: 1,
        ..crate::config::InfluxSettings::default()
    };
    let target = RetentionTarget::Influx(InfluxClient::new(&settings).expect("client"));
    let retention = Retention::new(&settings_with(30));
    let run = retention.run_once(&target, Some(days_ago(1)), now()).await;
    assert!(matches!(run.outcome, RunOutcome::Failed { .. }), "{run:?}");
    assert_eq!(retention.counts().failures, 1);
    let health = retention.health();
    assert_eq!(health.verdict, Verdict::Degraded);
    assert!(
        health.reasons[0].contains("raw retention failed"),
        "{health:?}"
    );
}

#[test]
fn chunks_adapt_to_the_target_hold_within_bounds() {
    use crate::store::embedded::retention::{MAX_CHUNK, MIN_CHUNK, TARGET_HOLD, next_chunk};
    assert_eq!(next_chunk(1_000, TARGET_HOLD), 1_000);
    assert_eq!(next_chunk(1_000, TARGET_HOLD * 4), 500, "at most halved");
    assert_eq!(next_chunk(1_000, TARGET_HOLD / 4), 2_000, "at most doubled");
    assert_eq!(next_chunk(MIN_CHUNK, Duration::from_secs(1)), MIN_CHUNK);
    assert_eq!(next_chunk(MAX_CHUNK, Duration::ZERO), MAX_CHUNK);
}
