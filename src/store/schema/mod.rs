//! From Home Assistant states to [`Point`]s, in either schema. The embedded store always uses
//! the `homeiq` schema ([`PointMapper::homeiq`]); InfluxDB either ([`PointMapper::new`]).
//! [`homeiq_attribute`] is the way back, for both backends' history readers.
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
//! * fields `origin` and `origin_id` (strings) on points of live changes: who caused the change
//!   (`user`, `automation`, `script`, `system`, `device`; see [`crate::store::origin`]) and the
//!   automation's, script's or user's id when known. Never tags: a series' identity does not
//!   depend on who acted. Points of the connect-time snapshot and the backfill carry none (Home
//!   Assistant's history has no context; read back as `unknown`), so rewriting a point keeps the
//!   origin the live change stored;
//! * one field per attribute, typed by the attribute's JSON type: number or boolean → float field
//!   `<key>` (integers included, however large: this schema writes no integer fields); string →
//!   string field `<key>_str`; list or object → string field `<key>_json` (compact JSON); `null`
//!   → nothing. `unit_of_measurement` and `device_class` are skipped (they are tags), as are the
//!   keys in `influxdb.ignore_attributes`;
//! * names: a numeric attribute whose key already looks like a text field (ends in `_str` or
//!   `_json`, ignoring trailing `_`) is written as `<key>_num`; a name equal to a reserved one
//!   (`state`, `value`, `origin`, `origin_id`, `time`, or a tag key) or to a field already in the point gets `_`
//!   appended until unique.
//!
//! The field name therefore always tells its type: text fields end in `_str`/`_json` (plus any
//! `_`), everything else but `state`, `origin` and `origin_id` is a float. An attribute that switches between a number and
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
//! Who caused a live change is kept beside those points, never in them: one point in the
//! measurement `homeiq_origin` with the same `domain` and `entity_id` tags and time, and the
//! fields `origin` and `origin_id` of the `homeiq` schema.
//!
//! Where JSON has lost a Python type (tuples, enums inside lists, `datetime` attributes) the text
//! fields follow Home Assistant's types for the attributes known to carry them; see `pyfmt.rs`.
//! Names with a backslash before `,`, space or `=` or at the end are mangled by the integration's
//! client and written cleanly here instead.

mod pyfmt;

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::{InfluxSettings, SchemaMode};
use crate::ha::model::{State, StateChanged, object_id_of};
use crate::store::origin::Origin;
use crate::store::point::{FieldValue, Point, Precision};

/// Registry facts about an entity that become tags (`homeiq` schema). The caller resolves the
/// area (the entity's own, else its device's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityMeta {
    /// The entity's device, if it has one.
    pub device_id: Option<String>,
    /// The entity's area (already resolved through the device).
    pub area_id: Option<String>,
}

/// Which attribute names the measurement in `ha_compat` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MeasurementAttr {
    Unit,
    DomainDeviceClass,
    EntityId,
}

/// Tag keys of the `homeiq` schema.
pub(crate) const HOMEIQ_TAGS: [&str; 5] =
    ["entity_id", "device_id", "area_id", "device_class", "unit"];

/// The fields holding who caused a change: the [`OriginKind`](crate::store::origin::OriginKind)
/// name and, when known, the automation's or script's entity id or the user id.
pub(crate) const ORIGIN_FIELDS: [&str; 2] = ["origin", "origin_id"];

/// The measurement of the origin points written beside the `ha_compat` points.
pub(crate) const ORIGIN_MEASUREMENT: &str = "homeiq_origin";

/// Field names the `homeiq` schema never gives to an attribute: the state fields, the origin
/// fields, the tag keys (a field named like a tag makes queries ambiguous) and `time` (ignored by
/// InfluxDB). An attribute named so is stored with `_` appended.
pub(crate) const RESERVED: [&str; 10] = [
    "state",
    "value",
    ORIGIN_FIELDS[0],
    ORIGIN_FIELDS[1],
    "time",
    HOMEIQ_TAGS[0],
    HOMEIQ_TAGS[1],
    HOMEIQ_TAGS[2],
    HOMEIQ_TAGS[3],
    HOMEIQ_TAGS[4],
];

/// Maps state changes to points for one schema.
#[derive(Debug, Clone)]
pub struct PointMapper {
    mode: SchemaMode,
    ignore: Vec<String>,
    measurement_attr: MeasurementAttr,
    default_measurement: Option<String>,
    override_measurement: Option<String>,
}

impl PointMapper {
    /// A mapper for `settings.schema` and its options.
    pub fn new(settings: &InfluxSettings) -> Self {
        let measurement_attr = match settings.measurement_attr.as_str() {
            "domain__device_class" => MeasurementAttr::DomainDeviceClass,
            "entity_id" => MeasurementAttr::EntityId,
            _ => MeasurementAttr::Unit,
        };
        let non_empty = |o: &Option<String>| o.clone().filter(|s| !s.is_empty());
        PointMapper {
            mode: settings.schema,
            ignore: settings.ignore_attributes.clone(),
            measurement_attr,
            default_measurement: non_empty(&settings.default_measurement),
            override_measurement: non_empty(&settings.override_measurement),
        }
    }

    /// A `homeiq`-schema mapper (the embedded store's, whatever `influxdb.schema` says) skipping
    /// the attributes in `ignore_attributes`.
    pub fn homeiq(ignore_attributes: &[String]) -> Self {
        PointMapper {
            mode: SchemaMode::Homeiq,
            ignore: ignore_attributes.to_vec(),
            measurement_attr: MeasurementAttr::Unit,
            default_measurement: None,
            override_measurement: None,
        }
    }

    /// The schema this mapper writes.
    pub fn mode(&self) -> SchemaMode {
        self.mode
    }

    /// The precision of the points' timestamps: microseconds, Home Assistant's own resolution,
    /// in both schemas (two updates of one entity within a millisecond are distinct points).
    pub fn precision(&self) -> Precision {
        Precision::Micros
    }

    /// The point for a `state_changed` event, or `None` when nothing is written (entity removed;
    /// in `ha_compat` mode also `unknown`, `unavailable` and empty states, and numeric states
    /// that are NaN or infinite).
    pub fn map_change(&self, ev: &StateChanged, meta: &EntityMeta) -> Option<Point> {
        self.map_event(ev.new_state.as_ref()?, ev.time_fired, meta)
    }

    /// [`map_change`](Self::map_change) for an event's new state and `time_fired`, taken apart.
    pub fn map_event(
        &self,
        state: &State,
        time_fired: DateTime<Utc>,
        meta: &EntityMeta,
    ) -> Option<Point> {
        match self.mode {
            SchemaMode::Homeiq => self.map_homeiq(state, meta),
            SchemaMode::HaCompat => {
                self.map_compat(state, Precision::Micros.timestamp(&time_fired))
            }
        }
    }

    /// The point for a state read at connect time (`get_states`). `None` in `ha_compat` mode,
    /// where Home Assistant's integration writes no snapshot.
    pub fn map_state(&self, state: &State, meta: &EntityMeta) -> Option<Point> {
        match self.mode {
            SchemaMode::Homeiq => self.map_homeiq(state, meta),
            SchemaMode::HaCompat => None,
        }
    }

    fn ignored(&self, key: &str) -> bool {
        self.ignore.iter().any(|i| i == key)
    }

    /// [`map_event`](Self::map_event) into `scratch`, whose strings keep their allocations from
    /// one change to the next (the `homeiq` schema allocates nothing for a point shaped like an
    /// earlier one). The point is `scratch.point()` when this returns true.
    ///
    /// `origin` (who caused a live change) becomes the fields `origin` and `origin_id` in the
    /// `homeiq` schema; in `ha_compat` mode the point stays exactly the integration's and the
    /// origin goes beside it ([`origin_point`](Self::origin_point)).
    pub fn map_event_into(
        &self,
        state: &State,
        time_fired: DateTime<Utc>,
        meta: &EntityMeta,
        origin: Option<&Origin>,
        scratch: &mut ScratchPoint,
    ) -> bool {
        match self.mode {
            SchemaMode::Homeiq => self.map_homeiq_into(state, meta, origin, scratch),
            SchemaMode::HaCompat => {
                match self.map_compat(state, Precision::Micros.timestamp(&time_fired)) {
                    Some(p) => {
                        scratch.reset();
                        scratch.point = p;
                        true
                    }
                    None => false,
                }
            }
        }
    }

    /// In `ha_compat` mode, the point recording who caused a live change, beside the
    /// integration's point: measurement [`ORIGIN_MEASUREMENT`], the integration's tags (`domain`,
    /// `entity_id` without the domain), fields `origin` and `origin_id`, at `time_fired` (the
    /// integration's point's time). `None` in the `homeiq` schema (the fields are in the point)
    /// and for changes the integration writes nothing for.
    pub fn origin_point(
        &self,
        state: &State,
        time_fired: DateTime<Utc>,
        origin: &Origin,
    ) -> Option<Point> {
        if self.mode != SchemaMode::HaCompat
            || matches!(state.state.as_str(), "unknown" | "unavailable" | "")
        {
            return None;
        }
        let mut p = Point::new(ORIGIN_MEASUREMENT, Precision::Micros.timestamp(&time_fired));
        p.tags.push(("domain".into(), state.domain().to_owned()));
        p.tags.push((
            "entity_id".into(),
            object_id_of(&state.entity_id).to_owned(),
        ));
        p.fields.push((
            ORIGIN_FIELDS[0].into(),
            FieldValue::Str(origin.kind.as_str().to_owned()),
        ));
        if let Some(id) = &origin.id {
            p.fields
                .push((ORIGIN_FIELDS[1].into(), FieldValue::Str(id.clone())));
        }
        Some(p)
    }

    fn map_homeiq(&self, state: &State, meta: &EntityMeta) -> Option<Point> {
        let mut scratch = ScratchPoint::default();
        self.map_homeiq_into(state, meta, None, &mut scratch)
            .then_some(scratch.point)
    }

    fn map_homeiq_into(
        &self,
        state: &State,
        meta: &EntityMeta,
        origin: Option<&Origin>,
        s: &mut ScratchPoint,
    ) -> bool {
        let domain = state.domain();
        if domain.is_empty() {
            return false;
        }
        s.reset();
        domain.clone_into(&mut s.point.measurement);
        s.point.time = Precision::Micros.timestamp(&state.last_updated);
        // Pushed in key order: area_id, device_class, device_id, entity_id, unit.
        let mut tag = |key: &str, value: Option<&str>| {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                s.tag(key, v);
            }
        };
        tag("area_id", meta.area_id.as_deref());
        tag("device_class", state.device_class());
        tag("device_id", meta.device_id.as_deref());
        tag("entity_id", Some(&state.entity_id));
        tag("unit", state.unit());

        let (name, value) = s.field();
        name.push_str("state");
        set_str(value, &state.state);
        s.push_field();
        if let Some(v) = homeiq_value(&state.state) {
            let (name, value) = s.field();
            name.push_str("value");
            *value = FieldValue::Float(v);
            s.push_field();
        }
        if let Some(origin) = origin {
            let (name, value) = s.field();
            name.push_str(ORIGIN_FIELDS[0]);
            set_str(value, origin.kind.as_str());
            s.push_field();
            if let Some(id) = &origin.id {
                let (name, value) = s.field();
                name.push_str(ORIGIN_FIELDS[1]);
                set_str(value, id);
                s.push_field();
            }
        }
        for (key, value) in &state.attributes {
            if key.is_empty()
                || key == "unit_of_measurement"
                || key == "device_class"
                || self.ignored(key)
            {
                continue;
            }
            let (name, field) = s.field();
            match value {
                Value::Null => continue,
                Value::Bool(b) => {
                    float_name(key, name);
                    *field = FieldValue::Float(f64::from(u8::from(*b)));
                }
                Value::Number(n) => match n.as_f64().filter(|f| f.is_finite()) {
                    Some(f) => {
                        float_name(key, name);
                        *field = FieldValue::Float(f);
                    }
                    None => continue,
                },
                Value::String(text) => {
                    name.push_str(key);
                    name.push_str("_str");
                    set_str(field, text);
                }
                Value::Array(_) | Value::Object(_) => {
                    name.push_str(key);
                    name.push_str("_json");
                    // `Display` writes the compact JSON `serde_json::to_string` does
                    let mut text = match std::mem::replace(field, FieldValue::Float(0.0)) {
                        FieldValue::Str(text) => text,
                        _ => String::new(),
                    };
                    text.clear();
                    let _ = write!(text, "{value}");
                    *field = FieldValue::Str(text);
                }
            }
            s.push_unique_field();
        }
        true
    }

    fn map_compat(&self, state: &State, time: i64) -> Option<Point> {
        let s = state.state.as_str();
        if matches!(s, "unknown" | "unavailable" | "") {
            return None;
        }
        let (include_state, value) = match pyfmt::float_from_str(s) {
            Some(v) => (false, Some(v)),
            None => (true, state_as_number(s)),
        };
        if value.is_some_and(|v| !v.is_finite()) {
            // Home Assistant sends `value=nan`/`value=inf`, which InfluxDB refuses as a line.
            return None;
        }

        let attrs = &state.attributes;
        let domain = state.domain();
        let mut include_uom = true;
        let mut include_dc = true;
        let measurement = if let Some(m) = &self.override_measurement {
            m.clone()
        } else {
            let chosen: Option<String> = match self.measurement_attr {
                MeasurementAttr::EntityId => Some(state.entity_id.clone()),
                MeasurementAttr::DomainDeviceClass => match attrs.get("device_class") {
                    None | Some(Value::Null) => Some(domain.to_owned()),
                    Some(dc) => {
                        include_dc = false;
                        Some(format!("{domain}__{}", pyfmt::str_of("device_class", dc)))
                    }
                },
                MeasurementAttr::Unit => match attrs.get("unit_of_measurement") {
                    None | Some(Value::Null) => None,
                    Some(u) => Some(pyfmt::str_of("unit_of_measurement", u)),
                },
            };
            match chosen.filter(|m| !m.is_empty()) {
                Some(m) => {
                    include_uom = self.measurement_attr != MeasurementAttr::Unit;
                    m
                }
                None => self
                    .default_measurement
                    .clone()
                    .unwrap_or_else(|| state.entity_id.clone()),
            }
        };

        let mut fields: Vec<(String, FieldValue)> = Vec::with_capacity(2 + 2 * attrs.len());
        if include_state {
            fields.push(("state".to_owned(), FieldValue::Str(s.to_owned())));
        }
        if let Some(v) = value {
            fields.push(("value".to_owned(), FieldValue::Float(v)));
        }
        for (attr, value) in attrs {
            if (attr == "unit_of_measurement" && !include_uom)
                || (attr == "device_class" && !include_dc)
                || self.ignored(attr)
            {
                continue;
            }
            // One `_` when the name is taken (only once, like the integration).
            let key = if fields.iter().any(|(k, _)| k == attr) {
                format!("{attr}_")
            } else {
                attr.clone()
            };
            match pyfmt::float_of(value) {
                Some(f) => set_field(&mut fields, &key, FieldValue::Float(f)),
                None => {
                    let text = pyfmt::str_of(attr, value);
                    let number = pyfmt::has_digit_tail(&text)
                        .then(|| pyfmt::digits_as_float(&text))
                        .flatten();
                    set_field(&mut fields, &format!("{key}_str"), FieldValue::Str(text));
                    if let Some(f) = number {
                        set_field(&mut fields, &key, FieldValue::Float(f));
                    }
                }
            }
            if let Some(i) = fields
                .iter()
                .position(|(k, v)| *k == key && matches!(v, FieldValue::Float(f) if !f.is_finite()))
            {
                fields.remove(i);
            }
        }
        if fields.is_empty() {
            return None;
        }
        // The integration's client writes `\` as `\\` and a newline as `\n` in names and
        // (newline only) in strings; InfluxDB keeps both as written.
        for (key, value) in &mut fields {
            if let Some(k) = ha_escaped(key, true) {
                *key = k;
            }
            if let FieldValue::Str(text) = value
                && let Some(t) = ha_escaped(text, false)
            {
                *text = t;
            }
        }
        let measurement = ha_escaped(&measurement, true).unwrap_or(measurement);
        Some(Point {
            measurement,
            tags: vec![
                ("domain".to_owned(), domain.to_owned()),
                (
                    "entity_id".to_owned(),
                    object_id_of(&state.entity_id).to_owned(),
                ),
            ],
            fields,
            time,
        })
    }
}

/// What InfluxDB stores for a name (`name == true`) or string value the integration's client
/// escaped; `None` when unchanged.
fn ha_escaped(s: &str, name: bool) -> Option<String> {
    let affected = |c: char| c == '\n' || (name && c == '\\');
    if !s.contains(affected) {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\\' if name => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    Some(out)
}

/// `dict[key] = value` on an ordered field list.
fn set_field(fields: &mut Vec<(String, FieldValue)>, key: &str, value: FieldValue) {
    match fields.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => fields.push((key.to_owned(), value)),
    }
}

/// Home Assistant's `state_as_number`, without `unknown` (HomeIQ writes no value for it).
fn state_as_number(state: &str) -> Option<f64> {
    match state {
        "on" | "locked" | "above_horizon" | "open" | "home" => Some(1.0),
        "off" | "unlocked" | "below_horizon" | "closed" | "not_home" => Some(0.0),
        _ => None,
    }
}

/// The `value` field of the `homeiq` schema: a finite number, or the on/off-like mapping.
fn homeiq_value(state: &str) -> Option<f64> {
    state_as_number(state).or_else(|| {
        let b = state.as_bytes();
        // Only plain decimal numbers: not `nan`, `inf`, `infinity`.
        let numeric = !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'e' | b'E'));
        if numeric {
            state.parse::<f64>().ok().filter(|f| f.is_finite())
        } else {
            None
        }
    })
}

/// Whether a field name is of the text kind (`…_str` or `…_json`, ignoring trailing `_`).
fn is_text_name(name: &str) -> bool {
    let base = name.trim_end_matches('_');
    base.ends_with("_str") || base.ends_with("_json")
}

/// Writes the field name of a numeric attribute into `name`: its key, or `<key>_num` when the
/// key looks like a text field name, so that a name never carries both types.
fn float_name(key: &str, name: &mut String) {
    name.push_str(key);
    if is_text_name(key) {
        name.push_str("_num");
    }
}

/// Sets a field value to the string `text`, reusing its allocation when it is one.
fn set_str(value: &mut FieldValue, text: &str) {
    match value {
        FieldValue::Str(held) => text.clone_into(held),
        other => *other = FieldValue::Str(text.to_owned()),
    }
}

/// A [`Point`] rebuilt in place for change after change: the strings of its tags and fields are
/// kept (with those of earlier, larger points) and overwritten, so that mapping a change
/// allocates nothing once points of its shape have been seen.
#[derive(Debug, Default)]
pub struct ScratchPoint {
    point: Point,
    spare_tags: Vec<(String, String)>,
    spare_fields: Vec<(String, FieldValue)>,
    /// The field being written, taken from the spares by [`ScratchPoint::field`].
    next: Option<(String, FieldValue)>,
}

impl ScratchPoint {
    /// The point last mapped.
    pub fn point(&self) -> &Point {
        &self.point
    }

    /// Empties the point, keeping its strings for the next.
    fn reset(&mut self) {
        self.spare_tags.append(&mut self.point.tags);
        self.spare_fields.append(&mut self.point.fields);
        self.point.time = 0;
    }

    fn tag(&mut self, key: &str, value: &str) {
        let mut slot = self.spare_tags.pop().unwrap_or_default();
        key.clone_into(&mut slot.0);
        value.clone_into(&mut slot.1);
        self.point.tags.push(slot);
    }

    /// A field to write: an empty name and some value to overwrite. Added to the point by
    /// [`push_field`](Self::push_field), else reused by the next call.
    fn field(&mut self) -> (&mut String, &mut FieldValue) {
        let slot = self.next.get_or_insert_with(|| {
            self.spare_fields
                .pop()
                .unwrap_or_else(|| (String::new(), FieldValue::Float(0.0)))
        });
        slot.0.clear();
        (&mut slot.0, &mut slot.1)
    }

    fn push_field(&mut self) {
        if let Some(slot) = self.next.take() {
            self.point.fields.push(slot);
        }
    }

    /// Adds the field, its name made unique: `_` appended until the name is neither reserved
    /// nor used.
    fn push_unique_field(&mut self) {
        if let Some(mut slot) = self.next.take() {
            while RESERVED.contains(&slot.0.as_str())
                || self.point.fields.iter().any(|(k, _)| *k == slot.0)
            {
                slot.0.push('_');
            }
            self.point.fields.push(slot);
        }
    }
}

/// An attribute stored by the `homeiq` schema, back under its own name and type.
pub(crate) fn homeiq_attribute(field: &str, v: &Value) -> (String, Value) {
    let unreserve = |name: &str| {
        let trimmed = name.trim_end_matches('_');
        if trimmed != name && RESERVED.contains(&trimmed) {
            name[..name.len() - 1].to_owned()
        } else {
            name.to_owned()
        }
    };
    if let Some(key) = field.strip_suffix("_json") {
        let parsed = v
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_else(|| v.clone());
        return (unreserve(key), parsed);
    }
    if let Some(key) = field.strip_suffix("_str") {
        return (unreserve(key), v.clone());
    }
    (unreserve(field), v.clone())
}

#[cfg(test)]
mod tests;
