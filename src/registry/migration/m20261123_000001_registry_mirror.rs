//! The registry mirror: `floors`, `labels`, `areas`, `devices`, `entities` and `state_meta`.
//!
//! No foreign keys between these tables on purpose (see the parent module's documentation): Home
//! Assistant is the authority and its rows may name parents the mirror has not received yet.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates every mirror table and its indexes.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Floors::Table)
                    .if_not_exists()
                    .col(text(Floors::FloorId).primary_key())
                    .col(text(Floors::Name))
                    .col(big_integer_null(Floors::Level))
                    .col(text_null(Floors::Icon))
                    .col(json(Floors::Aliases))
                    .col(double_null(Floors::CreatedAt))
                    .col(double_null(Floors::ModifiedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Labels::Table)
                    .if_not_exists()
                    .col(text(Labels::LabelId).primary_key())
                    .col(text(Labels::Name))
                    .col(text_null(Labels::Color))
                    .col(text_null(Labels::Description))
                    .col(text_null(Labels::Icon))
                    .col(double_null(Labels::CreatedAt))
                    .col(double_null(Labels::ModifiedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Areas::Table)
                    .if_not_exists()
                    .col(text(Areas::AreaId).primary_key())
                    .col(text(Areas::Name))
                    .col(text_null(Areas::FloorId))
                    .col(text_null(Areas::Icon))
                    .col(json(Areas::Aliases))
                    .col(json(Areas::Labels))
                    .col(double_null(Areas::CreatedAt))
                    .col(double_null(Areas::ModifiedAt))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_areas_floor_id",
            Areas::Table,
            Areas::FloorId,
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Devices::Table)
                    .if_not_exists()
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
                    .col(json(Devices::ConfigEntries))
                    .col(text_null(Devices::PrimaryConfigEntry))
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
        index(
            manager,
            "idx_devices_area_id",
            Devices::Table,
            Devices::AreaId,
            false,
        )
        .await?;
        index(
            manager,
            "idx_devices_manufacturer",
            Devices::Table,
            Devices::Manufacturer,
            false,
        )
        .await?;
        index(
            manager,
            "idx_devices_integration",
            Devices::Table,
            Devices::Integration,
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Entities::Table)
                    .if_not_exists()
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
                    .col(boolean(Entities::HasEntityName).default(false))
                    .col(double_null(Entities::CreatedAt))
                    .col(double_null(Entities::ModifiedAt))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ux_entities_entity_id",
            Entities::Table,
            Entities::EntityId,
            true,
        )
        .await?;
        index(
            manager,
            "idx_entities_domain",
            Entities::Table,
            Entities::Domain,
            false,
        )
        .await?;
        index(
            manager,
            "idx_entities_platform",
            Entities::Table,
            Entities::Platform,
            false,
        )
        .await?;
        index(
            manager,
            "idx_entities_device_id",
            Entities::Table,
            Entities::DeviceId,
            false,
        )
        .await?;
        index(
            manager,
            "idx_entities_area_id",
            Entities::Table,
            Entities::AreaId,
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(StateMeta::Table)
                    .if_not_exists()
                    .col(text(StateMeta::EntityId).primary_key())
                    .col(text_null(StateMeta::DeviceClass))
                    .col(text_null(StateMeta::Unit))
                    .col(text_null(StateMeta::FriendlyName))
                    .col(timestamp_with_time_zone(StateMeta::LastSeen))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_state_meta_device_class",
            StateMeta::Table,
            StateMeta::DeviceClass,
            false,
        )
        .await?;

        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            StateMeta::Table.into_iden(),
            Entities::Table.into_iden(),
            Devices::Table.into_iden(),
            Areas::Table.into_iden(),
            Labels::Table.into_iden(),
            Floors::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // SQLite has transactional DDL: a failed migration leaves no half-built schema behind.
        Some(true)
    }
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
enum Floors {
    Table,
    FloorId,
    Name,
    Level,
    Icon,
    Aliases,
    CreatedAt,
    ModifiedAt,
}

#[derive(DeriveIden)]
enum Labels {
    Table,
    LabelId,
    Name,
    Color,
    Description,
    Icon,
    CreatedAt,
    ModifiedAt,
}

#[derive(DeriveIden)]
enum Areas {
    Table,
    AreaId,
    Name,
    FloorId,
    Icon,
    Aliases,
    Labels,
    CreatedAt,
    ModifiedAt,
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

#[derive(DeriveIden)]
enum StateMeta {
    Table,
    EntityId,
    DeviceClass,
    Unit,
    FriendlyName,
    LastSeen,
}
