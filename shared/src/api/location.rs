//! Absolute `Location` headers, built from the request's Host / `X-Forwarded-*` headers as
//! flat-manager does (clients follow them), falling back to the configured base URL.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

/// The absolute URL of `path` as the client reached us.
pub fn absolute_url(headers: &HeaderMap, app: &AppState, path: &str) -> String {
    let get =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.split(',').next().unwrap_or(v).trim());
    match get("x-forwarded-host").or_else(|| get(header::HOST.as_str())) {
        Some(host) => format!("{}://{host}{path}", get("x-forwarded-proto").unwrap_or("http")),
        None => format!("{}{path}", app.config.public_base_url()),
    }
}

/// `response` with a `Location` header pointing at `path`.
pub fn with_location(headers: &HeaderMap, app: &AppState, path: &str, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    if let Ok(value) = HeaderValue::from_str(&absolute_url(headers, app, path)) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
