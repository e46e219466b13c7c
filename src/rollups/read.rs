//! Aggregates read from the right tier: each bucket assembled from the coarsest rollups that
//! tile it, and raw points for the rest (the range's ragged edges, the hour not rolled up yet).
//!
//! Buckets: widths that are not whole days start at multiples of the width since the Unix epoch
//! (as InfluxDB's `GROUP BY time`); whole days (`1d`, `7d`) are the home's local days (23 or
//! 25 hours across DST), counted from 1970-01-01. Every bucket is labelled with its start, which
//! may lie before the range's start (the first bucket is cut at the range start).
//!
//! A tier serves a part of the range when every bucket boundary inside that part is one of the
//! tier's period boundaries: 5 minutes for widths that are multiples of 5 minutes, hours for
//! multiples of an hour (and local days that start on whole UTC hours), local days for whole-day
//! widths. Its rows are read where it has them (hours and 5-minute periods before the cursor,
//! days before the last composed day); hours with no own row use Home Assistant's imported
//! statistics when there are any. Summaries of pieces combine exactly ([`combine`]), so the answer
//! equals the raw aggregate (the same [`summarise`] over raw points) for count, min, max and last,
//! and to float rounding for the mean.

use chrono_tz::Tz;

use super::compute::{PeriodSummary, combine, summarise};
use super::periods::{FIVE_MINUTES, HOUR, SEC, day_start, floor, local_date, next_day};
use super::store::{CURSOR, DAYS_UNTIL, FIRST};
use super::{RollupError, Rollups, Tier, lock};
use crate::store::history::{
    AggregatePoint, AggregateQuery, AggregateSeries, Cursor, HistoryError, HistoryPage,
    HistoryQuery, HistoryRecord, HistoryStore, Side, after_cursor, record_order, time_of,
};
use crate::store::origin::Origin;

/// An aggregate answer and the tier it was read from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TieredAggregate {
    /// The coarsest tier any bucket used (`imported` when imported statistics were used).
    pub tier: Tier,
    /// One series per entity.
    pub series: Vec<AggregateSeries>,
}

/// The bucket boundaries of `[start, end)`: `start`, every bucket start inside, `end`; and the
/// label (aligned start) of the first bucket.
pub(crate) fn buckets(tz: Tz, start: i64, end: i64, interval_secs: u64) -> (Vec<i64>, i64) {
    let iv = i64::try_from(interval_secs.max(1))
        .unwrap_or(i64::MAX / SEC)
        .saturating_mul(SEC);
    if interval_secs.is_multiple_of(86_400) {
        let n = i64::try_from(interval_secs / 86_400).unwrap_or(1).max(1);
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        let index = |t: i64| (local_date(tz, t) - epoch).num_days();
        // the first bucket's start: back to a day whose index is a multiple of n
        let mut first = day_start(tz, start);
        for _ in 0..n {
            if index(first).rem_euclid(n) == 0 {
                break;
            }
            first = day_start(tz, first - 1);
        }
        let mut out = vec![start];
        let mut d = next_day(tz, start);
        while d < end {
            if index(d).rem_euclid(n) == 0 {
                out.push(d);
            }
            d = next_day(tz, d);
        }
        out.push(end);
        (out, first)
    } else {
        let mut out = vec![start];
        let mut t = floor(start, iv) + iv;
        while t < end {
            out.push(t);
            t += iv;
        }
        out.push(end);
        (out, floor(start, iv))
    }
}

/// A part of the range and where it is read.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Piece {
    tier: Tier,
    from: i64,
    to: i64,
}

/// A tier's boundaries and where its rows exist.
struct TierSpan {
    tier: Tier,
    /// The first period boundary at or after `t`.
    up: fn(Tz, i64) -> i64,
    /// The last period boundary at or before `t`.
    down: fn(Tz, i64) -> i64,
    /// Its rows exist in `[from, until)`.
    from: i64,
    until: i64,
}

fn up_hour(_: Tz, t: i64) -> i64 {
    super::periods::ceil(t, HOUR)
}
fn down_hour(_: Tz, t: i64) -> i64 {
    floor(t, HOUR)
}
fn up_five(_: Tz, t: i64) -> i64 {
    super::periods::ceil(t, FIVE_MINUTES)
}
fn down_five(_: Tz, t: i64) -> i64 {
    floor(t, FIVE_MINUTES)
}
fn up_day(tz: Tz, t: i64) -> i64 {
    let d = day_start(tz, t);
    if d == t { t } else { next_day(tz, t) }
}
fn down_day(tz: Tz, t: i64) -> i64 {
    day_start(tz, t)
}

/// Covers `[from, to)` with the first usable tier of `tiers`, the rest with the following ones,
/// raw last.
fn cover(tz: Tz, from: i64, to: i64, tiers: &[TierSpan], out: &mut Vec<Piece>) {
    if from >= to {
        return;
    }
    let Some((t, rest)) = tiers.split_first() else {
        out.push(Piece {
            tier: Tier::Raw,
            from,
            to,
        });
        return;
    };
    if t.from >= to || t.until <= from {
        // the tier holds nothing of the range (nothing rolled up yet: `from` is the end of time)
        return cover(tz, from, to, rest, out);
    }
    let a = (t.up)(tz, from.max(t.from));
    let b = (t.down)(tz, to.min(t.until));
    if a >= b || a < from {
        return cover(tz, from, to, rest, out);
    }
    cover(tz, from, a, rest, out);
    out.push(Piece {
        tier: t.tier,
        from: a,
        to: b,
    });
    cover(tz, b, to, rest, out);
}

/// The raw summaries of `entity` over the buckets of `[from, to)`.
pub(crate) async fn raw_summaries(
    history: &HistoryStore,
    entity: &str,
    from: i64,
    to: i64,
    bounds: &[i64],
) -> Result<Vec<PeriodSummary>, HistoryError> {
    let carry = history.point_near(entity, from, Side::Before).await?;
    let points = history.entity_points(entity, from, to).await?;
    let mut cut: Vec<i64> = vec![from];
    cut.extend(bounds.iter().copied().filter(|&b| b > from && b < to));
    cut.push(to);
    Ok(summarise(carry.as_ref(), &points, &cut))
}

impl Rollups {
    /// The home's zone for buckets (UTC until known).
    pub(crate) fn bucket_zone(&self) -> Tz {
        lock(&self.0.progress).zone.unwrap_or(Tz::UTC)
    }

    /// Whether an aggregate with this bucket width may be read from rollups (and so may span up
    /// to `retention.daily_days` and name up to 50 entities).
    pub(crate) fn serves(&self, interval_secs: u64) -> bool {
        interval_secs.is_multiple_of(3_600)
            || (interval_secs.is_multiple_of(300) && self.0.retention.five_minute_days > 0)
    }

    /// `retention.daily_days`.
    pub(crate) fn max_days(&self) -> u32 {
        self.0.retention.daily_days
    }

    /// Aggregates of `q` from the right tiers (`raw_only`: from raw points alone, the reference).
    pub(crate) async fn aggregate(
        &self,
        q: &AggregateQuery,
        raw_only: bool,
    ) -> Result<TieredAggregate, RollupError> {
        let tz = self.bucket_zone();
        let (start, end) = (q.start.timestamp_micros(), q.end.timestamp_micros());
        let (bounds, first_label) = buckets(tz, start, end, q.interval_secs);
        let interior = &bounds[1..bounds.len().saturating_sub(1)];
        let cursor = self.0.db.meta(CURSOR).await?.unwrap_or(i64::MIN);
        let days_until = self.0.db.meta(DAYS_UNTIL).await?.unwrap_or(i64::MIN);
        // own rollups start at the local day of the oldest raw point; hours before it may hold
        // imported statistics
        let rolled_from = match self.0.db.meta(FIRST).await? {
            Some(f) => day_start(tz, f),
            None => i64::MAX,
        };
        let now = chrono::Utc::now().timestamp_micros();
        let plan = |kept: &dyn Fn(Tier) -> i64| {
            let mut tiers = Vec::new();
            if raw_only {
                return tiers;
            }
            if q.interval_secs.is_multiple_of(86_400) {
                tiers.push(TierSpan {
                    tier: Tier::Day,
                    up: up_day,
                    down: down_day,
                    from: rolled_from.max(kept(Tier::Day)),
                    until: days_until,
                });
            }
            let hourly = interior.iter().all(|b| b % HOUR == 0);
            if hourly {
                tiers.push(TierSpan {
                    tier: Tier::Hour,
                    up: up_hour,
                    down: down_hour,
                    from: rolled_from.max(kept(Tier::Hour)),
                    until: cursor,
                });
            }
            if self.0.retention.five_minute_days > 0
                && interior.iter().all(|b| b % FIVE_MINUTES == 0)
            {
                tiers.push(TierSpan {
                    tier: Tier::FiveMinute,
                    up: up_five,
                    down: down_five,
                    from: rolled_from.max(kept(Tier::FiveMinute)),
                    until: cursor,
                });
            }
            if hourly {
                // before the own rollups start only imported statistics can serve
                tiers.push(TierSpan {
                    tier: Tier::Imported,
                    up: up_hour,
                    down: down_hour,
                    from: i64::MIN,
                    until: rolled_from,
                });
            }
            tiers
        };
        let raw_time = |pieces: &[Piece]| -> i64 {
            pieces
                .iter()
                .filter(|p| p.tier == Tier::Raw)
                .map(|p| p.to - p.from)
                .sum()
        };
        // a tier serves only where it still keeps rows: [`Rollups::expire`] deletes older ones
        let mut pieces = Vec::new();
        cover(
            tz,
            start,
            end,
            &plan(&|t| self.kept_from(t, now)),
            &mut pieces,
        );
        let max_raw = i64::from(self.0.max_raw_days) * 24 * HOUR;
        if !raw_only && raw_time(&pieces) > max_raw {
            // were every tier kept forever, would the rollups serve? then its retention is why
            let mut kept_forever = Vec::new();
            cover(tz, start, end, &plan(&|_| i64::MIN), &mut kept_forever);
            return Err(if raw_time(&kept_forever) > max_raw {
                RollupError::CatchingUp
            } else {
                RollupError::Expired {
                    max_raw_days: self.0.max_raw_days,
                    five_minute_days: self.0.retention.five_minute_days,
                    hourly_days: self.0.retention.hourly_days,
                }
            });
        }
        let mut answer_tier = Tier::Raw;
        let mut series = Vec::with_capacity(q.entity_ids.len());
        for entity in &q.entity_ids {
            let mut per_bucket: Vec<Vec<PeriodSummary>> = vec![Vec::new(); bounds.len() - 1];
            for p in &pieces {
                let parts = match p.tier {
                    Tier::Raw => {
                        raw_summaries(&self.0.history, entity, p.from, p.to, &bounds).await?
                    }
                    tier => {
                        let mut rows = self
                            .0
                            .db
                            .numeric(tier, entity.clone(), p.from, p.to)
                            .await?;
                        if tier == Tier::Hour {
                            let imported = self
                                .0
                                .db
                                .numeric(Tier::Imported, entity.clone(), p.from, p.to)
                                .await?;
                            if !imported.is_empty() {
                                let own: std::collections::HashSet<i64> =
                                    rows.iter().map(|r| r.start_us).collect();
                                let before = rows.len();
                                rows.extend(
                                    imported.into_iter().filter(|r| !own.contains(&r.start_us)),
                                );
                                if rows.len() > before {
                                    answer_tier = Tier::Imported;
                                }
                                rows.sort_by_key(|r| r.start_us);
                            }
                        }
                        if !rows.is_empty() {
                            answer_tier = answer_tier.max(tier);
                        }
                        rows.into_iter()
                            .map(|r| PeriodSummary {
                                start_us: r.start_us,
                                numeric: Some(r.summary),
                                states: Vec::new(),
                            })
                            .collect()
                    }
                };
                for s in parts {
                    let i = bounds
                        .partition_point(|&b| b <= s.start_us)
                        .saturating_sub(1);
                    if let Some(b) = per_bucket.get_mut(i) {
                        b.push(PeriodSummary {
                            states: Vec::new(),
                            ..s
                        });
                    }
                }
            }
            let mut points = Vec::new();
            for (i, parts) in per_bucket.iter().enumerate() {
                let label = if i == 0 { first_label } else { bounds[i] };
                if let Some(n) = combine(label, parts).and_then(|c| c.numeric) {
                    points.push(AggregatePoint {
                        time: time_of(label),
                        mean: n.mean,
                        min: Some(n.min),
                        max: Some(n.max),
                        count: n.count,
                        last: Some(n.last),
                    });
                }
            }
            series.push(AggregateSeries {
                entity_id: entity.clone(),
                points,
            });
        }
        Ok(TieredAggregate {
            tier: answer_tier,
            series,
        })
    }
}

impl Rollups {
    /// The oldest raw point still stored (as the last pass found it): a history range wholly
    /// before it is answered from rollups.
    pub(crate) fn raw_from(&self) -> Option<i64> {
        lock(&self.0.progress).raw_first_us
    }

    /// A history page from rollups (see [`HistoryPage::tier`]): per entity its hourly rows in the
    /// range, else its daily rows, else its imported hours.
    pub(crate) async fn history_page(&self, q: &HistoryQuery) -> Result<HistoryPage, RollupError> {
        let tz = self.bucket_zone();
        let (start, end) = (q.start.timestamp_micros(), q.end.timestamp_micros() + 1);
        let mut tier = Tier::Raw;
        let mut records = Vec::new();
        for entity in &q.entity_ids {
            for t in [Tier::Hour, Tier::Day, Tier::Imported] {
                let rows = self.0.db.numeric(t, entity.clone(), start, end).await?;
                if rows.is_empty() {
                    continue;
                }
                tier = tier.max(t);
                for r in rows {
                    let n = r.summary;
                    let secs = match t {
                        Tier::Day => (next_day(tz, r.start_us) - r.start_us) as f64 / 1e6,
                        _ => 3_600.0,
                    };
                    let mut attributes = serde_json::Map::new();
                    attributes.insert("min".into(), serde_json::json!(n.min));
                    attributes.insert("max".into(), serde_json::json!(n.max));
                    attributes.insert("count".into(), serde_json::json!(n.count));
                    attributes.insert("last".into(), serde_json::json!(n.last));
                    records.push(HistoryRecord {
                        entity_id: entity.clone(),
                        time: time_of(r.start_us),
                        state: Some(n.last.to_string()),
                        value: n.mean,
                        attributes,
                        origin: Origin::unknown(),
                        previous_state: None,
                        previous_duration_secs: None,
                        duration_secs: Some(secs),
                    });
                }
                break;
            }
        }
        let key = |r: &HistoryRecord| (r.time.timestamp_micros(), r.entity_id.clone());
        let order = record_order(q.order);
        records.sort_by(|a, b| order(&key(a), &key(b)));
        records.retain(|r| {
            after_cursor(
                q.order,
                q.after.as_ref(),
                r.time.timestamp_micros(),
                &r.entity_id,
            )
        });
        let more = records.len() > q.limit;
        records.truncate(q.limit);
        let next_cursor = more.then(|| records.last()).flatten().map(|r| {
            Cursor {
                time_us: r.time.timestamp_micros(),
                entity_id: r.entity_id.clone(),
            }
            .encode()
        });
        Ok(HistoryPage {
            items: records,
            next_cursor,
            tier,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tier_with_nothing_rolled_up_leaves_the_range_to_raw() {
        // before the first pass: the rollups start at the end of time
        let tz: Tz = "Europe/Amsterdam".parse().expect("tz");
        let tiers = [TierSpan {
            tier: Tier::FiveMinute,
            up: up_five,
            down: down_five,
            from: i64::MAX,
            until: i64::MIN,
        }];
        let mut out = Vec::new();
        cover(tz, 0, 10 * HOUR + 7, &tiers, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].tier, out[0].from, out[0].to),
            (Tier::Raw, 0, 10 * HOUR + 7)
        );
        assert_eq!(super::super::periods::ceil(i64::MAX - 1, HOUR), i64::MAX);
    }
}
