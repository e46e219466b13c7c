//! `GET /api/v1/stream`: state changes pushed as Server-Sent Events.
//!
//! SSE rather than a WebSocket: it is one plain HTTP response (Home Assistant's ingress proxy
//! streams it like any other), browsers reconnect by themselves, and the panel only listens.
//!
//! Each client reads the [`LiveBus`](crate::ingest::LiveBus) through its own receiver. The
//! response is produced only as fast as the client takes it; a client that falls more than the
//! bus's capacity behind gets an `event: lagged` saying how many events it missed, and the stream
//! ends (the browser's `EventSource` reconnects and starts afresh). Ingestion never waits for a
//! client. A comment line every 15 s keeps idle proxies from closing the connection. Every stream
//! ends when HomeIQ stops, so stopping the server does not wait for open streams.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};
use bytes::Bytes;
use futures_util::stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::Params;
use crate::ingest::LiveBus;
use crate::ingest::LiveEvent;
use crate::registry::CatalogHandle;

/// Interval of keep-alive comments.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Filters of `GET /api/v1/stream`; each is a comma-separated list, and an event passes when it
/// matches every filter given.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamParams {
    /// Entity ids.
    entity_id: Option<String>,
    /// Domains.
    domain: Option<String>,
    /// Area ids (the entity's own, else its device's).
    area: Option<String>,
}

fn set_of(text: Option<&str>) -> Option<HashSet<String>> {
    let set: HashSet<String> = text?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (!set.is_empty()).then_some(set)
}

struct Filter {
    entities: Option<HashSet<String>>,
    domains: Option<HashSet<String>>,
    areas: Option<HashSet<String>>,
}

impl Filter {
    fn passes(&self, ev: &LiveEvent, catalog: &CatalogHandle) -> bool {
        let domain = crate::ha::model::domain_of(&ev.entity_id);
        self.entities
            .as_ref()
            .is_none_or(|s| s.contains(&ev.entity_id))
            && self.domains.as_ref().is_none_or(|s| s.contains(domain))
            && self.areas.as_ref().is_none_or(|s| {
                catalog
                    .current()
                    .area_of(&ev.entity_id)
                    .is_some_and(|a| s.contains(a))
            })
    }
}

/// What the live stream reads: the bus of state changes and the catalog (for names and areas).
#[derive(Clone)]
pub(crate) struct LiveApi {
    /// Live state changes.
    pub live: LiveBus,
    /// The registry catalog.
    pub catalog: CatalogHandle,
    /// Cancelled when the application stops: every stream ends.
    pub stop: CancellationToken,
}

/// One Server-Sent Event as a client parses it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SseEvent {
    /// `hello`, `state_changed` or `lagged`.
    pub event: String,
    /// JSON text.
    pub data: String,
    /// Sequence number of `state_changed` events.
    pub id: Option<String>,
}

/// The data of an `event: state_changed`.
#[derive(Debug, Serialize)]
struct Outgoing<'a> {
    #[serde(flatten)]
    event: &'a LiveEvent,
    area_id: Option<String>,
}

fn sse(event: &str, id: Option<u64>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    out.push_str("event: ");
    out.push_str(event);
    out.push('\n');
    for line in data.lines() {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// Live state changes as Server-Sent Events: `event: hello` first, then one `event:
/// state_changed` per change (data: `entity_id`, `old_state`, `new_state`, `time_fired`,
/// `area_id`); `event: lagged` (data: `missed`) when the client fell too far behind, after which
/// the stream ends.
#[utoipa::path(
    tag = "live",
    params(StreamParams),
    responses(
        (status = 200, content_type = "text/event-stream", body = SseEvent, description = "An endless event stream"),
        (status = 400, body = ErrorBody),
    )
)]
#[get("/stream")]
pub(crate) async fn stream_events(
    state: web::Data<LiveApi>,
    Params(p): Params<StreamParams>,
) -> Result<HttpResponse, ApiError> {
    let filter = Filter {
        entities: set_of(p.entity_id.as_deref()),
        domains: set_of(p.domain.as_deref()),
        areas: set_of(p.area.as_deref()),
    };
    let receiver = state.live.subscribe();
    let catalog = state.catalog.clone();
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.reset();
    let hello = sse(
        "hello",
        None,
        &serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "listeners": state.live.listeners()})
            .to_string(),
    );
    let first = stream::once(async move { Ok::<Bytes, actix_web::Error>(hello) });
    let stop = state.stop.clone();
    let events = stream::unfold(
        (receiver, keep_alive, 0u64, false, Arc::new(filter), catalog),
        move |(mut rx, mut keep_alive, mut seq, done, filter, catalog)| {
            let stop = stop.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return None,
                        received = rx.recv() => match received {
                            Ok(ev) => {
                                if !filter.passes(&ev, &catalog) {
                                    continue;
                                }
                                seq += 1;
                                let area_id = catalog.current().area_of(&ev.entity_id).map(str::to_owned);
                                let data = serde_json::to_string(&Outgoing { event: &ev, area_id })
                                    .unwrap_or_default();
                                let chunk = sse("state_changed", Some(seq), &data);
                                return Some((Ok(chunk), (rx, keep_alive, seq, false, filter, catalog)));
                            }
                            Err(RecvError::Lagged(missed)) => {
                                tracing::info!(missed, "live stream client too slow; dropping it");
                                let data = serde_json::json!({
                                    "missed": missed,
                                    "message": "this client fell too far behind and is disconnected; reconnect to continue",
                                });
                                let chunk = sse("lagged", None, &data.to_string());
                                return Some((Ok(chunk), (rx, keep_alive, seq, true, filter, catalog)));
                            }
                            Err(RecvError::Closed) => return None,
                        },
                        _ = keep_alive.tick() => {
                            let chunk = Bytes::from_static(b": keep-alive\n\n");
                            return Some((Ok(chunk), (rx, keep_alive, seq, false, filter, catalog)));
                        }
                    }
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        // keeps the compression middleware from buffering events
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .streaming(futures_util::StreamExt::chain(first, events)))
}
