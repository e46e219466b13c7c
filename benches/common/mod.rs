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
