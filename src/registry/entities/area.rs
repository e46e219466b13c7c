//! `areas`: mirror of Home Assistant's area registry.

use sea_orm::entity::prelude::*;

use super::{Mirror, strings_to_json};
use crate::ha::model::RegistryKind;
use crate::registry::record::Area;

/// One row of `areas`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "areas")]
pub struct Model {
    /// Area id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub area_id: String,
    /// Display name.
    pub name: String,
    /// Floor the area is on.
    pub floor_id: Option<String>,
    /// Icon.
    pub icon: Option<String>,
    /// Other names (JSON array of strings).
    pub aliases: Json,
    /// Label ids (JSON array of strings).
    pub labels: Json,
    /// Creation time (Unix seconds, as Home Assistant sent it).
    pub created_at: Option<f64>,
    /// Last modification (Unix seconds).
    pub modified_at: Option<f64>,
}

/// No relations are navigated from areas.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Mirror for Entity {
    const KIND: RegistryKind = RegistryKind::Area;

    fn key_column() -> Column {
        Column::AreaId
    }

    fn key(model: &Model) -> &str {
        &model.area_id
    }
}

impl From<Area> for Model {
    fn from(e: Area) -> Self {
        Self {
            area_id: e.area_id,
            name: e.name,
            floor_id: e.floor_id,
            icon: e.icon,
            aliases: strings_to_json(e.aliases),
            labels: strings_to_json(e.labels),
            created_at: e.created_at,
            modified_at: e.modified_at,
        }
    }
}
