//! Start-up and shutdown: builds every part from [`Settings`] as named steps, runs them, and stops
//! them in order.
//!
//! Shutdown (SIGTERM, SIGINT or [`Application::shutdown_token`]): stop reading from Home Assistant,
//! let the pipeline drain its queue, flush the writer, let the registry task finish, stop the HTTP
//! server — all within [`SHUTDOWN_BUDGET`], inside the Supervisor's 10 s stop timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::rates::EventRates;
use crate::api::{self, AppState, ServerOptions};
use crate::config::SchemaMode;
use crate::config::{Settings, StorageMode};
use crate::ha::{self, ClientOptions, HaHandle};
use crate::ingest::LiveBus;
use crate::ingest::{
    BackfillHandle, BackfillOptions, EntityFilter, Heartbeat, HeartbeatCounters, IngestCounters,
    Pipeline,
};
use crate::registry::{
    CatalogHandle, REGISTRY_QUEUE, RegistryError, RegistryStore, RegistrySyncState,
    run_registry_task,
};
use crate::store::embedded::{self, EmbeddedError, EmbeddedOptions};
use crate::store::fault::{DataFile, SqliteFailure, StorageFault};
use crate::store::history::{HistoryStore, InfluxHistory};
use crate::store::influx::{InfluxClient, spawn_spooled_writer};
use crate::store::schema::PointMapper;
use crate::store::sink::HistoryWriter;
use crate::store::states::CurrentStates;
use crate::webhooks::{HaWebhookBase, WebhookError, WebhookHandle, store::WebhookStore};

/// Everything that accepted data must be written or handed over within this time after SIGTERM.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(8);

/// How long webhook attempts under way may take to end at shutdown.
const WEBHOOK_DRAIN: Duration = Duration::from_secs(1);

/// Why HomeIQ could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A start-up step failed.
    #[error("start-up step `{step}` failed: {message}")]
    Step {
        /// The step.
        step: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A SQLite file of the data folder cannot be opened (damaged, or the disk refuses it):
    /// restarting does not help until someone acts, so `serve` reports it in `/health`.
    #[error("{}", .0.summary())]
    Storage(StorageFault),
}

fn step<T, E: std::fmt::Display>(
    name: &'static str,
    result: Result<T, E>,
) -> Result<T, StartupError> {
    match result {
        Ok(v) => {
            tracing::debug!(step = name, "start-up step done");
            Ok(v)
        }
        Err(e) => Err(StartupError::Step {
            step: name,
            message: e.to_string(),
        }),
    }
}

/// A step reading or writing one of the data folder's SQLite files: its failure is a
/// [`StorageFault`] of that file.
fn storage_step<T, E: std::fmt::Display>(
    name: &'static str,
    database: DataFile,
    path: &std::path::Path,
    result: Result<T, E>,
    failure: impl FnOnce(&E) -> SqliteFailure,
) -> Result<T, StartupError> {
    match result {
        Ok(v) => {
            tracing::debug!(step = name, "start-up step done");
            Ok(v)
        }
        Err(e) => Err(StartupError::Storage(StorageFault::new(
            database,
            path,
            failure(&e),
            e.to_string(),
        ))),
    }
}

/// A running HomeIQ.
pub struct Application {
    port: u16,
    cancel: CancellationToken,
    server: actix_web::dev::Server,
    ha_task: JoinHandle<()>,
    pipeline_task: JoinHandle<()>,
    registry_task: JoinHandle<()>,
    writer: HistoryWriter,
    ha: HaHandle,
    backfill: BackfillHandle,
    cursor_task: JoinHandle<()>,
    webhook_tasks: (JoinHandle<()>, JoinHandle<()>),
    webhook_engine_cancel: CancellationToken,
}

impl Application {
    /// Builds and starts every part. `supervisor_token` is `SUPERVISOR_TOKEN` when running as an
    /// add-on.
    pub async fn build(
        settings: Settings,
        supervisor_token: Option<String>,
    ) -> Result<Self, StartupError> {
        let started = Instant::now();
        step(
            "prepare data directory",
            std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
                format!(
                    "cannot create data_dir {}: {e}",
                    settings.data_dir.display()
                )
            }),
        )?;
        // every SQLite file is opened and read before anything is started: a file that cannot be
        // used stops the start-up with nothing left running
        let metadata_db = settings.metadata_db_path();
        let registry = storage_step(
            "open metadata database",
            DataFile::Metadata,
            &metadata_db,
            RegistryStore::open(&metadata_db).await,
            RegistryError::failure,
        )?;
        let catalog = CatalogHandle::default();
        storage_step(
            "load the registry catalog",
            DataFile::Metadata,
            &metadata_db,
            catalog.reload(&registry).await,
            RegistryError::failure,
        )?;
        let supervisor = supervisor_token.as_deref().is_some_and(|t| !t.is_empty());
        let endpoint = step(
            "resolve Home Assistant endpoint",
            settings.ha_endpoint(supervisor_token.as_deref()),
        )?;
        tracing::info!(
            websocket = %crate::config::redact_urls(&endpoint.websocket_url),
            supervisor = endpoint.supervisor,
            "Home Assistant endpoint"
        );
        let filter = step(
            "compile entity filter",
            EntityFilter::new(&settings.include, &settings.exclude),
        )?;
        let webhooks = WebhookHandle::open(
            WebhookStore::new(registry.connection().clone()),
            settings.webhooks.clone(),
            HaWebhookBase::new(&endpoint),
        )
        .await;
        let webhooks = match webhooks {
            Err(WebhookError::Db(e)) => storage_step(
                "open webhooks",
                DataFile::Metadata,
                &metadata_db,
                Err(e),
                SqliteFailure::of_db_err,
            )?,
            other => step("open webhooks", other)?,
        };
        let (writer, history, mapper) = open_storage(&settings).await?;
        let cancel = CancellationToken::new();
        let (ha, messages, ha_task) = ha::spawn(
            ClientOptions::new(&settings.ha, endpoint),
            cancel.child_token(),
        );
        let states = CurrentStates::default();
        let counters = Arc::new(IngestCounters::default());
        let registry_sync = RegistrySyncState::default();
        let (jobs_tx, jobs_rx) = mpsc::channel(REGISTRY_QUEUE);
        let registry_task = tokio::spawn(run_registry_task(
            registry.clone(),
            jobs_rx,
            registry_sync.clone(),
            catalog.clone(),
        ));
        let backfill = BackfillHandle::open(
            BackfillOptions::new(&settings),
            ha.clone(),
            mapper.clone(),
            writer.clone(),
        );
        let heartbeat_counters = Arc::new(HeartbeatCounters::default());
        if settings.heartbeat.interval_minutes > 0 {
            let heartbeat = Heartbeat {
                interval: Duration::from_secs(settings.heartbeat.interval_minutes * 60),
                filter: filter.clone(),
                mapper: mapper.clone(),
                writer: writer.clone(),
                states: states.clone(),
                registry: registry.clone(),
                counters: heartbeat_counters.clone(),
            };
            tokio::spawn(heartbeat.run(cancel.child_token()));
        }
        let mut pipeline = Pipeline::new(
            ha.clone(),
            filter,
            mapper,
            writer.clone(),
            jobs_tx,
            states.clone(),
            counters.clone(),
        );
        if backfill.enabled() {
            pipeline = pipeline.with_backfill(backfill.feed());
        }
        let cursor_task = tokio::spawn(backfill.clone().run_cursor(cancel.child_token()));
        let live = LiveBus::default();
        pipeline = pipeline.with_live_bus(live.clone());
        // the rule engine listens before the pipeline publishes anything; it stops after the
        // pipeline drained, so the changes accepted before a stop are still evaluated
        let webhook_engine_cancel = CancellationToken::new();
        let webhook_tasks = step(
            "start webhooks",
            webhooks.spawn(
                &live,
                catalog.clone(),
                webhook_engine_cancel.clone(),
                cancel.child_token(),
                WEBHOOK_DRAIN,
            ),
        )?;
        let pipeline_task = tokio::spawn(pipeline.run(messages));
        let rates = EventRates::default();
        let counters_for_rates = counters.clone();

        let state = AppState {
            ha: ha.clone(),
            writer: writer.clone(),
            registry,
            registry_sync,
            ingest: counters,
            states,
            backfill: backfill.clone(),
            heartbeat: heartbeat_counters,
            started,
            catalog,
            history,
            history_cache: crate::api::cache::HistoryCache::new(
                settings.api.cache_mb,
                writer.write_log(),
            ),
            live,
            rates: rates.clone(),
            settings: Arc::new(settings.clone()),
            webhooks,
        };
        tokio::spawn(rates.run(counters_for_rates, cancel.child_token()));
        let options = ServerOptions {
            bind: settings.listen_address(supervisor).to_string(),
            port: settings.http.port,
            gateway: settings.trusted_gateway(supervisor),
            api_token: settings
                .http
                .api_token
                .as_ref()
                .map(|t| t.expose().to_owned()),
        };
        if let Some(gateway) = options.gateway {
            tracing::info!(%gateway, token = options.api_token.is_some(), "API open to the ingress gateway; other clients need http.api_token");
        }
        let (server, port) = step("bind HTTP server", api::bind(state, &options))?;
        tracing::info!(
            port,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "HomeIQ started"
        );
        Ok(Application {
            port,
            cancel,
            server,
            ha_task,
            pipeline_task,
            registry_task,
            writer,
            ha,
            backfill,
            cursor_task,
            webhook_tasks,
            webhook_engine_cancel,
        })
    }

    /// The HTTP port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cancelling this token shuts the application down as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The Home Assistant client's handle.
    pub fn ha(&self) -> &HaHandle {
        &self.ha
    }

    /// The gap backfill's handle (status for health and metrics).
    pub fn backfill(&self) -> &BackfillHandle {
        &self.backfill
    }

    /// Serves until SIGTERM, SIGINT or the shutdown token, then shuts down in order.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            cancel,
            server,
            ha_task,
            pipeline_task,
            registry_task,
            writer,
            backfill,
            cursor_task,
            webhook_tasks,
            webhook_engine_cancel,
            ..
        } = self;
        let server_handle = server.handle();
        let mut server_task = tokio::spawn(server);
        tokio::select! {
            () = wait_for_signal() => tracing::info!("stop signal received; shutting down"),
            () = cancel.cancelled() => tracing::info!("shutdown requested"),
            r = &mut server_task => {
                tracing::error!(?r, "HTTP server stopped unexpectedly");
            }
        }
        let deadline = Instant::now() + SHUTDOWN_BUDGET;
        cancel.cancel();
        // a backfill run under way stops pushing; the next start repeats it
        backfill.stop_run();
        let left = |d: Instant| d.saturating_duration_since(Instant::now());
        // stop reading; the pipeline then drains what was read
        let _ = tokio::time::timeout(Duration::from_secs(2), ha_task).await;
        if tokio::time::timeout(Duration::from_secs(2), pipeline_task)
            .await
            .is_err()
        {
            tracing::warn!("pipeline did not drain in time");
        }
        let flush_budget = left(deadline).saturating_sub(Duration::from_millis(1_500));
        let report = writer.shutdown(flush_budget).await;
        tracing::info!(?report, "writer flushed");
        // the cursor task stopped with the cancel; record how far everything is durable
        let _ = tokio::time::timeout(Duration::from_secs(1), cursor_task).await;
        backfill.shutdown(report.left == 0).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), registry_task).await;
        // the webhook worker stopped claiming at the cancel; attempts under way had WEBHOOK_DRAIN
        // to end, the rest are retried at the next start
        let (engine_task, delivery_task) = webhook_tasks;
        webhook_engine_cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_millis(500), engine_task).await;
        let _ = tokio::time::timeout(WEBHOOK_DRAIN, delivery_task).await;
        let _ = tokio::time::timeout(left(deadline), server_handle.stop(true)).await;
        server_task.abort();
        tracing::info!("HomeIQ stopped");
        Ok(())
    }
}

/// Opens the history backend `settings.storage` names: the write side, the read side and the
/// point mapper feeding them. In embedded mode no InfluxDB client exists and the `homeiq` schema
/// is used whatever `influxdb.schema` says (`ha_compat` only concerns InfluxDB dashboards).
async fn open_storage(
    settings: &Settings,
) -> Result<(HistoryWriter, HistoryStore, PointMapper), StartupError> {
    if settings.storage == StorageMode::Embedded {
        if settings.influxdb.schema != SchemaMode::Homeiq {
            tracing::warn!("influxdb.schema is ignored with storage = embedded (always `homeiq`)");
        }
        let path = embedded::history_path(&settings.data_dir);
        let (writer, history) = storage_step(
            "open history storage",
            DataFile::History,
            &path,
            embedded::open(&path, EmbeddedOptions::default()).await,
            EmbeddedError::failure,
        )?;
        tracing::info!(path = %path.display(), "embedded history store opened");
        return Ok((
            writer.into(),
            HistoryStore::Embedded(history),
            PointMapper::homeiq(&settings.influxdb.ignore_attributes),
        ));
    }
    let client = step(
        "open history storage",
        InfluxClient::new(&settings.influxdb),
    )?;
    let mapper = PointMapper::new(&settings.influxdb);
    let writer = step(
        "open history storage",
        spawn_spooled_writer(
            &settings.influxdb,
            &settings.spool,
            &settings.data_dir,
            client.clone(),
            mapper.precision(),
        )
        .await
        .map_err(|e| format!("cannot open the spool: {e}")),
    )?;
    tracing::info!(
        url = %crate::config::redact_urls(&settings.influxdb.url),
        database = %settings.influxdb.database,
        schema = ?settings.influxdb.schema,
        "InfluxDB writer started"
    );
    Ok((
        writer.into(),
        HistoryStore::Influx(InfluxHistory::new(client, settings.influxdb.schema)),
        mapper,
    ))
}

/// Resolves at SIGTERM or SIGINT (Ctrl-C elsewhere).
pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
