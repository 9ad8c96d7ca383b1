//! Publish against repository size: one small app published into repositories of 100, 1,000 and
//! 10,000 refs, timed from `POST /build/{id}/publish` until the new `summary.idx` is visible in
//! the repository. Printed as a markdown table with the ratio to the 100-ref figure (issue 5's
//! goal: at most 1.5× from 100 to 10,000 refs).
//!
//! Each repository is seeded directly, not through the jobs: synthetic refs
//! ([`flatbucket_tests::many_refs`]: a commit and `refs/heads/` file each), their records in the
//! state store, and summaries built from them, so the publish measured has a previous index to
//! diff against, as in a live repository. Then the small app ([`SyntheticCommit`]) is uploaded,
//! committed through the API and, timed, published through the API; the publish job runs on the
//! server's worker. Each run publishes a new version of the same app; the first run (which adds the
//! ref) is a warm-up and not counted.
//!
//! Backends: the embedded default (SQLite + local directories) always; S3 + DynamoDB on moto when
//! built with `--features aws` and `AWS_ENDPOINT_URL` is set (`eval "$(bash infra/moto.sh start)"`).
//!
//! Run with `cargo bench -p flatbucket-tests --bench publish_refs` (embedded), or
//! `cargo bench -p flatbucket-tests --features aws --bench publish_refs` with moto running.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use axum::http::{Method, StatusCode};
use bytes::Bytes;
use flatbucket::domain::job::JobStatus;
use flatbucket::repo::publish::{build_summaries, write_summaries};
use flatbucket::repo::summary::{gunzip, parse_index, parse_summary};
use flatbucket::store::{read_limited, ObjectStore};
use flatbucket_tests::machine::Machine;
use flatbucket_tests::many_refs;
use flatbucket_tests::router::TestApi;
use flatbucket_tests::synthetic::SyntheticCommit;
use serde_json::{json, Value};

/// Repository sizes, in refs.
const SIZES: [usize; 3] = [100, 1_000, 10_000];
/// Timed publishes per repository (after one warm-up), enough to fill the index's history of 16
/// summary deltas as a live repository has it; the median is reported.
const RUNS: usize = 20;
/// The goal for the 10,000-ref figure over the 100-ref one.
const GOAL_RATIO: f64 = 1.5;
/// The app published into each repository.
const APP_ID: &str = "org.example.Published";
const REPO: &str = "stable";
/// Largest `summary.idx` read while polling.
const MAX_INDEX_SIZE: u64 = 1 << 20;
/// Largest subsummary read back, compressed or not.
const MAX_SUMMARY_SIZE: u64 = 256 << 20;

fn main() -> anyhow::Result<()> {
    let machine = Machine::detect()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to build a tokio runtime")?;
    let load_before = load_average()?;
    // Each table is printed as soon as it is measured: a later backend failing loses nothing.
    print!("{}", runtime.block_on(bench_backend(Backend::Embedded))?.report());
    match moto() {
        Some(backend) => print!("{}", runtime.block_on(bench_backend(backend))?.report()),
        None => eprintln!("moto: skipped (build with --features aws and set AWS_ENDPOINT_URL to include it)"),
    }
    let load_after = load_average()?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nMachine: {} cores ({}), {}. Publish-to-visible: from the `POST .../publish` request until \
         `summary.idx` changes in the repository (polled every {} ms embedded, {} ms on moto); \
         median of {RUNS} runs after one warm-up; ratio = figure / 100-ref figure (goal ≤ {GOAL_RATIO}× \
         at 10,000 refs). Load average (1 min) {load_before} before, {load_after} after: other work on \
         the machine shows in these figures.",
        machine.cores,
        machine.cpu,
        std::env::consts::ARCH,
        Backend::Embedded.poll_interval().as_millis(),
        POLL_REMOTE.as_millis(),
    );
    print!("{out}");
    Ok(())
}

/// How often a remote store's `summary.idx` is read while waiting for it to change.
const POLL_REMOTE: Duration = Duration::from_millis(5);

enum Backend {
    Embedded,
    #[cfg(feature = "aws")]
    Moto,
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Embedded => "embedded (SQLite + local directories)",
            #[cfg(feature = "aws")]
            Backend::Moto => "AWS backends on moto (DynamoDB + S3)",
        }
    }

    fn poll_interval(&self) -> Duration {
        match self {
            Backend::Embedded => Duration::from_millis(1),
            #[cfg(feature = "aws")]
            Backend::Moto => POLL_REMOTE,
        }
    }

    /// A server on this backend, with fresh resources.
    async fn start(&self) -> anyhow::Result<TestApi> {
        match self {
            Backend::Embedded => Ok(TestApi::start().await),
            #[cfg(feature = "aws")]
            Backend::Moto => {
                let aws = flatbucket_tests::aws::resources().await?;
                Ok(TestApi::start_with(|config| aws.configure(config)).await)
            }
        }
    }
}

#[cfg(feature = "aws")]
fn moto() -> Option<Backend> {
    std::env::var_os("AWS_ENDPOINT_URL").map(|_| Backend::Moto)
}

#[cfg(not(feature = "aws"))]
fn moto() -> Option<Backend> {
    None
}

/// The figures of one backend.
struct Table {
    backend: &'static str,
    rows: Vec<Row>,
}

/// The figures of one repository size.
struct Row {
    refs: usize,
    /// Seeding: commits and refs, records, first summaries.
    seed: Duration,
    /// Median publish-to-visible time.
    visible: Duration,
    /// Fastest and slowest timed run.
    range: (Duration, Duration),
}

impl Table {
    fn report(&self) -> String {
        let base = self.rows.first().map_or(1.0, |row| row.visible.as_secs_f64());
        let mut out = String::new();
        let _ = writeln!(out, "\n**{}**\n", self.backend);
        let _ = writeln!(out, "| refs | publish-to-visible (median) | min – max | ratio to 100 refs | seeding |");
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|");
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} – {} | {:.2}× | {:.1} s |",
                row.refs,
                millis(row.visible),
                millis(row.range.0),
                millis(row.range.1),
                row.visible.as_secs_f64() / base,
                row.seed.as_secs_f64(),
            );
        }
        if let Some(last) = self.rows.last() {
            let ratio = last.visible.as_secs_f64() / base;
            let verdict = if ratio <= GOAL_RATIO { "met" } else { "NOT met" };
            let _ = writeln!(
                out,
                "\nRatio {} / {} refs: {ratio:.2}× (goal ≤ {GOAL_RATIO}×: {verdict}).",
                last.refs, SIZES[0]
            );
        }
        out
    }
}

async fn bench_backend(backend: Backend) -> anyhow::Result<Table> {
    let mut rows = Vec::new();
    for refs in SIZES {
        eprintln!("{}: {} refs…", backend.name(), refs);
        let api = backend.start().await?;
        let start = Instant::now();
        seed(&api, refs).await.with_context(|| format!("seeding {refs} refs"))?;
        let seed_time = start.elapsed();
        let mut samples = Vec::with_capacity(RUNS);
        for run in 0..=RUNS {
            let took = publish_one(&api, &backend, run).await.with_context(|| format!("run {run} with {refs} refs"))?;
            if run > 0 {
                samples.push(took);
            }
        }
        let listed = api.app.state.repo_refs(REPO).await?;
        let app_ref = format!("app/{APP_ID}/x86_64/stable");
        ensure!(listed.len() > refs && listed.iter().any(|r| r.name == app_ref), "the app was not published");
        samples.sort();
        rows.push(Row {
            refs,
            seed: seed_time,
            visible: samples[samples.len() / 2],
            range: (samples[0], samples[samples.len() - 1]),
        });
    }
    Ok(Table { backend: backend.name(), rows })
}

/// Writes `refs` synthetic refs into the repository and their records into the state store, then
/// the summaries for them, as a publish would have left them.
async fn seed(api: &TestApi, refs: usize) -> anyhow::Result<()> {
    let repo = api.app.repo(REPO).context("the test configuration has a stable repo")?;
    let records = many_refs::write_refs(&*repo.store, refs).await?;
    api.app.state.put_repo_refs(REPO, &records).await?;
    let records = api.app.state.repo_refs(REPO).await?;
    let files = build_summaries(&*repo.store, &records, &repo.settings, &[], now()).await?;
    write_summaries(&*repo.store, &files).await?;
    Ok(())
}

/// Uploads and commits version `run` of the app, waits until no job is left (the previous run's
/// follow-up jobs included), then publishes it; returns the time from the publish request until
/// `summary.idx` changes, after checking that the index seen then lists the new commit.
async fn publish_one(api: &TestApi, backend: &Backend, run: usize) -> anyhow::Result<Duration> {
    let token = api.admin();
    let content = format!("#!/bin/sh\necho version {run}\n");
    let commit = SyntheticCommit::app(APP_ID, &[("bin/hello", content.as_bytes())]);
    let app_ref = format!("app/{APP_ID}/x86_64/stable");
    let build = api.uploaded_build(&token, &app_ref, &commit).await;
    let job = post(api, &token, &format!("/api/v1/build/{build}/commit")).await?;
    let committed = api.wait_job(job).await;
    ensure!(committed.status == JobStatus::Ended, "commit failed: {}", committed.log);
    while !api.app.state.unfinished_jobs().await?.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let store = &api.app.repo(REPO).context("stable repo")?.store;
    let before = read_index(&**store).await?;
    let start = Instant::now();
    let job = post(api, &token, &format!("/api/v1/build/{build}/publish")).await?;
    let seen = loop {
        let index = read_index(&**store).await?;
        if index != before {
            break index;
        }
        tokio::time::sleep(backend.poll_interval()).await;
    };
    let visible = start.elapsed();
    let published = api.wait_job(job).await;
    ensure!(published.status == JobStatus::Ended, "publish failed: {}", published.log);
    let results: Value = serde_json::from_str(published.results.as_deref().unwrap_or("null"))?;
    let made = results["refs"][&app_ref].as_str().context("the publish reports the app's commit")?;
    ensure!(
        listed_commit(&**store, &seen, &app_ref).await?.as_deref() == Some(made),
        "the first new summary.idx does not list {app_ref} at {made}"
    );
    Ok(visible)
}

/// The commit the `x86_64` subsummary of `index` lists for `name`.
async fn listed_commit(store: &dyn ObjectStore, index: &[u8], name: &str) -> anyhow::Result<Option<String>> {
    let (entries, _) = parse_index(index)?;
    let digest = entries.get("x86_64").context("no x86_64 subsummary")?.digest;
    let compressed = read_limited(store, &format!("summaries/{digest}.gz"), MAX_SUMMARY_SIZE).await?;
    let summary = parse_summary(&gunzip(&compressed, MAX_SUMMARY_SIZE)?)?;
    Ok(summary.refs.into_iter().find(|(listed, ..)| listed == name).map(|(_, _, commit, _)| commit.to_hex()))
}

/// Starts a job with an empty JSON body; returns its id.
async fn post(api: &TestApi, token: &str, uri: &str) -> anyhow::Result<i64> {
    let answer = api.call(Method::POST, uri, Some(token), Some(json!({}))).await;
    ensure!(answer.status == StatusCode::OK, "{uri}: {}", String::from_utf8_lossy(&answer.body));
    answer.json()["id"].as_i64().with_context(|| format!("{uri} answered no job id"))
}

async fn read_index(store: &dyn ObjectStore) -> anyhow::Result<Bytes> {
    Ok(Bytes::from(read_limited(store, "summary.idx", MAX_INDEX_SIZE).await?))
}

/// The 1-minute load average, from `/proc/loadavg`.
fn load_average() -> anyhow::Result<String> {
    let text = std::fs::read_to_string("/proc/loadavg").context("failed to read /proc/loadavg")?;
    Ok(text.split_whitespace().next().unwrap_or("?").to_owned())
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
