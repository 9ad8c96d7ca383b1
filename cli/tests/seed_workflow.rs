//! The seed workflow end to end with the real processes: `flat-manager` on the shipped example
//! configuration, a token from `gentoken`, `flat-manager-client push --commit --publish --wait`,
//! and a real `flatpak --user` client installing, running and updating the app — from the
//! published repo, and from `/build-repo/<id>` before publishing.

use flatbucket_tests::fixture::{build_repo, export_app_version, install_and_run, update_and_run};
use flatbucket_tests::flat_manager::{Binaries, FlatManager};
use flatbucket_tests::tools::{run, Isolated};

fn binaries() -> Binaries {
    Binaries {
        server: env!("CARGO_BIN_EXE_flat-manager").into(),
        client: env!("CARGO_BIN_EXE_flat-manager-client").into(),
        gentoken: env!("CARGO_BIN_EXE_gentoken").into(),
    }
}

#[test]
fn push_publish_install_run_and_update() -> anyhow::Result<()> {
    let server = FlatManager::start(binaries())?;
    let token = server.token("test")?;
    let fixture = build_repo(1)?;
    let local_repo = fixture.repo.to_str().unwrap();

    let build_url = server.run_client(&token, &["create", &server.url(), "stable"])?.trim().to_owned();
    assert!(build_url.starts_with(&format!("{}/api/v1/build/", server.url())), "{build_url}");
    server.run_client(&token, &["push", "--commit", "--publish", "--wait", &build_url, local_repo])?;
    fsck(&server.repo_path("stable"))?;

    let client = Isolated::new()?;
    let output = install_and_run(&client, &format!("{}/repo/stable/", server.url()))?;
    assert!(output.contains("Hello from version 1"), "{output}");

    // Version 2: committed, installable from the build repo, then published and updated to.
    export_app_version(&fixture.repo, fixture.dir.path(), 2)?;
    let build_url = server.run_client(&token, &["create", &server.url(), "stable"])?.trim().to_owned();
    server.run_client(&token, &["push", "--commit", "--wait", &build_url, local_repo])?;
    let build_id = build_url.rsplit('/').next().unwrap();
    let output = install_from_build_repo(&server, build_id)?;
    assert!(output.contains("Hello from version 2"), "{output}");

    server.run_client(&token, &["publish", "--wait", &build_url])?;
    fsck(&server.repo_path("stable"))?;
    let output = update_and_run(&client)?;
    assert!(output.contains("Hello from version 2"), "{output}");
    Ok(())
}

/// A fresh client takes the runtime from the main repo and the app from `/build-repo/<id>`.
fn install_from_build_repo(server: &FlatManager, build_id: &str) -> anyhow::Result<String> {
    let client = Isolated::new()?;
    let flatpak = |args: &[&str]| run(client.flatpak().args(args));
    flatpak(&["--user", "remote-add", "--no-gpg-verify", "main", &format!("{}/repo/stable/", server.url())])?;
    flatpak(&["--user", "install", "-y", "--noninteractive", "main", "org.example.Platform"])?;
    flatpak(&[
        "--user",
        "remote-add",
        "--no-gpg-verify",
        "build",
        &format!("{}/build-repo/{build_id}/", server.url()),
    ])?;
    flatpak(&["--user", "install", "-y", "--noninteractive", "build", "org.example.App"])?;
    flatpak(&["run", "org.example.App"])
}

fn fsck(repo: &std::path::Path) -> anyhow::Result<()> {
    run(Isolated::new()?.ostree().arg("fsck").arg(format!("--repo={}", repo.display())))?;
    Ok(())
}
