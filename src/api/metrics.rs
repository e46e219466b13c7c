//! Prometheus metrics at `GET /metrics` (OpenMetrics text).
//!
//! The numbers already live in the parts' status snapshots (the Home Assistant client, the
//! pipeline, the writer); a `prometheus-client` [`Collector`] reads them at scrape time, so there is
//! one source of truth and nothing to keep in step on the hot path.
//!
//! The history writer's metrics are `homeiq_storage_*{backend="influxdb"|"embedded"}`; those of
//! InfluxDB's quarantine and spool (`homeiq_storage_spool_*`, `…_quarantined_points`,
//! `…_points_rejected`) exist only with InfluxDB.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::AppState;
use crate::counters::CounterSet;
use crate::ha::ConnectionState;

/// The content type of the exposition.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reads every status snapshot at scrape time.
struct StatusCollector {
    state: AppState,
}

impl fmt::Debug for StatusCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatusCollector")
    }
}

fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Every counter of a [`CounterSet`] as `<prefix>_<metric>`, its documentation as help.
fn counter_set<S: CounterSet>(encoder: &mut DescriptorEncoder<'_>, set: &S) -> fmt::Result {
    let mut result = Ok(());
    set.each(&mut |metric, help, value| {
        if result.is_ok() {
            let name = format!("{}_{metric}", S::PREFIX);
            result = counter(encoder, &name, help, value);
        }
    });
    result
}

/// [`counter_set`] with one label on every counter.
fn labelled_counter_set<S: CounterSet>(
    encoder: &mut DescriptorEncoder<'_>,
    set: &S,
    label: (&str, &str),
) -> fmt::Result {
    let mut result = Ok(());
    set.each(&mut |metric, help, value| {
        if result.is_ok() {
            let name = format!("{}_{metric}", S::PREFIX);
            result = labelled_counter(encoder, &name, help, label, value);
        }
    });
    result
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: f64) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn labelled_counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: (&str, &str),
    value: u64,
) -> fmt::Result {
    let metric = ConstCounter::new(value);
    let mut family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(family.encode_family(&[label])?)
}

fn labelled_gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: (&str, &str),
    value: f64,
) -> fmt::Result {
    let metric = ConstGauge::new(value);
    let mut family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(family.encode_family(&[label])?)
}

/// The storage guard's gauges: `homeiq_storage_disk_*`, `homeiq_storage_store_bytes{store}`,
/// growth, days until full and the level.
fn storage_guard(
    e: &mut DescriptorEncoder<'_>,
    g: &crate::storage::StorageGuardStatus,
) -> fmt::Result {
    use crate::storage::StorageLevel;
    if let Some(disk) = g.disk {
        gauge(
            e,
            "homeiq_storage_disk_total_bytes",
            "Size of the data directory's file system",
            disk.total_bytes as f64,
        )?;
        gauge(
            e,
            "homeiq_storage_disk_used_bytes",
            "Bytes used on the data directory's file system (by anyone)",
            disk.used_bytes as f64,
        )?;
        gauge(
            e,
            "homeiq_storage_disk_available_bytes",
            "Bytes HomeIQ may still write on the data directory's file system",
            disk.available_bytes as f64,
        )?;
        gauge(
            e,
            "homeiq_storage_disk_used_ratio",
            "Used share of the data directory's file system, 0..1",
            disk.used_percent() / 100.0,
        )?;
    }
    if !g.stores.is_empty() {
        let metric = ConstGauge::new(0.0);
        let mut family = e.encode_descriptor(
            "homeiq_storage_store_bytes",
            "Bytes on disk of each of HomeIQ's stores in the data directory",
            None,
            metric.metric_type(),
        )?;
        for store in &g.stores {
            ConstGauge::new(store.bytes as f64)
                .encode(family.encode_family(&[("store", store.store.as_str())])?)?;
        }
    }
    if let Some(growth) = g.growth_bytes_per_day {
        gauge(
            e,
            "homeiq_storage_disk_growth_bytes_per_day",
            "Growth of the data directory's file system over the last week, bytes per day",
            growth,
        )?;
    }
    if let Some(days) = g.days_until_full {
        gauge(
            e,
            "homeiq_storage_days_until_full",
            "Days until the data directory's file system is full at its growth",
            days,
        )?;
    }
    let level = match g.level {
        StorageLevel::Ok => 0.0,
        StorageLevel::Warning => 1.0,
        StorageLevel::Critical => 2.0,
        StorageLevel::Unknown => -1.0,
    };
    gauge(
        e,
        "homeiq_storage_level",
        "Storage guard level: 0 ok, 1 warning, 2 critical, -1 unknown",
        level,
    )
}

impl Collector for StatusCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let s = &self.state;
        let ha = s.ha.status();
        let connected = matches!(ha.state, ConnectionState::Connected { .. });
        gauge(
            &mut e,
            "homeiq_ha_connected",
            "1 while subscribed to Home Assistant",
            f64::from(u8::from(connected)),
        )?;
        counter_set(&mut e, &ha.counts)?;
        gauge(
            &mut e,
            "homeiq_ha_queue_depth",
            "Messages waiting between the WebSocket reader and the pipeline",
            ha.queue_depth as f64,
        )?;
        if let Some(age) = ha.last_event_age_secs {
            gauge(
                &mut e,
                "homeiq_ha_last_event_age_seconds",
                "Seconds since the last state_changed event",
                age,
            )?;
        }

        counter_set(&mut e, &s.ingest.snapshot())?;
        gauge(
            &mut e,
            "homeiq_entities_tracked",
            "Entities with a current state",
            s.states.len() as f64,
        )?;

        let w = s.writer.stats();
        let backend = w.backend.as_str();
        let storage_gauge = |e: &mut DescriptorEncoder<'_>, name, help, value| {
            labelled_gauge(e, name, help, ("backend", backend), value)
        };
        storage_gauge(
            &mut e,
            "homeiq_storage_reachable",
            "1 while the history backend takes writes (InfluxDB answers, the embedded store commits)",
            f64::from(u8::from(w.reachable)),
        )?;
        storage_gauge(
            &mut e,
            "homeiq_storage_queued_points",
            "Points held in memory for the history backend",
            w.queued as f64,
        )?;
        storage_gauge(
            &mut e,
            "homeiq_storage_in_flight_points",
            "Points in writes under way",
            w.in_flight as f64,
        )?;
        labelled_counter_set(&mut e, &w.counts, ("backend", backend))?;
        if let Some(ms) = w.last_latency_ms {
            storage_gauge(
                &mut e,
                "homeiq_storage_last_write_latency_seconds",
                "Duration of the last write",
                ms / 1000.0,
            )?;
        }
        // InfluxDB's own: refused points, the quarantine and the spool
        if let Some(influx) = &w.influxdb {
            labelled_counter_set(&mut e, &influx.counts, ("backend", backend))?;
            labelled_counter_set(&mut e, &influx.spool, ("backend", backend))?;
            storage_gauge(
                &mut e,
                "homeiq_storage_spool_active",
                "1 while batches go to the disk spool",
                f64::from(u8::from(influx.spooling)),
            )?;
            storage_gauge(
                &mut e,
                "homeiq_storage_spool_bytes",
                "Bytes in the disk spool",
                influx.spool_bytes as f64,
            )?;
            storage_gauge(
                &mut e,
                "homeiq_storage_spool_points",
                "Points waiting in the disk spool",
                influx.spool_points as f64,
            )?;
            storage_gauge(
                &mut e,
                "homeiq_storage_spool_oldest_age_seconds",
                "Age of the oldest spooled point",
                influx.spool_oldest_age_secs.unwrap_or(0.0),
            )?;
        }

        counter_set(&mut e, &s.heartbeat.snapshot())?;
        counter_set(&mut e, &s.rollups.counts())?;
        counter_set(&mut e, &s.llm.status().counters)?;
        storage_guard(&mut e, &s.storage_guard.status())?;
        counter_set(&mut e, &s.retention.counts())?;
        counter_set(&mut e, &s.import.counts())?;
        let b = s.backfill.status();
        counter(&mut e, "homeiq_backfill_runs", "Gap backfills run", b.runs)?;
        counter(
            &mut e,
            "homeiq_backfill_points",
            "Points written from Home Assistant's history",
            b.total_points,
        )?;
        counter(
            &mut e,
            "homeiq_backfill_truncated",
            "Gaps longer than backfill.window_hours",
            b.truncated,
        )?;

        gauge(
            &mut e,
            "homeiq_uptime_seconds",
            "Seconds since start",
            s.started.elapsed().as_secs_f64(),
        )?;
        gauge(
            &mut e,
            "homeiq_live_stream_listeners",
            "Live stream clients and other listeners of state changes",
            s.live.listeners() as f64,
        )?;
        let w = s.webhooks.counters().snapshot();
        counter_set(&mut e, &w.counts)?;
        gauge(
            &mut e,
            "homeiq_webhook_last_trigger_latency_seconds",
            "State change in Home Assistant to the start of the first delivery attempt, last delivery",
            w.last_trigger_latency_ms as f64 / 1000.0,
        )?;
        let per_target = s.webhooks.counters().per_target();
        for (name, help, pick) in [
            (
                "homeiq_webhook_deliveries_succeeded",
                "Webhook deliveries that succeeded, by target id",
                0usize,
            ),
            (
                "homeiq_webhook_deliveries_failed",
                "Webhook deliveries given up, by target id",
                1usize,
            ),
        ] {
            let metric_type = ConstCounter::new(0u64).metric_type();
            let mut family = e.encode_descriptor(name, help, None, metric_type)?;
            for (target, ok, failed) in &per_target {
                let value = if pick == 0 { *ok } else { *failed };
                let labels = [("target", target.as_str())];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        let catalog = s.catalog.current();
        gauge(
            &mut e,
            "homeiq_registry_devices",
            "Devices in the registry mirror",
            catalog.devices.len() as f64,
        )?;
        gauge(
            &mut e,
            "homeiq_registry_entities",
            "Entities known (registry and state-only)",
            catalog.entities.len() as f64,
        )?;
        if let Some(rss) = resident_bytes() {
            gauge(
                &mut e,
                "homeiq_process_resident_memory_bytes",
                "Resident memory of the process",
                rss as f64,
            )?;
        }
        Ok(())
    }
}

/// Resident memory of this process, from `/proc/self/statm` (Linux).
pub(crate) fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A registry whose collector reads `state` at every scrape, plus the live histograms: history
/// write durations (labelled with the backend) and HTTP request durations by route.
pub(crate) fn registry(state: AppState, http: super::guard::HttpDurations) -> Registry {
    let mut registry = Registry::default();
    registry
        .sub_registry_with_label(("backend".into(), state.writer.backend().as_str().into()))
        .register(
            "homeiq_storage_write_duration_seconds",
            "Duration of writes to the history backend (InfluxDB requests answered, embedded \
             transactions)",
            state.writer.latency_histogram(),
        );
    registry.register(
        "homeiq_http_request_duration_seconds",
        "Duration of HTTP requests by method, route and status class",
        http,
    );
    registry.register_collector(Box::new(StatusCollector { state }));
    registry
}

/// Renders the registry as OpenMetrics text.
pub(crate) fn render(registry: &Registry) -> Result<String, fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}
