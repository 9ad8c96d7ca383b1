//! Writes the `.flatpakref` and `.flatpakrepo` files ([`crate::repo::flatpakref`]) for the
//! configured remotes: a build repository's `<id>.flatpakref` at commit, a repository's
//! `appstream/<id>.flatpakref` at publish, and each repository's `.flatpakrepo` at start-up and
//! publish. A file is written only when its text changed, so start-ups and re-publishes of the
//! same app do not rewrite (and re-invalidate) what clients cache.

use bytes::Bytes;

use super::{AppState, Repo};
use crate::repo::flatpakref::{
    build_ref_file, build_ref_file_key, repo_file, repo_file_key, repo_ref_file, repo_ref_file_key,
    wants_build_ref_file, Remote,
};
use crate::repo::record::RefRecord;
use crate::repo::refs::{FlatpakRef, RefKind};
use crate::store::{read_limited, ObjectStore, StoreError};

/// Largest existing file read back for the comparison; a larger one is simply rewritten.
const MAX_FILE_SIZE: u64 = 64 * 1024;

/// The main repository `repo` as its clients see it.
pub fn repo_remote(app: &AppState, repo: &Repo) -> Remote {
    let url = match &repo.config.base_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("{}/repo/{}", app.config.public_base_url(), repo.name),
    };
    let title = repo.config.suggested_repo_name.clone().unwrap_or_else(|| repo.name.clone());
    Remote {
        url,
        title,
        suggested_name: repo.config.suggested_repo_name.clone(),
        deploy_collection_id: repo.config.collection_id.clone().filter(|_| repo.config.deploy_collection_id),
        gpg_key: repo.signer.as_ref().map(|signer| signer.gpg_key_base64()),
        runtime_repo: repo.config.runtime_repo_url.clone(),
    }
}

/// Build `build` of `repo` as its testers see it: served at `<base-url>/build-repo/<build>`,
/// signed with the build key.
fn build_remote(app: &AppState, repo: &Repo, build: i64) -> Remote {
    Remote {
        url: format!("{}/build-repo/{build}", app.config.public_base_url()),
        title: format!("build {build}"),
        suggested_name: None,
        deploy_collection_id: None,
        gpg_key: app.build_signer.as_ref().map(|signer| signer.gpg_key_base64()),
        runtime_repo: repo.config.runtime_repo_url.clone(),
    }
}

/// `<id>.flatpakref` in the build repository for each app and standalone runtime of `records`.
pub async fn write_build_ref_files(
    app: &AppState,
    repo: &Repo,
    build: i64,
    records: &[RefRecord],
) -> Result<(), StoreError> {
    let remote = build_remote(app, repo, build);
    let store = app.build_store(build);
    for flatpak_ref in parsed_refs(records).filter(wants_build_ref_file) {
        let text = build_ref_file(&flatpak_ref, build, &remote);
        write_if_changed(&*store, &build_ref_file_key(&flatpak_ref), text).await?;
    }
    Ok(())
}

/// `appstream/<id>.flatpakref` in `repo` for each app of `records`, then the `.flatpakrepo`.
pub async fn write_repo_ref_files(app: &AppState, repo: &Repo, records: &[RefRecord]) -> Result<(), StoreError> {
    let remote = repo_remote(app, repo);
    for flatpak_ref in parsed_refs(records).filter(|r| r.kind == RefKind::App) {
        let text = repo_ref_file(&flatpak_ref, &remote);
        write_if_changed(&*repo.store, &repo_ref_file_key(&flatpak_ref), text).await?;
    }
    write_repo_file(app, repo).await
}

/// The `.flatpakrepo` at the root of `repo`.
pub async fn write_repo_file(app: &AppState, repo: &Repo) -> Result<(), StoreError> {
    let text = repo_file(&repo_remote(app, repo));
    write_if_changed(&*repo.store, &repo_file_key(&repo.name), text).await
}

fn parsed_refs(records: &[RefRecord]) -> impl Iterator<Item = FlatpakRef> + '_ {
    records.iter().filter_map(|record| record.name.parse::<FlatpakRef>().ok())
}

async fn write_if_changed(store: &dyn ObjectStore, key: &str, text: String) -> Result<(), StoreError> {
    match read_limited(store, key, MAX_FILE_SIZE).await {
        Ok(existing) if existing == text.as_bytes() => return Ok(()),
        Ok(_) => {}
        Err(e) if e.is_not_found() || matches!(e, StoreError::TooLarge { .. }) => {}
        Err(e) => return Err(e),
    }
    store.put(key, Bytes::from(text)).await
}
