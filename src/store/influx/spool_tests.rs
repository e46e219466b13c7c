//! Spool tests: format, crash recovery, bounds, cursor. No InfluxDB needed.

use std::io::Write as _;

use super::*;

fn batch(from: usize, n: usize) -> Batch {
    let mut body = String::new();
    let mut ends = Vec::new();
    for i in from..from + n {
        body.push_str(&format!(
            "sensor,entity_id=sensor.s{} value={i}.5,state=\"{i}\nline\" {}\n",
            i % 7,
            1_700_000_000_000u64 + i as u64
        ));
        ends.push(body.len() as u32);
    }
    Batch::new(Precision::Millis, Bytes::from(body), ends)
}

fn limits(max_bytes: u64) -> SpoolLimits {
    SpoolLimits::new(max_bytes, 0)
}

fn open(dir: &Path, max_bytes: u64) -> (Spool, OpenReport, Arc<SpoolGauges>) {
    let gauges = Arc::new(SpoolGauges::default());
    let (spool, report) = Spool::open(dir, limits(max_bytes), Arc::clone(&gauges)).expect("open");
    (spool, report, gauges)
}

/// Every line of every chunk until the spool is empty, acknowledging each chunk.
fn drain(spool: &mut Spool, max_points: usize) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(chunk) = spool
        .read_chunk(max_points, 64 << 20, now_ms())
        .expect("read")
    {
        for i in 0..chunk.batch.len() {
            lines.push(String::from_utf8_lossy(chunk.batch.line(i)).into_owned());
        }
        spool.ack(&chunk.records).expect("ack");
    }
    lines
}

fn expected(from: usize, n: usize) -> Vec<String> {
    let b = batch(from, n);
    (0..n)
        .map(|i| String::from_utf8_lossy(b.line(i)).into_owned())
        .collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_segment_name)
                .is_some()
        })
        .collect();
    files.sort();
    files
}

#[test]
fn batch_views_split_and_skip_lines() {
    let b = batch(0, 5);
    assert_eq!(b.len(), 5);
    let (x, y) = b.split_at(2);
    assert_eq!((x.len(), y.len()), (2, 3));
    assert_eq!(x.line(1), b.line(1));
    assert_eq!(y.line(0), b.line(2));
    assert_eq!(x.byte_len() + y.byte_len(), b.byte_len());
    let mut z = y.clone();
    z.drop_front(1);
    assert_eq!(z.line(0), b.line(3));
    assert_eq!(&z.bytes()[..], &y.bytes()[y.line(0).len() + 1..]);
    let w = b.without(&[0, 3]);
    assert_eq!(w.len(), 3);
    assert_eq!(w.line(0), b.line(1));
    assert_eq!(w.line(2), b.line(4));
    // Raw newlines inside string fields stay inside their line.
    assert!(String::from_utf8_lossy(b.line(0)).contains("0\nline"));
}

#[test]
fn appends_read_back_in_order_and_coalesce() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, report, gauges) = open(dir.path(), 1 << 30);
    assert_eq!(report, OpenReport::default());
    for k in 0..10 {
        assert_eq!(
            spool.append(&batch(k * 10, 10), now_ms()).expect("append"),
            0
        );
    }
    assert_eq!(gauges.points.load(Ordering::Relaxed), 100);
    assert!(gauges.oldest_ms.load(Ordering::Relaxed) > 0);
    // Chunks of at most 25 points: records are never split, so 20 per chunk.
    let chunk = spool
        .read_chunk(25, 1 << 20, now_ms())
        .expect("read")
        .expect("chunk");
    assert_eq!(chunk.batch.len(), 20);
    assert_eq!(chunk.records.len(), 2);
    // Read but not acknowledged: still pending.
    assert_eq!(gauges.points.load(Ordering::Relaxed), 100);
    spool.ack(&chunk.records).expect("ack");
    assert_eq!(gauges.points.load(Ordering::Relaxed), 80);
    let rest = drain(&mut spool, 1_000);
    assert_eq!(rest, expected(20, 80));
    assert_eq!(gauges.points.load(Ordering::Relaxed), 0);
    assert_eq!(gauges.oldest_ms.load(Ordering::Relaxed), i64::MIN);
    assert!(
        spool
            .read_chunk(10, 1 << 20, now_ms())
            .expect("read")
            .is_none()
    );
}

#[test]
fn a_restart_replays_only_what_was_not_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut spool, _, _) = open(dir.path(), 1 << 30);
        for k in 0..6 {
            spool.append(&batch(k * 10, 10), now_ms()).expect("append");
        }
        let a = spool
            .read_chunk(10, 1 << 20, now_ms())
            .expect("read")
            .expect("a");
        let b = spool
            .read_chunk(10, 1 << 20, now_ms())
            .expect("read")
            .expect("b");
        let c = spool
            .read_chunk(10, 1 << 20, now_ms())
            .expect("read")
            .expect("c");
        // Acknowledged out of order: only the contiguous prefix (a) is done for good.
        spool.ack(&c.records).expect("ack c");
        spool.ack(&a.records).expect("ack a");
        drop(b);
        spool.sync().expect("sync");
    }
    let (mut spool, report, gauges) = open(dir.path(), 1 << 30);
    assert_eq!(report.points, 50);
    assert_eq!(gauges.points.load(Ordering::Relaxed), 50);
    // b and the rest come again (c too: acknowledged after a gap, replaying it is harmless).
    assert_eq!(drain(&mut spool, 15), expected(10, 50));
    drop(spool);
    let (_, report, _) = open(dir.path(), 1 << 30);
    assert_eq!(report.points, 0);
    // Finished segments are deleted: only the new active segment is left.
    assert_eq!(segment_files(dir.path()).len(), 1);
}

#[test]
fn a_torn_tail_is_truncated_on_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut spool, _, _) = open(dir.path(), 1 << 30);
        for k in 0..3 {
            spool.append(&batch(k * 10, 10), now_ms()).expect("append");
        }
    }
    let files = segment_files(dir.path());
    let last = files.last().expect("a segment").clone();
    let full = fs::metadata(&last).expect("meta").len();
    // A crash in the middle of the third record: cut it 7 bytes short.
    let f = OpenOptions::new().write(true).open(&last).expect("open");
    f.set_len(full - 7).expect("cut");
    drop(f);
    let (mut spool, report, gauges) = open(dir.path(), 1 << 30);
    assert_eq!(report.points, 20);
    assert!(report.truncated_bytes > 0);
    assert_eq!(gauges.points.load(Ordering::Relaxed), 20);
    // New records go to a new segment and are read after the survivors.
    spool.append(&batch(100, 5), now_ms()).expect("append");
    let mut want = expected(0, 20);
    want.extend(expected(100, 5));
    assert_eq!(drain(&mut spool, 1_000), want);
}

#[test]
fn garbage_and_bad_checksums_at_the_tail_are_never_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut spool, _, _) = open(dir.path(), 1 << 30);
        spool.append(&batch(0, 10), now_ms()).expect("append");
        spool.append(&batch(10, 10), now_ms()).expect("append");
    }
    let last = segment_files(dir.path())
        .into_iter()
        .rfind(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0) > FILE_HEADER_LEN)
        .expect("segment with data");
    let len = fs::metadata(&last).expect("meta").len();
    // Flip a byte inside the second record's body (its header still looks right)...
    let mut bytes = fs::read(&last).expect("read");
    let at = (len - 20) as usize;
    bytes[at] ^= 0x55;
    // ...and append random garbage after it, as a torn write of a third record would leave.
    bytes.extend_from_slice(&[0x42; 13]);
    fs::write(&last, &bytes).expect("write");
    let (mut spool, report, _) = open(dir.path(), 1 << 30);
    assert_eq!(report.points, 10);
    assert!(report.truncated_bytes > 13);
    assert_eq!(drain(&mut spool, 1_000), expected(0, 10));
}

#[test]
fn corruption_in_a_sealed_segment_skips_the_damaged_record_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut spool, _, _) = open(dir.path(), 1 << 30);
        spool.append(&batch(0, 10), now_ms()).expect("append");
        spool.append(&batch(10, 10), now_ms()).expect("append");
        spool.append(&batch(20, 10), now_ms()).expect("append");
    }
    // Two restarts: the data segment is no longer the last one, so open does not verify it.
    drop(open(dir.path(), 1 << 30));
    let first = segment_files(dir.path())
        .into_iter()
        .next()
        .expect("segment");
    let records = record_spans(&first);
    let mut bytes = fs::read(&first).expect("read");
    // a byte in the middle record's lines, then one in the last record's
    bytes[records[1].1 - 5] ^= 0xff;
    fs::write(&first, &bytes).expect("write");
    let (mut spool, report, gauges) = open(dir.path(), 1 << 30);
    assert_eq!(report.points, 30);
    let mut want = expected(0, 10);
    want.extend(expected(20, 10));
    assert_eq!(drain(&mut spool, 1_000), want);
    assert_eq!(gauges.counts.spool_dropped.load(Ordering::Relaxed), 10);
    assert_eq!(
        gauges.counts.spool_corrupt_records.load(Ordering::Relaxed),
        1
    );
    let span = (records[1].1 - records[1].0) as u64;
    assert_eq!(
        gauges.counts.spool_corrupt_bytes.load(Ordering::Relaxed),
        span
    );
    assert_eq!(gauges.points.load(Ordering::Relaxed), 0);
}

/// `(start, end)` of each record of a segment file, from its headers.
fn record_spans(path: &Path) -> Vec<(usize, usize)> {
    let mut file = File::open(path).expect("open");
    let size = file.metadata().expect("meta").len();
    let (end, records) = walk_headers(&mut file, size).expect("walk");
    assert_eq!(end, size, "an intact segment");
    records
        .iter()
        .map(|(off, h)| {
            (
                *off as usize,
                (*off + RECORD_HEADER_LEN + h.payload) as usize,
            )
        })
        .collect()
}

/// Three records spooled by a run that stopped: on reopen their segment is the one being written
/// when the process stopped, and gets the full check.
fn three_records_then_stop(dir: &Path) -> PathBuf {
    let (mut spool, _, _) = open(dir, 1 << 30);
    spool.append(&batch(0, 10), now_ms()).expect("append");
    spool.append(&batch(10, 5), now_ms()).expect("append");
    spool.append(&batch(15, 20), now_ms()).expect("append");
    drop(spool);
    segment_files(dir)
        .into_iter()
        .rfind(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0) > FILE_HEADER_LEN)
        .expect("segment with data")
}

#[test]
fn a_flipped_byte_in_the_first_record_loses_only_that_record_and_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = three_records_then_stop(dir.path());
    let spans = record_spans(&seg);
    let mut bytes = fs::read(&seg).expect("read");
    bytes[spans[0].1 - 3] ^= 0x01;
    fs::write(&seg, &bytes).expect("write");
    let (mut spool, report, gauges) = open(dir.path(), 1 << 30);
    assert_eq!(report.points, 25);
    assert_eq!(report.corrupt_records, 1);
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(drain(&mut spool, 1_000), expected(10, 25));
    assert_eq!(gauges.counts.spool_dropped.load(Ordering::Relaxed), 10);
    assert_eq!(
        gauges.counts.spool_corrupt_records.load(Ordering::Relaxed),
        1
    );
    assert_eq!(
        gauges.counts.spool_corrupt_bytes.load(Ordering::Relaxed),
        (spans[0].1 - spans[0].0) as u64
    );
}

#[test]
fn a_damaged_length_is_resynchronised_on_the_next_intact_record() {
    for delta in [0x01u8, 0x40, 0xff] {
        let dir = tempfile::tempdir().expect("tempdir");
        let seg = three_records_then_stop(dir.path());
        let spans = record_spans(&seg);
        let mut bytes = fs::read(&seg).expect("read");
        // the length of the middle record: it no longer leads to the third
        bytes[spans[1].0] ^= delta;
        fs::write(&seg, &bytes).expect("write");
        let (mut spool, report, gauges) = open(dir.path(), 1 << 30);
        assert_eq!(report.points, 30, "{delta:#x}");
        let mut want = expected(0, 10);
        want.extend(expected(15, 20));
        assert_eq!(drain(&mut spool, 1_000), want, "{delta:#x}");
        assert_eq!(
            gauges.counts.spool_corrupt_records.load(Ordering::Relaxed),
            1
        );
        assert_eq!(
            gauges.counts.spool_corrupt_bytes.load(Ordering::Relaxed),
            (spans[1].1 - spans[1].0) as u64
        );
    }
}

#[test]
fn damage_found_while_replaying_skips_only_the_damaged_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _, gauges) = open(dir.path(), 1 << 30);
    spool.append(&batch(0, 10), now_ms()).expect("append");
    spool.append(&batch(10, 5), now_ms()).expect("append");
    spool.append(&batch(15, 20), now_ms()).expect("append");
    // the disk changes a byte of the first record under the running spool
    let seg = segment_files(dir.path()).pop().expect("segment");
    let spans = record_spans(&seg);
    let mut bytes = fs::read(&seg).expect("read");
    bytes[spans[0].0 + 30] ^= 0x10;
    fs::write(&seg, &bytes).expect("write");
    assert_eq!(drain(&mut spool, 1_000), expected(10, 25));
    assert_eq!(gauges.counts.spool_dropped.load(Ordering::Relaxed), 10);
    assert_eq!(
        gauges.counts.spool_corrupt_records.load(Ordering::Relaxed),
        1
    );
    assert_eq!(gauges.points.load(Ordering::Relaxed), 0);
    // new records still go through
    spool.append(&batch(100, 3), now_ms()).expect("append");
    assert_eq!(drain(&mut spool, 1_000), expected(100, 3));
}

/// A spool of a sealed segment and the segment being written when the process stopped, three
/// records each; returns the two files and the lines of each record.
fn two_segments(dir: &Path) -> (Vec<PathBuf>, Vec<Vec<String>>) {
    let sizes = [3usize, 1, 7, 2, 5, 4];
    let mut lines = Vec::new();
    let mut from = 0;
    for half in sizes.chunks(3) {
        let (mut spool, _, _) = open(dir, 1 << 30);
        for &n in half {
            spool.append(&batch(from, n), now_ms()).expect("append");
            lines.push(expected(from, n));
            from += n;
        }
    }
    let files: Vec<PathBuf> = segment_files(dir)
        .into_iter()
        .filter(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0) > FILE_HEADER_LEN)
        .collect();
    assert_eq!(files.len(), 2);
    (files, lines)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

    /// Flipping any single byte of a spool loses at most the record holding it, and a loss is
    /// counted.
    #[test]
    fn a_flipped_byte_loses_at_most_its_own_record(at in 0.0f64..1.0, xor in 1u8..=255) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, lines) = two_segments(dir.path());
        let spans: Vec<Vec<(usize, usize)>> = files.iter().map(|f| record_spans(f)).collect();
        let sizes: Vec<usize> = files
            .iter()
            .map(|f| fs::metadata(f).map(|m| m.len() as usize).unwrap_or(0))
            .collect();
        let mut pos = ((sizes[0] + sizes[1]) as f64 * at) as usize;
        let file = usize::from(pos >= sizes[0]);
        if file == 1 {
            pos -= sizes[0];
        }
        let mut bytes = fs::read(&files[file]).expect("read");
        bytes[pos] ^= xor;
        fs::write(&files[file], &bytes).expect("write");
        // the record holding the byte (none: the file header)
        let hit = spans[file]
            .iter()
            .position(|&(a, b)| (a..b).contains(&pos))
            .map(|k| file * 3 + k);

        let (mut spool, _, gauges) = open(dir.path(), 1 << 30);
        let got = drain(&mut spool, 1_000);
        let all: Vec<String> = lines.concat();
        let without_hit: Vec<String> = lines
            .iter()
            .enumerate()
            .filter(|(k, _)| Some(*k) != hit)
            .flat_map(|(_, l)| l.clone())
            .collect();
        proptest::prop_assert!(
            got == all || got == without_hit,
            "byte {pos} of file {file} (record {hit:?}) ^ {xor:#x}: got {} lines",
            got.len()
        );
        let corrupt = gauges.counts.spool_corrupt_records.load(Ordering::Relaxed);
        if got == all {
            proptest::prop_assert_eq!(corrupt, 0);
        } else {
            proptest::prop_assert_eq!(corrupt, 1);
        }
        proptest::prop_assert_eq!(gauges.points.load(Ordering::Relaxed), 0);
    }
}

#[test]
fn the_size_bound_drops_the_oldest_segments_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let max = 200 << 10;
    let (mut spool, _, gauges) = open(dir.path(), max);
    let per_batch = 20;
    let mut dropped = 0;
    let total = 400;
    for k in 0..total {
        dropped += spool
            .append(&batch(k * per_batch, per_batch), now_ms())
            .expect("append");
    }
    assert!(dropped > 0);
    assert_eq!(gauges.counts.spool_dropped.load(Ordering::Relaxed), dropped);
    let bytes: u64 = segment_files(dir.path())
        .iter()
        .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(bytes <= max, "{bytes} > {max}");
    assert_eq!(gauges.bytes.load(Ordering::Relaxed), bytes);
    let pending = gauges.points.load(Ordering::Relaxed);
    assert_eq!(pending + dropped, (total * per_batch) as u64);
    // A full spool reopened with the same bound keeps everything (a restart drops nothing).
    drop(spool);
    let (mut spool, report, gauges) = open(dir.path(), max);
    assert_eq!(report.points, pending);
    assert_eq!(gauges.counts.spool_dropped.load(Ordering::Relaxed), 0);
    // What is left is the newest data, in order, and nothing else.
    let lines = drain(&mut spool, 10_000);
    assert_eq!(lines.len() as u64, pending);
    let first = total * per_batch - lines.len();
    assert_eq!(lines, expected(first, lines.len()));
}

#[test]
fn the_size_bound_spares_records_being_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let max = 64 << 10;
    let (mut spool, _, gauges) = open(dir.path(), max);
    for k in 0..10 {
        spool.append(&batch(k * 20, 20), now_ms()).expect("append");
    }
    let in_flight = spool
        .read_chunk(20, 1 << 20, now_ms())
        .expect("read")
        .expect("chunk");
    for k in 10..200 {
        spool.append(&batch(k * 20, 20), now_ms()).expect("append");
    }
    // The record in flight is not counted as dropped; acknowledging it after its segment went is
    // fine.
    let dropped = gauges.counts.spool_dropped.load(Ordering::Relaxed);
    spool.ack(&in_flight.records).expect("ack");
    let left = drain(&mut spool, 10_000).len() as u64;
    assert_eq!(dropped + left + 20, 200 * 20);
}

#[test]
fn the_age_bound_drops_old_records_and_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gauges = Arc::new(SpoolGauges::default());
    let mut l = SpoolLimits::new(1 << 30, 1);
    l.segment_bytes = 16 << 10;
    let (mut spool, _) = Spool::open(dir.path(), l, Arc::clone(&gauges)).expect("open");
    let hour = 3_600_000;
    let old = now_ms() - 2 * hour;
    // Several segments of old records, then fresh ones.
    for k in 0..60 {
        spool.append(&batch(k * 10, 10), old).expect("append");
    }
    for k in 60..65 {
        spool.append(&batch(k * 10, 10), now_ms()).expect("append");
    }
    let expired = spool.expire(now_ms()).expect("expire");
    assert!(expired > 0);
    // Old records left in the segment shared with fresh ones are dropped when read.
    let lines = drain(&mut spool, 10_000);
    assert_eq!(lines, expected(600, 50));
    assert_eq!(gauges.counts.spool_dropped.load(Ordering::Relaxed), 600);
}

#[test]
fn segments_roll_and_a_cursor_ahead_of_every_file_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let gauges = Arc::new(SpoolGauges::default());
        let mut l = limits(1 << 30);
        l.segment_bytes = 16 << 10;
        let (mut spool, _) = Spool::open(dir.path(), l, gauges).expect("open");
        for k in 0..100 {
            spool.append(&batch(k * 10, 10), now_ms()).expect("append");
        }
        assert!(segment_files(dir.path()).len() > 3);
    }
    // A cursor naming a far-away segment (files removed by hand): new data must not be hidden.
    let mut cursor = [0u8; 20];
    cursor[0..8].copy_from_slice(&1_000u64.to_le_bytes());
    cursor[8..16].copy_from_slice(&FILE_HEADER_LEN.to_le_bytes());
    let crc = crc32fast::hash(&cursor[..16]);
    cursor[16..20].copy_from_slice(&crc.to_le_bytes());
    fs::write(dir.path().join(CURSOR_FILE), cursor).expect("cursor");
    {
        let (mut spool, report, _) = open(dir.path(), 1 << 30);
        assert_eq!(report.points, 0);
        spool.append(&batch(7, 3), now_ms()).expect("append");
    }
    let (mut spool, report, _) = open(dir.path(), 1 << 30);
    assert_eq!(report.points, 3);
    assert_eq!(drain(&mut spool, 100), expected(7, 3));
    // Foreign files in the directory are left alone.
    let mut f = File::create(dir.path().join("notes.txt")).expect("create");
    f.write_all(b"hello").expect("write");
    drop(spool);
    let (_, report, _) = open(dir.path(), 1 << 30);
    assert_eq!(report.points, 0);
    assert!(dir.path().join("notes.txt").exists());
}

#[test]
fn records_given_back_are_read_again_first_and_count_against_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let max = 64 << 10;
    let (mut spool, _, gauges) = open(dir.path(), max);
    for k in 0..5 {
        spool.append(&batch(k * 10, 10), now_ms()).expect("append");
    }
    let first = spool
        .read_chunk(20, 1 << 20, now_ms())
        .expect("read")
        .expect("chunk");
    let second = spool
        .read_chunk(10, 1 << 20, now_ms())
        .expect("read")
        .expect("chunk");
    spool.nack(&first.records).expect("nack");
    assert_eq!(gauges.points.load(Ordering::Relaxed), 50);
    // Given back: read again before the unread records, in order, skipping the one in flight.
    let again = spool
        .read_chunk(1_000, 1 << 20, now_ms())
        .expect("read")
        .expect("chunk");
    let lines: Vec<String> = (0..again.batch.len())
        .map(|i| String::from_utf8_lossy(again.batch.line(i)).into_owned())
        .collect();
    let mut want = expected(0, 20);
    want.extend(expected(30, 20));
    assert_eq!(lines, want);
    spool.ack(&second.records).expect("ack");
    spool.nack(&again.records).expect("nack");
    assert_eq!(gauges.points.load(Ordering::Relaxed), 40);
    // The bound pushes the given-back records out like unread ones, counting them.
    let in_flight = spool
        .read_chunk(10, 1 << 20, now_ms())
        .expect("read")
        .expect("chunk");
    for k in 10..200 {
        spool.append(&batch(k * 10, 10), now_ms()).expect("append");
    }
    let dropped = gauges.counts.spool_dropped.load(Ordering::Relaxed);
    assert!(dropped >= 30, "{dropped}");
    // The record that was in flight when its segment went is counted once it is given back.
    spool.nack(&in_flight.records).expect("nack");
    assert_eq!(
        gauges.counts.spool_dropped.load(Ordering::Relaxed),
        dropped + 10
    );
    let left = drain(&mut spool, 100_000).len() as u64;
    // 50 points first, 1,900 later; 10 acknowledged.
    assert_eq!(
        left + gauges.counts.spool_dropped.load(Ordering::Relaxed) + 10,
        1_950
    );
    assert_eq!(gauges.points.load(Ordering::Relaxed), 0);
}

#[test]
fn a_second_writer_on_the_same_spool_is_refused_until_the_first_releases_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut first, _, _) = open(dir.path(), 1 << 20);
    match Spool::open(dir.path(), limits(1 << 20), Arc::default()) {
        Err(SpoolError::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    first.release();
    let (_second, _, _) = open(dir.path(), 1 << 20);
}
