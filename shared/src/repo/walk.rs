//! The closure of a commit: the commit, every dirtree and dirmeta below it, and every content
//! object they name. Metadata objects are fetched level by level, concurrently, and each one is
//! checked against its name before it is trusted to name further objects, so a cycle or a lying
//! object can never make the walk loop or wander.

use std::collections::{HashMap, HashSet};
use std::fmt;

use futures::stream::{self, StreamExt};

use super::commit::Commit;
use super::dirs::{DirMeta, DirTree};
use super::{Checksum, FormatError, ObjectName, ObjectType};
use crate::store::{read_limited, ObjectStore, StoreError};

/// ostree refuses metadata objects above 128 MiB; so do we.
pub const MAX_METADATA_SIZE: u64 = 128 * 1024 * 1024;
/// Metadata objects fetched at once.
const METADATA_CONCURRENCY: usize = 16;

/// What is wrong with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub object: ObjectName,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    Missing,
    /// The bytes hash to another checksum than the object's name.
    ChecksumMismatch {
        actual: Checksum,
    },
    Malformed(FormatError),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ProblemKind::Missing => write!(f, "{}: missing", self.object),
            ProblemKind::ChecksumMismatch { actual } => {
                write!(f, "{}: checksum mismatch (content hashes to {actual})", self.object)
            }
            ProblemKind::Malformed(e) => write!(f, "{}: {e}", self.object),
        }
    }
}

/// The objects reachable from a commit.
#[derive(Debug, Default)]
pub struct Closure {
    pub commit: Option<Commit>,
    /// Length of the commit object.
    pub commit_size: u64,
    /// Commit, dirtree and dirmeta objects, with their sizes.
    pub metadata: Vec<(ObjectName, u64)>,
    /// Content objects and how many paths of the tree use each.
    pub files: HashMap<Checksum, u32>,
    pub problems: Vec<Problem>,
}

impl Closure {
    /// Every object name in the closure.
    pub fn object_names(&self) -> impl Iterator<Item = ObjectName> + '_ {
        let files = self.files.keys().map(|c| ObjectName::new(*c, ObjectType::File));
        self.metadata.iter().map(|(name, _)| *name).chain(files)
    }
}

/// Reads and checks one metadata object; a missing or bad object is an `Ok(Err(problem))`.
async fn fetch_metadata(store: &dyn ObjectStore, name: ObjectName) -> Result<Result<Vec<u8>, Problem>, StoreError> {
    let problem = |kind| Ok(Err(Problem { object: name, kind }));
    let bytes = match read_limited(store, &name.key(), MAX_METADATA_SIZE).await {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound(_)) => return problem(ProblemKind::Missing),
        Err(StoreError::TooLarge { limit, .. }) => {
            let error = FormatError::TooLarge { what: "metadata object", size: limit + 1, limit };
            return problem(ProblemKind::Malformed(error));
        }
        Err(e) => return Err(e),
    };
    let actual = Checksum::of(&bytes);
    if actual != name.checksum {
        return problem(ProblemKind::ChecksumMismatch { actual });
    }
    Ok(Ok(bytes))
}

/// Walks the closure of `commit`, recording every missing or bad metadata object. Content objects
/// are named but not read: [`super::verify`] checks them.
pub async fn walk_closure(store: &dyn ObjectStore, commit: Checksum) -> Result<Closure, StoreError> {
    let mut closure = Closure::default();
    let name = ObjectName::new(commit, ObjectType::Commit);
    let bytes = match fetch_metadata(store, name).await? {
        Ok(bytes) => bytes,
        Err(problem) => {
            closure.problems.push(problem);
            return Ok(closure);
        }
    };
    let parsed = match Commit::parse(&bytes) {
        Ok(parsed) => parsed,
        Err(e) => {
            closure.problems.push(Problem { object: name, kind: ProblemKind::Malformed(e) });
            return Ok(closure);
        }
    };
    closure.commit_size = bytes.len() as u64;
    closure.metadata.push((name, closure.commit_size));
    let root = (parsed.root_tree, parsed.root_meta);
    closure.commit = Some(parsed);
    walk_trees(store, root, &mut closure).await?;
    Ok(closure)
}

async fn walk_trees(
    store: &dyn ObjectStore,
    root: (Checksum, Checksum),
    closure: &mut Closure,
) -> Result<(), StoreError> {
    let mut seen: HashSet<ObjectName> = HashSet::new();
    let mut level = vec![root];
    while !level.is_empty() {
        let mut names = Vec::new();
        for (tree, meta) in level.drain(..) {
            for name in [ObjectName::new(tree, ObjectType::DirTree), ObjectName::new(meta, ObjectType::DirMeta)] {
                if seen.insert(name) {
                    names.push(name);
                }
            }
        }
        let fetched: Vec<_> = stream::iter(names)
            .map(|name| async move { (name, fetch_metadata(store, name).await) })
            .buffer_unordered(METADATA_CONCURRENCY)
            .collect()
            .await;
        for (name, result) in fetched {
            match result? {
                Ok(bytes) => level.extend(record_directory(name, &bytes, closure)),
                Err(problem) => closure.problems.push(problem),
            }
        }
    }
    Ok(())
}

/// Parses a fetched dirtree/dirmeta into the closure and returns the subdirectories to visit.
fn record_directory(name: ObjectName, bytes: &[u8], closure: &mut Closure) -> Vec<(Checksum, Checksum)> {
    let parsed = match name.kind {
        ObjectType::DirMeta => DirMeta::parse(bytes).map(|_| DirTree::default()),
        _ => DirTree::parse(bytes),
    };
    match parsed {
        Ok(tree) => {
            closure.metadata.push((name, bytes.len() as u64));
            for (_, file) in &tree.files {
                *closure.files.entry(*file).or_default() += 1;
            }
            tree.dirs.iter().map(|d| (d.tree, d.meta)).collect()
        }
        Err(e) => {
            closure.problems.push(Problem { object: name, kind: ProblemKind::Malformed(e) });
            Vec::new()
        }
    }
}
