//! Storage: history in InfluxDB ([`influx`]) or embedded in SQLite ([`embedded`]), written
//! through [`sink::HistoryWriter`] and read back through [`history`]. A SQLite file that cannot be opened at start-up is a [`fault::StorageFault`].

pub mod embedded;
pub mod fault;
pub mod history;
pub mod influx;
mod latency;
pub mod origin;
pub mod point;
pub mod schema;
pub mod sink;
#[cfg(test)]
pub(crate) mod small_disk;
pub mod states;
pub mod written;

#[cfg(test)]
mod changes_tests;

/// SQLite's process-wide soft heap limit, bytes (`PRAGMA soft_heap_limit`): page caches of every
/// connection (registry mirror, embedded history, its readers) together stay near this, SQLite
/// recycling cached pages instead of growing. Each connection's own `cache_size` is an upper
/// bound below it; without the limit they could add up to about 20 MiB.
pub const SQLITE_SOFT_HEAP_LIMIT: i64 = 16 * 1024 * 1024;
