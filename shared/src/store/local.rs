//! ObjectStore on a local directory. Keys map to paths below the root; every write goes to a
//! temporary file that is renamed (or hard-linked, for put-if-absent) into place, so readers and
//! a crash at any point see either the old object or the new one.
//!
//! The temporary file is made in the destination's own directory: the rename then locks one
//! directory, not two, and parallel writes (an upload's objects, spread over `objects/<xx>/`)
//! do not all queue on the lock of one shared temporary directory, as they did.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use futures::StreamExt;

use super::{validate_key, ByteStream, Location, ObjectReader, ObjectStore, StoreError};

/// Temporary files are named with this prefix, beside their destination; no key may use it.
const TMP_PREFIX: &str = ".flatbucket-tmp";

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Streamed writes are gathered into batches of this size for one blocking write each: most
/// objects fit in one, so an upload costs one blocking call per object, not one per chunk.
const STREAM_BATCH: usize = 1024 * 1024;

/// A temporary file filled batch by batch on blocking threads, then renamed into place; removed
/// if dropped unfinished.
struct TempWriter {
    tmp: PathBuf,
    file: Option<fs::File>,
}

impl TempWriter {
    async fn write(mut self, batch: Vec<u8>) -> io::Result<Self> {
        run_blocking(move || {
            self.write_blocking(&batch)?;
            Ok(self)
        })
        .await
    }

    /// Writes the last batch and renames the file into place, in one blocking call: an object
    /// that fits in a batch costs one trip to the blocking pool in all.
    async fn finish(mut self, last: Vec<u8>, path: PathBuf) -> io::Result<()> {
        run_blocking(move || {
            self.write_blocking(&last)?;
            self.file.take();
            fs::rename(&self.tmp, &path)
        })
        .await
    }

    fn write_blocking(&mut self, batch: &[u8]) -> io::Result<()> {
        let file = match self.file.as_mut() {
            Some(file) => file,
            None => {
                ensure_parent(&self.tmp)?;
                self.file.insert(fs::File::create(&self.tmp)?)
            }
        };
        file.write_all(batch)
    }
}

impl Drop for TempWriter {
    fn drop(&mut self) {
        // After a successful rename the name is gone and this fails harmlessly.
        let _ = fs::remove_file(&self.tmp);
    }
}

async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
}

/// A directory used as an object store. An ostree repository directory works as one directly.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Uses `root` (created if missing). Nothing is written inside it until the first write, so a
    /// read-only repository can be read.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        if key.split('/').any(is_temporary) {
            return Err(StoreError::InvalidKey(key.to_owned()));
        }
        Ok(self.root.join(key))
    }

    /// Runs `op` on each key's path in order (with the key's index), all on one blocking thread:
    /// one hop for a whole batch. The first failure stops it, named by its key.
    async fn for_each_path<T, F>(&self, keys: Vec<String>, op: F) -> Result<Vec<T>, StoreError>
    where
        T: Send + 'static,
        F: Fn(usize, &Path) -> io::Result<T> + Send + 'static,
    {
        let paths = keys.iter().map(|key| self.path(key)).collect::<Result<Vec<_>, _>>()?;
        let first = keys.first().cloned().unwrap_or_default();
        let task = tokio::task::spawn_blocking(move || {
            paths.iter().enumerate().map(|(i, path)| op(i, path).map_err(io_error(&keys[i]))).collect()
        });
        // A failure of the thread itself names the batch by its first key.
        task.await.map_err(|e| StoreError::Io { key: first, source: io::Error::other(e) })?
    }
}

/// The size of the file at `path`; `None` when there is none (or a directory is there).
fn file_size(path: &Path) -> io::Result<Option<u64>> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Hard-links `from` as `dst`: `false` when the filesystem cannot (another device), an error when
/// `from` is missing. An existing `dst` is the same immutable object.
fn link(from: &Path, dst: &Path) -> io::Result<bool> {
    ensure_parent(dst)?;
    match fs::hard_link(from, dst) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
        Err(_) => Ok(false),
    }
}

/// Removes the file at `path`; a missing one is no error.
fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Whether a file or directory name is one of the temporary files' (or of their former
/// directory, `.flatbucket-tmp`).
fn is_temporary(name: &str) -> bool {
    name.starts_with(TMP_PREFIX)
}

/// A fresh temporary name beside `path`.
fn temp_path(path: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!("{TMP_PREFIX}-{}-{n}", std::process::id()))
}

/// Writes or replaces the file at `path` through a temporary file beside it.
fn replace(path: &Path, data: &[u8]) -> io::Result<()> {
    ensure_parent(path)?;
    let tmp = write_temp(path, data)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Writes `data` to a fresh temporary file beside `path` (whose directory exists) and returns
/// the temporary file's path.
fn write_temp(path: &Path, data: &[u8]) -> io::Result<PathBuf> {
    let tmp = temp_path(path);
    let mut file = fs::File::create(&tmp)?;
    file.write_all(data)?;
    Ok(tmp)
}

fn io_error(key: &str) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| match source.kind() {
        io::ErrorKind::NotFound => StoreError::NotFound(key.to_owned()),
        _ => StoreError::Io { key: key.to_owned(), source },
    }
}

fn ensure_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) => fs::create_dir_all(parent),
        None => Ok(()),
    }
}

/// Runs blocking filesystem work off the async runtime.
async fn blocking<T: Send + 'static>(
    key: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io { key: key.to_owned(), source: io::Error::other(e) })?
        .map_err(io_error(key))
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn get(&self, key: &str) -> Result<ObjectReader, StoreError> {
        let path = self.path(key)?;
        let file = blocking(key, move || fs::File::open(path)).await?;
        Ok(Box::pin(tokio::fs::File::from_std(file)))
    }

    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let path = self.path(key)?;
        blocking(key, move || file_size(&path)).await
    }

    async fn head_many(&self, keys: &[String]) -> Result<Vec<Option<u64>>, StoreError> {
        self.for_each_path(keys.to_vec(), |_, path| file_size(path)).await
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        blocking(key, move || replace(&path, &data)).await
    }

    async fn put_many(&self, objects: Vec<(String, Bytes)>) -> Result<(), StoreError> {
        let (keys, data): (Vec<String>, Vec<Bytes>) = objects.into_iter().unzip();
        self.for_each_path(keys, move |i, path| replace(path, &data[i])).await.map(drop)
    }

    async fn put_stream(&self, key: &str, mut data: ByteStream) -> Result<u64, StoreError> {
        let path = self.path(key)?;
        let mut writer = TempWriter { tmp: temp_path(&path), file: None };
        let mut pending = Vec::new();
        let mut size = 0u64;
        let written: io::Result<()> = async {
            while let Some(chunk) = data.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                pending.extend_from_slice(&chunk);
                if pending.len() >= STREAM_BATCH {
                    writer = writer.write(std::mem::take(&mut pending)).await?;
                }
            }
            writer.finish(pending, path).await
        }
        .await;
        written.map(|()| size).map_err(io_error(key))
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        blocking(key, move || {
            if path.exists() {
                return Ok(false);
            }
            ensure_parent(&path)?;
            let tmp = write_temp(&path, &data)?;
            let linked = fs::hard_link(&tmp, &path);
            fs::remove_file(&tmp)?;
            match linked {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        blocking(from, move || {
            ensure_parent(&dst)?;
            let tmp = temp_path(&dst);
            if fs::hard_link(&src, &tmp).is_err() {
                fs::copy(&src, &tmp)?;
            }
            fs::rename(&tmp, &dst).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        blocking(key, move || remove(&path)).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.for_each_path(keys.to_vec(), |_, path| remove(path)).await.map(drop)
    }

    async fn locate(&self, key: &str) -> Result<Option<Location>, StoreError> {
        Ok(Some(Location::File(self.path(key)?)))
    }

    /// A hard link: both directories share the immutable file. Another filesystem leaves the copy
    /// to the caller.
    async fn copy_located(&self, source: &Location, to: &str) -> Result<bool, StoreError> {
        let Location::File(from) = source else { return Ok(false) };
        let (from, dst) = (from.clone(), self.path(to)?);
        blocking(to, move || link(&from, &dst)).await
    }

    async fn copy_located_many(&self, copies: &[(Location, String)]) -> Result<Vec<bool>, StoreError> {
        let (sources, keys): (Vec<Location>, Vec<String>) = copies.iter().cloned().unzip();
        self.for_each_path(keys, move |i, dst| match &sources[i] {
            Location::File(from) => link(from, dst),
            _ => Ok(false),
        })
        .await
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // The prefix need not end at a path component: list its directory and filter.
        let dir = match prefix.rfind('/') {
            Some(i) => self.path(&prefix[..i])?,
            None => self.root.clone(),
        };
        let (root, prefix_owned) = (self.root.clone(), prefix.to_owned());
        blocking(prefix, move || {
            let mut keys = Vec::new();
            walk_files(&root, &dir, &mut keys)?;
            keys.retain(|k| k.starts_with(&prefix_owned) && !k.split('/').any(is_temporary));
            keys.sort();
            Ok(keys)
        })
        .await
    }
}

fn walk_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk_files(root, &entry.path(), out)?;
        } else if kind.is_file() {
            let path = entry.path();
            let relative = path.strip_prefix(root).expect("walk stays below the root");
            out.push(relative.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn passes_the_object_store_conformance_suite() {
        let (_dir, store) = store();
        conformance::run_all(&store).await;
        conformance::put_if_absent_has_one_winner_under_contention(std::sync::Arc::new(store)).await;
    }

    #[tokio::test]
    async fn a_prefixed_view_passes_the_conformance_suite() {
        let (_dir, store) = store();
        let prefixed = crate::store::Prefixed::new(std::sync::Arc::new(store), "build/7").unwrap();
        conformance::run_all(&prefixed).await;
    }

    #[tokio::test]
    async fn copies_located_objects_between_directories_by_hard_link() {
        let ((_a, src), (_b, dst)) = (store(), store());
        src.put("objects/ab/c.filez", Bytes::from_static(b"content")).await.unwrap();
        let location = src.locate("objects/ab/c.filez").await.unwrap().unwrap();
        assert!(dst.copy_located(&location, "objects/ab/c.filez").await.unwrap());
        assert!(dst.copy_located(&location, "objects/ab/c.filez").await.unwrap(), "an existing copy is fine");
        let (from, to) = (src.local_path("objects/ab/c.filez").unwrap(), dst.local_path("objects/ab/c.filez").unwrap());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&from).unwrap().ino(), fs::metadata(&to).unwrap().ino());
        let s3 = Location::S3 { bucket: "b".into(), key: "objects/ab/c.filez".into() };
        assert!(!dst.copy_located(&s3, "objects/ab/d.filez").await.unwrap(), "no hard link from a bucket");
        let missing = src.locate("objects/ab/none.filez").await.unwrap().unwrap();
        assert!(dst.copy_located(&missing, "objects/ab/none.filez").await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn leaves_no_temporary_files_behind() {
        let (dir, store) = store();
        store.put("a/b", Bytes::from_static(b"x")).await.unwrap();
        store.put_if_absent("a/b", Bytes::from_static(b"y")).await.unwrap();
        store.copy("a/b", "c").await.unwrap();
        let names = |sub: &str| -> Vec<String> {
            let entries = fs::read_dir(dir.path().join(sub)).unwrap();
            entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
        };
        assert_eq!((names("a"), names("").len()), (vec!["b".to_owned()], 2), "a/b and c, nothing else");
        let untouched = tempfile::tempdir().unwrap();
        LocalStore::new(untouched.path()).unwrap();
        assert_eq!(fs::read_dir(untouched.path()).unwrap().count(), 0, "opening a store writes nothing");
        assert!(store.put("x", Bytes::new()).await.is_ok());
        assert!(store.path(&format!("{TMP_PREFIX}/x")).is_err());
        assert!(store.path(&format!("a/{TMP_PREFIX}-1-2")).is_err(), "no key names a temporary file");
    }
}
