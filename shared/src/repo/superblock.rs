//! Static-delta superblocks, `(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))`: parsed and
//! written in normal form, checked against the commit a client uploaded them for, and rewritten for
//! the commit a build or publish made from it (as flatpak's `build-commit-from` rewrites deltas).
//!
//! A rewrite keeps every part: parts hold the commit's dirtrees, dirmetas and files, never the
//! commit itself, which the superblock embeds. So only the superblock changes: its `to` checksum,
//! the embedded commit and the detached metadata (signatures) it carries for that commit.

use std::collections::HashSet;
use std::io::Read;

use gvariant::{gv, Marker, Owned, Structure, Variant};
use sha2::{Digest, Sha256};
use tokio_util::io::SyncIoBridge;

use super::commit::Commit;
use super::gv::{aligned, variant, VarDict};
use super::walk::Closure;
use super::{delta_dir, Checksum, FormatError, ObjectName, ObjectType};
use crate::store::{ObjectStore, StoreError};

/// Largest superblock accepted: 33 bytes per object leave room for a million objects.
pub const MAX_SUPERBLOCK_SIZE: u64 = 32 * 1024 * 1024;
/// `ostree.endianness` → `y`: the byte order of the part headers' numbers.
const ENDIANNESS_KEY: &str = "ostree.endianness";
const LITTLE_ENDIAN: u8 = b'l';
/// The only part format ostree defines (`OSTREE_DELTAPART_VERSION`).
const PART_VERSION: u32 = 0;
/// One entry of a part's object list: the object type, then the checksum.
const OBJECT_ENTRY_LEN: usize = 33;
/// Bytes hashed at a time when checking a part.
const HASH_CHUNK: usize = 256 * 1024;

/// A part header as serialized: version, checksum, size, uncompressed size, object list.
type PartRow<'a> = (u32, &'a [u8], u64, u64, &'a [u8]);

/// What is wrong with a static delta.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("superblock: {0}")]
    Format(#[from] FormatError),
    /// The delta is well formed but does not describe the commit it is meant for.
    #[error("{0}")]
    Mismatch(String),
    #[error("part {index}: {problem}")]
    Part { index: usize, problem: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One part's header: its file's checksum and size, and the objects it creates, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHeader {
    pub version: u32,
    pub checksum: Checksum,
    pub size: u64,
    pub uncompressed_size: u64,
    pub objects: Vec<ObjectName>,
}

/// An object the delta leaves to be fetched on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub object: ObjectName,
    pub size: u64,
    pub uncompressed_size: u64,
}

/// A parsed superblock. Numbers are host values; metadata keeps its order and value bytes.
#[derive(Debug)]
pub struct Superblock {
    pub metadata: VarDict,
    /// When the delta was generated, seconds since the epoch (stored big-endian).
    pub timestamp: u64,
    /// `None` for a from-scratch delta.
    pub from: Option<Checksum>,
    pub to: Checksum,
    /// The `to` commit object, embedded: no part holds it.
    pub commit: Vec<u8>,
    /// Prerequisite deltas; ostree always writes none.
    pub recurse: Vec<u8>,
    pub parts: Vec<PartHeader>,
    pub fallbacks: Vec<Fallback>,
}

// The embedded commit is read and written as `(tay)`: like the commit it is 8-aligned and of
// variable size, so it takes the same bytes and framing in the superblock, and its bytes come back
// whole (the first 8 as the `t`) to be parsed and hashed as a commit object.
macro_rules! superblock_type {
    () => {
        gv!("(a{sv}tayay(tay)aya(uayttay)a(yaytt))")
    };
}

impl Superblock {
    /// Parses a superblock, which must be in normal form and at most [`MAX_SUPERBLOCK_SIZE`].
    pub fn parse(bytes: &[u8]) -> Result<Self, DeltaError> {
        if bytes.len() as u64 > MAX_SUPERBLOCK_SIZE {
            let size = bytes.len() as u64;
            return Err(
                FormatError::TooLarge { what: "static-delta superblock", size, limit: MAX_SUPERBLOCK_SIZE }.into()
            );
        }
        let buf = aligned(bytes);
        let (metadata, timestamp, from, to, commit, recurse, parts, fallbacks) =
            superblock_type!().cast(buf.as_ref()).to_tuple();
        let (commit_head, commit_rest) = commit.to_tuple();
        let superblock = Self {
            metadata: VarDict::from_entries(metadata.iter().map(|e| e.to_tuple())),
            timestamp: u64::from_be(*timestamp),
            from: (!from.is_empty()).then(|| Checksum::from_slice(from)).transpose()?,
            to: Checksum::from_slice(to)?,
            commit: [&commit_head.to_ne_bytes()[..], commit_rest].concat(),
            recurse: recurse.to_vec(),
            parts: parts.iter().map(|p| parse_part(p.to_tuple())).collect::<Result<_, _>>()?,
            fallbacks: fallbacks.iter().map(|f| parse_fallback(f.to_tuple())).collect::<Result<_, _>>()?,
        };
        superblock.metadata.check_keys()?;
        if superblock.to_bytes() != bytes {
            return Err(FormatError::NotNormalForm.into());
        }
        Ok(superblock)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let metadata = self.metadata.as_tuples();
        let from: &[u8] = self.from.as_ref().map_or(&[], |f| &f.as_bytes()[..]);
        let head = self.commit.get(..8).map_or(0, |h| u64::from_ne_bytes(h.try_into().expect("8 bytes")));
        let rest = self.commit.get(8..).unwrap_or_default();
        let objects: Vec<Vec<u8>> = self.parts.iter().map(|p| encode_objects(&p.objects)).collect();
        let parts: Vec<PartRow<'_>> = self
            .parts
            .iter()
            .zip(&objects)
            .map(|(p, o)| {
                (p.version.to_le(), &p.checksum.as_bytes()[..], p.size.to_le(), p.uncompressed_size.to_le(), &o[..])
            })
            .collect();
        let fallbacks: Vec<(u8, &[u8], u64, u64)> = self
            .fallbacks
            .iter()
            .map(|f| {
                (
                    f.object.kind.ostree_id(),
                    &f.object.checksum.as_bytes()[..],
                    f.size.to_le(),
                    f.uncompressed_size.to_le(),
                )
            })
            .collect();
        superblock_type!().serialize_to_vec(&(
            &metadata[..],
            self.timestamp.to_be(),
            from,
            &self.to.as_bytes()[..],
            &(head, rest),
            &self.recurse[..],
            &parts[..],
            &fallbacks[..],
        ))
    }

    /// The delta's directory below the repository root, e.g. `deltas/H2/Sr9…`.
    pub fn dir(&self) -> String {
        delta_dir(self.from.as_ref(), &self.to)
    }

    pub fn superblock_key(&self) -> String {
        format!("{}/superblock", self.dir())
    }

    pub fn part_key(&self, index: usize) -> String {
        format!("{}/{index}", self.dir())
    }

    /// The metadata key under which the superblock carries the `to` commit's detached metadata.
    fn commitmeta_key(&self) -> String {
        format!("{}/commitmeta", self.dir())
    }

    /// Checks that this is a from-scratch delta to `source` whose objects are exactly those of the
    /// verified `closure` of `source`. The parts' files are checked by [`Superblock::check_parts`].
    pub fn check_uploaded(&self, source: Checksum, closure: &Closure) -> Result<(), DeltaError> {
        let mismatch = |text: String| Err(DeltaError::Mismatch(text));
        if let Some(from) = self.from {
            return mismatch(format!("the delta starts from {from}, not from scratch"));
        }
        if self.to != source {
            return mismatch(format!("the delta is to commit {}, not to {source}", self.to));
        }
        let embedded = Checksum::of(&self.commit);
        if embedded != source {
            return mismatch(format!("the embedded commit hashes to {embedded}, not to {source}"));
        }
        if !self.recurse.is_empty() {
            return mismatch("the delta names prerequisite deltas".to_owned());
        }
        self.check_format()?;
        check_coverage(source, self.objects().collect(), closure)
    }

    /// Little-endian numbers, known part versions, and no metadata naming other delta files
    /// (inline parts): what a rewrite can carry over as it is.
    fn check_format(&self) -> Result<(), DeltaError> {
        let endianness = self.metadata.get(ENDIANNESS_KEY).and_then(|v| v.get(gv!("y")).copied());
        if endianness != Some(LITTLE_ENDIAN) {
            return Err(DeltaError::Mismatch(format!("{ENDIANNESS_KEY} is {endianness:?}, not 'l' (little-endian)")));
        }
        if let Some((index, part)) = self.parts.iter().enumerate().find(|(_, p)| p.version != PART_VERSION) {
            return Err(DeltaError::Part { index, problem: format!("unknown part version {}", part.version) });
        }
        let commitmeta = self.commitmeta_key();
        if let Some((key, _)) = self.metadata.iter().find(|(k, _)| k.starts_with("deltas/") && *k != commitmeta) {
            return Err(DeltaError::Mismatch(format!("metadata key {key} (an inline part) is not supported")));
        }
        Ok(())
    }

    /// Every object the delta provides: its parts' objects, then its fallbacks.
    pub fn objects(&self) -> impl Iterator<Item = ObjectName> + '_ {
        let parts = self.parts.iter().flat_map(|p| p.objects.iter().copied());
        parts.chain(self.fallbacks.iter().map(|f| f.object))
    }

    /// The same delta to `commit`, which must have the same tree: `to` and the embedded commit
    /// replaced, the detached metadata replaced by `commitmeta` (or dropped), timestamp and parts
    /// kept. Its parts go under the new [`Superblock::part_key`]s, with the same bytes.
    pub fn rewrite(&self, commit: &[u8], commitmeta: Option<&[u8]>) -> Result<Self, DeltaError> {
        let (old, new) = (Commit::parse(&self.commit)?, Commit::parse(commit)?);
        if (old.root_tree, old.root_meta) != (new.root_tree, new.root_meta) {
            return Err(DeltaError::Mismatch("the new commit has another tree than the delta's".to_owned()));
        }
        let old_key = self.commitmeta_key();
        let mut metadata = VarDict::new();
        for (key, value) in self.metadata.iter().filter(|(k, _)| *k != old_key) {
            metadata.set(key, value.to_owned());
        }
        let mut rewritten = Self {
            metadata,
            timestamp: self.timestamp,
            from: self.from,
            to: Checksum::of(commit),
            commit: commit.to_vec(),
            recurse: self.recurse.clone(),
            parts: self.parts.clone(),
            fallbacks: self.fallbacks.clone(),
        };
        if let Some(detached) = commitmeta {
            let detached = VarDict::parse(aligned(detached).as_ref());
            rewritten.metadata.set(&rewritten.commitmeta_key(), commitmeta_variant(&detached));
        }
        Ok(rewritten)
    }

    /// Checks that every part exists in `store` under [`Superblock::part_key`] with the declared
    /// size and sha256, hashing on blocking threads.
    pub async fn check_parts(&self, store: &dyn ObjectStore) -> Result<(), DeltaError> {
        for (index, part) in self.parts.iter().enumerate() {
            let key = self.part_key(index);
            let problem = |problem: String| Err(DeltaError::Part { index, problem });
            match store.head(&key).await? {
                None => return problem("missing".to_owned()),
                Some(size) if size != part.size => {
                    return problem(format!("{size} bytes where the superblock declares {}", part.size))
                }
                Some(_) => {}
            }
            let actual = hash_object(store, &key).await?;
            if actual != part.checksum {
                return problem(format!("content hashes to {actual}, the superblock declares {}", part.checksum));
            }
        }
        Ok(())
    }
}

/// The commitmeta entry's value: a `v` holding the detached metadata `a{sv}`.
fn commitmeta_variant(detached: &VarDict) -> Owned<Variant> {
    variant(gv!("a{sv}"), detached.as_tuples().iter())
}

fn parse_part(
    (version, checksum, size, usize, objects): (&u32, &[u8], &u64, &u64, &[u8]),
) -> Result<PartHeader, FormatError> {
    Ok(PartHeader {
        version: u32::from_le(*version),
        checksum: Checksum::from_slice(checksum)?,
        size: u64::from_le(*size),
        uncompressed_size: u64::from_le(*usize),
        objects: decode_objects(objects)?,
    })
}

fn parse_fallback((kind, checksum, size, usize): (&u8, &[u8], &u64, &u64)) -> Result<Fallback, FormatError> {
    Ok(Fallback {
        object: ObjectName::new(Checksum::from_slice(checksum)?, object_type(*kind)?),
        size: u64::from_le(*size),
        uncompressed_size: u64::from_le(*usize),
    })
}

fn object_type(id: u8) -> Result<ObjectType, FormatError> {
    ObjectType::ALL
        .into_iter()
        .find(|t| t.ostree_id() == id)
        .ok_or_else(|| FormatError::Malformed(format!("unknown object type {id} in a static delta")))
}

/// A part's object list: 33-byte entries of object type and checksum.
fn decode_objects(bytes: &[u8]) -> Result<Vec<ObjectName>, FormatError> {
    if !bytes.len().is_multiple_of(OBJECT_ENTRY_LEN) {
        return Err(FormatError::Malformed(format!("object list of {} bytes", bytes.len())));
    }
    bytes
        .chunks(OBJECT_ENTRY_LEN)
        .map(|entry| Ok(ObjectName::new(Checksum::from_slice(&entry[1..])?, object_type(entry[0])?)))
        .collect()
}

fn encode_objects(objects: &[ObjectName]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(objects.len() * OBJECT_ENTRY_LEN);
    for object in objects {
        bytes.push(object.kind.ostree_id());
        bytes.extend_from_slice(object.checksum.as_bytes());
    }
    bytes
}

/// The delta's objects must be exactly the closure's dirtrees, dirmetas and files: none from
/// elsewhere, none left out (a client applying it would have an incomplete commit).
fn check_coverage(source: Checksum, provided: HashSet<ObjectName>, closure: &Closure) -> Result<(), DeltaError> {
    let wanted: HashSet<ObjectName> = closure.object_names().filter(|n| n.kind != ObjectType::Commit).collect();
    if let Some(stray) = provided.difference(&wanted).min() {
        return Err(DeltaError::Mismatch(format!("object {stray} is not part of commit {source}")));
    }
    let missing: Vec<&ObjectName> = wanted.difference(&provided).collect();
    if let Some(first) = missing.iter().min() {
        let count = missing.len();
        return Err(DeltaError::Mismatch(format!("{count} objects of commit {source} are in no part, e.g. {first}")));
    }
    Ok(())
}

/// sha256 of a stored object, streamed through a blocking thread.
async fn hash_object(store: &dyn ObjectStore, key: &str) -> Result<Checksum, StoreError> {
    let io_error = |source| StoreError::Io { key: key.to_owned(), source };
    let mut reader = SyncIoBridge::new(store.get(key).await?);
    let task = tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let mut buf = vec![0; HASH_CHUNK];
        loop {
            match reader.read(&mut buf)? {
                0 => return Ok(Checksum::new(hasher.finalize().into())),
                n => hasher.update(&buf[..n]),
            }
        }
    });
    task.await.map_err(|e| io_error(std::io::Error::other(e)))?.map_err(io_error)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;
    use crate::repo::walk::walk_closure;
    use crate::store::LocalStore;

    /// A repository with one commit (with detached metadata) and `ostree`'s from-scratch delta to it.
    struct Fixture {
        dir: tempfile::TempDir,
        store: LocalStore,
        commit: Checksum,
        superblock: Vec<u8>,
    }

    fn ostree(args: &[&str]) -> String {
        let output = Command::new("ostree").args(args).output().expect("ostree runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "ostree {args:?} failed: {stderr}");
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    fn repo_arg(path: &Path) -> String {
        format!("--repo={}", path.display())
    }

    fn write(path: &Path, contents: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        ostree(&["init", &repo_arg(&repo), "--mode=archive-z2"]);
        let tree = dir.path().join("tree");
        write(&tree.join("bin/hello.sh"), "#!/bin/sh\necho hello\n");
        write(&tree.join("share/doc/nested/notes.txt"), "a few directories down\n");
        std::os::unix::fs::symlink("hello.sh", tree.join("bin/hi")).unwrap();
        let commit = ostree(&[
            "commit",
            &repo_arg(&repo),
            "--branch=app/org.example.App/x86_64/stable",
            &format!("--tree=dir={}", tree.display()),
            "--subject=Export",
            "--add-detached-metadata-string=test.signature=by the client",
        ]);
        let commit = Checksum::from_hex(commit.trim()).unwrap();
        ostree(&["static-delta", "generate", &repo_arg(&repo), "--empty", &format!("--to={commit}")]);
        let store = LocalStore::new(&repo).unwrap();
        let superblock = std::fs::read(repo.join(delta_dir(None, &commit)).join("superblock")).unwrap();
        Fixture { dir, store, commit, superblock }
    }

    async fn closure(fixture: &Fixture) -> Closure {
        let closure = walk_closure(&fixture.store, fixture.commit).await.unwrap();
        assert!(closure.problems.is_empty(), "{:?}", closure.problems);
        closure
    }

    /// The embedded commit, re-made as a publish would: another subject, so another checksum.
    fn recommit(superblock: &Superblock) -> Vec<u8> {
        let mut commit = Commit::parse(&superblock.commit).unwrap();
        commit.subject = "Published".to_owned();
        commit.metadata.set("xa.from_commit", variant(gv!("s"), superblock.to.to_hex().as_str()));
        commit.to_bytes()
    }

    /// Writes `superblock` and its parts (copied from `fixture`'s delta) under `root`; returns the
    /// superblock's path.
    fn write_delta(fixture: &Fixture, superblock: &Superblock, root: &Path) -> PathBuf {
        let dir = root.join(superblock.dir());
        std::fs::create_dir_all(&dir).unwrap();
        let source = fixture.dir.path().join("repo").join(delta_dir(None, &fixture.commit));
        for index in 0..superblock.parts.len() {
            std::fs::copy(source.join(index.to_string()), dir.join(index.to_string())).unwrap();
        }
        std::fs::write(dir.join("superblock"), superblock.to_bytes()).unwrap();
        dir.join("superblock")
    }

    #[tokio::test]
    async fn parses_an_ostree_delta_in_normal_form_that_fits_its_commit() {
        let fixture = fixture();
        let superblock = Superblock::parse(&fixture.superblock).unwrap();
        assert_eq!(superblock.to_bytes(), fixture.superblock);
        assert_eq!((superblock.from, superblock.to), (None, fixture.commit));
        assert!(superblock.metadata.contains(&superblock.commitmeta_key()), "{:?}", superblock.metadata);
        superblock.check_uploaded(fixture.commit, &closure(&fixture).await).unwrap();
        superblock.check_parts(&fixture.store).await.unwrap();
    }

    #[tokio::test]
    async fn rewritten_delta_applies_offline_and_passes_fsck() {
        let fixture = fixture();
        let superblock = Superblock::parse(&fixture.superblock).unwrap();
        let commit = recommit(&superblock);
        let mut signed = VarDict::new();
        signed.set("test.signature", variant(gv!("s"), "by the server"));
        let rewritten = superblock.rewrite(&commit, Some(&signed.to_bytes())).unwrap();
        let new = Checksum::of(&commit);
        assert_eq!((rewritten.to, rewritten.timestamp), (new, superblock.timestamp));
        assert!(!rewritten.metadata.contains(&superblock.commitmeta_key()));
        assert!(rewritten.metadata.contains(&rewritten.commitmeta_key()));
        assert_eq!(Superblock::parse(&rewritten.to_bytes()).unwrap().to_bytes(), rewritten.to_bytes());

        let out = fixture.dir.path().join("out");
        let path = write_delta(&fixture, &rewritten, &out);
        rewritten.check_parts(&LocalStore::new(&out).unwrap()).await.unwrap();
        let fresh = fixture.dir.path().join("fresh");
        ostree(&["init", &repo_arg(&fresh), "--mode=archive-z2"]);
        ostree(&["static-delta", "apply-offline", &repo_arg(&fresh), &path.display().to_string()]);
        ostree(&["fsck", &repo_arg(&fresh)]);
        let shown = ostree(&["show", &repo_arg(&fresh), "--print-detached-metadata-key=test.signature", &new.to_hex()]);
        assert!(shown.contains("by the server"), "{shown}");
    }

    #[tokio::test]
    async fn rewrite_without_detached_metadata_drops_the_clients() {
        let fixture = fixture();
        let superblock = Superblock::parse(&fixture.superblock).unwrap();
        let rewritten = superblock.rewrite(&recommit(&superblock), None).unwrap();
        assert!(rewritten.metadata.iter().all(|(key, _)| !key.starts_with("deltas/")), "{:?}", rewritten.metadata);
        assert!(rewritten.metadata.contains(ENDIANNESS_KEY));
    }

    #[tokio::test]
    async fn refuses_a_corrupted_part() {
        let fixture = fixture();
        let superblock = Superblock::parse(&fixture.superblock).unwrap();
        let part = fixture.dir.path().join("repo").join(superblock.part_key(0));
        let mut bytes = std::fs::read(&part).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&part, &bytes).unwrap();
        let error = superblock.check_parts(&fixture.store).await.unwrap_err();
        assert!(matches!(error, DeltaError::Part { index: 0, .. }), "{error}");
        assert!(error.to_string().contains("content hashes to"), "{error}");
        std::fs::write(&part, &bytes[..last]).unwrap();
        let error = superblock.check_parts(&fixture.store).await.unwrap_err();
        assert!(error.to_string().contains("where the superblock declares"), "{error}");
        std::fs::remove_file(&part).unwrap();
        assert_eq!(superblock.check_parts(&fixture.store).await.unwrap_err().to_string(), "part 0: missing");
    }

    #[tokio::test]
    async fn refuses_a_delta_to_another_commit_or_with_a_lying_commit() {
        let fixture = fixture();
        let closure = closure(&fixture).await;
        let mut superblock = Superblock::parse(&fixture.superblock).unwrap();
        let other = Checksum::of(b"another commit");
        let error = superblock.check_uploaded(other, &closure).unwrap_err();
        assert!(error.to_string().contains(&format!("not to {other}")), "{error}");
        superblock.commit = recommit(&superblock);
        let error = superblock.check_uploaded(fixture.commit, &closure).unwrap_err();
        assert!(error.to_string().contains("the embedded commit hashes to"), "{error}");
    }

    #[tokio::test]
    async fn refuses_objects_outside_the_commit_and_missing_ones() {
        let fixture = fixture();
        let closure = closure(&fixture).await;
        let mut superblock = Superblock::parse(&fixture.superblock).unwrap();
        let stray = ObjectName::new(Checksum::of(b"elsewhere"), ObjectType::File);
        superblock.parts[0].objects.push(stray);
        let error = superblock.check_uploaded(fixture.commit, &closure).unwrap_err();
        assert!(error.to_string().contains(&format!("object {stray} is not part of commit")), "{error}");
        superblock.parts[0].objects.truncate(1);
        let error = superblock.check_uploaded(fixture.commit, &closure).unwrap_err();
        assert!(error.to_string().contains("are in no part"), "{error}");
    }

    #[tokio::test]
    async fn refuses_oversized_truncated_and_padded_superblocks() {
        let fixture = fixture();
        let oversized = vec![0; MAX_SUPERBLOCK_SIZE as usize + 1];
        let error = Superblock::parse(&oversized).unwrap_err();
        assert!(matches!(error, DeltaError::Format(FormatError::TooLarge { .. })), "{error}");
        assert!(Superblock::parse(&fixture.superblock[..fixture.superblock.len() - 1]).is_err());
        let mut padded = fixture.superblock.clone();
        padded.extend_from_slice(&[0; 8]);
        assert!(Superblock::parse(&padded).is_err());
    }

    #[tokio::test]
    async fn refuses_a_rewrite_to_a_commit_of_another_tree() {
        let fixture = fixture();
        let superblock = Superblock::parse(&fixture.superblock).unwrap();
        let mut commit = Commit::parse(&superblock.commit).unwrap();
        commit.root_tree = Checksum::of(b"another tree");
        let error = superblock.rewrite(&commit.to_bytes(), None).unwrap_err();
        assert!(error.to_string().contains("another tree"), "{error}");
    }
}
