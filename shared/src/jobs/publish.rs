//! The publish job: under the repository's publish lease, re-commit each app and runtime ref of
//! a ready build on top of the repository's current head, copy the objects the repository lacks
//! (hard links on one filesystem), then write commits, ref records, refs and summaries in
//! reader-safe order. Cost: O(new objects) + O(refs); commits of other builds never wait for it.
//!
//! A run killed at any point is run again from the start and publishes each ref exactly once:
//! the commit made for a ref is remembered in the build's files (`published/<ref>`) before any
//! ref moves, and a re-run takes it again instead of stacking a second commit on top of it.
//!
//! In a signed repository each new commit gets its signatures (`.commitmeta`) before the commit
//! object is written, and the summaries are signed ([`crate::repo::publish`] has the order). A
//! re-run signs a commit only with the keys that have not signed it yet.

use anyhow::Context;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::BTreeMap;

use super::appstream::{self, by_name, Records};
use super::lease::with_publish_lease;
use super::{now, uploaded_deltas, JobContext};
use crate::app::Repo;
use crate::domain::build::{Build, PublishedState};
use crate::domain::job::PublishContents;
use crate::repo::deltas::read_listings;
use crate::repo::layout::ref_file;
use crate::repo::local::{list_refs, read_commit, ReadError};
use crate::repo::publish::{build_summaries, copy_objects, write_refs, write_summaries};
use crate::repo::record::RefRecord;
use crate::repo::refs::FlatpakRef;
use crate::repo::rewrite::{rewrite_commit, RewriteOptions};
use crate::repo::sign::{append_to_commitmeta, read_signatures, Signer};
use crate::repo::walk::walk_closure;
use crate::repo::{Checksum, ObjectName, ObjectType};
use crate::store::{read_limited, ObjectStore};

/// Largest `.commitmeta` read back.
const MAX_COMMITMETA_SIZE: u64 = 16 * 1024 * 1024;

pub async fn run(ctx: &JobContext<'_>, contents: PublishContents) -> anyhow::Result<Value> {
    let app = ctx.app;
    let build = app.state.get_build(contents.build).await?;
    let repo = app.repo(&build.repo).with_context(|| format!("repo {} is not configured", build.repo))?;
    let holder = format!("job/{}", ctx.job.id);
    with_publish_lease(app, &repo.name, &holder, publish_under_lease(ctx, &build, repo)).await
}

async fn publish_under_lease(ctx: &JobContext<'_>, build: &Build, repo: &Repo) -> anyhow::Result<Value> {
    let app = ctx.app;
    if build.published_state == PublishedState::Published {
        // An earlier run published the build and was killed before recording the job's end.
        return finish(ctx, build, repo, &published_records(ctx, build, repo).await?).await;
    }
    appstream::extract_screenshots(ctx, build, repo).await?;
    let mut records: Records = by_name(app.state.repo_refs(&repo.name).await?).collect();
    let mut published = Vec::new();
    for (name, commit) in list_refs(&*app.build_store(build.id)).await? {
        if name.parse::<FlatpakRef>().is_err() {
            continue; // flat-manager imports app and runtime refs only
        }
        ctx.log(format!("Publishing {name}")).await;
        let head = records.get(&name);
        let record = match earlier_commit(ctx, build, repo, &name, head).await? {
            Some(record) => {
                ctx.log(format!("Published {name} as {} by an interrupted run", record.commit)).await;
                record
            }
            None => publish_ref(ctx, build, repo, &name, commit, head).await?,
        };
        let record = appstream::attach_data(&*app.build_store(build.id), record, commit).await?;
        published.push(record);
    }
    app.state.put_repo_refs(&repo.name, &published).await?;
    write_refs(&*repo.store, &published).await?;
    records.extend(by_name(published.iter().cloned()));
    let records = appstream::publish_branches(ctx, repo, records, &published).await?;
    let deltas = read_listings(&*repo.store).await?;
    let mut files = build_summaries(&*repo.store, &records, &repo.settings, &deltas, now()).await?;
    if let Some(signer) = &repo.signer {
        files.sign(signer)?;
    }
    write_summaries(&*repo.store, &files).await?;
    ctx.log(format!("Updated summary for {} refs", records.len())).await;
    if let Err(e) = crate::app::remote_files::write_repo_ref_files(app, repo, &published).await {
        ctx.log(format!("Could not write the .flatpakref and .flatpakrepo files: {e}")).await;
    }
    app.state.set_published_state(build.id, &[PublishedState::Publishing], PublishedState::Published, None).await?;
    finish(ctx, build, repo, &published).await
}

/// Queues the repository's update (deltas), removes the build's files, now that the repository
/// has what it needs, and reports `published` and the update job.
async fn finish(ctx: &JobContext<'_>, build: &Build, repo: &Repo, published: &[RefRecord]) -> anyhow::Result<Value> {
    let update = super::update_repo::queue(ctx, repo).await?;
    if let Err(e) = ctx.app.delete_build_files(build.id).await {
        ctx.log(format!("Could not remove the build files: {e}")).await;
    }
    let refs: BTreeMap<&str, String> = published.iter().map(|r| (r.name.as_str(), r.commit.to_hex())).collect();
    Ok(json!({ "refs": refs, "update-repo-job": update }))
}

/// The records of a published build's refs: under the lease it held, nothing replaced them.
async fn published_records(ctx: &JobContext<'_>, build: &Build, repo: &Repo) -> anyhow::Result<Vec<RefRecord>> {
    let names: Vec<String> = ctx.app.state.list_build_refs(build.id).await?.into_iter().map(|r| r.ref_name).collect();
    let records = ctx.app.state.repo_refs(&repo.name).await?;
    Ok(records.into_iter().filter(|r| names.contains(&r.name)).collect())
}

/// Where the build remembers the commit its publish made for `name`.
fn made_key(name: &str) -> String {
    format!("published/{name}")
}

/// The commit an interrupted run of this publish made for `name`, if it still fits the
/// repository: it is the head already, or the head is its parent.
async fn earlier_commit(
    ctx: &JobContext<'_>,
    build: &Build,
    repo: &Repo,
    name: &str,
    head: Option<&RefRecord>,
) -> anyhow::Result<Option<RefRecord>> {
    let made = match read_limited(&*ctx.app.build_store(build.id), &made_key(name), 1024).await {
        Ok(bytes) => Checksum::from_hex(String::from_utf8_lossy(&bytes).trim_end())?,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if let Some(head) = head.filter(|h| h.commit == made) {
        return Ok(Some(head.clone()));
    }
    let (commit, size) = match read_commit(&*repo.store, made).await {
        Ok(found) => found,
        Err(ReadError::Store(e)) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if commit.parent != head.map(|h| h.commit) {
        return Ok(None); // the repository moved on: make a new commit on its head
    }
    Ok(Some(RefRecord::from_commit(name, made, &commit, size, None)?))
}

/// Re-commits one ref of the build on top of the repository's head and copies what is new.
async fn publish_ref(
    ctx: &JobContext<'_>,
    build: &Build,
    repo: &Repo,
    name: &str,
    built: Checksum,
    head: Option<&RefRecord>,
) -> anyhow::Result<RefRecord> {
    let view = ctx.app.build_view(build.id, repo);
    let (source, _) = read_commit(&*view, built).await?;
    let collection = repo.config.collection_id.as_deref();
    let options = RewriteOptions {
        ref_name: name.to_owned(),
        parent: head.map(|h| h.commit),
        timestamp: now().max(head.map_or(0, |h| h.timestamp)),
        collection_id: collection.map(str::to_owned),
        extra_collection_ids: collection
            .map_or(Vec::new(), |c| build.extra_ids.iter().map(|e| format!("{c}.{e}")).collect()),
        ..Default::default()
    };
    let commit = rewrite_commit(&source, built, &options)?;
    let closure = walk_closure(&*view, built).await?;
    anyhow::ensure!(closure.problems.is_empty(), "build repository is damaged: {:?}", closure.problems);
    let names: Vec<ObjectName> = closure.object_names().filter(|n| n.kind != ObjectType::Commit).collect();
    let copied = copy_objects(&*view, &*repo.store, &names).await?;
    let bytes = commit.to_bytes();
    let checksum = Checksum::of(&bytes);
    if let Some(signer) = &repo.signer {
        sign_commit(&*repo.store, checksum, &bytes, signer).await?;
    }
    repo.store.put_if_absent(&ObjectName::new(checksum, ObjectType::Commit).key(), Bytes::from(bytes.clone())).await?;
    let made = uploaded_deltas::Made { store: &*repo.store, checksum, bytes: &bytes };
    uploaded_deltas::publish_from_build(ctx, &*ctx.app.build_store(build.id), built, &made).await;
    ctx.app.build_store(build.id).put(&made_key(name), Bytes::from(ref_file(&checksum))).await?;
    ctx.log(format!("Published {name} as {checksum} ({copied} new objects)")).await;
    Ok(RefRecord::from_commit(name, checksum, &commit, bytes.len() as u64, None)?)
}

/// Adds the signatures of `signer`'s keys that `commit` lacks to its `.commitmeta`, keeping what
/// is there (an earlier run's signatures, other metadata): a commit is never signed twice by a key.
pub(super) async fn sign_commit(
    store: &dyn ObjectStore,
    checksum: Checksum,
    commit: &[u8],
    signer: &Signer,
) -> anyhow::Result<()> {
    let key = ObjectName::new(checksum, ObjectType::CommitMeta).key();
    let existing = match read_limited(store, &key, MAX_COMMITMETA_SIZE).await {
        Ok(bytes) => Some(bytes),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let signed = existing.as_deref().map(read_signatures).transpose()?.unwrap_or_default();
    let signatures = signer.sign_missing(&signed, commit)?;
    if signatures.is_empty() {
        return Ok(());
    }
    let metadata = append_to_commitmeta(existing.as_deref(), &signatures)?;
    store.put(&key, Bytes::from(metadata)).await?;
    Ok(())
}
