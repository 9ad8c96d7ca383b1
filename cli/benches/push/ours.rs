//! flatbucket's side: the real server and client, one fresh server per workload.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use flatbucket::repo::{delta_index_key, Checksum};
use flatbucket_tests::bigapp;
use flatbucket_tests::fixture;
use flatbucket_tests::flat_manager::{Binaries, FlatManager};
use flatbucket_tests::tools::{run, HttpServer, Isolated};

use crate::{path_str, seconds, timed, Inputs, Leftovers, Phase, Results, Samples, Workload, MIB, REPO};

/// Longest wait for the big app's from-scratch delta (about a minute on 2 cores).
const DELTA_TIMEOUT: Duration = Duration::from_secs(600);

/// One run: the big app phase by phase on one server, end to end on a second, the small app on a
/// third, the small app during the big app's delta generation on a fourth; then the big app is
/// pulled from the first.
pub fn bench(binaries: &Binaries, inputs: &Inputs, results: &mut Results, left: &mut Leftovers) -> anyhow::Result<()> {
    let server = phase_by_phase(binaries, inputs, results)?;
    end_to_end(binaries, inputs, &mut results.ours)?.retire(left);
    small_end_to_end(binaries, inputs, &mut results.ours)?.retire(left);
    publish_during_delta(binaries, inputs, &mut results.ours)?.retire(left);
    serve(&server, results, left)?;
    server.retire(left);
    Ok(())
}

/// A started `flat-manager` with a token for it.
struct Server {
    manager: FlatManager,
    token: String,
    pid: u32,
}

impl Server {
    fn start(binaries: &Binaries) -> anyhow::Result<Self> {
        Self::start_with(binaries, |_| ())
    }

    /// A server on the example config as changed by `adjust`.
    fn start_with(binaries: &Binaries, adjust: impl FnOnce(&mut serde_json::Value)) -> anyhow::Result<Self> {
        let manager = FlatManager::start_with(binaries.clone(), adjust)?;
        let token = manager.token("bench")?;
        let pid = manager.pid().context("the server is not running")?;
        Ok(Self { manager, token, pid })
    }

    /// Stops the server and leaves its directory to `leftovers`.
    fn retire(self, leftovers: &mut Leftovers) {
        let FlatManager { dir, .. } = self.manager;
        leftovers.keep(dir);
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

    /// `push --commit --publish --wait` of `repo` into a new build: its wall time.
    fn push_all(&self, repo: &Path) -> anyhow::Result<f64> {
        let build = self.create()?;
        self.timed(&["push", "--commit", "--publish", "--wait", &build, path_str(repo)?])
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
        let path = self.repo().join("refs/heads").join(ref_name);
        let commit = std::fs::read_to_string(&path).with_context(|| format!("{ref_name} is not published"))?;
        Ok(commit.trim().to_owned())
    }

    /// The published repository's directory.
    fn repo(&self) -> std::path::PathBuf {
        self.manager.repo_path(REPO)
    }
}

/// The big app's versions pushed phase by phase into one server, which is returned with both
/// published.
fn phase_by_phase(binaries: &Binaries, inputs: &Inputs, results: &mut Results) -> anyhow::Result<Server> {
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
    Ok(server)
}

fn end_to_end(binaries: &Binaries, inputs: &Inputs, samples: &mut Samples) -> anyhow::Result<Server> {
    let server = Server::start(binaries)?;
    for (workload, repo) in inputs.big() {
        let wall = server.push_all(repo)?;
        samples.add(workload, Phase::EndToEnd, wall);
        eprintln!("  {workload:?}: end to end {}", seconds(wall));
        server.published(bigapp::APP_REF)?;
    }
    Ok(server)
}

fn small_end_to_end(binaries: &Binaries, inputs: &Inputs, samples: &mut Samples) -> anyhow::Result<Server> {
    let server = Server::start(binaries)?;
    samples.add(Workload::Small, Phase::StartRss, server.rss()?);
    server.reset_peak_rss()?;
    let wall = server.push_all(&inputs.small.repo)?;
    let peak_rss = server.peak_rss()?;
    samples.add(Workload::Small, Phase::EndToEnd, wall);
    samples.add(Workload::Small, Phase::PeakRss, peak_rss);
    eprintln!("  Small: end to end {}, peak RSS {:.0} MiB", seconds(wall), peak_rss / MIB);
    server.published(fixture::APP_REF)?;
    server.published(fixture::RUNTIME_REF)?;
    Ok(server)
}

/// The big app v1 published into a repository with static deltas for it, which queues its
/// from-scratch delta on the server's worker; the small app pushed end to end at once, while that
/// delta is generated; then the wait until the delta index is in the repository.
fn publish_during_delta(binaries: &Binaries, inputs: &Inputs, samples: &mut Samples) -> anyhow::Result<Server> {
    let server = Server::start_with(binaries, |config| {
        config["repos"][REPO]["deltas"] = serde_json::json!([{"id": [bigapp::APP_ID], "depth": 1}]);
    })?;
    server.push_all(&inputs.big_v1)?;
    let published = Instant::now();
    let commit = Checksum::from_hex(&server.published(bigapp::APP_REF)?)?;
    let index = server.repo().join(delta_index_key(&commit));
    let start_rss = server.rss()?;
    server.reset_peak_rss()?;
    let small = server.push_all(&inputs.small.repo)?;
    ensure!(!index.exists(), "the big app's delta was ready before the small app's publish ended: no overlap measured");
    server.published(fixture::APP_REF)?;
    while !index.exists() {
        ensure!(published.elapsed() < DELTA_TIMEOUT, "no delta index for {commit} after {DELTA_TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let generation = published.elapsed().as_secs_f64();
    let peak_rss = server.peak_rss()?;
    samples.add(Workload::SmallDuringDelta, Phase::EndToEnd, small);
    samples.add(Workload::BigDelta, Phase::DeltaGeneration, generation);
    samples.add(Workload::BigDelta, Phase::StartRss, start_rss);
    samples.add(Workload::BigDelta, Phase::PeakRss, peak_rss);
    eprintln!(
        "  small app during the delta: end to end {}; delta generated in {}, peak RSS {:.0} MiB",
        seconds(small),
        seconds(generation),
        peak_rss / MIB
    );
    Ok(server)
}

/// `ostree pull --disable-static-deltas` of the big app from the server's `/repo/`, and from
/// `python3 -m http.server` serving the same directory (the reference), with the server's peak RSS.
fn serve(server: &Server, results: &mut Results, leftovers: &mut Leftovers) -> anyhow::Result<()> {
    let expected = server.published(bigapp::APP_REF)?;
    let python = HttpServer::serve(&server.repo())?;
    let theirs = pull(&python.url(), &expected, leftovers)?;
    results.ours.add(Workload::BigPull, Phase::StartRss, server.rss()?);
    server.reset_peak_rss()?;
    let ours = pull(&format!("{}/repo/{REPO}/", server.manager.url()), &expected, leftovers)?;
    let peak_rss = server.peak_rss()?;
    results.ours.add(Workload::BigPull, Phase::Pull, ours);
    results.ours.add(Workload::BigPull, Phase::PeakRss, peak_rss);
    results.reference.add(Workload::BigPull, Phase::Pull, theirs);
    eprintln!(
        "  pull: {} from /repo/, {} from http.server; peak RSS {:.0} MiB",
        seconds(ours),
        seconds(theirs),
        peak_rss / MIB
    );
    Ok(())
}

/// `ostree pull --disable-static-deltas` of the big app from `url` into a new archive repo,
/// timed; the pulled commit must be `expected`.
fn pull(url: &str, expected: &str, leftovers: &mut Leftovers) -> anyhow::Result<f64> {
    let iso = Isolated::new()?;
    let dest = tempfile::Builder::new().prefix("pulled-").tempdir().context("failed to create a pull repo")?;
    let flag = format!("--repo={}", dest.path().display());
    run(iso.ostree().args(["init", "--mode=archive", &flag]))?;
    run(iso.ostree().args(["remote", "add", "--no-gpg-verify", &flag, "bench", url]))?;
    let pull =
        || run(iso.ostree().args(["pull", "--disable-static-deltas", &flag, "bench", bigapp::APP_REF])).map(drop);
    let wall = timed(pull)?;
    let pulled = run(iso.ostree().args(["rev-parse", &flag, &format!("bench:{}", bigapp::APP_REF)]))?;
    ensure!(pulled.trim() == expected, "pulled {} from {url}, expected {expected}", pulled.trim());
    leftovers.keep(dest);
    Ok(wall)
}
