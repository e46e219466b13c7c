//! ingest (in progress).
