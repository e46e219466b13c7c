//! `rollups.db`: the rollup rows, the per-entity carry, the progress and the dirty ranges.
//!
//! ```sql
//! entities(id INTEGER PRIMARY KEY, entity_id TEXT UNIQUE)          -- ids keep rows small
//! numeric(tier, entity, start_us, mean, covered_us, min, max, count, last, sum, ha_state,
//!         PRIMARY KEY (tier, entity, start_us)) WITHOUT ROWID
//! states(tier, entity, start_us, state, held_us, entered,
//!        PRIMARY KEY (tier, entity, start_us, state)) WITHOUT ROWID
//! carry(entity PRIMARY KEY, time_us, value, state, heartbeat, total_increasing)
//! meta(key PRIMARY KEY, value)                                      -- cursors, the zone
//! dirty(entity, start_us, end_us, PRIMARY KEY (entity, start_us))   -- late data to redo
//! ```
//!
//! One `rusqlite` connection writes (the maintenance task and [`insert_imported`](Db::insert)),
//! another reads (the API); WAL lets them run side by side. Both are used on Tokio's blocking
//! pool.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use super::compute::{NumericSummary, PeriodSummary, RawPoint, StateSummary};
use super::{ImportedHour, RollupError, Tier};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entities (id INTEGER PRIMARY KEY, entity_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS numeric (
    tier INTEGER NOT NULL, entity INTEGER NOT NULL, start_us INTEGER NOT NULL,
    mean REAL, covered_us INTEGER NOT NULL, min REAL, max REAL, count INTEGER, last REAL,
    sum REAL, ha_state REAL,
    PRIMARY KEY (tier, entity, start_us)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS states (
    tier INTEGER NOT NULL, entity INTEGER NOT NULL, start_us INTEGER NOT NULL,
    state TEXT NOT NULL, held_us INTEGER NOT NULL, entered INTEGER NOT NULL,
    PRIMARY KEY (tier, entity, start_us, state)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS carry (
    entity INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, value REAL, state TEXT,
    heartbeat INTEGER NOT NULL, total_increasing INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta_text (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dirty (
    entity_id TEXT NOT NULL, start_us INTEGER NOT NULL, end_us INTEGER NOT NULL,
    PRIMARY KEY (entity_id, start_us)) WITHOUT ROWID;
";

/// Keys of `meta`.
pub(crate) const CURSOR: &str = "cursor_us";
/// Local days composed up to (exclusive), µs.
pub(crate) const DAYS_UNTIL: &str = "days_until_us";
/// The first raw point found at the first start (catch-up progress), µs.
pub(crate) const FIRST: &str = "first_us";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A dirty range of one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dirty {
    pub entity_id: String,
    pub start_us: i64,
    pub end_us: i64,
}

/// One stored numeric row as the API reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NumericRow {
    pub start_us: i64,
    pub summary: NumericSummary,
}

/// The database; cheap to clone.
#[derive(Clone)]
pub(crate) struct Db {
    write: Arc<Mutex<Connection>>,
    read: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rollups::Db")
    }
}

fn open_conn(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -2048)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// Runs `f` with `conn` on the blocking pool.
async fn blocking<T: Send + 'static>(
    conn: Arc<Mutex<Connection>>,
    f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
) -> Result<T, RollupError> {
    tokio::task::spawn_blocking(move || f(&mut lock(&conn)))
        .await
        .map_err(|e| RollupError::Task(e.to_string()))?
        .map_err(RollupError::from)
}

fn entity_id(tx: &Connection, cache: &mut HashMap<String, i64>, e: &str) -> rusqlite::Result<i64> {
    if let Some(&id) = cache.get(e) {
        return Ok(id);
    }
    tx.execute(
        "INSERT OR IGNORE INTO entities (entity_id) VALUES (?1)",
        [e],
    )?;
    let id: i64 = tx.query_row("SELECT id FROM entities WHERE entity_id = ?1", [e], |r| {
        r.get(0)
    })?;
    cache.insert(e.to_owned(), id);
    Ok(id)
}

fn entity_of(conn: &Connection, e: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT id FROM entities WHERE entity_id = ?1", [e], |r| {
        r.get(0)
    })
    .optional()
}

/// What one write of the maintenance task replaces and stores.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Rows to delete first: (tier, entity, from µs, to µs).
    pub clear: Vec<(Tier, String, i64, i64)>,
    /// Summaries to store.
    pub rows: Vec<(Tier, String, PeriodSummary)>,
    /// Carries to store.
    pub carry: Vec<RawPoint>,
    /// `meta` values to set.
    pub meta: Vec<(&'static str, i64)>,
    /// Dirty ranges done.
    pub done: Vec<Dirty>,
}

impl Db {
    /// Opens (creating) `path`.
    pub(crate) async fn open(path: &Path) -> Result<Db, RollupError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| RollupError::Open(e.to_string()))?;
        }
        let p = path.to_path_buf();
        let (write, read) = tokio::task::spawn_blocking(move || {
            let w = open_conn(&p)?;
            w.execute_batch(SCHEMA)?;
            let r = open_conn(&p)?;
            Ok::<_, rusqlite::Error>((w, r))
        })
        .await
        .map_err(|e| RollupError::Task(e.to_string()))?
        .map_err(|e| RollupError::Open(e.to_string()))?;
        Ok(Db {
            write: Arc::new(Mutex::new(write)),
            read: Arc::new(Mutex::new(read)),
        })
    }

    /// A `meta` value.
    pub(crate) async fn meta(&self, key: &'static str) -> Result<Option<i64>, RollupError> {
        blocking(self.read.clone(), move |c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        })
        .await
    }

    /// A text `meta_text` value.
    pub(crate) async fn meta_text(&self, key: &'static str) -> Result<Option<String>, RollupError> {
        blocking(self.read.clone(), move |c| {
            c.query_row("SELECT value FROM meta_text WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
        })
        .await
    }

    /// Sets a text `meta_text` value.
    pub(crate) async fn set_meta_text(
        &self,
        key: &'static str,
        value: String,
    ) -> Result<(), RollupError> {
        blocking(self.write.clone(), move |c| {
            c.execute(
                "INSERT OR REPLACE INTO meta_text (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(|_| ())
        })
        .await
    }

    /// Every entity's carry (its last point before the cursor).
    pub(crate) async fn carries(&self) -> Result<HashMap<String, RawPoint>, RollupError> {
        blocking(self.read.clone(), |c| {
            let mut st = c.prepare(
                "SELECT e.entity_id, c.time_us, c.value, c.state, c.heartbeat, c.total_increasing
                 FROM carry c JOIN entities e ON e.id = c.entity",
            )?;
            let rows = st.query_map([], |r| {
                Ok(RawPoint {
                    entity_id: r.get(0)?,
                    time_us: r.get(1)?,
                    value: r.get(2)?,
                    state: r.get(3)?,
                    heartbeat: r.get::<_, i64>(4)? != 0,
                    total_increasing: r.get::<_, i64>(5)? != 0,
                })
            })?;
            let mut out = HashMap::new();
            for r in rows {
                let r = r?;
                out.insert(r.entity_id.clone(), r);
            }
            Ok(out)
        })
        .await
    }

    /// Stores a batch in one transaction.
    pub(crate) async fn apply(&self, batch: Batch) -> Result<(), RollupError> {
        blocking(self.write.clone(), move |c| {
            let tx = c.transaction()?;
            let mut ids = HashMap::new();
            for (tier, e, from, to) in &batch.clear {
                let Some(id) = entity_of(&tx, e)? else { continue };
                for table in ["numeric", "states"] {
                    tx.execute(
                        &format!(
                            "DELETE FROM {table} WHERE tier = ?1 AND entity = ?2 AND start_us >= ?3 AND start_us < ?4"
                        ),
                        params![tier.id(), id, from, to],
                    )?;
                }
            }
            {
                let mut num = tx.prepare(
                    "INSERT OR REPLACE INTO numeric (tier, entity, start_us, mean, covered_us, min, max, count, last, sum)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                let mut st = tx.prepare(
                    "INSERT OR REPLACE INTO states (tier, entity, start_us, state, held_us, entered)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for (tier, e, p) in &batch.rows {
                    let id = entity_id(&tx, &mut ids, e)?;
                    if let Some(n) = &p.numeric {
                        num.execute(params![
                            tier.id(),
                            id,
                            p.start_us,
                            n.mean,
                            n.covered_us,
                            n.min,
                            n.max,
                            i64::try_from(n.count).unwrap_or(i64::MAX),
                            n.last,
                            n.sum
                        ])?;
                    }
                    for s in &p.states {
                        st.execute(params![
                            tier.id(),
                            id,
                            p.start_us,
                            s.state,
                            s.held_us,
                            i64::try_from(s.entered).unwrap_or(i64::MAX)
                        ])?;
                    }
                }
                let mut carry = tx.prepare(
                    "INSERT OR REPLACE INTO carry (entity, time_us, value, state, heartbeat, total_increasing)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for p in &batch.carry {
                    let id = entity_id(&tx, &mut ids, &p.entity_id)?;
                    carry.execute(params![
                        id,
                        p.time_us,
                        p.value,
                        p.state,
                        i64::from(p.heartbeat),
                        i64::from(p.total_increasing)
                    ])?;
                }
            }
            for (k, v) in &batch.meta {
                tx.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                    params![k, v],
                )?;
            }
            for d in &batch.done {
                tx.execute(
                    "DELETE FROM dirty WHERE entity_id = ?1 AND start_us = ?2 AND end_us = ?3",
                    params![d.entity_id, d.start_us, d.end_us],
                )?;
            }
            tx.commit()
        })
        .await
    }

    /// Summaries of `tier` in `[from, to)`, by entity, oldest first.
    pub(crate) async fn summaries(
        &self,
        tier: Tier,
        entity: Option<String>,
        from: i64,
        to: i64,
    ) -> Result<HashMap<String, Vec<PeriodSummary>>, RollupError> {
        blocking(self.write.clone(), move |c| {
            let filter = if entity.is_some() {
                "AND e.entity_id = ?4"
            } else {
                "AND ?4 IS NULL"
            };
            let mut out: HashMap<String, std::collections::BTreeMap<i64, PeriodSummary>> =
                HashMap::new();
            let mut st = c.prepare(&format!(
                "SELECT e.entity_id, n.start_us, n.mean, n.covered_us, n.min, n.max, n.count, n.last, n.sum
                 FROM numeric n JOIN entities e ON e.id = n.entity
                 WHERE n.tier = ?1 AND n.start_us >= ?2 AND n.start_us < ?3 {filter}"
            ))?;
            let mut rows = st.query(params![tier.id(), from, to, entity])?;
            while let Some(r) = rows.next()? {
                let e: String = r.get(0)?;
                let start: i64 = r.get(1)?;
                let n = NumericSummary {
                    mean: r.get(2)?,
                    covered_us: r.get(3)?,
                    min: r.get::<_, Option<f64>>(4)?.unwrap_or(f64::NAN),
                    max: r.get::<_, Option<f64>>(5)?.unwrap_or(f64::NAN),
                    count: r.get::<_, Option<i64>>(6)?.unwrap_or(0).unsigned_abs(),
                    last: r.get::<_, Option<f64>>(7)?.unwrap_or(f64::NAN),
                    sum: r.get(8)?,
                };
                out.entry(e)
                    .or_default()
                    .entry(start)
                    .or_insert_with(|| PeriodSummary {
                        start_us: start,
                        numeric: None,
                        states: Vec::new(),
                    })
                    .numeric = Some(n);
            }
            drop(rows);
            let mut st = c.prepare(&format!(
                "SELECT e.entity_id, s.start_us, s.state, s.held_us, s.entered
                 FROM states s JOIN entities e ON e.id = s.entity
                 WHERE s.tier = ?1 AND s.start_us >= ?2 AND s.start_us < ?3 {filter}"
            ))?;
            let mut rows = st.query(params![tier.id(), from, to, entity])?;
            while let Some(r) = rows.next()? {
                let e: String = r.get(0)?;
                let start: i64 = r.get(1)?;
                out.entry(e)
                    .or_default()
                    .entry(start)
                    .or_insert_with(|| PeriodSummary {
                        start_us: start,
                        numeric: None,
                        states: Vec::new(),
                    })
                    .states
                    .push(StateSummary {
                        state: r.get(2)?,
                        held_us: r.get(3)?,
                        entered: r.get::<_, i64>(4)?.unsigned_abs(),
                    });
            }
            Ok(out
                .into_iter()
                .map(|(e, m)| (e, m.into_values().collect()))
                .collect())
        })
        .await
    }

    /// The numeric rows of one entity and tier in `[from, to)`, oldest first (the API's read).
    pub(crate) async fn numeric(
        &self,
        tier: Tier,
        entity: String,
        from: i64,
        to: i64,
    ) -> Result<Vec<NumericRow>, RollupError> {
        blocking(self.read.clone(), move |c| {
            let Some(id) = entity_of(c, &entity)? else {
                return Ok(Vec::new());
            };
            let mut st = c.prepare(
                "SELECT start_us, mean, covered_us, min, max, count, last, sum, ha_state FROM numeric
                 WHERE tier = ?1 AND entity = ?2 AND start_us >= ?3 AND start_us < ?4 ORDER BY start_us",
            )?;
            let rows = st.query_map(params![tier.id(), id, from, to], |r| {
                let mean: Option<f64> = r.get(1)?;
                let min: Option<f64> = r.get(3)?;
                let max: Option<f64> = r.get(4)?;
                let last: Option<f64> = r.get(6)?;
                let ha_state: Option<f64> = r.get(8)?;
                Ok(NumericRow {
                    start_us: r.get(0)?,
                    summary: NumericSummary {
                        mean,
                        covered_us: r.get(2)?,
                        min: min.or(mean).unwrap_or(f64::NAN),
                        max: max.or(mean).unwrap_or(f64::NAN),
                        count: r.get::<_, Option<i64>>(5)?.unwrap_or(0).unsigned_abs(),
                        last: last.or(ha_state).or(mean).unwrap_or(f64::NAN),
                        sum: r.get(7)?,
                    },
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Imported hours (tier `imported`); returns the rows stored.
    pub(crate) async fn insert_imported(
        &self,
        rows: Vec<ImportedHour>,
    ) -> Result<u64, RollupError> {
        blocking(self.write.clone(), move |c| {
            let tx = c.transaction()?;
            let mut ids = HashMap::new();
            let mut n = 0u64;
            {
                let mut st = tx.prepare(
                    "INSERT OR REPLACE INTO numeric (tier, entity, start_us, mean, covered_us, min, max, count, last, sum, ha_state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL, ?8, ?9)",
                )?;
                for r in &rows {
                    let id = entity_id(&tx, &mut ids, &r.entity_id)?;
                    let covered: i64 = if r.mean.is_some() { 3_600_000_000 } else { 0 };
                    n += st.execute(params![
                        Tier::Imported.id(),
                        id,
                        r.start.timestamp_micros(),
                        r.mean,
                        covered,
                        r.min,
                        r.max,
                        r.sum,
                        r.state
                    ])? as u64;
                }
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    /// Records dirty ranges (coalescing ranges of the same entity that touch), at most `cap`
    /// entries in all: beyond it, the entity's ranges merge into one.
    pub(crate) async fn mark_dirty(
        &self,
        ranges: Vec<Dirty>,
        cap: usize,
    ) -> Result<(), RollupError> {
        blocking(self.write.clone(), move |c| {
            let tx = c.transaction()?;
            for d in ranges {
                let (mut lo, mut hi) = (d.start_us, d.end_us);
                let total: i64 = tx.query_row("SELECT count(*) FROM dirty", [], |r| r.get(0))?;
                let overlap_sql = if usize::try_from(total).unwrap_or(usize::MAX) >= cap {
                    "SELECT start_us, end_us FROM dirty WHERE entity_id = ?1"
                } else {
                    "SELECT start_us, end_us FROM dirty WHERE entity_id = ?1 AND start_us <= ?3 AND end_us >= ?2"
                };
                let found: Vec<(i64, i64)> = {
                    let mut st = tx.prepare(overlap_sql)?;
                    let rows = st.query_map(params![d.entity_id, lo, hi], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
                    rows.collect::<Result<_, _>>()?
                };
                for (a, b) in found {
                    lo = lo.min(a);
                    hi = hi.max(b);
                    tx.execute(
                        "DELETE FROM dirty WHERE entity_id = ?1 AND start_us = ?2",
                        params![d.entity_id, a],
                    )?;
                }
                tx.execute(
                    "INSERT OR REPLACE INTO dirty (entity_id, start_us, end_us) VALUES (?1, ?2, ?3)",
                    params![d.entity_id, lo, hi],
                )?;
            }
            tx.commit()
        })
        .await
    }

    /// Up to `limit` dirty ranges, oldest first.
    pub(crate) async fn dirty(&self, limit: usize) -> Result<Vec<Dirty>, RollupError> {
        blocking(self.read.clone(), move |c| {
            let mut st = c.prepare(
                "SELECT entity_id, start_us, end_us FROM dirty ORDER BY start_us LIMIT ?1",
            )?;
            let rows = st.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok(Dirty {
                    entity_id: r.get(0)?,
                    start_us: r.get(1)?,
                    end_us: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Deletes up to `chunk` rows of `tier` older than `before` (each statement a short
    /// transaction); returns the rows deleted.
    pub(crate) async fn expire(
        &self,
        tier: Tier,
        before: i64,
        chunk: usize,
    ) -> Result<u64, RollupError> {
        blocking(self.write.clone(), move |c| {
            let mut n = 0u64;
            for table in ["numeric", "states"] {
                // entity by entity (`CROSS JOIN` keeps `entities` the outer loop): a seek into
                // each entity's oldest rows, where `tier = ? AND start_us < ?` alone scanned the
                // whole tier (17 million hourly rows a year for 2,000 entities) at every pass
                n += c.execute(
                    &format!(
                        "DELETE FROM {table} WHERE (tier, entity, start_us) IN
                         (SELECT r.tier, r.entity, r.start_us FROM entities AS e CROSS JOIN {table} AS r
                          WHERE r.tier = ?1 AND r.entity = e.id AND r.start_us < ?2 LIMIT ?3)"
                    ),
                    params![tier.id(), before, i64::try_from(chunk).unwrap_or(i64::MAX)],
                )? as u64;
            }
            Ok(n)
        })
        .await
    }

    /// Bytes of the database file (pages in use × page size).
    pub(crate) async fn size_bytes(&self) -> Result<u64, RollupError> {
        blocking(self.read.clone(), |c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let free: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
            Ok(((pages - free).max(0) * size).unsigned_abs())
        })
        .await
    }
}
