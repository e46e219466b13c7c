//! What `homeiq serve` runs instead of HomeIQ when it cannot start: its configuration is invalid
//! ([`CannotStart::ConfigError`]) or a SQLite file of its data folder cannot be opened
//! ([`CannotStart::StorageError`]).
//!
//! Exiting would make the Supervisor's watchdog restart the add-on in a loop, each time with the
//! same options or the same broken file, and the reason would only be in the log. Instead HomeIQ
//! logs the problem and keeps a small HTTP server on the configured address (or the default one,
//! when `http.bind` or `http.port` is itself wrong) that says what is wrong and what to do, and
//! does nothing else: no connection to Home Assistant, no storage open, nothing written to the
//! data folder (a broken file is left exactly as it is).
//!
//! - `GET /health`: 200 (the watchdog sees the process alive and does not restart it) with
//!   `{"status", "reasons", "version", "uptime_secs"}` and, by status:
//!   - `config_error`: `"errors": [{"key", "message"}]`;
//!   - `storage_error`: `"storage_file": {"database" (metadata | history), "path", "failure"
//!     (damaged | unusable), "error", "action"}`.
//! - `/health/deep`: the same body with 503, as for any state that cannot work until someone acts.
//! - Every other path: 503 in the API's error shape, `{"error": {"code": <the status>,
//!   "message"}}`; a browser asking for a page outside `/api` (the ingress panel) gets the same
//!   message as a small HTML page.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, ResponseError, web};
use serde::Serialize;

use crate::config::{ConfigError, FallbackSettings, redact_urls};
use crate::http::error::ApiError;
use crate::store::fault::StorageFault;

/// One configuration problem, as `/health` reports it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Problem {
    /// The dotted key at fault (`influxdb.batch_size`), when the problem is about one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl From<&ConfigError> for Problem {
    fn from(e: &ConfigError) -> Self {
        match e {
            ConfigError::Invalid { key, message } => Problem {
                key: Some(key.clone()),
                message: redact_urls(message).into_owned(),
            },
            ConfigError::Source(message) => Problem {
                key: None,
                message: format!("cannot read configuration: {}", redact_urls(message)),
            },
        }
    }
}

impl Problem {
    /// `key: message`, or the message alone.
    fn line(&self) -> String {
        match &self.key {
            Some(key) => format!("{key}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// Why HomeIQ is not running; its variant is `/health`'s `status`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum CannotStart {
    /// The configuration is invalid.
    ConfigError {
        /// Every problem found.
        errors: Vec<Problem>,
    },
    /// A SQLite file of the data folder cannot be opened.
    StorageError {
        /// The file, the error and what to do.
        storage_file: StorageFault,
    },
}

impl CannotStart {
    /// The status (and the API's error code): `config_error` or `storage_error`.
    fn code(&self) -> &'static str {
        match self {
            CannotStart::ConfigError { .. } => "config_error",
            CannotStart::StorageError { .. } => "storage_error",
        }
    }

    fn summary(&self) -> String {
        match self {
            CannotStart::ConfigError { errors } => {
                let lines: Vec<String> = errors.iter().map(Problem::line).collect();
                format!(
                    "HomeIQ is not running: invalid configuration ({}); fix the add-on options \
                     (or HOMEIQ_* settings) and restart HomeIQ",
                    lines.join("; ")
                )
            }
            CannotStart::StorageError { storage_file } => storage_file.summary(),
        }
    }

    /// The HTML page's title and body.
    fn page(&self) -> (&'static str, String) {
        match self {
            CannotStart::ConfigError { errors } => {
                let mut items = String::new();
                for p in errors {
                    let _ = match &p.key {
                        Some(key) => write!(
                            items,
                            "<li><code>{}</code>: {}</li>",
                            escape(key),
                            escape(&p.message)
                        ),
                        None => write!(items, "<li>{}</li>", escape(&p.message)),
                    };
                }
                (
                    "invalid configuration",
                    format!(
                        "<p>Its configuration is invalid:</p><ul>{items}</ul><p>Fix these \
                         options in the add-on's Configuration tab and restart HomeIQ.</p>"
                    ),
                )
            }
            CannotStart::StorageError { storage_file: f } => (
                "cannot open its data",
                format!(
                    "<p>It cannot open <code>{}</code>:</p><pre>{}</pre><p>{}</p>",
                    escape(&f.path.display().to_string()),
                    escape(&f.error),
                    escape(&f.action)
                ),
            ),
        }
    }
}

/// What every answer is built from.
struct Report {
    reason: CannotStart,
    started: Instant,
}

/// The body of `/health` and `/health/deep`.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(flatten)]
    reason: &'a CannotStart,
    reasons: [String; 1],
    version: &'static str,
    uptime_secs: u64,
}

impl Report {
    fn body(&self) -> Body<'_> {
        Body {
            reason: &self.reason,
            reasons: [self.reason.summary()],
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: self.started.elapsed().as_secs(),
        }
    }
}

async fn health(report: web::Data<Report>) -> HttpResponse {
    HttpResponse::Ok().json(report.body())
}

async fn health_deep(report: web::Data<Report>) -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(report.body())
}

async fn everything_else(req: HttpRequest, report: web::Data<Report>) -> HttpResponse {
    let path = req.path();
    let api = path == "/api" || path.starts_with("/api/");
    let html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if api || !html {
        return ApiError::cannot_start(report.reason.code(), report.reason.summary())
            .error_response();
    }
    let (title, body) = report.reason.page();
    HttpResponse::ServiceUnavailable()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>HomeIQ: {title}</title>\
             </head><body><h1>HomeIQ is not running</h1>{body}</body></html>"
        ))
}

/// Minimal HTML escaping for text and attribute values.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Binds the server on `bind:port` (port 0 picks a free one) and returns it with the bound port.
pub(crate) fn bind(
    reason: CannotStart,
    bind: &str,
    port: u16,
) -> std::io::Result<(actix_web::dev::Server, u16)> {
    let report = web::Data::from(Arc::new(Report {
        reason,
        started: Instant::now(),
    }));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(report.clone())
            .route("/health", web::get().to(health))
            .route("/health/deep", web::get().to(health_deep))
            .default_service(web::to(everything_else))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind((bind, port))?;
    let port = server
        .addrs()
        .first()
        .map_or(port, std::net::SocketAddr::port);
    Ok((server.run(), port))
}

/// Logs every problem (naming its key), then answers as described in the module documentation
/// until `stop` completes (SIGTERM or SIGINT). Errors only if the address cannot be bound.
pub(crate) async fn serve_until_stopped(
    errors: &[ConfigError],
    fallback: &FallbackSettings,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    for e in errors {
        match e.key() {
            Some(key) => tracing::error!(key = %key, error = %e, "invalid configuration"),
            None => tracing::error!(error = %e, "invalid configuration"),
        }
    }
    let errors = errors.iter().map(Problem::from).collect();
    serve(CannotStart::ConfigError { errors }, fallback, stop).await
}

/// Logs the file that cannot be opened and what to do, then answers as described in the module
/// documentation until `stop` completes (SIGTERM or SIGINT). Errors only if the address cannot
/// be bound.
pub(crate) async fn serve_storage_error(
    fault: StorageFault,
    fallback: &FallbackSettings,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tracing::error!(
        file = %fault.path.display(),
        failure = ?fault.failure,
        error = %fault.error,
        "cannot open a database file. {}",
        fault.action
    );
    serve(
        CannotStart::StorageError {
            storage_file: fault,
        },
        fallback,
        stop,
    )
    .await
}

async fn serve(
    reason: CannotStart,
    fallback: &FallbackSettings,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let status = reason.code();
    let (server, port) = bind(reason, &fallback.bind, fallback.port)?;
    tracing::error!(
        bind = %fallback.bind,
        port,
        "HomeIQ is not recording until the problem is fixed and HomeIQ restarted; /health \
         answers status {status} with what to do, the API answers 503"
    );
    let handle = server.handle();
    let mut task = tokio::spawn(server);
    tokio::select! {
        () = stop => tracing::info!("stop signal received; stopping"),
        r = &mut task => {
            tracing::error!(?r, "HTTP server stopped unexpectedly");
            return Err(std::io::Error::other("the HTTP server stopped"));
        }
    }
    handle.stop(true).await;
    task.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_keep_their_key_and_html_is_escaped() {
        let p = Problem::from(&ConfigError::Invalid {
            key: "influxdb.batch_size".into(),
            message: "0 is outside 1..=100000".into(),
        });
        assert_eq!(p.line(), "influxdb.batch_size: 0 is outside 1..=100000");
        let source = Problem::from(&ConfigError::Source("bad JSON".into()));
        assert_eq!(source.key, None);
        assert_eq!(
            escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
