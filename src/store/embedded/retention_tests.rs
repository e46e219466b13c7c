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

/// A `history.db` as releases before retention made it: no auto-vacuum.
fn old_file(path: &Path, rows: i64) {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    for statement in SCHEMA {
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

/// Not a test: measures a chunked delete of `RETENTION_BENCH_POINTS` (2 million) points of 1,000
/// one-minute sensors, half of them due, with writes going on (README, benchmarks). Run with
/// `cargo nextest run --lib retention_benchmark --run-ignored only --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn retention_benchmark() {
    let points: i64 = std::env::var("RETENTION_BENCH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let entities = 1_000_i64;
    let per_entity = points / entities;
    let dir = std::env::var_os("RETENTION_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(dir).expect("tempdir");
    let path = history_path(dir.path());
    {
        let mut conn = open_writer(&path).expect("open");
        let tx = conn.transaction().expect("tx");
        {
            let mut insert = tx
                .prepare("INSERT INTO points (entity_id, time_us, domain, state, value, attributes) VALUES (?1, ?2, 'sensor', ?3, ?4, ?5)")
                .expect("prepare");
            for i in 0..per_entity {
                for e in 0..entities {
                    let v = 20.0 + ((i + e) % 50) as f64 / 10.0;
                    insert
                        .execute(rusqlite::params![
                            format!("sensor.temperature_{e:04}"),
                            T0 + i * MINUTE,
                            format!("{v:.1}"),
                            v,
                            r#"{"device_class":"temperature","unit_of_measurement":"°C","friendly_name":"Temperature"}"#,
                        ])
                        .expect("insert");
                }
            }
        }
        tx.commit().expect("commit");
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
    let per_tick: i64 = std::env::var("RETENTION_BENCH_LOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
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
