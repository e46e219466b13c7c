//! Operations endpoints: health, the dashboard's realtime numbers, Prometheus text, the effective
//! configuration and the quarantine.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::rates::RateSnapshot;
use super::{AppState, metrics};
use crate::ha::{ConnectionPhase, ConnectionState, HaStatus};
use crate::health::{Health, Verdict};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Params, within};
use crate::ingest::{BackfillStatus, HeartbeatCounts, IngestStatus};
use crate::registry::RegistrySyncStatus;
use crate::store::sink::StorageStatus;
use crate::webhooks::WebhookStatus;

/// The answer of `/health`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Liveness {
    /// Always `ok`: the process serves requests.
    pub status: Verdict,
    /// HomeIQ's version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_secs: u64,
}

/// Liveness for the Supervisor's watchdog: no I/O, always 200 while the process serves requests.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Alive", body = Liveness)))]
#[get("/health")]
pub(crate) async fn health(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(Liveness {
        status: Verdict::Ok,
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: state.started.elapsed().as_secs(),
    })
}

/// The SQLite metadata database, as `/health/deep` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SqliteHealth {
    /// Whether it answered.
    pub ok: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Webhooks in `/health/deep`: their status, or why it could not be read.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum WebhooksReport {
    /// Targets, deliveries by status and counters.
    Status(WebhookStatus),
    /// The webhook store could not be read.
    Unreadable {
        /// What went wrong.
        error: String,
    },
}

/// `/health/deep`: every component's status with one verdict.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeepReport {
    /// The worst verdict of any component.
    pub status: Verdict,
    /// Where history goes and the writer's counters.
    pub storage: StorageStatus,
    /// Current problems, in plain words.
    pub reasons: Vec<String>,
    /// Past losses worth knowing; they do not change the verdict.
    pub warnings: Vec<String>,
    /// HomeIQ's version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The Home Assistant connection.
    pub home_assistant: HaStatus,
    /// The SQLite metadata database.
    pub sqlite: SqliteHealth,
    /// The registry mirror's sync task.
    pub registry: RegistrySyncStatus,
    /// The ingest pipeline.
    pub ingest: IngestStatus,
    /// Gap backfill from Home Assistant's history.
    pub backfill: BackfillStatus,
    /// Signed webhooks.
    pub webhooks: WebhooksReport,
    /// The heartbeat.
    pub heartbeat: HeartbeatCounts,
    /// The optional language model that rewords suggestions (`llm.*`).
    pub llm: crate::llm::LlmStatus,
    /// The data directory's disk: usage, HomeIQ's stores, growth, level.
    pub storage_guard: crate::storage::StorageGuardStatus,
    /// Raw retention: settings in effect, last and next run.
    pub retention: crate::retention::RetentionStatus,
    /// The import of Home Assistant's past (a failed one is a warning).
    pub import: crate::import::ImportStatus,
    /// Rollups: how far behind now they are, the catch-up over existing history.
    pub rollups: crate::rollups::RollupStatus,
}

/// Asks every component for its status and judgement and combines them.
pub(crate) async fn deep_report(state: &AppState) -> DeepReport {
    let ha = state.ha.status();
    let storage = state.writer.stats();
    let mut judged = ha.health().merge(storage.health());
    let sqlite = match state.registry.ping().await {
        Ok(()) => SqliteHealth {
            ok: true,
            error: None,
        },
        Err(e) => {
            judged.flag(
                Verdict::Failed,
                format!("SQLite metadata database unusable: {e}"),
            );
            SqliteHealth {
                ok: false,
                error: Some(e.to_string()),
            }
        }
    };
    let llm = state.llm.status();
    judged = judged
        .merge(llm.health())
        .merge(state.storage_guard.health())
        .merge(state.retention.health())
        .merge(state.import.health());
    let rollups = state.rollups.status().await;
    judged = judged.merge(rollups.health());
    let webhooks = match state.webhooks.status().await {
        Ok(w) => {
            judged = judged.merge(w.health());
            WebhooksReport::Status(w)
        }
        Err(e) => WebhooksReport::Unreadable {
            error: e.to_string(),
        },
    };
    let Health {
        verdict,
        reasons,
        warnings,
    } = judged;
    DeepReport {
        status: verdict,
        storage,
        reasons,
        warnings,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_secs: state.started.elapsed().as_secs(),
        home_assistant: ha,
        sqlite,
        registry: state.registry_sync.status(),
        ingest: IngestStatus {
            counts: state.ingest.snapshot(),
            entities_tracked: state.states.len(),
        },
        backfill: state.backfill.status(),
        webhooks,
        heartbeat: state.heartbeat.snapshot(),
        llm,
        storage_guard: state.storage_guard.status(),
        retention: state.retention.status(),
        import: state.import.status(),
        rollups,
    }
}

/// Every dependency with a verdict: `ok`, `degraded` (working, something needs attention) or
/// `failed` (503: cannot work until someone acts), with reasons in plain words.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "ok or degraded", body = DeepReport),
        (status = 503, description = "failed", body = DeepReport),
    )
)]
#[get("/health/deep")]
pub(crate) async fn health_deep(state: web::Data<AppState>) -> HttpResponse {
    let report = deep_report(&state).await;
    let mut response = if report.status == Verdict::Failed {
        HttpResponse::ServiceUnavailable()
    } else {
        HttpResponse::Ok()
    };
    response.json(report)
}

/// Prometheus / OpenMetrics text.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, content_type = "application/openmetrics-text", body = String))
)]
#[get("/metrics")]
pub(crate) async fn prometheus(
    registry: web::Data<prometheus_client::registry::Registry>,
) -> Result<HttpResponse, ApiError> {
    let text = metrics::render(&registry)
        .map_err(|e| ApiError::internal(format!("cannot render metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(text))
}

/// Home Assistant connection, for the dashboard.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HaSummary {
    /// The connection's state.
    pub state: ConnectionPhase,
    /// Whether events flow.
    pub connected: bool,
    /// Home Assistant's version.
    pub version: Option<String>,
    /// Seconds since the last event.
    pub last_event_age_secs: Option<f64>,
    /// Successful connections since start.
    pub connects: u64,
    /// The last connection error.
    pub last_error: Option<String>,
}

/// Queue depths (the writer's own queue is in `storage`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Queues {
    /// Messages between the WebSocket reader and the pipeline.
    pub ha_queue: usize,
}

/// Counts for the dashboard.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Counts {
    /// Devices.
    pub devices: usize,
    /// Entities (registry and state-only).
    pub entities: usize,
    /// Entities with a current state.
    pub entities_with_state: usize,
    /// Areas.
    pub areas: usize,
    /// Floors.
    pub floors: usize,
    /// Labels.
    pub labels: usize,
    /// Integrations.
    pub integrations: usize,
    /// Events received since start.
    pub events_total: u64,
    /// Live stream listeners.
    pub live_listeners: usize,
}

/// Everything the dashboard shows, in one call.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Realtime {
    /// HomeIQ's version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Resident memory, bytes.
    pub rss_bytes: Option<u64>,
    /// The verdict of `/health/deep`.
    pub status: Verdict,
    /// Current problems, in plain words.
    pub reasons: Vec<String>,
    /// Past losses worth knowing.
    pub warnings: Vec<String>,
    /// Home Assistant connection.
    pub home_assistant: HaSummary,
    /// Where history goes (`backend`), whether it takes writes, the writer's queue, counters
    /// and write latency; as `storage` in `/health/deep`.
    pub storage: StorageStatus,
    /// Event rates.
    pub events: RateSnapshot,
    /// Queue depths.
    pub queues: Queues,
    /// Counts.
    pub counts: Counts,
}

/// One call for the dashboard: connection, storage, event rates, queues, counts, memory, uptime.
#[utoipa::path(tag = "operations", responses((status = 200, body = Realtime)))]
#[get("/api/v1/metrics/realtime")]
pub(crate) async fn realtime(state: web::Data<AppState>) -> HttpResponse {
    let report = deep_report(&state).await;
    let ha = report.home_assistant;
    let catalog = state.catalog.current();
    let body = Realtime {
        version: report.version,
        uptime_secs: report.uptime_secs,
        rss_bytes: metrics::resident_bytes(),
        status: report.status,
        reasons: report.reasons,
        warnings: report.warnings,
        home_assistant: HaSummary {
            state: ha.state.phase(),
            connected: matches!(ha.state, ConnectionState::Connected { .. }),
            version: ha.ha_version.clone(),
            last_event_age_secs: ha.last_event_age_secs,
            connects: ha.counts.connects,
            last_error: ha.last_error.clone(),
        },
        storage: report.storage,
        events: state.rates.snapshot(),
        queues: Queues {
            ha_queue: ha.queue_depth,
        },
        counts: Counts {
            devices: catalog.devices.len(),
            entities: catalog.entities.len(),
            entities_with_state: state.states.len(),
            areas: catalog.areas.len(),
            floors: catalog.floors.len(),
            labels: catalog.labels.len(),
            integrations: catalog.integrations.len(),
            events_total: ha.counts.events_received,
            live_listeners: state.live.listeners(),
        },
    };
    HttpResponse::Ok().json(body)
}

/// The effective configuration.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConfigAnswer {
    /// Every setting with its value; secrets are `***` (or empty when unset).
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Where each setting came from: `default`, `add-on options (…)`, `config file (…)` or
    /// `environment (HOMEIQ_…)`, by dotted key.
    pub sources: BTreeMap<String, String>,
}

/// Flattens nested settings to dotted keys.
fn leaves(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&key, v, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

/// The effective configuration, secrets redacted, with where each value came from.
#[utoipa::path(tag = "operations", responses((status = 200, body = ConfigAnswer)))]
#[get("/api/v1/config")]
pub(crate) async fn config(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let settings = serde_json::to_value(&*state.settings)
        .map_err(|e| ApiError::internal(format!("cannot show the settings: {e}")))?;
    let mut keys = Vec::new();
    leaves("", &settings, &mut keys);
    let sources = keys
        .into_iter()
        .map(|k| {
            let source = state
                .settings
                .provenance
                .get(&k)
                .cloned()
                .unwrap_or_else(|| "default".into());
            (k, source)
        })
        .collect();
    Ok(HttpResponse::Ok().json(ConfigAnswer { settings, sources }))
}

/// Paging of `GET /api/v1/quarantine`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct QuarantineParams {
    /// Page size, 1..1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Items to skip.
    #[param(minimum = 0, maximum = 100000000)]
    offset: Option<usize>,
}

/// Points InfluxDB refused as invalid, newest first, with InfluxDB's reason.
#[utoipa::path(
    tag = "operations",
    params(QuarantineParams),
    responses(
        (status = 200, description = "`{total, limit, offset, items: [{line, reason, at}]}`", body = Object),
        (status = 400, body = ErrorBody),
    )
)]
#[get("/api/v1/quarantine")]
pub(crate) async fn quarantine(
    state: web::Data<AppState>,
    Params(p): Params<QuarantineParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = within("limit", p.limit, 100, 1000)?;
    let offset = p.offset.unwrap_or(0);
    Ok(HttpResponse::Ok().json(json!({
        "total": state.writer.quarantine_len(),
        "limit": limit,
        "offset": offset,
        "items": state.writer.quarantine(limit, offset),
    })))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    #[test]
    fn health_deep_and_realtime_are_typed_in_the_openapi_document() {
        let doc = serde_json::to_value(crate::api::openapi()).expect("json");
        let responses = &doc["paths"]["/health/deep"]["get"]["responses"];
        for status in ["200", "503"] {
            assert_eq!(
                responses[status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/DeepReport",
                "{status}"
            );
        }
        let schemas = &doc["components"]["schemas"];
        let required: Vec<&str> = schemas["DeepReport"]["required"]
            .as_array()
            .expect("required fields")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for field in [
            "status",
            "storage",
            "reasons",
            "warnings",
            "home_assistant",
            "sqlite",
            "registry",
            "ingest",
            "backfill",
            "webhooks",
            "heartbeat",
        ] {
            assert!(required.contains(&field), "{field} in {required:?}");
        }
        assert_eq!(
            schemas["Verdict"]["enum"],
            serde_json::json!(["ok", "degraded", "failed"])
        );
        assert!(
            schemas["ConnectionPhase"]["enum"]
                .as_array()
                .is_some_and(|names| names.contains(&Value::from("auth_failed")))
        );
        assert_eq!(
            schemas["HaSummary"]["properties"]["state"]["$ref"],
            "#/components/schemas/ConnectionPhase"
        );
    }
}
