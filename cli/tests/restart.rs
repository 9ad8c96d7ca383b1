//! Crash safety with the real processes: the server is killed (SIGKILL) while a build is being
//! committed and again while it is being published. After each restart the interrupted job runs
//! again from the state store, the client's `push --wait` rides out the outage, and the repo
//! ends up consistent: `ostree fsck` passes and flatpak installs and runs the app.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use flatbucket::domain::build::{Build, PublishedState, RepoState};
use flatbucket::state::{SqliteState, StateStore};
use flatbucket_tests::fixture::{build_repo_with_payload, install_and_run};
use flatbucket_tests::flat_manager::{Binaries, FlatManager};
use flatbucket_tests::tools::{run, Isolated};

fn binaries() -> Binaries {
    Binaries {
        server: env!("CARGO_BIN_EXE_flat-manager").into(),
        client: env!("CARGO_BIN_EXE_flat-manager-client").into(),
        gentoken: env!("CARGO_BIN_EXE_gentoken").into(),
    }
}

/// Polls the server's state file until `ready` holds for build `id`.
async fn wait_for(state: &SqliteState, id: i64, what: &str, ready: impl Fn(&Build) -> bool) -> anyhow::Result<Build> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(build) = state.get_build(id).await {
            if ready(&build) {
                return Ok(build);
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "build {id} never became {what}: {:?}", state.get_build(id).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_server_killed_during_commit_and_publish() -> anyhow::Result<()> {
    let mut server = FlatManager::start(binaries())?;
    let token = server.token("test")?;
    let fixture = build_repo_with_payload(1, 48 << 20)?;
    let build_url = server.run_client(&token, &["create", &server.url(), "stable"])?.trim().to_owned();
    let id: i64 = build_url.rsplit('/').next().unwrap().parse()?;
    let push = server
        .client(&token)
        .args(["push", "--commit", "--publish", "--wait", &build_url])
        .arg(&fixture.repo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let state = SqliteState::open(&server.dir.path().join("flatbucket.sqlite"))?;

    wait_for(&state, id, "committing", |b| b.repo_state == RepoState::Committing).await?;
    server.kill();
    let at_kill = state.get_build(id).await?;
    server.restart()?;
    wait_for(&state, id, "publishing", |b| b.published_state != PublishedState::Unpublished)
        .await
        .map_err(|e| e.context(format!("server log:\n{}", server.log())))?;
    server.kill();
    server.restart()?;

    let output = tokio::task::spawn_blocking(move || push.wait_with_output()).await??;
    let log = server.log();
    assert!(output.status.success(), "push failed: {}\nserver log:\n{log}", String::from_utf8_lossy(&output.stderr));
    let build = state.get_build(id).await?;
    assert_eq!((build.repo_state, build.published_state), (RepoState::Ready, PublishedState::Published), "{build:?}");
    eprintln!("killed while {:?}; resumed jobs: {}", at_kill.repo_state, log.matches("resuming a job").count());

    fsck(&server.repo_path("stable"))?;
    let output = install_and_run(&Isolated::new()?, &format!("{}/repo/stable/", server.url()))?;
    assert!(output.contains("Hello from version 1"), "{output}");
    Ok(())
}

fn fsck(repo: &Path) -> anyhow::Result<()> {
    run(Isolated::new()?.ostree().arg("fsck").arg(format!("--repo={}", repo.display())))?;
    Ok(())
}
