//! Outbound HTTP, shared by everything HomeIQ sends (webhook deliveries, the language model):
//! the client's common settings, `Retry-After`, and a transport error in words without its URL.
//! A leaf like the rest of `http`.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Longest `Retry-After` honoured.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A reqwest client builder with HomeIQ's outbound defaults: rustls with ring (the provider is
/// installed if nobody did), `timeout` per request (connecting at most 10 s of it), idle
/// connections kept a minute, redirects never followed (a 3xx is a final answer), and HomeIQ's
/// user agent.
pub(crate) fn client(timeout: Duration) -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("HomeIQ/", env!("CARGO_PKG_VERSION")))
}

/// Parses `Retry-After`: seconds or an HTTP date; capped at [`MAX_RETRY_AFTER`].
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = DateTime::parse_from_rfc2822(value)
            .ok()?
            .with_timezone(&Utc);
        (at - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A request's failure in words, without its URL: what went wrong (`timed out`, `cannot
/// connect`, `request failed`) and the error's causes, which say why (connection refused, DNS).
/// `without_url` keeps an `ha` target's webhook id (and any URL's user information) out of it.
pub(crate) fn transport_error_text(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("99999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
