//! Static deltas on the AWS backends (S3, DynamoDB and SQS on moto), deployed as `template.yaml`
//! does: with `deltas-queue-url`, a publish hands its update-repo job to the deltas queue (read by
//! the libostree `deltas` function), never to the worker's queue. Run from there with the
//! libostree generator, as the deltas function runs it, the job stores deltas and delta indexes in
//! the public bucket (their keys contain `+`); a mirror of the bucket passes `ostree fsck` and
//! `ostree static-delta show`, and `flatpak` installs v1 and updates to v2 from the bucket.
#![cfg(feature = "aws")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use aws_sdk_sqs::Client as Sqs;
use flatbucket::app::AppState;
use flatbucket::config::Config;
use flatbucket::jobs::queue::Deliveries;
use flatbucket::jobs::{sqs_client, SqsQueue};
use flatbucket::repo::Checksum;
use flatbucket::store::{LocalStore, ObjectStore};
use flatbucket_deltas::LibostreeGenerator;
use flatbucket_tests::aws::{mirror, resources, unique_suffix, Resources};
use flatbucket_tests::fixture::{build_repo, export_app_version, install_and_run, update_and_run, Fixture};
use flatbucket_tests::fixture::{APP_ID, APP_REF, RUNTIME_REF};
use flatbucket_tests::publishing::{publish, resolve_refs, run_to_end};
use flatbucket_tests::tools::{run, Isolated};
use serde_json::{json, Value};

/// The job and deltas queues of one test.
struct Queues {
    sqs: Sqs,
    jobs: String,
    deltas: String,
}

impl Queues {
    async fn create() -> anyhow::Result<Self> {
        let sqs = sqs_client(None).await;
        let mut urls = Vec::new();
        for name in ["jobs", "deltas"] {
            let created = sqs.create_queue().queue_name(format!("{name}-{}", unique_suffix())).send().await?;
            urls.push(created.queue_url().context("CreateQueue answered no URL")?.to_owned());
        }
        let deltas = urls.pop().context("deltas queue")?;
        let jobs = urls.pop().context("jobs queue")?;
        Ok(Self { sqs, jobs, deltas })
    }

    /// Takes the next update-repo job from the deltas queue, as the deltas function's event
    /// source does, after checking the worker's queue was not given it.
    async fn take_update_job(&self, published: &Value) -> anyhow::Result<i64> {
        let expected = published["update-repo-job"].as_i64().with_context(|| format!("no update job: {published}"))?;
        let mut deliveries = SqsQueue::new(self.sqs.clone(), self.deltas.clone()).deliveries();
        let delivered = tokio::time::timeout(Duration::from_secs(60), deliveries.next_delivery())
            .await
            .context("nothing reached the deltas queue in a minute")?
            .context("the deltas queue is gone")?;
        ensure!(delivered == expected, "the deltas queue delivered job {delivered}, not {expected}");
        let received = self.sqs.receive_message().queue_url(&self.jobs).max_number_of_messages(10).send().await?;
        let bodies: Vec<&str> = received.messages().iter().filter_map(|m| m.body()).collect();
        ensure!(!bodies.contains(&expected.to_string().as_str()), "the worker's queue got the update job too");
        Ok(delivered)
    }
}

/// The deltas function's state: the configuration `template.yaml` passes, with the generator.
async fn start(aws: &Resources, queues: &Queues, build_repo_base: &std::path::Path) -> anyhow::Result<AppState> {
    let mut config = json!({
        "repos": {"stable": {"path": "stable", "deltas": [{"id": ["org.example.*"], "depth": 2}]}},
        "build-repo-base": build_repo_base,
        "secret": "c2VjcmV0",
        "queue-url": queues.jobs,
        "deltas-queue-url": queues.deltas,
    });
    aws.configure(&mut config);
    let (app, _) = AppState::from_config(Config::parse(&config.to_string())?).await?;
    Ok(app.with_delta_generator(Arc::new(LibostreeGenerator::new())))
}

/// The published commit of `name`.
async fn head(app: &AppState, name: &str) -> anyhow::Result<Checksum> {
    let records = app.state.repo_refs("stable").await?;
    Ok(records.iter().find(|r| r.name == name).with_context(|| format!("{name} is not published"))?.commit)
}

/// Mirrors the bucket's repository: `ostree fsck` passes and `ostree static-delta list` names at
/// least `expected` (the appstream branches have deltas too), each of which it can show.
async fn check_mirror(aws: &Resources, expected: &[String]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    mirror(&aws.public, "stable", dir.path()).await?;
    let ostree = |args: &[&str]| run(std::process::Command::new("ostree").args(args).arg("--repo").arg(dir.path()));
    ostree(&["fsck"])?;
    let listed: BTreeSet<String> = ostree(&["static-delta", "list"])?.lines().map(str::to_owned).collect();
    for name in expected {
        ensure!(listed.contains(name), "{name} is not in the bucket: {listed:?}");
        let shown = ostree(&["static-delta", "show", name])?;
        ensure!(shown.contains("Number of parts"), "{name}: {shown}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deltas_queue_runs_update_jobs_into_the_bucket() -> anyhow::Result<()> {
    let fixture: Fixture = tokio::task::spawn_blocking(|| build_repo(1)).await??;
    let source: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&fixture.repo)?);
    let (aws, queues, dir) = (resources().await?, Queues::create().await?, tempfile::tempdir()?);
    let app = start(&aws, &queues, &dir.path().join("build-repo")).await?;

    let v1 = resolve_refs(&*source, &[RUNTIME_REF, APP_REF]).await?;
    let published = publish(&app, "stable", APP_ID, &source, &v1).await?;
    run_to_end(&app, queues.take_update_job(&published).await?).await?;
    let app_v1 = head(&app, APP_REF).await?;
    check_mirror(&aws, &[app_v1.to_hex()]).await?;

    let url = format!("{}/{}/stable/", flatbucket_tests::aws::endpoint(), aws.public);
    let client = Isolated::new()?;
    let output = tokio::task::block_in_place(|| install_and_run(&client, &url))?;
    assert!(output.contains("Hello from version 1"), "v1 printed {output:?}");

    let (repo, work) = (fixture.repo.clone(), fixture.dir.path().to_owned());
    tokio::task::spawn_blocking(move || export_app_version(&repo, &work, 2)).await??;
    let v2 = resolve_refs(&*source, &[APP_REF]).await?;
    let published = publish(&app, "stable", APP_ID, &source, &v2).await?;
    run_to_end(&app, queues.take_update_job(&published).await?).await?;
    let app_v2 = head(&app, APP_REF).await?;
    check_mirror(&aws, &[app_v2.to_hex(), format!("{app_v1}-{app_v2}")]).await?;

    let output = tokio::task::block_in_place(|| update_and_run(&client))?;
    assert!(output.contains("Hello from version 2"), "v2 printed {output:?}");
    Ok(())
}
