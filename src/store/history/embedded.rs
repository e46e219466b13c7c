//! History from the embedded store (`<data_dir>/history.db`, see [`crate::store::embedded`]).
//!
//! Every query uses the primary key `(entity_id, time_us)` or the index `(time_us, domain)`:
//!
//! * a page: per entity, one range scan in the page order from the cursor, `LIMIT page + 1`;
//!   the entities' rows are merged in Rust exactly as the InfluxDB backend merges its series;
//! * neighbours of a page: per entity, one row before its first and one after its last record;
//! * aggregates: per entity, `GROUP BY time_us / interval` over its key range (the bucket's last
//!   value is looked up by the key of its newest row);
//! * events per bucket and domain: a covering scan of `points_by_time`.
//!
//! Buckets start at multiples of the interval since the Unix epoch, like InfluxDB's
//! `GROUP BY time(…)`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, Row as _, SqlitePool};
use serde_json::{Map, Value};

use super::{
    AggregatePoint, AggregateQuery, AggregateSeries, HistoryError, HistoryPage, HistoryQuery,
    HistoryRecord, Order, StatsBucket, StoredRow, into_page, page_edges, time_of, with_neighbours,
};

/// History read from the embedded store; cheap to clone (it wraps a pool of read connections).
#[derive(Debug, Clone)]
pub struct EmbeddedHistory {
    pool: SqlitePool,
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
    /// History read through `pool` (read-only connections to `history.db`).
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Runs `SELECT 1` on a read connection, for health checks.
    pub async fn ping(&self) -> Result<(), HistoryError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// One page of records, with each record's neighbours.
    pub async fn history(&self, q: &HistoryQuery) -> Result<HistoryPage, HistoryError> {
        let cap = i64::try_from(q.limit.saturating_add(1)).unwrap_or(i64::MAX);
        let (start, end) = (q.start.timestamp_micros(), q.end.timestamp_micros());
        let mut rows = Vec::new();
        let mut entities: Vec<&String> = q.entity_ids.iter().collect();
        entities.sort_unstable();
        entities.dedup();
        for entity in entities {
            // keyset: within the cursor's microsecond, entities after (ascending) or before
            // (descending) the cursor's entity come next
            let (mut lower, mut upper) = (start, end);
            if let Some(c) = &q.after {
                match q.order {
                    Order::Ascending => {
                        let from = if entity.as_str() > c.entity_id.as_str() {
                            c.time_us
                        } else {
                            c.time_us.saturating_add(1)
                        };
                        lower = lower.max(from);
                    }
                    Order::Descending => {
                        let to = if entity.as_str() < c.entity_id.as_str() {
                            c.time_us
                        } else {
                            c.time_us.saturating_sub(1)
                        };
                        upper = upper.min(to);
                    }
                }
            }
            if lower > upper {
                continue;
            }
            let sql = match q.order {
                Order::Ascending => {
                    "SELECT time_us, state, value, attributes FROM points WHERE entity_id = ? AND time_us >= ? AND time_us <= ? ORDER BY time_us ASC LIMIT ?"
                }
                Order::Descending => {
                    "SELECT time_us, state, value, attributes FROM points WHERE entity_id = ? AND time_us >= ? AND time_us <= ? ORDER BY time_us DESC LIMIT ?"
                }
            };
            let found = sqlx::query(sql)
                .bind(entity.as_str())
                .bind(lower)
                .bind(upper)
                .bind(cap)
                .fetch_all(&self.pool)
                .await?;
            for r in found {
                let attributes: String = r.try_get("attributes")?;
                rows.push(StoredRow {
                    time_us: r.try_get("time_us")?,
                    entity_id: entity.clone(),
                    state: r.try_get("state")?,
                    value: r.try_get("value")?,
                    attributes: match serde_json::from_str(&attributes) {
                        Ok(Value::Object(m)) => m,
                        _ => Map::new(),
                    },
                });
            }
        }
        let next_cursor = into_page(&mut rows, q);
        let items = self.with_neighbours(rows).await?;
        Ok(HistoryPage { items, next_cursor })
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
                "SELECT time_us, state FROM points WHERE entity_id = ? AND time_us < ? ORDER BY time_us DESC LIMIT 1",
            )
            .bind(entity.as_str())
            .bind(first)
            .fetch_optional(&self.pool)
            .await?
            {
                before.insert(entity.clone(), (r.try_get("time_us")?, r.try_get("state")?));
            }
            if let Some(r) = sqlx::query(
                "SELECT time_us FROM points WHERE entity_id = ? AND time_us > ? ORDER BY time_us ASC LIMIT 1",
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

    /// Mean, min, max, count and last of `value` per bucket, per entity.
    pub async fn aggregate(
        &self,
        q: &AggregateQuery,
    ) -> Result<Vec<AggregateSeries>, HistoryError> {
        let iv = interval_us(q.interval_secs);
        let (start, end) = (q.start.timestamp_micros(), q.end.timestamp_micros());
        let mut out = Vec::with_capacity(q.entity_ids.len());
        for entity in &q.entity_ids {
            let rows = sqlx::query(
                "SELECT g.b AS b, g.mean AS mean, g.mn AS mn, g.mx AS mx, g.n AS n, p.value AS last
                 FROM (SELECT time_us - (((time_us % ?4) + ?4) % ?4) AS b, avg(value) AS mean, min(value) AS mn,
                              max(value) AS mx, count(value) AS n, max(time_us) AS t
                       FROM points
                       WHERE entity_id = ?1 AND time_us >= ?2 AND time_us < ?3
                             AND value IS NOT NULL
                       GROUP BY b) g
                 JOIN points p ON p.entity_id = ?1 AND p.time_us = g.t
                 ORDER BY g.b",
            )
            .bind(entity.as_str())
            .bind(start)
            .bind(end)
            .bind(iv)
            .fetch_all(&self.pool)
            .await?;
            let mut points = Vec::with_capacity(rows.len());
            for r in rows {
                let b: i64 = r.try_get("b")?;
                let n: i64 = r.try_get("n")?;
                if n <= 0 {
                    continue;
                }
                points.push(AggregatePoint {
                    time: time_of(b),
                    mean: r.try_get("mean")?,
                    min: r.try_get("mn")?,
                    max: r.try_get("mx")?,
                    count: n.unsigned_abs(),
                    last: r.try_get("last")?,
                });
            }
            out.push(AggregateSeries {
                entity_id: entity.clone(),
                points,
            });
        }
        Ok(out)
    }

    /// Records per bucket and domain in `[start, end)`.
    pub async fn event_stats(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        interval_secs: u64,
    ) -> Result<Vec<StatsBucket>, HistoryError> {
        let iv = interval_us(interval_secs);
        let rows = sqlx::query(
            "SELECT time_us - (((time_us % ?3) + ?3) % ?3) AS b, domain, count(*) AS n
             FROM points INDEXED BY points_by_time
             WHERE time_us >= ?1 AND time_us < ?2
             GROUP BY b, domain",
        )
        .bind(start.timestamp_micros())
        .bind(end.timestamp_micros())
        .bind(iv)
        .fetch_all(&self.pool)
        .await?;
        let mut buckets: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
        for r in rows {
            let b: i64 = r.try_get("b")?;
            let domain: String = r.try_get("domain")?;
            let n: i64 = r.try_get("n")?;
            if n > 0 {
                *buckets.entry(b).or_default().entry(domain).or_default() += n.unsigned_abs();
            }
        }
        Ok(buckets
            .into_iter()
            .map(|(time, by_domain)| StatsBucket {
                time: time_of(time),
                total: by_domain.values().sum(),
                by_domain,
            })
            .collect())
    }
}
