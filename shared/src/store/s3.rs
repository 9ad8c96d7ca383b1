//! ObjectStore on an S3 bucket (or any server speaking its API: moto, LocalStack, MinIO), below an
//! optional key prefix. Every write is a single atomic PutObject, CopyObject or completed multipart
//! upload, so readers see the old object, the new one or none.
//!
//! Two S3 habits are handled explicitly: a missing key reads as 403 AccessDenied rather than 404
//! when the caller may not ListBucket, and a copy source is a URL path whose key must be
//! percent-encoded (`+` included, or S3 decodes it as a space).

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::{HttpRequest, HttpResponse};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::{validate_key, ByteStream, Location, ObjectReader, ObjectStore, PresignedPut, StoreError};
use crate::repo::layout::cache_control;

/// Streamed writes up to this size are one PutObject; larger ones a multipart upload of parts of
/// this size, so memory stays bounded whatever the object's size. (S3 parts must be ≥ 5 MiB.)
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Every object is served as opaque bytes: repository files are never transcoded by a CDN.
const CONTENT_TYPE: &str = "application/octet-stream";

/// How often a conditional write is retried when S3 reports a concurrent conditional write to the
/// same key (409 ConditionalRequestConflict): the other writer may yet fail.
const CONFLICT_RETRIES: u32 = 5;

/// Which headers writes carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutPolicy {
    /// Staging and other private buckets: `Content-Type: application/octet-stream` only.
    Private,
    /// A repository served to Flatpak clients straight from the bucket (through a CDN): also the
    /// `Cache-Control` of [`cache_control`] for the key relative to the store's prefix, which must
    /// therefore be the repository root. Never a `Content-Encoding`, not even on `summaries/*.gz`:
    /// ostree decompresses those itself and must receive them as stored.
    PublicRepository,
}

/// An S3 bucket, or the part of one below `prefix/`, as an object store.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Empty, or ends with `/`.
    prefix: String,
    policy: PutPolicy,
}

/// An S3 client from the environment's configuration (credentials, region, `AWS_ENDPOINT_URL`),
/// with `endpoint`, when given, taking precedence. Path-style addressing, which moto needs and
/// which keeps bucket names with dots working over TLS.
pub async fn s3_client(endpoint: Option<&str>) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    let shared = loader.load().await;
    Client::from_conf(aws_sdk_s3::config::Builder::from(&shared).force_path_style(true).build())
}

impl S3Store {
    /// The store of `bucket`'s keys below `prefix` (empty for the whole bucket).
    pub fn new(client: Client, bucket: String, prefix: String, policy: PutPolicy) -> Self {
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        Self { client, bucket, prefix, policy }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The bucket key of a store key, after checking it.
    fn full(&self, key: &str) -> Result<String, StoreError> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn cache_control(&self, key: &str) -> Option<&'static str> {
        (self.policy == PutPolicy::PublicRepository).then(|| cache_control(key))
    }

    /// Copies `bucket`/`source_key` to `to` of this store on the server, with this store's
    /// headers: how published objects go from the staging bucket into a public repository.
    /// Objects up to 5 GiB (CopyObject's limit).
    async fn copy_object(&self, bucket: &str, source_key: &str, to: &str) -> Result<(), StoreError> {
        let copy_source = format!("{bucket}/{}", encode_copy_source(source_key));
        // Headers depend on the destination key (and the source may have come from a presigned
        // upload with any type), so they are set, not copied.
        let request = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(self.full(to)?)
            .copy_source(copy_source)
            .metadata_directive(MetadataDirective::Replace)
            .content_type(CONTENT_TYPE)
            .set_cache_control(self.cache_control(to).map(str::to_owned));
        match request.send().await.map_err(|e| sdk_error(source_key, e)) {
            // 403 means a missing source without ListBucket, or no right to write `to`.
            Err(e) if outcome(&e) == Outcome::Denied && self.head_bucket_key(bucket, source_key).await?.is_none() => {
                Err(StoreError::NotFound(source_key.to_owned()))
            }
            result => result.map(drop),
        }
    }

    /// The size of `bucket`/`key` (a full key), or `None` when it does not exist.
    async fn head_bucket_key(&self, bucket: &str, key: &str) -> Result<Option<u64>, StoreError> {
        let request = self.client.head_object().bucket(bucket).key(key);
        match request.send().await.map_err(|e| read_error(key, e)) {
            Ok(head) => Ok(Some(head.content_length().unwrap_or(0).try_into().unwrap_or(0))),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put_object(&self, key: &str, data: Bytes, if_absent: bool) -> Result<(), StoreError> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key)?)
            .content_type(CONTENT_TYPE)
            .set_cache_control(self.cache_control(key).map(str::to_owned))
            .set_if_none_match(if_absent.then(|| "*".to_owned()))
            .body(S3Body::from(data));
        request.send().await.map(drop).map_err(|e| sdk_error(key, e))
    }

    /// Writes a streamed object larger than one part as a multipart upload, aborted on any error
    /// so no parts linger (billed) and no object appears.
    async fn put_multipart(&self, key: &str, first: Bytes, rest: ByteStream) -> Result<u64, StoreError> {
        let full = self.full(key)?;
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .content_type(CONTENT_TYPE)
            .set_cache_control(self.cache_control(key).map(str::to_owned))
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        let upload_id = upload.upload_id().ok_or_else(|| io_error(key, "no upload id in the reply"))?;
        let result = self.upload_parts(key, &full, upload_id, first, rest).await;
        if result.is_err() {
            let abort = self.client.abort_multipart_upload().bucket(&self.bucket).key(&full).upload_id(upload_id);
            if let Err(e) = abort.send().await {
                tracing::warn!(key, error = %DisplayErrorContext(e), "could not abort a multipart upload");
            }
        }
        result
    }

    /// Uploads `first` and the rest of the stream part by part, reading each part while the one
    /// before it is sent: two parts in memory at most.
    async fn upload_parts(
        &self,
        key: &str,
        full: &str,
        upload_id: &str,
        first: Bytes,
        mut rest: ByteStream,
    ) -> Result<u64, StoreError> {
        let mut parts = Vec::new();
        let mut size = 0;
        let mut next = Some(first);
        while let Some(part) = next {
            size += part.len() as u64;
            let number = parts.len() as i32 + 1;
            let request = self.client.upload_part().bucket(&self.bucket).key(full).upload_id(upload_id);
            let upload = request.part_number(number).body(S3Body::from(part)).send();
            let (read, uploaded) = tokio::join!(fill_part(&mut rest), upload);
            let e_tag = uploaded.map_err(|e| sdk_error(key, e))?.e_tag;
            parts.push(CompletedPart::builder().part_number(number).set_e_tag(e_tag).build());
            next = read.map_err(|source| StoreError::Io { key: key.to_owned(), source })?;
        }
        let done = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        let request = self.client.complete_multipart_upload().bucket(&self.bucket).key(full).upload_id(upload_id);
        request.multipart_upload(done).send().await.map_err(|e| sdk_error(key, e))?;
        Ok(size)
    }
}

/// Reads the next part from `stream`: `PART_SIZE` bytes, fewer at its end, `None` once it is done.
async fn fill_part(stream: &mut ByteStream) -> std::io::Result<Option<Bytes>> {
    let mut part = BytesMut::new();
    while part.len() < PART_SIZE {
        match stream.next().await {
            Some(chunk) => part.extend_from_slice(&chunk?),
            None if part.is_empty() => return Ok(None),
            None => break,
        }
    }
    Ok(Some(part.freeze()))
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, key: &str) -> Result<ObjectReader, StoreError> {
        let request = self.client.get_object().bucket(&self.bucket).key(self.full(key)?);
        let object = request.send().await.map_err(|e| read_error(key, e))?;
        Ok(Box::pin(object.body.into_async_read()))
    }

    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.head_bucket_key(&self.bucket, &self.full(key)?).await
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.put_object(key, data, false).await
    }

    async fn put_stream(&self, key: &str, mut data: ByteStream) -> Result<u64, StoreError> {
        self.full(key)?;
        let io = |source| StoreError::Io { key: key.to_owned(), source };
        let first = fill_part(&mut data).await.map_err(io)?.unwrap_or_default();
        if first.len() < PART_SIZE {
            let size = first.len() as u64;
            return self.put_object(key, first, false).await.map(|()| size);
        }
        self.put_multipart(key, first, data).await
    }

    /// A conditional PutObject (`If-None-Match: *`): on S3 (since 2024-08) the check and the write
    /// are one atomic step on the server. moto 5 honours the header too (checking just before it
    /// writes, so a narrow race remains there); LocalStack and MinIO support it. There is
    /// deliberately no HEAD-then-PUT fallback: it would let two writers both win, silently.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError> {
        let mut attempt = 0;
        loop {
            let Err(e) = self.put_object(key, data.clone(), true).await else { return Ok(true) };
            match outcome(&e) {
                Outcome::PreconditionFailed => return Ok(false),
                Outcome::Conflict if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                _ => return Err(e),
            }
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.copy_object(&self.bucket, &self.full(from)?, to).await
    }

    async fn locate(&self, key: &str) -> Result<Option<Location>, StoreError> {
        Ok(Some(Location::S3 { bucket: self.bucket.clone(), key: self.full(key)? }))
    }

    async fn copy_located(&self, source: &Location, to: &str) -> Result<bool, StoreError> {
        let Location::S3 { bucket, key } = source else { return Ok(false) };
        self.copy_object(bucket, key, to).await.map(|()| true)
    }

    /// A presigned PutObject that signs the size as `Content-Length` (S3 refuses any other length
    /// with SignatureDoesNotMatch) and `Content-Type: application/octet-stream`. The size is also a
    /// signed query parameter, `content-length`, which S3 covers by the signature and otherwise
    /// ignores, and which servers that check such parameters against the request instead of
    /// verifying signatures (moto) enforce too. The object gets no Cache-Control: meant for
    /// staging (private) stores, from which objects reach a public repository through
    /// [`ObjectStore::copy_located`], which sets its headers. At most 7 days.
    async fn presign_put(&self, key: &str, size: u64, expires: Duration) -> Result<Option<PresignedPut>, StoreError> {
        let full = self.full(key)?;
        let length = i64::try_from(size).map_err(|e| io_error(key, e))?;
        let config = PresigningConfig::expires_in(expires).map_err(|e| io_error(key, e))?;
        let request = self.client.put_object().bucket(&self.bucket).key(full).content_type(CONTENT_TYPE);
        let presigned = request
            .content_length(length)
            .customize()
            .map_request(move |mut request: HttpRequest| {
                let separator = if request.uri().contains('?') { '&' } else { '?' };
                let uri = format!("{}{separator}content-length={size}", request.uri());
                request.set_uri(uri).map(|()| request)
            })
            .presigned(config)
            .await
            .map_err(|e| sdk_error(key, e))?;
        let headers = presigned.headers().map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned())).collect();
        Ok(Some(PresignedPut { url: presigned.uri().to_owned(), headers }))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let request = self.client.delete_object().bucket(&self.bucket).key(self.full(key)?);
        match request.send().await.map_err(|e| sdk_error(key, e)) {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let full = format!("{}{prefix}", self.prefix);
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(full).into_paginator().send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(prefix, e))?;
            let names = page.contents().iter().filter_map(|object| object.key());
            keys.extend(names.filter_map(|k| k.strip_prefix(&self.prefix)).map(str::to_owned));
        }
        keys.sort();
        Ok(keys)
    }
}

/// What an S3 error means for the key it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The key does not exist (404).
    Missing,
    /// 403 AccessDenied: what S3 answers for a missing key when the caller may not ListBucket (a
    /// HEAD reply has no body, so just 403), and for a write it may not make. Reads take it as
    /// missing; writes as a failure.
    Denied,
    /// A conditional write found the key present (412).
    PreconditionFailed,
    /// Another conditional write to the key was in flight (409); retrying may succeed.
    Conflict,
    Other,
}

fn classify(status: Option<u16>, code: Option<&str>) -> Outcome {
    match (status, code) {
        // A missing bucket or bad credentials are misconfigurations, not missing objects.
        (_, Some("NoSuchBucket" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken")) => Outcome::Other,
        (_, Some("NoSuchKey" | "NotFound")) | (Some(404), _) => Outcome::Missing,
        (_, Some("AccessDenied")) | (Some(403), None | Some("Forbidden")) => Outcome::Denied,
        (_, Some("PreconditionFailed")) | (Some(412), _) => Outcome::PreconditionFailed,
        (_, Some("ConditionalRequestConflict")) | (Some(409), _) => Outcome::Conflict,
        _ => Outcome::Other,
    }
}

/// The detail of an S3 failure, kept as the source of [`StoreError::Io`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct S3Failure {
    outcome: Outcome,
    message: String,
}

fn outcome(error: &StoreError) -> Outcome {
    match error {
        StoreError::NotFound(_) => Outcome::Missing,
        StoreError::Io { source, .. } => {
            source.get_ref().and_then(|e| e.downcast_ref::<S3Failure>()).map_or(Outcome::Other, |f| f.outcome)
        }
        _ => Outcome::Other,
    }
}

/// Maps an SDK error by meaning: a missing key to NotFound, everything else to Io with the whole
/// error chain and its [`Outcome`], for callers that handle 403, 409 or 412.
fn sdk_error<E>(key: &str, error: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + RequestId + std::error::Error + Send + Sync + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let outcome = classify(status, error.code());
    if outcome == Outcome::Missing {
        return StoreError::NotFound(key.to_owned());
    }
    let message = match (error.code(), status) {
        (Some(code), _) => {
            let (message, request) = (error.message().unwrap_or_default(), error.request_id().unwrap_or_default());
            format!("S3 {code} (HTTP {}): {message} [request {request}]", status.unwrap_or_default())
        }
        (None, Some(status)) => format!("S3 HTTP {status}"),
        // Not a reply: a timeout, a connection or credentials failure.
        (None, None) => format!("S3 {}", DisplayErrorContext(error)),
    };
    StoreError::Io { key: key.to_owned(), source: std::io::Error::other(S3Failure { outcome, message }) }
}

/// [`sdk_error`] for reads, which also take 403 as a missing key.
fn read_error<E>(key: &str, error: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + RequestId + std::error::Error + Send + Sync + 'static,
{
    match sdk_error(key, error) {
        e if outcome(&e) == Outcome::Denied => {
            tracing::debug!(key, error = %e, "S3 denied a read: taken as a missing key (no ListBucket permission)");
            StoreError::NotFound(key.to_owned())
        }
        e => e,
    }
}

fn io_error(key: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Io { key: key.to_owned(), source: std::io::Error::other(error.to_string()) }
}

/// Percent-encodes a key for CopyObject's `x-amz-copy-source`, keeping only unreserved characters
/// and `/`: a literal `+` would be read as a space.
fn encode_copy_source(key: &str) -> String {
    let mut encoded = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    /// An error as the SDK returns it for a reply with `status` and error `code`.
    fn reply(status: u16, code: Option<&str>) -> SdkError<GetObjectError, HttpResponse> {
        let metadata = ErrorMetadata::builder();
        let metadata = match code {
            Some(code) => metadata.code(code),
            None => metadata,
        };
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        SdkError::service_error(GetObjectError::generic(metadata.build()), raw)
    }

    #[test]
    fn reads_take_404_and_403_as_missing_keys() {
        assert!(read_error("k", reply(404, Some("NoSuchKey"))).is_not_found());
        assert!(read_error("k", reply(404, None)).is_not_found(), "HEAD replies have no error code");
        assert!(read_error("k", reply(403, Some("AccessDenied"))).is_not_found(), "no ListBucket permission");
        assert!(read_error("k", reply(403, None)).is_not_found());
    }

    #[test]
    fn writes_take_403_as_a_failure() {
        let denied = sdk_error("k", reply(403, Some("AccessDenied")));
        assert_eq!(outcome(&denied), Outcome::Denied);
        assert!(denied.to_string().contains("AccessDenied (HTTP 403)"), "{denied}");
    }

    #[test]
    fn credential_and_bucket_errors_are_not_missing_keys() {
        for (status, code) in [(403, "InvalidAccessKeyId"), (403, "SignatureDoesNotMatch"), (404, "NoSuchBucket")] {
            assert!(!read_error("k", reply(status, Some(code))).is_not_found(), "{code}");
        }
        assert_eq!(classify(Some(500), Some("InternalError")), Outcome::Other);
    }

    #[test]
    fn conditional_write_replies_are_recognised() {
        assert_eq!(classify(Some(412), Some("PreconditionFailed")), Outcome::PreconditionFailed);
        assert_eq!(classify(Some(409), Some("ConditionalRequestConflict")), Outcome::Conflict);
    }

    #[test]
    fn copy_sources_encode_plus_and_space_differently() {
        assert_eq!(encode_copy_source("deltas/H2/Sr9+k/a b"), "deltas/H2/Sr9%2Bk/a%20b");
        assert_eq!(encode_copy_source("objects/ab/cd.filez"), "objects/ab/cd.filez");
        assert_eq!(encode_copy_source("é"), "%C3%A9");
    }

    #[test]
    fn prefixes_are_normalised_to_one_trailing_slash() {
        let client = Client::from_conf(aws_sdk_s3::Config::builder().behavior_version_latest().build());
        let store = |prefix: &str| S3Store::new(client.clone(), "b".into(), prefix.into(), PutPolicy::Private);
        assert_eq!(store("").full("x").unwrap(), "x");
        assert_eq!(store("/repo/stable/").full("x").unwrap(), "repo/stable/x");
        assert!(store("repo").full("../x").is_err());
    }
}
