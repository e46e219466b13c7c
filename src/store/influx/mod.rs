//! InfluxDB history: schema mapping, line protocol, an HTTP client and a batching writer.
//!
//! Data flow: a decoded [`StateChanged`](crate::ha::model::StateChanged) goes through
//! [`PointMapper::map_change`](crate::store::schema::PointMapper::map_change) to a
//! [`Point`](crate::store::point::Point); [`WriterHandle::push`] queues it without waiting;
//! the writer task batches points into line protocol ([`encode_point`]) and sends them with
//! [`InfluxClient::write`], which classifies the answer ([`WriteOutcome`]): points InfluxDB refuses
//! go to the quarantine ([`WriterHandle::quarantine`]) and batches hit by outages go to the durable
//! spool in `<data_dir>/spool/` and are replayed when InfluxDB is back ([`spawn_spooled_writer`];
//! see `writer.rs`, `spool.rs` and `quarantine.rs` for the design).
//!
//! # Why our own client
//!
//! The `influxdb` crate was not used: its `query()` reports an error whenever a value is the
//! string `"error"`, `json_query()` returns empty results for statement errors, write errors drop
//! the server's explanation, `ping()` panics when the version headers are missing, and NaN, ±inf
//! and oversized integers are encoded unchecked. The client here is a few hundred lines over
//! `reqwest` and is tested against a real InfluxDB.
//!
//! # Schemas
//!
//! What a point looks like in the `homeiq` and `ha_compat` schemas is described in
//! [`crate::store::schema`], which maps states to points for both backends.

mod client;
mod history;
mod line;
mod quarantine;
pub(crate) mod retention;
mod spool;
mod writer;

#[cfg(test)]
pub(crate) mod test_support;

pub use client::{InfluxClient, InfluxError, QueryResult, Series, StatementResult, WriteOutcome};
pub(crate) use client::{quote_ident, quote_literal};
pub(crate) use history::InfluxHistory;
#[cfg(test)]
pub(crate) use line::parse;
pub use line::{EncodeError, encode_point, stored_name};
pub use quarantine::QuarantinedPoint;
pub use spool::SpoolError;
pub use writer::{
    InfluxCounts, InfluxWriterStatus, WriterHandle, spawn_spooled_writer, spawn_writer,
};
