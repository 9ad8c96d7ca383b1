//! The application state every handler and job runs against: configuration, keys, the state
//! store, the staging store, the repositories and the job queue. Backends are chosen here from the
//! configuration; nothing else knows which ones run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

mod backends;
mod keys;
pub mod remote_files;

use crate::config::{Config, OneOrMany, RepoConfig};
use crate::domain::job::{Job, JobKind};
use crate::jobs::queue::{JobQueue, QueueError, QueueReceiver};
use crate::repo::deltas::DeltaGenerator;
use crate::repo::sign::Signer;
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
    /// The keys that sign new commits and the summaries, when the repository is signed.
    pub signer: Option<Arc<Signer>>,
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
    /// Where update-repo jobs go when not to `queue`: the deltas function's own queue on AWS.
    pub delta_queue: Option<Arc<dyn JobQueue>>,
    /// The largest request body the API accepts, when the deployment has a limit of its own (a
    /// Lambda function's payload limit); larger requests get 413. `None`: only each route's limits.
    pub max_request_body: Option<u64>,
    /// The `build-gpg-key` keys that sign build repositories' commits and summaries, if any.
    pub build_signer: Option<Arc<Signer>>,
    /// What generates static deltas; without one, update-repo jobs index only stored deltas.
    pub deltas: Option<Arc<dyn DeltaGenerator>>,
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
    /// queue when there is one, for the caller's worker. Signing keys (`gpg-key-file`, `gpg-key`,
    /// `build-gpg-key`) are loaded first, once: a key that cannot sign stops the start.
    pub async fn from_config(config: Config) -> anyhow::Result<(Self, Option<QueueReceiver>)> {
        let homedir = config.gpg_homedir.as_deref().map(Path::new);
        let mut signers = BTreeMap::new();
        for (name, repo) in &config.repos {
            let ids = repo.gpg_key.as_ref().map_or(&[][..], OneOrMany::as_slice);
            let in_aws = keys::aws_signer(repo).await.with_context(|| format!("signing keys of repos.{name}"))?;
            let signer = load_signer(homedir, ids, repo.gpg_key_file.as_deref(), in_aws)
                .with_context(|| format!("signing keys of repos.{name}"))?;
            signers.insert(name.clone(), signer);
        }
        let build_ids = config.build_gpg_key.as_ref().map_or(&[][..], OneOrMany::as_slice);
        let build_signer = load_signer(homedir, build_ids, None, None).context("build-gpg-key")?;
        let state = backends::state(&config).await?;
        let (staging, mut repos) = backends::stores(&config).await?;
        for (name, repo) in &mut repos {
            repo.signer = signers.remove(name).flatten();
        }
        let (queue, receiver) = backends::queue(&config).await?;
        let delta_queue = backends::delta_queue(&config).await?;
        let mut app = Self::new(config, state, staging, repos, queue)?;
        app.build_signer = build_signer;
        app.delta_queue = delta_queue;
        for repo in app.repos.values() {
            // Best effort: a function without write access to the repository leaves it to publish.
            if let Err(e) = remote_files::write_repo_file(&app, repo).await {
                tracing::warn!(repo = %repo.name, error = %e, "could not write the repository's .flatpakrepo");
            }
        }
        Ok((app, receiver))
    }

    /// Assembles the state from backends built elsewhere, without a build signer.
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
            delta_queue: None,
            max_request_body: None,
            build_signer: None,
            deltas: None,
            keys: Arc::new(Keys { secret, repo_secret }),
        })
    }

    /// This state with `generator` making the static deltas of update-repo jobs.
    pub fn with_delta_generator(mut self, generator: Arc<dyn DeltaGenerator>) -> Self {
        self.deltas = Some(generator);
        self
    }

    /// Hands `job` to whatever runs its kind: update-repo jobs to the delta queue when there is
    /// one, everything else to the worker's queue.
    pub async fn enqueue(&self, job: &Job) -> Result<(), QueueError> {
        match (&self.delta_queue, job.kind) {
            (Some(deltas), JobKind::UpdateRepo) => deltas.enqueue(job.id).await,
            _ => self.queue.enqueue(job.id).await,
        }
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
        crate::store::delete_all(&*self.build_store(build), "").await
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

/// A signer of the keys in `key_file`, the keys `key_ids` exported from `gpg_homedir` and the
/// keys of `loaded` (read from elsewhere); `None` when there are none.
pub fn load_signer(
    gpg_homedir: Option<&Path>,
    key_ids: &[String],
    key_file: Option<&Path>,
    loaded: Option<Signer>,
) -> anyhow::Result<Option<Arc<Signer>>> {
    let mut signer = loaded;
    let mut add = |more: Signer| match &mut signer {
        Some(signer) => signer.extend(more),
        None => signer = Some(more),
    };
    if let Some(file) = key_file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("gpg-key-file: cannot read {}", file.display()))?;
        add(Signer::from_armored(&text).with_context(|| format!("gpg-key-file {}", file.display()))?);
    }
    for key in key_ids {
        let homedir = gpg_homedir.map_or_else(|| "GnuPG's default home".to_owned(), |h| h.display().to_string());
        add(Signer::from_gpg_homedir(gpg_homedir, key).with_context(|| format!("gpg-key {key} in {homedir}"))?);
    }
    Ok(signer.map(Arc::new))
}

impl Repo {
    /// An unsigned repository; [`AppState::from_config`] gives configured ones their signer.
    pub fn new(name: &str, config: RepoConfig, store: Arc<dyn ObjectStore>) -> Self {
        let settings = SummarySettings {
            collection_id: config.collection_id.clone(),
            deploy_collection_id: config.deploy_collection_id,
            ..SummarySettings::default()
        };
        Self { name: name.to_owned(), config, store, settings, signer: None }
    }
}
