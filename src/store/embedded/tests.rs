use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::store::history::{HistoryQuery, Order, PageBackend as _};

fn lamp(t: i64, state: &str) -> Point {
    Point::new("light", t)
        .tag("device_class", "light")
        .tag("entity_id", "light.desk")
        .tag("unit", "%")
        .field("state", FieldValue::Str(state.to_owned()))
        .field(
            "value",
            FieldValue::Float(f64::from(u8::from(state == "on"))),
        )
        .field("brightness", FieldValue::Float(128.0))
        .field("level", FieldValue::Float(0.5))
        .field("mode_str", FieldValue::Str("auto".into()))
        .field("rgb_color_json", FieldValue::Str("[255,0,1]".into()))
        .field("state_", FieldValue::Float(3.0))
}

#[test]
fn rows_restore_attribute_names_and_types_as_the_influxdb_history_does() {
    let row = row_of(&lamp(7, "on")).expect("row");
    assert_eq!(
        (row.entity_id.as_str(), row.time_us, row.domain.as_str()),
        ("light.desk", 7, "light")
    );
    assert_eq!((row.state.as_deref(), row.value), (Some("on"), Some(1.0)));
    let attributes: Value = serde_json::from_str(&row.attributes).expect("json");
    assert_eq!(
        attributes,
        json!({
            "device_class": "light",
            "unit_of_measurement": "%",
            "brightness": 128,
            "level": 0.5,
            "mode": "auto",
            "rgb_color": [255, 0, 1],
            "state": 3,
        })
    );
    assert_eq!(row_of(&Point::new("light", 1)), None, "no entity_id tag");
}

fn time(us: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_micros(us).single().expect("time")
}

#[tokio::test]
async fn rewrites_overwrite_and_reads_see_committed_points() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = history_path(dir.path());
    let (writer, history) = open(&path, EmbeddedOptions::default()).await.expect("open");
    let t0 = 1_700_000_000_000_000_i64;
    for i in 0..10 {
        writer.push(lamp(
            t0 + i * 1_000_000,
            if i % 2 == 0 { "on" } else { "off" },
        ));
    }
    // the same point again, changed: overwrites instead of adding a row
    writer.push(lamp(t0, "off"));
    let report = writer.clone().shutdown(Duration::from_secs(10)).await;
    assert_eq!((report.written, report.left), (11, 0));
    assert_eq!(writer.stats().counts.dropped_overflow, 0);
    writer.push(lamp(t0, "on"));
    assert_eq!(
        writer.stats().counts.dropped_overflow,
        1,
        "pushed after shutdown"
    );

    let page = history
        .history(&HistoryQuery {
            entity_ids: vec!["light.desk".into()],
            start: time(t0),
            end: time(t0 + 60_000_000),
            order: Order::Ascending,
            limit: 4,
            after: None,
        })
        .await
        .expect("page");
    assert_eq!(page.items.len(), 4);
    assert_eq!(page.items[0].state.as_deref(), Some("off"));
    assert_eq!(page.items[1].previous_state.as_deref(), Some("off"));
    assert_eq!(page.items[3].duration_secs, Some(1.0));
    assert!(page.next_cursor.is_some());

    let points = history
        .raw_points(Some("light.desk"), t0, t0 + 60_000_000)
        .await
        .expect("points");
    assert_eq!(points.len(), 10);
    let stats = history
        .event_stats(time(t0), time(t0 + 60_000_000), 60)
        .await
        .expect("stats");
    assert_eq!(stats.iter().map(|b| b.total).sum::<u64>(), 10);
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_points_and_counts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = EmbeddedOptions {
        batch_size: 1_000,
        linger: Duration::from_secs(30),
        capacity: 2,
    };
    let (writer, history) = open(&history_path(dir.path()), options)
        .await
        .expect("open");
    let t0 = 1_700_000_000_000_000_i64;
    for i in 0..5 {
        writer.push(lamp(t0 + i, "on"));
    }
    let stats = writer.stats();
    assert_eq!((stats.queued, stats.counts.dropped_overflow), (2, 3));
    let report = writer.shutdown(Duration::from_secs(10)).await;
    assert_eq!((report.written, report.left), (2, 0));
    let page = history
        .history(&HistoryQuery {
            entity_ids: vec!["light.desk".into()],
            start: time(t0),
            end: time(t0 + 10),
            order: Order::Ascending,
            limit: 10,
            after: None,
        })
        .await
        .expect("page");
    let times: Vec<i64> = page
        .items
        .iter()
        .map(|r| r.time.timestamp_micros())
        .collect();
    assert_eq!(times, vec![t0 + 3, t0 + 4], "the newest are kept");
}

#[tokio::test]
async fn a_full_queue_makes_the_pipeline_wait_instead_of_dropping() {
    use futures_util::FutureExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let options = EmbeddedOptions {
        capacity: 3,
        ..EmbeddedOptions::default()
    };
    let (writer, _history) = open(&history_path(dir.path()), options)
        .await
        .expect("open");
    let t0 = 1_700_000_000_000_000_i64;
    // single-threaded runtime: the writer task cannot take anything before this test awaits
    for i in 0..3 {
        assert!(
            writer.wait_for_room().now_or_never().is_some(),
            "room for {i}"
        );
        writer.push(lamp(t0 + i * 1_000_000, "on"));
    }
    assert!(
        writer.wait_for_room().now_or_never().is_none(),
        "a full queue has no room"
    );
    // the writer commits the three points, which makes room
    tokio::time::timeout(Duration::from_secs(10), writer.wait_for_room())
        .await
        .expect("room once the writer has written");
    writer.push(lamp(t0 + 3_000_000, "off"));
    let report = writer.clone().shutdown(Duration::from_secs(10)).await;
    assert_eq!((report.written, report.left), (4, 0));
    assert_eq!(writer.stats().counts.dropped_overflow, 0, "nothing dropped");
    // after shutdown nothing waits
    assert!(writer.wait_for_room().now_or_never().is_some());
}

/// CPU time of the calling thread (`/proc/thread-self/schedstat`), for the writer benchmark.
fn thread_cpu() -> Duration {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// Not a test: CPU per point of the write transactions (`write_rows`), 1,000 sensors with an
/// 85-byte attributes object, `WRITER_BENCH_POINTS` (500,000) points in batches of 50,000, as
/// live ingestion writes them. Run with
/// `cargo nextest run --lib writer_benchmark --run-ignored only --no-capture`.
#[test]
#[ignore = "benchmark"]
fn writer_benchmark() {
    let points: i64 = std::env::var("WRITER_BENCH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = history_path(dir.path());
    let mut conn = open_writer(&path).expect("open");
    let entities = 1_000_i64;
    let t0 = 1_700_000_000_000_000_i64;
    let rows: Vec<Row> = (0..points)
        .map(|n| {
            let (i, e) = (n / entities, n % entities);
            let v = 20.0 + ((i + e) % 50) as f64 / 10.0;
            Row {
                entity_id: format!("sensor.temperature_{e:04}"),
                time_us: t0 + i * 60_000_000,
                domain: "sensor".into(),
                state: Some(format!("{v:.1}")),
                value: Some(v),
                attributes: r#"{"device_class":"temperature","unit_of_measurement":"°C","friendly_name":"Temperature"}"#.into(),
                origin: Some("device".into()),
                origin_id: None,
            }
        })
        .collect();
    let mut interned = super::intern::Interned::default();
    let (cpu, wall) = (thread_cpu(), std::time::Instant::now());
    for batch in rows.chunks(50_000) {
        super::writer::write_rows(&mut conn, batch, 0, &mut interned).expect("write");
    }
    let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed());
    println!(
        "writer: {points} points, CPU {:.2} µs/point, wall {:.2} µs/point ({:.0} points/s)",
        cpu.as_secs_f64() * 1e6 / points as f64,
        wall.as_secs_f64() * 1e6 / points as f64,
        points as f64 / wall.as_secs_f64()
    );
}
