//! Getting objects to the server: asking `missing_objects` in chunks, packing uploads into
//! multipart batches of at most 4 MiB, running several upload requests at once, and re-checking
//! afterwards so that nothing the server silently lost goes unnoticed (reference §6.2–6.3).

use std::collections::HashSet;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::api::{Api, UploadPart};
use super::error::ClientError;
use super::local::LocalRepo;
use super::progress::{Progress, ProgressMode};
use super::urls::BuildUrl;

/// A batch closes once its bytes reach this (flat-manager's `UPLOAD_CHUNK_LIMIT`).
pub const UPLOAD_CHUNK_LIMIT: u64 = 4 * 1024 * 1024;
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

/// Packs items into batches in order: a batch is flushed before an item that would take it past
/// `limit`, and right after an item that took it past `limit`, so an oversized item goes alone.
pub fn plan_batches(items: Vec<UploadItem>, limit: u64) -> Vec<Vec<UploadItem>> {
    let mut batches = Vec::new();
    let (mut batch, mut bytes) = (Vec::new(), 0u64);
    for item in items {
        if !batch.is_empty() && bytes + item.size > limit {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += item.size;
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

/// Uploads from one local repository into one build.
#[derive(Debug, Clone, Copy)]
pub struct Uploader<'a> {
    pub api: &'a Api,
    pub build: &'a BuildUrl,
    pub repo: &'a LocalRepo,
    pub progress: ProgressMode,
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

    /// Uploads `phases` one after the other (files before the metadata naming them), each in
    /// parallel batches, under one progress display.
    pub async fn upload(&self, label: &str, phases: &[&[UploadItem]]) -> Result<(), ClientError> {
        let items = phases.iter().flat_map(|phase| phase.iter());
        let (count, bytes) = items.fold((0, 0), |(n, b), item| (n + 1, b + item.size));
        if count == 0 {
            return Ok(());
        }
        let progress = Progress::new(self.progress, label, count, bytes);
        for phase in phases {
            let batches = plan_batches(phase.to_vec(), UPLOAD_CHUNK_LIMIT);
            stream::iter(batches.into_iter().map(Ok))
                .try_for_each_concurrent(PARALLEL_REQUESTS, |batch| self.upload_batch(batch, &progress))
                .await?;
        }
        progress.finish();
        Ok(())
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
        let mut parts = Vec::with_capacity(batch.len());
        for item in &batch {
            let data = self.repo.read(&item.key).await?;
            parts.push(UploadPart { filename: item.filename.clone(), data });
        }
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

    #[test]
    fn batches_stay_within_four_mebibytes() {
        let items = vec![item("a", MIB), item("b", 2 * MIB), item("c", MIB), item("d", 1), item("e", 3 * MIB)];
        let batches = plan_batches(items, UPLOAD_CHUNK_LIMIT);
        assert_eq!(shape(&batches), [vec!["a", "b", "c"], vec!["d", "e"]]);
        assert!(batches.iter().all(|b| b.iter().map(|i| i.size).sum::<u64>() <= UPLOAD_CHUNK_LIMIT));
    }

    #[test]
    fn an_object_larger_than_the_limit_goes_alone() {
        let items = vec![item("small", 10), item("huge", 9 * MIB), item("after", 10), item("huge2", 5 * MIB)];
        let batches = plan_batches(items, UPLOAD_CHUNK_LIMIT);
        assert_eq!(shape(&batches), [vec!["small"], vec!["huge"], vec!["after"], vec!["huge2"]]);
    }

    #[test]
    fn exactly_the_limit_fits_in_one_batch() {
        let items = vec![item("a", 2 * MIB), item("b", 2 * MIB), item("c", 1)];
        assert_eq!(shape(&plan_batches(items, UPLOAD_CHUNK_LIMIT)), [vec!["a", "b"], vec!["c"]]);
    }

    #[test]
    fn many_small_objects_fill_batches_and_keep_their_order() {
        let items: Vec<UploadItem> = (0..1000).map(|i| item(&format!("{i:04}"), 10 * 1024)).collect();
        let batches = plan_batches(items.clone(), UPLOAD_CHUNK_LIMIT);
        assert_eq!(batches.len(), 3); // 409.6 objects of 10 KiB per 4 MiB
        assert_eq!(batches[0].len(), 409);
        assert_eq!(batches.concat(), items);
        assert!(plan_batches(Vec::new(), UPLOAD_CHUNK_LIMIT).is_empty());
    }
}
