//! The local archive-z2 repository `push` uploads from, read only through the repository core
//! (`flatbucket::repo`) and the ObjectStore port: which refs to push, the objects they need, and
//! the from-scratch static deltas to send along.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use flatbucket::repo::local::{list_refs, resolve_ref};
use flatbucket::repo::walk::walk_closure;
use flatbucket::repo::{delta_dir, Checksum, ObjectName, ObjectType};
use flatbucket::store::{LocalStore, ObjectStore};
use futures::stream;
use tokio::io::AsyncReadExt;

use super::error::ClientError;
use super::upload::UploadItem;

/// Ref namespaces pushed when no refs are named.
const DEFAULT_REF_PREFIXES: [&str; 3] = ["app/", "runtime/", "screenshots/"];
/// Bytes read at a time when streaming a file.
const STREAM_CHUNK: usize = 256 * 1024;
/// How many broken objects an error names.
const PROBLEMS_SHOWN: usize = 5;

/// The objects a push may have to upload.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ObjectSets {
    /// Commits, dirtrees and dirmetas, with their sizes.
    pub metadata: BTreeMap<ObjectName, u64>,
    /// Content objects (`.filez`).
    pub files: BTreeSet<ObjectName>,
}

/// An archive-z2 repository on disk.
#[derive(Debug, Clone)]
pub struct LocalRepo {
    store: LocalStore,
}

fn local_error(error: impl std::fmt::Display) -> ClientError {
    ClientError::other("local-repo-error", error.to_string())
}

impl LocalRepo {
    /// Opens the repository at `path`; it must exist and be in archive mode.
    pub fn open(path: &Path) -> Result<Self, ClientError> {
        let config = std::fs::read_to_string(path.join("config"))
            .map_err(|e| ClientError::Usage(format!("Can't open repo {}: {e}", path.display())))?;
        let mode = config.lines().filter_map(|l| l.trim().strip_prefix("mode=")).next_back().unwrap_or("bare");
        if !mode.trim().starts_with("archive") {
            let message = format!("Repo {} is in {mode} mode; push needs an archive-z2 repo", path.display());
            return Err(ClientError::Usage(message));
        }
        let store = LocalStore::new(path).map_err(|e| ClientError::Usage(format!("Can't open repo: {e}")))?;
        Ok(Self { store })
    }

    /// The refs to push with their commits: the named ones, or every app, runtime and screenshots
    /// ref. Sorted by name.
    pub async fn select_refs(&self, requested: &[String]) -> Result<BTreeMap<String, Checksum>, ClientError> {
        if requested.is_empty() {
            let all = list_refs(&self.store).await.map_err(local_error)?;
            let wanted = |name: &String| DEFAULT_REF_PREFIXES.iter().any(|p| name.starts_with(p));
            return Ok(all.into_iter().filter(|(name, _)| wanted(name)).collect());
        }
        let mut refs = BTreeMap::new();
        for name in requested {
            let commit = resolve_ref(&self.store, name)
                .await
                .map_err(|e| ClientError::Usage(format!("Can't resolve ref {name}: {e}")))?;
            refs.insert(name.clone(), commit);
        }
        Ok(refs)
    }

    /// The metadata and content objects of the given commits. A missing or corrupt local object is
    /// an error: the server would refuse the commit anyway.
    pub async fn enumerate(&self, commits: impl IntoIterator<Item = Checksum>) -> Result<ObjectSets, ClientError> {
        let mut sets = ObjectSets::default();
        for commit in commits {
            let closure = walk_closure(&self.store, commit).await.map_err(local_error)?;
            if !closure.problems.is_empty() {
                let shown: Vec<String> = closure.problems.iter().take(PROBLEMS_SHOWN).map(|p| p.to_string()).collect();
                let message = format!("local commit {commit} is incomplete: {}", shown.join("; "));
                return Err(ClientError::other("local-repo-error", message));
            }
            sets.metadata.extend(closure.metadata.iter().copied());
            sets.files.extend(closure.files.keys().map(|c| ObjectName::new(*c, ObjectType::File)));
        }
        Ok(sets)
    }

    /// Upload items for `names`, sized from disk.
    pub async fn object_items(
        &self,
        names: impl IntoIterator<Item = ObjectName>,
    ) -> Result<Vec<UploadItem>, ClientError> {
        let keyed = names.into_iter().map(|name| (name.to_string(), name.key()));
        self.sized_items(keyed.collect()).await
    }

    /// Upload items for the from-scratch static delta to `commit`, if the repo has one: every file
    /// of `deltas/<b64[..2]>/<b64[2..]>/` as a part named `<b64>.<file>.delta`.
    pub async fn delta_items(&self, commit: &Checksum) -> Result<Vec<UploadItem>, ClientError> {
        let dir = format!("{}/", delta_dir(None, commit));
        let b64 = commit.to_modified_base64();
        let keys = self.store.list(&dir).await.map_err(local_error)?;
        let keyed = keys
            .into_iter()
            .filter_map(|key| {
                let file = key.strip_prefix(&dir)?;
                (!file.contains('/')).then(|| (delta_part_name(&b64, file), key.clone()))
            })
            .collect();
        self.sized_items(keyed).await
    }

    /// Sizes `(filename, key)` pairs, keeping their order (one trip to a blocking thread for all).
    async fn sized_items(&self, keyed: Vec<(String, String)>) -> Result<Vec<UploadItem>, ClientError> {
        let keys: Vec<String> = keyed.iter().map(|(_, key)| key.clone()).collect();
        let sizes = self.store.head_many(&keys).await.map_err(local_error)?;
        keyed
            .into_iter()
            .zip(sizes)
            .map(|((filename, key), size)| {
                let size = size.ok_or_else(|| local_error(format!("{key} is missing")))?;
                Ok(UploadItem { filename, key, size })
            })
            .collect()
    }

    /// Reads whole files of the repository, in order, all on one blocking thread (a multipart
    /// batch is hundreds of small files).
    pub async fn read_many(&self, keys: &[String]) -> Result<Vec<Bytes>, ClientError> {
        let paths: Vec<(String, PathBuf)> = keys
            .iter()
            .map(|key| {
                Ok((key.clone(), self.store.local_path(key).ok_or_else(|| local_error(format!("bad key {key}")))?))
            })
            .collect::<Result<_, ClientError>>()?;
        let read = tokio::task::spawn_blocking(move || {
            let read = |(key, path): &(String, PathBuf)| {
                std::fs::read(path).map(Bytes::from).map_err(|e| local_error(format!("reading {key}: {e}")))
            };
            paths.iter().map(read).collect()
        });
        read.await.map_err(local_error)?
    }

    /// Streams one file of the repository as a request body, a chunk at a time, so a large object
    /// is never whole in memory.
    pub async fn stream(&self, key: &str) -> Result<reqwest::Body, ClientError> {
        let reader = self.store.get(key).await.map_err(local_error)?;
        let chunks = stream::try_unfold(reader, |mut reader| async move {
            let mut chunk = BytesMut::with_capacity(STREAM_CHUNK);
            let read = reader.read_buf(&mut chunk).await?;
            Ok::<_, std::io::Error>((read > 0).then(|| (chunk.freeze(), reader)))
        });
        Ok(reqwest::Body::wrap_stream(chunks))
    }
}

/// The upload filename of one file of a delta: `<b64>.<file>.delta`.
pub fn delta_part_name(b64: &str, file: &str) -> String {
    format!("{b64}.{file}.delta")
}

/// Whether `push` sends the from-scratch delta of `ref_name`: only `app/` and `runtime/` refs of four
/// components whose id matches no `--ignore-delta` glob.
pub fn wants_delta(ref_name: &str, ignore: &[String]) -> bool {
    let parts: Vec<&str> = ref_name.split('/').collect();
    match parts[..] {
        ["app" | "runtime", id, _, _] => !ignore.iter().any(|glob| fnmatch(glob, id)),
        _ => false,
    }
}

/// Shell-style matching as Python's `fnmatch`: `*` any run, `?` any one character, `[…]` a set
/// (with `!` negation and ranges); everything else literal.
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    matches_from(&p, &t)
}

fn matches_from(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => (0..=t.len()).any(|skip| matches_from(&p[1..], &t[skip..])),
        Some('?') => !t.is_empty() && matches_from(&p[1..], &t[1..]),
        Some('[') => match (class_end(p), t.first()) {
            (Some(end), Some(c)) => in_class(&p[1..end], *c) && matches_from(&p[end + 1..], &t[1..]),
            (Some(_), None) => false,
            (None, _) => t.first() == Some(&'[') && matches_from(&p[1..], &t[1..]),
        },
        Some(c) => t.first() == Some(c) && matches_from(&p[1..], &t[1..]),
    }
}

/// The index of the `]` closing the class that starts `p`.
fn class_end(p: &[char]) -> Option<usize> {
    let start = if p.get(1) == Some(&'!') { 2 } else { 1 };
    // A `]` right after `[` or `[!` is a member, not the end.
    (start + 1..p.len()).find(|&i| p[i] == ']')
}

fn in_class(class: &[char], c: char) -> bool {
    let (negated, class) = match class.split_first() {
        Some(('!', rest)) => (true, rest),
        _ => (false, class),
    };
    let mut i = 0;
    let mut found = false;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == '-' {
            found |= class[i] <= c && c <= class[i + 2];
            i += 3;
        } else {
            found |= class[i] == c;
            i += 1;
        }
    }
    found != negated
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
