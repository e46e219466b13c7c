//! `HistoryStore::changes` reads the same changes, with the same origins, from the embedded store
//! and from InfluxDB in both schemas (the real InfluxDB named by `INFLUX_URL`).

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use crate::config::{InfluxSettings, SchemaMode};
use crate::ha::model::State;
use crate::store::embedded::{self, EmbeddedOptions};
use crate::store::history::{HistoryStore, StoredChange};
use crate::store::influx::test_support::fresh_settings;
use crate::store::influx::{InfluxClient, InfluxHistory, encode_point};
use crate::store::origin::{Origin, OriginKind};
use crate::store::point::{Point, Precision};
use crate::store::schema::{EntityMeta, PointMapper, ScratchPoint};

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + secs, 0)
        .single()
        .expect("time")
}

fn state(entity_id: &str, s: &str, secs: i64, attributes: serde_json::Value) -> State {
    serde_json::from_value(json!({
        "entity_id": entity_id, "state": s, "attributes": attributes,
        "last_changed": at(secs), "last_updated": at(secs),
    }))
    .expect("state")
}

/// (state, who): a light switched by a person and an automation, an attribute-only update, a
/// media player by a device, a numeric sensor (not asked for), an unavailable light.
fn history() -> Vec<(State, Origin)> {
    let user = Origin {
        kind: OriginKind::User,
        id: Some("u1".into()),
    };
    let automation = Origin {
        kind: OriginKind::Automation,
        id: Some("automation.wake".into()),
    };
    vec![
        (
            state("light.desk", "on", 10, json!({"brightness": 100})),
            user.clone(),
        ),
        (
            state("sensor.t", "21.5", 11, json!({"unit_of_measurement": "°C"})),
            Origin::of(OriginKind::Device),
        ),
        (
            state("light.desk", "on", 20, json!({"brightness": 180})),
            user,
        ),
        (
            state("media_player.tv", "playing", 25, json!({})),
            Origin::of(OriginKind::Device),
        ),
        (state("light.desk", "off", 30, json!({})), automation),
        (
            state("light.hall", "unavailable", 40, json!({})),
            Origin::of(OriginKind::Device),
        ),
    ]
}

/// The points a mapper makes of [`history`] as live changes (time fired = last updated).
fn points(mapper: &PointMapper) -> Vec<Point> {
    let mut out = Vec::new();
    let mut scratch = ScratchPoint::default();
    for (s, origin) in history() {
        if mapper.map_event_into(
            &s,
            s.last_updated,
            &EntityMeta::default(),
            Some(&origin),
            &mut scratch,
        ) {
            out.push(scratch.point().clone());
        }
        out.extend(mapper.origin_point(&s, s.last_updated, &origin));
    }
    out
}

async fn influx_store(schema: SchemaMode) -> HistoryStore {
    let settings = InfluxSettings {
        schema,
        ..fresh_settings("changes")
    };
    let client = InfluxClient::new(&settings).expect("client");
    client.create_database().await.expect("database");
    let mut body = String::new();
    for p in points(&PointMapper::new(&settings)) {
        encode_point(&p, &mut body).expect("encodes");
        body.push('\n');
    }
    let outcome = client.write(body, Precision::Micros).await;
    assert_eq!(outcome, crate::store::influx::WriteOutcome::Written);
    HistoryStore::Influx(InfluxHistory::new(client, schema))
}

fn simple(changes: Vec<StoredChange>) -> Vec<(String, i64, String, OriginKind)> {
    changes
        .into_iter()
        .map(|c| {
            (
                c.entity_id,
                (c.time_us - at(0).timestamp_micros()) / 1_000_000,
                c.state,
                c.origin,
            )
        })
        .collect()
}

#[tokio::test]
async fn every_backend_reads_the_same_changes_with_their_origins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (writer, embedded) = embedded::open(
        &embedded::history_path(dir.path()),
        EmbeddedOptions::default(),
    )
    .await
    .expect("open");
    let homeiq = PointMapper::homeiq(&[]);
    for p in points(&homeiq) {
        writer.push(p);
    }
    // the connect-time snapshot rewrites the last point without an origin: the origin stays
    let (last, _) = history().remove(4);
    writer.push(
        homeiq
            .map_state(&last, &EntityMeta::default())
            .expect("point"),
    );
    let report = writer.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.left, 0);
    let stores = [
        ("embedded", HistoryStore::Embedded(embedded)),
        ("influx homeiq", influx_store(SchemaMode::Homeiq).await),
        ("influx ha_compat", influx_store(SchemaMode::HaCompat).await),
    ];
    let expected = vec![
        (
            "light.desk".to_owned(),
            10,
            "on".to_owned(),
            OriginKind::User,
        ),
        (
            "light.desk".to_owned(),
            20,
            "on".to_owned(),
            OriginKind::User,
        ),
        (
            "media_player.tv".to_owned(),
            25,
            "playing".to_owned(),
            OriginKind::Device,
        ),
        (
            "light.desk".to_owned(),
            30,
            "off".to_owned(),
            OriginKind::Automation,
        ),
        (
            "light.hall".to_owned(),
            40,
            "unavailable".to_owned(),
            OriginKind::Device,
        ),
    ];
    for (name, store) in &stores {
        let got = simple(
            store
                .changes(
                    &["light", "media_player", "bad domain; DROP"],
                    at(0),
                    at(60),
                )
                .await
                .expect("changes"),
        );
        if *name == "influx ha_compat" {
            // the integration writes nothing for `unavailable`
            let mut compat = expected.clone();
            compat.pop();
            assert_eq!(got, compat, "{name}");
        } else {
            assert_eq!(got, expected, "{name}");
        }
        // the range is half-open and the domains are honoured
        let later = simple(
            store
                .changes(&["light"], at(20), at(40))
                .await
                .expect("changes"),
        );
        assert_eq!(
            later.iter().map(|c| c.1).collect::<Vec<_>>(),
            vec![20, 30],
            "{name}"
        );
        assert!(
            store
                .changes(&[], at(0), at(60))
                .await
                .expect("changes")
                .is_empty()
        );
    }
}
