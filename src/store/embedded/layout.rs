//! The one-time conversion of a `history.db` written in the first layout (one row per point
//! repeating its entity id, domain, attributes JSON and origin as text) to the compact one
//! (entity ids and attribute sets interned, the origin an integer; see [`crate::store::embedded`]).
//!
//! It runs when the store is opened, before the writer and the readers start:
//!
//! 1. one transaction drops the old time index (it is not needed to copy, and dropping it frees
//!    about a third of the file at once), renames `points` to `points_v1` and creates the new
//!    tables;
//! 2. chunks of [`CHUNK`] rows, each one transaction, move the first rows of `points_v1` in key
//!    order into `points` (deleting them from `points_v1`): the pages the old rows free are reused
//!    by the new ones, so the file never grows beyond its old size (the WAL is bounded by the
//!    checkpoints), and the conversion needs only [`ROOM`] free on the disk;
//! 3. `points_v1` is dropped and, when the file returns freed space (`auto_vacuum =
//!    INCREMENTAL`), the freed pages are returned to the file system.
//!
//! A file in the compact layout written before the index by time was dropped loses it once when
//! opened ([`drop_time_index`]): one `DROP INDEX`, then the incremental vacuum returns its pages.
//!
//! A crash leaves the file in one of these steps, every point in exactly one of the two tables;
//! the next open resumes at the next chunk. Progress is logged every [`LOG_EVERY`].

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};

use super::intern::{Interned, origin_field_code, stored_value};
use super::writer::INSERT;
use super::{SCHEMA, retention};

/// Rows moved per transaction.
const CHUNK: usize = 20_000;
/// Free space the conversion needs on the data directory's file system: the WAL of a chunk and
/// of the checkpoints' interval (8,192 pages), with margin.
pub(crate) const ROOM: u64 = 128 * 1024 * 1024;
/// How often the conversion logs its progress.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Why the store could not be opened for writing.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite refused a statement.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The free space for the conversion could not be read.
    #[error("cannot measure the room for converting the file to the compact layout: {0}")]
    Room(#[from] std::io::Error),
    /// Not enough free space to convert the file.
    #[error(
        "not enough free space to convert the file to the compact layout: {needed_bytes} bytes needed, {available_bytes} free"
    )]
    NoRoom {
        /// Bytes needed.
        needed_bytes: u64,
        /// Bytes free.
        available_bytes: u64,
    },
}

fn table_exists(conn: &Connection, name: &str) -> Result<bool, rusqlite::Error> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

fn columns(conn: &Connection, table: &str) -> Result<Vec<String>, rusqlite::Error> {
    conn.prepare("SELECT name FROM pragma_table_info(?1)")?
        .query_map([table], |r| r.get(0))?
        .collect()
}

/// Creates the schema on a new file, or converts (or goes on converting) a file in the first
/// layout; `free` measures the free bytes of a directory's file system.
pub(crate) fn convert(
    conn: &mut Connection,
    path: &Path,
    free: &dyn Fn(&Path) -> std::io::Result<u64>,
) -> Result<(), OpenError> {
    let old =
        table_exists(conn, "points")? && columns(conn, "points")?.iter().any(|c| c == "entity_id");
    if old || table_exists(conn, "points_v1")? {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let available_bytes = free(dir)?;
        if available_bytes < ROOM {
            return Err(OpenError::NoRoom {
                needed_bytes: ROOM,
                available_bytes,
            });
        }
    }
    convert_steps(conn, path, None)?;
    Ok(())
}

/// [`convert`] without the room check, stopping after `max_chunks` chunks when given (tests: a
/// conversion cut short).
pub(crate) fn convert_steps(
    conn: &mut Connection,
    path: &Path,
    max_chunks: Option<usize>,
) -> Result<(), rusqlite::Error> {
    let old =
        table_exists(conn, "points")? && columns(conn, "points")?.iter().any(|c| c == "entity_id");
    if old {
        let present = columns(conn, "points")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // files from before the origin existed
        for column in ["origin", "origin_id"] {
            if !present.iter().any(|p| p == column) {
                tx.execute_batch(&format!("ALTER TABLE points ADD COLUMN {column} TEXT"))?;
            }
        }
        tx.execute_batch(
            "DROP INDEX IF EXISTS points_by_time; ALTER TABLE points RENAME TO points_v1;",
        )?;
        for statement in SCHEMA {
            tx.execute_batch(statement)?;
        }
        tx.commit()?;
        tracing::info!(
            path = %path.display(),
            "converting history.db to the compact layout (once; the store opens when it is done)"
        );
    } else {
        for statement in SCHEMA {
            conn.execute_batch(statement)?;
        }
    }
    drop_time_index(conn, path)?;
    if table_exists(conn, "points_v1")? {
        move_rows(conn, path, max_chunks)?;
    }
    Ok(())
}

/// Drops the compact layout's former index `points_by_time (time_us, entity)` when the file has
/// it (every read is entity-major now, see [`crate::store::embedded`]) and returns its pages to
/// the file system when the file is incremental (else writes reuse them). Idempotent: a crash
/// before the vacuum leaves the pages on the free list, where writes reuse them.
fn drop_time_index(conn: &mut Connection, path: &Path) -> Result<(), rusqlite::Error> {
    let present: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 'points_by_time'",
        [],
        |r| r.get(0),
    )?;
    if present == 0 {
        return Ok(());
    }
    let started = Instant::now();
    let bytes_before = std::fs::metadata(path).map(|m| m.len()).ok();
    conn.execute_batch("DROP INDEX points_by_time")?;
    let mut pages_freed = 0;
    if retention::auto_vacuum(conn)? == retention::AutoVacuum::Incremental {
        loop {
            let freed = retention::vacuum_step(conn)?;
            if freed == 0 {
                break;
            }
            pages_freed += freed;
        }
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    tracing::info!(
        path = %path.display(),
        took_s = started.elapsed().as_secs_f64(),
        pages_freed,
        bytes_before,
        bytes_after = std::fs::metadata(path).map(|m| m.len()).ok(),
        "history.db: dropped the index by time (once; reads are entity by entity)"
    );
    Ok(())
}

/// Moves every row of `points_v1` into `points`, chunk by chunk, then drops `points_v1` and
/// returns the freed pages.
fn move_rows(
    conn: &mut Connection,
    path: &Path,
    max_chunks: Option<usize>,
) -> Result<(), rusqlite::Error> {
    let started = Instant::now();
    let total: i64 = conn.query_row("SELECT count(*) FROM points_v1", [], |r| r.get(0))?;
    let mut interned = Interned::default();
    let mut moved: i64 = 0;
    let mut logged = Instant::now();
    let mut chunks = 0;
    loop {
        let n = move_chunk(conn, &mut interned)?;
        moved += n as i64;
        chunks += 1;
        if n < CHUNK {
            break;
        }
        if max_chunks.is_some_and(|m| chunks >= m) {
            return Ok(());
        }
        if logged.elapsed() >= LOG_EVERY {
            logged = Instant::now();
            let rate = moved as f64 / started.elapsed().as_secs_f64().max(1e-3);
            tracing::info!(
                moved,
                total,
                percent = (moved as f64 * 100.0 / total.max(1) as f64).round(),
                points_per_s = rate.round(),
                "converting history.db to the compact layout"
            );
        }
    }
    conn.execute_batch("DROP TABLE points_v1")?;
    if retention::auto_vacuum(conn)? == retention::AutoVacuum::Incremental {
        while retention::vacuum_step(conn)? > 0 {}
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    tracing::info!(
        path = %path.display(),
        points = moved,
        took_s = started.elapsed().as_secs_f64(),
        bytes_after = std::fs::metadata(path).map(|m| m.len()).ok(),
        "history.db converted to the compact layout"
    );
    Ok(())
}

/// One transaction: the first [`CHUNK`] rows of `points_v1` in key order written to `points`
/// and deleted from `points_v1`. Returns the rows moved.
fn move_chunk(conn: &mut Connection, interned: &mut Interned) -> Result<usize, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let result = (|| {
        type V1Row = (
            String,
            i64,
            String,
            Option<String>,
            Option<f64>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        // read first: the chunk is deleted from the table the query reads
        let chunk: Vec<V1Row> = tx
            .prepare(
                "SELECT entity_id, time_us, domain, state, value, attributes, origin, origin_id
                 FROM points_v1 ORDER BY entity_id, time_us LIMIT ?1",
            )?
            .query_map([i64::try_from(CHUNK).unwrap_or(i64::MAX)], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        let mut insert = tx.prepare(INSERT)?;
        let mut delete =
            tx.prepare("DELETE FROM points_v1 WHERE entity_id = ?1 AND time_us = ?2")?;
        for (entity_id, time_us, domain, state, value, attributes, origin, origin_id) in &chunk {
            let entity = interned.entity(&tx, entity_id, domain)?;
            let attributes =
                interned.attributes(&tx, attributes.as_deref().unwrap_or("{}"), *time_us)?;
            insert.execute(rusqlite::params![
                entity,
                time_us,
                state,
                stored_value(state.as_deref(), *value),
                attributes,
                origin_field_code(origin.as_deref()),
                origin_id,
            ])?;
            delete.execute(rusqlite::params![entity_id, time_us])?;
        }
        let n = chunk.len();
        Ok::<_, rusqlite::Error>(n)
    })();
    match result {
        Ok(n) => {
            tx.commit()?;
            Ok(n)
        }
        Err(e) => {
            interned.clear();
            Err(e)
        }
    }
}

/// The first layout's schema, for tests writing old files.
#[cfg(test)]
pub(crate) const V1_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS points (
        entity_id TEXT NOT NULL,
        time_us INTEGER NOT NULL,
        domain TEXT NOT NULL,
        state TEXT,
        value REAL,
        attributes TEXT NOT NULL DEFAULT '{}',
        origin TEXT,
        origin_id TEXT,
        PRIMARY KEY (entity_id, time_us)
    ) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS points_by_time ON points (time_us, domain)",
];
