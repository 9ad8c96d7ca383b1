//! The application state every handler and job runs against: configuration, keys, the state
//! store, the staging store, the repositories and the job queue. Backends are chosen here from the
//! configuration; nothing else knows which ones run.

use std::collections::BTreeMap;
use std::sync::Arc;

mod backends;

use crate::config::{Config, RepoConfig};
use crate::jobs::queue::{JobQueue, QueueReceiver};
use crate::repo::summary::SummarySettings;
use crate::state::StateStore;
use crate::store::{Layered, ObjectStore, Prefixed};

/// One published repository.
#[derive(Debug)]
pub struct Repo {
    pub name: String,
    pub config: RepoConfig,
    pub store: Arc<dyn ObjectStore>,
    pub settings: SummarySettings,
}

/// Shared by the router and the worker; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub state: Arc<dyn StateStore>,
    /// Build repositories: `<id>/…` (committed) and `<id>/upload/…` (raw uploads).
    pub staging: Arc<dyn ObjectStore>,
    pub repos: Arc<BTreeMap<String, Repo>>,
    pub queue: Arc<dyn JobQueue>,
    /// The largest request body the API accepts, when the deployment has a limit of its own (a
    /// Lambda function's payload limit); larger requests get 413. `None`: only each route's limits.
    pub max_request_body: Option<u64>,
    keys: Arc<Keys>,
}

#[derive(Debug)]
struct Keys {
    secret: Vec<u8>,
    repo_secret: Vec<u8>,
}

impl AppState {
    /// Builds the backends the configuration selects — local directories or S3 buckets, SQLite or
    /// DynamoDB, the in-process queue or SQS — and returns the receiving end of the in-process
    /// queue when there is one, for the caller's worker.
    pub async fn from_config(config: Config) -> anyhow::Result<(Self, Option<QueueReceiver>)> {
        let state = backends::state(&config).await?;
        let (staging, repos) = backends::stores(&config).await?;
        let (queue, receiver) = backends::queue(&config).await?;
        Ok((Self::new(config, state, staging, repos, queue)?, receiver))
    }

    /// Assembles the state from backends built elsewhere.
    pub fn new(
        config: Config,
        state: Arc<dyn StateStore>,
        staging: Arc<dyn ObjectStore>,
        repos: BTreeMap<String, Repo>,
        queue: Arc<dyn JobQueue>,
    ) -> anyhow::Result<Self> {
        let secret = config.secret_key().map_err(anyhow::Error::msg)?;
        let repo_secret = config.repo_secret_key().map_err(anyhow::Error::msg)?;
        Ok(Self {
            config: Arc::new(config),
            state,
            staging,
            repos: Arc::new(repos),
            queue,
            max_request_body: None,
            keys: Arc::new(Keys { secret, repo_secret }),
        })
    }

    pub fn secret(&self) -> &[u8] {
        &self.keys.secret
    }

    pub fn repo_secret(&self) -> &[u8] {
        &self.keys.repo_secret
    }

    pub fn token_prefix(&self) -> Option<&str> {
        self.config.token_prefix.as_deref()
    }

    pub fn repo(&self, name: &str) -> Option<&Repo> {
        self.repos.get(name)
    }

    /// Where a build's raw uploads go.
    pub fn upload_store(&self, build: i64) -> Arc<dyn ObjectStore> {
        Arc::new(Prefixed::new(self.staging.clone(), &format!("{build}/upload")).expect("numeric prefix is valid"))
    }

    /// A build's committed repository.
    pub fn build_store(&self, build: i64) -> Arc<dyn ObjectStore> {
        Arc::new(Prefixed::new(self.staging.clone(), &build.to_string()).expect("numeric prefix is valid"))
    }

    /// Removes everything a build stored: its uploads and its committed repository.
    pub async fn delete_build_files(&self, build: i64) -> Result<(), crate::store::StoreError> {
        let store = self.build_store(build);
        for key in store.list("").await? {
            store.delete(&key).await?;
        }
        Ok(())
    }

    /// A build's uploads with the target repository beneath: what `missing_objects` looks in.
    pub fn upload_view(&self, build: i64, repo: &Repo) -> Arc<dyn ObjectStore> {
        Arc::new(Layered::new(self.upload_store(build), repo.store.clone()))
    }

    /// A build's repository with the target repository beneath: what `/build-repo/<id>` serves.
    pub fn build_view(&self, build: i64, repo: &Repo) -> Arc<dyn ObjectStore> {
        Arc::new(Layered::new(self.build_store(build), repo.store.clone()))
    }
}

impl Repo {
    pub fn new(name: &str, config: RepoConfig, store: Arc<dyn ObjectStore>) -> Self {
        let settings = SummarySettings {
            collection_id: config.collection_id.clone(),
            deploy_collection_id: config.deploy_collection_id,
            ..SummarySettings::default()
        };
        Self { name: name.to_owned(), config, store, settings }
    }
}
