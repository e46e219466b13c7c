//! The HTTP server: health endpoints now, the REST API and the panel later.
//!
//! - `GET /health`: liveness for the Supervisor's watchdog; no I/O, always 200 while the process
//!   serves requests.
//! - `GET /health/deep`: every dependency with a verdict. `status` is `ok`, `degraded` (working but
//!   something needs attention: Home Assistant reconnecting, InfluxDB unreachable while points are
//!   held in memory) or `failed` (cannot work until someone acts: token refused, InfluxDB
//!   credentials refused, SQLite unusable), with `reasons` in plain words. `failed` answers 503.
//! - `GET /metrics`: Prometheus / OpenMetrics text ([`metrics`]).
//! - `GET /api/v1/quarantine?limit=&offset=`: points InfluxDB refused as invalid, newest first,
//!   with InfluxDB's reason (`{"total", "items": [{"line", "reason", "at"}]}`).

pub mod metrics;

use std::sync::Arc;
use std::time::Instant;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde::Serialize;
use serde_json::json;

use crate::ha::{ConnectionState, HaHandle};
use crate::ingest::{
    BackfillHandle, CurrentStates, HeartbeatCounters, IngestCounters, RegistrySyncState,
};
use crate::store::influx::WriterHandle;
use crate::store::registry::RegistryStore;

/// Everything the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// The Home Assistant client.
    pub ha: HaHandle,
    /// The InfluxDB writer.
    pub writer: WriterHandle,
    /// The SQLite registry mirror.
    pub registry: RegistryStore,
    /// The registry task's status.
    pub registry_sync: RegistrySyncState,
    /// Pipeline counters.
    pub ingest: Arc<IngestCounters>,
    /// Current states.
    pub states: CurrentStates,
    /// Gap backfill.
    pub backfill: BackfillHandle,
    /// Heartbeat counters.
    pub heartbeat: Arc<HeartbeatCounters>,
    /// Process start.
    pub started: Instant,
}

/// Overall verdict of `/health/deep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// All good.
    Ok,
    /// Working, but something needs attention.
    Degraded,
    /// Not working until someone acts.
    Failed,
}

/// Binds the HTTP server (port 0 picks a free port) and returns it with the bound port.
pub fn bind(
    state: AppState,
    bind: &str,
    port: u16,
) -> std::io::Result<(actix_web::dev::Server, u16)> {
    let registry = web::Data::new(metrics::registry(state.clone()));
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(registry.clone())
            .route("/health", web::get().to(health))
            .route("/health/deep", web::get().to(health_deep))
            .route("/metrics", web::get().to(prometheus))
            .route("/api/v1/quarantine", web::get().to(quarantine))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(2)
    .bind((bind, port))?;
    let port = server
        .addrs()
        .first()
        .map_or(port, std::net::SocketAddr::port);
    Ok((server.run(), port))
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
    }))
}

async fn prometheus(registry: web::Data<prometheus_client::registry::Registry>) -> HttpResponse {
    match metrics::render(&registry) {
        Ok(text) => HttpResponse::Ok()
            .content_type(metrics::CONTENT_TYPE)
            .body(text),
        Err(e) => HttpResponse::InternalServerError().body(format!("cannot render metrics: {e}")),
    }
}

/// Paging of `GET /api/v1/quarantine`.
#[derive(Debug, serde::Deserialize)]
struct Page {
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    offset: usize,
}

fn default_limit() -> usize {
    100
}

async fn quarantine(state: web::Data<AppState>, page: web::Query<Page>) -> HttpResponse {
    if !(1..=1000).contains(&page.limit) {
        return HttpResponse::BadRequest().json(json!({"error": {
            "code": "invalid_parameter",
            "message": "limit must be 1..1000",
            "field": "limit",
        }}));
    }
    HttpResponse::Ok().json(json!({
        "total": state.writer.quarantine_len(),
        "limit": page.limit,
        "offset": page.offset,
        "items": state.writer.quarantine(page.limit, page.offset),
    }))
}

async fn health_deep(state: web::Data<AppState>) -> HttpResponse {
    let (verdict, body) = deep_report(&state).await;
    let mut response = if verdict == Verdict::Failed {
        HttpResponse::ServiceUnavailable()
    } else {
        HttpResponse::Ok()
    };
    response.json(body)
}

/// Builds the deep health report.
pub async fn deep_report(state: &AppState) -> (Verdict, serde_json::Value) {
    let mut verdict = Verdict::Ok;
    let mut reasons: Vec<String> = Vec::new();
    let mut flag = |level: Verdict, reason: String| {
        verdict = verdict.max(level);
        reasons.push(reason);
    };

    let ha = state.ha.status();
    match &ha.state {
        ConnectionState::Connected { .. } => {}
        ConnectionState::AuthFailed { message } => flag(Verdict::Failed, message.clone()),
        other => flag(
            Verdict::Degraded,
            format!(
                "not connected to Home Assistant ({}){}",
                serde_json::to_value(other)
                    .ok()
                    .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(str::to_owned))
                    .unwrap_or_default(),
                ha.last_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        ),
    }

    let influx = state.writer.stats();
    if let Some(auth) = &influx.auth_error {
        flag(
            Verdict::Failed,
            format!(
                "InfluxDB refused the credentials ({auth}); check influxdb.username/password/token"
            ),
        );
    } else if !influx.reachable || influx.spooling {
        flag(
            Verdict::Degraded,
            format!(
                "InfluxDB is unreachable; {} points held in memory and {} spooled to disk ({} bytes{}); they are written when it is back{}",
                influx.queued,
                influx.spool_points,
                influx.spool_bytes,
                influx
                    .spool_oldest_age_secs
                    .map(|a| format!(", oldest {a:.0} s"))
                    .unwrap_or_default(),
                influx
                    .last_error
                    .as_ref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            ),
        );
    }
    // losses in the past: shown until restart, without changing the verdict
    let mut warnings: Vec<String> = Vec::new();
    if influx.spool_dropped > 0 || influx.dropped_overflow > 0 {
        warnings.push(format!(
            "{} points were dropped because the spool reached spool.max_bytes or spool.max_age_hours, and {} because memory was full; raise the bound or fix InfluxDB sooner",
            influx.spool_dropped, influx.dropped_overflow
        ));
    }
    if influx.quarantined > 0 {
        warnings.push(format!(
            "{} points were refused by InfluxDB as invalid and quarantined; see /api/v1/quarantine",
            influx.quarantined
        ));
    }

    let sqlite = match state.registry.ping().await {
        Ok(()) => json!({"ok": true}),
        Err(e) => {
            flag(
                Verdict::Failed,
                format!("SQLite metadata database unusable: {e}"),
            );
            json!({"ok": false, "error": e.to_string()})
        }
    };
    let registry = state.registry_sync.status();
    let ingest = state.ingest.snapshot(state.states.len());

    let body = json!({
        "status": verdict,
        "reasons": reasons,
        "warnings": warnings,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "home_assistant": ha,
        "influxdb": influx,
        "sqlite": sqlite,
        "registry": registry,
        "ingest": ingest,
        "backfill": state.backfill.status(),
        "heartbeat": {
            "rounds": state.heartbeat.rounds.load(std::sync::atomic::Ordering::Relaxed),
            "points": state.heartbeat.points.load(std::sync::atomic::Ordering::Relaxed),
        },
    });
    (verdict, body)
}
