//! The maintenance task: roll up closed hours, compose local days, redo late data, expire old
//! rows, publish the watermark (see the module documentation of [`crate::rollups`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;

use super::compute::{PeriodSummary, RawPoint, combine, summarise};
use super::periods::{FIVE_MINUTES, HOUR, bounds, ceil, day_start, floor, next_day};
use super::store::{Batch, CURSOR, DAYS_UNTIL, Dirty, FIRST};
use super::{RollupError, Rollups, Tier, ZoneOf, lock};
use crate::store::history::{HistoryError, Side};

/// Time between passes.
const PASS_EVERY: Duration = Duration::from_secs(60);
/// How long after an hour ends it is rolled up (the writers' queues and batches have landed).
const GRACE_US: i64 = 120 * 1_000_000;
/// Chunk sizes, hours: grown while chunks are small, shrunk when they hold many points.
const MAX_CHUNK_HOURS: i64 = 24;
const SMALL_CHUNK: usize = 50_000;
const LARGE_CHUNK: usize = 200_000;
/// Dirty ranges redone per pass, and kept at most.
const DIRTY_PER_PASS: usize = 64;
const MAX_DIRTY: usize = 10_000;
/// Rows deleted per retention statement.
const EXPIRE_CHUNK: usize = 5_000;
/// Time between tier-retention runs: tiers are kept for days, so an hour more is nothing, and a
/// run seeks into every entity's oldest rows of every tier.
const EXPIRE_EVERY_US: i64 = HOUR;
/// Longest time between asking the store for its oldest raw point (see
/// [`Rollups::learn_raw_first`]).
const RAW_FIRST_EVERY_US: i64 = HOUR;
/// Days of 5-minute rows kept when the tier is off but computed for local days.
const FIVE_MINUTE_MIN_DAYS: u32 = 2;
/// `meta_text` key of the zone the daily periods use.
const ZONE: &str = "zone";

impl Rollups {
    /// Passes every minute until `cancel` fires; after a failure (the storage unreachable) the
    /// next try comes after 5 s, doubling up to a minute, so the rollups (and `/health/deep`)
    /// recover within seconds of the storage.
    pub(super) async fn run(&self, cancel: CancellationToken) {
        const FIRST_RETRY: Duration = Duration::from_secs(5);
        let mut retry = FIRST_RETRY;
        loop {
            let wait = match self.pass(&cancel, Utc::now().timestamp_micros()).await {
                Ok(()) => {
                    lock(&self.0.progress).last_error = None;
                    retry = FIRST_RETRY;
                    PASS_EVERY
                }
                Err(e) => {
                    self.0.counters.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, retry_in_secs = retry.as_secs(), "rollup pass failed");
                    lock(&self.0.progress).last_error = Some(e.to_string());
                    let wait = retry.min(PASS_EVERY);
                    retry = (retry * 2).min(PASS_EVERY);
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    /// The zone of daily periods: the one stored at the first pass (days already composed keep
    /// their meaning), else the home's.
    async fn zone(&self) -> Result<Option<Tz>, RollupError> {
        if let Some(z) = lock(&self.0.progress).zone {
            return Ok(Some(z));
        }
        let tz = match self.0.db.meta_text(ZONE).await? {
            Some(name) => name.parse::<Tz>().ok(),
            None => {
                let asked = match &self.0.zone {
                    ZoneOf::Fixed(tz) => Ok(*tz),
                    ZoneOf::Ha(ha) => crate::ha::home_time_zone(ha, Duration::from_secs(10)).await,
                };
                match asked {
                    Ok(tz) => {
                        self.0.db.set_meta_text(ZONE, tz.name().to_owned()).await?;
                        Some(tz)
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "rollups wait for the home's time zone");
                        None
                    }
                }
            }
        };
        lock(&self.0.progress).zone = tz;
        Ok(tz)
    }

    /// One pass at `now_us`: late data, then closed hours (catching up in chunks), days,
    /// retention, the watermark.
    pub(super) async fn pass(
        &self,
        cancel: &CancellationToken,
        now_us: i64,
    ) -> Result<(), RollupError> {
        let Some(tz) = self.zone().await? else {
            return Ok(());
        };
        let mut cursor = match self.0.db.meta(CURSOR).await? {
            Some(c) => c,
            None => self.begin(tz, now_us).await?,
        };
        self.0.write_log.set_late_horizon(cursor);
        self.learn_raw_first(now_us).await?;
        self.collect_late().await?;
        self.redo_dirty(tz, cursor, now_us).await?;
        let limit = floor(now_us - GRACE_US, HOUR);
        let mut carries = self.0.db.carries().await?;
        let mut hours = 1;
        lock(&self.0.progress).catching_up = limit - cursor > 2 * HOUR;
        while cursor < limit && !cancel.is_cancelled() {
            let to = (cursor + hours * HOUR).min(limit);
            let read = match self.roll_chunk(tz, &mut carries, cursor, to, now_us).await {
                Ok(read) => read,
                // hours grown over sparse history meet dense history (a year of 50 sensors,
                // then 30 days of 2,000): the same range in smaller chunks
                Err(RollupError::History(HistoryError::TooLarge(e))) if hours > 1 => {
                    tracing::debug!(hours, error = %e, "rollup chunk too large: halved");
                    hours /= 2;
                    continue;
                }
                Err(e) => return Err(e),
            };
            cursor = to;
            self.0.write_log.set_late_horizon(cursor);
            lock(&self.0.progress).cursor_us = Some(cursor);
            if read < SMALL_CHUNK {
                hours = (hours * 2).min(MAX_CHUNK_HOURS);
            } else if read > LARGE_CHUNK {
                hours = (hours / 2).max(1);
            }
            self.compose_days(tz, cursor).await?;
            self.publish().await?;
            // late data written while catching up is redone before the cursor moves on
            self.collect_late().await?;
            tokio::task::yield_now().await;
        }
        lock(&self.0.progress).catching_up = false;
        self.compose_days(tz, cursor).await?;
        let expired_at = lock(&self.0.progress).expired_at;
        if expired_at.is_none_or(|t| now_us - t >= EXPIRE_EVERY_US || now_us < t) {
            self.expire(now_us).await?;
            lock(&self.0.progress).expired_at = Some(now_us);
        }
        self.publish().await
    }

    /// Asks the store for its oldest raw point (for [`Rollups::raw_from`]) when it may have
    /// moved: after raw retention ran ([`WriteLog::deletions`](crate::store::written::WriteLog::deletions)),
    /// when unknown, and at least every [`RAW_FIRST_EVERY_US`] (points deleted by someone else).
    /// Older points arriving later move it back in [`Rollups::collect_late`]. The question
    /// reads the first point of every series (on InfluxDB 0.2 s of CPU for 2,000 series):
    /// asked every minute it cost more than the day's rollups.
    async fn learn_raw_first(&self, now_us: i64) -> Result<(), RollupError> {
        let deletions = self.0.write_log.deletions();
        let due = {
            let p = lock(&self.0.progress);
            p.raw_first_us.is_none()
                || p.raw_first_deletions != deletions
                || p.raw_first_asked
                    .is_none_or(|t| now_us - t >= RAW_FIRST_EVERY_US || now_us < t)
        };
        if due {
            let first = self.0.history.first_point_us().await?;
            let mut p = lock(&self.0.progress);
            p.raw_first_us = first;
            p.raw_first_asked = Some(now_us);
            p.raw_first_deletions = deletions;
        }
        Ok(())
    }

    /// The first pass of an install: start at the local day of the oldest raw point.
    async fn begin(&self, tz: Tz, now: i64) -> Result<i64, RollupError> {
        let first = self.0.history.first_point_us().await?.unwrap_or(now);
        let day = day_start(tz, first.min(now));
        let cursor = floor(day, HOUR);
        self.0
            .db
            .apply(Batch {
                meta: vec![(CURSOR, cursor), (DAYS_UNTIL, day), (FIRST, first.min(now))],
                ..Batch::default()
            })
            .await?;
        tracing::info!(
            from = %crate::store::history::time_of(cursor),
            "rollups start from the oldest stored point"
        );
        Ok(cursor)
    }

    /// Whether 5-minute periods are computed for `[from, to)` at `now_us`: the tier is on and
    /// still keeps the range (a catch-up over a month wrote three weeks of 5-minute rows only for
    /// the next retention run to delete them: 10.7 million rows written, 14.6 million deleted
    /// for the large home), or a local day touching the range does not start on a whole UTC
    /// hour (its daily rows are composed from 5-minute periods).
    fn five_minute_needed(&self, tz: Tz, from: i64, to: i64, now_us: i64) -> bool {
        if self.0.retention.five_minute_days > 0 && to > self.kept_from(Tier::FiveMinute, now_us) {
            return true;
        }
        let mut d = day_start(tz, from);
        while d < to {
            let e = next_day(tz, d);
            if d % HOUR != 0 || e % HOUR != 0 {
                return true;
            }
            d = e;
        }
        false
    }

    /// Rolls up `[from, to)` (whole hours) for every entity; returns the points read.
    async fn roll_chunk(
        &self,
        tz: Tz,
        carries: &mut HashMap<String, RawPoint>,
        from: i64,
        to: i64,
        now_us: i64,
    ) -> Result<usize, RollupError> {
        let points = self.0.history.points_between(from, to).await?;
        let read = points.len();
        let five = self.five_minute_needed(tz, from, to, now_us);
        let (batch, kept) = summarise_chunk(&points, std::mem::take(carries), five, from, to);
        *carries = kept;
        let rows = batch.rows.len() as u64;
        self.0.db.apply(batch).await?;
        let c = &self.0.counters;
        c.chunks.fetch_add(1, Ordering::Relaxed);
        c.points_read.fetch_add(read as u64, Ordering::Relaxed);
        c.rows_written.fetch_add(rows, Ordering::Relaxed);
        Ok(read)
    }

    /// Composes every local day that ended by `cursor` and is not composed yet.
    async fn compose_days(&self, tz: Tz, cursor: i64) -> Result<(), RollupError> {
        let Some(mut day) = self.0.db.meta(DAYS_UNTIL).await? else {
            return Ok(());
        };
        loop {
            let end = next_day(tz, day);
            if end > cursor {
                return Ok(());
            }
            let rows = self.compose_day(day, end, None).await?;
            let mut batch = Batch {
                meta: vec![(DAYS_UNTIL, end)],
                ..Batch::default()
            };
            let n = rows.len() as u64;
            batch.rows = rows;
            self.0.db.apply(batch).await?;
            self.0.counters.days.fetch_add(1, Ordering::Relaxed);
            self.0.counters.rows_written.fetch_add(n, Ordering::Relaxed);
            day = end;
        }
    }

    /// The daily rows of `[day, end)` (of one entity, or all), from hours when the day starts and
    /// ends on whole UTC hours, else from 5-minute periods.
    async fn compose_day(
        &self,
        day: i64,
        end: i64,
        entity: Option<String>,
    ) -> Result<Vec<(Tier, String, PeriodSummary)>, RollupError> {
        let source = if day % HOUR == 0 && end % HOUR == 0 {
            Tier::Hour
        } else {
            Tier::FiveMinute
        };
        let parts = self.0.db.summaries(source, entity, day, end).await?;
        let mut rows = Vec::with_capacity(parts.len());
        for (e, parts) in parts {
            if let Some(s) = combine(day, &parts) {
                rows.push((Tier::Day, e, s));
            }
        }
        Ok(rows)
    }

    /// Moves the writers' late points into the dirty table.
    pub(super) async fn collect_late(&self) -> Result<(), RollupError> {
        let (late, lost) = self.0.write_log.take_late();
        if lost > 0 {
            tracing::warn!(
                lost,
                "late points of too many entities at once: their rollups are not corrected"
            );
            // their times are unknown: ask the store for the oldest raw point again
            lock(&self.0.progress).raw_first_asked = None;
        }
        if late.is_empty() {
            return Ok(());
        }
        // points older than the oldest raw point known move it back
        if let Some(earliest) = late.iter().map(|l| l.1).min() {
            let mut p = lock(&self.0.progress);
            if let Some(first) = p.raw_first_us.as_mut() {
                *first = (*first).min(earliest);
            }
        }
        let ranges = late
            .into_iter()
            .map(|(entity_id, a, b)| Dirty {
                entity_id,
                start_us: a,
                end_us: b.saturating_add(1),
            })
            .collect();
        self.0.db.mark_dirty(ranges, MAX_DIRTY).await
    }

    /// Rolls up again the dirty ranges before the cursor (a bounded number per pass).
    async fn redo_dirty(&self, tz: Tz, cursor: i64, now_us: i64) -> Result<(), RollupError> {
        let dirty = self.0.db.dirty(DIRTY_PER_PASS).await?;
        let days_until = self.0.db.meta(DAYS_UNTIL).await?.unwrap_or(i64::MIN);
        // the oldest point rolled up again: history older than the first pass's start (imported,
        // backfilled into an empty install) moves the start of what the rollups cover back
        let mut oldest_redone: Option<i64> = None;
        for d in dirty {
            if d.start_us >= cursor {
                self.0
                    .db
                    .apply(Batch {
                        done: vec![d],
                        ..Batch::default()
                    })
                    .await?;
                continue;
            }
            let e = d.entity_id.clone();
            let h0 = floor(d.start_us, HOUR);
            let next = self.0.history.point_near(&e, d.end_us, Side::From).await?;
            let h1 = next
                .map_or(cursor, |p| ceil(p.time_us + 1, HOUR))
                .min(cursor);
            let carry = self.0.history.point_near(&e, h0, Side::Before).await?;
            let pts = self.0.history.entity_points(&e, h0, h1).await?;
            let mut batch = Batch {
                clear: vec![
                    (Tier::Hour, e.clone(), h0, h1),
                    (Tier::FiveMinute, e.clone(), h0, h1),
                ],
                ..Batch::default()
            };
            for s in summarise(carry.as_ref(), &pts, &bounds(h0, h1, HOUR)) {
                batch.rows.push((Tier::Hour, e.clone(), s));
            }
            if self.five_minute_needed(tz, h0, h1, now_us) {
                for s in summarise(carry.as_ref(), &pts, &bounds(h0, h1, FIVE_MINUTES)) {
                    batch.rows.push((Tier::FiveMinute, e.clone(), s));
                }
            }
            if h1 == cursor
                && let Some(last) = pts.last().or(carry.as_ref())
            {
                batch.carry.push(last.clone());
            }
            oldest_redone = Some(oldest_redone.map_or(d.start_us, |o| o.min(d.start_us)));
            batch.done.push(d);
            self.0.db.apply(batch).await?;
            // the local days touched, already composed
            let mut day = day_start(tz, h0);
            let mut days = Batch::default();
            while day < h1 {
                let end = next_day(tz, day);
                if end > days_until {
                    break;
                }
                days.clear.push((Tier::Day, e.clone(), day, end));
                days.rows
                    .extend(self.compose_day(day, end, Some(e.clone())).await?);
                day = end;
            }
            self.0.db.apply(days).await?;
            self.0.counters.recomputed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(oldest) = oldest_redone
            && self
                .0
                .db
                .meta(FIRST)
                .await?
                .is_none_or(|first| oldest < first)
        {
            self.0
                .db
                .apply(Batch {
                    meta: vec![(FIRST, oldest)],
                    ..Batch::default()
                })
                .await?;
        }
        let left = self.0.db.dirty(MAX_DIRTY).await?.len();
        lock(&self.0.progress).dirty = left;
        Ok(())
    }

    /// Where `tier` keeps its rows from at `now_us`: older ones are deleted (by
    /// [`Rollups::expire`], up to [`EXPIRE_EVERY_US`] later), so reads rely on rows from here
    /// on only. Imported statistics are never deleted.
    pub(super) fn kept_from(&self, tier: Tier, now_us: i64) -> i64 {
        let r = &self.0.retention;
        let days = match tier {
            Tier::Raw | Tier::Imported => return i64::MIN,
            Tier::FiveMinute if r.five_minute_days == 0 => FIVE_MINUTE_MIN_DAYS,
            Tier::FiveMinute => r.five_minute_days,
            Tier::Hour => r.hourly_days,
            Tier::Day => r.daily_days,
        };
        now_us.saturating_sub(i64::from(days) * 24 * HOUR)
    }

    /// Deletes rows older than their tier's retention ([`Rollups::kept_from`]), a chunk per
    /// statement.
    async fn expire(&self, now: i64) -> Result<(), RollupError> {
        for tier in [Tier::FiveMinute, Tier::Hour, Tier::Day] {
            loop {
                let n = self
                    .0
                    .db
                    .expire(tier, self.kept_from(tier, now), EXPIRE_CHUNK)
                    .await?;
                self.0.counters.expired.fetch_add(n, Ordering::Relaxed);
                if n < EXPIRE_CHUNK as u64 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        Ok(())
    }

    /// Publishes the watermark: the end of the composed days, or the earliest dirty range.
    pub(super) async fn publish(&self) -> Result<(), RollupError> {
        let days = self.0.db.meta(DAYS_UNTIL).await?;
        let cursor = self.0.db.meta(CURSOR).await?;
        let first = self.0.db.meta(FIRST).await?;
        let dirty = self.0.db.dirty(1).await?.first().map(|d| d.start_us);
        {
            let mut p = lock(&self.0.progress);
            p.cursor_us = cursor.or(p.cursor_us);
            p.first_us = first;
        }
        // the first day is composed only once it ends: before, nothing is promised
        let until = match (days, first) {
            (Some(d), Some(f)) if d > f => Some(d),
            _ => None,
        };
        let until = match (until, dirty) {
            (Some(u), Some(d)) => Some(u.min(d)),
            (u, _) => u,
        };
        let t = until.map(crate::store::history::time_of);
        self.0.watermark.send_if_modified(|w| {
            let changed = *w != t;
            *w = t;
            changed
        });
        Ok(())
    }
}

/// The rows of `[from, to)` of every entity in `points` (sorted by entity, then time) or in
/// `carries` (the last point before `from` of each entity), hourly and, when `five`, 5-minute;
/// the carries move on to each entity's last point.
fn summarise_chunk(
    points: &[RawPoint],
    mut carries: HashMap<String, RawPoint>,
    five: bool,
    from: i64,
    to: i64,
) -> (Batch, HashMap<String, RawPoint>) {
    let mut by_entity: HashMap<&str, &[RawPoint]> = HashMap::new();
    let mut i = 0;
    while i < points.len() {
        let e = points[i].entity_id.as_str();
        let j = i + points[i..].iter().take_while(|p| p.entity_id == e).count();
        by_entity.insert(e, &points[i..j]);
        i = j;
    }
    let mut entities: Vec<String> = carries.keys().cloned().collect();
    entities.extend(
        by_entity
            .keys()
            .filter(|e| !carries.contains_key(**e))
            .map(|e| (*e).to_owned()),
    );
    let hour_bounds = bounds(from, to, HOUR);
    let five_bounds = five.then(|| bounds(from, to, FIVE_MINUTES));
    let mut batch = Batch {
        meta: vec![(CURSOR, to)],
        ..Batch::default()
    };
    for e in entities {
        let pts = by_entity.get(e.as_str()).copied().unwrap_or(&[]);
        let carry = carries.get(&e);
        for s in summarise(carry, pts, &hour_bounds) {
            batch.rows.push((Tier::Hour, e.clone(), s));
        }
        if let Some(b) = &five_bounds {
            for s in summarise(carry, pts, b) {
                batch.rows.push((Tier::FiveMinute, e.clone(), s));
            }
        }
        if let Some(last) = pts.last() {
            batch.carry.push(last.clone());
            carries.insert(e, last.clone());
        }
    }
    (batch, carries)
}
