//! HomeIQ: reads every state and registry change from Home Assistant and keeps it as durable
//! history (InfluxDB, or embedded in SQLite) and a registry mirror (SQLite), served over an HTTP
//! API. [`demo`] runs it against a simulated home ([`simulate`]).
//!
//! Capabilities live in their own modules; [`app`] wires them together and `main.rs` only parses
//! the command line.

pub(crate) mod analysis;
pub(crate) mod api;
pub mod app;
pub mod cli;
pub mod config;
mod counters;
pub(crate) mod demo;
pub(crate) mod evaluate;
pub mod ha;
pub mod health;
pub(crate) mod http;
pub(crate) mod import;
pub(crate) mod ingest;
pub(crate) mod llm;
pub mod memory;
pub(crate) mod patterns;
pub(crate) mod prepared;
pub mod registry;
pub(crate) mod retention;
pub(crate) mod rollups;
pub mod simulate;
pub(crate) mod storage;
pub mod store;
pub(crate) mod suggestions;
mod task;
pub(crate) mod telemetry;
pub mod webhooks;
