//! Helpers for tests that talk to the real InfluxDB named by `INFLUX_URL`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::client::InfluxClient;
use crate::config::InfluxSettings;

/// The InfluxDB under test. Tests that need it fail (not skip) without it: CI always sets it.
pub(crate) fn influx_url() -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match std::env::var("INFLUX_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("INFLUX_URL is not set: these tests need a real InfluxDB 1.x"),
    }
}

/// A database name no other test (or test run) uses.
pub(crate) fn unique_db(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("t_{test}_{}_{nanos}", std::process::id())
}

/// Settings for the real InfluxDB and a fresh database.
pub(crate) fn fresh_settings(test: &str) -> InfluxSettings {
    InfluxSettings {
        url: influx_url(),
        database: unique_db(test),
        ..InfluxSettings::default()
    }
}

/// The rows of the first series of a query's first statement (empty when none).
pub(crate) async fn query_rows(client: &InfluxClient, q: &str) -> Vec<Vec<Value>> {
    let result = client.query(q).await.expect("query succeeds");
    result
        .first_series()
        .first()
        .map(|s| s.values.clone())
        .unwrap_or_default()
}

/// `SELECT count(<field>) FROM <from>` summed over all series (0 when empty).
pub(crate) async fn count(client: &InfluxClient, field: &str, from: &str) -> u64 {
    let result = client
        .query(&format!("SELECT count(\"{field}\") FROM {from}"))
        .await
        .expect("count query succeeds");
    result
        .first_series()
        .iter()
        .filter_map(|s| s.values.first()?.get(1)?.as_u64())
        .sum()
}

/// A local TCP port nothing listens on.
pub(crate) fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

/// A port for a server a test starts, stops and starts again on the same port (InfluxDB also
/// binds the port two above it).
///
/// [`closed_port`] hands out a port of the kernel's ephemeral range (32768–60999), from which
/// every client connection and port-0 listener of the parallel tests also draws: CI saw one
/// taken before `influxd` bound it. This one is drawn at random below that range, so only
/// another test drawing the same number could take it.
pub(crate) fn server_port() -> u16 {
    use std::hash::BuildHasher;
    loop {
        let draw =
            std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
        let port = 20_000 + (draw % 12_000) as u16;
        if [port, port + 2]
            .iter()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            return port;
        }
    }
}
