//! The write side of history, one handle over the storage backends.
//!
//! Everything that records history (the pipeline, the heartbeat, the gap backfill) pushes
//! [`Point`]s of the `homeiq` schema (or `ha_compat`, InfluxDB only) into a [`HistoryWriter`] and
//! reads its [`StorageStatus`]; the API reports it as the `storage` object of `/health/deep` and
//! `/api/v1/metrics/realtime`, and `/metrics` as `homeiq_storage_*{backend}`. Both backends share
//! the contract: `push` never
//! blocks, rewriting a point (same entity and time) overwrites it, and `shutdown` writes what it
//! can within its deadline.

use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;
use utoipa::ToSchema;

use crate::health::{Health, Verdict};
use crate::store::embedded::EmbeddedWriter;
use crate::store::influx::{InfluxWriterStatus, QuarantinedPoint, WriterHandle};
use crate::store::point::Point;

/// What a history writer's shutdown achieved (either backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Points written over the writer's lifetime.
    pub written: u64,
    /// Points appended to the spool at shutdown (replayed at the next start).
    pub spooled: u64,
    /// Points neither written nor spooled when it returned: lost.
    pub left: usize,
}

/// Where history is stored (`storage` in the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// InfluxDB 1.x.
    Influxdb,
    /// SQLite in the data folder (`history.db`).
    Embedded,
}

impl StorageBackend {
    /// The name the API and the metrics' `backend` label use.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageBackend::Influxdb => "influxdb",
            StorageBackend::Embedded => "embedded",
        }
    }
}

crate::counters::counters! {
    /// The counters both history writers keep, bumped on their write paths; `/metrics` publishes
    /// them as `homeiq_storage_*{backend}`.
    pub struct WriterCounters => WriterCounts ("homeiq_storage") {
        /// Points stored (for InfluxDB: acknowledged, live and replayed).
        written => "points_written",
        /// Points that could not be encoded (no writable field, bad measurement).
        dropped_invalid => "points_unencodable",
        /// Points dropped from memory: the queue's hard limit was reached (without a spool: the
        /// queue was full), or they were pushed after shutdown. The oldest go first.
        dropped_overflow => "points_dropped_overflow",
        /// Batches put back for another attempt.
        retries => "write_retries",
        /// Write requests or transactions that did not fully succeed.
        write_errors,
        /// Writes refused because the disk (or the database's page limit) is full: the embedded
        /// store keeps the batch and retries, the InfluxDB spool counts the append it could not
        /// make and goes on.
        disk_full => "disk_full_errors",
    }
}

/// A snapshot of the history writer's counters: the `storage` object of `/health/deep` and
/// `/api/v1/metrics/realtime`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StorageStatus {
    /// Where history goes.
    pub backend: StorageBackend,
    /// Whether the backend took the last write: InfluxDB answered the last request, the embedded
    /// store committed the last transaction.
    pub reachable: bool,
    /// Points waiting in memory (including batches waiting to be retried or, for InfluxDB, on
    /// their way to the spool).
    pub queued: usize,
    /// Points in write requests or transactions under way.
    pub in_flight: usize,
    /// The counters both backends keep.
    #[serde(flatten)]
    pub counts: WriterCounts,
    /// When the last write succeeded (RFC 3339).
    pub last_write_at: Option<String>,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Duration of the last write, milliseconds.
    pub last_latency_ms: Option<f64>,
    /// Mean duration of writes since start, milliseconds.
    pub mean_latency_ms: Option<f64>,
    /// Median duration of the last 256 writes, milliseconds.
    pub p50_latency_ms: Option<f64>,
    /// 95th percentile duration of the last 256 writes, milliseconds.
    pub p95_latency_ms: Option<f64>,
    /// InfluxDB's credentials, quarantine and spool; present only with `backend` `influxdb`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub influxdb: Option<InfluxWriterStatus>,
}

impl StorageStatus {
    /// The InfluxDB writer's own counters; all zero for the embedded store.
    pub fn influx(&self) -> &InfluxWriterStatus {
        self.influxdb.as_ref().unwrap_or(&InfluxWriterStatus::NONE)
    }

    /// The history store's judgement of itself: refused credentials fail; a store that does not
    /// take writes (points held in memory or spooled) is degraded; points lost in the past are
    /// warnings.
    pub fn health(&self) -> Health {
        let mut health = Health::default();
        let held = |extra: String| {
            format!(
                "{} points held in memory{extra}{}",
                self.queued + self.in_flight,
                self.last_error
                    .as_ref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            )
        };
        let Some(influx) = &self.influxdb else {
            if !self.reachable {
                health.flag(
                    Verdict::Degraded,
                    format!(
                        "the embedded history store cannot write; {}",
                        held(String::new())
                    ),
                );
            }
            if self.counts.dropped_overflow > 0 {
                health.warn(format!(
                    "{} points were dropped because the embedded store fell behind and memory was full",
                    self.counts.dropped_overflow
                ));
            }
            return health;
        };
        if let Some(auth) = &influx.auth_error {
            health.flag(
                Verdict::Failed,
                format!(
                    "InfluxDB refused the credentials ({auth}); check influxdb.username/password/token"
                ),
            );
        } else if !self.reachable || influx.spooling {
            health.flag(
                Verdict::Degraded,
                format!(
                    "InfluxDB is unreachable; {}; they are written when it is back",
                    held(format!(
                        " and {} spooled to disk ({} bytes{})",
                        influx.spool_points,
                        influx.spool_bytes,
                        influx
                            .spool_oldest_age_secs
                            .map(|a| format!(", oldest {a:.0} s"))
                            .unwrap_or_default(),
                    ))
                ),
            );
        }
        if influx.spool.spool_dropped > 0 || self.counts.dropped_overflow > 0 {
            health.warn(format!(
                "{} points were dropped because the spool reached spool.max_bytes or spool.max_age_hours, and {} because memory was full; raise the bound or fix InfluxDB sooner",
                influx.spool.spool_dropped, self.counts.dropped_overflow
            ));
        }
        if influx.spool.spool_corrupt_records > 0 {
            health.warn(format!(
                "{} damaged spool records ({} bytes) were skipped and their points lost (counted in spool_dropped when known); check the disk of the data directory",
                influx.spool.spool_corrupt_records, influx.spool.spool_corrupt_bytes
            ));
        }
        if influx.counts.quarantined > 0 {
            health.warn(format!(
                "{} points were refused by InfluxDB as invalid and quarantined; see /api/v1/quarantine",
                influx.counts.quarantined
            ));
        }
        health
    }
}

/// Where history points go.
#[derive(Debug, Clone)]
pub enum HistoryWriter {
    /// InfluxDB, through the batching writer with its spool.
    Influx(WriterHandle),
    /// The embedded SQLite store.
    Embedded(EmbeddedWriter),
}

impl From<WriterHandle> for HistoryWriter {
    fn from(w: WriterHandle) -> Self {
        HistoryWriter::Influx(w)
    }
}

impl From<EmbeddedWriter> for HistoryWriter {
    fn from(w: EmbeddedWriter) -> Self {
        HistoryWriter::Embedded(w)
    }
}

impl HistoryWriter {
    /// Where history goes.
    pub fn backend(&self) -> StorageBackend {
        match self {
            HistoryWriter::Influx(_) => StorageBackend::Influxdb,
            HistoryWriter::Embedded(_) => StorageBackend::Embedded,
        }
    }

    /// The log of acknowledged writes, for the API's history cache.
    pub fn write_log(&self) -> std::sync::Arc<crate::store::written::WriteLog> {
        match self {
            HistoryWriter::Influx(w) => w.write_log(),
            HistoryWriter::Embedded(w) => w.write_log(),
        }
    }

    /// Queues a point; never blocks, awaits or touches the disk.
    pub fn push(&self, point: Point) {
        match self {
            HistoryWriter::Influx(w) => w.push(point),
            HistoryWriter::Embedded(w) => w.push(point),
        }
    }

    /// [`push`](Self::push) for a point the caller keeps and reuses (a
    /// [`ScratchPoint`](crate::store::influx::ScratchPoint)): InfluxDB's writer queues it encoded,
    /// the embedded store a copy.
    pub fn push_ref(&self, point: &Point) {
        match self {
            HistoryWriter::Influx(w) => w.push_ref(point),
            HistoryWriter::Embedded(w) => w.push(point.clone()),
        }
    }

    /// Waits until the writer can take a point without dropping one. Immediate for InfluxDB
    /// (its queue spills to the spool); for the embedded store, see
    /// [`EmbeddedWriter::wait_for_room`](crate::store::embedded::EmbeddedWriter::wait_for_room).
    pub async fn wait_for_room(&self) {
        if let HistoryWriter::Embedded(w) = self {
            w.wait_for_room().await;
        }
    }

    /// Points held in memory and batches put back so far (`queued + in_flight` and `retries`
    /// of [`stats`](Self::stats)); cheap for InfluxDB, sampled often by the backfill's cursor.
    pub fn held_and_retries(&self) -> (usize, u64) {
        match self {
            HistoryWriter::Influx(w) => w.held_and_retries(),
            HistoryWriter::Embedded(w) => {
                let s = w.stats();
                (s.queued + s.in_flight, s.counts.retries)
            }
        }
    }

    /// A snapshot of the writer's counters.
    pub fn stats(&self) -> StorageStatus {
        match self {
            HistoryWriter::Influx(w) => w.stats(),
            HistoryWriter::Embedded(w) => w.stats(),
        }
    }

    /// The histogram of write durations (seconds), for Prometheus.
    pub fn latency_histogram(&self) -> Histogram {
        match self {
            HistoryWriter::Influx(w) => w.latency_histogram(),
            HistoryWriter::Embedded(w) => w.latency_histogram(),
        }
    }

    /// Points the backend refused as invalid, newest first (InfluxDB only; the embedded store
    /// refuses nothing it can store).
    pub fn quarantine(&self, limit: usize, offset: usize) -> Vec<QuarantinedPoint> {
        match self {
            HistoryWriter::Influx(w) => w.quarantine(limit, offset),
            HistoryWriter::Embedded(_) => Vec::new(),
        }
    }

    /// Number of quarantined points kept.
    pub fn quarantine_len(&self) -> usize {
        match self {
            HistoryWriter::Influx(w) => w.quarantine_len(),
            HistoryWriter::Embedded(_) => 0,
        }
    }

    /// Stops accepting points and flushes within `deadline`.
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        match self {
            HistoryWriter::Influx(w) => w.shutdown(deadline).await,
            HistoryWriter::Embedded(w) => w.shutdown(deadline).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Verdict;

    fn status(backend: StorageBackend) -> StorageStatus {
        StorageStatus {
            backend,
            reachable: true,
            queued: 0,
            in_flight: 0,
            counts: WriterCounts {
                written: 10,
                ..WriterCounts::ZERO
            },
            last_write_at: None,
            last_error: None,
            last_latency_ms: None,
            mean_latency_ms: None,
            p50_latency_ms: None,
            p95_latency_ms: None,
            influxdb: (backend == StorageBackend::Influxdb).then_some(InfluxWriterStatus::NONE),
        }
    }

    #[test]
    fn each_backend_judges_itself_in_its_own_words() {
        assert_eq!(status(StorageBackend::Embedded).health(), Health::default());
        assert_eq!(status(StorageBackend::Influxdb).health(), Health::default());

        let mut embedded = status(StorageBackend::Embedded);
        embedded.reachable = false;
        embedded.queued = 7;
        embedded.counts.dropped_overflow = 2;
        let h = embedded.health();
        assert_eq!(h.verdict, Verdict::Degraded);
        assert!(h.reasons[0].starts_with("the embedded history store cannot write; 7 points"));
        assert!(!h.reasons[0].contains("InfluxDB"), "{:?}", h.reasons);
        assert_eq!(h.warnings.len(), 1);

        let mut refused = status(StorageBackend::Influxdb);
        refused.influxdb = Some(InfluxWriterStatus {
            auth_error: Some("401".into()),
            spooling: true,
            counts: crate::store::influx::InfluxCounts {
                quarantined: 3,
                ..crate::store::influx::InfluxCounts::ZERO
            },
            ..InfluxWriterStatus::NONE
        });
        let h = refused.health();
        assert_eq!(h.verdict, Verdict::Failed);
        assert_eq!(h.reasons.len(), 1, "credentials first: {:?}", h.reasons);
        assert!(h.warnings[0].contains("3 points were refused by InfluxDB"));

        let mut spooling = status(StorageBackend::Influxdb);
        spooling.influxdb = Some(InfluxWriterStatus {
            spooling: true,
            spool_points: 40,
            ..InfluxWriterStatus::NONE
        });
        let h = spooling.health();
        assert_eq!(h.verdict, Verdict::Degraded);
        assert!(
            h.reasons[0].contains("40 spooled to disk"),
            "{:?}",
            h.reasons
        );
    }
}
