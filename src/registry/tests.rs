//! Tests of the registry store against a real SQLite file.

use std::time::Instant;

use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use sea_orm_migration::MigratorTrait;
use serde_json::json;

use super::migration::Migrator;
use super::*;
use crate::config::METADATA_DB_FILE;
use crate::ha::model::RegistryKind;
use crate::registry::record::{Area, Device, EntityEntry, Floor, Label};

async fn open_temp() -> (tempfile::TempDir, RegistryStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RegistryStore::open(&dir.path().join("data").join(METADATA_DB_FILE))
        .await
        .expect("open store");
    (dir, store)
}

async fn pragma<C: ConnectionTrait>(db: &C, name: &str) -> String {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            format!("PRAGMA {name}"),
        ))
        .await
        .expect("pragma query")
        .expect("pragma row");
    row.try_get_by_index::<String>(0)
        .or_else(|_| row.try_get_by_index::<i64>(0).map(|v| v.to_string()))
        .expect("pragma value")
}

fn area(id: &str, name: &str, floor: Option<&str>) -> Area {
    Area {
        area_id: id.into(),
        name: name.into(),
        floor_id: floor.map(Into::into),
        aliases: vec![format!("{name} alias")],
        labels: vec!["l1".into()],
        created_at: Some(1_700_000_000.5),
        modified_at: Some(1_700_000_001.25),
        ..Area::default()
    }
}

fn floor(id: &str, level: i64) -> Floor {
    Floor {
        floor_id: id.into(),
        name: id.to_uppercase(),
        level: Some(level),
        aliases: vec!["up".into()],
        ..Floor::default()
    }
}

fn label(id: &str, color: &str) -> Label {
    Label {
        label_id: id.into(),
        name: id.into(),
        color: Some(color.into()),
        ..Label::default()
    }
}

fn device(id: &str, area: Option<&str>) -> Device {
    Device {
        id: id.into(),
        name: Some(format!("Device {id}")),
        manufacturer: Some("Acme".into()),
        area_id: area.map(Into::into),
        identifiers: vec![
            ("hue".into(), format!("hue-{id}")),
            ("zha".into(), "x".into()),
        ],
        config_entries: Some(vec!["ce1".into()]),
        labels: vec!["l1".into(), "l2".into()],
        ..Device::default()
    }
}

fn entity(id: &str, entity_id: &str, device: Option<&str>, area: Option<&str>) -> EntityEntry {
    EntityEntry {
        id: id.into(),
        entity_id: entity_id.into(),
        platform: "demo".into(),
        original_name: Some(format!("Name of {entity_id}")),
        device_id: device.map(Into::into),
        area_id: area.map(Into::into),
        labels: vec!["l1".into()],
        unique_id: Some(json!(format!("uid-{id}"))),
        has_entity_name: Some(true),
        created_at: Some(1_700_000_000.0),
        ..EntityEntry::default()
    }
}

fn report(
    kind: RegistryKind,
    inserted: usize,
    updated: usize,
    removed: usize,
    total: usize,
) -> SyncReport {
    SyncReport {
        kind,
        inserted,
        updated,
        removed,
        total,
    }
}

#[tokio::test]
async fn pragmas_are_set_on_every_pooled_connection() {
    let (_dir, store) = open_temp().await;
    store.ping().await.expect("ping");
    // Two open transactions hold two different pooled connections.
    let first = store.connection().begin().await.expect("first txn");
    let second = store.connection().begin().await.expect("second txn");
    for conn in [&first, &second] {
        assert_eq!(pragma(conn, "journal_mode").await, "wal");
        assert_eq!(pragma(conn, "foreign_keys").await, "1");
        assert_eq!(pragma(conn, "synchronous").await, "1");
        assert_eq!(pragma(conn, "busy_timeout").await, "30000");
        assert_eq!(pragma(conn, "cache_size").await, "-2048");
        assert_eq!(pragma(conn, "temp_store").await, "2");
    }
    first.rollback().await.expect("rollback");
    second.rollback().await.expect("rollback");
}

#[tokio::test]
async fn reopening_runs_no_migration_twice_and_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(METADATA_DB_FILE);
    let store = RegistryStore::open(&path).await.expect("open");
    store
        .full_sync(RegistryRows::Floors(vec![floor("f1", 1)]))
        .await
        .expect("sync");
    store.close().await.expect("close");

    let store = RegistryStore::open(&path).await.expect("reopen");
    let applied = Migrator::get_applied_migrations(store.connection())
        .await
        .expect("applied");
    assert_eq!(applied.len(), Migrator::migrations().len());
    let pending = Migrator::get_pending_migrations(store.connection())
        .await
        .expect("pending");
    assert!(pending.is_empty());
    let recorded = store
        .connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT COUNT(*) FROM seaql_migrations",
        ))
        .await
        .expect("count")
        .expect("row")
        .try_get_by_index::<i64>(0)
        .expect("value");
    assert_eq!(recorded, Migrator::migrations().len() as i64);
    assert_eq!(store.counts().await.expect("counts").floors, 1);
}

#[tokio::test]
async fn full_sync_inserts_updates_and_deletes_areas_floors_labels() {
    let (_dir, store) = open_temp().await;

    let r = store
        .full_sync(RegistryRows::Areas(vec![
            area("kitchen", "Kitchen", Some("f1")),
            area("hall", "Hall", None),
        ]))
        .await
        .expect("areas");
    assert_eq!(r, report(RegistryKind::Area, 2, 0, 0, 2));
    let r = store
        .full_sync(RegistryRows::Areas(vec![
            area("kitchen", "Kitchen", Some("f1")),
            area("hall", "Hallway", None),
            area("attic", "Attic", Some("f2")),
        ]))
        .await
        .expect("areas again");
    assert_eq!(r, report(RegistryKind::Area, 1, 1, 0, 3));
    let r = store
        .full_sync(RegistryRows::Areas(vec![area("hall", "Hallway", None)]))
        .await
        .expect("areas shrink");
    assert_eq!(r, report(RegistryKind::Area, 0, 0, 2, 1));
    let areas = store.list_areas().await.expect("list areas");
    assert_eq!(areas.len(), 1);
    assert_eq!(areas[0].name, "Hallway");
    assert_eq!(areas[0].aliases, vec!["Hallway alias".to_owned()]);
    assert_eq!(areas[0].labels, vec!["l1".to_owned()]);
    assert_eq!(areas[0].created_at, Some(1_700_000_000.5));

    let r = store
        .full_sync(RegistryRows::Floors(vec![floor("f1", 0), floor("f2", 1)]))
        .await
        .expect("floors");
    assert_eq!(r, report(RegistryKind::Floor, 2, 0, 0, 2));
    let r = store
        .full_sync(RegistryRows::Floors(vec![floor("f2", 2), floor("f3", 3)]))
        .await
        .expect("floors again");
    assert_eq!(r, report(RegistryKind::Floor, 1, 1, 1, 2));
    let floors = store.list_floors().await.expect("list floors");
    assert_eq!(
        floors
            .iter()
            .map(|f| (f.floor_id.as_str(), f.level))
            .collect::<Vec<_>>(),
        vec![("f2", Some(2)), ("f3", Some(3))]
    );

    let r = store
        .full_sync(RegistryRows::Labels(vec![
            label("l1", "red"),
            label("l2", "blue"),
        ]))
        .await
        .expect("labels");
    assert_eq!(r, report(RegistryKind::Label, 2, 0, 0, 2));
    let r = store
        .full_sync(RegistryRows::Labels(vec![label("l1", "green")]))
        .await
        .expect("labels again");
    assert_eq!(r, report(RegistryKind::Label, 0, 1, 1, 1));
    let labels = store.list_labels().await.expect("list labels");
    assert_eq!(labels.len(), 1);
    assert_eq!(labels[0].color.as_deref(), Some("green"));

    // An unchanged list writes nothing.
    let r = store
        .full_sync(RegistryRows::Labels(vec![label("l1", "green")]))
        .await
        .expect("labels unchanged");
    assert_eq!(r, report(RegistryKind::Label, 0, 0, 0, 1));
}

#[tokio::test]
async fn full_sync_inserts_updates_and_deletes_devices_and_entities() {
    let (_dir, store) = open_temp().await;

    let r = store
        .full_sync(RegistryRows::Devices(vec![
            device("d1", Some("kitchen")),
            device("d2", None),
        ]))
        .await
        .expect("devices");
    assert_eq!(r, report(RegistryKind::Device, 2, 0, 0, 2));
    let mut moved = device("d2", Some("hall"));
    moved.name_by_user = Some("Lamp".into());
    let r = store
        .full_sync(RegistryRows::Devices(vec![moved, device("d3", None)]))
        .await
        .expect("devices again");
    assert_eq!(r, report(RegistryKind::Device, 1, 1, 1, 2));
    let devices = store.list_devices().await.expect("list devices");
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0].id, "d2");
    assert_eq!(devices[0].integration(), Some("hue"));
    assert_eq!(devices[0].area_id.as_deref(), Some("hall"));
    assert_eq!(devices[0].name_by_user.as_deref(), Some("Lamp"));
    assert_eq!(
        devices[0].identifiers,
        vec![
            ("hue".to_owned(), "hue-d2".to_owned()),
            ("zha".to_owned(), "x".to_owned())
        ]
    );
    assert_eq!(devices[0].config_entries, Some(vec!["ce1".to_owned()]));

    let r = store
        .full_sync(RegistryRows::Entities(vec![
            entity("e1", "light.a", Some("d2"), None),
            entity("e2", "sensor.b", None, None),
            entity("e3", "switch.c", None, None),
        ]))
        .await
        .expect("entities");
    assert_eq!(r, report(RegistryKind::Entity, 3, 0, 0, 3));
    // e1 renamed, e2 and e3 swap entity ids, e4 new, nothing vanished except via swap.
    let r = store
        .full_sync(RegistryRows::Entities(vec![
            entity("e1", "light.a_renamed", Some("d2"), None),
            entity("e2", "switch.c", None, None),
            entity("e3", "sensor.b", None, None),
            entity("e4", "light.a", None, Some("kitchen")),
        ]))
        .await
        .expect("entities again");
    assert_eq!(r, report(RegistryKind::Entity, 1, 3, 0, 4));
    let r = store
        .full_sync(RegistryRows::Entities(vec![entity(
            "e4",
            "light.a",
            None,
            Some("kitchen"),
        )]))
        .await
        .expect("entities shrink");
    assert_eq!(r, report(RegistryKind::Entity, 0, 0, 3, 1));
    let entities = store.list_entities().await.expect("list entities");
    assert_eq!(entities.len(), 1);
    let e = &entities[0];
    assert_eq!(e.id.as_deref(), Some("e4"));
    assert_eq!(e.domain, "light");
    assert_eq!(e.platform.as_deref(), Some("demo"));
    assert_eq!(e.unique_id.as_deref(), Some("uid-e4"));
    assert_eq!(e.has_entity_name, Some(true));
    assert_eq!(e.labels, vec!["l1".to_owned()]);

    let counts = store.counts().await.expect("counts");
    assert_eq!(
        counts,
        RegistryCounts {
            areas: 0,
            floors: 0,
            labels: 0,
            devices: 2,
            entities: 1
        }
    );
}

#[tokio::test]
async fn upsert_entity_follows_renames_and_evicts_stale_holders() {
    let (_dir, store) = open_temp().await;
    store
        .upsert_entity(entity("e1", "light.old", None, None))
        .await
        .expect("create");
    // Rename: same registry id, new entity id.
    store
        .upsert_entity(entity("e1", "light.new", None, None))
        .await
        .expect("rename");
    assert!(store.get_entity("light.old").await.expect("get").is_none());
    let renamed = store
        .get_entity("light.new")
        .await
        .expect("get")
        .expect("renamed");
    assert_eq!(renamed.id.as_deref(), Some("e1"));

    // A new registry entry reusing the entity id replaces the stale holder.
    store
        .upsert_entity(entity("e2", "light.new", None, None))
        .await
        .expect("reuse");
    let entities = store.list_entities().await.expect("list");
    assert_eq!(entities.len(), 1);
    assert_eq!(entities[0].id.as_deref(), Some("e2"));

    store
        .remove(RegistryKind::Entity, "light.new")
        .await
        .expect("remove");
    // Removing what is not there is fine (events may repeat).
    store
        .remove(RegistryKind::Entity, "light.new")
        .await
        .expect("remove again");
    assert_eq!(store.counts().await.expect("counts").entities, 0);
}

#[tokio::test]
async fn remove_single_rows_of_every_kind() {
    let (_dir, store) = open_temp().await;
    for rows in [
        RegistryRows::Floors(vec![floor("f1", 0)]),
        RegistryRows::Labels(vec![label("l1", "red")]),
        RegistryRows::Areas(vec![area("kitchen", "Kitchen", Some("f1"))]),
        RegistryRows::Areas(vec![area("kitchen", "Cookery", Some("f1"))]),
        RegistryRows::Devices(vec![device("d1", Some("kitchen"))]),
    ] {
        store.full_sync(rows).await.expect("sync");
    }
    assert_eq!(store.list_areas().await.expect("areas")[0].name, "Cookery");
    assert_eq!(
        store.counts().await.expect("counts"),
        RegistryCounts {
            areas: 1,
            floors: 1,
            labels: 1,
            devices: 1,
            entities: 0
        }
    );
    for (kind, id) in [
        (RegistryKind::Area, "kitchen"),
        (RegistryKind::Floor, "f1"),
        (RegistryKind::Label, "l1"),
        (RegistryKind::Device, "d1"),
    ] {
        store.remove(kind, id).await.expect("remove");
    }
    assert_eq!(
        store.counts().await.expect("counts"),
        RegistryCounts {
            areas: 0,
            floors: 0,
            labels: 0,
            devices: 0,
            entities: 0
        }
    );
}

#[tokio::test]
async fn list_entities_falls_back_to_the_device_area_and_joins_state_meta() {
    let (_dir, store) = open_temp().await;
    // Children before parents: no foreign keys stop this.
    store
        .full_sync(RegistryRows::Entities(vec![
            entity("e1", "light.own_area", Some("d1"), Some("hall")),
            entity("e2", "light.device_area", Some("d1"), None),
            entity("e3", "light.no_area", Some("d_missing"), None),
        ]))
        .await
        .expect("entities");
    store
        .full_sync(RegistryRows::Devices(vec![device("d1", Some("kitchen"))]))
        .await
        .expect("devices");
    let seen = Utc
        .with_ymd_and_hms(2026, 11, 1, 12, 0, 0)
        .single()
        .expect("time");
    store
        .record_state_meta(vec![
            StateMeta {
                entity_id: "light.device_area".into(),
                device_class: None,
                unit: None,
                friendly_name: Some("Kitchen light".into()),
                last_seen: seen,
            },
            StateMeta {
                entity_id: "sensor.state_only".into(),
                device_class: Some("temperature".into()),
                unit: Some("°C".into()),
                friendly_name: Some("Outside".into()),
                last_seen: seen,
            },
        ])
        .await
        .expect("state meta");

    let entities = store.list_entities().await.expect("list");
    let by_id = |id: &str| {
        entities
            .iter()
            .find(|e| e.entity_id == id)
            .cloned()
            .expect("entity listed")
    };
    assert_eq!(entities.len(), 4);
    assert_eq!(
        by_id("light.own_area").effective_area_id.as_deref(),
        Some("hall")
    );
    let fallback = by_id("light.device_area");
    assert_eq!(fallback.area_id, None);
    assert_eq!(fallback.effective_area_id.as_deref(), Some("kitchen"));
    assert_eq!(fallback.friendly_name.as_deref(), Some("Kitchen light"));
    assert_eq!(fallback.last_seen, Some(seen));
    assert_eq!(by_id("light.no_area").effective_area_id, None);
    let state_only = by_id("sensor.state_only");
    assert_eq!(state_only.id, None);
    assert_eq!(state_only.domain, "sensor");
    assert_eq!(state_only.device_class.as_deref(), Some("temperature"));
    assert_eq!(state_only.unit.as_deref(), Some("°C"));

    let got = store
        .get_entity("light.device_area")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got, fallback);
    assert_eq!(
        store.get_entity("sensor.state_only").await.expect("get"),
        Some(state_only)
    );
    assert_eq!(store.get_entity("light.nope").await.expect("get"), None);
    // state_meta does not count as registry entities.
    assert_eq!(store.counts().await.expect("counts").entities, 3);
}

#[tokio::test]
async fn retain_state_meta_forgets_every_entity_outside_a_snapshot() {
    let (_dir, store) = open_temp().await;
    let seen = Utc
        .with_ymd_and_hms(2026, 11, 1, 12, 0, 0)
        .single()
        .expect("time");
    let meta = |id: &str| StateMeta {
        entity_id: id.into(),
        device_class: None,
        unit: None,
        friendly_name: None,
        last_seen: seen,
    };
    store
        .full_sync(RegistryRows::Entities(vec![entity(
            "e1",
            "light.kept",
            None,
            None,
        )]))
        .await
        .expect("entities");
    store
        .record_state_meta(
            ["light.kept", "sensor.kept", "sensor.gone", "light.gone_too"]
                .iter()
                .map(|id| meta(id))
                .collect(),
        )
        .await
        .expect("state meta");
    let removed = store
        .retain_state_meta(vec![
            "light.kept".into(),
            "sensor.kept".into(),
            "x.y".into(),
        ])
        .await
        .expect("retain");
    assert_eq!(removed, 2);
    let ids: Vec<String> = store
        .list_entities()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.entity_id)
        .collect();
    assert_eq!(ids, ["light.kept", "sensor.kept"]);
    assert_eq!(
        store.retain_state_meta(Vec::new()).await.expect("retain"),
        2,
        "an empty snapshot: no entity has a state"
    );
}

#[tokio::test]
async fn the_2026_migration_keeps_the_mirror_and_makes_unsent_fields_nullable() {
    use sea_orm::Database;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(METADATA_DB_FILE);
    // a database as the releases before the 2026 fields left it
    let url = format!("sqlite:{}?mode=rwc", path.display());
    let db = Database::connect(&url).await.expect("connect");
    Migrator::up(&db, Some(2)).await.expect("older migrations");
    for sql in [
        "INSERT INTO entities (id, entity_id, domain, platform, labels, has_entity_name) \
         VALUES ('e1', 'light.old', 'light', 'hue', '[]', 1)",
        "INSERT INTO devices (id, name, labels, identifiers, config_entries) \
         VALUES ('d1', 'Lamp', '[]', '[[\"hue\",\"x\"]]', '[\"ce1\"]')",
    ] {
        db.execute_unprepared(sql).await.expect("old row");
    }
    db.close().await.expect("close");

    let store = RegistryStore::open(&path).await.expect("migrate");
    let entities = store.list_entities().await.expect("entities");
    assert_eq!(entities.len(), 1);
    assert_eq!(entities[0].has_entity_name, Some(true), "kept");
    let devices = store.list_devices().await.expect("devices");
    assert_eq!(devices[0].config_entries, Some(vec!["ce1".to_owned()]));
    assert_eq!(devices[0].config_entry_id, None);
    // what Home Assistant 2026 does not send is stored as absent
    let mut e = entity("e1", "light.old", None, None);
    e.has_entity_name = None;
    let mut d = device("d1", None);
    d.config_entries = None;
    d.parent_device_id = Some("d0".into());
    d.config_entry_id = Some("ce1".into());
    store
        .full_sync(RegistryRows::Entities(vec![e]))
        .await
        .expect("entities");
    store
        .full_sync(RegistryRows::Devices(vec![d]))
        .await
        .expect("devices");
    assert_eq!(
        store.list_entities().await.expect("list")[0].has_entity_name,
        None
    );
    let device = &store.list_devices().await.expect("list")[0];
    assert_eq!(device.config_entries, None);
    assert_eq!(device.config_entry_id.as_deref(), Some("ce1"));
    assert_eq!(device.parent_device_id.as_deref(), Some("d0"));
    // the indexes are back, the unique entity id among them
    let unique = store
        .connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' \
             AND name IN ('ux_entities_entity_id', 'idx_devices_area_id')",
        ))
        .await
        .expect("query")
        .expect("row")
        .try_get_by_index::<i64>(0)
        .expect("count");
    assert_eq!(unique, 2);
}

#[tokio::test]
async fn record_state_meta_upserts_thousands_in_one_call() {
    let (_dir, store) = open_temp().await;
    let t0 = Utc
        .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .expect("time");
    let batch = |unit: &str, at| {
        (0..5_000)
            .map(|i| StateMeta {
                entity_id: format!("sensor.s{i:05}"),
                device_class: Some("power".into()),
                unit: Some(unit.to_owned()),
                friendly_name: Some(format!("Sensor {i}")),
                last_seen: at,
            })
            .collect::<Vec<_>>()
    };
    let started = Instant::now();
    store
        .record_state_meta(batch("W", t0))
        .await
        .expect("first batch");
    let first = started.elapsed();
    let t1 = t0 + ChronoDuration::seconds(10);
    let mut second_batch = batch("kW", t1);
    // A duplicate within the call: the later row wins.
    second_batch.push(StateMeta {
        entity_id: "sensor.s00000".into(),
        device_class: Some("energy".into()),
        unit: Some("kWh".into()),
        friendly_name: None,
        last_seen: t1,
    });
    let started = Instant::now();
    store
        .record_state_meta(second_batch)
        .await
        .expect("second batch");
    println!(
        "record_state_meta: 5,000 new rows in {first:?}, 5,000 updates in {:?}",
        started.elapsed()
    );
    store
        .record_state_meta(Vec::new())
        .await
        .expect("empty batch");

    let entities = store.list_entities().await.expect("list");
    assert_eq!(entities.len(), 5_000);
    assert_eq!(entities[0].entity_id, "sensor.s00000");
    assert_eq!(entities[0].unit.as_deref(), Some("kWh"));
    assert_eq!(entities[0].device_class.as_deref(), Some("energy"));
    assert_eq!(entities[1].unit.as_deref(), Some("kW"));
    assert!(entities.iter().all(|e| e.last_seen == Some(t1)));
}

#[test]
fn bulk_statements_stay_below_sqlites_parameter_limit() {
    use sea_orm::{EntityTrait, Iterable};

    use super::entities::{area, device, entity, floor, label, state_meta};
    use super::sync::MAX_ROWS_PER_STATEMENT;

    fn columns<E: EntityTrait>() -> usize {
        E::Column::iter().count()
    }
    for (table, n) in [
        ("area", columns::<area::Entity>()),
        ("device", columns::<device::Entity>()),
        ("entity", columns::<entity::Entity>()),
        ("floor", columns::<floor::Entity>()),
        ("label", columns::<label::Entity>()),
        ("state_meta", columns::<state_meta::Entity>()),
    ] {
        assert!(MAX_ROWS_PER_STATEMENT * n < 32_766, "{table}: {n} columns");
    }
}

#[tokio::test]
async fn full_sync_of_two_thousand_entities_is_batched() {
    let (_dir, store) = open_temp().await;
    let devices: Vec<Device> = (0..400)
        .map(|i| device(&format!("dev{i:04}"), Some(&format!("area{}", i % 20))))
        .collect();
    let make = |version: u32| -> Vec<EntityEntry> {
        (0..2_000)
            .map(|i| {
                let mut e = entity(
                    &format!("reg{i:05}"),
                    &format!("sensor.e{i:05}"),
                    Some(&format!("dev{:04}", i % 400)),
                    None,
                );
                if version > 0 && i % 10 == 0 {
                    e.name = Some(format!("changed v{version}"));
                }
                e
            })
            .collect()
    };

    store
        .full_sync(RegistryRows::Devices(devices))
        .await
        .expect("devices");
    let started = Instant::now();
    let first = store
        .full_sync(RegistryRows::Entities(make(0)))
        .await
        .expect("first sync");
    let t_insert = started.elapsed();
    assert_eq!(first, report(RegistryKind::Entity, 2_000, 0, 0, 2_000));

    let started = Instant::now();
    let same = store
        .full_sync(RegistryRows::Entities(make(0)))
        .await
        .expect("unchanged sync");
    let t_same = started.elapsed();
    assert_eq!(same, report(RegistryKind::Entity, 0, 0, 0, 2_000));

    let mut changed = make(1);
    // more removals than one delete statement holds
    changed.truncate(1_700);
    let started = Instant::now();
    let partly = store
        .full_sync(RegistryRows::Entities(changed))
        .await
        .expect("changed sync");
    let t_changed = started.elapsed();
    assert_eq!(partly, report(RegistryKind::Entity, 0, 170, 300, 1_700));

    let started = Instant::now();
    let listed = store.list_entities().await.expect("list");
    let t_list = started.elapsed();
    assert_eq!(listed.len(), 1_700);
    assert!(listed.iter().all(|e| e.effective_area_id.is_some()));
    println!(
        "full_sync 2,000 entities: insert {t_insert:?}, unchanged {t_same:?}, \
         170 changed + 300 removed {t_changed:?}; list_entities (1,700) {t_list:?}"
    );
}
