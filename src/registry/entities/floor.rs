//! `floors`: mirror of Home Assistant's floor registry.

use sea_orm::entity::prelude::*;

use super::{Mirror, strings_to_json};
use crate::ha::model::RegistryKind;
use crate::registry::record::Floor;

/// One row of `floors`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "floors")]
pub struct Model {
    /// Floor id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub floor_id: String,
    /// Display name.
    pub name: String,
    /// Level (0 = ground floor).
    pub level: Option<i64>,
    /// Icon.
    pub icon: Option<String>,
    /// Other names (JSON array of strings).
    pub aliases: Json,
    /// Creation time (Unix seconds).
    pub created_at: Option<f64>,
    /// Last modification (Unix seconds).
    pub modified_at: Option<f64>,
}

/// No relations are navigated from floors.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Mirror for Entity {
    const KIND: RegistryKind = RegistryKind::Floor;

    fn key_column() -> Column {
        Column::FloorId
    }

    fn key(model: &Model) -> &str {
        &model.floor_id
    }
}

impl From<Floor> for Model {
    fn from(e: Floor) -> Self {
        Self {
            floor_id: e.floor_id,
            name: e.name,
            level: e.level,
            icon: e.icon,
            aliases: strings_to_json(e.aliases),
            created_at: e.created_at,
            modified_at: e.modified_at,
        }
    }
}
