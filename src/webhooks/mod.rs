//! Signed webhooks: rules over the live state stream that POST a signed JSON body to a Home
//! Assistant webhook (and so trigger an automation) or to any HTTP receiver.
//!
//! # Design
//!
//! ```text
//! LiveBus ──▶ engine task ──(outbox row first)──▶ webhook_deliveries ──▶ dispatcher ──▶ POST
//!             rules::RuleEngine                    (SQLite, homeiq.db)    deliver.rs
//! ```
//!
//! - **Rules** ([`rules`]) are pure: an event and `now` in, matches out; `for` holds are a sorted
//!   map of due times the engine task sleeps on; no polling of states anywhere.
//! - **The engine never slows ingestion**: it is one more `broadcast` listener of the
//!   [`LiveBus`]; if it falls behind it gets `Lagged`, logs and counts the missed events
//!   (`/health/deep`, `homeiq_webhook_events_missed`), and goes on.
//! - **Outbox first** ([`store`]): a match becomes a `pending` row (with the exact body bytes and
//!   a random delivery id) before any request, so a crash between match and delivery loses
//!   nothing; the dispatcher is woken at once, so a change reaches the receiver in milliseconds.
//! - **Delivery** ([`deliver`]): at-least-once with a stable delivery id, back-off with jitter,
//!   `Retry-After`, per-target concurrency and rate limits; rows a crash left in flight are retried
//!   at the next start. The body is signed ([`sign`]) over exactly the bytes sent.
//! - **Secrets** are stored (they are needed to sign), returned once when a target is created,
//!   never again and never logged; an `ha` target's webhook id is its real secret (Home Assistant
//!   automations cannot read headers), so it is masked in answers and never logged either.
//!
//! # Why hand-written pieces
//!
//! The rule engine is HomeIQ's own because its semantics (hysteresis, `for` cancelled on change,
//! cooldown per entity, attribute-only updates not counting as state changes) are the feature; a
//! generic CEP library would be larger than it. The outbox is a table and a query rather than a
//! job-queue crate because it must share `homeiq.db`, its migrations and its cascade deletes.
//! HMAC and hex are a few lines over `ring`, already a dependency.

pub(crate) mod api;
pub(crate) mod deliver;
pub mod egress;
pub(crate) mod rules;
pub mod sign;
pub(crate) mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{HaEndpoint, Secret, WebhookSettings};
use crate::ingest::{LiveBus, LiveEvent};
use crate::registry::CatalogHandle;
use deliver::{Dispatcher, RetryPolicy, TargetConfig, TargetTable};
use rules::{Match, Rule, RuleEngine, TargetRules};
use store::{DeliveryStatus, TargetKind, WebhookStore, delivery, now_ms, target};

/// Event type of rule matches.
pub(crate) const EVENT_STATE_CHANGED: &str = "state_changed";
/// Event type of `POST /api/v1/webhooks/{id}/test`.
pub(crate) const EVENT_TEST: &str = "test";

/// Why a webhook operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookError {
    /// The metadata database failed.
    #[error("metadata database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// The HTTP client could not be built.
    #[error("cannot create the webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// A body could not be encoded.
    #[error("cannot encode a webhook body: {0}")]
    Encode(#[from] serde_json::Error),
}

crate::counters::counters! {
    /// Counters of the webhook engine and delivery; read by `/health/deep` and `/metrics`
    /// (`homeiq_webhook_<field>`).
    pub(crate) struct WebhookCounts => WebhookCountsSnapshot ("homeiq_webhook") {
        /// Live state changes the webhook rules evaluated.
        events,
        /// Live state changes the webhook rules missed because they fell behind (`Lagged`).
        events_missed,
        /// Webhook rules that fired.
        matches,
        /// Webhook rule matches suppressed by a cooldown.
        suppressed_cooldown,
        /// Webhook deliveries written to the outbox.
        enqueued,
        /// Webhook rule matches that could not be written to the outbox.
        enqueue_errors,
        /// Webhook delivery attempts.
        attempts,
        /// Webhook deliveries that succeeded.
        delivered,
        /// Webhook deliveries given up.
        failed,
        /// Webhook delivery attempts that will be retried.
        retries,
        /// Webhook deliveries postponed by a target's rate limit.
        rate_limited,
        /// Pending webhook deliveries dropped (oldest first) because their target had
        /// `webhooks.max_pending_per_target` waiting.
        dropped,
        /// Wake-ups of the webhook delivery dispatcher.
        dispatcher_rounds,
    }
}

/// The webhook engine's counters, the last trigger latency (a gauge) and per-target outcomes.
#[derive(Debug, Default)]
pub(crate) struct WebhookCounters {
    /// The counters.
    pub counts: WebhookCounts,
    /// Change in Home Assistant → start of the first attempt, last delivery, ms.
    pub last_trigger_latency_ms: AtomicU64,
    per_target: Mutex<HashMap<String, (u64, u64)>>,
}

impl WebhookCounters {
    /// Counts a finished delivery of `target` (since start).
    pub(crate) fn count_target(&self, target: &str, delivered: bool) {
        let mut map = self.per_target.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(target.to_owned()).or_default();
        if delivered {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }

    /// (target id, delivered, failed) since start.
    pub(crate) fn per_target(&self) -> Vec<(String, u64, u64)> {
        let map = self.per_target.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = map.iter().map(|(k, (d, f))| (k.clone(), *d, *f)).collect();
        out.sort();
        out
    }

    /// A snapshot.
    pub(crate) fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            counts: self.counts.snapshot(),
            last_trigger_latency_ms: self.last_trigger_latency_ms.load(Ordering::Relaxed),
        }
    }
}

/// [`WebhookCounters`] as plain numbers.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct CountersSnapshot {
    /// The counters.
    #[serde(flatten)]
    pub counts: WebhookCountsSnapshot,
    /// Change → first attempt of the last delivery, ms.
    pub last_trigger_latency_ms: u64,
}

/// Where `ha` targets are delivered: Core's REST API (the Supervisor proxy or `ha.url`).
#[derive(Debug, Clone)]
pub(crate) struct HaWebhookBase {
    /// REST base ending in `/api`.
    pub rest_url: String,
    /// Bearer token for the Supervisor proxy (not sent to a directly reached Core).
    pub bearer: Option<Secret>,
}

impl HaWebhookBase {
    /// From the resolved Home Assistant endpoint.
    pub(crate) fn new(endpoint: &HaEndpoint) -> Self {
        HaWebhookBase {
            rest_url: endpoint.rest_url.trim_end_matches('/').to_owned(),
            bearer: endpoint.supervisor.then(|| endpoint.token.clone()),
        }
    }

    /// `<rest>/webhook/<id>`.
    pub(crate) fn url(&self, webhook_id: &str) -> String {
        format!("{}/webhook/{webhook_id}", self.rest_url)
    }
}

struct Inner {
    store: WebhookStore,
    settings: WebhookSettings,
    ha: HaWebhookBase,
    targets: TargetTable,
    rules_tx: watch::Sender<Arc<Vec<TargetRules>>>,
    /// The live bus, once the engine runs.
    live: std::sync::OnceLock<LiveBus>,
    /// A subscription taken when rules were published, for an engine that had none: events
    /// published after [`WebhookHandle::reload`] returns reach the rules even though the engine
    /// takes the new rules a moment later.
    pending_events: Mutex<Option<broadcast::Receiver<Arc<LiveEvent>>>>,
    notify: Arc<Notify>,
    counters: Arc<WebhookCounters>,
}

/// The most live events the rule engine takes per wake-up.
const ENGINE_BATCH: u64 = 256;

/// Webhooks: the store, the live target table, the counters; cheap to clone.
#[derive(Clone)]
pub(crate) struct WebhookHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WebhookHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookHandle")
    }
}

/// The status shown in `/health/deep`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct WebhookStatus {
    /// Targets configured.
    pub targets: usize,
    /// Deliveries by status in the outbox and log.
    pub deliveries: HashMap<DeliveryStatus, i64>,
    /// Counters since start.
    #[serde(flatten)]
    pub counters: CountersSnapshot,
}

impl WebhookStatus {
    /// Webhooks' judgement of themselves: state changes the rules missed are a warning.
    pub(crate) fn health(&self) -> crate::health::Health {
        let mut health = crate::health::Health::default();
        if self.counters.counts.events_missed > 0 {
            health.warn(format!(
                "webhook rules missed {} state changes because they fell behind the live stream",
                self.counters.counts.events_missed
            ));
        }
        health
    }
}

impl WebhookHandle {
    /// Opens webhooks over `store` and loads the targets.
    pub(crate) async fn open(
        store: WebhookStore,
        settings: WebhookSettings,
        ha: HaWebhookBase,
    ) -> Result<Self, WebhookError> {
        let (rules_tx, _) = watch::channel(Arc::new(Vec::new()));
        let handle = WebhookHandle {
            inner: Arc::new(Inner {
                store,
                settings,
                ha,
                targets: Arc::new(ArcSwap::from_pointee(HashMap::new())),
                rules_tx,
                live: std::sync::OnceLock::new(),
                pending_events: Mutex::new(None),
                notify: Arc::new(Notify::new()),
                counters: Arc::new(WebhookCounters::default()),
            }),
        };
        handle.reload().await?;
        Ok(handle)
    }

    /// The rows.
    pub(crate) fn store(&self) -> &WebhookStore {
        &self.inner.store
    }

    /// The settings.
    pub(crate) fn settings(&self) -> &WebhookSettings {
        &self.inner.settings
    }

    /// The counters.
    pub(crate) fn counters(&self) -> &WebhookCounters {
        &self.inner.counters
    }

    /// Re-reads the targets after a change: the dispatcher's table and the engine's rules.
    pub(crate) async fn reload(&self) -> Result<(), WebhookError> {
        let rows = self.inner.store.list_targets().await?;
        let settings = &self.inner.settings;
        let mut table = HashMap::new();
        let mut rules = Vec::new();
        for row in rows {
            if row
                .webhook_id
                .as_deref()
                .is_some_and(egress::is_dot_segment)
            {
                // stored before ids made of dots were refused: it would reach another path of
                // Home Assistant's API with the token
                tracing::warn!(target = %row.name, "webhook target has an invalid webhook id (only dots); skipped");
                continue;
            }
            let config = TargetConfig {
                name: row.name.clone(),
                guarded: row.kind != TargetKind::Ha && !settings.allow_internal_targets,
                url: match (row.kind, &row.webhook_id, &row.url) {
                    (TargetKind::Ha, Some(id), _) => self.inner.ha.url(id),
                    (_, _, Some(url)) => url.clone(),
                    _ => {
                        tracing::warn!(target = %row.name, "webhook target has no address; skipped");
                        continue;
                    }
                },
                secret: Secret::new(row.secret.clone()),
                bearer: if row.kind == TargetKind::Ha {
                    self.inner.ha.bearer.clone()
                } else {
                    None
                },
                rate_limit_per_minute: row
                    .rate_limit_per_minute
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(settings.rate_limit_per_minute),
                concurrency: row
                    .concurrency
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(settings.concurrency_per_target),
            };
            table.insert(row.id.clone(), Arc::new(config));
            if !row.enabled {
                continue;
            }
            let parsed: Vec<Rule> = serde_json::from_value(row.rules.clone()).unwrap_or_default();
            match rules::compile_rules(&parsed) {
                Ok(compiled) => rules.push(TargetRules {
                    target_id: row.id.clone(),
                    version: row.updated_at,
                    rules: compiled,
                }),
                Err((field, message)) => {
                    tracing::warn!(target = %row.name, %field, %message, "stored webhook rules are invalid; target skipped");
                }
            }
        }
        self.inner.targets.store(Arc::new(table));
        if let Some(live) = self.inner.live.get().filter(|_| !rules.is_empty()) {
            *lock(&self.inner.pending_events) = Some(live.subscribe());
        }
        self.inner.rules_tx.send_replace(Arc::new(rules));
        self.inner.notify.notify_one();
        Ok(())
    }

    /// Writes a delivery to the outbox and wakes the dispatcher; returns its id.
    pub(crate) async fn enqueue(
        &self,
        target: (&str, &str),
        event: &str,
        rule: Option<(usize, &Rule)>,
        live: Option<&LiveEvent>,
        fired_at: chrono::DateTime<Utc>,
    ) -> Result<String, WebhookError> {
        let (target_id, target_name) = target;
        let id = sign::random_hex(16);
        let new_state = live.and_then(|e| e.new_state.as_deref());
        let body = json!({
            "delivery_id": id,
            "event": event,
            "target": {"id": target_id, "name": target_name},
            "rule": rule.map(|(index, rule)| json!({"index": index, "definition": rule})),
            "entity_id": live.map(|e| e.entity_id.as_str()),
            "old_state": live.and_then(|e| e.old_state.as_deref()),
            "new_state": new_state,
            "attributes": new_state.map(|s| &s.attributes),
            "time": live.map_or(fired_at, |e| e.time_fired),
            "fired_at": fired_at,
        });
        let body = serde_json::to_string(&body)?;
        let now = now_ms();
        let dropped = self
            .inner
            .store
            .insert_delivery(
                delivery::Model {
                    id: id.clone(),
                    target_id: target_id.to_owned(),
                    event: event.to_owned(),
                    rule_index: rule.and_then(|(i, _)| i32::try_from(i).ok()),
                    entity_id: live.map(|e| e.entity_id.clone()),
                    body,
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    created_at: now,
                    event_time: live.map(|e| e.time_fired.timestamp_millis()),
                    next_attempt_at: now,
                    first_attempt_at: None,
                    last_attempt_at: None,
                    finished_at: None,
                    latency_ms: None,
                    response_code: None,
                    last_error: None,
                },
                self.inner.settings.max_pending_per_target,
            )
            .await?;
        self.inner
            .counters
            .counts
            .enqueued
            .fetch_add(1, Ordering::Relaxed);
        if dropped > 0 {
            let before = self
                .inner
                .counters
                .counts
                .dropped
                .fetch_add(dropped, Ordering::Relaxed);
            // the first drop, then one line per thousand: a backlog must not flood the log
            if before == 0 || (before + dropped) / 1000 > before / 1000 {
                tracing::warn!(
                target = %target_name,
                dropped,
                    dropped_since_start = before + dropped,
                    "webhook target has webhooks.max_pending_per_target deliveries waiting; the oldest were dropped"
                );
            }
        }
        self.inner.notify.notify_one();
        Ok(id)
    }

    async fn enqueue_matches(&self, matches: Vec<Match>) {
        if matches.is_empty() {
            return;
        }
        let table = self.inner.targets.load_full();
        for m in matches {
            let name = table
                .get(&m.target_id)
                .map(|t| t.name.clone())
                .unwrap_or_default();
            self.inner
                .counters
                .counts
                .matches
                .fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self
                .enqueue(
                    (&m.target_id, &name),
                    EVENT_STATE_CHANGED,
                    Some((m.rule_index, &m.rule)),
                    Some(&m.event),
                    m.fired_at,
                )
                .await
            {
                self.inner
                    .counters
                    .counts
                    .enqueue_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, target = %name, entity = %m.event.entity_id, "cannot write a webhook delivery; this match is lost");
            }
        }
    }

    /// Status for `/health/deep`.
    pub(crate) async fn status(&self) -> Result<WebhookStatus, WebhookError> {
        let deliveries = self
            .inner
            .store
            .status_counts()
            .await?
            .into_iter()
            .collect();
        Ok(WebhookStatus {
            targets: self.inner.targets.load().len(),
            deliveries,
            counters: self.inner.counters.snapshot(),
        })
    }

    /// Starts the rule engine (on `live`) and the delivery worker. The engine stops on
    /// `engine_cancel` after evaluating the events already published (cancel it once the pipeline
    /// has drained); the worker stops claiming on `worker_cancel` and gives attempts under way up
    /// to `drain`.
    pub(crate) fn spawn(
        &self,
        live: &LiveBus,
        catalog: CatalogHandle,
        engine_cancel: CancellationToken,
        worker_cancel: CancellationToken,
        drain: Duration,
    ) -> Result<(JoinHandle<()>, JoinHandle<()>), WebhookError> {
        let settings = &self.inner.settings;
        let dispatcher = Dispatcher {
            store: self.inner.store.clone(),
            targets: self.inner.targets.clone(),
            notify: self.inner.notify.clone(),
            counters: self.inner.counters.clone(),
            policy: RetryPolicy::from(settings),
            guarded_http: deliver::http_client(Duration::from_secs(settings.timeout_secs), true)?,
            http: deliver::http_client(Duration::from_secs(settings.timeout_secs), false)?,
            log_retention: Duration::from_secs(settings.log_retention_days * 86_400),
        };
        let _ = self.inner.live.set(live.clone());
        // without rules the engine does not listen: the pipeline then builds no live events
        // for it and it does not wake for every burst of state changes
        let events = (!self.inner.rules_tx.borrow().is_empty()).then(|| live.subscribe());
        let engine = tokio::spawn(self.clone().run_engine(
            events,
            self.inner.rules_tx.subscribe(),
            catalog,
            engine_cancel,
        ));
        let worker = tokio::spawn(dispatcher.run(worker_cancel, drain));
        Ok((engine, worker))
    }

    async fn run_engine(
        self,
        mut events: Option<broadcast::Receiver<Arc<LiveEvent>>>,
        mut rules_rx: watch::Receiver<Arc<Vec<TargetRules>>>,
        catalog: CatalogHandle,
        cancel: CancellationToken,
    ) {
        let mut engine = RuleEngine::new(rules_rx.borrow_and_update().to_vec());
        let counters = self.inner.counters.clone();
        loop {
            let due = engine
                .next_due()
                .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            let matches = tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    // evaluate what was published before the stop, then end
                    let catalog = catalog.current();
                    let mut matches = Vec::new();
                    while let Some(Ok(event)) = events.as_mut().map(broadcast::Receiver::try_recv) {
                        counters.counts.events.fetch_add(1, Ordering::Relaxed);
                        matches.extend(engine.evaluate(&event, Utc::now(), &*catalog));
                    }
                    self.enqueue_matches(matches).await;
                    break;
                }
                changed = rules_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    engine.set_targets(rules_rx.borrow_and_update().to_vec());
                    let pending = lock(&self.inner.pending_events).take();
                    if engine.is_empty() {
                        events = None;
                    } else if events.is_none() {
                        events = pending;
                    }
                    Vec::new()
                }
                event = next_event(&mut events) => match event {
                    Ok(event) => {
                        // the rest of the burst too, without a trip through the select each
                        let catalog = catalog.current();
                        let mut matches = engine.evaluate(&event, Utc::now(), &*catalog);
                        let mut n = 1;
                        while n < ENGINE_BATCH {
                            let Some(events) = events.as_mut() else { break };
                            match events.try_recv() {
                                Ok(event) => {
                                    n += 1;
                                    matches.extend(engine.evaluate(&event, Utc::now(), &*catalog));
                                }
                                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                                    counters.counts.events_missed.fetch_add(missed, Ordering::Relaxed);
                                    tracing::warn!(missed, "webhook rules fell behind the live stream; events missed");
                                }
                                Err(_) => break,
                            }
                        }
                        counters.counts.events.fetch_add(n, Ordering::Relaxed);
                        matches
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        counters.counts.events_missed.fetch_add(n, Ordering::Relaxed);
                        tracing::warn!(missed = n, "webhook rules fell behind the live stream; events missed");
                        Vec::new()
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                () = tokio::time::sleep(due.unwrap_or(Duration::from_secs(3600))), if due.is_some() => {
                    engine.due(Utc::now())
                }
            };
            self.enqueue_matches(matches).await;
            counters
                .counts
                .suppressed_cooldown
                .store(engine.stats().suppressed_cooldown, Ordering::Relaxed);
        }
        tracing::debug!("webhook rule engine stopped");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The next live event; never resolves without a subscription.
async fn next_event(
    events: &mut Option<broadcast::Receiver<Arc<LiveEvent>>>,
) -> Result<Arc<LiveEvent>, broadcast::error::RecvError> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// A target row's rules, as stored.
pub(crate) fn rules_of(row: &target::Model) -> Vec<Rule> {
    serde_json::from_value(row.rules.clone()).unwrap_or_default()
}
