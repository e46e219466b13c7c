//! Reading history back: one interface over the storage backends.
//!
//! [`HistoryStore`] answers the API's three history questions: the records of some entities in a
//! time range ([`HistoryStore::history`], keyset-paged), numeric aggregates per interval
//! ([`HistoryStore::aggregate`]) and events per minute by domain ([`HistoryStore::event_stats`]).
//! Every query is bounded by its caller in time range, entities and rows. The InfluxDB backend
//! ([`InfluxHistory`]) reads either schema; the embedded backend ([`EmbeddedHistory`]) reads
//! `history.db` (see [`crate::store::embedded`]). Both answer with identical JSON for the same
//! points.

mod embedded;
mod influx;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

pub use embedded::EmbeddedHistory;
pub use influx::InfluxHistory;
pub(crate) use influx::homeiq_attribute;

use crate::store::influx::InfluxError;

/// Why a history query failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The backend cannot be reached (connection refused, timeout).
    #[error("history storage is unreachable: {0}")]
    Unavailable(String),
    /// The backend answered with an error.
    #[error("history storage failed: {0}")]
    Backend(String),
}

impl From<InfluxError> for HistoryError {
    fn from(e: InfluxError) -> Self {
        match e {
            InfluxError::Transport(m) => HistoryError::Unavailable(format!("InfluxDB: {m}")),
            InfluxError::Status { status, message } if status >= 500 => {
                HistoryError::Unavailable(format!("InfluxDB answered HTTP {status}: {message}"))
            }
            other => HistoryError::Backend(other.to_string()),
        }
    }
}

/// Order of history records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest first.
    #[default]
    Ascending,
    /// Newest first.
    Descending,
}

/// Where the previous page ended: the last record's time (µs) and entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Time of the last record returned, Unix microseconds.
    pub time_us: i64,
    /// Its entity.
    pub entity_id: String,
}

impl Cursor {
    /// The opaque text form used in URLs (`<µs>_<entity_id>`).
    pub fn encode(&self) -> String {
        format!("{}_{}", self.time_us, self.entity_id)
    }

    /// Parses [`Cursor::encode`]'s form.
    pub fn decode(text: &str) -> Option<Self> {
        let (time, entity) = text.split_once('_')?;
        let time_us = time.parse().ok()?;
        (!entity.is_empty() && entity.contains('.')).then(|| Cursor {
            time_us,
            entity_id: entity.to_owned(),
        })
    }
}

/// A history query.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    /// The entities (at least one).
    pub entity_ids: Vec<String>,
    /// Range start (inclusive).
    pub start: DateTime<Utc>,
    /// Range end (inclusive).
    pub end: DateTime<Utc>,
    /// Record order.
    pub order: Order,
    /// Records per page.
    pub limit: usize,
    /// Continue after this record.
    pub after: Option<Cursor>,
}

/// One stored record of an entity.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HistoryRecord {
    /// The entity.
    pub entity_id: String,
    /// When the record was made (the state's `last_updated`), RFC 3339 with microseconds.
    pub time: DateTime<Utc>,
    /// The state string (`null` when the schema stored only a number).
    pub state: Option<String>,
    /// The numeric value, when the state is a number or on/off-like.
    pub value: Option<f64>,
    /// The attributes stored with the record.
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    /// The state of the entity's record before this one.
    pub previous_state: Option<String>,
    /// How long that previous record lasted (seconds until this one).
    pub previous_duration_secs: Option<f64>,
    /// How long this record lasted (seconds until the entity's next record); `null` while it is
    /// the newest.
    pub duration_secs: Option<f64>,
}

/// One page of records.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HistoryPage {
    /// The records, in the requested order.
    pub items: Vec<HistoryRecord>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// An aggregate query.
#[derive(Debug, Clone)]
pub struct AggregateQuery {
    /// The entities (numeric values only).
    pub entity_ids: Vec<String>,
    /// Range start (inclusive).
    pub start: DateTime<Utc>,
    /// Range end (exclusive).
    pub end: DateTime<Utc>,
    /// Bucket width, seconds.
    pub interval_secs: u64,
}

/// One bucket of an aggregate series.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AggregatePoint {
    /// Bucket start.
    pub time: DateTime<Utc>,
    /// Mean value.
    pub mean: Option<f64>,
    /// Minimum.
    pub min: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// Number of values.
    pub count: u64,
    /// The bucket's last value.
    pub last: Option<f64>,
}

/// Aggregates of one entity.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AggregateSeries {
    /// The entity.
    pub entity_id: String,
    /// Buckets holding values, oldest first (empty buckets are left out).
    pub points: Vec<AggregatePoint>,
}

/// Events in one minute (or other bucket).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StatsBucket {
    /// Bucket start.
    pub time: DateTime<Utc>,
    /// Records in the bucket.
    pub total: u64,
    /// Records per domain.
    pub by_domain: BTreeMap<String, u64>,
}

/// The history backends.
#[derive(Debug, Clone)]
pub enum HistoryStore {
    /// InfluxDB 1.x over HTTP.
    Influx(InfluxHistory),
    /// The embedded SQLite store (`storage = embedded`).
    Embedded(EmbeddedHistory),
}

impl HistoryStore {
    /// Records of the query's entities, one page.
    pub async fn history(&self, q: &HistoryQuery) -> Result<HistoryPage, HistoryError> {
        match self {
            HistoryStore::Influx(h) => h.history(q).await,
            HistoryStore::Embedded(h) => h.history(q).await,
        }
    }

    /// Numeric aggregates per bucket.
    pub async fn aggregate(
        &self,
        q: &AggregateQuery,
    ) -> Result<Vec<AggregateSeries>, HistoryError> {
        match self {
            HistoryStore::Influx(h) => h.aggregate(q).await,
            HistoryStore::Embedded(h) => h.aggregate(q).await,
        }
    }

    /// Records per bucket and domain in `[start, end)`.
    pub async fn event_stats(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        interval_secs: u64,
    ) -> Result<Vec<StatsBucket>, HistoryError> {
        match self {
            HistoryStore::Influx(h) => h.event_stats(start, end, interval_secs).await,
            HistoryStore::Embedded(h) => h.event_stats(start, end, interval_secs).await,
        }
    }
}

/// A time in Unix microseconds (out of range: the epoch).
pub(crate) fn time_of(us: i64) -> DateTime<Utc> {
    chrono::TimeZone::timestamp_micros(&Utc, us)
        .single()
        .unwrap_or_default()
}

/// One stored record as a backend reads it, before paging and neighbours.
#[derive(Debug)]
pub(crate) struct StoredRow {
    pub(crate) time_us: i64,
    pub(crate) entity_id: String,
    pub(crate) state: Option<String>,
    pub(crate) value: Option<f64>,
    pub(crate) attributes: Map<String, Value>,
}

/// The page of `rows` for `q`: only the query's entities and records after the cursor, in page
/// order, each (time, entity) once, at most `q.limit`. Returns the next page's cursor.
pub(crate) fn into_page(rows: &mut Vec<StoredRow>, q: &HistoryQuery) -> Option<String> {
    rows.retain(|r| {
        q.entity_ids.contains(&r.entity_id)
            && after_cursor(q.order, q.after.as_ref(), r.time_us, &r.entity_id)
    });
    let order = record_order(q.order);
    rows.sort_by(|a, b| {
        order(
            &(a.time_us, a.entity_id.clone()),
            &(b.time_us, b.entity_id.clone()),
        )
    });
    rows.dedup_by(|a, b| a.time_us == b.time_us && a.entity_id == b.entity_id);
    let more = rows.len() > q.limit;
    rows.truncate(q.limit);
    more.then(|| rows.last()).flatten().map(|r| {
        Cursor {
            time_us: r.time_us,
            entity_id: r.entity_id.clone(),
        }
        .encode()
    })
}

/// Each entity of a page with the times of its first and last record, by entity id: where a
/// backend looks for the records just outside the page.
pub(crate) fn page_edges(rows: &[StoredRow]) -> Vec<(String, i64, i64)> {
    let mut edges: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for r in rows {
        let e = edges
            .entry(r.entity_id.as_str())
            .or_insert((r.time_us, r.time_us));
        e.0 = e.0.min(r.time_us);
        e.1 = e.1.max(r.time_us);
    }
    edges
        .into_iter()
        .map(|(entity, (first, last))| (entity.to_owned(), first, last))
        .collect()
}

/// The page's records with previous state and durations: from the page itself, and at its edges
/// from `before` (each entity's record before its first: time and state) and `after` (the time of
/// each entity's record after its last).
pub(crate) fn with_neighbours(
    rows: Vec<StoredRow>,
    before: &HashMap<String, (i64, Option<String>)>,
    after: &HashMap<String, i64>,
) -> Vec<HistoryRecord> {
    // per entity: indexes of its rows in chronological order
    let mut chrono_rows: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        chrono_rows.entry(r.entity_id.as_str()).or_default().push(i);
    }
    let mut previous: Vec<Option<(i64, Option<String>)>> = vec![None; rows.len()];
    let mut next: Vec<Option<i64>> = vec![None; rows.len()];
    for (entity, idx) in &mut chrono_rows {
        idx.sort_by_key(|&i| rows[i].time_us);
        for (k, &i) in idx.iter().enumerate() {
            previous[i] = match k.checked_sub(1) {
                None => before.get(*entity).cloned(),
                Some(p) => Some((rows[idx[p]].time_us, rows[idx[p]].state.clone())),
            };
            next[i] = match idx.get(k + 1) {
                None => after.get(*entity).copied(),
                Some(&n) => Some(rows[n].time_us),
            };
        }
    }
    let secs = |from: i64, to: i64| (to - from) as f64 / 1e6;
    rows.into_iter()
        .zip(previous.into_iter().zip(next))
        .map(|(r, (prev, next))| HistoryRecord {
            time: time_of(r.time_us),
            previous_duration_secs: prev.as_ref().map(|(t, _)| secs(*t, r.time_us)),
            previous_state: prev.and_then(|(_, s)| s),
            duration_secs: next.map(|t| secs(r.time_us, t)),
            entity_id: r.entity_id,
            state: r.state,
            value: r.value,
            attributes: r.attributes,
        })
        .collect()
}

/// Bucket widths offered when the caller lets HomeIQ choose, seconds.
const NICE_INTERVALS: &[u64] = &[
    1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172_800, 604_800,
];

/// The smallest "round" bucket width that splits `span_secs` into at most `max_points` buckets.
pub fn choose_interval(span_secs: u64, max_points: u64) -> u64 {
    let max_points = max_points.max(1);
    let needed = span_secs.div_ceil(max_points).max(1);
    NICE_INTERVALS
        .iter()
        .copied()
        .find(|&i| i >= needed)
        .unwrap_or_else(|| needed.div_ceil(86_400) * 86_400)
}

/// Merges the rows of one record into a key order: ascending `(time, entity)` or its reverse.
pub(crate) fn record_order(
    order: Order,
) -> impl Fn(&(i64, String), &(i64, String)) -> std::cmp::Ordering {
    move |a, b| {
        let ord = a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1));
        match order {
            Order::Ascending => ord,
            Order::Descending => ord.reverse(),
        }
    }
}

/// Whether a record lies strictly after the cursor in the page order.
pub(crate) fn after_cursor(
    order: Order,
    cursor: Option<&Cursor>,
    time_us: i64,
    entity: &str,
) -> bool {
    let Some(c) = cursor else { return true };
    let key = (time_us, entity.to_owned());
    let at = (c.time_us, c.entity_id.clone());
    record_order(order)(&key, &at) == std::cmp::Ordering::Greater
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_round_and_bounded() {
        assert_eq!(choose_interval(3600, 500), 10);
        assert_eq!(choose_interval(30 * 86_400, 500), 7200);
        assert_eq!(choose_interval(30 * 86_400, 10_000), 300);
        assert_eq!(choose_interval(0, 10), 1);
        assert_eq!(choose_interval(10 * 365 * 86_400, 2), 1_825 * 86_400);
        for (span, max) in [(86_400_u64, 7_u64), (7 * 86_400, 168), (123_457, 999)] {
            assert!(span.div_ceil(choose_interval(span, max)) <= max);
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            time_us: 1_700_000_000_123_456,
            entity_id: "sensor.a_b".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in ["", "12", "x_sensor.a", "12_", "12_nodot"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn after_cursor_respects_order_and_ties() {
        let c = Cursor {
            time_us: 10,
            entity_id: "light.b".into(),
        };
        assert!(after_cursor(Order::Ascending, Some(&c), 10, "light.c"));
        assert!(!after_cursor(Order::Ascending, Some(&c), 10, "light.b"));
        assert!(!after_cursor(Order::Ascending, Some(&c), 9, "light.z"));
        assert!(after_cursor(Order::Descending, Some(&c), 10, "light.a"));
        assert!(!after_cursor(Order::Descending, Some(&c), 11, "light.a"));
    }
}
