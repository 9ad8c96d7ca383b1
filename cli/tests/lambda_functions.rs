//! The Lambda functions end to end, deployed as `template.yaml` says, on moto: the function
//! binaries run under `cargo lambda watch`, a stand-in HTTP API routes requests to them by the
//! template's route table, and a stand-in SQS event source mapping feeds the job queue to the
//! worker. `flat-manager-client` pushes a fixture app through them, large objects by presigned
//! direct uploads; the worker commits and publishes it into the public bucket, from whose HTTP
//! endpoint a real `flatpak --user` client installs, runs and updates it. A mirror of the bucket
//! passes `ostree fsck`.
#![cfg(feature = "aws")]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context};
use flatbucket_tests::aws::{endpoint, mirror, resources};
use flatbucket_tests::fixture::{build_repo_with_payload, export_app_version, install_and_run, update_and_run};
use flatbucket_tests::flat_manager::{example_config, gentoken};
use flatbucket_tests::lambda::LambdaStack;
use flatbucket_tests::tools::{run, Isolated};
use tokio::task::block_in_place;

/// Two files of 1 MiB in version 1: objects at the client's direct-upload threshold or above.
const PAYLOAD: usize = 2 << 20;
/// Longest a client command may take before the test gives up (a push waits for its jobs).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

/// Requests each route must have carried (two pushes), with the function it invokes.
const EXPECTED_ROUTES: &[(&str, &str, usize)] = &[
    ("POST /api/v1/build", "create", 2),
    ("POST /api/v1/build/{id}/upload_urls", "upload", 1),
    ("POST /api/v1/build/{id}/upload", "upload", 2),
    ("POST /api/v1/build/{id}/build_ref", "upload", 2),
    ("POST /api/v1/build/{id}/commit", "commit", 2),
    ("POST /api/v1/build/{id}/publish", "publish", 2),
];
/// Jobs the worker must have finished: a commit and a publish per push.
const EXPECTED_JOBS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_through_the_functions_and_flatpak_installs_from_the_bucket() -> anyhow::Result<()> {
    let endpoint = endpoint();
    let aws = resources().await?;
    let mut config = example_config()?;
    aws.configure(&mut config);
    let stack = LambdaStack::start(config).await?;
    let repo_url = format!("{endpoint}/{}/stable/", aws.public);
    let outcome = push_install_and_update(&stack, &repo_url).await.and_then(|()| check_traffic(&stack));
    outcome.with_context(|| stack.diagnostics())?;

    let copy = tempfile::tempdir()?;
    mirror(&aws.public, "stable", copy.path()).await?;
    run(Isolated::new()?.ostree().arg("fsck").arg(format!("--repo={}", copy.path().display())))?;
    Ok(())
}

/// Pushes version 1 and installs it from the bucket, then pushes version 2 and updates to it.
async fn push_install_and_update(stack: &LambdaStack, repo_url: &str) -> anyhow::Result<()> {
    let token = gentoken(Path::new(env!("CARGO_BIN_EXE_gentoken")), "test")?;
    let fixture = block_in_place(|| build_repo_with_payload(1, PAYLOAD))?;
    push(stack, &token, &fixture.repo)?;
    let client = Isolated::new()?;
    let output = block_in_place(|| install_and_run(&client, repo_url))?;
    ensure!(output.contains("Hello from version 1"), "version 1 printed {output:?}");

    block_in_place(|| export_app_version(&fixture.repo, fixture.dir.path(), 2))?;
    push(stack, &token, &fixture.repo)?;
    let output = block_in_place(|| update_and_run(&client))?;
    ensure!(output.contains("Hello from version 2"), "version 2 printed {output:?}");
    Ok(())
}

/// `create`, then `push --commit --publish --wait`, through the HTTP API.
fn push(stack: &LambdaStack, token: &str, repo: &Path) -> anyhow::Result<()> {
    let build_url = client(token, &["create", &stack.url(), "stable"])?;
    let repo = repo.to_str().context("fixture path")?;
    client(token, &["push", "--commit", "--publish", "--wait", build_url.trim(), repo])?;
    Ok(())
}

/// Runs `flat-manager-client` with `args` (killed after [`CLIENT_TIMEOUT`]) and returns its stdout.
fn client(token: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new("timeout");
    cmd.arg(format!("{}s", CLIENT_TIMEOUT.as_secs())).arg(env!("CARGO_BIN_EXE_flat-manager-client"));
    block_in_place(|| run(cmd.args(args).env("REPO_TOKEN", token)))
}

/// Every request reached a function the template routes it to, the pushes went through the
/// create, upload, commit and publish functions, and the worker ran every job.
fn check_traffic(stack: &LambdaStack) -> anyhow::Result<()> {
    let traffic = stack.gateway.traffic();
    ensure!(traffic.unrouted.is_empty(), "requests the template routes nowhere: {:?}", traffic.unrouted);
    ensure!(traffic.failed.is_empty(), "requests no function answered: {:?}", traffic.failed);
    for &(route, function, at_least) in EXPECTED_ROUTES {
        let count = traffic.routes.get(route).copied().unwrap_or_default();
        ensure!(count >= at_least, "{route} (function {function}) carried {count} requests, expected {at_least}+");
        ensure!(traffic.functions.contains_key(function), "no request reached the {function} function");
    }
    let jobs = stack.jobs.activity();
    ensure!(jobs.deleted >= EXPECTED_JOBS, "the worker finished {} jobs, expected {EXPECTED_JOBS}+", jobs.deleted);
    Ok(())
}
