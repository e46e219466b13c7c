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
