//! Schema tests. `testdata/ha_2025_4_4_influxdb.jsonl` holds `state_changed` events as Home
//! Assistant 2025.4.4 sends them over the WebSocket API, each with the line protocol its own
//! InfluxDB integration produced for it under five configurations (see `testdata/README.md`):
//! the demo integration's entities (real Python attribute types: tuples, enums, datetimes) and
//! synthetic events for the remaining domains and edge cases.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::config::{InfluxSettings, SchemaMode};
use crate::store::influx::encode_point;
use crate::store::influx::parse::{Parsed, parse_line, split_lines};

const FIXTURE: &str = include_str!("testdata/ha_2025_4_4_influxdb.jsonl");

#[derive(Deserialize)]
struct Record {
    source: String,
    event: StateChanged,
    lines: BTreeMap<String, Option<String>>,
}

fn records() -> Vec<Record> {
    FIXTURE
        .lines()
        .map(|l| serde_json::from_str(l).expect("fixture record decodes"))
        .collect()
}

fn compat_settings(config: &str) -> InfluxSettings {
    let mut s = InfluxSettings {
        schema: SchemaMode::HaCompat,
        ..InfluxSettings::default()
    };
    match config {
        "default" => {}
        "domain_dc" => s.measurement_attr = "domain__device_class".into(),
        "entity_id" => s.measurement_attr = "entity_id".into(),
        "default_meas" => s.default_measurement = Some("state".into()),
        "override" => {
            s.override_measurement = Some("all".into());
            s.ignore_attributes = vec!["friendly_name".into(), "icon".into()];
        }
        other => panic!("unknown config {other}"),
    }
    s
}

/// What InfluxDB stores for one line, with fields sorted and `time` fields (ignored by the
/// server) removed.
fn stored(line: &str) -> Option<Parsed> {
    let lines = split_lines(line);
    assert_eq!(lines.len(), 1, "one line: {line:?}");
    let mut p = parse_line(lines[0]).ok()?;
    p.fields.retain(|(k, _)| k != "time");
    p.fields.sort_by(|a, b| a.0.cmp(&b.0));
    p.tags.sort();
    (!p.fields.is_empty()).then_some(p)
}

fn encoded(p: &Point) -> String {
    let mut s = String::new();
    encode_point(p, &mut s).expect("mapped points always encode");
    s
}

/// Entities whose names carry a trailing backslash: the integration's client writes garbled
/// lines for them (a field or measurement swallows its neighbours); HomeIQ writes clean ones.
const GARBLED_BY_HA: &[&str] = &["sensor.trailing_key", "sensor.trailing_unit"];

#[test]
fn ha_compat_matches_home_assistant_for_every_fixture_event() {
    let mut compared = 0;
    let mut domains = std::collections::BTreeSet::new();
    for config in [
        "default",
        "domain_dc",
        "entity_id",
        "default_meas",
        "override",
    ] {
        let mapper = PointMapper::new(&compat_settings(config));
        assert_eq!(mapper.precision(), Precision::Micros);
        for r in records() {
            let id = r.event.entity_id.as_str();
            if GARBLED_BY_HA.contains(&id) {
                continue;
            }
            let ours = mapper.map_change(&r.event, &EntityMeta::default());
            let theirs = r.lines[config].as_deref().and_then(stored);
            let Some(mut want) = theirs else {
                assert!(
                    ours.is_none(),
                    "{config} {id}: HA writes nothing, we wrote {ours:?}"
                );
                continue;
            };
            let ours = ours.unwrap_or_else(|| panic!("{config} {id}: HA writes {want:?}"));
            let mut got = stored(&encoded(&ours)).expect("our line parses");
            // HA sends nanoseconds; we send microseconds.
            want.time = want.time.map(|t| t / 1000);
            if id == "image_processing.demo_face" {
                // A list of dicts: Python keeps insertion order, our JSON map sorts keys.
                let take = |p: &mut Parsed| p.fields.retain(|(k, _)| k != "faces_str");
                take(&mut want);
                take(&mut got);
            }
            assert_eq!(got, want, "{config} {id} ({})", r.source);
            domains.insert(id.split('.').next().unwrap_or_default().to_owned());
            compared += 1;
        }
    }
    assert!(compared > 500, "compared {compared}");
    for d in [
        "alarm_control_panel",
        "binary_sensor",
        "button",
        "calendar",
        "camera",
        "climate",
        "cover",
        "date",
        "datetime",
        "device_tracker",
        "event",
        "fan",
        "humidifier",
        "image",
        "lawn_mower",
        "light",
        "lock",
        "media_player",
        "number",
        "person",
        "remote",
        "select",
        "sensor",
        "siren",
        "sun",
        "switch",
        "text",
        "time",
        "update",
        "vacuum",
        "valve",
        "water_heater",
        "weather",
        "zone",
    ] {
        assert!(domains.contains(d), "no fixture for {d}");
    }
}

fn event(entity_id: &str, state: &str, attributes: serde_json::Value) -> StateChanged {
    serde_json::from_value(json!({
        "entity_id": entity_id,
        "old_state": null,
        "new_state": {
            "entity_id": entity_id, "state": state, "attributes": attributes,
            "last_changed": "2025-04-01T10:00:00.123456+00:00",
            "last_updated": "2025-04-01T10:00:00.123456+00:00",
        },
        "time_fired": "2025-04-01T10:00:00.200001+00:00",
    }))
    .expect("valid event")
}

fn compat(ev: &StateChanged) -> Option<Point> {
    PointMapper::new(&compat_settings("default")).map_change(ev, &EntityMeta::default())
}

fn field<'a>(p: &'a Point, key: &str) -> Option<&'a FieldValue> {
    p.field_value(key)
}

fn float(v: f64) -> Option<FieldValue> {
    Some(FieldValue::Float(v))
}

fn text(v: &str) -> Option<FieldValue> {
    Some(FieldValue::Str(v.into()))
}

#[test]
fn ha_compat_details() {
    let p = compat(&event(
        "sensor.power",
        "12.5",
        json!({"unit_of_measurement": "W", "device_class": "power", "friendly_name": "Power"}),
    ))
    .expect("point");
    assert_eq!(p.measurement, "W");
    assert_eq!(
        p.tags,
        vec![
            ("domain".into(), "sensor".into()),
            ("entity_id".into(), "power".into())
        ]
    );
    assert_eq!(p.time, 1_743_501_600_200_001);
    assert_eq!(field(&p, "value").cloned(), float(12.5));
    assert!(field(&p, "state").is_none());
    assert!(field(&p, "unit_of_measurement_str").is_none());
    assert_eq!(field(&p, "device_class_str").cloned(), text("power"));

    // Snapshot and removals write nothing.
    let mapper = PointMapper::new(&compat_settings("default"));
    let ev = event("light.x", "on", json!({}));
    assert!(
        mapper
            .map_state(
                ev.new_state.as_ref().expect("state"),
                &EntityMeta::default()
            )
            .is_none()
    );
    let removed = StateChanged {
        new_state: None,
        ..ev
    };
    assert!(
        mapper
            .map_change(&removed, &EntityMeta::default())
            .is_none()
    );

    // State "error" is just text.
    let p = compat(&event("sensor.e", "error", json!({"error": "error"}))).expect("point");
    assert_eq!(field(&p, "state").cloned(), text("error"));
    assert_eq!(field(&p, "error_str").cloned(), text("error"));

    // The collision rule appends exactly one underscore.
    let p = compat(&event(
        "sensor.c",
        "on",
        json!({"state": "x", "value": 2, "value_": 3}),
    ))
    .expect("point");
    assert_eq!(field(&p, "state_str").cloned(), None);
    assert_eq!(field(&p, "state__str").cloned(), text("x"));
    assert_eq!(field(&p, "value").cloned(), float(1.0));
    assert_eq!(field(&p, "value_").cloned(), float(2.0));
    assert_eq!(field(&p, "value__").cloned(), float(3.0));

    // Strings with commas, quotes, newlines and unicode survive (newline as HA's `\n`).
    let p = compat(&event(
        "sensor.s",
        "ok, \"fine\"",
        json!({"note": "a, b\nc \"d\" ☃"}),
    ))
    .expect("point");
    assert_eq!(field(&p, "state").cloned(), text("ok, \"fine\""));
    assert_eq!(field(&p, "note_str").cloned(), text("a, b\\nc \"d\" ☃"));
}

#[test]
fn ha_compat_attribute_switching_types_follows_home_assistant() {
    let fields = |v: serde_json::Value| {
        let p = compat(&event("sensor.flip", "1", json!({ "reading": v }))).expect("point");
        let mut f: Vec<_> = p.fields.into_iter().filter(|(k, _)| k != "value").collect();
        f.sort_by(|a, b| a.0.cmp(&b.0));
        f
    };
    assert_eq!(
        fields(json!(12.5)),
        vec![("reading".into(), FieldValue::Float(12.5))]
    );
    assert_eq!(
        fields(json!("n/a")),
        vec![("reading_str".into(), FieldValue::Str("n/a".into()))]
    );
    assert_eq!(
        fields(json!("14 kWh")),
        vec![
            ("reading".into(), FieldValue::Float(14.0)),
            ("reading_str".into(), FieldValue::Str("14 kWh".into()))
        ]
    );
}

fn homeiq_mapper() -> PointMapper {
    PointMapper::new(&InfluxSettings {
        ignore_attributes: vec!["entity_picture".into()],
        ..InfluxSettings::default()
    })
}

fn meta() -> EntityMeta {
    EntityMeta {
        device_id: Some("dev1".into()),
        area_id: Some("kitchen".into()),
    }
}

/// The homeiq point of the first fixture event of `entity_id`.
fn homeiq(entity_id: &str) -> Point {
    let r = records()
        .into_iter()
        .find(|r| {
            r.event.entity_id == entity_id
                && r.event
                    .new_state
                    .as_ref()
                    .is_some_and(|s| s.state != "unknown" && s.state != "unavailable")
        })
        .unwrap_or_else(|| panic!("no fixture event for {entity_id}"));
    homeiq_mapper()
        .map_change(&r.event, &meta())
        .unwrap_or_else(|| panic!("no point for {entity_id}"))
}

#[test]
fn homeiq_schema_invariants_over_every_fixture_event() {
    let mapper = homeiq_mapper();
    assert_eq!(mapper.precision(), Precision::Micros);
    let mut types: HashMap<(String, String), &'static str> = HashMap::new();
    let mut count = 0;
    for r in records() {
        let Some(state) = r.event.new_state.as_ref() else {
            assert!(mapper.map_change(&r.event, &meta()).is_none());
            continue;
        };
        let p = mapper
            .map_change(&r.event, &meta())
            .expect("every state maps");
        assert_eq!(Some(&p), mapper.map_state(state, &meta()).as_ref());
        assert_eq!(p.measurement, state.domain());
        assert_eq!(p.time, state.last_updated.timestamp_micros());
        assert_eq!(p.tag_value("entity_id"), Some(state.entity_id.as_str()));
        assert_eq!(p.tag_value("device_id"), Some("dev1"));
        assert_eq!(p.tag_value("area_id"), Some("kitchen"));
        assert_eq!(p.tag_value("unit"), state.unit().filter(|u| !u.is_empty()));
        assert_eq!(
            p.tag_value("device_class"),
            state.device_class().filter(|u| !u.is_empty())
        );
        assert!(p.tags.is_sorted_by(|a, b| a.0 < b.0));
        assert_eq!(
            p.field_value("state"),
            Some(&FieldValue::Str(state.state.clone()))
        );
        for (k, v) in &p.fields {
            assert!(!matches!(v, FieldValue::Int(_) | FieldValue::Bool(_)));
            assert!(
                ![
                    "unit_of_measurement",
                    "device_class",
                    "entity_picture",
                    "time"
                ]
                .contains(&k.as_str()),
                "{k}"
            );
            let kind = match v {
                FieldValue::Str(_) => {
                    assert!(k == "state" || is_text_name(k), "{k} is text");
                    "string"
                }
                FieldValue::Float(f) => {
                    assert!(f.is_finite());
                    assert!(k != "state" && !is_text_name(k), "{k} is a float");
                    "float"
                }
                _ => unreachable!(),
            };
            let prev = types.insert((p.measurement.clone(), k.clone()), kind);
            assert!(prev.is_none_or(|t| t == kind), "type conflict on {k}");
        }
        let names: std::collections::HashSet<_> = p.fields.iter().map(|(k, _)| k).collect();
        assert_eq!(names.len(), p.fields.len(), "unique names");
        let line = encoded(&p);
        assert_eq!(split_lines(&line).len(), 1);
        parse_line(line.trim_end_matches('\n')).expect("parses");
        count += 1;
    }
    assert!(count > 150);
}

#[test]
fn homeiq_value_follows_state_as_number() {
    let v = |state: &str| {
        homeiq_mapper()
            .map_change(&event("x.y", state, json!({})), &meta())
            .and_then(|p| p.field_value("value").cloned())
    };
    for (s, want) in [
        ("on", float(1.0)),
        ("off", float(0.0)),
        ("open", float(1.0)),
        ("closed", float(0.0)),
        ("home", float(1.0)),
        ("not_home", float(0.0)),
        ("locked", float(1.0)),
        ("unlocked", float(0.0)),
        ("above_horizon", float(1.0)),
        ("below_horizon", float(0.0)),
        ("21.5", float(21.5)),
        ("-3", float(-3.0)),
        ("1e3", float(1000.0)),
        ("nan", None),
        ("inf", None),
        ("unknown", None),
        ("unavailable", None),
        ("error", None),
        ("jammed", None),
        ("", None),
    ] {
        assert_eq!(v(s), want, "{s:?}");
    }
}

#[test]
fn homeiq_attribute_types_and_names() {
    let p = homeiq_mapper()
        .map_change(
            &event(
                "sensor.x",
                "5",
                json!({
                    "n": 3, "f": 2.5, "b": true, "s": "text, \"q\"\n☃", "l": [1, "a"],
                    "o": {"k": null}, "z": null, "big": 18446744073709551615u64,
                    "state": 1, "value": "v", "time": 2, "unit": 4, "x_str": 9, "x": "t",
                    "unit_of_measurement": "W", "device_class": "power", "entity_picture": "/p",
                }),
            ),
            &meta(),
        )
        .expect("point");
    let f = |k: &str| p.field_value(k).cloned();
    assert_eq!(f("n"), float(3.0));
    assert_eq!(f("f"), float(2.5));
    assert_eq!(f("b"), float(1.0));
    assert_eq!(f("s_str"), text("text, \"q\"\n☃"));
    assert_eq!(f("l_json"), text("[1,\"a\"]"));
    assert_eq!(f("o_json"), text("{\"k\":null}"));
    assert_eq!(f("z"), None);
    assert_eq!(f("big"), float(18_446_744_073_709_551_615.0));
    assert_eq!(f("state_"), float(1.0));
    assert_eq!(f("value_str"), text("v"));
    assert_eq!(f("time_"), float(2.0));
    assert_eq!(f("unit_"), float(4.0));
    assert_eq!(f("x_str_num"), float(9.0));
    assert_eq!(f("x_str"), text("t"));
    assert_eq!(f("value"), float(5.0));
    assert_eq!(p.tag_value("unit"), Some("W"));
    assert_eq!(p.tag_value("device_class"), Some("power"));
    assert!(f("entity_picture_str").is_none());
}

#[test]
fn homeiq_switching_attribute_never_conflicts() {
    let mapper = homeiq_mapper();
    let names: Vec<Vec<(String, &'static str)>> =
        [json!(12.5), json!("n/a"), json!(true), json!([1])]
            .into_iter()
            .map(|v| {
                let p = mapper
                    .map_change(&event("sensor.flip", "1", json!({ "reading": v })), &meta())
                    .expect("point");
                p.fields
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("reading"))
                    .map(|(k, v)| {
                        (
                            k,
                            if matches!(v, FieldValue::Str(_)) {
                                "string"
                            } else {
                                "float"
                            },
                        )
                    })
                    .collect()
            })
            .collect();
    assert_eq!(
        names,
        vec![
            vec![("reading".into(), "float")],
            vec![("reading_str".into(), "string")],
            vec![("reading".into(), "float")],
            vec![("reading_json".into(), "string")],
        ]
    );
}

/// An entity and the values expected for some of its fields (`None`: no such field).
type Case = (&'static str, Vec<(&'static str, Option<FieldValue>)>);

/// One expectation per domain: the fields that matter for it, with types.
#[test]
fn homeiq_every_domain() {
    let f = |p: &Point, k: &str| p.field_value(k).cloned();
    let cases: Vec<Case> = vec![
        (
            "light.kitchen_lights",
            vec![
                ("state", text("on")),
                ("value", float(1.0)),
                ("brightness", float(180.0)),
                ("hs_color_json", text("[345,75]")),
                ("rgb_color_json", text("[255,64,112]")),
                (
                    "supported_color_modes_json",
                    text("[\"color_temp\",\"hs\"]"),
                ),
                ("color_mode_str", text("hs")),
                ("friendly_name_str", text("Kitchen Lights")),
            ],
        ),
        (
            "light.bed_light",
            vec![
                ("state", text("off")),
                ("value", float(0.0)),
                ("brightness", None),
            ],
        ),
        (
            "switch.ac",
            vec![("state", text("off")), ("value", float(0.0))],
        ),
        (
            "sensor.outside_temperature",
            vec![
                ("state", text("15.6")),
                ("value", float(15.6)),
                ("battery_level", float(12.0)),
                ("state_class_str", text("measurement")),
            ],
        ),
        (
            "sensor.weather_condition",
            vec![("state", text("partly cloudy, windy")), ("value", None)],
        ),
        (
            "sensor.thermostat",
            vec![
                ("state", text("eco")),
                ("value", None),
                (
                    "options_json",
                    text("[\"away\",\"comfort\",\"eco\",\"sleep\"]"),
                ),
            ],
        ),
        (
            "sensor.last_boot",
            vec![
                ("state", text("2025-03-30T08:12:45+00:00")),
                ("value", None),
            ],
        ),
        (
            "binary_sensor.movement_backyard",
            vec![("state", text("on")), ("value", float(1.0))],
        ),
        (
            "climate.hvac",
            vec![
                ("state", text("cool")),
                ("value", None),
                ("current_temperature", float(22.0)),
                ("temperature", float(21.0)),
                ("target_temp_high", None),
                (
                    "hvac_modes_json",
                    text("[\"off\",\"heat\",\"cool\",\"auto\",\"dry\",\"fan_only\"]"),
                ),
                ("current_humidity", float(54.2)),
            ],
        ),
        (
            "cover.living_room_window",
            vec![
                ("state", text("open")),
                ("value", float(1.0)),
                ("current_position", float(70.0)),
            ],
        ),
        (
            "fan.living_room_fan",
            vec![
                ("state", text("off")),
                ("percentage_step", float(33.333333333333336)),
                (
                    "preset_modes_json",
                    text("[\"auto\",\"smart\",\"sleep\",\"on\"]"),
                ),
            ],
        ),
        (
            "lock.front_door",
            vec![("state", text("locked")), ("value", float(1.0))],
        ),
        (
            "lock.back",
            vec![("state", text("jammed")), ("value", None)],
        ),
        (
            "media_player.tv",
            vec![
                ("state", text("paused")),
                ("volume_level", float(0.31)),
                ("media_title_str", text("Episode 7, \"The Return\"")),
                (
                    "media_position_updated_at_str",
                    text("2025-04-01T09:58:00.654321+00:00"),
                ),
                ("is_volume_muted", float(0.0)),
            ],
        ),
        (
            "alarm_control_panel.security",
            vec![
                ("state", text("disarmed")),
                ("code_arm_required", float(1.0)),
                ("code_format_str", text("number")),
            ],
        ),
        (
            "vacuum.0_ground_floor",
            vec![
                ("state", text("docked")),
                ("battery_level", float(100.0)),
                ("fan_speed_str", text("medium")),
            ],
        ),
        (
            "water_heater.demo_water_heater",
            vec![
                ("state", text("eco")),
                ("temperature", float(48.3)),
                ("current_temperature", None),
            ],
        ),
        (
            "humidifier.hygrostat",
            vec![("state", text("on")), ("humidity", float(50.0))],
        ),
        (
            "weather.demo_weather_south",
            vec![
                ("state", text("sunny")),
                ("temperature", float(21.6)),
                ("temperature_unit_str", text("°C")),
            ],
        ),
        (
            "number.pwm_1",
            vec![
                ("state", text("0.42")),
                ("value", float(0.42)),
                ("step", float(0.01)),
            ],
        ),
        (
            "select.speed",
            vec![("state", text("ridiculous_speed")), ("value", None)],
        ),
        (
            "text.text",
            vec![("state", text("Hello world")), ("pattern", None)],
        ),
        ("text.note", vec![("state", text("Buy milk\nand eggs"))]),
        (
            "date.date",
            vec![("state", text("2020-01-01")), ("value", None)],
        ),
        (
            "time.time",
            vec![("state", text("12:00:00")), ("value", None)],
        ),
        (
            "datetime.date_and_time",
            vec![("state", text("2020-01-01T12:00:00+00:00"))],
        ),
        (
            "button.restart",
            vec![("state", text("2025-04-01T09:00:00.000001+00:00"))],
        ),
        (
            "event.doorbell",
            vec![
                ("event_type_str", text("ring")),
                ("event_types_json", text("[\"ring\",\"long_press\"]")),
            ],
        ),
        (
            "update.demo_update_no_install",
            vec![
                ("state", text("on")),
                ("value", float(1.0)),
                ("latest_version_str", text("1.0.1")),
                ("in_progress", float(0.0)),
            ],
        ),
        (
            "device_tracker.demo_paulus",
            vec![
                ("state", text("not_home")),
                ("value", float(0.0)),
                ("latitude", float(52.37632)),
            ],
        ),
        (
            "person.anne",
            vec![
                ("state", text("home")),
                ("value", float(1.0)),
                (
                    "device_trackers_json",
                    text("[\"device_tracker.anne_phone\"]"),
                ),
            ],
        ),
        (
            "sun.sun",
            vec![
                ("value", float(1.0)),
                ("elevation", float(8.84)),
                ("rising", float(0.0)),
            ],
        ),
        (
            "zone.home",
            vec![
                ("state", text("2")),
                ("value", float(2.0)),
                ("radius", float(100.0)),
            ],
        ),
        (
            "calendar.calendar_1",
            vec![
                ("state", text("off")),
                ("message_str", text("Future Event")),
                ("all_day", float(0.0)),
            ],
        ),
        (
            "image.doorbell_snapshot",
            vec![("access_token_str", text("a1b2c3d4e5f6"))],
        ),
        (
            "valve.front_garden",
            vec![("state", text("open")), ("value", float(1.0))],
        ),
        (
            "lawn_mower.front",
            vec![("state", text("mowing")), ("value", None)],
        ),
        (
            "siren.kitchen",
            vec![(
                "available_tones_json",
                text("{\"1\":\"fire\",\"2\":\"alarm\"}"),
            )],
        ),
        (
            "remote.living_room_tv",
            vec![
                ("current_activity_str", text("Watch TV")),
                (
                    "activity_list_json",
                    text("[\"Watch TV\",\"Play Xbox, loud\",\"Music\"]"),
                ),
            ],
        ),
        (
            "camera.demo_camera",
            vec![
                ("state", text("streaming")),
                ("supported_features", float(3.0)),
                ("frontend_stream_type_str", text("hls")),
            ],
        ),
        (
            "sensor.broken",
            vec![("state", text("error")), ("error_str", text("error"))],
        ),
    ];
    for (entity, expected) in cases {
        let p = homeiq(entity);
        assert_eq!(p.measurement, entity.split('.').next().unwrap_or_default());
        for (k, want) in expected {
            assert_eq!(f(&p, k), want, "{entity}: {k}");
        }
    }
    // Units and device classes are tags.
    let p = homeiq("sensor.outside_temperature");
    assert_eq!(p.tag_value("unit"), Some("°C"));
    assert_eq!(p.tag_value("device_class"), Some("temperature"));
}

#[test]
fn homeiq_nasty_strings_and_timestamps() {
    let p = homeiq("sensor.nasty_attrs");
    let f = |k: &str| p.field_value(k).cloned();
    assert_eq!(f("comma_str"), text("a, b, c"));
    assert_eq!(f("newline_str"), text("line1\nline2\r\nline3"));
    assert_eq!(f("unicode_str"), text("Zürich ☃ 😀 中文 \u{200b}"));
    assert_eq!(f("backslash_str"), text("C:\\temp\\"));
    assert_eq!(f("equals_str"), text("a=b,c=d"));
    assert_eq!(f("state_str"), text("shadow"));
    assert_eq!(f("value_"), float(3.0));
    assert_eq!(f("x_str_num"), float(7.0));
    assert_eq!(f("null"), None);
    let line = encoded(&p);
    let parsed = parse_line(split_lines(&line)[0]).expect("parses");
    assert!(parsed.fields.contains(&(
        "newline_str".into(),
        FieldValue::Str("line1\nline2\r\nline3".into())
    )));
}

#[test]
fn homeiq_attributes_get_their_names_and_types_back() {
    assert_eq!(
        homeiq_attribute("rgb_color_json", &Value::from("[255,0,1]")),
        ("rgb_color".into(), serde_json::json!([255, 0, 1]))
    );
    assert_eq!(
        homeiq_attribute("mode_str", &Value::from("auto")),
        ("mode".into(), Value::from("auto"))
    );
    assert_eq!(
        homeiq_attribute("brightness", &Value::from(128.0)),
        ("brightness".into(), Value::from(128.0))
    );
    assert_eq!(
        homeiq_attribute("state_", &Value::from(1.0)),
        ("state".into(), Value::from(1.0))
    );
}

#[test]
fn a_reused_scratch_point_maps_every_change_as_a_fresh_point_does() {
    let meta = EntityMeta {
        device_id: Some("device 1".into()),
        area_id: Some("kitchen".into()),
    };
    let records = records();
    for settings in [InfluxSettings::default(), compat_settings("default")] {
        let mapper = PointMapper::new(&settings);
        let mut scratch = ScratchPoint::default();
        // forwards, then backwards: every point follows larger and smaller ones
        for r in records.iter().chain(records.iter().rev()) {
            let Some(state) = r.event.new_state.as_ref() else {
                continue;
            };
            let fresh = mapper.map_change(&r.event, &meta);
            let mapped =
                mapper.map_event_into(state, r.event.time_fired, &meta, None, &mut scratch);
            assert_eq!(
                mapped.then(|| scratch.point().clone()),
                fresh,
                "{:?} {}",
                settings.schema,
                r.event.entity_id
            );
        }
    }
}

#[test]
fn origin_is_two_fields_in_homeiq_and_a_point_beside_ha_compat() {
    use crate::store::origin::{Origin, OriginKind};
    let ev = event(
        "light.kitchen",
        "on",
        json!({"origin": 3, "origin_id": "x", "brightness": 200}),
    );
    let state = ev.new_state.as_ref().expect("state");
    let by_automation = Origin {
        kind: OriginKind::Automation,
        id: Some("automation.wake".into()),
    };
    let mut scratch = ScratchPoint::default();
    assert!(homeiq_mapper().map_event_into(
        state,
        ev.time_fired,
        &meta(),
        Some(&by_automation),
        &mut scratch
    ));
    let p = scratch.point();
    assert_eq!(field(p, "origin"), text("automation").as_ref());
    assert_eq!(field(p, "origin_id"), text("automation.wake").as_ref());
    // attributes of those names step aside, and come back under their own names
    assert_eq!(field(p, "origin_"), float(3.0).as_ref());
    assert_eq!(field(p, "origin_id_str"), text("x").as_ref());
    assert_eq!(
        homeiq_attribute("origin_", &json!(3.0)),
        ("origin".into(), json!(3.0))
    );
    assert!(p.tags.iter().all(|(k, _)| k != "origin"), "never a tag");
    // a device's change has no id; the snapshot (no origin) writes neither field
    let device = Origin::of(OriginKind::Device);
    homeiq_mapper().map_event_into(state, ev.time_fired, &meta(), Some(&device), &mut scratch);
    assert_eq!(field(scratch.point(), "origin"), text("device").as_ref());
    assert_eq!(field(scratch.point(), "origin_id"), None);
    let snap = homeiq_mapper().map_state(state, &meta()).expect("point");
    assert_eq!(field(&snap, "origin"), None);
    assert_eq!(
        homeiq_mapper().origin_point(state, ev.time_fired, &device),
        None
    );

    // ha_compat: the integration's point is untouched, the origin goes beside it
    let compat_mapper = PointMapper::new(&compat_settings("default"));
    assert!(compat_mapper.map_event_into(
        state,
        ev.time_fired,
        &meta(),
        Some(&by_automation),
        &mut scratch
    ));
    assert_eq!(Some(scratch.point().clone()), compat(&ev));
    let beside = compat_mapper
        .origin_point(state, ev.time_fired, &by_automation)
        .expect("origin point");
    assert_eq!(beside.measurement, "homeiq_origin");
    assert_eq!(beside.time, scratch.point().time);
    assert_eq!(
        beside.tags,
        vec![
            ("domain".to_owned(), "light".to_owned()),
            ("entity_id".to_owned(), "kitchen".to_owned())
        ]
    );
    assert_eq!(field(&beside, "origin"), text("automation").as_ref());
    // nothing beside a change the integration does not write
    let gone = event("light.kitchen", "unavailable", json!({}));
    let gone_state = gone.new_state.as_ref().expect("state");
    assert_eq!(
        compat_mapper.origin_point(gone_state, gone.time_fired, &by_automation),
        None
    );
}
