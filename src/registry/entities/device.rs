//! `devices`: mirror of Home Assistant's device registry.

use sea_orm::entity::prelude::*;

use super::{Mirror, strings_to_json};
use crate::ha::model::RegistryKind;
use crate::registry::record::Device;

/// One row of `devices`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "devices")]
pub struct Model {
    /// Device id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Name given by the integration.
    pub name: Option<String>,
    /// Name given by the user.
    pub name_by_user: Option<String>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Model id.
    pub model_id: Option<String>,
    /// Area the device is in.
    pub area_id: Option<String>,
    /// Label ids (JSON array of strings).
    pub labels: Json,
    /// Integration (domain of the first identifier), derived.
    pub integration: Option<String>,
    /// `[domain, id]` pairs (JSON array of arrays).
    pub identifiers: Json,
    /// Config entry ids (JSON array of strings); `None` when Home Assistant did not send them.
    pub config_entries: Option<Json>,
    /// The primary config entry.
    pub primary_config_entry: Option<String>,
    /// The config entry that created the device (Home Assistant 2026).
    pub config_entry_id: Option<String>,
    /// The config subentry that created the device (Home Assistant 2026).
    pub config_subentry_id: Option<String>,
    /// Why the device is disabled.
    pub disabled_by: Option<String>,
    /// `service` for services.
    pub entry_type: Option<String>,
    /// Hub the device is connected through.
    pub via_device_id: Option<String>,
    /// Parent device (child devices).
    pub parent_device_id: Option<String>,
    /// Software version.
    pub sw_version: Option<String>,
    /// Hardware version.
    pub hw_version: Option<String>,
    /// Serial number.
    pub serial_number: Option<String>,
    /// Configuration URL.
    pub configuration_url: Option<String>,
    /// Creation time (Unix seconds).
    pub created_at: Option<f64>,
    /// Last modification (Unix seconds).
    pub modified_at: Option<f64>,
}

/// No relations are navigated from devices.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Mirror for Entity {
    const KIND: RegistryKind = RegistryKind::Device;

    fn key_column() -> Column {
        Column::Id
    }

    fn key(model: &Model) -> &str {
        &model.id
    }
}

impl From<Device> for Model {
    fn from(e: Device) -> Self {
        let integration = e.integration().map(str::to_owned);
        let identifiers = Json::Array(
            e.identifiers
                .into_iter()
                .map(|(domain, id)| Json::Array(vec![Json::String(domain), Json::String(id)]))
                .collect(),
        );
        Self {
            id: e.id,
            name: e.name,
            name_by_user: e.name_by_user,
            manufacturer: e.manufacturer,
            model: e.model,
            model_id: e.model_id,
            area_id: e.area_id,
            labels: strings_to_json(e.labels),
            integration,
            identifiers,
            config_entries: e.config_entries.map(strings_to_json),
            primary_config_entry: e.primary_config_entry,
            config_entry_id: e.config_entry_id,
            config_subentry_id: e.config_subentry_id,
            disabled_by: e.disabled_by,
            entry_type: e.entry_type,
            via_device_id: e.via_device_id,
            parent_device_id: e.parent_device_id,
            sw_version: e.sw_version,
            hw_version: e.hw_version,
            serial_number: e.serial_number,
            configuration_url: e.configuration_url,
            created_at: e.created_at,
            modified_at: e.modified_at,
        }
    }
}

/// The `[domain, id]` pairs of a stored `identifiers` value (malformed items are skipped).
pub(crate) fn identifiers_of(value: &Json) -> Vec<(String, String)> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| match item.as_array()?.as_slice() {
                    [domain, id] => Some((domain.as_str()?.to_owned(), id.as_str()?.to_owned())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}
