//! Typed calls to flat-manager's v1 API. Every call carries the bearer token, is retried by the
//! [`RetryPolicy`], and maps error answers to [`ClientError::Api`] with the server's error body.
//! Request bodies are serialised once and re-sent as they are on each attempt.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flatbucket::domain::build::{Build, BuildRef};
use flatbucket::domain::job::Job;
use flate2::write::GzEncoder;
use flate2::Compression;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ClientError;
use super::retry::{with_retry, RetryPolicy};
use super::urls::{absolute_location, BuildUrl, ManagerUrl};
use super::wire::*;

/// flat-manager's client gives each request 90 minutes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90 * 60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const USER_AGENT: &str = concat!("flatbucket-client/", env!("CARGO_PKG_VERSION"));

/// An answer body with the absolute `Location` header, when the server sent one.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    pub body: T,
    pub location: Option<String>,
}

/// One file of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPart {
    /// `<64 hex>.<ext>` for objects, `<b64>.<part>.delta` for delta parts.
    pub filename: String,
    pub data: Bytes,
}

/// A serialised request body.
#[derive(Debug, Clone)]
enum Body {
    None,
    Json(Bytes),
    GzipJson(Bytes),
    Multipart { boundary: String, segments: Vec<Bytes> },
}

/// The API as one token sees it.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    token: Arc<str>,
    retry: RetryPolicy,
}

impl Api {
    pub fn new(token: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ClientError::other("http-client", format!("cannot set up HTTP: {e}")))?;
        Ok(Self { http, token: token.into(), retry: RetryPolicy::default() })
    }

    /// The same client presenting another token (for `--minimal-token`).
    pub fn with_token(&self, token: &str) -> Self {
        Self { token: token.into(), ..self.clone() }
    }

    pub fn with_retry_policy(self, retry: RetryPolicy) -> Self {
        Self { retry, ..self }
    }

    pub async fn create_build(
        &self,
        manager: &ManagerUrl,
        request: &CreateBuildRequest,
    ) -> Result<Reply<Build>, ClientError> {
        self.call(Method::POST, &manager.api("build"), json(request)?).await
    }

    pub async fn get_build(&self, build: &BuildUrl) -> Result<Build, ClientError> {
        Ok(self.call(Method::GET, build.as_str(), Body::None).await?.body)
    }

    pub async fn build_extended(&self, build: &BuildUrl) -> Result<BuildExtended, ClientError> {
        Ok(self.call(Method::GET, &build.join("extended"), Body::None).await?.body)
    }

    /// Which of `wanted` (at most a chunk of names) the server lacks.
    pub async fn missing_objects(&self, build: &BuildUrl, wanted: &[String]) -> Result<Vec<String>, ClientError> {
        let body = gzip_json(&MissingObjectsRequest { wanted })?;
        let reply: Reply<MissingObjectsResponse> = self.call(Method::GET, &build.join("missing_objects"), body).await?;
        Ok(reply.body.missing)
    }

    /// Uploads `parts` in one multipart request; the answer must account for every part.
    pub async fn upload(&self, build: &BuildUrl, parts: &[UploadPart]) -> Result<Vec<u64>, ClientError> {
        let url = build.join("upload");
        let boundary = format!("flatbucket-{:032x}", SmallRng::from_entropy().gen::<u128>());
        let body = Body::Multipart { segments: multipart_segments(parts, &boundary), boundary };
        with_retry(self.retry, "upload", || async {
            let stored: Vec<u64> = self.attempt(&Method::POST, &url, &body).await?.body;
            if stored.len() != parts.len() {
                return Err(ClientError::IncompleteUpload { sent: parts.len(), stored: stored.len() });
            }
            Ok(stored)
        })
        .await
    }

    /// Presigned requests for sending `objects` straight to storage (flatbucket's `upload_urls`),
    /// or `None` when the server has no such route (flat-manager answers 404).
    pub async fn upload_urls(
        &self,
        build: &BuildUrl,
        objects: &[DeclaredObject],
    ) -> Result<Option<BTreeMap<String, DirectUpload>>, ClientError> {
        let body = gzip_json(&UploadUrlsRequest { objects })?;
        match self.call::<UploadUrlsResponse>(Method::POST, &build.join("upload_urls"), body).await {
            Ok(reply) => Ok(Some(reply.body.urls)),
            Err(e) if matches!(e.status(), Some(404 | 405)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends one object of `size` bytes to its presigned request, streamed from `open` (called
    /// again for every attempt), retried like every call. The bearer token is not sent: the URL is
    /// the credential, and it is kept out of error messages.
    pub async fn put_direct<F, Fut>(&self, upload: &DirectUpload, size: u64, open: F) -> Result<(), ClientError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<reqwest::Body, ClientError>>,
    {
        let shown = upload.url.split('?').next().unwrap_or_default();
        let invalid = |e: &dyn std::fmt::Display| ClientError::other("invalid-response", format!("{shown}: {e}"));
        let method = Method::from_bytes(upload.method.as_bytes()).map_err(|e| invalid(&e))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &upload.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(&e))?;
            headers.insert(name, HeaderValue::from_str(value).map_err(|e| invalid(&e))?);
        }
        // A streamed body has no length of its own; S3 wants this one, and it is the signed one.
        headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
        with_retry(self.retry, "direct upload", || async {
            let request = self.http.request(method.clone(), &upload.url).headers(headers.clone());
            let response =
                request.body(open().await?).send().await.map_err(|e| ClientError::transport(shown, e.without_url()))?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let text = response.text().await.unwrap_or_default();
            let details = Box::new(ApiErrorBody::from_body(&text));
            Err(ClientError::Api { url: shown.to_owned(), status: status.as_u16(), details })
        })
        .await
    }

    pub async fn create_build_ref(
        &self,
        build: &BuildUrl,
        request: &CreateBuildRefRequest,
    ) -> Result<BuildRef, ClientError> {
        Ok(self.call(Method::POST, &build.join("build_ref"), json(request)?).await?.body)
    }

    pub async fn add_extra_ids(&self, build: &BuildUrl, ids: &[String]) -> Result<Build, ClientError> {
        let body = json(&ExtraIdsRequest { ids: ids.to_vec() })?;
        Ok(self.call(Method::POST, &build.join("add_extra_ids"), body).await?.body)
    }

    pub async fn commit(&self, build: &BuildUrl, request: &CommitRequest) -> Result<Reply<Job>, ClientError> {
        self.call(Method::POST, &build.join("commit"), json(request)?).await
    }

    pub async fn publish(&self, build: &BuildUrl) -> Result<Reply<Job>, ClientError> {
        self.call(Method::POST, &build.join("publish"), json(&Empty {})?).await
    }

    pub async fn purge(&self, build: &BuildUrl) -> Result<Build, ClientError> {
        Ok(self.call(Method::POST, &build.join("purge"), json(&Empty {})?).await?.body)
    }

    /// Reads a job (any job-reading route), its log from byte `log_offset` on.
    pub async fn get_job(&self, url: &str, log_offset: usize) -> Result<Job, ClientError> {
        Ok(self.call(Method::GET, url, json(&JobRequest { log_offset })?).await?.body)
    }

    pub async fn prune(&self, manager: &ManagerUrl, repo: &str) -> Result<Job, ClientError> {
        let body = json(&PruneRequest { repo: repo.to_owned() })?;
        Ok(self.call(Method::POST, &manager.api("prune"), body).await?.body)
    }

    pub async fn token_subset(
        &self,
        manager: &ManagerUrl,
        request: &TokenSubsetRequest,
    ) -> Result<String, ClientError> {
        let reply: Reply<TokenResponse> = self.call(Method::POST, &manager.api("token_subset"), json(request)?).await?;
        Ok(reply.body.token)
    }

    /// One API call, retried by the policy.
    async fn call<T: DeserializeOwned>(&self, method: Method, url: &str, body: Body) -> Result<Reply<T>, ClientError> {
        with_retry(self.retry, method.as_str(), || self.attempt(&method, url, &body)).await
    }

    /// Sends one request and reads its answer.
    async fn attempt<T: DeserializeOwned>(
        &self,
        method: &Method,
        url: &str,
        body: &Body,
    ) -> Result<Reply<T>, ClientError> {
        let request = self.http.request(method.clone(), url).bearer_auth(&*self.token);
        let request = match body {
            Body::None => request,
            Body::Json(bytes) => request.header(CONTENT_TYPE, "application/json").body(bytes.clone()),
            Body::GzipJson(bytes) => {
                request.header(CONTENT_TYPE, "application/json").header(CONTENT_ENCODING, "gzip").body(bytes.clone())
            }
            Body::Multipart { boundary, segments } => {
                let (body, length) = segments_body(segments.clone());
                request
                    .header(CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
                    .header(CONTENT_LENGTH, length)
                    .body(body)
            }
        };
        let started = Instant::now();
        let response = request.send().await.map_err(|e| ClientError::transport(url, e))?;
        let status = response.status().as_u16();
        tracing::debug!(%method, url, status, elapsed_ms = started.elapsed().as_millis() as u64, "answer");
        read_reply(url, response).await
    }
}

/// Turns an answer into its typed body and location, or into an API error.
async fn read_reply<T: DeserializeOwned>(url: &str, response: Response) -> Result<Reply<T>, ClientError> {
    let status = response.status();
    let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(|l| absolute_location(url, l));
    let bytes = response.bytes().await.map_err(|e| ClientError::transport(url, e))?;
    if !status.is_success() {
        let details = ApiErrorBody::from_body(&String::from_utf8_lossy(&bytes));
        return Err(ClientError::Api { url: url.to_owned(), status: status.as_u16(), details: Box::new(details) });
    }
    let body = serde_json::from_slice(&bytes).map_err(|e| {
        let text: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
        ClientError::other("invalid-response", format!("unexpected answer from {url}: {e}: {text}"))
    })?;
    Ok(Reply { body, location })
}

fn json(value: &impl Serialize) -> Result<Body, ClientError> {
    let bytes = serde_json::to_vec(value).map_err(|e| ClientError::other("serialize", e.to_string()))?;
    Ok(Body::Json(bytes.into()))
}

fn gzip_json(value: &impl Serialize) -> Result<Body, ClientError> {
    let bytes = serde_json::to_vec(value).map_err(|e| ClientError::other("serialize", e.to_string()))?;
    Ok(Body::GzipJson(gzip(&bytes).into()))
}

/// gzip-compresses a request body (reqwest only decompresses answers).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4), Compression::fast());
    encoder.write_all(data).expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// The multipart body of an upload: `form-data` fields `file0`, `file1`, … with quoted filenames
/// (not percent-encoded: delta names contain `+`) and `application/octet-stream`, as
/// flat-manager's Rust client sends them. The body is a list of segments that share the parts'
/// buffers, so a retry re-sends the same bytes without copying them and the request has a
/// `Content-Length`.
pub fn multipart_segments(parts: &[UploadPart], boundary: &str) -> Vec<Bytes> {
    let mut segments = Vec::with_capacity(parts.len() * 2 + 1);
    for (i, part) in parts.iter().enumerate() {
        let head = format!(
            "{}--{boundary}\r\nContent-Disposition: form-data; name=\"file{i}\"; filename=\"{}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            if i == 0 { "" } else { "\r\n" },
            part.filename
        );
        segments.push(Bytes::from(head));
        segments.push(part.data.clone());
    }
    let tail = if parts.is_empty() { format!("--{boundary}--\r\n") } else { format!("\r\n--{boundary}--\r\n") };
    segments.push(Bytes::from(tail));
    segments
}

/// A streamed request body over `segments`, with its length.
fn segments_body(segments: Vec<Bytes>) -> (reqwest::Body, u64) {
    let length = segments.iter().map(|s| s.len() as u64).sum();
    let chunks = segments.into_iter().map(Ok::<_, std::io::Error>);
    (reqwest::Body::wrap_stream(futures::stream::iter(chunks)), length)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn gzip_bodies_decompress_to_the_json() {
        let wanted = vec!["a".repeat(64) + ".commit"];
        let Body::GzipJson(bytes) = gzip_json(&MissingObjectsRequest { wanted: &wanted }).unwrap() else {
            panic!("not gzip")
        };
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
        assert_eq!(text, format!(r#"{{"wanted":["{}"]}}"#, wanted[0]));
    }

    #[test]
    fn multipart_parts_are_named_file_n_with_unencoded_filenames() {
        let object = format!("{}.filez", "a".repeat(64));
        let parts = vec![
            UploadPart { filename: object.clone(), data: Bytes::from_static(b"one") },
            UploadPart { filename: "H2Sr9+k_.superblock.delta".into(), data: Bytes::from_static(b"two\r\n") },
        ];
        let body = multipart_segments(&parts, "XyZ").concat();
        let expected = format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"file0\"; filename=\"{object}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\none\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"file1\"; filename=\"H2Sr9+k_.superblock.delta\"\r\n\
             Content-Type: application/octet-stream\r\n\r\ntwo\r\n\r\n--XyZ--\r\n"
        );
        assert_eq!(String::from_utf8(body).unwrap(), expected);
    }

    #[test]
    fn an_empty_upload_is_just_the_closing_boundary() {
        assert_eq!(multipart_segments(&[], "b").concat(), b"--b--\r\n");
    }
}
