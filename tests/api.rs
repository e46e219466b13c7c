//! The data API, black-box: the real binary with real SQLite, InfluxDB and Home Assistant.
//! Registry answers are compared with Home Assistant's own lists; history answers with points
//! written straight into InfluxDB. What needs neither (every parameter's bad-input case, rate
//! limits) runs against the application in-process ([`common::app`]).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::app::{AppOptions, spawn_app};
use common::{Ha, HomeIq, HomeIqOptions, Influx, Served, eventually, free_port, unique};
use homeiq::store::embedded;
use homeiq::store::influx::encode_point;
use homeiq::store::point::{FieldValue, Point};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// An answer: status, headers and JSON body (`Null` when not JSON).
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn call(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

async fn get(app: &impl Served, path: &str) -> Answer {
    call(app.client().get(app.url(path))).await
}

async fn ok(app: &impl Served, path: &str) -> Value {
    let a = get(app, path).await;
    assert_eq!(a.status, StatusCode::OK, "GET {path}: {}", a.body);
    a.body
}

/// Every item of a listing, fetched page by page with `page_size`, checking totals and that no
/// item is seen twice.
async fn all_pages(app: &impl Served, path: &str, key: &str, page_size: usize) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut seen = BTreeSet::new();
    let mut offset = 0;
    loop {
        let page = ok(
            app,
            &format!("{path}{sep}limit={page_size}&offset={offset}"),
        )
        .await;
        let batch = page["items"].as_array().cloned().unwrap_or_default();
        for item in &batch {
            let id = item[key].as_str().unwrap_or_default().to_owned();
            assert!(
                seen.insert(id.clone()),
                "{id} seen twice while paging {path}"
            );
        }
        let total = page["total"].as_u64().unwrap_or(0) as usize;
        items.extend(batch.iter().cloned());
        offset += page_size;
        if offset >= total {
            assert_eq!(items.len(), total, "paging {path} left holes");
            return items;
        }
        assert_eq!(batch.len(), page_size, "a middle page of {path} was short");
    }
}

#[tokio::test]
async fn registry_endpoints_match_home_assistant() {
    let ha = Ha::from_env();
    // a label on one device, so the label filter has something to find
    let label = ha
        .ws1(json!({"type": "config/label_registry/create", "name": unique("apilabel")}))
        .await;
    let label_id = label["label_id"]
        .as_str()
        .expect("label created")
        .to_owned();
    let ha_devices = ha
        .ws1(json!({"type": "config/device_registry/list"}))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default();
    let labelled = ha_devices
        .iter()
        .find(|d| d["disabled_by"].is_null())
        .expect("a device")["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let update = ha
        .ws1(json!({"type": "config/device_registry/update", "device_id": labelled, "labels": [label_id]}))
        .await;
    assert_eq!(update["labels"], json!([label_id]), "{update}");

    let app = HomeIq::spawn(HomeIqOptions::from_env()).await;
    app.wait_synced().await;
    let ha_devices = ha
        .ws1(json!({"type": "config/device_registry/list"}))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ha_entities = ha
        .ws1(json!({"type": "config/entity_registry/list"}))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ha_areas = ha
        .ws1(json!({"type": "config/area_registry/list"}))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ha_states: Vec<Value> = ha
        .get("states")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ids = |items: &[Value], key: &str| -> BTreeSet<String> {
        items
            .iter()
            .filter_map(|i| i[key].as_str().map(str::to_owned))
            .collect()
    };

    // the catalog follows the mirror shortly after each change
    let registered_count = ha_entities.len() as u64;
    eventually(
        "label and entities in catalog",
        Duration::from_secs(20),
        || async {
            let page = ok(&app, &format!("/api/v1/devices?label={label_id}")).await;
            let entities = ok(&app, "/api/v1/entities?include_disabled=true&limit=1").await;
            (page["total"] == 1
                && page["items"][0]["id"] == labelled
                && entities["total"].as_u64().unwrap_or(0) >= registered_count)
                .then_some(())
        },
    )
    .await;

    // devices: every device, each once, across pages of 7
    let devices = all_pages(&app, "/api/v1/devices", "id", 7).await;
    assert_eq!(ids(&devices, "id"), ids(&ha_devices, "id"));
    // sorted by name, and descending is the reverse
    let names: Vec<String> = devices
        .iter()
        .map(|d| {
            d["display_name"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
        })
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "default sort is by name");
    let desc = all_pages(&app, "/api/v1/devices?sort=-name", "id", 50).await;
    let mut reversed = ids_in_order(&devices);
    reversed.reverse();
    assert_eq!(ids_in_order(&desc), reversed);

    // filters against HA's own data
    let by_manufacturer = |m: &str| -> BTreeSet<String> {
        ha_devices
            .iter()
            .filter(|d| {
                d["manufacturer"]
                    .as_str()
                    .is_some_and(|x| x.eq_ignore_ascii_case(m))
            })
            .filter_map(|d| d["id"].as_str().map(str::to_owned))
            .collect()
    };
    let manufacturer = ha_devices
        .iter()
        .find_map(|d| d["manufacturer"].as_str())
        .expect("a manufacturer")
        .to_owned();
    let got = all_pages(
        &app,
        &format!(
            "/api/v1/devices?manufacturer={}",
            urlencode(&manufacturer.to_uppercase())
        ),
        "id",
        100,
    )
    .await;
    assert_eq!(ids(&got, "id"), by_manufacturer(&manufacturer));

    // domain of their entities
    let light_devices: BTreeSet<String> = ha_entities
        .iter()
        .filter(|e| {
            e["entity_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("light."))
        })
        .filter_map(|e| e["device_id"].as_str().map(str::to_owned))
        .collect();
    assert!(!light_devices.is_empty());
    let got = all_pages(&app, "/api/v1/devices?domain=light", "id", 100).await;
    assert_eq!(ids(&got, "id"), light_devices);

    // integration
    let demo: BTreeSet<String> = ha_devices
        .iter()
        .filter(|d| {
            d["identifiers"]
                .as_array()
                .and_then(|i| i.first())
                .and_then(|p| p[0].as_str())
                == Some("demo")
        })
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect();
    let got = all_pages(&app, "/api/v1/devices?integration=demo", "id", 100).await;
    assert_eq!(ids(&got, "id"), demo);

    // area: devices placed in an area (if the demo placed none, place one)
    let area = ha_areas.first().expect("an area")["area_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let in_area: BTreeSet<String> = ha_devices
        .iter()
        .filter(|d| d["area_id"].as_str() == Some(area.as_str()))
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect();
    let got = all_pages(&app, &format!("/api/v1/devices?area={area}"), "id", 100).await;
    assert_eq!(ids(&got, "id"), in_area);

    // free text: a device's name, any case, every word
    let named = ha_devices
        .iter()
        .find(|d| d["name"].as_str().is_some_and(|n| n.contains(' ')))
        .or_else(|| ha_devices.first())
        .expect("a device");
    let name = named["name"].as_str().unwrap_or_default();
    let got = all_pages(
        &app,
        &format!("/api/v1/devices?q={}", urlencode(&name.to_uppercase())),
        "id",
        100,
    )
    .await;
    assert!(ids(&got, "id").contains(named["id"].as_str().unwrap_or_default()));
    for d in &got {
        let hay = format!(
            "{} {} {} {}",
            d["display_name"], d["name"], d["manufacturer"], d["model"]
        )
        .to_lowercase();
        let area_name = d["area_id"].as_str().unwrap_or_default();
        for word in name.to_lowercase().split_whitespace() {
            assert!(
                hay.contains(word)
                    || area_name.contains(word)
                    || d["id"].as_str().unwrap_or_default().contains(word),
                "{d} does not match {word}"
            );
        }
    }
    let none = ok(&app, "/api/v1/devices?q=zzz-no-such-device-zzz").await;
    assert_eq!(none["total"], 0);
    assert_eq!(none["items"], json!([]));

    // one device: its entities with current states equal to HA's
    let with_entities = ha_entities
        .iter()
        .find_map(|e| e["device_id"].as_str())
        .expect("an entity with a device");
    let detail = ok(&app, &format!("/api/v1/devices/{with_entities}")).await;
    let expected: BTreeSet<String> = ha_entities
        .iter()
        .filter(|e| e["device_id"].as_str() == Some(with_entities))
        .filter_map(|e| e["entity_id"].as_str().map(str::to_owned))
        .collect();
    let entities = detail["entities"].as_array().cloned().unwrap_or_default();
    assert_eq!(ids(&entities, "entity_id"), expected);
    for e in &entities {
        let id = e["entity_id"].as_str().unwrap_or_default();
        if let Some(s) = ha_states.iter().find(|s| s["entity_id"] == id) {
            assert_eq!(e["state"]["state"], s["state"], "{id}");
        }
    }
    assert_eq!(
        get(&app, "/api/v1/devices/no-such-device").await.status,
        StatusCode::NOT_FOUND
    );

    // entities: enabled ones by default, all with include_disabled
    let entities = all_pages(
        &app,
        "/api/v1/entities?include_disabled=true",
        "entity_id",
        37,
    )
    .await;
    let registered = ids(&ha_entities, "entity_id");
    let listed = ids(&entities, "entity_id");
    assert!(registered.is_subset(&listed), "registry entities missing");
    // state-only entities (no registry row) are listed too
    let state_ids = ids(&ha_states, "entity_id");
    assert!(state_ids.is_subset(&listed), "state-only entities missing");
    let enabled = all_pages(&app, "/api/v1/entities", "entity_id", 100).await;
    let disabled: BTreeSet<String> = ha_entities
        .iter()
        .filter(|e| !e["disabled_by"].is_null())
        .filter_map(|e| e["entity_id"].as_str().map(str::to_owned))
        .collect();
    assert!(ids(&enabled, "entity_id").is_disjoint(&disabled));
    let lights = all_pages(&app, "/api/v1/entities?domain=light", "entity_id", 100).await;
    let ha_lights: BTreeSet<String> = state_ids
        .iter()
        .filter(|id| id.starts_with("light."))
        .cloned()
        .collect();
    assert_eq!(ids(&lights, "entity_id"), ha_lights);
    let temps = all_pages(
        &app,
        "/api/v1/entities?device_class=temperature",
        "entity_id",
        100,
    )
    .await;
    let ha_temps: BTreeSet<String> = ha_states
        .iter()
        .filter(|s| s["attributes"]["device_class"] == "temperature")
        .filter_map(|s| s["entity_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids(&temps, "entity_id"), ha_temps);
    let by_device = all_pages(
        &app,
        &format!("/api/v1/entities?device_id={with_entities}&include_disabled=true"),
        "entity_id",
        100,
    )
    .await;
    assert_eq!(ids(&by_device, "entity_id"), expected);
    let q = all_pages(&app, "/api/v1/entities?q=BED%20light", "entity_id", 100).await;
    assert!(ids(&q, "entity_id").contains("light.bed_light"), "{q:?}");

    // one entity with its current state
    let bed = ok(&app, "/api/v1/entities/light.bed_light").await;
    let ha_bed = ha.state("light.bed_light").await;
    assert_eq!(bed["state"]["state"], ha_bed["state"]);
    assert_eq!(bed["platform"], "demo");
    let missing = get(&app, "/api/v1/entities/light.no_such_light").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["error"]["code"], "not_found");

    // areas with counts, floors, labels, integrations
    let areas = ok(&app, "/api/v1/areas").await;
    assert_eq!(
        ids(areas["items"].as_array().map_or(&[][..], |v| v), "area_id"),
        ids(&ha_areas, "area_id")
    );
    let labels = ok(&app, "/api/v1/labels").await;
    assert!(
        ids(
            labels["items"].as_array().map_or(&[][..], |v| v),
            "label_id"
        )
        .contains(&label_id)
    );
    ok(&app, "/api/v1/floors").await;
    let integrations = ok(&app, "/api/v1/integrations").await;
    let mut per_platform: BTreeMap<String, (u64, BTreeSet<String>)> = BTreeMap::new();
    for e in &ha_entities {
        let slot = per_platform
            .entry(e["platform"].as_str().unwrap_or_default().to_owned())
            .or_default();
        slot.0 += 1;
        if let Some(d) = e["device_id"].as_str() {
            slot.1.insert(d.to_owned());
        }
    }
    for item in integrations["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let name = item["integration"].as_str().unwrap_or_default();
        let (entities, devices) = &per_platform[name];
        assert_eq!(item["entities"].as_u64(), Some(*entities), "{name}");
        assert_eq!(
            item["devices"].as_u64(),
            Some(devices.len() as u64),
            "{name}"
        );
    }
    assert_eq!(
        integrations["items"].as_array().map(Vec::len),
        Some(per_platform.len())
    );

    // clean up HA
    ha.ws1(json!({"type": "config/device_registry/update", "device_id": labelled, "labels": []}))
        .await;
    ha.ws1(json!({"type": "config/label_registry/delete", "label_id": label_id}))
        .await;
}

fn ids_in_order(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

const T0_US: i64 = 1_790_000_000_000_000; // 2026-09-21T13:33:20Z

fn iso(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The seeded history, as the `homeiq` schema's points: `sensor.seed_temp` every 60 s for 10 h
/// (value i % 50 / 2, text and JSON attributes, unit and device class tags), `light.seed_lamp`
/// toggling every 7 min, and one tie: both at the same microsecond.
#[allow(clippy::type_complexity)]
fn seed_points() -> (Vec<Point>, Vec<(i64, f64)>, Vec<(i64, &'static str)>) {
    let mut points = Vec::new();
    let mut temps = Vec::new();
    for i in 0..600_i64 {
        let t = T0_US + i * 60_000_000;
        let v = (i % 50) as f64 / 2.0;
        temps.push((t, v));
        points.push(
            Point::new("sensor", t)
                .tag("device_class", "temperature")
                .tag("entity_id", "sensor.seed_temp")
                .tag("unit", "°C")
                .field("state", FieldValue::Str(v.to_string()))
                .field("value", FieldValue::Float(v))
                .field("mode_str", FieldValue::Str(format!("m{}", i % 3)))
                .field("rgb_json", FieldValue::Str(format!("[1,2,{i}]"))),
        );
    }
    let mut lamp = Vec::new();
    for i in 0..86_i64 {
        let t = T0_US + i * 420_000_000; // shares t with the sensor every 7th minute
        let s = if i % 2 == 0 { "on" } else { "off" };
        lamp.push((t, s));
        points.push(
            Point::new("light", t)
                .tag("entity_id", "light.seed_lamp")
                .field("state", FieldValue::Str(s.to_owned()))
                .field("value", FieldValue::Float(f64::from(u8::from(s == "on"))))
                .field("brightness", FieldValue::Float(128.0)),
        );
    }
    (points, temps, lamp)
}

/// Writes the seeded points straight into InfluxDB (line protocol, µs precision).
async fn seed_influx(influx: &Influx, db: &str, points: &[Point]) {
    influx.create_db(db).await;
    let mut body = String::new();
    for p in points {
        encode_point(p, &mut body).expect("encode");
        body.push('\n');
    }
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/write?db={db}&precision=u",
            common::env("INFLUX_URL")
        ))
        .body(body)
        .send()
        .await
        .expect("write");
    assert_eq!(
        resp.status(),
        StatusCode::NO_CONTENT,
        "{:?}",
        resp.text().await
    );
}

/// Writes the seeded points into `<data_dir>/history.db` through HomeIQ's own embedded store,
/// before the binary starts.
async fn seed_embedded(data_dir: &std::path::Path, points: Vec<Point>) {
    let (writer, _history) = embedded::open(&embedded::history_path(data_dir), Default::default())
        .await
        .expect("open history.db");
    for p in points {
        writer.push(p);
    }
    let report = writer.shutdown(Duration::from_secs(20)).await;
    assert_eq!(report.left, 0, "{report:?}");
}

#[tokio::test]
async fn history_aggregate_and_stats_answer_from_seeded_points_in_influxdb() {
    let influx = Influx::from_env();
    let options = HomeIqOptions::from_env();
    let (points, temps, lamp) = seed_points();
    seed_influx(&influx, &options.database, &points).await;
    let app = HomeIq::spawn(options.env("HOMEIQ_API__MAX_HISTORY_DAYS", "2")).await;
    history_answers(&app, &temps, &lamp).await;
}

#[tokio::test]
async fn history_aggregate_and_stats_answer_from_seeded_points_in_embedded_storage() {
    let data = tempfile::tempdir().expect("tempdir");
    let (points, temps, lamp) = seed_points();
    seed_embedded(data.path(), points).await;
    let mut options = HomeIqOptions::from_env()
        .env("HOMEIQ_API__MAX_HISTORY_DAYS", "2")
        .env("HOMEIQ_STORAGE", "embedded")
        // no InfluxDB may be needed: point it at a closed port
        .env(
            "HOMEIQ_INFLUXDB__URL",
            &format!("http://127.0.0.1:{}", free_port()),
        );
    options.data_dir = Some(data.path().to_path_buf());
    let app = HomeIq::spawn(options).await;
    let deep = app.deep().await;
    assert_eq!(deep["storage"]["backend"], "embedded", "{deep}");
    assert!(deep["storage"].get("influxdb").is_none(), "{deep}");
    history_answers(&app, &temps, &lamp).await;
    let realtime = ok(&app, "/api/v1/metrics/realtime").await;
    assert_eq!(realtime["storage"]["backend"], "embedded");

    // the storage guard measured the data directory; retention has not run yet (5 minutes)
    let storage = eventually(
        "the storage guard measured",
        Duration::from_secs(20),
        || async {
            let s = ok(&app, "/api/v1/storage").await;
            (s["guard"]["level"] != "unknown").then_some(s)
        },
    )
    .await;
    assert_eq!(storage["backend"], "embedded", "{storage}");
    assert_eq!(storage["tiers"][0]["tier"], "raw", "{storage}");
    assert_eq!(storage["tiers"][0]["days_in_effect"], 30, "{storage}");
    // the rollups' tiers with their settings, finest first, then what was imported
    let tiers: Vec<&str> = storage["tiers"]
        .as_array()
        .expect("tiers")
        .iter()
        .filter_map(|t| t["tier"].as_str())
        .collect();
    assert_eq!(tiers, ["raw", "5m", "1h", "1d", "imported"], "{storage}");
    assert_eq!(
        storage["tiers"][2]["setting"], "retention.hourly_days",
        "{storage}"
    );
    assert_eq!(storage["tiers"][2]["days"], 365, "{storage}");
    assert!(
        storage["guard"]["disk"]["total_bytes"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    assert!(
        storage["guard"]["stores"].as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["store"] == "history" && s["bytes"].as_u64().unwrap_or(0) > 0)),
        "{storage}"
    );
    assert!(storage["retention"]["last_run"].is_null(), "{storage}");
    assert!(storage["retention"]["next_run_at"].is_string(), "{storage}");
    let deep = app.deep().await;
    assert_eq!(deep["storage_guard"]["level"], storage["guard"]["level"]);
    assert_eq!(deep["retention"]["raw_days"], 30);
    let text = app
        .client()
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    for needle in [
        "homeiq_storage_disk_used_bytes",
        "homeiq_storage_store_bytes{store=\"history\"}",
        "homeiq_storage_level",
        "homeiq_retention_runs_total 0",
        "homeiq_storage_disk_full_errors_total{backend=\"embedded\"} 0",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics");
    }
}

#[tokio::test]
async fn both_backends_answer_the_same_json_for_the_same_points() {
    let influx = Influx::from_env();
    let influx_options = HomeIqOptions::from_env().env("HOMEIQ_API__MAX_HISTORY_DAYS", "2");
    let (points, _, _) = seed_points();
    seed_influx(&influx, &influx_options.database, &points).await;
    let data = tempfile::tempdir().expect("tempdir");
    seed_embedded(data.path(), points).await;
    let mut embedded_options = HomeIqOptions::from_env()
        .env("HOMEIQ_API__MAX_HISTORY_DAYS", "2")
        .env("HOMEIQ_STORAGE", "embedded");
    embedded_options.data_dir = Some(data.path().to_path_buf());
    let (a, b) = tokio::join!(
        HomeIq::spawn(influx_options),
        HomeIq::spawn(embedded_options)
    );
    // both have rolled up the seeded day (weeks ago: its 5-minute rows are past their
    // retention and may be deleted at any moment, its hours are kept)
    for app in [&a, &b] {
        eventually(
            "both apps rolled up the seeded day",
            Duration::from_secs(60),
            || async {
                let r = ok(app, "/health/deep").await["rollups"].clone();
                (r["catching_up"] == false
                    && !r["rolled_up_until"].is_null()
                    && r["lag_secs"].as_f64().is_some_and(|l| l < 3.0 * 3_600.0))
                .then_some(())
            },
        )
        .await;
    }
    let range = format!(
        "start={}&end={}",
        iso(T0_US + 1_800_000_000),
        iso(T0_US + 5 * 3_600_000_000)
    );
    for path in [
        format!("/api/v1/history?entity_id=sensor.seed_temp,light.seed_lamp&{range}&limit=100"),
        format!(
            "/api/v1/history?entity_id=light.seed_lamp,sensor.seed_temp&{range}&order=desc&limit=7&cursor={}_light.seed_lamp",
            T0_US + 2 * 3_600_000_000 + 420_000_000 * 2
        ),
        format!(
            "/api/v1/history/aggregate?entity_id=sensor.seed_temp,light.seed_lamp&{range}&interval=15m"
        ),
        format!(
            "/api/v1/history/aggregate?entity_id=sensor.seed_temp,light.seed_lamp&{range}&interval=1h"
        ),
        format!("/api/v1/events/stats?{range}"),
        format!("/api/v1/events/stats?{range}&interval=10m"),
    ] {
        let (x, y) = (ok(&a, &path).await, ok(&b, &path).await);
        // rolled up: both read an aggregate from the same tier (the 5-minute rows of weeks ago
        // are past their retention: raw points serve 15-minute buckets)
        if path.contains("interval=1h") {
            assert_eq!(x["tier"], "1h", "{path}: {x}");
        } else if path.contains("interval=15m") {
            assert_eq!(x["tier"], "raw", "{path}: {x}");
        }
        let filled = ["items", "series", "buckets"]
            .iter()
            .any(|k| x[*k].as_array().is_some_and(|v| !v.is_empty()));
        assert!(filled, "{path}: {x}");
        assert_eq!(x, y, "{path}");
    }
}

/// The same assertions for every backend, over the seeded points.
async fn history_answers(app: &impl Served, temps: &[(i64, f64)], lamp: &[(i64, &'static str)]) {
    let range = format!(
        "start={}&end={}",
        iso(T0_US),
        iso(T0_US + 10 * 3_600_000_000)
    );

    // one entity, pages of 37, ascending: every point once, in order, with neighbours
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = format!(
            "/api/v1/history?entity_id=sensor.seed_temp&{range}&limit=37{}",
            cursor
                .as_ref()
                .map(|c| format!("&cursor={c}"))
                .unwrap_or_default()
        );
        let page = ok(app, &path).await;
        records.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(records.len(), temps.len());
    for (i, (r, (t, v))) in records.iter().zip(temps).enumerate() {
        assert_eq!(r["time"].as_str().map(parse_us), Some(*t), "record {i}");
        assert_eq!(r["value"].as_f64(), Some(*v));
        assert_eq!(r["state"].as_str(), Some(v.to_string().as_str()));
        assert_eq!(r["attributes"]["mode"], format!("m{}", i % 3));
        assert_eq!(r["attributes"]["rgb"], json!([1, 2, i]));
        assert_eq!(r["attributes"]["unit_of_measurement"], "°C");
        if i == 0 {
            assert!(r["previous_state"].is_null());
        } else {
            assert_eq!(
                r["previous_state"].as_str(),
                Some(temps[i - 1].1.to_string().as_str())
            );
            assert_eq!(r["previous_duration_secs"].as_f64(), Some(60.0));
        }
        let expected = (i + 1 < temps.len()).then_some(60.0);
        assert_eq!(r["duration_secs"].as_f64(), expected, "record {i}");
    }

    // two entities, descending, pages of 50: merged newest first, ties broken by entity id
    let mut merged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = format!(
            "/api/v1/history?entity_id=sensor.seed_temp,light.seed_lamp&{range}&order=desc&limit=50{}",
            cursor
                .as_ref()
                .map(|c| format!("&cursor={c}"))
                .unwrap_or_default()
        );
        let page = ok(app, &path).await;
        merged.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut expected: Vec<(i64, String)> = temps
        .iter()
        .map(|(t, _)| (*t, "sensor.seed_temp".to_owned()))
        .chain(lamp.iter().map(|(t, _)| (*t, "light.seed_lamp".to_owned())))
        .filter(|(t, _)| *t <= T0_US + 10 * 3_600_000_000)
        .collect();
    expected.sort();
    expected.reverse();
    let got: Vec<(i64, String)> = merged
        .iter()
        .map(|r| {
            (
                r["time"].as_str().map(parse_us).unwrap_or_default(),
                r["entity_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, expected, "merged pages have no duplicates or holes");
    let lamp_second = merged
        .iter()
        .find(|r| {
            r["entity_id"] == "light.seed_lamp"
                && r["time"].as_str().map(parse_us) == Some(lamp[1].0)
        })
        .expect("lamp record");
    assert_eq!(lamp_second["state"], "off");
    assert_eq!(lamp_second["previous_state"], "on");
    assert_eq!(lamp_second["previous_duration_secs"].as_f64(), Some(420.0));
    assert_eq!(lamp_second["duration_secs"].as_f64(), Some(420.0));

    // aggregates per hour equal a local computation: each value holds until the next record
    // (the last until the range's end), the mean weighted by time
    let agg = ok(
        app,
        &format!("/api/v1/history/aggregate?entity_id=sensor.seed_temp&{range}&interval=1h"),
    )
    .await;
    assert_eq!(agg["interval_secs"], 3600);
    let points = agg["series"][0]["points"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (from, to) = (T0_US, T0_US + 10 * 3_600_000_000);
    let mut starts = Vec::new();
    let mut b = from - from.rem_euclid(3_600_000_000);
    while b < to {
        starts.push(b);
        b += 3_600_000_000;
    }
    assert_eq!(points.len(), starts.len());
    for (p, start) in points.iter().zip(&starts) {
        let (a, z) = ((*start).max(from), (start + 3_600_000_000).min(to));
        let (mut integral, mut covered, mut count) = (0.0, 0i64, 0u64);
        let (mut min, mut max, mut last) = (f64::MAX, f64::MIN, f64::NAN);
        for (i, (t, v)) in temps.iter().enumerate() {
            let until = temps.get(i + 1).map_or(to, |n| n.0);
            let (x, y) = ((*t).max(a), until.min(z));
            if (a..z).contains(t) {
                count += 1;
            }
            if y > x {
                integral += v * (y - x) as f64;
                covered += y - x;
                (min, max, last) = (min.min(*v), max.max(*v), *v);
            }
        }
        assert_eq!(p["time"].as_str().map(parse_us), Some(*start));
        assert_eq!(p["count"].as_u64(), Some(count));
        let mean = integral / covered as f64;
        assert!(
            (p["mean"].as_f64().unwrap_or(f64::NAN) - mean).abs() < 1e-9,
            "{p} vs {mean}"
        );
        assert_eq!(p["min"].as_f64(), Some(min));
        assert_eq!(p["max"].as_f64(), Some(max));
        assert_eq!(p["last"].as_f64(), Some(last));
        assert!(
            ["raw", "1h"].contains(&agg["tier"].as_str().unwrap_or_default()),
            "{agg}"
        );
    }
    // chosen interval: at most max_points buckets
    let agg = ok(
        app,
        &format!("/api/v1/history/aggregate?entity_id=sensor.seed_temp&{range}&max_points=7"),
    )
    .await;
    let interval = agg["interval_secs"].as_u64().unwrap_or(0);
    assert!(interval >= 36_000 / 7, "{interval}");
    assert!(agg["series"][0]["points"].as_array().map_or(0, Vec::len) <= 8);
    let total: u64 = agg["series"][0]["points"]
        .as_array()
        .map(|p| p.iter().filter_map(|x| x["count"].as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(total, 600);

    // events per minute by domain
    let stats = ok(
        app,
        &format!(
            "/api/v1/events/stats?start={}&end={}",
            iso(T0_US),
            iso(T0_US + 3_600_000_000)
        ),
    )
    .await;
    assert_eq!(stats["total"], 60 + 9);
    let first = &stats["buckets"][0];
    assert_eq!(first["by_domain"]["sensor"], 1);
    assert_eq!(first["by_domain"]["light"], 1);
    assert_eq!(first["total"], 2);

    // limits: the range is bounded by api.max_history_days
    let too_long = get(
        app,
        &format!(
            "/api/v1/history?entity_id=sensor.seed_temp&start={}&end={}",
            iso(T0_US),
            iso(T0_US + 3 * 86_400_000_000)
        ),
    )
    .await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_long.body["error"]["field"], "start");
    assert!(
        too_long.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("2 days")
    );
}

fn parse_us(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .unwrap_or(i64::MIN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_parameter() {
    let app = spawn_app().await;
    let cases: &[(&str, &str)] = &[
        ("/api/v1/devices?limit=0", "limit"),
        ("/api/v1/devices?limit=1001", "limit"),
        ("/api/v1/devices?limit=ten", "limit"),
        ("/api/v1/devices?offset=-1", "offset"),
        ("/api/v1/devices?sort=color", "sort"),
        ("/api/v1/devices?colour=red", "colour"),
        ("/api/v1/entities?limit=0", "limit"),
        (
            "/api/v1/entities?include_disabled=maybe",
            "include_disabled",
        ),
        ("/api/v1/entities?sort=-size", "sort"),
        ("/api/v1/entities?offset=x", "offset"),
        ("/api/v1/history", "entity_id"),
        ("/api/v1/history?entity_id=notanentity", "entity_id"),
        ("/api/v1/history?entity_id=light.a&start=yesterday", "start"),
        (
            "/api/v1/history?entity_id=light.a&end=2026-13-01T00:00:00Z",
            "end",
        ),
        (
            "/api/v1/history?entity_id=light.a&end=0174-09-24T02:16:09Z",
            "end",
        ),
        (
            "/api/v1/history?entity_id=light.a&start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z",
            "start",
        ),
        (
            "/api/v1/history?entity_id=light.a&start=2020-01-01T00:00:00Z&end=2026-01-01T00:00:00Z",
            "start",
        ),
        ("/api/v1/history?entity_id=light.a&order=sideways", "order"),
        ("/api/v1/history?entity_id=light.a&limit=10001", "limit"),
        ("/api/v1/history?entity_id=light.a&cursor=garbage", "cursor"),
        (
            "/api/v1/history/aggregate?entity_id=light.a&interval=5x",
            "interval",
        ),
        (
            "/api/v1/history/aggregate?entity_id=light.a&interval=1",
            "interval",
        ),
        (
            "/api/v1/history/aggregate?entity_id=light.a&max_points=0",
            "max_points",
        ),
        ("/api/v1/history/aggregate", "entity_id"),
        ("/api/v1/events/stats?interval=10s", "interval"),
        (
            "/api/v1/events/stats?start=2026-01-01T00:00:00Z&end=2026-01-31T00:00:00Z",
            "interval",
        ),
        ("/api/v1/stream?room=kitchen", "room"),
        ("/api/v1/quarantine?limit=0", "limit"),
    ];
    for (path, field) in cases {
        let a = get(&app, path).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}: {}", a.body);
        assert_eq!(a.body["error"]["code"], "invalid_parameter", "{path}");
        assert_eq!(a.body["error"]["field"], *field, "{path}: {}", a.body);
        assert!(
            !a.body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
        );
    }
    let a = get(&app, "/api/v1/nothing-here").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.body["error"]["code"], "not_found");
    // nothing was lost: the app still serves and reports healthy
    assert_eq!(get(&app, "/api/v1/devices").await.status, StatusCode::OK);
}

#[tokio::test]
async fn history_is_503_when_influxdb_is_down_while_the_registry_keeps_working() {
    let mut options = HomeIqOptions::from_env();
    // seed the mirror with a first run, then restart against an InfluxDB that is not there
    let mut app = HomeIq::spawn(options.clone()).await;
    app.wait_synced().await;
    let devices = eventually(
        "devices in the catalog",
        Duration::from_secs(10),
        || async {
            let total = ok(&app, "/api/v1/devices").await["total"]
                .as_u64()
                .unwrap_or(0);
            (total > 0).then_some(total)
        },
    )
    .await;
    app.signal("TERM");
    app.wait_exit(Duration::from_secs(15));
    options.influx_url = format!("http://127.0.0.1:{}", free_port());
    app.options = options;
    app.start().await;
    let history = get(&app, "/api/v1/history?entity_id=light.bed_light").await;
    assert_eq!(
        history.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        history.body
    );
    assert_eq!(history.body["error"]["code"], "backend_unavailable");
    assert!(
        history.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("InfluxDB"),
        "{}",
        history.body
    );
    for path in [
        "/api/v1/history/aggregate?entity_id=sensor.outside_temperature",
        "/api/v1/events/stats",
    ] {
        assert_eq!(
            get(&app, path).await.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}"
        );
    }
    // the registry answers from SQLite at once, before Home Assistant is even synced
    assert_eq!(
        ok(&app, "/api/v1/devices").await["total"].as_u64(),
        Some(devices)
    );
    ok(&app, "/api/v1/entities/light.bed_light").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after_per_client() {
    let app = AppOptions::default()
        .env("HOMEIQ_API__RATE_LIMIT_PER_SECOND", "1")
        .env("HOMEIQ_API__RATE_LIMIT_BURST", "3")
        .spawn()
        .await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..6 {
        let a = get(&app, "/api/v1/areas").await;
        statuses.push(a.status);
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(a);
        }
    }
    assert_eq!(&statuses[..3], &[StatusCode::OK; 3], "{statuses:?}");
    let limited = limited.expect("a 429 after the burst");
    assert_eq!(limited.body["error"]["code"], "rate_limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    // liveness is never limited
    for _ in 0..10 {
        assert_eq!(get(&app, "/health").await.status, StatusCode::OK);
    }
    // after waiting as told, the client is served again
    eventually("served again", Duration::from_secs(5), || async {
        (get(&app, "/api/v1/areas").await.status == StatusCode::OK).then_some(())
    })
    .await;
}

#[tokio::test]
async fn access_needs_the_token_or_the_ingress_gateway() {
    // a token, no gateway: bearer required everywhere but /health
    let app = HomeIq::spawn(
        HomeIqOptions::from_env().env("HOMEIQ_HTTP__API_TOKEN", "s3cret-token-value"),
    )
    .await;
    let none = get(&app, "/api/v1/devices").await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.body["error"]["code"], "unauthorized");
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    let wrong = call(
        app.client()
            .get(app.url("/api/v1/devices"))
            .bearer_auth("nope"),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let right = call(
        app.client()
            .get(app.url("/api/v1/devices"))
            .bearer_auth("s3cret-token-value"),
    )
    .await;
    assert_eq!(right.status, StatusCode::OK);
    for open in ["/health"] {
        assert_eq!(get(&app, open).await.status, StatusCode::OK);
    }
    for closed in [
        "/health/deep",
        "/metrics",
        "/api/openapi.json",
        "/api/v1/config",
    ] {
        assert_eq!(
            get(&app, closed).await.status,
            StatusCode::UNAUTHORIZED,
            "{closed}"
        );
    }
    // the token never shows in the configuration
    let config = call(
        app.client()
            .get(app.url("/api/v1/config"))
            .bearer_auth("s3cret-token-value"),
    )
    .await;
    assert_eq!(config.body["settings"]["http"]["api_token"], "***");
    assert!(!config.body.to_string().contains("s3cret"));
    drop(app);

    // requests from the gateway are trusted without a token
    let app = HomeIq::spawn(
        HomeIqOptions::from_env()
            .env("HOMEIQ_HTTP__API_TOKEN", "s3cret-token-value")
            .env("HOMEIQ_HTTP__INGRESS_GATEWAY", "127.0.0.1"),
    )
    .await;
    assert_eq!(get(&app, "/api/v1/devices").await.status, StatusCode::OK);
    drop(app);

    // as an add-on (SUPERVISOR_TOKEN set, gateway auto = 172.30.32.2) without a token: others
    // are refused
    let app =
        HomeIq::spawn(HomeIqOptions::from_env().env("SUPERVISOR_TOKEN", "supervisor-token")).await;
    let refused = get(&app, "/api/v1/devices").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["error"]["code"], "forbidden");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("api_token")
    );
    assert_eq!(get(&app, "/health").await.status, StatusCode::OK);
    assert!(
        app.log().contains("172.30.32.2"),
        "the gateway is logged at start"
    );
}

#[tokio::test]
async fn request_ids_are_echoed_generated_and_logged() {
    let app = HomeIq::spawn(HomeIqOptions::from_env().env("HOMEIQ_LOG_FORMAT", "json")).await;
    let given = call(
        app.client()
            .get(app.url("/api/v1/history?entity_id=bad"))
            .header("X-Request-ID", "test-req-4711"),
    )
    .await;
    assert_eq!(given.headers["x-request-id"], "test-req-4711");
    assert_eq!(given.status, StatusCode::BAD_REQUEST);
    let generated = get(&app, "/api/v1/areas").await;
    let id = generated.headers["x-request-id"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(id.len(), 24);
    assert_ne!(
        id,
        get(&app, "/api/v1/areas").await.headers["x-request-id"]
            .to_str()
            .unwrap_or_default()
    );
    // an invalid id is replaced
    let bad = call(
        app.client()
            .get(app.url("/health"))
            .header("X-Request-ID", "has spaces in it"),
    )
    .await;
    assert_ne!(bad.headers["x-request-id"], "has spaces in it");
    // every log line of the request carries the id (JSON logs)
    eventually("request id in the log", Duration::from_secs(5), || async {
        let log = app.log();
        let line = log.lines().find(|l| l.contains("test-req-4711"))?;
        let v: Value = serde_json::from_str(line).ok()?;
        let span_id = v["span"]["request_id"]
            .as_str()
            .or(v["spans"][0]["request_id"].as_str())?;
        (span_id == "test-req-4711").then_some(())
    })
    .await;
}

#[tokio::test]
async fn operations_endpoints_report_metrics_config_and_docs() {
    let app =
        HomeIq::spawn(HomeIqOptions::from_env().env("HOMEIQ_INFLUXDB__BATCH_SIZE", "777")).await;
    app.wait_synced().await;
    let ha = Ha::from_env();
    let entity = format!("sensor.{}", unique("apiops"));
    ha.set_state(&entity, "1", json!({})).await;
    eventually("points written", Duration::from_secs(20), || async {
        let rt = ok(&app, "/api/v1/metrics/realtime").await;
        (rt["storage"]["written"].as_u64().unwrap_or(0) > 0
            && rt["storage"]["p95_latency_ms"].is_number())
        .then_some(())
    })
    .await;
    let rt = ok(&app, "/api/v1/metrics/realtime").await;
    assert_eq!(rt["home_assistant"]["connected"], true);
    assert_eq!(rt["status"], "ok");
    assert!(rt["counts"]["devices"].as_u64().unwrap_or(0) > 0);
    assert!(rt["counts"]["entities_with_state"].as_u64().unwrap_or(0) > 0);
    assert!(rt["rss_bytes"].as_u64().unwrap_or(0) > 1_000_000);
    assert_eq!(rt["version"], env!("CARGO_PKG_VERSION"));
    assert!(rt["events"]["last_hour"].is_array());

    // Prometheus: ingest counters, write latency histogram, queue gauges, HTTP durations by route
    ok(&app, "/api/v1/devices?limit=1").await;
    let text = app
        .client()
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    common::assert_storage_reported(&rt, &app.deep().await, &text, "influxdb");
    for needle in [
        "homeiq_ha_events_received",
        "homeiq_storage_write_duration_seconds_bucket",
        "homeiq_ha_queue_depth",
        "homeiq_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/devices\",status=\"2xx\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics");
    }

    // configuration with sources, secrets redacted
    let config = ok(&app, "/api/v1/config").await;
    assert_eq!(config["settings"]["influxdb"]["batch_size"], 777);
    assert_eq!(
        config["sources"]["influxdb.batch_size"],
        "environment (HOMEIQ_INFLUXDB__BATCH_SIZE)"
    );
    assert_eq!(config["sources"]["spool.max_bytes"], "default");
    assert_eq!(config["settings"]["ha"]["token"], "***");
    assert!(!config.to_string().contains(&common::env("HA_TOKEN")));

    // gzip when asked
    let accepting = |path: &str, encodings: &'static str| {
        app.client()
            .get(app.url(path))
            .header("Accept-Encoding", encodings)
            .send()
    };
    let gz = accepting("/api/v1/entities?limit=200", "gzip")
        .await
        .expect("gzip");
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    // answers under 1 KiB are not worth compressing, and carry no encoding marker
    for path in ["/health", "/api/v1/areas", "/api/v1/nope"] {
        let small = accepting(path, "gzip").await.expect("small");
        assert!(
            small.headers().get("content-encoding").is_none(),
            "{path}: {:?}",
            small.headers()
        );
        let body = small.bytes().await.expect("small body");
        assert!(
            body.len() < 1024 && body.starts_with(b"{"),
            "{path}: plain JSON"
        );
    }
    // prepared documents (memoised listings, the OpenAPI document) keep their gzip form: the same
    // document either way, sent whole with its length (what the middleware compresses, it streams)
    for path in ["/api/v1/devices?limit=100", "/api/openapi.json"] {
        let plain = app.client().get(app.url(path)).send().await.expect("plain");
        assert!(plain.headers().get("content-encoding").is_none(), "{path}");
        let plain = plain.bytes().await.expect("plain body");
        let mut bodies = Vec::new();
        for _ in 0..2 {
            let gz = accepting(path, "br;q=1.0, gzip;q=0.8").await.expect("gzip");
            assert_eq!(gz.headers()["content-encoding"], "gzip", "{path}");
            let length = gz.content_length();
            assert_eq!(gz.headers()["vary"], "accept-encoding", "{path}");
            assert!(
                gz.headers()["content-type"]
                    .to_str()
                    .is_ok_and(|t| t.starts_with("application/json")),
                "{path}"
            );
            let body = gz.bytes().await.expect("gzip body");
            assert_eq!(
                length,
                Some(body.len() as u64),
                "{path}: the stored gzip form"
            );
            bodies.push(body);
        }
        assert_eq!(bodies[0], bodies[1], "{path}: the same bytes each time");
        assert!(bodies[0].len() < plain.len() / 2, "{path}: compressed");
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&bodies[0][..]),
            &mut unzipped,
        )
        .expect("valid gzip");
        assert_eq!(unzipped, plain, "{path}");
    }
    // entity listings carry live states: joined from items compressed once per state, a whole
    // gzip document with the same items as the plain answer
    for path in [
        "/api/v1/entities?limit=200",
        "/api/v1/entities?q=light&sort=-name",
    ] {
        let gz = accepting(path, "gzip").await.expect("gzip");
        assert_eq!(gz.headers()["content-encoding"], "gzip", "{path}");
        let body = gz.bytes().await.expect("gzip body");
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&body[..]),
            &mut unzipped,
        )
        .expect("valid gzip");
        let zipped: Value = serde_json::from_slice(&unzipped).expect("JSON");
        let plain = ok(&app, path).await;
        let ids = |v: &Value| -> Vec<String> {
            v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["entity_id"].as_str().map(str::to_owned))
                .collect()
        };
        assert_eq!(zipped["total"], plain["total"], "{path}");
        assert!(!ids(&plain).is_empty(), "{path}");
        assert_eq!(ids(&zipped), ids(&plain), "{path}");
    }

    // OpenAPI and the docs page, all local
    let spec = ok(&app, "/api/openapi.json").await;
    assert!(
        spec["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.")
    );
    for path in [
        "/api/v1/devices",
        "/api/v1/devices/{id}",
        "/api/v1/entities",
        "/api/v1/entities/{entity_id}",
        "/api/v1/areas",
        "/api/v1/floors",
        "/api/v1/labels",
        "/api/v1/integrations",
        "/api/v1/history",
        "/api/v1/history/aggregate",
        "/api/v1/events/stats",
        "/api/v1/stream",
        "/api/v1/metrics/realtime",
        "/api/v1/config",
        "/health",
        "/metrics",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let page = app
        .client()
        .get(app.url("/api/docs/"))
        .send()
        .await
        .expect("docs");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap_or_default();
    assert!(
        html.contains("swagger-ui-bundle.js") && !html.contains("http"),
        "{html}"
    );
    for asset in ["/api/docs/swagger-ui-bundle.js", "/api/docs/swagger-ui.css"] {
        let r = app
            .client()
            .get(app.url(asset))
            .send()
            .await
            .expect("asset");
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        assert!(r.bytes().await.map_or(0, |b| b.len()) > 10_000, "{asset}");
    }
}

#[tokio::test]
async fn live_stream_pushes_filtered_changes() {
    let app = HomeIq::spawn(HomeIqOptions::from_env()).await;
    app.wait_synced().await;
    let ha = Ha::from_env();
    let wanted = format!("sensor.{}", unique("live_wanted"));
    let other = format!("input_number.{}", unique("live_other"));
    let resp = app
        .client()
        .get(app.url("/api/v1/stream?domain=sensor"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    use futures_util::StreamExt;
    let mut text = String::new();
    // the hello event first
    while !text.contains("event: hello") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("hello in time")
            .expect("stream open")
            .expect("chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    ha.set_state(&other, "3", json!({})).await;
    ha.set_state(&wanted, "42", json!({"unit_of_measurement": "W"}))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !text.contains(&wanted) {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("the change in time")
            .expect("stream open")
            .expect("chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let event = text
        .split("\n\n")
        .find(|e| e.contains(&wanted))
        .expect("event");
    assert!(event.contains("event: state_changed"), "{event}");
    let data: Value = serde_json::from_str(
        &event
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect::<String>(),
    )
    .expect("json data");
    assert_eq!(data["new_state"]["state"], "42");
    assert_eq!(data["new_state"]["attributes"]["unit_of_measurement"], "W");
    assert!(data["old_state"].is_null());
    assert!(!text.contains(&other), "filtered out by domain");
}
