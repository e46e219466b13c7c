//! sea-orm entities of the registry mirror tables, and the conversions from Home Assistant's rows.
//!
//! The schema itself is created by the migrations, not derived from these structs. Relations are
//! declared for joins only: the tables carry no foreign keys.

pub(crate) mod area;
pub(crate) mod device;
pub(crate) mod entity;
pub(crate) mod floor;
pub(crate) mod label;
pub(crate) mod state_meta;

use sea_orm::EntityTrait;
use sea_orm::entity::prelude::Json;

use crate::ha::model::RegistryKind;

/// A table that mirrors one Home Assistant registry, keyed by a text id.
pub(crate) trait Mirror: EntityTrait {
    /// The registry this table mirrors.
    const KIND: RegistryKind;

    /// The primary-key column.
    fn key_column() -> Self::Column;

    /// The primary-key value of a row.
    fn key(model: &Self::Model) -> &str;
}

/// A list of strings as a JSON array.
pub(crate) fn strings_to_json(values: Vec<String>) -> Json {
    Json::Array(values.into_iter().map(Json::String).collect())
}

/// The strings of a JSON array (anything else is skipped).
pub(crate) fn json_to_strings(value: &Json) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
