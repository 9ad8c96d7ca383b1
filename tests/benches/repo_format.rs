//! Repository-format benchmark: flatbucket against the reference tools on the same input, in the
//! same run, printed as a markdown table with ratios.
//!
//! 1. Verification throughput: a generated ~196 MiB Flatpak app (fixed seed, from
//!    `flatbucket_tests::bigapp`) is exported with
//!    `flatpak build-export`, then verified by `verify_commit` and by `ostree fsck`.
//! 2. Summaries for 10,000 refs: a synthetic archive repo written by flatbucket's own writer is
//!    published by `build_summaries` + `write_summaries` and by `flatpak build-update-repo`.
//!
//! Run with `cargo bench -p flatbucket-tests --bench repo_format`. Every figure is the median of
//! [`RUNS`] runs. All runs are warm: the objects were just written, so they sit in the page cache
//! for both tools alike and the figures are CPU-bound, not disk-bound.

use flatbucket_tests::machine::Machine;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use flatbucket::repo::layout::init_local_repo;
use flatbucket::repo::local::{list_refs, read_commit, resolve_ref};
use flatbucket::repo::publish::{build_summaries, write_summaries};
use flatbucket::repo::record::RefRecord;
use flatbucket::repo::summary::{
    all_subsummaries, compat_summary, parse_index, parse_summary, summary_index, IndexEntry, SummarySettings,
};
use flatbucket::repo::verify::{verify_commit, Verified};
use flatbucket::repo::Checksum;
use flatbucket::store::{LocalStore, ObjectStore};
use flatbucket_tests::bigapp::{self, AppStats, APP_REF, SEED};
use flatbucket_tests::many_refs;
use flatbucket_tests::tools::{run, Isolated};
use tokio::runtime::Runtime;

/// Every measurement is repeated this often and the median reported.
const RUNS: usize = 3;
const MIB: usize = 1024 * 1024;
/// MB/s figures use decimal megabytes.
const MB: f64 = 1e6;
/// The target: verification of at least this many MB/s per core.
const VERIFY_TARGET_MB_S_PER_CORE: f64 = 150.0;

/// Refs in the synthetic summary repo.
const SUMMARY_REFS: usize = 10_000;
/// The target: a publish of [`SUMMARY_REFS`] refs in under this many seconds.
const SUMMARY_TARGET_SECONDS: f64 = 1.0;

fn main() -> anyhow::Result<()> {
    let machine = Machine::detect()?;
    let work = tempfile::Builder::new().prefix("flatbucket-bench-").tempdir().context("failed to create a work dir")?;
    let verification = bench_verification(work.path(), machine.cores).context("verification benchmark")?;
    let summaries = bench_summaries(work.path()).context("summary benchmark")?;
    print_report(&machine, &verification, &summaries);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------------------------

/// One line of the table.
struct Row {
    what: String,
    ours: String,
    reference: String,
    /// flatbucket's speed over the reference's (above 1: flatbucket is faster).
    ratio: Option<f64>,
}

impl Row {
    /// A throughput row: higher is better, the ratio is ours / theirs.
    fn rate(what: impl Into<String>, ours: f64, reference: Option<(f64, &str)>) -> Self {
        let (reference, ratio) = match reference {
            Some((theirs, tool)) => (format!("{theirs:.0} MB/s ({tool})"), Some(ours / theirs)),
            None => ("—".to_owned(), None),
        };
        Self { what: what.into(), ours: format!("{ours:.0} MB/s"), reference, ratio }
    }

    /// A duration row: lower is better, so the speed ratio is theirs / ours.
    fn time(what: impl Into<String>, ours: f64, reference: Option<(f64, &str)>) -> Self {
        let (reference, ratio) = match reference {
            Some((theirs, tool)) => (format!("{} ({tool})", seconds(theirs)), Some(theirs / ours)),
            None => ("—".to_owned(), None),
        };
        Self { what: what.into(), ours: seconds(ours), reference, ratio }
    }
}

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn print_report(machine: &Machine, verification: &VerifyResults, summaries: &SummaryResults) {
    let mut rows = verification.rows(machine.cores);
    rows.extend(summaries.rows());
    let mut out = String::new();
    let _ = writeln!(out, "\n| Measurement | flatbucket | reference | ratio |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for row in &rows {
        let ratio = row.ratio.map_or("—".to_owned(), |r| format!("{r:.2}×"));
        let _ = writeln!(out, "| {} | {} | {} | {ratio} |", row.what, row.ours, row.reference);
    }
    let _ = writeln!(
        out,
        "\nMachine: {} cores ({}), {}; {}, {}. Median of {RUNS} runs each; MB = 10^6 bytes; \
         ratio = flatbucket speed / reference speed.",
        machine.cores,
        machine.cpu,
        std::env::consts::ARCH,
        machine.flatpak,
        machine.ostree
    );
    let _ = writeln!(out, "\n{}", verification.notes(machine.cores));
    let _ = writeln!(out, "{}", summaries.notes());
    print!("{out}");
}

// ---------------------------------------------------------------------------------------------
// Timing helpers
// ---------------------------------------------------------------------------------------------

/// Wall and CPU seconds of one run.
#[derive(Clone, Copy)]
struct Sample {
    wall: f64,
    cpu: f64,
}

/// The median wall time and median CPU time of a set of runs.
fn median(samples: &[Sample]) -> Sample {
    let pick = |f: fn(&Sample) -> f64| {
        let mut values: Vec<f64> = samples.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Sample { wall: pick(|s| s.wall), cpu: pick(|s| s.cpu) }
}

/// CPU seconds (user + system) used so far by this process and by the children it waited for,
/// from `/proc/self/stat`: the children's share is how a tool's CPU time is seen without libc.
fn cpu_seconds() -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("failed to read /proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').context("unexpected /proc/self/stat")?.1;
    let fields: Vec<f64> = rest.split_whitespace().skip(11).take(4).map(|f| f.parse().unwrap_or(0.0)).collect();
    ensure!(fields.len() == 4, "unexpected /proc/self/stat: {stat}");
    // USER_HZ (`getconf CLK_TCK`) is 100 on x86 and ARM Linux.
    let ticks = 100.0;
    Ok(((fields[0] + fields[1]) / ticks, (fields[2] + fields[3]) / ticks))
}

/// Times `f`, counting CPU time of this process and of the children it runs.
fn measure<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(Sample, T)> {
    let (own, children) = cpu_seconds()?;
    let start = Instant::now();
    let value = f()?;
    let wall = start.elapsed().as_secs_f64();
    let (own_after, children_after) = cpu_seconds()?;
    Ok((Sample { wall, cpu: own_after - own + children_after - children }, value))
}

/// Runs `f` [`RUNS`] times after `prepare`, returning the median and the last run's value.
fn repeat<T>(
    mut prepare: impl FnMut() -> anyhow::Result<()>,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Sample, T)> {
    let mut samples = Vec::with_capacity(RUNS);
    let mut last = None;
    for _ in 0..RUNS {
        prepare()?;
        let (sample, value) = measure(&mut f)?;
        samples.push(sample);
        last = Some(value);
    }
    Ok((median(&samples), last.expect("RUNS > 0")))
}

/// The preparation step of a measurement that needs none.
fn nothing() -> anyhow::Result<()> {
    Ok(())
}

/// `10000` as `10,000`.
fn thousands(n: usize) -> String {
    let reversed: Vec<char> = n.to_string().chars().rev().collect();
    let groups: Vec<String> = reversed.chunks(3).rev().map(|group| group.iter().rev().collect()).collect();
    groups.join(",")
}

/// Seconds since the epoch, for summary timestamps.
fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Pins this process (every thread, and every child it starts later) to one CPU until dropped,
/// with `taskset`: std has no affinity API and the workspace denies unsafe code.
struct PinnedToOneCpu {
    pid: String,
    original: String,
}

impl PinnedToOneCpu {
    fn new() -> anyhow::Result<Self> {
        let pid = std::process::id().to_string();
        let current = run(Command::new("taskset").args(["-c", "-p", &pid]))?;
        let original = current.rsplit_once(':').context("unexpected taskset output")?.1.trim().to_owned();
        let first: String = original.chars().take_while(char::is_ascii_digit).collect();
        run(Command::new("taskset").args(["-a", "-c", "-p", &first, &pid]))?;
        Ok(Self { pid, original })
    }
}

impl Drop for PinnedToOneCpu {
    fn drop(&mut self) {
        // Nothing can be done about a failure here; later figures would only use fewer cores.
        let _ = run(Command::new("taskset").args(["-a", "-c", "-p", &self.original, &self.pid]));
    }
}

fn multi_thread_runtime() -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("failed to build a tokio runtime")
}

// ---------------------------------------------------------------------------------------------
// 1. Verification throughput
// ---------------------------------------------------------------------------------------------

struct VerifyResults {
    app: AppStats,
    content_bytes: u64,
    stored_bytes: u64,
    concurrency: usize,
    /// Multi-thread runtime, concurrency 2 × cores.
    ours_all: Sample,
    /// One worker, concurrency 1, process pinned to one CPU.
    ours_one: Sample,
    /// `ostree fsck`, unpinned.
    ostree_all: Sample,
    /// `ostree fsck` pinned to one CPU.
    ostree_one: Sample,
}

impl VerifyResults {
    fn mb_s(&self, sample: Sample) -> f64 {
        self.content_bytes as f64 / MB / sample.wall
    }

    fn mb_per_cpu_s(&self, sample: Sample) -> f64 {
        self.content_bytes as f64 / MB / sample.cpu
    }

    fn per_core(&self, cores: usize) -> f64 {
        self.mb_s(self.ours_all) / cores as f64
    }

    fn rows(&self, cores: usize) -> Vec<Row> {
        let size = format!("{:.0} MiB", self.content_bytes as f64 / MIB as f64);
        let ostree = "ostree fsck";
        vec![
            Row::rate(
                format!("Verify {size}: content MB/s, all {cores} cores (concurrency {})", self.concurrency),
                self.mb_s(self.ours_all),
                Some((self.mb_s(self.ostree_all), ostree)),
            ),
            // ostree fsck is single-threaded: its per-core figure is the one-core row, and dividing
            // its wall figure by the cores would understate it.
            Row::rate(
                format!("Verify: MB/s per core (all-core figure ÷ {cores}; target ≥ {VERIFY_TARGET_MB_S_PER_CORE:.0})"),
                self.per_core(cores),
                None,
            ),
            Row::rate(
                "Verify: MB/s on one core (pinned, 1 worker, concurrency 1)",
                self.mb_s(self.ours_one),
                Some((self.mb_s(self.ostree_one), "ostree fsck, pinned")),
            ),
            Row::rate(
                "Verify: MB/s per CPU-second (user+sys, all-core run)",
                self.mb_per_cpu_s(self.ours_all),
                Some((self.mb_per_cpu_s(self.ostree_all), ostree)),
            ),
        ]
    }

    fn notes(&self, cores: usize) -> String {
        let per_core = self.per_core(cores);
        let verdict = if per_core >= VERIFY_TARGET_MB_S_PER_CORE { "met" } else { "NOT met" };
        format!(
            "Verification input: {} files in {} directories, {:.1} MiB generated (seed {SEED:#x}); \
             {:.1} MiB of unique content in {:.1} MiB of .filez. Warm page cache for both tools \
             (objects just written, RAM to spare), so this is CPU throughput, not disk. CPU use: \
             flatbucket {:.2} cores all-core / {:.2} pinned, ostree fsck {:.2} cores (single-threaded). \
             One-core runs: the process is pinned with taskset; tokio has 1 worker and 2 blocking \
             threads (with 1, verify_commit deadlocks: see bench_verification).\n\
             Target verification ≥ {VERIFY_TARGET_MB_S_PER_CORE:.0} MB/s per core: {verdict} ({per_core:.0} MB/s \
             per core, {:.0} MB/s on one pinned core).",
            thousands(self.app.files),
            self.app.dirs,
            self.app.bytes as f64 / MIB as f64,
            self.content_bytes as f64 / MIB as f64,
            self.stored_bytes as f64 / MIB as f64,
            self.ours_all.cpu / self.ours_all.wall,
            self.ours_one.cpu / self.ours_one.wall,
            self.ostree_all.cpu / self.ostree_all.wall,
            self.mb_s(self.ours_one),
        )
    }
}

fn bench_verification(work: &Path, cores: usize) -> anyhow::Result<VerifyResults> {
    let build = work.join("app");
    let repo = work.join("verify-repo");
    eprintln!("generating the app build directory…");
    let app = bigapp::write_app(&build, SEED)?;
    eprintln!("exporting it with flatpak build-export…");
    bigapp::export(&build, &repo)?;
    // The build directory is not needed again; free its space before measuring.
    std::fs::remove_dir_all(&build).with_context(|| format!("failed to remove {}", build.display()))?;

    eprintln!("verifying…");
    let concurrency = 2 * cores;
    let runtime = multi_thread_runtime()?;
    let (ours_all, verified) = repeat(nothing, || verify(&runtime, &repo, concurrency))?;
    drop(runtime);
    let iso = Isolated::new()?;
    let (ostree_all, ()) = repeat(nothing, || ostree_fsck(&iso, &repo))?;
    let (ours_one, ostree_one) = {
        let _pinned = PinnedToOneCpu::new()?;
        // One worker and one blocking thread would deadlock: the hashing thread blocks on
        // `SyncIoBridge`, whose reads from `tokio::fs::File` need a second blocking thread. Two
        // blocking threads only ever take turns at concurrency 1, and the pin keeps it to one core.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .enable_all()
            .build()
            .context("failed to build the single-core runtime")?;
        let (ours, _) = repeat(nothing, || verify(&runtime, &repo, 1))?;
        drop(runtime);
        let (theirs, ()) = repeat(nothing, || ostree_fsck(&iso, &repo))?;
        (ours, theirs)
    };
    Ok(VerifyResults {
        app,
        content_bytes: verified.content_bytes,
        stored_bytes: verified.stored_bytes,
        concurrency,
        ours_all,
        ours_one,
        ostree_all,
        ostree_one,
    })
}

/// One flatbucket verification of the app commit; any problem found is an error.
fn verify(runtime: &Runtime, repo: &Path, concurrency: usize) -> anyhow::Result<Verified> {
    runtime.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(repo)?);
        let commit = resolve_ref(&*store, APP_REF).await?;
        let verified = verify_commit(store, commit, concurrency, None).await?;
        ensure!(verified.is_ok(), "flatbucket found problems: {:?}", verified.problems());
        Ok(verified)
    })
}

fn ostree_fsck(iso: &Isolated, repo: &Path) -> anyhow::Result<()> {
    run(iso.ostree().arg("fsck").arg(format!("--repo={}", repo.display())))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Summaries for 10,000 refs
// ---------------------------------------------------------------------------------------------

struct SummaryResults {
    refs: usize,
    /// `build_summaries` + `write_summaries` into a repo without summaries.
    publish: Sample,
    /// `compat_summary` + `all_subsummaries` + `summary_index`, in memory.
    generate: Sample,
    /// `list_refs` + `read_commit` for every ref + `RefRecord::from_commit`.
    read_records: Sample,
    /// `flatpak build-update-repo --no-update-appstream` on a copy without summaries.
    flatpak: Sample,
    compat_bytes: usize,
    /// Subsummaries whose digest is the same as in flatpak's `summary.idx`, and how many there are.
    identical_subsummaries: (usize, usize),
    flatpak_refs: usize,
}

impl SummaryResults {
    fn rows(&self) -> Vec<Row> {
        let tool = "flatpak build-update-repo";
        let n = thousands(self.refs);
        vec![
            Row::time(
                format!("Summaries, {n} refs: publish (build + write, no previous summaries)"),
                self.publish.wall,
                Some((self.flatpak.wall, tool)),
            ),
            Row::time("Summaries: generation only (in memory)", self.generate.wall, None),
            Row::time(
                format!("Summaries: read {n} refs + commits into records, then publish"),
                self.read_records.wall + self.publish.wall,
                Some((self.flatpak.wall, tool)),
            ),
        ]
    }

    fn notes(&self) -> String {
        let verdict = if self.publish.wall < SUMMARY_TARGET_SECONDS { "met" } else { "NOT met" };
        let (same, total) = self.identical_subsummaries;
        format!(
            "Summary input: {} synthetic refs (app and runtime, x86_64 and aarch64) sharing one tiny tree, \
             written by flatbucket. flatbucket publishes from in-memory records, as the server does; \
             flatpak reads every commit, so the last row adds flatbucket's time to read them ({}). \
             Compat summary: {:.1} MiB, parses back with {} refs; flatpak's lists {} refs; \
             {same} of {total} subsummaries byte-identical to flatpak's.\n\
             Target summaries < {SUMMARY_TARGET_SECONDS:.0} s for {} refs: {verdict} ({}).",
            thousands(self.refs),
            seconds(self.read_records.wall),
            self.compat_bytes as f64 / MIB as f64,
            thousands(self.refs),
            thousands(self.flatpak_refs),
            thousands(self.refs),
            seconds(self.publish.wall),
        )
    }
}

fn bench_summaries(work: &Path) -> anyhow::Result<SummaryResults> {
    let repo = work.join("summary-repo");
    let reference = work.join("summary-repo-flatpak");
    let runtime = multi_thread_runtime()?;
    eprintln!("writing {} synthetic commits…", thousands(SUMMARY_REFS));
    let records = runtime.block_on(write_synthetic_repo(&repo))?;
    // The reference works on its own copy, so neither tool sees the other's summaries.
    copy_repo(&repo, &reference)?;

    eprintln!("publishing summaries…");
    let settings = SummarySettings::default();
    let (publish, ()) = repeat(|| clear_summaries(&repo), || runtime.block_on(publish(&repo, &records, &settings)))?;
    let (generate, (compat, subsummaries)) = repeat(nothing, || Ok(generate(&records, &settings)))?;
    let (read_records, read) = repeat(nothing, || runtime.block_on(read_records(&repo)))?;
    let mut written = records.clone();
    written.sort_by(|a, b| a.name.cmp(&b.name));
    ensure!(read == written, "records read back from the repo differ from the ones written");

    let parsed = parse_summary(&compat).context("our compat summary does not parse")?;
    ensure!(parsed.refs.len() == SUMMARY_REFS, "our compat summary lists {} refs", parsed.refs.len());

    let iso = Isolated::new()?;
    let (flatpak, ()) = repeat(|| clear_summaries(&reference), || update_repo(&iso, &reference))?;
    let flatpak_summary = std::fs::read(reference.join("summary")).context("flatpak wrote no summary")?;
    let flatpak_refs = parse_summary(&flatpak_summary).context("flatpak's summary does not parse")?.refs.len();
    let identical_subsummaries = compare_subsummaries(&reference, &subsummaries)?;
    Ok(SummaryResults {
        refs: SUMMARY_REFS,
        publish,
        generate,
        read_records,
        flatpak,
        compat_bytes: compat.len(),
        identical_subsummaries,
        flatpak_refs,
    })
}

/// Builds the synthetic repo at `path` and returns the records of its refs.
async fn write_synthetic_repo(path: &Path) -> anyhow::Result<Vec<RefRecord>> {
    init_local_repo(path, None).with_context(|| format!("failed to initialise {}", path.display()))?;
    many_refs::write_refs(&LocalStore::new(path)?, SUMMARY_REFS).await
}

/// Copies a repository directory.
fn copy_repo(from: &Path, to: &Path) -> anyhow::Result<()> {
    run(Command::new("cp").arg("-a").arg(from).arg(to))?;
    Ok(())
}

/// Removes every summary file, so each run is a first publish without history or caches.
fn clear_summaries(repo: &Path) -> anyhow::Result<()> {
    for file in ["summary", "summary.sig", "summary.idx", "summary.idx.sig"] {
        match std::fs::remove_file(repo.join(file)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("failed to remove {file}"));
            }
            _ => {}
        }
    }
    let dir = repo.join("summaries");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("failed to remove {}", dir.display()))?;
    }
    Ok(())
}

/// What the server does on publish: build every summary file, then write them in order.
async fn publish(repo: &Path, records: &[RefRecord], settings: &SummarySettings) -> anyhow::Result<()> {
    let store = LocalStore::new(repo)?;
    let files = build_summaries(&store, records, settings, &[], now()).await?;
    write_summaries(&store, &files).await?;
    Ok(())
}

/// Subsummary name → (digest, bytes), as [`all_subsummaries`] returns them.
type Subsummaries = BTreeMap<String, (Checksum, Vec<u8>)>;

/// The summary files' bytes without any I/O: compat summary, subsummaries and index.
fn generate(records: &[RefRecord], settings: &SummarySettings) -> (Vec<u8>, Subsummaries) {
    let timestamp = now();
    let subsummaries = all_subsummaries(records);
    let entries: BTreeMap<String, IndexEntry> = subsummaries
        .iter()
        .map(|(name, (digest, _))| (name.clone(), IndexEntry { digest: *digest, history: Vec::new() }))
        .collect();
    let index = summary_index(&entries, settings, timestamp);
    std::hint::black_box(index);
    (compat_summary(records, settings, &[], timestamp), subsummaries)
}

/// Rebuilds the records from the repository alone, as a publish without cached records must.
/// They come out in ref-name order (`list_refs` is sorted).
async fn read_records(repo: &Path) -> anyhow::Result<Vec<RefRecord>> {
    let store = LocalStore::new(repo)?;
    let mut records = Vec::new();
    for (name, checksum) in list_refs(&store).await? {
        let (commit, size) = read_commit(&store, checksum).await?;
        records.push(RefRecord::from_commit(&name, checksum, &commit, size, None)?);
    }
    Ok(records)
}

fn update_repo(iso: &Isolated, repo: &Path) -> anyhow::Result<()> {
    run(iso.flatpak().args(["build-update-repo", "--no-update-appstream"]).arg(repo))?;
    Ok(())
}

/// Counts our subsummaries whose digest matches the one in flatpak's `summary.idx`.
fn compare_subsummaries(reference: &Path, ours: &Subsummaries) -> anyhow::Result<(usize, usize)> {
    let index = std::fs::read(reference.join("summary.idx")).context("flatpak wrote no summary.idx")?;
    let (theirs, _) = parse_index(&index).context("flatpak's summary.idx does not parse")?;
    let same = ours.iter().filter(|(name, (digest, _))| theirs.get(*name).is_some_and(|e| e.digest == *digest)).count();
    Ok((same, ours.len().max(theirs.len())))
}
