//! The StateStore port: builds, build refs, jobs and their logs, token tracking, per-repo ref
//! records and publish leases. Every state transition is one conditional write, so concurrent
//! requests and workers (and, on AWS, concurrent Lambdas) cannot both win.

pub mod conformance;
#[cfg(feature = "aws")]
mod dynamodb;
mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[cfg(feature = "aws")]
pub use dynamodb::{create_table, dynamodb_client, DynamoState};
pub use sqlite::SqliteState;

use crate::domain::build::{Build, BuildRef, NewBuild, PublishedState, RepoState, WrongState};
use crate::domain::job::{CommitContents, Job, JobKind, JobStatus, PublishContents};
use crate::repo::record::RefRecord;

/// What went wrong, by meaning.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    WrongState(#[from] WrongState),
    #[error("Token has been revoked")]
    Revoked,
    #[error("state store failure: {0}")]
    Backend(String),
}

/// A tracked token (`tokens/get_list`), times as naive UTC strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub token_id: String,
    pub expires: Option<String>,
    pub last_used: Option<String>,
    pub revoked_at: Option<String>,
}

/// Storage of everything the API and the jobs remember.
#[async_trait]
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Creates a build in `uploading`/`unpublished` with the next id.
    async fn create_build(&self, new: NewBuild) -> Result<Build, StateError>;

    async fn get_build(&self, id: i64) -> Result<Build, StateError>;

    /// Builds that are not purged: those of `app_id`, or with no app id when `None`.
    async fn list_builds(&self, app_id: Option<&str>) -> Result<Vec<Build>, StateError>;

    /// Builds of `repo` whose committed repository may still be published: committed (or being
    /// committed or checked) and not yet published. Their objects must survive a prune.
    async fn unpublished_builds(&self, repo: &str) -> Result<Vec<Build>, StateError>;

    /// Appends ids not already present; returns the build.
    async fn add_extra_ids(&self, build_id: i64, ids: &[String]) -> Result<Build, StateError>;

    /// Registers `ref_name` → `commit` for a build, replacing the commit of an existing row.
    async fn upsert_build_ref(
        &self,
        build_id: i64,
        ref_name: &str,
        commit: &str,
        build_log_url: Option<&str>,
    ) -> Result<BuildRef, StateError>;

    async fn get_build_ref(&self, build_id: i64, ref_id: i64) -> Result<BuildRef, StateError>;

    /// A build's refs, by id.
    async fn list_build_refs(&self, build_id: i64) -> Result<Vec<BuildRef>, StateError>;

    /// In one conditional write: the build must be `uploading`; it becomes `committing` with a new
    /// queued commit job, which is returned.
    async fn start_commit(&self, contents: &CommitContents) -> Result<Job, StateError>;

    /// In one conditional write: the build must be `unpublished` and `ready`; it becomes
    /// `publishing` with a new queued publish job (repo = the build's repo), which is returned.
    async fn start_publish(&self, contents: &PublishContents) -> Result<Job, StateError>;

    /// Moves `repo_state` from one of `from` to `to` (with a reason), or fails with the current
    /// state when it is elsewhere.
    async fn set_repo_state(
        &self,
        build_id: i64,
        from: &[RepoState],
        to: RepoState,
        reason: Option<&str>,
    ) -> Result<Build, StateError>;

    /// Moves `published_state` likewise.
    async fn set_published_state(
        &self,
        build_id: i64,
        from: &[PublishedState],
        to: PublishedState,
        reason: Option<&str>,
    ) -> Result<Build, StateError>;

    /// Queues a job that belongs to no build (prune), returning it.
    async fn create_job(&self, kind: JobKind, contents: &str, repo: Option<&str>) -> Result<Job, StateError>;

    async fn get_job(&self, id: i64) -> Result<Job, StateError>;

    /// Marks a queued job started; `None` when it is not queued (another worker has it).
    async fn claim_job(&self, id: i64) -> Result<Option<Job>, StateError>;

    /// Appends to a job's log.
    async fn append_job_log(&self, id: i64, text: &str) -> Result<(), StateError>;

    /// Ends a started job with `status` (ended or broken) and its JSON results.
    async fn finish_job(&self, id: i64, status: JobStatus, results: &str) -> Result<(), StateError>;

    /// Jobs that are queued or were started and never finished, by id.
    async fn unfinished_jobs(&self) -> Result<Vec<Job>, StateError>;

    /// Puts a started job back in the queue (after a crash); returns whether it was started.
    async fn requeue_job(&self, id: i64) -> Result<bool, StateError>;

    /// Records a use of token `jti` (expiring at `expires`, unix seconds); fails with
    /// [`StateError::Revoked`] if it was revoked.
    async fn use_token(&self, jti: &str, expires: i64) -> Result<(), StateError>;

    /// Revokes tokens (keeping an earlier revocation time).
    async fn revoke_tokens(&self, ids: &[String]) -> Result<(), StateError>;

    /// The tracked tokens among `ids`.
    async fn get_tokens(&self, ids: &[String]) -> Result<Vec<TokenRecord>, StateError>;

    /// The published refs of a repository.
    async fn repo_refs(&self, repo: &str) -> Result<Vec<RefRecord>, StateError>;

    /// Inserts or replaces published ref records of a repository.
    async fn put_repo_refs(&self, repo: &str, records: &[RefRecord]) -> Result<(), StateError>;

    /// Takes the lease `name` for `holder` for `ttl_secs` if it is free, expired or already
    /// `holder`'s; returns whether `holder` now has it.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl_secs: u64) -> Result<bool, StateError>;

    /// Gives the lease up if `holder` has it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StateError>;
}

/// Now as flat-manager writes timestamps: naive UTC with microseconds.
pub fn naive_now() -> String {
    chrono::Utc::now().naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// Naive UTC string for unix seconds.
pub fn naive_from_unix(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .naive_utc()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}
