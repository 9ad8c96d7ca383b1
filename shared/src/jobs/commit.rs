//! The commit job: take the uploads into the build's own repository, verify every ref's full
//! closure there (objects the repository already has may be left out of the upload), rewrite each
//! commit for its ref, and write refs and summaries so `/build-repo/<id>` is installable. Then the
//! build is `ready`; on any bad object it fails with a reason naming the objects. With
//! `build-gpg-key`, each rewritten commit is signed before it is written, and so are the summaries.
//!
//! Uploads are copied before they are verified, never after: a presigned URL (valid for an hour)
//! or a late multipart request can still change an upload, but nothing but this job writes the
//! build repository, so what was verified is what gets published.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::{json, Value};

use super::appstream;
use super::publish::sign_commit;
use super::{now, uploaded_deltas, verify_concurrency, JobContext};
use crate::app::Repo;
use crate::domain::build::{Build, RepoState};
use crate::domain::job::CommitContents;
use crate::repo::local::list_refs;
use crate::repo::publish::{build_summaries, copy_objects, write_config, write_refs, write_summaries};
use crate::repo::record::RefRecord;
use crate::repo::refs::{FlatpakRef, RefKind};
use crate::repo::rewrite::{rewrite_commit, RewriteOptions};
use crate::repo::summary::SummarySettings;
use crate::repo::verify::{verify_commit, Verified};
use crate::repo::{Checksum, ObjectName, ObjectType};
use crate::store::delete_all;

/// Problems named in a failure reason; the log has all of them.
const REASON_PROBLEMS: usize = 10;

pub async fn run(ctx: &JobContext<'_>, contents: CommitContents) -> anyhow::Result<Value> {
    let app = ctx.app;
    let build = app.state.get_build(contents.build).await?;
    if build.repo_state == RepoState::Ready {
        // A previous run finished the work and was killed before recording the job's end,
        // perhaps while removing the uploads.
        delete_uploads(ctx, build.id).await;
        return Ok(json!({ "refs": list_refs(&*app.build_store(build.id)).await? }));
    }
    let repo = app.repo(&build.repo).with_context(|| format!("repo {} is not configured", build.repo))?;
    let refs = app.state.list_build_refs(build.id).await?;
    if refs.is_empty() {
        bail!("No refs in build");
    }
    let rebase = eol_rebase(&refs, contents.endoflife_rebase.as_deref());
    let taken = take_uploads(ctx, &build, repo).await?;
    let mut records = Vec::new();
    let mut needed = BTreeSet::new();
    for build_ref in &refs {
        ctx.log(format!("Committing ref {} ({})", build_ref.ref_name, build_ref.commit)).await;
        let source = Checksum::from_hex(&build_ref.commit)?;
        let options = RewriteOptions {
            ref_name: build_ref.ref_name.clone(),
            timestamp: now(),
            collection_id: repo.config.collection_id.as_ref().map(|id| format!("{id}.Build{}", build.id)),
            end_of_life: contents.endoflife.clone(),
            end_of_life_rebase: rebase.clone(),
            token_type: contents.token_type,
            ..Default::default()
        };
        records.push(commit_ref(ctx, &build, repo, source, options, &mut needed).await?);
    }
    discard_unneeded(ctx, &build, taken.difference(&needed)).await?;
    write_build_repo(ctx, &build, &records).await?;
    crate::app::remote_files::write_build_ref_files(app, repo, build.id, &records).await?;
    app.state.set_repo_state(build.id, &[RepoState::Committing], RepoState::Ready, None).await?;
    delete_uploads(ctx, build.id).await;
    let refs: BTreeMap<&str, String> = records.iter().map(|r| (r.name.as_str(), r.commit.to_hex())).collect();
    Ok(json!({ "refs": refs }))
}

/// `(old id, new id)` for `--end-of-life-rebase`: the old id is the build's first app ref's.
fn eol_rebase(refs: &[crate::domain::build::BuildRef], new_id: Option<&str>) -> Option<(String, String)> {
    let new_id = new_id?;
    let app = refs.iter().filter_map(|r| r.ref_name.parse::<FlatpakRef>().ok()).find(|r| r.kind == RefKind::App)?;
    Some((app.id, new_id.to_owned()))
}

/// Copies the uploaded objects the repository lacks into the build repository (hard links or
/// server-side copies), keeping copies an interrupted run made. Returns their names.
async fn take_uploads(ctx: &JobContext<'_>, build: &Build, repo: &Repo) -> anyhow::Result<BTreeSet<ObjectName>> {
    let uploads = ctx.app.upload_store(build.id);
    let uploaded: Vec<ObjectName> =
        uploads.list("objects/").await?.iter().filter_map(|key| ObjectName::from_key(key).ok()).collect();
    let in_repo = repo.store.head_many(&uploaded.iter().map(ObjectName::key).collect::<Vec<_>>()).await?;
    let names: Vec<ObjectName> =
        uploaded.into_iter().zip(in_repo).filter(|(_, size)| size.is_none()).map(|(name, _)| name).collect();
    let copied = copy_objects(&*uploads, &*ctx.app.build_store(build.id), &names).await?;
    ctx.log(format!("Took {} uploaded objects into the build repository ({copied} copied now)", names.len())).await;
    Ok(names.into_iter().collect())
}

/// Removes taken objects no ref of the build uses.
async fn discard_unneeded(
    ctx: &JobContext<'_>,
    build: &Build,
    unneeded: impl Iterator<Item = &ObjectName>,
) -> anyhow::Result<()> {
    let keys: Vec<String> = unneeded.map(ObjectName::key).collect();
    ctx.app.build_store(build.id).delete_many(&keys).await?;
    if !keys.is_empty() {
        ctx.log(format!("Discarded {} uploaded objects no ref uses", keys.len())).await;
    }
    Ok(())
}

/// Verifies one commit in the build repository, rewrites it and stores it there, adding the
/// objects it uses to `needed`.
async fn commit_ref(
    ctx: &JobContext<'_>,
    build: &Build,
    repo: &Repo,
    source: Checksum,
    mut options: RewriteOptions,
    needed: &mut BTreeSet<ObjectName>,
) -> anyhow::Result<RefRecord> {
    let app = ctx.app;
    let verified =
        verify_commit(app.build_view(build.id, repo), source, verify_concurrency(), Some(repo.store.clone())).await?;
    report_problems(ctx, &verified).await?;
    ctx.log(format!(
        "Verified {} objects, {} bytes of content",
        verified.closure.files.len() + verified.closure.metadata.len(),
        verified.content_bytes
    ))
    .await;
    options.sizes = Some(verified.sizes);
    let commit = rewrite_commit(verified.closure.commit.as_ref().context("verified commit")?, source, &options)?;
    // The uploaded commit itself is replaced by its rewrite.
    needed.extend(verified.closure.object_names().filter(|n| n.kind != ObjectType::Commit));
    let build_store = app.build_store(build.id);
    let bytes = commit.to_bytes();
    let checksum = Checksum::of(&bytes);
    if let Some(signer) = &app.build_signer {
        sign_commit(&*build_store, checksum, &bytes, signer).await?;
    }
    build_store.put_if_absent(&ObjectName::new(checksum, ObjectType::Commit).key(), Bytes::from(bytes.clone())).await?;
    ctx.log(format!("Committed {} as {checksum}", options.ref_name)).await;
    let made = uploaded_deltas::Made { store: &*build_store, checksum, bytes: &bytes };
    uploaded_deltas::take_uploaded(ctx, &*app.upload_store(build.id), source, &verified.closure, &made).await;
    let mut record = RefRecord::from_commit(&options.ref_name, checksum, &commit, bytes.len() as u64, None)?;
    appstream::extract_data(ctx, &*app.build_view(build.id, repo), &*build_store, &commit, &mut record).await?;
    Ok(record)
}

/// Logs every problem and fails with a reason naming the first ones.
async fn report_problems(ctx: &JobContext<'_>, verified: &Verified) -> anyhow::Result<()> {
    let problems = verified.problems();
    if problems.is_empty() {
        return Ok(());
    }
    for problem in problems {
        ctx.log(format!("Invalid object {problem}")).await;
    }
    let named: Vec<String> = problems.iter().take(REASON_PROBLEMS).map(ToString::to_string).collect();
    let more = problems.len().saturating_sub(REASON_PROBLEMS);
    let suffix = if more > 0 { format!(" and {more} more") } else { String::new() };
    bail!("{} invalid or missing objects: {}{suffix}", problems.len(), named.join("; "))
}

/// Config, refs and summaries of the build's repository, so clients can install from it.
async fn write_build_repo(ctx: &JobContext<'_>, build: &Build, records: &[RefRecord]) -> anyhow::Result<()> {
    let store = ctx.app.build_store(build.id);
    write_config(&*store, None).await?;
    let mut records = records.to_vec();
    records.extend(appstream::build_repo_branches(ctx, build, &records).await?);
    write_refs(&*store, &records).await?;
    let mut files = build_summaries(&*store, &records, &SummarySettings::default(), &[], now()).await?;
    if let Some(signer) = &ctx.app.build_signer {
        files.sign(signer)?;
    }
    write_summaries(&*store, &files).await?;
    Ok(())
}

/// The raw uploads are no longer needed once the build repository is written.
async fn delete_uploads(ctx: &JobContext<'_>, build: i64) {
    if let Err(e) = delete_all(&*ctx.app.upload_store(build), "").await {
        ctx.log(format!("Could not remove the uploads: {e}")).await;
    }
}
