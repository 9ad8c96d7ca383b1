//! Build routes: create, list, read, extended, build refs, extra ids, purge.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::auth::Token;
use super::body::{read_json, JSON_LIMIT};
use super::error::ApiError;
use super::location::with_location;
use crate::app::AppState;
use crate::domain::build::{Build, NewBuild, RepoState};
use crate::domain::token::Scope;
use crate::repo::refs::{validate_app_id, FlatpakRef};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CreateBuild {
    repo: String,
    app_id: Option<String>,
    public_download: Option<bool>,
    build_log_url: Option<String>,
}

pub async fn create(
    State(app): State<AppState>,
    token: Token,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: CreateBuild = read_json(&headers, body, JSON_LIMIT).await?;
    token.require_sub("build")?;
    token.require_scope(&[Scope::Build])?;
    token.require_repo(&request.repo)?;
    if let Some(app_id) = &request.app_id {
        token.require_prefix(app_id)?;
        validate_app_id(app_id).map_err(|why| ApiError::bad_request(format!("Invalid app id {app_id}: {why}")))?;
    }
    if app.repo(&request.repo).is_none() {
        return Err(ApiError::bad_request("No such repo"));
    }
    let new = NewBuild {
        public_download: request.public_download.unwrap_or(request.app_id.is_none()),
        repo: request.repo,
        app_id: request.app_id,
        build_log_url: request.build_log_url,
        token_name: Some(token.0.name.clone().unwrap_or_else(|| "-".into())),
        token_type: token.0.token_type.clone(),
    };
    let build = app.state.create_build(new).await?;
    tracing::info!(build_id = build.id, repo = %build.repo, "created build");
    let path = format!("/api/v1/build/{}", build.id);
    Ok(with_location(&headers, &app, &path, Json(build)))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "app-id")]
    app_id: Option<String>,
}

pub async fn list(
    State(app): State<AppState>,
    token: Token,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Build>>, ApiError> {
    token.require_sub("build")?;
    token.require_scope(&[Scope::Build, Scope::Download])?;
    if let Some(app_id) = &query.app_id {
        token.require_prefix(app_id)?;
    }
    Ok(Json(app.state.list_builds(query.app_id.as_deref()).await?))
}

/// Loads a build and checks the token may use it with one of `scopes`.
pub async fn authorized_build(app: &AppState, token: &Token, id: i64, scopes: &[Scope]) -> Result<Build, ApiError> {
    let build = app.state.get_build(id).await?;
    token.require_build(&build, scopes)?;
    Ok(build)
}

pub async fn get(State(app): State<AppState>, token: Token, Path(id): Path<i64>) -> Result<Json<Build>, ApiError> {
    Ok(Json(authorized_build(&app, &token, id, &[Scope::Build, Scope::Upload]).await?))
}

pub async fn extended(State(app): State<AppState>, token: Token, Path(id): Path<i64>) -> Result<Response, ApiError> {
    let build = authorized_build(&app, &token, id, &[Scope::Build, Scope::Upload]).await?;
    let refs = app.state.list_build_refs(id).await?;
    Ok(Json(json!({ "build": build, "build_refs": refs, "checks": [] })).into_response())
}

#[derive(Debug, Deserialize)]
struct NewBuildRef {
    #[serde(rename = "ref")]
    ref_name: String,
    commit: String,
    #[serde(rename = "build-log-url")]
    build_log_url: Option<String>,
}

pub async fn create_ref(
    State(app): State<AppState>,
    token: Token,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: NewBuildRef = read_json(&headers, body, JSON_LIMIT).await?;
    let build = authorized_build(&app, &token, id, &[Scope::Upload]).await?;
    check_ref_allowed(&app, &token, &build, &request.ref_name).await?;
    crate::repo::Checksum::from_hex(&request.commit)
        .map_err(|_| ApiError::bad_request(format!("Invalid commit {}", request.commit)))?;
    let row =
        app.state.upsert_build_ref(id, &request.ref_name, &request.commit, request.build_log_url.as_deref()).await?;
    let path = format!("/api/v1/build/{id}/build_ref/{}", row.id);
    Ok(with_location(&headers, &app, &path, Json(row)))
}

/// `app/…` and `runtime/…` refs need the token's prefix to allow their id; `screenshots/<arch>`
/// needs it to allow the build's app (or the one app ref of that arch registered so far).
async fn check_ref_allowed(app: &AppState, token: &Token, build: &Build, name: &str) -> Result<(), ApiError> {
    let invalid = || ApiError::bad_request(format!("Invalid ref_name {name}"));
    if let Ok(flatpak_ref) = name.parse::<FlatpakRef>() {
        return token.require_prefix(&flatpak_ref.id);
    }
    let arch = match name.split('/').collect::<Vec<_>>()[..] {
        ["screenshots", arch] if !arch.is_empty() && arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            arch
        }
        _ => return Err(invalid()),
    };
    if let Some(app_id) = &build.app_id {
        return match token.0.prefix_allows(app_id) {
            true => Ok(()),
            false => Err(ApiError::forbidden(
                "Screenshot refs require a build app_id or matching app ref for app-scoped tokens",
            )),
        };
    }
    let refs = app.state.list_build_refs(build.id).await?;
    let ids: Vec<String> = refs
        .iter()
        .filter_map(|r| r.ref_name.parse::<FlatpakRef>().ok())
        .filter(|r| r.kind == crate::repo::refs::RefKind::App && r.arch == arch)
        .map(|r| r.id)
        .collect();
    match &ids[..] {
        [] if token.0.prefixes.is_empty() || token.0.prefixes.iter().any(String::is_empty) => Ok(()),
        [] => {
            Err(ApiError::forbidden("Screenshot refs require a build app_id or matching app ref for app-scoped tokens"))
        }
        [id] => token.require_prefix(id),
        _ => Err(ApiError::forbidden("Screenshot ref matches multiple app IDs")),
    }
}

pub async fn get_ref(
    State(app): State<AppState>,
    token: Token,
    Path((id, ref_id)): Path<(i64, i64)>,
) -> Result<Response, ApiError> {
    authorized_build(&app, &token, id, &[Scope::Build]).await?;
    Ok(Json(app.state.get_build_ref(id, ref_id).await?).into_response())
}

#[derive(Debug, Deserialize)]
struct ExtraIds {
    ids: Vec<String>,
}

pub async fn add_extra_ids(
    State(app): State<AppState>,
    token: Token,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: ExtraIds = read_json(&headers, body, JSON_LIMIT).await?;
    authorized_build(&app, &token, id, &[Scope::Upload]).await?;
    for extra in &request.ids {
        let valid =
            extra.split('.').all(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !valid {
            return Err(ApiError::bad_request(format!("Invalid extra id {extra}")));
        }
    }
    let build = app.state.add_extra_ids(id, &request.ids).await?;
    Ok(with_location(&headers, &app, &format!("/api/v1/build/{id}"), Json(build)))
}

pub async fn purge(
    State(app): State<AppState>,
    token: Token,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let build = authorized_build(&app, &token, id, &[Scope::Build]).await?;
    if !build.can_purge() {
        return Err(ApiError::bad_request("Can't prune build while in use"));
    }
    let from = [RepoState::Uploading, RepoState::Ready, RepoState::Failed, RepoState::Purged];
    app.state.set_repo_state(id, &from, RepoState::Purging, None).await?;
    let build = match app.delete_build_files(id).await {
        Ok(()) => app.state.set_repo_state(id, &[RepoState::Purging], RepoState::Purged, None).await?,
        Err(e) => {
            let reason = format!("Failed to Purge build: {e}");
            app.state.set_repo_state(id, &[RepoState::Purging], RepoState::Failed, Some(&reason)).await?
        }
    };
    tracing::info!(build_id = id, "purged build");
    Ok(with_location(&headers, &app, &format!("/api/v1/build/{id}"), Json(build)))
}
