//! Ingest against the real Home Assistant and InfluxDB: the registry mirror after start, state
//! changes becoming points (homeiq schema), and the ha_compat schema against HA's own integration.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Ha, HomeIq, HomeIqOptions, Influx, Served, eventually, unique};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn ids(list: &Value, key: &str) -> BTreeSet<String> {
    list.as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r[key].as_str().map(str::to_owned))
        .collect()
}

fn as_values<T: serde::Serialize>(rows: Vec<T>) -> Vec<Value> {
    rows.into_iter()
        .map(|r| serde_json::to_value(r).expect("serialise"))
        .collect()
}

/// After start the SQLite mirror equals HA's device, entity and area lists.
#[tokio::test]
async fn mirror_equals_home_assistant_registries_after_start() {
    let ha = Ha::from_env();
    let homeiq = HomeIq::spawn(HomeIqOptions::from_env()).await;
    homeiq.wait_synced().await;
    let store = homeiq.registry().await;

    // the registry tests may be changing HA at the same time: compare until equal
    let found = eventually("mirror equal to HA's lists", WAIT, || async {
        let lists = ha
            .ws(vec![
                json!({"type": "config/device_registry/list"}),
                json!({"type": "config/entity_registry/list"}),
                json!({"type": "config/area_registry/list"}),
            ])
            .await;
        let mirror_devices = as_values(store.list_devices().await.ok()?);
        // registry rows only: the mirror also lists state-only entities, which have no registry id
        let mirror_entities: Vec<Value> = as_values(store.list_entities().await.ok()?)
            .into_iter()
            .filter(|e| !e["id"].is_null())
            .collect();
        let mirror_areas = as_values(store.list_areas().await.ok()?);
        let equal = ids(&lists[0], "id") == ids(&Value::from(mirror_devices.clone()), "id")
            && ids(&lists[1], "entity_id")
                == ids(&Value::from(mirror_entities.clone()), "entity_id")
            && ids(&lists[2], "area_id") == ids(&Value::from(mirror_areas.clone()), "area_id");
        equal.then_some((lists, mirror_devices, mirror_entities, mirror_areas))
    })
    .await;
    let (lists, mirror_devices, mirror_entities, mirror_areas) = found;
    let devices = (lists[0].clone(), mirror_devices);
    let entities = (lists[1].clone(), mirror_entities);
    let areas = (lists[2].clone(), mirror_areas);

    assert!(
        devices.1.len() >= 40,
        "demo has ~51 devices, mirror has {}",
        devices.1.len()
    );
    assert!(entities.1.len() >= 60);
    assert!(areas.1.len() >= 3);

    // the fields users filter by are copied, not just the ids
    let by = |rows: &[Value], key: &str| -> BTreeMap<String, Value> {
        rows.iter()
            .map(|r| (r[key].as_str().unwrap_or_default().to_owned(), r.clone()))
            .collect()
    };
    let mirror_devices = by(&devices.1, "id");
    for d in devices.0.as_array().expect("devices") {
        let m = &mirror_devices[d["id"].as_str().expect("id")];
        // identifiers carry the integration (the first one's domain), so they are copied whole
        for key in [
            "name",
            "name_by_user",
            "manufacturer",
            "model",
            "area_id",
            "identifiers",
        ] {
            assert_eq!(m[key], d[key], "device {} field {key}", d["id"]);
        }
    }
    let mirror_entities = by(&entities.1, "entity_id");
    for e in entities.0.as_array().expect("entities") {
        let m = &mirror_entities[e["entity_id"].as_str().expect("entity_id")];
        for key in [
            "id",
            "platform",
            "device_id",
            "area_id",
            "name",
            "original_name",
            "entity_category",
            "disabled_by",
            "hidden_by",
        ] {
            assert_eq!(m[key], e[key], "entity {} field {key}", e["entity_id"]);
        }
        let domain = e["entity_id"].as_str().and_then(|s| s.split('.').next());
        assert_eq!(m["domain"].as_str(), domain);
    }
    let mirror_areas = by(&areas.1, "area_id");
    for a in areas.0.as_array().expect("areas") {
        assert_eq!(
            mirror_areas[a["area_id"].as_str().expect("id")]["name"],
            a["name"]
        );
    }
    // device_class and unit come from state attributes
    let outside = eventually("state metadata in the mirror", WAIT, || async {
        let row = store
            .get_entity("sensor.outside_temperature")
            .await
            .ok()??;
        let row = serde_json::to_value(row).expect("serialise");
        (!row["device_class"].is_null()).then_some(row)
    })
    .await;
    assert_eq!(outside["device_class"], "temperature");
    assert_eq!(outside["unit"], "°C");
}

/// Epoch milliseconds of an HA timestamp string.
fn ms(ts: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts.as_str().expect("timestamp"))
        .expect("rfc3339")
        .timestamp_millis()
}

/// Changes made through HA's REST API become the right points (homeiq schema).
#[tokio::test]
async fn state_changes_become_points_with_tags_fields_and_time() {
    let ha = Ha::from_env();
    let influx = Influx::from_env();
    let homeiq = HomeIq::spawn(HomeIqOptions::from_env()).await;
    homeiq.wait_synced().await;
    let db = homeiq.database.clone();

    // a real light through service calls (off first, so "on" is always a change)
    ha.call_service("light", "turn_off", json!({"entity_id": "light.bed_light"}))
        .await;
    eventually("bed light off", WAIT, || async {
        (ha.state("light.bed_light").await["state"] == "off").then_some(())
    })
    .await;
    ha.call_service(
        "light",
        "turn_on",
        json!({"entity_id": "light.bed_light", "brightness": 77}),
    )
    .await;
    let state = eventually("bed light on with brightness 77", WAIT, || async {
        let s = ha.state("light.bed_light").await;
        (s["attributes"]["brightness"] == 77).then_some(s)
    })
    .await;
    let registry = ha
        .ws1(json!({"type": "config/entity_registry/get", "entity_id": "light.bed_light"}))
        .await;
    let t = ms(&state["last_updated"]);
    let t_us = chrono::DateTime::parse_from_rfc3339(state["last_updated"].as_str().expect("ts"))
        .expect("rfc3339")
        .timestamp_micros();
    let rows = eventually(
        "bed light point at last_updated, to the microsecond",
        WAIT,
        || async {
            let rows = influx
                .rows(
                    &db,
                    &format!(
                        "SELECT * FROM light WHERE entity_id = 'light.bed_light' AND time = {t_us}u"
                    ),
                )
                .await;
            (!rows.is_empty()).then_some(rows)
        },
    )
    .await;
    // one series: the same state written again (a snapshot, a backfill) lands on this point
    assert_eq!(rows.len(), 1, "one point at last_updated: {rows:#?}");
    let p = &rows[0];
    assert_eq!(p["_measurement"], "light");
    assert_eq!(p["state"], "on");
    assert_eq!(p["value"], 1.0);
    assert_eq!(p["brightness"], 77.0, "{rows:#?}");
    assert_eq!(p["friendly_name_str"], state["attributes"]["friendly_name"]);
    assert_eq!(p["device_id"], registry["device_id"]);
    assert_eq!(p["time"], t);

    // sensors set through the REST API: numbers, "error", nasty strings, a type-switching attribute
    let id = format!("sensor.{}", unique("hq"));
    let nasty = "a,b c=d \"quoted\" back\\slash\nnew line ünïcödé ✓ \\";
    let steps = [
        (
            "21.5",
            json!({"unit_of_measurement": "°C", "device_class": "temperature", "level": 3, "note": nasty}),
        ),
        (
            "error",
            json!({"unit_of_measurement": "°C", "device_class": "temperature", "level": "high", "note": "x"}),
        ),
        (
            "22.25",
            json!({"unit_of_measurement": "°C", "device_class": "temperature", "level": 4.5, "note": "y"}),
        ),
    ];
    let mut times = Vec::new();
    for (state, attrs) in &steps {
        let s = ha.set_state(&id, state, attrs.clone()).await;
        times.push(ms(&s["last_updated"]));
    }
    let rows = eventually("three sensor points", WAIT, || async {
        let rows = influx
            .rows(
                &db,
                &format!("SELECT * FROM sensor WHERE entity_id = '{id}' ORDER BY time"),
            )
            .await;
        (rows.len() == 3).then_some(rows)
    })
    .await;
    for (row, t) in rows.iter().zip(&times) {
        assert_eq!(&row["time"], t);
        assert_eq!(row["unit"], "°C");
        assert_eq!(row["device_class"], "temperature");
    }
    assert_eq!(rows[0]["state"], "21.5");
    assert_eq!(rows[0]["value"], 21.5);
    assert_eq!(rows[0]["note_str"], nasty);
    assert_eq!(rows[0]["level"], 3.0);
    assert_eq!(rows[1]["state"], "error");
    assert_eq!(
        rows[1]["value"],
        Value::Null,
        "\"error\" has no numeric value"
    );
    assert_eq!(rows[1]["level_str"], "high");
    assert_eq!(rows[1]["level"], Value::Null);
    assert_eq!(rows[2]["value"], 22.25);
    assert_eq!(rows[2]["level"], 4.5);

    // nothing was rejected or dropped on the way
    let deep = homeiq.deep().await;
    assert_eq!(deep["storage"]["influxdb"]["dropped_rejected"], 0, "{deep}");
    assert_eq!(deep["ingest"]["duplicates"], 0, "{deep}");

    // every entity of the demo got its snapshot point, in its domain's measurement
    let states = ha.get("states").await;
    let expected: BTreeSet<String> = ids(&states, "entity_id");
    let written = eventually("a point for every entity", WAIT, || async {
        let series = influx
            .query(&db, "SHOW TAG VALUES WITH KEY = entity_id")
            .await;
        let mut seen = BTreeSet::new();
        for s in &series {
            for v in s["values"].as_array().cloned().unwrap_or_default() {
                let entity = v[1].as_str().unwrap_or_default().to_owned();
                assert_eq!(
                    s["name"].as_str(),
                    entity.split('.').next(),
                    "{entity} is in its domain's measurement"
                );
                seen.insert(entity);
            }
        }
        expected.is_subset(&seen).then_some(seen)
    })
    .await;
    assert!(written.len() >= 100);
}

/// `ha_compat` writes exactly what Home Assistant's own InfluxDB integration writes.
#[tokio::test]
async fn ha_compat_matches_home_assistants_own_integration() {
    let native_db = common::env("HA_NATIVE_INFLUX_DB");
    let ha = Ha::from_env();
    let influx = Influx::from_env();
    let homeiq =
        HomeIq::spawn(HomeIqOptions::from_env().env("HOMEIQ_INFLUXDB__SCHEMA", "ha_compat")).await;
    homeiq.wait_synced().await;
    let db = homeiq.database.clone();

    let object = unique("compat");
    let entities = [
        (
            format!("sensor.{object}_power"),
            vec![
                (
                    "12.5",
                    json!({"unit_of_measurement": "W", "device_class": "power", "friendly_name": "Plug, \"A\""}),
                ),
                (
                    "13",
                    json!({"unit_of_measurement": "W", "device_class": "power", "friendly_name": "Plug, \"A\"", "extra": "7"}),
                ),
            ],
        ),
        (
            format!("binary_sensor.{object}_door"),
            vec![
                (
                    "on",
                    json!({"device_class": "door", "friendly_name": "Door"}),
                ),
                (
                    "off",
                    json!({"device_class": "door", "friendly_name": "Door"}),
                ),
            ],
        ),
        (
            format!("sensor.{object}_mode"),
            vec![
                (
                    "eco",
                    json!({"options": ["eco", "comfort"], "level": 2, "note": "line\nbreak, = and \\"}),
                ),
                (
                    "error",
                    json!({"options": ["eco", "comfort"], "level": "max", "value": 5}),
                ),
                ("unavailable", json!({})),
            ],
        ),
    ];
    for (id, steps) in &entities {
        for (state, attrs) in steps {
            ha.set_state(id, state, attrs.clone()).await;
        }
    }
    let ns_rows = |db: String, object: String| {
        let influx = influx.clone();
        async move {
            let mut rows = Vec::new();
            for series in influx
                .query_epoch(
                    &db,
                    &format!("SELECT * FROM /.*/ WHERE entity_id =~ /^{object}/"),
                    "ns",
                )
                .await
            {
                // who caused each change goes beside the integration's points (checked below)
                if series["name"] != "homeiq_origin" {
                    rows.push(series);
                }
            }
            rows
        }
    };
    let (mine, theirs) = eventually(
        "both databases hold the same points",
        Duration::from_secs(45),
        || async {
            let mine = ns_rows(db.clone(), object.clone()).await;
            let theirs = ns_rows(native_db.clone(), object.clone()).await;
            let count = |s: &Vec<Value>| {
                s.iter()
                    .map(|x| x["values"].as_array().map_or(0, Vec::len))
                    .sum::<usize>()
            };
            (count(&theirs) >= 6 && count(&mine) == count(&theirs)).then_some((mine, theirs))
        },
    )
    .await;
    // beside every point of a live change: one `homeiq_origin` point at the same time, with the
    // integration's tags (the states were set through the REST API by the token's user)
    let origins = influx
        .query_epoch(
            &db,
            &format!("SELECT * FROM homeiq_origin WHERE entity_id =~ /^{object}/"),
            "ns",
        )
        .await;
    let origin_times: BTreeSet<i64> = origins
        .iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v[0].as_i64())
        .collect();
    let point_times: BTreeSet<i64> = mine
        .iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v[0].as_i64())
        .collect();
    assert_eq!(origin_times, point_times, "an origin beside every point");
    assert!(
        origins.iter().all(|s| {
            let col = s["columns"]
                .as_array()
                .and_then(|c| c.iter().position(|c| c == "origin"));
            s["values"]
                .as_array()
                .is_some_and(|vs| vs.iter().all(|v| col.is_some_and(|i| v[i] == "user")))
        }),
        "{origins:?}"
    );
    let normalise = |series: Vec<Value>| -> BTreeMap<String, BTreeMap<String, Value>> {
        let mut out = BTreeMap::new();
        for s in series {
            let columns: Vec<String> = s["columns"]
                .as_array()
                .expect("columns")
                .iter()
                .map(|c| c.as_str().unwrap_or_default().to_owned())
                .collect();
            for v in s["values"].as_array().cloned().unwrap_or_default() {
                let mut row = BTreeMap::new();
                for (c, x) in columns
                    .iter()
                    .zip(v.as_array().cloned().unwrap_or_default())
                {
                    if !x.is_null() {
                        row.insert(c.clone(), x);
                    }
                }
                let key = format!(
                    "{} {} {}",
                    s["name"].as_str().unwrap_or_default(),
                    row["entity_id"],
                    row["time"]
                );
                out.insert(key, row);
            }
        }
        out
    };
    let mine = normalise(mine);
    let theirs = normalise(theirs);
    assert_eq!(
        mine.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "same measurements, entities and times"
    );
    assert_eq!(mine, theirs, "same tags and fields");
}

/// `/metrics` exposes the same counters as `/health/deep`, in Prometheus text.
#[tokio::test]
async fn metrics_expose_connection_pipeline_and_writer_counters() {
    let homeiq = HomeIq::spawn(HomeIqOptions::from_env()).await;
    homeiq.wait_synced().await;
    homeiq
        .wait_deep("snapshot written", WAIT, |d| {
            d["storage"]["written"].as_u64().unwrap_or(0) >= 100
        })
        .await;
    let response = reqwest::get(homeiq.url("/metrics")).await.expect("metrics");
    assert!(response.status().is_success());
    let text = response.text().await.expect("text");
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
    };
    assert_eq!(value("homeiq_ha_connected"), 1.0);
    assert_eq!(value("homeiq_ha_connects_total"), 1.0);
    assert!(value("homeiq_ingest_snapshot_points_total") >= 100.0);
    assert!(value("homeiq_storage_points_written_total{backend=\"influxdb\"}") >= 100.0);
    assert_eq!(value("homeiq_storage_reachable{backend=\"influxdb\"}"), 1.0);
    assert!(value("homeiq_process_resident_memory_bytes") > 1e6);
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
}

/// History for a range whose end the client names is served from the cache until HomeIQ writes
/// a point of that entity: a point written to InfluxDB behind HomeIQ's back is not seen (the
/// answer is cached), a state change ingested from HA is, at once (well before the cache's 60 s
/// time to live).
#[tokio::test]
async fn cached_history_follows_ingested_changes() {
    let ha = Ha::from_env();
    let influx = Influx::from_env();
    let homeiq = HomeIq::spawn(HomeIqOptions::from_env()).await;
    homeiq.wait_synced().await;
    let db = homeiq.database.clone();
    let entity = format!("sensor.{}", unique("cache"));
    let http = reqwest::Client::new();
    let now = chrono::Utc::now();
    let iso =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let url = homeiq.url(&format!(
        "/api/v1/history?entity_id={entity}&start={}&end={}",
        iso(now - chrono::Duration::hours(1)),
        iso(now + chrono::Duration::hours(1))
    ));
    let states = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["state"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let get = || async {
        let r = http.get(&url).send().await.expect("history");
        assert!(r.status().is_success(), "{}", r.status());
        r.json::<Value>().await.expect("json")
    };

    ha.set_state(&entity, "1", json!({})).await;
    eventually("the first state in history", WAIT, || async {
        (states(&get().await) == ["1"]).then_some(())
    })
    .await;

    // behind HomeIQ's back: the cached answer stands
    let behind = (now - chrono::Duration::minutes(30)).timestamp_micros();
    let line = format!("sensor,entity_id={entity} state=\"outside\",value=7 {behind}");
    let written = http
        .post(format!("{}/write?db={db}&precision=u", influx.url))
        .body(line)
        .send()
        .await
        .expect("write");
    assert!(written.status().is_success());
    assert_eq!(states(&get().await), ["1"], "served from the cache");

    // through HomeIQ: the answer is recomputed as soon as the point is written
    ha.set_state(&entity, "2", json!({})).await;
    let seen = eventually(
        "the ingested change in the cached range",
        Duration::from_secs(20),
        || async {
            let s = states(&get().await);
            s.contains(&"2".to_owned()).then_some(s)
        },
    )
    .await;
    assert_eq!(seen, ["outside", "1", "2"], "recomputed from InfluxDB");
}

/// Who caused a change, as HA's logbook would say it: a time-triggered automation (its changes
/// carry neither a user nor a parent; only its `automation_triggered` event names it) and a
/// person calling a service. Stored as fields, never tags, and served by the history API.
#[tokio::test]
async fn changes_carry_who_caused_them_automation_and_user() {
    let ha = Ha::from_env();
    let influx = Influx::from_env();
    let homeiq = HomeIq::spawn(HomeIqOptions::from_env()).await;
    homeiq.wait_synced().await;
    let db = homeiq.database.clone();
    let owner = ha.ws1(json!({"type": "auth/current_user"})).await["id"]
        .as_str()
        .expect("user id")
        .to_owned();

    // a person: a service call with the token's user
    ha.call_service(
        "light",
        "turn_off",
        json!({"entity_id": "light.ceiling_lights"}),
    )
    .await;
    ha.call_service(
        "light",
        "turn_on",
        json!({"entity_id": "light.ceiling_lights"}),
    )
    .await;
    let by_user = eventually("the ceiling light's change by a person", WAIT, || async {
        let rows = influx
            .rows(
                &db,
                "SELECT origin, origin_id, state FROM light WHERE entity_id = 'light.ceiling_lights' AND origin = 'user'",
            )
            .await;
        rows.into_iter().find(|r| r["state"] == "on")
    })
    .await;
    assert_eq!(by_user["origin_id"], owner.as_str());

    // a time-triggered automation toggling a switch every few seconds
    let id = unique("origin_test");
    let path = format!("config/automation/config/{id}");
    ha.post(
        &path,
        json!({
            "alias": id,
            "description": "HomeIQ test: time-triggered",
            "triggers": [{"trigger": "time_pattern", "seconds": "/2"}],
            "actions": [{"action": "switch.toggle", "target": {"entity_id": "switch.decorative_lights"}}],
            "mode": "single"
        }),
    )
    .await;
    let by_automation = eventually("the switch toggled by the automation", WAIT, || async {
        let rows = influx
            .rows(
                &db,
                "SELECT origin, origin_id FROM switch WHERE entity_id = 'switch.decorative_lights' AND origin = 'automation'",
            )
            .await;
        rows.into_iter().next()
    })
    .await;
    let deleted = ha.delete(&path).await;
    assert!(
        deleted.is_success(),
        "the test automation was not removed: {deleted}"
    );
    let automation_entity = by_automation["origin_id"].as_str().unwrap_or_default();
    assert!(
        automation_entity.starts_with("automation."),
        "the automation's entity: {by_automation:?}"
    );
    // the tags of the series are unchanged: origin is never a tag
    let tags = influx
        .query(&db, "SHOW TAG KEYS FROM switch")
        .await
        .into_iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v[0].as_str().map(str::to_owned))
        .collect::<Vec<_>>();
    assert!(!tags.iter().any(|t| t.starts_with("origin")), "{tags:?}");

    // and the history API says it
    let history = homeiq
        .get_json(
            "/api/v1/history?entity_id=switch.decorative_lights,light.ceiling_lights&limit=500",
        )
        .await;
    let items = history["items"].as_array().cloned().unwrap_or_default();
    assert!(
        items
            .iter()
            .any(|r| r["entity_id"] == "switch.decorative_lights"
                && r["origin"]["kind"] == "automation"
                && r["origin"]["id"] == automation_entity),
        "{history}"
    );
    assert!(
        items
            .iter()
            .any(|r| r["entity_id"] == "light.ceiling_lights"
                && r["origin"]["kind"] == "user"
                && r["origin"]["id"] == owner.as_str()),
        "{history}"
    );
}

/// In `ha_compat` mode the integration's points stay exactly its own; who caused a change goes
/// beside them and the history API joins it back.
#[tokio::test]
async fn ha_compat_keeps_the_origin_beside_its_points_and_serves_it() {
    let ha = Ha::from_env();
    let influx = Influx::from_env();
    let homeiq =
        HomeIq::spawn(HomeIqOptions::from_env().env("HOMEIQ_INFLUXDB__SCHEMA", "ha_compat")).await;
    homeiq.wait_synced().await;
    let db = homeiq.database.clone();
    let owner = ha.ws1(json!({"type": "auth/current_user"})).await["id"]
        .as_str()
        .expect("user id")
        .to_owned();
    let entity = format!("sensor.{}", unique("origin"));
    ha.set_state(&entity, "first", json!({})).await;
    ha.set_state(&entity, "second", json!({})).await;
    let object = entity.trim_start_matches("sensor.").to_owned();
    eventually(
        "two origin points beside the integration's",
        WAIT,
        || async {
            let rows = influx
                .rows(
                    &db,
                    &format!(
                        "SELECT origin, origin_id FROM homeiq_origin WHERE entity_id = '{object}'"
                    ),
                )
                .await;
            (rows.len() == 2
                && rows
                    .iter()
                    .all(|r| r["origin"] == "user" && r["origin_id"] == owner.as_str()))
            .then_some(())
        },
    )
    .await;
    let history = homeiq
        .get_json(&format!("/api/v1/history?entity_id={entity}&limit=10"))
        .await;
    let items = history["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        items.len(),
        2,
        "only the entity's records, no origin rows: {history}"
    );
    for r in &items {
        assert_eq!(r["origin"]["kind"], "user", "{history}");
        assert_eq!(r["origin"]["id"], owner.as_str(), "{history}");
        assert!(r["attributes"].get("origin").is_none(), "{history}");
    }
}
