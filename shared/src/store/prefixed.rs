//! A view of a store below a key prefix, so a repository can live at `build/<id>/` of a bucket.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{validate_key, ByteStream, Location, ObjectReader, ObjectStore, PresignedPut, StoreError};

/// Adds `prefix/` to every key of the wrapped store.
#[derive(Debug, Clone)]
pub struct Prefixed {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
}

impl Prefixed {
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, StoreError> {
        let prefix = prefix.trim_end_matches('/');
        validate_key(prefix)?;
        Ok(Self { inner, prefix: format!("{prefix}/") })
    }

    fn full(&self, key: &str) -> Result<String, StoreError> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn full_keys(&self, keys: &[String]) -> Result<Vec<String>, StoreError> {
        keys.iter().map(|key| self.full(key)).collect()
    }
}

#[async_trait]
impl ObjectStore for Prefixed {
    async fn get(&self, key: &str) -> Result<ObjectReader, StoreError> {
        self.inner.get(&self.full(key)?).await
    }

    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.inner.head(&self.full(key)?).await
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.inner.put(&self.full(key)?, data).await
    }

    async fn put_stream(&self, key: &str, data: ByteStream) -> Result<u64, StoreError> {
        self.inner.put_stream(&self.full(key)?, data).await
    }

    async fn put_many(&self, objects: Vec<(String, Bytes)>) -> Result<(), StoreError> {
        let objects = objects.into_iter().map(|(key, data)| Ok((self.full(&key)?, data))).collect::<Result<_, _>>()?;
        self.inner.put_many(objects).await
    }

    async fn head_many(&self, keys: &[String]) -> Result<Vec<Option<u64>>, StoreError> {
        self.inner.head_many(&self.full_keys(keys)?).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError> {
        self.inner.put_if_absent(&self.full(key)?, data).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.inner.copy(&self.full(from)?, &self.full(to)?).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(&self.full(key)?).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.inner.delete_many(&self.full_keys(keys)?).await
    }

    async fn locate(&self, key: &str) -> Result<Option<Location>, StoreError> {
        self.inner.locate(&self.full(key)?).await
    }

    async fn locate_many(&self, keys: &[String]) -> Result<Vec<Option<Location>>, StoreError> {
        self.inner.locate_many(&self.full_keys(keys)?).await
    }

    async fn copy_located(&self, source: &Location, to: &str) -> Result<bool, StoreError> {
        self.inner.copy_located(source, &self.full(to)?).await
    }

    async fn copy_located_many(&self, copies: &[(Location, String)]) -> Result<Vec<bool>, StoreError> {
        let copies =
            copies.iter().map(|(from, to)| Ok((from.clone(), self.full(to)?))).collect::<Result<Vec<_>, _>>()?;
        self.inner.copy_located_many(&copies).await
    }

    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.inner.local_path(&self.full(key).ok()?)
    }

    async fn presign_put(&self, key: &str, size: u64, expires: Duration) -> Result<Option<PresignedPut>, StoreError> {
        self.inner.presign_put(&self.full(key)?, size, expires).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let keys = self.inner.list(&format!("{}{prefix}", self.prefix)).await?;
        Ok(keys.into_iter().filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_owned)).collect())
    }
}
