//! The quarantine: points InfluxDB refused as invalid, kept with the server's reason instead of
//! being dropped, never retried.
//!
//! # Finding the refused lines
//!
//! InfluxDB 1.x answers `400` for a whole batch and says little about which lines it refused:
//! a type conflict with points already stored is a `partial write` naming the measurement and
//! field (`field type conflict: input field "x" on measurement "m" is type string, already exists
//! as type float dropped=1`, the good points are written); lines it cannot parse are named
//! verbatim (`unable to parse '<line>': <why>`); a conflict *inside* one batch for a new field is
//! just `field type conflict` with nothing written. Worse, when a batch has both, only the first
//! reason is reported: unparsable lines are dropped silently beside a type conflict (checked
//! against InfluxDB 1.6). The writer therefore:
//!
//! 1. takes the lines the message names ([`culprits`]): parse errors by their text, type
//!    conflicts by measurement, field and the refused value type (a small line-protocol reader
//!    here; InfluxDB's message does not name the line);
//! 2. quarantines those and resends the rest, until InfluxDB answers `204` (points it had already
//!    stored are overwritten by themselves: same series, same time);
//! 3. when the message names nothing it recognises, splits the batch in halves and sends each,
//!    down to single lines; after a bounded number of splits per batch the remaining refused
//!    lines are quarantined together with the server's message.
//!
//! A quarantined point is never resent, so a bad point costs a few extra requests once and never
//! blocks the queue.
//!
//! # Storage
//!
//! The newest [`MAX_RECORDS`] entries (at most about [`MAX_BYTES`] of text, lines cut at
//! [`MAX_LINE`] bytes) are kept in memory for the API and, with a spool, appended to
//! `<data_dir>/spool/quarantine.jsonl` (one JSON object per line: `at`, `reason`, `line`). The file
//! is rewritten with only the kept entries when it holds twice as many; a torn last line after a
//! crash is skipped when it is read back at start.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::spool::{Batch, SpoolError};

/// Entries kept.
pub(crate) const MAX_RECORDS: usize = 10_000;
/// Text (lines and reasons) kept in memory, bytes; the oldest entries go first beyond it.
pub(crate) const MAX_BYTES: usize = 8 << 20;
/// Longest line kept, bytes; longer lines are cut (and marked).
pub(crate) const MAX_LINE: usize = 64 << 10;

/// A point InfluxDB refused, with the reason it gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedPoint {
    /// The line protocol that was sent (cut at 64 KiB).
    pub line: String,
    /// InfluxDB's explanation.
    pub reason: String,
    /// When it was refused.
    pub at: DateTime<Utc>,
}

struct Entry {
    line: Box<str>,
    reason: Arc<str>,
    at: DateTime<Utc>,
}

impl Entry {
    fn size(&self) -> usize {
        self.line.len() + self.reason.len() + 64
    }
}

struct Store {
    path: PathBuf,
    file: File,
    records: usize,
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    ring: VecDeque<Entry>,
    bytes: usize,
    store: Option<Store>,
}

/// Refused points: a bounded ring in memory, persisted when a file is given.
#[derive(Default)]
pub(crate) struct Quarantine {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Quarantine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quarantine")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Cuts `s` at `max` bytes (on a character boundary), marking the cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…(cut)", &s[..end])
}

impl Inner {
    fn push(&mut self, e: Entry) {
        self.bytes += e.size();
        self.ring.push_back(e);
        while self.ring.len() > MAX_RECORDS || (self.bytes > MAX_BYTES && self.ring.len() > 1) {
            if let Some(old) = self.ring.pop_front() {
                self.bytes -= old.size();
            }
        }
    }

    fn rewrite(&mut self) -> Result<(), SpoolError> {
        let Some(store) = self.store.as_mut() else {
            return Ok(());
        };
        let tmp = store.path.with_extension("jsonl.tmp");
        let mut out = Vec::new();
        for e in &self.ring {
            write_entry(&mut out, e);
        }
        std::fs::write(&tmp, &out).map_err(io_err("write", &tmp))?;
        std::fs::rename(&tmp, &store.path).map_err(io_err("replace", &store.path))?;
        store.file = OpenOptions::new()
            .append(true)
            .open(&store.path)
            .map_err(io_err("open", &store.path))?;
        store.records = self.ring.len();
        store.bytes = out.len();
        Ok(())
    }
}

fn write_entry(out: &mut Vec<u8>, e: &Entry) {
    let p = QuarantinedPoint {
        line: e.line.to_string(),
        reason: e.reason.to_string(),
        at: e.at,
    };
    if serde_json::to_writer(&mut *out, &p).is_ok() {
        out.push(b'\n');
    }
}

impl Quarantine {
    /// A quarantine kept in memory only.
    pub(crate) fn memory() -> Self {
        Quarantine::default()
    }

    /// Opens (or creates) the quarantine file and loads its newest entries.
    pub(crate) fn open(path: &Path) -> Result<Self, SpoolError> {
        let mut inner = Inner::default();
        let mut records = 0usize;
        let mut bytes = 0usize;
        match File::open(path) {
            Ok(f) => {
                for line in BufReader::new(f).split(b'\n') {
                    let line = line.map_err(io_err("read", path))?;
                    records += 1;
                    bytes += line.len() + 1;
                    // A torn or foreign line is skipped.
                    if let Ok(p) = serde_json::from_slice::<QuarantinedPoint>(&line) {
                        inner.push(Entry {
                            line: p.line.into(),
                            reason: p.reason.into(),
                            at: p.at,
                        });
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("open", path)(e)),
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err("open", path))?;
        inner.store = Some(Store {
            path: path.to_path_buf(),
            file,
            records,
            bytes,
        });
        if records > inner.ring.len() {
            inner.rewrite()?;
        }
        Ok(Quarantine {
            inner: Mutex::new(inner),
        })
    }

    /// Adds refused points (blocking file I/O when persisted). The entries are kept in memory even
    /// when writing the file fails.
    pub(crate) fn add(&self, points: Vec<QuarantinedPoint>) -> Result<(), SpoolError> {
        let mut inner = lock(&self.inner);
        let mut out = Vec::new();
        let mut shared_reason: Option<Arc<str>> = None;
        for p in points {
            let reason = match &shared_reason {
                Some(r) if **r == *p.reason => Arc::clone(r),
                _ => {
                    let r: Arc<str> = p.reason.into();
                    shared_reason = Some(Arc::clone(&r));
                    r
                }
            };
            let e = Entry {
                line: cut(&p.line, MAX_LINE).into(),
                reason,
                at: p.at,
            };
            write_entry(&mut out, &e);
            inner.push(e);
        }
        let Some(store) = inner.store.as_mut() else {
            return Ok(());
        };
        let n = out.iter().filter(|&&b| b == b'\n').count();
        store
            .file
            .write_all(&out)
            .map_err(io_err("write", &store.path))?;
        store.records += n;
        store.bytes += out.len();
        if store.records > 2 * MAX_RECORDS || store.bytes > 2 * MAX_BYTES {
            inner.rewrite()?;
        }
        Ok(())
    }

    /// Entries, newest first, skipping `offset` and returning at most `limit`.
    pub(crate) fn page(&self, limit: usize, offset: usize) -> Vec<QuarantinedPoint> {
        let inner = lock(&self.inner);
        inner
            .ring
            .iter()
            .rev()
            .skip(offset)
            .take(limit)
            .map(|e| QuarantinedPoint {
                line: e.line.to_string(),
                reason: e.reason.to_string(),
                at: e.at,
            })
            .collect()
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).ring.len()
    }
}

/// The server's message without the batch's `dropped=N` count (which is not about one line).
pub(crate) fn reason_text(message: &str) -> String {
    let t = message.trim();
    match t.rfind(" dropped=") {
        Some(i)
            if t[i + " dropped=".len()..]
                .bytes()
                .all(|b| b.is_ascii_digit()) =>
        {
            t[..i].trim_end().to_owned()
        }
        _ => t.to_owned(),
    }
}

/// The lines of `batch` (indices, ascending) that `message` names as refused, each with its
/// reason; empty when the message names no line this reader recognises.
pub(crate) fn culprits(batch: &Batch, message: &str) -> Vec<(usize, String)> {
    let mut found: Vec<(usize, String)> = parse_errors(batch, message);
    if let Some(conflict) = TypeConflict::parse(message) {
        let reason = reason_text(message);
        for i in 0..batch.len() {
            if conflict.matches(batch.line(i)) && !found.iter().any(|(k, _)| *k == i) {
                found.push((i, reason.clone()));
            }
        }
    }
    found.sort_by_key(|(i, _)| *i);
    found
}

const PARSE_PREFIX: &str = "unable to parse '";

/// Lines named by `unable to parse '<line>': <why>`.
fn parse_errors(batch: &Batch, message: &str) -> Vec<(usize, String)> {
    if !message.contains(PARSE_PREFIX) {
        return Vec::new();
    }
    let mut by_text: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for i in 0..batch.len() {
        by_text.entry(batch.line(i)).or_default().push(i);
    }
    let mut found = Vec::new();
    let starts: Vec<usize> = message
        .match_indices(PARSE_PREFIX)
        .map(|(i, _)| i)
        .collect();
    for (n, &at) in starts.iter().enumerate() {
        let text_start = at + PARSE_PREFIX.len();
        let segment_end = starts.get(n + 1).copied().unwrap_or(message.len());
        let segment = &message[at..segment_end];
        // The line ends at one of the `': ` that follow; try each, shortest first.
        for (rel, _) in message[text_start..segment_end].match_indices("': ") {
            let candidate = &message.as_bytes()[text_start..text_start + rel];
            if let Some(lines) = by_text.get(candidate) {
                let reason = reason_text(segment.trim_end_matches(['\n', ' ']));
                for &i in lines {
                    found.push((i, reason.clone()));
                }
                break;
            }
        }
    }
    found
}

/// `input field "F" on measurement "M" is type T, already exists as type U`.
#[derive(Debug, PartialEq, Eq)]
struct TypeConflict {
    field: String,
    measurement: String,
    refused: FieldType,
}

impl TypeConflict {
    fn parse(message: &str) -> Option<Self> {
        let rest = message.split_once("input field \"")?.1;
        let (field, rest) = rest.split_once("\" on measurement \"")?;
        let (measurement, rest) = rest.split_once("\" is type ")?;
        let type_name = rest.split([',', ' ']).next()?;
        Some(TypeConflict {
            field: field.to_owned(),
            measurement: measurement.to_owned(),
            refused: FieldType::from_name(type_name)?,
        })
    }

    fn matches(&self, line: &[u8]) -> bool {
        let Some((measurement, fields)) = read_line(line) else {
            return false;
        };
        measurement == self.measurement.as_bytes()
            && fields
                .iter()
                .any(|(k, t)| k == self.field.as_bytes() && *t == self.refused)
    }
}

/// A line-protocol field's type, as InfluxDB names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldType {
    Float,
    Integer,
    Unsigned,
    String,
    Boolean,
}

impl FieldType {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "float" => FieldType::Float,
            "integer" => FieldType::Integer,
            "unsigned" => FieldType::Unsigned,
            "string" => FieldType::String,
            "boolean" => FieldType::Boolean,
            _ => return None,
        })
    }

    fn of_value(v: &[u8]) -> Self {
        match v {
            b"t" | b"T" | b"true" | b"True" | b"TRUE" | b"f" | b"F" | b"false" | b"False"
            | b"FALSE" => FieldType::Boolean,
            [.., b'i'] => FieldType::Integer,
            [.., b'u'] => FieldType::Unsigned,
            _ => FieldType::Float,
        }
    }
}

/// Reads `bytes` up to the first unescaped byte in `stops`, unescaping `\` before `, =` space and
/// `"`. Returns the name and the index of the stop (or the end).
fn read_name(b: &[u8], mut i: usize, stops: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() && matches!(b[i + 1], b',' | b'=' | b' ' | b'"') {
            out.push(b[i + 1]);
            i += 2;
            continue;
        }
        if stops.contains(&c) {
            break;
        }
        out.push(c);
        i += 1;
    }
    (out, i)
}

/// Field keys (unescaped) and types of a line.
type Fields = Vec<(Vec<u8>, FieldType)>;

/// The measurement and the fields (key, type) of one line; `None` when it is not line protocol.
fn read_line(b: &[u8]) -> Option<(Vec<u8>, Fields)> {
    let (measurement, mut i) = read_name(b, 0, b", ");
    if i < b.len() && b[i] == b',' {
        // Tags: skip to the first unescaped space.
        while i < b.len() && b[i] != b' ' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
    }
    if i >= b.len() || b[i] != b' ' {
        return None;
    }
    i += 1;
    let mut fields = Vec::new();
    loop {
        let (key, at) = read_name(b, i, b"=");
        if at >= b.len() {
            return None;
        }
        i = at + 1;
        let ty = if b.get(i) == Some(&b'"') {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            FieldType::String
        } else {
            let start = i;
            while i < b.len() && b[i] != b',' && b[i] != b' ' {
                i += 1;
            }
            FieldType::of_value(&b[start..i])
        };
        fields.push((key, ty));
        match b.get(i) {
            Some(b',') => i += 1,
            _ => break,
        }
    }
    Some((measurement, fields))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::point::Precision;

    fn batch(lines: &[&str]) -> Batch {
        let mut body = String::new();
        let mut ends = Vec::new();
        for l in lines {
            body.push_str(l);
            body.push('\n');
            ends.push(body.len() as u32);
        }
        Batch::new(Precision::Millis, Bytes::from(body), ends)
    }

    #[test]
    fn type_conflicts_name_measurement_field_and_type() {
        let b = batch(&[
            "m,t=a x=1 1",
            "m,t=a x=\"s\" 2",
            "m\\ 2 x=\"s\" 3",
            "n x=\"s\" 4",
            "m y=1i,x=\"a, b\" 5",
            "m x=true 6",
        ]);
        let msg = "partial write: field type conflict: input field \"x\" on measurement \"m\" is type string, already exists as type float dropped=2";
        let found = culprits(&b, msg);
        let idx: Vec<usize> = found.iter().map(|f| f.0).collect();
        assert_eq!(idx, vec![1, 4]);
        assert_eq!(
            found[0].1,
            "partial write: field type conflict: input field \"x\" on measurement \"m\" is type string, already exists as type float"
        );
        let msg = "field type conflict: input field \"x\" on measurement \"m 2\" is type string, already exists as type float";
        assert_eq!(culprits(&b, msg).first().map(|f| f.0), Some(2));
        let msg = "field type conflict: input field \"x\" on measurement \"m\" is type boolean, already exists as type float";
        assert_eq!(culprits(&b, msg).first().map(|f| f.0), Some(5));
        // Nothing named: a bare "field type conflict" (a conflict inside one batch).
        assert!(culprits(&b, "field type conflict").is_empty());
    }

    #[test]
    fn parse_errors_name_the_lines() {
        let b = batch(&["m x=1 1", "bad line", "m x=tru 2", "m s=\"it's: odd\" 3"]);
        let msg = "partial write: unable to parse 'bad line': invalid field format\nunable to parse 'm x=tru 2': invalid boolean dropped=0";
        let found = culprits(&b, msg);
        assert_eq!(
            found,
            vec![
                (
                    1,
                    "unable to parse 'bad line': invalid field format".to_owned()
                ),
                (2, "unable to parse 'm x=tru 2': invalid boolean".to_owned()),
            ]
        );
        // A line containing `': ` itself.
        let msg = "unable to parse 'm s=\"it's: odd\" 3': bad timestamp";
        assert_eq!(culprits(&b, msg).first().map(|f| f.0), Some(3));
    }

    #[test]
    fn reasons_lose_the_batch_count() {
        assert_eq!(
            reason_text("partial write: x dropped=3"),
            "partial write: x"
        );
        assert_eq!(reason_text("field type conflict"), "field type conflict");
        assert_eq!(reason_text("a dropped=x"), "a dropped=x");
    }

    #[test]
    fn line_reader() {
        let (m, f) = read_line(b"a\\,b,t=x\\ y f\\=1=1i,s=\"q\\\"x\",b=t 5").expect("parses");
        assert_eq!(m, b"a,b");
        assert_eq!(
            f,
            vec![
                (b"f=1".to_vec(), FieldType::Integer),
                (b"s".to_vec(), FieldType::String),
                (b"b".to_vec(), FieldType::Boolean)
            ]
        );
        assert!(read_line(b"nofields").is_none());
    }

    #[test]
    fn persisted_bounded_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("quarantine.jsonl");
        let q = Quarantine::open(&path).expect("open");
        let at = Utc::now();
        let items: Vec<QuarantinedPoint> = (0..MAX_RECORDS + 5)
            .map(|i| QuarantinedPoint {
                line: format!("m x={i} {i}"),
                reason: "field type conflict".into(),
                at,
            })
            .collect();
        q.add(items).expect("add");
        assert_eq!(q.len(), MAX_RECORDS);
        let page = q.page(2, 0);
        assert_eq!(
            page[0].line,
            format!("m x={} {}", MAX_RECORDS + 4, MAX_RECORDS + 4)
        );
        assert_eq!(
            page[1].line,
            format!("m x={} {}", MAX_RECORDS + 3, MAX_RECORDS + 3)
        );
        assert_eq!(q.page(10, MAX_RECORDS - 1).len(), 1);
        drop(q);
        // A torn last line is skipped on reopen.
        {
            let mut f = OpenOptions::new().append(true).open(&path).expect("open");
            f.write_all(b"{\"line\":\"torn").expect("write");
        }
        let q = Quarantine::open(&path).expect("reopen");
        assert_eq!(q.len(), MAX_RECORDS);
        assert_eq!(q.page(1, 0)[0].line, page[0].line);
        assert_eq!(q.page(1, 0)[0].at, at);
        // The file was compacted to what is kept.
        let lines = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .count();
        assert_eq!(lines, MAX_RECORDS);
        let long = "x".repeat(MAX_LINE + 10);
        q.add(vec![QuarantinedPoint {
            line: long,
            reason: "r".into(),
            at,
        }])
        .expect("add");
        assert!(q.page(1, 0)[0].line.ends_with("…(cut)"));
    }
}
