//! The ingest pipeline: from Home Assistant's ordered message stream to InfluxDB points, the
//! SQLite registry mirror and the in-memory current states.

pub mod backfill;
pub mod filter;
pub mod heartbeat;
pub mod live;
pub mod pipeline;

pub use backfill::{BackfillHandle, BackfillOptions, BackfillStatus};
pub use filter::EntityFilter;
pub use heartbeat::{Heartbeat, HeartbeatCounters, HeartbeatCounts};
pub use live::{LiveBus, LiveEvent};
pub use pipeline::{IngestCounters, IngestStatus, Pipeline};
