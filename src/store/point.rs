//! The storage vocabulary both backends share: a [`Point`] (measurement, tags, typed fields, a
//! timestamp in a [`Precision`]) is what the [`PointMapper`](crate::store::schema::PointMapper)
//! makes of a state change and what the InfluxDB writer and the embedded store both take.

/// Timestamp precision of a write (the `precision` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Milliseconds since the Unix epoch (`ms`).
    Millis,
    /// Microseconds since the Unix epoch (`u`).
    Micros,
}

impl Precision {
    /// The value of the `precision` query parameter.
    pub fn as_query_param(self) -> &'static str {
        match self {
            Precision::Millis => "ms",
            Precision::Micros => "u",
        }
    }

    /// The timestamp of `t` in this precision.
    pub fn timestamp(self, t: &chrono::DateTime<chrono::Utc>) -> i64 {
        match self {
            Precision::Millis => t.timestamp_millis(),
            Precision::Micros => t.timestamp_micros(),
        }
    }
}

/// The value of one field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A 64-bit float (NaN and ±infinity are never written).
    Float(f64),
    /// A 64-bit signed integer (written with the `i` suffix).
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
}

/// One point: measurement, tags, fields and a timestamp in the writer's [`Precision`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    /// Measurement name.
    pub measurement: String,
    /// Tag key/value pairs (written sorted by key).
    pub tags: Vec<(String, String)>,
    /// Field key/value pairs.
    pub fields: Vec<(String, FieldValue)>,
    /// Timestamp in the writer's precision.
    pub time: i64,
}

impl Point {
    /// A point without tags or fields.
    pub fn new(measurement: impl Into<String>, time: i64) -> Self {
        Point {
            measurement: measurement.into(),
            tags: Vec::new(),
            fields: Vec::new(),
            time,
        }
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// Adds a field.
    pub fn field(mut self, key: impl Into<String>, value: FieldValue) -> Self {
        self.fields.push((key.into(), value));
        self
    }

    /// The value of field `key`, if present.
    pub fn field_value(&self, key: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of tag `key`, if present.
    pub fn tag_value(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
