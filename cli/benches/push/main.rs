//! Push benchmark: the real `flat-manager` (release build, shipped example config) driven by the
//! real `flat-manager-client`, against the `flatpak` and `ostree` commands flat-manager itself
//! shells out to for the same work, on the same refs, in the same run. Printed as one markdown
//! table.
//!
//! Workloads:
//! - big app v1: the generated ~196 MiB, 5,000-file app (`flatbucket_tests::bigapp`), pushed to
//!   an empty repo;
//! - big app v2: the same app with [`CHANGED_FRACTION`] of its files rewritten, pushed to the
//!   server that holds v1, so only the changed objects travel;
//! - small app: the fixture runtime and app (`flatbucket_tests::fixture::build_repo(1)`);
//! - small app during a delta: the small app pushed end to end while the server's worker
//!   generates the big app's from-scratch static delta (the repo is configured with deltas for
//!   it), and that generation's time, from the big app's publish until its delta index is in the
//!   repo;
//! - serving: `ostree pull --disable-static-deltas` of the big app from the server's `/repo/`.
//!
//! For the big app each phase is timed on its own — upload (`push` without `--commit`),
//! `commit --wait`, `publish --wait` — and then `push --commit --publish --wait` end to end on a
//! fresh build of a second server. The server's peak RSS is its `VmHWM`, reset through
//! `/proc/<pid>/clear_refs` before each timed command, so every phase has its own peak.
//!
//! The references ([`reference`]) replay flat-manager's jobs with `flatpak` and `ostree`, and serve
//! the same repository directory with `python3 -m http.server`. flat-manager's own upload has no
//! stand-in, so upload rows have no reference and end-to-end rows compare against commit +
//! publish alone, which flatters the reference.
//!
//! Run with `cargo bench -p flatbucket-cli --bench push`. Every figure is the median of [`RUNS`]
//! runs, each on fresh servers and fresh reference repos. The inputs were just written and the
//! machine has RAM to spare, so the page cache is warm for both sides alike.

mod ours;
mod reference;
mod report;

use report::seconds;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use flatbucket_tests::bigapp::{self, AppStats, ChangeStats};
use flatbucket_tests::fixture::{self, Fixture};
use flatbucket_tests::flat_manager::Binaries;
use flatbucket_tests::machine::Machine;

/// Every measurement is repeated this often and the median reported.
const RUNS: usize = 3;
/// Share of the big app's files that version 2 rewrites.
const CHANGED_FRACTION: f64 = 0.10;
/// Seed of the version-2 rewrite, so every run pushes the same change.
const CHANGE_SEED: u64 = 2;
/// The example config's repository the builds go to, and its collection ID (the reference's
/// repos get the same, so both sides write collection bindings).
const REPO: &str = "stable";
const COLLECTION_ID: &str = "org.test.Stable";
/// Objects larger than this many MiB stay out of static deltas, on both sides (flatpak's
/// `min-fallback-size`, which the server's generator uses).
const DELTA_MIN_FALLBACK_MB: u32 = 1;
const MIB: f64 = 1024.0 * 1024.0;

fn main() -> anyhow::Result<()> {
    let machine = Machine::detect()?;
    let work =
        tempfile::Builder::new().prefix("flatbucket-push-bench-").tempdir().context("failed to create a work dir")?;
    let inputs = Inputs::prepare(work.path()).context("preparing the inputs")?;
    let binaries = Binaries {
        server: env!("CARGO_BIN_EXE_flat-manager").into(),
        client: env!("CARGO_BIN_EXE_flat-manager-client").into(),
        gentoken: env!("CARGO_BIN_EXE_gentoken").into(),
    };
    let mut results = Results::default();
    let mut leftovers = Leftovers::default();
    for run in 1..=RUNS {
        eprintln!("run {run}/{RUNS}: flatbucket…");
        ours::bench(&binaries, &inputs, &mut results, &mut leftovers).context("flatbucket")?;
        eprintln!("run {run}/{RUNS}: reference…");
        reference::bench(work.path(), &inputs, &mut results.reference, &mut leftovers).context("reference")?;
    }
    print!("{}", report::report(&machine, &inputs, &results));
    Ok(())
}

/// Directories removed only once every measurement is done. On ext4 without a journal (this
/// machine's root filesystem) every new file's inode allocation looks up and skips each inode freed
/// in the last 60–300 s (`recently_deleted` in ext4's `find_inode_bit`), so deleting a 5,000-file
/// repository made the next run's uploads, on either side, up to three times slower.
#[derive(Default)]
struct Leftovers(Vec<tempfile::TempDir>);

impl Leftovers {
    fn keep(&mut self, dir: tempfile::TempDir) {
        self.0.push(dir);
    }
}

/// The local repos pushed, built once and only read afterwards.
struct Inputs {
    big_v1: PathBuf,
    big_v2: PathBuf,
    small: Fixture,
    app: AppStats,
    change: ChangeStats,
}

impl Inputs {
    fn prepare(work: &Path) -> anyhow::Result<Self> {
        let build = work.join("big-app");
        eprintln!("generating the big app…");
        let app = bigapp::write_app(&build, bigapp::SEED)?;
        let big_v1 = work.join("big-v1");
        bigapp::export(&build, &big_v1)?;
        eprintln!("rewriting {:.0}% of its files for version 2…", CHANGED_FRACTION * 100.0);
        let change = bigapp::change_fraction(&build, CHANGE_SEED, CHANGED_FRACTION)?;
        // Its own repo, as a CI build would have: the server, not the local repo, decides what
        // is already there. The build directory stays until the work directory goes (see
        // [`Leftovers`]).
        let big_v2 = work.join("big-v2");
        bigapp::export(&build, &big_v2)?;
        let small = fixture::build_repo(1)?;
        Ok(Self { big_v1, big_v2, small, app, change })
    }

    /// The big app's versions in push order, with their local repos.
    fn big(&self) -> [(Workload, &Path); 2] {
        [(Workload::BigV1, &self.big_v1), (Workload::BigV2, &self.big_v2)]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    BigV1,
    BigV2,
    Small,
    /// The small app, pushed while the big app's static delta is generated.
    SmallDuringDelta,
    /// The big app's from-scratch static delta.
    BigDelta,
    /// The big app (v2) pulled from the repository.
    BigPull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Upload,
    Commit,
    Publish,
    /// Commit plus publish of the same run, so the median is of whole runs.
    CommitAndPublish,
    EndToEnd,
    /// From the publish until the delta index is in the repository (ours) or `ostree
    /// static-delta generate` alone (the reference).
    DeltaGeneration,
    /// `ostree pull --disable-static-deltas` into an empty archive repo.
    Pull,
    /// The server's peak RSS over the whole workload, in bytes (so are the other RSS phases).
    PeakRss,
    /// The server's RSS when the workload starts: what its peak is measured from.
    StartRss,
    UploadPeakRss,
    CommitPeakRss,
    PublishPeakRss,
}

/// Every run's figure for each workload and phase: seconds, or bytes for the RSS phases.
#[derive(Default)]
struct Samples(BTreeMap<(Workload, Phase), Vec<f64>>);

impl Samples {
    fn add(&mut self, workload: Workload, phase: Phase, value: f64) {
        self.0.entry((workload, phase)).or_default().push(value);
    }

    fn median(&self, workload: Workload, phase: Phase) -> Option<f64> {
        self.0.get(&(workload, phase)).map(|values| median(values))
    }
}

#[derive(Default)]
struct Results {
    ours: Samples,
    reference: Samples,
    /// The server's RSS right after it started, in bytes.
    idle_rss: Vec<f64>,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Runs `f` and returns its wall time in seconds.
fn timed(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed().as_secs_f64())
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))
}
