//! The reference: flat-manager's jobs replayed with the `flatpak` and `ostree` commands it runs.
//!
//! Commit is `build-commit-from --untrusted` from the local repo into a fresh build repo whose
//! parent is the main repo, then `build-update-repo` of the build repo; publish is
//! `build-commit-from` from the build repo into the main repo, then `build-update-repo` of the
//! main repo; a static delta is `ostree static-delta generate` in the main repo with the server's
//! parameters. (The serving reference, `python3 -m http.server`, runs beside the server, see
//! `ours`.)

use std::path::Path;

use flatbucket_tests::bigapp;
use flatbucket_tests::fixture;
use flatbucket_tests::tools::{run, Isolated};

use crate::{seconds, timed, Inputs, Leftovers, Phase, Samples, Workload, COLLECTION_ID, DELTA_MIN_FALLBACK_MB};

/// One run: the big app's versions into one main repo (with v1's from-scratch delta in between),
/// the small app into another, each through a fresh build repo as flat-manager makes one per build.
pub fn bench(work: &Path, inputs: &Inputs, samples: &mut Samples, leftovers: &mut Leftovers) -> anyhow::Result<()> {
    let iso = Isolated::new()?;
    let dir = tempfile::Builder::new().prefix("reference-").tempdir_in(work)?;
    let main = dir.path().join("main");
    init_repo(&iso, &main, COLLECTION_ID, None)?;
    for (i, (workload, src)) in inputs.big().into_iter().enumerate() {
        let build = dir.path().join(format!("build-{i}"));
        let times = replay_build(&iso, src, &build, &main, &[bigapp::APP_REF])?;
        record_reference(samples, workload, times);
        if workload == Workload::BigV1 {
            let generation = timed(|| generate_delta(&iso, &main, bigapp::APP_REF))?;
            eprintln!("  BigDelta: reference generation {}", seconds(generation));
            samples.add(Workload::BigDelta, Phase::DeltaGeneration, generation);
        }
    }
    let main = dir.path().join("small-main");
    init_repo(&iso, &main, COLLECTION_ID, None)?;
    let build = dir.path().join("small-build");
    let times = replay_build(&iso, &inputs.small.repo, &build, &main, &[fixture::RUNTIME_REF, fixture::APP_REF])?;
    record_reference(samples, Workload::Small, times);
    leftovers.keep(dir);
    Ok(())
}

/// flat-manager's commit and publish jobs for `refs` of `src`, through the new build repo
/// `build`, into `main`. Returns the seconds of commit and of publish.
fn replay_build(iso: &Isolated, src: &Path, build: &Path, main: &Path, refs: &[&str]) -> anyhow::Result<(f64, f64)> {
    // As flat-manager's create-build: the build repo sees the main repo's objects through
    // `core.parent`, so only objects the main repo lacks are copied into it.
    init_repo(iso, build, &format!("{COLLECTION_ID}.Build1"), Some(main))?;
    let commit = timed(|| reference_commit(iso, src, build, refs))?;
    let publish = timed(|| reference_publish(iso, build, main, refs))?;
    Ok((commit, publish))
}

fn record_reference(samples: &mut Samples, workload: Workload, (commit, publish): (f64, f64)) {
    eprintln!("  {workload:?}: reference commit {}, publish {}", seconds(commit), seconds(publish));
    samples.add(workload, Phase::Commit, commit);
    samples.add(workload, Phase::Publish, publish);
    samples.add(workload, Phase::CommitAndPublish, commit + publish);
}

/// flat-manager's commit job: one `build-commit-from` per ref from the uploads, then
/// `build-update-repo` so the build repo is installable.
fn reference_commit(iso: &Isolated, src: &Path, build: &Path, refs: &[&str]) -> anyhow::Result<()> {
    for ref_name in refs {
        run(iso
            .flatpak()
            .args(["build-commit-from", "--timestamp=NOW", "--no-update-summary", "--untrusted", "--force"])
            .arg("--disable-fsync")
            .arg(src_repo(src))
            .arg(build)
            .arg(ref_name))?;
    }
    run(iso.flatpak().arg("build-update-repo").arg(build))?;
    Ok(())
}

/// flat-manager's publish job (`build-commit-from` into the main repo) and the update-repo job
/// it queues (`build-update-repo`: appstream and summary).
fn reference_publish(iso: &Isolated, build: &Path, main: &Path, refs: &[&str]) -> anyhow::Result<()> {
    run(iso
        .flatpak()
        .args(["build-commit-from", "--force", "--no-update-summary"])
        .arg(src_repo(build))
        .arg(main)
        .args(refs))?;
    run(iso.flatpak().arg("build-update-repo").arg(main))?;
    Ok(())
}

/// `ostree static-delta generate --empty` to `ref_name` in `repo`, as the server's generator
/// does it (flatpak's `min-fallback-size`).
fn generate_delta(iso: &Isolated, repo: &Path, ref_name: &str) -> anyhow::Result<()> {
    let flag = format!("--repo={}", repo.display());
    let fallback = format!("--min-fallback-size={DELTA_MIN_FALLBACK_MB}");
    run(iso.ostree().args(["static-delta", "generate", &flag, "--empty", &fallback, "--to", ref_name]))?;
    Ok(())
}

fn src_repo(path: &Path) -> String {
    format!("--src-repo={}", path.display())
}

/// Creates an archive-z2 repo with `collection_id` and, if given, a parent repo.
fn init_repo(iso: &Isolated, repo: &Path, collection_id: &str, parent: Option<&Path>) -> anyhow::Result<()> {
    let flag = format!("--repo={}", repo.display());
    run(iso.ostree().args(["init", "--mode=archive-z2", &flag]))?;
    run(iso.ostree().args(["config", &flag, "set", "core.collection-id", collection_id]))?;
    if let Some(parent) = parent {
        run(iso.ostree().args(["config", &flag, "set", "core.parent"]).arg(parent))?;
    }
    Ok(())
}
