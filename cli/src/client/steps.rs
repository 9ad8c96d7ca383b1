//! The build steps `push` shares with the `commit` and `publish` sub-commands: committing and
//! waiting for the commit job and any check hooks, publishing and following the publish and
//! update-repo jobs (reference §6.2 steps 11–12).

use flatbucket::domain::build::RepoState;
use serde::Serialize;

use super::api::Api;
use super::error::ClientError;
use super::follow::follow_job;
use super::output::JobReport;
use super::urls::BuildUrl;
use super::wire::{Check, CommitRequest, Empty};

/// Publish answers with these `current-state`s mean someone already did (or is doing) the work.
const ALREADY_PUBLISHING: [&str; 3] = ["published", "publishing", "validating"];

/// How far to follow a publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishWait {
    /// Follow the publish job.
    pub publish: bool,
    /// Follow the publish job and the update-repo job it queued.
    pub update: bool,
}

/// What a publish request led to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PublishOutcome {
    Job(Box<JobReport>),
    /// The build was already published, publishing or validating: shown as `{}`.
    AlreadyHandled(Empty),
}

/// Starts the commit job, follows it to its end, then waits for the build's check hooks.
pub async fn commit_build(api: &Api, build: &BuildUrl, request: &CommitRequest) -> Result<JobReport, ClientError> {
    let url = match api.commit(build, request).await {
        Ok(reply) => reply.location.unwrap_or_else(|| build.join("commit")),
        Err(error) if is_in_state(&error, "committing") => running_job(build, "commit"),
        Err(error) => return Err(error),
    };
    let report = follow_job(api, &url).await?;
    wait_for_checks(api, build).await?;
    Ok(report)
}

/// Follows every check job of a validating build; a failed check fails the command. A server
/// without the `extended` route (404) has no checks.
async fn wait_for_checks(api: &Api, build: &BuildUrl) -> Result<(), ClientError> {
    let extended = match api.build_extended(build).await {
        Ok(extended) => extended,
        Err(error) if error.status() == Some(404) => return Ok(()),
        Err(error) => return Err(error),
    };
    if extended.build.repo_state != RepoState::Validating && extended.checks.is_empty() {
        return Ok(());
    }
    for check in &extended.checks {
        eprintln!("Waiting for check {}", check.check_name);
        follow_job(api, &build.join(&format!("check/{}/job", check.check_name))).await?;
    }
    let checks = api.build_extended(build).await?.checks;
    match checks.into_iter().find(|check| check.status == Check::FAILED) {
        Some(failed) => Err(ClientError::CheckFailed(Box::new(failed))),
        None => Ok(()),
    }
}

/// Starts the publish job and follows it as far as `wait` says.
pub async fn publish_build(api: &Api, build: &BuildUrl, wait: PublishWait) -> Result<PublishOutcome, ClientError> {
    let waiting = wait.publish || wait.update;
    let mut report = match api.publish(build).await {
        Ok(reply) => {
            let url = reply.location.unwrap_or_else(|| build.join("publish"));
            if waiting {
                follow_job(api, &url).await?
            } else {
                JobReport::new(reply.body, Some(url))
            }
        }
        Err(error) if waiting && is_in_state(&error, "publishing") => {
            follow_job(api, &running_job(build, "publish")).await?
        }
        Err(error) => return already_handled(error).map(PublishOutcome::AlreadyHandled),
    };
    if let Some(id) = report.update_repo_job() {
        report.update_job = update_job(api, &build.manager().job(id), wait.update).await?.map(Box::new);
    }
    Ok(PublishOutcome::Job(Box::new(report)))
}

/// A 400 wrong-state answer saying the build is in `state`: when a retried request's first attempt
/// reached the server (or someone else started the same job), the job to follow already exists.
fn is_in_state(error: &ClientError, state: &str) -> bool {
    error.status() == Some(400) && error.api_details().and_then(|d| d.current_state.as_deref()) == Some(state)
}

/// The build's running commit or publish job, followed instead of starting another.
fn running_job(build: &BuildUrl, which: &str) -> String {
    eprintln!("The build's {which} job is already running; following it");
    build.join(which)
}

/// A 400 saying the build is already published, publishing or validating is success.
fn already_handled(error: ClientError) -> Result<Empty, ClientError> {
    let state = error.api_details().and_then(|d| d.current_state.clone());
    match state.as_deref() {
        Some(state) if error.status() == Some(400) && ALREADY_PUBLISHING.contains(&state) => {
            eprintln!("Build is already {state}, not publishing it again");
            Ok(Empty {})
        }
        _ => Err(error),
    }
}

/// The update-repo job: followed with `--wait-update`, otherwise read once. Reading it is only
/// informative, so failing to read it is a warning.
async fn update_job(api: &Api, url: &str, follow: bool) -> Result<Option<JobReport>, ClientError> {
    if follow {
        return follow_job(api, url).await.map(Some);
    }
    match api.get_job(url, 0).await {
        Ok(job) => Ok(Some(JobReport::new(job, Some(url.to_owned())))),
        Err(error) => {
            tracing::warn!(%error, "cannot read the update-repo job");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::wire::ApiErrorBody;

    fn wrong_state(status: u16, current: &str) -> ClientError {
        let details = ApiErrorBody {
            status: Some(status),
            error_type: Some("wrong-published-state".into()),
            message: "Build is currently being published".into(),
            current_state: Some(current.into()),
            expected_state: Some("unpublished".into()),
        };
        ClientError::Api { url: "http://h/api/v1/build/1/publish".into(), status, details: Box::new(details) }
    }

    #[test]
    fn publishing_an_already_published_or_validating_build_succeeds() {
        for state in ALREADY_PUBLISHING {
            assert!(already_handled(wrong_state(400, state)).is_ok(), "{state}");
        }
        let outcome = PublishOutcome::AlreadyHandled(Empty {});
        assert_eq!(serde_json::to_value(outcome).unwrap(), serde_json::json!({}));
    }

    #[test]
    fn a_failed_or_uncommitted_build_is_still_an_error() {
        for state in ["failed", "uploading", "committing"] {
            assert!(already_handled(wrong_state(400, state)).is_err(), "{state}");
        }
        assert!(already_handled(wrong_state(500, "published")).is_err());
    }

    #[test]
    fn a_job_already_running_is_followed_not_refused() {
        assert!(is_in_state(&wrong_state(400, "committing"), "committing"));
        assert!(is_in_state(&wrong_state(400, "publishing"), "publishing"));
        assert!(!is_in_state(&wrong_state(400, "failed"), "committing"));
        assert!(!is_in_state(&wrong_state(500, "committing"), "committing"));
    }
}
