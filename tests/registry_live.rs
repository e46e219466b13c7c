//! Registry changes made through Home Assistant's WebSocket API reach the SQLite mirror while the
//! connection stays up (no reconnect), and the entity area falls back to the device's.
//! These tests change HA's registries: nextest runs them one at a time (test group `ha-registry`).

mod common;

use std::time::Duration;

use common::{Ha, HomeIq, HomeIqOptions, Influx, Served, eventually, unique};
use futures_util::FutureExt;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// The entity's registry row in the mirror (state-only rows, which have no registry id, are not
/// registry rows).
async fn mirror_entity(homeiq: &HomeIq, entity_id: &str) -> Option<Value> {
    let store = homeiq.registry().await;
    let rows = store.list_entities().await.ok()?;
    rows.into_iter()
        .map(|r| serde_json::to_value(r).expect("serialise"))
        .find(|r| r["entity_id"] == entity_id && !r["id"].is_null())
}

async fn mirror_device(homeiq: &HomeIq, device_id: &str) -> Option<Value> {
    let store = homeiq.registry().await;
    let rows = store.list_devices().await.ok()?;
    rows.into_iter()
        .map(|r| serde_json::to_value(r).expect("serialise"))
        .find(|r| r["id"] == device_id)
}

async fn mirror_area_names(homeiq: &HomeIq) -> Vec<(String, String)> {
    let store = homeiq.registry().await;
    store
        .list_areas()
        .await
        .expect("areas")
        .into_iter()
        .map(|r| serde_json::to_value(r).expect("serialise"))
        .map(|r| {
            (
                r["area_id"].as_str().unwrap_or_default().to_owned(),
                r["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn entity_rename_reaches_the_mirror_without_reconnect() {
    let ha = Ha::from_env();
    let homeiq = HomeIq::spawn(HomeIqOptions::from_env()).await;
    homeiq.wait_synced().await;
    let connects = homeiq.deep().await["home_assistant"]["connects"].clone();

    let old = "sensor.outside_humidity";
    let new = format!("sensor.{}", unique("renamed"));
    let name = unique("Outside Humidity");
    let before = eventually("entity in mirror", WAIT, || mirror_entity(&homeiq, old)).await;
    ha.ws1(
        json!({"type": "config/entity_registry/update", "entity_id": old, "new_entity_id": new}),
    )
    .await;
    let outcome = std::panic::AssertUnwindSafe(async {
        let renamed = eventually("renamed entity in mirror, old id gone", WAIT, || async {
            let row = mirror_entity(&homeiq, &new).await?;
            mirror_entity(&homeiq, old).await.is_none().then_some(row)
        })
        .await;
        assert_eq!(
            renamed["id"], before["id"],
            "the registry id survives a rename"
        );
        assert_eq!(renamed["platform"], before["platform"]);
        assert_eq!(renamed["device_id"], before["device_id"]);
        // a user-given name reaches the mirror too
        ha.ws1(json!({"type": "config/entity_registry/update", "entity_id": new, "name": name}))
            .await;
        let named = eventually("entity name in mirror", WAIT, || async {
            mirror_entity(&homeiq, &new)
                .await
                .filter(|r| r["name"] == name.as_str())
        })
        .await;
        assert_eq!(named["id"], before["id"]);
    })
    .catch_unwind()
    .await;
    // restore HA before reporting a failure
    ha.ws1(json!({"type": "config/entity_registry/update", "entity_id": new, "new_entity_id": old, "name": null}))
        .await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    let back = eventually("original id back in mirror", WAIT, || async {
        mirror_entity(&homeiq, old)
            .await
            .filter(|r| r["name"].is_null())
    })
    .await;
    assert_eq!(back["id"], before["id"]);
    assert!(mirror_entity(&homeiq, &new).await.is_none());

    assert_eq!(
        homeiq.deep().await["home_assistant"]["connects"],
        connects,
        "no reconnect"
    );
}

#[tokio::test]
async fn device_moved_to_an_area_reaches_the_mirror_and_the_points() {
    let ha = Ha::from_env();
    let influx = Influx::from_env();
    let homeiq = HomeIq::spawn(HomeIqOptions::from_env()).await;
    homeiq.wait_synced().await;
    let connects = homeiq.deep().await["home_assistant"]["connects"].clone();

    let entity = "light.kitchen_lights";
    let row = eventually("kitchen lights in mirror", WAIT, || {
        mirror_entity(&homeiq, entity)
    })
    .await;
    let device_id = row["device_id"].as_str().expect("device").to_owned();
    ha.ws1(json!({"type": "config/device_registry/update", "device_id": device_id, "area_id": "kitchen"}))
        .await;
    let outcome = std::panic::AssertUnwindSafe(async {
        let device = eventually("device area in mirror", WAIT, || async {
            mirror_device(&homeiq, &device_id)
                .await
                .filter(|d| d["area_id"] == "kitchen")
        })
        .await;
        // the entity has no area of its own: it falls back to its device's
        let entity_row = eventually("entity effective area", WAIT, || async {
            mirror_entity(&homeiq, entity)
                .await
                .filter(|e| e["effective_area_id"] == "kitchen")
        })
        .await;
        assert!(entity_row["area_id"].is_null());
        assert_eq!(device["area_id"], "kitchen");

        // new points carry the area tag
        ha.call_service("light", "toggle", json!({"entity_id": entity}))
            .await;
        let db = homeiq.database.clone();
        eventually("a point tagged with the kitchen area", WAIT, || async {
            let rows = influx
                .rows(
                    &db,
                    &format!(
                        "SELECT * FROM light WHERE entity_id = '{entity}' AND area_id = 'kitchen'"
                    ),
                )
                .await;
            (!rows.is_empty()).then_some(())
        })
        .await;
    })
    .catch_unwind()
    .await;
    // restore HA before reporting a failure
    ha.ws1(
        json!({"type": "config/device_registry/update", "device_id": device_id, "area_id": null}),
    )
    .await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    eventually("device area cleared", WAIT, || async {
        mirror_device(&homeiq, &device_id)
            .await
            .filter(|d| d["area_id"].is_null())
    })
    .await;
    assert_eq!(
        homeiq.deep().await["home_assistant"]["connects"],
        connects,
        "no reconnect"
    );
}

#[tokio::test]
async fn area_created_and_deleted_reaches_the_mirror() {
    let ha = Ha::from_env();
    let homeiq = HomeIq::spawn(HomeIqOptions::from_env()).await;
    homeiq.wait_synced().await;
    let connects = homeiq.deep().await["home_assistant"]["connects"].clone();

    let name = unique("Attic");
    let created = ha
        .ws1(json!({"type": "config/area_registry/create", "name": name}))
        .await;
    let area_id = created["area_id"].as_str().expect("area id").to_owned();
    eventually("new area in mirror", WAIT, || async {
        mirror_area_names(&homeiq)
            .await
            .contains(&(area_id.clone(), name.clone()))
            .then_some(())
    })
    .await;
    let renamed = format!("{name} renamed");
    ha.ws1(json!({"type": "config/area_registry/update", "area_id": area_id, "name": renamed}))
        .await;
    eventually("renamed area in mirror", WAIT, || async {
        mirror_area_names(&homeiq)
            .await
            .contains(&(area_id.clone(), renamed.clone()))
            .then_some(())
    })
    .await;
    ha.ws1(json!({"type": "config/area_registry/delete", "area_id": area_id}))
        .await;
    eventually("area gone from mirror", WAIT, || async {
        (!mirror_area_names(&homeiq)
            .await
            .iter()
            .any(|(id, _)| *id == area_id))
        .then_some(())
    })
    .await;
    assert_eq!(
        homeiq.deep().await["home_assistant"]["connects"],
        connects,
        "no reconnect"
    );
}
