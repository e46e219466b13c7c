//! Rendered JSON documents that are served many times, with their gzip form made once.
//!
//! Device listings (memoised per catalog snapshot), cached history answers and the OpenAPI
//! document are rendered once and served again and again. Browsers and most HTTP libraries ask
//! for gzip, and actix's `Compress` middleware would compress the same bytes on every request
//! (about a millisecond for a 60 KB listing, on the blocking pool: 2,200 listings/s instead of
//! 70,000 on the benchmark machine). A [`PreparedJson`] keeps the gzip form beside the plain one,
//! compressed the first time a client asks for it; the API serves whichever the client accepts
//! (`api::prepared_json_ok`). Written here rather than taken from a crate because no maintained
//! crate caches compressed forms of in-memory bodies for actix; this is a `OnceLock` and a call
//! to `flate2`.

use std::io::Write;
use std::sync::OnceLock;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

/// Documents smaller than this are not worth a stored gzip form (the middleware still
/// compresses them on request).
pub const MIN_GZIP_BYTES: usize = 1024;

/// A rendered JSON document and, once asked for, its gzip form.
#[derive(Debug)]
pub struct PreparedJson {
    plain: Bytes,
    gzip: OnceLock<Option<Bytes>>,
}

impl PreparedJson {
    /// Wraps a rendered document.
    pub fn new(plain: impl Into<Bytes>) -> Self {
        PreparedJson {
            plain: plain.into(),
            gzip: OnceLock::new(),
        }
    }

    /// The document as rendered.
    pub fn plain(&self) -> &Bytes {
        &self.plain
    }

    /// The gzip form, compressed on the first call; `None` for documents under
    /// [`MIN_GZIP_BYTES`].
    pub fn gzip(&self) -> Option<&Bytes> {
        self.gzip
            .get_or_init(|| (self.plain.len() >= MIN_GZIP_BYTES).then(|| compress(&self.plain)))
            .as_ref()
    }

    /// Bytes held, counting the gzip form when it exists.
    pub fn weight(&self) -> usize {
        self.plain.len()
            + self
                .gzip
                .get()
                .and_then(Option::as_ref)
                .map_or(0, Bytes::len)
    }
}

fn compress(plain: &[u8]) -> Bytes {
    // the fast level: a listing compresses to ~7 % of its size either way, in a third of the time
    let mut encoder = GzEncoder::new(Vec::with_capacity(plain.len() / 8), Compression::fast());
    // writing to a Vec cannot fail
    let _ = encoder.write_all(plain);
    Bytes::from(encoder.finish().unwrap_or_default())
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
    fn small_documents_have_no_gzip_form() {
        let prepared = PreparedJson::new(Bytes::from_static(b"{\"total\":0}"));
        assert!(prepared.gzip().is_none());
        assert_eq!(prepared.plain().as_ref(), b"{\"total\":0}");
    }
}
