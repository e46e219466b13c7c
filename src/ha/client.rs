//! The Home Assistant WebSocket client: one long-lived task that connects, authenticates,
//! subscribes, takes snapshots, pings, and reconnects with back-off.
//!
//! Per connection there are three tasks:
//! - the **writer** owns the socket's sink and the message-id counter (ids start at 1 on every
//!   connection and strictly increase); everything sent goes through it;
//! - the **reader** decodes frames (single or coalesced) and hands messages to a bounded channel;
//!   it never touches storage, and command replies are routed by id;
//! - the **session** task runs the start-up sequence and the ping loop.
//!
//! Start-up order on every connection: auth → `supported_features` (coalescing) → subscribe to
//! `state_changed`, the five registry events, `automation_triggered` and `script_started` → only
//! then the registry lists, the user list (`config/auth/list`) and `get_states`.
//! Their replies travel through the same ordered channel as the events ([`HaMessage::Reply`]), so a
//! consumer sees every event either before or after the snapshot exactly as Home Assistant ordered
//! them, and nothing that happened between snapshot and subscription is lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::model::{RegistryEvent, RegistryKind, RunKind, RunStarted, StateChanged};
use super::protocol::{CommandErrorBody, Incoming, decode_frame};
use crate::config::{HaEndpoint, HaSettings};
use crate::health::{Health, Verdict};

/// Home Assistant's limit for answering `auth_required`.
pub(crate) const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Commands queued for the writer at most.
const OUTGOING_QUEUE: usize = 1_024;
/// How long start-up commands (features, subscriptions) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How the client connects and behaves.
#[derive(Debug, Clone)]
pub(crate) struct ClientOptions {
    /// Addresses and token.
    pub endpoint: HaEndpoint,
    /// Capacity of the channel to the consumer, in messages.
    pub event_queue: usize,
    /// Time between pings.
    pub ping_interval: Duration,
    /// Time to wait for a pong.
    pub pong_timeout: Duration,
    /// First reconnect delay, seconds.
    pub reconnect_min_secs: f64,
    /// Largest reconnect delay, seconds.
    pub reconnect_max_secs: f64,
}

impl ClientOptions {
    /// Options from the `ha.*` settings and a resolved endpoint.
    pub(crate) fn new(settings: &HaSettings, endpoint: HaEndpoint) -> Self {
        ClientOptions {
            endpoint,
            event_queue: settings.event_queue,
            ping_interval: Duration::from_secs(settings.ping_interval_secs),
            pong_timeout: Duration::from_secs(settings.pong_timeout_secs),
            reconnect_min_secs: settings.reconnect_min_secs,
            reconnect_max_secs: settings.reconnect_max_secs,
        }
    }
}

/// Which request a streamed reply answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplyTag {
    /// `get_states`.
    States,
    /// A registry list.
    RegistryList(RegistryKind),
    /// `config/entity_registry/get` for this entity id.
    EntityGet(String),
    /// `config/auth/list` (who is a system user; needs an admin token).
    Users,
}

/// What the client hands to its consumer, in Home Assistant's order.
#[derive(Debug)]
pub(crate) enum HaMessage {
    /// Authenticated; subscriptions and a snapshot follow.
    Connected {
        /// Connection number (1, 2, …).
        connection: u64,
    },
    /// A `state_changed` event.
    StateChanged(Box<StateChanged>),
    /// A registry change.
    Registry(RegistryEvent),
    /// An automation or script run began (before the changes it makes).
    RunStarted(RunStarted),
    /// The reply to a request whose answer was asked for in-stream.
    Reply {
        /// What it answers.
        tag: ReplyTag,
        /// The `result` payload, or the error.
        result: Result<Box<RawValue>, CommandError>,
    },
}

/// A command that did not succeed.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
pub(crate) enum CommandError {
    /// No connection is up.
    #[error("not connected to Home Assistant")]
    NotConnected,
    /// The connection ended before the reply arrived.
    #[error("the connection to Home Assistant ended before the reply")]
    ConnectionLost,
    /// Home Assistant answered with an error.
    #[error("Home Assistant refused the command: {code}: {message}")]
    Failed {
        /// Error code.
        code: String,
        /// Error message.
        message: String,
    },
    /// No reply in time.
    #[error("no reply from Home Assistant within {0:?}")]
    Timeout(Duration),
    /// The request was not a JSON object.
    #[error("a command must be a JSON object with a `type`")]
    NotAnObject,
}

impl From<CommandErrorBody> for CommandError {
    fn from(e: CommandErrorBody) -> Self {
        CommandError::Failed {
            code: e.code,
            message: e.message,
        }
    }
}

/// The connection's state, as shown by health.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum ConnectionState {
    /// Not yet tried.
    Starting,
    /// Opening the socket and authenticating.
    Connecting {
        /// Attempt number since the last good connection.
        attempt: u32,
    },
    /// Authenticated and subscribing.
    Subscribing,
    /// Subscribed and receiving events.
    Connected {
        /// Since when.
        since: DateTime<Utc>,
    },
    /// Waiting before the next attempt.
    Waiting {
        /// When the next attempt starts.
        retry_at: DateTime<Utc>,
        /// Failed attempts in a row.
        attempt: u32,
    },
    /// The token was refused; no further attempts until restart.
    AuthFailed {
        /// Home Assistant's message and what to do.
        message: String,
    },
    /// Shut down.
    Stopped,
}

/// The name of a [`ConnectionState`], without its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ConnectionPhase {
    /// Not yet tried.
    Starting,
    /// Opening the socket and authenticating.
    Connecting,
    /// Authenticated and subscribing.
    Subscribing,
    /// Subscribed and receiving events.
    Connected,
    /// Waiting before the next attempt.
    Waiting,
    /// The token was refused.
    AuthFailed,
    /// Shut down.
    Stopped,
}

impl ConnectionPhase {
    /// The name the API uses (`auth_failed`…).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConnectionPhase::Starting => "starting",
            ConnectionPhase::Connecting => "connecting",
            ConnectionPhase::Subscribing => "subscribing",
            ConnectionPhase::Connected => "connected",
            ConnectionPhase::Waiting => "waiting",
            ConnectionPhase::AuthFailed => "auth_failed",
            ConnectionPhase::Stopped => "stopped",
        }
    }
}

impl ConnectionState {
    /// Which state this is, without its details.
    pub(crate) fn phase(&self) -> ConnectionPhase {
        match self {
            ConnectionState::Starting => ConnectionPhase::Starting,
            ConnectionState::Connecting { .. } => ConnectionPhase::Connecting,
            ConnectionState::Subscribing => ConnectionPhase::Subscribing,
            ConnectionState::Connected { .. } => ConnectionPhase::Connected,
            ConnectionState::Waiting { .. } => ConnectionPhase::Waiting,
            ConnectionState::AuthFailed { .. } => ConnectionPhase::AuthFailed,
            ConnectionState::Stopped => ConnectionPhase::Stopped,
        }
    }
}

/// A snapshot of the client for health and metrics.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct HaStatus {
    /// Connection state.
    #[serde(flatten)]
    pub state: ConnectionState,
    /// WebSocket URL (never the token).
    pub websocket_url: String,
    /// Whether the Supervisor proxy is used.
    pub supervisor: bool,
    /// Home Assistant's version from the last `auth_ok`.
    pub ha_version: Option<String>,
    /// Current (or last) connection number.
    pub connection: u64,
    /// Subscriptions active on the current connection.
    pub subscriptions: usize,
    /// Counters since start.
    #[serde(flatten)]
    pub counts: HaCounts,
    /// When the last `state_changed` arrived.
    pub last_event_at: Option<DateTime<Utc>>,
    /// Seconds since then.
    pub last_event_age_secs: Option<f64>,
    /// The last connection error.
    pub last_error: Option<String>,
    /// Messages waiting in the queue to the pipeline.
    pub queue_depth: usize,
    /// That queue's capacity.
    pub queue_capacity: usize,
}

impl HaStatus {
    /// The connection's judgement of itself: a refused token fails (nothing works until someone
    /// acts), anything but connected is degraded.
    pub(crate) fn health(&self) -> Health {
        let mut health = Health::default();
        match &self.state {
            ConnectionState::Connected { .. } => {}
            ConnectionState::AuthFailed { message } => {
                health.flag(Verdict::Failed, message.clone())
            }
            other => health.flag(
                Verdict::Degraded,
                format!(
                    "not connected to Home Assistant ({}){}",
                    other.phase().as_str(),
                    self.last_error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
            ),
        }
        health
    }
}

enum Route {
    Oneshot(oneshot::Sender<Result<Box<RawValue>, CommandError>>),
    Stream(ReplyTag),
}

enum Outgoing {
    Command {
        payload: Map<String, Value>,
        route: Route,
    },
    Close,
}

type Pending = Arc<Mutex<HashMap<u64, Route>>>;

crate::counters::counters! {
    /// The client's counters since start.
    pub(crate) struct HaCounters => HaCounts ("homeiq_ha") {
        /// Successful authentications with Home Assistant.
        connects,
        /// Subscriptions sent over the process's life.
        subscriptions_sent,
        /// `state_changed` events received.
        events_received,
        /// Registry change events received.
        registry_events_received,
        /// Frames from Home Assistant that could not be decoded.
        decode_errors,
        /// Times the reader found the pipeline queue full and had to wait.
        queue_full_waits,
    }
}

#[derive(Default)]
struct Counters {
    totals: HaCounters,
    subscriptions: AtomicUsize,
    last_event_ms: AtomicI64,
    connection: AtomicU64,
}

struct Shared {
    endpoint: HaEndpoint,
    queue_capacity: usize,
    state: Mutex<ConnectionState>,
    ha_version: Mutex<Option<String>>,
    last_error: Mutex<Option<String>>,
    outgoing: Mutex<Option<(u64, mpsc::Sender<Outgoing>)>>,
    events: Mutex<Option<mpsc::WeakSender<HaMessage>>>,
    counters: Counters,
}

/// Locks a mutex, recovering the data if another thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn set_state(&self, state: ConnectionState) {
        *lock(&self.state) = state;
    }

    fn set_error(&self, error: impl Into<String>) {
        *lock(&self.last_error) = Some(error.into());
    }

    fn sender(&self) -> Option<(u64, mpsc::Sender<Outgoing>)> {
        lock(&self.outgoing).clone()
    }
}

/// A cheap handle to the running client: status and commands.
#[derive(Clone)]
pub(crate) struct HaHandle {
    shared: Arc<Shared>,
}

impl HaHandle {
    /// The client's current status.
    pub(crate) fn status(&self) -> HaStatus {
        let s = &self.shared;
        let c = &s.counters;
        let last_ms = c.last_event_ms.load(Ordering::Relaxed);
        let last_event_at = (last_ms > 0)
            .then(|| DateTime::<Utc>::from_timestamp_millis(last_ms))
            .flatten();
        let queue_depth = lock(&s.events)
            .as_ref()
            .and_then(mpsc::WeakSender::upgrade)
            .map_or(0, |tx| tx.max_capacity() - tx.capacity());
        HaStatus {
            state: lock(&s.state).clone(),
            websocket_url: crate::config::redact_urls(&s.endpoint.websocket_url).into_owned(),
            supervisor: s.endpoint.supervisor,
            ha_version: lock(&s.ha_version).clone(),
            connection: c.connection.load(Ordering::Relaxed),
            subscriptions: c.subscriptions.load(Ordering::Relaxed),
            counts: c.totals.snapshot(),
            last_event_age_secs: last_event_at
                .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0),
            last_event_at,
            last_error: lock(&s.last_error).clone(),
            queue_depth,
            queue_capacity: s.queue_capacity,
        }
    }

    /// Sends a command (a JSON object with `type`; the id is added) and waits for its result.
    pub(crate) async fn request(
        &self,
        command: Value,
        timeout: Duration,
    ) -> Result<Box<RawValue>, CommandError> {
        let Value::Object(payload) = command else {
            return Err(CommandError::NotAnObject);
        };
        let (_, tx) = self.shared.sender().ok_or(CommandError::NotConnected)?;
        let (reply_tx, reply_rx) = oneshot::channel();
        tx.send(Outgoing::Command {
            payload,
            route: Route::Oneshot(reply_tx),
        })
        .await
        .map_err(|_| CommandError::NotConnected)?;
        match tokio::time::timeout(timeout, reply_rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CommandError::ConnectionLost),
            Err(_) => Err(CommandError::Timeout(timeout)),
        }
    }

    /// Sends a command whose reply arrives as [`HaMessage::Reply`] with `tag`, in order with the
    /// events. Returns the connection number it was sent on. Never waits.
    pub(crate) fn request_in_stream(
        &self,
        command: Value,
        tag: ReplyTag,
    ) -> Result<u64, CommandError> {
        let Value::Object(payload) = command else {
            return Err(CommandError::NotAnObject);
        };
        let (connection, tx) = self.shared.sender().ok_or(CommandError::NotConnected)?;
        tx.try_send(Outgoing::Command {
            payload,
            route: Route::Stream(tag),
        })
        .map_err(|_| CommandError::NotConnected)?;
        Ok(connection)
    }
}

/// Starts the client. It runs until `cancel` fires or the token is refused; its messages arrive on
/// the returned receiver, which closes when the client stops.
pub(crate) fn spawn(
    options: ClientOptions,
    cancel: CancellationToken,
) -> (HaHandle, mpsc::Receiver<HaMessage>, JoinHandle<()>) {
    let (events_tx, events_rx) = mpsc::channel(options.event_queue);
    let shared = Arc::new(Shared {
        endpoint: options.endpoint.clone(),
        queue_capacity: options.event_queue,
        state: Mutex::new(ConnectionState::Starting),
        ha_version: Mutex::new(None),
        last_error: Mutex::new(None),
        outgoing: Mutex::new(None),
        events: Mutex::new(Some(events_tx.downgrade())),
        counters: Counters::default(),
    });
    let handle = HaHandle {
        shared: shared.clone(),
    };
    let task = tokio::spawn(run(shared, options, events_tx, cancel));
    (handle, events_rx, task)
}

/// How a session ended.
enum SessionEnd {
    /// The token was refused.
    AuthInvalid(String),
    /// Shut down on request.
    Cancelled,
    /// Lost or failed; `established` if it got as far as subscribing.
    Lost { reason: String, established: bool },
}

async fn run(
    shared: Arc<Shared>,
    options: ClientOptions,
    events: mpsc::Sender<HaMessage>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(options.reconnect_min_secs, options.reconnect_max_secs);
    let mut connection = 0u64;
    loop {
        connection += 1;
        shared
            .counters
            .connection
            .store(connection, Ordering::Relaxed);
        shared.set_state(ConnectionState::Connecting {
            attempt: backoff.failures() + 1,
        });
        let end = session(&shared, &options, &events, &cancel, connection).await;
        *lock(&shared.outgoing) = None;
        shared.counters.subscriptions.store(0, Ordering::Relaxed);
        match end {
            SessionEnd::Cancelled => break,
            SessionEnd::AuthInvalid(message) => {
                let message = format!(
                    "Home Assistant refused the access token ({message}); set a valid ha.token \
                     (a long-lived access token from your Home Assistant profile) and restart"
                );
                tracing::error!(%message, "authentication failed; not retrying");
                shared.set_error(message.clone());
                shared.set_state(ConnectionState::AuthFailed {
                    message: message.clone(),
                });
                return;
            }
            SessionEnd::Lost {
                reason,
                established,
            } => {
                if established {
                    backoff.reset();
                }
                tracing::warn!(connection, %reason, "connection to Home Assistant lost");
                shared.set_error(reason);
            }
        }
        let delay = backoff.next_delay();
        let retry_at = Utc::now()
            + chrono::Duration::from_std(delay).unwrap_or_else(|_| chrono::Duration::seconds(300));
        shared.set_state(ConnectionState::Waiting {
            retry_at,
            attempt: backoff.failures(),
        });
        tracing::info!(
            delay_ms = delay.as_millis() as u64,
            "reconnecting to Home Assistant after a delay"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => break,
        }
    }
    shared.set_state(ConnectionState::Stopped);
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn session(
    shared: &Arc<Shared>,
    options: &ClientOptions,
    events: &mpsc::Sender<HaMessage>,
    cancel: &CancellationToken,
    connection: u64,
) -> SessionEnd {
    let lost = |reason: String| SessionEnd::Lost {
        reason,
        established: false,
    };
    let url = options.endpoint.websocket_url.as_str();
    let connect = tokio::select! {
        r = tokio::time::timeout(AUTH_TIMEOUT, tokio_tungstenite::connect_async_with_config(url, Some(websocket_config()), true)) => r,
        () = cancel.cancelled() => return SessionEnd::Cancelled,
    };
    let mut ws: WsStream = match connect {
        Ok(Ok((ws, _response))) => ws,
        Ok(Err(e)) => {
            return lost(
                crate::config::redact_urls(&format!("cannot connect to {url}: {e}")).into_owned(),
            );
        }
        Err(_) => {
            return lost(format!(
                "no WebSocket connection to {} within {AUTH_TIMEOUT:?}",
                crate::config::redact_urls(url)
            ));
        }
    };
    let auth = tokio::select! {
        r = tokio::time::timeout(AUTH_TIMEOUT, authenticate(&mut ws, &options.endpoint)) => r,
        () = cancel.cancelled() => return SessionEnd::Cancelled,
    };
    let ha_version = match auth {
        Ok(Ok(AuthResult::Ok(version))) => version,
        Ok(Ok(AuthResult::Invalid(message))) => return SessionEnd::AuthInvalid(message),
        Ok(Err(reason)) => return lost(reason),
        Err(_) => {
            return lost(format!(
                "authentication did not finish within {AUTH_TIMEOUT:?}"
            ));
        }
    };
    shared
        .counters
        .totals
        .connects
        .fetch_add(1, Ordering::Relaxed);
    *lock(&shared.ha_version) = Some(ha_version.clone());
    shared.set_state(ConnectionState::Subscribing);
    tracing::info!(connection, %ha_version, "authenticated with Home Assistant");
    if events
        .send(HaMessage::Connected { connection })
        .await
        .is_err()
    {
        return SessionEnd::Cancelled;
    }

    let (sink, stream) = ws.split();
    let pending: Pending = Arc::default();
    let (out_tx, out_rx) = mpsc::channel(OUTGOING_QUEUE);
    let mut writer = tokio::spawn(writer_loop(sink, out_rx, pending.clone()));
    let mut reader = tokio::spawn(reader_loop(
        stream,
        pending.clone(),
        events.clone(),
        shared.clone(),
    ));
    *lock(&shared.outgoing) = Some((connection, out_tx.clone()));

    let mut established = false;
    let end = tokio::select! {
        reason = setup_and_ping(shared, options, &out_tx, connection, &mut established) => {
            SessionEnd::Lost { reason, established }
        }
        r = &mut reader => SessionEnd::Lost {
            reason: r.unwrap_or_else(|e| format!("reader task failed: {e}")),
            established,
        },
        r = &mut writer => SessionEnd::Lost {
            reason: r.map_or_else(|e| format!("writer task failed: {e}"), |()| "writer stopped".into()),
            established,
        },
        () = cancel.cancelled() => {
            *lock(&shared.outgoing) = None;
            let _ = out_tx.send(Outgoing::Close).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
            SessionEnd::Cancelled
        }
    };
    *lock(&shared.outgoing) = None;
    reader.abort();
    writer.abort();
    // dropping the routes fails every waiting request with ConnectionLost
    lock(&pending).clear();
    end
}

/// Home Assistant sends every reply as one unfragmented frame; `get_states`, the registry lists
/// and history replies of a large home exceed tungstenite's 16 MiB default.
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Bytes read from the socket at most per `read`. tungstenite zeroes that much of its buffer
/// before every read, including the one that finds nothing more: with its 128 KiB default,
/// 256 KiB were cleared for each burst of events, which pushed the rest of HomeIQ out of the CPU
/// caches. Larger frames still arrive whole, in more reads.
const READ_CHUNK_BYTES: usize = 16 << 10;

fn websocket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(READ_CHUNK_BYTES)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

enum AuthResult {
    Ok(String),
    Invalid(String),
}

async fn authenticate(ws: &mut WsStream, endpoint: &HaEndpoint) -> Result<AuthResult, String> {
    let mut sent = false;
    while let Some(frame) = ws.next().await {
        let frame = frame.map_err(|e| format!("WebSocket error during authentication: {e}"))?;
        let Message::Text(text) = frame else {
            if let Message::Close(close) = frame {
                return Err(format!("closed during authentication: {close:?}"));
            }
            continue;
        };
        for message in decode_frame(text.as_str()).map_err(|e| e.to_string())? {
            match message {
                Incoming::AuthRequired if !sent => {
                    let auth = json!({"type": "auth", "access_token": endpoint.token.expose()});
                    ws.send(Message::Text(auth.to_string().into()))
                        .await
                        .map_err(|e| format!("cannot send auth: {e}"))?;
                    sent = true;
                }
                Incoming::AuthOk { ha_version } => return Ok(AuthResult::Ok(ha_version)),
                Incoming::AuthInvalid { message } => return Ok(AuthResult::Invalid(message)),
                _ => {}
            }
        }
    }
    Err("connection closed during authentication".into())
}

/// Subscriptions made on every connection: state changes, the five registries, and the runs of
/// automations and scripts (which say who caused the changes that follow).
fn subscription_event_types() -> Vec<&'static str> {
    std::iter::once("state_changed")
        .chain(RegistryKind::ALL.iter().map(|k| k.event_type()))
        .chain(RunKind::ALL.iter().map(|k| k.event_type()))
        .collect()
}

/// Runs the start-up sequence, then pings until a pong is missed. Returns why it stopped.
async fn setup_and_ping(
    shared: &Arc<Shared>,
    options: &ClientOptions,
    out: &mpsc::Sender<Outgoing>,
    connection: u64,
    established: &mut bool,
) -> String {
    let features = json!({"type": "supported_features", "features": {"coalesce_messages": 1}});
    if let Err(e) = call(out, features, SETUP_TIMEOUT).await {
        return format!("supported_features failed: {e}");
    }
    let types = subscription_event_types();
    let mut replies = Vec::with_capacity(types.len());
    for event_type in &types {
        let cmd = json!({"type": "subscribe_events", "event_type": event_type});
        replies.push(send(out, cmd).await);
        shared
            .counters
            .totals
            .subscriptions_sent
            .fetch_add(1, Ordering::Relaxed);
    }
    for (event_type, reply) in types.iter().zip(replies) {
        if let Err(e) = wait(reply, SETUP_TIMEOUT).await {
            return format!("subscribing to {event_type} failed: {e}");
        }
    }
    shared
        .counters
        .subscriptions
        .store(types.len(), Ordering::Relaxed);
    *established = true;
    shared.set_state(ConnectionState::Connected { since: Utc::now() });
    tracing::info!(
        connection,
        subscriptions = types.len(),
        "subscribed; taking snapshots"
    );

    // snapshots after the subscriptions, replies in-stream; registries first, so the states
    // snapshot is mapped with every entity's device and area known
    let snapshot = RegistryKind::ALL
        .iter()
        .map(|k| {
            (
                json!({"type": k.list_command()}),
                ReplyTag::RegistryList(*k),
            )
        })
        .chain([
            (json!({"type": "config/auth/list"}), ReplyTag::Users),
            (json!({"type": "get_states"}), ReplyTag::States),
        ]);
    for (cmd, tag) in snapshot {
        let Value::Object(payload) = cmd else {
            continue;
        };
        let route = Route::Stream(tag);
        if out
            .send(Outgoing::Command { payload, route })
            .await
            .is_err()
        {
            return "writer stopped".into();
        }
    }

    loop {
        tokio::time::sleep(options.ping_interval).await;
        match call(out, json!({"type": "ping"}), options.pong_timeout).await {
            Ok(_) => {}
            Err(CommandError::Timeout(t)) => return format!("no pong within {t:?}"),
            Err(e) => return format!("ping failed: {e}"),
        }
    }
}

async fn send(
    out: &mpsc::Sender<Outgoing>,
    command: Value,
) -> Option<oneshot::Receiver<Result<Box<RawValue>, CommandError>>> {
    let Value::Object(payload) = command else {
        return None;
    };
    let (tx, rx) = oneshot::channel();
    out.send(Outgoing::Command {
        payload,
        route: Route::Oneshot(tx),
    })
    .await
    .ok()?;
    Some(rx)
}

async fn wait(
    reply: Option<oneshot::Receiver<Result<Box<RawValue>, CommandError>>>,
    timeout: Duration,
) -> Result<Box<RawValue>, CommandError> {
    let rx = reply.ok_or(CommandError::NotConnected)?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(CommandError::ConnectionLost),
        Err(_) => Err(CommandError::Timeout(timeout)),
    }
}

async fn call(
    out: &mpsc::Sender<Outgoing>,
    command: Value,
    timeout: Duration,
) -> Result<Box<RawValue>, CommandError> {
    wait(send(out, command).await, timeout).await
}

async fn writer_loop(
    mut sink: futures_util::stream::SplitSink<WsStream, Message>,
    mut outgoing: mpsc::Receiver<Outgoing>,
    pending: Pending,
) {
    let mut next_id: u64 = 1;
    while let Some(item) = outgoing.recv().await {
        match item {
            Outgoing::Command { mut payload, route } => {
                let id = next_id;
                next_id += 1;
                payload.insert("id".into(), Value::from(id));
                let text = Value::Object(payload).to_string();
                lock(&pending).insert(id, route);
                if let Err(e) = sink.send(Message::Text(text.into())).await {
                    tracing::debug!(error = %e, "WebSocket send failed");
                    return;
                }
            }
            Outgoing::Close => {
                let _ = sink.send(Message::Close(None)).await;
                let _ = sink.close().await;
                return;
            }
        }
    }
}

async fn reader_loop(
    mut stream: futures_util::stream::SplitStream<WsStream>,
    pending: Pending,
    events: mpsc::Sender<HaMessage>,
    shared: Arc<Shared>,
) -> String {
    let counters = &shared.counters;
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(close)) => {
                return format!("Home Assistant closed the connection: {close:?}");
            }
            Ok(_) => continue,
            Err(e) => return format!("WebSocket error: {e}"),
        };
        let messages = match decode_frame(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                counters
                    .totals
                    .decode_errors
                    .fetch_add(1, Ordering::Relaxed);
                let head: String = text.as_str().chars().take(200).collect();
                tracing::warn!(error = %e, frame = %head, "skipping an undecodable frame");
                continue;
            }
        };
        let mut state_changes = 0;
        for message in messages {
            let out = match message {
                Incoming::Result { id, outcome } => {
                    let route = lock(&pending).remove(&id);
                    match route {
                        Some(Route::Oneshot(tx)) => {
                            let _ = tx.send(outcome.map_err(CommandError::from));
                            None
                        }
                        Some(Route::Stream(tag)) => Some(HaMessage::Reply {
                            tag,
                            result: outcome.map_err(CommandError::from),
                        }),
                        None => None,
                    }
                }
                Incoming::Pong { id } => {
                    if let Some(Route::Oneshot(tx)) = lock(&pending).remove(&id) {
                        let _ = tx.send(Ok(Box::<RawValue>::default()));
                    }
                    None
                }
                Incoming::StateChanged(ev) => {
                    state_changes += 1;
                    Some(HaMessage::StateChanged(ev))
                }
                Incoming::Registry(ev) => {
                    counters
                        .totals
                        .registry_events_received
                        .fetch_add(1, Ordering::Relaxed);
                    Some(HaMessage::Registry(ev))
                }
                Incoming::RunStarted(run) => Some(HaMessage::RunStarted(run)),
                Incoming::AuthRequired | Incoming::AuthOk { .. } | Incoming::AuthInvalid { .. } => {
                    None
                }
                Incoming::OtherEvent { event_type } => {
                    tracing::trace!(%event_type, "event of a type not used");
                    None
                }
                Incoming::Unknown { kind } => {
                    tracing::debug!(%kind, "message of an unknown type ignored");
                    None
                }
            };
            if let Some(message) = out {
                match events.try_send(message) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(message)) => {
                        counters
                            .totals
                            .queue_full_waits
                            .fetch_add(1, Ordering::Relaxed);
                        if events.send(message).await.is_err() {
                            return "consumer stopped".into();
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return "consumer stopped".into(),
                }
            }
        }
        if state_changes > 0 {
            counters
                .totals
                .events_received
                .fetch_add(state_changes, Ordering::Relaxed);
            counters
                .last_event_ms
                .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
        }
    }
    "connection closed".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribes_to_state_changes_every_registry_and_runs() {
        let types = subscription_event_types();
        assert_eq!(types.len(), 8);
        assert_eq!(types[0], "state_changed");
        for kind in RegistryKind::ALL {
            assert!(types.contains(&kind.event_type()));
        }
        assert!(types.contains(&"automation_triggered"));
        assert!(types.contains(&"script_started"));
    }
}
