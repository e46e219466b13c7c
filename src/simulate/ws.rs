//! The WebSocket API at `/api/websocket`: authentication, command dispatch, subscriptions and
//! coalesced frames.
//!
//! One task per connection reads the client's frames and the event bus in turn and writes every
//! frame itself, so replies and events leave in one order. Before a reply that reflects the home
//! (a snapshot, a list, a service call) every event published before it is delivered first.
//! A client that falls more than `max_pending` events behind is disconnected, as Home Assistant
//! does with 4096 pending messages.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, Session};
use chrono::DateTime;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::history::Query;
use super::hub::{Batch, Hub, HubError, Origin};
use super::render::{event_message, push_str_lit, result_err, result_ok};
use crate::ha::model::RegistryKind;

/// Time a client has to authenticate.
pub(crate) const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame written when coalescing (more messages go into further frames).
pub(crate) const FRAME_BYTES: usize = 256 * 1024;
/// Largest frame accepted from a client.
const MAX_INCOMING: usize = 16 << 20;

/// Frames waiting to be written.
struct Out {
    coalesce: bool,
    frames: Vec<String>,
    cur: String,
    count: usize,
}

impl Out {
    fn new() -> Self {
        Out {
            coalesce: false,
            frames: Vec::new(),
            cur: String::new(),
            count: 0,
        }
    }

    /// Adds a message written by `write` (into an empty string).
    fn push_with(&mut self, write: impl FnOnce(&mut String)) {
        if !self.coalesce {
            let mut s = String::new();
            write(&mut s);
            self.frames.push(s);
            return;
        }
        self.cur.push(if self.count == 0 { '[' } else { ',' });
        write(&mut self.cur);
        self.count += 1;
        if self.cur.len() >= FRAME_BYTES {
            self.finish();
        }
    }

    fn push(&mut self, message: String) {
        if self.coalesce {
            self.push_with(|s| s.push_str(&message));
        } else {
            self.frames.push(message);
        }
    }

    fn finish(&mut self) {
        match self.count {
            0 => {}
            // a single message goes as an object, as Home Assistant sends it
            1 => self.frames.push(self.cur[1..].to_owned()),
            _ => {
                self.cur.push(']');
                self.frames.push(std::mem::take(&mut self.cur));
            }
        }
        self.cur.clear();
        self.count = 0;
    }

    fn take(&mut self) -> Vec<String> {
        self.finish();
        std::mem::take(&mut self.frames)
    }
}

struct Sub {
    id: u64,
    event_type: Option<String>,
    from_seq: u64,
}

/// Why a connection ends.
enum End {
    Closed,
    TooSlow(u64),
}

struct Conn {
    hub: Arc<Hub>,
    rx: broadcast::Receiver<Arc<Batch>>,
    consumed: u64,
    subs: Vec<Sub>,
    last_id: u64,
    out: Out,
}

impl Conn {
    fn deliver(&mut self, batch: &Batch) {
        for (i, ev) in batch.events.iter().enumerate() {
            let seq = batch.first_seq + i as u64;
            for sub in &self.subs {
                if seq < sub.from_seq {
                    continue;
                }
                if sub
                    .event_type
                    .as_deref()
                    .is_some_and(|t| t != ev.event_type)
                {
                    continue;
                }
                self.out.push_with(|s| event_message(s, sub.id, &ev.body));
            }
        }
        self.consumed = batch.first_seq + batch.events.len() as u64;
    }

    /// Delivers every event published before `seq`.
    async fn drain_to(&mut self, seq: u64) -> Result<(), End> {
        while self.consumed < seq {
            match self.rx.recv().await {
                Ok(batch) => self.deliver(&batch),
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(End::TooSlow(n)),
                Err(broadcast::error::RecvError::Closed) => return Err(End::Closed),
            }
        }
        Ok(())
    }

    async fn reply(&mut self, seq: u64, message: String) -> Result<(), End> {
        self.drain_to(seq).await?;
        self.out.push(message);
        Ok(())
    }

    /// Handles one command frame.
    async fn command(&mut self, text: &str) -> Result<(), End> {
        let msg: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                self.out.push(result_err(
                    None,
                    "invalid_format",
                    "Message incorrectly formatted.",
                ));
                return Ok(());
            }
        };
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            self.out.push(result_err(
                None,
                "invalid_format",
                "Message incorrectly formatted: expected int for dictionary value @ data['id']",
            ));
            return Ok(());
        };
        if id <= self.last_id {
            self.out.push(result_err(
                Some(id),
                "id_reuse",
                "Identifier values have to increase.",
            ));
            return Ok(());
        }
        self.last_id = id;
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or_default();
        let hub = self.hub.clone();
        match kind {
            "ping" => self.out.push(format!("{{\"id\":{id},\"type\":\"pong\"}}")),
            "supported_features" => {
                let on = msg
                    .pointer("/features/coalesce_messages")
                    .is_some_and(|v| v.as_u64() == Some(1) || v.as_bool() == Some(true));
                self.out.push(result_ok(id, "null"));
                // the reply itself still goes out as before
                self.out.finish();
                self.out.coalesce = on;
            }
            "subscribe_events" => {
                let event_type = msg
                    .get("event_type")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let ((), seq) = hub.with(|_| ());
                self.drain_to(seq).await?;
                self.subs.push(Sub {
                    id,
                    event_type,
                    from_seq: seq,
                });
                self.out.push(result_ok(id, "null"));
            }
            "unsubscribe_events" => {
                let sub = msg.get("subscription").and_then(Value::as_u64);
                let before = self.subs.len();
                self.subs.retain(|s| Some(s.id) != sub);
                self.out.push(if self.subs.len() < before {
                    result_ok(id, "null")
                } else {
                    result_err(Some(id), "not_found", "Subscription not found.")
                });
            }
            "get_states" => {
                let (json, seq) = hub.with(|i| i.states_json());
                self.reply(seq, result_ok(id, &json)).await?;
            }
            "config/auth/list" => {
                // every user, as Home Assistant 2025.4 lists them (admin only there too)
                let (users, seq) = hub.with(|i| i.plan.truth.users.clone());
                let json = serde_json::to_string(&users).unwrap_or_else(|_| "[]".into());
                self.reply(seq, result_ok(id, &json)).await?;
            }
            "get_config" => {
                let (json, seq) = hub.with(|i| config_json(i));
                self.reply(seq, result_ok(id, &json)).await?;
            }
            "config/entity_registry/get" => {
                let entity_id = msg.get("entity_id").and_then(Value::as_str).unwrap_or("");
                let (row, seq) = hub.with(|i| {
                    let row = i
                        .home
                        .entities
                        .iter()
                        .find(|e| e["entity_id"] == entity_id)
                        .cloned();
                    row.map(|r| {
                        let mut r = super::render::entity_row(&i.home, &r, i.ha_version);
                        let attrs = i.state(entity_id).map(|s| &s.attributes);
                        let dc = attrs.and_then(|a| a.get("device_class")).cloned();
                        r["aliases"] = json!([]);
                        r["capabilities"] = Value::Null;
                        r["device_class"] = Value::Null;
                        r["original_device_class"] = dc.unwrap_or(Value::Null);
                        r["original_icon"] = Value::Null;
                        r
                    })
                });
                let message = match row {
                    Some(r) => result_ok(id, &r.to_string()),
                    None => result_err(Some(id), "not_found", "Entity not found"),
                };
                self.reply(seq, message).await?;
            }
            "validate_config" => {
                let (json, seq) = hub.with(|i| {
                    let known = |id: &str| i.home.devices.iter().any(|d| d["id"] == id);
                    super::validate::validate_config(&msg, &known).to_string()
                });
                self.reply(seq, result_ok(id, &json)).await?;
            }
            "automation/config" => {
                // any automation's configuration by its entity, as Home Assistant answers it
                let entity_id = msg.get("entity_id").and_then(Value::as_str).unwrap_or("");
                let (config, seq) = hub.with(|i| {
                    i.automations
                        .values()
                        .find(|a| a.entity_id == entity_id)
                        .map(|a| a.config.clone())
                });
                let message = match config {
                    Some(c) => result_ok(id, &json!({ "config": c }).to_string()),
                    None => result_err(Some(id), "not_found", "Entity not found"),
                };
                self.reply(seq, message).await?;
            }
            "history/history_during_period" => {
                let message = match history_query(&msg) {
                    Ok((ids, mut q)) => {
                        let (json, seq) = hub.with(|i| {
                            let now = i.clock().now();
                            if q.start > now {
                                return "{}".to_owned();
                            }
                            if q.end == i64::MAX {
                                q.end = now + 1;
                            }
                            i.history.during_period(&ids, &q)
                        });
                        self.drain_to(seq).await?;
                        result_ok(id, &json)
                    }
                    Err((code, message)) => result_err(Some(id), code, &message),
                };
                self.out.push(message);
            }
            "call_service" => {
                let domain = msg.get("domain").and_then(Value::as_str).unwrap_or("");
                let service = msg.get("service").and_then(Value::as_str).unwrap_or("");
                let data = msg
                    .get("service_data")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                let (r, seq) = hub.with(|i| {
                    let origin = Origin::user();
                    let r = i.call_service(domain, service, &data, msg.get("target"), &origin);
                    let now = i.now();
                    let ctx = i.context_id(now);
                    r.map(|_| ctx)
                });
                let message = match r {
                    Ok(ctx) => {
                        let mut s = String::from("{\"context\":{\"id\":");
                        push_str_lit(&mut s, &ctx);
                        let _ = write!(
                            s,
                            ",\"parent_id\":null,\"user_id\":\"{}\"}},\"response\":null}}",
                            super::hub::OWNER_USER_ID
                        );
                        result_ok(id, &s)
                    }
                    Err(e) => result_err(Some(id), e.code(), &e.to_string()),
                };
                self.reply(seq, message).await?;
            }
            other => {
                if let Some(kind) = RegistryKind::ALL.iter().find(|k| k.list_command() == other) {
                    let (json, seq) =
                        hub.with(|i| super::render::registry_list(&i.home, *kind, i.ha_version));
                    self.reply(seq, result_ok(id, &json)).await?;
                    return Ok(());
                }
                type Op = fn(&mut super::hub::Inner, &Value) -> Result<Value, HubError>;
                let op: Option<Op> = match other {
                    "config/area_registry/create" => Some(|i, m| i.area_create(m)),
                    "config/area_registry/update" => Some(|i, m| i.area_update(m)),
                    "config/area_registry/delete" => Some(|i, m| i.area_delete(m)),
                    "config/entity_registry/update" => Some(|i, m| {
                        let mut r = i.entity_update(m)?;
                        r["entity_entry"] =
                            super::render::entity_row(&i.home, &r["entity_entry"], i.ha_version);
                        Ok(r)
                    }),
                    "config/entity_registry/remove" => Some(|i, m| i.entity_remove(m)),
                    "config/device_registry/update" => Some(|i, m| {
                        let r = i.device_update(m)?;
                        Ok(super::render::device_row(&i.home, &r, i.ha_version))
                    }),
                    _ => None,
                };
                let message = match op {
                    Some(op) => {
                        let (r, seq) = hub.with(|i| op(i, &msg));
                        self.drain_to(seq).await?;
                        match r {
                            Ok(v) => result_ok(id, &v.to_string()),
                            Err(e) => result_err(Some(id), e.code(), &e.to_string()),
                        }
                    }
                    None => result_err(Some(id), "unknown_command", "Unknown command."),
                };
                self.out.push(message);
            }
        }
        Ok(())
    }
}

/// Parses the parameters of `history/history_during_period`.
fn history_query(msg: &Value) -> Result<(Vec<String>, Query), (&'static str, String)> {
    let parse = |key: &str| {
        msg.get(key)
            .and_then(Value::as_str)
            .map(|s| DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_micros()))
    };
    let start = match parse("start_time") {
        Some(Ok(t)) => t,
        Some(Err(_)) => return Err(("invalid_start_time", "Invalid start_time".into())),
        None => {
            return Err((
                "invalid_format",
                "required key not provided @ data['start_time']".into(),
            ));
        }
    };
    let end = match parse("end_time") {
        Some(Ok(t)) => t,
        Some(Err(_)) => return Err(("invalid_end_time", "Invalid end_time".into())),
        None => i64::MAX,
    };
    let ids = super::hub::entity_ids_of(msg.get("entity_ids"));
    if ids.is_empty() {
        return Err((
            "invalid_format",
            "required key not provided @ data['entity_ids']".into(),
        ));
    }
    let flag = |key: &str, default: bool| msg.get(key).and_then(Value::as_bool).unwrap_or(default);
    Ok((
        ids,
        Query {
            start,
            end,
            include_start_time_state: flag("include_start_time_state", true),
            significant_changes_only: flag("significant_changes_only", true),
            minimal_response: flag("minimal_response", false),
            no_attributes: flag("no_attributes", false),
        },
    ))
}

/// The reply of `get_config` / `GET /api/config`.
pub(crate) fn config_json(inner: &super::hub::Inner) -> String {
    let (entities, ha_version) = (inner.home.states.len(), inner.ha_version);
    json!({
        "latitude": 52.3731, "longitude": 4.8922, "elevation": 0, "radius": 100,
        "unit_system": {"length": "km", "accumulated_precipitation": "mm", "area": "m²",
            "mass": "g", "pressure": "Pa", "temperature": "°C", "volume": "L",
            "wind_speed": "m/s"},
        "location_name": "Simulated Home", "time_zone": inner.time_zone.name(),
        "components": ["api", "automation", "config", "history", "homeassistant", "light",
            "person", "recorder", "sensor", "switch", "webhook", "websocket_api"],
        "config_dir": "/config", "allowlist_external_dirs": ["/config/www", "/media"],
        "allowlist_external_urls": [], "version": ha_version.version(),
        "config_source": "storage",
        "recovery_mode": false, "safe_mode": false, "state": "RUNNING", "external_url": null,
        "internal_url": null, "currency": "EUR", "country": "NL", "language": "en",
        "debug": false, "simulated_entities": entities,
    })
    .to_string()
}

/// How often a blocked write checks how far the client has fallen behind.
const PENDING_CHECK: Duration = Duration::from_millis(100);

/// Writes the waiting frames. A write the client does not take in time (its socket is full) does
/// not block the check: once more than `max_pending` events wait, the client is dropped.
async fn flush(session: &mut Session, out: &mut Out, hub: &Hub, consumed: u64) -> Result<(), End> {
    for frame in out.take() {
        let send = session.text(frame);
        tokio::pin!(send);
        loop {
            tokio::select! {
                r = &mut send => {
                    r.map_err(|_| End::Closed)?;
                    break;
                }
                () = tokio::time::sleep(PENDING_CHECK) => {
                    let pending = hub.published().saturating_sub(consumed);
                    if pending > hub.max_pending as u64 {
                        return Err(End::TooSlow(pending));
                    }
                }
            }
        }
    }
    Ok(())
}

async fn authenticate(
    hub: &Hub,
    session: &mut Session,
    stream: &mut actix_ws::AggregatedMessageStream,
) -> bool {
    let version = hub.ha_version().version();
    let required = format!("{{\"type\":\"auth_required\",\"ha_version\":\"{version}\"}}");
    if session.text(required).await.is_err() {
        return false;
    }
    let first = tokio::time::timeout(AUTH_TIMEOUT, async {
        loop {
            match stream.recv().await {
                Some(Ok(AggregatedMessage::Text(t))) => return Some(t),
                Some(Ok(AggregatedMessage::Ping(b))) => {
                    let _ = session.pong(&b).await;
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                _ => return None,
            }
        }
    })
    .await;
    let Ok(Some(text)) = first else {
        return false;
    };
    let msg: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let token = msg.get("access_token").and_then(Value::as_str);
    if msg.get("type").and_then(Value::as_str) == Some("auth") && token == Some(hub.token.as_str())
    {
        let ok = format!("{{\"type\":\"auth_ok\",\"ha_version\":\"{version}\"}}");
        return session.text(ok).await.is_ok();
    }
    let message = if msg.get("type").and_then(Value::as_str) == Some("auth") {
        "Invalid access token or password"
    } else {
        "Auth message incorrectly formatted: expected auth message"
    };
    tracing::info!("WebSocket client refused: {message}");
    let mut s = String::from("{\"type\":\"auth_invalid\",\"message\":");
    push_str_lit(&mut s, message);
    s.push('}');
    let _ = session.text(s).await;
    false
}

async fn connection(
    hub: Arc<Hub>,
    mut session: Session,
    mut stream: actix_ws::AggregatedMessageStream,
) {
    if !authenticate(&hub, &mut session, &mut stream).await {
        let _ = session.close(None).await;
        return;
    }
    let (rx, consumed) = hub.subscribe();
    let mut conn = Conn {
        hub: hub.clone(),
        rx,
        consumed,
        subs: Vec::new(),
        last_id: 0,
        out: Out::new(),
    };
    let end = loop {
        let step = tokio::select! {
            biased;
            msg = stream.recv() => match msg {
                Some(Ok(AggregatedMessage::Text(t))) => conn.command(&t).await,
                Some(Ok(AggregatedMessage::Ping(b))) => {
                    if session.pong(&b).await.is_err() { Err(End::Closed) } else { Ok(()) }
                }
                Some(Ok(AggregatedMessage::Pong(_) | AggregatedMessage::Binary(_))) => Ok(()),
                Some(Ok(AggregatedMessage::Close(_)) | Err(_)) | None => Err(End::Closed),
            },
            batch = conn.rx.recv() => match batch {
                Ok(batch) => {
                    conn.deliver(&batch);
                    // take whatever else is already there, for fuller frames
                    let mut r = Ok(());
                    for _ in 0..64 {
                        match conn.rx.try_recv() {
                            Ok(b) => conn.deliver(&b),
                            Err(broadcast::error::TryRecvError::Lagged(n)) => { r = Err(End::TooSlow(n)); break; }
                            Err(_) => break,
                        }
                    }
                    r
                }
                Err(broadcast::error::RecvError::Lagged(n)) => Err(End::TooSlow(n)),
                Err(broadcast::error::RecvError::Closed) => Err(End::Closed),
            },
        };
        if let Err(end) = step {
            break end;
        }
        if let Err(end) = flush(&mut session, &mut conn.out, &hub, conn.consumed).await {
            break end;
        }
        let pending = hub.published().saturating_sub(conn.consumed);
        if pending > hub.max_pending as u64 {
            break End::TooSlow(pending);
        }
    };
    if let End::TooSlow(pending) = end {
        hub.dropped_clients.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            pending,
            limit = hub.max_pending,
            "client too slow to keep up with the event stream; disconnecting it (as Home \
             Assistant does)"
        );
    }
    let _ = session.close(None).await;
}

/// `GET /api/websocket`: upgrades and runs the connection.
pub(crate) async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    hub: web::Data<Arc<Hub>>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream
        .max_frame_size(MAX_INCOMING)
        .aggregate_continuations()
        .max_continuation_size(MAX_INCOMING);
    actix_web::rt::spawn(connection(hub.get_ref().clone(), session, stream));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesced_frames_are_arrays_and_single_messages_objects() {
        let mut out = Out::new();
        out.coalesce = true;
        out.push("{\"a\":1}".into());
        let frames = out.take();
        assert_eq!(frames, ["{\"a\":1}"]);
        out.push("{\"a\":1}".into());
        out.push("{\"a\":2}".into());
        let frames = out.take();
        assert_eq!(frames, ["[{\"a\":1},{\"a\":2}]"]);
        let decoded = crate::ha::protocol::decode_frame(
            "[{\"id\":1,\"type\":\"pong\"},{\"id\":2,\"type\":\"pong\"}]",
        )
        .expect("decodes");
        assert_eq!(decoded.len(), 2);
    }

    #[test]
    fn frames_are_cut_near_the_size_limit() {
        let mut out = Out::new();
        out.coalesce = true;
        let big = format!("{{\"x\":\"{}\"}}", "y".repeat(1_000));
        for _ in 0..1_000 {
            out.push(big.clone());
        }
        let frames = out.take();
        assert!(frames.len() >= 3);
        let total: usize = frames
            .iter()
            .map(|f| {
                serde_json::from_str::<Vec<Value>>(f)
                    .map(|v| v.len())
                    .unwrap_or(1)
            })
            .sum();
        assert_eq!(total, 1_000);
        assert!(frames.iter().all(|f| f.len() < FRAME_BYTES + 2_000));
    }

    #[test]
    fn history_parameters_default_like_home_assistant() {
        let (ids, q) = history_query(&json!({
            "start_time": "2025-01-01T00:00:00+00:00", "entity_ids": ["sensor.a"],
        }))
        .expect("ok");
        assert_eq!(ids, ["sensor.a"]);
        assert!(q.include_start_time_state && q.significant_changes_only);
        assert!(!q.minimal_response && !q.no_attributes);
        assert_eq!(q.end, i64::MAX);
        assert_eq!(
            history_query(&json!({"start_time": "nope", "entity_ids": ["a.b"]}))
                .err()
                .map(|e| e.0),
            Some("invalid_start_time")
        );
        assert!(history_query(&json!({"start_time": "2025-01-01T00:00:00Z"})).is_err());
    }
}
