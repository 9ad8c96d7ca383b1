//! Getting objects to the server: asking `missing_objects` in chunks, sending large objects
//! straight to storage through presigned requests where the server offers them (`upload_urls`),
//! packing the rest into multipart batches, running several requests at once, and re-checking
//! afterwards so that nothing the server silently lost goes unnoticed (reference §6.2–6.3).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::{self, StreamExt, TryStreamExt};

use super::api::{Api, UploadPart};
use super::error::ClientError;
use super::local::LocalRepo;
use super::progress::{Progress, ProgressMode};
use super::urls::BuildUrl;
use super::wire::{DeclaredObject, DirectUpload};

/// A batch closes once its bytes reach this (flat-manager's `UPLOAD_CHUNK_LIMIT`).
pub const UPLOAD_CHUNK_LIMIT: u64 = 4 * 1024 * 1024;
/// The batch limit on a server that offers direct uploads, a Lambda deployment: API Gateway
/// base64-encodes a 3 MiB body into 4 MiB, well within Lambda's 6 MB request payload.
pub const LAMBDA_CHUNK_LIMIT: u64 = 3 * 1024 * 1024;
/// What a multipart part adds to its data at most (boundary, disposition with the longest
/// filenames, content type), counted when batching so that many tiny objects stay in the limit.
pub const PART_OVERHEAD: u64 = 320;
/// Objects at least this large go straight to storage when the server offers it.
pub const DIRECT_THRESHOLD: u64 = 1024 * 1024;
/// Objects per `upload_urls` request.
pub const UPLOAD_URLS_CHUNK: usize = 100;
/// Names per `missing_objects` request.
pub const MISSING_OBJECTS_CHUNK: usize = 2000;
/// Upload (and `missing_objects`) requests in flight at once.
pub const PARALLEL_REQUESTS: usize = 4;
/// Re-upload rounds for objects the server still lacks after an upload.
pub const STRAGGLER_ROUNDS: usize = 3;
/// How many missing names an error message lists.
const NAMES_SHOWN: usize = 5;

/// One file to upload: its upload filename, its key in the local repo, and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadItem {
    pub filename: String,
    pub key: String,
    pub size: u64,
}

/// Packs items into batches in order, counting each item as its size plus [`PART_OVERHEAD`]: a
/// batch is flushed before an item that would take it past `limit`, and right after an item that
/// took it past `limit`, so an oversized item goes alone.
pub fn plan_batches(items: Vec<UploadItem>, limit: u64) -> Vec<Vec<UploadItem>> {
    let mut batches = Vec::new();
    let (mut batch, mut bytes) = (Vec::new(), 0u64);
    for item in items {
        let cost = item.size + PART_OVERHEAD;
        if !batch.is_empty() && bytes + cost > limit {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += cost;
        batch.push(item);
        if bytes > limit {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// What a push has learnt about direct uploads. The first `upload_urls` answer with URLs marks
/// the server as offering them (and as a Lambda deployment, whose multipart requests must stay
/// small); a 404 or an answer without any stops the push from asking again.
#[derive(Debug, Default)]
pub struct DirectUploads {
    offered: AtomicBool,
    declined: AtomicBool,
}

impl DirectUploads {
    fn worth_asking(&self) -> bool {
        !self.declined.load(Ordering::Relaxed)
    }

    fn learn(&self, urls: &BTreeMap<String, DirectUpload>) {
        let flag = if urls.is_empty() { &self.declined } else { &self.offered };
        flag.store(true, Ordering::Relaxed);
    }

    /// The multipart batch limit for this server.
    pub fn batch_limit(&self) -> u64 {
        if self.offered.load(Ordering::Relaxed) {
            LAMBDA_CHUNK_LIMIT
        } else {
            UPLOAD_CHUNK_LIMIT
        }
    }
}

/// Uploads from one local repository into one build.
#[derive(Debug, Clone, Copy)]
pub struct Uploader<'a> {
    pub api: &'a Api,
    pub build: &'a BuildUrl,
    pub repo: &'a LocalRepo,
    pub progress: ProgressMode,
    pub direct: &'a DirectUploads,
}

impl Uploader<'_> {
    /// The subset of `names` the server lacks, asked in chunks of 2000, several at a time. Sorted.
    pub async fn missing(&self, names: &[String]) -> Result<Vec<String>, ClientError> {
        let chunks: Vec<Vec<String>> =
            stream::iter(names.chunks(MISSING_OBJECTS_CHUNK).map(|chunk| self.api.missing_objects(self.build, chunk)))
                .buffer_unordered(PARALLEL_REQUESTS)
                .try_collect()
                .await?;
        let mut missing: Vec<String> = chunks.into_iter().flatten().collect();
        missing.sort();
        missing.dedup();
        tracing::debug!(asked = names.len(), missing = missing.len(), "missing_objects");
        Ok(missing)
    }

    /// Uploads `phases` one after the other (files before the metadata naming them), each with
    /// its large objects sent directly where the server takes them and the rest in parallel
    /// multipart batches, under one progress display.
    pub async fn upload(&self, label: &str, phases: &[&[UploadItem]]) -> Result<(), ClientError> {
        let items = phases.iter().flat_map(|phase| phase.iter());
        let (count, bytes) = items.fold((0, 0), |(n, b), item| (n + 1, b + item.size));
        if count == 0 {
            return Ok(());
        }
        let progress = Progress::new(self.progress, label, count, bytes);
        for phase in phases {
            let rest = self.upload_direct(phase, &progress).await?;
            let batches = plan_batches(rest, self.direct.batch_limit());
            stream::iter(batches.into_iter().map(Ok))
                .try_for_each_concurrent(PARALLEL_REQUESTS, |batch| self.upload_batch(batch, &progress))
                .await?;
        }
        progress.finish();
        Ok(())
    }

    /// Sends the objects of `phase` of at least [`DIRECT_THRESHOLD`] bytes to the presigned
    /// requests the server gives for them, in chunks of names, several at once. Returns the items
    /// left for multipart: the small ones and those the server gave no request for.
    async fn upload_direct(&self, phase: &[UploadItem], progress: &Progress) -> Result<Vec<UploadItem>, ClientError> {
        let (large, mut rest): (Vec<UploadItem>, Vec<UploadItem>) =
            phase.iter().cloned().partition(|item| item.size >= DIRECT_THRESHOLD);
        for chunk in large.chunks(UPLOAD_URLS_CHUNK) {
            let mut urls = match self.direct.worth_asking() {
                true => self.upload_urls(chunk).await?,
                false => BTreeMap::new(),
            };
            let mut direct = Vec::with_capacity(urls.len());
            for item in chunk {
                match urls.remove(&item.filename) {
                    Some(url) => direct.push((item, url)),
                    None => rest.push(item.clone()),
                }
            }
            stream::iter(direct.into_iter().map(Ok))
                .try_for_each_concurrent(PARALLEL_REQUESTS, |(item, url)| async move {
                    self.api.put_direct(&url, item.size, || self.repo.stream(&item.key)).await?;
                    tracing::debug!(object = %item.filename, bytes = item.size, "uploaded directly");
                    progress.inc(1, item.size);
                    Ok(())
                })
                .await?;
        }
        Ok(rest)
    }

    /// The server's presigned requests for `items`, learning from the answer whether to ask again.
    async fn upload_urls(&self, items: &[UploadItem]) -> Result<BTreeMap<String, DirectUpload>, ClientError> {
        let objects: Vec<DeclaredObject> =
            items.iter().map(|item| DeclaredObject { name: item.filename.clone(), size: item.size }).collect();
        let urls = self.api.upload_urls(self.build, &objects).await?.unwrap_or_default();
        self.direct.learn(&urls);
        if urls.is_empty() {
            tracing::info!("the server takes no direct uploads; sending everything by multipart");
        }
        Ok(urls)
    }

    /// Uploads object phases, then asks the server about every uploaded object and re-uploads
    /// what it still lacks, up to [`STRAGGLER_ROUNDS`] times.
    pub async fn upload_verified(&self, files: &[UploadItem], metadata: &[UploadItem]) -> Result<(), ClientError> {
        self.upload("uploading", &[files, metadata]).await?;
        let mut pending: Vec<String> = files.iter().chain(metadata).map(|i| i.filename.clone()).collect();
        for round in 1..=STRAGGLER_ROUNDS {
            pending = self.missing(&pending).await?;
            if pending.is_empty() {
                return Ok(());
            }
            tracing::warn!(round, missing = pending.len(), "server lacks uploaded objects; uploading them again");
            let again: HashSet<&str> = pending.iter().map(String::as_str).collect();
            let retry = |items: &[UploadItem]| -> Vec<UploadItem> {
                items.iter().filter(|i| again.contains(i.filename.as_str())).cloned().collect()
            };
            self.upload("re-uploading", &[&retry(files), &retry(metadata)]).await?;
        }
        let still = self.missing(&pending).await?;
        if still.is_empty() {
            return Ok(());
        }
        let shown = still.iter().take(NAMES_SHOWN).cloned().collect::<Vec<_>>().join(", ");
        let message = format!(
            "Upload incomplete: {} object(s) still missing after {STRAGGLER_ROUNDS} re-upload rounds: {shown}",
            still.len()
        );
        Err(ClientError::other("upload-incomplete", message))
    }

    /// Reads one batch from the repository and uploads it as one multipart request.
    async fn upload_batch(&self, batch: Vec<UploadItem>, progress: &Progress) -> Result<(), ClientError> {
        let keys: Vec<String> = batch.iter().map(|item| item.key.clone()).collect();
        let data = self.repo.read_many(&keys).await?;
        let parts: Vec<UploadPart> =
            batch.into_iter().zip(data).map(|(item, data)| UploadPart { filename: item.filename, data }).collect();
        let bytes: u64 = parts.iter().map(|p| p.data.len() as u64).sum();
        self.api.upload(self.build, &parts).await?;
        tracing::debug!(parts = parts.len(), bytes, "uploaded batch");
        progress.inc(parts.len() as u64, bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn item(name: &str, size: u64) -> UploadItem {
        UploadItem { filename: name.into(), key: format!("objects/{name}"), size }
    }

    fn shape(batches: &[Vec<UploadItem>]) -> Vec<Vec<&str>> {
        batches.iter().map(|b| b.iter().map(|i| i.filename.as_str()).collect()).collect()
    }

    fn cost(batch: &[UploadItem]) -> u64 {
        batch.iter().map(|i| i.size + PART_OVERHEAD).sum()
    }

    #[test]
    fn batches_stay_within_four_mebibytes_with_their_multipart_overhead() {
        let items = vec![item("a", MIB), item("b", 2 * MIB), item("c", MIB - 3 * PART_OVERHEAD), item("d", 1)];
        let batches = plan_batches(items, UPLOAD_CHUNK_LIMIT);
        assert_eq!(shape(&batches), [vec!["a", "b", "c"], vec!["d"]]);
        assert_eq!(cost(&batches[0]), UPLOAD_CHUNK_LIMIT);
        let items = vec![item("a", MIB), item("b", 2 * MIB), item("c", MIB), item("d", 1), item("e", 3 * MIB)];
        let batches = plan_batches(items, UPLOAD_CHUNK_LIMIT);
        assert_eq!(shape(&batches), [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
        assert!(batches.iter().all(|b| cost(b) <= UPLOAD_CHUNK_LIMIT));
    }

    #[test]
    fn an_object_larger_than_the_limit_goes_alone() {
        let items = vec![item("small", 10), item("huge", 9 * MIB), item("after", 10), item("huge2", 5 * MIB)];
        let batches = plan_batches(items, UPLOAD_CHUNK_LIMIT);
        assert_eq!(shape(&batches), [vec!["small"], vec!["huge"], vec!["after"], vec!["huge2"]]);
    }

    #[test]
    fn many_tiny_objects_count_their_part_headers() {
        let items: Vec<UploadItem> = (0..20_000).map(|i| item(&format!("{i:05}"), 100)).collect();
        let batches = plan_batches(items.clone(), LAMBDA_CHUNK_LIMIT);
        let per_batch = (LAMBDA_CHUNK_LIMIT / (100 + PART_OVERHEAD)) as usize;
        assert_eq!(batches[0].len(), per_batch, "3 MiB of headers and data, not of data alone");
        assert_eq!(batches.concat(), items, "in order, none lost");
        assert!(batches.iter().all(|b| cost(b) <= LAMBDA_CHUNK_LIMIT));
        assert!(plan_batches(Vec::new(), UPLOAD_CHUNK_LIMIT).is_empty());
    }

    fn urls(names: &[&str]) -> BTreeMap<String, DirectUpload> {
        let upload = DirectUpload { url: "http://s3/k".into(), method: "PUT".into(), headers: BTreeMap::new() };
        names.iter().map(|name| (name.to_string(), upload.clone())).collect()
    }

    #[test]
    fn a_server_offering_direct_uploads_gets_lambda_sized_batches() {
        let direct = DirectUploads::default();
        assert!(direct.worth_asking());
        assert_eq!(direct.batch_limit(), UPLOAD_CHUNK_LIMIT, "flat-manager's batches until the server is known");
        direct.learn(&urls(&["a.filez"]));
        assert!(direct.worth_asking());
        assert_eq!(direct.batch_limit(), LAMBDA_CHUNK_LIMIT);
    }

    #[test]
    fn an_answer_without_urls_stops_the_asking() {
        let direct = DirectUploads::default();
        direct.learn(&urls(&[]));
        assert!(!direct.worth_asking());
        assert_eq!(direct.batch_limit(), UPLOAD_CHUNK_LIMIT);
    }
}
