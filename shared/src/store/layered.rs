//! A store read through two layers: what a build uploaded, falling back to the repository it
//! builds on, so objects the repository already has need not be uploaded again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ByteStream, Location, ObjectReader, ObjectStore, PresignedPut, StoreError};

/// Reads from `top`, then `bottom`; writes go to `top` only.
#[derive(Debug, Clone)]
pub struct Layered {
    top: Arc<dyn ObjectStore>,
    bottom: Arc<dyn ObjectStore>,
}

impl Layered {
    pub fn new(top: Arc<dyn ObjectStore>, bottom: Arc<dyn ObjectStore>) -> Self {
        Self { top, bottom }
    }
}

#[async_trait]
impl ObjectStore for Layered {
    async fn get(&self, key: &str) -> Result<ObjectReader, StoreError> {
        match self.top.get(key).await {
            Err(StoreError::NotFound(_)) => self.bottom.get(key).await,
            other => other,
        }
    }

    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self.top.head(key).await? {
            Some(size) => Ok(Some(size)),
            None => self.bottom.head(key).await,
        }
    }

    async fn head_many(&self, keys: &[String]) -> Result<Vec<Option<u64>>, StoreError> {
        let mut sizes = self.top.head_many(keys).await?;
        let (missing, below): (Vec<usize>, Vec<String>) =
            sizes.iter().enumerate().filter(|(_, size)| size.is_none()).map(|(i, _)| (i, keys[i].clone())).unzip();
        for (i, size) in missing.into_iter().zip(self.bottom.head_many(&below).await?) {
            sizes[i] = size;
        }
        Ok(sizes)
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.top.put(key, data).await
    }

    async fn put_stream(&self, key: &str, data: ByteStream) -> Result<u64, StoreError> {
        self.top.put_stream(key, data).await
    }

    async fn put_many(&self, objects: Vec<(String, Bytes)>) -> Result<(), StoreError> {
        self.top.put_many(objects).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError> {
        if self.bottom.head(key).await?.is_some() {
            return Ok(false);
        }
        self.top.put_if_absent(key, data).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.top.copy(from, to).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.top.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.top.delete_many(keys).await
    }

    async fn locate(&self, key: &str) -> Result<Option<Location>, StoreError> {
        match self.top.head(key).await? {
            Some(_) => self.top.locate(key).await,
            None => self.bottom.locate(key).await,
        }
    }

    async fn locate_many(&self, keys: &[String]) -> Result<Vec<Option<Location>>, StoreError> {
        let on_top = self.top.head_many(keys).await?;
        let mut locations = Vec::with_capacity(keys.len());
        for (key, size) in keys.iter().zip(on_top) {
            let layer = if size.is_some() { &self.top } else { &self.bottom };
            locations.push(layer.locate(key).await?);
        }
        Ok(locations)
    }

    async fn copy_located(&self, source: &Location, to: &str) -> Result<bool, StoreError> {
        self.top.copy_located(source, to).await
    }

    async fn copy_located_many(&self, copies: &[(Location, String)]) -> Result<Vec<bool>, StoreError> {
        self.top.copy_located_many(copies).await
    }

    /// The top layer's file if it exists, else the bottom's (a stat, no read).
    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        match self.top.local_path(key) {
            Some(path) if path.exists() => Some(path),
            _ => self.bottom.local_path(key),
        }
    }

    /// A write to the top layer, where writes go.
    async fn presign_put(&self, key: &str, size: u64, expires: Duration) -> Result<Option<PresignedPut>, StoreError> {
        self.top.presign_put(key, size, expires).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = self.top.list(prefix).await?;
        keys.extend(self.bottom.list(prefix).await?);
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{read_limited, LocalStore};

    #[tokio::test]
    async fn reads_fall_through_and_writes_stay_on_top() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let top: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(a.path()).unwrap());
        let bottom: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(b.path()).unwrap());
        bottom.put("objects/aa/x", Bytes::from_static(b"repo")).await.unwrap();
        let layered = Layered::new(top.clone(), bottom.clone());
        assert_eq!(read_limited(&layered, "objects/aa/x", 10).await.unwrap(), b"repo");
        assert!(!layered.put_if_absent("objects/aa/x", Bytes::from_static(b"dup")).await.unwrap());
        layered.put("objects/bb/y", Bytes::from_static(b"new")).await.unwrap();
        assert_eq!(top.head("objects/bb/y").await.unwrap(), Some(3));
        assert_eq!(bottom.head("objects/bb/y").await.unwrap(), None);
        assert_eq!(layered.list("objects/").await.unwrap(), ["objects/aa/x", "objects/bb/y"]);
        let keys: Vec<String> = ["objects/bb/y", "objects/cc/z", "objects/aa/x"].map(str::to_owned).into();
        assert_eq!(layered.head_many(&keys).await.unwrap(), [Some(3), None, Some(4)], "each from its layer, in order");
        layered.delete_many(&keys).await.unwrap();
        assert_eq!(layered.head_many(&keys).await.unwrap(), [None, None, Some(4)], "deletes stay on top");
    }

    #[tokio::test]
    async fn directories_hand_out_no_presigned_writes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let top: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(a.path()).unwrap());
        let layered = Layered::new(top, Arc::new(LocalStore::new(b.path()).unwrap()));
        assert_eq!(layered.presign_put("objects/aa/x", 3, Duration::from_secs(60)).await.unwrap(), None);
        assert!(layered.presign_put("../x", 3, Duration::from_secs(60)).await.is_err());
    }
}
