//! `Params<T>`: query-string parameters whose errors name the parameter.
//!
//! actix-web's own `Query` reports `invalid digit found in string` without saying which parameter
//! held it; decoding through `serde_path_to_error` gives the key, which the 400 answer names in
//! `field`. Unknown parameters are refused (`deny_unknown_fields` on the parameter structs), so a
//! typo is an error, not a silently ignored filter.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Decoded query parameters.
#[derive(Debug)]
pub(crate) struct Params<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Params<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(decode(req.query_string()).map(Params))
    }
}

/// A numeric parameter within `1..=max`, `default` when absent; else 400 naming `field`.
pub(crate) fn within<T>(field: &str, value: Option<T>, default: T, max: T) -> Result<T, ApiError>
where
    T: PartialOrd + From<u8> + std::fmt::Display + Copy,
{
    match value {
        None => Ok(default),
        Some(v) if v >= T::from(1) && v <= max => Ok(v),
        Some(v) => Err(ApiError::invalid(
            field,
            format!("{field} must be 1..{max}, got {v}"),
        )),
    }
}

/// Decodes a query string, naming the offending key on error.
pub(crate) fn decode<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = if path == "." || path.is_empty() {
            // unknown or missing fields are reported at the top level with the name in the text
            inner
                .split('`')
                .nth(1)
                .map(str::to_owned)
                .unwrap_or_else(|| "query".into())
        } else {
            path
        };
        ApiError::invalid(field.clone(), format!("{field}: {inner}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[allow(dead_code)]
        limit: Option<u32>,
        #[allow(dead_code)]
        q: Option<String>,
    }

    fn field_of(query: &str) -> Option<String> {
        decode::<P>(query).err().and_then(|e| e.body().error.field)
    }

    #[test]
    fn errors_name_the_parameter() {
        assert!(decode::<P>("limit=5&q=a%20b").is_ok());
        assert_eq!(field_of("limit=abc").as_deref(), Some("limit"));
        assert_eq!(field_of("limit=-1").as_deref(), Some("limit"));
        assert_eq!(field_of("limt=5").as_deref(), Some("limt"));
    }
}
