//! Rollups against raw points on both backends: random histories (gaps, heartbeats, meter
//! resets, text states, a DST day, late data), rolled up, then every aggregate read through the
//! tiers must equal the aggregate of the raw points.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

use super::periods::HOUR;
use super::{ImportedHour, RollupParts, Rollups, Tier, ZoneOf};
use crate::config::{InfluxSettings, RetentionSettings, SchemaMode};
use crate::store::embedded::{self, EmbeddedOptions};
use crate::store::history::{
    AggregateQuery, AggregateSeries, HistoryQuery, HistoryStore, Order, time_of,
};
use crate::store::influx::test_support::fresh_settings;
use crate::store::influx::{InfluxClient, InfluxHistory, encode_point};
use crate::store::point::{FieldValue, Point, Precision};
use crate::store::written::WriteLog;

/// 2026-03-28 00:00 in Amsterdam (the next day has 23 hours).
fn t0() -> i64 {
    let tz: Tz = "Europe/Amsterdam".parse().expect("tz");
    tz.with_ymd_and_hms(2026, 3, 28, 0, 0, 0)
        .single()
        .expect("t0")
        .timestamp_micros()
}

/// Three days of history, then rolled up "now" (a day later).
const SPAN_US: i64 = 3 * 24 * HOUR;

/// One generated point: (entity index, µs after t0, what).
#[derive(Debug, Clone)]
enum What {
    Number(f64),
    Unavailable,
    Heartbeat,
    Text(u8),
}

fn what() -> impl Strategy<Value = What> {
    prop_oneof![
        6 => (0.0f64..100.0).prop_map(|v| What::Number((v * 8.0).round() / 8.0)),
        1 => Just(What::Unavailable),
        2 => Just(What::Heartbeat),
        2 => (0u8..3).prop_map(What::Text),
    ]
}

const ENTITIES: [&str; 3] = ["sensor.temp", "sensor.meter", "light.desk"];

/// The points of a history: heartbeats repeat the entity's last value.
fn points(raw: &[(usize, i64, What)]) -> Vec<Point> {
    let mut sorted = raw.to_vec();
    sorted.sort_by_key(|(e, t, _)| (*t, *e));
    sorted.dedup_by_key(|(e, t, _)| (*e, *t));
    let mut last: [Option<(String, Option<f64>)>; 3] = Default::default();
    let mut out = Vec::new();
    for (e, t, w) in sorted {
        let entity = ENTITIES[e];
        let (state, value, heartbeat) = match (&w, e) {
            (What::Heartbeat, _) => match &last[e] {
                Some((s, v)) => (s.clone(), *v, true),
                None => continue,
            },
            (What::Unavailable, _) => ("unavailable".to_owned(), None, false),
            (What::Text(k), 2) => {
                let s = ["on", "off", "dim"][usize::from(*k)];
                (s.to_owned(), (*k == 0).then_some(1.0).or(Some(0.0)), false)
            }
            (What::Text(_), _) => ("unknown".to_owned(), None, false),
            (What::Number(v), 2) => (
                if *v > 50.0 { "on" } else { "off" }.to_owned(),
                Some(f64::from(u8::from(*v > 50.0))),
                false,
            ),
            (What::Number(v), _) => (format!("{v}"), Some(*v), false),
        };
        last[e] = Some((state.clone(), value));
        let domain = entity.split('.').next().unwrap_or("sensor");
        let mut p = Point::new(domain, t0() + t)
            .tag("entity_id", entity)
            .field("state", FieldValue::Str(state));
        if let Some(v) = value {
            p = p.field("value", FieldValue::Float(v));
        }
        if e == 1 {
            p = p.field(
                "state_class_str",
                FieldValue::Str("total_increasing".into()),
            );
        }
        if heartbeat {
            p = p.field("origin", FieldValue::Str("heartbeat".into()));
        }
        out.push(p);
    }
    out
}

fn history_strategy() -> impl Strategy<Value = Vec<(usize, i64, What)>> {
    proptest::collection::vec((0usize..3, 0i64..SPAN_US, what()), 1..120)
}

async fn rollups(dir: &std::path::Path, history: HistoryStore, log: Arc<WriteLog>) -> Rollups {
    Rollups::open(RollupParts {
        data_dir: dir.to_path_buf(),
        history,
        write_log: log,
        retention: RetentionSettings {
            raw_days: None,
            five_minute_days: 10_000,
            hourly_days: 10_000,
            daily_days: 10_000,
        },
        zone: ZoneOf::Fixed("Europe/Amsterdam".parse().expect("tz")),
        max_raw_days: 30,
    })
    .await
    .expect("rollups")
}

/// Every interval's aggregate read through the tiers equals the raw one.
async fn assert_tiers_match_raw(r: &Rollups, now: i64) {
    let at = |us: i64| time_of(us);
    let cases: [(i64, i64, u64); 7] = [
        (0, SPAN_US + 24 * HOUR, 3_600),
        (0, SPAN_US + 24 * HOUR, 86_400),
        (-HOUR, SPAN_US, 2 * 86_400),
        (1_234_567, SPAN_US - 7_654_321, 3_600),
        (0, SPAN_US, 300),
        (17 * 60_000_000, SPAN_US, 900),
        (0, now - t0(), 7_200),
    ];
    for (from, to, interval) in cases {
        let q = AggregateQuery {
            entity_ids: ENTITIES.iter().map(|e| (*e).to_owned()).collect(),
            start: at(t0() + from),
            end: at(t0() + to),
            interval_secs: interval,
        };
        let raw = r.aggregate(&q, true).await.expect("raw");
        let tiered = r.aggregate(&q, false).await.expect("tiered");
        assert_eq!(raw.tier, Tier::Raw);
        let any = raw.series.iter().any(|s| s.points.len() > 2);
        if any && interval % 3_600 == 0 && to - from > 3 * 86_400_000_000 / 3 {
            assert_ne!(tiered.tier, Tier::Raw, "{interval}: rollups unused");
        }
        assert_same(&raw.series, &tiered.series, interval);
    }
}

fn assert_same(raw: &[AggregateSeries], tiered: &[AggregateSeries], interval: u64) {
    assert_eq!(raw.len(), tiered.len());
    for (a, b) in raw.iter().zip(tiered) {
        let times = |s: &AggregateSeries| s.points.iter().map(|p| p.time).collect::<Vec<_>>();
        assert_eq!(times(a), times(b), "{} every {interval} s", a.entity_id);
        for (p, q) in a.points.iter().zip(&b.points) {
            let ctx = format!("{} at {} every {interval} s", a.entity_id, p.time);
            assert_eq!(
                (p.count, p.min, p.max, p.last),
                (q.count, q.min, q.max, q.last),
                "{ctx}"
            );
            match (p.mean, q.mean) {
                (Some(x), Some(y)) => assert!(
                    (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                    "{ctx}: {x} vs {y}"
                ),
                (x, y) => assert_eq!(x, y, "{ctx}"),
            }
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Embedded: write the early points, roll up, write the late ones (the writer reports them),
/// roll up again; the watermark never passes the late points before they are redone.
async fn embedded_case(early: Vec<Point>, late: Vec<Point>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (writer, history) = embedded::open(
        &embedded::history_path(dir.path()),
        EmbeddedOptions {
            linger: Duration::from_millis(1),
            ..EmbeddedOptions::default()
        },
    )
    .await
    .expect("open");
    let log = writer.write_log();
    let store = HistoryStore::Embedded(history);
    let r = rollups(dir.path(), store.clone(), log.clone()).await;
    let flush = |n: usize| {
        let store = store.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let stored = store
                    .points_between(t0() - HOUR, t0() + SPAN_US + HOUR)
                    .await
                    .expect("read")
                    .len();
                if stored >= n {
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "points not written");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let n_early = early.len();
    for p in early {
        writer.push(p);
    }
    flush(n_early).await;
    let now = t0() + SPAN_US + 24 * HOUR;
    let cancel = CancellationToken::new();
    r.pass(&cancel, now).await.expect("pass");
    assert_tiers_match_raw(&r, now).await;
    let late_first = late.iter().map(|p| p.time).min();
    let n_late = late.len();
    for p in late {
        writer.push(p);
    }
    flush(n_early + n_late).await;
    if let Some(first) = late_first {
        // reported late, not yet redone: the watermark stays before the late point
        r.collect_late().await.expect("late");
        r.publish().await.expect("publish");
        let w = *r.rolled_up_until().borrow();
        assert!(
            w.is_none_or(|w| w.timestamp_micros() <= first),
            "watermark {w:?} passed a late point at {}",
            time_of(first)
        );
    }
    r.pass(&cancel, now).await.expect("pass");
    assert_tiers_match_raw(&r, now).await;
    let w = *r.rolled_up_until().borrow();
    if n_early + n_late == 0 {
        // nothing stored (a history of heartbeats with no value to repeat): nothing promised
        // before the first local day ends
        assert!(w.is_none_or(|w| w.timestamp_micros() <= now), "{w:?}");
    } else {
        assert!(w.is_some_and(|w| w.timestamp_micros() <= now), "{w:?}");
    }
    let _ = writer.shutdown(Duration::from_secs(5)).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn embedded_rollups_equal_raw_aggregates(
        history in history_strategy(),
        late in proptest::collection::vec(0usize..200, 0..6),
    ) {
        let mut pts = points(&history);
        let mut late_pts = Vec::new();
        for i in late {
            if !pts.is_empty() {
                late_pts.push(pts.remove(i % pts.len()));
            }
        }
        block_on(embedded_case(pts, late_pts));
    }
}

/// Writes `pts` to InfluxDB, all accepted.
async fn write_points(client: InfluxClient, pts: Vec<Point>) {
    let mut body = String::new();
    for p in &pts {
        encode_point(p, &mut body).expect("encodes");
        body.push('\n');
    }
    if !body.is_empty() {
        let outcome = client.write(body, Precision::Micros).await;
        assert_eq!(outcome, crate::store::influx::WriteOutcome::Written);
    }
}

/// InfluxDB (both schemas' readers over `homeiq` points here): the same equality, late points
/// written directly and reported as a writer would.
async fn influx_case(early: Vec<Point>, late: Vec<Point>) {
    let settings = InfluxSettings {
        schema: SchemaMode::Homeiq,
        ..fresh_settings("rollups")
    };
    let client = InfluxClient::new(&settings).expect("client");
    client.create_database().await.expect("database");
    let write = |pts: Vec<Point>| write_points(client.clone(), pts);
    write(early).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(WriteLog::default());
    let store = HistoryStore::Influx(InfluxHistory::new(client.clone(), SchemaMode::Homeiq));
    let r = rollups(dir.path(), store, log.clone()).await;
    let now = t0() + SPAN_US + 24 * HOUR;
    let cancel = CancellationToken::new();
    r.pass(&cancel, now).await.expect("pass");
    assert_tiers_match_raw(&r, now).await;
    let notes: Vec<(String, i64)> = late
        .iter()
        .filter_map(|p| Some((p.tag_value("entity_id")?.to_owned(), p.time)))
        .collect();
    write(late).await;
    log.note_times(notes.iter().map(|(e, t)| (e.as_str(), *t)));
    r.pass(&cancel, now).await.expect("pass");
    assert_tiers_match_raw(&r, now).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    #[test]
    fn influx_rollups_equal_raw_aggregates(
        history in history_strategy(),
        late in proptest::collection::vec(0usize..200, 0..4),
    ) {
        let mut pts = points(&history);
        let mut late_pts = Vec::new();
        for i in late {
            if !pts.is_empty() {
                late_pts.push(pts.remove(i % pts.len()));
            }
        }
        block_on(influx_case(pts, late_pts));
    }
}

#[tokio::test]
async fn imported_hours_fill_hours_without_own_rollups_and_name_their_tier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_writer, history) = embedded::open(
        &embedded::history_path(dir.path()),
        EmbeddedOptions::default(),
    )
    .await
    .expect("open");
    let r = rollups(
        dir.path(),
        HistoryStore::Embedded(history),
        Arc::new(WriteLog::default()),
    )
    .await;
    let start: DateTime<Utc> = time_of(t0() - 48 * HOUR);
    let rows: Vec<ImportedHour> = (0..48)
        .map(|h| ImportedHour {
            entity_id: "sensor.old".into(),
            start: time_of(start.timestamp_micros() + h * HOUR),
            mean: Some(h as f64),
            min: Some(h as f64 - 1.0),
            max: Some(h as f64 + 1.0),
            sum: None,
            state: None,
        })
        .collect();
    assert_eq!(r.insert_imported(&rows).await.expect("insert"), 48);
    // a pass with nothing stored sets the cursor to now
    r.pass(&CancellationToken::new(), t0()).await.expect("pass");
    let answer = r
        .aggregate(
            &AggregateQuery {
                entity_ids: vec!["sensor.old".into()],
                start,
                end: time_of(t0()),
                interval_secs: 86_400,
            },
            false,
        )
        .await
        .expect("aggregate");
    assert_eq!(answer.tier, Tier::Imported);
    let points = &answer.series[0].points;
    assert_eq!(points.len(), 2, "{points:?}");
    assert_eq!(points[0].min, Some(-1.0));
    assert_eq!(points[1].max, Some(48.0));
    assert!((points[0].mean.unwrap_or_default() - 11.5).abs() < 1e-9);
    // history before the oldest raw record: from rollups, never empty
    let page = r
        .history_page(&HistoryQuery {
            entity_ids: vec!["sensor.old".into()],
            start,
            end: time_of(t0() - 1),
            order: Order::Descending,
            limit: 40,
            after: None,
        })
        .await
        .expect("page");
    assert_eq!(page.tier, Tier::Imported);
    assert_eq!(page.items.len(), 40);
    assert_eq!(page.items[0].value, Some(47.0));
    assert!(page.next_cursor.is_some());
}

/// An embedded store in `dir` holding [`write_every_ten_minutes`]'s points, and rollups over it
/// keeping 5-minute and hourly rows the days given (daily ones 10,000).
async fn ten_minute_history(
    dir: &std::path::Path,
    five_minute_days: u32,
    hourly_days: u32,
    max_raw_days: u32,
) -> (embedded::EmbeddedWriter, Rollups) {
    let (writer, history) =
        embedded::open(&embedded::history_path(dir), EmbeddedOptions::default())
            .await
            .expect("open");
    let store = HistoryStore::Embedded(history);
    let r = Rollups::open(RollupParts {
        data_dir: dir.to_path_buf(),
        history: store.clone(),
        write_log: writer.write_log(),
        retention: RetentionSettings {
            raw_days: None,
            five_minute_days,
            hourly_days,
            daily_days: 10_000,
        },
        zone: ZoneOf::Fixed("Europe/Amsterdam".parse().expect("tz")),
        max_raw_days,
    })
    .await
    .expect("rollups");
    write_every_ten_minutes(&writer, &store).await;
    (writer, r)
}

/// Three entities, a point every 10 minutes for [`SPAN_US`] from [`t0`], written and stored.
async fn write_every_ten_minutes(writer: &embedded::EmbeddedWriter, store: &HistoryStore) {
    let mut n = 0;
    for k in 0..(SPAN_US / (10 * 60_000_000)) {
        for e in ENTITIES {
            let t = t0() + k * 10 * 60_000_000;
            writer.push(
                Point::new("sensor", t)
                    .tag("entity_id", e)
                    .field("value", FieldValue::Float(k as f64)),
            );
            n += 1;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store
        .points_between(t0(), t0() + SPAN_US)
        .await
        .expect("read")
        .len()
        < n
    {
        assert!(std::time::Instant::now() < deadline, "points not written");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A tier's expired rows are not relied on: buckets finer than the tiers still kept over a range
/// come from raw points (the same answer as the raw aggregate, not buckets missing where the
/// rows were deleted), and where that would read too many days of raw points the answer is an
/// error naming the retention, not holes.
#[tokio::test]
async fn expired_tiers_leave_their_range_to_raw_points_or_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (writer, r) = ten_minute_history(dir.path(), 1, 10_000, 2).await;
    let five_minute_rows = |from: i64, to: i64| {
        let r = r.clone();
        async move {
            r.0.db
                .numeric(Tier::FiveMinute, ENTITIES[0].to_owned(), from, to)
                .await
                .expect("rows")
                .len()
        }
    };
    // rolled up at the history's end: 5-minute rows only for the last day, the one the tier
    // keeps (the catch-up writes none that retention would delete)
    let cancel = CancellationToken::new();
    r.pass(&cancel, t0() + SPAN_US).await.expect("pass");
    let kept = t0() + SPAN_US - 24 * HOUR;
    assert_eq!(five_minute_rows(t0(), kept - HOUR).await, 0);
    assert!(five_minute_rows(kept, t0() + SPAN_US).await >= 12 * 20);
    // two days later they have expired
    r.pass(&cancel, t0() + SPAN_US + 48 * HOUR)
        .await
        .expect("pass");
    assert!(r.counts().expired > 0);
    assert_eq!(five_minute_rows(t0(), t0() + SPAN_US).await, 0);
    let query = |from: i64, to: i64, interval_secs: u64| AggregateQuery {
        entity_ids: ENTITIES.iter().map(|e| (*e).to_owned()).collect(),
        start: time_of(t0() + from),
        end: time_of(t0() + to),
        interval_secs,
    };
    for (q, tier) in [
        (query(17 * 60_000_000, 36 * HOUR, 900), Tier::Raw),
        (query(0, SPAN_US, 3_600), Tier::Hour),
    ] {
        let raw = r.aggregate(&q, true).await.expect("raw");
        let tiered = r.aggregate(&q, false).await.expect("tiered");
        assert_eq!(tiered.tier, tier, "every {} s", q.interval_secs);
        assert!(raw.series.iter().all(|s| s.points.len() >= 36));
        assert_same(&raw.series, &tiered.series, q.interval_secs);
    }
    let err = r
        .aggregate(&query(0, SPAN_US, 900), false)
        .await
        .expect_err("three days of raw points at most two");
    assert!(matches!(err, super::RollupError::Expired { .. }), "{err:?}");
    assert!(
        err.to_string().contains("5-minute rollups are kept 1 days"),
        "{err}"
    );
    let _ = writer.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn tier_retention_deletes_each_entitys_old_rows_at_most_hourly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (writer, r) = ten_minute_history(dir.path(), 1, 1, 30).await;
    let hours = |r: Rollups| async move {
        let mut left = Vec::new();
        for e in ENTITIES {
            left.push(
                r.0.db
                    .numeric(Tier::Hour, e.to_owned(), t0() - HOUR, t0() + SPAN_US)
                    .await
                    .expect("rows"),
            );
        }
        left
    };
    let now = t0() + SPAN_US;
    let cancel = CancellationToken::new();
    r.pass(&cancel, now).await.expect("pass");
    for rows in hours(r.clone()).await {
        // the last day's hours of every entity are left (the last one waits for its grace),
        // nothing older
        assert_eq!(rows.len(), 23, "{rows:?}");
        assert_eq!(rows[0].start_us, now - 24 * HOUR);
    }
    let expired = r.counts().expired;
    assert!(expired > 0);
    // ten minutes later the hour at now − 1 day is due, but tier retention waits for its hour
    r.pass(&cancel, now + 10 * 60_000_000).await.expect("pass");
    assert_eq!(r.counts().expired, expired);
    r.pass(&cancel, now + HOUR).await.expect("pass");
    assert!(r.counts().expired > expired);
    for rows in hours(r.clone()).await {
        assert_eq!(rows[0].start_us, now - 23 * HOUR, "{rows:?}");
    }
    let _ = writer.shutdown(Duration::from_secs(5)).await;
}

/// The oldest raw point (`raw_from`) is asked of the store when unknown, after a retention run
/// noted deletions, and at least hourly; older points arriving move it back without asking.
#[tokio::test]
async fn the_oldest_raw_point_is_asked_after_retention_and_hourly_not_every_pass() {
    let settings = InfluxSettings {
        schema: SchemaMode::Homeiq,
        ..fresh_settings("raw_first")
    };
    let client = InfluxClient::new(&settings).expect("client");
    client.create_database().await.expect("database");
    let write = |pts: Vec<Point>| write_points(client.clone(), pts);
    let point = |t: i64| {
        Point::new("sensor", t)
            .tag("entity_id", "sensor.temp")
            .field("state", FieldValue::Str("1".into()))
            .field("value", FieldValue::Float(1.0))
    };
    let minute = 60_000_000;
    write((0..6).map(|k| point(t0() + k * HOUR)).collect()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(WriteLog::default());
    let store = HistoryStore::Influx(InfluxHistory::new(client.clone(), SchemaMode::Homeiq));
    let r = rollups(dir.path(), store, log.clone()).await;
    let cancel = CancellationToken::new();
    let now = t0() + 24 * HOUR;
    r.pass(&cancel, now).await.expect("pass");
    assert_eq!(r.raw_from(), Some(t0()));
    // deleted behind the rollups' back: not seen by the next passes within the hour
    client
        .query(&format!(
            "DELETE FROM \"sensor\" WHERE time < {}",
            i128::from(t0() + 2 * HOUR) * 1000
        ))
        .await
        .expect("delete");
    r.pass(&cancel, now + minute).await.expect("pass");
    assert_eq!(r.raw_from(), Some(t0()), "asked again within the hour");
    // a retention run notes its deletions: the next pass asks
    log.note_deleted();
    r.pass(&cancel, now + 2 * minute).await.expect("pass");
    assert_eq!(r.raw_from(), Some(t0() + 2 * HOUR));
    // an older point arriving (reported late by its writer) moves it back at once
    write(vec![point(t0() - 3 * HOUR)]).await;
    log.note_times([("sensor.temp", t0() - 3 * HOUR)]);
    r.pass(&cancel, now + 3 * minute).await.expect("pass");
    assert_eq!(r.raw_from(), Some(t0() - 3 * HOUR));
    // and at least hourly the store is asked anyway
    client
        .query(&format!(
            "DELETE FROM \"sensor\" WHERE time < {}",
            i128::from(t0() + 4 * HOUR) * 1000
        ))
        .await
        .expect("delete");
    r.pass(&cancel, now + 30 * minute).await.expect("pass");
    assert_eq!(r.raw_from(), Some(t0() - 3 * HOUR));
    r.pass(&cancel, now + 2 * minute + HOUR)
        .await
        .expect("pass");
    assert_eq!(r.raw_from(), Some(t0() + 4 * HOUR));
    client.drop_database().await.expect("drop");
}

/// Chunks grown over sparse history that meet dense history (a year of a few sensors, then a
/// month of thousands) are halved when InfluxDB's answer would be too large to hold, instead of
/// the pass failing at every retry.
#[tokio::test]
async fn a_chunk_too_large_for_one_answer_is_rolled_up_in_halves() {
    let settings = InfluxSettings {
        schema: SchemaMode::Homeiq,
        ..fresh_settings("chunks")
    };
    let client = InfluxClient::new(&settings).expect("client");
    client.create_database().await.expect("database");
    let point = |e: &str, t: i64, v: f64| {
        Point::new("sensor", t)
            .tag("entity_id", e)
            .field("state", FieldValue::Str(v.to_string()))
            .field("value", FieldValue::Float(v))
    };
    // 48 sparse hours (one point an hour), then 8 dense ones (three sensors every 30 s)
    let mut pts: Vec<Point> = (0..48)
        .map(|h| point(ENTITIES[0], t0() + h * HOUR, 1.0))
        .collect();
    let dense = t0() + 48 * HOUR;
    for k in 0..8 * 120 {
        for e in ENTITIES {
            pts.push(point(e, dense + k * 30_000_000, k as f64));
        }
    }
    write_points(client.clone(), pts).await;
    // an answer holds one dense hour (360 points, under 25 kB), not eight
    let small = InfluxClient::with_reply_limit(&settings, 50_000).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = HistoryStore::Influx(InfluxHistory::new(small, SchemaMode::Homeiq));
    let r = rollups(dir.path(), store, Arc::new(WriteLog::default())).await;
    r.pass(&CancellationToken::new(), dense + 9 * HOUR)
        .await
        .expect("the pass rolls the dense hours up in smaller chunks");
    for e in ENTITIES {
        let hours =
            r.0.db
                .numeric(Tier::Hour, e.to_owned(), dense, dense + 8 * HOUR)
                .await
                .expect("rows");
        assert_eq!(hours.len(), 8, "{e}");
        assert!(
            hours.iter().all(|h| h.summary.count == 120),
            "{e}: {hours:?}"
        );
    }
    client.drop_database().await.expect("drop");
}
