//! History from InfluxDB 1.x with InfluxQL, for both schemas.
//!
//! * `homeiq`: an entity's records are the points of measurement `<domain>` with tag
//!   `entity_id = <entity id>`; the state is field `state`, the number field `value`, and the
//!   attributes are the other fields with their type suffixes removed (`mode_str` → `mode`,
//!   `rgb_json` → parsed JSON), plus the `unit` and `device_class` tags as
//!   `unit_of_measurement` and `device_class`.
//! * `ha_compat`: an entity's points are spread over measurements named by unit; they are found
//!   with `FROM /.*/ WHERE domain = … AND entity_id = <object id>`. A numeric state was stored only
//!   as `value`, so its text is rebuilt from the number.
//!
//! A page is a k-way merge of its entities' records (see [`merge_page`]): one statement per entity
//! with `LIMIT` its share of the page, read again from its last record when the merge needs more,
//! so a page holds about `limit + 1` records however many entities it names. Several statements
//! go out in one request (InfluxDB runs them in order); times are exchanged in microseconds
//! (`epoch=u`), nanoseconds in the statements. A request holds one of
//! [`CONCURRENT_REQUESTS`](crate::store::history::CONCURRENT_REQUESTS) slots for all its queries.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::config::SchemaMode;
use crate::ha::model::{domain_of, object_id_of};
use crate::store::history::{
    Fetch, Fetched, HistoryError, HistoryQuery, HistoryRecord, Order, PageBackend, PageReader,
    RawPoint, Side, Slots, StatsBucket, StoredChange, StoredRow, is_domain, is_total_increasing,
    page_edges, read_bounds, stats_buckets, with_neighbours,
};
use crate::store::influx::{InfluxClient, Series, quote_ident, quote_literal};
use crate::store::origin::{Origin, OriginKind};
use crate::store::schema::{HOMEIQ_TAGS, ORIGIN_FIELDS, ORIGIN_MEASUREMENT, homeiq_attribute};

/// Who caused each change, by time, from a series of the origin points `ha_compat` writes
/// beside its own (same entity tags and time).
fn origins_of(series: &Series, out: &mut HashMap<i64, Origin>) {
    let col = |name: &str| series.columns.iter().position(|c| c == name);
    let (Some(t), Some(kind)) = (col("time"), col(ORIGIN_FIELDS[0])) else {
        return;
    };
    let id = col(ORIGIN_FIELDS[1]);
    for v in &series.values {
        let (Some(time), Some(k)) = (
            v.get(t).and_then(as_i64),
            v.get(kind).and_then(Value::as_str),
        ) else {
            continue;
        };
        let id = id
            .and_then(|i| v.get(i))
            .and_then(Value::as_str)
            .map(str::to_owned);
        out.insert(time, Origin::stored(k, id));
    }
}

/// History read from InfluxDB.
#[derive(Debug, Clone)]
pub(crate) struct InfluxHistory {
    client: InfluxClient,
    schema: SchemaMode,
    slots: Slots,
}

fn ns(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp_micros()) * 1000
}

fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

/// Formats a number stored by `ha_compat` back to a state text (`21.0` → `21.0`, as Python).
fn number_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

impl InfluxHistory {
    /// History through `client`, whose points were written in `schema`.
    pub(crate) fn new(client: InfluxClient, schema: SchemaMode) -> Self {
        Self {
            client,
            schema,
            slots: Slots::default(),
        }
    }

    /// Runs `q` (the caller holds one of the request [`Slots`]).
    async fn query(&self, q: &str) -> Result<crate::store::influx::QueryResult, HistoryError> {
        Ok(self.client.query_us(q).await?)
    }

    /// `FROM` and `WHERE` (without time) selecting one entity's points.
    fn source(&self, entity_id: &str) -> (String, String) {
        match self.schema {
            SchemaMode::Homeiq => (
                quote_ident(domain_of(entity_id)),
                format!("\"entity_id\" = {}", quote_literal(entity_id)),
            ),
            SchemaMode::HaCompat => (
                "/.*/".to_owned(),
                format!(
                    "\"domain\" = {} AND \"entity_id\" = {}",
                    quote_literal(domain_of(entity_id)),
                    quote_literal(object_id_of(entity_id))
                ),
            ),
        }
    }

    /// The statement of one entity's next read: its records in the fetch's bounds, in page
    /// order, `LIMIT` the fetch's size (per series: `ha_compat` spreads an entity over
    /// measurements). `None` when the bounds are empty.
    fn page_statement(&self, q: &HistoryQuery, f: &Fetch<'_>) -> Option<String> {
        let (lower, upper) = read_bounds(q, f.entity, f.after, 1000);
        if lower > upper || f.limit == 0 {
            return None;
        }
        let dir = match q.order {
            Order::Ascending => "ASC",
            Order::Descending => "DESC",
        };
        let (from, cond) = self.source(f.entity);
        Some(format!(
            "SELECT * FROM {from} WHERE {cond} AND time >= {lower} AND time <= {upper} ORDER BY time {dir} LIMIT {}",
            f.limit
        ))
    }

    /// One entity's records from its statement's series, in page order (ties in series order),
    /// at most `f.limit`. A series holding `limit` rows may have more beyond its last: records
    /// past the earliest such end (in page order) are left for the next read.
    fn fetched(&self, series: &[Series], f: &Fetch<'_>, order: Order) -> Fetched {
        let mut rows = Vec::new();
        let mut frontier: Option<i64> = None;
        let mut origins: HashMap<i64, Origin> = HashMap::new();
        for s in series {
            if self.schema == SchemaMode::HaCompat && s.name == ORIGIN_MEASUREMENT {
                origins_of(s, &mut origins);
                continue;
            }
            let before = rows.len();
            self.rows_of(s, Some(f.entity), &mut rows);
            if s.values.len() >= f.limit
                && let Some(last) = rows[before..].last()
            {
                let t = last.time_us;
                frontier = Some(match (frontier, order) {
                    (None, _) => t,
                    (Some(x), Order::Ascending) => x.min(t),
                    (Some(x), Order::Descending) => x.max(t),
                });
            }
        }
        // stable: equal times keep the order of their series
        match order {
            Order::Ascending => rows.sort_by_key(|r| r.time_us),
            Order::Descending => rows.sort_by_key(|r| std::cmp::Reverse(r.time_us)),
        }
        if let Some(f) = frontier {
            rows.retain(|r| match order {
                Order::Ascending => r.time_us <= f,
                Order::Descending => r.time_us >= f,
            });
        }
        let more = frontier.is_some() || rows.len() > f.limit;
        rows.truncate(f.limit);
        for r in &mut rows {
            if let Some(o) = origins.remove(&r.time_us) {
                r.origin = Some(o);
            }
        }
        Fetched { rows, more }
    }

    /// Decodes the rows of one series.
    fn rows_of(&self, series: &Series, entity: Option<&str>, out: &mut Vec<StoredRow>) {
        let col = |name: &str| series.columns.iter().position(|c| c == name);
        let Some(time_col) = col("time") else { return };
        let entity_col = col("entity_id");
        for values in &series.values {
            let Some(time_us) = values.get(time_col).and_then(as_i64) else {
                continue;
            };
            let entity_id = match entity {
                Some(e) => e.to_owned(),
                None => match entity_col
                    .and_then(|i| values.get(i))
                    .and_then(Value::as_str)
                {
                    Some(e) => e.to_owned(),
                    None => continue,
                },
            };
            let mut row = StoredRow {
                time_us,
                entity_id,
                state: None,
                value: None,
                attributes: Map::new(),
                origin: None,
            };
            for (name, v) in series.columns.iter().zip(values) {
                if name == "time" || v.is_null() {
                    continue;
                }
                self.put_column(&mut row, name, v);
            }
            if row.state.is_none()
                && let Some(v) = row.value
                && self.schema == SchemaMode::HaCompat
            {
                row.state = Some(number_text(v));
            }
            out.push(row);
        }
    }

    fn put_column(&self, row: &mut StoredRow, name: &str, v: &Value) {
        match name {
            "state" => row.state = v.as_str().map(str::to_owned),
            "value" => row.value = v.as_f64(),
            _ => match self.schema {
                SchemaMode::Homeiq => match name {
                    n if n == ORIGIN_FIELDS[0] => {
                        if let Some(kind) = v.as_str() {
                            let id = row.origin.take().and_then(|o| o.id);
                            row.origin = Some(Origin::stored(kind, id));
                        }
                    }
                    n if n == ORIGIN_FIELDS[1] => {
                        let o = row.origin.get_or_insert_with(Origin::unknown);
                        o.id = v.as_str().filter(|i| !i.is_empty()).map(str::to_owned);
                    }
                    "unit" => {
                        row.attributes
                            .insert("unit_of_measurement".into(), v.clone());
                    }
                    "device_class" => {
                        row.attributes.insert("device_class".into(), v.clone());
                    }
                    n if HOMEIQ_TAGS.contains(&n) => {}
                    n => {
                        let (key, value) = homeiq_attribute(n, v);
                        row.attributes.insert(key, value);
                    }
                },
                SchemaMode::HaCompat => match name {
                    "domain" | "entity_id" => {}
                    n => {
                        let key = n.strip_suffix("_str").unwrap_or(n);
                        // the float twin of a `_str` field (digit tail) is not an attribute
                        if n == key && row.attributes.contains_key(key) {
                            return;
                        }
                        row.attributes.insert(key.to_owned(), v.clone());
                    }
                },
            },
        }
    }

    /// Stored states of entities of `domains` in `[start, end)` (see
    /// [`HistoryStore::changes`](crate::store::history::HistoryStore::changes)): one statement,
    /// a series per entity (`homeiq`: the domains' measurements; `ha_compat`: every measurement,
    /// by the `domain` tag, with the origins beside them).
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
        let range = format!("time >= {} AND time < {}", ns(start), ns(end));
        let statement = match self.schema {
            SchemaMode::Homeiq => format!(
                "SELECT \"state\", \"{}\" FROM {} WHERE {range} GROUP BY \"entity_id\"",
                ORIGIN_FIELDS[0],
                domains
                    .iter()
                    .map(|d| quote_ident(d))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            // two statements: the states (the origins' measurement has neither field), then the
            // origins beside them (one statement for both sent a column of nulls in each row
            // of each: 3.3 instead of 2.6 MB a day of the large home, 6 % more of InfluxDB's
            // time)
            SchemaMode::HaCompat => {
                let domains = format!("\"domain\" =~ /^({})$/", domains.join("|"));
                format!(
                    "SELECT \"state\", \"value\" FROM /.*/ WHERE {domains} AND {range} GROUP BY \"domain\", \"entity_id\"; \
                     SELECT \"{}\" FROM {} WHERE {domains} AND {range} GROUP BY \"domain\", \"entity_id\"",
                    ORIGIN_FIELDS[0],
                    quote_ident(ORIGIN_MEASUREMENT),
                )
            }
        };
        let result = self.query(&statement).await?;
        let mut statements = result.statements.into_iter();
        let states = statements.next().map(|s| s.series).unwrap_or_default();
        // ha_compat: entity → its origins by time (each series comes in time order)
        let mut origins: HashMap<String, Vec<(i64, OriginKind)>> = HashMap::new();
        for s in statements.next().map(|s| s.series).unwrap_or_default() {
            let Some(entity_id) = entity_of(self.schema, &s) else {
                continue;
            };
            let col = |name: &str| s.columns.iter().position(|c| c == name);
            let (time, origin) = (col("time"), col(ORIGIN_FIELDS[0]));
            let times = origins.entry(entity_id).or_default();
            times.extend(s.values.iter().filter_map(|v| {
                let t = time.and_then(|i| v.get(i)).and_then(as_i64)?;
                let o = text(v, origin).map(OriginKind::parse)?;
                Some((t, o))
            }));
        }
        let mut out = Vec::new();
        for s in states {
            let Some(entity_id) = entity_of(self.schema, &s) else {
                continue;
            };
            let col = |name: &str| s.columns.iter().position(|c| c == name);
            let (time, state, value, origin) = (
                col("time"),
                col("state"),
                col("value"),
                col(ORIGIN_FIELDS[0]),
            );
            let beside = origins.get(&entity_id).map_or(&[][..], Vec::as_slice);
            for v in &s.values {
                let Some(time_us) = time.and_then(|i| v.get(i)).and_then(as_i64) else {
                    continue;
                };
                let origin = text(v, origin).map(OriginKind::parse).or_else(|| {
                    beside
                        .binary_search_by_key(&time_us, |(t, _)| *t)
                        .ok()
                        .map(|i| beside[i].1)
                });
                let text = text(v, state).map(str::to_owned).or_else(|| {
                    value
                        .and_then(|i| v.get(i))
                        .and_then(Value::as_f64)
                        .map(number_text)
                });
                let Some(text) = text else { continue };
                out.push(StoredChange {
                    entity_id: entity_id.clone(),
                    time_us,
                    state: text,
                    origin: origin.unwrap_or(OriginKind::Unknown),
                });
            }
        }
        Ok(out)
    }

    /// The fields a rollup reads.
    const RAW_FIELDS: &'static str = "\"state\", \"value\", \"origin\", \"state_class_str\"";

    /// Points in `[start_us, end_us)`, of one entity or of all (one statement, a series per
    /// entity).
    pub(crate) async fn raw_points(
        &self,
        entity: Option<&str>,
        start_us: i64,
        end_us: i64,
    ) -> Result<Vec<RawPoint>, HistoryError> {
        let _slot = self.slots.take().await?;
        let range = format!(
            "time >= {} AND time < {}",
            i128::from(start_us) * 1000,
            i128::from(end_us) * 1000
        );
        let fields = Self::RAW_FIELDS;
        let statement = match entity {
            Some(e) => {
                let (from, cond) = self.source(e);
                format!("SELECT {fields} FROM {from} WHERE {cond} AND {range} GROUP BY *")
            }
            None => match self.schema {
                SchemaMode::Homeiq => {
                    format!("SELECT {fields} FROM /.*/ WHERE {range} GROUP BY \"entity_id\"")
                }
                SchemaMode::HaCompat => format!(
                    "SELECT {fields} FROM /.*/ WHERE {range} GROUP BY \"domain\", \"entity_id\""
                ),
            },
        };
        let result = self.query(&statement).await?;
        Ok(raw_of(self.schema, first_series(result)))
    }

    /// `entity`'s point just before `t_us`, or the first at or after it.
    pub(crate) async fn raw_point_near(
        &self,
        entity: &str,
        t_us: i64,
        side: Side,
    ) -> Result<Option<RawPoint>, HistoryError> {
        let _slot = self.slots.take().await?;
        let (from, cond) = self.source(entity);
        let t = i128::from(t_us) * 1000;
        let fields = Self::RAW_FIELDS;
        let statement = match side {
            Side::Before => format!(
                "SELECT {fields} FROM {from} WHERE {cond} AND time < {t} GROUP BY * ORDER BY time DESC LIMIT 1"
            ),
            Side::From => format!(
                "SELECT {fields} FROM {from} WHERE {cond} AND time >= {t} GROUP BY * ORDER BY time ASC LIMIT 1"
            ),
        };
        let result = self.query(&statement).await?;
        let mut points = raw_of(self.schema, first_series(result));
        // `ha_compat` spreads an entity over measurements: the nearest of each series' answer
        points.sort_by_key(|p| p.time_us);
        Ok(match side {
            Side::Before => points.pop(),
            Side::From => points.into_iter().next(),
        })
    }

    /// The oldest point's time (the first of every series).
    pub(crate) async fn first_point_us(&self) -> Result<Option<i64>, HistoryError> {
        let _slot = self.slots.take().await?;
        let result = self
            .query("SELECT first(\"value\") FROM /.*/; SELECT first(\"state\") FROM /.*/")
            .await?;
        let mut first: Option<i64> = None;
        for statement in &result.statements {
            for s in &statement.series {
                let Some(i) = s.columns.iter().position(|c| c == "time") else {
                    continue;
                };
                for v in &s.values {
                    if let Some(t) = v.get(i).and_then(as_i64) {
                        first = Some(first.map_or(t, |f| f.min(t)));
                    }
                }
            }
        }
        Ok(first)
    }

    /// Records per bucket and domain.
    pub(crate) async fn event_stats(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        interval_secs: u64,
    ) -> Result<Vec<StatsBucket>, HistoryError> {
        let _slot = self.slots.take().await?;
        let range = format!(
            "time >= {} AND time < {} GROUP BY time({}s)",
            ns(start),
            ns(end),
            interval_secs.max(1)
        );
        let statement = match self.schema {
            SchemaMode::Homeiq => {
                format!("SELECT count(\"state\") FROM /.*/ WHERE {range} fill(none)")
            }
            SchemaMode::HaCompat => format!(
                "SELECT count(\"state\"), count(\"value\") FROM /.*/ WHERE {range}, \"domain\", \"entity_id\" fill(none)"
            ),
        };
        let result = self.query(&statement).await?;
        let mut buckets: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
        for s in result.first_series() {
            let domain = match self.schema {
                SchemaMode::Homeiq => s.name.clone(),
                SchemaMode::HaCompat => s.tags.get("domain").cloned().unwrap_or_default(),
            };
            for v in &s.values {
                let Some(time) = v.first().and_then(as_i64) else {
                    continue;
                };
                let n = v[1..].iter().filter_map(Value::as_u64).max().unwrap_or(0);
                if n > 0 {
                    *buckets
                        .entry(time)
                        .or_default()
                        .entry(domain.clone())
                        .or_default() += n;
                }
            }
        }
        Ok(stats_buckets(buckets))
    }
}

/// The entity of a series grouped by its entity tags (`homeiq`: `entity_id`; `ha_compat`:
/// `domain` and the object id in `entity_id`).
fn entity_of(schema: SchemaMode, series: &Series) -> Option<String> {
    let entity_id = match schema {
        SchemaMode::Homeiq => series.tags.get("entity_id").cloned(),
        SchemaMode::HaCompat => match (series.tags.get("domain"), series.tags.get("entity_id")) {
            (Some(d), Some(o)) => Some(format!("{d}.{o}")),
            _ => None,
        },
    };
    entity_id.filter(|e| !e.is_empty())
}

/// The text in column `i` of a row.
fn text(row: &[Value], i: Option<usize>) -> Option<&str> {
    i.and_then(|i| row.get(i)).and_then(Value::as_str)
}

/// The series of an answer's first statement, owned.
fn first_series(result: crate::store::influx::QueryResult) -> Vec<Series> {
    result
        .statements
        .into_iter()
        .next()
        .map(|s| s.series)
        .unwrap_or_default()
}

/// Rollup inputs from series of [`InfluxHistory::RAW_FIELDS`] grouped by their entity tags
/// (with the `ha_compat` origin points beside them), written in `schema`.
fn raw_of(schema: SchemaMode, series: Vec<Series>) -> Vec<RawPoint> {
    let mut out = Vec::with_capacity(series.iter().map(|s| s.values.len()).sum());
    let mut beats: std::collections::HashSet<(String, i64)> = Default::default();
    for s in series {
        let Some(entity_id) = entity_of(schema, &s) else {
            continue;
        };
        let col = |name: &str| s.columns.iter().position(|c| c == name);
        let (time, state, value, origin, sc) = (
            col("time"),
            col("state"),
            col("value"),
            col(ORIGIN_FIELDS[0]),
            col("state_class_str"),
        );
        let beside = schema == SchemaMode::HaCompat && s.name == ORIGIN_MEASUREMENT;
        for mut v in s.values {
            let Some(time_us) = time.and_then(|i| v.get(i)).and_then(as_i64) else {
                continue;
            };
            let heartbeat = text(&v, origin).map(OriginKind::parse) == Some(OriginKind::Heartbeat);
            if beside {
                if heartbeat {
                    beats.insert((entity_id.clone(), time_us));
                }
                continue;
            }
            let value = value
                .and_then(|i| v.get(i))
                .and_then(Value::as_f64)
                .filter(|f| f.is_finite());
            // the answer is owned: the state's text is moved out, not copied
            let state = match state.and_then(|i| v.get_mut(i)).map(Value::take) {
                Some(Value::String(text)) => Some(text),
                _ => None,
            };
            let state = state.or_else(|| {
                (schema == SchemaMode::HaCompat)
                    .then(|| value.map(number_text))
                    .flatten()
            });
            if state.is_none() && value.is_none() {
                continue;
            }
            out.push(RawPoint {
                entity_id: entity_id.clone(),
                time_us,
                value,
                state,
                heartbeat,
                total_increasing: is_total_increasing(text(&v, sc)),
            });
        }
    }
    if !beats.is_empty() {
        for p in &mut out {
            if beats.contains(&(p.entity_id.clone(), p.time_us)) {
                p.heartbeat = true;
            }
        }
    }
    out
}

impl PageBackend for InfluxHistory {
    fn slots(&self) -> &Slots {
        &self.slots
    }

    /// The page's records with their neighbours; those just outside the page come from one
    /// statement per entity and direction, all in one request.
    async fn with_neighbours(
        &self,
        rows: Vec<StoredRow>,
    ) -> Result<Vec<HistoryRecord>, HistoryError> {
        let edges = page_edges(&rows);
        let mut statements = Vec::new();
        for (entity, first, last) in &edges {
            let (from, cond) = self.source(entity);
            statements.push(format!(
                "SELECT \"state\", \"value\" FROM {from} WHERE {cond} AND time < {} ORDER BY time DESC LIMIT 1",
                i128::from(*first) * 1000
            ));
            statements.push(format!(
                "SELECT \"state\", \"value\" FROM {from} WHERE {cond} AND time > {} ORDER BY time ASC LIMIT 1",
                i128::from(*last) * 1000
            ));
        }
        let mut before = HashMap::new();
        let mut after = HashMap::new();
        if !statements.is_empty() {
            let result = self.query(&statements.join("; ")).await?;
            for (i, statement) in result.statements.iter().enumerate() {
                let entity = edges[i / 2].0.as_str();
                let mut found = Vec::new();
                for series in &statement.series {
                    self.rows_of(series, Some(entity), &mut found);
                }
                if i % 2 == 0 {
                    if let Some(r) = found.into_iter().max_by_key(|r| r.time_us) {
                        before.insert(entity.to_owned(), (r.time_us, r.state));
                    }
                } else if let Some(r) = found.into_iter().min_by_key(|r| r.time_us) {
                    after.insert(entity.to_owned(), r.time_us);
                }
            }
        }
        Ok(with_neighbours(rows, &before, &after))
    }
}

impl PageReader for InfluxHistory {
    /// One statement per fetch, all in one request.
    async fn read(
        &self,
        q: &HistoryQuery,
        fetches: &[Fetch<'_>],
    ) -> Result<Vec<Fetched>, HistoryError> {
        let statements: Vec<Option<String>> =
            fetches.iter().map(|f| self.page_statement(q, f)).collect();
        let text = statements
            .iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("; ");
        if text.is_empty() {
            return Ok(fetches.iter().map(|_| Fetched::default()).collect());
        }
        let result = self.query(&text).await?;
        let mut answers = result.statements.iter();
        Ok(fetches
            .iter()
            .zip(&statements)
            .map(|(f, statement)| match statement {
                None => Fetched::default(),
                Some(_) => answers
                    .next()
                    .map(|a| self.fetched(&a.series, f, q.order))
                    .unwrap_or_default(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, times: &[i64]) -> Series {
        Series {
            name: name.into(),
            tags: Default::default(),
            columns: vec!["time".into(), "state".into()],
            values: times
                .iter()
                .map(|t| vec![Value::from(*t), Value::from(format!("{name}{t}"))])
                .collect(),
        }
    }

    fn history(schema: SchemaMode) -> InfluxHistory {
        let settings = crate::config::InfluxSettings::default();
        InfluxHistory::new(InfluxClient::new(&settings).expect("client"), schema)
    }

    #[test]
    fn an_entity_spread_over_series_is_cut_where_a_full_series_ends() {
        let h = history(SchemaMode::HaCompat);
        let f = Fetch {
            entity: "sensor.t",
            after: None,
            limit: 3,
        };
        // `°C` holds 3 rows (its limit: more may follow 30), `W` 2 (all it has)
        let got = h.fetched(
            &[series("°C", &[10, 20, 30]), series("W", &[15, 20, 40])],
            &f,
            Order::Ascending,
        );
        let times: Vec<(i64, Option<String>)> = got
            .rows
            .iter()
            .map(|r| (r.time_us, r.state.clone()))
            .collect();
        assert_eq!(
            times,
            vec![
                (10, Some("°C10".into())),
                (15, Some("W15".into())),
                (20, Some("°C20".into()))
            ]
        );
        assert!(got.more);
        // descending, neither series full: everything, newest first, and nothing more
        let got = h.fetched(
            &[series("°C", &[30, 10]), series("W", &[40, 20])],
            &f,
            Order::Descending,
        );
        let times: Vec<i64> = got.rows.iter().map(|r| r.time_us).collect();
        assert_eq!(times, vec![40, 30, 20]);
        assert!(got.more, "cut at the fetch's limit");
        let got = h.fetched(&[series("°C", &[30, 10])], &f, Order::Descending);
        assert_eq!(got.rows.len(), 2);
        assert!(!got.more);
    }

    #[test]
    fn compat_numbers_read_back_as_python_prints_them() {
        assert_eq!(number_text(21.0), "21.0");
        assert_eq!(number_text(21.5), "21.5");
    }
}
