//! From-scratch static deltas a client uploaded with its build (`<b64>.superblock.delta`,
//! `<b64>.N.delta`), reused as flatpak's `build-commit-from` reuses them: the commit job takes a
//! valid one into the build repository rewritten for the build's commit, and the publish job
//! rewrites that for the published commit and copies it into the repository.
//!
//! A delta is an optimisation: an invalid or unreadable one is logged and left out, and never
//! fails a commit or a publish. Parts are written before the superblock that names them, so a
//! reader never finds a superblock whose parts are not there yet. Which deltas a repository keeps
//! is the update-repo job's business; it finds these by their files under `deltas/`.

use anyhow::Context;
use bytes::Bytes;

use super::JobContext;
use crate::repo::publish::copy_file;
use crate::repo::superblock::{DeltaError, Superblock, MAX_SUPERBLOCK_SIZE};
use crate::repo::walk::Closure;
use crate::repo::{delta_dir, delta_name, Checksum, ObjectName, ObjectType};
use crate::store::{read_limited, ObjectStore, StoreError};

/// Largest `.commitmeta` carried into a superblock.
const MAX_COMMITMETA_SIZE: u64 = 16 * 1024 * 1024;

/// A commit made from the delta's `to` commit, in the store it was written to.
pub(super) struct Made<'a> {
    pub store: &'a dyn ObjectStore,
    pub checksum: Checksum,
    pub bytes: &'a [u8],
}

/// At commit: if `uploads` holds a from-scratch delta to `source` that fits its verified
/// `closure`, writes it into the build repository (`made.store`) rewritten for `made`.
pub(super) async fn take_uploaded(
    ctx: &JobContext<'_>,
    uploads: &dyn ObjectStore,
    source: Checksum,
    closure: &Closure,
    made: &Made<'_>,
) {
    let name = format!("{} ({})", delta_name(None, &source), delta_dir(None, &source));
    match take_checked(uploads, source, closure, made).await {
        Ok(false) => {}
        Ok(true) => ctx.log(format!("Took the uploaded static delta {name} for {}", made.checksum)).await,
        Err(e) => ctx.log(format!("Ignored the uploaded static delta {name}: {e:#}")).await,
    }
}

/// At publish: if the build repository has a from-scratch delta to `built`, writes it into the
/// repository (`made.store`) rewritten for `made`. The build repository holds only deltas the
/// commit job checked, so the parts are copied as they are.
pub(super) async fn publish_from_build(
    ctx: &JobContext<'_>,
    build: &dyn ObjectStore,
    built: Checksum,
    made: &Made<'_>,
) {
    let result = async {
        let Some(superblock) = read_superblock(build, built).await? else { return Ok(false) };
        let rewritten = rewrite_for(&superblock, made).await?;
        copy_delta(build, &superblock, &rewritten, made.store).await?;
        anyhow::Ok(true)
    };
    match result.await {
        Ok(false) => {}
        Ok(true) => ctx.log(format!("Published the static delta to {}", made.checksum)).await,
        Err(e) => ctx.log(format!("Left out the static delta to {}: {e:#}", made.checksum)).await,
    }
}

/// Checks the uploaded delta against the closure, copies its parts into the build repository
/// under their new names and checks the copies (an upload may still change while a presigned URL
/// lives, the copies cannot), then writes the superblock. Returns whether there was a delta.
async fn take_checked(
    uploads: &dyn ObjectStore,
    source: Checksum,
    closure: &Closure,
    made: &Made<'_>,
) -> anyhow::Result<bool> {
    let Some(superblock) = read_superblock(uploads, source).await? else { return Ok(false) };
    superblock.check_uploaded(source, closure)?;
    let rewritten = rewrite_for(&superblock, made).await?;
    copy_parts(uploads, &superblock, &rewritten, made.store).await?;
    if let Err(e) = rewritten.check_parts(made.store).await {
        discard_parts(&rewritten, made.store).await;
        return Err(e.into());
    }
    write_superblock(&rewritten, made.store).await?;
    Ok(true)
}

/// The from-scratch delta to `to` in `store`, if there is one.
async fn read_superblock(store: &dyn ObjectStore, to: Checksum) -> anyhow::Result<Option<Superblock>> {
    let key = format!("{}/superblock", delta_dir(None, &to));
    let bytes = match read_limited(store, &key, MAX_SUPERBLOCK_SIZE).await {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(StoreError::TooLarge { limit, .. }) => {
            anyhow::bail!("the superblock is larger than the limit of {limit} bytes")
        }
        Err(e) => return Err(e.into()),
    };
    let superblock = Superblock::parse(&bytes)?;
    if (superblock.from, superblock.to) != (None, to) {
        return Err(DeltaError::Mismatch(format!("{key} is not a from-scratch delta to {to}")).into());
    }
    Ok(Some(superblock))
}

/// `superblock` for the commit `made`, carrying the signatures `made` has in its store.
async fn rewrite_for(superblock: &Superblock, made: &Made<'_>) -> anyhow::Result<Superblock> {
    let key = ObjectName::new(made.checksum, ObjectType::CommitMeta).key();
    let commitmeta = match read_limited(made.store, &key, MAX_COMMITMETA_SIZE).await {
        Ok(bytes) => Some(bytes),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e).context("reading the commit's detached metadata"),
    };
    Ok(superblock.rewrite(made.bytes, commitmeta.as_deref())?)
}

/// Copies the parts of `from` (in `src`) to the part keys of `to` (in `dst`), then its superblock.
async fn copy_delta(
    src: &dyn ObjectStore,
    from: &Superblock,
    to: &Superblock,
    dst: &dyn ObjectStore,
) -> anyhow::Result<()> {
    copy_parts(src, from, to, dst).await?;
    write_superblock(to, dst).await
}

async fn copy_parts(
    src: &dyn ObjectStore,
    from: &Superblock,
    to: &Superblock,
    dst: &dyn ObjectStore,
) -> anyhow::Result<()> {
    for index in 0..from.parts.len() {
        let (source, target) = (from.part_key(index), to.part_key(index));
        copy_file(src, &source, dst, &target).await.with_context(|| format!("copying part {index}"))?;
    }
    Ok(())
}

async fn write_superblock(superblock: &Superblock, dst: &dyn ObjectStore) -> anyhow::Result<()> {
    dst.put(&superblock.superblock_key(), Bytes::from(superblock.to_bytes())).await.context("writing the superblock")
}

/// Removes copied parts that failed their check; a failure here only leaves unnamed files behind.
async fn discard_parts(superblock: &Superblock, store: &dyn ObjectStore) {
    for index in 0..superblock.parts.len() {
        if let Err(e) = store.delete(&superblock.part_key(index)).await {
            tracing::warn!(error = %e, "could not remove a static-delta part that failed its check");
        }
    }
}
