//! The ObjectStore port: a flat namespace of immutable-or-replaced blobs under string keys, as both
//! a local directory and an S3 bucket provide. Repository code addresses everything by key
//! relative to a repository root; [`Prefixed`] places a repository inside a larger store.

pub mod conformance;
mod layered;
mod local;
mod prefixed;
#[cfg(feature = "aws")]
mod s3;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};

pub use layered::Layered;
pub use local::LocalStore;
pub use prefixed::Prefixed;
#[cfg(feature = "aws")]
pub use s3::{s3_client, PutPolicy, S3Store};

/// Requests in flight at once in the default batch operations ([`ObjectStore::head_many`],
/// [`ObjectStore::delete_many`], [`ObjectStore::copy_located_many`]): a bucket answers each on its
/// own.
const MANY_CONCURRENCY: usize = 32;

/// A streaming read of one object.
pub type ObjectReader = Pin<Box<dyn AsyncRead + Send>>;

/// A streaming write of one object.
pub type ByteStream = Pin<Box<dyn futures::Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Where an object is stored, named so that another store can copy it without passing its bytes
/// through us: a hard link on one filesystem, a CopyObject between buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(std::path::PathBuf),
    S3 { bucket: String, key: String },
}

/// What went wrong in a store, by meaning.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid key {0:?}")]
    InvalidKey(String),
    #[error("{key} is larger than {limit} bytes")]
    TooLarge { key: String, limit: u64 },
    #[error("storage failure on {key}: {source}")]
    Io { key: String, source: std::io::Error },
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }
}

/// Storage of blobs by key. Writes are atomic: a reader sees the old object, the new one or
/// none, never a partial one.
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// Streams an object.
    async fn get(&self, key: &str) -> Result<ObjectReader, StoreError>;

    /// The object's size, or `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError>;

    /// The sizes of several objects, in order, as [`ObjectStore::head`] gives each; a backend may
    /// check them in one operation (a directory: one trip to a blocking thread for all of them).
    async fn head_many(&self, keys: &[String]) -> Result<Vec<Option<u64>>, StoreError> {
        // Owned keys: futures borrowing the slice's items trip async_trait's lifetimes.
        let heads = stream::iter(keys.to_vec()).map(|key| async move { self.head(&key).await });
        heads.buffered(MANY_CONCURRENCY).try_collect().await
    }

    /// Writes or replaces an object.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError>;

    /// Writes or replaces an object from a stream and returns its size. The object appears only
    /// once the stream has ended without error.
    async fn put_stream(&self, key: &str, data: ByteStream) -> Result<u64, StoreError>;

    /// Writes or replaces several small objects, each as [`ObjectStore::put`] would; a backend may
    /// do it in one operation (a directory: one trip to a blocking thread for all of them).
    async fn put_many(&self, objects: Vec<(String, Bytes)>) -> Result<(), StoreError> {
        for (key, data) in objects {
            self.put(&key, data).await?;
        }
        Ok(())
    }

    /// Writes an object unless one exists already; returns whether this call wrote it.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError>;

    /// Copies an object to another key of this store without passing its bytes through us.
    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError>;

    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Deletes several objects, as [`ObjectStore::delete`] each; a backend may do it in one
    /// operation.
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        let deletes = stream::iter(keys.to_vec()).map(|key| async move { self.delete(&key).await });
        deletes.buffer_unordered(MANY_CONCURRENCY).try_collect().await
    }

    /// Every key that starts with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Where `key` is stored, for [`ObjectStore::copy_located`] on another store; `None` when this
    /// backend cannot name it. For a layered store, the location in the layer that has the key.
    async fn locate(&self, _key: &str) -> Result<Option<Location>, StoreError> {
        Ok(None)
    }

    /// Where each of several keys is stored, in order, as [`ObjectStore::locate`] gives each.
    async fn locate_many(&self, keys: &[String]) -> Result<Vec<Option<Location>>, StoreError> {
        let mut locations = Vec::with_capacity(keys.len());
        for key in keys {
            locations.push(self.locate(key).await?);
        }
        Ok(locations)
    }

    /// Several [`ObjectStore::copy_located`], in order; a backend may do them in one operation (a
    /// directory: one trip to a blocking thread for all the hard links).
    async fn copy_located_many(&self, copies: &[(Location, String)]) -> Result<Vec<bool>, StoreError> {
        let copies = stream::iter(copies.to_vec()).map(|(from, to)| async move { self.copy_located(&from, &to).await });
        copies.buffered(MANY_CONCURRENCY).try_collect().await
    }

    /// Writes `to` as a copy of the object at `source` (another store's [`ObjectStore::locate`])
    /// without reading it, when this backend can copy from there; `Ok(false)` when it cannot (a
    /// location of another kind, another filesystem) and the caller must copy the bytes; `NotFound`
    /// when the source is missing. Meant for immutable objects: an existing `to` is left as it is
    /// or replaced by the same bytes.
    async fn copy_located(&self, _source: &Location, _to: &str) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Where the object is on the local filesystem, for backends that are directories: lets CPU-bound
    /// readers (verification) read it on a blocking thread without async hops. `None` elsewhere.
    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }

    /// A request through which a client holding no credentials can write exactly `size` bytes as
    /// `key` until `expires` has passed, so large uploads need not pass through us; `None` when this
    /// backend cannot hand such requests out (directories).
    async fn presign_put(&self, key: &str, _size: u64, _expires: Duration) -> Result<Option<PresignedPut>, StoreError> {
        validate_key(key)?;
        Ok(None)
    }
}

/// A presigned write of one object: `PUT` the bytes to `url` with exactly `headers`, which sign the
/// declared size (`content-length`) and `content-type: application/octet-stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPut {
    pub url: String,
    /// Lower-case header names and their values.
    pub headers: BTreeMap<String, String>,
}

/// Reads a whole object, refusing ones larger than `limit` bytes.
pub async fn read_limited(store: &dyn ObjectStore, key: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
    let reader = store.get(key).await?;
    let mut data = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut data)
        .await
        .map_err(|source| StoreError::Io { key: key.to_owned(), source })?;
    if data.len() as u64 > limit {
        return Err(StoreError::TooLarge { key: key.to_owned(), limit });
    }
    Ok(data)
}

/// Deletes every object whose key starts with `prefix`.
pub async fn delete_all(store: &dyn ObjectStore, prefix: &str) -> Result<(), StoreError> {
    store.delete_many(&store.list(prefix).await?).await
}

/// Keys are relative `/`-separated paths: no empty, `.` or `..` components, no NUL or backslash.
/// `+` and other printable characters are allowed (static-delta keys contain `+`).
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad_part = |p: &str| p.is_empty() || p == "." || p == "..";
    if key.split('/').any(bad_part) || key.contains(['\0', '\\']) || key.len() > 1024 {
        return Err(StoreError::InvalidKey(key.chars().take(200).collect()));
    }
    Ok(())
}
