//! The ingest pipeline: from Home Assistant's ordered message stream to InfluxDB points, the
//! SQLite registry mirror and the in-memory current states. [`start`] wires it and owns its tasks.

pub mod backfill;
pub mod filter;
pub mod heartbeat;
pub mod live;
mod origin;
pub mod pipeline;
mod start;

pub use backfill::{BackfillHandle, BackfillOptions, BackfillStatus};
pub use filter::EntityFilter;
pub use heartbeat::{Heartbeat, HeartbeatCounters, HeartbeatCounts};
pub use live::{LiveBus, LiveEvent};
pub use pipeline::{IngestCounters, IngestStatus, Pipeline};
pub(crate) use start::{Ingest, IngestParts, start};
