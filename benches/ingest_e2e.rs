//! End-to-end ingest: simulator (`--rate`) → WebSocket → HomeIQ (release binary) → storage, for
//! both backends, next to raw InfluxDB ingest of the same number of points in the same run.
//!
//! `cargo bench --bench ingest_e2e` with `INFLUX_URL` set (optional `RATE=` changes/s offered,
//! default 60,000; `SECS=` measured seconds, default 15; `RSS_RATE=`, default 1,000;
//! `RSS_SECS=`, default 30; `BACKENDS=influxdb,embedded`). For each backend:
//!
//! 1. throughput: the simulator (in this process, large profile: 2,000 entities) offers `RATE`
//!    changes/s; HomeIQ runs as its own process; after a 3 s warm-up the points the backend
//!    acknowledged (`/health/deep` → `storage.written`) are counted over
//!    `SECS` seconds: sustained events/s written, with HomeIQ's peak RSS (`VmHWM`);
//! 2. memory: a fresh HomeIQ at `RSS_RATE` changes/s for `RSS_SECS` seconds: its RSS at the end.
//!
//! Raw InfluxDB ingest: as many points as the InfluxDB run wrote, from the shared generator,
//! pre-encoded and written in batches of 5,000 by one client (as `benches/replay.rs`).
//! Targets (issue): InfluxDB ≥ 50,000 events/s and ≥ 80 % of raw; embedded ≥ 30,000 events/s;
//! RSS ≤ 50 MB at 1,000 events/s with 2,000 entities.
//!
//! CPU per event (`PARTS=cpu`): for each simulator profile in `CPU_PROFILES` (default
//! `small,medium,large`) and rate in `CPU_RATES` (default `2000,20000` changes/s), a fresh HomeIQ
//! records into InfluxDB; after a 4 s warm-up, the CPU time (user + system, `/proc/<pid>/stat`)
//! HomeIQ and InfluxDB use over `CPU_SECS` seconds (default 20) is divided by the points written
//! meanwhile: HomeIQ's µs per event next to InfluxDB's µs per point. InfluxDB's process is
//! `INFLUX_PID`, else the one process named `influxd`. Target (issue 15): medium ≤ 10 µs per event
//! at both rates.
//!
//! `HOMEIQ_BIN=` measures another build of HomeIQ. `PARTS=` selects `throughput` (throughput and RSS per backend, raw ingest) and/or `cpu`
//! (default both). Prints tables; exits non-zero only when a run failed, not when a target is
//! missed (the machine decides those).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use homeiq::config::InfluxSettings;
use homeiq::simulate::{Profile, SimulatorOptions, spawn};
use homeiq::store::influx::InfluxClient;
use homeiq::store::schema::PointMapper;
use serde_json::Value;

use common::{
    RAW_BATCH, RawBatches, Rng, count_states, cpu_secs, env_or, event, free_port, influx_pid,
    make_entities, settings, status_kb, stop_process,
};

/// The simulator runs in this process: with the allocator `homeiq simulate` ships with, so that
/// it costs the machine what the real command costs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A HomeIQ process recording the simulator at `ha_url`.
struct HomeIq {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl HomeIq {
    async fn start(backend: &str, ha_url: &str, token: &str, influx_url: &str, db: &str) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        let log =
            std::fs::File::create(dir.path().join("homeiq.log")).unwrap_or_else(|e| panic!("{e}"));
        let storage = if backend == "embedded" {
            "embedded"
        } else {
            "external"
        };
        let bin =
            std::env::var("HOMEIQ_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_homeiq").into());
        let child = Command::new(bin)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(std::env::vars().filter(|(k, _)| k.starts_with("MIMALLOC_")))
            .env("HOMEIQ_OPTIONS_FILE", dir.path().join("none.json"))
            .env("HOMEIQ_DATA_DIR", dir.path().join("data"))
            .env("HOMEIQ_LOG_LEVEL", "warn")
            .env("HOMEIQ_HTTP__BIND", "127.0.0.1")
            .env("HOMEIQ_HTTP__PORT", port.to_string())
            .env("HOMEIQ_HA__URL", ha_url)
            // measured without the first start's import of the simulator's past
            .env("HOMEIQ_IMPORT__ON_FIRST_START", "false")
            .env("HOMEIQ_HA__TOKEN", token)
            .env("HOMEIQ_STORAGE", storage)
            .env("HOMEIQ_INFLUXDB__URL", influx_url)
            .env("HOMEIQ_INFLUXDB__DATABASE", db)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn homeiq: {e}"));
        let me = HomeIq {
            child,
            port,
            _dir: dir,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(d) = me.deep().await
                && d["home_assistant"]["state"] == "connected"
            {
                break;
            }
            assert!(Instant::now() < deadline, "HomeIQ did not connect");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        me
    }

    async fn deep(&self) -> Option<Value> {
        let r = self
            .http
            .get(format!("http://127.0.0.1:{}/health/deep", self.port))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    async fn written(&self) -> (u64, Value) {
        let d = self.deep().await.unwrap_or_default();
        (d["storage"]["written"].as_u64().unwrap_or(0), d)
    }

    fn stop(mut self) {
        stop_process(&mut self.child, Duration::from_secs(15));
    }
}

/// Sustained written events/s at `rate`, and the peak RSS in MB.
async fn throughput(backend: &str, influx_url: &str, rate: u64, secs: f64) -> (f64, f64, u64) {
    let sim = spawn(SimulatorOptions {
        port: 0,
        rate: Some(rate),
        profile: Profile::Large,
        seed: 11,
        report_secs: 3_600.0,
        ..SimulatorOptions::default()
    })
    .unwrap_or_else(|e| panic!("simulator: {e}"));
    let db = format!("bench_e2e_{backend}_{}", std::process::id());
    let app = HomeIq::start(backend, &sim.url, &sim.token, influx_url, &db).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (w0, _) = app.written().await;
    let cpu0 = cpu_secs(app.child.id());
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (w1, deep) = app.written().await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(app.child.id()) - cpu0;
    let hwm = status_kb(app.child.id(), "VmHWM") as f64 / 1024.0;
    let dropped = deep["storage"]["dropped_overflow"].as_u64().unwrap_or(0);
    let per_event_us = if w1 > w0 {
        cpu * 1e6 / (w1 - w0) as f64
    } else {
        0.0
    };
    eprintln!(
        "{backend}: offered {rate}/s, written {} in {elapsed:.1} s, dropped_overflow {dropped}, ha queue {}, HomeIQ CPU {cpu:.1} s ({per_event_us:.1} µs per event written)",
        w1 - w0,
        deep["home_assistant"]["queue_depth"]
    );
    app.stop();
    sim.shutdown().await;
    if backend == "influxdb" {
        let client = InfluxClient::new(&settings(influx_url, db)).unwrap_or_else(|e| panic!("{e}"));
        let _ = client.drop_database().await;
    }
    ((w1 - w0) as f64 / elapsed, hwm, w1)
}

/// One CPU-per-event measurement.
struct CpuRun {
    written: u64,
    homeiq_us: f64,
    influx_us: Option<f64>,
    dropped: u64,
}

/// HomeIQ's CPU µs per event written and InfluxDB's per point, for `profile` at `rate`.
async fn cpu_per_event(
    influx_url: &str,
    influx: Option<u32>,
    profile: Profile,
    rate: u64,
    secs: f64,
) -> CpuRun {
    let sim = spawn(SimulatorOptions {
        port: 0,
        rate: Some(rate),
        profile,
        seed: 13,
        report_secs: 3_600.0,
        ..SimulatorOptions::default()
    })
    .unwrap_or_else(|e| panic!("simulator: {e}"));
    let db = format!("bench_e2e_cpu_{}", std::process::id());
    let app = HomeIq::start("influxdb", &sim.url, &sim.token, influx_url, &db).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pid = app.child.id();
    let (w0, _) = app.written().await;
    let (h0, i0) = (cpu_secs(pid), influx.map(cpu_secs));
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (h1, i1) = (cpu_secs(pid), influx.map(cpu_secs));
    let (w1, deep) = app.written().await;
    app.stop();
    sim.shutdown().await;
    let client = InfluxClient::new(&settings(influx_url, db)).unwrap_or_else(|e| panic!("{e}"));
    let _ = client.drop_database().await;
    let written = w1.saturating_sub(w0);
    assert!(written > 0, "nothing written at {rate}/s");
    let per = |cpu: f64| cpu * 1e6 / written as f64;
    CpuRun {
        written,
        homeiq_us: per(h1 - h0),
        influx_us: i0.zip(i1).map(|(a, b)| per(b - a)),
        dropped: deep["storage"]["dropped_overflow"].as_u64().unwrap_or(0),
    }
}

/// The CPU table: HomeIQ µs per event next to InfluxDB µs per point.
async fn cpu_table(influx_url: &str) {
    let profiles: Vec<Profile> = std::env::var("CPU_PROFILES")
        .unwrap_or_else(|_| "small,medium,large".into())
        .split(',')
        .map(|p| match p.trim() {
            "small" => Profile::Small,
            "medium" => Profile::Medium,
            "large" => Profile::Large,
            other => panic!("CPU_PROFILES: unknown profile {other}"),
        })
        .collect();
    let rates: Vec<u64> = std::env::var("CPU_RATES")
        .unwrap_or_else(|_| "2000,20000".into())
        .split(',')
        .map(|r| {
            r.trim()
                .parse()
                .unwrap_or_else(|e| panic!("CPU_RATES: {r}: {e}"))
        })
        .collect();
    let secs: f64 = env_or("CPU_SECS", 20.0);
    let influx = influx_pid();
    println!(
        "CPU per event: HomeIQ → InfluxDB, {secs} s measured per run (InfluxDB pid {influx:?})"
    );
    println!("| profile | offered/s | written | HomeIQ µs/event | InfluxDB µs/point | dropped |");
    println!("|---|---:|---:|---:|---:|---:|");
    for profile in profiles {
        for &rate in &rates {
            let r = cpu_per_event(influx_url, influx, profile, rate, secs).await;
            let influx_us = r
                .influx_us
                .map_or_else(|| "?".into(), |u| format!("{u:.1}"));
            println!(
                "| {profile:?} | {rate} | {} | {:.1} | {influx_us} | {} |",
                r.written, r.homeiq_us, r.dropped
            );
        }
    }
    println!();
}

/// RSS (MB) of HomeIQ after `secs` at `rate` changes/s over 2,000 entities.
async fn rss_at(backend: &str, influx_url: &str, rate: u64, secs: f64) -> f64 {
    let sim = spawn(SimulatorOptions {
        port: 0,
        rate: Some(rate),
        profile: Profile::Large,
        seed: 12,
        report_secs: 3_600.0,
        ..SimulatorOptions::default()
    })
    .unwrap_or_else(|e| panic!("simulator: {e}"));
    let db = format!("bench_e2e_rss_{backend}_{}", std::process::id());
    let app = HomeIq::start(backend, &sim.url, &sim.token, influx_url, &db).await;
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let rss = status_kb(app.child.id(), "VmRSS") as f64 / 1024.0;
    app.stop();
    sim.shutdown().await;
    if backend == "influxdb" {
        let client = InfluxClient::new(&settings(influx_url, db)).unwrap_or_else(|e| panic!("{e}"));
        let _ = client.drop_database().await;
    }
    rss
}

/// Raw InfluxDB ingest of `n` generated points: points/s.
async fn raw_ingest(influx_url: &str, n: usize) -> (f64, u64) {
    let db = format!("bench_e2e_raw_{}", std::process::id());
    let raw = InfluxClient::new(&settings(influx_url, db)).unwrap_or_else(|e| panic!("{e}"));
    raw.create_database()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(0x5EED_1234_ABCD_0002);
    let entities = make_entities(&mut rng);
    let mapper = PointMapper::new(&InfluxSettings::default());
    let mut batches = RawBatches::default();
    for i in 0..n {
        let (ev, e_idx) = event(i, &entities, &mut rng);
        if let Some(p) = mapper.map_change(&ev, &entities[e_idx].meta) {
            batches.push(&p);
        }
    }
    let bodies = batches.finish();
    let started = Instant::now();
    for body in bodies {
        let outcome = raw.write(body, mapper.precision()).await;
        assert!(outcome.is_written(), "raw write: {outcome:?}");
    }
    let secs = started.elapsed().as_secs_f64();
    let count = count_states(&raw).await;
    let _ = raw.drop_database().await;
    (n as f64 / secs, count)
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let influx_url = std::env::var("INFLUX_URL").unwrap_or_else(|_| "http://127.0.0.1:8086".into());
    let rate: u64 = env_or("RATE", 60_000);
    let secs: f64 = env_or("SECS", 15.0);
    let rss_rate: u64 = env_or("RSS_RATE", 1_000);
    let rss_secs: f64 = env_or("RSS_SECS", 30.0);
    let parts = std::env::var("PARTS").unwrap_or_else(|_| "throughput,cpu".into());
    let backends: Vec<String> = std::env::var("BACKENDS")
        .unwrap_or_else(|_| "influxdb,embedded".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(async {
        if parts.split(',').any(|p| p == "cpu") {
            cpu_table(&influx_url).await;
        }
        if !parts.split(',').any(|p| p == "throughput") {
            return;
        }
        println!("end-to-end ingest: simulator (2,000 entities) at {rate}/s → HomeIQ → storage, {secs} s measured");
        println!("| run | events/s | peak RSS MB | RSS MB at {rss_rate}/s | note |");
        println!("|---|---:|---:|---:|---|");
        let mut influx_rate = None;
        for backend in &backends {
            let (r, hwm, total) = throughput(backend, &influx_url, rate, secs).await;
            let rss = rss_at(backend, &influx_url, rss_rate, rss_secs).await;
            println!("| HomeIQ → {backend} | {r:.0} | {hwm:.1} | {rss:.1} | {total} written |");
            if backend == "influxdb" {
                influx_rate = Some((r, total));
            }
        }
        if let Some((r, total)) = influx_rate {
            let n = usize::try_from(total).unwrap_or(usize::MAX).max(RAW_BATCH);
            let (raw, count) = raw_ingest(&influx_url, n).await;
            println!("| raw InfluxDB ingest ({n} points, batches of {RAW_BATCH}) | {raw:.0} | | | {count} counted |");
            println!();
            println!("HomeIQ → InfluxDB / raw: {:.0} %", r / raw * 100.0);
        }
    });
}
