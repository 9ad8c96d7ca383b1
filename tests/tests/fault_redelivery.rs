//! The worker killed at every step of commit and publish (issue 4): for each mutating store
//! operation N of a clean run, a run dies just before N is sent, or just after N took effect, and
//! its job future is dropped. At that moment readers must find no summary or ref naming a missing
//! object (DESIGN property 4). Then the job is delivered again, as the SQS worker does (requeue,
//! run), on healthy stores: it must end, the build must reach its state, and nothing may be
//! published twice — each publish adds exactly one commit to each of its refs' history, and the
//! ref records, `refs/heads` files and summaries agree.
//!
//! Every kill point gets a fresh repository (and, embedded, fresh state), prepared on healthy
//! stores; points run a few at a time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{ensure, Context};
use flatbucket::app::AppState;
use flatbucket::config::Config;
use flatbucket::domain::build::{PublishedState, RepoState};
use flatbucket::domain::job::{CommitContents, JobStatus, PublishContents};
use flatbucket::jobs::run_job;
use flatbucket::repo::appstream::is_generated_ref;
use flatbucket::repo::local::{list_refs, read_commit};
use flatbucket::repo::sign::read_signatures;
use flatbucket::repo::{Checksum, ObjectName, ObjectType};
use flatbucket::store::{read_limited, Layered, LocalStore, ObjectStore};
use flatbucket_tests::fault::{check_readable, with_faults, Faults, Kill, Operation, Outcome, Readable, When};
use flatbucket_tests::fixture::{build_repo, export_app_version, Fixture, APP_ID, APP_REF, RUNTIME_REF};
use flatbucket_tests::gpg::GnuPg;
use flatbucket_tests::publishing::{resolve_refs, run_to_end, upload};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tempfile::TempDir;

/// Kill points run at once.
const CONCURRENCY: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_survives_a_kill_at_every_step() -> anyhow::Result<()> {
    kill_everywhere(&Backend::embedded()?, Scenario::Commit).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_publish_survives_a_kill_at_every_step() -> anyhow::Result<()> {
    kill_everywhere(&Backend::embedded()?, Scenario::FirstPublish).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_publish_survives_a_kill_at_every_step() -> anyhow::Result<()> {
    kill_everywhere(&Backend::embedded()?, Scenario::SecondPublish).await
}

/// A presigned URL stays valid for an hour and a multipart request may arrive late, so uploads can
/// change while a commit runs: the commit takes them into the build repository first and verifies
/// and publishes only what it took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_rewritten_after_the_commit_took_them_change_nothing() -> anyhow::Result<()> {
    let (backend, versions) = (Backend::embedded()?, Versions::build().await?);
    let env = Env::new(&backend, "late-upload").await?;
    let prepared = prepare(&env, &versions, Scenario::Commit).await?;
    let uploads = env.plain.upload_store(prepared.build);
    let uploaded = uploads.list("objects/").await?;
    // Die just after the last upload was taken, before anything else is written.
    env.faults.arm(Some(Kill { at: uploaded.len() + 1, when: When::Before }));
    let outcome = env.faults.run(run_job(&env.faulty, prepared.job)).await;
    ensure!(matches!(outcome, Outcome::Killed), "the job ended before the kill: {outcome:?}");
    let taken = env.faults.trace();
    ensure!(
        taken[..uploaded.len()].iter().all(|op| op.key.starts_with(&format!("{}/objects/", prepared.build))),
        "the first writes take the uploads: {taken:?}"
    );
    for key in &uploaded {
        uploads.put(key, bytes::Bytes::from_static(b"written after the commit took the uploads")).await?;
    }
    ensure!(env.plain.state.requeue_job(prepared.job).await?, "the killed job was not left started");
    run_job(&env.plain, prepared.job).await?;
    check_done(&env, &prepared).await
}

#[cfg(feature = "aws")]
mod aws {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commit_survives_a_kill_at_every_step_on_the_aws_backends() -> anyhow::Result<()> {
        kill_everywhere(&Backend::aws().await?, Scenario::Commit).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn first_publish_survives_a_kill_at_every_step_on_the_aws_backends() -> anyhow::Result<()> {
        kill_everywhere(&Backend::aws().await?, Scenario::FirstPublish).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn second_publish_survives_a_kill_at_every_step_on_the_aws_backends() -> anyhow::Result<()> {
        kill_everywhere(&Backend::aws().await?, Scenario::SecondPublish).await
    }
}

/// The job under test and what runs before it.
#[derive(Debug, Clone, Copy)]
enum Scenario {
    /// Committing a build of the fixture runtime and app.
    Commit,
    /// Publishing that build into an empty repository.
    FirstPublish,
    /// Publishing version 2 of the app on top of the published first build.
    SecondPublish,
}

/// Runs the scenario once cleanly to trace its mutating operations, then once per kill point.
async fn kill_everywhere(backend: &Backend, scenario: Scenario) -> anyhow::Result<()> {
    let versions = Versions::build().await?;
    let clean = Env::new(backend, "clean").await?;
    let prepared = prepare(&clean, &versions, scenario).await?;
    clean.faults.arm(None);
    run_job(&clean.faulty, prepared.job).await?;
    check_done(&clean, &prepared).await.context("clean run")?;
    let trace = clean.faults.trace();
    ensure!(!trace.is_empty(), "the clean run wrote nothing");
    let kills: Vec<Kill> = backend
        .kill_points(&trace)
        .into_iter()
        .flat_map(|at| [When::Before, When::After].map(|when| Kill { at, when }))
        .collect();
    let (versions, trace) = (&versions, &trace);
    futures::stream::iter(kills)
        .map(|kill| async move {
            let what = &trace[kill.at - 1];
            let context = || format!("killed {:?} operation {} of {} ({what})", kill.when, kill.at, trace.len());
            kill_and_redeliver(backend, versions, scenario, kill).await.with_context(context)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await
}

async fn kill_and_redeliver(
    backend: &Backend,
    versions: &Versions,
    scenario: Scenario,
    kill: Kill,
) -> anyhow::Result<()> {
    let when = match kill.when {
        When::Before => "b",
        When::After => "a",
    };
    let env = Env::new(backend, &format!("k{}{when}", kill.at)).await?;
    let prepared = prepare(&env, versions, scenario).await?;
    env.faults.arm(Some(kill));
    match env.faults.run(run_job(&env.faulty, prepared.job)).await {
        Outcome::Killed => {}
        Outcome::Finished(result) => anyhow::bail!("the job ended ({result:?}) before the kill"),
    }
    check_readable(&*env.repo_store()).await.context("public repository after the kill")?;
    if let Scenario::Commit = scenario {
        check_readable(&*env.build_view(prepared.build)).await.context("build repository after the kill")?;
    }
    // What the SQS worker does with a redelivered message (functions/src/lib.rs).
    ensure!(env.plain.state.requeue_job(prepared.job).await?, "the killed job was not left started");
    run_job(&env.plain, prepared.job).await?;
    check_done(&env, &prepared).await.context("after redelivery")
}

/// The fixture: runtime and app version 1, and app version 2, in one source repository.
struct Versions {
    _fixture: Fixture,
    source: Arc<dyn ObjectStore>,
    first: Vec<(String, Checksum)>,
    second: Vec<(String, Checksum)>,
}

impl Versions {
    async fn build() -> anyhow::Result<Self> {
        let fixture = tokio::task::spawn_blocking(|| build_repo(1)).await??;
        let source: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&fixture.repo)?);
        let first = resolve_refs(&*source, &[RUNTIME_REF, APP_REF]).await?;
        let (repo, dir) = (fixture.repo.clone(), fixture.dir.path().to_owned());
        tokio::task::spawn_blocking(move || export_app_version(&repo, &dir, 2)).await??;
        let second = resolve_refs(&*source, &[APP_REF]).await?;
        Ok(Self { _fixture: fixture, source, first, second })
    }
}

/// Where the suites run: the embedded backends (SQLite, directories) or S3 and DynamoDB on moto.
/// Repositories are signed, so killed runs also leave signatures half-written.
struct Backend {
    dir: TempDir,
    /// The armored secret key every repository signs with.
    key_file: PathBuf,
    #[cfg(feature = "aws")]
    aws: Option<flatbucket_tests::aws::Resources>,
}

impl Backend {
    fn embedded() -> anyhow::Result<Self> {
        let (dir, key_file) = Self::signing_key()?;
        Ok(Self {
            dir,
            key_file,
            #[cfg(feature = "aws")]
            aws: None,
        })
    }

    #[cfg(feature = "aws")]
    async fn aws() -> anyhow::Result<Self> {
        let (dir, key_file) = Self::signing_key()?;
        Ok(Self { dir, key_file, aws: Some(flatbucket_tests::aws::resources().await?) })
    }

    /// A directory for the backend's files, holding a fresh signing key.
    fn signing_key() -> anyhow::Result<(TempDir, PathBuf)> {
        let (dir, gpg) = (tempfile::tempdir()?, GnuPg::new()?);
        let key = gpg.generate("fault@example.org")?;
        let key_file = gpg.export_secret(&[&key], &dir.path().join("key.asc"))?;
        Ok((dir, key_file))
    }

    /// A configuration with one repository `name`, fresh for this name; on AWS the buckets and
    /// table are shared and the repository and builds get their own key prefixes.
    fn config(&self, name: &str) -> anyhow::Result<Config> {
        let dir = self.dir.path().join(name);
        let mut config = json!({
            "repos": {name: {
                "path": dir.join("repo"),
                "collection-id": "org.test.Fault",
                "subsets": {},
                "gpg-key-file": self.key_file,
            }},
            "database-url": format!("sqlite:{}", dir.join("state.sqlite").display()),
            "build-repo-base": dir.join("build-repo"),
            "secret": "c2VjcmV0"
        });
        self.configure_aws(&mut config, name);
        Ok(Config::parse(&config.to_string())?)
    }

    #[cfg(feature = "aws")]
    fn configure_aws(&self, config: &mut Value, name: &str) {
        if let Some(aws) = &self.aws {
            config["database-url"] = json!(format!("dynamodb://{}", aws.table));
            config["s3"] = json!({"staging-bucket": aws.staging, "public-bucket": aws.public, "staging-prefix": name});
            config["repos"][name]["path"] = json!(name);
        }
    }

    #[cfg(not(feature = "aws"))]
    fn configure_aws(&self, _config: &mut Value, _name: &str) {}

    /// Where to kill, by position in the clean run's `trace`: everywhere on the embedded
    /// backends. On moto, where each request costs milliseconds and a kill point hundreds of
    /// them, at the first and last operation of a step, for each kind of transition from one step
    /// to the next, so every kind is cut both ways; within a step, kill points differ only in which
    /// objects of one kind landed, and the embedded runs cover them all.
    fn kill_points(&self, trace: &[Operation]) -> Vec<usize> {
        #[cfg(feature = "aws")]
        if self.aws.is_some() {
            return flatbucket_tests::fault::step_boundaries(trace);
        }
        (1..=trace.len()).collect()
    }
}

/// One fresh repository: the application on healthy stores, and the same with faults.
struct Env {
    repo: String,
    plain: AppState,
    faulty: AppState,
    faults: Arc<Faults>,
}

impl Env {
    async fn new(backend: &Backend, name: &str) -> anyhow::Result<Self> {
        let (plain, _) = AppState::from_config(backend.config(name)?).await?;
        let faults = Faults::new();
        let faulty = with_faults(&plain, &faults)?;
        Ok(Self { repo: name.to_owned(), plain, faulty, faults })
    }

    fn repo_store(&self) -> Arc<dyn ObjectStore> {
        self.plain.repo(&self.repo).expect("configured").store.clone()
    }

    /// What `/build-repo/<id>` serves.
    fn build_view(&self, build: i64) -> Arc<dyn ObjectStore> {
        Arc::new(Layered::new(self.plain.build_store(build), self.repo_store()))
    }
}

/// The job under test, queued, and what was published before it.
struct Prepared {
    job: i64,
    build: i64,
    /// The refs of this build.
    refs: Vec<(String, Checksum)>,
    /// Earlier publishes: each ref's published commit.
    publishes: Vec<BTreeMap<String, Checksum>>,
}

async fn prepare(env: &Env, versions: &Versions, scenario: Scenario) -> anyhow::Result<Prepared> {
    let state = &env.plain.state;
    let first = upload(&env.plain, &env.repo, APP_ID, &versions.source, &versions.first).await?;
    if let Scenario::Commit = scenario {
        let job = state.start_commit(&commit_contents(first)).await?.id;
        return Ok(Prepared { job, build: first, refs: versions.first.clone(), publishes: Vec::new() });
    }
    run_to_end(&env.plain, state.start_commit(&commit_contents(first)).await?.id).await?;
    if let Scenario::FirstPublish = scenario {
        let job = state.start_publish(&PublishContents { build: first }).await?.id;
        return Ok(Prepared { job, build: first, refs: versions.first.clone(), publishes: Vec::new() });
    }
    let result = run_to_end(&env.plain, state.start_publish(&PublishContents { build: first }).await?.id).await?;
    let published: BTreeMap<String, String> = serde_json::from_value(result["refs"].clone())?;
    let published =
        published.into_iter().map(|(n, c)| Ok((n, Checksum::from_hex(&c)?))).collect::<anyhow::Result<_>>()?;
    let second = upload(&env.plain, &env.repo, APP_ID, &versions.source, &versions.second).await?;
    run_to_end(&env.plain, state.start_commit(&commit_contents(second)).await?.id).await?;
    let job = state.start_publish(&PublishContents { build: second }).await?.id;
    Ok(Prepared { job, build: second, refs: versions.second.clone(), publishes: vec![published] })
}

fn commit_contents(build: i64) -> CommitContents {
    CommitContents { build, endoflife: None, endoflife_rebase: None, token_type: None }
}

/// The job ended, its build reached its state, and the repositories say one consistent thing.
async fn check_done(env: &Env, prepared: &Prepared) -> anyhow::Result<()> {
    let job = env.plain.state.get_job(prepared.job).await?;
    ensure!(job.status == JobStatus::Ended, "job ended {:?}: {}", job.status, job.log);
    let build = env.plain.state.get_build(prepared.build).await?;
    let left = env.plain.build_store(prepared.build).list("").await?;
    if job.kind == flatbucket::domain::job::JobKind::Commit {
        ensure!(build.repo_state == RepoState::Ready, "build is {:?}", build.repo_state);
        ensure!(left.iter().all(|key| !key.starts_with("upload/")), "uploads left behind: {left:?}");
        let view = env.build_view(prepared.build);
        let readable = check_readable(&*view).await.context("build repository")?;
        let names: Vec<&String> = readable.heads.keys().filter(|n| !is_generated_ref(n)).collect();
        let expected: BTreeMap<&String, _> = prepared.refs.iter().map(|(n, c)| (n, c)).collect();
        ensure!(names == expected.into_keys().collect::<Vec<_>>(), "build refs {names:?}");
        return ensure_agree(&readable, &readable.heads);
    }
    ensure!(build.published_state == PublishedState::Published, "build is {:?}", build.published_state);
    ensure!(left.is_empty(), "build files left behind: {left:?}");
    check_published(env, prepared).await?;
    check_signed_once(env).await
}

/// Every commit a ref names carries exactly one signature: a re-run never signs twice.
async fn check_signed_once(env: &Env) -> anyhow::Result<()> {
    let store = env.repo_store();
    for (name, commit) in list_refs(&*store).await? {
        let key = ObjectName::new(commit, ObjectType::CommitMeta).key();
        let metadata = read_limited(&*store, &key, 1 << 20).await.with_context(|| format!("{name}: {key}"))?;
        let signatures = read_signatures(&metadata)?;
        ensure!(signatures.len() == 1, "{name} is signed {} times", signatures.len());
    }
    Ok(())
}

/// Every ref of the build has exactly one new commit on top of what was there, and ref
/// records, `refs/heads`, `summary.idx` and `summary` all name the same commits.
async fn check_published(env: &Env, prepared: &Prepared) -> anyhow::Result<()> {
    let store = env.repo_store();
    let readable = check_readable(&*store).await.context("public repository")?;
    let records: BTreeMap<String, Checksum> =
        env.plain.state.repo_refs(&env.repo).await?.into_iter().map(|r| (r.name, r.commit)).collect();
    ensure_agree(&readable, &records)?;
    let earlier = prepared.publishes.last().cloned().unwrap_or_default();
    for (name, head) in &records {
        let history = history(&*store, *head).await?;
        if is_generated_ref(name) {
            // Made by each publish from the recorded tip: a re-run never stacks a second commit.
            ensure!(history.len() <= prepared.publishes.len() + 1, "{name} has history {history:?}");
            continue;
        }
        match prepared.refs.iter().any(|(n, _)| n == name) {
            true => {
                ensure!(history.len() == prepared.publishes.len() + 1, "{name} has history {history:?}");
                ensure!(history.get(1) == earlier.get(name), "{name}'s parent is not the earlier publish");
            }
            false => ensure!(Some(head) == earlier.get(name), "{name} changed though this build lacks it"),
        }
    }
    let lease = format!("publish/{}", env.repo);
    ensure!(env.plain.state.acquire_lease(&lease, "checker", 60).await?, "the publish lease was not released");
    env.plain.state.release_lease(&lease, "checker").await?;
    Ok(())
}

/// `summary.idx`, `summary` and `refs/heads` list exactly `expected`.
fn ensure_agree(readable: &Readable, expected: &BTreeMap<String, Checksum>) -> anyhow::Result<()> {
    ensure!(&readable.indexed == expected, "summary.idx lists {:?}, expected {expected:?}", readable.indexed);
    ensure!(&readable.compat == expected, "summary lists {:?}, expected {expected:?}", readable.compat);
    ensure!(&readable.heads == expected, "refs/heads has {:?}, expected {expected:?}", readable.heads);
    Ok(())
}

/// `head` and its ancestors, newest first.
async fn history(store: &dyn ObjectStore, head: Checksum) -> anyhow::Result<Vec<Checksum>> {
    let mut chain = vec![head];
    while let Some(parent) = read_commit(store, *chain.last().expect("not empty")).await?.0.parent {
        ensure!(!chain.contains(&parent), "a cycle in the history of {head}");
        chain.push(parent);
    }
    Ok(chain)
}
