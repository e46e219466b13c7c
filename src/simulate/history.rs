//! The recorder: a bounded ring of past states per entity, answered in the shapes of
//! `history/history_during_period` (compressed) and `GET /api/history/period` (full states).
//!
//! Each entity keeps at most `capacity` states (oldest dropped first); the capacity is chosen from
//! a total budget over all entities, so memory stays bounded whatever the event rate.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::render::{push_iso, push_str_lit, push_unix_secs};

/// Total states kept over all entities.
pub(crate) const TOTAL_BUDGET: usize = 1_000_000;
/// The most states kept per entity.
pub(crate) const MAX_PER_ENTITY: usize = 8_192;
/// The fewest states kept per entity.
pub(crate) const MIN_PER_ENTITY: usize = 64;

/// Domains whose history always carries attributes and all changes (Home Assistant's
/// `NEED_ATTRIBUTE_DOMAINS` / `SIGNIFICANT_DOMAINS`).
const ATTRIBUTE_DOMAINS: [&str; 5] = [
    "climate",
    "humidifier",
    "input_datetime",
    "thermostat",
    "water_heater",
];

/// One recorded state.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// State string.
    pub state: Arc<str>,
    /// Attributes as rendered JSON.
    pub attrs: Arc<str>,
    /// `last_updated`, µs.
    pub lu: i64,
    /// `last_changed`, µs.
    pub lc: i64,
}

/// How a history query asks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Query {
    /// Exclusive start, µs.
    pub start: i64,
    /// Exclusive end, µs.
    pub end: i64,
    /// Include the state each entity had at `start`.
    pub include_start_time_state: bool,
    /// Only state changes (attribute-only updates left out) except for attribute domains.
    pub significant_changes_only: bool,
    /// Only state and time after each entity's first row.
    pub minimal_response: bool,
    /// No attributes (except for attribute domains).
    pub no_attributes: bool,
}

/// The per-entity rings.
#[derive(Debug)]
pub(crate) struct History {
    rings: HashMap<String, VecDeque<Row>>,
    capacity: usize,
}

impl History {
    /// A recorder for about `entities` entities.
    pub(crate) fn new(entities: usize) -> Self {
        History {
            rings: HashMap::with_capacity(entities),
            capacity: (TOTAL_BUDGET / entities.max(1)).clamp(MIN_PER_ENTITY, MAX_PER_ENTITY),
        }
    }

    /// States kept per entity.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records a state.
    pub(crate) fn push(&mut self, entity_id: &str, row: Row) {
        let ring = match self.rings.get_mut(entity_id) {
            Some(r) => r,
            None => {
                if self.rings.len() >= TOTAL_BUDGET / MIN_PER_ENTITY {
                    return;
                }
                self.rings.entry(entity_id.to_owned()).or_default()
            }
        };
        if ring.len() >= self.capacity {
            ring.pop_front();
        }
        ring.push_back(row);
    }

    /// Moves an entity's history to a new id (the recorder migrates it on a rename).
    pub(crate) fn rename(&mut self, old: &str, new: &str) {
        if let Some(ring) = self.rings.remove(old) {
            self.rings.insert(new.to_owned(), ring);
        }
    }

    /// The rows of `entity_id` a query selects: the state at the start (its `lu` moved to the
    /// start) then those with `start < lu < end`.
    fn select<'a>(&'a self, entity_id: &str, q: &Query) -> Vec<(i64, &'a Row, bool)> {
        let Some(ring) = self.rings.get(entity_id) else {
            return Vec::new();
        };
        let domain = crate::ha::model::domain_of(entity_id);
        let all_changes = ATTRIBUTE_DOMAINS.contains(&domain);
        let first_inside = ring.partition_point(|r| r.lu <= q.start);
        let mut out = Vec::new();
        if q.include_start_time_state && first_inside > 0 {
            let r = &ring[first_inside - 1];
            out.push((q.start, r, true));
        }
        for r in ring.range(first_inside..) {
            if r.lu >= q.end {
                break;
            }
            if q.significant_changes_only && !all_changes && r.lc != r.lu {
                continue;
            }
            out.push((r.lu, r, false));
        }
        out
    }

    /// The `result` of `history/history_during_period` (compressed: `s`, `a`, `lu`, `lc`).
    pub(crate) fn during_period(&self, entity_ids: &[String], q: &Query) -> String {
        let mut out = String::from("{");
        let mut first_entity = true;
        for entity_id in entity_ids {
            let rows = self.select(entity_id, q);
            if rows.is_empty() {
                continue;
            }
            let domain = crate::ha::model::domain_of(entity_id);
            let keep_attrs = !q.no_attributes || ATTRIBUTE_DOMAINS.contains(&domain);
            let minimal = q.minimal_response && !ATTRIBUTE_DOMAINS.contains(&domain);
            if !first_entity {
                out.push(',');
            }
            first_entity = false;
            push_str_lit(&mut out, entity_id);
            out.push_str(":[");
            for (i, (lu, row, at_start)) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"s\":");
                push_str_lit(&mut out, &row.state);
                if minimal && i > 0 {
                    // minimal rows carry the time the state changed
                    out.push_str(",\"lu\":");
                    push_unix_secs(&mut out, row.lc);
                    out.push('}');
                    continue;
                }
                if keep_attrs {
                    out.push_str(",\"a\":");
                    out.push_str(&row.attrs);
                }
                out.push_str(",\"lu\":");
                push_unix_secs(&mut out, *lu);
                if !at_start && row.lc != row.lu {
                    out.push_str(",\"lc\":");
                    push_unix_secs(&mut out, row.lc);
                }
                out.push('}');
            }
            out.push(']');
        }
        out.push('}');
        out
    }

    /// The body of `GET /api/history/period`: one list of state objects per entity.
    pub(crate) fn rest_period(&self, entity_ids: &[String], q: &Query) -> String {
        let mut out = String::from("[");
        let mut first_entity = true;
        for entity_id in entity_ids {
            let rows = self.select(entity_id, q);
            if rows.is_empty() {
                continue;
            }
            if !first_entity {
                out.push(',');
            }
            first_entity = false;
            out.push('[');
            let last = rows.len() - 1;
            for (i, (_, row, _)) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if q.minimal_response && i > 0 && i < last {
                    out.push_str("{\"state\":");
                    push_str_lit(&mut out, &row.state);
                    out.push_str(",\"last_changed\":\"");
                    push_iso(&mut out, row.lc);
                    out.push_str("\"}");
                    continue;
                }
                out.push_str("{\"entity_id\":");
                push_str_lit(&mut out, entity_id);
                out.push_str(",\"state\":");
                push_str_lit(&mut out, &row.state);
                out.push_str(",\"attributes\":");
                out.push_str(if q.no_attributes { "{}" } else { &row.attrs });
                out.push_str(",\"last_changed\":\"");
                push_iso(&mut out, row.lc);
                out.push_str("\",\"last_updated\":\"");
                push_iso(&mut out, row.lu);
                out.push_str("\"}");
            }
            out.push(']');
        }
        out.push(']');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::backfill::decode_history;

    fn row(state: &str, lu: i64, lc: i64) -> Row {
        Row {
            state: state.into(),
            attrs: r#"{"unit_of_measurement":"W"}"#.into(),
            lu,
            lc,
        }
    }

    fn query(start: i64, end: i64) -> Query {
        Query {
            start,
            end,
            include_start_time_state: false,
            significant_changes_only: false,
            minimal_response: false,
            no_attributes: false,
        }
    }

    #[test]
    fn compressed_history_decodes_with_the_backfill_decoder() {
        let mut h = History::new(10);
        h.push(
            "sensor.p",
            row("1", 1_000_000_000_000_001, 1_000_000_000_000_001),
        );
        h.push(
            "sensor.p",
            row("1", 1_000_000_000_500_000, 1_000_000_000_000_001),
        );
        h.push(
            "sensor.p",
            row("2", 1_000_000_001_000_000, 1_000_000_001_000_000),
        );
        let ids = vec!["sensor.p".to_owned(), "sensor.none".to_owned()];
        let text = h.during_period(&ids, &query(0, i64::MAX));
        let decoded = decode_history(&text).expect("decodes");
        let states = &decoded["sensor.p"];
        assert_eq!(states.len(), 3);
        assert_eq!(
            states[1].last_updated.timestamp_micros(),
            1_000_000_000_500_000
        );
        assert_eq!(
            states[1].last_changed.timestamp_micros(),
            1_000_000_000_000_001
        );
        assert_eq!(states[0].attributes["unit_of_measurement"], "W");
        assert!(!decoded.contains_key("sensor.none"));
    }

    #[test]
    fn flags_select_and_shape_rows_like_home_assistant() {
        let mut h = History::new(10);
        h.push("sensor.p", row("1", 10, 10));
        h.push("sensor.p", row("1", 20, 10));
        h.push("sensor.p", row("2", 30, 30));
        h.push("sensor.p", row("3", 40, 40));
        let ids = vec!["sensor.p".to_owned()];
        let mut q = query(15, 40);
        let v: serde_json::Value = serde_json::from_str(&h.during_period(&ids, &q)).expect("json");
        assert_eq!(v["sensor.p"].as_array().map(Vec::len), Some(2), "{v}");
        q.include_start_time_state = true;
        q.significant_changes_only = true;
        q.no_attributes = true;
        let v: serde_json::Value = serde_json::from_str(&h.during_period(&ids, &q)).expect("json");
        let rows = v["sensor.p"].as_array().expect("rows");
        // the start state (moved to the start), then only the state change at 30
        assert_eq!(rows.len(), 2, "{v}");
        assert_eq!(rows[0]["s"], "1");
        assert!(rows[0].get("a").is_none());
        q.minimal_response = true;
        q.no_attributes = false;
        let v: serde_json::Value = serde_json::from_str(&h.during_period(&ids, &q)).expect("json");
        assert!(v["sensor.p"][0].get("a").is_some());
        assert!(v["sensor.p"][1].get("a").is_none());
        let rest: serde_json::Value =
            serde_json::from_str(&h.rest_period(&ids, &query(0, 100))).expect("json");
        assert_eq!(rest[0].as_array().map(Vec::len), Some(4));
    }

    #[test]
    fn rings_are_bounded() {
        let mut h = History::new(TOTAL_BUDGET);
        assert_eq!(h.capacity(), MIN_PER_ENTITY);
        for i in 0..1_000 {
            h.push("sensor.x", row("1", i, i));
        }
        assert_eq!(h.rings["sensor.x"].len(), MIN_PER_ENTITY);
        assert_eq!(h.rings["sensor.x"][0].lu, 1_000 - MIN_PER_ENTITY as i64);
    }
}
