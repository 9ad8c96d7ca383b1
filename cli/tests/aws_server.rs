//! The server on the AWS backends, against moto's S3/DynamoDB API: the seed workflow pushes a
//! real Flatpak app through `flat-manager` into an S3 bucket, and a real `flatpak --user` client
//! installs, runs and updates it straight from the bucket's HTTP endpoint. A mirror of the bucket
//! passes `ostree fsck`.
#![cfg(feature = "aws")]

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use flatbucket_tests::fixture::{build_repo, export_app_version, install_and_run, update_and_run};
use flatbucket_tests::flat_manager::{Binaries, FlatManager};
use flatbucket_tests::tools::{run, Isolated};
use serde_json::json;

fn binaries() -> Binaries {
    Binaries {
        server: env!("CARGO_BIN_EXE_flat-manager").into(),
        client: env!("CARGO_BIN_EXE_flat-manager-client").into(),
        gentoken: env!("CARGO_BIN_EXE_gentoken").into(),
    }
}

fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").expect("start moto first: eval \"$(bash infra/moto.sh start)\"")
}

/// Fresh buckets and table for this run.
async fn aws_resources(suffix: &str) -> anyhow::Result<(String, String, String)> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let (staging, public, table) = (format!("staging-{suffix}"), format!("public-{suffix}"), format!("state-{suffix}"));
    for bucket in [&staging, &public] {
        s3.create_bucket().bucket(bucket).send().await?;
    }
    // Anonymous reads of the public bucket stand in for CloudFront reading it through its OAC.
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
        "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{public}/*")}]});
    s3.put_bucket_policy().bucket(&public).policy(policy.to_string()).send().await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let attribute =
        |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
    dynamodb
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?)
        .send()
        .await?;
    Ok((staging, public, table))
}

/// Copies every object of `bucket`/`prefix` into `dir`, as `aws s3 sync` would.
async fn mirror(bucket: &str, prefix: &str, dir: &Path) -> anyhow::Result<()> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let mut pages = s3.list_objects_v2().bucket(bucket).prefix(format!("{prefix}/")).into_paginator().send();
    while let Some(page) = pages.next().await {
        for object in page?.contents() {
            let key = object.key().unwrap_or_default();
            let body = s3.get_object().bucket(bucket).key(key).send().await?.body.collect().await?.into_bytes();
            let path = dir.join(&key[prefix.len() + 1..]);
            std::fs::create_dir_all(path.parent().unwrap())?;
            std::fs::write(path, body)?;
        }
    }
    flatbucket::repo::layout::init_local_repo(dir, None)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_into_s3_and_flatpak_installs_from_the_bucket() -> anyhow::Result<()> {
    let endpoint = endpoint();
    let suffix = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos().to_string();
    let (staging, public, table) = aws_resources(&suffix).await?;
    let server = FlatManager::start_with(binaries(), |config| {
        config["database-url"] = json!(format!("dynamodb://{table}"));
        config["s3"] = json!({"staging-bucket": staging, "public-bucket": public});
        config["repos"]["stable"]["path"] = json!("stable");
    })?;
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
