//! Home Assistant 2026 registry rows: `entities.has_entity_name` becomes nullable (2026.x no
//! longer sends it, and a value HA did not send must not be made up), `devices.config_entries`
//! becomes nullable (2026 child devices come with a reduced row without it) and devices gain
//! `config_entry_id` and `config_subentry_id`.
//!
//! SQLite cannot change a column's nullability in place, so both tables are rebuilt: a new table
//! is created, the rows are copied, the old table is dropped, the new one renamed and its indexes
//! recreated — all in the migration's transaction. The mirror's rows are kept (the catalog serves
//! them while Home Assistant is away); the next full sync rewrites them from Home Assistant.

use sea_orm_migration::{prelude::*, schema::*};

/// Rebuilds `entities` and `devices` with the 2026 columns.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// Columns `entities` keeps, in order (all copied as they are).
const ENTITY_COLUMNS: &str = "id, entity_id, domain, platform, name, original_name, device_id, \
     area_id, labels, entity_category, disabled_by, hidden_by, config_entry_id, unique_id, icon, \
     has_entity_name, created_at, modified_at";

/// Columns `devices` keeps, in order (the new ones start out NULL).
const DEVICE_COLUMNS: &str = "id, name, name_by_user, manufacturer, model, model_id, area_id, \
     labels, integration, identifiers, config_entries, primary_config_entry, disabled_by, \
     entry_type, via_device_id, parent_device_id, sw_version, hw_version, serial_number, \
     configuration_url, created_at, modified_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EntitiesNew::Table)
                    .col(text(Entities::Id).primary_key())
                    .col(text(Entities::EntityId))
                    .col(text(Entities::Domain))
                    .col(text(Entities::Platform))
                    .col(text_null(Entities::Name))
                    .col(text_null(Entities::OriginalName))
                    .col(text_null(Entities::DeviceId))
                    .col(text_null(Entities::AreaId))
                    .col(json(Entities::Labels))
                    .col(text_null(Entities::EntityCategory))
                    .col(text_null(Entities::DisabledBy))
                    .col(text_null(Entities::HiddenBy))
                    .col(text_null(Entities::ConfigEntryId))
                    .col(text_null(Entities::UniqueId))
                    .col(text_null(Entities::Icon))
                    .col(boolean_null(Entities::HasEntityName))
                    .col(double_null(Entities::CreatedAt))
                    .col(double_null(Entities::ModifiedAt))
                    .to_owned(),
            )
            .await?;
        rebuild(manager, "entities", "entities_new", ENTITY_COLUMNS).await?;
        for (name, column, unique) in [
            ("ux_entities_entity_id", Entities::EntityId, true),
            ("idx_entities_domain", Entities::Domain, false),
            ("idx_entities_platform", Entities::Platform, false),
            ("idx_entities_device_id", Entities::DeviceId, false),
            ("idx_entities_area_id", Entities::AreaId, false),
        ] {
            index(manager, name, Entities::Table, column, unique).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(DevicesNew::Table)
                    .col(text(Devices::Id).primary_key())
                    .col(text_null(Devices::Name))
                    .col(text_null(Devices::NameByUser))
                    .col(text_null(Devices::Manufacturer))
                    .col(text_null(Devices::Model))
                    .col(text_null(Devices::ModelId))
                    .col(text_null(Devices::AreaId))
                    .col(json(Devices::Labels))
                    .col(text_null(Devices::Integration))
                    .col(json(Devices::Identifiers))
                    .col(json_null(Devices::ConfigEntries))
                    .col(text_null(Devices::PrimaryConfigEntry))
                    .col(text_null(Devices::ConfigEntryId))
                    .col(text_null(Devices::ConfigSubentryId))
                    .col(text_null(Devices::DisabledBy))
                    .col(text_null(Devices::EntryType))
                    .col(text_null(Devices::ViaDeviceId))
                    .col(text_null(Devices::ParentDeviceId))
                    .col(text_null(Devices::SwVersion))
                    .col(text_null(Devices::HwVersion))
                    .col(text_null(Devices::SerialNumber))
                    .col(text_null(Devices::ConfigurationUrl))
                    .col(double_null(Devices::CreatedAt))
                    .col(double_null(Devices::ModifiedAt))
                    .to_owned(),
            )
            .await?;
        rebuild(manager, "devices", "devices_new", DEVICE_COLUMNS).await?;
        for (name, column) in [
            ("idx_devices_area_id", Devices::AreaId),
            ("idx_devices_manufacturer", Devices::Manufacturer),
            ("idx_devices_integration", Devices::Integration),
            ("idx_devices_parent_device_id", Devices::ParentDeviceId),
        ] {
            index(manager, name, Devices::Table, column, false).await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // SQLite has transactional DDL: a failed rebuild leaves the old tables as they were.
        Some(true)
    }
}

/// Copies `columns` of `table` into `new`, drops `table` (and its indexes) and renames `new` to
/// `table`.
async fn rebuild(
    manager: &SchemaManager<'_>,
    table: &str,
    new: &str,
    columns: &str,
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared(&format!(
        "INSERT INTO {new} ({columns}) SELECT {columns} FROM {table}"
    ))
    .await?;
    db.execute_unprepared(&format!("DROP TABLE {table}"))
        .await?;
    db.execute_unprepared(&format!("ALTER TABLE {new} RENAME TO {table}"))
        .await?;
    Ok(())
}

/// Creates a one-column index (unique when `unique`).
async fn index<T, C>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    column: C,
    unique: bool,
) -> Result<(), DbErr>
where
    T: IntoIden + 'static,
    C: IntoIden + 'static,
{
    let mut stmt = Index::create();
    stmt.name(name).table(table).col(column).if_not_exists();
    if unique {
        stmt.unique();
    }
    manager.create_index(stmt).await
}

#[derive(DeriveIden)]
enum EntitiesNew {
    Table,
}

#[derive(DeriveIden)]
enum DevicesNew {
    Table,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
    Name,
    NameByUser,
    Manufacturer,
    Model,
    ModelId,
    AreaId,
    Labels,
    Integration,
    Identifiers,
    ConfigEntries,
    PrimaryConfigEntry,
    ConfigEntryId,
    ConfigSubentryId,
    DisabledBy,
    EntryType,
    ViaDeviceId,
    ParentDeviceId,
    SwVersion,
    HwVersion,
    SerialNumber,
    ConfigurationUrl,
    CreatedAt,
    ModifiedAt,
}

#[derive(DeriveIden)]
enum Entities {
    Table,
    Id,
    EntityId,
    Domain,
    Platform,
    Name,
    OriginalName,
    DeviceId,
    AreaId,
    Labels,
    EntityCategory,
    DisabledBy,
    HiddenBy,
    ConfigEntryId,
    UniqueId,
    Icon,
    HasEntityName,
    CreatedAt,
    ModifiedAt,
}
