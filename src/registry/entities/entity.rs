//! `entities`: mirror of Home Assistant's entity registry.

use sea_orm::entity::prelude::*;

use super::{Mirror, strings_to_json};
use crate::ha::model::RegistryKind;
use crate::registry::record::EntityEntry;

/// One row of `entities`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "entities")]
pub struct Model {
    /// Registry id (stable across renames).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Current entity id (unique).
    pub entity_id: String,
    /// Domain of the entity id, derived.
    pub domain: String,
    /// Integration providing the entity.
    pub platform: String,
    /// Name given by the user.
    pub name: Option<String>,
    /// Name given by the integration.
    pub original_name: Option<String>,
    /// Device the entity belongs to.
    pub device_id: Option<String>,
    /// Area set on the entity itself.
    pub area_id: Option<String>,
    /// Label ids (JSON array of strings).
    pub labels: Json,
    /// `config` or `diagnostic`.
    pub entity_category: Option<String>,
    /// Why the entity is disabled.
    pub disabled_by: Option<String>,
    /// Why the entity is hidden.
    pub hidden_by: Option<String>,
    /// Config entry providing the entity.
    pub config_entry_id: Option<String>,
    /// Unique id within the platform (non-string ids as JSON text).
    pub unique_id: Option<String>,
    /// Icon set by the user.
    pub icon: Option<String>,
    /// Whether the name is composed with the device name (`None`: Home Assistant did not say).
    pub has_entity_name: Option<bool>,
    /// Creation time (Unix seconds).
    pub created_at: Option<f64>,
    /// Last modification (Unix seconds).
    pub modified_at: Option<f64>,
}

/// Join paths used by the entity views (no foreign keys exist in the schema).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The entity's device, for the area fallback.
    #[sea_orm(
        belongs_to = "super::device::Entity",
        from = "Column::DeviceId",
        to = "super::device::Column::Id"
    )]
    Device,
    /// The state-derived metadata of the entity.
    #[sea_orm(
        belongs_to = "super::state_meta::Entity",
        from = "Column::EntityId",
        to = "super::state_meta::Column::EntityId"
    )]
    StateMeta,
}

impl ActiveModelBehavior for ActiveModel {}

impl Mirror for Entity {
    const KIND: RegistryKind = RegistryKind::Entity;

    fn key_column() -> Column {
        Column::Id
    }

    fn key(model: &Model) -> &str {
        &model.id
    }
}

impl From<EntityEntry> for Model {
    fn from(e: EntityEntry) -> Self {
        let domain = e.domain().to_owned();
        let unique_id = match e.unique_id {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
        };
        Self {
            id: e.id,
            entity_id: e.entity_id,
            domain,
            platform: e.platform,
            name: e.name,
            original_name: e.original_name,
            device_id: e.device_id,
            area_id: e.area_id,
            labels: strings_to_json(e.labels),
            entity_category: e.entity_category,
            disabled_by: e.disabled_by,
            hidden_by: e.hidden_by,
            config_entry_id: e.config_entry_id,
            unique_id,
            icon: e.icon,
            has_entity_name: e.has_entity_name,
            created_at: e.created_at,
            modified_at: e.modified_at,
        }
    }
}
