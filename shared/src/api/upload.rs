//! Upload routes: which objects a build still needs, and the multipart upload itself. Small parts
//! are gathered and written together; a large one is streamed to a temporary file and renamed into
//! place, so memory stays bounded whatever the part size. Every part is answered with its stored
//! size — none is ever dropped silently.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::auth::Token;
use super::body::{read_json, WANTED_LIMIT};
use super::builds::authorized_build;
use super::error::ApiError;
use crate::app::AppState;
use crate::domain::token::Scope;
use crate::repo::{ObjectName, ObjectType};
use crate::store::ObjectStore;

#[derive(Debug, Deserialize)]
pub struct Wanted {
    wanted: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Missing {
    missing: Vec<String>,
}

pub async fn missing_objects(
    State(app): State<AppState>,
    token: Token,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Missing>, ApiError> {
    let request: Wanted = read_json(&headers, body, WANTED_LIMIT).await?;
    let build = authorized_build(&app, &token, id, &[Scope::Upload]).await?;
    let repo = app.repo(&build.repo).ok_or_else(|| ApiError::bad_request("No such repo"))?;
    let names = request
        .wanted
        .iter()
        .map(|name| {
            name.parse::<ObjectName>().map_err(|_| ApiError::bad_request(format!("Invalid object name {name}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let keys: Vec<String> = names.iter().map(ObjectName::key).collect();
    let present = app.upload_view(id, repo).head_many(&keys).await?;
    let missing =
        request.wanted.into_iter().zip(present).filter(|(_, size)| size.is_none()).map(|(name, _)| name).collect();
    Ok(Json(Missing { missing }))
}

pub async fn upload(
    State(app): State<AppState>,
    token: Token,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Vec<u64>>, ApiError> {
    authorized_build(&app, &token, id, &[Scope::Upload]).await?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| ApiError::bad_request("Upload must be multipart with a boundary"))?;
    let mut multipart = multer::Multipart::new(body.into_data_stream(), boundary);
    let store = app.upload_store(id);
    let mut sizes = Vec::new();
    let mut batch = SmallParts::default();
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let key = upload_key(field.headers())?;
        // The part's first bytes, up to SMALL_PART: a part that ends within them joins the batch.
        let mut head = BytesMut::new();
        let mut overflow = None;
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if head.len() + chunk.len() > SMALL_PART {
                overflow = Some(chunk);
                break;
            }
            head.extend_from_slice(&chunk);
        }
        let Some(overflow) = overflow else {
            sizes.push(head.len() as u64);
            batch.add(&*store, key, head.freeze()).await?;
            continue;
        };
        let read = stream::iter([Ok(head.freeze()), Ok(overflow)]);
        let data = read.chain(field.map_err(|e| std::io::Error::other(e.to_string())));
        let size = store.put_stream(&key, Box::pin(data)).await.map_err(|e| match e {
            crate::store::StoreError::Io { source, .. } if source.get_ref().is_some() => {
                ApiError::bad_request(format!("Broken multipart upload: {source}"))
            }
            other => other.into(),
        })?;
        sizes.push(size);
    }
    batch.flush(&*store).await?;
    tracing::info!(build_id = id, parts = sizes.len(), bytes = sizes.iter().sum::<u64>(), "stored multipart upload");
    Ok(Json(sizes))
}

/// Parts up to this size are gathered and written together; larger ones are streamed to their
/// file as they arrive.
const SMALL_PART: usize = 256 * 1024;
/// Gathered parts are written once they hold this many bytes.
const BATCH_BYTES: usize = 1024 * 1024;

/// Small parts waiting to be written with one [`ObjectStore::put_many`]: most of an app's
/// objects are small, and one write per object cost a trip to a blocking thread each.
#[derive(Default)]
struct SmallParts {
    parts: Vec<(String, Bytes)>,
    bytes: usize,
}

impl SmallParts {
    async fn add(&mut self, store: &dyn ObjectStore, key: String, data: Bytes) -> Result<(), ApiError> {
        self.bytes += data.len();
        self.parts.push((key, data));
        if self.bytes >= BATCH_BYTES {
            self.flush(store).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, store: &dyn ObjectStore) -> Result<(), ApiError> {
        self.bytes = 0;
        match self.parts.is_empty() {
            true => Ok(()),
            false => Ok(store.put_many(std::mem::take(&mut self.parts)).await?),
        }
    }
}

fn multipart_error(error: multer::Error) -> ApiError {
    ApiError::bad_request(format!("Invalid multipart body: {error}"))
}

/// Where a part goes, from its `Content-Disposition` (`form-data` or `attachment`, filename
/// quoted and not percent-encoded).
fn upload_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let disposition = headers
        .get(header::CONTENT_DISPOSITION)
        .ok_or_else(|| ApiError::bad_request("No content disposition for multipart item"))?
        .to_str()
        .map_err(|_| ApiError::bad_request("Invalid content disposition for multipart item"))?;
    let kind = disposition.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if kind != "form-data" && kind != "attachment" {
        return Err(ApiError::bad_request("Invalid content disposition for multipart item"));
    }
    let filename = filename(disposition).ok_or_else(|| ApiError::bad_request("No filename for multipart item"))?;
    upload_path(&filename).ok_or_else(|| ApiError::bad_request("Invalid upload filename"))
}

/// The `filename` parameter, quoted or bare.
fn filename(disposition: &str) -> Option<String> {
    disposition.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("filename") {
            return None;
        }
        let value = value.trim();
        Some(value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value).to_owned())
    })
}

/// The key of an uploaded object (`<hex>.{commit,dirtree,dirmeta,filez}`) or static-delta part
/// (`<b64 name>.<superblock|N>.delta`).
pub fn upload_path(filename: &str) -> Option<String> {
    if let Ok(name) = filename.parse::<ObjectName>() {
        return (name.kind != ObjectType::CommitMeta).then(|| name.key());
    }
    let (name, part) = filename.strip_suffix(".delta")?.rsplit_once('.')?;
    let part_ok =
        part == "superblock" || (!part.is_empty() && part.len() <= 8 && part.bytes().all(|b| b.is_ascii_digit()));
    let b64 = |s: &str| s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'_');
    let name_ok = match name.split_once('-') {
        None => b64(name),
        Some((from, to)) => b64(from) && b64(to),
    };
    (part_ok && name_ok).then(|| format!("deltas/{}/{}/{part}", &name[..2], &name[2..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488";
    const B64: &str = "H2Sr9+k+UNVKmqW9vMVOgCYYTWkMqn36pgFxFmOPddQ";

    #[test]
    fn maps_objects_and_delta_parts_to_keys() {
        assert_eq!(upload_path(&format!("{HEX}.filez")).unwrap(), format!("objects/44/{}.filez", &HEX[2..]));
        assert_eq!(
            upload_path(&format!("{B64}.superblock.delta")).unwrap(),
            format!("deltas/H2/{}/superblock", &B64[2..])
        );
        assert_eq!(upload_path(&format!("{B64}-{B64}.0.delta")).unwrap(), format!("deltas/H2/{}-{B64}/0", &B64[2..]));
    }

    #[test]
    fn refuses_traversal_signatures_and_junk() {
        for bad in [
            format!("{HEX}.commitmeta"),
            format!("../{HEX}.filez"),
            format!("{HEX}.file"),
            format!("{B64}.../.delta"),
            format!("{B64}/x.0.delta"),
            "x.superblock.delta".to_owned(),
            format!("{B64}.superblock"),
        ] {
            assert_eq!(upload_path(&bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_quoted_unencoded_filenames_from_both_dispositions() {
        assert_eq!(filename(r#"attachment; filename="a+b.delta""#).unwrap(), "a+b.delta");
        assert_eq!(filename(r#"form-data; name="file0"; filename="x.filez""#).unwrap(), "x.filez");
        assert_eq!(filename("form-data; name=\"file0\""), None);
    }
}
