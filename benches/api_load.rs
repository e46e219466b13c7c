//! API load benchmark: a generated home of 1,000 devices and 5,000 entities with 30 days of
//! history, served by the real binary and loaded with `wrk` at 64 connections.
//!
//! ```text
//! INFLUX_URL=http://127.0.0.1:18086 cargo bench --bench api_load
//! ```
//!
//! Patterns: [`PATTERNS`] learned patterns are written into the `patterns` table before HomeIQ
//! starts (as an analysis run leaves them: 60 % time-of-day habits with a month of daily evidence,
//! 40 % sequences with 100 occurrences each), and `GET /api/v1/patterns` is loaded with the
//! panel's first page and a filtered page. Suggestions: one per pattern, written into the
//! `suggestions` table (as a build leaves them: ranked, each with its automation; a tenth of them
//! deployed, so a page looks its automations up in the current states), and `GET
//! /api/v1/suggestions` is loaded with the panel's first page and a filtered one.
//!
//! Needs `wrk` (Debian package) and a real InfluxDB 1.x at `INFLUX_URL`. The mirror is written
//! straight into SQLite and Home Assistant is unreachable, so the registry endpoints answer from
//! the catalog HomeIQ loads from SQLite at start. History: every entity has a point every 2 hours
//! for 30 days (1.8 M points) and `sensor.bench_power` a point every minute (43,200 points).
//! History and aggregate run twice: the same range each time (after the first request, answers
//! come from HomeIQ's history cache) and a new range each request (every one a query of
//! InfluxDB).
//! Requests ask for gzip, as the panel's browser and most HTTP libraries do; the device listing is
//! also loaded plain, for clients that do not.
//! Prints p50/p95/p99 and requests/s per endpoint, `/health` first for reference, and the
//! process's peak RSS. With two CPUs or more HomeIQ runs on CPU 0 and wrk on CPU 1 (`PIN=0`: both
//! unpinned). Environment: `SECS` (default 10) per endpoint, `CONNECTIONS` (64); `HOLD`
//! set: seed, start HomeIQ, print where it is and wait (for experiments by hand); `ONLY`: the
//! runs whose names contain one of these comma-separated words (`/health` always runs, for
//! reference; history is seeded only when a history or aggregate run is chosen). Just the
//! search: `ONLY=entities?q INFLUX_URL=… cargo bench --bench api_load`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use homeiq::registry::record::{Area, Device, EntityEntry, Floor, Label};
use homeiq::registry::{RegistryRows, RegistryStore};
use serde_json::json;

const DEVICES: usize = 1_000;
const ENTITIES: usize = 5_000;
const DAYS: i64 = 30;
/// Patterns seeded: about what a month of a home this size leaves.
const PATTERNS: usize = 1_000;

fn entity_id(i: usize) -> String {
    let domain = ["sensor", "light", "switch", "binary_sensor", "climate"][i % 5];
    format!("{domain}.bench_{i:05}")
}

async fn seed_registry(data_dir: &std::path::Path) {
    let store = RegistryStore::open(&data_dir.join("homeiq.db"))
        .await
        .expect("open mirror");
    let floors: Vec<Floor> = (0..3)
        .map(|f| {
            serde_json::from_value(
                json!({"floor_id": format!("floor_{f}"), "name": format!("Floor {f}"), "level": f}),
            )
            .expect("floor")
        })
        .collect();
    let areas: Vec<Area> = (0..30)
        .map(|a| serde_json::from_value(json!({"area_id": format!("area_{a}"), "name": format!("Room {a}"), "floor_id": format!("floor_{}", a % 3)})).expect("area"))
        .collect();
    let labels: Vec<Label> = (0..10)
        .map(|l| {
            serde_json::from_value(
                json!({"label_id": format!("label_{l}"), "name": format!("Label {l}")}),
            )
            .expect("label")
        })
        .collect();
    const PLATFORMS: [&str; 4] = ["hue", "zha", "shelly", "sonos"];
    let makers = [
        "Philips", "IKEA", "Aqara", "Shelly", "Sonos", "tado", "Eve", "Nanoleaf",
    ];
    let devices: Vec<Device> = (0..DEVICES)
        .map(|d| {
            serde_json::from_value(json!({
                "id": format!("device{d:04}"),
                "name": format!("{} device {d}", makers[d % makers.len()]),
                "manufacturer": makers[d % makers.len()],
                "model": format!("Model {}", d % 17),
                "area_id": format!("area_{}", d % 30),
                "labels": [format!("label_{}", d % 10)],
                "identifiers": [[PLATFORMS[d % 4], format!("id{d}")]],
                "config_entries": ["entry"],
            }))
            .expect("device")
        })
        .collect();
    let entities: Vec<EntityEntry> = (0..ENTITIES)
        .map(|i| {
            serde_json::from_value(json!({
                "id": format!("reg{i:05}"),
                "entity_id": entity_id(i),
                "platform": PLATFORMS[(i / 5) % 4],
                "device_id": format!("device{:04}", i / 5),
                "original_name": format!("Bench entity {i}"),
                "unique_id": format!("u{i}"),
            }))
            .expect("entity")
        })
        .collect();
    for rows in [
        RegistryRows::Floors(floors),
        RegistryRows::Areas(areas),
        RegistryRows::Labels(labels),
        RegistryRows::Devices(devices),
        RegistryRows::Entities(entities),
    ] {
        store.full_sync(rows).await.expect("sync");
    }
    store.close().await.expect("close");
}

/// Writes [`PATTERNS`] patterns into the `patterns` table of the (migrated) `homeiq.db`, as an
/// analysis run stores them: each pattern's JSON with the columns the list orders by.
async fn seed_patterns(data_dir: &std::path::Path, now_us: i64) {
    use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};
    let url = format!("sqlite:{}?mode=rwc", data_dir.join("homeiq.db").display());
    let db = Database::connect(&url).await.expect("connect");
    let txn = db.begin().await.expect("begin");
    let iso = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    let day_us = 86_400_000_000i64;
    for k in 0..PATTERNS {
        let sequence = k % 5 >= 3;
        let confidence = 0.6 + (k % 40) as f64 / 100.0;
        // time-of-day: a light or switch; a sequence: a door or motion sensor, then a light
        let target = entity_id(k * 5 % ENTITIES + 1 + k % 2);
        let (kind, day_type, entities, extra, evidence): (_, _, _, serde_json::Value, Vec<_>) =
            if sequence {
                let trigger = entity_id(k * 5 % ENTITIES + 3);
                let evidence = (0..100i64)
                    .map(|n| {
                        let t = now_us - (DAYS * day_us) + n * 7 * 3_600_000_000 + (k as i64) * 1_000_000;
                        json!({"time": iso(t), "local_date": &iso(t)[..10], "local_time": &iso(t)[11..19], "delay_seconds": 20 + (n * 7 + k as i64) % 70})
                    })
                    .collect();
                (
                    "co_occurrence",
                    "all",
                    json!([{"entity_id": trigger, "state": "on"}, {"entity_id": target, "state": "on"}]),
                    json!({"delay": {"median_seconds": 45, "min_seconds": 20, "max_seconds": 89, "iqr_seconds": 30},
                           "trigger_occurrences": 140, "lift": 12.5}),
                    evidence,
                )
            } else {
                let evidence = (0..DAYS - 5)
                    .map(|d| {
                        let t = now_us - (DAYS - d) * day_us + ((k as i64 * 37) % 1_380) * 60_000_000;
                        json!({"time": iso(t), "local_date": &iso(t)[..10], "local_time": &iso(t)[11..19]})
                    })
                    .collect();
                let minute = (k * 37) % 1_380;
                let hm = |m: usize| format!("{:02}:{:02}", m / 60 % 24, m % 60);
                (
                    "time_of_day",
                    ["all", "weekday", "weekend"][k % 3],
                    json!([{"entity_id": target, "state": if k % 2 == 0 { "on" } else { "off" }}]),
                    json!({"time_window": {"start": hm(minute), "end": hm(minute + 40), "centre": hm(minute + 20), "spread_minutes": 9.5},
                           "eligible_days": DAYS, "chance": 0.02}),
                    evidence,
                )
            };
        let id = format!(
            "{:016x}",
            (k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
        let mut body = json!({
            "id": id, "kind": kind, "entities": entities, "day_type": day_type,
            "occurrences": evidence.len(), "confidence": confidence,
            "first_seen": evidence.first().map(|e| e["time"].clone()),
            "last_seen": evidence.last().map(|e| e["time"].clone()),
            "evidence": evidence,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO patterns (id, kind, day_type, confidence, first_detected_at, run_id, body) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                id.into(),
                kind.into(),
                day_type.into(),
                confidence.into(),
                (now_us / 1_000).into(),
                1i64.into(),
                body.to_string().into(),
            ],
        ))
        .await
        .expect("insert pattern");
    }
    txn.commit().await.expect("commit");
    db.close().await.expect("close");
}

/// Writes one suggestion per pattern into the `suggestions` table, as a build stores them: the
/// proposal as JSON with the columns the list orders by; every tenth one deployed.
async fn seed_suggestions(data_dir: &std::path::Path, now_us: i64) {
    use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};
    let url = format!("sqlite:{}?mode=rwc", data_dir.join("homeiq.db").display());
    let db = Database::connect(&url).await.expect("connect");
    let txn = db.begin().await.expect("begin");
    let iso = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    for k in 0..PATTERNS {
        let target = entity_id(k * 5 % ENTITIES + 1 + k % 2);
        let pattern = format!(
            "{:016x}",
            (k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
        let id = format!("p{pattern}");
        let minute = (k * 37) % 1_380;
        let at = format!("{:02}:{:02}:00", minute / 60, minute % 60);
        let title = format!("Turn on {target} at {}", &at[..5]);
        let explanation = format!(
            "On 23 of the last 30 days {target} went on between {} and {}.",
            &at[..5],
            &at[..5]
        );
        let automation = json!({
            "id": format!("homeiq_{id}"),
            "alias": title,
            "description": format!("Created by HomeIQ (suggestion {id}): {explanation}"),
            "mode": "single",
            "triggers": [{"trigger": "time", "at": at}],
            "conditions": [{"condition": "time", "weekday": ["mon", "tue", "wed", "thu", "fri"]}],
            "actions": [{"action": "homeassistant.turn_on", "target": {"entity_id": [target]}}],
        });
        let score = 0.95 - (k as f64) * 0.0005;
        let body = json!({
            "kind": "time_of_day", "source": "pattern", "pattern_id": pattern,
            "area_id": format!("area_{}", k % 20), "entities": [target],
            "title": title, "explanation": explanation, "wording": "template",
            "evidence": {"occurrences": 23, "out_of": 30, "confidence": 0.77,
                         "first_seen": iso(now_us - DAYS * 86_400_000_000),
                         "last_seen": iso(now_us - 86_400_000_000)},
            "score": score, "notify_only": null, "automation": automation,
        });
        let deployed = k % 10 == 0;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO suggestions (id, source, status, score, body, deployed, created_at, updated_at) \
             VALUES (?, 'pattern', ?, ?, ?, ?, ?, ?)",
            [
                id.into(),
                if deployed { "deployed" } else { "new" }.into(),
                score.into(),
                body.to_string().into(),
                deployed.then(|| automation.to_string()).into(),
                (now_us / 1_000).into(),
                (now_us / 1_000).into(),
            ],
        ))
        .await
        .expect("insert suggestion");
    }
    txn.commit().await.expect("commit");
    db.close().await.expect("close");
}

async fn seed_history(influx: &str, db: &str, now_us: i64) -> usize {
    let http = reqwest::Client::new();
    let q = |q: String| {
        http.post(format!("{influx}/query"))
            .form(&[("q", q)])
            .send()
    };
    q(format!("CREATE DATABASE \"{db}\""))
        .await
        .expect("create db");
    let start = now_us - DAYS * 86_400_000_000;
    let mut written = 0;
    let mut body = String::new();
    let flush = |body: &mut String| {
        let text = std::mem::take(body);
        let http = http.clone();
        let url = format!("{influx}/write?db={db}&precision=u");
        async move {
            let r = http.post(url).body(text).send().await.expect("write");
            assert!(r.status().is_success(), "write: {}", r.status());
        }
    };
    // every entity every 2 hours
    for step in 0..(DAYS * 12) {
        let t = start + step * 7_200_000_000;
        for i in 0..ENTITIES {
            let id = entity_id(i);
            let domain = id.split('.').next().unwrap_or("sensor");
            let value = ((i as i64 + step) % 100) as f64 / 4.0;
            body.push_str(&format!(
                "{domain},entity_id={id},device_id=device{:04},area_id=area_{} state=\"{value}\",value={value},friendly_name_str=\"Bench entity {i}\" {t}\n",
                i / 5,
                (i / 5) % 30
            ));
            written += 1;
        }
        if body.len() > 4 << 20 {
            flush(&mut body).await;
        }
    }
    // one busy power sensor, every minute
    for m in 0..(DAYS * 1440) {
        let t = start + m * 60_000_000;
        let value = 200.0 + ((m * 37) % 1000) as f64 / 10.0;
        body.push_str(&format!(
            "sensor,entity_id=sensor.bench_power,unit=W,device_class=power state=\"{value}\",value={value} {t}\n"
        ));
        written += 1;
        if body.len() > 4 << 20 {
            flush(&mut body).await;
        }
    }
    flush(&mut body).await;
    written
}

struct Run {
    name: &'static str,
    skipped: bool,
    rps: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    errors: String,
}

/// How a load run asks for its answers.
#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    /// `Accept-Encoding: gzip`, as browsers (the panel) and most HTTP libraries ask.
    Gzip,
    /// No `Accept-Encoding`: plain JSON.
    Plain,
}

fn wrk(
    name: &'static str,
    url: &str,
    secs: u64,
    connections: u64,
    script: &std::path::Path,
    encoding: Encoding,
) -> Run {
    if !selected(name) {
        return Run {
            name,
            skipped: true,
            rps: f64::NAN,
            p50: f64::NAN,
            p95: f64::NAN,
            p99: f64::NAN,
            errors: String::new(),
        };
    }
    let mut command = if pinning() {
        let mut c = Command::new("taskset");
        c.args(["-c", "1", "wrk", "-t1"]);
        c
    } else {
        let mut c = Command::new("wrk");
        c.arg(format!("-t{}", connections.clamp(1, 2)));
        c
    };
    if encoding == Encoding::Gzip {
        command.args(["-H", "Accept-Encoding: gzip"]);
    }
    let out = command
        .args([
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--timeout",
            "10s",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .expect("run wrk (apt install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let result = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no wrk result for {name}: {text}"));
    eprintln!("{name}: {result}");
    let f: Vec<f64> = result
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .collect::<Vec<_>>()
        .join("; ");
    Run {
        name,
        skipped: false,
        rps: f[0] / (f[1] / 1e6),
        p50: f[2],
        p95: f[3],
        p99: f[4],
        errors,
    }
}

/// Whether the run `name` is chosen by `ONLY` (every run when it is not set).
fn selected(name: &str) -> bool {
    name == "/health"
        || std::env::var("ONLY").map_or(true, |only| {
            only.split(',')
                .map(str::trim)
                .any(|w| !w.is_empty() && name.contains(w))
        })
}

/// Whether HomeIQ runs on CPU 0 and wrk on CPU 1 (`PIN`, default on with two CPUs or more and
/// `taskset` installed): a load generator sharing the server's cores steals its time slices, and
/// the tail latencies then measure the scheduler. HomeIQ sizes its HTTP workers by its affinity
/// (one here).
fn pinning() -> bool {
    *PINNED
}

static PINNED: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
    std::env::var("PIN").map_or_else(
        |_| {
            std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
                && Command::new("taskset")
                    .arg("-V")
                    .output()
                    .is_ok_and(|o| o.status.success())
        },
        |v| v != "0",
    )
});

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

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let influx = std::env::var("INFLUX_URL").expect("INFLUX_URL (a real InfluxDB 1.x)");
    let secs: u64 = std::env::var("SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let connections: u64 = std::env::var("CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let db = format!("bench_api_{}", std::process::id());
    let now_us = chrono::Utc::now().timestamp_micros();

    let started = Instant::now();
    seed_registry(&data).await;
    seed_patterns(&data, now_us).await;
    seed_suggestions(&data, now_us).await;
    let history_chosen = ["history", "aggregate", "InfluxDB"]
        .iter()
        .any(|w| std::env::var("ONLY").map_or(true, |only| only.contains(w)));
    let points = if history_chosen {
        seed_history(&influx, &db, now_us).await
    } else {
        0
    };
    eprintln!(
        "seeded {DEVICES} devices, {ENTITIES} entities, {PATTERNS} patterns and suggestions, {points} points in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let pinned = pinning();
    let mut child = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", env!("CARGO_BIN_EXE_homeiq")]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_homeiq"))
    };
    let mut child = child
        .arg("serve")
        .env_clear()
        .env("HOMEIQ_OPTIONS_FILE", dir.path().join("none.json"))
        .env("HOMEIQ_DATA_DIR", &data)
        .env("HOMEIQ_LOG_LEVEL", "warn")
        .env("HOMEIQ_HTTP__BIND", "127.0.0.1")
        .env("HOMEIQ_HTTP__PORT", port.to_string())
        .env("HOMEIQ_HA__URL", format!("http://127.0.0.1:{dead}"))
        .env("HOMEIQ_HA__TOKEN", "unused")
        .env("HOMEIQ_INFLUXDB__URL", &influx)
        .env("HOMEIQ_INFLUXDB__DATABASE", &db)
        .env("HOMEIQ_API__RATE_LIMIT_PER_SECOND", "0")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn homeiq");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http
            .get(format!("{base}/api/v1/devices?limit=1"))
            .send()
            .await
            && let Ok(v) = r.json::<serde_json::Value>().await
            && v["total"] == DEVICES
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "homeiq did not serve the seeded catalog"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle_rss = peak_rss_mb(child.id());
    if std::env::var_os("HOLD").is_some() {
        // for experiments by hand: keep HomeIQ and the seeded database until killed
        eprintln!(
            "HOLD: HomeIQ at {base}, InfluxDB database {db}, pid {}",
            child.id()
        );
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }

    let script = dir.path().join("report.lua");
    let mut f = std::fs::File::create(&script).expect("script");
    f.write_all(
        b"done = function(summary, latency, requests)\n  io.write(string.format(\"RESULT %d %d %.3f %.3f %.3f\\n\", summary.requests, summary.duration, latency:percentile(50)/1000, latency:percentile(95)/1000, latency:percentile(99)/1000))\nend\n",
    )
    .expect("write script");
    let iso = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    let day_ago = iso(now_us - 86_400_000_000);
    let month_ago = iso(now_us - DAYS * 86_400_000_000);
    let end = iso(now_us);
    let cases: Vec<(&'static str, String)> = vec![
        ("/health", format!("{base}/health")),
        (
            "devices?limit=100",
            format!("{base}/api/v1/devices?limit=100"),
        ),
        (
            "entities?q=bench 42",
            format!("{base}/api/v1/entities?q=bench%2042"),
        ),
        ("patterns", format!("{base}/api/v1/patterns")),
        (
            "patterns?kind=co_occurrence&domain=light&limit=20",
            format!("{base}/api/v1/patterns?kind=co_occurrence&domain=light&limit=20"),
        ),
        ("suggestions", format!("{base}/api/v1/suggestions")),
        (
            "suggestions?status=deployed&limit=50",
            format!("{base}/api/v1/suggestions?status=deployed&limit=50"),
        ),
        (
            "history (1 entity, 24 h)",
            format!(
                "{base}/api/v1/history?entity_id=sensor.bench_power&start={day_ago}&end={end}&limit=10000"
            ),
        ),
        (
            "aggregate (1 entity, 30 d)",
            format!(
                "{base}/api/v1/history/aggregate?entity_id=sensor.bench_power&start={month_ago}&end={end}"
            ),
        ),
    ];
    // check each answers 200 before loading it
    for (name, url) in cases.iter().filter(|(name, _)| selected(name)) {
        let r = http.get(url).send().await.expect("request");
        assert!(r.status().is_success(), "{name}: {}", r.status());
        if *name == "suggestions" {
            // every seeded suggestion was read back (a body HomeIQ could not read is left out)
            let v: serde_json::Value = r.json().await.expect("suggestions JSON");
            assert_eq!(v["total"], PATTERNS, "seeded suggestions served");
        }
    }
    let mut runs: Vec<Run> = cases
        .iter()
        .map(|(name, url)| wrk(name, url, secs, connections, &script, Encoding::Gzip))
        .collect();
    // the same listing for a client that does not take gzip: 61 KB of JSON per answer
    runs.push(wrk(
        "devices?limit=100, plain (no gzip)",
        &cases[1].1,
        secs,
        connections,
        &script,
        Encoding::Plain,
    ));
    // the same history page asked of InfluxDB directly: HomeIQ's share of the cost
    let raw_q = format!(
        "SELECT * FROM \"sensor\" WHERE (\"entity_id\" = 'sensor.bench_power') AND time >= {} AND time <= {} ORDER BY time ASC LIMIT 10002",
        (now_us - 86_400_000_000) / 1_000_000 * 1_000_000_000,
        now_us / 1_000_000 * 1_000_000_000
    );
    let raw_url = format!(
        "{influx}/query?db={db}&epoch=u&q={}",
        url::form_urlencoded::byte_serialize(raw_q.as_bytes()).collect::<String>()
    );
    runs.push(wrk(
        "InfluxDB alone: the same 24 h query",
        &raw_url,
        secs,
        connections,
        &script,
        Encoding::Gzip,
    ));
    // every request a range of its own (start moves by a second each time): the history cache
    // never answers, each request is a query of InfluxDB
    let moving = dir.path().join("moving.lua");
    let template = |path: &str, span_secs: i64| {
        format!(
            "counter = 0\nrequest = function()\n  counter = counter + 1\n  local s = os.date(\"!%Y-%m-%dT%H:%M:%SZ\", {end_s} - {span_secs} - counter)\n  return wrk.format(nil, \"{path}&start=\" .. s .. \"&end={end}\")\nend\n",
            end_s = now_us / 1_000_000,
        )
    };
    let uncached: [(&'static str, String, i64); 2] = [
        (
            "history (1 entity, 24 h), a new range each request",
            "/api/v1/history?entity_id=sensor.bench_power&limit=10000".to_owned(),
            86_400,
        ),
        (
            "aggregate (1 entity, 30 d), a new range each request",
            "/api/v1/history/aggregate?entity_id=sensor.bench_power".to_owned(),
            DAYS * 86_400 - 3_600,
        ),
    ];
    for (name, path, span) in uncached {
        let mut f = std::fs::File::create(&moving).expect("script");
        f.write_all(template(&path, span).as_bytes())
            .and_then(|()| f.write_all(&std::fs::read(&script).expect("read script")))
            .expect("write script");
        runs.push(wrk(name, &base, secs, connections, &moving, Encoding::Gzip));
        let one_name = if span == 86_400 {
            "history, a new range each request, 1 connection"
        } else {
            "aggregate, a new range each request, 1 connection"
        };
        runs.push(wrk(
            one_name,
            &base,
            secs.min(5),
            1,
            &moving,
            Encoding::Gzip,
        ));
    }
    // one client at a time: latency without queueing
    for k in [1, 2, 3, 5, 7, 8] {
        let name = match k {
            1 => "devices?limit=100, 1 connection",
            2 => "entities?q=bench 42, 1 connection",
            3 => "patterns, 1 connection",
            5 => "suggestions, 1 connection",
            7 => "history (1 entity, 24 h), 1 connection",
            _ => "aggregate (1 entity, 30 d), 1 connection",
        };
        runs.push(wrk(
            name,
            &cases[k].1,
            secs.min(5),
            1,
            &script,
            Encoding::Gzip,
        ));
    }
    let peak = peak_rss_mb(child.id());
    let _ = child.kill();
    let _ = child.wait();

    let health = runs[0].rps;
    println!(
        "\nAPI load, {connections} connections, {secs} s each ({}, Accept-Encoding: gzip unless marked plain), {DEVICES} devices / {ENTITIES} entities / {points} points",
        if pinned {
            "HomeIQ on CPU 0, wrk -t1 on CPU 1"
        } else {
            "unpinned, wrk -t2"
        }
    );
    println!("| endpoint | req/s | vs /health | p50 ms | p95 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in runs.iter().filter(|r| !r.skipped) {
        println!(
            "| {} | {:.0} | {:.0} % | {:.2} | {:.2} | {:.2} |{}",
            r.name,
            r.rps,
            100.0 * r.rps / health,
            r.p50,
            r.p95,
            r.p99,
            if r.errors.is_empty() {
                String::new()
            } else {
                format!(" {}", r.errors)
            }
        );
    }
    println!("RSS: {idle_rss:.1} MB after start, peak {peak:.1} MB under load");
    let _ = reqwest::Client::new()
        .post(format!("{influx}/query"))
        .form(&[("q", format!("DROP DATABASE \"{db}\""))])
        .send()
        .await;
}
