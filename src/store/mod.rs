//! Storage: history in InfluxDB ([`influx`]) or embedded in SQLite ([`embedded`]), written
//! through [`sink::HistoryWriter`] and read back through [`history`], and the registry mirror in
//! SQLite ([`registry`]).

pub mod embedded;
pub mod history;
pub mod influx;
pub mod registry;
pub mod sink;
