//! Request bodies: JSON, possibly gzip-compressed (`Content-Encoding: gzip`, as clients send
//! `missing_objects`), possibly on a GET, with limits on the *decompressed* size so a gzip bomb
//! costs nothing; and the deployment's limit on any request body (a Lambda function's payload).

use std::io::Read;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use bytes::BytesMut;
use flate2::read::GzDecoder;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::app::AppState;

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

/// Refuses a request whose body is larger than [`AppState::max_request_body`] with 413, saying
/// how to send less; without that limit requests pass as they are. Under the limit the body is
/// read whole first (on Lambda it already is: the function receives it in its event).
pub async fn limit_request_body(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(limit) = app.max_request_body else {
        return Ok(next.run(request).await);
    };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(size) = declared.filter(|size| *size > limit) {
        return Err(too_large_request(Some(size), limit));
    }
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut bytes = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("Broken request body: {e}")))?;
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(too_large_request(None, limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(next.run(Request::from_parts(parts, Body::from(bytes.freeze()))).await)
}

fn too_large_request(size: Option<u64>, limit: u64) -> ApiError {
    let size = size.map_or_else(|| "Request body".to_owned(), |size| format!("Request body of {size} bytes"));
    ApiError::PayloadTooLarge(format!(
        "{size} is larger than this server's limit of {limit} bytes per request (the payload limit of its \
         Lambda functions): send objects of 1 MiB or more through upload_urls (presigned direct uploads) and \
         the rest in smaller multipart batches"
    ))
}
