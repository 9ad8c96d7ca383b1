//! Choosing and opening backends from the configuration. The embedded default needs nothing but
//! directories; the AWS backends exist in builds with the `aws` feature.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;

use super::Repo;
use crate::config::{Config, DatabaseUrl};
use crate::jobs::queue::{JobQueue, LocalQueue, QueueReceiver};
use crate::repo::layout::init_local_repo;
use crate::state::{SqliteState, StateStore};
use crate::store::{LocalStore, ObjectStore};

/// The state store `database-url` names.
pub async fn state(config: &Config) -> anyhow::Result<Arc<dyn StateStore>> {
    match config.database().map_err(anyhow::Error::msg)? {
        DatabaseUrl::Sqlite(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            Ok(Arc::new(SqliteState::open(&path).with_context(|| format!("opening {}", path.display()))?))
        }
        DatabaseUrl::DynamoDb(table) => aws::state(&table).await,
    }
}

/// The staging store and the repositories: directories, or buckets when `s3` is configured.
pub async fn stores(config: &Config) -> anyhow::Result<(Arc<dyn ObjectStore>, BTreeMap<String, Repo>)> {
    if config.s3.is_some() {
        return aws::stores(config).await;
    }
    let staging: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&config.build_repo_base)?);
    let mut repos = BTreeMap::new();
    for (name, repo) in &config.repos {
        init_local_repo(&repo.path, repo.collection_id.as_deref())
            .with_context(|| format!("initialising {}", repo.path.display()))?;
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&repo.path)?);
        repos.insert(name.clone(), Repo::new(name, repo.clone(), store));
    }
    Ok((staging, repos))
}

/// SQS when `queue-url` is configured, else the in-process queue and its receiver.
pub async fn queue(config: &Config) -> anyhow::Result<(Arc<dyn JobQueue>, Option<QueueReceiver>)> {
    match &config.queue_url {
        Some(url) => Ok((aws::queue(url).await?, None)),
        None => {
            let (queue, receiver) = LocalQueue::new();
            Ok((Arc::new(queue), Some(receiver)))
        }
    }
}

/// SQS for update-repo jobs when `deltas-queue-url` is configured; else they share the queue.
pub async fn delta_queue(config: &Config) -> anyhow::Result<Option<Arc<dyn JobQueue>>> {
    match &config.deltas_queue_url {
        Some(url) => Ok(Some(aws::queue(url).await?)),
        None => Ok(None),
    }
}

#[cfg(feature = "aws")]
mod aws {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::Repo;
    use crate::config::Config;
    use crate::jobs::queue::JobQueue;
    use crate::jobs::{sqs_client, SqsQueue};
    use crate::repo::layout::repo_config;
    use crate::state::{dynamodb_client, DynamoState, StateStore};
    use crate::store::{s3_client, ObjectStore, PutPolicy, S3Store};

    pub async fn state(table: &str) -> anyhow::Result<Arc<dyn StateStore>> {
        Ok(Arc::new(DynamoState::new(dynamodb_client().await, table.to_owned())))
    }

    /// Builds in the staging bucket; each repository in the public bucket under its path, with
    /// its `config` written if missing.
    pub async fn stores(config: &Config) -> anyhow::Result<(Arc<dyn ObjectStore>, BTreeMap<String, Repo>)> {
        let s3 = config.s3.as_ref().expect("called with s3 configured");
        let client = s3_client(None).await;
        let staging: Arc<dyn ObjectStore> = Arc::new(S3Store::new(
            client.clone(),
            s3.staging_bucket.clone(),
            s3.staging_prefix.clone(),
            PutPolicy::Private,
        ));
        let mut repos = BTreeMap::new();
        for (name, repo) in &config.repos {
            let prefix = repo.path.to_string_lossy().trim_matches('/').to_owned();
            let store: Arc<dyn ObjectStore> =
                Arc::new(S3Store::new(client.clone(), s3.public_bucket.clone(), prefix, PutPolicy::PublicRepository));
            let initial = Bytes::from(repo_config(repo.collection_id.as_deref()));
            store.put_if_absent("config", initial).await?;
            repos.insert(name.clone(), Repo::new(name, repo.clone(), store));
        }
        Ok((staging, repos))
    }

    pub async fn queue(url: &str) -> anyhow::Result<Arc<dyn JobQueue>> {
        Ok(Arc::new(SqsQueue::new(sqs_client(None).await, url.to_owned())))
    }
}

#[cfg(not(feature = "aws"))]
mod aws {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::Repo;
    use crate::config::Config;
    use crate::jobs::queue::JobQueue;
    use crate::state::StateStore;
    use crate::store::ObjectStore;

    const MISSING: &str = "this build of flatbucket has no AWS backends: build it with `--features aws`";

    pub async fn state(_table: &str) -> anyhow::Result<Arc<dyn StateStore>> {
        anyhow::bail!(MISSING)
    }

    pub async fn stores(_config: &Config) -> anyhow::Result<(Arc<dyn ObjectStore>, BTreeMap<String, Repo>)> {
        anyhow::bail!(MISSING)
    }

    pub async fn queue(_url: &str) -> anyhow::Result<Arc<dyn JobQueue>> {
        anyhow::bail!(MISSING)
    }
}
