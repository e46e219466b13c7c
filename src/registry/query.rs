//! Reads: plain serializable views of the mirror for tests and the HTTP API.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Query;
use sea_orm::{
    ColumnTrait, EntityTrait, FromQueryResult, JoinType, QueryFilter, QueryOrder, QuerySelect,
    RelationTrait,
};
use serde::Serialize;

use super::entities::device::identifiers_of;
use super::entities::{area, device, entity, floor, json_to_strings, label, state_meta};
use super::record::{Area, Device, Floor, Label};
use super::{RegistryError, RegistryStore};
use crate::ha::model::domain_of;

/// An entity: its registry row (if it has one) joined with its device's area and its state
/// metadata. State-only entities (no registry row) have `id: None` and only the state fields.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EntityView {
    /// Registry id; `None` for a state-only entity.
    pub id: Option<String>,
    /// Full entity id.
    pub entity_id: String,
    /// Domain of the entity id.
    pub domain: String,
    /// Integration providing the entity (registry entities only).
    pub platform: Option<String>,
    /// Name given by the user.
    pub name: Option<String>,
    /// Name given by the integration.
    pub original_name: Option<String>,
    /// `friendly_name` from the latest state.
    pub friendly_name: Option<String>,
    /// Device the entity belongs to.
    pub device_id: Option<String>,
    /// Area set on the entity itself.
    pub area_id: Option<String>,
    /// The entity's area, else its device's area.
    pub effective_area_id: Option<String>,
    /// Label ids.
    pub labels: Vec<String>,
    /// `config` or `diagnostic`.
    pub entity_category: Option<String>,
    /// Why the entity is disabled.
    pub disabled_by: Option<String>,
    /// Why the entity is hidden.
    pub hidden_by: Option<String>,
    /// Config entry providing the entity.
    pub config_entry_id: Option<String>,
    /// Unique id within the platform.
    pub unique_id: Option<String>,
    /// Icon set by the user.
    pub icon: Option<String>,
    /// Whether the name is composed with the device name; `null` when Home Assistant did not
    /// send it (2026.x no longer does) and for state-only entities.
    pub has_entity_name: Option<bool>,
    /// `device_class` from the latest state.
    pub device_class: Option<String>,
    /// `unit_of_measurement` from the latest state.
    pub unit: Option<String>,
    /// When HomeIQ last saw a state of the entity.
    pub last_seen: Option<DateTime<Utc>>,
    /// Registry creation time (Unix seconds).
    pub created_at: Option<f64>,
    /// Registry modification time (Unix seconds).
    pub modified_at: Option<f64>,
}

/// Row counts of the mirror tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg(test)]
pub(crate) struct RegistryCounts {
    /// Areas.
    pub areas: u64,
    /// Floors.
    pub floors: u64,
    /// Labels.
    pub labels: u64,
    /// Devices.
    pub devices: u64,
    /// Entity registry rows.
    pub entities: u64,
}

/// An entity row joined with its device's area and its state metadata.
#[derive(Debug, FromQueryResult)]
struct EntityRow {
    id: String,
    entity_id: String,
    domain: String,
    platform: String,
    name: Option<String>,
    original_name: Option<String>,
    device_id: Option<String>,
    area_id: Option<String>,
    labels: serde_json::Value,
    entity_category: Option<String>,
    disabled_by: Option<String>,
    hidden_by: Option<String>,
    config_entry_id: Option<String>,
    unique_id: Option<String>,
    icon: Option<String>,
    has_entity_name: Option<bool>,
    created_at: Option<f64>,
    modified_at: Option<f64>,
    device_area_id: Option<String>,
    device_class: Option<String>,
    unit: Option<String>,
    friendly_name: Option<String>,
    last_seen: Option<DateTime<Utc>>,
}

impl From<EntityRow> for EntityView {
    fn from(r: EntityRow) -> Self {
        Self {
            effective_area_id: r.area_id.clone().or(r.device_area_id),
            id: Some(r.id),
            entity_id: r.entity_id,
            domain: r.domain,
            platform: Some(r.platform),
            name: r.name,
            original_name: r.original_name,
            friendly_name: r.friendly_name,
            device_id: r.device_id,
            area_id: r.area_id,
            labels: json_to_strings(&r.labels),
            entity_category: r.entity_category,
            disabled_by: r.disabled_by,
            hidden_by: r.hidden_by,
            config_entry_id: r.config_entry_id,
            unique_id: r.unique_id,
            icon: r.icon,
            has_entity_name: r.has_entity_name,
            device_class: r.device_class,
            unit: r.unit,
            last_seen: r.last_seen,
            created_at: r.created_at,
            modified_at: r.modified_at,
        }
    }
}

impl From<state_meta::Model> for EntityView {
    fn from(m: state_meta::Model) -> Self {
        Self {
            id: None,
            domain: domain_of(&m.entity_id).to_owned(),
            entity_id: m.entity_id,
            platform: None,
            name: None,
            original_name: None,
            friendly_name: m.friendly_name,
            device_id: None,
            area_id: None,
            effective_area_id: None,
            labels: Vec::new(),
            entity_category: None,
            disabled_by: None,
            hidden_by: None,
            config_entry_id: None,
            unique_id: None,
            icon: None,
            has_entity_name: None,
            device_class: m.device_class,
            unit: m.unit,
            last_seen: Some(m.last_seen),
            created_at: None,
            modified_at: None,
        }
    }
}

impl EntityView {
    /// The view of an entity known only from its state (not yet in the mirror).
    pub(crate) fn from_state(state: &crate::ha::model::State) -> Self {
        Self::from(state_meta::Model {
            entity_id: state.entity_id.clone(),
            device_class: state.device_class().map(str::to_owned),
            unit: state.unit().map(str::to_owned),
            friendly_name: state
                .attributes
                .get("friendly_name")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            last_seen: state.last_updated,
        })
    }
}

impl From<area::Model> for Area {
    fn from(m: area::Model) -> Self {
        Self {
            aliases: json_to_strings(&m.aliases),
            labels: json_to_strings(&m.labels),
            area_id: m.area_id,
            name: m.name,
            floor_id: m.floor_id,
            icon: m.icon,
            created_at: m.created_at,
            modified_at: m.modified_at,
        }
    }
}

impl From<floor::Model> for Floor {
    fn from(m: floor::Model) -> Self {
        Self {
            aliases: json_to_strings(&m.aliases),
            floor_id: m.floor_id,
            name: m.name,
            level: m.level,
            icon: m.icon,
            created_at: m.created_at,
            modified_at: m.modified_at,
        }
    }
}

impl From<label::Model> for Label {
    fn from(m: label::Model) -> Self {
        Self {
            label_id: m.label_id,
            name: m.name,
            color: m.color,
            description: m.description,
            icon: m.icon,
            created_at: m.created_at,
            modified_at: m.modified_at,
        }
    }
}

impl From<device::Model> for Device {
    fn from(m: device::Model) -> Self {
        Self {
            labels: json_to_strings(&m.labels),
            identifiers: identifiers_of(&m.identifiers),
            config_entries: m.config_entries.as_ref().map(json_to_strings),
            id: m.id,
            name: m.name,
            name_by_user: m.name_by_user,
            manufacturer: m.manufacturer,
            model: m.model,
            model_id: m.model_id,
            area_id: m.area_id,
            primary_config_entry: m.primary_config_entry,
            config_entry_id: m.config_entry_id,
            config_subentry_id: m.config_subentry_id,
            disabled_by: m.disabled_by,
            entry_type: m.entry_type,
            via_device_id: m.via_device_id,
            parent_device_id: m.parent_device_id,
            sw_version: m.sw_version,
            hw_version: m.hw_version,
            serial_number: m.serial_number,
            configuration_url: m.configuration_url,
            created_at: m.created_at,
            modified_at: m.modified_at,
        }
    }
}

impl RegistryStore {
    /// Every area, by id.
    pub async fn list_areas(&self) -> Result<Vec<Area>, RegistryError> {
        let rows = area::Entity::find()
            .order_by_asc(area::Column::AreaId)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(Area::from).collect())
    }

    /// Every floor, by id.
    pub async fn list_floors(&self) -> Result<Vec<Floor>, RegistryError> {
        let rows = floor::Entity::find()
            .order_by_asc(floor::Column::FloorId)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(Floor::from).collect())
    }

    /// Every label, by id.
    pub async fn list_labels(&self) -> Result<Vec<Label>, RegistryError> {
        let rows = label::Entity::find()
            .order_by_asc(label::Column::LabelId)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(Label::from).collect())
    }

    /// Every device, by id.
    pub async fn list_devices(&self) -> Result<Vec<Device>, RegistryError> {
        let rows = device::Entity::find()
            .order_by_asc(device::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(Device::from).collect())
    }

    /// Every entity, by entity id: registry rows (with the device-area fallback and state
    /// metadata) and state-only entities known from `state_meta`.
    pub async fn list_entities(&self) -> Result<Vec<EntityView>, RegistryError> {
        let registered = entity_rows()
            .order_by_asc(entity::Column::EntityId)
            .into_model::<EntityRow>()
            .all(&self.db)
            .await?;
        let state_only = state_meta::Entity::find()
            .filter(
                state_meta::Column::EntityId.not_in_subquery(
                    Query::select()
                        .column(entity::Column::EntityId)
                        .from(entity::Entity)
                        .to_owned(),
                ),
            )
            .all(&self.db)
            .await?;
        let mut views: Vec<EntityView> = registered
            .into_iter()
            .map(EntityView::from)
            .chain(state_only.into_iter().map(EntityView::from))
            .collect();
        views.sort_by(|a, b| a.entity_id.cmp(&b.entity_id));
        Ok(views)
    }

    /// One entity by entity id (registry row or state-only), if known.
    pub async fn get_entity(&self, entity_id: &str) -> Result<Option<EntityView>, RegistryError> {
        let registered = entity_rows()
            .filter(entity::Column::EntityId.eq(entity_id))
            .into_model::<EntityRow>()
            .one(&self.db)
            .await?;
        if let Some(row) = registered {
            return Ok(Some(row.into()));
        }
        let state_only = state_meta::Entity::find_by_id(entity_id.to_owned())
            .one(&self.db)
            .await?;
        Ok(state_only.map(EntityView::from))
    }

    /// Row counts of the mirror tables.
    #[cfg(test)]
    pub(crate) async fn counts(&self) -> Result<RegistryCounts, RegistryError> {
        use sea_orm::PaginatorTrait;
        Ok(RegistryCounts {
            areas: area::Entity::find().count(&self.db).await?,
            floors: floor::Entity::find().count(&self.db).await?,
            labels: label::Entity::find().count(&self.db).await?,
            devices: device::Entity::find().count(&self.db).await?,
            entities: entity::Entity::find().count(&self.db).await?,
        })
    }
}

/// Entities left-joined with their device's area and their state metadata.
fn entity_rows() -> sea_orm::Select<entity::Entity> {
    entity::Entity::find()
        .join(JoinType::LeftJoin, entity::Relation::Device.def())
        .join(JoinType::LeftJoin, entity::Relation::StateMeta.def())
        .column_as(device::Column::AreaId, "device_area_id")
        .column(state_meta::Column::DeviceClass)
        .column(state_meta::Column::Unit)
        .column(state_meta::Column::FriendlyName)
        .column(state_meta::Column::LastSeen)
}
