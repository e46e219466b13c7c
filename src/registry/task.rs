//! The registry task: applies registry changes to the SQLite mirror, off the pipeline's path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};

use crate::ha::model::RegistryKind;
use crate::registry::{CatalogHandle, EntityEntry, RegistryRows, RegistryStore, StateMeta};

/// Capacity of the queue to the registry task.
pub(crate) const REGISTRY_QUEUE: usize = 256;

/// One change to apply to the mirror.
#[derive(Debug)]
pub(crate) enum RegistryJob {
    /// Make a table equal to Home Assistant's list.
    FullSync(RegistryRows),
    /// Insert or update one row.
    UpsertEntity(Box<EntityEntry>),
    /// Remove one row (entities by entity id).
    Remove(RegistryKind, String),
    /// Device class, unit and name seen in state attributes.
    StateMeta(Vec<StateMeta>),
    /// Entities whose state is gone: forget their state metadata.
    ForgetStates(Vec<String>),
    /// A complete `get_states` snapshot holds exactly these entity ids: forget the state metadata
    /// of every other entity (those removed while HomeIQ was stopped or disconnected).
    RetainStates(Vec<String>),
}

/// What the registry task has done, for health.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct RegistrySyncStatus {
    /// Last full sync per registry.
    #[schema(value_type = HashMap<String, String>)]
    pub last_full_sync: HashMap<&'static str, DateTime<Utc>>,
    /// Jobs applied.
    pub jobs_applied: u64,
    /// Jobs that failed.
    pub jobs_failed: u64,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Shared view of the registry task's status.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistrySyncState {
    inner: Arc<Mutex<RegistrySyncStatus>>,
}

impl RegistrySyncState {
    /// A copy of the status.
    pub(crate) fn status(&self) -> RegistrySyncStatus {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RegistrySyncStatus> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long after a change the catalog is re-read, so that a burst of changes (a full sync of
/// five registries, a restart) costs one reload.
const CATALOG_RELOAD_DELAY: Duration = Duration::from_millis(150);

/// Applies jobs until the channel closes, reloading `catalog` shortly after changes.
pub(crate) async fn run_registry_task(
    store: RegistryStore,
    mut jobs: mpsc::Receiver<RegistryJob>,
    state: RegistrySyncState,
    catalog: CatalogHandle,
) {
    let mut reload_at: Option<Instant> = None;
    loop {
        let job = match reload_at {
            Some(at) => match tokio::time::timeout_at(at, jobs.recv()).await {
                Ok(job) => job,
                Err(_) => {
                    reload_at = None;
                    if let Err(e) = catalog.reload(&store).await {
                        tracing::warn!(error = %e, "cannot reload the registry catalog");
                        state.lock().last_error = Some(format!("catalog reload: {e}"));
                    }
                    continue;
                }
            },
            None => jobs.recv().await,
        };
        let Some(job) = job else { break };
        reload_at.get_or_insert_with(|| Instant::now() + CATALOG_RELOAD_DELAY);
        let (what, result) = match job {
            RegistryJob::FullSync(rows) => {
                let kind = rows.kind();
                match store.full_sync(rows).await {
                    Ok(report) => {
                        tracing::info!(
                            registry = kind.as_str(),
                            total = report.total,
                            inserted = report.inserted,
                            updated = report.updated,
                            removed = report.removed,
                            "registry mirror synced"
                        );
                        state
                            .lock()
                            .last_full_sync
                            .insert(kind.as_str(), Utc::now());
                        ("full sync", Ok(()))
                    }
                    Err(e) => ("full sync", Err(e)),
                }
            }
            RegistryJob::UpsertEntity(entry) => ("upsert", store.upsert_entity(*entry).await),
            RegistryJob::Remove(kind, id) => ("remove", store.remove(kind, &id).await),
            RegistryJob::StateMeta(rows) => ("state metadata", store.record_state_meta(rows).await),
            RegistryJob::ForgetStates(ids) => ("forget states", store.forget_state_meta(ids).await),
            RegistryJob::RetainStates(ids) => match store.retain_state_meta(ids).await {
                Ok(removed) => {
                    if removed > 0 {
                        tracing::info!(
                            removed,
                            "state metadata of entities Home Assistant no longer has removed"
                        );
                    }
                    ("retain states", Ok(()))
                }
                Err(e) => ("retain states", Err(e)),
            },
        };
        let mut s = state.lock();
        match result {
            Ok(()) => s.jobs_applied += 1,
            Err(e) => {
                tracing::warn!(job = what, error = %e, "registry mirror update failed");
                s.jobs_failed += 1;
                s.last_error = Some(format!("{what}: {e}"));
            }
        }
    }
}
