//! What the import asks Home Assistant's recorder, and how it reads the answers.
//!
//! [`Recorder`] is the seam: [`HaRecorder`] sends the WebSocket commands through HomeIQ's own
//! client ([`HaHandle::request`]); tests answer with a fake. Every decoder refuses what it
//! cannot trust (a missing `s`, `lu` or `start`, a timestamp that is no time, a reply larger than
//! [`MAX_REPLY_BYTES`]) with an [`ImportError`] that names the command, so a hostile or broken
//! answer stops the run at that chunk, with everything before it kept and the position saved.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::ImportError;
use super::sink::ImportedHour;
use crate::ha::model::State;
use crate::ha::{CommandError, ConnectionPhase, HaHandle};

/// How long one request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest reply decoded; a larger one is refused (and its window asked again smaller).
pub(crate) const MAX_REPLY_BYTES: usize = 32 << 20;

/// A future of a command's raw result.
pub(crate) type Reply<'a> =
    Pin<Box<dyn Future<Output = Result<Box<RawValue>, CommandError>> + Send + 'a>>;

/// Home Assistant as the import sees it.
pub(crate) trait Recorder: Send + Sync {
    /// Sends a WebSocket command (`type` and its fields) and returns its `result`.
    fn request(&self, command: Value) -> Reply<'_>;
    /// Whether commands can be sent now.
    fn connected(&self) -> bool;
}

/// The real Home Assistant, through HomeIQ's WebSocket client.
#[derive(Clone)]
pub(crate) struct HaRecorder(pub HaHandle);

impl Recorder for HaRecorder {
    fn request(&self, command: Value) -> Reply<'_> {
        Box::pin(self.0.request(command, REQUEST_TIMEOUT))
    }

    fn connected(&self) -> bool {
        self.0.status().state.phase() == ConnectionPhase::Connected
    }
}

/// µs since the epoch as Home Assistant parses times.
pub(crate) fn iso(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `history/history_during_period` for `ids` over `[start, end)` (µs): every recorded state,
/// not only significant ones, with attributes. With `start_state`, each entity's state at
/// `start` too (the probe for the recorder's oldest state).
pub(crate) fn history_command(ids: &[&str], start: i64, end: i64, start_state: bool) -> Value {
    json!({
        "type": "history/history_during_period",
        "start_time": iso(start),
        "end_time": iso(end),
        "entity_ids": ids,
        "include_start_time_state": start_state,
        "significant_changes_only": false,
        "minimal_response": start_state,
        "no_attributes": start_state,
    })
}

/// `recorder/statistics_during_period` for `ids` over `[start, end)` (µs), hourly (or
/// `period`), the five values HomeIQ keeps, in the units the entities' states use now.
pub(crate) fn statistics_command(ids: &[&str], start: i64, end: i64, period: &str) -> Value {
    json!({
        "type": "recorder/statistics_during_period",
        "start_time": iso(start),
        "end_time": iso(end),
        "statistic_ids": ids,
        "period": period,
        "types": ["mean", "min", "max", "sum", "state"],
    })
}

/// Refuses a reply larger than [`MAX_REPLY_BYTES`].
pub(crate) fn check_size(command: &'static str, raw: &RawValue) -> Result<(), ImportError> {
    let bytes = raw.get().len();
    if bytes > MAX_REPLY_BYTES {
        return Err(ImportError::TooLarge { command, bytes });
    }
    Ok(())
}

/// Decodes a history reply: entity → its states, oldest first (the backfill's decoder: the
/// compressed format `s`, `a`, `lu`, `lc` with float seconds).
pub(crate) fn decode_states(raw: &RawValue) -> Result<HashMap<String, Vec<State>>, ImportError> {
    check_size("history/history_during_period", raw)?;
    crate::ingest::backfill::decode_history(raw.get()).map_err(|e| ImportError::Decode {
        command: "history/history_during_period",
        message: e.to_string(),
    })
}

/// One statistic as `recorder/list_statistic_ids` lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct StatisticId {
    /// `sensor.energy`, or `<source>:<name>` for external statistics.
    pub statistic_id: String,
    /// Where it comes from (`recorder` for entities' own statistics).
    #[serde(default)]
    pub source: Option<String>,
    /// The unit the statistics are stored in.
    #[serde(default)]
    pub statistics_unit_of_measurement: Option<String>,
}

impl StatisticId {
    /// Whether it belongs to no entity: an external statistic (`opower:…`, `demo:…`).
    pub(crate) fn external(&self) -> bool {
        self.statistic_id.contains(':')
    }
}

/// Decodes `recorder/list_statistic_ids`.
pub(crate) fn decode_statistic_ids(raw: &RawValue) -> Result<Vec<StatisticId>, ImportError> {
    check_size("recorder/list_statistic_ids", raw)?;
    serde_json::from_str(raw.get()).map_err(|e| ImportError::Decode {
        command: "recorder/list_statistic_ids",
        message: e.to_string(),
    })
}

#[derive(Deserialize)]
struct StatisticsRow {
    /// Unix ms (Home Assistant sends an integer).
    start: f64,
    #[serde(default)]
    mean: Option<f64>,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    sum: Option<f64>,
    #[serde(default)]
    state: Option<f64>,
}

/// Decodes a `recorder/statistics_during_period` reply: statistic id → its rows, oldest first.
pub(crate) fn decode_statistics(
    raw: &RawValue,
) -> Result<HashMap<String, Vec<ImportedHour>>, ImportError> {
    const COMMAND: &str = "recorder/statistics_during_period";
    check_size(COMMAND, raw)?;
    let decoded: HashMap<String, Vec<StatisticsRow>> =
        serde_json::from_str(raw.get()).map_err(|e| ImportError::Decode {
            command: COMMAND,
            message: e.to_string(),
        })?;
    let mut out = HashMap::with_capacity(decoded.len());
    for (id, rows) in decoded {
        let mut hours = Vec::with_capacity(rows.len());
        for r in rows {
            let start = (r.start.is_finite() && r.start.abs() < 1e16)
                .then(|| DateTime::from_timestamp_millis(r.start as i64))
                .flatten()
                .ok_or_else(|| ImportError::Decode {
                    command: COMMAND,
                    message: format!("a row of {id} starts at {} (not a time)", r.start),
                })?;
            let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
            hours.push(ImportedHour {
                entity_id: id.clone(),
                start,
                mean: finite(r.mean),
                min: finite(r.min),
                max: finite(r.max),
                sum: finite(r.sum),
                state: finite(r.state),
            });
        }
        hours.sort_by_key(|h| h.start);
        out.insert(id, hours);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("json")
    }

    #[test]
    fn compressed_states_decode_with_float_seconds_and_lc_only_when_it_differs() {
        let h = decode_states(&raw(
            r#"{"sensor.t":[{"s":"21.5","a":{"unit_of_measurement":"°C"},"lu":1700000000.123456},
                            {"s":"22","a":{},"lu":1700000100.5,"lc":1700000050.25}]}"#,
        ))
        .expect("decodes");
        let s = &h["sensor.t"];
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].state, "21.5");
        assert_eq!(s[0].last_updated.timestamp_micros(), 1_700_000_000_123_456);
        assert_eq!(s[0].last_changed, s[0].last_updated);
        assert_eq!(s[1].last_changed.timestamp_micros(), 1_700_000_050_250_000);
        assert_eq!(
            s[0].attributes.get("unit_of_measurement"),
            Some(&json!("°C"))
        );
    }

    #[test]
    fn a_state_without_its_time_or_value_is_a_clear_error() {
        for bad in [
            r#"{"sensor.t":[{"s":"1"}]}"#,
            r#"{"sensor.t":[{"lu":1700000000}]}"#,
            r#"{"sensor.t":[{"s":"1","lu":"yesterday"}]}"#,
            r#"{"sensor.t":{"s":"1"}}"#,
            r#"[]"#,
        ] {
            let e = decode_states(&raw(bad)).expect_err(bad).to_string();
            assert!(e.contains("history/history_during_period"), "{e}");
        }
    }

    #[test]
    fn statistics_rows_decode_and_drop_what_is_not_a_number() {
        let s = decode_statistics(&raw(
            r#"{"sensor.e":[{"start":1700002800000,"end":1700006400000,"sum":5.5,"state":105.5,"mean":null},
                            {"start":1699999200000,"end":1700002800000,"mean":2.0,"min":1.0,"max":3.0}]}"#,
        ))
        .expect("decodes");
        let rows = &s["sensor.e"];
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].start.timestamp(),
            1_699_999_200,
            "sorted oldest first"
        );
        assert_eq!(
            (rows[0].mean, rows[0].min, rows[0].max),
            (Some(2.0), Some(1.0), Some(3.0))
        );
        assert_eq!(
            (rows[1].sum, rows[1].state, rows[1].mean),
            (Some(5.5), Some(105.5), None)
        );
        for bad in [
            r#"{"sensor.e":[{"mean":1.0}]}"#,
            r#"{"sensor.e":[{"start":"noon"}]}"#,
            r#"{"sensor.e":[{"start":1e300}]}"#,
        ] {
            let e = decode_statistics(&raw(bad)).expect_err(bad).to_string();
            assert!(e.contains("recorder/statistics_during_period"), "{e}");
        }
    }

    #[test]
    fn statistic_ids_tell_external_ones_apart() {
        let ids = decode_statistic_ids(&raw(
            r#"[{"statistic_id":"sensor.energy","source":"recorder","statistics_unit_of_measurement":"kWh","mean_type":0,"has_sum":true},
                {"statistic_id":"demo:energy_consumption_kwh","source":"demo"}]"#,
        ))
        .expect("decodes");
        assert!(!ids[0].external());
        assert!(ids[1].external());
        assert!(decode_statistic_ids(&raw(r#"[{"source":"x"}]"#)).is_err());
    }

    #[test]
    fn a_huge_reply_is_refused_before_it_is_decoded() {
        let big = format!(
            r#"{{"sensor.t":[{}]}}"#,
            vec![r#"{"s":"1","lu":1}"#; MAX_REPLY_BYTES / 16].join(",")
        );
        let e = decode_states(&raw(&big)).expect_err("too large");
        assert!(matches!(e, ImportError::TooLarge { .. }), "{e}");
    }
}
