//! Errors of the registry store.

use std::path::PathBuf;

use sea_orm::DbErr;

/// Why a registry store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The directory that should hold the database could not be created.
    #[error("cannot create the directory of {path}: {source}")]
    CreateDir {
        /// The database file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The database file could not be opened or created.
    #[error("cannot open the metadata database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The underlying database error.
        source: DbErr,
    },
    /// The schema migrations failed (the failed migration was rolled back).
    #[error("cannot migrate the metadata database {path}: {source}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The underlying database error.
        source: DbErr,
    },
    /// A query or statement failed.
    #[error("metadata database error: {0}")]
    Db(#[from] DbErr),
}

impl RegistryError {
    /// Whether SQLite found the file damaged, or could not use it for another reason.
    pub(crate) fn failure(&self) -> crate::store::fault::SqliteFailure {
        use crate::store::fault::SqliteFailure;
        match self {
            RegistryError::CreateDir { .. } => SqliteFailure::Unusable,
            RegistryError::Open { source, .. } | RegistryError::Migrate { source, .. } => {
                SqliteFailure::of_db_err(source)
            }
            RegistryError::Db(e) => SqliteFailure::of_db_err(e),
        }
    }
}
