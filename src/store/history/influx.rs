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
//! Several statements go out in one request (InfluxDB runs them in order); times are exchanged in
//! microseconds (`epoch=u`), nanoseconds in the statements.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{
    AggregatePoint, AggregateQuery, AggregateSeries, HistoryError, HistoryPage, HistoryQuery,
    HistoryRecord, Order, StatsBucket, StoredRow, into_page, page_edges, time_of, with_neighbours,
};
use crate::config::SchemaMode;
use crate::ha::model::{domain_of, object_id_of};
use crate::store::influx::{InfluxClient, Series, quote_ident, quote_literal};

/// Tag keys of the `homeiq` schema (never attributes, except as noted).
const HOMEIQ_TAGS: &[&str] = &["entity_id", "device_id", "area_id", "device_class", "unit"];

/// Names the `homeiq` schema reserves; an attribute named so was stored with `_` appended.
const RESERVED: &[&str] = &[
    "state",
    "value",
    "time",
    "entity_id",
    "device_id",
    "area_id",
    "device_class",
    "unit",
];

/// History requests served at once; more wait their turn before their first query. Bounds the
/// memory of decoded answers (a request holds its page while it asks for the page's neighbours,
/// so a limit per statement let 64 waiting requests hold 64 pages: 190 MB resident) and keeps
/// InfluxDB from thrashing under many concurrent clients.
const CONCURRENT_QUERIES: usize = 4;

/// History read from InfluxDB.
#[derive(Debug, Clone)]
pub struct InfluxHistory {
    client: InfluxClient,
    schema: SchemaMode,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
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
    pub fn new(client: InfluxClient, schema: SchemaMode) -> Self {
        Self {
            client,
            schema,
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENT_QUERIES)),
        }
    }

    /// Waits for a request slot; hold it until the request's last query is answered.
    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, HistoryError> {
        self.permits
            .acquire()
            .await
            .map_err(|_| HistoryError::Unavailable("shutting down".into()))
    }

    /// Runs `q` (the caller holds a [`InfluxHistory::slot`]).
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

    /// Statements of the page query: one per measurement (`homeiq`) or per entity (`ha_compat`),
    /// each with the entities it covers (empty: read `entity_id` from the rows).
    fn page_statements(&self, q: &HistoryQuery) -> Vec<(String, Option<String>)> {
        let cap = q.limit + q.entity_ids.len() + 1;
        let (mut lower, mut upper) = (ns(q.start), ns(q.end));
        if let Some(c) = &q.after {
            let at = i128::from(c.time_us) * 1000;
            match q.order {
                Order::Ascending => lower = lower.max(at),
                Order::Descending => upper = upper.min(at),
            }
        }
        let dir = match q.order {
            Order::Ascending => "ASC",
            Order::Descending => "DESC",
        };
        let tail = format!("time >= {lower} AND time <= {upper} ORDER BY time {dir} LIMIT {cap}");
        match self.schema {
            SchemaMode::Homeiq => {
                let mut by_domain: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                for e in &q.entity_ids {
                    by_domain.entry(domain_of(e)).or_default().push(e);
                }
                by_domain
                    .into_iter()
                    .map(|(domain, ids)| {
                        let which = ids
                            .iter()
                            .map(|e| format!("\"entity_id\" = {}", quote_literal(e)))
                            .collect::<Vec<_>>()
                            .join(" OR ");
                        (
                            format!(
                                "SELECT * FROM {} WHERE ({which}) AND {tail}",
                                quote_ident(domain)
                            ),
                            None,
                        )
                    })
                    .collect()
            }
            SchemaMode::HaCompat => q
                .entity_ids
                .iter()
                .map(|e| {
                    let (from, cond) = self.source(e);
                    (
                        format!("SELECT * FROM {from} WHERE {cond} AND {tail}"),
                        Some(e.clone()),
                    )
                })
                .collect(),
        }
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

    /// One page of records, with each record's neighbours.
    pub async fn history(&self, q: &HistoryQuery) -> Result<HistoryPage, HistoryError> {
        let _slot = self.slot().await?;
        let statements = self.page_statements(q);
        let text = statements
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        let mut rows = Vec::new();
        {
            let result = self.query(&text).await?;
            for (i, statement) in result.statements.iter().enumerate() {
                let entity = statements.get(i).and_then(|(_, e)| e.as_deref());
                for series in &statement.series {
                    self.rows_of(series, entity, &mut rows);
                }
            }
        }
        let next_cursor = into_page(&mut rows, q);
        let items = self.with_neighbours(rows).await?;
        Ok(HistoryPage { items, next_cursor })
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

    /// Mean, min, max, count and last of `value` per bucket, per entity.
    pub async fn aggregate(
        &self,
        q: &AggregateQuery,
    ) -> Result<Vec<AggregateSeries>, HistoryError> {
        let _slot = self.slot().await?;
        let statements: Vec<String> = q
            .entity_ids
            .iter()
            .map(|e| {
                let (from, cond) = self.source(e);
                format!(
                    "SELECT mean(\"value\") AS \"mean\", min(\"value\") AS \"min\", max(\"value\") AS \"max\", count(\"value\") AS \"count\", last(\"value\") AS \"last\" FROM {from} WHERE {cond} AND time >= {} AND time < {} GROUP BY time({}s) fill(none)",
                    ns(q.start),
                    ns(q.end),
                    q.interval_secs.max(1)
                )
            })
            .collect();
        let result = self.query(&statements.join("; ")).await?;
        let mut out = Vec::with_capacity(q.entity_ids.len());
        for (i, entity) in q.entity_ids.iter().enumerate() {
            // bucket time → (sum, count, min, max, (last time, last))
            let mut buckets: BTreeMap<i64, AggregatePoint> = BTreeMap::new();
            let series = result.statements.get(i).map_or(&[][..], |s| &s.series);
            for s in series {
                let col = |name: &str| s.columns.iter().position(|c| c == name);
                let (Some(t), Some(mean), Some(min), Some(max), Some(count), Some(last)) = (
                    col("time"),
                    col("mean"),
                    col("min"),
                    col("max"),
                    col("count"),
                    col("last"),
                ) else {
                    continue;
                };
                for v in &s.values {
                    let Some(time) = v.get(t).and_then(as_i64) else {
                        continue;
                    };
                    let f = |i: usize| v.get(i).and_then(Value::as_f64);
                    let n = v.get(count).and_then(Value::as_u64).unwrap_or(0);
                    if n == 0 {
                        continue;
                    }
                    let point = AggregatePoint {
                        time: time_of(time),
                        mean: f(mean),
                        min: f(min),
                        max: f(max),
                        count: n,
                        last: f(last),
                    };
                    buckets
                        .entry(time)
                        .and_modify(|b| merge_bucket(b, &point))
                        .or_insert(point);
                }
            }
            out.push(AggregateSeries {
                entity_id: entity.clone(),
                points: buckets.into_values().collect(),
            });
        }
        Ok(out)
    }

    /// Records per bucket and domain.
    pub async fn event_stats(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        interval_secs: u64,
    ) -> Result<Vec<StatsBucket>, HistoryError> {
        let _slot = self.slot().await?;
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

/// Combines two aggregates of the same bucket (an entity spread over measurements).
fn merge_bucket(into: &mut AggregatePoint, other: &AggregatePoint) {
    let total = into.count + other.count;
    if let (Some(a), Some(b)) = (into.mean, other.mean) {
        into.mean = Some((a * into.count as f64 + b * other.count as f64) / total as f64);
    }
    into.min = match (into.min, other.min) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    into.max = match (into.max, other.max) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    into.count = total;
    into.last = other.last.or(into.last);
}

/// An attribute stored by the `homeiq` schema, back under its own name and type.
pub(crate) fn homeiq_attribute(field: &str, v: &Value) -> (String, Value) {
    let unreserve = |name: &str| {
        let trimmed = name.trim_end_matches('_');
        if trimmed != name && RESERVED.contains(&trimmed) {
            name[..name.len() - 1].to_owned()
        } else {
            name.to_owned()
        }
    };
    if let Some(key) = field.strip_suffix("_json") {
        let parsed = v
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_else(|| v.clone());
        return (unreserve(key), parsed);
    }
    if let Some(key) = field.strip_suffix("_str") {
        return (unreserve(key), v.clone());
    }
    (unreserve(field), v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homeiq_attributes_get_their_names_and_types_back() {
        assert_eq!(
            homeiq_attribute("rgb_color_json", &Value::from("[255,0,1]")),
            ("rgb_color".into(), serde_json::json!([255, 0, 1]))
        );
        assert_eq!(
            homeiq_attribute("mode_str", &Value::from("auto")),
            ("mode".into(), Value::from("auto"))
        );
        assert_eq!(
            homeiq_attribute("brightness", &Value::from(128.0)),
            ("brightness".into(), Value::from(128.0))
        );
        assert_eq!(
            homeiq_attribute("state_", &Value::from(1.0)),
            ("state".into(), Value::from(1.0))
        );
    }

    #[test]
    fn merged_buckets_weigh_means_by_count() {
        let mut a = AggregatePoint {
            time: time_of(0),
            mean: Some(1.0),
            min: Some(0.0),
            max: Some(2.0),
            count: 1,
            last: Some(1.0),
        };
        let b = AggregatePoint {
            time: time_of(0),
            mean: Some(4.0),
            min: Some(3.0),
            max: Some(5.0),
            count: 3,
            last: Some(5.0),
        };
        merge_bucket(&mut a, &b);
        assert_eq!(
            (a.mean, a.min, a.max, a.count, a.last),
            (Some(3.25), Some(0.0), Some(5.0), 4, Some(5.0))
        );
    }

    #[test]
    fn compat_numbers_read_back_as_python_prints_them() {
        assert_eq!(number_text(21.0), "21.0");
        assert_eq!(number_text(21.5), "21.5");
    }
}
