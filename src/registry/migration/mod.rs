//! Schema migrations of the metadata database (`homeiq.db`).
//!
//! One [`Migrator`] owns the whole file: the registry mirror today, webhooks, suggestions and run
//! records later. To grow the schema, add a new `mYYYYMMDD_NNNNNN_<what>.rs` module and append it to
//! [`Migrator::migrations`]; never edit a migration that has shipped, because databases in the field
//! have already recorded it as applied in `seaql_migrations`. Each migration writes its schema
//! explicitly (not derived from the entity structs) so it stays frozen while the entities evolve.

use sea_orm_migration::prelude::*;

mod m20261123_000001_registry_mirror;
mod m20261201_000001_webhooks;
mod m20261202_000001_registry_2026_fields;
mod m20261202_000001_webhook_outbox_cap;
mod m20261207_000001_analysis;
mod m20261207_000002_suggestions;
mod m20261207_000010_import;

/// Applies the metadata database's migrations in order, each once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_registry_mirror::Migration),
            Box::new(m20261201_000001_webhooks::Migration),
            Box::new(m20261202_000001_registry_2026_fields::Migration),
            Box::new(m20261202_000001_webhook_outbox_cap::Migration),
            Box::new(m20261207_000001_analysis::Migration),
            Box::new(m20261207_000002_suggestions::Migration),
            Box::new(m20261207_000010_import::Migration),
        ]
    }
}
