//! The ObjectStore port: a flat namespace of immutable-or-replaced blobs under string keys, as both
//! a local directory and an S3 bucket provide. Repository code addresses everything by key
//! relative to a repository root; [`Prefixed`] places a repository inside a larger store.

pub mod conformance;
mod layered;
mod local;
mod prefixed;
#[cfg(feature = "aws")]
mod s3;

use std::fmt::Debug;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

pub use layered::Layered;
pub use local::LocalStore;
pub use prefixed::Prefixed;
#[cfg(feature = "aws")]
pub use s3::{s3_client, PutPolicy, S3Store};

/// A streaming read of one object.
pub type ObjectReader = Pin<Box<dyn AsyncRead + Send>>;

/// A streaming write of one object.
pub type ByteStream = Pin<Box<dyn futures::Stream<Item = std::io::Result<Bytes>> + Send>>;

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

    /// Writes or replaces an object.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError>;

    /// Writes or replaces an object from a stream and returns its size. The object appears only
    /// once the stream has ended without error.
    async fn put_stream(&self, key: &str, data: ByteStream) -> Result<u64, StoreError>;

    /// Writes an object unless one exists already; returns whether this call wrote it.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError>;

    /// Copies an object to another key of this store without passing its bytes through us.
    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError>;

    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Every key that starts with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Where the object is on the local filesystem, for backends that are directories: lets CPU-bound
    /// readers (verification) read it on a blocking thread without async hops. `None` elsewhere.
    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }
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

/// Keys are relative `/`-separated paths: no empty, `.` or `..` components, no NUL or backslash.
/// `+` and other printable characters are allowed (static-delta keys contain `+`).
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad_part = |p: &str| p.is_empty() || p == "." || p == "..";
    if key.split('/').any(bad_part) || key.contains(['\0', '\\']) || key.len() > 1024 {
        return Err(StoreError::InvalidKey(key.chars().take(200).collect()));
    }
    Ok(())
}
