//! Writing a repository in the order that keeps readers safe (DESIGN property 4): content
//! objects, then dirmeta and dirtree, then a new commit's `.commitmeta` (its signatures), then
//! commits, then refs, then the summaries with `summary.idx` as the switch and the compat
//! `summary` last. A crash between any two writes leaves every published file pointing only at
//! objects that already exist.
//!
//! In a signed repository the summaries go out as:
//!
//! 1. `summaries/<digest>.gz` and `summaries/<old>-<new>.delta`, immutable;
//! 2. `summaries/<sha256 of summary.idx>.idx.sig`, immutable: the signature flatpak fetches for
//!    the index it got, so it exists before the index that needs it;
//! 3. `summary.idx`, the switch;
//! 4. `summary.idx.sig`, the same signature under the fixed name older readers ask for;
//! 5. `summary.sig`, then `summary`: the compat summary is a switch as well, and its signature
//!    exists before it does.
//!
//! A reader pairing a fixed-name file with its fixed-name signature may, for the moment between
//! two writes, get one old and one new: it fails verification and succeeds on its next try, and
//! never accepts a file it should not. The digest-named signature has no such window.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};

use super::deltas::DeltaId;
use super::layout::{ref_file, repo_config};
use super::record::RefRecord;
use super::retire;
#[cfg(feature = "server")]
use super::sign::{SignError, Signer};
use super::summary::{
    gunzip, gzip, layout_diff, parse_index, recall, remember, summary_index, DeltaListing, IndexEntry, Layout, Refs,
    SummarySettings, SUBSUMMARY_GZIP_LEVEL,
};
use super::{Checksum, ObjectName, ObjectType};
use crate::store::{read_limited, ObjectStore, StoreError};

/// Objects copied at once.
const COPY_CONCURRENCY: usize = 16;
/// Largest summary file read back.
const MAX_SUMMARY_SIZE: u64 = 256 * 1024 * 1024;

/// Copies objects from `src` to `dst` (by hard link or server-side copy where the stores allow it),
/// content first, then dirmeta, dirtree, commitmeta and
/// commits, skipping objects `dst` has. Returns how many were copied.
pub async fn copy_objects(
    src: &dyn ObjectStore,
    dst: &dyn ObjectStore,
    names: &[ObjectName],
) -> Result<usize, StoreError> {
    let mut copied = 0;
    for kind in [ObjectType::File, ObjectType::DirMeta, ObjectType::DirTree, ObjectType::CommitMeta, ObjectType::Commit]
    {
        let keys: Vec<String> = names.iter().filter(|n| n.kind == kind).map(ObjectName::key).collect();
        let present = dst.head_many(&keys).await?;
        let missing: Vec<String> =
            keys.into_iter().zip(present).filter(|(_, size)| size.is_none()).map(|(k, _)| k).collect();
        copied += missing.len();
        copy_missing(src, dst, missing).await?;
    }
    Ok(copied)
}

/// Copies the objects `keys` of `src`, which `dst` lacks: hard links or server-side copies where
/// the stores allow them, asked all at once, and the bytes of the rest.
async fn copy_missing(src: &dyn ObjectStore, dst: &dyn ObjectStore, keys: Vec<String>) -> Result<(), StoreError> {
    let located = src.locate_many(&keys).await?;
    let (mut by_bytes, mut links) = (Vec::new(), Vec::new());
    for (key, location) in keys.into_iter().zip(located) {
        match location {
            Some(location) => links.push((location, key)),
            None => by_bytes.push(key),
        }
    }
    let linked = dst.copy_located_many(&links).await?;
    by_bytes.extend(links.into_iter().zip(linked).filter(|(_, done)| !done).map(|((_, key), _)| key));
    stream::iter(by_bytes)
        .map(|key| async move { copy_bytes(src, &key, dst, &key).await.map(drop) })
        .buffer_unordered(COPY_CONCURRENCY)
        .try_collect()
        .await
}

/// Copies the immutable file `from` of `src` to `to` in `dst` unless `dst` has it (by hard link or
/// server-side copy where the stores allow it); returns whether it did.
pub async fn copy_file(src: &dyn ObjectStore, from: &str, dst: &dyn ObjectStore, to: &str) -> Result<bool, StoreError> {
    if dst.head(to).await?.is_some() {
        return Ok(false);
    }
    if let Some(location) = src.locate(from).await? {
        if dst.copy_located(&location, to).await? {
            return Ok(true);
        }
    }
    copy_bytes(src, from, dst, to).await
}

/// Copies `from` of `src` to `to` in `dst` through our memory, unless `to` appeared meanwhile;
/// returns whether it did.
async fn copy_bytes(src: &dyn ObjectStore, from: &str, dst: &dyn ObjectStore, to: &str) -> Result<bool, StoreError> {
    let data = read_limited(src, from, u64::MAX - 1).await?;
    dst.put_if_absent(to, Bytes::from(data)).await
}

/// Writes `config` and makes sure the repository layout ostree expects exists.
pub async fn write_config(dst: &dyn ObjectStore, collection_id: Option<&str>) -> Result<(), StoreError> {
    dst.put("config", Bytes::from(repo_config(collection_id))).await
}

/// Points `refs/heads/<ref>` at each record's commit.
pub async fn write_refs(dst: &dyn ObjectStore, records: &[RefRecord]) -> Result<(), StoreError> {
    for record in records {
        dst.put(&format!("refs/heads/{}", record.name), Bytes::from(ref_file(&record.commit))).await?;
    }
    Ok(())
}

/// The summary files of one repository state, in the order they must be written.
#[derive(Debug)]
pub struct SummaryFiles {
    /// `summaries/<digest>.gz` of the subsummaries that changed, immutable.
    pub subsummaries: Vec<(String, Vec<u8>)>,
    /// `summaries/<old>-<new>.delta`, immutable.
    pub deltas: Vec<(String, Vec<u8>)>,
    /// `summary.idx`, the switch.
    pub index: Vec<u8>,
    /// The compat `summary`.
    pub compat: Vec<u8>,
    /// `summary.idx.sig` (also stored as `summaries/<index digest>.idx.sig`) when signed.
    pub index_signatures: Option<Vec<u8>>,
    /// `summary.sig` when signed.
    pub compat_signatures: Option<Vec<u8>>,
    /// The `summaries/` files this index names, and the directories of the deltas listed.
    pub named: BTreeSet<String>,
    /// The `summaries/` files the previous index named and this one does not.
    pub retired: Vec<String>,
    /// When these summaries were made, seconds since the epoch.
    pub now: u64,
}

impl SummaryFiles {
    /// sha256 of `summary.idx`, which names its detached signature.
    pub fn index_digest(&self) -> Checksum {
        Checksum::of(&self.index)
    }

    /// Signs `summary.idx` and `summary` with every key of `signer`; the index's digest-named
    /// signature becomes one of the files it names.
    #[cfg(feature = "server")]
    pub fn sign(&mut self, signer: &Signer) -> Result<(), SignError> {
        self.index_signatures = Some(signer.signatures_file(&self.index)?);
        self.compat_signatures = Some(signer.signatures_file(&self.compat)?);
        self.named.insert(index_signatures_key(&self.index_digest()));
        Ok(())
    }
}

/// `summaries/<digest>.idx.sig`: the signatures of the `summary.idx` whose sha256 is `digest`.
pub fn index_signatures_key(digest: &Checksum) -> String {
    format!("summaries/{digest}.idx.sig")
}

/// Builds the summaries for `records`, with history and deltas from the index currently in `dst`.
pub async fn build_summaries(
    dst: &dyn ObjectStore,
    records: &[RefRecord],
    settings: &SummarySettings,
    static_deltas: &[DeltaListing],
    now: u64,
) -> Result<SummaryFiles, StoreError> {
    let (previous, previous_digest) = read_previous_index(dst).await?;
    let mut files = SummaryFiles {
        subsummaries: Vec::new(),
        deltas: Vec::new(),
        index: Vec::new(),
        compat: Vec::new(),
        index_signatures: None,
        compat_signatures: None,
        named: BTreeSet::new(),
        retired: Vec::new(),
        now,
    };
    // The compat summary on a second core while this one makes the subsummaries.
    let refs = Refs::new(records);
    let (compat, subsummaries) = std::thread::scope(|scope| {
        let compat = scope.spawn(|| refs.compat_summary(settings, static_deltas, now));
        let subsummaries = current_subsummaries(&refs, &previous);
        (compat.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), subsummaries)
    });
    files.compat = compat;
    let mut entries = BTreeMap::new();
    for (name, digest, bytes, layout) in subsummaries {
        // An unchanged subsummary keeps its file and the deltas to it that the previous index
        // names (written before that index was): nothing to compress, read back or diff again.
        if let Some(old) = previous.get(&name).filter(|old| old.digest == digest) {
            if dst.head(&format!("summaries/{digest}.gz")).await?.is_some() {
                let history = old.history.iter().copied().take(settings.history_length).collect();
                entries.insert(name, IndexEntry { digest, history });
                continue;
            }
        }
        let candidates = previous
            .get(&name)
            .map(|old| std::iter::once(old.digest).chain(old.history.iter().copied()).collect::<Vec<_>>());
        let mut olds = Vec::new();
        for old in candidates.unwrap_or_default() {
            if olds.len() >= settings.history_length || old == digest || olds.iter().any(|(d, _)| *d == old) {
                continue;
            }
            if let Some(old_layout) = read_subsummary(dst, &old, &layout).await? {
                olds.push((old, old_layout));
            }
        }
        // Compressed, and the older half of the deltas made, on a second core while this one
        // makes the newer half.
        let delta = |(old, old_layout): &(Checksum, Arc<Layout>)| {
            (format!("summaries/{old}-{digest}.delta"), layout_diff(old_layout, &layout))
        };
        let (newer, older) = olds.split_at(olds.len().div_ceil(2));
        let (compressed, deltas) = std::thread::scope(|scope| {
            let second =
                scope.spawn(|| (gzip(&bytes, SUBSUMMARY_GZIP_LEVEL), older.iter().map(delta).collect::<Vec<_>>()));
            let mut deltas: Vec<(String, Vec<u8>)> = newer.iter().map(delta).collect();
            let (compressed, older_deltas) = second.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            deltas.extend(older_deltas);
            (compressed, deltas)
        });
        files.deltas.extend(deltas);
        files.subsummaries.push((format!("summaries/{digest}.gz"), compressed));
        entries.insert(name, IndexEntry { digest, history: olds.into_iter().map(|(old, _)| old).collect() });
    }
    files.index = summary_index(&entries, settings, now);
    files.named = retire::referenced(entries.values());
    // The deltas the summary lists are in use too: a retired one listed again must stay.
    files.named.extend(static_deltas.iter().filter_map(|d| DeltaId::parse_name(&d.name).ok()).map(|d| d.dir()));
    files.retired = retire::referenced(previous.values()).difference(&files.named).cloned().collect();
    // The previous index's signature, if it was signed, goes with it (unless the index is the same).
    if let Some(key) = previous_digest.filter(|d| *d != files.index_digest()).map(|d| index_signatures_key(&d)) {
        if dst.head(&key).await?.is_some() {
            files.retired.push(key);
        }
    }
    Ok(files)
}

/// Writes the summary files in the order of the module documentation: immutable ones first, then
/// the index's digest-named signature, `summary.idx`, `summary.idx.sig`, `summary.sig` and
/// `summary`; then records the files the new index retires and deletes those retired long enough
/// ago ([`retire`]). That clean-up only logs its failures: the summaries are published by then.
pub async fn write_summaries(dst: &dyn ObjectStore, files: &SummaryFiles) -> Result<(), StoreError> {
    for (key, bytes) in files.subsummaries.iter().chain(&files.deltas) {
        dst.put_if_absent(key, Bytes::from(bytes.clone())).await?;
    }
    if let Some(signatures) = &files.index_signatures {
        dst.put(&index_signatures_key(&files.index_digest()), Bytes::from(signatures.clone())).await?;
    } else {
        // A repository no longer signed must not keep signatures of summaries it replaces.
        dst.delete("summary.idx.sig").await?;
        dst.delete("summary.sig").await?;
    }
    dst.put("summary.idx", Bytes::from(files.index.clone())).await?;
    if let Some(signatures) = &files.index_signatures {
        dst.put("summary.idx.sig", Bytes::from(signatures.clone())).await?;
    }
    if let Some(signatures) = &files.compat_signatures {
        dst.put("summary.sig", Bytes::from(signatures.clone())).await?;
    }
    dst.put("summary", Bytes::from(files.compat.clone())).await?;
    let tag = files.index_digest().to_hex();
    if let Err(e) = retire::record(dst, &files.retired, &tag, files.now).await {
        tracing::warn!(error = %e, "could not record the retired summary files; they stay");
    }
    match retire::sweep(dst, &files.named, files.now).await {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "deleted summary files retired more than the grace period ago"),
        Err(e) => tracing::warn!(error = %e, "could not delete retired summary files; the next publish retries"),
    }
    Ok(())
}

/// The entries of the current `summary.idx` and its sha256, if there is one.
async fn read_previous_index(
    dst: &dyn ObjectStore,
) -> Result<(BTreeMap<String, IndexEntry>, Option<Checksum>), StoreError> {
    match read_limited(dst, "summary.idx", MAX_SUMMARY_SIZE).await {
        Ok(bytes) => {
            let entries = parse_index(&bytes).map(|(entries, _)| entries).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "ignoring unreadable summary.idx: no summary deltas this time");
                BTreeMap::new()
            });
            Ok((entries, Some(Checksum::of(&bytes))))
        }
        Err(StoreError::NotFound(_)) => Ok((BTreeMap::new(), None)),
        Err(e) => Err(e),
    }
}

/// A subsummary: its name, sha256, bytes and layout.
type Subsummary = (String, Checksum, Vec<u8>, Arc<Layout>);

/// The subsummaries of `refs`. Each is kept in memory for the next publish to diff against; one
/// the same as the previous index's is known by its layout, unhashed.
fn current_subsummaries(refs: &Refs, previous: &BTreeMap<String, IndexEntry>) -> Vec<Subsummary> {
    refs.subsummary_names()
        .into_iter()
        .map(|(name, subset, arch)| {
            let (bytes, layout) = refs.subsummary(&subset, &arch);
            let digest = previous
                .get(&name)
                .map(|old| old.digest)
                .filter(|old| recall(old).is_some_and(|old_layout| old_layout.same_as(&layout)))
                .unwrap_or_else(|| Checksum::of(&bytes));
            let layout = Arc::new(layout);
            remember(digest, layout.clone());
            (name, digest, bytes, layout)
        })
        .collect()
}

/// The layout of an earlier subsummary, if it is still stored (and intact): from memory when this
/// process kept it, so it is neither read back nor decompressed, but only while the store has it,
/// as a delta from a subsummary the repository no longer has is not made. One read back shares
/// its entries with `newer`'s where they are the same.
async fn read_subsummary(
    dst: &dyn ObjectStore,
    digest: &Checksum,
    newer: &Layout,
) -> Result<Option<Arc<Layout>>, StoreError> {
    let key = format!("summaries/{digest}.gz");
    if let Some(layout) = recall(digest) {
        return Ok(dst.head(&key).await?.map(|_| layout));
    }
    let compressed = match read_limited(dst, &key, MAX_SUMMARY_SIZE).await {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(bytes) = gunzip(&compressed, MAX_SUMMARY_SIZE).ok().filter(|bytes| Checksum::of(bytes) == *digest) else {
        return Ok(None);
    };
    let layout = Arc::new(Layout::parse(&bytes, Some(newer)));
    remember(*digest, layout.clone());
    Ok(Some(layout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::record::FlatpakData;
    use crate::store::LocalStore;

    fn records(commit: &[u8]) -> Vec<RefRecord> {
        vec![RefRecord {
            name: "app/org.example.App/x86_64/stable".into(),
            commit: Checksum::of(commit),
            commit_size: 100,
            timestamp: 1_700_000_000,
            flatpak: Some(FlatpakData {
                metadata: "[Application]\nname=org.example.App\n".into(),
                ..Default::default()
            }),
        }]
    }

    async fn publish(store: &LocalStore, commit: &[u8], now: u64) -> SummaryFiles {
        let files = build_summaries(store, &records(commit), &SummarySettings::default(), &[], now).await.unwrap();
        write_summaries(store, &files).await.unwrap();
        files
    }

    #[tokio::test]
    async fn an_unsigned_publish_leaves_no_stale_summary_signatures() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        for key in ["summary.sig", "summary.idx.sig"] {
            store.put(key, Bytes::from_static(b"signatures of an earlier, signed summary")).await.unwrap();
        }
        publish(&store, b"v1", 1_800_000_000).await;
        for key in ["summary.sig", "summary.idx.sig"] {
            assert!(store.head(key).await.unwrap().is_none(), "{key} would not match the new summary");
        }
    }

    #[tokio::test]
    async fn superseded_summary_files_go_only_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let t = 1_800_000_000;
        let first = publish(&store, b"v1", t).await;
        let second = publish(&store, b"v2", t + 10).await;
        assert!(!second.retired.is_empty() && second.retired.iter().all(|key| !second.named.contains(key)));
        let old: Vec<&String> = first.named.iter().filter(|key| !second.named.contains(*key)).collect();
        assert!(!old.is_empty());
        for key in &old {
            assert!(store.head(key).await.unwrap().is_some(), "{key} is kept while caches may name it");
        }
        let third = publish(&store, b"v3", t + 10 + retire::GRACE_SECS).await;
        for key in &old {
            assert!(store.head(key).await.unwrap().is_none(), "{key} is gone after the grace period");
        }
        for key in second.named.iter().filter(|key| !third.named.contains(*key)) {
            assert!(store.head(key).await.unwrap().is_some(), "{key} was retired just now");
        }
        for key in &third.named {
            assert!(store.head(key).await.unwrap().is_some(), "{key} is named by the current index");
        }
    }
}
