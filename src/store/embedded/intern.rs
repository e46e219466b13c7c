//! Interned entity ids and attribute sets of the embedded store: the `entities` and
//! `attribute_sets` tables, and the write connection's bounded cache of them, so that writing a
//! point whose entity and attributes were seen before queries neither table.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};

use crate::store::origin::OriginKind;

/// Entity ids the cache keeps (then it starts over).
const MAX_ENTITIES: usize = 50_000;
/// Attribute sets the cache keeps (then it starts over).
const MAX_ATTRIBUTE_SETS: usize = 20_000;
/// `attribute_sets.last_us` is rounded up to this (µs): an upper bound of the times of the
/// points referencing the set, moved at most once an hour per set by live writes.
const LAST_US_STEP: i64 = 3_600_000_000;

/// The stored code of an origin kind (`points.origin`); never renumbered.
pub(crate) fn origin_code(kind: OriginKind) -> i64 {
    match kind {
        OriginKind::User => 1,
        OriginKind::Automation => 2,
        OriginKind::Script => 3,
        OriginKind::System => 4,
        OriginKind::Device => 5,
        OriginKind::Unknown => 6,
        OriginKind::Heartbeat => 7,
    }
}

/// The kind stored as `code`; an unknown code is `Unknown` (as an unknown name was).
pub(crate) fn origin_of_code(code: i64) -> OriginKind {
    OriginKind::ALL
        .into_iter()
        .find(|k| origin_code(*k) == code)
        .unwrap_or(OriginKind::Unknown)
}

/// The stored code of a point's `origin` field.
pub(crate) fn origin_field_code(origin: Option<&str>) -> Option<i64> {
    origin.map(|o| origin_code(OriginKind::parse(o)))
}

/// The stored `value` of a point: an empty blob (no bytes in the row, where a float takes 8)
/// when parsing its state gives exactly the value, bit for bit (`20.5`, `1013`): readers parse the
/// state again; else the value (`NULL` when none). Zero is stored as it is: SQLite keeps a
/// `-0.0` as the integer 0, which a parsed `-0` would not reproduce.
pub(crate) fn stored_value(state: Option<&str>, value: Option<f64>) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match value {
        None => Value::Null,
        Some(v)
            if v != 0.0
                && state.and_then(|s| s.parse::<f64>().ok()).map(f64::to_bits)
                    == Some(v.to_bits()) =>
        {
            Value::Blob(Vec::new())
        }
        Some(v) => Value::Real(v),
    }
}

/// FNV-1a of an attribute set's JSON: the key of `attribute_sets_by_hash` (stable across
/// releases and processes, unlike the standard library's hasher).
pub(crate) fn attributes_hash(json: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in json.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Moves an attribute set's `last_us` up (never down).
const RAISE_LAST_US: &str = "UPDATE attribute_sets SET last_us = ?2 WHERE id = ?1 AND last_us < ?2";

fn last_us_bound(time_us: i64) -> i64 {
    time_us
        .div_euclid(LAST_US_STEP)
        .saturating_add(1)
        .saturating_mul(LAST_US_STEP)
}

/// The write connection's cache of interned ids. Cleared when a transaction fails (ids it
/// created were rolled back) and, for attribute sets, when retention deleted orphaned sets
/// (`epoch` changed).
#[derive(Debug, Default)]
pub(crate) struct Interned {
    /// entity id → (row id, domain stored).
    entities: HashMap<String, (i64, String)>,
    /// attribute JSON → (row id, `last_us` stored).
    attributes: HashMap<String, (i64, i64)>,
    /// The attribute-set epoch the cache was filled in.
    pub(crate) epoch: u64,
}

impl Interned {
    /// Forgets everything (after a failed transaction).
    pub(crate) fn clear(&mut self) {
        self.entities.clear();
        self.attributes.clear();
    }

    /// Forgets the attribute sets when the stored ones changed behind the cache.
    pub(crate) fn sync_epoch(&mut self, epoch: u64) {
        if self.epoch != epoch {
            self.attributes.clear();
            self.epoch = epoch;
        }
    }

    /// The row id of `entity_id` (inserted when new; its domain updated when it changed).
    pub(crate) fn entity(
        &mut self,
        conn: &Connection,
        entity_id: &str,
        domain: &str,
    ) -> Result<i64, rusqlite::Error> {
        if let Some((id, d)) = self.entities.get(entity_id)
            && d == domain
        {
            return Ok(*id);
        }
        let found: Option<(i64, String)> = conn
            .prepare("SELECT id, domain FROM entities WHERE entity_id = ?1")?
            .query_row([entity_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let id = match found {
            Some((id, d)) => {
                if d != domain {
                    conn.prepare("UPDATE entities SET domain = ?2 WHERE id = ?1")?
                        .execute(rusqlite::params![id, domain])?;
                }
                id
            }
            None => {
                conn.prepare("INSERT INTO entities (entity_id, domain) VALUES (?1, ?2)")?
                    .execute([entity_id, domain])?;
                conn.last_insert_rowid()
            }
        };
        if self.entities.len() >= MAX_ENTITIES {
            self.entities.clear();
        }
        self.entities
            .insert(entity_id.to_owned(), (id, domain.to_owned()));
        Ok(id)
    }

    /// The row id of the attribute set `json` for a point at `time_us` (inserted when new; its
    /// `last_us` moved past `time_us` when behind).
    pub(crate) fn attributes(
        &mut self,
        conn: &Connection,
        json: &str,
        time_us: i64,
    ) -> Result<i64, rusqlite::Error> {
        if let Some((id, last_us)) = self.attributes.get_mut(json) {
            if time_us >= *last_us {
                let bound = last_us_bound(time_us);
                conn.prepare(RAISE_LAST_US)?.execute([*id, bound])?;
                *last_us = bound;
            }
            return Ok(*id);
        }
        let hash = attributes_hash(json);
        let mut found = None;
        {
            let mut select =
                conn.prepare("SELECT id, last_us, json FROM attribute_sets WHERE hash = ?1")?;
            let mut rows = select.query([hash])?;
            while let Some(r) = rows.next()? {
                if r.get_ref(2)?.as_str()? == json {
                    found = Some((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?));
                    break;
                }
            }
        }
        let bound = last_us_bound(time_us);
        let (id, last_us) = match found {
            Some((id, last_us)) if time_us < last_us => (id, last_us),
            Some((id, _)) => {
                conn.prepare(RAISE_LAST_US)?.execute([id, bound])?;
                (id, bound)
            }
            None => {
                conn.prepare(
                    "INSERT INTO attribute_sets (hash, last_us, json) VALUES (?1, ?2, ?3)",
                )?
                .execute(rusqlite::params![hash, bound, json])?;
                (conn.last_insert_rowid(), bound)
            }
        };
        if self.attributes.len() >= MAX_ATTRIBUTE_SETS {
            self.attributes.clear();
        }
        self.attributes.insert(json.to_owned(), (id, last_us));
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_codes_round_trip_and_are_distinct() {
        for k in OriginKind::ALL {
            assert_eq!(origin_of_code(origin_code(k)), k);
        }
        assert_eq!(origin_of_code(99), OriginKind::Unknown);
        assert_eq!(origin_field_code(Some("robot")), Some(6));
        assert_eq!(origin_field_code(None), None);
    }

    #[test]
    fn a_value_is_left_to_its_state_only_when_parsing_gives_it_exactly() {
        use rusqlite::types::Value;
        let of_state = |s: &str, v: f64| stored_value(Some(s), Some(v)) == Value::Blob(Vec::new());
        assert!(of_state("20.5", 20.5));
        assert!(of_state("1013", 1013.0));
        assert!(of_state("0.1", 0.1));
        assert!(!of_state("20.50", 20.25), "another number");
        assert!(!of_state("on", 1.0));
        assert!(!of_state("0", 0.0), "zero kept");
        assert!(!of_state("-0", -0.0));
        assert_eq!(stored_value(None, Some(2.5)), Value::Real(2.5));
        assert_eq!(stored_value(Some("x"), None), Value::Null);
    }

    #[test]
    fn last_us_bounds_the_time_from_above() {
        for t in [
            0,
            1,
            LAST_US_STEP - 1,
            LAST_US_STEP,
            1_700_000_000_123_456,
            -5,
        ] {
            assert!(last_us_bound(t) > t, "{t}");
        }
    }
}
