//! The server on the AWS backends, against moto's S3/DynamoDB API: the seed workflow pushes a
//! real Flatpak app through `flat-manager` into an S3 bucket, and a real `flatpak --user` client
//! installs, runs and updates it straight from the bucket's HTTP endpoint. The app carries objects
//! of over 1 MiB, which the client sends straight to the staging bucket through presigned URLs
//! while the rest goes by multipart in Lambda-sized requests. A mirror of the bucket passes
//! `ostree fsck`.
#![cfg(feature = "aws")]

use std::path::Path;

use flatbucket::store::{s3_client, ObjectStore, PutPolicy, S3Store};
use flatbucket_cli::client::upload::{DIRECT_THRESHOLD, LAMBDA_CHUNK_LIMIT, PART_OVERHEAD};
use flatbucket_tests::aws::{endpoint, mirror, resources};
use flatbucket_tests::fixture::{build_repo_with_payload, export_app_version, install_and_run, update_and_run};
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
    let (public, staging) = (aws.public.clone(), aws.staging.clone());
    let server = FlatManager::start_with(binaries(), |config| aws.configure(config))?;
    let token = server.token("test")?;
    // Two 1 MiB files of incompressible data: two objects over the direct-upload threshold.
    let fixture = build_repo_with_payload(1, 2 << 20)?;
    let local = fixture.repo.to_str().unwrap();
    let build_url = server.run_client(&token, &["create", &server.url(), "stable"])?.trim().to_owned();
    server.run_client(&token, &["push", &build_url, local])?;

    let objects = local_objects(&fixture.repo)?;
    let (large, small): (Vec<_>, Vec<_>) = objects.iter().partition(|(_, size)| *size >= DIRECT_THRESHOLD);
    assert_eq!(large.len(), 2, "the fixture's payload: {objects:?}");
    let id = build_url.rsplit('/').next().unwrap();
    let uploads =
        S3Store::new(s3_client(Some(&endpoint)).await, staging, format!("build/{id}/upload"), PutPolicy::Private);
    for (key, size) in &large {
        assert_eq!(uploads.head(key).await?, Some(*size), "{key} is in the staging bucket");
    }
    let log = strip_ansi(&server.log());
    let issued = logged(&log, "issued presigned upload URLs", "objects");
    assert_eq!(issued.iter().sum::<u64>(), 2, "presigned URLs for the large objects only:\n{log}");
    let multipart = logged(&log, "stored multipart upload", "bytes");
    let small_bytes: u64 = small.iter().map(|(_, size)| size).sum();
    assert!(
        !multipart.is_empty() && multipart.iter().sum::<u64>() <= small_bytes,
        "only small objects by multipart:\n{log}"
    );
    let parts = logged(&log, "stored multipart upload", "parts");
    for (bytes, parts) in multipart.iter().zip(&parts) {
        assert!(bytes + parts * PART_OVERHEAD <= LAMBDA_CHUNK_LIMIT, "a Lambda-sized request: {bytes} bytes");
    }
    server.run_client(&token, &["commit", "--wait", &build_url])?;
    server.run_client(&token, &["publish", "--wait", &build_url])?;

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

/// Every object file of an archive repository (`objects/xx/…` key) with its size.
fn local_objects(repo: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    let mut objects = Vec::new();
    for dir in std::fs::read_dir(repo.join("objects"))? {
        let dir = dir?;
        for file in std::fs::read_dir(dir.path())? {
            let file = file?;
            let key = format!("objects/{}/{}", dir.file_name().to_string_lossy(), file.file_name().to_string_lossy());
            objects.push((key, file.metadata()?.len()));
        }
    }
    objects.sort();
    Ok(objects)
}

/// The values of `field` on the server's log lines with `message`, in order.
fn logged(log: &str, message: &str, field: &str) -> Vec<u64> {
    let prefix = format!("{field}=");
    log.lines()
        .filter(|line| line.contains(message))
        .filter_map(|line| line.split_whitespace().find_map(|word| word.strip_prefix(&prefix)?.parse().ok()))
        .collect()
}

/// The log without terminal colour codes (`ESC [ … m`), which the server writes around fields.
fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}
