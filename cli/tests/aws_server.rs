//! The server on the AWS backends, against moto's S3/DynamoDB API: the seed workflow pushes a
//! real Flatpak app through `flat-manager` into an S3 bucket, and a real `flatpak --user` client
//! installs, runs and updates it straight from the bucket's HTTP endpoint. A mirror of the bucket
//! passes `ostree fsck`.
#![cfg(feature = "aws")]

use flatbucket_tests::aws::{endpoint, mirror, resources};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_into_s3_and_flatpak_installs_from_the_bucket() -> anyhow::Result<()> {
    let endpoint = endpoint();
    let aws = resources().await?;
    let public = aws.public.clone();
    let server = FlatManager::start_with(binaries(), |config| aws.configure(config))?;
    let token = server.token("test")?;
    let fixture = build_repo(1)?;
    let local = fixture.repo.to_str().unwrap();
    let build_url = server.run_client(&token, &["create", &server.url(), "stable"])?.trim().to_owned();
    server.run_client(&token, &["push", "--commit", "--publish", "--wait", &build_url, local])?;

    let repo_url = format!("{endpoint}/{public}/stable/");
    let client = Isolated::new()?;
    let output = install_and_run(&client, &repo_url)?;
    assert!(output.contains("Hello from version 1"), "{output}");

    export_app_version(&fixture.repo, fixture.dir.path(), 2)?;
    let build_url = server.run_client(&token, &["create", &server.url(), "stable"])?.trim().to_owned();
    server.run_client(&token, &["push", "--commit", "--publish", "--wait", &build_url, local])?;
    let output = update_and_run(&client)?;
    assert!(output.contains("Hello from version 2"), "{output}");

    let copy = tempfile::tempdir()?;
    mirror(&public, "stable", copy.path()).await?;
    run(Isolated::new()?.ostree().arg("fsck").arg(format!("--repo={}", copy.path().display())))?;
    Ok(())
}
