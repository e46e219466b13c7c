//! `state_meta`: HomeIQ's own per-entity metadata taken from state attributes.

use sea_orm::entity::prelude::*;

/// One row of `state_meta`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "state_meta")]
pub struct Model {
    /// Full entity id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub entity_id: String,
    /// `device_class` attribute.
    pub device_class: Option<String>,
    /// `unit_of_measurement` attribute.
    pub unit: Option<String>,
    /// `friendly_name` attribute.
    pub friendly_name: Option<String>,
    /// When HomeIQ last saw a state of the entity.
    pub last_seen: DateTimeUtc,
}

/// No relations are navigated from state metadata.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
