//! Request middleware: request ids and tracing spans, per-route durations, access rules and the
//! per-client rate limit.
//!
//! Written with actix-web's `from_fn` rather than taken from a crate: `tracing-actix-web` generates
//! request ids but does not accept the caller's `X-Request-ID`, and `actix-governor` answers 429 in
//! its own format; each piece here is a few lines over `governor` and `prometheus-client`.
//!
//! Order (outermost first): [`request_context`] (every answer, including refusals below, carries
//! `X-Request-ID` and is timed), [`access`] (ingress gateway or bearer token), [`rate_limit`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, web};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tracing::Instrument;

use super::error::ApiError;

/// The request id header, accepted from the caller or generated.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Paths open to everyone: the Supervisor's watchdog and liveness probes.
const OPEN_PATHS: &[&str] = &["/health"];

/// Labels of the HTTP duration histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: String,
    /// The route pattern (`/api/v1/devices/{id}`), or `unmatched`.
    pub route: String,
    /// Status class: `2xx`, `4xx`…
    pub status: String,
}

/// Request durations by route.
pub type HttpDurations = Family<RouteLabels, Histogram>;

/// A new duration family with buckets from 100 µs to 10 s.
pub fn http_durations() -> HttpDurations {
    Family::new_with_constructor(|| {
        Histogram::new([
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 10.0,
        ])
    })
}

/// What the access and rate-limit middleware need.
pub struct Guard {
    /// Requests from this address are trusted (the ingress gateway).
    pub gateway: Option<IpAddr>,
    /// Bearer token other clients must present.
    pub token: Option<String>,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    seen: AtomicU64,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("gateway", &self.gateway)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("rate_limited", &self.limiter.is_some())
            .finish()
    }
}

impl Guard {
    /// Access rules and a limiter of `per_second` requests (bursts of `burst`) per client;
    /// `per_second = 0` turns limiting off.
    pub fn new(
        gateway: Option<IpAddr>,
        token: Option<String>,
        per_second: u32,
        burst: u32,
    ) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Guard {
            gateway,
            token: token.filter(|t| !t.is_empty()),
            limiter,
            seen: AtomicU64::new(0),
        }
    }
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn is_valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> String {
    let bytes: [u8; 12] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Request id, tracing span, duration metric and one log line per request.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_valid_request_id(v))
        .map_or_else(new_request_id, str::to_owned);
    let method = req.method().to_string();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let durations = req.app_data::<web::Data<HttpDurations>>().cloned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let started = Instant::now();
    // handler errors arrive here already rendered as responses
    let mut response = next
        .call(req)
        .instrument(span.clone())
        .await?
        .map_into_boxed_body();
    let elapsed = started.elapsed();
    let status = response.status();
    if let Some(d) = durations {
        d.get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
            status: format!("{}xx", status.as_u16() / 100),
        })
        .observe(elapsed.as_secs_f64());
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    span.in_scope(|| {
        let ms = elapsed.as_secs_f64() * 1e3;
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), ms, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), ms, "request served");
        }
    });
    Ok(response)
}

/// Access: the ingress gateway is trusted; everyone else needs the bearer token when one is set,
/// and is refused when HomeIQ runs as an add-on without one.
pub async fn access(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(guard) = req.app_data::<web::Data<Guard>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    if OPEN_PATHS.contains(&req.path()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let peer = req.peer_addr().map(|a| a.ip());
    let from_gateway = guard.gateway.is_some() && peer == guard.gateway;
    let refusal = if from_gateway {
        None
    } else if let Some(token) = &guard.token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            Some(p) if same_secret(p.as_bytes(), token.as_bytes()) => None,
            Some(_) => Some(ApiError::unauthorized("the bearer token is wrong")),
            None => Some(ApiError::unauthorized(
                "this API needs `Authorization: Bearer <http.api_token>`",
            )),
        }
    } else if guard.gateway.is_some() {
        Some(ApiError::forbidden(
            "only Home Assistant's ingress gateway may use this port; set http.api_token to let other clients in",
        ))
    } else {
        None
    };
    match refusal {
        Some(e) => {
            tracing::debug!(peer = ?peer, path = req.path(), "request refused: {e}");
            let response = actix_web::ResponseError::error_response(&e);
            Ok(req.into_response(response))
        }
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body),
    }
}

/// The per-client rate limit: 429 with `Retry-After` when a client exceeds its quota. Clients are
/// told apart by address, and behind the ingress gateway by Home Assistant user.
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let guard = req.app_data::<web::Data<Guard>>().cloned();
    let Some((guard, limiter)) = guard
        .as_ref()
        .and_then(|g| g.limiter.as_ref().map(|l| (g, l)))
    else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    if OPEN_PATHS.contains(&req.path()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let peer = req.peer_addr().map(|a| a.ip());
    let user = req
        .headers()
        .get("x-remote-user-id")
        .and_then(|v| v.to_str().ok());
    let key = match (guard.gateway.is_some() && peer == guard.gateway, user) {
        (true, Some(user)) => format!("user:{user}"),
        _ => peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
    };
    if guard.seen.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
        limiter.retain_recent();
    }
    match limiter.check_key(&key) {
        Ok(()) => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body),
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let e = ApiError::rate_limited(secs.max(1));
            let response = actix_web::ResponseError::error_response(&e);
            Ok(req.into_response(response))
        }
    }
}

/// Shared guard for the app data.
pub fn data(guard: Guard) -> web::Data<Guard> {
    web::Data::from(Arc::new(guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    #[test]
    fn request_ids_are_checked_and_generated() {
        assert!(is_valid_request_id("abc-123"));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id("has space"));
        assert!(!is_valid_request_id(&"x".repeat(129)));
        let id = new_request_id();
        assert_eq!(id.len(), 24);
        assert_ne!(id, new_request_id());
    }
}
