//! A SQLite file of the data folder that HomeIQ cannot open at start-up, and what the user can do
//! about it.
//!
//! HomeIQ then does not start (see [`crate::api::cannot_start`]): it reports the [`StorageFault`]
//! in `/health` instead of exiting, and never moves or deletes the file itself — the user's data
//! may still be recoverable, or a backup may exist.

use std::path::{Path, PathBuf};

use sea_orm::{DbErr, RuntimeErr, sqlx};
use serde::Serialize;

/// The SQLite files HomeIQ keeps in its data folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFile {
    /// `homeiq.db`: the registry mirror and the webhooks.
    Metadata,
    /// `history.db`: the history of `storage = embedded`.
    History,
}

/// Why SQLite could not use a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SqliteFailure {
    /// SQLite reports the file is not a database or is damaged (`SQLITE_NOTADB`,
    /// `SQLITE_CORRUPT`): only moving it aside or restoring a backup helps.
    Damaged,
    /// Anything else: permissions, a full or read-only disk, an I/O error.
    Unusable,
}

impl SqliteFailure {
    /// From a SQLite result code (primary or extended).
    pub(crate) fn of_code(code: i32) -> Self {
        match code & 0xff {
            rusqlite::ffi::SQLITE_CORRUPT | rusqlite::ffi::SQLITE_NOTADB => SqliteFailure::Damaged,
            _ => SqliteFailure::Unusable,
        }
    }

    /// From an error of `rusqlite` (the embedded store's write connection).
    pub(crate) fn of_rusqlite(e: &rusqlite::Error) -> Self {
        e.sqlite_error()
            .map_or(SqliteFailure::Unusable, |e| Self::of_code(e.extended_code))
    }

    /// From an error of `sqlx` (the registry's pool, the embedded store's readers).
    pub(crate) fn of_sqlx(e: &sqlx::Error) -> Self {
        e.as_database_error()
            .and_then(|d| d.code())
            .and_then(|code| code.parse::<i32>().ok())
            .map_or(SqliteFailure::Unusable, Self::of_code)
    }

    /// From an error of `sea-orm` (over `sqlx`).
    pub(crate) fn of_db_err(e: &DbErr) -> Self {
        match e {
            DbErr::Conn(RuntimeErr::SqlxError(e))
            | DbErr::Exec(RuntimeErr::SqlxError(e))
            | DbErr::Query(RuntimeErr::SqlxError(e)) => Self::of_sqlx(e),
            _ => SqliteFailure::Unusable,
        }
    }
}

/// A data file HomeIQ cannot open, as `/health` reports it in the `storage_error` state.
#[derive(Debug, Clone, Serialize)]
pub struct StorageFault {
    /// Which database.
    pub database: DataFile,
    /// The file.
    pub path: PathBuf,
    /// Damaged, or unusable for another reason.
    pub failure: SqliteFailure,
    /// The error, with SQLite's own message.
    pub error: String,
    /// What to do, in plain words.
    pub action: String,
}

impl StorageFault {
    /// The fault of `database` at `path`.
    pub fn new(database: DataFile, path: &Path, failure: SqliteFailure, error: String) -> Self {
        let action = action(database, path, failure);
        StorageFault {
            database,
            path: path.to_path_buf(),
            failure,
            error,
            action,
        }
    }

    /// One line for 503 answers: what is wrong and what to do.
    pub fn summary(&self) -> String {
        format!("HomeIQ is not running: {}. {}", self.error, self.action)
    }
}

fn action(database: DataFile, path: &Path, failure: SqliteFailure) -> String {
    let path = path.display();
    let without = match database {
        DataFile::Metadata => {
            "HomeIQ creates a new, empty one and copies the registry from Home Assistant again; \
             webhooks must be created again unless you restore them"
        }
        DataFile::History => {
            "HomeIQ creates a new, empty one; the history in the old file is not shown unless you \
             restore it"
        }
    };
    match failure {
        SqliteFailure::Damaged => format!(
            "The file is damaged or is not a SQLite database. Move {path} aside (keep it, it may be \
             recoverable) or restore it from a backup, then restart HomeIQ. Without the file \
             {without}. HomeIQ never deletes or changes the file itself."
        ),
        SqliteFailure::Unusable => format!(
            "Check that the data folder is writable and has free space and that no other program \
             holds {path}, then restart HomeIQ. If the file itself is damaged, move it aside or \
             restore it from a backup: without the file {without}."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_only_for_corrupt_and_not_a_database() {
        use rusqlite::ffi;
        assert_eq!(
            SqliteFailure::of_code(ffi::SQLITE_NOTADB),
            SqliteFailure::Damaged
        );
        // an extended code of SQLITE_CORRUPT
        assert_eq!(
            SqliteFailure::of_code(ffi::SQLITE_CORRUPT_INDEX),
            SqliteFailure::Damaged
        );
        for code in [
            ffi::SQLITE_CANTOPEN,
            ffi::SQLITE_READONLY,
            ffi::SQLITE_FULL,
            ffi::SQLITE_IOERR_WRITE,
        ] {
            assert_eq!(SqliteFailure::of_code(code), SqliteFailure::Unusable);
        }
        let garbage = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(garbage.path(), vec![0x5a_u8; 8192]).expect("write");
        let e = rusqlite::Connection::open(garbage.path())
            .and_then(|c| c.pragma_update(None, "journal_mode", "WAL"))
            .expect_err("not a database");
        assert_eq!(SqliteFailure::of_rusqlite(&e), SqliteFailure::Damaged);
    }

    #[test]
    fn the_action_names_the_file_and_never_suggests_deleting() {
        let f = StorageFault::new(
            DataFile::History,
            Path::new("/data/history.db"),
            SqliteFailure::Damaged,
            "file is not a database".into(),
        );
        assert!(
            f.action.contains("Move /data/history.db aside"),
            "{}",
            f.action
        );
        assert!(!f.action.contains("delete /data"), "{}", f.action);
        assert!(f.summary().contains("file is not a database"));
    }
}
