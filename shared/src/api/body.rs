//! Request bodies: JSON, possibly gzip-compressed (`Content-Encoding: gzip`, as clients send
//! `missing_objects`), possibly on a GET, with limits on the *decompressed* size so a gzip bomb
//! costs nothing.

use std::io::Read;

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderMap};
use flate2::read::GzDecoder;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Most JSON bodies (flat-manager's default).
pub const JSON_LIMIT: usize = 2 * 1024 * 1024;
/// `missing_objects` bodies.
pub const WANTED_LIMIT: usize = 10 * 1024 * 1024;

/// Reads a JSON body of at most `limit` bytes after decompression. An empty body parses as `{}`
/// so job routes tolerate clients that send none.
pub async fn read_json<T: DeserializeOwned>(headers: &HeaderMap, body: Body, limit: usize) -> Result<T, ApiError> {
    let too_large = || ApiError::PayloadTooLarge(format!("Request body is larger than {limit} bytes"));
    let raw = to_bytes(body, limit).await.map_err(|_| too_large())?;
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    let bytes = match encoding.trim().to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => gunzip(&raw, limit).ok_or_else(too_large)??,
        "identity" | "" => raw.to_vec(),
        other => return Err(ApiError::bad_request(format!("Unsupported Content-Encoding {other:?}"))),
    };
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}".to_vec() } else { bytes };
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))
}

/// `None` when the output exceeds `limit`; `Some(Err)` for corrupt data.
fn gunzip(data: &[u8], limit: usize) -> Option<Result<Vec<u8>, ApiError>> {
    let mut out = Vec::new();
    match GzDecoder::new(data).take(limit as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => None,
        Ok(_) => Some(Ok(out)),
        Err(e) => Some(Err(ApiError::bad_request(format!("Invalid gzip body: {e}")))),
    }
}
