//! Embedded history (`storage = embedded`): the points of the `homeiq` schema kept in SQLite, in
//! `<data_dir>/history.db`, with no InfluxDB anywhere.
//!
//! # What is stored
//!
//! The embedded store takes exactly the [`Point`]s the `homeiq` schema produces
//! ([`PointMapper`](crate::store::schema::PointMapper)), so the pipeline, the connect-time
//! snapshot, the heartbeat and the gap backfill work unchanged. One row per point, its entity and
//! attributes interned:
//!
//! ```sql
//! entities(id INTEGER PRIMARY KEY, entity_id TEXT UNIQUE, domain TEXT)
//! attribute_sets(id INTEGER PRIMARY KEY, hash INTEGER, last_us INTEGER, json TEXT)
//! index attribute_sets_by_hash(hash)
//! points(entity INTEGER, time_us INTEGER, state TEXT, value REAL, attributes INTEGER,
//!        origin INTEGER, origin_id TEXT,
//!        PRIMARY KEY (entity, time_us)) WITHOUT ROWID
//! ```
//!
//! * `entities` holds each entity id once with its domain (the points' measurement, which in the
//!   `homeiq` schema is the entity's domain; a point of another domain moves the entity there);
//!   `points.entity` is its row id;
//! * `time_us` is the point's time (the state's `last_updated` in µs), `state` its field of that
//!   name; `value` its field of that name, or an empty blob (no bytes in the row) when parsing
//!   `state` gives exactly the value (`"20.5"`), which readers then do;
//! * `attribute_sets` holds each distinct attributes object once, as JSON holding the attributes
//!   exactly as the InfluxDB history reads them back (`mode_str` → `mode`, `rgb_json` → parsed
//!   JSON, the `unit` and `device_class` tags as `unit_of_measurement` and `device_class`), so
//!   both backends answer the API identically; `hash` (FNV-1a of the JSON) finds a set when it is
//!   written, `last_us` is above the time of every point referencing it, which lets retention
//!   delete the sets no point references any more ([`retention`]);
//! * `origin` is the point's `origin` field as a code of [`OriginKind`](crate::store::origin::OriginKind)
//!   (1 user … 7 heartbeat, [`intern::origin_code`]; a name HomeIQ does not know was read back as
//!   `unknown` and is stored as that), `origin_id` the field of that name (only live changes made
//!   by a user, an automation or a script have one, so it stays text).
//!
//! A point of a 1-minute sensor takes about 28.5 bytes in the file (README, benchmarks; 46.7
//! with the former time index), against 217.5 in the first layout, which repeated the entity id,
//! domain, attributes JSON and origin as text in every row (and the entity id and domain again in
//! the time index). The writer keeps the
//! ids of the entities and attribute sets it has seen in a bounded cache ([`intern::Interned`]),
//! so writing a point whose entity and attributes it knows reads neither table. A file in the
//! first layout is converted once when opened ([`layout`]).
//!
//! Rows are written as upserts on the primary key: as in InfluxDB, writing a point again
//! (snapshot after a reconnect, backfill, a re-sent burst) overwrites it instead of adding a
//! duplicate, and, as InfluxDB keeps fields a rewrite does not name, a rewrite without an origin
//! (the snapshot, the backfill) keeps the origin the live change stored.
//!
//! # Why SQLite, and why this layout
//!
//! SQLite is already in the binary (the registry mirror uses it through `sqlx`), is one file that
//! survives power loss with WAL, and needs no service on small devices. The history lives in a
//! file of its own (not `homeiq.db`) so that history writes, which are many, never contend with
//! the registry's and webhooks' write lock, and the file can be deleted to drop all history.
//!
//! * `WITHOUT ROWID` with the key `(entity, time_us)`: an entity's records are stored together
//!   in time order, so a history page, the neighbour lookups (previous/next record) and the
//!   aggregates of one entity are one range scan of the primary key, with no sort. Reads of a
//!   time range across entities (the analysis' changes, the rollups' raw points) are that range
//!   of the key for each entity in turn, never the time index plus a lookup per row.
//! * No index by time: every read across entities (events per bucket and domain, the oldest
//!   point, the attribute sets retention may delete) is a range of the key per entity, 2,000
//!   seeks for 2,000 entities, and retention deletes each entity's old points as one range of the
//!   key. An index `points_by_time(time_us, entity)` cost 16 of a point's 47 bytes, a second
//!   B-tree updated by every write, and an entry removed by every deleted point scattered over
//!   the day's part of it; a file that has it drops it once when opened ([`layout`]).
//! * WAL with `synchronous = NORMAL`: a commit is an append to the WAL without an fsync (the WAL
//!   is synced at checkpoints): a power cut can lose the last commits, never corrupt the file.
//!
//! # Writing
//!
//! [`EmbeddedWriter::push`] never blocks or awaits: it appends to a bounded in-memory queue
//! (`capacity` points, 100,000 by default); when the queue is full the oldest point is dropped and
//! counted (`dropped_overflow`), the policy of the InfluxDB writer's memory queue. The pipeline
//! waits for room first ([`EmbeddedWriter::wait_for_room`]), so while the writer is healthy a
//! burst beyond what SQLite takes slows ingestion down instead of dropping points. One writer task
//! owns the only write connection: it takes up to `batch_size` points (5,000) as soon as that many
//! are queued or the oldest has waited `linger` (250 ms), and writes them in one transaction of
//! single-row executions of one prepared statement, on Tokio's blocking pool. The write
//! connection is `rusqlite`'s, not `sqlx`'s (which the readers and the registry use): `sqlx` runs
//! every statement through a worker thread and channels, which capped ingest near 20,000 points/s
//! on the benchmark machine; `rusqlite` calls SQLite directly (both link the same
//! `libsqlite3-sys`). A failed transaction is retried with back-off, the batch
//! staying in memory (and counting against the capacity). [`EmbeddedWriter::shutdown`] writes
//! what is queued until its deadline.
//!
//! Memory is therefore bounded by `capacity` points plus the SQLite page caches (2 MiB for the
//! writer, 8 MiB while it writes transactions of over 10,000 points, 32 MiB during a retention
//! run, 2 MiB per reader).
//!
//! # Retention
//!
//! Raw points older than the retention's cutoff are deleted in small chunks on the writer's own
//! connection, between two write transactions, and the freed pages are returned to the file
//! system (`auto_vacuum = INCREMENTAL`); see [`retention`].
//!
//! # Reading
//!
//! Reads ([`EmbeddedHistory`](EmbeddedHistory)) run on a separate pool of
//! two read-only connections: with WAL, readers see the last committed transaction and never wait
//! for the writer, nor the writer for them.

mod history;
mod intern;
mod layout;
pub(crate) mod retention;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sea_orm::sqlx;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use serde_json::{Map, Value};

pub use history::EmbeddedHistory;
#[cfg(test)]
pub(crate) use intern::origin_of_code;
pub use layout::OpenError;
pub(crate) use writer::EmbeddedWriter;

use crate::store::point::{FieldValue, Point};
use crate::store::schema::{ORIGIN_FIELDS, homeiq_attribute};

/// File name of the history database inside the data directory.
pub(crate) const HISTORY_FILE_NAME: &str = "history.db";

/// Read connections: history pages, aggregates and stats run beside the writer.
const READERS: u32 = 2;

/// WAL pages after which a commit of the write connection checkpoints (retention turns it off
/// while it runs and checkpoints in its own jobs, [`retention`]).
pub(crate) const WAL_AUTOCHECKPOINT: i64 = 8_192;

/// How long a statement waits for a lock (checkpoints, a second process).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema; idempotent. Entity ids and attribute sets are interned ([`intern`]); a point
/// costs its two integer keys, its state and value, two small integers and its `origin_id`.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS entities (
        id INTEGER PRIMARY KEY,
        entity_id TEXT NOT NULL UNIQUE,
        domain TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS attribute_sets (
        id INTEGER PRIMARY KEY,
        hash INTEGER NOT NULL,
        last_us INTEGER NOT NULL,
        json TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS attribute_sets_by_hash ON attribute_sets (hash)",
    "CREATE TABLE IF NOT EXISTS points (
        entity INTEGER NOT NULL,
        time_us INTEGER NOT NULL,
        state TEXT,
        value REAL,
        attributes INTEGER NOT NULL,
        origin INTEGER,
        origin_id TEXT,
        PRIMARY KEY (entity, time_us)
    ) WITHOUT ROWID",
];

/// Why the embedded store failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The data directory could not be created.
    #[error("cannot create the directory of {path}: {source}")]
    CreateDir {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database could not be opened for reading.
    #[error("cannot open the history database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: sqlx::Error,
    },
    /// The write connection could not be opened or the schema created.
    #[error("cannot open the history database {path} for writing: {source}")]
    OpenWriter {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The file is in the first layout and could not be converted (no room, see
    /// [`layout`]); it is left as it is.
    #[error("cannot open the history database {path}: {source}")]
    Convert {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: OpenError,
    },
    /// The task opening the write connection did not finish (runtime shutting down).
    #[error("cannot open the history database {path}: {message}")]
    OpenTask {
        /// The database file.
        path: PathBuf,
        /// What happened to the task.
        message: String,
    },
}

impl EmbeddedError {
    /// Whether SQLite found the file damaged, or could not use it for another reason.
    pub(crate) fn failure(&self) -> crate::store::fault::SqliteFailure {
        use crate::store::fault::SqliteFailure;
        match self {
            EmbeddedError::Open { source, .. } => SqliteFailure::of_sqlx(source),
            EmbeddedError::OpenWriter { source, .. } => SqliteFailure::of_rusqlite(source),
            EmbeddedError::CreateDir { .. }
            | EmbeddedError::OpenTask { .. }
            | EmbeddedError::Convert { .. } => SqliteFailure::Unusable,
        }
    }
}

/// Tunables of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Most points per transaction.
    pub batch_size: usize,
    /// Longest wait of a point for its batch to fill.
    pub linger: Duration,
    /// Points held in memory before the oldest are dropped.
    pub capacity: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            batch_size: 50_000,
            linger: Duration::from_millis(250),
            capacity: 100_000,
        }
    }
}

/// The embedded store's database file in `data_dir`.
pub fn history_path(data_dir: &Path) -> PathBuf {
    data_dir.join(HISTORY_FILE_NAME)
}

fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
}

/// The write connection: WAL, `synchronous = NORMAL`, a page cache sized per transaction (2 or
/// 8 MiB), and the schema.
fn open_writer(path: &Path) -> Result<rusqlite::Connection, OpenError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // a new file returns freed pages on `incremental_vacuum` (retention); the pragma only takes
    // on a file without tables, an older file is converted once by the retention task
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -2048)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)?;
    conn.pragma_update(
        None,
        "soft_heap_limit",
        crate::store::SQLITE_SOFT_HEAP_LIMIT,
    )?;
    let mut conn = conn;
    layout::convert(&mut conn, path, &retention::free_bytes)?;
    Ok(conn)
}

/// Opens (creating it and its schema if missing) the history database at `path` and starts its
/// writer task on the current Tokio runtime. Returns the write side and the read side.
pub async fn open(
    path: &Path,
    options: EmbeddedOptions,
) -> Result<(EmbeddedWriter, EmbeddedHistory), EmbeddedError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| EmbeddedError::CreateDir {
                path: path.to_path_buf(),
                source,
            })?;
    }
    let open_err = |source| EmbeddedError::Open {
        path: path.to_path_buf(),
        source,
    };
    let writer_path = path.to_path_buf();
    let conn = tokio::task::spawn_blocking(move || open_writer(&writer_path))
        .await
        .map_err(|e| EmbeddedError::OpenTask {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?
        .map_err(|e| match e {
            OpenError::Sqlite(source) => EmbeddedError::OpenWriter {
                path: path.to_path_buf(),
                source,
            },
            other => EmbeddedError::Convert {
                path: path.to_path_buf(),
                source: other,
            },
        })?;
    let readers = SqlitePoolOptions::new()
        .max_connections(READERS)
        .min_connections(0)
        .idle_timeout(Duration::from_secs(300))
        .connect_with(
            connect_options(path)
                .read_only(true)
                .pragma("cache_size", "-2048"),
        )
        .await
        .map_err(open_err)?;
    Ok((
        EmbeddedWriter::spawn(conn, options),
        EmbeddedHistory::new(readers, path),
    ))
}

/// One row of `points`, ready to insert.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub entity_id: String,
    pub time_us: i64,
    pub domain: String,
    pub state: Option<String>,
    pub value: Option<f64>,
    pub attributes: String,
    /// The point's `origin` field (who caused a live change).
    pub origin: Option<String>,
    /// The point's `origin_id` field.
    pub origin_id: Option<String>,
}

/// A float as InfluxDB's JSON prints it: integral values without a fraction.
fn number(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::from(f as i64)
    } else {
        Value::from(f)
    }
}

fn field_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Float(f) => number(*f),
        FieldValue::Int(i) => Value::from(*i),
        FieldValue::Bool(b) => Value::from(*b),
        FieldValue::Str(s) => Value::from(s.as_str()),
    }
}

/// The row of a `homeiq`-schema point; `None` when it has no `entity_id` tag.
pub(crate) fn row_of(p: &Point) -> Option<Row> {
    let entity_id = p.tag_value("entity_id").filter(|e| !e.is_empty())?;
    let mut attributes = Map::new();
    for (k, v) in &p.tags {
        match k.as_str() {
            "unit" => {
                attributes.insert("unit_of_measurement".into(), Value::from(v.as_str()));
            }
            "device_class" => {
                attributes.insert("device_class".into(), Value::from(v.as_str()));
            }
            _ => {}
        }
    }
    let (mut state, mut value) = (None, None);
    let (mut origin, mut origin_id) = (None, None);
    for (k, v) in &p.fields {
        match (k.as_str(), v) {
            ("state", FieldValue::Str(s)) => state = Some(s.clone()),
            (n, FieldValue::Str(s)) if n == ORIGIN_FIELDS[0] => origin = Some(s.clone()),
            (n, FieldValue::Str(s)) if n == ORIGIN_FIELDS[1] => origin_id = Some(s.clone()),
            ("value", FieldValue::Float(f)) => value = Some(*f),
            ("value", FieldValue::Int(i)) => value = Some(*i as f64),
            (name, v) => {
                let (key, val) = homeiq_attribute(name, &field_json(v));
                attributes.insert(key, val);
            }
        }
    }
    Some(Row {
        entity_id: entity_id.to_owned(),
        time_us: p.time,
        domain: p.measurement.clone(),
        state,
        value: value.filter(|v| v.is_finite()),
        attributes: Value::Object(attributes).to_string(),
        origin,
        origin_id,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod retention_tests;
