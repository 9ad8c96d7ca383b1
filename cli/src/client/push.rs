//! `push`: uploads refs of a local archive repository into a build, registers them, and
//! optionally commits and publishes the build, in the order of flat-manager's clients (reference
//! §6.2–6.3).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use flatbucket::domain::build::Build;
use flatbucket::domain::token::Scope;
use flatbucket::repo::{Checksum, ObjectName};
use serde::Serialize;

use super::api::Api;
use super::args::CommitArgs;
use super::error::ClientError;
use super::local::{wants_delta, LocalRepo, ObjectSets};
use super::output::JobReport;
use super::progress::ProgressMode;
use super::steps::{commit_build, publish_build, PublishOutcome, PublishWait};
use super::upload::{DirectUploads, UploadItem, Uploader};
use super::urls::BuildUrl;
use super::wire::{CreateBuildRefRequest, TokenSubsetRequest};

/// Lifetime of the `--minimal-token` upload token.
const MINIMAL_TOKEN_SECS: i64 = 3600;

/// What `push` takes.
#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// The build's URL, as printed by create.
    pub build_url: String,
    /// The local archive-z2 repository to upload from.
    pub repo_path: PathBuf,
    /// Refs to push (default: every app/, runtime/ and screenshots/ ref of the repository).
    #[arg(value_name = "REF")]
    pub refs: Vec<String>,
    /// Commit the build after uploading.
    #[arg(long)]
    pub commit: bool,
    /// Commit and publish the build after uploading.
    #[arg(long)]
    pub publish: bool,
    /// Wait for the publish job.
    #[arg(long)]
    pub wait: bool,
    /// Wait for the publish job and the repository update it queues.
    #[arg(long)]
    pub wait_update: bool,
    /// Upload with a one-hour token limited to uploading into this build.
    #[arg(long)]
    pub minimal_token: bool,
    /// An extra collection-id suffix to publish the build under (repeatable).
    #[arg(long = "extra-id", value_name = "ID")]
    pub extra_ids: Vec<String>,
    /// Do not upload static deltas of apps and runtimes whose id matches GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub ignore_delta: Vec<String>,
    /// Upload every object without asking the server which ones it lacks.
    #[arg(long)]
    pub all_objects: bool,
    /// A link to the build log, stored with each ref.
    #[arg(long, value_name = "URL")]
    pub build_log_url: Option<String>,
    #[command(flatten)]
    pub commit_args: CommitArgs,
}

/// The result of `push`: the build as it ends up, with the jobs that ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushReport {
    #[serde(flatten)]
    pub build: Build,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_job: Option<JobReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_job: Option<PublishOutcome>,
}

/// Runs `push`.
pub async fn push(api: &Api, args: &PushArgs, progress: ProgressMode) -> Result<PushReport, ClientError> {
    let build = BuildUrl::parse(&args.build_url)?;
    let repo = LocalRepo::open(&args.repo_path)?;
    let refs = repo.select_refs(&args.refs).await?;
    if refs.is_empty() {
        return Err(ClientError::Usage(format!("No refs to push in {}", args.repo_path.display())));
    }
    eprintln!("Pushing {}", refs.keys().cloned().collect::<Vec<_>>().join(", "));
    let upload_api = upload_api(api, &build, args.minimal_token).await?;
    let direct = DirectUploads::default();
    let uploader = Uploader { api: &upload_api, build: &build, repo: &repo, progress, direct: &direct };
    upload_objects(&uploader, &refs, args.all_objects).await?;
    upload_deltas(&uploader, &refs, &args.ignore_delta).await?;
    register_refs(&upload_api, &build, &refs, args.build_log_url.as_deref()).await?;
    if !args.extra_ids.is_empty() {
        upload_api.add_extra_ids(&build, &args.extra_ids).await?;
    }
    let commit_job = match args.commit || args.publish {
        true => Some(commit_build(api, &build, &args.commit_args.request()).await?),
        false => None,
    };
    let publish_job = match args.publish {
        true => Some(publish_build(api, &build, PublishWait { publish: args.wait, update: args.wait_update }).await?),
        false => None,
    };
    let build = api.get_build(&build).await?;
    Ok(PushReport { build, commit_job, publish_job })
}

/// The API to upload with: with `--minimal-token`, a token limited to uploading into this build
/// for an hour, derived from the given one through `token_subset`.
async fn upload_api(api: &Api, build: &BuildUrl, minimal: bool) -> Result<Api, ClientError> {
    if !minimal {
        return Ok(api.clone());
    }
    let request = TokenSubsetRequest {
        name: "minimal-upload".into(),
        sub: build.subject(),
        scope: vec![Scope::Upload],
        duration: MINIMAL_TOKEN_SECS,
    };
    let token = api.token_subset(&build.manager(), &request).await?;
    Ok(api.with_token(&token))
}

/// Uploads the objects of `refs` the server lacks (all of them with `all_objects`): content
/// objects first, then the metadata naming them, then checks nothing went missing.
async fn upload_objects(
    uploader: &Uploader<'_>,
    refs: &BTreeMap<String, Checksum>,
    all_objects: bool,
) -> Result<(), ClientError> {
    let sets = uploader.repo.enumerate(refs.values().copied()).await?;
    let (metadata, files) = (names(sets.metadata.keys()), names(&sets.files));
    eprintln!("Found {} metadata objects and {} files", metadata.len(), files.len());
    let (metadata, files) = match all_objects {
        true => (metadata, files),
        false => tokio::try_join!(uploader.missing(&metadata), uploader.missing(&files))?,
    };
    let (metadata, files) = (to_items(uploader.repo, &sets, &metadata), to_items(uploader.repo, &sets, &files));
    let (metadata, files) = tokio::try_join!(metadata, files)?;
    let bytes: u64 = metadata.iter().chain(&files).map(|item| item.size).sum();
    eprintln!("Uploading {} metadata objects and {} files ({bytes} bytes)", metadata.len(), files.len());
    uploader.upload_verified(&files, &metadata).await
}

fn names<'a>(objects: impl IntoIterator<Item = &'a ObjectName>) -> Vec<String> {
    objects.into_iter().map(ObjectName::to_string).collect()
}

/// Upload items for the names the server reported missing; names that are not ours are ignored.
async fn to_items(repo: &LocalRepo, sets: &ObjectSets, missing: &[String]) -> Result<Vec<UploadItem>, ClientError> {
    let ours: HashMap<String, ObjectName> =
        sets.metadata.keys().chain(&sets.files).map(|name| (name.to_string(), *name)).collect();
    let unknown = missing.iter().filter(|name| !ours.contains_key(*name)).count();
    if unknown > 0 {
        tracing::warn!(unknown, "the server asked for objects that were not offered");
    }
    repo.object_items(missing.iter().filter_map(|name| ours.get(name).copied())).await
}

/// Uploads the from-scratch static delta of every app and runtime ref that has one locally.
async fn upload_deltas(
    uploader: &Uploader<'_>,
    refs: &BTreeMap<String, Checksum>,
    ignore: &[String],
) -> Result<(), ClientError> {
    let mut parts = Vec::new();
    for (name, commit) in refs.iter().filter(|(name, _)| wants_delta(name, ignore)) {
        let items = uploader.repo.delta_items(commit).await?;
        if !items.is_empty() {
            tracing::info!(ref_name = %name, parts = items.len(), "uploading static delta");
        }
        parts.extend(items);
    }
    if !parts.is_empty() {
        eprintln!("Uploading {} static delta part(s)", parts.len());
    }
    uploader.upload("deltas", &[&parts]).await
}

/// Registers each ref with the commit just uploaded for it.
async fn register_refs(
    api: &Api,
    build: &BuildUrl,
    refs: &BTreeMap<String, Checksum>,
    build_log_url: Option<&str>,
) -> Result<(), ClientError> {
    for (name, commit) in refs {
        let request = CreateBuildRefRequest {
            ref_name: name.clone(),
            commit: commit.to_hex(),
            build_log_url: build_log_url.map(str::to_owned),
        };
        api.create_build_ref(build, &request).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use flatbucket::domain::build::{PublishedState, RepoState};
    use flatbucket::domain::job::{Job, JobKind, JobStatus};
    use serde_json::json;

    use super::*;
    use crate::client::wire::Empty;

    fn build() -> Build {
        serde_json::from_value(json!({"id": 7, "created": "2026-01-01T00:00:00", "repo_state": 2,
            "published_state": 2, "repo": "stable", "extra_ids": [], "app_id": null, "public_download": true,
            "build_log_url": null, "token_name": "default", "token_type": "app"}))
        .unwrap()
    }

    fn job(kind: JobKind) -> Job {
        Job {
            id: 3,
            kind,
            status: JobStatus::Ended,
            contents: "{}".into(),
            results: Some("{}".into()),
            log: String::new(),
            start_after: None,
            repo: None,
        }
    }

    #[test]
    fn the_report_is_the_build_decorated_with_its_jobs() {
        let mut publish = JobReport::new(job(JobKind::Publish), Some("http://h/api/v1/build/7/publish".into()));
        publish.update_job = Some(Box::new(JobReport::new(job(JobKind::UpdateRepo), None)));
        let report = PushReport {
            build: build(),
            commit_job: Some(JobReport::new(job(JobKind::Commit), Some("http://h/api/v1/build/7/commit".into()))),
            publish_job: Some(PublishOutcome::Job(Box::new(publish))),
        };
        let value = serde_json::to_value(&report).unwrap();
        assert_eq!((value["id"].as_i64(), value["repo_state"].as_i64()), (Some(7), Some(RepoState::Ready as i64)));
        assert_eq!(value["published_state"], PublishedState::Published as i64);
        assert_eq!(value["commit_job"]["location"], "http://h/api/v1/build/7/commit");
        assert_eq!(value["publish_job"]["update_job"]["kind"], 2);
        assert_eq!(value["publish_job"]["results"], json!({}));
    }

    #[test]
    fn a_plain_push_reports_only_the_build() {
        let report = PushReport { build: build(), commit_job: None, publish_job: None };
        let value = serde_json::to_value(&report).unwrap();
        assert!(value.get("commit_job").is_none() && value.get("publish_job").is_none());
        let skipped = PushReport { publish_job: Some(PublishOutcome::AlreadyHandled(Empty {})), ..report };
        assert_eq!(serde_json::to_value(&skipped).unwrap()["publish_job"], json!({}));
    }
}
