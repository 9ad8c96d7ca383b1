//! Resources on moto (S3, DynamoDB) for the suites that run flatbucket on the AWS backends.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use serde_json::json;

/// Buckets and table made for one test, named uniquely so reruns never collide.
pub struct Resources {
    pub staging: String,
    pub public: String,
    pub table: String,
}

impl Resources {
    /// Points a flatbucket configuration at these resources (repo `stable` under `stable/`).
    pub fn configure(&self, config: &mut serde_json::Value) {
        config["database-url"] = json!(format!("dynamodb://{}", self.table));
        config["s3"] = json!({"staging-bucket": self.staging, "public-bucket": self.public});
        config["repos"]["stable"]["path"] = json!("stable");
    }
}

/// A unique suffix for resource names.
pub fn unique_suffix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos();
    format!("{nanos}-{}", std::process::id())
}

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").expect("start moto first: eval \"$(bash infra/moto.sh start)\"")
}

/// Fresh buckets and table for this run.
pub async fn resources() -> anyhow::Result<Resources> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let suffix = unique_suffix();
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
    Ok(Resources { staging, public, table })
}

/// Copies every object of `bucket`/`prefix` into `dir`, as `aws s3 sync` would.
pub async fn mirror(bucket: &str, prefix: &str, dir: &Path) -> anyhow::Result<()> {
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
