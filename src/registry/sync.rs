//! Writes: full syncs, single-row upserts and removals, and the `state_meta` batch upsert.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, IdenStatic,
    IntoActiveModel, Iterable, QueryFilter, QuerySelect, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};

use super::entities::{Mirror, area, device, entity, floor, label, state_meta};
use super::{RegistryError, RegistryStore};
use crate::ha::model::RegistryKind;
use crate::registry::record::{Area, Device, EntityEntry, Floor, Label};

/// Rows per bulk upsert and keys per bulk delete. sqlx keeps every prepared statement in its
/// per-connection cache, and a statement's compiled program grows with its parameters: 30,000
/// parameters compile to about 150 KB of program, and the mirror's syncs had left about 6 MB of
/// such statements cached. A few hundred rows per statement are as fast to write, and 128 rows of
/// the widest table stay far below SQLite's limit of 32,766 parameters (a unit test checks it).
pub(super) const MAX_ROWS_PER_STATEMENT: usize = 128;

/// A whole registry listing (the reply of `config/<kind>_registry/list`).
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryRows {
    /// Every area.
    Areas(Vec<Area>),
    /// Every floor.
    Floors(Vec<Floor>),
    /// Every label.
    Labels(Vec<Label>),
    /// Every device.
    Devices(Vec<Device>),
    /// Every entity registry row.
    Entities(Vec<EntityEntry>),
}

impl RegistryRows {
    /// The registry these rows belong to.
    pub(crate) fn kind(&self) -> RegistryKind {
        match self {
            RegistryRows::Areas(_) => RegistryKind::Area,
            RegistryRows::Floors(_) => RegistryKind::Floor,
            RegistryRows::Labels(_) => RegistryKind::Label,
            RegistryRows::Devices(_) => RegistryKind::Device,
            RegistryRows::Entities(_) => RegistryKind::Entity,
        }
    }
}

/// What a full sync changed in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// The registry that was synced.
    pub kind: RegistryKind,
    /// Rows that were new.
    pub inserted: usize,
    /// Rows whose content changed.
    pub updated: usize,
    /// Rows that had vanished from Home Assistant.
    pub removed: usize,
    /// Rows in the table after the sync.
    pub total: usize,
}

/// Metadata of one entity taken from its state attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StateMeta {
    /// Full entity id.
    pub entity_id: String,
    /// `device_class` attribute.
    pub device_class: Option<String>,
    /// `unit_of_measurement` attribute.
    pub unit: Option<String>,
    /// `friendly_name` attribute.
    pub friendly_name: Option<String>,
    /// When the state was seen.
    pub last_seen: DateTime<Utc>,
}

impl RegistryStore {
    /// Makes one mirror table exactly equal to `rows`: inserts new rows, updates changed ones and
    /// deletes those Home Assistant no longer lists, in one transaction. Duplicate ids (and, for
    /// entities, duplicate entity ids) keep the last row.
    pub async fn full_sync(&self, rows: RegistryRows) -> Result<SyncReport, RegistryError> {
        let txn = self.begin_write().await?;
        let report = match rows {
            RegistryRows::Areas(rows) => sync_table::<area::Entity>(&txn, convert(rows)).await?,
            RegistryRows::Floors(rows) => sync_table::<floor::Entity>(&txn, convert(rows)).await?,
            RegistryRows::Labels(rows) => sync_table::<label::Entity>(&txn, convert(rows)).await?,
            RegistryRows::Devices(rows) => {
                sync_table::<device::Entity>(&txn, convert(rows)).await?
            }
            RegistryRows::Entities(rows) => sync_entities(&txn, rows).await?,
        };
        txn.commit().await?;
        Ok(report)
    }

    /// Inserts or replaces one entity row, keyed by its registry id. Any other row holding the same
    /// entity id is deleted first, so a rename (same registry id, new entity id) or an entity id
    /// reused by a new registry entry never trips the unique entity id.
    pub(crate) async fn upsert_entity(&self, entry: EntityEntry) -> Result<(), RegistryError> {
        let model = entity::Model::from(entry);
        let txn = self.begin_write().await?;
        entity::Entity::delete_many()
            .filter(entity::Column::EntityId.eq(model.entity_id.as_str()))
            .filter(entity::Column::Id.ne(model.id.as_str()))
            .exec(&txn)
            .await?;
        upsert_models::<entity::Entity, _>(&txn, vec![model]).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Deletes one row: entities by entity id, the other registries by their id. Removing a row
    /// that is not there is not an error. The entity's `state_meta` row is kept (its state may
    /// outlive the registry entry).
    pub(crate) async fn remove(&self, kind: RegistryKind, id: &str) -> Result<(), RegistryError> {
        match kind {
            RegistryKind::Area => delete_key::<area::Entity>(&self.db, id).await?,
            RegistryKind::Floor => delete_key::<floor::Entity>(&self.db, id).await?,
            RegistryKind::Label => delete_key::<label::Entity>(&self.db, id).await?,
            RegistryKind::Device => delete_key::<device::Entity>(&self.db, id).await?,
            RegistryKind::Entity => {
                entity::Entity::delete_many()
                    .filter(entity::Column::EntityId.eq(id))
                    .exec(&self.db)
                    .await?;
            }
        }
        Ok(())
    }

    /// Upserts state metadata in batched statements inside one transaction. The last row per
    /// entity id wins, within the call and against the table (callers pass rows in arrival order).
    pub(crate) async fn record_state_meta(
        &self,
        rows: Vec<StateMeta>,
    ) -> Result<(), RegistryError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut latest: HashMap<String, StateMeta> = HashMap::with_capacity(rows.len());
        for row in rows {
            latest.insert(row.entity_id.clone(), row);
        }
        let models: Vec<state_meta::Model> = latest
            .into_values()
            .map(|m| state_meta::Model {
                entity_id: m.entity_id,
                device_class: m.device_class,
                unit: m.unit,
                friendly_name: m.friendly_name,
                last_seen: m.last_seen,
            })
            .collect();

        let txn = self.begin_write().await?;
        let on_conflict = OnConflict::column(state_meta::Column::EntityId)
            .update_columns([
                state_meta::Column::DeviceClass,
                state_meta::Column::Unit,
                state_meta::Column::FriendlyName,
                state_meta::Column::LastSeen,
            ])
            .to_owned();
        let mut rest = models.into_iter().peekable();
        while rest.peek().is_some() {
            let batch = rest
                .by_ref()
                .take(MAX_ROWS_PER_STATEMENT)
                .map(IntoActiveModel::into_active_model);
            state_meta::Entity::insert_many(batch)
                .on_conflict(on_conflict.clone())
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Deletes the state metadata of entities whose state is gone from Home Assistant, so they stop
    /// being listed as state-only entities. Unknown ids are not an error.
    pub(crate) async fn forget_state_meta(
        &self,
        entity_ids: Vec<String>,
    ) -> Result<(), RegistryError> {
        if entity_ids.is_empty() {
            return Ok(());
        }
        let txn = self.begin_write().await?;
        for batch in entity_ids.chunks(500) {
            state_meta::Entity::delete_many()
                .filter(state_meta::Column::EntityId.is_in(batch.iter().cloned()))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Deletes the state metadata of every entity not in `present`: the entity ids of a complete
    /// `get_states` snapshot. The first snapshot after a start has no earlier states in memory to
    /// compare with, so entities removed while HomeIQ was stopped are found here, against the
    /// table; they then go as a live removal (`new_state: null`) makes them go. Returns how many
    /// rows were deleted.
    pub(crate) async fn retain_state_meta(
        &self,
        present: Vec<String>,
    ) -> Result<usize, RegistryError> {
        let present: std::collections::HashSet<String> = present.into_iter().collect();
        let txn = self.begin_write().await?;
        let stored: Vec<String> = state_meta::Entity::find()
            .select_only()
            .column(state_meta::Column::EntityId)
            .into_tuple()
            .all(&txn)
            .await?;
        let gone: Vec<String> = stored
            .into_iter()
            .filter(|id| !present.contains(id))
            .collect();
        for batch in gone.chunks(MAX_ROWS_PER_STATEMENT) {
            state_meta::Entity::delete_many()
                .filter(state_meta::Column::EntityId.is_in(batch.iter().map(String::as_str)))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(gone.len())
    }

    /// Starts a write transaction that takes the write lock at once (`BEGIN IMMEDIATE`).
    async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        self.db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
    }
}

/// Converts Home Assistant rows into table models.
fn convert<T, M: From<T>>(rows: Vec<T>) -> Vec<M> {
    rows.into_iter().map(M::from).collect()
}

/// What a full sync has to write.
struct Plan<M> {
    /// Keys of rows to delete before writing.
    deletes: Vec<String>,
    /// Rows to upsert, each with its stored version when it is an update.
    writes: Vec<(Option<M>, M)>,
    /// The report (without removals of rewritten rows).
    report: SyncReport,
}

/// Compares the stored rows with the wanted ones.
fn plan<E>(existing: Vec<E::Model>, wanted: Vec<E::Model>) -> Plan<E::Model>
where
    E: Mirror,
    E::Model: PartialEq,
{
    let mut stored: HashMap<String, E::Model> = existing
        .into_iter()
        .map(|m| (E::key(&m).to_owned(), m))
        .collect();
    let mut unique: HashMap<String, E::Model> = HashMap::with_capacity(wanted.len());
    for m in wanted {
        unique.insert(E::key(&m).to_owned(), m);
    }

    let total = unique.len();
    let (mut inserted, mut updated) = (0, 0);
    let mut writes = Vec::new();
    for (key, new) in unique {
        match stored.remove(&key) {
            None => {
                inserted += 1;
                writes.push((None, new));
            }
            Some(old) if old != new => {
                updated += 1;
                writes.push((Some(old), new));
            }
            Some(_) => {}
        }
    }
    let deletes: Vec<String> = stored.into_keys().collect();
    Plan {
        report: SyncReport {
            kind: E::KIND,
            inserted,
            updated,
            removed: deletes.len(),
            total,
        },
        deletes,
        writes,
    }
}

/// Full sync of one table without secondary unique keys.
async fn sync_table<E>(
    txn: &DatabaseTransaction,
    wanted: Vec<E::Model>,
) -> Result<SyncReport, DbErr>
where
    E: Mirror,
    E::Model: IntoActiveModel<E::ActiveModel> + PartialEq + Send + Sync,
    E::ActiveModel: Send,
{
    let existing = E::find().all(txn).await?;
    let plan = plan::<E>(existing, wanted);
    delete_keys::<E>(txn, &plan.deletes).await?;
    upsert_models::<E, _>(txn, plan.writes.into_iter().map(|(_, m)| m).collect()).await?;
    Ok(plan.report)
}

/// Full sync of `entities`, whose entity id is unique besides the registry id.
async fn sync_entities(
    txn: &DatabaseTransaction,
    rows: Vec<EntityEntry>,
) -> Result<SyncReport, DbErr> {
    // Keep one row per entity id (the last), so the batch cannot collide with itself.
    let mut by_entity_id: HashMap<String, usize> = HashMap::with_capacity(rows.len());
    let mut wanted: Vec<Option<entity::Model>> = Vec::with_capacity(rows.len());
    for row in rows {
        let model = entity::Model::from(row);
        if let Some(previous) = by_entity_id.insert(model.entity_id.clone(), wanted.len()) {
            wanted[previous] = None;
        }
        wanted.push(Some(model));
    }
    let wanted: Vec<entity::Model> = wanted.into_iter().flatten().collect();

    let existing = entity::Entity::find().all(txn).await?;
    let mut plan = plan::<entity::Entity>(existing, wanted);
    // A stored row whose entity id changes could hold an id another written row takes (swaps,
    // reuse): delete it first; the upsert writes it back under its new entity id.
    plan.deletes
        .extend(plan.writes.iter().filter_map(|(old, new)| {
            old.as_ref()
                .filter(|old| old.entity_id != new.entity_id)
                .map(|old| old.id.clone())
        }));
    delete_keys::<entity::Entity>(txn, &plan.deletes).await?;
    upsert_models::<entity::Entity, _>(txn, plan.writes.into_iter().map(|(_, m)| m).collect())
        .await?;
    Ok(plan.report)
}

/// Inserts rows, replacing every column of rows whose key exists, in batched statements.
async fn upsert_models<E, C>(db: &C, models: Vec<E::Model>) -> Result<(), DbErr>
where
    E: Mirror,
    E::Model: IntoActiveModel<E::ActiveModel> + Send + Sync,
    E::ActiveModel: Send,
    C: ConnectionTrait,
{
    if models.is_empty() {
        return Ok(());
    }
    let key = E::key_column();
    let on_conflict = OnConflict::column(key)
        .update_columns(E::Column::iter().filter(|c| c.as_str() != key.as_str()))
        .to_owned();
    let mut rest = models.into_iter().peekable();
    while rest.peek().is_some() {
        let batch = rest
            .by_ref()
            .take(MAX_ROWS_PER_STATEMENT)
            .map(IntoActiveModel::into_active_model);
        E::insert_many(batch)
            .on_conflict(on_conflict.clone())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Deletes the rows with these keys, in batched statements.
async fn delete_keys<E: Mirror>(db: &impl ConnectionTrait, keys: &[String]) -> Result<(), DbErr> {
    for chunk in keys.chunks(MAX_ROWS_PER_STATEMENT) {
        E::delete_many()
            .filter(E::key_column().is_in(chunk.iter().map(String::as_str)))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Deletes the row with this key, if any.
async fn delete_key<E: Mirror>(db: &impl ConnectionTrait, key: &str) -> Result<(), DbErr> {
    E::delete_many()
        .filter(E::key_column().eq(key))
        .exec(db)
        .await?;
    Ok(())
}
