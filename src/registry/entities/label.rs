//! `labels`: mirror of Home Assistant's label registry.

use sea_orm::entity::prelude::*;

use super::Mirror;
use crate::ha::model::RegistryKind;
use crate::registry::record::Label;

/// One row of `labels`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "labels")]
pub struct Model {
    /// Label id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub label_id: String,
    /// Display name.
    pub name: String,
    /// Colour name or value.
    pub color: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Icon.
    pub icon: Option<String>,
    /// Creation time (Unix seconds).
    pub created_at: Option<f64>,
    /// Last modification (Unix seconds).
    pub modified_at: Option<f64>,
}

/// No relations are navigated from labels.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Mirror for Entity {
    const KIND: RegistryKind = RegistryKind::Label;

    fn key_column() -> Column {
        Column::LabelId
    }

    fn key(model: &Model) -> &str {
        &model.label_id
    }
}

impl From<Label> for Model {
    fn from(e: Label) -> Self {
        Self {
            label_id: e.label_id,
            name: e.name,
            color: e.color,
            description: e.description,
            icon: e.icon,
            created_at: e.created_at,
            modified_at: e.modified_at,
        }
    }
}
