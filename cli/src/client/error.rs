//! What can go wrong in a client command, by meaning, and which failures are worth retrying.
//! Each variant maps to one of the output document's error shapes (reference §6.1) in
//! [`super::output`].

use super::output::JobReport;
use super::wire::{ApiErrorBody, Check};

/// A failed client operation.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("{url} answered HTTP {status}: {}", details.message)]
    Api { url: String, status: u16, details: Box<ApiErrorBody> },
    /// The request never got an answer: connection refused or reset, timeout, broken body.
    #[error("request to {url} failed: {}", chain(source))]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// An upload answer did not account for every part sent.
    #[error("incomplete upload: sent {sent} part(s), the server stored {stored}")]
    IncompleteUpload { sent: usize, stored: usize },
    /// A job ended broken.
    #[error("Job {} failed: {}", .0.id, .0.error_message().unwrap_or("see its log"))]
    JobFailed(Box<JobReport>),
    /// A check hook failed the build.
    #[error("Check {} failed: {}", .0.check_name, .0.status_reason.as_deref().unwrap_or("no reason given"))]
    CheckFailed(Box<Check>),
    /// The command line or its inputs are unusable.
    #[error("{0}")]
    Usage(String),
    /// Anything else, with a short kebab-case kind.
    #[error("{message}")]
    Other { kind: &'static str, message: String },
}

impl ClientError {
    /// Worth trying again: server errors, lost connections, timeouts and incomplete uploads.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { status, .. } => *status >= 500,
            Self::Transport { source, .. } => is_transient(source),
            Self::IncompleteUpload { .. } => true,
            _ => false,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error body of an API error.
    pub fn api_details(&self) -> Option<&ApiErrorBody> {
        match self {
            Self::Api { details, .. } => Some(details),
            _ => None,
        }
    }

    pub fn other(kind: &'static str, message: impl Into<String>) -> Self {
        Self::Other { kind, message: message.into() }
    }

    pub fn transport(url: &str, source: reqwest::Error) -> Self {
        Self::Transport { url: url.to_owned(), source }
    }
}

/// An error with its sources: reqwest's own message ("error sending request") hides the cause.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A transport failure that another attempt may not hit. Decoding errors (a malformed answer) and
/// request-building errors are deterministic and are not retried.
fn is_transient(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> ClientError {
        ClientError::Api { url: "http://h/x".into(), status, details: Box::default() }
    }

    #[test]
    fn server_errors_and_incomplete_uploads_are_retryable() {
        assert!(api(500).is_retryable());
        assert!(api(503).is_retryable());
        assert!(ClientError::IncompleteUpload { sent: 3, stored: 2 }.is_retryable());
    }

    #[test]
    fn client_errors_and_usage_are_not_retryable() {
        for status in [400, 401, 403, 404] {
            assert!(!api(status).is_retryable(), "{status}");
        }
        assert!(!ClientError::Usage("x".into()).is_retryable());
        assert!(!ClientError::other("local-repo", "x").is_retryable());
    }

    #[tokio::test]
    async fn refused_connections_are_retryable() {
        // A port that was just free: nothing listens there, so connecting fails at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/");
        let error = ClientError::transport(&url, reqwest::get(&url).await.unwrap_err());
        assert!(error.is_retryable());
        assert!(error.to_string().to_lowercase().contains("refused"), "the cause is shown: {error}");
    }
}
