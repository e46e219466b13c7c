//! Reading history back: one interface over the storage backends.
//!
//! [`HistoryStore`] answers the API's three history questions: the records of some entities in a
//! time range ([`HistoryStore::history`], keyset-paged), numeric aggregates per interval
//! ([`HistoryStore::aggregate`]) and events per minute by domain ([`HistoryStore::event_stats`]).
//! Every query is bounded by its caller in time range, entities and rows. The InfluxDB backend
//! ([`InfluxHistory`]) reads either schema; the embedded backend ([`EmbeddedHistory`]) reads
//! `history.db` (see [`crate::store::embedded`]). Both answer with identical JSON for the same
//! points.

use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) use crate::store::embedded::EmbeddedHistory;
pub(crate) use crate::store::influx::InfluxHistory;

use crate::store::influx::InfluxError;
use crate::store::origin::{Origin, OriginKind};

/// Why a history query failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HistoryError {
    /// The backend cannot be reached (connection refused, timeout).
    #[error("history storage is unreachable: {0}")]
    Unavailable(String),
    /// The backend answered with an error.
    #[error("history storage failed: {0}")]
    Backend(String),
    /// The answer would be larger than HomeIQ holds in memory: ask for less.
    #[error("history storage failed: {0}")]
    TooLarge(String),
}

impl From<InfluxError> for HistoryError {
    fn from(e: InfluxError) -> Self {
        match e {
            InfluxError::Transport(m) => HistoryError::Unavailable(format!("InfluxDB: {m}")),
            InfluxError::Status { status, message } if status >= 500 => {
                HistoryError::Unavailable(format!("InfluxDB answered HTTP {status}: {message}"))
            }
            too_large @ InfluxError::TooLarge { .. } => {
                HistoryError::TooLarge(too_large.to_string())
            }
            other => HistoryError::Backend(other.to_string()),
        }
    }
}

/// Order of history records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Order {
    /// Oldest first.
    #[default]
    Ascending,
    /// Newest first.
    Descending,
}

/// Where the previous page ended: the last record's time (µs) and entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Time of the last record returned, Unix microseconds.
    pub time_us: i64,
    /// Its entity.
    pub entity_id: String,
}

impl Cursor {
    /// The opaque text form used in URLs (`<µs>_<entity_id>`).
    pub(crate) fn encode(&self) -> String {
        format!("{}_{}", self.time_us, self.entity_id)
    }

    /// Parses [`Cursor::encode`]'s form.
    pub(crate) fn decode(text: &str) -> Option<Self> {
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
pub(crate) struct HistoryQuery {
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
pub(crate) struct HistoryRecord {
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
    /// Who caused the change: `unknown` for records read back from Home Assistant's history
    /// (backfill), the connect-time snapshot, and records stored before HomeIQ kept origins.
    pub origin: Origin,
    /// The state of the entity's record before this one.
    pub previous_state: Option<String>,
    /// How long that previous record lasted (seconds until this one).
    pub previous_duration_secs: Option<f64>,
    /// How long this record lasted (seconds until the entity's next record); `null` while it is
    /// the newest.
    pub duration_secs: Option<f64>,
}

/// Where an answer's numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
pub(crate) enum Tier {
    /// The raw points.
    #[serde(rename = "raw")]
    Raw,
    /// 5-minute rollups.
    #[serde(rename = "5m")]
    FiveMinute,
    /// Hourly rollups.
    #[serde(rename = "1h")]
    Hour,
    /// Daily rollups (the home's local days).
    #[serde(rename = "1d")]
    Day,
    /// Home Assistant's long-term statistics, imported (hourly; no count, no last).
    #[serde(rename = "imported")]
    Imported,
}

impl Tier {
    /// The stored number.
    pub(crate) fn id(self) -> i64 {
        match self {
            Tier::Raw => 0,
            Tier::FiveMinute => 1,
            Tier::Hour => 2,
            Tier::Day => 3,
            Tier::Imported => 4,
        }
    }
}

/// One page of records.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct HistoryPage {
    /// The records, in the requested order.
    pub items: Vec<HistoryRecord>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// `raw`: stored records. A range wholly before the oldest raw record still stored (raw
    /// retention) is answered from rollups instead (`1h`, or `1d` where hourly rows expired, or
    /// `imported`): one record per entity and period, at the period's start, `value` its
    /// time-weighted mean, `state` its last value, `duration_secs` the period, and `attributes`
    /// `min`, `max`, `count` and `last`.
    pub tier: Tier,
}

/// An aggregate query.
#[derive(Debug, Clone)]
pub(crate) struct AggregateQuery {
    /// The entities (numeric values only).
    pub entity_ids: Vec<String>,
    /// Range start (inclusive).
    pub start: DateTime<Utc>,
    /// Range end (exclusive).
    pub end: DateTime<Utc>,
    /// Bucket width, seconds.
    pub interval_secs: u64,
}

/// One bucket of an aggregate series. The entity's value is a step function: each record's
/// `value` holds until its next record; a record without a number (`unavailable`, text) holds no
/// value. The numbers are the same whether read from raw records or rollups.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct AggregatePoint {
    /// Bucket start.
    pub time: DateTime<Utc>,
    /// Time-weighted mean over the part of the bucket in which a value held (as Home Assistant's
    /// statistics), the value at the bucket's start carried in from the record before it.
    pub mean: Option<f64>,
    /// Smallest value that held in the bucket (the carried-in one included).
    pub min: Option<f64>,
    /// Largest value that held in the bucket.
    pub max: Option<f64>,
    /// Records with a number in the bucket (heartbeat rewrites not counted); 0 when only a
    /// carried-in value held.
    pub count: u64,
    /// The last value that held in the bucket.
    pub last: Option<f64>,
}

/// Aggregates of one entity.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct AggregateSeries {
    /// The entity.
    pub entity_id: String,
    /// Buckets in which a value held, oldest first (others are left out).
    pub points: Vec<AggregatePoint>,
}

/// Events in one minute (or other bucket).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct StatsBucket {
    /// Bucket start.
    pub time: DateTime<Utc>,
    /// Records in the bucket.
    pub total: u64,
    /// Records per domain.
    pub by_domain: BTreeMap<String, u64>,
}

/// The history backends.
#[derive(Debug, Clone)]
pub(crate) enum HistoryStore {
    /// InfluxDB 1.x over HTTP.
    Influx(InfluxHistory),
    /// The embedded SQLite store (`storage = embedded`).
    Embedded(EmbeddedHistory),
}

impl HistoryStore {
    /// Records of the query's entities, one page.
    pub(crate) async fn history(&self, q: &HistoryQuery) -> Result<HistoryPage, HistoryError> {
        match self {
            HistoryStore::Influx(h) => h.history(q).await,
            HistoryStore::Embedded(h) => h.history(q).await,
        }
    }

    /// How much history the analysis reads per [`HistoryStore::changes`] call. InfluxDB plans
    /// every query over every series of the analysed domains (in `ha_compat` every measurement,
    /// one per entity without a unit): about 0.1 s of its CPU per statement before a point is
    /// read, so it is asked for a day at a time (a month of the large home: 0.43 s a day
    /// against 4 × 0.22 s in 6-hour slices). The embedded store seeks each entity's range of its
    /// key, with no such overhead: 6 hours keep the slices held in memory small.
    pub(crate) fn analysis_slice(&self) -> chrono::Duration {
        match self {
            HistoryStore::Influx(_) => chrono::Duration::hours(24),
            HistoryStore::Embedded(_) => chrono::Duration::hours(6),
        }
    }

    /// Every stored state of entities of `domains` in `[start, end)`, oldest first (ties by
    /// entity id): what the pattern detectors read, one slice of the analysis window at a time.
    /// States the schema stored only as a number come back as their text.
    pub(crate) async fn changes(
        &self,
        domains: &[&str],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<StoredChange>, HistoryError> {
        let mut out = match self {
            HistoryStore::Influx(h) => h.changes(domains, start, end).await?,
            HistoryStore::Embedded(h) => h.changes(domains, start, end).await?,
        };
        out.sort_by(|a, b| {
            a.time_us
                .cmp(&b.time_us)
                .then_with(|| a.entity_id.cmp(&b.entity_id))
        });
        Ok(out)
    }

    /// Every stored point of every entity in `[start_us, end_us)`, sorted by entity, then time
    /// (the rollups' bulk read of one chunk).
    pub(crate) async fn points_between(
        &self,
        start_us: i64,
        end_us: i64,
    ) -> Result<Vec<RawPoint>, HistoryError> {
        let mut out = match self {
            HistoryStore::Influx(h) => h.raw_points(None, start_us, end_us).await?,
            HistoryStore::Embedded(h) => h.raw_points(None, start_us, end_us).await?,
        };
        sort_points(&mut out);
        Ok(out)
    }

    /// The stored points of `entity` in `[start_us, end_us)`, oldest first.
    pub(crate) async fn entity_points(
        &self,
        entity: &str,
        start_us: i64,
        end_us: i64,
    ) -> Result<Vec<RawPoint>, HistoryError> {
        let mut out = match self {
            HistoryStore::Influx(h) => h.raw_points(Some(entity), start_us, end_us).await?,
            HistoryStore::Embedded(h) => h.raw_points(Some(entity), start_us, end_us).await?,
        };
        sort_points(&mut out);
        Ok(out)
    }

    /// `entity`'s last point before `t_us` (`Before`) or first at or after it (`From`).
    pub(crate) async fn point_near(
        &self,
        entity: &str,
        t_us: i64,
        side: Side,
    ) -> Result<Option<RawPoint>, HistoryError> {
        match self {
            HistoryStore::Influx(h) => h.raw_point_near(entity, t_us, side).await,
            HistoryStore::Embedded(h) => h.raw_point_near(entity, t_us, side).await,
        }
    }

    /// The time of the oldest stored point, µs (`None`: nothing stored).
    pub(crate) async fn first_point_us(&self) -> Result<Option<i64>, HistoryError> {
        match self {
            HistoryStore::Influx(h) => h.first_point_us().await,
            HistoryStore::Embedded(h) => h.first_point_us().await,
        }
    }

    /// Records per bucket and domain in `[start, end)`.
    pub(crate) async fn event_stats(
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

/// Which neighbour of a time [`HistoryStore::point_near`] finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The last point before the time.
    Before,
    /// The first point at or after the time.
    From,
}

/// Sorts points by entity, then time (stable: equal times keep their read order).
fn sort_points(points: &mut [RawPoint]) {
    points.sort_by(|a, b| {
        a.entity_id
            .cmp(&b.entity_id)
            .then_with(|| a.time_us.cmp(&b.time_us))
    });
}

/// Whether a stored `state_class` attribute names a meter (`total_increasing`).
pub(crate) fn is_total_increasing(state_class: Option<&str>) -> bool {
    state_class == Some("total_increasing")
}

/// A time in Unix microseconds (out of range: the epoch).
pub(crate) fn time_of(us: i64) -> DateTime<Utc> {
    chrono::TimeZone::timestamp_micros(&Utc, us)
        .single()
        .unwrap_or_default()
}

/// One stored record as a backend reads it, before paging and neighbours.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredRow {
    pub(crate) time_us: i64,
    pub(crate) entity_id: String,
    pub(crate) state: Option<String>,
    pub(crate) value: Option<f64>,
    pub(crate) attributes: Map<String, Value>,
    /// Who caused the change, when it was stored (live changes).
    pub(crate) origin: Option<Origin>,
}

/// One stored point as rollups and the raw aggregate read it ([`HistoryStore::points_between`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawPoint {
    /// The entity.
    pub entity_id: String,
    /// When, µs since the epoch.
    pub time_us: i64,
    /// The number, when the state is one (or on/off-like).
    pub value: Option<f64>,
    /// The state text, when stored.
    pub state: Option<String>,
    /// A heartbeat rewrite of the current value (origin `heartbeat`): holds the value, is never
    /// a sample.
    pub heartbeat: bool,
    /// The entity's `state_class` was `total_increasing` at this point.
    pub total_increasing: bool,
}

/// One stored state as the pattern detectors read it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredChange {
    /// The entity.
    pub(crate) entity_id: String,
    /// When (the state's `last_updated`, or `time_fired` in `ha_compat`), µs since the epoch.
    pub(crate) time_us: i64,
    /// The state string.
    pub(crate) state: String,
    /// Who caused it (`Unknown` when not stored).
    pub(crate) origin: OriginKind,
}

/// Domains are identifiers (`light`, `media_player`): anything else is never asked for.
pub(crate) fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// History requests a backend serves at once; more wait their turn before their first query.
/// Bounds the memory of decoded answers (a request holds its page while it asks for the page's
/// neighbours, so a limit per statement let 64 waiting requests hold 64 pages: 190 MB resident)
/// and keeps the storage from thrashing under many concurrent clients.
pub(crate) const CONCURRENT_REQUESTS: usize = 4;

/// The request slots of one backend ([`CONCURRENT_REQUESTS`]); cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            permits: Arc::new(Semaphore::new(CONCURRENT_REQUESTS)),
            waiting: Arc::default(),
        }
    }
}

impl Slots {
    /// Waits for a slot; hold it until the request's last query is answered.
    pub(crate) async fn take(&self) -> Result<OwnedSemaphorePermit, HistoryError> {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, AtomicOrdering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, AtomicOrdering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| HistoryError::Unavailable("shutting down".into()))
    }

    /// Requests waiting for a slot.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(AtomicOrdering::Relaxed)
    }
}

/// Rows a page may read ahead per entity, at least (see [`merge_page`]).
const MIN_READ_AHEAD: usize = 32;

/// One entity's next read: at most `limit` of its records after `after` (the time of the last
/// record it read, µs), in page order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fetch<'a> {
    /// The entity.
    pub(crate) entity: &'a str,
    /// Continue after the record at this time (`None`: from the range's or cursor's edge).
    pub(crate) after: Option<i64>,
    /// Most records to return.
    pub(crate) limit: usize,
}

/// What one [`Fetch`] returned.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    /// The entity's records, in page order (at most the fetch's `limit`).
    pub(crate) rows: Vec<StoredRow>,
    /// Whether records may follow the last one.
    pub(crate) more: bool,
}

/// Event counts per bucket start (µs) and domain, as the API's buckets (empty buckets and zero
/// counts are left out by the caller).
pub(crate) fn stats_buckets(buckets: BTreeMap<i64, BTreeMap<String, u64>>) -> Vec<StatsBucket> {
    buckets
        .into_iter()
        .map(|(time, by_domain)| StatsBucket {
            time: time_of(time),
            total: by_domain.values().sum(),
            by_domain,
        })
        .collect()
}

/// A backend's reads of history pages.
pub(crate) trait PageReader {
    /// One answer per fetch, in the same order.
    async fn read(
        &self,
        q: &HistoryQuery,
        fetches: &[Fetch<'_>],
    ) -> Result<Vec<Fetched>, HistoryError>;
}

/// A backend's history pages: its reads, its request slots and the neighbours of a page's
/// records; the page itself is assembled the same way for both.
pub(crate) trait PageBackend: PageReader {
    /// The backend's request slots.
    fn slots(&self) -> &Slots;

    /// The page's records with their neighbours (the states before and after each).
    async fn with_neighbours(
        &self,
        rows: Vec<StoredRow>,
    ) -> Result<Vec<HistoryRecord>, HistoryError>;

    /// One page of records, with each record's neighbours (one of the request slots held
    /// throughout).
    async fn history(&self, q: &HistoryQuery) -> Result<HistoryPage, HistoryError> {
        let _slot = self.slots().take().await?;
        let page = merge_page(self, q).await?;
        tracing::debug!(
            records = page.peak_rows,
            "most history records held for one page"
        );
        let items = self.with_neighbours(page.rows).await?;
        Ok(HistoryPage {
            items,
            next_cursor: page.next_cursor,
            tier: Tier::Raw,
        })
    }
}

/// The bounds of an entity's next read for `q`, inclusive, in units of `per_us` per µs (1: µs,
/// 1000: ns): the query's range, narrowed to the records after the cursor in page order (within
/// the cursor's microsecond, entities after it when ascending, before it when descending) and
/// after `after`, the last record read.
pub(crate) fn read_bounds(
    q: &HistoryQuery,
    entity: &str,
    after: Option<i64>,
    per_us: i128,
) -> (i128, i128) {
    let at = |us: i64| i128::from(us) * per_us;
    let (mut lower, mut upper) = (at(q.start.timestamp_micros()), at(q.end.timestamp_micros()));
    match q.order {
        Order::Ascending => {
            if let Some(c) = &q.after {
                let from = if entity > c.entity_id.as_str() {
                    at(c.time_us)
                } else {
                    at(c.time_us) + per_us
                };
                lower = lower.max(from);
            }
            if let Some(a) = after {
                lower = lower.max(at(a) + per_us);
            }
        }
        Order::Descending => {
            if let Some(c) = &q.after {
                let to = if entity < c.entity_id.as_str() {
                    at(c.time_us)
                } else {
                    at(c.time_us) - 1
                };
                upper = upper.min(to);
            }
            if let Some(a) = after {
                upper = upper.min(at(a) - 1);
            }
        }
    }
    (lower, upper)
}

/// A page merged from its entities' reads.
#[derive(Debug)]
pub(crate) struct MergedPage {
    /// The page's records, in page order.
    pub(crate) rows: Vec<StoredRow>,
    /// The next page's cursor.
    pub(crate) next_cursor: Option<String>,
    /// Most records held at once (page and read-ahead): what the budget bounds.
    pub(crate) peak_rows: usize,
}

/// The head of an entity's read-ahead in the merge: entities are indexed in ascending id order,
/// so `(time, index)` orders records as `(time, entity)` does.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    time_us: i64,
    source: usize,
    order: Order,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let key = (self.time_us, self.source).cmp(&(other.time_us, other.source));
        // `BinaryHeap` pops the greatest: the first record in page order must be the greatest
        match self.order {
            Order::Ascending => key.reverse(),
            Order::Descending => key,
        }
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

struct Source {
    buf: VecDeque<StoredRow>,
    after: Option<i64>,
    more: bool,
}

impl Source {
    fn fill(&mut self, fetched: Fetched) -> usize {
        let n = fetched.rows.len();
        if let Some(last) = fetched.rows.last() {
            self.after = Some(last.time_us);
        }
        // nothing returned: nothing follows, whatever the reader says (no endless loop)
        self.more = fetched.more && n > 0;
        self.buf.extend(fetched.rows);
        n
    }
}

/// The page of `q`: a k-way merge of its entities' records in page order, each `(time, entity)`
/// once, at most `q.limit`, with the next page's cursor.
///
/// Memory is one budget for the whole page, not one per entity: the merge holds the page (at most
/// `limit + 1` records) and each entity's read-ahead, read in chunks of
/// `max(32, (limit + 1) / entities)` records (never more than the page still needs), so it
/// holds at most `limit + 1 + entities × chunk` records (about twice the page), where reading
/// `limit + 1` records of every entity held up to 50 pages.
pub(crate) async fn merge_page<R: PageReader + ?Sized>(
    reader: &R,
    q: &HistoryQuery,
) -> Result<MergedPage, HistoryError> {
    let mut entities: Vec<&str> = q.entity_ids.iter().map(String::as_str).collect();
    entities.sort_unstable();
    entities.dedup();
    let budget = q.limit.saturating_add(1);
    let chunk = budget
        .div_ceil(entities.len().max(1))
        .max(MIN_READ_AHEAD)
        .min(budget);
    let mut sources: Vec<Source> = entities
        .iter()
        .map(|_| Source {
            buf: VecDeque::new(),
            after: None,
            more: true,
        })
        .collect();
    let first: Vec<Fetch<'_>> = entities
        .iter()
        .map(|&entity| Fetch {
            entity,
            after: None,
            limit: chunk,
        })
        .collect();
    let mut held = 0usize;
    let mut heap = BinaryHeap::with_capacity(entities.len());
    let answers = reader.read(q, &first).await?;
    for (i, (source, fetched)) in sources.iter_mut().zip(answers).enumerate() {
        held += source.fill(fetched);
        if let Some(front) = source.buf.front() {
            heap.push(Head {
                time_us: front.time_us,
                source: i,
                order: q.order,
            });
        }
    }
    let mut peak = held;
    let mut rows: Vec<StoredRow> = Vec::new();
    while rows.len() < budget {
        let Some(head) = heap.pop() else { break };
        let i = head.source;
        let Some(row) = sources[i].buf.pop_front() else {
            continue;
        };
        let duplicate = rows
            .last()
            .is_some_and(|l| l.time_us == row.time_us && l.entity_id == row.entity_id);
        if duplicate || !after_cursor(q.order, q.after.as_ref(), row.time_us, &row.entity_id) {
            held -= 1;
        } else {
            rows.push(row);
        }
        let source = &mut sources[i];
        if source.buf.is_empty() && source.more && rows.len() < budget {
            let fetch = Fetch {
                entity: entities[i],
                after: source.after,
                limit: chunk.min(budget - rows.len()),
            };
            let fetched = reader
                .read(q, std::slice::from_ref(&fetch))
                .await?
                .pop()
                .unwrap_or_default();
            held += source.fill(fetched);
            peak = peak.max(held);
        }
        if let Some(front) = source.buf.front() {
            heap.push(Head {
                time_us: front.time_us,
                source: i,
                order: q.order,
            });
        }
    }
    let more = rows.len() > q.limit;
    rows.truncate(q.limit);
    let next_cursor = more.then(|| rows.last()).flatten().map(|r| {
        Cursor {
            time_us: r.time_us,
            entity_id: r.entity_id.clone(),
        }
        .encode()
    });
    Ok(MergedPage {
        rows,
        next_cursor,
        peak_rows: peak,
    })
}

/// The page of `rows` for `q`: only the query's entities and records after the cursor, in page
/// order, each (time, entity) once, at most `q.limit`. Returns the next page's cursor. The
/// reference [`merge_page`] is checked against.
#[cfg(test)]
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
            origin: r.origin.unwrap_or_else(Origin::unknown),
        })
        .collect()
}

/// Bucket widths offered when the caller lets HomeIQ choose, seconds.
const NICE_INTERVALS: &[u64] = &[
    1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172_800, 604_800,
];

/// The smallest "round" bucket width that splits `span_secs` into at most `max_points` buckets.
pub(crate) fn choose_interval(span_secs: u64, max_points: u64) -> u64 {
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

    /// History in memory, read as a backend reads it: each entity's records in page order
    /// (equal times in stored order), counting the rows handed out.
    struct Memory {
        rows: Vec<StoredRow>,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl PageReader for Memory {
        async fn read(
            &self,
            q: &HistoryQuery,
            fetches: &[Fetch<'_>],
        ) -> Result<Vec<Fetched>, HistoryError> {
            self.reads.fetch_add(1, AtomicOrdering::Relaxed);
            Ok(fetches
                .iter()
                .map(|f| {
                    let (lower, upper) = read_bounds(q, f.entity, f.after, 1);
                    let mut rows: Vec<StoredRow> = self
                        .rows
                        .iter()
                        .filter(|r| {
                            r.entity_id == f.entity
                                && (lower..=upper).contains(&i128::from(r.time_us))
                        })
                        .cloned()
                        .collect();
                    match q.order {
                        Order::Ascending => rows.sort_by_key(|r| r.time_us),
                        Order::Descending => rows.sort_by_key(|r| std::cmp::Reverse(r.time_us)),
                    }
                    let more = rows.len() > f.limit;
                    rows.truncate(f.limit);
                    Fetched { rows, more }
                })
                .collect())
        }
    }

    fn row(time_us: i64, entity: &str, state: &str) -> StoredRow {
        StoredRow {
            time_us,
            entity_id: entity.to_owned(),
            state: Some(state.to_owned()),
            value: None,
            attributes: Map::new(),
            origin: None,
        }
    }

    fn query(entities: &[&str], limit: usize, order: Order, after: Option<Cursor>) -> HistoryQuery {
        HistoryQuery {
            entity_ids: entities.iter().map(|e| (*e).to_owned()).collect(),
            start: time_of(0),
            end: time_of(1_000_000),
            order,
            limit,
            after,
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn a_page_over_fifty_entities_holds_one_budget_not_fifty_pages() {
        let entities: Vec<String> = (0..50).map(|i| format!("sensor.e{i:02}")).collect();
        // every entity has 2,000 records: reading `limit + 1` of each held 50 pages
        let rows: Vec<StoredRow> = entities
            .iter()
            .enumerate()
            .flat_map(|(k, e)| (0..2_000).map(move |t| row(t * 50 + k as i64, e, "x")))
            .collect();
        let memory = Memory {
            rows,
            reads: Default::default(),
        };
        let names: Vec<&str> = entities.iter().map(String::as_str).collect();
        for limit in [1, 100, 1_000, 10_000] {
            let q = query(&names, limit, Order::Ascending, None);
            let page = block_on(merge_page(&memory, &q)).expect("page");
            assert_eq!(page.rows.len(), limit);
            // the page, plus at most 32 records (or a fiftieth of the page) per entity
            let chunk = (limit + 1).div_ceil(50).max(MIN_READ_AHEAD).min(limit + 1);
            let bound = limit + 1 + 50 * chunk;
            assert!(
                page.peak_rows <= bound,
                "{limit}: {} > {bound}",
                page.peak_rows
            );
            assert!(page.peak_rows <= 2 * (limit + 1) + 50 * MIN_READ_AHEAD);
        }
        // one entity with all the records among 49 nearly empty ones: still one budget
        let mut rows: Vec<StoredRow> = (0..20_000).map(|t| row(t, "sensor.busy", "x")).collect();
        rows.extend((0..49).map(|k| row(30_000 + k, &format!("sensor.quiet{k:02}"), "y")));
        let memory = Memory {
            rows,
            reads: Default::default(),
        };
        let mut names = vec!["sensor.busy".to_owned()];
        names.extend((0..49).map(|k| format!("sensor.quiet{k:02}")));
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let q = query(&names, 10_000, Order::Descending, None);
        let page = block_on(merge_page(&memory, &q)).expect("page");
        assert_eq!(page.rows.len(), 10_000);
        assert!(page.peak_rows <= 10_001 + 50 * 201, "{}", page.peak_rows);
    }

    proptest::proptest! {
        /// The merge answers exactly what sorting every record of every entity answered: same
        /// records, order, ties, duplicates dropped, cursor, for any limit, order and cursor.
        #[test]
        fn the_merge_pages_as_sorting_everything_did(
            raw in proptest::collection::vec((0i64..40, 0usize..4, 0u8..3), 0..120),
            limit in 1usize..40,
            descending in proptest::bool::ANY,
            cursor in proptest::option::of((0i64..40, 0usize..5)),
        ) {
            let names = ["light.a", "light.b", "sensor.c", "switch.d", "light.bb"];
            let rows: Vec<StoredRow> = raw
                .iter()
                .map(|&(t, e, s)| row(t, names[e], &s.to_string()))
                .collect();
            let order = if descending { Order::Descending } else { Order::Ascending };
            let after = cursor.map(|(t, e)| Cursor { time_us: t, entity_id: names[e].to_owned() });
            let q = query(&["switch.d", "light.a", "light.b", "sensor.c"], limit, order, after);
            let memory = Memory { rows: rows.clone(), reads: Default::default() };
            let page = block_on(merge_page(&memory, &q)).expect("page");
            let mut want = rows;
            let want_cursor = into_page(&mut want, &q);
            proptest::prop_assert_eq!(&page.rows, &want);
            proptest::prop_assert_eq!(page.next_cursor, want_cursor);
            proptest::prop_assert!(page.peak_rows <= limit + 1 + 4 * (limit + 1).max(MIN_READ_AHEAD));
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
