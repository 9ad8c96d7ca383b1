//! Client-uploaded from-scratch static deltas end to end: the fixture app is pushed through the
//! HTTP API together with the delta `ostree static-delta generate` made for its commit, committed
//! and published by the jobs. The published repository then holds that delta (its parts, not a
//! regenerated one) rewritten for the published commit, which `ostree` lists, shows, applies into
//! an empty repository and checks. A corrupted upload is left out with a log line naming it, and
//! the commit still succeeds. Each suite runs on the embedded backends and, with the `aws` feature,
//! on S3 and DynamoDB (moto: `eval "$(bash infra/moto.sh start)"`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Context};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use flatbucket::domain::job::{Job, JobStatus};
use flatbucket::repo::local::resolve_ref;
use flatbucket::repo::superblock::Superblock;
use flatbucket::repo::walk::walk_closure;
use flatbucket::repo::{delta_dir, Checksum};
use flatbucket::store::{LocalStore, ObjectStore};
use flatbucket_tests::fixture::{build_repo, Fixture, APP_REF};
use flatbucket_tests::router::{multipart, TestApi};
use flatbucket_tests::tools::{run, Isolated};
use serde_json::json;

/// The fixture, its app commit and the from-scratch delta `ostree` generated for it.
struct Pushed {
    fixture: Fixture,
    commit: Checksum,
    /// Upload filenames (`<b64>.<part>.delta`) and contents of the delta's files.
    delta: Vec<(String, Vec<u8>)>,
}

async fn fixture_with_delta() -> anyhow::Result<Pushed> {
    let fixture = tokio::task::spawn_blocking(|| build_repo(1)).await??;
    let commit = resolve_ref(&LocalStore::new(&fixture.repo)?, APP_REF).await?;
    let tools = Isolated::new()?;
    ostree(&tools, &fixture.repo, &["static-delta", "generate", "--empty", &format!("--to={commit}")])?;
    let dir = fixture.repo.join(delta_dir(None, &commit));
    let b64 = commit.to_modified_base64();
    let mut delta = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let name = entry?.file_name().into_string().map_err(|n| anyhow::anyhow!("odd file {n:?}"))?;
        delta.push((format!("{b64}.{name}.delta"), std::fs::read(dir.join(&name))?));
    }
    ensure!(delta.len() >= 2, "ostree made no parts: {delta:?}");
    Ok(Pushed { fixture, commit, delta })
}

/// Runs `ostree <args> --repo=<repo>` and returns its output.
fn ostree(tools: &Isolated, repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    run(tools.ostree().args(args).arg(format!("--repo={}", repo.display())))
}

/// Pushes the app commit's objects and `delta` as one build, commits it and returns the build id
/// and the commit job.
async fn push_and_commit(api: &TestApi, pushed: &Pushed, delta: &[(String, Vec<u8>)]) -> anyhow::Result<(i64, Job)> {
    let token = api.admin();
    let id = api.create_build(&token).await;
    let source = LocalStore::new(&pushed.fixture.repo)?;
    let mut files = delta.to_vec();
    for name in walk_closure(&source, pushed.commit).await?.object_names() {
        files.push((name.to_string(), std::fs::read(pushed.fixture.repo.join(name.key()))?));
    }
    let parts: Vec<(String, &[u8])> = files.iter().map(|(n, b)| (n.clone(), b.as_slice())).collect();
    let (content_type, body) = multipart(&parts);
    let request = Request::post(format!("/api/v1/build/{id}/upload"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(Body::from(body))?;
    let answer = api.send(request).await;
    ensure!(answer.status == StatusCode::OK, "upload: {:?}", answer.body);
    let build_ref = json!({"ref": APP_REF, "commit": pushed.commit.to_hex()});
    let answer = api.call(Method::POST, &format!("/api/v1/build/{id}/build_ref"), Some(&token), Some(build_ref)).await;
    ensure!(answer.status == StatusCode::OK, "build_ref: {:?}", answer.body);
    Ok((id, run_job(api, &format!("/api/v1/build/{id}/commit")).await?))
}

/// Starts the job behind `uri` and waits for it, which must end well.
async fn run_job(api: &TestApi, uri: &str) -> anyhow::Result<Job> {
    let answer = api.call(Method::POST, uri, Some(&api.admin()), Some(json!({}))).await;
    ensure!(answer.status == StatusCode::OK, "{uri}: {:?}", answer.body);
    let job = api.wait_job(answer.json()["id"].as_i64().context("job id")?).await;
    ensure!(job.status == JobStatus::Ended, "{uri} ended {:?}: {}", job.status, job.log);
    Ok(job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_delta_is_published_for_the_published_commit() -> anyhow::Result<()> {
    check_published(&Server::embedded().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_uploaded_delta_is_logged_and_left_out() -> anyhow::Result<()> {
    check_corrupt_left_out(&Server::embedded().await).await
}

#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_delta_is_published_on_s3() -> anyhow::Result<()> {
    check_published(&Server::on_moto().await?).await
}

#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_uploaded_delta_is_left_out_on_s3() -> anyhow::Result<()> {
    check_corrupt_left_out(&Server::on_moto().await?).await
}

/// The API on the embedded backends, or on S3 and DynamoDB (moto).
struct Server {
    api: TestApi,
    /// The public bucket on moto.
    #[cfg(feature = "aws")]
    bucket: Option<String>,
}

impl Server {
    async fn embedded() -> Self {
        Self {
            api: TestApi::start().await,
            #[cfg(feature = "aws")]
            bucket: None,
        }
    }

    #[cfg(feature = "aws")]
    async fn on_moto() -> anyhow::Result<Self> {
        let aws = flatbucket_tests::aws::resources().await?;
        let api = TestApi::start_with(|config| aws.configure(config)).await;
        Ok(Self { api, bucket: Some(aws.public) })
    }

    /// The published repository as a directory the `ostree` tool can read.
    async fn published_repo(&self) -> anyhow::Result<PathBuf> {
        #[cfg(feature = "aws")]
        if let Some(bucket) = &self.bucket {
            let dir = self.api.dir.path().join("mirror");
            flatbucket_tests::aws::mirror(bucket, "stable", &dir).await?;
            return Ok(dir);
        }
        Ok(self.api.dir.path().join("repo"))
    }

    fn published_store(&self) -> anyhow::Result<Arc<dyn ObjectStore>> {
        Ok(self.api.app.repo("stable").context("repo stable")?.store.clone())
    }
}

async fn check_published(server: &Server) -> anyhow::Result<()> {
    let pushed = fixture_with_delta().await?;
    let api = &server.api;
    let (id, commit) = push_and_commit(api, &pushed, &pushed.delta).await?;
    ensure!(commit.log.contains("Took the uploaded static delta"), "commit log: {}", commit.log);
    let publish = run_job(api, &format!("/api/v1/build/{id}/publish")).await?;
    ensure!(publish.log.contains("Published the static delta"), "publish log: {}", publish.log);

    let published = resolve_ref(&*server.published_store()?, APP_REF).await?;
    ensure!(published != pushed.commit, "the publish made a commit of its own");
    let repo = server.published_repo().await?;
    let tools = Isolated::new()?;
    let listed = ostree(&tools, &repo, &["static-delta", "list"])?;
    ensure!(listed.lines().any(|l| l.trim() == published.to_hex()), "static-delta list: {listed}");
    let shown = ostree(&tools, &repo, &["static-delta", "show", &published.to_hex()])?;
    ensure!(shown.contains(&format!("To: {published}")), "static-delta show: {shown}");

    // The client's delta, not another one: its timestamp and its part, byte for byte.
    let dir = repo.join(delta_dir(None, &published));
    let uploaded = uploaded_file(&pushed, "superblock")?;
    let ours = Superblock::parse(&std::fs::read(dir.join("superblock"))?)?;
    ensure!(ours.timestamp == Superblock::parse(uploaded)?.timestamp, "the superblock was not the client's");
    ensure!(std::fs::read(dir.join("0"))? == uploaded_file(&pushed, "0")?, "part 0 is not the client's");

    let fresh = tools.dir.path().join("fresh");
    let superblock = dir.join("superblock").display().to_string();
    ostree(&tools, &fresh, &["init", "--mode=archive-z2"])?;
    ostree(&tools, &fresh, &["static-delta", "apply-offline", &superblock])?;
    ostree(&tools, &fresh, &["fsck"])?;
    let shown = ostree(&tools, &fresh, &["show", &published.to_hex()])?;
    ensure!(shown.contains(&format!("commit {published}")), "ostree show: {shown}");
    Ok(())
}

async fn check_corrupt_left_out(server: &Server) -> anyhow::Result<()> {
    let pushed = fixture_with_delta().await?;
    let mut corrupt = pushed.delta.clone();
    let part = corrupt.iter_mut().find(|(name, _)| name.ends_with(".0.delta")).context("part 0")?;
    let last = part.1.len() - 1;
    part.1[last] ^= 0xff;
    let api = &server.api;
    let (id, commit) = push_and_commit(api, &pushed, &corrupt).await?;
    let named = format!("Ignored the uploaded static delta {}", pushed.commit);
    ensure!(commit.log.contains(&named), "commit log: {}", commit.log);
    ensure!(commit.log.contains("part 0: content hashes to"), "commit log: {}", commit.log);
    let build = api.app.build_store(id);
    ensure!(build.list("deltas/").await?.is_empty(), "build repo deltas: {:?}", build.list("deltas/").await?);

    run_job(api, &format!("/api/v1/build/{id}/publish")).await?;
    let repo = server.published_store()?;
    ensure!(repo.list("deltas/").await?.is_empty(), "published deltas: {:?}", repo.list("deltas/").await?);
    Ok(())
}

fn uploaded_file<'a>(pushed: &'a Pushed, part: &str) -> anyhow::Result<&'a [u8]> {
    let suffix = format!(".{part}.delta");
    let (_, bytes) = pushed.delta.iter().find(|(name, _)| name.ends_with(&suffix)).context("uploaded file")?;
    Ok(bytes)
}
