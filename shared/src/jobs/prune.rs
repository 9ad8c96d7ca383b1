//! The prune job (flat-manager's `build-update-repo --prune --prune-depth=3`): under the publish
//! lease, mark every object reachable from each published ref's last [`DEPTH`] commits and from
//! every committed build not yet published (they rely on the repository for shared objects),
//! then delete the other objects. Nothing a current summary references is ever deleted.

use std::collections::HashSet;

use anyhow::Context;
use serde_json::{json, Value};

use super::lease::with_publish_lease;
use super::JobContext;
use crate::app::Repo;
use crate::repo::local::list_refs;
use crate::repo::walk::walk_closure;
use crate::repo::{Checksum, ObjectName, ObjectType};
use crate::store::ObjectStore;

/// Commits kept per ref: the head and its parents, as flat-manager's `--prune-depth=3`.
const DEPTH: usize = 3;

pub async fn run(ctx: &JobContext<'_>) -> anyhow::Result<Value> {
    let name = ctx.job.repo.as_deref().context("prune job without a repo")?;
    let repo = ctx.app.repo(name).with_context(|| format!("repo {name} is not configured"))?;
    let holder = format!("job/{}", ctx.job.id);
    with_publish_lease(ctx.app, name, &holder, prune(ctx, repo)).await
}

async fn prune(ctx: &JobContext<'_>, repo: &Repo) -> anyhow::Result<Value> {
    let mut keep = HashSet::new();
    for record in ctx.app.state.repo_refs(&repo.name).await? {
        mark_history(&*repo.store, record.commit, &mut keep).await?;
    }
    for build in ctx.app.state.unpublished_builds(&repo.name).await? {
        let view = ctx.app.build_view(build.id, repo);
        for commit in list_refs(&*ctx.app.build_store(build.id)).await?.into_values() {
            mark_closure(&*view, commit, &mut keep).await?;
        }
    }
    ctx.log(format!("{} objects are reachable", keep.len())).await;
    let (mut deleted, mut bytes) = (0u64, 0u64);
    for key in repo.store.list("objects/").await? {
        let Ok(name) = ObjectName::from_key(&key) else { continue };
        if !keep.contains(&name) {
            bytes += repo.store.head(&key).await?.unwrap_or(0);
            repo.store.delete(&key).await?;
            deleted += 1;
        }
    }
    ctx.log(format!("Pruned {deleted} objects ({bytes} bytes)")).await;
    Ok(json!({ "deleted-objects": deleted, "deleted-bytes": bytes }))
}

/// Marks `head` and up to [`DEPTH`] − 1 ancestors that still exist, with their closures.
async fn mark_history(store: &dyn ObjectStore, head: Checksum, keep: &mut HashSet<ObjectName>) -> anyhow::Result<()> {
    let mut next = Some(head);
    for _ in 0..DEPTH {
        let Some(commit) = next else { break };
        next = mark_closure(store, commit, keep).await?;
    }
    Ok(())
}

/// Marks a commit's closure and its signatures; returns its parent.
async fn mark_closure(
    store: &dyn ObjectStore,
    commit: Checksum,
    keep: &mut HashSet<ObjectName>,
) -> anyhow::Result<Option<Checksum>> {
    let closure = walk_closure(store, commit).await?;
    keep.extend(closure.object_names());
    keep.insert(ObjectName::new(commit, ObjectType::CommitMeta));
    Ok(closure.commit.and_then(|c| c.parent))
}
