//! Home Assistant client: our own WebSocket client on tokio-tungstenite.
//!
//! [`spawn`] starts it; the returned receiver yields [`HaMessage`]s in Home Assistant's order and
//! [`HaHandle`] gives its status and sends commands. See [`client`] for the connection life cycle.

pub mod backoff;
pub mod client;
pub mod model;
pub mod protocol;

pub use client::{
    ClientOptions, CommandError, ConnectionPhase, ConnectionState, HaCounts, HaHandle, HaMessage,
    HaStatus, ReplyTag, spawn,
};
