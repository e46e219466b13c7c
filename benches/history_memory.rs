//! History memory under concurrent wide requests: 64 history requests at once, each for 50
//! entities and a range of its own (so the answer cache never serves them), against the real
//! binary on each backend, reporting the process's peak RSS (`VmHWM`) before and after.
//!
//! ```text
//! INFLUX_URL=http://127.0.0.1:8086 cargo bench --bench history_memory
//! ```
//!
//! Each of the 50 entities has a record every minute for a day (72,000 records with a few
//! attributes, in InfluxDB and in `history.db`); a request asks for 20 hours of all 50 (1,200
//! records each) with the default page of 1,000 records, so every entity alone could fill the
//! page. Without `INFLUX_URL` only the embedded backend runs. Environment: `REQUESTS` (64),
//! `LIMIT` (1000), `HOMEIQ_BIN` (another binary to measure, e.g. an older build).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use homeiq::store::embedded;
use homeiq::store::influx::encode_point;
use homeiq::store::point::{FieldValue, Point};

const ENTITIES: usize = 50;
const MINUTES: i64 = 1_440;
const SPAN_SECS: i64 = 20 * 3_600;

fn entity(i: usize) -> String {
    format!("sensor.bench_memory_{i:02}")
}

fn points(t0_us: i64) -> Vec<Point> {
    let mut out = Vec::with_capacity(ENTITIES * MINUTES as usize);
    for m in 0..MINUTES {
        for i in 0..ENTITIES {
            let value = ((m * 7 + i as i64) % 400) as f64 / 10.0;
            out.push(
                Point::new("sensor", t0_us + m * 60_000_000 + i as i64)
                    .tag("entity_id", entity(i))
                    .tag("unit", "°C")
                    .tag("device_class", "temperature")
                    .field("state", FieldValue::Str(format!("{value}")))
                    .field("value", FieldValue::Float(value))
                    .field(
                        "friendly_name_str",
                        FieldValue::Str(format!("Bench room {i} temperature")),
                    )
                    .field("state_class_str", FieldValue::Str("measurement".into()))
                    .field("battery", FieldValue::Float(80.0)),
            );
        }
    }
    out
}

async fn seed_influx(influx: &str, db: &str, points: &[Point]) {
    let http = reqwest::Client::new();
    http.post(format!("{influx}/query"))
        .form(&[("q", format!("CREATE DATABASE \"{db}\""))])
        .send()
        .await
        .expect("create database");
    for chunk in points.chunks(5_000) {
        let mut body = String::new();
        for p in chunk {
            let _ = encode_point(p, &mut body);
        }
        let r = http
            .post(format!("{influx}/write?db={db}&precision=u"))
            .body(body)
            .send()
            .await
            .expect("write");
        assert!(r.status().is_success(), "write: {}", r.status());
    }
}

async fn seed_embedded(data: &std::path::Path, points: Vec<Point>) {
    let (writer, _history) = embedded::open(&embedded::history_path(data), Default::default())
        .await
        .expect("open history.db");
    for p in points {
        writer.push(p);
    }
    let report = writer.shutdown(Duration::from_secs(60)).await;
    assert_eq!(report.left, 0, "{report:?}");
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn spawn(data: &std::path::Path, backend: &[(&str, String)]) -> (Child, String) {
    let port = free_port();
    let bin = std::env::var("HOMEIQ_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_homeiq").into());
    let mut command = Command::new(bin);
    command
        .arg("serve")
        .env_clear()
        .env("HOMEIQ_OPTIONS_FILE", data.join("none.json"))
        .env("HOMEIQ_DATA_DIR", data)
        .env("HOMEIQ_LOG_LEVEL", "warn")
        .env("HOMEIQ_HTTP__BIND", "127.0.0.1")
        .env("HOMEIQ_HTTP__PORT", port.to_string())
        .env(
            "HOMEIQ_HA__URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env("HOMEIQ_HA__TOKEN", "unused")
        .env("HOMEIQ_API__RATE_LIMIT_PER_SECOND", "0")
        .env("HOMEIQ_API__MAX_HISTORY_DAYS", "30");
    for (k, v) in backend {
        command.env(k, v);
    }
    let child = command.stdout(Stdio::null()).spawn().expect("spawn homeiq");
    (child, format!("http://127.0.0.1:{port}"))
}

fn iso(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Fires `requests` concurrent history requests for all entities, each a range of its own, and
/// returns (peak RSS before, after, seconds taken).
async fn load(base: &str, pid: u32, t0_us: i64, requests: usize, limit: usize) -> (f64, f64, f64) {
    let http = reqwest::Client::new();
    let ids: Vec<String> = (0..ENTITIES).map(entity).collect();
    let ids = ids.join(",");
    // ready: a first small request answers
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let probe = format!(
            "{base}/api/v1/history?entity_id={}&start={}&end={}&limit=1",
            entity(0),
            iso(t0_us),
            iso(t0_us + 60_000_000)
        );
        if let Ok(r) = http.get(&probe).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "homeiq did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = peak_rss_mb(pid);
    let started = Instant::now();
    let tasks: Vec<_> = (0..requests)
        .map(|k| {
            let http = http.clone();
            let start = t0_us + k as i64 * 1_000_000;
            let url = format!(
                "{base}/api/v1/history?entity_id={ids}&start={}&end={}&limit={limit}",
                iso(start),
                iso(start + SPAN_SECS * 1_000_000)
            );
            tokio::spawn(async move {
                let r = http.get(&url).send().await.expect("request");
                let status = r.status();
                let body: serde_json::Value = r.json().await.expect("json");
                assert!(status.is_success(), "{status}: {body}");
                body["items"].as_array().map_or(0, Vec::len)
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("join"), limit);
    }
    (before, peak_rss_mb(pid), started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let requests: usize = std::env::var("REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let limit: usize = std::env::var("LIMIT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    let t0_us = (chrono::Utc::now() - chrono::Duration::days(2)).timestamp() * 1_000_000;
    let seeded = points(t0_us);
    let mut rows = Vec::new();

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("embedded");
    std::fs::create_dir_all(&data).expect("data dir");
    seed_embedded(&data, seeded.clone()).await;
    let (mut child, base) = spawn(
        &data,
        &[
            ("HOMEIQ_STORAGE", "embedded".into()),
            (
                "HOMEIQ_INFLUXDB__URL",
                format!("http://127.0.0.1:{}", free_port()),
            ),
        ],
    );
    let (before, after, secs) = load(&base, child.id(), t0_us, requests, limit).await;
    let _ = child.kill();
    let _ = child.wait();
    rows.push(("embedded", before, after, secs));

    if let Ok(influx) = std::env::var("INFLUX_URL") {
        let db = format!("bench_history_memory_{}", std::process::id());
        seed_influx(&influx, &db, &seeded).await;
        let data = dir.path().join("influx");
        std::fs::create_dir_all(&data).expect("data dir");
        let (mut child, base) = spawn(
            &data,
            &[
                ("HOMEIQ_INFLUXDB__URL", influx.clone()),
                ("HOMEIQ_INFLUXDB__DATABASE", db.clone()),
            ],
        );
        let (before, after, secs) = load(&base, child.id(), t0_us, requests, limit).await;
        let _ = child.kill();
        let _ = child.wait();
        rows.push(("influxdb", before, after, secs));
        let _ = reqwest::Client::new()
            .post(format!("{influx}/query"))
            .form(&[("q", format!("DROP DATABASE \"{db}\""))])
            .send()
            .await;
    }

    println!(
        "\n{requests} concurrent history requests, {ENTITIES} entities each, limit {limit}, a range of its own each ({} records stored)",
        seeded.len()
    );
    println!("| backend | peak RSS before | peak RSS after | all answered in |");
    println!("|---|---:|---:|---:|");
    for (backend, before, after, secs) in rows {
        println!("| {backend} | {before:.1} MB | {after:.1} MB | {secs:.1} s |");
    }
}
