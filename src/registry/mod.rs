//! The registry capability: Home Assistant's areas, floors, labels, devices and entities, kept
//! in the SQLite mirror (the metadata database `homeiq.db`), applied by the registry task
//! ([`run_registry_task`], fed by the ingest pipeline), indexed in memory ([`catalog`]) and served
//! by its routes ([`api`]).
//!
//! [`RegistryStore`] keeps a copy of Home Assistant's area, floor, label, device and entity
//! registries, plus `state_meta`, HomeIQ's own per-entity facts taken from state attributes
//! (`device_class`, unit, friendly name, last seen), which the entity registry does not carry and
//! which also covers state-only entities that have no registry row.
//!
//! # Home Assistant is the authority
//!
//! The mirror tables copy HA's rows verbatim; HomeIQ never edits them on its own. A full sync
//! ([`RegistryStore::full_sync`]) makes a table exactly equal to a `config/*_registry/list` reply,
//! and registry events are applied row by row ([`RegistryStore::upsert`],
//! [`RegistryStore::upsert_entity`], [`RegistryStore::remove`]).
//!
//! # No foreign keys between mirror tables
//!
//! An entity may name a device, a device an area, an area a floor or labels, that the mirror has not
//! seen yet: registry events arrive in any order, and the five lists are fetched one after another
//! while HA keeps changing. A foreign key would reject such a row (or cascade-delete children when
//! a parent is briefly gone), so the mirror would drift from the authority. References are therefore
//! plain columns, resolved at read time (an entity's area falls back to its device's area in
//! [`EntityView::effective_area_id`]); an unresolved reference simply yields nothing. The
//! connection still runs with `foreign_keys=ON`, so HomeIQ's own later tables (webhooks,
//! suggestions, run records) can rely on real constraints.
//!
//! # Connection
//!
//! Every pooled connection gets WAL journaling, `synchronous=NORMAL`, `foreign_keys=ON`, a 30 s
//! busy timeout, a 2 MiB page cache and in-memory temp storage. Writes that touch several rows run
//! in `BEGIN IMMEDIATE` transactions, so concurrent writers queue on the busy timeout instead of
//! failing on a lock upgrade. Schema changes live in [`migration`]; later features append their own
//! migrations to the same [`migration::Migrator`].

pub(crate) mod api;
pub(crate) mod catalog;
mod entities;
mod error;
pub(crate) mod migration;
mod query;
pub mod record;
mod search;
mod sync;
mod task;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use sea_orm_migration::MigratorTrait;

pub(crate) use catalog::{Catalog, CatalogHandle};
pub use error::RegistryError;
pub use query::EntityView;
#[cfg(test)]
pub(crate) use query::RegistryCounts;
pub use record::{Area, Device, EntityEntry, Floor, Label};
pub use sync::RegistryRows;
pub(crate) use sync::StateMeta;
#[cfg(test)]
pub(crate) use sync::SyncReport;
pub(crate) use task::RegistryJob;
pub(crate) use task::{REGISTRY_QUEUE, RegistrySyncState, RegistrySyncStatus, run_registry_task};

use migration::Migrator;

/// Connections in the pool: WAL lets readers run beside the one writer.
const POOL_SIZE: u32 = 4;

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Page cache per connection, in KiB (negative `cache_size` means KiB in SQLite). Small on
/// purpose: the API answers registry queries from the in-memory catalog, so the database is read
/// only when that is rebuilt; a mirror of 5,000 entities is a few MB, and four connections with
/// 64 MiB caches (the Python system's setting) would each grow to hold all of it.
const CACHE_SIZE_KIB: i64 = 2 * 1024;

/// Prepared statements each connection keeps: the mirror's bulk upserts are large statements
/// that differ by row count, and sqlx's default (100 per connection) held several MB of them.
const STATEMENT_CACHE: usize = 16;

/// The metadata database holding the registry mirror; cheap to clone (it wraps a pool).
#[derive(Debug, Clone)]
pub struct RegistryStore {
    db: DatabaseConnection,
}

impl RegistryStore {
    /// Opens (creating it and its directory if missing) the database at `path`, configures every
    /// pooled connection and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, RegistryError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| RegistryError::CreateDir {
                    path: path.to_path_buf(),
                    source,
                })?;
        }

        let file = path.to_path_buf();
        // The URL only selects the SQLite driver; the real file name is set below so that paths
        // with characters special in URLs (`?`, `#`, `%`) need no escaping.
        let mut options = ConnectOptions::new("sqlite:homeiq.db");
        options
            .max_connections(POOL_SIZE)
            .min_connections(1)
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(move |opts| configure(opts.filename(&file)));

        let db = Database::connect(options)
            .await
            .map_err(|source| RegistryError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Migrator::up(&db, None)
            .await
            .map_err(|source| RegistryError::Migrate {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self { db })
    }

    /// Runs `SELECT 1`, for health checks.
    pub(crate) async fn ping(&self) -> Result<(), RegistryError> {
        self.db
            .query_one_raw(Statement::from_string(DbBackend::Sqlite, "SELECT 1"))
            .await?;
        Ok(())
    }

    /// The underlying connection pool, for other stores sharing `homeiq.db`.
    pub(crate) fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Closes the pool (for every clone), checkpointing the WAL; call on shutdown.
    pub async fn close(self) -> Result<(), RegistryError> {
        self.db.close().await?;
        Ok(())
    }
}

/// The pragmas every pooled connection runs when it opens.
fn configure(opts: SqliteConnectOptions) -> SqliteConnectOptions {
    opts.create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("cache_size", (-CACHE_SIZE_KIB).to_string())
        .pragma("temp_store", "MEMORY")
        .pragma(
            "soft_heap_limit",
            crate::store::SQLITE_SOFT_HEAP_LIMIT.to_string(),
        )
        .statement_cache_capacity(STATEMENT_CACHE)
}
