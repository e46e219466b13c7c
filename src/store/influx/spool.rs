//! The durable spool: batches InfluxDB cannot take yet, kept on disk in `<data_dir>/spool/` and
//! replayed oldest first when it answers again.
//!
//! # Format
//!
//! Append-only *segment* files `seg-<20-digit sequence>.spool`. Each starts with a 16-byte header
//! (`HIQSPOOL`, format version, reserved) followed by records, one per spooled batch:
//!
//! ```text
//! u32 payload length | u32 CRC-32 | u32 points | u8 precision | 3 × u8 0 | i64 spooled at (ms)
//! payload: points × u32 line end offsets | the batch's line protocol, exactly as it is sent
//! ```
//!
//! All integers are little-endian; the CRC-32 (IEEE) covers the header after the CRC and the whole
//! payload. The line-end table lets a replayed batch be split (for `413`) or narrowed down to the
//! lines InfluxDB refuses (for the quarantine) without parsing line protocol, whose string fields
//! may hold raw newlines. The body is stored as it is sent, so replay reads it and posts it without
//! re-encoding. Records of consecutive batches are coalesced into one request when replayed.
//!
//! A segment is *sealed* (`fdatasync`) and a new one started when the next record would make it
//! larger than the segment size (an eighth of `spool.max_bytes`, between 16 KiB and 64 MiB), and
//! every start of the process begins a new segment, so records are only ever appended to a file
//! this process created.
//!
//! # Why segments, and why hand-written
//!
//! A separate SQLite file would have worked, but every batch would become a BLOB row written
//! through SQLite's page cache and WAL, deleting replayed rows churns pages that need vacuuming to
//! give the space back, and reading rows back in order costs B-tree work per row. Segments are
//! written and read sequentially (replay reads large contiguous blocks, well beyond 50,000
//! points/s; see `benches/replay.rs`), space is returned by deleting a whole file, and the oldest
//! data is dropped by deleting the oldest file. The existing persistent-queue crates did not fit:
//! `queue-file` (a port of Tape's single circular file) syncs every operation by default and
//! removes only at the head, and `yaque` is a single-producer channel built on file-system
//! notifications; neither bounds size and age by dropping the oldest data *with a count*, nor
//! lets several replay requests be in flight and acknowledged out of order. The format is small
//! enough to own: this file, plus CRC-32 from `crc32fast` (already in the tree through `flate2`).
//!
//! # Guarantees
//!
//! * A batch is *spooled* once its record is written to the file (`write(2)` returned): it
//!   survives a crash or `SIGKILL` of HomeIQ. It survives a power loss or kernel crash once
//!   synced (`fdatasync`): the active segment is synced at most a second after a write
//!   ([`Spool::sync`], called every second by the writer), when a segment is sealed, and at
//!   shutdown. A power loss can therefore lose about the last second of spooled batches, and
//!   never corrupts older ones (a torn tail is cut, see below). Deleting finished segments and
//!   writing the cursor are not synced: after a power loss, already written batches may be
//!   replayed again, which is harmless (see below).
//! * A torn record (a crash in the middle of a write: a record cut short at the end of the segment
//!   being written) is detected on open by its length and CRC and the segment is truncated before
//!   it: a torn tail is never replayed as garbage. A damaged record (bit rot, a flipped byte) is
//!   skipped alone: when its length leads to an intact record, reading resumes there; when the
//!   length itself is damaged, at the next offset where an intact record starts (its header
//!   decodes and its CRC and line table check out). Only the damaged stretch is lost; it is
//!   logged, counted (`corrupt_records`, `corrupt_bytes`) and its points, when its header still
//!   tells them, counted as dropped. The CRC does not cover the length, so a damaged length is
//!   caught by the CRC of the bytes it wrongly delimits. Sealed segments are checked on open only
//!   by walking their record headers; a walk that does not end exactly at the file's end gets the
//!   full check, and payloads are checked when replayed.
//! * Records are removed only when acknowledged ([`Spool::ack`]): after InfluxDB answered `204`, or
//!   refused the points (which then went to the quarantine). A failed replay gives its records
//!   back ([`Spool::nack`]); they stay on disk and are read again, oldest first. The position of
//!   the oldest unacknowledged record is kept in the file `cursor` (written on every advance, not
//!   synced). After a crash the cursor may lag behind: records already written are then replayed
//!   again, which is harmless because a point with the same series and time overwrites itself in
//!   InfluxDB (delivery is at least once; the `replayed` counter may count such points twice).
//! * Bounds: when the segments exceed `spool.max_bytes`, the oldest segments are deleted, the
//!   points in them that were not yet written counted as dropped (a record in a replay request at
//!   that moment is counted only if that request fails); records older than
//!   `spool.max_age_hours` are dropped (whole segments when all their records are that old,
//!   single records when replay reaches them) and counted the same way. The granularity of the
//!   size bound is a segment, an eighth of the bound.
//! * One process per directory: the spool takes no lock, so two HomeIQ instances must not share a
//!   data directory (the Supervisor never does that).
//!
//! All methods do blocking file I/O: the writer calls them on Tokio's blocking pool.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use crate::store::point::Precision;

const MAGIC: [u8; 8] = *b"HIQSPOOL";
const VERSION: u32 = 1;
/// Bytes before the first record of a segment.
const FILE_HEADER_LEN: u64 = 16;
/// Bytes of a record header.
const RECORD_HEADER_LEN: u64 = 24;
/// Largest payload a record may claim; anything larger is a corrupt length.
const MAX_PAYLOAD: u64 = 1 << 30;
const SEGMENT_PREFIX: &str = "seg-";
const SEGMENT_SUFFIX: &str = ".spool";
const CURSOR_FILE: &str = "cursor";
/// Smallest and largest segment size.
const SEGMENT_MIN: u64 = 16 << 10;
const SEGMENT_MAX: u64 = 64 << 20;

/// A failure of the spool's file I/O.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// Reading, writing, creating or deleting a spool file failed.
    #[error("spool: cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A batch is larger than a record may be.
    #[error("spool: a batch of {0} bytes is larger than a spool record may be")]
    TooLarge(u64),
    /// Another process (a second HomeIQ on the same data dir) holds the spool.
    #[error("spool: {} is in use by another HomeIQ process; give each instance its own data_dir", path.display())]
    Locked {
        /// The spool directory.
        path: PathBuf,
    },
}

impl SpoolError {
    /// Whether the disk is full (`ENOSPC`, or the quota `EDQUOT`).
    pub(crate) fn is_disk_full(&self) -> bool {
        matches!(self, SpoolError::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Lines of line protocol, encoded once and then sent, split, spooled or quarantined as they are.
///
/// A view (`lo..hi`) over a shared body and its table of line ends: splitting and dropping lines
/// are O(1) and never copy the body.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    /// Precision of the lines' timestamps.
    pub(crate) precision: Precision,
    body: Bytes,
    /// `ends[i]`: offset just after line `i`'s trailing newline.
    ends: Arc<[u32]>,
    lo: usize,
    hi: usize,
}

impl Batch {
    /// A batch over `body` whose lines end (after their `\n`) at `ends`, strictly increasing.
    pub(crate) fn new(precision: Precision, body: Bytes, ends: Vec<u32>) -> Self {
        let hi = ends.len();
        Batch {
            precision,
            body,
            ends: ends.into(),
            lo: 0,
            hi,
        }
    }

    /// Number of lines.
    pub(crate) fn len(&self) -> usize {
        self.hi - self.lo
    }

    /// Whether there is no line.
    pub(crate) fn is_empty(&self) -> bool {
        self.hi == self.lo
    }

    fn offset(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] as usize }
    }

    /// The request body: every line with its newline.
    pub(crate) fn bytes(&self) -> Bytes {
        self.body.slice(self.offset(self.lo)..self.offset(self.hi))
    }

    /// Size of the request body.
    pub(crate) fn byte_len(&self) -> usize {
        self.offset(self.hi) - self.offset(self.lo)
    }

    /// Line `i` (counted in this view) without its newline.
    pub(crate) fn line(&self, i: usize) -> &[u8] {
        let k = self.lo + i;
        let (start, end) = (self.offset(k), self.offset(k + 1));
        let end = if end > start && self.body[end - 1] == b'\n' {
            end - 1
        } else {
            end
        };
        &self.body[start..end]
    }

    /// The first `k` lines and the rest.
    pub(crate) fn split_at(&self, k: usize) -> (Batch, Batch) {
        let k = k.min(self.len());
        let mut first = self.clone();
        let mut second = self.clone();
        first.hi = self.lo + k;
        second.lo = self.lo + k;
        (first, second)
    }

    /// Removes the first `k` lines.
    pub(crate) fn drop_front(&mut self, k: usize) {
        self.lo = (self.lo + k).min(self.hi);
    }

    /// A copy without the lines whose indices (in this view, ascending) are in `skip`.
    pub(crate) fn without(&self, skip: &[usize]) -> Batch {
        let mut body = Vec::with_capacity(self.byte_len());
        let mut ends = Vec::with_capacity(self.len().saturating_sub(skip.len()));
        let mut skip = skip.iter().peekable();
        for i in 0..self.len() {
            if skip.peek() == Some(&&i) {
                skip.next();
                continue;
            }
            let k = self.lo + i;
            body.extend_from_slice(&self.body[self.offset(k)..self.offset(k + 1)]);
            ends.push(u32::try_from(body.len()).unwrap_or(u32::MAX));
        }
        Batch::new(self.precision, Bytes::from(body), ends)
    }

    /// The line-end table of this view, relative to the start of [`Batch::bytes`].
    fn relative_ends(&self) -> impl Iterator<Item = u32> + '_ {
        let base = self.offset(self.lo) as u32;
        self.ends[self.lo..self.hi].iter().map(move |e| e - base)
    }
}

/// How large and how old the spool may grow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpoolLimits {
    /// Largest total size of the segment files.
    pub(crate) max_bytes: u64,
    /// Records spooled longer ago than this are dropped (`None`: no age bound).
    pub(crate) max_age: Option<Duration>,
    /// Size at which a segment is sealed.
    pub(crate) segment_bytes: u64,
}

impl SpoolLimits {
    /// Limits for `spool.max_bytes` and `spool.max_age_hours` (0: no age bound).
    pub(crate) fn new(max_bytes: u64, max_age_hours: u64) -> Self {
        SpoolLimits {
            max_bytes,
            max_age: (max_age_hours > 0)
                .then(|| Duration::from_secs(max_age_hours.saturating_mul(3600))),
            segment_bytes: (max_bytes / 8).clamp(SEGMENT_MIN, SEGMENT_MAX),
        }
    }
}

/// The spool's figures, published after every change so status reads need no lock.
#[derive(Debug)]
pub(crate) struct SpoolGauges {
    /// Total size of the segment files.
    pub(crate) bytes: AtomicU64,
    /// Points spooled and not yet acknowledged.
    pub(crate) points: AtomicU64,
    /// When the oldest unacknowledged record was spooled (ms since the epoch; `i64::MIN`: none).
    pub(crate) oldest_ms: AtomicI64,
    /// Dropped points and damaged records.
    pub(crate) counts: SpoolCounters,
}

crate::counters::counters! {
    /// The spool's counters; `/metrics` publishes them as `homeiq_storage_spool_*`.
    pub struct SpoolCounters => SpoolCounts ("homeiq_storage") {
        /// Points the spool dropped: its size or age bound was reached (the oldest go first), a
        /// record was corrupt, or the disk refused the write.
        spool_dropped => "spool_dropped_points",
        /// Damaged spool records skipped since start (a damaged stretch hiding several records
        /// counts once); their points are in `spool_dropped` when their header still told them.
        spool_corrupt_records,
        /// Bytes of the damaged spool records skipped.
        spool_corrupt_bytes,
    }
}

impl Default for SpoolGauges {
    fn default() -> Self {
        SpoolGauges {
            bytes: AtomicU64::new(0),
            points: AtomicU64::new(0),
            oldest_ms: AtomicI64::new(i64::MIN),
            counts: SpoolCounters::default(),
        }
    }
}

/// Where a record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    seq: u64,
    off: u64,
}

/// A record handed out by [`Spool::read_chunk`], to acknowledge with [`Spool::ack`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordRef {
    pos: Pos,
    /// Record size, header included.
    len: u64,
    points: u32,
    created_ms: i64,
}

/// Consecutive records read for one replay request.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// The records, to acknowledge once InfluxDB has taken them.
    pub(crate) records: Vec<RecordRef>,
    /// Their lines, as one batch.
    pub(crate) batch: Batch,
}

/// What [`Spool::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OpenReport {
    /// Segments with records still to replay.
    pub(crate) segments: usize,
    /// Records still to replay.
    pub(crate) records: u64,
    /// Points still to replay.
    pub(crate) points: u64,
    /// Bytes cut off torn or corrupt segment tails.
    pub(crate) truncated_bytes: u64,
    /// Damaged records skipped (also counted in the gauges).
    pub(crate) corrupt_records: u64,
}

struct Segment {
    seq: u64,
    path: PathBuf,
    /// Logical end: records are never read beyond it.
    size: u64,
    unread_points: u64,
    unread_records: u64,
    /// When the first unread record was spooled, when known.
    first_unread_ms: Option<i64>,
    /// When the newest record was spooled.
    newest_ms: i64,
    /// Damaged stretches found on open (start → where reading resumes), already counted.
    holes: BTreeMap<u64, u64>,
    reader: Option<File>,
}

/// Where a record that was read stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Handed out and not yet acknowledged or given back.
    InFlight,
    /// Given back ([`Spool::nack`]): to be read again, before anything unread.
    Returned,
    /// Acknowledged, or dropped.
    Done,
}

struct Outstanding {
    rec: RecordRef,
    status: Status,
}

/// The spool of one data directory. See the module documentation.
pub(crate) struct Spool {
    dir: PathBuf,
    limits: SpoolLimits,
    /// Oldest first; the last one is the active segment.
    segments: VecDeque<Segment>,
    active: File,
    /// A failed write left the active segment unusable: start a new one before the next append.
    roll_before_append: bool,
    /// The next record to read.
    read: Pos,
    /// Records read and not yet removed, in order. A record's bytes stay in its segment until
    /// it is done, so one given back is read again from disk (and counts against the bounds).
    outstanding: VecDeque<Outstanding>,
    cursor: File,
    cursor_written: Option<Pos>,
    dirty: bool,
    gauges: Arc<SpoolGauges>,
    /// Exclusively locked while this spool may write: two writers would corrupt each other.
    lock: Option<File>,
}

impl Spool {
    /// Gives up the directory lock: called once the writer has shut down and will write no more,
    /// so a new writer (a restart in the same process) can open the spool.
    pub(crate) fn release(&mut self) {
        self.lock = None;
    }
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

fn segment_name(seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{seq:020}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn precision_code(p: Precision) -> u8 {
    match p {
        Precision::Millis => 1,
        Precision::Micros => 2,
    }
}

fn precision_from(code: u8) -> Option<Precision> {
    match code {
        1 => Some(Precision::Millis),
        2 => Some(Precision::Micros),
        _ => None,
    }
}

/// A decoded record header.
#[derive(Debug, Clone, Copy)]
struct Header {
    payload: u64,
    crc: u32,
    points: u32,
    precision: Precision,
    created_ms: i64,
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_le_bytes(a)
}

/// Decodes a header; `None` when it cannot be one (a torn or corrupt record).
fn decode_header(h: &[u8; RECORD_HEADER_LEN as usize]) -> Option<Header> {
    let payload = u64::from(le_u32(&h[0..4]));
    let points = le_u32(&h[8..12]);
    let precision = precision_from(h[12])?;
    if payload > MAX_PAYLOAD
        || u64::from(points) * 4 > payload
        || points == 0
        || h[13..16] != [0; 3]
    {
        return None;
    }
    Some(Header {
        payload,
        crc: le_u32(&h[4..8]),
        points,
        precision,
        created_ms: le_i64(&h[16..24]),
    })
}

/// Checks that a line-end table is strictly increasing and ends at the body's end.
fn valid_ends(ends: &[u32], body_len: usize) -> bool {
    let mut prev = 0u32;
    for &e in ends {
        if e <= prev {
            return false;
        }
        prev = e;
    }
    prev as usize == body_len
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

fn remove_file(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("delete", path)(e)),
    }
}

/// Walks the record headers of an existing segment without reading payloads. Returns the end of
/// the last record whose header decodes and fits, and the records up to there.
fn walk_headers(file: &mut File, size: u64) -> io::Result<(u64, Vec<(u64, Header)>)> {
    let mut records = Vec::new();
    let mut off = FILE_HEADER_LEN;
    while off + RECORD_HEADER_LEN <= size {
        file.seek(SeekFrom::Start(off))?;
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        file.read_exact(&mut h)?;
        let Some(header) = decode_header(&h) else {
            break;
        };
        let end = off + RECORD_HEADER_LEN + header.payload;
        if end > size {
            break;
        }
        records.push((off, header));
        off = end;
    }
    Ok((off, records))
}

/// The header of an intact record at `off`: it decodes, ends within `size`, its CRC matches and
/// its line table is consistent. `buf` is scratch space for the payload.
fn intact_record_at(
    file: &mut File,
    off: u64,
    size: u64,
    buf: &mut Vec<u8>,
) -> io::Result<Option<Header>> {
    if off + RECORD_HEADER_LEN > size {
        return Ok(None);
    }
    let mut h = [0u8; RECORD_HEADER_LEN as usize];
    file.seek(SeekFrom::Start(off))?;
    file.read_exact(&mut h)?;
    let Some(header) = decode_header(&h) else {
        return Ok(None);
    };
    if off + RECORD_HEADER_LEN + header.payload > size {
        return Ok(None);
    }
    buf.resize(usize::try_from(header.payload).unwrap_or(0), 0);
    file.read_exact(buf)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h[8..]);
    hasher.update(buf);
    let table = header.points as usize * 4;
    let ends: Vec<u32> = buf[..table].chunks_exact(4).map(le_u32).collect();
    Ok((hasher.finalize() == header.crc && valid_ends(&ends, buf.len() - table)).then_some(header))
}

/// The first intact record at or after `from`, found by trying every offset.
fn find_intact(file: &mut File, from: u64, size: u64) -> io::Result<Option<u64>> {
    const WINDOW: usize = 64 << 10;
    let head = RECORD_HEADER_LEN as usize;
    let mut window = vec![0u8; WINDOW + head];
    let mut payload = Vec::new();
    let mut base = from;
    while base + RECORD_HEADER_LEN <= size {
        let len = usize::try_from((size - base).min((WINDOW + head) as u64)).unwrap_or(0);
        file.seek(SeekFrom::Start(base))?;
        file.read_exact(&mut window[..len])?;
        for k in 0..=(len - head).min(WINDOW - 1) {
            let mut h = [0u8; RECORD_HEADER_LEN as usize];
            h.copy_from_slice(&window[k..k + head]);
            // cheap checks first: most offsets fail to decode
            if decode_header(&h).is_some()
                && intact_record_at(file, base + k as u64, size, &mut payload)?.is_some()
            {
                return Ok(Some(base + k as u64));
            }
        }
        base += WINDOW as u64;
    }
    Ok(None)
}

/// A damaged stretch of a segment: what could not be read from `start` on.
#[derive(Debug, Clone, Copy)]
struct Damage {
    start: u64,
    /// Where reading resumes: the next intact record, or the segment's end.
    next: u64,
    /// Whether an intact record starts at `next`.
    resumes: bool,
    /// The damaged record's header, when it still decodes (its point count is then known).
    header: Option<Header>,
    /// Whether the damaged record was written whole (its length or its line table ends it
    /// exactly at `next`): only then can a stretch reaching the end of the segment be told from a
    /// torn write.
    whole: bool,
}

impl Damage {
    /// Points known to be lost with it.
    fn points(&self) -> u64 {
        self.header.map_or(0, |h| u64::from(h.points))
    }
}

/// What follows the damaged record at `off`: if its length leads to an intact record (or exactly
/// to the segment's end), only that record is lost; otherwise reading resumes at the next offset
/// where an intact record starts (the length itself was damaged), or at the end.
fn damage_at(file: &mut File, off: u64, size: u64) -> io::Result<Damage> {
    let mut h = [0u8; RECORD_HEADER_LEN as usize];
    let complete = off + RECORD_HEADER_LEN <= size;
    if complete {
        file.seek(SeekFrom::Start(off))?;
        file.read_exact(&mut h)?;
    }
    let header = complete.then(|| decode_header(&h)).flatten();
    let claimed_end = complete.then(|| off + RECORD_HEADER_LEN + u64::from(le_u32(&h[0..4])));
    let mut payload = Vec::new();
    if let Some(end) = claimed_end.filter(|&e| e < size)
        && intact_record_at(file, end, size, &mut payload)?.is_some()
    {
        return Ok(Damage {
            start: off,
            next: end,
            resumes: true,
            header,
            whole: true,
        });
    }
    if let Some(next) = find_intact(file, off + 1, size)? {
        return Ok(Damage {
            start: off,
            next,
            resumes: true,
            header: None,
            whole: false,
        });
    }
    if claimed_end == Some(size) {
        return Ok(Damage {
            start: off,
            next: size,
            resumes: false,
            header,
            whole: true,
        });
    }
    // Nothing intact follows. A damaged length may still hide a record written whole: its line
    // table (covered by the CRC, read with the point count) then ends it exactly at the end.
    let mut whole = false;
    if complete {
        let points = u64::from(le_u32(&h[8..12]));
        let table_end = off + RECORD_HEADER_LEN + points * 4;
        if points > 0 && table_end <= size {
            let mut last = [0u8; 4];
            file.seek(SeekFrom::Start(table_end - 4))?;
            file.read_exact(&mut last)?;
            whole = table_end + u64::from(u32::from_le_bytes(last)) == size;
        }
    }
    Ok(Damage {
        start: off,
        next: size,
        resumes: false,
        header,
        whole,
    })
}

/// What [`scan_segment`] found in an existing segment.
#[derive(Debug, Default)]
struct Scan {
    /// The intact records.
    records: Vec<(u64, Header)>,
    /// Damaged stretches that were skipped, in file order.
    damage: Vec<Damage>,
    /// Where the segment's last record ends; a torn tail after it is cut off.
    end: u64,
}

/// Walks the records of an existing segment. A sealed segment (`verify` false) whose record
/// headers lead exactly to its end is trusted (payloads are checked when read); otherwise every
/// record's CRC is checked and damaged records are skipped (see [`damage_at`]). With `verify` (the
/// segment being written when the process stopped), a last stretch that may be a torn write (a
/// record not written whole) is left after `end`, to be cut off.
fn scan_segment(file: &mut File, size: u64, verify: bool) -> io::Result<Scan> {
    if !verify {
        let (end, records) = walk_headers(file, size)?;
        if end == size {
            return Ok(Scan {
                records,
                damage: Vec::new(),
                end,
            });
        }
    }
    let mut scan = Scan::default();
    let mut off = FILE_HEADER_LEN;
    let mut buf = Vec::new();
    while off < size {
        if let Some(header) = intact_record_at(file, off, size, &mut buf)? {
            scan.records.push((off, header));
            off += RECORD_HEADER_LEN + header.payload;
            continue;
        }
        let d = damage_at(file, off, size)?;
        if d.resumes || !verify {
            scan.damage.push(d);
            off = d.next;
            continue;
        }
        // The tail of the segment being written: a record written whole but damaged is lost;
        // a torn write (a record cut short) was never spooled and is only cut off.
        if d.whole {
            scan.damage.push(d);
        } else if let Some(h) = d.header
            && off + RECORD_HEADER_LEN + h.payload < size
        {
            // a damaged record written whole, then a torn one
            scan.damage.push(Damage {
                next: off + RECORD_HEADER_LEN + h.payload,
                whole: true,
                ..d
            });
        }
        break;
    }
    scan.end = off.min(size);
    Ok(scan)
}

impl Spool {
    /// Opens (or creates) the spool in `dir`: truncates torn tails, skips what the cursor says was
    /// acknowledged, deletes segments with nothing left and starts a new active segment.
    pub(crate) fn open(
        dir: &Path,
        limits: SpoolLimits,
        gauges: Arc<SpoolGauges>,
    ) -> Result<(Spool, OpenReport), SpoolError> {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let lock_path = dir.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("create", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(SpoolError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }
        let mut seqs = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let entry = entry.map_err(io_err("list", dir))?;
            if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let cursor_path = dir.join(CURSOR_FILE);
        let mut cursor = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&cursor_path)
            .map_err(io_err("open", &cursor_path))?;
        let acked = read_cursor(&mut cursor);

        let mut report = OpenReport::default();
        let mut segments = VecDeque::new();
        let mut read = None;
        let last_seq = seqs.last().copied().unwrap_or(0);
        for &seq in &seqs {
            let path = dir.join(segment_name(seq));
            if acked.is_some_and(|c| seq < c.seq) {
                remove_file(&path)?;
                continue;
            }
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err("open", &path))?;
            let size = file.metadata().map_err(io_err("inspect", &path))?.len();
            let mut head = [0u8; FILE_HEADER_LEN as usize];
            let mut header_ok = size >= FILE_HEADER_LEN
                && file.read_exact(&mut head).is_ok()
                && head[..8] == MAGIC
                && le_u32(&head[8..12]) == VERSION;
            if !header_ok
                && intact_record_at(&mut file, FILE_HEADER_LEN, size, &mut Vec::new())
                    .map_err(io_err("read", &path))?
                    .is_some()
            {
                // Our records behind a damaged file header: read them.
                tracing::warn!(file = %path.display(), "spool segment header is damaged; its records are intact");
                header_ok = true;
            }
            if !header_ok {
                if size > FILE_HEADER_LEN {
                    // Not ours or a future format: keep it aside rather than lose it silently.
                    let aside = path.with_extension("spool.unreadable");
                    tracing::error!(
                        file = %path.display(),
                        "spool segment has an unknown header; moved aside"
                    );
                    fs::rename(&path, &aside).map_err(io_err("rename", &path))?;
                } else {
                    remove_file(&path)?;
                }
                continue;
            }
            // Only the last segment can have been written when the process stopped; it gets the
            // full CRC check. Older ones were sealed with an fdatasync: their payloads are checked
            // when read, unless their record headers do not lead to their end.
            let scan =
                scan_segment(&mut file, size, seq == last_seq).map_err(io_err("read", &path))?;
            let end = scan.end;
            if end < size {
                tracing::warn!(
                    file = %path.display(),
                    offset = end,
                    bytes = size - end,
                    "spool segment has a torn or corrupt tail; truncating it"
                );
                file.set_len(end)
                    .and_then(|()| file.sync_all())
                    .map_err(io_err("truncate", &path))?;
                report.truncated_bytes += size - end;
            }
            // Records before the cursor were acknowledged; the cursor counts only when it falls on
            // a record boundary (or a damaged stretch: reading skips it).
            let skip_before = match acked {
                Some(c)
                    if c.seq == seq
                        && (c.off == end
                            || scan.records.iter().any(|(off, _)| *off == c.off)
                            || scan.damage.iter().any(|d| d.start == c.off)) =>
                {
                    c.off
                }
                _ => FILE_HEADER_LEN,
            };
            let mut seg = Segment {
                seq,
                path,
                size: end,
                unread_points: 0,
                unread_records: 0,
                first_unread_ms: None,
                newest_ms: i64::MIN,
                holes: BTreeMap::new(),
                reader: None,
            };
            for (off, h) in &scan.records {
                seg.newest_ms = seg.newest_ms.max(h.created_ms);
                if *off >= skip_before {
                    seg.unread_points += u64::from(h.points);
                    seg.unread_records += 1;
                    seg.first_unread_ms.get_or_insert(h.created_ms);
                }
            }
            for d in scan.damage.iter().filter(|d| d.start >= skip_before) {
                tracing::error!(
                    file = %seg.path.display(),
                    offset = d.start,
                    bytes = d.next - d.start,
                    points = d.header.map(|h| h.points),
                    "spool record is damaged; skipped"
                );
                report.corrupt_records += 1;
                gauges
                    .counts
                    .spool_corrupt_records
                    .fetch_add(1, Ordering::Relaxed);
                gauges
                    .counts
                    .spool_corrupt_bytes
                    .fetch_add(d.next - d.start, Ordering::Relaxed);
                gauges
                    .counts
                    .spool_dropped
                    .fetch_add(d.points(), Ordering::Relaxed);
                if d.start < end {
                    seg.holes.insert(d.start, d.next);
                }
            }
            if seg.unread_records == 0 {
                drop(file);
                remove_file(&seg.path)?;
                continue;
            }
            if read.is_none() {
                read = Some(Pos {
                    seq,
                    off: skip_before,
                });
            }
            report.segments += 1;
            report.records += seg.unread_records;
            report.points += seg.unread_points;
            segments.push_back(seg);
        }

        // A cursor ahead of every segment (files removed by hand) must not hide new segments.
        let seq = last_seq.max(acked.map_or(0, |c| c.seq)) + 1;
        let (active, seg) = create_segment(dir, seq)?;
        segments.push_back(seg);
        sync_dir(dir)?;
        let read = read.unwrap_or(Pos {
            seq,
            off: FILE_HEADER_LEN,
        });
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            limits,
            segments,
            active,
            roll_before_append: false,
            read,
            outstanding: VecDeque::new(),
            cursor,
            cursor_written: None,
            dirty: false,
            gauges,
            lock: Some(lock),
        };
        spool.write_cursor()?;
        let dropped = spool.enforce_size()?;
        if dropped > 0 {
            report.points = report.points.saturating_sub(dropped);
        }
        spool.publish();
        Ok((spool, report))
    }

    /// Appends a batch. Returns the points the size bound dropped to make room (already counted
    /// in the gauges).
    pub(crate) fn append(&mut self, batch: &Batch, now_ms: i64) -> Result<u64, SpoolError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let points = batch.len();
        let body = batch.bytes();
        let payload = points as u64 * 4 + body.len() as u64;
        if payload > MAX_PAYLOAD || points > u32::MAX as usize {
            return Err(SpoolError::TooLarge(payload));
        }
        let total = RECORD_HEADER_LEN + payload;
        let active_size = self.segments.back().map_or(0, |s| s.size);
        if self.roll_before_append
            || (active_size > FILE_HEADER_LEN && active_size + total > self.limits.segment_bytes)
        {
            self.roll()?;
        }
        let mut head = Vec::with_capacity(RECORD_HEADER_LEN as usize + points * 4);
        head.extend_from_slice(&(payload as u32).to_le_bytes());
        head.extend_from_slice(&[0; 4]);
        head.extend_from_slice(&(points as u32).to_le_bytes());
        head.push(precision_code(batch.precision));
        head.extend_from_slice(&[0; 3]);
        head.extend_from_slice(&now_ms.to_le_bytes());
        for e in batch.relative_ends() {
            head.extend_from_slice(&e.to_le_bytes());
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&head[8..]);
        hasher.update(&body);
        head[4..8].copy_from_slice(&hasher.finalize().to_le_bytes());

        let Some(seg) = self.segments.back_mut() else {
            return Err(io_err("append to", &self.dir)(io::Error::other(
                "no active segment",
            )));
        };
        let written = self
            .active
            .write_all(&head)
            .and_then(|()| self.active.write_all(&body));
        if let Err(e) = written {
            // Cut the partial record off so the segment stays readable; start a new segment for
            // the next append in any case.
            let _ = self.active.set_len(seg.size);
            self.roll_before_append = true;
            return Err(io_err("write", &seg.path)(e));
        }
        if seg.unread_records == 0 {
            seg.first_unread_ms = Some(now_ms);
        }
        seg.size += total;
        seg.unread_points += points as u64;
        seg.unread_records += 1;
        seg.newest_ms = seg.newest_ms.max(now_ms);
        self.dirty = true;
        let dropped = self.enforce_size()?;
        self.publish();
        Ok(dropped)
    }

    /// Seals the active segment and starts a new one.
    fn roll(&mut self) -> Result<(), SpoolError> {
        let last = self.segments.back().map_or(0, |s| s.seq);
        if let Some(seg) = self.segments.back() {
            self.active.sync_data().map_err(io_err("sync", &seg.path))?;
        }
        let (file, seg) = create_segment(&self.dir, last + 1)?;
        sync_dir(&self.dir)?;
        self.active = file;
        self.segments.push_back(seg);
        self.roll_before_append = false;
        self.dirty = false;
        self.remove_acked_segments()?;
        Ok(())
    }

    /// Deletes the oldest segments while the spool is larger than `max_bytes`.
    fn enforce_size(&mut self) -> Result<u64, SpoolError> {
        let mut total: u64 = self.segments.iter().map(|s| s.size).sum();
        // A new, empty active segment (its header alone) must not push data out.
        if self
            .segments
            .back()
            .is_some_and(|s| s.size == FILE_HEADER_LEN)
        {
            total -= FILE_HEADER_LEN;
        }
        let mut dropped = 0;
        while total > self.limits.max_bytes && self.segments.len() > 1 {
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            total -= seg.size;
            dropped += self.discard(seg)?;
            self.advance()?;
        }
        if dropped > 0 {
            tracing::warn!(
                points = dropped,
                max_bytes = self.limits.max_bytes,
                "spool is full; dropped its oldest points"
            );
        }
        Ok(dropped)
    }

    /// Deletes a segment taken off the front, counting as dropped its unread points and those of
    /// its records given back for another attempt. Records in flight are not counted: they are
    /// acknowledged, or counted when given back.
    fn discard(&mut self, seg: Segment) -> Result<u64, SpoolError> {
        let mut dropped = seg.unread_points;
        for o in &mut self.outstanding {
            if o.rec.pos.seq == seg.seq && o.status == Status::Returned {
                o.status = Status::Done;
                dropped += u64::from(o.rec.points);
            }
        }
        let Segment { path, reader, .. } = seg;
        drop(reader);
        remove_file(&path)?;
        if let Some(next) = self.segments.front()
            && self.read.seq < next.seq
        {
            self.read = Pos {
                seq: next.seq,
                off: FILE_HEADER_LEN,
            };
        }
        self.gauges
            .counts
            .spool_dropped
            .fetch_add(dropped, Ordering::Relaxed);
        Ok(dropped)
    }

    /// Drops segments whose every record is older than `max_age`. Returns the points dropped.
    pub(crate) fn expire(&mut self, now_ms: i64) -> Result<u64, SpoolError> {
        let Some(cutoff) = self.cutoff(now_ms) else {
            return Ok(0);
        };
        let mut dropped = 0;
        while self.segments.len() > 1
            && self
                .segments
                .front()
                .is_some_and(|s| s.newest_ms < cutoff && s.unread_records > 0)
        {
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            dropped += self.discard(seg)?;
        }
        if dropped > 0 {
            tracing::warn!(
                points = dropped,
                "spooled points reached spool.max_age_hours; dropped"
            );
            self.advance()?;
            self.publish();
        }
        Ok(dropped)
    }

    fn cutoff(&self, now_ms: i64) -> Option<i64> {
        self.limits
            .max_age
            .map(|a| now_ms.saturating_sub(i64::try_from(a.as_millis()).unwrap_or(i64::MAX)))
    }

    /// Reads the record header at `off` of segment `i`; `None` when it cannot be a record.
    fn read_header(&mut self, i: usize, off: u64) -> Result<Option<Header>, SpoolError> {
        let seg = &mut self.segments[i];
        if seg.reader.is_none() {
            seg.reader = Some(File::open(&seg.path).map_err(io_err("open", &seg.path))?);
        }
        let Some(file) = seg.reader.as_mut() else {
            return Ok(None);
        };
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        file.seek(SeekFrom::Start(off))
            .and_then(|_| file.read_exact(&mut h))
            .map_err(io_err("read", &seg.path))?;
        Ok(decode_header(&h).filter(|hd| off + RECORD_HEADER_LEN + hd.payload <= seg.size))
    }

    /// Appends the lines of the record at `off` of segment `i` (header already read) to `body`
    /// and returns their line ends relative to the record; `None` (and `body` unchanged) when the
    /// CRC or the line table is wrong.
    fn read_payload(
        &mut self,
        i: usize,
        off: u64,
        header: &Header,
        body: &mut Vec<u8>,
    ) -> Result<Option<Vec<u32>>, SpoolError> {
        let seg = &mut self.segments[i];
        let Some(file) = seg.reader.as_mut() else {
            return Ok(None);
        };
        let points = header.points as usize;
        let body_len = (header.payload - u64::from(header.points) * 4) as usize;
        let mut ends_raw = vec![0u8; points * 4];
        let start = body.len();
        body.resize(start + body_len, 0);
        let read = file
            .seek(SeekFrom::Start(off + RECORD_HEADER_LEN))
            .and_then(|_| file.read_exact(&mut ends_raw))
            .and_then(|()| file.read_exact(&mut body[start..]));
        if let Err(e) = read {
            body.truncate(start);
            return Err(io_err("read", &seg.path)(e));
        }
        let mut head = [0u8; 16];
        head[0..4].copy_from_slice(&header.points.to_le_bytes());
        head[4] = precision_code(header.precision);
        head[8..16].copy_from_slice(&header.created_ms.to_le_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&head);
        hasher.update(&ends_raw);
        hasher.update(&body[start..]);
        let rel: Vec<u32> = ends_raw.chunks_exact(4).map(le_u32).collect();
        if hasher.finalize() != header.crc || !valid_ends(&rel, body_len) {
            body.truncate(start);
            return Ok(None);
        }
        Ok(Some(rel))
    }

    /// Reads the next records, oldest first: those given back first, then unread ones, coalesced
    /// into one batch of at most `max_points` points and about `max_bytes` bytes (a single larger
    /// record is returned alone). Records older than `max_age` are dropped on the way. `None`
    /// when nothing is left to read.
    pub(crate) fn read_chunk(
        &mut self,
        max_points: usize,
        max_bytes: usize,
        now_ms: i64,
    ) -> Result<Option<Chunk>, SpoolError> {
        let cutoff = self.cutoff(now_ms);
        let mut body: Vec<u8> = Vec::new();
        let mut ends: Vec<u32> = Vec::new();
        let mut records = Vec::new();
        let mut precision = None;
        let mut dropped = 0u64;
        let mut full = false;
        let fits = |precision: Option<Precision>, ends: &Vec<u32>, body: &Vec<u8>, h: &Header| {
            let body_len = (h.payload - u64::from(h.points) * 4) as usize;
            precision.is_none()
                || (precision == Some(h.precision)
                    && ends.len() + h.points as usize <= max_points
                    && body.len() + body_len <= max_bytes)
        };

        // Records given back come first: they are older than anything unread.
        for k in 0..self.outstanding.len() {
            if self.outstanding[k].status != Status::Returned {
                continue;
            }
            let rec = self.outstanding[k].rec;
            let Some(i) = self.segments.iter().position(|s| s.seq == rec.pos.seq) else {
                self.outstanding[k].status = Status::Done;
                dropped += u64::from(rec.points);
                continue;
            };
            let header = match self.read_header(i, rec.pos.off)? {
                Some(h) if h.points == rec.points => h,
                _ => {
                    tracing::error!(offset = rec.pos.off, "spooled record is corrupt; dropped");
                    self.count_corrupt(rec.len);
                    self.outstanding[k].status = Status::Done;
                    dropped += u64::from(rec.points);
                    continue;
                }
            };
            if !fits(precision, &ends, &body, &header) {
                full = true;
                break;
            }
            let start = body.len();
            let Some(rel) = self.read_payload(i, rec.pos.off, &header, &mut body)? else {
                tracing::error!(offset = rec.pos.off, "spooled record is corrupt; dropped");
                self.count_corrupt(rec.len);
                self.outstanding[k].status = Status::Done;
                dropped += u64::from(rec.points);
                continue;
            };
            ends.extend(rel.iter().map(|e| e + start as u32));
            precision = Some(header.precision);
            records.push(rec);
            self.outstanding[k].status = Status::InFlight;
        }

        while !full && let Some(i) = self.segments.iter().position(|s| s.seq >= self.read.seq) {
            if self.segments[i].seq > self.read.seq {
                self.read = Pos {
                    seq: self.segments[i].seq,
                    off: FILE_HEADER_LEN,
                };
            }
            let last = i + 1 == self.segments.len();
            if self.read.off >= self.segments[i].size {
                let seg = &mut self.segments[i];
                seg.first_unread_ms = None;
                if seg.unread_points > 0 {
                    // Records counted when the segment was opened went with a damaged stretch
                    // found later.
                    dropped += seg.unread_points;
                    seg.unread_points = 0;
                    seg.unread_records = 0;
                }
                if last {
                    break;
                }
                self.read = Pos {
                    seq: self.segments[i + 1].seq,
                    off: FILE_HEADER_LEN,
                };
                continue;
            }
            let off = self.read.off;
            if let Some(&next) = self.segments[i].holes.get(&off) {
                self.read.off = next;
                continue;
            }
            let Some(header) = self.read_header(i, off)? else {
                dropped += self.skip_damaged(i, off)?;
                continue;
            };
            if !fits(precision, &ends, &body, &header) {
                self.segments[i].first_unread_ms = Some(header.created_ms);
                break;
            }
            let start = body.len();
            let Some(rel) = self.read_payload(i, off, &header, &mut body)? else {
                dropped += self.skip_damaged(i, off)?;
                continue;
            };
            let rec = RecordRef {
                pos: self.read,
                len: RECORD_HEADER_LEN + header.payload,
                points: header.points,
                created_ms: header.created_ms,
            };
            self.read.off += rec.len;
            let seg = &mut self.segments[i];
            seg.unread_points = seg.unread_points.saturating_sub(u64::from(header.points));
            seg.unread_records = seg.unread_records.saturating_sub(1);
            seg.first_unread_ms = None;
            if cutoff.is_some_and(|c| header.created_ms < c) {
                body.truncate(start);
                dropped += u64::from(header.points);
                self.outstanding.push_back(Outstanding {
                    rec,
                    status: Status::Done,
                });
                continue;
            }
            ends.extend(rel.iter().map(|e| e + start as u32));
            precision = Some(header.precision);
            records.push(rec);
            self.outstanding.push_back(Outstanding {
                rec,
                status: Status::InFlight,
            });
        }
        if dropped > 0 {
            self.gauges
                .counts
                .spool_dropped
                .fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(
                points = dropped,
                "spooled points reached spool.max_age_hours, were damaged or their segment is gone; dropped"
            );
            self.advance()?;
        }
        self.peek_first_unread();
        self.publish();
        let Some(precision) = precision else {
            return Ok(None);
        };
        Ok(Some(Chunk {
            records,
            batch: Batch::new(precision, Bytes::from(body), ends),
        }))
    }

    /// Fills in when the next unread record was spooled (for the oldest-age figure).
    fn peek_first_unread(&mut self) {
        let read = self.read;
        let Some(seg) = self.segments.iter_mut().find(|s| s.seq == read.seq) else {
            return;
        };
        if seg.first_unread_ms.is_some() || read.off + RECORD_HEADER_LEN > seg.size {
            return;
        }
        let Some(file) = seg.reader.as_mut() else {
            return;
        };
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        if file.seek(SeekFrom::Start(read.off)).is_ok()
            && file.read_exact(&mut h).is_ok()
            && let Some(header) = decode_header(&h)
        {
            seg.first_unread_ms = Some(header.created_ms);
        }
    }

    /// A record at `off` in segment `i` cannot be read: skips it (see [`damage_at`]), counts it
    /// and returns the points known to be lost with it.
    fn skip_damaged(&mut self, i: usize, off: u64) -> Result<u64, SpoolError> {
        let last = i + 1 == self.segments.len();
        let seg = &mut self.segments[i];
        let Some(file) = seg.reader.as_mut() else {
            return Ok(0);
        };
        let d = damage_at(file, off, seg.size).map_err(io_err("read", &seg.path))?;
        tracing::error!(
            file = %seg.path.display(),
            offset = off,
            bytes = d.next - off,
            points = d.header.map(|h| h.points),
            "spool record is damaged; skipped"
        );
        let points = d.points().min(seg.unread_points);
        seg.unread_points -= points;
        seg.unread_records = seg.unread_records.saturating_sub(1);
        seg.first_unread_ms = None;
        self.read.off = d.next;
        if last {
            // the disk may be failing: write new records to a new file
            self.roll_before_append = true;
        }
        self.count_corrupt(d.next - off);
        Ok(points)
    }

    fn count_corrupt(&self, bytes: u64) {
        self.gauges
            .counts
            .spool_corrupt_records
            .fetch_add(1, Ordering::Relaxed);
        self.gauges
            .counts
            .spool_corrupt_bytes
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// Marks records as done (written or quarantined): they are never read again, and a segment
    /// whose records are all done is deleted.
    pub(crate) fn ack(&mut self, records: &[RecordRef]) -> Result<(), SpoolError> {
        for r in records {
            if let Ok(i) = self.outstanding.binary_search_by(|o| o.rec.pos.cmp(&r.pos)) {
                self.outstanding[i].status = Status::Done;
            }
        }
        self.advance()?;
        self.publish();
        Ok(())
    }

    /// Gives records back after a failed attempt: they are read again (from disk, oldest first)
    /// by the next [`Spool::read_chunk`]. A record whose segment the bounds deleted meanwhile is
    /// counted as dropped.
    pub(crate) fn nack(&mut self, records: &[RecordRef]) -> Result<(), SpoolError> {
        let mut dropped = 0u64;
        for r in records {
            if let Ok(i) = self.outstanding.binary_search_by(|o| o.rec.pos.cmp(&r.pos)) {
                let o = &mut self.outstanding[i];
                if o.status != Status::InFlight {
                    continue;
                }
                if self.segments.iter().any(|s| s.seq == r.pos.seq) {
                    o.status = Status::Returned;
                } else {
                    o.status = Status::Done;
                    dropped += u64::from(r.points);
                }
            }
        }
        if dropped > 0 {
            self.gauges
                .counts
                .spool_dropped
                .fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(points = dropped, "spool is full; dropped its oldest points");
            self.advance()?;
        }
        self.publish();
        Ok(())
    }

    /// Removes acknowledged records from the front, persists the cursor and deletes finished
    /// segments.
    fn advance(&mut self) -> Result<(), SpoolError> {
        while self
            .outstanding
            .front()
            .is_some_and(|o| o.status == Status::Done)
        {
            self.outstanding.pop_front();
        }
        self.write_cursor()?;
        self.remove_acked_segments()
    }

    /// The oldest record not yet done.
    fn done_before(&self) -> Pos {
        self.outstanding.front().map_or(self.read, |o| o.rec.pos)
    }

    fn write_cursor(&mut self) -> Result<(), SpoolError> {
        let pos = self.done_before();
        if self.cursor_written == Some(pos) {
            return Ok(());
        }
        let mut buf = [0u8; 20];
        buf[0..8].copy_from_slice(&pos.seq.to_le_bytes());
        buf[8..16].copy_from_slice(&pos.off.to_le_bytes());
        let crc = crc32fast::hash(&buf[..16]);
        buf[16..20].copy_from_slice(&crc.to_le_bytes());
        let path = self.dir.join(CURSOR_FILE);
        self.cursor
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.cursor.write_all(&buf))
            .map_err(io_err("write", &path))?;
        self.cursor_written = Some(pos);
        Ok(())
    }

    fn remove_acked_segments(&mut self) -> Result<(), SpoolError> {
        let done = self.done_before();
        while self.segments.len() > 1 {
            let Some(front) = self.segments.front() else {
                break;
            };
            let finished =
                front.seq < done.seq || (front.seq == done.seq && done.off >= front.size);
            if !finished {
                break;
            }
            if let Some(seg) = self.segments.pop_front() {
                // Nothing unread is left in it, so nothing is counted.
                self.discard(seg)?;
            }
        }
        Ok(())
    }

    /// Syncs the active segment if anything was written since the last sync.
    pub(crate) fn sync(&mut self) -> Result<(), SpoolError> {
        if self.dirty {
            if let Some(seg) = self.segments.back() {
                self.active.sync_data().map_err(io_err("sync", &seg.path))?;
            }
            self.dirty = false;
        }
        Ok(())
    }

    /// Points spooled and not yet acknowledged (read or not).
    pub(crate) fn pending_points(&self) -> u64 {
        self.unread_points()
            + self
                .outstanding
                .iter()
                .filter(|o| o.status != Status::Done)
                .map(|o| u64::from(o.rec.points))
                .sum::<u64>()
    }

    /// Points not yet handed out by [`Spool::read_chunk`].
    pub(crate) fn unread_points(&self) -> u64 {
        self.segments.iter().map(|s| s.unread_points).sum()
    }

    /// Total size of the segment files.
    pub(crate) fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    fn oldest_ms(&self) -> Option<i64> {
        if let Some(o) = self.outstanding.iter().find(|o| o.status != Status::Done) {
            return Some(o.rec.created_ms);
        }
        self.segments
            .iter()
            .filter(|s| s.unread_records > 0)
            .map(|s| s.first_unread_ms.unwrap_or(s.newest_ms))
            .next()
    }

    fn publish(&self) {
        let g = &self.gauges;
        g.bytes.store(self.bytes(), Ordering::Relaxed);
        g.points.store(self.pending_points(), Ordering::Relaxed);
        g.oldest_ms
            .store(self.oldest_ms().unwrap_or(i64::MIN), Ordering::Relaxed);
    }
}

fn create_segment(dir: &Path, seq: u64) -> Result<(File, Segment), SpoolError> {
    let path = dir.join(segment_name(seq));
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    let mut head = [0u8; FILE_HEADER_LEN as usize];
    head[..8].copy_from_slice(&MAGIC);
    head[8..12].copy_from_slice(&VERSION.to_le_bytes());
    if let Err(e) = file.write_all(&head) {
        // a full disk: the next roll creates this segment again, so it must not stay behind
        // (`create_new` would refuse it forever)
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(io_err("write", &path)(e));
    }
    let seg = Segment {
        seq,
        path,
        size: FILE_HEADER_LEN,
        unread_points: 0,
        unread_records: 0,
        first_unread_ms: None,
        newest_ms: i64::MIN,
        holes: BTreeMap::new(),
        reader: None,
    };
    Ok((file, seg))
}

fn read_cursor(file: &mut File) -> Option<Pos> {
    let mut buf = [0u8; 20];
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_exact(&mut buf).ok()?;
    if crc32fast::hash(&buf[..16]) != le_u32(&buf[16..20]) {
        return None;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&buf[0..8]);
    let seq = u64::from_le_bytes(a);
    a.copy_from_slice(&buf[8..16]);
    Some(Pos {
        seq,
        off: u64::from_le_bytes(a),
    })
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
