use std::path::Path;
use std::time::Duration;

use super::retention::{
    AutoVacuum, Conversion, auto_vacuum, convert, convert_to_incremental, delete_before,
};
use super::*;

const T0: i64 = 1_700_000_000_000_000;
const MINUTE: i64 = 60_000_000;

fn sensor(entity: &str, t: i64, v: f64) -> Point {
    Point::new("sensor", t)
        .tag("entity_id", entity)
        .field("value", FieldValue::Float(v))
}

/// Polls `check` until it holds or `within` passes.
async fn until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Rows in `points` before and at/after `cutoff`, read on the writer's connection.
async fn split(writer: &EmbeddedWriter, cutoff: i64) -> (i64, i64) {
    writer
        .with_connection(move |c| {
            let count = |sql: &str| c.query_row(sql, [cutoff], |r| r.get::<_, i64>(0));
            (
                count("SELECT count(*) FROM points WHERE time_us < ?1").expect("count"),
                count("SELECT count(*) FROM points WHERE time_us >= ?1").expect("count"),
            )
        })
        .await
        .expect("writer open")
}

async fn integrity(writer: &EmbeddedWriter) -> String {
    writer
        .with_connection(|c| {
            c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
                .expect("integrity_check")
        })
        .await
        .expect("writer open")
}

/// Writes `per_entity` one-minute points for each of `entities` sensors.
async fn fill(writer: &EmbeddedWriter, entities: usize, per_entity: i64) -> u64 {
    for e in 0..entities {
        for i in 0..per_entity {
            writer.wait_for_room().await;
            writer.push(sensor(&format!("sensor.s{e}"), T0 + i * MINUTE, i as f64));
        }
    }
    let total = entities as u64 * per_entity as u64;
    until(Duration::from_secs(60), "points written", || {
        writer.stats().counts.written == total
    })
    .await;
    total
}

#[tokio::test]
async fn deletes_in_chunks_exactly_the_points_before_the_cutoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = history_path(dir.path());
    let (writer, _history) = open(&path, EmbeddedOptions::default()).await.expect("open");
    fill(&writer, 10, 1_000).await;
    let cutoff = T0 + 600 * MINUTE;
    // points keep arriving while the deletes run: they interleave, none is lost
    for i in 0..500 {
        writer.push(sensor("sensor.live", cutoff + i * MINUTE, 1.0));
    }
    let report = delete_before(&writer, cutoff).await.expect("delete");
    assert_eq!(report.deleted, 6_000);
    assert!(report.chunks > 1, "{report:?}");
    assert!(report.max_hold_ms > 0.0);
    assert!(
        report.pages_freed > 0,
        "a new file is incremental: {report:?}"
    );
    until(Duration::from_secs(30), "live points written", || {
        writer.stats().counts.written == 10_500
    })
    .await;
    assert_eq!(split(&writer, cutoff).await, (0, 4_500));
    // again: nothing is due
    let again = delete_before(&writer, cutoff).await.expect("delete");
    assert_eq!((again.deleted, again.chunks), (0, 1));
    assert_eq!(integrity(&writer).await, "ok");
    writer.shutdown(Duration::from_secs(10)).await;
}

/// A `history.db` as releases before retention made it: no auto-vacuum, the first layout.
fn old_file(path: &Path, rows: i64) {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    for statement in super::layout::V1_SCHEMA {
        conn.execute_batch(statement).expect("schema");
    }
    let mut insert = conn
        .prepare(
            "INSERT INTO points (entity_id, time_us, domain, value) VALUES (?1, ?2, 'sensor', ?3)",
        )
        .expect("prepare");
    conn.execute_batch("BEGIN").expect("begin");
    for i in 0..rows {
        insert
            .execute(rusqlite::params![
                format!("sensor.s{}", i % 7),
                T0 + i,
                i as f64
            ])
            .expect("insert");
    }
    conn.execute_batch("COMMIT").expect("commit");
    assert_eq!(auto_vacuum(&conn).expect("mode"), AutoVacuum::None);
}

#[tokio::test]
async fn an_old_file_is_converted_once_when_there_is_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = history_path(dir.path());
    old_file(&path, 20_000);
    // no room: left as it is
    let mut conn = rusqlite::Connection::open(&path).expect("open");
    let skipped = convert_to_incremental(&mut conn, &path, &|_| Ok(1_000)).expect("convert");
    assert!(
        matches!(
            skipped,
            Conversion::NoRoom {
                available_bytes: 1_000,
                ..
            }
        ),
        "{skipped:?}"
    );
    assert_eq!(auto_vacuum(&conn).expect("mode"), AutoVacuum::None);
    drop(conn);

    let (writer, _history) = open(&path, EmbeddedOptions::default()).await.expect("open");
    let converted = convert(&writer, path.clone()).await.expect("convert");
    assert!(
        matches!(converted, Conversion::Converted { .. }),
        "{converted:?}"
    );
    assert_eq!(
        convert(&writer, path.clone()).await.expect("convert"),
        Conversion::Incremental,
        "only once"
    );
    assert_eq!(
        writer
            .with_connection(|c| auto_vacuum(c).expect("mode"))
            .await,
        Some(AutoVacuum::Incremental)
    );
    assert_eq!(
        split(&writer, i64::MAX).await,
        (20_000, 0),
        "every row kept"
    );
    assert_eq!(integrity(&writer).await, "ok");
    let report = delete_before(&writer, T0 + 10_000).await.expect("delete");
    assert_eq!(report.deleted, 10_000);
    assert!(report.pages_freed > 0, "{report:?}");
    writer.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_full_database_keeps_the_batch_and_resumes_when_space_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = history_path(dir.path());
    let options = EmbeddedOptions {
        linger: Duration::from_millis(5),
        ..EmbeddedOptions::default()
    };
    let (writer, _history) = open(&path, options).await.expect("open");
    fill(&writer, 1, 100).await;
    // a real SQLITE_FULL: the file may not grow by one more page
    writer
        .with_connection(|c| {
            let pages: i64 = c
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .expect("page_count");
            c.pragma_update(None, "max_page_count", pages)
                .expect("max_page_count");
        })
        .await
        .expect("writer open");
    for i in 0..5_000 {
        writer.push(sensor("sensor.full", T0 + i, i as f64));
    }
    until(
        Duration::from_secs(30),
        "the disk-full error counted",
        || writer.stats().counts.disk_full > 0,
    )
    .await;
    assert!(!writer.stats().reachable);
    assert_eq!(writer.stats().counts.written, 100);
    // space returns (runs between two retries)
    writer
        .with_connection(|c| {
            c.pragma_update(None, "max_page_count", 1_073_741_823_i64)
                .expect("max_page_count");
        })
        .await
        .expect("writer open");
    until(Duration::from_secs(30), "the kept batch written", || {
        writer.stats().counts.written == 5_100
    })
    .await;
    let stats = writer.stats();
    assert!(stats.reachable);
    assert_eq!(stats.counts.dropped_overflow, 0, "no point lost");
    assert_eq!(split(&writer, i64::MAX).await, (5_100, 0));
    assert_eq!(integrity(&writer).await, "ok");
    writer.shutdown(Duration::from_secs(10)).await;
}

/// The number in the environment variable `name`, else `default` (benchmark sizes).
fn env_number(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A temporary directory in `RETENTION_BENCH_DIR` (else the system's).
fn bench_dir() -> tempfile::TempDir {
    let dir = std::env::var_os("RETENTION_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    tempfile::tempdir_in(dir).expect("tempdir")
}

/// The benchmarks' sensors: the value of sensor `e` at minute `i`, and their attributes.
fn bench_value(i: i64, e: i64) -> f64 {
    20.0 + ((i + e) % 50) as f64 / 10.0
}
const BENCH_ATTRIBUTES: &str =
    r#"{"device_class":"temperature","unit_of_measurement":"°C","friendly_name":"Temperature"}"#;

/// Not a test: measures a chunked delete of `RETENTION_BENCH_POINTS` (2 million) points of 1,000
/// one-minute sensors, half of them due, with writes going on (README, benchmarks). Run with
/// `cargo nextest run --lib retention_benchmark --run-ignored only --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn retention_benchmark() {
    let points: i64 = env_number("RETENTION_BENCH_POINTS", 2_000_000);
    let entities = 1_000_i64;
    let per_entity = points / entities;
    let dir = bench_dir();
    let path = history_path(dir.path());
    {
        let mut conn = open_writer(&path).expect("open");
        let mut interned = super::intern::Interned::default();
        let mut rows = Vec::with_capacity(50_000);
        for i in 0..per_entity {
            for e in 0..entities {
                let v = bench_value(i, e);
                rows.push(Row {
                    entity_id: format!("sensor.temperature_{e:04}"),
                    time_us: T0 + i * MINUTE,
                    domain: "sensor".into(),
                    state: Some(format!("{v:.1}")),
                    value: Some(v),
                    attributes: BENCH_ATTRIBUTES.into(),
                    origin: None,
                    origin_id: None,
                });
                if rows.len() == 50_000 {
                    super::writer::write_rows(&mut conn, &rows, 0, &mut interned).expect("write");
                    rows.clear();
                }
            }
        }
        super::writer::write_rows(&mut conn, &rows, 0, &mut interned).expect("write");
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .expect("checkpoint");
    }
    let size = std::fs::metadata(&path).expect("size").len();
    let total = per_entity * entities;
    println!(
        "embedded: {total} points, {size} bytes, {:.1} bytes/point",
        size as f64 / total as f64
    );
    let (writer, _history) = open(&path, EmbeddedOptions::default()).await.expect("open");
    // a live load beside the deletes: `RETENTION_BENCH_LOAD` (1,000) points every 100 ms
    let per_tick: i64 = env_number("RETENTION_BENCH_LOAD", 1_000);
    let load = {
        let writer = writer.clone();
        tokio::spawn(async move {
            let mut i = 0_i64;
            loop {
                for e in 0..per_tick {
                    writer.push(sensor(
                        &format!("sensor.live_{e}"),
                        T0 + (per_entity + i) * MINUTE,
                        1.0,
                    ));
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let cutoff = T0 + (per_entity / 2) * MINUTE;
    let started = std::time::Instant::now();
    let report = delete_before(&writer, cutoff).await.expect("delete");
    let took = started.elapsed();
    load.abort();
    let stats = writer.stats();
    println!(
        "deleted {} points in {} chunks, {:.2} s ({:.0} points/s), write-lock hold p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms, {} pages freed; writer p95 {:?} ms, {} written during",
        report.deleted,
        report.chunks,
        took.as_secs_f64(),
        report.deleted as f64 / took.as_secs_f64(),
        report.p50_hold_ms,
        report.p95_hold_ms,
        report.max_hold_ms,
        report.pages_freed,
        stats.p95_latency_ms,
        stats.counts.written,
    );
    writer.shutdown(Duration::from_secs(10)).await;
    println!(
        "file after: {} bytes",
        std::fs::metadata(&path).expect("size").len()
    );
}

#[tokio::test]
async fn a_really_full_disk_loses_nothing_and_resumes() {
    let Some(disk) = crate::store::small_disk::SmallDisk::mount("8m") else {
        eprintln!(
            "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN); the max_page_count test covers SQLITE_FULL"
        );
        return;
    };
    let path = history_path(disk.path());
    let options = EmbeddedOptions {
        linger: Duration::from_millis(5),
        ..EmbeddedOptions::default()
    };
    let (writer, _history) = open(&path, options).await.expect("open");
    fill(&writer, 1, 100).await;
    let filler = disk.path().join("filler");
    disk.fill(&filler);
    for i in 0..20_000 {
        writer.push(sensor("sensor.full", T0 + i, i as f64));
    }
    until(Duration::from_secs(30), "the write refused", || {
        writer.stats().counts.write_errors > 0
    })
    .await;
    let stats = writer.stats();
    assert!(!stats.reachable);
    assert!(stats.counts.disk_full > 0, "{stats:?}");
    // space returns
    std::fs::remove_file(&filler).expect("remove filler");
    until(Duration::from_secs(60), "the kept batch written", || {
        writer.stats().counts.written == 20_100
    })
    .await;
    let stats = writer.stats();
    assert!(stats.reachable);
    assert_eq!(stats.counts.dropped_overflow, 0, "no point lost");
    assert_eq!(split(&writer, i64::MAX).await, (20_100, 0));
    assert_eq!(integrity(&writer).await, "ok");
    writer.shutdown(Duration::from_secs(10)).await;
    // and the file opens again, intact
    let (writer, _history) = open(&path, EmbeddedOptions::default())
        .await
        .expect("reopen");
    assert_eq!(integrity(&writer).await, "ok");
    assert_eq!(split(&writer, i64::MAX).await, (20_100, 0));
    writer.shutdown(Duration::from_secs(10)).await;
}

/// One row of the first layout: entity, time, domain, state, value, attributes, origin, origin id.
type V1Row = (
    String,
    i64,
    &'static str,
    Option<String>,
    Option<f64>,
    String,
    Option<&'static str>,
    Option<&'static str>,
);

/// `n` rows of the first layout over a light, a meter and a plain sensor: origins of every kind
/// (a foreign one too), attributes changing now and then, points without a state.
fn v1_rows(n: i64) -> Vec<V1Row> {
    let origins = [
        (Some("user"), Some("u1")),
        (Some("automation"), Some("automation.wake")),
        (Some("heartbeat"), None),
        (Some("robot"), Some("r2")),
        (None, None),
        (Some("device"), None),
    ];
    (0..n)
        .map(|i| {
            let (origin, origin_id) = origins[(i % 6) as usize];
            match i % 3 {
                0 => (
                    "light.desk".to_owned(),
                    T0 + i * MINUTE,
                    "light",
                    Some(if i % 2 == 0 { "on" } else { "off" }.to_owned()),
                    Some((i % 2) as f64),
                    format!(
                        r#"{{"brightness":{},"friendly_name":"Desk"}}"#,
                        (i / 300) % 4
                    ),
                    origin,
                    origin_id,
                ),
                1 => (
                    "sensor.meter".to_owned(),
                    T0 + i * MINUTE,
                    "sensor",
                    Some(format!("{}", i as f64 / 4.0)),
                    Some(i as f64 / 4.0),
                    r#"{"state_class":"total_increasing","unit_of_measurement":"kWh"}"#.to_owned(),
                    origin,
                    origin_id,
                ),
                _ => (
                    format!("sensor.s{}", i % 5),
                    T0 + i * MINUTE,
                    "sensor",
                    None,
                    Some(1.5),
                    "{}".to_owned(),
                    None,
                    None,
                ),
            }
        })
        .collect()
}

fn write_v1(path: &Path, rows: &[V1Row]) {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    for statement in super::layout::V1_SCHEMA {
        conn.execute_batch(statement).expect("schema");
    }
    conn.execute_batch("BEGIN").expect("begin");
    let mut insert = conn
        .prepare("INSERT INTO points (entity_id, time_us, domain, state, value, attributes, origin, origin_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
        .expect("prepare");
    for r in rows {
        insert
            .execute(rusqlite::params![r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7])
            .expect("insert");
    }
    drop(insert);
    conn.execute_batch("COMMIT").expect("commit");
}

/// What the first layout's readers answered for `rows`: per entity its records (page reads),
/// and the changes of lights.
fn expected_records(rows: &[V1Row], entity: &str) -> Vec<crate::store::history::StoredRow> {
    use crate::store::origin::Origin;
    rows.iter()
        .filter(|r| r.0 == entity)
        .map(|r| crate::store::history::StoredRow {
            time_us: r.1,
            entity_id: r.0.clone(),
            state: r.3.clone(),
            value: r.4,
            attributes: match serde_json::from_str(&r.5) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            },
            origin: r.6.map(|k| Origin::stored(k, r.7.map(str::to_owned))),
        })
        .collect()
}

async fn records(history: &EmbeddedHistory, entity: &str) -> Vec<crate::store::history::StoredRow> {
    use crate::store::history::{Fetch, HistoryQuery, Order, PageReader, time_of};
    let q = HistoryQuery {
        entity_ids: vec![entity.to_owned()],
        start: time_of(T0 - MINUTE),
        end: time_of(T0 + 1_000_000 * MINUTE),
        order: Order::Ascending,
        limit: 100_000,
        after: None,
    };
    let f = Fetch {
        entity,
        after: None,
        limit: 100_000,
    };
    history.read(&q, &[f]).await.expect("read").remove(0).rows
}

/// A file in the first layout, written with plain SQL, is converted when opened and every reader
/// answers as the first layout's did; a conversion cut short resumes.
#[tokio::test]
async fn a_file_in_the_first_layout_is_converted_and_answers_as_before() {
    use crate::store::history::time_of;
    use crate::store::origin::OriginKind;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = history_path(dir.path());
    // more than one chunk, so the cut below leaves rows in both tables
    let rows = v1_rows(45_000);
    write_v1(&path, &rows);
    let size_before = std::fs::metadata(&path).expect("size").len();
    // no room: refused, the file left in the first layout
    {
        let mut conn = rusqlite::Connection::open(&path).expect("open");
        let refused = super::layout::convert(&mut conn, &path, &|_| Ok(1_000));
        assert!(
            matches!(refused, Err(super::layout::OpenError::NoRoom { .. })),
            "{refused:?}"
        );
        let old: i64 = conn
            .query_row(
                "SELECT count(*) FROM points WHERE entity_id IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .expect("still the first layout");
        assert_eq!(old, 45_000);
    }
    // a conversion cut short after its first chunk (as by a crash)
    {
        let mut conn = rusqlite::Connection::open(&path).expect("open");
        super::layout::convert_steps(&mut conn, &path, Some(1)).expect("first chunk");
        let split: (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM points_v1), (SELECT count(*) FROM points)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("split");
        assert!(
            split.0 > 0 && split.1 > 0 && split.0 + split.1 == 45_000,
            "{split:?}"
        );
    }
    let (writer, history) = open(&path, EmbeddedOptions::default()).await.expect("open");
    assert_eq!(split(&writer, i64::MAX).await, (45_000, 0));
    assert_eq!(integrity(&writer).await, "ok");
    let tables: i64 = writer
        .with_connection(|c| {
            c.query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'points_v1'",
                [],
                |r| r.get(0),
            )
            .expect("schema")
        })
        .await
        .expect("writer open");
    assert_eq!(tables, 0, "the old table is dropped");
    // page reads: states, values, attributes and origins exactly as stored
    for entity in ["light.desk", "sensor.meter", "sensor.s2"] {
        assert_eq!(
            records(&history, entity).await,
            expected_records(&rows, entity),
            "{entity}"
        );
    }
    // rollup inputs: heartbeats and meters recognised
    let meter = history
        .raw_points(Some("sensor.meter"), T0, T0 + 1_000_000 * MINUTE)
        .await
        .expect("raw points");
    assert_eq!(meter.len(), 15_000);
    assert!(meter.iter().all(|p| p.total_increasing));
    let heartbeats = meter.iter().filter(|p| p.heartbeat).count();
    assert_eq!(
        heartbeats,
        rows.iter()
            .filter(|r| r.0 == "sensor.meter" && r.6 == Some("heartbeat"))
            .count()
    );
    let all = history
        .raw_points(None, T0, T0 + 1_000_000 * MINUTE)
        .await
        .expect("raw points");
    assert_eq!(all.len(), 45_000);
    // changes of lights, with their origins (a foreign one is unknown)
    let changes = history
        .changes(&["light"], time_of(T0), time_of(T0 + 1_000_000 * MINUTE))
        .await
        .expect("changes");
    let want: Vec<(i64, OriginKind)> = rows
        .iter()
        .filter(|r| r.2 == "light")
        .map(|r| (r.1, r.6.map_or(OriginKind::Unknown, OriginKind::parse)))
        .collect();
    let mut got: Vec<(i64, OriginKind)> = changes.iter().map(|c| (c.time_us, c.origin)).collect();
    got.sort_unstable();
    assert_eq!(got, want);
    // events per domain
    let stats = history
        .event_stats(time_of(T0), time_of(T0 + 1_000_000 * MINUTE), 86_400)
        .await
        .expect("stats");
    let per_domain = |d: &str| {
        stats
            .iter()
            .map(|b| b.by_domain.get(d).copied().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(
        (per_domain("light"), per_domain("sensor")),
        (15_000, 30_000)
    );
    // the live origin kept by a rewrite without one, as before
    writer.push(
        Point::new("light", T0)
            .tag("entity_id", "light.desk")
            .field("state", FieldValue::Str("off".into()))
            .field("value", FieldValue::Float(0.0)),
    );
    let written = writer.stats().counts.written;
    until(Duration::from_secs(30), "rewrite written", || {
        writer.stats().counts.written == written + 1
    })
    .await;
    let first = records(&history, "light.desk").await.remove(0);
    assert_eq!(first.state.as_deref(), Some("off"));
    assert_eq!(
        first.origin,
        expected_records(&rows, "light.desk")[0].origin
    );
    // the file did not grow, and the rows take less than half of it (the rest is free pages,
    // returned by retention's one-time VACUUM of a file without auto-vacuum)
    let used: i64 = writer
        .with_connection(|c| {
            c.query_row(
                "SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count FROM pragma_freelist_count())",
                [],
                |r| r.get(0),
            )
            .expect("pages")
        })
        .await
        .expect("writer open");
    writer.shutdown(Duration::from_secs(10)).await;
    let size_after = std::fs::metadata(&path).expect("size").len();
    assert!(size_after <= size_before, "{size_before} → {size_after}");
    assert!(
        (used as u64) * 4_096 < size_before / 2,
        "{used} pages used of {size_before} bytes"
    );
}

/// Attribute sets only deleted points referenced are deleted with them; a set deleted while the
/// writer had it cached is written again when a point needs it.
#[tokio::test]
async fn retention_deletes_orphaned_attribute_sets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = history_path(dir.path());
    let (writer, history) = open(&path, EmbeddedOptions::default()).await.expect("open");
    let noted = |e: &str, t: i64, note: &str| {
        Point::new("sensor", t)
            .tag("entity_id", e)
            .field("value", FieldValue::Float(1.0))
            .field("note_str", FieldValue::Str(note.to_owned()))
    };
    for i in 0..2_000 {
        writer.push(noted("sensor.a", T0 + i * MINUTE, &format!("n{i}")));
        writer.push(noted("sensor.b", T0 + i * MINUTE, "same"));
    }
    until(Duration::from_secs(30), "points written", || {
        writer.stats().counts.written == 4_000
    })
    .await;
    let sets = |w: EmbeddedWriter| async move {
        w.with_connection(|c| {
            c.query_row(
                "SELECT (SELECT count(*) FROM attribute_sets), (SELECT count(DISTINCT attributes) FROM points)",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .expect("count")
        })
        .await
    };
    assert_eq!(sets(writer.clone()).await, Some((2_001, 2_001)));
    // `last_us` is rounded up to the hour: the cutoff is on one
    let cutoff = T0 - T0.rem_euclid(3_600_000_000) + 10 * 3_600_000_000;
    let report = delete_before(&writer, cutoff).await.expect("delete");
    assert!(report.deleted > 0);
    let (stored, referenced) = sets(writer.clone()).await.expect("writer open");
    assert_eq!(stored, referenced, "orphans deleted");
    assert!(stored < 2_001);
    // a point needing a deleted set (cached by the writer before) gets it back
    writer.push(noted("sensor.a", T0 + 5_000 * MINUTE, "n0"));
    until(Duration::from_secs(30), "point written", || {
        writer.stats().counts.written == 4_001
    })
    .await;
    let last = records(&history, "sensor.a").await.pop().expect("record");
    assert_eq!(last.attributes.get("note"), Some(&serde_json::json!("n0")));
    // a late point before the cutoff, written after the deletes: the set it needs (its `last_us`
    // at or before the cutoff) stays
    writer.push(noted("sensor.a", T0 + 5 * MINUTE, "n5"));
    until(Duration::from_secs(30), "point written", || {
        writer.stats().counts.written == 4_002
    })
    .await;
    let epoch = writer.attribute_epoch();
    let deleted = writer
        .with_connection(move |c| super::retention::delete_orphans(c, cutoff, &epoch))
        .await
        .expect("writer open")
        .expect("orphans");
    assert_eq!(deleted, 0);
    let late = records(&history, "sensor.a").await.remove(0);
    assert_eq!(late.time_us, T0 + 5 * MINUTE);
    assert_eq!(late.attributes.get("note"), Some(&serde_json::json!("n5")));
    assert_eq!(integrity(&writer).await, "ok");
    writer.shutdown(Duration::from_secs(10)).await;
}

/// A compact file written while the layout had the index by time loses it once when opened, its
/// pages returned to the file system, every record as before.
#[tokio::test]
async fn a_file_with_the_time_index_drops_it_when_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = history_path(dir.path());
    let (writer, history) = open(&path, EmbeddedOptions::default()).await.expect("open");
    fill(&writer, 20, 1_000).await;
    let before = records(&history, "sensor.s3").await;
    let stats = history
        .event_stats(
            crate::store::history::time_of(T0),
            crate::store::history::time_of(T0 + 1_000 * MINUTE),
            3_600,
        )
        .await
        .expect("stats");
    // as the query over the whole table counts them
    let want = writer
        .with_connection(|c| {
            let mut buckets: std::collections::BTreeMap<
                i64,
                std::collections::BTreeMap<String, u64>,
            > = Default::default();
            let mut q = c
                .prepare(
                    "SELECT p.time_us - (((p.time_us % ?3) + ?3) % ?3) AS b, e.domain, count(*) \
                     FROM points p JOIN entities e ON e.id = p.entity \
                     WHERE p.time_us >= ?1 AND p.time_us < ?2 GROUP BY b, e.domain",
                )
                .expect("prepare");
            let mut rows = q
                .query([T0, T0 + 1_000 * MINUTE, 3_600_000_000])
                .expect("query");
            while let Some(r) = rows.next().expect("row") {
                let n: i64 = r.get(2).expect("n");
                *buckets
                    .entry(r.get(0).expect("b"))
                    .or_default()
                    .entry(r.get(1).expect("domain"))
                    .or_default() += n.unsigned_abs();
            }
            crate::store::history::stats_buckets(buckets)
        })
        .await
        .expect("writer open");
    assert_eq!(stats, want);
    assert!(stats.len() > 10);
    writer.shutdown(Duration::from_secs(10)).await;
    drop(history);
    let index = |c: &rusqlite::Connection| {
        c.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 'points_by_time'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .expect("schema")
    };
    let without = {
        let conn = rusqlite::Connection::open(&path).expect("open");
        assert_eq!(index(&conn), 0, "a new file has no index by time");
        conn.execute_batch(
            "CREATE INDEX points_by_time ON points (time_us, entity); PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .expect("the former index");
        std::fs::metadata(&path).expect("size").len()
    };
    let (writer, history) = open(&path, EmbeddedOptions::default()).await.expect("open");
    assert_eq!(writer.with_connection(move |c| index(c)).await, Some(0));
    let after = std::fs::metadata(&path).expect("size").len();
    // 20,000 index entries of about 16 bytes: some 80 pages
    assert!(after + 40 * 4096 < without, "{without} → {after} bytes");
    assert_eq!(records(&history, "sensor.s3").await, before);
    let again = history
        .event_stats(
            crate::store::history::time_of(T0),
            crate::store::history::time_of(T0 + 1_000 * MINUTE),
            3_600,
        )
        .await
        .expect("stats");
    assert_eq!(again, stats);
    assert_eq!(history.first_point_us().await.expect("first"), Some(T0));
    assert_eq!(integrity(&writer).await, "ok");
    writer.shutdown(Duration::from_secs(10)).await;
}

/// Not a test: the first layout's size and the conversion's speed, `CONVERSION_BENCH_POINTS`
/// (2 million) points of 1,000 one-minute sensors written in the first layout (as the retention
/// benchmark wrote them before the compact layout), then opened. Run with
/// `cargo nextest run --lib conversion_benchmark --run-ignored only --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn conversion_benchmark() {
    let points: i64 = env_number("CONVERSION_BENCH_POINTS", 2_000_000);
    let entities = 1_000_i64;
    let per_entity = points / entities;
    let dir = bench_dir();
    let path = history_path(dir.path());
    {
        let mut conn = rusqlite::Connection::open(&path).expect("open");
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .expect("auto_vacuum");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        for statement in super::layout::V1_SCHEMA {
            conn.execute_batch(statement).expect("schema");
        }
        let tx = conn.transaction().expect("tx");
        {
            let mut insert = tx
                .prepare("INSERT INTO points (entity_id, time_us, domain, state, value, attributes) VALUES (?1, ?2, 'sensor', ?3, ?4, ?5)")
                .expect("prepare");
            for i in 0..per_entity {
                for e in 0..entities {
                    let v = bench_value(i, e);
                    insert
                        .execute(rusqlite::params![
                            format!("sensor.temperature_{e:04}"),
                            T0 + i * MINUTE,
                            format!("{v:.1}"),
                            v,
                            BENCH_ATTRIBUTES,
                        ])
                        .expect("insert");
                }
            }
        }
        tx.commit().expect("commit");
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .expect("checkpoint");
    }
    let total = per_entity * entities;
    let size = std::fs::metadata(&path).expect("size").len();
    println!(
        "first layout: {total} points, {size} bytes, {:.1} bytes/point",
        size as f64 / total as f64
    );
    let started = std::time::Instant::now();
    let (writer, _history) = open(&path, EmbeddedOptions::default()).await.expect("open");
    let took = started.elapsed();
    let pages = writer
        .with_connection(|c| {
            let q = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).expect(sql);
            (
                q("PRAGMA page_count"),
                q("PRAGMA freelist_count"),
                q("PRAGMA auto_vacuum"),
            )
        })
        .await;
    println!("pages, free pages, auto_vacuum: {pages:?}");
    writer.shutdown(Duration::from_secs(10)).await;
    let after = std::fs::metadata(&path).expect("size").len();
    println!(
        "converted in {:.1} s ({:.0} points/s): {after} bytes, {:.1} bytes/point",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64(),
        after as f64 / total as f64
    );
}

/// A file of the very first release (no `origin` columns, no auto-vacuum) converts too.
#[tokio::test]
async fn a_file_without_origin_columns_is_converted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = history_path(dir.path());
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE points (entity_id TEXT NOT NULL, time_us INTEGER NOT NULL, \
             domain TEXT NOT NULL, state TEXT, value REAL, attributes TEXT NOT NULL DEFAULT '{}', \
             PRIMARY KEY (entity_id, time_us)) WITHOUT ROWID;
             CREATE INDEX points_by_time ON points (time_us, domain);
             INSERT INTO points VALUES ('sensor.t', 1700000000000001, 'sensor', '21.5', 21.5, '{\"a\":1}');
             INSERT INTO points VALUES ('sensor.t', 1700000000000002, 'sensor', 'unavailable', NULL, '{}');",
        )
        .expect("first release's file");
    }
    let (writer, history) = open(&path, EmbeddedOptions::default()).await.expect("open");
    let rows = records(&history, "sensor.t").await;
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.time_us, r.state.as_deref(), r.value, r.origin.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (T0 + 1, Some("21.5"), Some(21.5), None),
            (T0 + 2, Some("unavailable"), None, None)
        ]
    );
    assert_eq!(rows[0].attributes.get("a"), Some(&serde_json::json!(1)));
    writer.shutdown(Duration::from_secs(10)).await;
}
