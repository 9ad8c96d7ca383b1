//! Request bodies and the small response shapes of flat-manager's v1 API that the domain types
//! (`Build`, `BuildRef`, `Job`) do not cover. Field names are flat-manager's, including its mix of
//! kebab-case and snake_case (reference §1.2, Appendix B).

use std::collections::BTreeMap;

use flatbucket::domain::build::{Build, BuildRef};
use flatbucket::domain::token::Scope;
use serde::{Deserialize, Serialize};

/// `POST /api/v1/build`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateBuildRequest {
    pub repo: String,
    #[serde(rename = "app-id", skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(rename = "public-download", skip_serializing_if = "Option::is_none")]
    pub public_download: Option<bool>,
    #[serde(rename = "build-log-url", skip_serializing_if = "Option::is_none")]
    pub build_log_url: Option<String>,
}

/// `POST /api/v1/build/{id}/build_ref`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateBuildRefRequest {
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub commit: String,
    #[serde(rename = "build-log-url")]
    pub build_log_url: Option<String>,
}

/// `GET /api/v1/build/{id}/missing_objects` (sent gzip-compressed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingObjectsRequest<'a> {
    pub wanted: &'a [String],
}

/// The answer to [`MissingObjectsRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MissingObjectsResponse {
    pub missing: Vec<String>,
}

/// `POST /api/v1/build/{id}/upload_urls`, flatbucket's extension of the upload API (sent
/// gzip-compressed): presigned requests for sending these objects straight to storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadUrlsRequest<'a> {
    pub objects: &'a [DeclaredObject],
}

/// An object to send directly: its upload filename and its exact size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeclaredObject {
    pub name: String,
    pub size: u64,
}

/// The answer to [`UploadUrlsRequest`]: a request per object the server takes directly; the
/// others go by multipart. No entries at all: the server cannot take direct uploads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UploadUrlsResponse {
    pub urls: BTreeMap<String, DirectUpload>,
}

/// How to send one object: `method` to `url` with exactly `headers` (the URL is the credential).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DirectUpload {
    pub url: String,
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `POST /api/v1/build/{id}/add_extra_ids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtraIdsRequest {
    pub ids: Vec<String>,
}

/// `POST /api/v1/build/{id}/commit`: `token_type` is only sent when given, as both clients do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CommitRequest {
    pub endoflife: Option<String>,
    pub endoflife_rebase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<i32>,
}

/// The body of every job-reading GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JobRequest {
    #[serde(rename = "log-offset")]
    pub log_offset: usize,
}

/// A body that must be present but says nothing: `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `POST /api/v1/token_subset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenSubsetRequest {
    pub name: String,
    pub sub: String,
    pub scope: Vec<Scope>,
    pub duration: i64,
}

/// The answer to [`TokenSubsetRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token: String,
}

/// `POST /api/v1/prune`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneRequest {
    pub repo: String,
}

/// A check hook's row (`checks` table), as `GET /build/{id}/extended` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub check_name: String,
    pub build_id: i64,
    pub job_id: i64,
    /// 0 Pending, 1 Passed, 2 PassedWithWarnings, 3 Failed, 4 ReviewRequired.
    pub status: i64,
    pub status_reason: Option<String>,
    pub results: Option<String>,
}

impl Check {
    pub const FAILED: i64 = 3;
}

/// `GET /api/v1/build/{id}/extended`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BuildExtended {
    pub build: Build,
    pub build_refs: Vec<BuildRef>,
    #[serde(default)]
    pub checks: Vec<Check>,
}

/// flat-manager's JSON error body (reference §1.1). Every field is optional so that the synthesised
/// body for a non-JSON answer (`{"message": "Non-json error from server: …"}`) fits too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(rename = "error-type", skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(rename = "current-state", skip_serializing_if = "Option::is_none")]
    pub current_state: Option<String>,
    #[serde(rename = "expected-state", skip_serializing_if = "Option::is_none")]
    pub expected_state: Option<String>,
}

impl ApiErrorBody {
    /// Parses an error body, or wraps a non-JSON one the way the Rust client does.
    pub fn from_body(body: &str) -> Self {
        match serde_json::from_str::<Self>(body) {
            Ok(parsed) if !parsed.message.is_empty() || parsed.error_type.is_some() => parsed,
            _ => Self { message: format!("Non-json error from server: {body}"), ..Self::default() },
        }
    }
}

/// A job's `results`, re-parsed from the JSON string the API carries. Known keys are typed; any
/// other key is kept as it came.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobResults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refs: Option<BTreeMap<String, String>>,
    #[serde(rename = "update-repo-job", skip_serializing_if = "Option::is_none")]
    pub update_repo_job: Option<i64>,
    #[serde(rename = "error-message", skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_use_flat_managers_field_names() {
        let create = CreateBuildRequest {
            repo: "stable".into(),
            app_id: Some("org.x.Y".into()),
            public_download: Some(false),
            build_log_url: None,
        };
        let expected = json!({"repo": "stable", "app-id": "org.x.Y", "public-download": false});
        assert_eq!(serde_json::to_value(create).unwrap(), expected);
        let build_ref =
            CreateBuildRefRequest { ref_name: "app/a/x86_64/stable".into(), commit: "c".into(), build_log_url: None };
        let expected = json!({"ref": "app/a/x86_64/stable", "commit": "c", "build-log-url": null});
        assert_eq!(serde_json::to_value(build_ref).unwrap(), expected);
        assert_eq!(serde_json::to_value(JobRequest { log_offset: 7 }).unwrap(), json!({"log-offset": 7}));
        assert_eq!(serde_json::to_value(Empty {}).unwrap(), json!({}));
    }

    #[test]
    fn upload_urls_bodies_and_answers_use_the_documented_shape() {
        let objects = [DeclaredObject { name: "a.filez".into(), size: 3 << 20 }];
        let body = serde_json::to_value(UploadUrlsRequest { objects: &objects }).unwrap();
        assert_eq!(body, json!({"objects": [{"name": "a.filez", "size": 3 << 20}]}));
        let answer: UploadUrlsResponse =
            serde_json::from_value(json!({"urls": {"a.filez": {"url": "http://s3/k?X-Amz-Signature=s",
            "method": "PUT", "headers": {"content-type": "application/octet-stream", "content-length": "3145728"}}}}))
            .unwrap();
        assert_eq!(answer.urls["a.filez"].method, "PUT");
        assert_eq!(answer.urls["a.filez"].headers["content-length"], "3145728");
        let none: UploadUrlsResponse = serde_json::from_str(r#"{"urls": {}}"#).unwrap();
        assert!(none.urls.is_empty());
    }

    #[test]
    fn commit_body_sends_token_type_only_when_given() {
        let body = serde_json::to_value(CommitRequest::default()).unwrap();
        assert_eq!(body, json!({"endoflife": null, "endoflife_rebase": null}));
        let body = CommitRequest { endoflife: Some("gone".into()), endoflife_rebase: None, token_type: Some(1) };
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            json!({"endoflife": "gone", "endoflife_rebase": null, "token_type": 1})
        );
    }

    #[test]
    fn error_bodies_parse_or_are_wrapped() {
        let body = r#"{"status":400,"error-type":"wrong-repo-state","message":"Build is not committed",
            "current-state":"uploading","expected-state":"ready"}"#;
        let parsed = ApiErrorBody::from_body(body);
        assert_eq!(parsed.current_state.as_deref(), Some("uploading"));
        assert_eq!(parsed.status, Some(400));
        let wrapped = ApiErrorBody::from_body("Json deserialize error");
        assert_eq!(
            serde_json::to_value(wrapped).unwrap(),
            json!({"message": "Non-json error from server: Json deserialize error"})
        );
    }

    #[test]
    fn job_results_keep_unknown_keys() {
        let results: JobResults =
            serde_json::from_str(r#"{"refs":{"app/a/x/s":"abc"},"update-repo-job":5,"x":1}"#).unwrap();
        assert_eq!(results.update_repo_job, Some(5));
        assert_eq!(results.other["x"], json!(1));
        let back = serde_json::to_value(&results).unwrap();
        assert_eq!(back, json!({"refs": {"app/a/x/s": "abc"}, "update-repo-job": 5, "x": 1}));
    }
}
