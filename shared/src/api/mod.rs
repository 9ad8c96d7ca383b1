//! The flat-manager v1 HTTP API as one axum Router, served by the local server, by the Lambda
//! functions and by `tower::ServiceExt::oneshot` in tests.

mod auth;
mod body;
mod builds;
pub mod error;
mod files;
mod jobs;
mod location;
mod presign;
mod tokens;
mod upload;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::app::AppState;

/// Largest upload request accepted (multipart bodies stream to disk part by part).
const UPLOAD_LIMIT: usize = 4 * 1024 * 1024 * 1024;

/// Every route of the API and the static file trees.
pub fn router(app: AppState) -> Router {
    let api = Router::new()
        .route("/build", post(builds::create).get(builds::list))
        .route("/build/{id}", get(builds::get))
        .route("/build/{id}/extended", get(builds::extended))
        .route("/build/{id}/build_ref", post(builds::create_ref))
        .route("/build/{id}/build_ref/{ref_id}", get(builds::get_ref))
        .route("/build/{id}/missing_objects", get(upload::missing_objects).post(upload::missing_objects))
        .route("/build/{id}/add_extra_ids", post(builds::add_extra_ids))
        .route("/build/{id}/upload", post(upload::upload).layer(DefaultBodyLimit::max(UPLOAD_LIMIT)))
        .route("/build/{id}/upload_urls", post(presign::upload_urls))
        .route("/build/{id}/commit", post(jobs::start_commit).get(jobs::commit_job))
        .route("/build/{id}/publish", post(jobs::start_publish).get(jobs::publish_job))
        .route("/build/{id}/purge", post(builds::purge))
        .route("/job/{id}", get(jobs::job))
        .route("/prune", post(jobs::start_prune))
        .route("/token_subset", post(tokens::subset))
        .route("/tokens/get_list", post(tokens::get_list))
        .route("/tokens/revoke", post(tokens::revoke));
    Router::new()
        .nest("/api/v1", api)
        .route("/repo/{*path}", get(files::repo_file).head(files::repo_file))
        .route("/build-repo/{id}/{*path}", get(files::build_file).head(files::build_file))
        .layer(middleware::from_fn_with_state(app.clone(), body::limit_request_body))
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}
