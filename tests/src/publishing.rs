//! Builds through the commit and publish jobs, run in process on an [`AppState`], as the worker
//! runs them: what a client's upload, commit and publish amount to, without HTTP.

use std::sync::Arc;

use anyhow::ensure;
use flatbucket::app::AppState;
use flatbucket::domain::build::NewBuild;
use flatbucket::domain::job::{CommitContents, JobStatus, PublishContents};
use flatbucket::jobs::run_job;
use flatbucket::repo::local::resolve_ref;
use flatbucket::repo::publish::copy_objects;
use flatbucket::repo::walk::walk_closure;
use flatbucket::repo::{Checksum, ObjectName};
use flatbucket::store::ObjectStore;
use serde_json::Value;

/// Creates a build of `app_id` in `repo`, uploads every object of `refs` from `source` and
/// registers the refs, as a client does; returns the build id.
pub async fn upload(
    app: &AppState,
    repo: &str,
    app_id: &str,
    source: &Arc<dyn ObjectStore>,
    refs: &[(String, Checksum)],
) -> anyhow::Result<i64> {
    let new = NewBuild {
        repo: repo.to_owned(),
        app_id: Some(app_id.to_owned()),
        public_download: true,
        build_log_url: None,
        token_name: None,
        token_type: None,
    };
    let build = app.state.create_build(new).await?.id;
    for (name, commit) in refs {
        let names: Vec<ObjectName> = walk_closure(&**source, *commit).await?.object_names().collect();
        copy_objects(&**source, &*app.upload_store(build), &names).await?;
        app.state.upsert_build_ref(build, name, &commit.to_hex(), None).await?;
    }
    Ok(build)
}

/// `names` with the commits they point at in `source`: the refs a build registers.
pub async fn resolve_refs(source: &dyn ObjectStore, names: &[&str]) -> anyhow::Result<Vec<(String, Checksum)>> {
    let mut refs = Vec::new();
    for name in names {
        refs.push((name.to_string(), resolve_ref(source, name).await?));
    }
    Ok(refs)
}

/// Runs job `job`, which must end well, and returns its results.
pub async fn run_to_end(app: &AppState, job: i64) -> anyhow::Result<Value> {
    run_job(app, job).await?;
    let job = app.state.get_job(job).await?;
    ensure!(job.status == JobStatus::Ended, "job {} ended {:?}: {}", job.id, job.status, job.log);
    Ok(serde_json::from_str(job.results.as_deref().unwrap_or("null"))?)
}

/// Uploads `refs`, commits and publishes them into `repo`; returns the publish job's results.
pub async fn publish(
    app: &AppState,
    repo: &str,
    app_id: &str,
    source: &Arc<dyn ObjectStore>,
    refs: &[(String, Checksum)],
) -> anyhow::Result<Value> {
    let build = upload(app, repo, app_id, source, refs).await?;
    let commit = CommitContents { build, endoflife: None, endoflife_rebase: None, token_type: None };
    run_to_end(app, app.state.start_commit(&commit).await?.id).await?;
    run_to_end(app, app.state.start_publish(&PublishContents { build }).await?.id).await
}
