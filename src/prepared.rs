//! Rendered JSON documents that are served many times, with their gzip form made once.
//!
//! Device listings (memoised per catalog snapshot), cached history answers and the OpenAPI
//! document are rendered once and served again and again. Browsers and most HTTP libraries ask
//! for gzip, and actix's `Compress` middleware would compress the same bytes on every request
//! (about a millisecond for a 60 KB listing, on the blocking pool: 2,200 listings/s instead of
//! 70,000 on the benchmark machine). A [`PreparedJson`] keeps the gzip form beside the plain one,
//! compressed the first time a client asks for it; the API serves whichever the client accepts
//! (`http::prepared_json_ok`). Written here rather than taken from a crate because no maintained
//! crate caches compressed forms of in-memory bodies for actix; this is a `OnceLock` and a call
//! to `flate2`.

use std::io::Write;
use std::sync::OnceLock;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

/// Documents smaller than this are not worth a stored gzip form (the middleware still
/// compresses them on request).
pub(crate) const MIN_GZIP_BYTES: usize = 1024;

/// A rendered JSON document and, once asked for, its gzip form.
#[derive(Debug)]
pub(crate) struct PreparedJson {
    plain: Bytes,
    gzip: OnceLock<Option<Bytes>>,
    level: Compression,
}

impl PreparedJson {
    /// Wraps a rendered document.
    pub(crate) fn new(plain: impl Into<Bytes>) -> Self {
        PreparedJson {
            plain: plain.into(),
            gzip: OnceLock::new(),
            level: Compression::fast(),
        }
    }

    /// Wraps a rendered document whose gzip form is made at the default level, not the fast
    /// one: for documents served very many times whose JSON repeats itself in ways the fast
    /// level misses (the API benchmark's first page of patterns and their evidence, 653 KB: 92 KB
    /// at the fast level, 49 KB at the default), where the bytes sent on every request outweigh
    /// compressing once.
    pub(crate) fn new_compact(plain: impl Into<Bytes>) -> Self {
        PreparedJson {
            level: Compression::default(),
            ..PreparedJson::new(plain)
        }
    }

    /// The document as rendered.
    pub(crate) fn plain(&self) -> &Bytes {
        &self.plain
    }

    /// The gzip form, compressed on the first call; `None` for documents under
    /// [`MIN_GZIP_BYTES`].
    pub(crate) fn gzip(&self) -> Option<&Bytes> {
        self.gzip
            .get_or_init(|| {
                (self.plain.len() >= MIN_GZIP_BYTES).then(|| compress(&self.plain, self.level))
            })
            .as_ref()
    }

    /// Bytes held, counting the gzip form when it exists.
    pub(crate) fn weight(&self) -> usize {
        self.plain.len()
            + self
                .gzip
                .get()
                .and_then(Option::as_ref)
                .map_or(0, Bytes::len)
    }
}

fn compress(plain: &[u8], level: Compression) -> Bytes {
    // the fast level by default: a listing compresses to ~7 % of its size either way, in a third
    // of the time
    let mut encoder = GzEncoder::new(Vec::with_capacity(plain.len() / 8), level);
    // writing to a Vec cannot fail
    let _ = encoder.write_all(plain);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// A piece of a gzip answer compressed on its own, to be joined with others by [`GzipJoin`]
/// without compressing it again: raw deflate blocks ending byte-aligned (a sync flush), with the
/// CRC-32 and length of the bytes they hold.
#[derive(Debug, Clone)]
pub(crate) struct DeflateChunk {
    deflate: Bytes,
    crc: u32,
    len: u64,
}

impl DeflateChunk {
    /// Compresses `data` (at the fast level, as [`PreparedJson`]).
    pub(crate) fn new(data: &[u8]) -> Self {
        let mut crc = crc32fast::Hasher::new();
        crc.update(data);
        DeflateChunk {
            deflate: Bytes::from(deflate_sync(data)),
            crc: crc.finalize(),
            len: data.len() as u64,
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub(crate) fn weight(&self) -> usize {
        self.deflate.len()
    }
}

/// `data` as raw deflate blocks that end on a byte boundary and do not end the stream; stored
/// blocks if the compressor fails (it cannot on a `Vec`, but nothing here may panic).
fn deflate_sync(data: &[u8]) -> Vec<u8> {
    use flate2::{Compress, FlushCompress};
    let mut compress = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let done = usize::try_from(compress.total_in()).unwrap_or(data.len());
        if compress
            .compress_vec(&data[done.min(data.len())..], &mut out, FlushCompress::Sync)
            .is_err()
        {
            let mut stored = Vec::with_capacity(data.len() + 5 * (data.len() / 65_535 + 1));
            push_stored(&mut stored, data);
            return stored;
        }
        // a sync flush is complete when all input is taken and the output did not fill up
        if usize::try_from(compress.total_in()).is_ok_and(|n| n == data.len())
            && out.len() < out.capacity()
        {
            return out;
        }
    }
}

/// Appends `data` as stored (uncompressed), non-final deflate blocks; the output must be at a
/// byte boundary, and stays at one.
fn push_stored(out: &mut Vec<u8>, data: &[u8]) {
    for block in data.chunks(usize::from(u16::MAX)) {
        // BFINAL 0, BTYPE 00, padded to the byte; LEN and its complement, little-endian
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
}

/// A gzip document joined from [`DeflateChunk`]s compressed once and small literal pieces (stored
/// as they are): what a listing whose items are each prepared, but whose selection is not, is
/// served as. The result is one gzip member any client decodes.
#[derive(Debug)]
pub(crate) struct GzipJoin {
    out: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl GzipJoin {
    /// A document of about `capacity` compressed bytes.
    pub(crate) fn new(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity + 32);
        // magic, deflate, no flags, no time, no extra flags, unknown OS
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        GzipJoin {
            out,
            crc: crc32fast::Hasher::new(),
            len: 0,
        }
    }

    /// Appends bytes as they are (separators, a page's head).
    pub(crate) fn literal(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        push_stored(&mut self.out, data);
        self.crc.update(data);
        self.len += data.len() as u64;
    }

    /// Appends a compressed chunk.
    pub(crate) fn chunk(&mut self, chunk: &DeflateChunk) {
        self.out.extend_from_slice(&chunk.deflate);
        self.crc.combine(&crc32fast::Hasher::new_with_initial_len(
            chunk.crc, chunk.len,
        ));
        self.len += chunk.len;
    }

    /// The gzip document: a final empty block, then CRC-32 and length.
    pub(crate) fn finish(mut self) -> Bytes {
        self.out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        self.out
            .extend_from_slice(&self.crc.finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32
        self.out
            .extend_from_slice(&((self.len & 0xffff_ffff) as u32).to_le_bytes());
        Bytes::from(self.out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn gzip_form_decompresses_to_the_document_and_is_made_once() {
        let doc = format!("[{}0]", "{\"id\":\"device\",\"name\":null},".repeat(200));
        let prepared = PreparedJson::new(doc.clone());
        assert_eq!(prepared.weight(), doc.len());
        let gz = prepared.gzip().expect("large enough").clone();
        assert!(gz.len() < doc.len() / 4, "{} of {}", gz.len(), doc.len());
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .expect("valid gzip");
        assert_eq!(out, doc);
        // the same bytes again, not a second compression
        assert_eq!(prepared.gzip().map(|g| g.as_ptr()), Some(gz.as_ptr()));
        assert_eq!(prepared.weight(), doc.len() + gz.len());
    }

    #[test]
    fn a_compact_gzip_form_decompresses_to_the_document_and_is_not_larger() {
        // evidence-like items: the same shape with numbers that vary
        let doc = format!(
            "[{}0]",
            (0..400)
                .map(|i| format!(
                    "{{\"time\":\"2026-11-{:02}T{:02}:{:02}:{:02}Z\",\"delay_seconds\":{}}},",
                    i % 28 + 1,
                    i * 7 % 24,
                    i * 13 % 60,
                    i * 31 % 60,
                    20 + i * 17 % 70
                ))
                .collect::<String>()
        );
        let fast = PreparedJson::new(doc.clone());
        let compact = PreparedJson::new_compact(doc.clone());
        let gz = compact.gzip().expect("large enough");
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .expect("valid gzip");
        assert_eq!(out, doc);
        let fast_len = fast.gzip().map_or(0, Bytes::len);
        assert!(gz.len() <= fast_len, "{} vs {fast_len}", gz.len());
    }

    #[test]
    fn small_documents_have_no_gzip_form() {
        let prepared = PreparedJson::new(Bytes::from_static(b"{\"total\":0}"));
        assert!(prepared.gzip().is_none());
        assert_eq!(prepared.plain().as_ref(), b"{\"total\":0}");
    }

    #[test]
    fn joined_chunks_and_literals_decode_to_their_concatenation() {
        let items: Vec<String> = (0..50)
            .map(|i| {
                format!(
                    "{{\"entity_id\":\"sensor.item_{i}\",\"name\":\"Item {i}\",\"state\":null}}"
                )
            })
            .collect();
        let chunks: Vec<DeflateChunk> = items
            .iter()
            .map(|i| DeflateChunk::new(i.as_bytes()))
            .collect();
        let big = "x".repeat(70_000);
        let mut gz = GzipJoin::new(4096);
        let mut expected = String::from("{\"items\":[");
        gz.literal(expected.as_bytes());
        for (k, (item, chunk)) in items.iter().zip(&chunks).enumerate() {
            if k > 0 {
                gz.literal(b",");
                expected.push(',');
            }
            gz.chunk(chunk);
            expected.push_str(item);
        }
        // a literal longer than one stored block, an empty one, an empty chunk
        gz.literal(big.as_bytes());
        expected.push_str(&big);
        gz.literal(b"");
        gz.chunk(&DeflateChunk::new(b""));
        gz.literal(b"]}");
        expected.push_str("]}");
        let body = gz.finish();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut out)
            .expect("valid gzip");
        assert_eq!(out, expected);
        // a strict decoder checks the trailer (CRC and length) too
        let mut strict = flate2::read::MultiGzDecoder::new(&body[..]);
        let mut again = Vec::new();
        strict.read_to_end(&mut again).expect("valid gzip");
        assert_eq!(again, expected.as_bytes());
        assert!(chunks[0].weight() > 0);
    }
}
