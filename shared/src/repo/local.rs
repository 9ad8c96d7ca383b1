//! Reading an existing repository through the ObjectStore port: its refs and commits. The client
//! uses this on the local archive repo it pushes from, with the same closure walk the server uses.

use std::collections::BTreeMap;

use super::commit::Commit;
use super::refs::validate_ref;
use super::walk::MAX_METADATA_SIZE;
use super::{Checksum, FormatError, ObjectName, ObjectType};
use crate::store::{read_limited, ObjectStore, StoreError};

/// Why a repository could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {error}")]
    Format { what: String, error: FormatError },
}

/// Every ref under `refs/heads/` and the commit it points at.
pub async fn list_refs(store: &dyn ObjectStore) -> Result<BTreeMap<String, Checksum>, ReadError> {
    let mut refs = BTreeMap::new();
    for key in store.list("refs/heads/").await? {
        let name = key.strip_prefix("refs/heads/").expect("listed under the prefix").to_owned();
        let commit = resolve_ref(store, &name).await?;
        refs.insert(name, commit);
    }
    Ok(refs)
}

/// The commit `refs/heads/<name>` points at.
pub async fn resolve_ref(store: &dyn ObjectStore, name: &str) -> Result<Checksum, ReadError> {
    let format = |error| ReadError::Format { what: format!("ref {name}"), error };
    validate_ref(name).map_err(format)?;
    let bytes = read_limited(store, &format!("refs/heads/{name}"), 1024).await?;
    let text = String::from_utf8_lossy(&bytes);
    Checksum::from_hex(text.trim_end()).map_err(format)
}

/// Loads and parses a commit, returning it with its size in bytes.
pub async fn read_commit(store: &dyn ObjectStore, checksum: Checksum) -> Result<(Commit, u64), ReadError> {
    let name = ObjectName::new(checksum, ObjectType::Commit);
    let bytes = read_limited(store, &name.key(), MAX_METADATA_SIZE).await?;
    let format = |error| ReadError::Format { what: format!("commit {checksum}"), error };
    if Checksum::of(&bytes) != checksum {
        return Err(format(FormatError::Malformed("content does not match its name".into())));
    }
    let commit = Commit::parse(&bytes).map_err(format)?;
    Ok((commit, bytes.len() as u64))
}
