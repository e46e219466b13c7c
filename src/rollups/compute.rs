//! The arithmetic of rollups, pure: one entity's points in, one summary per period out.
//!
//! The same functions serve the maintenance task (periods of 5 minutes and hours), the daily
//! composition (hours or 5-minute periods combined into local days) and the raw aggregate of the
//! API (buckets of any width), so a rollup and the aggregate of the raw points it summarises agree
//! by construction.
//!
//! # What a period's numbers mean
//!
//! The value of an entity is a step function: each point's `value` holds from its time until the
//! entity's next point. A point without a number (`unavailable`, `unknown`, a text state) starts a
//! gap, which holds no value. For a period `[start, end)`:
//!
//! * `mean`: the time-weighted mean of the step function over the part of the period where it has
//!   a value (as Home Assistant's statistics): the value holding at `start` is carried in from the
//!   entity's last point before the period; gaps have no weight. `None` when no value held at all.
//! * `min`, `max`: over every value that held during the period for some time (the carried-in
//!   one included when the period's first point is after its start).
//! * `count`: the points with a number whose time lies in the period, heartbeat rewrites excluded.
//! * `last`: the last value that held during the period (the value at its end, or before the
//!   gap it ends in).
//! * `sum` (only for `state_class: total_increasing`): the increases of the meter in the period,
//!   by Home Assistant's rule: a value below 90 % of the previous one is a reset (the increase is
//!   the new value); any other change counts as it is (a small decrease counts negative). The
//!   first value ever seen starts the meter (no increase).
//! * per text state (a state that is not a number, including `unavailable`): the seconds it held
//!   and how often it was entered in the period, at most [`MAX_STATES`] states per period, the
//!   rest summed into [`OTHER_STATE`].
//!
//! Periods combine exactly ([`combine`]): means weighted by the time they cover, min of mins,
//! max of maxes, counts and sums added, the last of the latest period.

use std::collections::BTreeMap;

pub(crate) use crate::store::history::RawPoint;

/// Most distinct text states kept per entity and period; the rest are summed as [`OTHER_STATE`].
pub(crate) const MAX_STATES: usize = 32;

/// The state that stands for the states beyond [`MAX_STATES`].
pub(crate) const OTHER_STATE: &str = "(other)";

/// A point's state, when it is text (not a number).
fn text_state(p: &RawPoint) -> Option<&str> {
    p.state
        .as_deref()
        .filter(|s| !s.trim().parse::<f64>().is_ok_and(f64::is_finite))
}

/// The numbers of one entity in one period.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NumericSummary {
    /// Time-weighted mean over `covered_us`; `None` when no value held.
    pub mean: Option<f64>,
    /// µs of the period in which a value held.
    pub covered_us: i64,
    /// Smallest value that held.
    pub min: f64,
    /// Largest value that held.
    pub max: f64,
    /// Samples in the period (heartbeat rewrites excluded).
    pub count: u64,
    /// Last value that held.
    pub last: f64,
    /// Increases of a `total_increasing` meter; `None` for other entities.
    pub sum: Option<f64>,
}

/// Time in one text state within a period.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StateSummary {
    /// The state.
    pub state: String,
    /// µs it held.
    pub held_us: i64,
    /// Times it was entered.
    pub entered: u64,
}

/// One entity's summary of one period.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PeriodSummary {
    /// Period start, µs.
    pub start_us: i64,
    /// Numbers, when a value held or a sample was taken.
    pub numeric: Option<NumericSummary>,
    /// Text states held, by state (bounded, see [`MAX_STATES`]).
    pub states: Vec<StateSummary>,
}

/// What a period accumulates.
#[derive(Default)]
struct Acc {
    integral: f64,
    covered_us: i64,
    min: Option<f64>,
    max: Option<f64>,
    count: u64,
    last: Option<f64>,
    sum: Option<f64>,
    states: BTreeMap<String, (i64, u64)>,
}

impl Acc {
    fn see(&mut self, v: f64) {
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
        self.last = Some(v);
    }

    fn finish(self, start_us: i64) -> Option<PeriodSummary> {
        let numeric = match (self.min, self.max, self.last) {
            (Some(min), Some(max), Some(last)) => Some(NumericSummary {
                mean: (self.covered_us > 0).then(|| self.integral / self.covered_us as f64),
                covered_us: self.covered_us,
                min,
                max,
                count: self.count,
                last,
                sum: self.sum,
            }),
            _ => None,
        };
        let states = bound_states(
            self.states
                .into_iter()
                .map(|(state, (held_us, entered))| StateSummary {
                    state,
                    held_us,
                    entered,
                })
                .collect(),
        );
        (numeric.is_some() || !states.is_empty()).then_some(PeriodSummary {
            start_us,
            numeric,
            states,
        })
    }
}

/// At most [`MAX_STATES`] states: those held longest (ties by name), the rest as [`OTHER_STATE`].
fn bound_states(mut states: Vec<StateSummary>) -> Vec<StateSummary> {
    if states.len() <= MAX_STATES {
        return states;
    }
    states.sort_by(|a, b| {
        b.held_us
            .cmp(&a.held_us)
            .then_with(|| a.state.cmp(&b.state))
    });
    let rest = states.split_off(MAX_STATES - 1);
    let mut other = StateSummary {
        state: OTHER_STATE.to_owned(),
        held_us: 0,
        entered: 0,
    };
    for s in rest {
        other.held_us += s.held_us;
        other.entered += s.entered;
    }
    states.push(other);
    states.sort_by(|a, b| a.state.cmp(&b.state));
    states
}

/// The meter's increase from `previous` to `v` (Home Assistant's reset rule).
fn increase(previous: Option<f64>, v: f64) -> f64 {
    match previous {
        None => 0.0,
        Some(p) if v < 0.9 * p => v,
        Some(p) => v - p,
    }
}

/// Summaries of one entity over the periods between consecutive `bounds` (µs, ascending):
/// `carry` is its last point before `bounds[0]` (`None`: none), `points` its points in
/// `[bounds[0], bounds[last])` in time order. Periods where nothing held are left out.
pub(crate) fn summarise(
    carry: Option<&RawPoint>,
    points: &[RawPoint],
    bounds: &[i64],
) -> Vec<PeriodSummary> {
    let mut out = Vec::new();
    let mut held: Option<&RawPoint> = carry;
    // the meter's last number (across gaps), and the last text state entered
    let mut meter: Option<f64> = carry.and_then(|c| c.value);
    let mut last_state: Option<&str> = carry.and_then(|c| c.state.as_deref());
    let mut i = 0;
    for w in bounds.windows(2) {
        let (start, end) = (w[0], w[1]);
        let mut acc = Acc::default();
        let mut seg_start = start;
        // the carried-in value counts once it held for some time (see `close`)
        if held.is_some_and(|h| h.total_increasing) {
            acc.sum = Some(0.0);
        }
        while i < points.len() && points[i].time_us < end {
            let p = &points[i];
            i += 1;
            if p.time_us < start {
                continue;
            }
            close(&mut acc, held, seg_start, p.time_us);
            seg_start = p.time_us;
            if let Some(v) = p.value {
                if !p.heartbeat {
                    acc.count += 1;
                }
                if p.total_increasing {
                    *acc.sum.get_or_insert(0.0) += increase(meter, v);
                }
                meter = Some(v);
            }
            if let Some(s) = text_state(p)
                && !p.heartbeat
                && last_state != Some(s)
            {
                acc.states.entry(s.to_owned()).or_default().1 += 1;
            }
            if p.state.is_some() {
                last_state = p.state.as_deref();
            }
            held = Some(p);
        }
        close(&mut acc, held, seg_start, end);
        out.extend(acc.finish(start));
    }
    out
}

/// Adds the segment `[from, to)` during which `held` held.
fn close(acc: &mut Acc, held: Option<&RawPoint>, from: i64, to: i64) {
    let Some(h) = held else { return };
    let dt = to - from;
    if dt <= 0 {
        return;
    }
    if let Some(v) = h.value {
        acc.integral += v * dt as f64;
        acc.covered_us += dt;
        acc.see(v);
    }
    if let Some(s) = text_state(h) {
        acc.states.entry(s.to_owned()).or_default().0 += dt;
    }
}

/// Combines consecutive summaries (oldest first) into one starting at `start_us`: exact (means
/// weighted by the time they cover, up to float rounding).
pub(crate) fn combine(start_us: i64, parts: &[PeriodSummary]) -> Option<PeriodSummary> {
    let mut numeric: Option<NumericSummary> = None;
    let mut weighted = 0.0;
    let mut states: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    for p in parts {
        if let Some(n) = &p.numeric {
            if let Some(m) = n.mean {
                weighted += m * n.covered_us as f64;
            }
            numeric = Some(match numeric {
                None => n.clone(),
                Some(a) => NumericSummary {
                    mean: None,
                    covered_us: a.covered_us + n.covered_us,
                    min: a.min.min(n.min),
                    max: a.max.max(n.max),
                    count: a.count + n.count,
                    last: n.last,
                    sum: match (a.sum, n.sum) {
                        (None, None) => None,
                        (x, y) => Some(x.unwrap_or(0.0) + y.unwrap_or(0.0)),
                    },
                },
            });
        }
        for s in &p.states {
            let e = states.entry(s.state.clone()).or_default();
            e.0 += s.held_us;
            e.1 += s.entered;
        }
    }
    if let Some(n) = &mut numeric {
        n.mean = (n.covered_us > 0).then(|| weighted / n.covered_us as f64);
    }
    let states = bound_states(
        states
            .into_iter()
            .map(|(state, (held_us, entered))| StateSummary {
                state,
                held_us,
                entered,
            })
            .collect(),
    );
    (numeric.is_some() || !states.is_empty()).then_some(PeriodSummary {
        start_us,
        numeric,
        states,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn p(t: i64, v: Option<f64>) -> RawPoint {
        RawPoint {
            entity_id: "sensor.x".into(),
            time_us: t * S,
            value: v,
            state: Some(v.map_or("unavailable".to_owned(), |v| v.to_string())),
            heartbeat: false,
            total_increasing: false,
        }
    }

    #[test]
    fn the_mean_is_weighted_by_time_with_the_value_carried_in_and_gaps_left_out() {
        let carry = p(-10, Some(10.0));
        // 0..30: 10 (carried), 30..60: 20, 60..80: unavailable, 80..100: 40
        let points = [p(30, Some(20.0)), p(60, None), p(80, Some(40.0))];
        let out = summarise(Some(&carry), &points, &[0, 100 * S]);
        let n = out[0].numeric.clone().expect("numeric");
        let want = (10.0 * 30.0 + 20.0 * 30.0 + 40.0 * 20.0) / 80.0;
        assert!((n.mean.expect("mean") - want).abs() < 1e-9);
        assert_eq!(n.covered_us, 80 * S);
        assert_eq!((n.min, n.max, n.count, n.last), (10.0, 40.0, 2, 40.0));
        assert_eq!(out[0].states[0].state, "unavailable");
        assert_eq!(out[0].states[0].held_us, 20 * S);
        assert_eq!(out[0].states[0].entered, 1);
    }

    #[test]
    fn heartbeats_hold_the_value_and_are_not_samples() {
        let mut hb = p(50, Some(5.0));
        hb.heartbeat = true;
        let out = summarise(None, &[p(10, Some(5.0)), hb], &[0, 100 * S]);
        let n = out[0].numeric.clone().expect("numeric");
        assert_eq!(n.count, 1);
        assert_eq!(n.covered_us, 90 * S);
    }

    #[test]
    fn meter_resets_follow_home_assistants_rule() {
        let mk = |t, v| RawPoint {
            total_increasing: true,
            ..p(t, Some(v))
        };
        // 100 → 110 (+10) → 105 (−5, not a reset) → 50 (reset: +50) → 60 (+10)
        let points = [
            mk(1, 100.0),
            mk(2, 110.0),
            mk(3, 105.0),
            mk(4, 50.0),
            mk(5, 60.0),
        ];
        let out = summarise(None, &points, &[0, 10 * S]);
        assert_eq!(out[0].numeric.clone().expect("n").sum, Some(65.0));
        // split in two periods: the same total
        let out = summarise(None, &points, &[0, 3 * S, 10 * S]);
        let total: f64 = out.iter().filter_map(|o| o.numeric.as_ref()?.sum).sum();
        assert_eq!(total, 65.0);
    }

    #[test]
    fn states_are_bounded_with_the_rest_as_other() {
        let points: Vec<RawPoint> = (0..40)
            .map(|i| RawPoint {
                state: Some(format!("s{i:02}")),
                value: None,
                ..p(i, None)
            })
            .collect();
        let out = summarise(None, &points, &[0, 100 * S]);
        assert_eq!(out[0].states.len(), MAX_STATES);
        let total: i64 = out[0].states.iter().map(|s| s.held_us).sum();
        assert_eq!(total, 100 * S);
        assert!(out[0].states.iter().any(|s| s.state == OTHER_STATE));
    }
}
