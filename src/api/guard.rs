//! Request middleware: request ids and tracing spans, per-route durations, access rules and the
//! per-client rate limit.
//!
//! Written with actix-web's `from_fn` rather than taken from a crate: `tracing-actix-web` generates
//! request ids but does not accept the caller's `X-Request-ID`, and `actix-governor` answers 429 in
//! its own format; each piece here is a few lines over `governor` and `prometheus-client`.
//!
//! Order (outermost first): [`request_context`] (every answer, including refusals below, carries
//! `X-Request-ID` and is timed), [`rate_limit`] (every request counts, refused ones too, so
//! guessing the token is as slow as any other use), [`same_origin`] (cross-site writes and bodies
//! that are not JSON), [`access`] (ingress gateway or bearer token).
//!
//! Every label of the duration histogram comes from a closed set ([`Method`], the registered
//! route pattern or `unmatched`, [`StatusClass`]), whatever a client sends.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tracing::Instrument;
use url::Url;

use crate::http::error::ApiError;

/// The request id header, accepted from the caller or generated.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Paths open to everyone: the Supervisor's watchdog and liveness probes.
const OPEN_PATHS: &[&str] = &["/health"];

/// The method label: the methods the API serves, every other one is `other` (a client may send
/// any token as a method, up to the request line's size).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
    /// `OPTIONS`.
    Options,
    /// Anything else.
    Other,
}

impl Method {
    /// The label of a request's method.
    pub(crate) fn of(method: &actix_web::http::Method) -> Self {
        use actix_web::http::Method as M;
        match *method {
            M::GET => Method::Get,
            M::HEAD => Method::Head,
            M::POST => Method::Post,
            M::PUT => Method::Put,
            M::PATCH => Method::Patch,
            M::DELETE => Method::Delete,
            M::OPTIONS => Method::Options,
            _ => Method::Other,
        }
    }

    /// As shown in labels and logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other => "other",
        }
    }

    /// Whether requests of this method only read (`GET`, `HEAD`).
    fn is_safe(self) -> bool {
        matches!(self, Method::Get | Method::Head)
    }
}

impl EncodeLabelValue for Method {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// The status label: `1xx` … `5xx`, `other` for codes outside them.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) enum StatusClass {
    /// 100–199.
    Informational,
    /// 200–299.
    Success,
    /// 300–399.
    Redirection,
    /// 400–499.
    ClientError,
    /// 500–599.
    ServerError,
    /// 600–999 (actix accepts them).
    Other,
}

impl StatusClass {
    /// The class of a status code.
    pub(crate) fn of(status: actix_web::http::StatusCode) -> Self {
        match status.as_u16() / 100 {
            1 => StatusClass::Informational,
            2 => StatusClass::Success,
            3 => StatusClass::Redirection,
            4 => StatusClass::ClientError,
            5 => StatusClass::ServerError,
            _ => StatusClass::Other,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::Other => "other",
        }
    }
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Labels of the HTTP duration histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    /// HTTP method.
    pub method: Method,
    /// The registered route pattern that matched (`/api/v1/devices/{id}`), or `unmatched`:
    /// never the path itself.
    pub route: String,
    /// Status class.
    pub status: StatusClass,
}

/// Request durations by route.
pub(crate) type HttpDurations = Family<RouteLabels, Histogram>;

/// A new duration family with buckets from 100 µs to 10 s.
pub(crate) fn http_durations() -> HttpDurations {
    Family::new_with_constructor(|| {
        Histogram::new([
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 10.0,
        ])
    })
}

/// What the access and rate-limit middleware need.
pub(crate) struct Guard {
    /// Requests from this address are trusted (the ingress gateway).
    pub gateway: Option<IpAddr>,
    /// Bearer token other clients must present.
    pub token: Option<String>,
    limiter: Option<ClientLimiter>,
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
    pub(crate) fn new(
        gateway: Option<IpAddr>,
        token: Option<String>,
        per_second: u32,
        burst: u32,
    ) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            ClientLimiter::new(Quota::per_second(rate).allow_burst(burst))
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
pub(crate) async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_valid_request_id(v))
        .map_or_else(new_request_id, str::to_owned);
    let method = Method::of(req.method());
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let durations = req.app_data::<web::Data<HttpDurations>>().cloned();
    let span =
        tracing::info_span!("request", request_id = %id, method = method.as_str(), route = %route);
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
            method,
            route: route.clone(),
            status: StatusClass::of(status),
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

/// The origin a request was addressed to: the host it names (`X-Forwarded-Host` when it comes
/// from the trusted gateway, which forwards the browser's; else `Host`), as a URL of `scheme`.
fn addressed_origin(req: &ServiceRequest, gateway: Option<IpAddr>, scheme: &str) -> Option<Url> {
    let from_gateway = gateway.is_some() && req.peer_addr().map(|a| a.ip()) == gateway;
    let forwarded = from_gateway
        .then(|| req.headers().get("x-forwarded-host"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let host = forwarded.or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
    })?;
    // a host with a path, user or query is no host
    if host.contains(['/', '@', '?', '#', '\\']) {
        return None;
    }
    Url::parse(&format!("{scheme}://{host}")).ok()
}

/// Whether the `Origin` a browser sent is the origin the request was addressed to (host and port;
/// a port left out is the scheme's default).
fn same_origin_as(origin: &str, addressed: impl FnOnce(&str) -> Option<Url>) -> bool {
    let Ok(origin) = Url::parse(origin) else {
        return false;
    };
    if !matches!(origin.scheme(), "http" | "https") {
        return false;
    }
    let Some(addressed) = addressed(origin.scheme()) else {
        return false;
    };
    origin.host_str().is_some()
        && origin.host_str() == addressed.host_str()
        && origin.port_or_known_default() == addressed.port_or_known_default()
}

/// Whether a `Host` header names this machine: `localhost` (or a name under `.localhost`), an
/// address in 127.0.0.0/8 or `[::1]`, with any port.
fn loopback_host(host: &str) -> bool {
    let Ok(url) = Url::parse(&format!("http://{host}/")) else {
        return false;
    };
    if url.path() != "/" || url.username() != "" || url.query().is_some() {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.');
            name.eq_ignore_ascii_case("localhost")
                || name.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Whether a request carries a body (HTTP/1: a non-zero `Content-Length`, or any
/// `Transfer-Encoding`).
fn has_body(req: &ServiceRequest) -> bool {
    if req.headers().contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    req.headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) != Some(0))
}

/// Cross-site writes: a request other than `GET`/`HEAD` whose `Origin` is present and differs from
/// the origin it was addressed to is refused (403): a web page the user visits may send requests
/// to HomeIQ's address, but its browser names the page's origin. Clients that are not browsers
/// (curl, Home Assistant) send no `Origin` and are not affected. A request with a body must
/// declare it `application/json` (415): browsers send `text/plain` and form bodies cross-site
/// without asking first.
pub(crate) async fn same_origin(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if Method::of(req.method()).is_safe() {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let gateway = req.app_data::<web::Data<Guard>>().and_then(|g| g.gateway);
    let refusal = match req.headers().get(header::ORIGIN) {
        Some(origin) => {
            let text = origin.to_str().unwrap_or("");
            (!same_origin_as(text, |scheme| addressed_origin(&req, gateway, scheme))).then(|| {
                let shown: String = text.chars().take(200).collect();
                ApiError::forbidden(format!(
                    "cross-site request refused: a page from `{shown}` may not change anything here; \
                     use HomeIQ's own panel, or a client that sends no Origin header"
                ))
            })
        }
        None => None,
    };
    let refusal = refusal.or_else(|| {
        let json = matches!(
            req.mime_type(),
            Ok(Some(m)) if m.essence_str() == "application/json"
        );
        (has_body(&req) && !json).then(|| {
            ApiError::unsupported_media_type(
                "request bodies must be JSON: send `Content-Type: application/json`",
            )
        })
    });
    match refusal {
        Some(e) => {
            tracing::debug!(path = req.path(), "request refused: {e}");
            let response = actix_web::ResponseError::error_response(&e);
            Ok(req.into_response(response))
        }
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body),
    }
}

/// Access: the ingress gateway is trusted; everyone else needs the bearer token when one is set,
/// and is refused when HomeIQ runs as an add-on without one.
pub(crate) async fn access(
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
        // open to this machine only (the bind is loopback): a web page whose own host name
        // resolves to 127.0.0.1 (DNS rebinding) is same-origin with itself, but names its host
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        (!loopback_host(host)).then(|| {
            let shown: String = host.chars().take(100).collect();
            ApiError::forbidden(format!(
                "without http.api_token this API answers only requests addressed to this machine \
                 (localhost, 127.0.0.1 or [::1]), not to `{shown}`; set http.api_token to use \
                 another name"
            ))
        })
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

/// Whom a rate limit counts: an address (IPv6 by its /64, which one host usually owns whole), or
/// behind the ingress gateway a Home Assistant user.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(crate) enum ClientKey {
    /// An IPv4 address.
    V4(std::net::Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
    /// A Home Assistant user, as the trusted gateway names them.
    User(Box<str>),
    /// No peer address (not on TCP).
    Unknown,
}

impl ClientKey {
    fn of(peer: Option<IpAddr>, gateway: Option<IpAddr>, user: Option<&str>) -> Self {
        match (peer, user) {
            (Some(p), Some(user)) if Some(p) == gateway => {
                ClientKey::User(user.chars().take(MAX_USER_KEY).collect())
            }
            (Some(IpAddr::V4(v4)), _) => ClientKey::V4(v4),
            (Some(IpAddr::V6(v6)), _) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4),
                None => ClientKey::V6((v6.to_bits() >> 64) as u64),
            },
            (None, _) => ClientKey::Unknown,
        }
    }
}

/// Longest user id kept as a key (Home Assistant's are 32 hex digits).
const MAX_USER_KEY: usize = 64;

/// Most clients the limiter keeps state for. Above it, clients idle long enough to be back at a
/// full burst are forgotten; when that is not enough (more distinct clients within one burst
/// period than this), the limiter starts afresh. That gives every client a new burst, which a
/// client with that many addresses has anyway.
const MAX_CLIENTS: usize = 10_000;

/// The per-client rate limit: 429 with `Retry-After` when a client exceeds its quota. It runs
/// before access control, so refused requests (a wrong token) count as well. Clients are told
/// apart by address, and behind the ingress gateway by Home Assistant user.
pub(crate) async fn rate_limit(
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
    let key = ClientKey::of(peer, guard.gateway, user);
    let verdict = limiter.check(&key, &guard.seen);
    match verdict {
        Ok(()) => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body),
        Err(secs) => {
            let e = ApiError::rate_limited(secs);
            let response = actix_web::ResponseError::error_response(&e);
            Ok(req.into_response(response))
        }
    }
}

/// The keyed limiter, bounded to [`MAX_CLIENTS`] keys.
pub(crate) struct ClientLimiter {
    quota: Quota,
    current: arc_swap::ArcSwap<DefaultKeyedRateLimiter<ClientKey>>,
}

impl ClientLimiter {
    fn new(quota: Quota) -> Self {
        ClientLimiter {
            quota,
            current: arc_swap::ArcSwap::from_pointee(RateLimiter::keyed(quota)),
        }
    }

    /// Counts one request of `key`: `Err(seconds to wait)` when it is over its quota.
    fn check(&self, key: &ClientKey, seen: &AtomicU64) -> Result<(), u64> {
        let mut limiter = self.current.load_full();
        if seen.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 || limiter.len() >= MAX_CLIENTS {
            limiter.retain_recent();
            if limiter.len() >= MAX_CLIENTS {
                tracing::warn!(
                    clients = limiter.len(),
                    "more clients than the rate limiter keeps; it starts afresh"
                );
                limiter = Arc::new(RateLimiter::keyed(self.quota));
                self.current.store(limiter.clone());
            }
        }
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }
}

/// Shared guard for the app data.
pub(crate) fn data(guard: Guard) -> web::Data<Guard> {
    web::Data::from(Arc::new(guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_this_machine_are_loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST:8099",
            "localhost.",
            "panel.localhost:80",
            "127.0.0.1",
            "127.8.9.1:8099",
            "[::1]:8099",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:8099",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "192.168.1.5:8099",
            "[::ffff:7f00:1]",
            "0.0.0.0",
            "user@127.0.0.1",
            "127.0.0.1/x",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }

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
