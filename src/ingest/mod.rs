//! The ingest pipeline: from Home Assistant's ordered message stream to InfluxDB points, the
//! SQLite registry mirror and the in-memory current states.

pub mod filter;
pub mod pipeline;
pub mod registry_sync;
pub mod states;

pub use filter::EntityFilter;
pub use pipeline::{IngestCounters, IngestStatus, Pipeline};
pub use registry_sync::{RegistryJob, RegistrySyncState, RegistrySyncStatus, run_registry_task};
pub use states::CurrentStates;
