//! Aggregates over long ranges read from rollups: the first-time (uncached) 365-day aggregate of
//! one entity and the 30-day aggregate of 50 entities, p95, against the real binary on each
//! backend, plus the bytes per entity-year of a 1-minute sensor in each tier.
//!
//! ```text
//! set -a; source /work/svc/ha/ha.env; set +a   # HA_URL, HA_TOKEN: the home's time zone
//! INFLUX_URL=http://127.0.0.1:18086 cargo bench --bench history_tiers
//! ```
//!
//! The dataset is written through the stores' bulk paths before HomeIQ starts (the embedded
//! writer; InfluxDB's `/write` in batches of 10,000 lines): `LONG_DAYS` (365) days of `LONG` (1)
//! sensors every `STEP_SECS` (60) seconds, and `WIDE_DAYS` (30) days of `WIDE` (50) sensors at the
//! same step (the issue's full dataset: `LONG=50 WIDE=2000`). The 30-day aggregate names the
//! first 50 wide sensors. HomeIQ then builds its rollups from the raw points (the first start's catch-up, timed);
//! each request asks for a range of its own (shifted by an hour), so no answer comes from the
//! cache. Without `INFLUX_URL` only the embedded backend runs. `REQUESTS` (20) per case.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::{env_or, influx_query, influx_write, iso};

use homeiq::store::embedded;
use homeiq::store::influx::encode_point;
use homeiq::store::point::{FieldValue, Point};

struct Size {
    long_days: i64,
    long: usize,
    wide_days: i64,
    wide: usize,
    step_secs: i64,
}

impl Size {
    /// Entity-years of 1-minute points in the dataset.
    fn entity_years(&self) -> f64 {
        (self.long_days as f64 * self.long as f64 + self.wide_days as f64 * self.wide as f64)
            / 365.0
    }
}

/// The dataset's size from the environment.
fn size_of_env() -> Size {
    Size {
        long_days: env_or("LONG_DAYS", 365),
        long: env_or("LONG", 1) as usize,
        wide_days: env_or("WIDE_DAYS", 30),
        wide: env_or("WIDE", 50) as usize,
        step_secs: env_or("STEP_SECS", 60),
    }
}

fn long_entity(i: usize) -> String {
    format!("sensor.tiers_long_{i:02}")
}

fn wide_entity(i: usize) -> String {
    format!("sensor.tiers_wide_{i:02}")
}

fn point(entity: &str, t: i64, k: i64) -> Point {
    // a slow daily wave with noise: every point a change
    let value = ((k * 37) % 1_000) as f64 / 10.0 + 20.0 * ((k % 1_440) as f64 / 229.0).sin();
    Point::new("sensor", t)
        .tag("entity_id", entity)
        .tag("unit", "°C")
        .tag("device_class", "temperature")
        .field("state", FieldValue::Str(format!("{value:.2}")))
        .field("value", FieldValue::Float((value * 100.0).round() / 100.0))
        .field("state_class_str", FieldValue::Str("measurement".into()))
}

/// Every point of the dataset, in time order per chunk handed to `sink`.
fn generate(size: &Size, end_us: i64, mut sink: impl FnMut(Vec<Point>)) {
    let step = size.step_secs * 1_000_000;
    let long_from = end_us - size.long_days * 86_400_000_000;
    let wide_from = end_us - size.wide_days * 86_400_000_000;
    let mut chunk = Vec::with_capacity(20_000);
    let mut k = 0i64;
    let mut t = long_from;
    while t < end_us {
        for i in 0..size.long {
            chunk.push(point(&long_entity(i), t + i as i64, k + i as i64));
        }
        if t >= wide_from {
            for i in 0..size.wide {
                chunk.push(point(
                    &wide_entity(i),
                    t + (size.long + i) as i64,
                    k + i as i64,
                ));
            }
        }
        if chunk.len() >= 10_000 {
            sink(std::mem::take(&mut chunk));
        }
        t += step;
        k += 1;
    }
    sink(chunk);
}

fn spawn(data: &std::path::Path, backend: &[(&str, String)]) -> (Child, String) {
    let ha_url = std::env::var("HA_URL").expect("HA_URL: the home's time zone comes from HA");
    let ha_token = std::env::var("HA_TOKEN").expect("HA_TOKEN");
    let mut env = vec![
        ("HOMEIQ_HA__URL", ha_url),
        ("HOMEIQ_HA__TOKEN", ha_token),
        ("HOMEIQ_BACKFILL__ENABLED", "false".to_owned()),
        ("HOMEIQ_API__CACHE_MB", "0".to_owned()),
    ];
    env.extend(backend.iter().cloned());
    common::spawn_homeiq(data, &env, None)
}

fn p95(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[((ms.len() as f64 * 0.95).ceil() as usize).clamp(1, ms.len()) - 1]
}

/// p95 of `requests` aggregates of `ids` over `days` ending at `end_us` − k hours.
async fn measure(
    base: &str,
    ids: &str,
    days: i64,
    interval: &str,
    end_us: i64,
    requests: usize,
) -> (f64, String) {
    let http = reqwest::Client::new();
    let mut ms = Vec::new();
    let mut tier = String::new();
    for k in 0..requests {
        let end = end_us - (k as i64 + 2) * 3_600_000_000;
        let start = end - days * 86_400_000_000;
        let url = format!(
            "{base}/api/v1/history/aggregate?entity_id={ids}&start={}&end={}&interval={interval}",
            iso(start),
            iso(end)
        );
        let t = Instant::now();
        let r = http.get(&url).send().await.expect("request");
        let status = r.status();
        let body: serde_json::Value = r.json().await.expect("json");
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(status.is_success(), "{status}: {body}");
        tier = body["tier"].as_str().unwrap_or_default().to_owned();
    }
    (p95(ms), tier)
}

fn rollup_bytes(data: &std::path::Path, size: &Size) {
    let path = data.join("rollups.db");
    let Ok(conn) = rusqlite::Connection::open(&path) else {
        return;
    };
    let file: f64 = conn
        .query_row(
            "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap_or(0) as f64;
    let rows: Vec<(i64, i64)> = conn
        .prepare("SELECT tier, count(*) FROM numeric GROUP BY tier")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()
        })
        .unwrap_or_default();
    let total: i64 = rows.iter().map(|r| r.1).sum::<i64>().max(1);
    let entity_years = size.entity_years();
    for (tier, n) in rows {
        let name = ["raw", "5m", "1h", "1d", "imported"]
            .get(usize::try_from(tier).unwrap_or(0))
            .copied()
            .unwrap_or("?");
        // bytes shared by rows (all rows of a tier are alike)
        let bytes = file * n as f64 / total as f64;
        println!(
            "  tier {name:>3}: {n} rows, ~{:.0} bytes/row, {:.2} MB per entity-year (1-minute sensor)",
            bytes / n.max(1) as f64,
            bytes / entity_years / 1e6
        );
    }
}

async fn run_backend(
    name: &str,
    data: &std::path::Path,
    backend: &[(&str, String)],
    size: &Size,
    end_us: i64,
) {
    let requests = env_or("REQUESTS", 20) as usize;
    let (mut child, base) = spawn(data, backend);
    let build = common::wait_rolled_up(&base, Duration::from_secs(3_600)).await;
    println!("{name}: rollups built from the raw points in {build:.1} s");
    let (long, tier) = measure(
        &base,
        &long_entity(0),
        size.long_days - 2,
        "1d",
        end_us,
        requests,
    )
    .await;
    println!(
        "{name}: {}-day aggregate of 1 entity (1d buckets): p95 {long:.1} ms (tier {tier})",
        size.long_days - 2
    );
    // an aggregate names at most 50 entities
    let wide: Vec<String> = (0..size.wide.min(50)).map(wide_entity).collect();
    let (wide_ms, tier) = measure(
        &base,
        &wide.join(","),
        size.wide_days - 2,
        "1h",
        end_us,
        requests,
    )
    .await;
    println!(
        "{name}: {}-day aggregate of {} entities (1h buckets): p95 {wide_ms:.1} ms (tier {tier})",
        size.wide_days - 2,
        wide.len()
    );
    rollup_bytes(data, size);
    common::stop_process(&mut child, Duration::from_secs(10));
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let size = size_of_env();
    // the dataset ends at the last full hour, so the rollups cover it once caught up
    let now = chrono::Utc::now().timestamp_micros();
    let end_us = now - now.rem_euclid(3_600_000_000);
    println!(
        "dataset: {} days of {} sensors + {} days of {} sensors, a point every {} s",
        size.long_days, size.long, size.wide_days, size.wide, size.step_secs
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("embedded");
    let (writer, _history) = embedded::open(
        &embedded::history_path(&data),
        embedded::EmbeddedOptions::default(),
    )
    .await
    .expect("open");
    let started = Instant::now();
    let mut n = 0usize;
    generate(&size, end_us, |chunk| {
        n += chunk.len();
        common::push_waiting(chunk, || writer.wait_for_room(), |p| writer.push(p));
    });
    assert_eq!(writer.stats().counts.dropped_overflow, 0, "dropped");
    let report = writer.shutdown(Duration::from_secs(3_600)).await;
    assert_eq!(report.left, 0, "{report:?}");
    let raw = std::fs::metadata(embedded::history_path(&data)).map_or(0, |m| m.len());
    let entity_years = size.entity_years();
    println!(
        "embedded: {n} points written in {:.1} s; history.db {:.1} MB ({:.1} MB per entity-year raw)",
        started.elapsed().as_secs_f64(),
        raw as f64 / 1e6,
        raw as f64 / 1e6 / entity_years
    );
    run_backend(
        "embedded",
        &data,
        &[("HOMEIQ_STORAGE", "embedded".to_owned())],
        &size,
        end_us,
    )
    .await;

    if let Ok(influx) = std::env::var("INFLUX_URL") {
        let db = format!("bench_tiers_{}", std::process::id());
        let http = reqwest::Client::new();
        influx_query(&http, &influx, format!("CREATE DATABASE \"{db}\"")).await;
        let started = Instant::now();
        // generated on a thread of its own and written as it comes: the full dataset's lines
        // (112 million points) do not fit in memory
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(8);
        let generator = std::thread::spawn(move || {
            generate(&size_of_env(), end_us, |chunk| {
                let mut body = String::new();
                for p in &chunk {
                    encode_point(p, &mut body).expect("encode");
                    body.push('\n');
                }
                let _ = tx.blocking_send(body);
            });
        });
        while let Some(body) = rx.recv().await {
            influx_write(&http, &influx, &db, body).await;
        }
        generator.join().expect("generator");
        println!(
            "influxdb: points written in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let data = dir.path().join("influx");
        run_backend(
            "influxdb",
            &data,
            &[
                ("HOMEIQ_STORAGE", "external".to_owned()),
                ("HOMEIQ_INFLUXDB__URL", influx.clone()),
                ("HOMEIQ_INFLUXDB__DATABASE", db.clone()),
            ],
            &size,
            end_us,
        )
        .await;
        influx_query(&http, &influx, format!("DROP DATABASE \"{db}\"")).await;
    }
}
