//! The one mapping from failures to HTTP: flat-manager's JSON error format
//! (`status`, `error-type`, `message`, and `current-state`/`expected-state` for wrong states).
//! Internal details are logged, never returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::domain::build::{StateKind, WrongState};
use crate::state::StateError;
use crate::store::StoreError;

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("internal error: {0}")]
    Internal(String),
    #[error("Not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error(transparent)]
    WrongState(WrongState),
    #[error("{0}")]
    InvalidToken(String),
    #[error("Not enough permissions: {0}")]
    Forbidden(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(detail.into())
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest(_) | Self::WrongState(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Internal(_) => "internal-error",
            Self::NotFound => "not-found",
            Self::BadRequest(_) => "generic-error",
            Self::PayloadTooLarge(_) => "payload-too-large",
            Self::WrongState(w) if w.kind == StateKind::Repo => "wrong-repo-state",
            Self::WrongState(_) => "wrong-published-state",
            Self::InvalidToken(_) => "invalid-token",
            Self::Forbidden(_) => "token-insufficient",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "Internal Server Error".to_owned()
            }
            other => other.to_string(),
        };
        let mut body = json!({ "status": status.as_u16(), "error-type": self.error_type(), "message": message });
        if let Self::WrongState(w) = &self {
            body["current-state"] = json!(w.current);
            body["expected-state"] = json!(w.expected);
        }
        (status, Json(body)).into_response()
    }
}

impl From<StateError> for ApiError {
    fn from(error: StateError) -> Self {
        match error {
            StateError::NotFound => Self::NotFound,
            StateError::WrongState(w) => Self::WrongState(w),
            StateError::Revoked => Self::InvalidToken("Token has been revoked".into()),
            StateError::Backend(detail) => Self::Internal(detail),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(_) => Self::NotFound,
            other => Self::Internal(other.to_string()),
        }
    }
}
