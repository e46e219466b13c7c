//! One day's maintenance under live load (issue 18: "daily maintenance (rollups + retention) for
//! 2,000 entities ≤ 10 s CPU, ingestion unaffected: no drops, write latency p99 within 2× of
//! idle"), against the release binary on each backend.
//!
//! ```text
//! INFLUX_URL=http://127.0.0.1:18086 cargo bench --bench maintenance
//! ```
//!
//! For each backend (`BACKENDS=embedded,influxdb`; InfluxDB in the `homeiq` schema, only with
//! `INFLUX_URL`):
//!
//! 1. **Dataset**, written through the stores' bulk paths before HomeIQ starts (the embedded
//!    writer; InfluxDB's `/write` in batches of 10,000 lines): `ENTITIES` (2,000) entities, four
//!    fifths numeric sensors and one fifth on/off binary sensors, a point each every `STEP_SECS`
//!    (60) s over the `RAW_DAYS` + 1 days (`RAW_DAYS` = 1) ending at the last full hour.
//! 2. **Yesterday's state**: a HomeIQ with raw retention off (`raw_days: 0`) and the analysis off
//!    builds its rollups (the first start's catch-up, not measured) and stops; then the bench
//!    moves the rollups' cursor in `rollups.db` back by one day (and the composed days to the
//!    local day holding it, deleting the 5-minute and hourly rows after the cursor and the daily
//!    rows after the composed days), so the rollups stand where they stood a day ago. The carry
//!    (the last point before the cursor, per entity) is left: it changes values, not work.
//! 3. **The day's maintenance** (measured): a fresh HomeIQ with `raw_days: RAW_DAYS` on the same
//!    data, recording a load-generating simulator (large home, `RATE` = 1,000 changes/s). Its
//!    first rollup pass rolls up the day's hours (5-minute and hourly periods) and composes the
//!    local day; retention runs 5 minutes after the start (its own schedule) and deletes the
//!    raw points older than `RAW_DAYS` days: one day of the dataset. Between the two the load
//!    runs alone (the idle window).
//! 4. **Control**: HomeIQ started again on the same data and load, nothing due, for as long as
//!    the rollups took in 3: its CPU (start-up and ingest) is subtracted from 3's.
//!
//! CPU is user + system from `/proc/<pid>/stat` of HomeIQ and of InfluxDB (`INFLUX_PID`, else the
//! `influxd` listening on `INFLUX_URL`'s port; the server is shared, so its figure includes
//! whatever else used it meanwhile). Rollups: the measured start until the rollups caught up,
//! minus the control. Retention: its run, minus the idle window's rate over its duration.
//! Write latency: p99 of `homeiq_storage_write_duration_seconds` (`/metrics`, interpolated within
//! its buckets) during the idle window, the rollups and the retention run. Dropped: the writer's
//! `dropped_overflow` and the simulator's dropped clients. Runs are started between minute 3
//! and 45 of an hour, so no hourly pass of the live load falls into them. `HOMEIQ_BIN=` measures
//! another build. Prints a table; exits non-zero only when a run failed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Timelike};
use chrono_tz::Tz;
use homeiq::simulate::{Profile, SimulatorOptions, spawn};
use homeiq::store::embedded;
use homeiq::store::influx::encode_point;
use homeiq::store::point::{FieldValue, Point};
use serde_json::Value;

use common::{
    Backend, cpu_secs, deep, env_or, influx_pid, influx_query, influx_write, push_waiting,
    spawn_homeiq, stop_process,
};

/// The simulator runs in this process, with the allocator `homeiq simulate` ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;
/// The home's zone (the simulator's `get_config`): local days start on a whole UTC hour.
const ZONE: Tz = chrono_tz::Europe::Amsterdam;

struct Size {
    entities: usize,
    step_secs: i64,
    raw_days: i64,
    rate: u64,
    quiet_secs: u64,
}

fn entity(i: usize) -> String {
    if i % 5 == 4 {
        format!("binary_sensor.maint_{i:04}")
    } else {
        format!("sensor.maint_{i:04}")
    }
}

fn point(i: usize, t: i64, k: i64) -> Point {
    if i % 5 == 4 {
        let on = (k / (7 + (i as i64 % 13))) % 2 == 0;
        return Point::new("binary_sensor", t)
            .tag("entity_id", entity(i))
            .tag("device_class", "motion")
            .field(
                "state",
                FieldValue::Str((if on { "on" } else { "off" }).into()),
            );
    }
    let value = ((k * 37 + i as i64 * 11) % 1_000) as f64 / 10.0
        + 20.0 * ((k % 1_440) as f64 / 229.0).sin();
    let value = (value * 100.0).round() / 100.0;
    Point::new("sensor", t)
        .tag("entity_id", entity(i))
        .tag("unit", "°C")
        .tag("device_class", "temperature")
        .field("state", FieldValue::Str(format!("{value:.2}")))
        .field("value", FieldValue::Float(value))
        .field("state_class_str", FieldValue::Str("measurement".into()))
}

/// Every point of `[from_us, to_us)`, in time order, in chunks of 10,000 handed to `sink`.
fn generate(size: &Size, from_us: i64, to_us: i64, mut sink: impl FnMut(Vec<Point>)) -> usize {
    let step = size.step_secs * 1_000_000;
    let mut chunk = Vec::with_capacity(10_000);
    let mut n = 0;
    let (mut t, mut k) = (from_us, 0i64);
    while t < to_us {
        for i in 0..size.entities {
            chunk.push(point(i, t + i as i64, k));
            if chunk.len() == 10_000 {
                n += chunk.len();
                sink(std::mem::take(&mut chunk));
            }
        }
        t += step;
        k += 1;
    }
    n += chunk.len();
    sink(chunk);
    n
}

/// Writes the dataset through the backend's bulk path; returns the points.
async fn seed(backend: Backend, data: &Path, db: &str, size: &Size, from: i64, to: i64) -> usize {
    match backend {
        Backend::Embedded => {
            let (writer, _history) = embedded::open(
                &embedded::history_path(data),
                embedded::EmbeddedOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("open history.db: {e}"));
            let n = generate(size, from, to, |chunk| {
                push_waiting(chunk, || writer.wait_for_room(), |p| writer.push(p));
            });
            assert_eq!(writer.stats().counts.dropped_overflow, 0, "dropped");
            let report = writer.shutdown(Duration::from_secs(3_600)).await;
            assert_eq!(report.left, 0, "{report:?}");
            n
        }
        Backend::Influxdb | Backend::HaCompat => {
            let url = influx_url();
            let http = reqwest::Client::new();
            influx_query(&http, &url, format!("CREATE DATABASE \"{db}\"")).await;
            let mut bodies = Vec::new();
            let n = generate(size, from, to, |chunk| {
                let mut body = String::new();
                for p in &chunk {
                    let _ = encode_point(p, &mut body);
                    body.push('\n');
                }
                bodies.push(body);
            });
            for body in bodies {
                influx_write(&http, &url, db, body).await;
            }
            n
        }
    }
}

fn influx_url() -> String {
    std::env::var("INFLUX_URL").unwrap_or_else(|_| panic!("INFLUX_URL: needed for influxdb"))
}

/// HomeIQ as its own process on `data`, recording the simulator at `ha_url`.
struct App {
    child: Child,
    base: String,
    http: reqwest::Client,
    started: Instant,
}

impl App {
    fn start(backend: Backend, data: &Path, db: &str, ha: (&str, &str), raw_days: i64) -> App {
        let mut env = vec![
            ("HOMEIQ_HA__URL", ha.0.to_owned()),
            ("HOMEIQ_HA__TOKEN", ha.1.to_owned()),
            ("HOMEIQ_IMPORT__ON_FIRST_START", "false".to_owned()),
            ("HOMEIQ_BACKFILL__ENABLED", "false".to_owned()),
            // raw_days below the analysis window needs the analysis off (config validation)
            ("HOMEIQ_ANALYSIS__ENABLED", "false".to_owned()),
            ("HOMEIQ_RETENTION__RAW_DAYS", raw_days.to_string()),
        ];
        match backend {
            Backend::Embedded => env.push(("HOMEIQ_STORAGE", "embedded".to_owned())),
            Backend::Influxdb | Backend::HaCompat => env.extend([
                ("HOMEIQ_STORAGE", "external".to_owned()),
                ("HOMEIQ_INFLUXDB__URL", influx_url()),
                ("HOMEIQ_INFLUXDB__DATABASE", db.to_owned()),
                ("HOMEIQ_INFLUXDB__SCHEMA", "homeiq".to_owned()),
            ]),
        }
        let log = data.join("homeiq.log");
        let started = Instant::now();
        let (child, base) = spawn_homeiq(data, &env, Some(&log));
        App {
            child,
            base,
            http: reqwest::Client::new(),
            started,
        }
    }

    async fn deep(&self) -> Value {
        deep(&self.http, &self.base).await.unwrap_or_default()
    }

    /// Polls `/health/deep` until `done` holds (at most `limit`).
    async fn until(&self, what: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let d = self.deep().await;
            if done(&d) {
                return d;
            }
            assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The write-latency histogram: (upper bound s, cumulative count) per bucket.
    async fn latency(&self) -> Vec<(f64, u64)> {
        let Ok(r) = self.http.get(format!("{}/metrics", self.base)).send().await else {
            return Vec::new();
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("homeiq_storage_write_duration_seconds_bucket"))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, l.rsplit(' ').next()?.parse().ok()?))
            })
            .collect()
    }

    fn cpu(&self) -> f64 {
        cpu_secs(self.child.id())
    }

    fn stop(mut self) {
        stop_process(&mut self.child, Duration::from_secs(20));
    }
}

/// A CPU reading of HomeIQ and InfluxDB, with the time and the latency histogram.
struct Mark {
    at: Instant,
    homeiq: f64,
    influx: f64,
    latency: Vec<(f64, u64)>,
}

async fn mark(app: &App, influx: Option<u32>) -> Mark {
    let latency = app.latency().await;
    Mark {
        at: Instant::now(),
        homeiq: app.cpu(),
        influx: influx.map_or(0.0, cpu_secs),
        latency,
    }
}

/// (seconds, HomeIQ CPU s, InfluxDB CPU s) from `a` to `b`.
fn between(a: &Mark, b: &Mark) -> (f64, f64, f64) {
    (
        b.at.duration_since(a.at).as_secs_f64(),
        b.homeiq - a.homeiq,
        b.influx - a.influx,
    )
}

/// The 99th percentile of the writes between two histograms, ms (linear within a bucket);
/// `None` without writes.
fn p99_ms(a: &[(f64, u64)], b: &[(f64, u64)]) -> Option<f64> {
    let delta: Vec<(f64, u64)> = b
        .iter()
        .map(|(le, n)| {
            let before = a.iter().find(|x| x.0 == *le).map_or(0, |x| x.1);
            (*le, n.saturating_sub(before))
        })
        .collect();
    let total = delta.last()?.1;
    if total == 0 {
        return None;
    }
    let want = total as f64 * 0.99;
    let mut lower = (0.0, 0u64);
    for (le, n) in delta {
        if n as f64 >= want {
            if le.is_infinite() {
                return Some(lower.0 * 1e3);
            }
            let share = (want - lower.1 as f64) / (n - lower.1).max(1) as f64;
            return Some((lower.0 + (le - lower.0) * share) * 1e3);
        }
        lower = (le, n);
    }
    None
}

/// Moves the rollups back by one day: cursor to `cursor_us`, composed days to the local day
/// holding it, and the rows after them deleted (HomeIQ stopped).
fn rewind(data: &Path, cursor_us: i64) {
    let day = ZONE
        .timestamp_micros(cursor_us)
        .single()
        .and_then(|t| {
            let midnight = t.date_naive().and_hms_opt(0, 0, 0)?;
            ZONE.from_local_datetime(&midnight).earliest()
        })
        .map(|t| t.timestamp_micros())
        .unwrap_or_else(|| panic!("no local day for {cursor_us}"));
    let conn = rusqlite::Connection::open(data.join("rollups.db"))
        .unwrap_or_else(|e| panic!("rollups.db: {e}"));
    let tiers = "(1, 2)"; // 5-minute and hourly
    let sql = format!(
        "BEGIN;
         UPDATE meta SET value = {cursor_us} WHERE key = 'cursor_us';
         UPDATE meta SET value = {day} WHERE key = 'days_until_us';
         DELETE FROM numeric WHERE tier IN {tiers} AND start_us >= {cursor_us};
         DELETE FROM states WHERE tier IN {tiers} AND start_us >= {cursor_us};
         DELETE FROM numeric WHERE tier = 3 AND start_us >= {day};
         DELETE FROM states WHERE tier = 3 AND start_us >= {day};
         COMMIT;
         PRAGMA wal_checkpoint(TRUNCATE);"
    );
    conn.execute_batch(&sql)
        .unwrap_or_else(|e| panic!("rewind rollups.db: {e}"));
}

/// One backend's measured day.
struct Row {
    points: usize,
    read: u64,
    roll_wall: f64,
    roll_cpu: (f64, f64),
    ret_wall: f64,
    ret_cpu: (f64, f64),
    deleted: String,
    idle_cpu_per_s: (f64, f64),
    quiet_per_minute: (f64, f64),
    p99: (Option<f64>, Option<f64>, Option<f64>),
    dropped: u64,
    dropped_clients: u64,
    written_per_s: f64,
}

/// Waits until the minute of the hour lets a run of ~8 minutes finish before the next hourly
/// pass (minute 2 of the next hour) sees the live load.
async fn wait_for_quiet_minute() {
    let mut said = false;
    loop {
        let m = chrono::Utc::now().minute();
        if (3..=45).contains(&m) {
            return;
        }
        if !said {
            println!("  (minute {m} of the hour: waiting for minute 3)");
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

async fn run(backend: Backend, size: &Size, dir: &Path) -> Row {
    let db = format!("bench_maint_{}", std::process::id());
    let now = chrono::Utc::now().timestamp_micros();
    let end = now - now.rem_euclid(HOUR_US);
    let from = end - (size.raw_days + 1) * DAY_US;
    let t = Instant::now();
    let points = seed(backend, dir, &db, size, from, end).await;
    println!(
        "  {}: {points} points written in {:.0} s",
        backend.name(),
        t.elapsed().as_secs_f64()
    );

    // yesterday's state: the rollups caught up over the dataset, then moved back a day
    let quiet = spawn(SimulatorOptions {
        port: 0,
        profile: Profile::Small,
        time_zone: ZONE,
        quiet_sensors: true,
        report_secs: 3_600.0,
        ..SimulatorOptions::default()
    })
    .unwrap_or_else(|e| panic!("simulator: {e}"));
    let app = App::start(backend, dir, &db, (&quiet.url, &quiet.token), 0);
    let built = common::wait_rolled_up(&app.base, Duration::from_secs(3_600)).await;
    println!("  catch-up over the dataset (not measured): {built:.0} s");
    // the rollups' pass with nothing due (every minute, all day), no load: HomeIQ's CPU per minute
    let influx = match backend {
        Backend::Influxdb | Backend::HaCompat => influx_pid(),
        Backend::Embedded => None,
    };
    let q0 = mark(&app, influx).await;
    tokio::time::sleep(Duration::from_secs(size.quiet_secs)).await;
    let q1 = mark(&app, influx).await;
    let (quiet_s, quiet_h, quiet_i) = between(&q0, &q1);
    let per_minute = (quiet_h / quiet_s * 60.0, quiet_i / quiet_s * 60.0);
    app.stop();
    quiet.shutdown().await;
    let cursor = end - DAY_US;
    rewind(dir, cursor);

    let sim = spawn(SimulatorOptions {
        port: 0,
        rate: Some(size.rate),
        profile: Profile::Large,
        seed: 18,
        time_zone: ZONE,
        report_secs: 3_600.0,
        ..SimulatorOptions::default()
    })
    .unwrap_or_else(|e| panic!("simulator: {e}"));
    wait_for_quiet_minute().await;

    // the day's maintenance
    let app = App::start(backend, dir, &db, (&sim.url, &sim.token), size.raw_days);
    let m0 = Mark {
        at: app.started,
        homeiq: 0.0,
        influx: influx.map_or(0.0, cpu_secs),
        latency: Vec::new(),
    };
    let rolled = app
        .until("the day's rollups", Duration::from_secs(1_800), |d| {
            let r = &d["rollups"];
            r["counts"]["days"].as_u64().unwrap_or(0) >= 1
                && r["catching_up"] == false
                && r["lag_secs"]
                    .as_f64()
                    .is_some_and(|l| l < HOUR_US as f64 / 1e6)
        })
        .await;
    let m1 = mark(&app, influx).await;
    let read = rolled["rollups"]["counts"]["points_read"]
        .as_u64()
        .unwrap_or(0);
    let next_run = rolled["retention"]["next_run_at"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| panic!("no retention run scheduled: {}", rolled["retention"]));
    let to_retention = (next_run - chrono::Utc::now())
        .to_std()
        .unwrap_or_else(|_| panic!("the retention ran before the rollups were done"));
    // the load alone: from 5 s after the rollups until 2 s before the retention
    tokio::time::sleep(Duration::from_secs(5).min(to_retention)).await;
    let i0 = mark(&app, influx).await;
    let w0 = app.deep().await["storage"]["written"].as_u64().unwrap_or(0);
    tokio::time::sleep(to_retention.saturating_sub(Duration::from_secs(7))).await;
    let i1 = mark(&app, influx).await;
    let w1 = app.deep().await["storage"]["written"].as_u64().unwrap_or(0);
    let (idle_s, idle_h, idle_i) = between(&i0, &i1);
    let done = app
        .until("the retention run", Duration::from_secs(1_800), |d| {
            !d["retention"]["last_run"].is_null()
        })
        .await;
    let r2 = mark(&app, influx).await;
    let run = &done["retention"]["last_run"];
    assert_eq!(run["outcome"], "done", "{run}");
    let (ret_s, ret_h, ret_i) = between(&i1, &r2);
    let ret_cpu = (
        ret_h - idle_h / idle_s * ret_s,
        ret_i - idle_i / idle_s * ret_s,
    );
    let deleted = match backend {
        Backend::Embedded => format!("{} points", run["points_deleted"]),
        Backend::Influxdb | Backend::HaCompat => format!("{} shards", run["shards_dropped"]),
    };
    let end_deep = app.deep().await;
    let dropped = end_deep["storage"]["dropped_overflow"]
        .as_u64()
        .unwrap_or(0);
    let p99 = (
        p99_ms(&i0.latency, &i1.latency),
        p99_ms(&m0.latency, &m1.latency),
        p99_ms(&i1.latency, &r2.latency),
    );
    let roll_wall = m1.at.duration_since(app.started).as_secs_f64();
    app.stop();

    // control: the same start and load with nothing due, as long as the rollups took
    let control = App::start(backend, dir, &db, (&sim.url, &sim.token), size.raw_days);
    let c0 = influx.map_or(0.0, cpu_secs);
    tokio::time::sleep(Duration::from_secs_f64(roll_wall)).await;
    let (c_h, c_i) = (control.cpu(), influx.map_or(0.0, cpu_secs) - c0);
    let c_deep = control.deep().await;
    assert!(
        c_deep["rollups"]["counts"]["chunks"].as_u64().unwrap_or(0) <= 1,
        "the control rolled up: {}",
        c_deep["rollups"]
    );
    control.stop();
    let (_, roll_h, roll_i) = between(&m0, &m1);
    let status = reqwest::Client::new()
        .get(format!("{}/api/simulator/status", sim.url))
        .bearer_auth(&sim.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("simulator status: {e}"))
        .json::<Value>()
        .await
        .unwrap_or_else(|e| panic!("simulator status: {e}"));
    sim.shutdown().await;
    if backend != Backend::Embedded {
        influx_query(
            &reqwest::Client::new(),
            &influx_url(),
            format!("DROP DATABASE \"{db}\""),
        )
        .await;
    }
    Row {
        points,
        read,
        roll_wall,
        roll_cpu: (roll_h - c_h, roll_i - c_i),
        ret_wall: run["duration_ms"].as_f64().unwrap_or(0.0) / 1e3,
        ret_cpu,
        deleted,
        idle_cpu_per_s: (idle_h / idle_s, idle_i / idle_s),
        quiet_per_minute: per_minute,
        p99,
        dropped,
        dropped_clients: status["dropped_clients"].as_u64().unwrap_or(0),
        written_per_s: w1.saturating_sub(w0) as f64 / idle_s,
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}"))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(async {
        let size = Size {
            entities: env_or("ENTITIES", 2_000),
            step_secs: env_or("STEP_SECS", 60),
            raw_days: env_or("RAW_DAYS", 1),
            rate: env_or("RATE", 1_000),
            quiet_secs: env_or("QUIET_SECS", 180),
        };
        let backends = common::backends("embedded,influxdb");
        // the dataset is written in the homeiq schema's lines
        assert!(
            !backends.contains(&Backend::HaCompat),
            "BACKENDS: ha_compat is not measured here"
        );
        println!(
            "One day's maintenance of {} entities (a point every {} s, raw_days {}) while {} changes/s are recorded; load average {}",
            size.entities,
            size.step_secs,
            size.raw_days,
            size.rate,
            load_average()
        );
        let mut rows = Vec::new();
        for backend in backends {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let path: PathBuf = dir.path().to_path_buf();
            let row = run(backend, &size, &path).await;
            rows.push((backend, row, load_average()));
        }
        println!(
            "| backend | points | rollups: points read, wall s | rollups CPU s HomeIQ / InfluxDB | retention: deleted, wall s | retention CPU s HomeIQ / InfluxDB | day's CPU s HomeIQ + InfluxDB | no load: CPU s/min HomeIQ / InfluxDB (× 1,440) | ingest CPU s/s idle HomeIQ / InfluxDB | written/s | write p99 ms idle / rollups / retention | dropped (points, clients) | load avg |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (backend, r, load) in rows {
            println!(
                "| {} | {} | {}, {:.1} | {:.2} / {:.2} | {}, {:.1} | {:.2} / {:.2} | {:.2} | {:.3} / {:.3} ({:.0}) | {:.3} / {:.3} | {:.0} | {} / {} / {} | {}, {} | {} |",
                backend.name(),
                r.points,
                r.read,
                r.roll_wall,
                r.roll_cpu.0,
                r.roll_cpu.1,
                r.deleted,
                r.ret_wall,
                r.ret_cpu.0,
                r.ret_cpu.1,
                r.roll_cpu.0 + r.roll_cpu.1 + r.ret_cpu.0 + r.ret_cpu.1,
                r.quiet_per_minute.0,
                r.quiet_per_minute.1,
                (r.quiet_per_minute.0 + r.quiet_per_minute.1) * 1_440.0,
                r.idle_cpu_per_s.0,
                r.idle_cpu_per_s.1,
                r.written_per_s,
                ms(r.p99.0),
                ms(r.p99.1),
                ms(r.p99.2),
                r.dropped,
                r.dropped_clients,
                load
            );
        }
    });
}
