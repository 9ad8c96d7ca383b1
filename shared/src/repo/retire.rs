//! Removing summary files a new `summary.idx` no longer names, after a grace period. Readers may
//! hold a cached `summary.idx` (CDN or client) for up to its TTL and then fetch what it names, so
//! a file leaves the repository only once it has been unreferenced for longer than any cache can
//! keep the index that named it, plus a client transaction.
//!
//! Each publish that retires files records them in a ledger entry,
//! `.flatbucket/retired/<unix seconds>-<new index digest>`, one key per line, written after the
//! new index. Each publish also sweeps the entries older than the grace period: it deletes the
//! keys the current index does not name again (a repository can return to an earlier state), then
//! the entry. A crash anywhere leaves the entry for the next sweep; a delete repeated is harmless.
//!
//! The update-repo job retires static deltas the same way: an entry line may name a delta's
//! directory (`deltas/<xx>/<rest>`), deleted superblock first unless the current summary lists the
//! delta again. A delta index cached before the retirement may name the delta until then.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::deltas::delete_delta_dir;
use super::summary::IndexEntry;
use crate::store::{read_limited, ObjectStore, StoreError};

/// How long a retired file stays: twice the longest `summary.idx` TTL in use (Flathub's 1 h).
pub const GRACE_SECS: u64 = 2 * 3600;
/// Where ledger entries live in the repository.
const LEDGER: &str = ".flatbucket/retired/";
/// Largest ledger entry read back.
const MAX_ENTRY_SIZE: u64 = 16 * 1024 * 1024;

/// Every `summaries/` file an index names: each subsummary and the deltas to it from its history.
/// (A signed index also names its own `summaries/<digest>.idx.sig`, added when it is signed.)
pub fn referenced<'a>(entries: impl IntoIterator<Item = &'a IndexEntry>) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for entry in entries {
        keys.insert(format!("summaries/{}.gz", entry.digest));
        keys.extend(entry.history.iter().map(|old| format!("summaries/{old}-{}.delta", entry.digest)));
    }
    keys
}

/// Records `retired` (named by the previous index, not by the current one) as retired at `now`.
pub async fn record(dst: &dyn ObjectStore, retired: &[String], tag: &str, now: u64) -> Result<(), StoreError> {
    if retired.is_empty() {
        return Ok(());
    }
    let list = retired.iter().map(|key| format!("{key}\n")).collect::<String>();
    dst.put(&format!("{LEDGER}{now:020}-{tag}"), Bytes::from(list)).await
}

/// Deletes what was retired more than [`GRACE_SECS`] before `now`, except keys `current` names.
/// Returns how many files were deleted.
pub async fn sweep(dst: &dyn ObjectStore, current: &BTreeSet<String>, now: u64) -> Result<usize, StoreError> {
    let mut deleted = 0;
    for entry in dst.list(LEDGER).await? {
        let retired_at = entry
            .strip_prefix(LEDGER)
            .and_then(|name| name.split_once('-'))
            .and_then(|(secs, _)| secs.parse::<u64>().ok());
        let Some(retired_at) = retired_at else {
            tracing::warn!(%entry, "ignoring a ledger entry with an unexpected name");
            continue;
        };
        if retired_at.saturating_add(GRACE_SECS) > now {
            continue; // entries sort by time: the rest are younger still
        }
        let list = read_limited(dst, &entry, MAX_ENTRY_SIZE).await?;
        for key in String::from_utf8_lossy(&list).lines().filter(|key| !current.contains(*key)) {
            if is_summary_file(key) {
                dst.delete(key).await?;
                deleted += 1;
            } else if is_delta_dir(key) {
                delete_delta_dir(dst, key).await?;
                deleted += 1;
            }
        }
        dst.delete(&entry).await?;
    }
    Ok(deleted)
}

/// `summaries/<name>`, with nothing hidden or nested.
fn is_summary_file(key: &str) -> bool {
    key.strip_prefix("summaries/").is_some_and(is_plain_name)
}

/// `deltas/<xx>/<rest>`: a static delta's directory.
fn is_delta_dir(key: &str) -> bool {
    let Some((prefix, name)) = key.strip_prefix("deltas/").and_then(|rest| rest.split_once('/')) else {
        return false;
    };
    prefix.len() == 2 && is_plain_name(prefix) && is_plain_name(name)
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Checksum;
    use crate::store::LocalStore;

    fn entry(digest: &[u8], history: &[&[u8]]) -> IndexEntry {
        IndexEntry { digest: Checksum::of(digest), history: history.iter().map(|h| Checksum::of(h)).collect() }
    }

    #[test]
    fn an_index_names_its_subsummaries_and_the_deltas_to_them() {
        let keys = referenced(&[entry(b"new", &[b"old"])]);
        let (new, old) = (Checksum::of(b"new"), Checksum::of(b"old"));
        assert_eq!(keys, [format!("summaries/{new}.gz"), format!("summaries/{old}-{new}.delta")].into());
    }

    #[tokio::test]
    async fn retired_files_stay_for_the_grace_period_unless_named_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        for key in ["summaries/a.gz", "summaries/b.gz", "summaries/c.gz"] {
            store.put(key, Bytes::from_static(b"x")).await.unwrap();
        }
        let retired = ["summaries/a.gz".to_owned(), "summaries/b.gz".to_owned()];
        record(&store, &retired, "idx1", 1000).await.unwrap();
        record(&store, &[], "idx2", 1500).await.unwrap();
        let current: BTreeSet<String> = ["summaries/b.gz".to_owned(), "summaries/c.gz".to_owned()].into();

        assert_eq!(sweep(&store, &current, 1000 + GRACE_SECS - 1).await.unwrap(), 0, "too early");
        assert!(store.head("summaries/a.gz").await.unwrap().is_some());

        assert_eq!(sweep(&store, &current, 1000 + GRACE_SECS).await.unwrap(), 1);
        assert!(store.head("summaries/a.gz").await.unwrap().is_none(), "retired and past the grace period");
        assert!(store.head("summaries/b.gz").await.unwrap().is_some(), "named by the current index again");
        assert!(store.list(LEDGER).await.unwrap().is_empty(), "the entry is done");
        assert_eq!(sweep(&store, &current, 1000 + 2 * GRACE_SECS).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn retired_delta_directories_go_after_the_grace_period_unless_listed_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let (gone, listed) = ("deltas/ab/cdef", "deltas/ab/cdef-ghij");
        for delta in [gone, listed] {
            for file in ["0", "1", "superblock"] {
                store.put(&format!("{delta}/{file}"), Bytes::from_static(b"x")).await.unwrap();
            }
        }
        record(&store, &[gone.to_owned(), listed.to_owned()], "deltas-job1", 1000).await.unwrap();
        let current: BTreeSet<String> = [listed.to_owned()].into();
        assert_eq!(sweep(&store, &current, 1000 + GRACE_SECS - 1).await.unwrap(), 0, "too early");
        assert_eq!(store.list(&format!("{gone}/")).await.unwrap().len(), 3);
        assert_eq!(sweep(&store, &current, 1000 + GRACE_SECS).await.unwrap(), 1);
        assert!(store.list(&format!("{gone}/")).await.unwrap().is_empty(), "retired and past the grace period");
        assert_eq!(store.list(&format!("{listed}/")).await.unwrap().len(), 3, "listed again by the summary");
    }

    #[tokio::test]
    async fn a_ledger_never_deletes_outside_summaries() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        store.put("config", Bytes::from_static(b"x")).await.unwrap();
        store
            .put(
                &format!("{LEDGER}{:020}-x", 1),
                Bytes::from_static(b"config\n../config\nsummaries/../config\ndeltas/../config\ndeltas/..\n"),
            )
            .await
            .unwrap();
        sweep(&store, &BTreeSet::new(), 1 + GRACE_SECS).await.unwrap();
        assert!(store.head("config").await.unwrap().is_some());
    }
}
