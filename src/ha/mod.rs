//! Home Assistant client: our own WebSocket client on tokio-tungstenite.
//!
//! [`spawn`] starts it; the returned receiver yields [`HaMessage`]s in Home Assistant's order and
//! [`HaHandle`] gives its status and sends commands. See [`client`] for the connection life cycle.

pub(crate) mod backoff;
pub(crate) mod client;
pub mod model;
pub(crate) mod protocol;

pub(crate) use client::{
    ClientOptions, CommandError, ConnectionPhase, ConnectionState, HaHandle, HaMessage, HaStatus,
    ReplyTag, spawn,
};

/// The home's time zone, from Home Assistant's `get_config` (`time_zone`).
pub(crate) async fn home_time_zone(
    ha: &HaHandle,
    timeout: std::time::Duration,
) -> Result<chrono_tz::Tz, String> {
    let raw = ha
        .request(serde_json::json!({"type": "get_config"}), timeout)
        .await
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    let name = v["time_zone"].as_str().unwrap_or_default();
    name.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("unknown time zone `{name}`"))
}
