//! The write side of history, one handle over the storage backends.
//!
//! Everything that records history (the pipeline, the heartbeat, the gap backfill) pushes
//! [`Point`]s of the `homeiq` schema (or `ha_compat`, InfluxDB only) into a [`HistoryWriter`] and
//! reads its [`WriterStatus`]; the API reports it. Both backends share the contract: `push` never
//! blocks, rewriting a point (same entity and time) overwrites it, and `shutdown` writes what it
//! can within its deadline.

use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;

use crate::store::embedded::EmbeddedWriter;
use crate::store::influx::{Point, QuarantinedPoint, ShutdownReport, WriterHandle, WriterStatus};

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
    /// The backend's name as the API reports it: `influxdb` or `embedded`.
    pub fn backend(&self) -> &'static str {
        match self {
            HistoryWriter::Influx(_) => "influxdb",
            HistoryWriter::Embedded(_) => "embedded",
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

    /// Waits until the writer can take a point without dropping one. Immediate for InfluxDB
    /// (its queue spills to the spool); for the embedded store, see
    /// [`EmbeddedWriter::wait_for_room`](crate::store::embedded::EmbeddedWriter::wait_for_room).
    pub async fn wait_for_room(&self) {
        if let HistoryWriter::Embedded(w) = self {
            w.wait_for_room().await;
        }
    }

    /// A snapshot of the writer's counters.
    pub fn stats(&self) -> WriterStatus {
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
