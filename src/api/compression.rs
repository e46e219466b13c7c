//! Response compression: actix's `Compress` middleware, except for bodies too small to gain.
//!
//! `Compress` has no size threshold: whenever the client accepts gzip it sets up a deflate stream
//! (a few hundred KB of state) even for a 100-byte `/health` answer, which halved `/health`'s
//! throughput under browser-like load. It leaves alone any response that already names a
//! `Content-Encoding`, so [`mark_small_bodies`], wrapped inside it, marks bodies under
//! [`MIN_GZIP_BYTES`] `identity`, and [`unmark`], wrapped outside it, takes the marker off again
//! (`identity` is not a value to send in `Content-Encoding`). Large answers served many times
//! are compressed once instead ([`crate::prepared`]).

use actix_web::Error;
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_ENCODING, HeaderValue};
use actix_web::middleware::Next;

use crate::prepared::MIN_GZIP_BYTES;

const IDENTITY: HeaderValue = HeaderValue::from_static("identity");

/// Marks responses whose body is known to be under [`MIN_GZIP_BYTES`] so that `Compress` skips
/// them; wrap it inside `Compress`.
pub(crate) async fn mark_small_bodies(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let mut res = next.call(req).await?;
    let small = match res.response().body().size() {
        BodySize::Sized(n) => n < MIN_GZIP_BYTES as u64,
        BodySize::None => true,
        BodySize::Stream => false,
    };
    if small && !res.headers().contains_key(CONTENT_ENCODING) {
        res.headers_mut().insert(CONTENT_ENCODING, IDENTITY);
    }
    Ok(res)
}

/// Removes the marker [`mark_small_bodies`] set; wrap it outside `Compress`.
pub(crate) async fn unmark(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let mut res = next.call(req).await?;
    if res.headers().get(CONTENT_ENCODING) == Some(&IDENTITY) {
        res.headers_mut().remove(CONTENT_ENCODING);
    }
    Ok(res)
}
