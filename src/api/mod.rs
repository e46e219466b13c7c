//! The HTTP server: health endpoints now, the REST API and the panel later.
//!
//! - `GET /health`: liveness for the Supervisor's watchdog; no I/O, always 200 while the process
//!   serves requests.
//! - `GET /health/deep`: every dependency with a verdict. `status` is `ok`, `degraded` (working but
//!   something needs attention: Home Assistant reconnecting, InfluxDB unreachable while points are
//!   held in memory) or `failed` (cannot work until someone acts: token refused, InfluxDB
//!   credentials refused, SQLite unusable), with `reasons` in plain words. `failed` answers 503.

use std::sync::Arc;
use std::time::Instant;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde::Serialize;
use serde_json::json;

use crate::ha::{ConnectionState, HaHandle};
use crate::ingest::{CurrentStates, IngestCounters, RegistrySyncState};
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
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/health", web::get().to(health))
            .route("/health/deep", web::get().to(health_deep))
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
    } else if !influx.reachable {
        flag(
            Verdict::Degraded,
            format!(
                "InfluxDB is unreachable; {} points held in memory{}",
                influx.queued,
                influx
                    .last_error
                    .as_ref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            ),
        );
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
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "home_assistant": ha,
        "influxdb": influx,
        "sqlite": sqlite,
        "registry": registry,
        "ingest": ingest,
    });
    (verdict, body)
}
