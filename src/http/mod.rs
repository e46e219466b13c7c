//! HTTP building blocks shared by every capability's routes: the error shape ([`error`]),
//! query and path extractors ([`extract`]), JSON body decoding and the common answers; and what
//! every outbound request shares ([`outbound`]).
//!
//! A leaf: it imports nothing else of HomeIQ, so `api`, `webhooks` and future capabilities can
//! all build their routes on it without depending on each other.

pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod outbound;

use serde::de::DeserializeOwned;

use error::ApiError;

/// A 200 whose JSON body is already rendered (pre-rendered catalog JSON, cached answers).
pub(crate) fn json_ok<B: actix_web::body::MessageBody + 'static>(
    body: B,
) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(body)
}

/// A 200 with a prepared JSON document: its stored gzip form when the client accepts gzip,
/// else the plain bytes.
pub(crate) fn prepared_json_ok(
    request: &actix_web::HttpRequest,
    doc: &crate::prepared::PreparedJson,
) -> actix_web::HttpResponse {
    match doc.gzip().filter(|_| accepts_gzip(request)) {
        Some(gzip) => gzip_json_ok(gzip.clone()),
        None => json_ok(doc.plain().clone()),
    }
}

/// Whether the client takes a gzip answer (`Accept-Encoding`).
/// Whether the client prefers gzip to an unencoded answer.
pub(crate) fn accepts_gzip(request: &actix_web::HttpRequest) -> bool {
    use actix_web::http::header::{AcceptEncoding, Encoding, Header};
    AcceptEncoding::parse(request).is_ok_and(|accept| {
        accept.negotiate([Encoding::gzip(), Encoding::identity()].iter()) == Some(Encoding::gzip())
    })
}

/// A 200 whose JSON body is already gzip-compressed.
pub(crate) fn gzip_json_ok(gzip: bytes::Bytes) -> actix_web::HttpResponse {
    use actix_web::http::header::{self, ContentEncoding, HeaderValue};
    actix_web::HttpResponse::Ok()
        .content_type(header::ContentType::json())
        .insert_header(ContentEncoding::Gzip)
        .insert_header((header::VARY, HeaderValue::from_static("accept-encoding")))
        .body(gzip)
}

/// The OpenAPI document of every route [`configure`] registers.
/// Decodes a JSON body, naming the field at fault.
pub(crate) fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let named = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| message.split_once(p))
            .and_then(|(_, rest)| rest.split('`').next())
            .map(str::to_owned);
        let field = match (path.as_str(), named) {
            ("." | "", Some(name)) => name,
            ("." | "", None) => "body".to_owned(),
            // a top-level array: the body is not an object
            (p, _) if p.starts_with('[') => "body".to_owned(),
            (p, Some(name)) if !p.ends_with(&name) && message.starts_with("missing") => {
                format!("{p}.{name}")
            }
            (p, _) => p.to_owned(),
        };
        ApiError::invalid(field.clone(), format!("{field}: {message}"))
    })?;
    de.end()
        .map_err(|e| ApiError::invalid("body", format!("invalid JSON body: {e}")))?;
    Ok(value)
}
