//! Retention in the embedded store: raw points older than a cutoff deleted in small chunks on the
//! writer's own connection, the freed pages returned to the file system, and the one-time
//! conversion of a `history.db` made before incremental auto-vacuum.
//!
//! # Chunked deletes
//!
//! The writer task owns the only write connection, so the deletes run on it as maintenance jobs
//! ([`EmbeddedWriter::with_connection`]) between two write transactions: no second writer waits
//! on SQLite's lock (nor on `busy_timeout`), and a due batch of points always goes before the
//! next chunk. One chunk is one `BEGIN IMMEDIATE … COMMIT` deleting up to `limit` points before
//! the cutoff entity by entity, from where the previous chunk stopped ([`CHUNK_KEYS`]): each
//! entity's old points are one range of the primary key, so a chunk empties whole leaves and
//! the run reads each page once. (The time index's oldest keys first, as before, deleted a row
//! of nearly every entity per chunk: every chunk read and rewrote a leaf of every entity, and
//! one day of 2,000 one-minute sensors took 70 s of CPU.) The chunk size adapts so that a chunk
//! holds the write lock about [`TARGET_HOLD`] (between [`MIN_CHUNK`] and [`MAX_CHUNK`] rows).
//! The longest hold of a run is reported.
//!
//! # Orphaned attribute sets
//!
//! After the points, the attribute sets only deleted points referenced are deleted too, in
//! chunks of [`ORPHAN_CHUNK`] (see [`DELETE_ORPHANS`]): without it a home whose attributes
//! change (a media player's title, a tracker's coordinates) would keep every set it ever had.
//!
//! # Returning the space
//!
//! A file with `auto_vacuum = INCREMENTAL` keeps freed pages on its free list until
//! `PRAGMA incremental_vacuum(N)` moves the last pages into them and truncates the file; it runs
//! after the deletes in steps of [`VACUUM_PAGES`] pages, each a job of its own, and a passive
//! checkpoint then writes the shorter file (in WAL mode the file shrinks at the checkpoint, not
//! at the vacuum's commit). While the vacuum runs, the write connection's automatic checkpoint
//! is off (and restored after the run): it runs in the commit of whichever transaction crosses
//! [`WAL_AUTOCHECKPOINT`](super::WAL_AUTOCHECKPOINT) WAL pages, which during the vacuum was a
//! write of points about every other time (write p99 233 ms against 57 ms idle in the
//! daily-maintenance benchmark). Checkpointing in retention's own jobs instead, every 16 delete
//! chunks and every vacuum step, took the retention benchmark's delete from 1.4 to 40 s on the
//! test machine (every checkpoint's fsyncs), so there is one, at the end. New files are
//! created incremental; an older file (`auto_vacuum = NONE`) needs one full `VACUUM` to change,
//! which rewrites the whole file: it runs once, when the file system holding the file and the one
//! holding SQLite's temporary copy have room for it ([`conversion_room`]), and is retried at the
//! next retention run otherwise.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use serde::Serialize;
use utoipa::ToSchema;

use super::EmbeddedWriter;

/// Write-lock hold one chunk aims at.
pub(crate) const TARGET_HOLD: Duration = Duration::from_millis(4);
/// Fewest rows per chunk.
pub(crate) const MIN_CHUNK: usize = 100;
/// Most rows per chunk.
pub(crate) const MAX_CHUNK: usize = 20_000;
/// Rows of the first chunk of a run.
const FIRST_CHUNK: usize = 1_000;
/// Page cache of the write connection during a deletion run, KiB: the interior pages of the
/// points' tree and the attribute sets stay cached between chunks.
pub(crate) const DELETE_CACHE_KIB: i64 = 32 * 1024;
/// Pages one incremental-vacuum step frees (4 MiB with 4 KiB pages).
pub(crate) const VACUUM_PAGES: u32 = 1_024;

/// The keys of one chunk: up to `?2` points before the cutoff `?1`, entity by entity from entity
/// `?3` on, each entity's oldest first (a range of the primary key per entity).
const CHUNK_KEYS: &str = "SELECT p.entity, p.time_us FROM entities e CROSS JOIN points p ON p.entity = e.id \
    WHERE e.id >= ?3 AND p.time_us < ?1 ORDER BY e.id, p.time_us LIMIT ?2";

/// The delete of one entity's part of a chunk: its points up to the last key taken.
const DELETE_RANGE: &str = "DELETE FROM points WHERE entity = ?1 AND time_us <= ?2";

/// Attribute sets no point references any more, deleted after the points: a set's `last_us` is
/// above the time of every point referencing it, so a set with `last_us` at or before the cutoff
/// was referenced only by points before the cutoff; the `NOT IN` keeps one that a point still
/// before the cutoff references (a late point written since the deletes). Those points are each
/// entity's range of the key below the cutoff, which the deletes just emptied: a seek per entity,
/// once per statement.
const DELETE_ORPHANS: &str = "DELETE FROM attribute_sets WHERE id IN \
    (SELECT a.id FROM attribute_sets a WHERE a.last_us <= ?1 AND a.id NOT IN \
        (SELECT p.attributes FROM entities e CROSS JOIN points p ON p.entity = e.id WHERE p.time_us < ?1) \
     LIMIT ?2)";

/// Attribute sets deleted per transaction./// Attribute sets deleted per transaction.
const ORPHAN_CHUNK: usize = 1_000;

/// Why a retention step on the embedded store failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EmbeddedRetentionError {
    /// SQLite refused a statement.
    #[error("history.db: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The free space for the conversion could not be read.
    #[error("cannot measure the room for converting history.db: {0}")]
    Room(#[from] std::io::Error),
    /// `VACUUM` ran but the file is still not incremental.
    #[error("history.db kept auto_vacuum = {0:?} after VACUUM")]
    NotConverted(AutoVacuum),
    /// The writer was shut down.
    #[error("the embedded writer is shut down")]
    Closed,
}

/// What one deletion run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub(crate) struct DeleteReport {
    /// Points deleted.
    pub deleted: u64,
    /// Transactions (chunks) it took.
    pub chunks: u64,
    /// Longest write-lock hold of one chunk, ms (a chunk whose commit ran a WAL checkpoint holds
    /// it longest).
    pub max_hold_ms: f64,
    /// Median write-lock hold of a chunk, ms.
    pub p50_hold_ms: f64,
    /// 95th percentile of the chunks' write-lock holds, ms.
    pub p95_hold_ms: f64,
    /// Pages returned to the file system by the incremental vacuum.
    pub pages_freed: u64,
}

/// One chunk on the write connection from entity `from` on: deleted rows, how long the lock was
/// held, and the entity the next chunk starts at.
pub(crate) fn delete_chunk(
    conn: &mut Connection,
    before_us: i64,
    limit: usize,
    from: i64,
) -> Result<(usize, Duration, i64), rusqlite::Error> {
    let want = -DELETE_CACHE_KIB;
    let have: i64 = conn.pragma_query_value(None, "cache_size", |r| r.get(0))?;
    if have > want {
        conn.pragma_update(None, "cache_size", want)?;
    }
    let started = Instant::now();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // the last key taken of each entity, in entity order
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    let mut taken = 0usize;
    {
        let mut keys = tx.prepare(CHUNK_KEYS)?;
        let mut rows = keys.query(rusqlite::params![
            before_us,
            i64::try_from(limit).unwrap_or(i64::MAX),
            from
        ])?;
        while let Some(row) = rows.next()? {
            let (entity, time_us): (i64, i64) = (row.get(0)?, row.get(1)?);
            taken += 1;
            match ranges.last_mut() {
                Some((e, last)) if *e == entity => *last = time_us,
                _ => ranges.push((entity, time_us)),
            }
        }
    }
    let mut deleted = 0;
    {
        let mut delete = tx.prepare(DELETE_RANGE)?;
        for &(entity, last) in &ranges {
            deleted += delete.execute(rusqlite::params![entity, last])?;
        }
    }
    tx.commit()?;
    // a chunk that was not full emptied every entity from `from` on: the next one finds nothing
    let next = if taken < limit {
        i64::MAX
    } else {
        ranges.last().map_or(from, |&(e, _)| e)
    };
    Ok((deleted, started.elapsed(), next))
}

/// One chunk of orphaned attribute sets (see [`DELETE_ORPHANS`]); bumps `epoch` when it deleted
/// any, before the next write transaction, so the write path forgets the sets it cached.
pub(crate) fn delete_orphans(
    conn: &mut Connection,
    before_us: i64,
    epoch: &AtomicU64,
) -> Result<usize, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let deleted = tx.execute(
        DELETE_ORPHANS,
        rusqlite::params![before_us, i64::try_from(ORPHAN_CHUNK).unwrap_or(i64::MAX)],
    )?;
    tx.commit()?;
    if deleted > 0 {
        epoch.fetch_add(1, Ordering::AcqRel);
    }
    Ok(deleted)
}

/// The next chunk size after one of `limit` rows held the lock for `held`.
pub(crate) fn next_chunk(limit: usize, held: Duration) -> usize {
    let held_us = held.as_micros().max(1) as f64;
    let target_us = TARGET_HOLD.as_micros() as f64;
    // at most double or halve per step, so one slow chunk (a checkpoint) does not swing it
    let factor = (target_us / held_us).clamp(0.5, 2.0);
    ((limit as f64 * factor) as usize).clamp(MIN_CHUNK, MAX_CHUNK)
}

/// One incremental-vacuum step: pages freed.
pub(crate) fn vacuum_step(conn: &mut Connection) -> Result<u64, rusqlite::Error> {
    let before: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    if before == 0 {
        return Ok(0);
    }
    // the pragma returns no rows; `execute_batch` steps it to the end
    conn.execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))?;
    let after: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    Ok(u64::try_from(before - after).unwrap_or(0))
}

/// Deletes every point earlier than `before_us` (µs since the epoch) in chunks on the writer's
/// connection, then returns the freed pages to the file system when the file is incremental.
pub(crate) async fn delete_before(
    writer: &EmbeddedWriter,
    before_us: i64,
) -> Result<DeleteReport, EmbeddedRetentionError> {
    writer.set_maintenance_cache(DELETE_CACHE_KIB);
    let result = delete_chunks(writer, before_us).await;
    // whatever happened to the vacuum, commits checkpoint again
    let restored = set_autocheckpoint(writer, super::WAL_AUTOCHECKPOINT).await;
    writer.set_maintenance_cache(0);
    // the next write transaction sizes the cache down again
    let report = result?;
    restored?;
    Ok(report)
}

/// Sets the write connection's automatic checkpoint (WAL pages; 0 turns it off).
async fn set_autocheckpoint(
    writer: &EmbeddedWriter,
    pages: i64,
) -> Result<(), EmbeddedRetentionError> {
    writer
        .with_connection(move |c| c.pragma_update(None, "wal_autocheckpoint", pages))
        .await
        .ok_or(EmbeddedRetentionError::Closed)??;
    Ok(())
}

/// A passive checkpoint: the WAL's pages written back to the file, never waiting for a reader.
pub(crate) fn checkpoint(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)")
}

async fn delete_chunks(
    writer: &EmbeddedWriter,
    before_us: i64,
) -> Result<DeleteReport, EmbeddedRetentionError> {
    let mut report = DeleteReport::default();
    let mut limit = FIRST_CHUNK;
    let mut holds_us: Vec<u64> = Vec::new();
    let mut from = i64::MIN;
    loop {
        let (deleted, held, next) = writer
            .with_connection(move |c| delete_chunk(c, before_us, limit, from))
            .await
            .ok_or(EmbeddedRetentionError::Closed)??;
        from = next;
        holds_us.push(u64::try_from(held.as_micros()).unwrap_or(u64::MAX));
        report.chunks += 1;
        report.deleted += deleted as u64;
        report.max_hold_ms = report.max_hold_ms.max(held.as_secs_f64() * 1000.0);
        if from == i64::MAX {
            break;
        }
        limit = next_chunk(limit, held);
    }
    holds_us.sort_unstable();
    let at = |q: f64| {
        let i = ((holds_us.len() as f64 - 1.0) * q).round() as usize;
        holds_us.get(i).map_or(0.0, |us| *us as f64 / 1000.0)
    };
    report.p50_hold_ms = at(0.5);
    report.p95_hold_ms = at(0.95);
    if report.deleted > 0 {
        let mut orphans = 0;
        loop {
            let epoch = writer.attribute_epoch();
            let deleted = writer
                .with_connection(move |c| delete_orphans(c, before_us, &epoch))
                .await
                .ok_or(EmbeddedRetentionError::Closed)??;
            orphans += deleted;
            if deleted < ORPHAN_CHUNK {
                break;
            }
        }
        if orphans > 0 {
            tracing::info!(
                attribute_sets = orphans,
                "retention deleted attribute sets no point references any more"
            );
        }
    }
    if report.deleted > 0
        && writer
            .with_connection(|c| auto_vacuum(c))
            .await
            .ok_or(EmbeddedRetentionError::Closed)??
            == AutoVacuum::Incremental
    {
        // no commit of points checkpoints the vacuum's moved pages (a thousand a step): the
        // last job does (module docs, returning the space)
        set_autocheckpoint(writer, 0).await?;
        loop {
            let freed = writer
                .with_connection(vacuum_step)
                .await
                .ok_or(EmbeddedRetentionError::Closed)??;
            report.pages_freed += freed;
            if freed == 0 {
                break;
            }
        }
        // the file is cut to its new size when the WAL holding the vacuum is checkpointed: now,
        // not at the next automatic checkpoint (a quiet home may not write that much for days)
        writer
            .with_connection(checkpoint)
            .await
            .ok_or(EmbeddedRetentionError::Closed)??;
    }
    Ok(report)
}

/// SQLite's `auto_vacuum` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AutoVacuum {
    /// Freed pages stay in the file (files made before this release).
    None,
    /// The file shrinks at every commit.
    Full,
    /// The file shrinks on `PRAGMA incremental_vacuum`.
    Incremental,
}

/// The connection's `auto_vacuum` mode.
pub(crate) fn auto_vacuum(conn: &Connection) -> Result<AutoVacuum, rusqlite::Error> {
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    Ok(match mode {
        1 => AutoVacuum::Full,
        2 => AutoVacuum::Incremental,
        _ => AutoVacuum::None,
    })
}

/// Where the one-time conversion to incremental auto-vacuum stands.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum Conversion {
    /// The file already returns freed space (new, or converted before).
    Incremental,
    /// Converted by this run.
    Converted {
        /// How long the `VACUUM` took, ms.
        took_ms: u64,
    },
    /// Not converted: not enough free space; retried at the next retention run.
    NoRoom {
        /// Bytes the conversion needs on the fullest file system concerned.
        needed_bytes: u64,
        /// Bytes free there.
        available_bytes: u64,
        /// That file system's directory.
        dir: String,
    },
}

/// Free bytes for an unprivileged writer on the file system holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// The directory SQLite puts temporary files in on Unix (its own search order).
fn sqlite_temp_dir() -> PathBuf {
    let from_env = ["SQLITE_TMPDIR", "TMPDIR"]
        .into_iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from);
    let fixed = ["/var/tmp", "/usr/tmp", "/tmp"]
        .into_iter()
        .map(PathBuf::from);
    from_env
        .chain(fixed)
        .find(|d| d.is_dir())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The room a `VACUUM` of `db` needs, per file system: the temporary copy (SQLite's temp dir) and
/// the WAL, which receives every page of the new file before the checkpoint (the data dir); a
/// quarter on top for the indexes' slack. Returns the first file system short of room.
pub(crate) fn conversion_room(
    db: &Path,
    free: &dyn Fn(&Path) -> std::io::Result<u64>,
) -> std::io::Result<Option<(u64, u64, PathBuf)>> {
    use std::os::unix::fs::MetadataExt;
    let size = std::fs::metadata(db)?.len();
    let need = size.saturating_add(size / 4);
    let data_dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let temp_dir = sqlite_temp_dir();
    let same = std::fs::metadata(&data_dir)?.dev() == std::fs::metadata(&temp_dir)?.dev();
    let demands = if same {
        vec![(data_dir, need.saturating_mul(2))]
    } else {
        vec![(data_dir, need), (temp_dir, need)]
    };
    for (dir, needed) in demands {
        let available = free(&dir)?;
        if available < needed {
            return Ok(Some((needed, available, dir)));
        }
    }
    Ok(None)
}

/// Converts the file behind `conn` (at `path`) to incremental auto-vacuum once: immediately for
/// a file without tables, with a full `VACUUM` when `free` reports room for it, else not.
pub(crate) fn convert_to_incremental(
    conn: &mut Connection,
    path: &Path,
    free: &dyn Fn(&Path) -> std::io::Result<u64>,
) -> Result<Conversion, EmbeddedRetentionError> {
    if auto_vacuum(conn)? == AutoVacuum::Incremental {
        return Ok(Conversion::Incremental);
    }
    if let Some((needed_bytes, available_bytes, dir)) = conversion_room(path, free)? {
        return Ok(Conversion::NoRoom {
            needed_bytes,
            available_bytes,
            dir: dir.display().to_string(),
        });
    }
    let started = Instant::now();
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    // the copy goes to a temporary file, not memory (the writer keeps temp_store = MEMORY)
    conn.pragma_update(None, "temp_store", "FILE")?;
    let vacuumed = conn.execute_batch("VACUUM");
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    vacuumed?;
    // the WAL now holds the whole file: write it back and truncate it
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    match auto_vacuum(conn)? {
        AutoVacuum::Incremental => {}
        other => return Err(EmbeddedRetentionError::NotConverted(other)),
    }
    Ok(Conversion::Converted {
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// [`convert_to_incremental`] on the writer's connection.
pub(crate) async fn convert(
    writer: &EmbeddedWriter,
    path: PathBuf,
) -> Result<Conversion, EmbeddedRetentionError> {
    writer
        .with_connection(move |c| convert_to_incremental(c, &path, &free_bytes))
        .await
        .ok_or(EmbeddedRetentionError::Closed)?
}
