//! Which entities' history changed, and when: the writers record every batch the backend has
//! acknowledged, the API's history cache ([`crate::api::cache`]) asks whether a cached answer is
//! still current.
//!
//! Each recorded batch takes the next number of a sequence and stamps its entities with it. An
//! answer computed after reading sequence number `n` (before querying the backend) saw every
//! batch numbered `n` or lower: a batch is recorded only once the backend acknowledged it, when
//! its points are already readable. So the answer is current while none of its entities carries
//! a stamp above `n`. Points written to the backend by anyone else are not seen here; the cache
//! bounds their delay with its time to live.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The write log; shared by a writer and the API (`Arc`).
#[derive(Debug)]
pub struct WriteLog {
    seq: AtomicU64,
    stamps: Mutex<HashMap<String, u64>>,
    /// Points before this time (µs) are late: rollups already cover it (`i64::MIN`: nobody asks).
    late_horizon: AtomicI64,
    /// Late points per entity: earliest and latest time (µs), at most [`MAX_LATE_ENTITIES`].
    late: Mutex<HashMap<String, (i64, i64)>>,
    /// Late points of entities beyond the bound (their entity is forgotten).
    late_lost: AtomicU64,
    /// Raw retention runs that may have deleted points (see [`WriteLog::note_deleted`]).
    deletions: AtomicU64,
}

impl Default for WriteLog {
    fn default() -> Self {
        WriteLog {
            seq: AtomicU64::new(0),
            stamps: Mutex::default(),
            late_horizon: AtomicI64::new(i64::MIN),
            late: Mutex::default(),
            late_lost: AtomicU64::new(0),
            deletions: AtomicU64::new(0),
        }
    }
}

/// Entities whose late points the log holds at once (each one range).
const MAX_LATE_ENTITIES: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl WriteLog {
    /// The sequence number of the last recorded batch; read it before querying the backend.
    pub fn current(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Records an acknowledged batch holding points of `entity_ids` (repeats allowed).
    pub fn record<'a>(&self, entity_ids: impl IntoIterator<Item = &'a str>) {
        let mut stamps = lock(&self.stamps);
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        for id in entity_ids {
            match stamps.get_mut(id) {
                Some(stamp) => *stamp = seq,
                None => {
                    stamps.insert(id.to_owned(), seq);
                }
            }
        }
    }

    /// From now on, note written points older than `horizon_us` as late ([`WriteLog::take_late`]).
    pub(crate) fn set_late_horizon(&self, horizon_us: i64) {
        self.late_horizon.store(horizon_us, Ordering::Release);
    }

    /// Notes acknowledged points (entity, time µs) older than the late horizon.
    pub(crate) fn note_times<'a>(&self, points: impl IntoIterator<Item = (&'a str, i64)>) {
        let horizon = self.late_horizon.load(Ordering::Acquire);
        if horizon == i64::MIN {
            return;
        }
        let mut late: Option<MutexGuard<'_, HashMap<String, (i64, i64)>>> = None;
        for (entity, t) in points {
            if t >= horizon {
                continue;
            }
            let map = late.get_or_insert_with(|| lock(&self.late));
            let room = map.len() < MAX_LATE_ENTITIES;
            match map.get_mut(entity) {
                Some(r) => *r = (r.0.min(t), r.1.max(t)),
                None if room => {
                    map.insert(entity.to_owned(), (t, t));
                }
                None => {
                    self.late_lost.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Notes the late points of acknowledged line protocol in `precision`.
    pub(crate) fn note_lines<'a>(
        &self,
        lines: impl IntoIterator<Item = &'a [u8]>,
        precision: crate::store::point::Precision,
    ) {
        if self.late_horizon.load(Ordering::Acquire) == i64::MIN {
            return;
        }
        let per_us = match precision {
            crate::store::point::Precision::Millis => 1_000,
            crate::store::point::Precision::Micros => 1,
        };
        let parsed: Vec<(Cow<'a, str>, i64)> = lines
            .into_iter()
            .filter_map(|line| {
                let entity = entity_of_line(line)?;
                let last = line.rsplit(|&b| b == b' ').next()?;
                let t: i64 = std::str::from_utf8(last).ok()?.trim().parse().ok()?;
                Some((entity, t.saturating_mul(per_us)))
            })
            .collect();
        self.note_times(parsed.iter().map(|(e, t)| (e.as_ref(), *t)));
    }

    /// The late ranges noted since the last call (entity, earliest µs, latest µs), and how
    /// many late points lost their entity to the bound.
    pub(crate) fn take_late(&self) -> (Vec<(String, i64, i64)>, u64) {
        let taken = std::mem::take(&mut *lock(&self.late));
        let lost = self.late_lost.swap(0, Ordering::Relaxed);
        (
            taken.into_iter().map(|(e, (a, b))| (e, a, b)).collect(),
            lost,
        )
    }

    /// Notes that raw retention deleted (or may have deleted) points: the oldest stored point
    /// may have moved (the rollups ask the store again, see [`WriteLog::deletions`]).
    pub(crate) fn note_deleted(&self) {
        self.deletions.fetch_add(1, Ordering::AcqRel);
    }

    /// How many retention runs noted deletions so far.
    pub(crate) fn deletions(&self) -> u64 {
        self.deletions.load(Ordering::Acquire)
    }

    /// Records an acknowledged batch of InfluxDB line protocol (see [`entity_of_line`]); a line
    /// naming no entity marks the batch as touching everything.
    pub fn record_lines<'a>(&self, lines: impl IntoIterator<Item = &'a [u8]>) {
        let mut ids: Vec<Cow<'a, str>> = Vec::new();
        for line in lines {
            match entity_of_line(line) {
                Some(id) => {
                    if ids.last() != Some(&id) {
                        ids.push(id);
                    }
                }
                None => {
                    self.record_everything();
                    return;
                }
            }
        }
        self.record(ids.iter().map(|id| id.as_ref()));
    }

    /// Records a write whose entities are unknown: every earlier answer is out of date.
    pub fn record_everything(&self) {
        let mut stamps = lock(&self.stamps);
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        stamps.clear();
        stamps.insert(String::new(), seq);
    }

    /// Whether any of `entity_ids` (any entity at all when `None`) was written after `since`.
    pub fn changed_since(&self, entity_ids: Option<&[String]>, since: u64) -> bool {
        let stamps = lock(&self.stamps);
        let after = |id: &str| stamps.get(id).is_some_and(|&s| s > since);
        if after("") {
            return true;
        }
        match entity_ids {
            Some(ids) => ids.iter().any(|id| after(id)),
            None => self.current() > since,
        }
    }
}

/// The entity a line of the `homeiq` or `ha_compat` schema belongs to: its `entity_id` tag when
/// that holds a full entity id (`homeiq`), else `<domain tag>.<entity_id tag>` (`ha_compat`,
/// where `entity_id` is the object id). `None` when the line has neither. Borrows from the line
/// unless the id must be assembled or unescaped.
pub fn entity_of_line(line: &[u8]) -> Option<Cow<'_, str>> {
    let (mut entity, mut domain) = (None, None);
    for tag in tags(line) {
        if let Some(v) = tag.strip_prefix(b"entity_id=") {
            entity = Some(v);
        } else if let Some(v) = tag.strip_prefix(b"domain=") {
            domain = Some(v);
        }
    }
    let entity = unescaped(entity?);
    if entity.contains('.') {
        return Some(entity);
    }
    domain.map(|d| Cow::Owned(format!("{}.{entity}", unescaped(d))))
}

/// A tag value as text, backslash escapes removed.
fn unescaped(v: &[u8]) -> Cow<'_, str> {
    match String::from_utf8_lossy(v) {
        Cow::Borrowed(t) if !t.contains('\\') => Cow::Borrowed(t),
        t => Cow::Owned(t.replace('\\', "")),
    }
}

/// The `key=value` tags of a line: between the first unescaped comma and the first unescaped
/// space (the measurement before them, the fields after).
fn tags(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut i = 0;
    let mut start = None;
    let mut done = false;
    std::iter::from_fn(move || {
        while !done && i < line.len() {
            let at = i;
            i += 1;
            match line[at] {
                b'\\' => i += 1,
                b',' | b' ' => {
                    done = line[at] == b' ';
                    let from = start.replace(at + 1);
                    if let Some(from) = from {
                        return Some(&line[from..at]);
                    }
                }
                _ => {}
            }
        }
        if !done {
            done = true;
            if let Some(from) = start.take() {
                return line.get(from..);
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_their_entity_in_both_schemas() {
        assert_eq!(
            entity_of_line(
                b"sensor,area_id=kitchen,entity_id=sensor.power,unit=W state=\"1\",value=1 1"
            )
            .as_deref(),
            Some("sensor.power")
        );
        assert_eq!(
            entity_of_line(b"W,domain=sensor,entity_id=power value=1 1").as_deref(),
            Some("sensor.power")
        );
        assert_eq!(
            entity_of_line(b"m,entity_id=a\\ b,domain=x v=1").as_deref(),
            Some("x.a b")
        );
        assert_eq!(entity_of_line(b"heartbeat value=1 1"), None);
        // a field called entity_id is not a tag
        assert_eq!(entity_of_line(b"m entity_id=\"sensor.x\" 1"), None);
    }

    #[test]
    fn answers_are_current_until_one_of_their_entities_is_written() {
        let log = WriteLog::default();
        let ids = vec!["sensor.a".to_owned()];
        let at = log.current();
        assert!(!log.changed_since(Some(&ids), at));
        log.record(["sensor.b"]);
        assert!(!log.changed_since(Some(&ids), at), "another entity");
        assert!(log.changed_since(None, at), "anything at all");
        log.record_lines([b"sensor,entity_id=sensor.a value=1 1".as_slice()]);
        assert!(log.changed_since(Some(&ids), at));
        let later = log.current();
        assert!(!log.changed_since(Some(&ids), later));
        log.record_lines([b"no_tags value=1 1".as_slice()]);
        assert!(log.changed_since(Some(&["sensor.zzz".to_owned()]), later));
    }
}
