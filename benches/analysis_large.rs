//! Pattern analysis of the large home under live load: 30 days of the large simulated home
//! (≈ 2,000 entities, routines with quiet sensors as `homeiq evaluate` records them) are recorded
//! by a HomeIQ release binary into each backend; then a fresh HomeIQ on the same data, connected to
//! a load-generating simulator that keeps offering `RATE` changes/s (default 1,000), is asked for
//! an analysis (`POST /api/v1/analysis/runs`). Reported per backend: changes analysed, the run's
//! duration (its own `duration_ms`), HomeIQ's extra RSS during the run (`VmRSS` sampled every
//! 50 ms, minus the value just before), the rate written meanwhile, and anything dropped (the
//! writer's `dropped_overflow`, clients the simulator dropped for falling behind).
//!
//! ```sh
//! INFLUX_URL=http://127.0.0.1:8086 cargo bench --bench analysis_large
//! ```
//!
//! `BACKENDS=embedded,influxdb,ha_compat` (default all three; the InfluxDB ones need
//! `INFLUX_URL`), `KEEP_DB=1` (keep the InfluxDB database for queries by hand), `DAYS=30`, `RATE=1000`, `SPEED=20000` (simulated seconds per second while
//! recording), `SEED=1`, `HOMEIQ_BIN=` another build. Targets (issue 16): ≤ 20 s and ≤ 100 MB extra
//! RSS on each backend, nothing dropped. Exits non-zero only when a run failed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use homeiq::simulate::{Profile, SimulatorOptions, spawn};
use serde_json::Value;

use common::{Backend, env_or, free_port, status_kb, stop_process};

/// The simulator runs in this process, with the allocator `homeiq simulate` ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// HomeIQ as its own process (release binary), on `data` and `db`.
struct HomeIq {
    child: Child,
    port: u16,
    http: reqwest::Client,
}

impl HomeIq {
    async fn start(backend: Backend, data: &Path, ha_url: &str, token: &str, db: &str) -> Self {
        let port = free_port();
        std::fs::create_dir_all(data).unwrap_or_else(|e| panic!("{e}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("homeiq.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        let bin =
            std::env::var("HOMEIQ_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_homeiq").into());
        let influx_url = std::env::var("INFLUX_URL").unwrap_or_default();
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOMEIQ_OPTIONS_FILE", data.join("none.json"))
            .env("HOMEIQ_DATA_DIR", data.join("data"))
            .env("HOMEIQ_LOG_LEVEL", "warn")
            .env("HOMEIQ_HTTP__BIND", "127.0.0.1")
            .env("HOMEIQ_HTTP__PORT", port.to_string())
            .env("HOMEIQ_HA__URL", ha_url)
            // measured without the first start's import of the simulator's past
            .env("HOMEIQ_IMPORT__ON_FIRST_START", "false")
            .env("HOMEIQ_HA__TOKEN", token)
            .env(
                "HOMEIQ_ANALYSIS__WINDOW_DAYS",
                env_or("DAYS", 30u32).to_string(),
            )
            .env("HOMEIQ_ANALYSIS__MANUAL_COOLDOWN_HOURS", "0")
            // the gap backfill would read the load simulator's short history: not measured here
            .env("HOMEIQ_BACKFILL__ENABLED", "false");
        match backend {
            Backend::Embedded => {
                cmd.env("HOMEIQ_STORAGE", "embedded");
            }
            Backend::Influxdb | Backend::HaCompat => {
                cmd.env("HOMEIQ_STORAGE", "external")
                    .env("HOMEIQ_INFLUXDB__URL", &influx_url)
                    .env("HOMEIQ_INFLUXDB__DATABASE", db)
                    .env(
                        "HOMEIQ_INFLUXDB__SCHEMA",
                        if backend == Backend::HaCompat {
                            "ha_compat"
                        } else {
                            "homeiq"
                        },
                    );
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn homeiq: {e}"));
        let me = HomeIq {
            child,
            port,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(d) = me.get("/health/deep").await
                && d["home_assistant"]["state"] == "connected"
            {
                break;
            }
            assert!(Instant::now() < deadline, "HomeIQ did not connect");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        me
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    fn rss_mb(&self) -> f64 {
        status_kb(self.child.id(), "VmRSS") as f64 / 1024.0
    }

    fn stop(mut self) {
        stop_process(&mut self.child, Duration::from_secs(20));
    }
}

async fn sim_status(http: &reqwest::Client, url: &str, token: &str) -> Value {
    http.get(format!("{url}/api/simulator/status"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("simulator status: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("simulator status: {e}"))
}

/// Records `DAYS` of the large home into `data`/`db`; returns the points written and seconds.
async fn record(backend: Backend, data: &Path, db: &str) -> (u64, f64) {
    let days: u32 = env_or("DAYS", 30);
    let started = Instant::now();
    let sim = spawn(SimulatorOptions {
        port: 0,
        profile: Profile::Large,
        speed: env_or("SPEED", 20_000.0),
        backdate: Some(f64::from(days) * 24.0 + 1.0),
        seed: env_or("SEED", 1),
        time_zone: chrono_tz::Europe::Amsterdam,
        quiet_sensors: true,
        report_secs: 3_600.0,
        ..SimulatorOptions::default()
    })
    .unwrap_or_else(|e| panic!("simulator: {e}"));
    let app = HomeIq::start(backend, data, &sim.url, &sim.token, db).await;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(3 * 3_600);
    let mut last = (u64::MAX, 0u32);
    let mut caught_up_at: Option<Instant> = None;
    let written = loop {
        let s = sim_status(&http, &sim.url, &sim.token).await;
        let deep = app.get("/health/deep").await.unwrap_or_default();
        let events = deep["ingest"]["events"].as_u64().unwrap_or(0);
        let queued = deep["storage"]["queued"].as_u64().unwrap_or(1)
            + deep["storage"]["in_flight"].as_u64().unwrap_or(0);
        last = if events == last.0 {
            (events, last.1 + 1)
        } else {
            (events, 0)
        };
        // a large home at real time is never quiet for two seconds: once the routine has caught
        // up, a few seconds with nothing held drain what the simulator had queued for HomeIQ
        // (at most its `max_pending` events)
        let caught_up = s["routine_caught_up"] == true;
        if caught_up && caught_up_at.is_none() {
            caught_up_at = Some(Instant::now());
        }
        let drained = caught_up_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(5))
            && deep["home_assistant"]["queue_depth"].as_u64() == Some(0);
        if caught_up && queued == 0 && (last.1 >= 4 || drained) {
            break deep["storage"]["written"].as_u64().unwrap_or(0);
        }
        assert!(
            Instant::now() < deadline,
            "recording took too long ({events} events)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    app.stop();
    sim.shutdown().await;
    (written, started.elapsed().as_secs_f64())
}

/// One analysis under load.
struct Row {
    recorded: u64,
    record_secs: f64,
    changes: i64,
    transitions: i64,
    patterns: i64,
    duration_s: f64,
    extra_rss_mb: f64,
    written_per_s: f64,
    dropped: u64,
    dropped_clients: u64,
}

async fn analyse_under_load(backend: Backend, data: &Path, db: &str) -> Row {
    let (recorded, record_secs) = record(backend, data, db).await;
    let rate: u64 = env_or("RATE", 1_000);
    let sim = spawn(SimulatorOptions {
        port: 0,
        rate: Some(rate),
        profile: Profile::Large,
        seed: 99,
        report_secs: 3_600.0,
        ..SimulatorOptions::default()
    })
    .unwrap_or_else(|e| panic!("simulator: {e}"));
    let app = HomeIq::start(backend, data, &sim.url, &sim.token, db).await;
    // the snapshot and the first seconds of load settle
    tokio::time::sleep(Duration::from_secs(5)).await;
    // a nightly run finds the rollups caught up: the first start's catch-up over the recorded
    // month (which reads every raw point) is not part of the analysis
    let waited = common::wait_rolled_up(
        &format!("http://127.0.0.1:{}", app.port),
        Duration::from_secs(900),
    )
    .await;
    eprintln!("rollups caught up {:.1} s after the start", waited + 5.0);
    let rss0 = app.rss_mb();
    let deep0 = app.get("/health/deep").await.unwrap_or_default();
    let w0 = deep0["storage"]["written"].as_u64().unwrap_or(0);
    let t0 = Instant::now();
    let run = app
        .http
        .post(format!(
            "http://127.0.0.1:{}/api/v1/analysis/runs",
            app.port
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("analysis: {e}"))
        .json::<Value>()
        .await
        .unwrap_or_else(|e| panic!("analysis: {e}"));
    let id = run["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("the analysis did not start: {run}"));
    let mut peak = rss0;
    let deadline = Instant::now() + Duration::from_secs(900);
    let row = loop {
        peak = peak.max(app.rss_mb());
        if let Some(runs) = app.get("/api/v1/analysis/runs?limit=5").await
            && let Some(r) = runs["items"]
                .as_array()
                .and_then(|items| items.iter().find(|r| r["id"] == id))
            && r["outcome"] != "running"
        {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "the analysis took too long");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = t0.elapsed().as_secs_f64();
    assert_eq!(row["outcome"], "succeeded", "{row}");
    let deep1 = app.get("/health/deep").await.unwrap_or_default();
    let w1 = deep1["storage"]["written"].as_u64().unwrap_or(0);
    let s = sim_status(&app.http, &sim.url, &sim.token).await;
    let out = Row {
        recorded,
        record_secs,
        changes: row["changes_analysed"].as_i64().unwrap_or(0),
        transitions: row["transitions"].as_i64().unwrap_or(0),
        patterns: row["patterns_found"].as_i64().unwrap_or(0),
        duration_s: row["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        extra_rss_mb: peak - rss0,
        written_per_s: w1.saturating_sub(w0) as f64 / elapsed,
        dropped: deep1["storage"]["dropped_overflow"].as_u64().unwrap_or(0),
        dropped_clients: s["dropped_clients"].as_u64().unwrap_or(0),
    };
    app.stop();
    sim.shutdown().await;
    out
}

async fn drop_db(db: &str) {
    if let Ok(url) = std::env::var("INFLUX_URL") {
        let _ = reqwest::Client::new()
            .post(format!("{url}/query"))
            .form(&[("q", format!("DROP DATABASE \"{db}\""))])
            .send()
            .await;
    }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(async {
        let backends = common::backends("embedded,influxdb,ha_compat");
        let rate: u64 = env_or("RATE", 1_000);
        println!(
            "Analysis of {} days of the large home while {rate} changes/s are offered",
            env_or("DAYS", 30u32)
        );
        println!(
            "| backend | points recorded (s) | changes analysed | transitions | patterns | analysis s | extra RSS MB | written/s meanwhile | dropped | clients dropped |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for backend in backends {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let data: PathBuf = dir.path().to_path_buf();
            let db = format!("bench_analysis_{}", std::process::id());
            let r = analyse_under_load(backend, &data, &db).await;
            if std::env::var_os("KEEP_DB").is_some() {
                // to profile the analysis's reads by hand afterwards
                eprintln!("kept InfluxDB database {db}");
            } else {
                drop_db(&db).await;
            }
            println!(
                "| {} | {} ({:.0}) | {} | {} | {} | {:.1} | {:.1} | {:.0} | {} | {} |",
                backend.name(),
                r.recorded,
                r.record_secs,
                r.changes,
                r.transitions,
                r.patterns,
                r.duration_s,
                r.extra_rss_mb,
                r.written_per_s,
                r.dropped,
                r.dropped_clients
            );
        }
    });
}
