//! The HTTP server: the REST API under `/api/v1`, health, metrics and the API documentation.
//!
//! - Registry ([`registry`]): devices, entities, areas, floors, labels, integrations, from the
//!   in-memory catalog and current states.
//! - History ([`history`]): records, aggregates, event statistics, through
//!   [`HistoryStore`](crate::store::history::HistoryStore).
//! - Live ([`stream`]): state changes as Server-Sent Events.
//! - Operations ([`ops`]): `/health`, `/health/deep`, `/metrics`, `/api/v1/metrics/realtime`,
//!   `/api/v1/config`, `/api/v1/quarantine`.
//! - Webhooks ([`crate::webhooks::api`]): signed webhook targets, test deliveries, the delivery
//!   log.
//! - `/api/openapi.json` and `/api/docs/` ([`docs`]).
//! - Everything else: the web panel ([`panel`]) from `http.panel_dir`, with client-route fallback.
//!
//! When HomeIQ cannot start (invalid configuration, a data file that cannot be opened),
//! [`cannot_start`] serves `/health` and 503s instead.
//!
//! Every answer carries `X-Request-ID`; errors share [`crate::http::error::ErrorBody`]; access and rate limits
//! are in [`guard`].

pub(crate) mod cache;
pub(crate) mod cannot_start;
pub(crate) mod compression;
pub(crate) mod docs;
pub(crate) mod guard;
pub(crate) mod history;
pub(crate) mod metrics;
pub(crate) mod ops;
pub(crate) mod panel;
pub(crate) mod rates;
pub(crate) mod stream;

use std::sync::Arc;
use std::time::Instant;

use actix_web::{App, HttpServer, web};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::config::Settings;
use crate::ingest::LiveBus;
use crate::registry::CatalogHandle;
use crate::store::history::HistoryStore;

use crate::ha::HaHandle;
use crate::ingest::{BackfillHandle, HeartbeatCounters, IngestCounters};
use crate::registry::{RegistryStore, RegistrySyncState};
use crate::store::sink::HistoryWriter;
use crate::store::states::CurrentStates;

/// Everything the handlers read.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The Home Assistant client.
    pub ha: HaHandle,
    /// The history writer (InfluxDB or embedded).
    pub writer: HistoryWriter,
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
    /// The registry catalog.
    pub catalog: CatalogHandle,
    /// History reads.
    pub history: HistoryStore,
    /// Rollups: aggregates from the right tier, their status.
    pub rollups: crate::rollups::Rollups,
    /// Answers of history reads with an explicit end, while current.
    pub history_cache: cache::HistoryCache,
    /// Live state changes.
    pub live: LiveBus,
    /// Event rates for the dashboard.
    pub rates: rates::EventRates,
    /// The effective settings.
    pub settings: Arc<Settings>,
    /// Signed webhooks.
    pub webhooks: crate::webhooks::WebhookHandle,
    /// Pattern analysis: runs and the patterns learned.
    pub analysis: crate::analysis::Analysis,
    /// Suggestions: automations proposed from what was learned.
    pub suggestions: crate::suggestions::Suggestions,
    /// The optional language model that rewords suggestions.
    pub llm: crate::llm::Llm,
    /// Raw retention.
    pub retention: crate::retention::Retention,
    /// The storage guard.
    pub storage_guard: crate::storage::StorageGuard,
    /// The import of Home Assistant's past.
    pub import: crate::import::Import,
}

/// What the server needs besides [`AppState`].
#[derive(Debug, Clone)]
pub(crate) struct ServerOptions {
    /// Address to bind.
    pub bind: String,
    /// Port (0 picks a free one).
    pub port: u16,
    /// Trusted ingress gateway.
    pub gateway: Option<std::net::IpAddr>,
    /// Bearer token for other clients.
    pub api_token: Option<String>,
    /// Cancelled when the application stops: live streams end, so that stopping the server does
    /// not wait for them.
    pub stop: tokio_util::sync::CancellationToken,
}

/// HTTP worker threads: one per CPU this process may run on (its affinity mask), at most
/// [`MAX_HTTP_WORKERS`]. Each worker is an event loop serving many connections; more than two
/// only add memory on the small machines HomeIQ runs on, and ingestion needs CPU too.
const MAX_HTTP_WORKERS: usize = 2;

fn http_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_HTTP_WORKERS))
}

pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes(App::new().into_utoipa_app()).split_for_parts().1;
    docs::document_guards(&mut doc);
    doc
}

/// Registers every documented route.
fn routes<T>(app: utoipa_actix_web::UtoipaApp<T>) -> utoipa_actix_web::UtoipaApp<T>
where
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Error = actix_web::Error,
            InitError = (),
        >,
{
    app.openapi(docs::ApiDoc::openapi())
        .service(ops::health)
        .service(ops::health_deep)
        .service(ops::prometheus)
        .service(ops::realtime)
        .service(ops::config)
        .service(ops::quarantine)
        .service(
            utoipa_actix_web::scope("/api/v1")
                .configure(crate::registry::api::routes)
                .configure(history::routes)
                .service(stream::stream_events)
                .configure(crate::webhooks::api::routes)
                .configure(crate::analysis::api::routes)
                .configure(crate::suggestions::api::routes)
                .configure(crate::storage::api::routes)
                .configure(crate::import::api::routes),
        )
}

/// Binds the HTTP server (port 0 picks a free port) and returns it with the bound port.
pub(crate) fn bind(
    state: AppState,
    options: &ServerOptions,
) -> std::io::Result<(actix_web::dev::Server, u16)> {
    let durations = guard::http_durations();
    let registry = web::Data::new(metrics::registry(state.clone(), durations.clone()));
    let durations = web::Data::new(durations);
    let settings = &state.settings.api;
    let guard = guard::data(guard::Guard::new(
        options.gateway,
        options.api_token.clone(),
        settings.rate_limit_per_second,
        settings.rate_limit_burst,
    ));
    let doc = openapi();
    let known = web::Data::new(KnownRoutes::from_openapi(&doc));
    let spec = web::Data::new(docs::OpenApiJson(crate::prepared::PreparedJson::new(
        doc.to_json().unwrap_or_else(|_| "{}".into()),
    )));
    let panel = web::Data::new(panel::Panel::new(state.settings.panel_dir()));
    // each capability's routes read only their own part
    let registry_api = web::Data::new(crate::registry::api::RegistryApi {
        catalog: state.catalog.clone(),
        states: state.states.clone(),
    });
    let history_api = web::Data::new(history::HistoryApi {
        history: state.history.clone(),
        rollups: state.rollups.clone(),
        cache: state.history_cache.clone(),
        max_history_days: state.settings.api.max_history_days,
    });
    let live_api = web::Data::new(stream::LiveApi {
        live: state.live.clone(),
        catalog: state.catalog.clone(),
        stop: options.stop.clone(),
    });
    let webhooks = web::Data::new(state.webhooks.clone());
    let analysis_api = web::Data::new(crate::analysis::api::AnalysisApi {
        analysis: state.analysis.clone(),
        catalog: state.catalog.clone(),
    });
    let suggestions = web::Data::new(state.suggestions.clone());
    let storage_api = web::Data::new(crate::storage::api::StorageApi {
        backend: state.writer.stats().backend,
        guard: state.storage_guard.clone(),
        retention: state.retention.clone(),
        tier_settings: state.settings.retention.clone(),
    });
    let import = web::Data::new(state.import.clone());
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        let (app, _) = routes(
            App::new()
                .app_data(data.clone())
                .app_data(registry_api.clone())
                .app_data(history_api.clone())
                .app_data(live_api.clone())
                .app_data(webhooks.clone())
                .app_data(analysis_api.clone())
                .app_data(suggestions.clone())
                .app_data(storage_api.clone())
                .app_data(import.clone())
                .app_data(registry.clone())
                .app_data(durations.clone())
                .app_data(guard.clone())
                .app_data(spec.clone())
                .app_data(known.clone())
                .app_data(panel.clone())
                .app_data(crate::http::error::json_config())
                .app_data(crate::http::error::path_config())
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    crate::http::error::ApiError::invalid("query", e.to_string()).into()
                }))
                .into_utoipa_app(),
        )
        .split_for_parts();
        app.route("/api/openapi.json", web::get().to(docs::openapi_json))
            .route("/api/docs", web::get().to(docs::docs_redirect))
            .route("/api/docs/", web::get().to(docs::docs_index))
            .route(
                "/api/docs/swagger-ui-bundle.js",
                web::get().to(docs::docs_bundle),
            )
            .route("/api/docs/swagger-ui.css", web::get().to(docs::docs_css))
            .default_service(web::to(panel::serve))
            .wrap(actix_web::middleware::from_fn(guard::access))
            .wrap(actix_web::middleware::from_fn(guard::same_origin))
            .wrap(actix_web::middleware::from_fn(guard::rate_limit))
            .wrap(actix_web::middleware::from_fn(
                compression::mark_small_bodies,
            ))
            .wrap(actix_web::middleware::Compress::default())
            .wrap(actix_web::middleware::from_fn(compression::unmark))
            .wrap(actix_web::middleware::from_fn(guard::request_context))
    })
    .workers(http_workers())
    // answers streamed through the compression middleware go out in several writes; with Nagle's
    // algorithm the last one waited for the client's delayed ACK (40 ms per keep-alive request,
    // measured on `GET /api/v1/suggestions`): every connection sends at once
    .on_connect(|conn, _| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .disable_signals()
    // live streams end at the stop (ServerOptions::stop); other requests get a second
    .shutdown_timeout(1)
    .client_request_timeout(std::time::Duration::from_secs(10))
    .bind((options.bind.as_str(), options.port))?;
    let port = server
        .addrs()
        .first()
        .map_or(options.port, std::net::SocketAddr::port);
    Ok((server.run(), port))
}

/// The documented paths and the methods each serves, to tell 405 from 404.
pub(crate) struct KnownRoutes(Vec<(actix_web::dev::ResourceDef, String)>);

impl KnownRoutes {
    fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        let routes = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = serde_json::to_value(item)
                    .ok()
                    .and_then(|v| {
                        v.as_object().map(|o| {
                            o.keys()
                                .filter(|k| {
                                    ["get", "put", "post", "delete", "patch"].contains(&k.as_str())
                                })
                                .map(|k| k.to_uppercase())
                                .collect::<Vec<_>>()
                        })
                    })
                    .unwrap_or_default();
                (
                    actix_web::dev::ResourceDef::new(path.as_str()),
                    methods.join(", "),
                )
            })
            .collect();
        KnownRoutes(routes)
    }

    fn allowed(&self, path: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(def, _)| def.is_match(path))
            .map(|(_, methods)| methods.as_str())
    }
}

/// Unknown paths get 404; known paths asked with a method they do not serve get 405.
async fn not_found(
    req: actix_web::HttpRequest,
    known: web::Data<KnownRoutes>,
) -> Result<actix_web::HttpResponse, crate::http::error::ApiError> {
    if let Some(allowed) = known.allowed(req.path()) {
        let e = crate::http::error::ApiError::method_not_allowed(format!(
            "{} is not served on {}; use {allowed}",
            req.method(),
            req.path()
        ));
        let mut response = actix_web::ResponseError::error_response(&e);
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(allowed) {
            response
                .headers_mut()
                .insert(actix_web::http::header::ALLOW, v);
        }
        return Ok(response);
    }
    Err(crate::http::error::ApiError::not_found(format!(
        "no route {} {}",
        req.method(),
        req.path()
    )))
}
