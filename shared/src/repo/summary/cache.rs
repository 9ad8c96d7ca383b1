//! Process-wide memory of summary work, so a publish costs what changed rather than what the
//! repository holds (DESIGN property 3):
//!
//! - [`encoded`]: each ref's serialized summary entries (its subsummary and compat `ref map`
//!   elements and its `xa.cache` entry), kept while the ref keeps the same record; a summary of
//!   10,000 refs is then copies and framing offsets ([`crate::repo::gv::frame_array`]).
//! - [`remember`] / [`recall`]: the layouts of the subsummaries last built or read, by sha256, to
//!   diff the next ones against without reading and decompressing them back. A layout shares its
//!   entries with the first cache and with other versions ([`Layout`]), so a subsummary's whole
//!   history (16 versions in flatpak's index) fits. Content-addressed, so an entry is never stale;
//!   a miss (another process wrote it, a cold start) reads the store.
//!
//! Both are bounded: entries not used by the last [`KEEP_BUILDS`] summaries built leave the first,
//! and the second keeps layouts costing at most [`RECENT_BUDGET`] bytes ([`Layout::cost`]), the
//! newest first.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::Layout;
use crate::repo::record::RefRecord;
use crate::repo::Checksum;

/// Summaries built since an entry was last used after which it is dropped.
const KEEP_BUILDS: u64 = 64;
/// What the kept layouts may cost: the history of a subsummary of 10,000 refs costs about 3 MiB.
const RECENT_BUDGET: usize = 16 << 20;

/// The serialized entries of one ref.
#[derive(Debug)]
pub(super) struct Encoded {
    /// The ref's arch, if it has one (`arch_for_ref`).
    pub arch: Option<String>,
    /// `(s(taya{sv}))` of a subsummary's ref map, shared with the layouts of the subsummaries
    /// holding it.
    pub subsummary: Arc<[u8]>,
    /// `(s(taya{sv}))` of the compat summary's ref map.
    pub compat: Vec<u8>,
    /// `{s(tts)}` of the compat summary's `xa.cache`, for flatpak refs.
    pub xa_cache: Option<Vec<u8>>,
}

/// What of a record its entries are made of (everything but the subsets, which only choose the
/// summaries it is in, and the appstream data, which no summary carries).
#[derive(Debug, PartialEq, Eq)]
struct Inputs {
    name: String,
    commit_size: u64,
    timestamp: u64,
    flatpak: Option<FlatpakInputs>,
}

#[derive(Debug, PartialEq, Eq)]
struct FlatpakInputs {
    installed_size: u64,
    download_size: u64,
    metadata: String,
    end_of_life: Option<String>,
    end_of_life_rebase: Option<String>,
    token_type: Option<i32>,
    extra_data: Option<(u32, u64)>,
}

impl Inputs {
    fn of(record: &RefRecord) -> Self {
        Self {
            name: record.name.clone(),
            commit_size: record.commit_size,
            timestamp: record.timestamp,
            flatpak: record.flatpak.as_ref().map(|d| FlatpakInputs {
                installed_size: d.installed_size,
                download_size: d.download_size,
                metadata: d.metadata.clone(),
                end_of_life: d.end_of_life.clone(),
                end_of_life_rebase: d.end_of_life_rebase.clone(),
                token_type: d.token_type,
                extra_data: d.extra_data,
            }),
        }
    }

    /// Whether `record` (of the same commit) has these inputs, compared without copying.
    fn matches(&self, record: &RefRecord) -> bool {
        let flatpak_matches = match (&self.flatpak, &record.flatpak) {
            (None, None) => true,
            (Some(ours), Some(theirs)) => {
                ours.installed_size == theirs.installed_size
                    && ours.download_size == theirs.download_size
                    && ours.metadata == theirs.metadata
                    && ours.end_of_life == theirs.end_of_life
                    && ours.end_of_life_rebase == theirs.end_of_life_rebase
                    && ours.token_type == theirs.token_type
                    && ours.extra_data == theirs.extra_data
            }
            _ => false,
        };
        flatpak_matches
            && self.name == record.name
            && self.commit_size == record.commit_size
            && self.timestamp == record.timestamp
    }
}

struct Entry {
    inputs: Inputs,
    encoded: Arc<Encoded>,
    /// The build that last used it.
    used: u64,
}

/// Hashes a checksum by its first bytes: they are uniformly distributed already.
#[derive(Default)]
struct ChecksumHasher(u64);

impl Hasher for ChecksumHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(word.len());
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(word);
    }
}

#[derive(Default)]
struct Entries {
    /// Entries by commit (a commit is usually under one ref, in one or several repositories).
    by_commit: HashMap<Checksum, Vec<Entry>, BuildHasherDefault<ChecksumHasher>>,
    /// Builds so far.
    builds: u64,
}

fn entries() -> MutexGuard<'static, Entries> {
    static ENTRIES: OnceLock<Mutex<Entries>> = OnceLock::new();
    // A panic while holding the lock leaves at worst a missing entry: the data stays usable.
    ENTRIES.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The entries of `listed`, in order, encoding (with `encode`) those of records not seen before.
/// The lock is taken per record, so summaries built on other threads look up at the same time.
pub(super) fn encoded(listed: &[&RefRecord], encode: impl Fn(&RefRecord) -> Encoded) -> Vec<Arc<Encoded>> {
    let build = {
        let mut entries = entries();
        entries.builds += 1;
        entries.builds
    };
    let out = listed
        .iter()
        .map(|record| {
            let mut locked = entries();
            let same_commit = locked.by_commit.entry(record.commit).or_default();
            if let Some(entry) = same_commit.iter_mut().find(|e| e.inputs.matches(record)) {
                entry.used = build;
                return entry.encoded.clone();
            }
            drop(locked);
            let encoded = Arc::new(encode(record));
            let entry = Entry { inputs: Inputs::of(record), encoded: encoded.clone(), used: build };
            entries().by_commit.entry(record.commit).or_default().push(entry);
            encoded
        })
        .collect();
    if build % KEEP_BUILDS == 0 {
        entries().by_commit.retain(|_, same_commit| {
            same_commit.retain(|e| e.used + KEEP_BUILDS > build);
            !same_commit.is_empty()
        });
    }
    out
}

/// Recent subsummaries' layouts, newest first, and their total cost.
#[derive(Default)]
struct Recent {
    subsummaries: VecDeque<(Checksum, Arc<Layout>)>,
    cost: usize,
}

fn recent() -> MutexGuard<'static, Recent> {
    static RECENT: OnceLock<Mutex<Recent>> = OnceLock::new();
    RECENT.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps the layout of the subsummary whose sha256 is `digest`.
pub fn remember(digest: Checksum, layout: Arc<Layout>) {
    let mut recent = recent();
    if let Some(at) = recent.subsummaries.iter().position(|(d, _)| *d == digest) {
        let entry = recent.subsummaries.remove(at).expect("the position is in range");
        recent.subsummaries.push_front(entry);
        return;
    }
    if layout.cost() > RECENT_BUDGET {
        return;
    }
    recent.cost += layout.cost();
    recent.subsummaries.push_front((digest, layout));
    while recent.cost > RECENT_BUDGET {
        let (_, dropped) = recent.subsummaries.pop_back().expect("costs are counted for kept entries");
        recent.cost -= dropped.cost();
    }
}

/// The layout of the subsummary of sha256 `digest`, if it is kept.
pub fn recall(digest: &Checksum) -> Option<Arc<Layout>> {
    recent().subsummaries.iter().find(|(d, _)| d == digest).map(|(_, layout)| layout.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::record::FlatpakData;

    fn record(name: &str, metadata: &str) -> RefRecord {
        RefRecord {
            name: name.into(),
            commit: Checksum::of(b"one commit"),
            commit_size: 10,
            timestamp: 20,
            flatpak: Some(FlatpakData { metadata: metadata.into(), ..Default::default() }),
        }
    }

    fn encode(record: &RefRecord) -> Encoded {
        let tag = format!("{}:{}", record.name, record.flatpak.as_ref().map_or("", |d| d.metadata.as_str()));
        Encoded { arch: None, subsummary: tag.into_bytes().into(), compat: Vec::new(), xa_cache: None }
    }

    #[test]
    fn an_entry_is_reused_only_for_the_same_inputs() {
        let (a, b, c) = (record("app/a", "m1"), record("app/b", "m1"), record("app/a", "m2"));
        let first = encoded(&[&a, &b], encode);
        let again = encoded(&[&a, &b, &c], encode);
        assert!(Arc::ptr_eq(&first[0], &again[0]) && Arc::ptr_eq(&first[1], &again[1]));
        assert_eq!(&*again[2].subsummary, b"app/a:m2", "other metadata under the same commit is encoded anew");
    }

    #[test]
    fn recent_subsummaries_are_found_by_digest() {
        let bytes = b"a subsummary kept for the next diff";
        let (digest, layout) = (Checksum::of(bytes), Arc::new(Layout::parse(bytes, None)));
        remember(digest, layout.clone());
        assert!(recall(&digest).is_some_and(|kept| Arc::ptr_eq(&kept, &layout)));
        assert!(recall(&Checksum::of(b"never kept")).is_none());
    }
}
