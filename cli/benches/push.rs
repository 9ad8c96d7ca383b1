//! Push benchmark: the real `flat-manager` (release build, shipped example config) driven by the
//! real `flat-manager-client`, against the `flatpak` commands flat-manager itself shells out to
//! for the same work, on the same refs, in the same run. Printed as one markdown table.
//!
//! Workloads:
//! - big app v1: the generated ~196 MiB, 5,000-file app (`flatbucket_tests::bigapp`), pushed to
//!   an empty repo;
//! - big app v2: the same app with [`CHANGED_FRACTION`] of its files rewritten, pushed to the
//!   server that holds v1, so only the changed objects travel;
//! - small app: the fixture runtime and app (`flatbucket_tests::fixture::build_repo(1)`).
//!
//! For the big app each phase is timed on its own — upload (`push` without `--commit`),
//! `commit --wait`, `publish --wait` — and then `push --commit --publish --wait` end to end on a
//! fresh build of a second server. The small app is only timed end to end. The server's peak RSS
//! is its `VmHWM`, reset through `/proc/<pid>/clear_refs` before each timed command, so every
//! phase has its own peak.
//!
//! The reference replays flat-manager's jobs with `flatpak`: commit is `build-commit-from
//! --untrusted` from the local repo into a fresh build repo whose parent is the main repo, then
//! `build-update-repo` of the build repo; publish is `build-commit-from` from the build repo into
//! the main repo, then `build-update-repo` of the main repo. flat-manager's own upload has no
//! stand-in, so upload rows have no reference and end-to-end rows compare against commit +
//! publish alone, which flatters the reference.
//!
//! Run with `cargo bench -p flatbucket-cli --bench push`. Every figure is the median of [`RUNS`]
//! runs, each on fresh servers and fresh reference repos. The inputs were just written and the
//! machine has RAM to spare, so the page cache is warm for both sides alike.

use flatbucket_tests::machine::Machine;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context};
use flatbucket_tests::bigapp::{self, AppStats, ChangeStats};
use flatbucket_tests::fixture::{self, Fixture};
use flatbucket_tests::flat_manager::{Binaries, FlatManager};
use flatbucket_tests::tools::{run, Isolated};

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
    for run in 1..=RUNS {
        eprintln!("run {run}/{RUNS}: flatbucket…");
        bench_flatbucket(&binaries, &inputs, &mut results).context("flatbucket")?;
        eprintln!("run {run}/{RUNS}: reference…");
        bench_reference(work.path(), &inputs, &mut results.reference).context("reference")?;
    }
    print!("{}", report(&machine, &inputs, &results));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

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
        // is already there.
        let big_v2 = work.join("big-v2");
        bigapp::export(&build, &big_v2)?;
        std::fs::remove_dir_all(&build).with_context(|| format!("failed to remove {}", build.display()))?;
        let small = fixture::build_repo(1)?;
        Ok(Self { big_v1, big_v2, small, app, change })
    }

    /// The big app's versions in push order, with their local repos.
    fn big(&self) -> [(Workload, &Path); 2] {
        [(Workload::BigV1, &self.big_v1), (Workload::BigV2, &self.big_v2)]
    }
}

// ---------------------------------------------------------------------------------------------
// Samples
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    BigV1,
    BigV2,
    Small,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Upload,
    Commit,
    Publish,
    /// Commit plus publish of the same run, so the median is of whole runs.
    CommitAndPublish,
    EndToEnd,
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

// ---------------------------------------------------------------------------------------------
// flatbucket
// ---------------------------------------------------------------------------------------------

/// A started `flat-manager` with a token for it.
struct Server {
    manager: FlatManager,
    token: String,
    pid: u32,
}

impl Server {
    fn start(binaries: &Binaries) -> anyhow::Result<Self> {
        let manager = FlatManager::start(binaries.clone())?;
        let token = manager.token("bench")?;
        let pid = manager.pid().context("the server is not running")?;
        Ok(Self { manager, token, pid })
    }

    /// Creates a build in [`REPO`] and returns its URL.
    fn create(&self) -> anyhow::Result<String> {
        Ok(self.client(&["create", &self.manager.url(), REPO])?.trim().to_owned())
    }

    fn client(&self, args: &[&str]) -> anyhow::Result<String> {
        self.manager.run_client(&self.token, args)
    }

    /// The wall time of one client command.
    fn timed(&self, args: &[&str]) -> anyhow::Result<f64> {
        timed(|| self.client(args).map(drop))
    }

    /// The wall time of one client command and the server's peak RSS while it ran.
    fn timed_with_peak(&self, args: &[&str]) -> anyhow::Result<(f64, f64)> {
        self.reset_peak_rss()?;
        let seconds = self.timed(args)?;
        Ok((seconds, self.peak_rss()?))
    }

    /// Starts a new peak: writing 5 to `clear_refs` resets `VmHWM` to the current RSS.
    fn reset_peak_rss(&self) -> anyhow::Result<()> {
        let path = format!("/proc/{}/clear_refs", self.pid);
        std::fs::write(&path, "5").with_context(|| format!("failed to reset the peak RSS through {path}"))
    }

    /// The server's peak RSS since start or the last reset, in bytes.
    fn peak_rss(&self) -> anyhow::Result<f64> {
        self.status_kib("VmHWM").map(|kib| kib * 1024.0)
    }

    fn rss(&self) -> anyhow::Result<f64> {
        self.status_kib("VmRSS").map(|kib| kib * 1024.0)
    }

    /// A `kB` field of `/proc/<pid>/status`.
    fn status_kib(&self, field: &str) -> anyhow::Result<f64> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
        let value = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .with_context(|| format!("no {field} in {path}"))?;
        let kib = value.trim().trim_end_matches("kB").trim();
        kib.parse().with_context(|| format!("unexpected {field} in {path}: {value}"))
    }

    /// The commit `ref_name` points at in the published repo.
    fn published(&self, ref_name: &str) -> anyhow::Result<String> {
        let path = self.manager.repo_path(REPO).join("refs/heads").join(ref_name);
        let commit = std::fs::read_to_string(&path).with_context(|| format!("{ref_name} is not published"))?;
        Ok(commit.trim().to_owned())
    }
}

/// One run: the big app phase by phase on one server, end to end on a second, the small app on a
/// third.
fn bench_flatbucket(binaries: &Binaries, inputs: &Inputs, results: &mut Results) -> anyhow::Result<()> {
    phase_by_phase(binaries, inputs, results)?;
    end_to_end(binaries, inputs, &mut results.ours)?;
    small_end_to_end(binaries, inputs, &mut results.ours)
}

fn phase_by_phase(binaries: &Binaries, inputs: &Inputs, results: &mut Results) -> anyhow::Result<()> {
    let server = Server::start(binaries)?;
    results.idle_rss.push(server.rss()?);
    let mut previous = None;
    for (workload, repo) in inputs.big() {
        let start_rss = server.rss()?;
        let build = server.create()?;
        let (upload, upload_rss) = server.timed_with_peak(&["push", &build, path_str(repo)?])?;
        let (commit, commit_rss) = server.timed_with_peak(&["commit", "--wait", &build])?;
        let (publish, publish_rss) = server.timed_with_peak(&["publish", "--wait", &build])?;
        let samples = &mut results.ours;
        samples.add(workload, Phase::Upload, upload);
        samples.add(workload, Phase::Commit, commit);
        samples.add(workload, Phase::Publish, publish);
        samples.add(workload, Phase::CommitAndPublish, commit + publish);
        samples.add(workload, Phase::StartRss, start_rss);
        samples.add(workload, Phase::UploadPeakRss, upload_rss);
        samples.add(workload, Phase::CommitPeakRss, commit_rss);
        samples.add(workload, Phase::PublishPeakRss, publish_rss);
        samples.add(workload, Phase::PeakRss, upload_rss.max(commit_rss).max(publish_rss));
        // Every run's figures, so the spread behind the medians is on record.
        eprintln!(
            "  {workload:?}: upload {}, commit {}, publish {}; peak RSS MiB upload {:.0}, commit {:.0}, publish {:.0}",
            seconds(upload),
            seconds(commit),
            seconds(publish),
            upload_rss / MIB,
            commit_rss / MIB,
            publish_rss / MIB
        );
        // Each version must really land: v2 replaces v1.
        let published = server.published(bigapp::APP_REF)?;
        ensure!(previous.as_ref() != Some(&published), "publishing {workload:?} left the ref at {published}");
        previous = Some(published);
    }
    Ok(())
}

fn end_to_end(binaries: &Binaries, inputs: &Inputs, samples: &mut Samples) -> anyhow::Result<()> {
    let server = Server::start(binaries)?;
    for (workload, repo) in inputs.big() {
        let build = server.create()?;
        let wall = server.timed(&["push", "--commit", "--publish", "--wait", &build, path_str(repo)?])?;
        samples.add(workload, Phase::EndToEnd, wall);
        eprintln!("  {workload:?}: end to end {}", seconds(wall));
        server.published(bigapp::APP_REF)?;
    }
    Ok(())
}

fn small_end_to_end(binaries: &Binaries, inputs: &Inputs, samples: &mut Samples) -> anyhow::Result<()> {
    let server = Server::start(binaries)?;
    samples.add(Workload::Small, Phase::StartRss, server.rss()?);
    let build = server.create()?;
    let repo = path_str(&inputs.small.repo)?;
    let (wall, peak_rss) = server.timed_with_peak(&["push", "--commit", "--publish", "--wait", &build, repo])?;
    samples.add(Workload::Small, Phase::EndToEnd, wall);
    eprintln!("  Small: end to end {}, peak RSS {:.0} MiB", seconds(wall), peak_rss / MIB);
    samples.add(Workload::Small, Phase::PeakRss, peak_rss);
    server.published(fixture::APP_REF)?;
    server.published(fixture::RUNTIME_REF)?;
    Ok(())
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Reference: flat-manager's flatpak commands
// ---------------------------------------------------------------------------------------------

/// One run: the big app's versions into one main repo, the small app into another, each
/// through a fresh build repo as flat-manager makes one per build.
fn bench_reference(work: &Path, inputs: &Inputs, samples: &mut Samples) -> anyhow::Result<()> {
    let iso = Isolated::new()?;
    let dir = tempfile::Builder::new().prefix("reference-").tempdir_in(work)?;
    let main = dir.path().join("main");
    init_repo(&iso, &main, COLLECTION_ID, None)?;
    for (i, (workload, src)) in inputs.big().into_iter().enumerate() {
        let build = dir.path().join(format!("build-{i}"));
        let times = replay_build(&iso, src, &build, &main, &[bigapp::APP_REF])?;
        record_reference(samples, workload, times);
    }
    let main = dir.path().join("small-main");
    init_repo(&iso, &main, COLLECTION_ID, None)?;
    let build = dir.path().join("small-build");
    let times = replay_build(&iso, &inputs.small.repo, &build, &main, &[fixture::RUNTIME_REF, fixture::APP_REF])?;
    record_reference(samples, Workload::Small, times);
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

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

impl Workload {
    fn label(self, inputs: &Inputs) -> String {
        match self {
            Workload::BigV1 => format!(
                "Big app v1 ({} files, {:.0} MiB, empty repo)",
                thousands(inputs.app.files),
                inputs.app.bytes as f64 / MIB
            ),
            Workload::BigV2 => format!(
                "Big app v2 ({} files / {:.1} MiB changed, onto v1)",
                thousands(inputs.change.files),
                inputs.change.bytes as f64 / MIB
            ),
            Workload::Small => "Small app (fixture runtime + app)".to_owned(),
        }
    }
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Upload => "upload (`push`)",
            Phase::Commit => "commit (`commit --wait`)",
            Phase::Publish => "publish (`publish --wait`)",
            Phase::CommitAndPublish => "commit + publish",
            Phase::EndToEnd => "end to end (`push --commit --publish --wait`, fresh build)",
            Phase::PeakRss => "server peak RSS (VmHWM)",
            // Shown inside the peak RSS row.
            Phase::StartRss => "server RSS at the workload's start",
            Phase::UploadPeakRss => "server peak RSS during upload",
            Phase::CommitPeakRss => "server peak RSS during commit",
            Phase::PublishPeakRss => "server peak RSS during publish",
        }
    }
}

/// The phases shown for each workload, in table order.
const PHASES: [Phase; 6] =
    [Phase::Upload, Phase::Commit, Phase::Publish, Phase::CommitAndPublish, Phase::EndToEnd, Phase::PeakRss];

fn report(machine: &Machine, inputs: &Inputs, results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n| Workload | phase | flatbucket | reference | ratio |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for workload in [Workload::BigV1, Workload::BigV2, Workload::Small] {
        for phase in PHASES {
            if let Some(row) = row(workload, phase, results) {
                let _ = writeln!(out, "| {} | {} | {row} |", workload.label(inputs), phase.label());
            }
        }
    }
    let _ = writeln!(
        out,
        "\nMachine: {} cores ({}), {}; {}, {}. Median of {RUNS} runs each, fresh servers and repos per run, \
         warm page cache. ratio = reference time / flatbucket time (above 1: flatbucket is faster). \
         Server RSS when idle after start: {:.1} MiB; peak RSS rows add, in MiB, the RSS when the workload \
         began and each phase's own peak (VmHWM reset through /proc/<pid>/clear_refs before each).",
        machine.cores,
        machine.cpu,
        std::env::consts::ARCH,
        machine.flatpak,
        machine.ostree,
        median(&results.idle_rss) / MIB,
    );
    let _ = writeln!(
        out,
        "Reference: commit = `flatpak build-commit-from --untrusted --force --disable-fsync` into a fresh build repo \
         (parent: the main repo) + `flatpak build-update-repo` of it; publish = `flatpak build-commit-from --force` \
         into the main repo + `flatpak build-update-repo` of it; end to end = commit + publish, with no upload."
    );
    out
}

/// The figures of one row (`flatbucket | reference | ratio`), if flatbucket measured the phase.
fn row(workload: Workload, phase: Phase, results: &Results) -> Option<String> {
    let ours = results.ours.median(workload, phase)?;
    if phase == Phase::PeakRss {
        return Some(format!("{} | — | —", rss_cell(workload, ours, &results.ours)));
    }
    // flat-manager's upload has no stand-in; its end to end is at least its commit + publish.
    let (reference, note) = match phase {
        Phase::EndToEnd => (results.reference.median(workload, Phase::CommitAndPublish), " (commit + publish only)"),
        _ => (results.reference.median(workload, phase), ""),
    };
    Some(match reference {
        Some(theirs) => format!("{} | {}{note} | {:.2}×", seconds(ours), seconds(theirs), theirs / ours),
        None => format!("{} | — | —", seconds(ours)),
    })
}

/// The workload's peak RSS, with what the server held at its start and, when measured, each
/// phase's own peak.
fn rss_cell(workload: Workload, peak: f64, samples: &Samples) -> String {
    let mib = |phase| samples.median(workload, phase).map(|bytes| format!("{:.0}", bytes / MIB));
    let mut details = Vec::new();
    if let Some(start) = mib(Phase::StartRss) {
        details.push(format!("{start} at start"));
    }
    for (phase, name) in
        [(Phase::UploadPeakRss, "upload"), (Phase::CommitPeakRss, "commit"), (Phase::PublishPeakRss, "publish")]
    {
        if let Some(value) = mib(phase) {
            details.push(format!("{name} {value}"));
        }
    }
    format!("{:.1} MiB ({})", peak / MIB, details.join(", "))
}

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// `10000` as `10,000`.
fn thousands(n: usize) -> String {
    let reversed: Vec<char> = n.to_string().chars().rev().collect();
    let groups: Vec<String> = reversed.chunks(3).rev().map(|group| group.iter().rev().collect()).collect();
    groups.join(",")
}
