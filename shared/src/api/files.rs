//! Static file serving: `/repo/<name>/…` from a repository and `/build-repo/<id>/…` from a build's
//! repository falling back to its target repository, so a build installs before it is published.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio_util::io::ReaderStream;

use super::auth::verified_claims;
use super::error::ApiError;
use crate::app::{AppState, Repo};
use crate::domain::build::Build;
use crate::domain::token::Scope;
use crate::repo::commit::Commit;
use crate::repo::layout::cache_control;
use crate::repo::refs::FlatpakRef;
use crate::repo::walk::MAX_METADATA_SIZE;
use crate::store::{read_limited, ObjectStore, StoreError};

/// `GET`/`HEAD /repo/<repo name>/<path>`.
pub async fn repo_file(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(tail): Path<String>,
) -> Result<Response, ApiError> {
    let Some(path) = sanitize(&tail) else { return Ok(invalid_path()) };
    let repo = find_repo(&app, &path).ok_or_else(|| ApiError::bad_request("No such repo"))?;
    let key = path[repo.name.len()..].trim_start_matches('/');
    let mut response = serve(&*repo.store, key, &method).await?;
    if is_protected(repo, key).await? {
        check_download_token(&app, &headers, repo, key).await?;
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

/// `GET`/`HEAD /build-repo/<id>/<path>`: public builds for anyone, others with a download token.
pub async fn build_file(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path((id, tail)): Path<(i64, String)>,
) -> Result<Response, ApiError> {
    let Some(path) = sanitize(&tail) else { return Ok(invalid_path()) };
    let build = app.state.get_build(id).await?;
    if !build.public_download {
        check_build_token(&app, &headers, &build).await?;
    }
    if path == "upload" || path.starts_with("upload/") {
        return Err(ApiError::NotFound);
    }
    let repo = app.repo(&build.repo).ok_or(ApiError::NotFound)?;
    serve(&*app.build_view(id, repo), &path, &method).await
}

/// Normalises a request path: empty segments dropped, `..` pops (never above the root), hidden
/// or special segments refused (`None`).
fn sanitize(tail: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for segment in tail.split('/').filter(|s| !s.is_empty()) {
        if segment == ".." {
            parts.pop()?;
        } else if segment.starts_with(['.', '*']) || segment.ends_with([':', '<', '>']) || segment.contains('\\') {
            return None;
        } else {
            parts.push(segment);
        }
    }
    Some(parts.join("/"))
}

/// flat-manager answers a refused path in plain text, like other framework-level errors.
fn invalid_path() -> Response {
    (StatusCode::BAD_REQUEST, "Invalid path").into_response()
}

/// The configured repository whose name is a leading path-component prefix of `path`.
fn find_repo<'a>(app: &'a AppState, path: &str) -> Option<&'a Repo> {
    app.repos.values().find(|r| path == r.name || path.strip_prefix(&r.name).is_some_and(|rest| rest.starts_with('/')))
}

/// Streams `key` with its length and caching headers; a directory or missing file is a 404.
async fn serve(store: &dyn ObjectStore, key: &str, method: &Method) -> Result<Response, ApiError> {
    let size = store.head(key).await?.ok_or(ApiError::NotFound)?;
    let body = match *method {
        Method::HEAD => Body::empty(),
        _ => match store.get(key).await {
            Ok(reader) => Body::from_stream(ReaderStream::with_capacity(reader, 256 * 1024)),
            Err(StoreError::NotFound(_)) => return Err(ApiError::NotFound),
            Err(e) => return Err(e.into()),
        },
    };
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (header::CONTENT_LENGTH, size.to_string()),
        (header::CACHE_CONTROL, cache_control(key).to_owned()),
    ];
    Ok((headers, body).into_response())
}

/// A commit whose token type the repository restricts needs a download token.
async fn is_protected(repo: &Repo, key: &str) -> Result<bool, ApiError> {
    let restricted = &repo.config.require_auth_for_token_types;
    if restricted.is_empty() || !(key.starts_with("objects/") && key.ends_with(".commit")) {
        return Ok(false);
    }
    let commit = load_commit(&*repo.store, key).await?;
    let token_type = commit.metadata.get_le_i32("xa.token-type").unwrap_or(repo.config.default_token_type);
    Ok(restricted.contains(&token_type))
}

async fn load_commit(store: &dyn ObjectStore, key: &str) -> Result<Commit, ApiError> {
    let bytes = read_limited(store, key, MAX_METADATA_SIZE).await?;
    Commit::parse(&bytes).map_err(|e| ApiError::Internal(format!("{key}: {e}")))
}

/// flat-manager's rule for protected commits: a token signed with the repo secret whose prefixes
/// allow one of the app or runtime refs the commit is bound to.
async fn check_download_token(app: &AppState, headers: &HeaderMap, repo: &Repo, key: &str) -> Result<(), ApiError> {
    if headers.get(header::AUTHORIZATION).is_none() {
        return Err(ApiError::forbidden("No token specified"));
    }
    let claims = verified_claims(app, headers, app.repo_secret()).await?;
    let commit = load_commit(&*repo.store, key).await?;
    let bound = commit
        .metadata
        .get_str_list("ostree.ref-binding")
        .ok_or_else(|| ApiError::Internal(format!("{key} has no ref binding")))?;
    let allowed = bound.iter().filter_map(|r| r.parse::<FlatpakRef>().ok()).any(|r| claims.prefix_allows(&r.id));
    match allowed {
        true => Ok(()),
        false => Err(ApiError::forbidden("No matching ref in token")),
    }
}

/// A private build's files need a download token for that build.
async fn check_build_token(app: &AppState, headers: &HeaderMap, build: &Build) -> Result<(), ApiError> {
    let claims = verified_claims(app, headers, app.secret()).await?;
    super::auth::Token(claims).require_build(build, &[Scope::Download])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_like_flat_manager() {
        assert_eq!(sanitize("stable//objects/ab/../cd/x.filez").unwrap(), "stable/objects/cd/x.filez");
        for bad in ["../etc/passwd", "stable/../../x", "stable/.flatbucket-tmp/1", "stable/*", "stable/c:", "a\\b"] {
            assert!(sanitize(bad).is_none(), "{bad}");
        }
    }
}
