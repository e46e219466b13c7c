//! Start-up and shutdown: builds every part from [`Settings`] as named steps, runs them, and stops
//! them in order.
//!
//! Shutdown (SIGTERM, SIGINT or [`Application::shutdown_token`]) runs the stages of
//! [`shutdown::Stage`] under one deadline, [`SHUTDOWN_BUDGET`]: stop HTTP, close the connection to
//! Home Assistant, let the pipeline drain, flush the writer (spooling what InfluxDB does not take),
//! persist the backfill cursor, let the webhooks finish, close the registry store.

mod shutdown;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::analysis::{Analysis, AnalysisParts, SystemClock, ZoneSource};
use crate::api::rates::EventRates;
use crate::api::{self, AppState, ServerOptions};
use crate::config::SchemaMode;
use crate::config::{Settings, StorageMode};
use crate::ha::ClientOptions;
use crate::import::{HaRecorder, Import, ImportParts};
use crate::ingest::heartbeat::HeartbeatPause;
use crate::ingest::{self, BackfillOptions, EntityFilter, Ingest, IngestParts, LiveBus};
use crate::registry::{CatalogHandle, RegistryError, RegistryStore};
use crate::retention::{FIRST_RUN_DELAY, Retention, RetentionInputs, RetentionTarget};
use crate::rollups::{RollupParts, Rollups, ZoneOf};
use crate::storage::{GuardParts, Statvfs, StorageGuard};
use crate::store::embedded::{self, EmbeddedError, EmbeddedOptions};
use crate::store::fault::{DataFile, SqliteFailure, StorageFault};
use crate::store::history::{HistoryStore, InfluxHistory};
use crate::store::influx::{InfluxClient, spawn_spooled_writer};
use crate::store::schema::PointMapper;
use crate::store::sink::HistoryWriter;
use crate::suggestions::{SuggestionParts, Suggestions};
use crate::task::OwnedTask;
use crate::webhooks::{HaWebhookBase, WebhookError, WebhookHandle, store::WebhookStore};
pub use shutdown::{EXIT_GRACE, SHUTDOWN_BUDGET};
use shutdown::{Shutdown, Stage};

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
    ingest: Ingest,
    writer: HistoryWriter,
    registry: RegistryStore,
    webhooks: WebhookTasks,
    rates_task: OwnedTask,
    analysis: Analysis,
    analysis_scheduler: OwnedTask,
    import: Import,
    suggestions_task: OwnedTask,
    retention_task: OwnedTask,
    storage_guard_task: OwnedTask,
    rollups_task: OwnedTask,
}

/// The webhook tasks: the rule engine (stopped after the pipeline drained, so the changes
/// accepted before a stop are still evaluated) and the delivery worker.
struct WebhookTasks {
    engine: OwnedTask,
    delivery: OwnedTask,
    engine_cancel: CancellationToken,
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
        let rest_endpoint = endpoint.clone();
        let (writer, history, mapper, retention_target) = open_storage(&settings).await?;
        let cancel = CancellationToken::new();
        // the rule engine listens before the pipeline publishes anything
        let live = LiveBus::default();
        let webhook_engine_cancel = CancellationToken::new();
        let (engine, delivery) = step(
            "start webhooks",
            webhooks.spawn(
                &live,
                catalog.clone(),
                webhook_engine_cancel.clone(),
                cancel.child_token(),
                WEBHOOK_DRAIN,
            ),
        )?;
        let webhook_tasks = WebhookTasks {
            engine: OwnedTask::of("webhook engine", engine),
            delivery: OwnedTask::of("webhook delivery", delivery),
            engine_cancel: webhook_engine_cancel,
        };
        let heartbeat_pause = HeartbeatPause::default();
        let backfill = BackfillOptions::new(&settings);
        let durability = crate::import::Durability {
            max_queued: backfill.max_queued,
            residence: backfill.residence,
            small_backlog: backfill.small_backlog,
        };
        let ingest = ingest::start(
            IngestParts {
                client: ClientOptions::new(&settings.ha, endpoint),
                filter: filter.clone(),
                mapper: mapper.clone(),
                writer: writer.clone(),
                registry: registry.clone(),
                catalog: catalog.clone(),
                live: live.clone(),
                backfill,
                heartbeat: (settings.heartbeat.interval_minutes > 0)
                    .then(|| Duration::from_secs(settings.heartbeat.interval_minutes * 60)),
                heartbeat_pause: heartbeat_pause.clone(),
            },
            cancel.child_token(),
        );
        let analysis = storage_step(
            "open pattern analysis",
            DataFile::Metadata,
            &metadata_db,
            Analysis::open(AnalysisParts {
                settings: settings.analysis.clone(),
                db: registry.connection().clone(),
                history: history.clone(),
                zone: ZoneSource::Ha(ingest.ha.clone()),
                states: ingest.states.clone(),
                clock: Arc::new(SystemClock),
            })
            .await,
            SqliteFailure::of_db_err,
        )?;
        let analysis_scheduler = analysis.spawn_scheduler(cancel.child_token());
        let rollups = step(
            "open rollups",
            Rollups::open(RollupParts {
                data_dir: settings.data_dir.clone(),
                history: history.clone(),
                write_log: writer.write_log(),
                retention: settings.retention.clone(),
                zone: ZoneOf::Ha(ingest.ha.clone()),
                max_raw_days: settings.api.max_history_days,
            })
            .await,
        )?;
        let rollups_task = rollups.start(cancel.child_token());
        let llm = crate::llm::Llm::from_settings(&settings);
        let suggestions = storage_step(
            "open suggestions",
            DataFile::Metadata,
            &metadata_db,
            Suggestions::open(SuggestionParts {
                settings: settings.suggestions.clone(),
                db: registry.connection().clone(),
                ha: ingest.ha.clone(),
                endpoint: rest_endpoint,
                catalog: catalog.clone(),
                states: ingest.states.clone(),
                analysis: analysis.clone(),
                clock: Arc::new(SystemClock),
                llm: llm.clone(),
            })
            .await,
            SqliteFailure::of_db_err,
        )?;
        let suggestions_task = suggestions.spawn(cancel.child_token());
        // raw retention deletes nothing the rollups' watermark does not cover
        let retention = Retention::new(&settings);
        let retention_task = retention.spawn(
            retention_target,
            RetentionInputs {
                rolled_up_until: rollups.rolled_up_until(),
                write_log: writer.write_log(),
            },
            FIRST_RUN_DELAY,
            cancel.child_token(),
        );
        let storage_guard = StorageGuard::new(GuardParts {
            settings: settings.clone(),
            probe: Box::new(Statvfs),
            heartbeat: heartbeat_pause,
            retention: retention.clone(),
        });
        let storage_guard_task = storage_guard.spawn(cancel.child_token());
        let import = storage_step(
            "open the import of Home Assistant's past",
            DataFile::Metadata,
            &metadata_db,
            Import::open(ImportParts {
                settings: settings.import.clone(),
                db: registry.connection().clone(),
                recorder: Arc::new(HaRecorder(ingest.ha.clone())),
                history: history.clone(),
                writer: writer.clone(),
                mapper,
                filter,
                catalog: catalog.clone(),
                states: ingest.states.clone(),
                sink: Arc::new(rollups.clone()),
                durability,
            })
            .await,
            SqliteFailure::of_db_err,
        )?;
        if let Err(e) = import.start().await {
            tracing::warn!(error = %e, "the import of Home Assistant's past did not start");
        }
        let rates = EventRates::default();
        let rates_task = OwnedTask::spawn(
            "event rates",
            rates
                .clone()
                .run(ingest.counters.clone(), cancel.child_token()),
        );

        let state = AppState {
            ha: ingest.ha.clone(),
            writer: writer.clone(),
            registry: registry.clone(),
            registry_sync: ingest.registry_sync.clone(),
            ingest: ingest.counters.clone(),
            states: ingest.states.clone(),
            backfill: ingest.backfill.clone(),
            heartbeat: ingest.heartbeat.clone(),
            started,
            catalog,
            history,
            rollups,
            history_cache: crate::api::cache::HistoryCache::new(
                settings.api.cache_mb,
                writer.write_log(),
            ),
            live,
            rates,
            settings: Arc::new(settings.clone()),
            webhooks,
            analysis: analysis.clone(),
            suggestions,
            llm,
            retention,
            storage_guard,
            import: import.clone(),
        };
        let options = ServerOptions {
            bind: settings.listen_address(supervisor).to_string(),
            port: settings.http.port,
            gateway: settings.trusted_gateway(supervisor),
            api_token: settings
                .http
                .api_token
                .as_ref()
                .map(|t| t.expose().to_owned()),
            stop: cancel.child_token(),
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
            ingest,
            writer,
            registry,
            webhooks: webhook_tasks,
            rates_task,
            analysis,
            analysis_scheduler,
            import,
            suggestions_task,
            retention_task,
            storage_guard_task,
            rollups_task,
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

    /// Serves until SIGTERM, SIGINT or the shutdown token, then shuts down in order.
    pub(crate) async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(wait_for_signal()).await
    }

    /// Serves until `stop` resolves or the shutdown token is cancelled, then shuts down in order
    /// within [`SHUTDOWN_BUDGET`] (see [`shutdown`]).
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> std::io::Result<()> {
        let Application {
            cancel,
            server,
            mut ingest,
            writer,
            registry,
            mut webhooks,
            mut rates_task,
            analysis,
            mut analysis_scheduler,
            import,
            mut suggestions_task,
            mut retention_task,
            mut storage_guard_task,
            mut rollups_task,
            ..
        } = self;
        let server_handle = server.handle();
        let mut server_task = OwnedTask::spawn("http server", async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        tokio::select! {
            () = stop => tracing::info!("stop signal received; shutting down"),
            () = cancel.cancelled() => tracing::info!("shutdown requested"),
            () = server_task.join() => tracing::error!("HTTP server stopped unexpectedly"),
        }
        let mut shutdown = Shutdown::start(SHUTDOWN_BUDGET);
        // the Home Assistant client, heartbeat, cursor task, rates and webhook worker stop now;
        // the stages below wait for them in order
        cancel.cancel();
        ingest.stop_reading();
        shutdown
            .run(Stage::StopHttp, |_| async {
                // requests under way may end (live streams ended at the cancel)
                // an analysis under way stops between two slices (recorded as interrupted)
                tokio::join!(
                    async {
                        server_handle.stop(true).await;
                        server_task.join().await;
                    },
                    analysis.stop(),
                    import.stop(),
                );
                rates_task.join().await;
                analysis_scheduler.join().await;
                suggestions_task.join().await;
                // a retention run stops between two chunks
                retention_task.join().await;
                storage_guard_task.join().await;
                rollups_task.join().await;
            })
            .await;
        shutdown
            .run(Stage::StopHaConnection, |_| ingest.connection_closed())
            .await;
        shutdown
            .run(Stage::DrainPipeline, |_| ingest.drained())
            .await;
        let report = shutdown
            .run(Stage::FlushWriter, |slot| {
                // the writer spools what it could not write before its deadline: that append
                // must fit into the slot too
                writer.shutdown(slot.mul_f64(0.85))
            })
            .await;
        match &report {
            Some(report) => tracing::info!(?report, "writer flushed"),
            None => tracing::error!("the writer did not finish its flush; points may be lost"),
        }
        let flushed = report.is_some_and(|r| r.left == 0);
        shutdown
            .run(Stage::PersistCursor, |_| ingest.persist_cursor(flushed))
            .await;
        shutdown
            .run(Stage::Webhooks, |_| async {
                // the worker stopped claiming at the cancel; attempts under way had
                // WEBHOOK_DRAIN to end, the rest are retried at the next start
                webhooks.engine_cancel.cancel();
                webhooks.engine.join().await;
                webhooks.delivery.join().await;
            })
            .await;
        shutdown
            .run(Stage::CloseRegistry, |_| async {
                ingest.registry_applied().await;
                if let Err(e) = registry.close().await {
                    tracing::warn!(error = %e, "cannot close the registry store");
                }
            })
            .await;
        shutdown.finish();
        Ok(())
    }
}

/// Opens the history backend `settings.storage` names: the write side, the read side and the
/// point mapper feeding them. In embedded mode no InfluxDB client exists and the `homeiq` schema
/// is used whatever `influxdb.schema` says (`ha_compat` only concerns InfluxDB dashboards).
async fn open_storage(
    settings: &Settings,
) -> Result<(HistoryWriter, HistoryStore, PointMapper, RetentionTarget), StartupError> {
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
        let target = RetentionTarget::Embedded {
            writer: writer.clone(),
            path,
        };
        return Ok((
            writer.into(),
            HistoryStore::Embedded(history),
            PointMapper::homeiq(&settings.influxdb.ignore_attributes),
            target,
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
        HistoryStore::Influx(InfluxHistory::new(client.clone(), settings.influxdb.schema)),
        mapper,
        RetentionTarget::Influx(client),
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
