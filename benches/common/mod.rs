//! What the benchmarks share: a deterministic home of ~2,000 entities and InfluxDB helpers.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use homeiq::config::InfluxSettings;
use homeiq::ha::model::{State, StateChanged};
use homeiq::store::influx::{InfluxClient, encode_point};
use homeiq::store::point::Point;
use homeiq::store::schema::EntityMeta;
use serde_json::{Map, Value, json};

/// Entities in the generated home.
pub const ENTITIES: usize = 2_000;

/// A tiny deterministic generator (xorshift), so runs are comparable.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One generated entity.
pub struct Entity {
    /// Entity id.
    pub id: String,
    /// Which of the generated kinds it is.
    pub kind: usize,
    /// Its attributes.
    pub attrs: Map<String, Value>,
    /// Its registry tags.
    pub meta: EntityMeta,
}

/// The object inside a JSON value (empty otherwise).
pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The home's entities, deterministic for a given generator state.
pub fn make_entities(rng: &mut Rng) -> Vec<Entity> {
    (0..ENTITIES)
        .map(|i| {
            // Mix: 55 % sensors, 12 % binary sensors, 10 % lights, 8 % switches, then a tail.
            let kind = match rng.below(100) {
                0..55 => 0,
                55..67 => 1,
                67..77 => 2,
                77..85 => 3,
                85..89 => 4,
                89..92 => 5,
                92..95 => 6,
                95..98 => 7,
                _ => 8,
            };
            let (id, attrs) = match kind {
                0 => {
                    let (unit, dc) = [
                        ("°C", "temperature"),
                        ("%", "humidity"),
                        ("W", "power"),
                        ("kWh", "energy"),
                        ("lx", "illuminance"),
                        ("ppm", "carbon_dioxide"),
                    ][i % 6];
                    (
                        format!("sensor.{dc}_{i}"),
                        json!({"state_class": "measurement", "unit_of_measurement": unit,
                               "device_class": dc, "friendly_name": format!("Room {i} {dc}")}),
                    )
                }
                1 => (
                    format!("binary_sensor.motion_{i}"),
                    json!({"device_class": "motion", "friendly_name": format!("Motion {i}")}),
                ),
                2 => (
                    format!("light.lamp_{i}"),
                    json!({"supported_color_modes": ["color_temp", "hs"], "color_mode": "hs",
                           "brightness": 180, "hs_color": [30.0, 60.5], "min_mireds": 153,
                           "max_mireds": 500, "friendly_name": format!("Lamp {i}"),
                           "supported_features": 44}),
                ),
                3 => (
                    format!("switch.plug_{i}"),
                    json!({"friendly_name": format!("Plug {i}"), "icon": "mdi:power-socket-eu"}),
                ),
                4 => (
                    format!("climate.room_{i}"),
                    json!({"hvac_modes": ["off", "heat", "auto"], "min_temp": 7, "max_temp": 35,
                           "current_temperature": 20.5, "temperature": 21, "hvac_action": "heating",
                           "preset_modes": ["eco", "comfort"], "preset_mode": "eco",
                           "friendly_name": format!("Room {i}"), "supported_features": 401}),
                ),
                5 => (
                    format!("media_player.speaker_{i}"),
                    json!({"volume_level": 0.35, "is_volume_muted": false,
                           "media_title": "Song, \"live\"", "media_artist": "Band",
                           "source_list": ["Radio", "Spotify"], "friendly_name": format!("Speaker {i}")}),
                ),
                6 => (
                    format!("cover.blind_{i}"),
                    json!({"current_position": 40, "device_class": "blind",
                           "friendly_name": format!("Blind {i}"), "supported_features": 15}),
                ),
                7 => (
                    format!("device_tracker.phone_{i}"),
                    json!({"source_type": "gps", "latitude": 52.37, "longitude": 4.89,
                           "gps_accuracy": 12, "battery_level": 80, "friendly_name": format!("Phone {i}")}),
                ),
                _ => (
                    format!("lock.door_{i}"),
                    json!({"friendly_name": format!("Door {i}"), "supported_features": 0}),
                ),
            };
            Entity {
                id,
                kind,
                attrs: obj(attrs),
                meta: EntityMeta {
                    device_id: Some(format!("{:032x}", (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))),
                    area_id: Some(["kitchen", "living_room", "bedroom", "office", "garage"][i % 5].into()),
                },
            }
        })
        .collect()
}

/// `count(state)` over every measurement of the client's database.
pub async fn count_states(client: &InfluxClient) -> u64 {
    match client.query("SELECT count(\"state\") FROM /.*/").await {
        Ok(r) => r
            .first_series()
            .iter()
            .filter_map(|s| s.values.first()?.get(1)?.as_u64())
            .sum(),
        Err(e) => {
            eprintln!("count failed: {e}");
            0
        }
    }
}

/// Default writer settings for `url` and `database`.
pub fn settings(url: &str, database: String) -> InfluxSettings {
    InfluxSettings {
        url: url.to_owned(),
        database,
        ..InfluxSettings::default()
    }
}

/// The generator's first event time.
pub fn base_time() -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_743_500_000_000)
        .single()
        .unwrap_or_default()
}

/// Event number `i`: a random entity of `entities` changes state; every event gets its own
/// millisecond after [`base_time`], so no two points share series and time. Returns the event
/// and the entity's index.
pub fn event(i: usize, entities: &[Entity], rng: &mut Rng) -> (StateChanged, usize) {
    let e_idx = rng.below(entities.len() as u64) as usize;
    let e = &entities[e_idx];
    let mut attrs = e.attrs.clone();
    let state = match e.kind {
        0 => format!("{:.1}", 10.0 + rng.unit() * 30.0),
        1 | 3 => ["on", "off"][rng.below(2) as usize].to_owned(),
        2 => {
            let on = rng.below(3) > 0;
            attrs.insert(
                "brightness".into(),
                json!(if on { rng.below(255) } else { 0 }),
            );
            (if on { "on" } else { "off" }).to_owned()
        }
        4 => {
            attrs.insert(
                "current_temperature".into(),
                json!(18.0 + (rng.below(60) as f64) / 10.0),
            );
            "heat".to_owned()
        }
        5 => ["playing", "paused", "idle"][rng.below(3) as usize].to_owned(),
        6 => ["open", "closed", "opening"][rng.below(3) as usize].to_owned(),
        7 => ["home", "not_home", "Work"][rng.below(3) as usize].to_owned(),
        _ => ["locked", "unlocked"][rng.below(2) as usize].to_owned(),
    };
    let t = base_time() + chrono::Duration::milliseconds(i as i64);
    let new_state = State {
        entity_id: e.id.clone(),
        state,
        attributes: attrs,
        last_changed: t,
        last_updated: t,
        last_reported: Some(t),
        context: None,
    };
    let ev = StateChanged {
        entity_id: e.id.clone(),
        had_old_state: false,
        new_state: Some(new_state),
        time_fired: t,
    };
    (ev, e_idx)
}

/// Points per write request of raw ingest.
pub const RAW_BATCH: usize = 5_000;

/// Line-protocol bodies of [`RAW_BATCH`] points each, for raw ingest, built as points come.
#[derive(Default)]
pub struct RawBatches {
    bodies: Vec<Vec<u8>>,
    body: String,
    in_body: usize,
}

impl RawBatches {
    /// Encodes `p` into the current body, starting a new one when it is full.
    pub fn push(&mut self, p: &Point) {
        let _ = encode_point(p, &mut self.body);
        self.in_body += 1;
        if self.in_body == RAW_BATCH {
            self.bodies
                .push(std::mem::take(&mut self.body).into_bytes());
            self.in_body = 0;
        }
    }

    /// The bodies, the last one possibly short.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        if self.in_body > 0 {
            self.bodies.push(self.body.into_bytes());
        }
        self.bodies
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("free port: {e}"))
}

/// A `/proc/<pid>/status` figure in kB (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// SIGTERM to `child`, then up to `grace` for it to exit, then SIGKILL.
pub fn stop_process(child: &mut std::process::Child, grace: std::time::Duration) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `key` from the environment parsed, else `default`.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `us` (µs since the epoch) as RFC 3339, whole seconds.
pub fn iso(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Starts `homeiq serve` (the release binary, or `HOMEIQ_BIN`) on `data` at a free loopback
/// port, logging warnings to `log` (else nowhere), with `env` on top of the settings every
/// benchmark shares (no options file, no rate limit). Returns the child and its base URL.
pub fn spawn_homeiq(
    data: &std::path::Path,
    env: &[(&str, String)],
    log: Option<&std::path::Path>,
) -> (std::process::Child, String) {
    let port = free_port();
    let bin = std::env::var("HOMEIQ_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_homeiq").into());
    let mut command = std::process::Command::new(bin);
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOMEIQ_OPTIONS_FILE", data.join("none.json"))
        .env("HOMEIQ_DATA_DIR", data)
        .env("HOMEIQ_LOG_LEVEL", "warn")
        .env("HOMEIQ_HTTP__BIND", "127.0.0.1")
        .env("HOMEIQ_HTTP__PORT", port.to_string())
        .env("HOMEIQ_API__RATE_LIMIT_PER_SECOND", "0");
    for (k, v) in env {
        command.env(k, v);
    }
    let stderr = match log.map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
    }) {
        Some(Ok(f)) => std::process::Stdio::from(f),
        Some(Err(e)) => panic!("homeiq log: {e}"),
        None => std::process::Stdio::inherit(),
    };
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn homeiq: {e}"));
    (child, format!("http://127.0.0.1:{port}"))
}

/// `/health/deep` of the HomeIQ at `base` (`None` while it does not answer).
pub async fn deep(http: &reqwest::Client, base: &str) -> Option<Value> {
    http.get(format!("{base}/health/deep"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Waits up to `limit` until the rollups at `base` caught up (`/health/deep`: not catching up,
/// a watermark, less than three hours behind); returns the seconds it took.
pub async fn wait_rolled_up(base: &str, limit: std::time::Duration) -> f64 {
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = deep(&http, base).await {
            let r = &v["rollups"];
            let lag = r["lag_secs"].as_f64().unwrap_or(f64::MAX);
            if !r["catching_up"].as_bool().unwrap_or(true)
                && !r["rolled_up_until"].is_null()
                && lag < 3.0 * 3_600.0
            {
                return started.elapsed().as_secs_f64();
            }
        }
        assert!(started.elapsed() < limit, "rollups did not catch up");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// CPU time (user + system) process `pid` has used, seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // fields after the command name (which is in parentheses and may hold spaces)
            let rest = s.rsplit_once(')')?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .unwrap_or(0.0);
    // USER_HZ is 100 on Linux
    ticks / 100.0
}

/// The InfluxDB server's process: `INFLUX_PID`, else the one process named `influxd`.
pub fn influx_pid() -> Option<u32> {
    if let Some(pid) = std::env::var("INFLUX_PID")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        return Some(pid);
    }
    let found: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "influxd")
        })
        .collect();
    match found.as_slice() {
        [pid] => Some(*pid),
        // several servers: the one listening on `INFLUX_URL`'s port
        _ => found.into_iter().find(|pid| listens_on_influx_port(*pid)),
    }
}

/// Whether process `pid` holds the socket listening on `INFLUX_URL`'s port.
fn listens_on_influx_port(pid: u32) -> bool {
    let Some(port) = std::env::var("INFLUX_URL")
        .ok()
        .and_then(|u| url::Url::parse(&u).ok()?.port_or_known_default())
    else {
        return false;
    };
    let suffix = format!(":{port:04X}");
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    // local address, state LISTEN (0A), inode
                    let inode = f.get(9)?;
                    (f.get(1)?.ends_with(&suffix) && *f.get(3)? == "0A")
                        .then(|| format!("socket:[{inode}]"))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|d| {
        d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .any(|l| inodes.iter().any(|i| l.to_str() == Some(i)))
    })
}

/// Writes `body` (line protocol, µs precision) to database `db` of the InfluxDB at `url`.
pub async fn influx_write(http: &reqwest::Client, url: &str, db: &str, body: String) {
    let r = http
        .post(format!("{url}/write?db={db}&precision=u"))
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    assert!(r.status().is_success(), "write: {}", r.status());
}

/// Runs an InfluxQL statement (`CREATE DATABASE`, `DROP DATABASE`) against the InfluxDB at `url`.
pub async fn influx_query(http: &reqwest::Client, url: &str, q: String) {
    let r = http
        .post(format!("{url}/query"))
        .form(&[("q", q)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("query: {e}"));
    assert!(r.status().is_success(), "query: {}", r.status());
}

/// Queues `points` into the embedded writer with `push`, awaiting `room` (its `wait_for_room`)
/// before each: `push` alone drops the oldest queued point once the writer's capacity is held,
/// as ingestion must; a dataset's bulk write must not. Needs a multi-threaded runtime.
pub fn push_waiting<F: std::future::Future<Output = ()>>(
    points: Vec<Point>,
    room: impl Fn() -> F,
    push: impl Fn(Point),
) {
    tokio::task::block_in_place(|| {
        let handle = tokio::runtime::Handle::current();
        for p in points {
            handle.block_on(room());
            push(p);
        }
    });
}

/// A history backend a benchmark runs against (`BACKENDS=embedded,influxdb,ha_compat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Influxdb,
    HaCompat,
}

impl Backend {
    pub fn parse(text: &str) -> Backend {
        match text.trim() {
            "embedded" => Backend::Embedded,
            "influxdb" => Backend::Influxdb,
            "ha_compat" => Backend::HaCompat,
            other => panic!("BACKENDS: unknown backend {other}"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Influxdb => "influxdb (homeiq schema)",
            Backend::HaCompat => "influxdb (ha_compat schema)",
        }
    }
}

/// `BACKENDS` (comma-separated), else `with_influx` when `INFLUX_URL` is set, else `embedded`.
pub fn backends(with_influx: &str) -> Vec<Backend> {
    let default = if std::env::var("INFLUX_URL").is_ok() {
        with_influx
    } else {
        "embedded"
    };
    std::env::var("BACKENDS")
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(Backend::parse)
        .collect()
}
