//! Static deltas in a published repository: their names, the `delta-indexes/<to>.index` files
//! clients look them up in, the ledger of the deltas a repository publishes, and the
//! [`DeltaGenerator`] port the update-repo job generates missing deltas through (libostree, in
//! the `flatbucket-deltas` crate, so that nothing else links it).
//!
//! The ledger, `.flatbucket/deltas`, lists every delta the delta indexes and summaries name, one
//! `<name> <sha256 of superblock>` line each. It is how the update-repo job knows which deltas
//! exist without listing `deltas/` (which grows with the repository's history) and how a publish
//! lists deltas in the compat summary without reading any superblock. It is written after the
//! indexes and summaries that name its deltas; a delta written but not yet in the ledger is found
//! again by its superblock on the next run.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use gvariant::{gv, Structure};

use super::gv::{aligned, variant, VarDict};
use super::summary::DeltaListing;
use super::{delta_dir, delta_index_key, delta_name, Checksum, FormatError};
use crate::store::{read_limited, ObjectStore, StoreError};

/// Where the ledger of published deltas lives.
const LEDGER_KEY: &str = ".flatbucket/deltas";
/// Largest ledger read back.
const MAX_LEDGER_SIZE: u64 = 64 * 1024 * 1024;
/// Largest superblock read back (it holds the commit and the part headers, not the parts).
const MAX_SUPERBLOCK_SIZE: u64 = 64 * 1024 * 1024;
/// The summary metadata key that lists deltas, also the one key of a delta index.
const STATIC_DELTAS_KEY: &str = "ostree.static-deltas";

/// One static delta: to a commit, from its ancestor or (`from` = `None`) from scratch. Ordered by
/// `from` first, from-scratch first, as ostree lists a target's deltas in its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeltaId {
    pub from: Option<Checksum>,
    pub to: Checksum,
}

impl DeltaId {
    /// `<to>` or `<from>-<to>` in hex, as summaries and delta indexes name deltas.
    pub fn name(&self) -> String {
        delta_name(self.from.as_ref(), &self.to)
    }

    /// The delta's directory below the repository root, without a trailing slash.
    pub fn dir(&self) -> String {
        delta_dir(self.from.as_ref(), &self.to)
    }

    pub fn superblock_key(&self) -> String {
        format!("{}/superblock", self.dir())
    }

    /// Parses a name made by [`DeltaId::name`].
    pub fn parse_name(name: &str) -> Result<Self, FormatError> {
        match name.split_once('-') {
            Some((from, to)) => Ok(Self { from: Some(Checksum::from_hex(from)?), to: Checksum::from_hex(to)? }),
            None => Ok(Self { from: None, to: Checksum::from_hex(name)? }),
        }
    }
}

/// A delta whose files are in the repository, with the sha256 of its superblock.
pub type DeltaDigests = BTreeMap<DeltaId, Checksum>;

/// The files of a generated delta, to be stored under [`DeltaId::dir`].
#[derive(Debug, Clone)]
pub struct DeltaFiles {
    /// `superblock`, written last: it names the parts by their checksums.
    pub superblock: Bytes,
    /// The other files (`0`, `1`, …), by name relative to the delta's directory.
    pub parts: Vec<(String, Bytes)>,
}

/// Why a delta could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source repository lacks objects of the commits (pruned, damaged).
    #[error("the repository cannot provide commit {commit}: {reason}")]
    Incomplete { commit: Checksum, reason: String },
    #[error("generating the delta failed: {0}")]
    Generate(String),
}

/// Generates static deltas: the port between the update-repo job and libostree.
#[async_trait]
pub trait DeltaGenerator: Send + Sync + Debug {
    /// Generates `delta` from the commits and objects in `source`, as `flatpak build-update-repo`
    /// would, and hands back its files; nothing is written to `source`.
    async fn generate(&self, source: Arc<dyn ObjectStore>, delta: DeltaId) -> Result<DeltaFiles, GenerateError>;
}

/// `delta-indexes/<to>.index`: an `a{sv}` whose `ostree.static-deltas` maps each delta of
/// `deltas` (all ending at the same commit) to its superblock's sha256, as
/// `ostree_repo_static_delta_reindex` writes it: the deltas go, from-scratch first then by
/// `from`, into a `GVariantDict`, which serializes in its hash table's order. (libostree means to
/// insert in that order, but its `g_ptr_array_sort` with `g_strcmp0` compares the pointers' bytes,
/// so when two names' buckets collide its order follows heap addresses; then the entries match
/// but their order may not.)
pub fn delta_index<'a>(deltas: impl IntoIterator<Item = (&'a DeltaId, &'a Checksum)>) -> Vec<u8> {
    let mut sorted: Vec<(&DeltaId, &Checksum)> = deltas.into_iter().collect();
    sorted.sort();
    let names: Vec<String> = sorted.iter().map(|(id, _)| id.name()).collect();
    let mut listing = VarDict::new();
    for position in glib_hash_order(&names) {
        let (name, digest) = (&names[position], sorted[position].1);
        listing.set(name, variant(gv!("ay"), &digest.as_bytes()[..]));
    }
    let mut index = VarDict::new();
    index.set(STATIC_DELTAS_KEY, variant(gv!("a{sv}"), listing.as_tuples().iter()));
    index.to_bytes()
}

/// The order a GLib `GHashTable` keyed by `g_str_hash` iterates `keys` in, after inserting them in
/// the order given (GLib 2.74, `ghash.c`): open addressing with quadratic probing in a
/// power-of-two table whose start bucket is `hash * 11 % prime`, grown in place when full.
fn glib_hash_order(keys: &[String]) -> Vec<usize> {
    let mut table = GlibTable { slots: vec![None; 1 << GlibTable::MIN_SHIFT], shift: GlibTable::MIN_SHIFT };
    for (key, name) in keys.iter().enumerate() {
        let hash = name.bytes().fold(5381u32, |h, b| h.wrapping_mul(33).wrapping_add(u32::from(b))).max(2);
        let mut index = table.start(hash);
        let mut step = 0;
        while table.slots[index].is_some() {
            step += 1;
            index = (index + step) & (table.slots.len() - 1);
        }
        table.slots[index] = Some((hash, key));
        let occupied = key + 1;
        if table.slots.len() <= occupied + occupied / 16 {
            table.grow(occupied * 1333 / 1000);
        }
    }
    table.slots.into_iter().flatten().map(|(_, key)| key).collect()
}

/// A `GHashTable`'s buckets: each holds a key's hash and its position in the insertion order.
struct GlibTable {
    slots: Vec<Option<(u32, usize)>>,
    shift: u32,
}

impl GlibTable {
    const MIN_SHIFT: u32 = 3;
    const PRIME_MOD: [u32; 32] = [
        1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071, 262139, 524287,
        1048573, 2097143, 4194301, 8388593, 16777213, 33554393, 67108859, 134217689, 268435399, 536870909, 1073741789,
        2147483647,
    ];

    fn start(&self, hash: u32) -> usize {
        (hash.wrapping_mul(11) % Self::PRIME_MOD[self.shift as usize]) as usize
    }

    /// `g_hash_table_resize` to hold `size` entries: entries move, in bucket order, to their
    /// new buckets, evicting entries not yet moved, which move next.
    fn grow(&mut self, size: usize) {
        let old_size = self.slots.len();
        self.shift = (usize::BITS - size.leading_zeros()).max(Self::MIN_SHIFT);
        self.slots.resize(1 << self.shift, None);
        let mask = self.slots.len() - 1;
        let mut moved = vec![false; self.slots.len()];
        for i in 0..old_size {
            if moved[i] {
                continue;
            }
            let Some(mut carried) = self.slots[i].take() else { continue };
            loop {
                let mut index = self.start(carried.0);
                let mut step = 0;
                while moved[index] {
                    step += 1;
                    index = (index + step) & mask;
                }
                moved[index] = true;
                match self.slots[index].replace(carried) {
                    Some(evicted) => carried = evicted,
                    None => break,
                }
            }
        }
    }
}

/// The deltas a delta index lists, by name, with their superblock digests.
pub fn parse_delta_index(bytes: &[u8]) -> Result<Vec<(String, Checksum)>, FormatError> {
    let index = VarDict::parse(aligned(bytes).as_ref());
    let Some(listing) = index.get(STATIC_DELTAS_KEY) else { return Ok(Vec::new()) };
    let malformed = |what: &str| FormatError::Malformed(format!("delta index: {what}"));
    let listing = listing.get(gv!("a{sv}")).ok_or_else(|| malformed("the listing is not a{sv}"))?;
    listing
        .iter()
        .map(|entry| {
            let (name, value) = entry.to_tuple();
            let digest = value.get(gv!("ay")).ok_or_else(|| malformed("a digest is not ay"))?;
            Ok((name.to_str().to_owned(), Checksum::from_slice(digest)?))
        })
        .collect()
}

/// The compat summary's listing of `deltas`.
pub fn listings(deltas: &DeltaDigests) -> Vec<DeltaListing> {
    deltas.iter().map(|(id, digest)| DeltaListing { name: id.name(), superblock_digest: *digest }).collect()
}

/// The deltas the repository publishes, from its ledger (none when it has no ledger yet).
pub async fn read_ledger(store: &dyn ObjectStore) -> Result<DeltaDigests, StoreError> {
    let bytes = match read_limited(store, LEDGER_KEY, MAX_LEDGER_SIZE).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(DeltaDigests::new()),
        Err(e) => return Err(e),
    };
    let mut deltas = DeltaDigests::new();
    for line in String::from_utf8_lossy(&bytes).lines() {
        let parsed = line
            .split_once(' ')
            .ok_or_else(|| FormatError::Malformed(line.to_owned()))
            .and_then(|(name, digest)| Ok((DeltaId::parse_name(name)?, Checksum::from_hex(digest)?)));
        match parsed {
            Ok((id, digest)) => {
                deltas.insert(id, digest);
            }
            Err(e) => tracing::warn!(%line, error = %e, "ignoring an unreadable line of the delta ledger"),
        }
    }
    Ok(deltas)
}

/// Replaces the ledger with `deltas`.
pub async fn write_ledger(store: &dyn ObjectStore, deltas: &DeltaDigests) -> Result<(), StoreError> {
    let text: String = deltas.iter().map(|(id, digest)| format!("{} {digest}\n", id.name())).collect();
    store.put(LEDGER_KEY, Bytes::from(text)).await
}

/// The compat summary's listing of the deltas the repository publishes.
pub async fn read_listings(store: &dyn ObjectStore) -> Result<Vec<DeltaListing>, StoreError> {
    Ok(listings(&read_ledger(store).await?))
}

/// The sha256 of `delta`'s superblock when the delta is stored (an earlier run or a client
/// upload wrote it: parts go before the superblock, so a superblock means a whole delta).
pub async fn stored_superblock(store: &dyn ObjectStore, delta: &DeltaId) -> Result<Option<Checksum>, StoreError> {
    match read_limited(store, &delta.superblock_key(), MAX_SUPERBLOCK_SIZE).await {
        Ok(bytes) => Ok(Some(Checksum::of(&bytes))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores a generated delta: the parts first, the superblock last, all immutable. Leftovers of an
/// interrupted earlier attempt (parts without a superblock, which nothing names) go first, since
/// a new generation's parts differ from theirs. Returns the superblock's sha256.
pub async fn store_delta(store: &dyn ObjectStore, delta: &DeltaId, files: &DeltaFiles) -> Result<Checksum, StoreError> {
    let dir = format!("{}/", delta.dir());
    for key in store.list(&dir).await? {
        store.delete(&key).await?;
    }
    for (name, bytes) in &files.parts {
        store.put_if_absent(&format!("{dir}{name}"), bytes.clone()).await?;
    }
    if !store.put_if_absent(&delta.superblock_key(), files.superblock.clone()).await? {
        // Written meanwhile by someone else (a client's uploaded delta): that one is the delta.
        return stored_superblock(store, delta).await?.ok_or_else(|| StoreError::NotFound(delta.superblock_key()));
    }
    Ok(Checksum::of(&files.superblock))
}

/// Writes the delta index of commit `to` listing the deltas of `deltas` that end at it, or
/// deletes the index when there are none (clients then fetch objects).
pub async fn write_delta_index(
    store: &dyn ObjectStore,
    to: &Checksum,
    deltas: &DeltaDigests,
) -> Result<(), StoreError> {
    let key = delta_index_key(to);
    let listed: Vec<(&DeltaId, &Checksum)> = deltas.iter().filter(|(id, _)| id.to == *to).collect();
    if listed.is_empty() {
        return store.delete(&key).await;
    }
    store.put(&key, Bytes::from(delta_index(listed))).await
}

/// Deletes a delta directory (`deltas/…`, no trailing slash): the superblock first, so that no
/// reader finds a superblock whose parts are gone.
pub async fn delete_delta_dir(store: &dyn ObjectStore, dir: &str) -> Result<(), StoreError> {
    store.delete(&format!("{dir}/superblock")).await?;
    for key in store.list(&format!("{dir}/")).await? {
        store.delete(&key).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;

    fn id(from: Option<&[u8]>, to: &[u8]) -> DeltaId {
        DeltaId { from: from.map(Checksum::of), to: Checksum::of(to) }
    }

    #[test]
    fn delta_names_round_trip() {
        for delta in [id(None, b"to"), id(Some(b"from"), b"to")] {
            assert_eq!(DeltaId::parse_name(&delta.name()).unwrap(), delta);
        }
        assert!(DeltaId::parse_name("nothex-x").is_err());
    }

    #[test]
    fn an_index_lists_every_delta_with_its_superblock_digest() {
        let (scratch, a, b) = (id(None, b"to"), id(Some(b"a"), b"to"), id(Some(b"b"), b"to"));
        let digests = [(b, Checksum::of(b"sb")), (scratch, Checksum::of(b"ss")), (a, Checksum::of(b"sa"))];
        let bytes = delta_index(digests.iter().map(|(id, d)| (id, d)));
        let mut listed = parse_delta_index(&bytes).unwrap();
        listed.sort();
        let mut expected: Vec<(String, Checksum)> = digests.iter().map(|(id, d)| (id.name(), *d)).collect();
        expected.sort();
        assert_eq!(listed, expected);
    }

    #[test]
    fn hash_order_follows_glib_buckets_and_survives_growth() {
        // g_str_hash: "a" 177670 → bucket 177670 * 11 % 7 = 5, "b" 177671 → 2, "i" 177678 → 2,
        // taken, so the next probe, 3.
        let keys: Vec<String> = ["a", "b", "i"].iter().map(|k| k.to_string()).collect();
        assert_eq!(glib_hash_order(&keys), [1, 2, 0]);
        let many: Vec<String> = (0..40).map(|i| format!("{i:064x}")).collect();
        let mut order = glib_hash_order(&many);
        order.sort_unstable();
        assert_eq!(order, (0..40).collect::<Vec<_>>(), "every key once");
    }

    #[tokio::test]
    async fn the_ledger_round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        assert!(read_ledger(&store).await.unwrap().is_empty());
        let deltas: DeltaDigests =
            [(id(None, b"x"), Checksum::of(b"1")), (id(Some(b"w"), b"x"), Checksum::of(b"2"))].into();
        write_ledger(&store, &deltas).await.unwrap();
        assert_eq!(read_ledger(&store).await.unwrap(), deltas);
        assert_eq!(read_listings(&store).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_stored_delta_replaces_leftovers_and_its_index_follows_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let delta = id(Some(b"a"), b"b");
        store.put(&format!("{}/0", delta.dir()), Bytes::from_static(b"stale part")).await.unwrap();
        store.put(&format!("{}/7", delta.dir()), Bytes::from_static(b"stale part")).await.unwrap();
        let files = DeltaFiles {
            superblock: Bytes::from_static(b"superblock"),
            parts: vec![("0".into(), Bytes::from_static(b"new part"))],
        };
        let digest = store_delta(&store, &delta, &files).await.unwrap();
        assert_eq!(digest, Checksum::of(b"superblock"));
        assert_eq!(read_limited(&store, &format!("{}/0", delta.dir()), 100).await.unwrap(), b"new part");
        assert!(store.head(&format!("{}/7", delta.dir())).await.unwrap().is_none());
        assert_eq!(stored_superblock(&store, &delta).await.unwrap(), Some(digest));

        let deltas: DeltaDigests = [(delta, digest)].into();
        write_delta_index(&store, &delta.to, &deltas).await.unwrap();
        let index = read_limited(&store, &delta_index_key(&delta.to), 1 << 20).await.unwrap();
        assert_eq!(parse_delta_index(&index).unwrap(), [(delta.name(), digest)]);
        write_delta_index(&store, &delta.to, &DeltaDigests::new()).await.unwrap();
        assert!(store.head(&delta_index_key(&delta.to)).await.unwrap().is_none(), "no deltas, no index");

        delete_delta_dir(&store, &delta.dir()).await.unwrap();
        assert!(store.list(&format!("{}/", delta.dir())).await.unwrap().is_empty());
    }
}
