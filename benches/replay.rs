//! Spool replay benchmark against a real InfluxDB.
//!
//! `INFLUX_URL=http://127.0.0.1:18086 cargo bench --bench replay` (optional `EVENTS=`, default
//! 1,000,000). Generates realistic `state_changed` events for ~2,000 entities and maps them with
//! the real `PointMapper` (HomeIQ schema), then:
//!
//! * FILL: a spooled writer whose InfluxDB is unreachable takes every point; all of them end up
//!   in a fresh spool directory (not timed);
//! * RAW: the same points, pre-encoded, POSTed single-threaded in batches of 5,000 to a fresh
//!   database: what InfluxDB takes from a simple client, in the same run;
//! * REPLAY: a fresh process (this binary again, as HomeIQ restarting) opens the spool with the
//!   real `spawn_spooled_writer` and default settings, and replays it into another fresh database
//!   until every point is acknowledged. Its peak RSS (`VmHWM`, and `VmRSS` sampled every 20 ms)
//!   covers only the replay.
//!
//! Both databases are checked with `SELECT count(state)` and dropped afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use homeiq::config::{InfluxSettings, SpoolSettings};
use homeiq::store::influx::{InfluxClient, WriterHandle, spawn_spooled_writer};
use homeiq::store::point::{Point, Precision};
use homeiq::store::schema::PointMapper;

const CHILD_ENV: &str = "HOMEIQ_REPLAY_BENCH_CHILD";

mod common;

use common::{ENTITIES, RawBatches, Rng, count_states, event, make_entities, settings};

fn points(n: usize, mut f: impl FnMut(Point)) {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let entities = make_entities(&mut rng);
    let mapper = PointMapper::new(&InfluxSettings::default());
    for i in 0..n {
        let (ev, e_idx) = event(i, &entities, &mut rng);
        if let Some(p) = mapper.map_change(&ev, &entities[e_idx].meta) {
            f(p);
        }
    }
}

fn precision() -> Precision {
    PointMapper::new(&InfluxSettings::default()).precision()
}

/// A `/proc/self/status` figure in kB (`VmRSS`, `VmHWM`).
fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn spooled(s: &InfluxSettings, dir: &Path) -> WriterHandle {
    let client = InfluxClient::new(s).unwrap_or_else(|e| panic!("{e}"));
    spawn_spooled_writer(s, &SpoolSettings::default(), dir, client, precision())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The replay, in its own process: prints `key=value` lines for the parent.
async fn child(url: &str, db: String, dir: PathBuf, n: u64) {
    let sampler_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = std::sync::Arc::clone(&sampler_stop);
    let sampler = std::thread::spawn(move || {
        let mut max = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            max = max.max(status_kb("VmRSS:"));
            std::thread::sleep(Duration::from_millis(20));
        }
        max
    });
    let rss_start = status_kb("VmRSS:");
    let started = Instant::now();
    let writer = spooled(&settings(url, db), &dir).await;
    loop {
        let s = writer.stats();
        if s.influx().spool_points == 0
            && s.influx().counts.replayed
                + s.influx().counts.quarantined
                + s.influx().spool.spool_dropped
                >= n
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            eprintln!("replay did not finish: {s:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    sampler_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rss_max = sampler.join().unwrap_or(0);
    let s = writer.stats();
    println!("secs={secs}");
    println!("replayed={}", s.influx().counts.replayed);
    println!("quarantined={}", s.influx().counts.quarantined);
    println!("spool_dropped={}", s.influx().spool.spool_dropped);
    println!("retries={}", s.counts.retries);
    println!("mean_write_ms={:.1}", s.mean_latency_ms.unwrap_or(f64::NAN));
    println!("rss_start_kb={rss_start}");
    println!("rss_max_kb={rss_max}");
    println!("hwm_kb={}", status_kb("VmHWM:"));
    writer.shutdown(Duration::from_secs(5)).await;
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Ok(url) = std::env::var("INFLUX_URL") else {
        eprintln!("INFLUX_URL is not set (e.g. http://127.0.0.1:18086)");
        std::process::exit(2);
    };
    let n: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            std::process::exit(1);
        }
    };
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        // db \t dir \t points
        let mut parts = spec.split('\t');
        let (Some(db), Some(dir), Some(points)) = (parts.next(), parts.next(), parts.next()) else {
            eprintln!("bad {CHILD_ENV}");
            std::process::exit(2);
        };
        let points = points.parse().unwrap_or(0);
        rt.block_on(child(&url, db.to_owned(), PathBuf::from(dir), points));
        return;
    }

    let tag = std::process::id();
    let data = std::env::temp_dir().join(format!("homeiq_replay_bench_{tag}"));
    let spool_dir = data.join("spool");
    let _ = std::fs::remove_dir_all(&data);
    rt.block_on(async {
        // FILL: InfluxDB unreachable, everything goes to the spool.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            l.local_addr().map(|a| a.port()).unwrap_or(1)
        };
        let fill_started = Instant::now();
        let writer = spooled(
            &settings(&format!("http://127.0.0.1:{closed}"), "unused".into()),
            &data,
        )
        .await;
        let mut total = 0u64;
        let mut pending = Vec::with_capacity(10_000);
        let flush = |pending: &mut Vec<Point>| {
            for p in pending.drain(..) {
                writer.push(p);
            }
            // A live feed arrives over time; this generator would outrun any disk. (This thread
            // is not one of the runtime's workers, so sleeping here blocks no task.)
            while {
                let s = writer.stats();
                s.queued + s.in_flight > 100_000
            } {
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        points(n, |p| {
            total += 1;
            pending.push(p);
            if pending.len() == 10_000 {
                flush(&mut pending);
            }
        });
        flush(&mut pending);
        // (The writer spills while points arrive; pushes never block.)
        while {
            let s = writer.stats();
            s.influx().spool_points + s.influx().spool.spool_dropped + s.counts.dropped_overflow < total
        } {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let fill = writer.stats();
        writer.shutdown(Duration::from_secs(5)).await;
        let fill_secs = fill_started.elapsed().as_secs_f64();
        let spool_bytes = dir_bytes(&spool_dir);
        if fill.influx().spool_points != total {
            eprintln!("the spool did not take every point: {fill:?}");
            std::process::exit(1);
        }

        // RAW: pre-encoded batches, one request at a time.
        let raw_db = format!("bench_replay_raw_{tag}");
        let raw = InfluxClient::new(&settings(&url, raw_db)).unwrap_or_else(|e| panic!("{e}"));
        raw.create_database()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut batches = RawBatches::default();
        points(n, |p| batches.push(&p));
        let bodies = batches.finish();
        let body_bytes: usize = bodies.iter().map(Vec::len).sum();
        let started = Instant::now();
        for body in bodies {
            let outcome = raw.write(body, precision()).await;
            assert!(outcome.is_written(), "raw write: {outcome:?}");
        }
        let raw_secs = started.elapsed().as_secs_f64();
        let raw_count = count_states(&raw).await;

        // REPLAY: a fresh process opens the spool and replays it.
        let replay_db = format!("bench_replay_{tag}");
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let out = Command::new(exe)
            .env(
                CHILD_ENV,
                format!("{replay_db}\t{}\t{total}", data.display()),
            )
            .env("INFLUX_URL", &url)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            eprintln!(
                "replay process failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let get = |k: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        let replay = InfluxClient::new(&settings(&url, replay_db)).unwrap_or_else(|e| panic!("{e}"));
        let replay_count = count_states(&replay).await;
        let replay_secs = get("secs");
        let raw_rate = total as f64 / raw_secs;
        let replay_rate = total as f64 / replay_secs;

        println!();
        println!(
            "events: {n}, points: {total}, entities: {ENTITIES}, line protocol: {:.1} MB ({:.0} B/point), spool on disk: {:.1} MB (filled in {fill_secs:.1} s)",
            body_bytes as f64 / 1e6,
            body_bytes as f64 / total.max(1) as f64,
            spool_bytes as f64 / 1e6
        );
        println!(
            "{:<8} {:>10} {:>14} {:>12}",
            "run", "seconds", "points/s", "counted"
        );
        println!(
            "{:<8} {:>10.2} {:>14.0} {:>12}",
            "raw", raw_secs, raw_rate, raw_count
        );
        println!(
            "{:<8} {:>10.2} {:>14.0} {:>12}",
            "replay", replay_secs, replay_rate, replay_count
        );
        println!("ratio replay/raw: {:.0} %", replay_rate / raw_rate * 100.0);
        println!(
            "replay process: peak RSS {:.1} MB (VmHWM), max sampled VmRSS {:.1} MB, at start {:.1} MB; replayed {}, quarantined {}, spool_dropped {}, retries {}, mean write {} ms",
            get("hwm_kb") / 1024.0,
            get("rss_max_kb") / 1024.0,
            get("rss_start_kb") / 1024.0,
            get("replayed"),
            get("quarantined"),
            get("spool_dropped"),
            get("retries"),
            get("mean_write_ms")
        );
        let ok = raw_count == total && replay_count == total && get("replayed") == total as f64;
        println!("counts verified: {}", if ok { "yes" } else { "NO" });
        let _ = raw.drop_database().await;
        let _ = replay.drop_database().await;
        let _ = std::fs::remove_dir_all(&data);
        if !ok {
            std::process::exit(1);
        }
    });
}
