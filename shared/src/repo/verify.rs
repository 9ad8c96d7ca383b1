//! Verification of untrusted objects: the full closure of a commit, every object's checksum
//! recomputed as ostree does, content streamed (bounded memory whatever sizes objects claim) and
//! hashed on blocking threads in parallel. Every bad or missing object is reported by name.

use std::sync::Arc;

use futures::stream::{self, StreamExt};
use tokio_util::io::SyncIoBridge;

use super::dirs::S_IFMT;
use super::filez::{checksum_filez, read_filez_header, FileSummary, FilezError};
use super::record::TreeSizes;
use super::walk::{walk_closure, Closure, Problem, ProblemKind};
use super::{Checksum, FormatError, ObjectName, ObjectType};
use crate::store::{ObjectStore, StoreError};

/// The outcome of verifying one commit.
#[derive(Debug)]
pub struct Verified {
    pub closure: Closure,
    /// Sizes as flatpak records them, counting each path that uses a file.
    pub sizes: TreeSizes,
    /// Uncompressed content bytes hashed (each object once).
    pub content_bytes: u64,
    /// Stored bytes read (each object once).
    pub stored_bytes: u64,
}

impl Verified {
    pub fn problems(&self) -> &[Problem] {
        &self.closure.problems
    }

    pub fn is_ok(&self) -> bool {
        self.closure.problems.is_empty()
    }
}

/// Verifies the commit and everything it references. Store failures other than a missing object
/// are returned as errors (they say nothing about the objects and may be retried).
///
/// Content objects that `trusted` (the repository the build targets) already has are not hashed
/// again: their headers are read for the sizes, and their names vouch for their content.
pub async fn verify_commit(
    store: Arc<dyn ObjectStore>,
    commit: Checksum,
    concurrency: usize,
    trusted: Option<Arc<dyn ObjectStore>>,
) -> Result<Verified, StoreError> {
    let mut closure = walk_closure(&*store, commit).await?;
    let files: Vec<(Checksum, u32)> = closure.files.iter().map(|(c, n)| (*c, *n)).collect();
    // Which files the trusted store has, and their sizes, asked all at once.
    let in_trusted = match &trusted {
        Some(trusted) => trusted.head_many(&files.iter().map(|(c, _)| file_key(*c)).collect::<Vec<_>>()).await?,
        None => vec![None; files.len()],
    };
    let results: Vec<_> = stream::iter(files.into_iter().zip(in_trusted))
        .map(|((checksum, uses), trusted_size)| {
            let (store, trusted) = (store.clone(), trusted.clone());
            async move { (checksum, uses, check_file(store, trusted.as_deref().zip(trusted_size), checksum).await) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let (mut sizes, mut content_bytes, mut stored_bytes) = (TreeSizes::default(), 0, 0);
    for (checksum, uses, result) in results {
        match result? {
            Ok(file) => {
                content_bytes += file.header.size;
                stored_bytes += file.stored_size;
                if file.header.is_regular() {
                    sizes.installed += u64::from(uses) * file.header.size.div_ceil(512) * 512;
                    sizes.download += u64::from(uses) * file.stored_size;
                }
            }
            Err(kind) => closure.problems.push(Problem { object: ObjectName::new(checksum, ObjectType::File), kind }),
        }
    }
    closure.problems.sort_by_key(|p| p.object);
    Ok(Verified { closure, sizes, content_bytes, stored_bytes })
}

/// Streams one `.filez` through the checksum on a blocking thread.
async fn verify_file(
    store: Arc<dyn ObjectStore>,
    checksum: Checksum,
) -> Result<Result<FileSummary, ProblemKind>, StoreError> {
    let key = file_key(checksum);
    match read_object(&*store, &key, checksum_filez).await? {
        None => Ok(Err(ProblemKind::Missing)),
        Some(Ok(file)) if file.checksum != checksum => Ok(Err(ProblemKind::ChecksumMismatch { actual: file.checksum })),
        Some(Ok(file)) => Ok(check_flatpak_mode(&file).map(|()| file)),
        Some(Err(FilezError::Format(e))) => Ok(Err(ProblemKind::Malformed(e))),
        Some(Err(FilezError::Io(source))) => Err(StoreError::Io { key, source }),
    }
}

/// The trusted copy if there is one (the trusted store and the copy's size), else full
/// verification.
async fn check_file(
    store: Arc<dyn ObjectStore>,
    trusted: Option<(&dyn ObjectStore, u64)>,
    checksum: Checksum,
) -> Result<Result<FileSummary, ProblemKind>, StoreError> {
    if let Some((trusted, stored_size)) = trusted {
        if let Some(file) = read_trusted(trusted, checksum, stored_size).await? {
            return Ok(Ok(file));
        }
    }
    verify_file(store, checksum).await
}

/// The header of an object of `stored_size` bytes a trusted store (the repository, whose objects
/// were verified when they were committed) has, read without inflating the content; `None` if it
/// is gone since its size was read.
async fn read_trusted(
    trusted: &dyn ObjectStore,
    checksum: Checksum,
    stored_size: u64,
) -> Result<Option<FileSummary>, StoreError> {
    let key = file_key(checksum);
    match read_object(trusted, &key, read_filez_header).await? {
        Some(Ok(header)) => Ok(Some(FileSummary { checksum, header, stored_size })),
        Some(Err(e)) => Err(StoreError::Io { key, source: std::io::Error::other(e.to_string()) }),
        None => Ok(None),
    }
}

fn file_key(checksum: Checksum) -> String {
    ObjectName::new(checksum, ObjectType::File).key()
}

/// Runs `read` over an object on a blocking thread: straight from the file when the store is a
/// directory, else through the async reader. `None` when the object does not exist.
async fn read_object<T: Send + 'static>(
    store: &dyn ObjectStore,
    key: &str,
    read: fn(Box<dyn std::io::Read + Send>) -> T,
) -> Result<Option<T>, StoreError> {
    let task = match store.local_path(key) {
        Some(path) => tokio::task::spawn_blocking(move || match std::fs::File::open(path) {
            Ok(file) => Ok(Some(read(Box::new(file)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }),
        None => {
            let reader = match store.get(key).await {
                Ok(reader) => reader,
                Err(StoreError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            let bridge = SyncIoBridge::new(reader);
            tokio::task::spawn_blocking(move || Ok(Some(read(Box::new(bridge)))))
        }
    };
    let joined = task.await.map_err(|e| StoreError::Io { key: key.to_owned(), source: std::io::Error::other(e) })?;
    joined.map_err(|source| StoreError::Io { key: key.to_owned(), source })
}

/// Flatpak pulls with bare-user-only rules: regular files may only carry permission bits within
/// 0775 (no setuid, setgid, sticky or world-writable files).
fn check_flatpak_mode(file: &FileSummary) -> Result<(), ProblemKind> {
    let mode = file.header.mode;
    if file.header.is_regular() && mode & !(S_IFMT | 0o775) != 0 {
        return Err(ProblemKind::Malformed(FormatError::Malformed(format!(
            "file mode {mode:o} is not allowed in a Flatpak"
        ))));
    }
    Ok(())
}
