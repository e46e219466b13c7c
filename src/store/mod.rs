//! Storage: history in InfluxDB ([`influx`]), read back through [`history`], and the registry
//! mirror in SQLite ([`registry`]).

pub mod history;
pub mod influx;
pub mod registry;
