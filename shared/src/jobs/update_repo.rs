//! The update-repo job (flat-manager's kind 2), queued by each publish: generates the static
//! deltas the depth policy wants ([`super::delta_policy`]), retires the ones it no longer wants,
//! and ends with a summary update. Publishes never wait for it:
//!
//! 1. Without any lease, it reads the ref records and the delta ledger and works out what is
//!    missing.
//! 2. Under the repository's `deltas/<repo>` lease (one generator per repository, so two runs
//!    never write the same delta), it stores each missing delta: found by its superblock when an
//!    earlier run or a client upload stored it, else generated through the [`DeltaGenerator`]
//!    (CPU-heavy, off the async runtime) and written parts first, superblock last. A delta that
//!    fails is logged and skipped, as flat-manager does.
//! 3. Briefly under the publish lease, against the ref records as they are by then: the delta
//!    indexes of the commits whose deltas changed, `config` with `indexed-deltas=true`, the signed
//!    summaries listing the deltas, the retirement of unwanted deltas ([`crate::repo::retire`]
//!    deletes them after the grace period, so a cached delta index never names a missing delta),
//!    and last the ledger. A run killed anywhere is run again and converges.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use serde_json::{json, Value};

use super::delta_policy::wanted_deltas;
use super::lease::{with_lease, with_publish_lease};
use super::{now, JobContext};
use crate::app::Repo;
use crate::domain::job::{JobKind, JobStatus, UpdateRepoContents};
use crate::repo::deltas::{
    listings, read_ledger, store_delta, stored_superblock, write_delta_index, write_ledger, DeltaDigests,
    DeltaGenerator, DeltaId,
};
use crate::repo::publish::{build_summaries, write_config, write_summaries};
use crate::repo::record::RefRecord;
use crate::repo::{retire, Checksum};
use crate::state::StateError;
use crate::store::read_limited;

/// Where a repository remembers its latest update-repo job, for publishes to piggy-back on.
const QUEUED_KEY: &str = ".flatbucket/update-repo-job";

/// Queues an update-repo job for `repo`, or reuses one still waiting to start (flat-manager's
/// coalescing): run by a publish under the publish lease, after its ref records are written, so
/// whichever job runs next sees them. Returns the job's id.
pub(super) async fn queue(ctx: &JobContext<'_>, repo: &Repo) -> anyhow::Result<i64> {
    let app = ctx.app;
    if let Some(id) = waiting_job(ctx, repo).await? {
        ctx.log(format!("Piggy-backed on existing update job {id}")).await;
        return Ok(id);
    }
    let contents = serde_json::to_string(&UpdateRepoContents { repo: repo.name.clone() })?;
    let job = app.state.create_job(JobKind::UpdateRepo, &contents, Some(&repo.name)).await?;
    repo.store.put(QUEUED_KEY, Bytes::from(job.id.to_string())).await?;
    if let Err(e) = app.enqueue(&job).await {
        tracing::warn!(job_id = job.id, error = %e, "update-repo job not handed to the queue; it runs at the next start");
    }
    ctx.log(format!("Queued repository update job {}", job.id)).await;
    Ok(job.id)
}

/// The repository's latest update-repo job, if it has not started yet.
async fn waiting_job(ctx: &JobContext<'_>, repo: &Repo) -> anyhow::Result<Option<i64>> {
    let id = match read_limited(&*repo.store, QUEUED_KEY, 64).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().parse::<i64>().ok(),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let Some(id) = id else { return Ok(None) };
    match ctx.app.state.get_job(id).await {
        Ok(job) => Ok((job.kind == JobKind::UpdateRepo && job.status == JobStatus::New).then_some(id)),
        Err(StateError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn run(ctx: &JobContext<'_>, contents: UpdateRepoContents) -> anyhow::Result<Value> {
    let app = ctx.app;
    let repo = app.repo(&contents.repo).with_context(|| format!("repo {} is not configured", contents.repo))?;
    let holder = format!("job/{}", ctx.job.id);
    let records = app.state.repo_refs(&repo.name).await?;
    let wanted = wanted_deltas(&*repo.store, &records, &repo.config).await?;
    let published = read_ledger(&*repo.store).await?;
    let missing: Vec<DeltaId> = wanted.iter().filter(|d| !published.contains_key(d)).copied().collect();
    let lease = format!("deltas/{}", repo.name);
    let made = with_lease(app, &lease, &holder, store_missing(ctx, repo, &missing)).await?;
    let update = publish_deltas(ctx, repo, &records, wanted, made);
    with_publish_lease(app, &repo.name, &holder, update).await
}

/// Stores every missing delta it can and returns their superblock digests.
async fn store_missing(ctx: &JobContext<'_>, repo: &Repo, missing: &[DeltaId]) -> anyhow::Result<DeltaDigests> {
    let mut made = DeltaDigests::new();
    let mut told_off = false;
    for delta in missing {
        if let Some(digest) = stored_superblock(&*repo.store, delta).await? {
            made.insert(*delta, digest);
            continue;
        }
        let Some(generator) = &ctx.app.deltas else {
            if !told_off {
                ctx.log("Static delta generation is off here: only deltas already stored are indexed").await;
                told_off = true;
            }
            continue;
        };
        let started = Instant::now();
        match generate(&**generator, repo, delta).await {
            Ok(digest) => {
                let secs = started.elapsed().as_secs_f64();
                ctx.log(format!("Generated static delta {} in {secs:.1} s", delta.name())).await;
                made.insert(*delta, digest);
            }
            Err(e) => ctx.log(format!("Failed to generate static delta {}: {e:#}", delta.name())).await,
        }
    }
    Ok(made)
}

async fn generate(generator: &dyn DeltaGenerator, repo: &Repo, delta: &DeltaId) -> anyhow::Result<Checksum> {
    let files = generator.generate(repo.store.clone(), *delta).await?;
    Ok(store_delta(&*repo.store, delta, &files).await?)
}

/// Under the publish lease: indexes, config, summaries, retirements and ledger for the deltas of
/// the ref records as they are now.
async fn publish_deltas(
    ctx: &JobContext<'_>,
    repo: &Repo,
    planned_for: &[RefRecord],
    wanted: BTreeSet<DeltaId>,
    made: DeltaDigests,
) -> anyhow::Result<Value> {
    let store = &*repo.store;
    let records = ctx.app.state.repo_refs(&repo.name).await?;
    let wanted = if heads(&records) == heads(planned_for) {
        wanted
    } else {
        wanted_deltas(store, &records, &repo.config).await? // a publish moved a ref meanwhile
    };
    let mut deltas = read_ledger(store).await?;
    let added: Vec<DeltaId> = made.keys().filter(|d| !deltas.contains_key(d)).copied().collect();
    deltas.extend(made);
    let retired: Vec<DeltaId> = deltas.keys().filter(|d| !wanted.contains(d)).copied().collect();
    for delta in &retired {
        deltas.remove(delta);
    }
    let targets: BTreeSet<Checksum> = added.iter().chain(&retired).map(|d| d.to).collect();
    for to in &targets {
        write_delta_index(store, to, &deltas).await?;
    }
    ensure_indexed_deltas(repo).await?;
    let now = now();
    let mut files = build_summaries(store, &records, &repo.settings, &listings(&deltas), now).await?;
    if let Some(signer) = &repo.signer {
        files.sign(signer)?;
    }
    write_summaries(store, &files).await?;
    let dirs: Vec<String> = retired.iter().map(DeltaId::dir).collect();
    retire::record(store, &dirs, &format!("deltas-job{}", ctx.job.id), now).await?;
    write_ledger(store, &deltas).await?;
    ctx.log(format!(
        "Updated summary with {} static deltas ({} new, {} retired, {} wanted)",
        deltas.len(),
        added.len(),
        retired.len(),
        wanted.len()
    ))
    .await;
    Ok(json!({ "deltas": deltas.len(), "new-deltas": added.len(), "retired-deltas": retired.len() }))
}

/// Each ref's commit, to tell whether a publish came between planning and publishing.
fn heads(records: &[RefRecord]) -> BTreeSet<(&str, Checksum)> {
    records.iter().map(|r| (r.name.as_str(), r.commit)).collect()
}

/// Makes `config` say `indexed-deltas=true`, so pullers look deltas up in `delta-indexes/`.
async fn ensure_indexed_deltas(repo: &Repo) -> anyhow::Result<()> {
    let config = match read_limited(&*repo.store, "config", 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.is_not_found() => String::new(),
        Err(e) => return Err(e.into()),
    };
    if !config.lines().any(|line| line.trim() == "indexed-deltas=true") {
        write_config(&*repo.store, repo.config.collection_id.as_deref()).await?;
    }
    Ok(())
}
