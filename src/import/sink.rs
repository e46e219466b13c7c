//! Where imported long-term statistics go: [`ImportedHour`] rows handed to a [`StatisticsSink`] in
//! batches.
//!
//! The seam to the rollups: the application wires exactly one sink (`app.rs`): the rollups store,
//! which keeps the rows as tier `imported` (`Rollups::insert_imported`), keyed by entity and
//! hour, so importing an hour again replaces it and never adds a row. The tests use
//! [`SqliteStatisticsSink`], a file of their own with the same rule.

use std::future::Future;
#[cfg(test)]
use std::path::{Path, PathBuf};
use std::pin::Pin;
#[cfg(test)]
use std::sync::{Arc, Mutex};

pub(crate) use crate::rollups::ImportedHour;

/// A batch that could not be stored.
#[derive(Debug, thiserror::Error)]
#[error("cannot store imported statistics: {0}")]
pub(crate) struct SinkError(pub String);

/// A future a sink returns.
pub(crate) type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<u64, SinkError>> + Send + 'a>>;

/// Takes imported statistics. `put` stores a batch (idempotently: the same entity and hour again
/// replaces the row) and returns how many rows it stored; when it returns they are durable.
pub(crate) trait StatisticsSink: Send + Sync {
    /// Stores a batch.
    fn put<'a>(&'a self, rows: &'a [ImportedHour]) -> SinkFuture<'a>;
}

impl StatisticsSink for crate::rollups::Rollups {
    fn put<'a>(&'a self, rows: &'a [ImportedHour]) -> SinkFuture<'a> {
        Box::pin(async move {
            self.insert_imported(rows)
                .await
                .map_err(|e| SinkError(e.to_string()))
        })
    }
}

/// Imported statistics in their own SQLite file (the tests' sink).
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct SqliteStatisticsSink {
    conn: Arc<Mutex<rusqlite::Connection>>,
    path: PathBuf,
}

#[cfg(test)]
impl SqliteStatisticsSink {
    /// Opens (creating) the file.
    pub(crate) fn open(path: &Path) -> Result<Self, SinkError> {
        let err = |e: rusqlite::Error| SinkError(format!("{}: {e}", path.display()));
        let conn = rusqlite::Connection::open(path).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS imported_hours (
                entity_id TEXT NOT NULL, start INTEGER NOT NULL,
                mean REAL, min REAL, max REAL, sum REAL, state REAL,
                PRIMARY KEY (entity_id, start)) WITHOUT ROWID;",
        )
        .map_err(err)?;
        Ok(SqliteStatisticsSink {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    fn put_blocking(&self, rows: &[ImportedHour]) -> Result<u64, SinkError> {
        let err = |e: rusqlite::Error| SinkError(format!("{}: {e}", self.path.display()));
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT OR REPLACE INTO imported_hours
                     (entity_id, start, mean, min, max, sum, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(err)?;
            for r in rows {
                stmt.execute(rusqlite::params![
                    r.entity_id,
                    r.start.timestamp(),
                    r.mean,
                    r.min,
                    r.max,
                    r.sum,
                    r.state
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(rows.len() as u64)
    }
}

#[cfg(test)]
impl StatisticsSink for SqliteStatisticsSink {
    fn put<'a>(&'a self, rows: &'a [ImportedHour]) -> SinkFuture<'a> {
        Box::pin(async move {
            let me = self.clone();
            let rows = rows.to_vec();
            tokio::task::spawn_blocking(move || me.put_blocking(&rows))
                .await
                .map_err(|e| SinkError(format!("the storing task failed: {e}")))?
        })
    }
}

/// Statistics kept in memory (tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct MemorySink {
    /// entity → hour start (s) → row.
    pub rows: Mutex<std::collections::BTreeMap<(String, i64), ImportedHour>>,
}

#[cfg(test)]
impl StatisticsSink for MemorySink {
    fn put<'a>(&'a self, rows: &'a [ImportedHour]) -> SinkFuture<'a> {
        Box::pin(async move {
            let mut map = self
                .rows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for r in rows {
                map.insert((r.entity_id.clone(), r.start.timestamp()), r.clone());
            }
            Ok(rows.len() as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(entity: &str, h: i64, mean: f64) -> ImportedHour {
        ImportedHour {
            entity_id: entity.into(),
            start: chrono::DateTime::from_timestamp(h * 3600, 0).expect("time"),
            mean: Some(mean),
            min: None,
            max: Some(mean + 1.0),
            sum: None,
            state: None,
        }
    }

    #[tokio::test]
    async fn the_sqlite_sink_replaces_an_hour_imported_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink =
            SqliteStatisticsSink::open(&dir.path().join("imported_statistics.db")).expect("open");
        let rows = [hour("sensor.a", 1, 1.0), hour("sensor.a", 2, 2.0)];
        assert_eq!(sink.put(&rows).await.expect("put"), 2);
        assert_eq!(sink.put(&[hour("sensor.a", 2, 5.0)]).await.expect("put"), 1);
        let conn = sink.conn.lock().expect("lock");
        let (n, mean): (i64, f64) = conn
            .query_row(
                "SELECT COUNT(*), MAX(mean) FROM imported_hours WHERE entity_id = 'sensor.a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("query");
        assert_eq!((n, mean), (2, 5.0));
    }
}
