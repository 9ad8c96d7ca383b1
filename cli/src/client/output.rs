//! The output document every command produces (reference §6.1): `{"command", "result"}` on success,
//! `{"command", "error"}` on failure, pretty JSON on stdout (`--print-output`) and/or in a file
//! (`--output`), and the result shapes commands decorate API objects with.

use std::path::Path;

use flatbucket::domain::job::{Job, JobKind, JobStatus, StartAfter};
use serde::Serialize;

use super::error::ClientError;
use super::wire::{ApiErrorBody, Check, JobResults};

/// An API object with the URL it lives at (`create`'s build, a commit or publish job).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Located<T> {
    #[serde(flatten)]
    pub inner: T,
    pub location: String,
}

/// A job as commands present it: `results` re-parsed into an object, its URL, and for publish jobs
/// the update-repo job nested as `update_job`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobReport {
    pub id: i64,
    pub kind: JobKind,
    pub status: JobStatus,
    pub contents: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<JobResults>,
    pub log: String,
    pub start_after: Option<StartAfter>,
    pub repo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_job: Option<Box<JobReport>>,
}

impl JobReport {
    pub fn new(job: Job, location: Option<String>) -> Self {
        let results = job.results.as_deref().map(parse_results);
        Self {
            id: job.id,
            kind: job.kind,
            status: job.status,
            contents: job.contents,
            results,
            log: job.log,
            start_after: job.start_after,
            repo: job.repo,
            location,
            update_job: None,
        }
    }

    /// The `error-message` of a broken job.
    pub fn error_message(&self) -> Option<&str> {
        self.results.as_ref()?.error_message.as_deref()
    }

    /// The update-repo job a publish queued, from `results`.
    pub fn update_repo_job(&self) -> Option<i64> {
        self.results.as_ref()?.update_repo_job
    }
}

/// Parses a job's `results` string; a string that is not an object is kept under `raw`.
fn parse_results(text: &str) -> JobResults {
    serde_json::from_str(text).unwrap_or_else(|_| {
        let mut results = JobResults::default();
        results.other.insert("raw".into(), serde_json::Value::String(text.to_owned()));
        results
    })
}

/// The whole output document.
#[derive(Debug, Serialize)]
pub struct Document<'a, T: Serialize> {
    pub command: &'a str,
    #[serde(flatten)]
    pub outcome: Outcome<'a, T>,
}

/// A command's result or its error.
#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome<'a, T: Serialize> {
    Result(T),
    Error(ErrorShape<'a>),
}

/// The error shapes both flat-manager clients write.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ErrorShape<'a> {
    Api { url: &'a str, status_code: u16, details: &'a ApiErrorBody },
    Job { job: FailedJob<'a> },
    Usage { details: Message },
    Exception { details: Exception },
    IncompleteUpload { details: Sent },
}

/// What failed in a `job` error: the job itself, or a check row.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum FailedJob<'a> {
    Job(&'a JobReport),
    Check(&'a Check),
}

#[derive(Debug, Serialize)]
pub struct Message {
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct Exception {
    #[serde(rename = "error-type")]
    pub error_type: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct Sent {
    pub sent: usize,
    pub stored: usize,
}

impl<'a> ErrorShape<'a> {
    pub fn of(error: &'a ClientError) -> Self {
        match error {
            ClientError::Api { url, status, details } => Self::Api { url, status_code: *status, details },
            ClientError::JobFailed(job) => Self::Job { job: FailedJob::Job(job) },
            ClientError::CheckFailed(check) => Self::Job { job: FailedJob::Check(check) },
            ClientError::Usage(message) => Self::Usage { details: Message { message: message.clone() } },
            ClientError::IncompleteUpload { sent, stored } => {
                Self::IncompleteUpload { details: Sent { sent: *sent, stored: *stored } }
            }
            ClientError::Transport { .. } => Self::exception("transport-error", error),
            ClientError::Other { kind, .. } => Self::exception(kind, error),
        }
    }

    fn exception(kind: &str, error: &ClientError) -> Self {
        Self::Exception { details: Exception { error_type: kind.to_owned(), message: format!("{error}") } }
    }
}

/// Where the document goes.
#[derive(Debug, Clone, Default)]
pub struct OutputTarget<'a> {
    pub print: bool,
    pub file: Option<&'a Path>,
}

impl OutputTarget<'_> {
    /// Writes the document as pretty JSON to the chosen places.
    pub fn write<T: Serialize>(&self, document: &Document<'_, T>) -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(document).map_err(std::io::Error::other)?;
        text.push('\n');
        if self.print {
            print!("{text}");
        }
        if let Some(path) = self.file {
            std::fs::write(path, text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: JobStatus, results: Option<&str>) -> Job {
        Job {
            id: 4,
            kind: JobKind::Publish,
            status,
            contents: r#"{"build":1}"#.into(),
            results: results.map(str::to_owned),
            log: "Publishing\n".into(),
            start_after: None,
            repo: Some("stable".into()),
        }
    }

    fn document<T: Serialize>(command: &str, outcome: Outcome<'_, T>) -> serde_json::Value {
        serde_json::to_value(Document { command, outcome }).unwrap()
    }

    #[test]
    fn success_documents_carry_the_result() {
        let mut report =
            JobReport::new(job(JobStatus::Ended, Some(r#"{"update-repo-job":5}"#)), Some("http://l".into()));
        report.update_job = Some(Box::new(JobReport::new(job(JobStatus::Ended, Some("{}")), None)));
        let value = document("publish", Outcome::Result(&report));
        assert_eq!(value["command"], "publish");
        assert_eq!(value["result"]["results"], json!({"update-repo-job": 5}));
        assert_eq!(value["result"]["contents"], r#"{"build":1}"#);
        assert_eq!(value["result"]["location"], "http://l");
        assert_eq!(value["result"]["update_job"]["results"], json!({}));
        assert_eq!(value["result"]["status"], 2);
        assert!(value.get("error").is_none());
    }

    #[test]
    fn error_documents_use_flat_managers_shapes() {
        let details =
            ApiErrorBody { status: Some(403), message: "Not enough permissions".into(), ..Default::default() };
        let api = ClientError::Api { url: "http://h/api/v1/build".into(), status: 403, details: Box::new(details) };
        let value = document::<()>("create", Outcome::Error(ErrorShape::of(&api)));
        assert_eq!(
            value,
            json!({"command": "create", "error": {"type": "api", "url": "http://h/api/v1/build", "status_code": 403,
                "details": {"status": 403, "message": "Not enough permissions"}}})
        );
        let usage = ClientError::Usage("No token".into());
        let value = document::<()>("push", Outcome::Error(ErrorShape::of(&usage)));
        assert_eq!(value["error"], json!({"type": "usage", "details": {"message": "No token"}}));
        let incomplete = ClientError::IncompleteUpload { sent: 3, stored: 2 };
        let value = document::<()>("push", Outcome::Error(ErrorShape::of(&incomplete)));
        assert_eq!(value["error"], json!({"type": "incomplete-upload", "details": {"sent": 3, "stored": 2}}));
        let other = ClientError::other("local-repo-error", "no such repo");
        let value = document::<()>("push", Outcome::Error(ErrorShape::of(&other)));
        assert_eq!(value["error"]["details"], json!({"error-type": "local-repo-error", "message": "no such repo"}));
    }

    #[test]
    fn failed_jobs_are_reported_with_parsed_results() {
        let report = JobReport::new(job(JobStatus::Broken, Some(r#"{"error-message":"boom"}"#)), None);
        assert_eq!(report.error_message(), Some("boom"));
        let failed = ClientError::JobFailed(Box::new(report));
        let value = document::<()>("commit", Outcome::Error(ErrorShape::of(&failed)));
        assert_eq!(value["error"]["type"], "job");
        assert_eq!(value["error"]["job"]["results"], json!({"error-message": "boom"}));
        assert_eq!(value["error"]["job"]["status"], 3);
    }

    #[test]
    fn unparsable_results_are_kept_raw() {
        let report = JobReport::new(job(JobStatus::Ended, Some("not json")), None);
        assert_eq!(serde_json::to_value(report.results).unwrap(), json!({"raw": "not json"}));
    }
}
