//! Storage: history in InfluxDB ([`influx`]) and the registry mirror in SQLite ([`registry`]).

pub mod influx;
pub mod registry;
