//! The load generator (`--rate N`): exactly N state changes per second in total, a deterministic
//! sequence for a seed, published in batches every [`TICK`] so connections send them as
//! coalesced frames.
//!
//! The k-th change is drawn from one SplitMix64 stream seeded with the seed: which entity (among
//! the numeric sensors, binary sensors, lights and switches) and its new value. The schedule is
//! `floor(N × elapsed)` changes after `elapsed` seconds; a generator that falls more than a second
//! behind drops the backlog and counts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::hub::Hub;

/// How often a batch is produced.
pub(crate) const TICK: Duration = Duration::from_millis(5);
/// The most changes made under one lock hold (one bus batch).
pub(crate) const CHUNK: usize = 2_000;

/// Counters of the load generator.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Changes produced.
    pub produced: AtomicU64,
    /// Changes skipped because the generator fell behind.
    pub skipped: AtomicU64,
}

/// A deterministic 64-bit generator (SplitMix64).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    /// Seeded.
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// Next value.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// What an entity of the pool does.
#[derive(Debug, Clone)]
enum Kind {
    /// A numeric sensor: a random walk around its value.
    Number(f64),
    /// An on/off entity.
    Toggle(bool),
}

/// The deterministic sequence of changes: (index into the home's states, new state).
pub(crate) struct Sequence {
    rng: SplitMix,
    pool: Vec<(usize, Kind)>,
}

impl Sequence {
    /// The sequence for the home's states (as generated) and a seed.
    pub(crate) fn new(states: &[super::home::EntityState], seed: u64) -> Self {
        let pool = states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.domain() {
                "sensor" => s.state.parse::<f64>().ok().map(|v| (i, Kind::Number(v))),
                "binary_sensor" | "light" | "switch" => Some((i, Kind::Toggle(s.state == "on"))),
                _ => None,
            })
            .collect();
        Sequence {
            rng: SplitMix::new(seed),
            pool,
        }
    }

    /// The next change, if the pool is not empty.
    pub(crate) fn next_change(&mut self) -> Option<(usize, String)> {
        if self.pool.is_empty() {
            return None;
        }
        let r = self.rng.next_u64();
        let k = (r % self.pool.len() as u64) as usize;
        let (idx, kind) = &mut self.pool[k];
        let state = match kind {
            Kind::Number(v) => {
                // ±1 % steps, in tenths
                let step = ((r >> 32) % 21) as f64 - 10.0;
                *v = ((*v + step * 0.1 + v.abs() * step * 0.001) * 10.0).round() / 10.0;
                format!("{:.1}", *v)
            }
            Kind::Toggle(on) => {
                *on = !*on;
                if *on {
                    "on".to_owned()
                } else {
                    "off".to_owned()
                }
            }
        };
        Some((*idx, state))
    }
}

/// Produces `rate` changes per second until cancelled; prints the achieved rate every
/// `report_every`.
pub(crate) async fn run(
    hub: Arc<Hub>,
    rate: u64,
    seed: u64,
    stats: Arc<LoadStats>,
    report_every: Duration,
    cancel: CancellationToken,
) {
    let mut seq = hub.with(|inner| Sequence::new(&inner.home.states, seed)).0;
    let start = Instant::now();
    let mut produced: u64 = 0;
    let mut skipped: u64 = 0;
    let mut last_report = (start, 0u64);
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = cancel.cancelled() => break,
        }
        let elapsed = start.elapsed();
        let due = (u128::from(rate) * elapsed.as_nanos() / 1_000_000_000) as u64;
        let mut todo = due.saturating_sub(produced + skipped);
        if todo > rate.max(1) {
            let drop = todo - rate.max(1);
            skipped += drop;
            stats.skipped.fetch_add(drop, Ordering::Relaxed);
            tracing::warn!(
                skipped = drop,
                "the load generator fell more than a second behind; skipping"
            );
            todo = rate.max(1);
        }
        while todo > 0 && !cancel.is_cancelled() {
            let n = todo.min(CHUNK as u64);
            hub.with(|inner| {
                for _ in 0..n {
                    if let Some((idx, state)) = seq.next_change() {
                        inner.set_state_fast(idx, state);
                    }
                }
            });
            produced += n;
            todo -= n;
            stats.produced.store(produced, Ordering::Relaxed);
            // let connections run between chunks
            tokio::task::yield_now().await;
        }
        let now = Instant::now();
        if now.duration_since(last_report.0) >= report_every {
            let secs = now.duration_since(last_report.0).as_secs_f64();
            let achieved = (produced - last_report.1) as f64 / secs;
            println!(
                "rate: {achieved:.0} changes/s over the last {secs:.1} s (target {rate}/s, \
                 {produced} produced, {skipped} skipped)"
            );
            last_report = (now, produced);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "rate: {:.0} changes/s on average over {secs:.1} s (target {rate}/s, {produced} produced, \
         {skipped} skipped)",
        produced as f64 / secs.max(1e-9)
    );
}

#[cfg(test)]
mod tests {
    use super::super::home::{Profile, generate};
    use super::*;

    #[test]
    fn the_sequence_is_deterministic_per_seed() {
        let home = generate(Profile::Small, 1, 0);
        let take = |seed| {
            let mut s = Sequence::new(&home.states, seed);
            (0..1_000)
                .filter_map(|_| s.next_change())
                .collect::<Vec<_>>()
        };
        assert_eq!(take(5), take(5));
        assert_ne!(take(5), take(6));
        let seq = take(5);
        assert_eq!(seq.len(), 1_000);
        for (idx, state) in &seq {
            let domain = home.states[*idx].domain();
            assert!(matches!(
                domain,
                "sensor" | "binary_sensor" | "light" | "switch"
            ));
            if domain == "sensor" {
                assert!(state.parse::<f64>().is_ok());
            }
        }
    }
}
