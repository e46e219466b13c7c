//! InfluxDB history: schema mapping, line protocol, an HTTP client and a batching writer.
//!
//! Data flow: a decoded [`StateChanged`](crate::ha::model::StateChanged) goes through
//! [`PointMapper::map_change`] to a [`Point`]; [`WriterHandle::push`] queues it without waiting;
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
//! # The `homeiq` schema (default)
//!
//! One point per state change, at `new_state.last_updated` with microsecond precision (Home
//! Assistant's own resolution; queries with `epoch=ms` read it in milliseconds as usual):
//!
//! * measurement: the entity's domain (`sensor`, `light`, `climate`, …);
//! * tags (only when known and non-empty): `entity_id` (the full id, `sensor.kitchen_temp`),
//!   `device_id`, `area_id` (the entity's area, else its device's), `device_class` and `unit`
//!   (from the `device_class` and `unit_of_measurement` attributes). All have low cardinality;
//!   attributes are never tags;
//! * field `state`: the state string, always, including `unknown` and `unavailable`;
//! * field `value` (float): when the state is a finite decimal number, or on/off-like as in Home
//!   Assistant's `state_as_number` (`on`, `open`, `home`, `locked`, `above_horizon` → 1; `off`,
//!   `closed`, `not_home`, `unlocked`, `below_horizon` → 0);
//! * one field per attribute, typed by the attribute's JSON type: number or boolean → float field
//!   `<key>` (integers included, however large: this schema writes no integer fields); string →
//!   string field `<key>_str`; list or object → string field `<key>_json` (compact JSON); `null`
//!   → nothing. `unit_of_measurement` and `device_class` are skipped (they are tags), as are the
//!   keys in `influxdb.ignore_attributes`;
//! * names: a numeric attribute whose key already looks like a text field (ends in `_str` or
//!   `_json`, ignoring trailing `_`) is written as `<key>_num`; a name equal to a reserved one
//!   (`state`, `value`, `time`, or a tag key) or to a field already in the point gets `_`
//!   appended until unique.
//!
//! The field name therefore always tells its type: text fields end in `_str`/`_json` (plus any
//! `_`), everything else but `state` is a float. An attribute that switches between a number and
//! a text (`12.5`, later `"n/a"`) lands in two different fields (`reading`, `reading_str`) and
//! never causes a field type conflict, InfluxDB's "first type wins" rejection.
//!
//! Because the time is the state's own `last_updated` (not the time HomeIQ saw it), writing the
//! same state again lands on the same series and timestamp and overwrites the point instead of
//! adding a duplicate: the connect-time snapshot ([`PointMapper::map_state`]), backfill from Home
//! Assistant's history and the burst of re-sent states after a Home Assistant restart are all
//! idempotent. Microseconds matter: Home Assistant can update one entity twice within a millisecond
//! (measured: REST writes 1 ms apart after a restart), and at millisecond precision the second
//! update would overwrite the first.
//!
//! # The `ha_compat` schema
//!
//! Exactly what Home Assistant's own InfluxDB integration (2025.4) writes with its default
//! configuration plus `measurement_attr`, `default_measurement`, `override_measurement` and
//! `ignore_attributes`, so existing dashboards keep working:
//!
//! * nothing for `unknown`, `unavailable` or empty states, or removed entities; nothing at
//!   connect time (the integration writes no snapshot);
//! * measurement: `override_measurement` if set; else by `measurement_attr`: the
//!   `unit_of_measurement` attribute (default), `<domain>__<device_class>` (just the domain
//!   without a device class) or the entity id; when that is missing or empty,
//!   `default_measurement`, else the entity id;
//! * tags `domain` and `entity_id` = the object id *without* the domain;
//! * a state that Python's `float()` accepts → float `value` only; a state `state_as_number`
//!   maps (`on`/`off`, `open`/`closed`, `home`/`not_home`, `locked`/`unlocked`,
//!   `above_horizon`/`below_horizon`) → string `state` and float `value`; anything else → `state`
//!   only. A NaN or infinite numeric state writes nothing (InfluxDB refuses the line the
//!   integration sends);
//! * every attribute except `unit_of_measurement` when it named the measurement, `device_class`
//!   when it did, and `ignore_attributes`: if the key is already a field it gets one `_`; a value
//!   `float()` accepts (numbers, booleans, numeric strings) → float field, otherwise string field
//!   `<key>_str` holding Python's `str()` of the value, plus a float field `<key>` with the digits
//!   of that text when it matches the integration's "digit tail" pattern (`"12 kWh"` → `12.0`,
//!   `"(255, 64, 112)"` → `25564112.0`); NaN/±inf floats are dropped;
//! * time: `time_fired`, in microseconds (Python datetimes carry microseconds; the integration
//!   sends them as nanoseconds, which InfluxDB stores identically).
//!
//! Where JSON has lost a Python type (tuples, enums inside lists, `datetime` attributes) the text
//! fields follow Home Assistant's types for the attributes known to carry them; see `pyfmt.rs`.
//! Names with a backslash before `,`, space or `=` or at the end are mangled by the integration's
//! client and written cleanly here instead.

mod client;
mod line;
mod pyfmt;
mod quarantine;
mod schema;
mod spool;
mod writer;

#[cfg(test)]
pub(crate) mod test_support;

pub use client::{
    InfluxClient, InfluxError, PingInfo, QueryResult, Series, StatementResult, WriteOutcome,
    quote_ident, quote_literal,
};
pub use line::{EncodeError, FieldValue, Point, Precision, encode_point, stored_name};
pub use quarantine::QuarantinedPoint;
pub use schema::{EntityMeta, PointMapper, ScratchPoint};
pub(crate) use schema::{HOMEIQ_TAGS, RESERVED};
pub use spool::SpoolError;
pub use writer::{
    InfluxWriterStatus, ShutdownReport, WriterHandle, spawn_spooled_writer, spawn_writer,
};
