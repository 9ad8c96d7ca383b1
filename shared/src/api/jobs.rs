//! Job routes: start a commit or publish, and read jobs (with the log from a byte offset).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;

use super::auth::Token;
use super::body::{read_json, JSON_LIMIT};
use super::builds::authorized_build;
use super::error::ApiError;
use super::location::with_location;
use crate::app::AppState;
use crate::domain::job::{CommitContents, Job, JobKind, PublishContents};
use crate::domain::token::Scope;

#[derive(Debug, Default, Deserialize)]
struct CommitRequest {
    endoflife: Option<String>,
    endoflife_rebase: Option<String>,
    token_type: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
struct LogOffset {
    #[serde(rename = "log-offset", default)]
    log_offset: usize,
}

pub async fn start_commit(
    State(app): State<AppState>,
    token: Token,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: CommitRequest = read_json(&headers, body, JSON_LIMIT).await?;
    authorized_build(&app, &token, id, &[Scope::Build]).await?;
    if let Some(new_id) = &request.endoflife_rebase {
        crate::repo::refs::validate_app_id(new_id)
            .map_err(|why| ApiError::bad_request(format!("Invalid end-of-life rebase id {new_id}: {why}")))?;
    }
    let contents = CommitContents {
        build: id,
        endoflife: request.endoflife,
        endoflife_rebase: request.endoflife_rebase,
        token_type: request.token_type,
    };
    let job = app.state.start_commit(&contents).await?;
    enqueue(&app, &job).await;
    tracing::info!(build_id = id, job_id = job.id, "queued commit");
    Ok(with_location(&headers, &app, &format!("/api/v1/build/{id}/commit"), Json(job)))
}

pub async fn start_publish(
    State(app): State<AppState>,
    token: Token,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let _: serde_json::Value = read_json(&headers, body, JSON_LIMIT).await?;
    authorized_build(&app, &token, id, &[Scope::Publish]).await?;
    let job = app.state.start_publish(&PublishContents { build: id }).await?;
    enqueue(&app, &job).await;
    tracing::info!(build_id = id, job_id = job.id, "queued publish");
    Ok(with_location(&headers, &app, &format!("/api/v1/build/{id}/publish"), Json(job)))
}

#[derive(Debug, Deserialize)]
struct PruneRequest {
    repo: String,
}

/// `POST /api/v1/prune`: queues a prune of a repository (token management scope).
pub async fn start_prune(
    State(app): State<AppState>,
    token: Token,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Job>, ApiError> {
    let request: PruneRequest = read_json(&headers, body, JSON_LIMIT).await?;
    token.require_scope(&[Scope::Tokenmanagement])?;
    if app.repo(&request.repo).is_none() {
        return Err(ApiError::bad_request("No such repo"));
    }
    let job = app.state.create_job(JobKind::Prune, "{}", Some(&request.repo)).await?;
    enqueue(&app, &job).await;
    tracing::info!(repo = %request.repo, job_id = job.id, "queued prune");
    Ok(Json(job))
}

/// The queue only wakes the worker: a job it loses is recovered from the state store at start-up.
async fn enqueue(app: &AppState, job: &Job) {
    if let Err(e) = app.enqueue(job).await {
        tracing::error!(job_id = job.id, error = %e, "could not wake the worker; the job runs at the next start");
    }
}

pub async fn commit_job(
    State(app): State<AppState>,
    token: Token,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Job>, ApiError> {
    let build = authorized_build(&app, &token, id, &[Scope::Build]).await?;
    job_with_log(&app, build.commit_job_id, &headers, body).await
}

pub async fn publish_job(
    State(app): State<AppState>,
    token: Token,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Job>, ApiError> {
    let build = authorized_build(&app, &token, id, &[Scope::Build]).await?;
    job_with_log(&app, build.publish_job_id, &headers, body).await
}

pub async fn job(
    State(app): State<AppState>,
    token: Token,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Job>, ApiError> {
    token.require_sub("build")?;
    token.require_scope(&[Scope::Jobs])?;
    job_with_log(&app, Some(id), &headers, body).await
}

async fn job_with_log(app: &AppState, id: Option<i64>, headers: &HeaderMap, body: Body) -> Result<Json<Job>, ApiError> {
    let offset: LogOffset = read_json(headers, body, JSON_LIMIT).await?;
    let mut job = app.state.get_job(id.ok_or(ApiError::NotFound)?).await?;
    job.log = job.log_from(offset.log_offset).to_owned();
    Ok(Json(job))
}
