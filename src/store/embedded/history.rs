//! History from the embedded store (`<data_dir>/history.db`, see [`crate::store::embedded`]).
//!
//! Every query uses the primary key `(entity, time_us)` (the entity's row id looked up once per
//! query in `entities`; there is no index by time), joining `entities` for the entity id
//! and domain and `attribute_sets` for the attributes by their integer keys:
//!
//! * a page: a k-way merge of the entities' records (see [`merge_page`]), each entity read in
//!   chunks by range scans in page order from the cursor (or its last record), so a page holds
//!   about `limit + 1` records however many entities it names;
//! * neighbours of a page: per entity, one row before its first and one after its last record;
//! * aggregates: per entity, `GROUP BY time_us / interval` over its key range (the bucket's last
//!   value is looked up by the key of its newest row);
//! * events per bucket and domain: per entity its range of the key, counted per bucket and added
//!   to the entity's domain;
//! * the oldest point: the least of the entities' first keys.
//!
//! A request holds one of [`CONCURRENT_REQUESTS`](crate::store::history::CONCURRENT_REQUESTS) slots for all its
//! queries, as with InfluxDB; more wait their turn.
//!
//! Buckets start at multiples of the interval since the Unix epoch, like InfluxDB's
//! `GROUP BY time(…)`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, Row as _, SqlitePool};
use serde_json::{Map, Value};

use super::intern::origin_of_code;
use crate::store::history::{
    Fetch, Fetched, HistoryError, HistoryQuery, HistoryRecord, Order, PageBackend, PageReader,
    RawPoint, Side, Slots, StatsBucket, StoredChange, StoredRow, is_domain, is_total_increasing,
    page_edges, read_bounds, stats_buckets, with_neighbours,
};
use crate::store::origin::{Origin, OriginKind};

/// History read from the embedded store; cheap to clone (it wraps a pool of read connections).
#[derive(Debug, Clone)]
pub struct EmbeddedHistory {
    pool: SqlitePool,
    slots: Slots,
    bulk: Bulk,
}

/// Read-only `rusqlite` connections for the bulk reads (the analysis' changes, the rollups' raw
/// points), each read one blocking call on Tokio's blocking pool. `sqlx` hands every row across a
/// channel from its worker thread: in a rollup pass over a day of 2,000 one-minute sensors that
/// thread and its context switches took most of the CPU (README, daily maintenance). Idle
/// connections are kept; there are at most as many as reads at once (the request slots).
#[derive(Debug, Clone)]
struct Bulk {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<rusqlite::Connection>>>,
}

impl Bulk {
    /// Runs `read` on an idle connection (or a new one) on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, HistoryError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let taken = me
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            let conn = match taken {
                Some(c) => c,
                None => open_bulk(&me.path)?,
            };
            let out = read(&conn)?;
            me.idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(conn);
            Ok(out)
        })
        .await
        .map_err(|e| HistoryError::Backend(format!("embedded history: the read task failed: {e}")))?
        .map_err(|e: rusqlite::Error| HistoryError::Backend(format!("embedded history: {e}")))
    }
}

/// A read-only connection with the readers' settings (and a larger cache: a bulk read's pages
/// are many).
fn open_bulk(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(super::BUSY_TIMEOUT)?;
    conn.pragma_update(None, "cache_size", -8192)?;
    Ok(conn)
}

impl From<sqlx::Error> for HistoryError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                HistoryError::Unavailable(format!("embedded history: {e}"))
            }
            other => HistoryError::Backend(format!("embedded history: {other}")),
        }
    }
}

fn interval_us(secs: u64) -> i64 {
    i64::try_from(secs.max(1))
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000)
}

impl EmbeddedHistory {
    /// History read through `pool` (read-only connections to `path`, `history.db`).
    pub(crate) fn new(pool: SqlitePool, path: &Path) -> Self {
        Self {
            pool,
            slots: Slots::default(),
            bulk: Bulk {
                path: Arc::new(path.to_path_buf()),
                idle: Arc::default(),
            },
        }
    }

    /// Stored states of entities of `domains` in `[start, end)` (see
    /// [`HistoryStore::changes`](crate::store::history::HistoryStore::changes)): for each entity
    /// of the domains a range of the primary key. A range of the time index read every point of
    /// every entity in the range and looked each row up: 230 times the CPU for the analysed
    /// domains beside a month of one-minute sensors, 3 times when every row is wanted.
    pub(crate) async fn changes(
        &self,
        domains: &[&str],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<StoredChange>, HistoryError> {
        let domains: Vec<&str> = domains.iter().copied().filter(|d| is_domain(d)).collect();
        if domains.is_empty() {
            return Ok(Vec::new());
        }
        let _slot = self.slots.take().await?;
        let list = domains
            .iter()
            .map(|d| format!("'{d}'"))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT e.entity_id, p.time_us, p.state, p.origin
             FROM entities e CROSS JOIN points p ON p.entity = e.id
             WHERE e.domain IN ({list}) AND p.time_us >= ?1 AND p.time_us < ?2 AND p.state IS NOT NULL"
        );
        // domains are identifiers ([`is_domain`]): nothing else reaches the statement
        let (from, to) = (start.timestamp_micros(), end.timestamp_micros());
        self.bulk
            .read(move |c| {
                let mut statement = c.prepare(&sql)?;
                let rows = statement.query_map([from, to], |r| {
                    let origin: Option<i64> = r.get(3)?;
                    Ok(StoredChange {
                        entity_id: r.get(0)?,
                        time_us: r.get(1)?,
                        state: r.get(2)?,
                        origin: origin.map_or(OriginKind::Unknown, origin_of_code),
                    })
                })?;
                rows.collect()
            })
            .await
    }

    /// Points in `[start_us, end_us)`: of one entity (a range of the primary key) or of all (that
    /// range for each entity: a third of the CPU of the time index's range and a lookup per row).
    pub(crate) async fn raw_points(
        &self,
        entity: Option<&str>,
        start_us: i64,
        end_us: i64,
    ) -> Result<Vec<RawPoint>, HistoryError> {
        let _slot = self.slots.take().await?;
        let rows = match entity {
            Some(e) => {
                sqlx::query(
                    "SELECT ?1 AS entity_id, p.time_us, CASE WHEN typeof(p.value) = 'blob' THEN NULL ELSE p.value END AS value,
                        typeof(p.value) = 'blob' AS value_of_state, p.state, p.origin,
                        json_extract(a.json, '$.state_class') AS sc
                 FROM points p LEFT JOIN attribute_sets a ON a.id = p.attributes
                 WHERE p.entity = (SELECT id FROM entities WHERE entity_id = ?1)
                   AND p.time_us >= ?2 AND p.time_us < ?3
                 ORDER BY p.time_us",
                )
                .bind(e)
                .bind(start_us)
                .bind(end_us)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                return self
                    .bulk
                    .read(move |c| {
                        let mut statement = c.prepare(
                            "SELECT e.entity_id, p.time_us, CASE WHEN typeof(p.value) = 'blob' THEN NULL ELSE p.value END AS value,
                                typeof(p.value) = 'blob' AS value_of_state, p.state, p.origin,
                                json_extract(a.json, '$.state_class') AS sc
                             FROM entities e CROSS JOIN points p ON p.entity = e.id
                             LEFT JOIN attribute_sets a ON a.id = p.attributes
                             WHERE p.time_us >= ?1 AND p.time_us < ?2",
                        )?;
                        let rows = statement.query_map([start_us, end_us], |r| {
                            Ok(raw_point_of(
                                r.get(0)?,
                                r.get(1)?,
                                (r.get(2)?, r.get(3)?),
                                r.get(4)?,
                                r.get(5)?,
                                r.get::<_, Option<String>>(6)?.as_deref(),
                            ))
                        })?;
                        rows.collect()
                    })
                    .await;
            }
        };
        rows.iter().map(raw_point).collect()
    }

    /// `entity`'s point just before `t_us`, or the first at or after it.
    pub(crate) async fn raw_point_near(
        &self,
        entity: &str,
        t_us: i64,
        side: Side,
    ) -> Result<Option<RawPoint>, HistoryError> {
        let _slot = self.slots.take().await?;
        let sql = match side {
            Side::Before => {
                "SELECT ?1 AS entity_id, p.time_us, CASE WHEN typeof(p.value) = 'blob' THEN NULL ELSE p.value END AS value,
                        typeof(p.value) = 'blob' AS value_of_state, p.state, p.origin,
                        json_extract(a.json, '$.state_class') AS sc
                 FROM points p LEFT JOIN attribute_sets a ON a.id = p.attributes
                 WHERE p.entity = (SELECT id FROM entities WHERE entity_id = ?1) AND p.time_us < ?2
                 ORDER BY p.time_us DESC LIMIT 1"
            }
            Side::From => {
                "SELECT ?1 AS entity_id, p.time_us, CASE WHEN typeof(p.value) = 'blob' THEN NULL ELSE p.value END AS value,
                        typeof(p.value) = 'blob' AS value_of_state, p.state, p.origin,
                        json_extract(a.json, '$.state_class') AS sc
                 FROM points p LEFT JOIN attribute_sets a ON a.id = p.attributes
                 WHERE p.entity = (SELECT id FROM entities WHERE entity_id = ?1) AND p.time_us >= ?2
                 ORDER BY p.time_us ASC LIMIT 1"
            }
        };
        let row = sqlx::query(sql)
            .bind(entity)
            .bind(t_us)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(raw_point).transpose()
    }

    /// The oldest point's time: each entity's first key (a seek per entity; there is no index
    /// by time).
    pub(crate) async fn first_point_us(&self) -> Result<Option<i64>, HistoryError> {
        let _slot = self.slots.take().await?;
        let first: Option<i64> = sqlx::query_scalar(FIRST_POINT)
            .fetch_one(&self.pool)
            .await?;
        Ok(first)
    }

    /// Records per bucket and domain in `[start, end)`: for each entity its range of the primary
    /// key, counted per bucket, then added to its domain's.
    pub(crate) async fn event_stats(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        interval_secs: u64,
    ) -> Result<Vec<StatsBucket>, HistoryError> {
        let _slot = self.slots.take().await?;
        let iv = interval_us(interval_secs);
        let (from, to) = (start.timestamp_micros(), end.timestamp_micros());
        let buckets = self
            .bulk
            .read(move |c| {
                let entities: Vec<(i64, String)> = c
                    .prepare("SELECT id, domain FROM entities")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let mut times =
                    c.prepare("SELECT time_us FROM points WHERE entity = ?1 AND time_us >= ?2 AND time_us < ?3")?;
                let mut buckets: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
                let mut counts: Vec<(i64, u64)> = Vec::new();
                for (id, domain) in entities {
                    counts.clear();
                    let mut rows = times.query([id, from, to])?;
                    // an entity's times ascend: its rows of a bucket are consecutive
                    while let Some(r) = rows.next()? {
                        let t: i64 = r.get(0)?;
                        let b = t - t.rem_euclid(iv);
                        match counts.last_mut() {
                            Some((last, n)) if *last == b => *n += 1,
                            _ => counts.push((b, 1)),
                        }
                    }
                    for &(b, n) in &counts {
                        *buckets
                            .entry(b)
                            .or_default()
                            .entry(domain.clone())
                            .or_default() += n;
                    }
                }
                Ok(buckets)
            })
            .await?;
        Ok(stats_buckets(buckets))
    }
}

/// The oldest point's time: the least of the entities' first keys.
const FIRST_POINT: &str = "SELECT min((SELECT p.time_us FROM points p WHERE p.entity = e.id ORDER BY p.time_us LIMIT 1)) FROM entities e";

/// A row's `value`: stored, or its state's number when `value_of_state` (the writer stored it
/// that way because parsing the state gives exactly the value, see [`super::intern::stored_value`]).
fn stored_value(
    r: &sea_orm::sqlx::sqlite::SqliteRow,
    state: Option<&str>,
) -> Result<Option<f64>, HistoryError> {
    if r.try_get::<bool, _>("value_of_state")? {
        return Ok(state.and_then(|s| s.parse::<f64>().ok()));
    }
    Ok(r.try_get("value")?)
}

/// A row of `entity_id, time_us, value, value_of_state, state, origin, sc` as a rollup input.
fn raw_point(r: &sea_orm::sqlx::sqlite::SqliteRow) -> Result<RawPoint, HistoryError> {
    Ok(raw_point_of(
        r.try_get("entity_id")?,
        r.try_get("time_us")?,
        (r.try_get("value")?, r.try_get("value_of_state")?),
        r.try_get("state")?,
        r.try_get("origin")?,
        r.try_get::<Option<String>, _>("sc")?.as_deref(),
    ))
}

/// A rollup input from a row's columns, whichever driver read them: `value` is the stored
/// number and whether the state text holds it instead (see [`stored_value`]).
fn raw_point_of(
    entity_id: String,
    time_us: i64,
    (value, value_of_state): (Option<f64>, bool),
    state: Option<String>,
    origin: Option<i64>,
    state_class: Option<&str>,
) -> RawPoint {
    let value = if value_of_state {
        state.as_deref().and_then(|s| s.parse::<f64>().ok())
    } else {
        value
    };
    RawPoint {
        entity_id,
        time_us,
        value: value.filter(|v| v.is_finite()),
        state,
        heartbeat: origin.map(origin_of_code) == Some(OriginKind::Heartbeat),
        total_increasing: is_total_increasing(state_class),
    }
}

impl PageBackend for EmbeddedHistory {
    fn slots(&self) -> &Slots {
        &self.slots
    }

    /// The page's records with their neighbours; those just outside the page come from one
    /// lookup per entity and direction.
    async fn with_neighbours(
        &self,
        rows: Vec<StoredRow>,
    ) -> Result<Vec<HistoryRecord>, HistoryError> {
        let mut before = HashMap::new();
        let mut after = HashMap::new();
        for (entity, first, last) in page_edges(&rows) {
            if let Some(r) = sqlx::query(
                "SELECT time_us, state FROM points WHERE entity = (SELECT id FROM entities WHERE entity_id = ?) AND time_us < ? ORDER BY time_us DESC LIMIT 1",
            )
            .bind(entity.as_str())
            .bind(first)
            .fetch_optional(&self.pool)
            .await?
            {
                before.insert(entity.clone(), (r.try_get("time_us")?, r.try_get("state")?));
            }
            if let Some(r) = sqlx::query(
                "SELECT time_us FROM points WHERE entity = (SELECT id FROM entities WHERE entity_id = ?) AND time_us > ? ORDER BY time_us ASC LIMIT 1",
            )
            .bind(entity.as_str())
            .bind(last)
            .fetch_optional(&self.pool)
            .await?
            {
                after.insert(entity, r.try_get("time_us")?);
            }
        }
        Ok(with_neighbours(rows, &before, &after))
    }
}

impl PageReader for EmbeddedHistory {
    /// One range scan of the primary key per fetch, in page order, `LIMIT` the fetch's size.
    async fn read(
        &self,
        q: &HistoryQuery,
        fetches: &[Fetch<'_>],
    ) -> Result<Vec<Fetched>, HistoryError> {
        let sql = match q.order {
            Order::Ascending => {
                "SELECT p.time_us, p.state, CASE WHEN typeof(p.value) = 'blob' THEN NULL ELSE p.value END AS value, typeof(p.value) = 'blob' AS value_of_state, a.json AS attributes, p.origin, p.origin_id FROM points p LEFT JOIN attribute_sets a ON a.id = p.attributes \
                 WHERE p.entity = (SELECT id FROM entities WHERE entity_id = ?) AND p.time_us >= ? AND p.time_us <= ? ORDER BY p.time_us ASC LIMIT ?"
            }
            Order::Descending => {
                "SELECT p.time_us, p.state, CASE WHEN typeof(p.value) = 'blob' THEN NULL ELSE p.value END AS value, typeof(p.value) = 'blob' AS value_of_state, a.json AS attributes, p.origin, p.origin_id FROM points p LEFT JOIN attribute_sets a ON a.id = p.attributes \
                 WHERE p.entity = (SELECT id FROM entities WHERE entity_id = ?) AND p.time_us >= ? AND p.time_us <= ? ORDER BY p.time_us DESC LIMIT ?"
            }
        };
        let clamp = |t: i128| i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX });
        let mut out = Vec::with_capacity(fetches.len());
        for f in fetches {
            let (lower, upper) = read_bounds(q, f.entity, f.after, 1);
            if lower > upper || f.limit == 0 {
                out.push(Fetched::default());
                continue;
            }
            let found = sqlx::query(sql)
                .bind(f.entity)
                .bind(clamp(lower))
                .bind(clamp(upper))
                .bind(i64::try_from(f.limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
            let mut rows = Vec::with_capacity(found.len());
            for r in found {
                let attributes: Option<String> = r.try_get("attributes")?;
                let origin: Option<i64> = r.try_get("origin")?;
                let origin_id: Option<String> = r.try_get("origin_id")?;
                let state: Option<String> = r.try_get("state")?;
                rows.push(StoredRow {
                    origin: origin.map(|k| Origin::stored(origin_of_code(k).as_str(), origin_id)),
                    time_us: r.try_get("time_us")?,
                    entity_id: f.entity.to_owned(),
                    value: stored_value(&r, state.as_deref())?,
                    state,
                    attributes: match serde_json::from_str(attributes.as_deref().unwrap_or("{}")) {
                        Ok(Value::Object(m)) => m,
                        _ => Map::new(),
                    },
                });
            }
            out.push(Fetched {
                more: rows.len() >= f.limit,
                rows,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::store::embedded::{EmbeddedOptions, history_path, open};
    use crate::store::history::{CONCURRENT_REQUESTS, Cursor, into_page, merge_page, time_of};
    use crate::store::point::{FieldValue, Point};

    const T0: i64 = 1_700_000_000_000_000;

    /// An embedded store holding `per_entity` records a second apart for each of `entities`
    /// (`sensor.e00`…), interleaved.
    async fn store(
        dir: &std::path::Path,
        entities: usize,
        per_entity: i64,
    ) -> (EmbeddedHistory, Vec<String>) {
        let (writer, history) = open(&history_path(dir), EmbeddedOptions::default())
            .await
            .expect("open");
        let names: Vec<String> = (0..entities).map(|i| format!("sensor.e{i:02}")).collect();
        for t in 0..per_entity {
            for (k, e) in names.iter().enumerate() {
                writer.push(
                    Point::new("sensor", T0 + t * 1_000_000 + k as i64 * 1_000)
                        .tag("entity_id", e)
                        .field("state", FieldValue::Str(format!("{t}")))
                        .field("value", FieldValue::Float(t as f64))
                        .field("note_str", FieldValue::Str(format!("record {t} of {e}"))),
                );
            }
        }
        let report = writer.shutdown(Duration::from_secs(30)).await;
        assert_eq!(report.left, 0);
        (history, names)
    }

    fn query(names: &[String], limit: usize, order: Order) -> HistoryQuery {
        HistoryQuery {
            entity_ids: names.to_vec(),
            start: time_of(T0),
            end: time_of(T0 + 86_400_000_000),
            order,
            limit,
            after: None,
        }
    }

    #[tokio::test]
    async fn requests_beyond_the_slots_wait_for_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (history, names) = store(dir.path(), 2, 10).await;
        let held: Vec<_> = {
            let mut held = Vec::new();
            for _ in 0..CONCURRENT_REQUESTS {
                held.push(history.slots.take().await.expect("slot"));
            }
            held
        };
        let (h, q) = (history.clone(), query(&names, 5, Order::Ascending));
        let page = tokio::spawn(async move { h.history(&q).await.map(|p| p.items.len()) });
        let h = history.clone();
        let aggregate = tokio::spawn(async move {
            h.raw_points(None, T0, T0 + 60_000_000)
                .await
                .map(|p| p.len() / 10)
        });
        let h = history.clone();
        let stats = tokio::spawn(async move {
            h.event_stats(time_of(T0), time_of(T0 + 60_000_000), 60)
                .await
                .map(|b| b.len())
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while history.slots.waiting() < 3 {
            assert!(
                Instant::now() < deadline,
                "requests did not wait for a slot (waiting: {})",
                history.slots.waiting()
            );
            tokio::task::yield_now().await;
        }
        assert!(!page.is_finished() && !aggregate.is_finished() && !stats.is_finished());
        drop(held);
        assert_eq!(page.await.expect("join").expect("page"), 5);
        assert_eq!(aggregate.await.expect("join").expect("aggregate"), 2);
        assert_eq!(stats.await.expect("join").expect("stats"), 1);
    }

    #[tokio::test]
    async fn pages_over_many_entities_read_one_budget_and_answer_as_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (history, names) = store(dir.path(), 50, 60).await;
        for (limit, order) in [(1_000, Order::Ascending), (7, Order::Descending)] {
            let q = query(&names, limit, order);
            let page = merge_page(&history, &q).await.expect("page");
            // 3,000 records in range: reading `limit + 1` of each entity held them all
            let chunk = (limit + 1).div_ceil(50).max(32).min(limit + 1);
            assert!(
                page.peak_rows <= limit + 1 + 50 * chunk && page.peak_rows < 3_000,
                "{limit}: {}",
                page.peak_rows
            );
            // the same page as collecting everything and sorting it
            let mut all = Vec::new();
            for e in &names {
                let f = Fetch {
                    entity: e,
                    after: None,
                    limit: 10_000,
                };
                all.extend(history.read(&q, &[f]).await.expect("read").remove(0).rows);
            }
            let cursor = into_page(&mut all, &q);
            assert_eq!(page.rows, all);
            assert_eq!(page.next_cursor, cursor);
        }
        // paging through everything: every record once, in order
        let mut q = query(&names, 333, Order::Ascending);
        let mut seen = Vec::new();
        loop {
            let page = history.history(&q).await.expect("page");
            seen.extend(
                page.items
                    .iter()
                    .map(|r| (r.time.timestamp_micros(), r.entity_id.clone())),
            );
            match page.next_cursor.as_deref().and_then(Cursor::decode) {
                Some(c) => q.after = Some(c),
                None => break,
            }
        }
        let mut want = seen.clone();
        want.sort();
        want.dedup();
        assert_eq!(seen, want);
        assert_eq!(seen.len(), 3_000);
    }
}
