//! `upload_urls`, flatbucket's extension of the upload API: presigned PUTs straight into a build's
//! upload area, so large objects go from the client to the staging bucket without passing through
//! the API (whose requests a Lambda deployment caps at its payload limit). A name missing from the
//! answer is to be sent by multipart; a store that cannot presign (local directories) answers none.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Token;
use super::body::{read_json, JSON_LIMIT};
use super::builds::authorized_build;
use super::error::ApiError;
use super::upload::upload_path;
use crate::app::AppState;
use crate::domain::token::Scope;
use crate::store::PresignedPut;

/// Objects per request: presigning is local work, but the answer (about 1 KiB per URL) must stay
/// far below Lambda's 6 MB response limit.
pub const MAX_OBJECTS: usize = 1000;
/// How long an issued URL stays usable: enough to send a large object on a slow line, short enough
/// that a leaked URL soon stops working. (URLs signed with a Lambda role's session credentials end
/// with the session, possibly sooner.)
pub const URL_LIFETIME: Duration = Duration::from_secs(3600);
/// S3's largest single PUT.
const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

#[derive(Debug, Deserialize)]
pub struct UploadUrlsRequest {
    objects: Vec<DeclaredObject>,
}

/// An object the client means to send: its upload filename (as in a multipart upload) and size.
#[derive(Debug, Deserialize)]
struct DeclaredObject {
    name: String,
    size: u64,
}

#[derive(Debug, Serialize)]
pub struct UploadUrls {
    urls: BTreeMap<String, DirectUpload>,
}

/// How to send one object: `method` to `url` with exactly `headers`.
#[derive(Debug, Serialize)]
struct DirectUpload {
    url: String,
    method: &'static str,
    headers: BTreeMap<String, String>,
}

impl From<PresignedPut> for DirectUpload {
    fn from(put: PresignedPut) -> Self {
        Self { url: put.url, method: "PUT", headers: put.headers }
    }
}

/// `POST /api/v1/build/{id}/upload_urls`: a presigned PUT of each declared object into the
/// build's upload area, for exactly its declared size.
pub async fn upload_urls(
    State(app): State<AppState>,
    token: Token,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UploadUrls>, ApiError> {
    let request: UploadUrlsRequest = read_json(&headers, body, JSON_LIMIT).await?;
    let build = authorized_build(&app, &token, id, &[Scope::Upload]).await?;
    build.check_uploading().map_err(ApiError::WrongState)?;
    if request.objects.len() > MAX_OBJECTS {
        return Err(ApiError::bad_request(format!("At most {MAX_OBJECTS} objects per upload_urls request")));
    }
    let keys = request.objects.iter().map(declared_key).collect::<Result<Vec<_>, _>>()?;
    let store = app.upload_store(id);
    let (mut urls, mut bytes) = (BTreeMap::new(), 0);
    for (object, key) in request.objects.into_iter().zip(keys) {
        let Some(put) = store.presign_put(&key, object.size, URL_LIFETIME).await? else {
            break;
        };
        bytes += object.size;
        urls.insert(object.name, put.into());
    }
    tracing::info!(build_id = id, objects = urls.len(), bytes, "issued presigned upload URLs");
    Ok(Json(UploadUrls { urls }))
}

/// The object's key in the upload area, named as a multipart upload would name it.
fn declared_key(object: &DeclaredObject) -> Result<String, ApiError> {
    if object.size > MAX_OBJECT_SIZE {
        let message = format!("{} is larger than {MAX_OBJECT_SIZE} bytes, the most one upload may be", object.name);
        return Err(ApiError::bad_request(message));
    }
    upload_path(&object.name).ok_or_else(|| ApiError::bad_request(format!("Invalid upload filename {}", object.name)))
}
