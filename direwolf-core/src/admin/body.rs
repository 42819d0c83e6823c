//! Request bodies: read up to a limit, parsed as JSON into a type that refuses unknown fields.

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::StatusCode;
use hyper::body::{Body, Bytes};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use serde::de::DeserializeOwned;

use super::reply::ApiError;
use crate::error::BoxError;

/// The largest JSON body accepted.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// Reads `body`, refusing more than `limit` bytes with 413 (`what` names the thing in the
/// message). A declared `Content-Length` over the limit is refused before anything is read.
pub async fn read<B>(headers: &HeaderMap, body: B, limit: usize, what: &str) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the {what} is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body could not be read: {e}"
        ))),
    }
}

/// Reads and parses a JSON body: 415 unless `Content-Type: application/json`, 413 over
/// [`MAX_JSON_BYTES`], 400 for malformed JSON or fields that do not fit.
pub async fn json<T, B>(headers: &HeaderMap, body: B) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON (Content-Type: application/json)",
        ));
    }
    let bytes = read(headers, body, MAX_JSON_BYTES, "JSON body").await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
}
