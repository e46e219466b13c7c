//! End-to-end write benchmark against a real InfluxDB.
//!
//! `INFLUX_URL=http://127.0.0.1:18086 cargo bench --bench pipeline` (optional `EVENTS=`, default
//! 200000). Generates realistic decoded `state_changed` events for ~2,000 entities, then:
//!
//! * RAW: the same points, pre-encoded, POSTed single-threaded in batches of 5,000 to a fresh
//!   database: what InfluxDB takes from a simple client;
//! * PIPELINE: `PointMapper` + the real `spawn_writer` (default settings except URL and database)
//!   from decoded events until every point is acknowledged.
//!
//! Both databases are checked with `SELECT count(state)` and dropped afterwards.

use std::time::{Duration, Instant};

use homeiq::config::InfluxSettings;
use homeiq::ha::model::StateChanged;
use homeiq::store::influx::{InfluxClient, encode_point, spawn_writer};
use homeiq::store::point::Point;
use homeiq::store::schema::PointMapper;

mod common;

use common::{ENTITIES, Entity, RAW_BATCH, Rng, count_states, event, make_entities, settings};

fn make_events(n: usize, entities: &[Entity], rng: &mut Rng) -> Vec<(StateChanged, usize)> {
    (0..n).map(|i| event(i, entities, rng)).collect()
}

/// User + system CPU time of this process, seconds (from `/proc/self/stat`, USER_HZ = 100).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of the full line: 12 and 13 after `state`.
    (ticks(11) + ticks(12)) / 100.0
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
        .unwrap_or(200_000);
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
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let entities = make_entities(&mut rng);
    let events = make_events(n, &entities, &mut rng);
    let tag = std::process::id();
    let mapper = PointMapper::new(&InfluxSettings::default());
    rt.block_on(async {
        // RAW: pre-encoded batches, one request at a time.
        let raw_db = format!("bench_raw_{tag}");
        let raw = InfluxClient::new(&settings(&url, raw_db)).unwrap_or_else(|e| panic!("{e}"));
        raw.create_database().await.unwrap_or_else(|e| panic!("{e}"));
        let points: Vec<Point> = events
            .iter()
            .filter_map(|(ev, i)| mapper.map_change(ev, &entities[*i].meta))
            .collect();
        let bodies: Vec<Vec<u8>> = points
            .chunks(RAW_BATCH)
            .map(|chunk| {
                let mut s = String::new();
                for p in chunk {
                    let _ = encode_point(p, &mut s);
                }
                s.into_bytes()
            })
            .collect();
        let body_bytes: usize = bodies.iter().map(Vec::len).sum();
        let started = Instant::now();
        for body in bodies {
            let outcome = raw.write(body, mapper.precision()).await;
            assert!(outcome.is_written(), "raw write: {outcome:?}");
        }
        let raw_secs = started.elapsed().as_secs_f64();
        let raw_count = count_states(&raw).await;

        // PIPELINE: decoded events -> mapper -> writer -> acknowledged.
        let pipe_db = format!("bench_pipeline_{tag}");
        let s = settings(&url, pipe_db);
        let client = InfluxClient::new(&s).unwrap_or_else(|e| panic!("{e}"));
        client.create_database().await.unwrap_or_else(|e| panic!("{e}"));
        let cpu0 = cpu_seconds();
        let started = Instant::now();
        let writer = spawn_writer(&s, client.clone(), mapper.precision());
        // Keep below the queue bound when EVENTS exceeds it (a live feed is far slower).
        let room = s.queue_capacity.saturating_sub(2_000);
        for (k, (ev, i)) in events.iter().enumerate() {
            if k % 1_000 == 0 {
                while {
                    let st = writer.stats();
                    st.queued + st.in_flight > room
                } {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            if let Some(p) = mapper.map_change(ev, &entities[*i].meta) {
                writer.push(p);
            }
        }
        let probe = writer.clone();
        let report = writer.shutdown(Duration::from_secs(120)).await;
        let pipe_secs = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        let stats = probe.stats();
        let pipe_count = count_states(&client).await;

        let raw_rate = points.len() as f64 / raw_secs;
        let pipe_rate = n as f64 / pipe_secs;
        println!();
        println!("events: {n}, points: {}, entities: {ENTITIES}, line protocol: {:.1} MB ({:.0} B/point)",
            points.len(), body_bytes as f64 / 1e6, body_bytes as f64 / points.len().max(1) as f64);
        println!("{:<10} {:>10} {:>14} {:>12} {:>16}", "run", "seconds", "per second", "counted", "CPU s/100k ev");
        println!("{:<10} {:>10.2} {:>14.0} {:>12} {:>16}", "raw", raw_secs, raw_rate, raw_count, "-");
        println!("{:<10} {:>10.2} {:>14.0} {:>12} {:>16.2}", "pipeline", pipe_secs, pipe_rate, pipe_count,
            cpu / n as f64 * 100_000.0);
        println!("ratio pipeline/raw: {:.0} %", pipe_rate / raw_rate * 100.0);
        println!("writer: written {}, left {}, dropped_rejected {}, dropped_overflow {}, retries {}, mean write {:.1} ms",
            report.written, report.left, stats.influx().counts.dropped_rejected, stats.counts.dropped_overflow, stats.counts.retries,
            stats.mean_latency_ms.unwrap_or(f64::NAN));
        let ok = raw_count == points.len() as u64
            && pipe_count == points.len() as u64
            && report.written == points.len() as u64;
        println!("counts verified: {}", if ok { "yes" } else { "NO" });
        let _ = raw.drop_database().await;
        let _ = client.drop_database().await;
        if !ok {
            std::process::exit(1);
        }
    });
}
