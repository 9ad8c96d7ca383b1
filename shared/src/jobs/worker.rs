//! The worker: runs each queued job on its own task, so commits of different builds verify in
//! parallel while publishes serialise per repository through the publish lease. At start-up it
//! recovers the jobs a previous process left queued or half-done.

use serde_json::{json, Value};
use tracing::Instrument;

use super::queue::QueueReceiver;
use super::{commit, prune, publish, update_repo, JobContext};
use crate::app::AppState;
use crate::domain::build::{PublishedState, RepoState};
use crate::domain::job::{Job, JobKind, JobStatus};
use crate::state::StateError;

/// Runs jobs for one process.
pub struct Worker {
    app: AppState,
    receiver: QueueReceiver,
}

impl Worker {
    pub fn new(app: AppState, receiver: QueueReceiver) -> Self {
        Self { app, receiver }
    }

    /// Recovers unfinished jobs, then runs every job it is handed until the queue closes.
    pub async fn run(mut self) {
        if let Err(e) = self.recover().await {
            tracing::error!(error = %e, "could not recover unfinished jobs");
        }
        while let Some(id) = self.receiver.recv().await {
            spawn_job(&self.app, id);
        }
    }

    /// Puts jobs that were running when the last process stopped back in the queue (every job is
    /// idempotent) and runs everything queued.
    async fn recover(&self) -> anyhow::Result<()> {
        for job in self.app.state.unfinished_jobs().await? {
            if job.status == JobStatus::Started {
                self.app.state.requeue_job(job.id).await?;
                tracing::info!(job_id = job.id, kind = job.kind.as_str(), "resuming a job interrupted by a restart");
            }
            spawn_job(&self.app, job.id);
        }
        Ok(())
    }
}

/// Claims and runs one job, recording its end and, on failure, the build's. A job another worker
/// holds is left alone. Errors are the state store's: the job's outcome could not be recorded,
/// and the caller should have it delivered again.
pub async fn run_job(app: &AppState, id: i64) -> Result<(), StateError> {
    let Some(job) = app.state.claim_job(id).await? else { return Ok(()) };
    let ctx = JobContext { app, job: &job };
    let span = tracing::info_span!("job", job_id = id, kind = job.kind.as_str());
    let (status, results) = match dispatch(&ctx).instrument(span).await {
        Ok(results) => {
            ctx.log("Job completed successfully").await;
            (JobStatus::Ended, results)
        }
        Err(e) => {
            let message = format!("{e:#}");
            ctx.log(format!("Job failed: {message}")).await;
            fail_build(app, &job, &message).await;
            (JobStatus::Broken, json!({ "error-message": message }))
        }
    };
    app.state.finish_job(id, status, &results.to_string()).await
}

/// Runs a job in the background of this process, logging what could not be recorded.
fn spawn_job(app: &AppState, id: i64) {
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(e) = run_job(&app, id).await {
            tracing::error!(job_id = id, error = %e, "could not record the job's progress; it runs again at the next start");
        }
    });
}

async fn dispatch(ctx: &JobContext<'_>) -> anyhow::Result<Value> {
    match ctx.job.kind {
        JobKind::Commit => commit::run(ctx, serde_json::from_str(&ctx.job.contents)?).await,
        JobKind::Publish => publish::run(ctx, serde_json::from_str(&ctx.job.contents)?).await,
        JobKind::Prune => prune::run(ctx).await,
        JobKind::UpdateRepo => update_repo::run(ctx, serde_json::from_str(&ctx.job.contents)?).await,
        other => anyhow::bail!("{} jobs are not run by this server", other.as_str()),
    }
}

/// A failed commit fails the build; a failed publish fails its publication.
async fn fail_build(app: &AppState, job: &Job, reason: &str) {
    let Some(build) = serde_json::from_str::<Value>(&job.contents).ok().and_then(|c| c["build"].as_i64()) else {
        return;
    };
    let result = match job.kind {
        JobKind::Commit => {
            app.state.set_repo_state(build, &[RepoState::Committing], RepoState::Failed, Some(reason)).await.map(drop)
        }
        JobKind::Publish => app
            .state
            .set_published_state(build, &[PublishedState::Publishing], PublishedState::Failed, Some(reason))
            .await
            .map(drop),
        _ => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(build_id = build, error = %e, "could not record the build's failure");
    }
}
