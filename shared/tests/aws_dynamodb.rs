//! The DynamoDB StateStore against a DynamoDB API server (moto locally: `eval "$(bash
//! infra/moto.sh start)"`): the StateStore conformance suite, plus what only this backend has to
//! prove: logs past one item's 400 KB, conditional writes between separate clients, lease expiry
//! and malformed items. Each test makes its own table.

#![cfg(feature = "aws")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use flatbucket::domain::build::{NewBuild, RepoState};
use flatbucket::domain::job::CommitContents;
use flatbucket::repo::record::RefRecord;
use flatbucket::repo::Checksum;
use flatbucket::state::{conformance, create_table, dynamodb_client, DynamoState, StateError, StateStore};

/// A client for the test server and a fresh, uniquely named table in it.
async fn fresh_table() -> (Client, String) {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        panic!(
            "AWS_ENDPOINT_URL is not set. These tests need a DynamoDB API server and never pass without one: \
             run `eval \"$(bash infra/moto.sh start)\"` (moto on 127.0.0.1:5000, test credentials, AWS_REGION) \
             and then `cargo test -p flatbucket --features aws --test aws_dynamodb`."
        );
    }
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let table = format!("flatbucket-test-{}-{nanos}-{}", std::process::id(), SEQUENCE.fetch_add(1, Ordering::Relaxed));
    let client = dynamodb_client().await;
    create_table(&client, &table).await.unwrap();
    (client, table)
}

async fn store() -> (Client, DynamoState) {
    let (client, table) = fresh_table().await;
    (client.clone(), DynamoState::new(client, table))
}

fn new_build() -> NewBuild {
    conformance::new_build("stable", Some("org.example.App"))
}

fn commit_of(build: i64) -> CommitContents {
    CommitContents { build, endoflife: None, endoflife_rebase: None, token_type: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_state_store_conformance_suite() {
    let (_client, state) = store().await;
    conformance::run_all(Arc::new(state)).await;
}

#[tokio::test]
async fn creating_the_table_twice_is_harmless_and_turns_ttl_on() {
    let (client, table) = fresh_table().await;
    create_table(&client, &table).await.unwrap();
    let ttl = client.describe_time_to_live().table_name(&table).send().await.unwrap();
    let description = ttl.time_to_live_description().unwrap();
    assert_eq!(description.attribute_name(), Some("ttl"));
    let described = client.describe_table().table_name(&table).send().await.unwrap();
    let keys: Vec<(&str, &str)> =
        described.table().unwrap().key_schema().iter().map(|k| (k.attribute_name(), k.key_type().as_str())).collect();
    assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")]);
}

/// A log of 1.2 MB, three times what one item may hold, appended 64 KB at a time (and once in
/// one 700 KB piece), comes back whole, and offsets into it give exactly the rest.
#[tokio::test]
async fn logs_grow_past_one_item_and_read_from_offsets() {
    let (client, state) = store().await;
    let build = state.create_build(new_build()).await.unwrap();
    let job = state.start_commit(&commit_of(build.id)).await.unwrap();

    // Multi-byte characters, so appends and chunk boundaries fall inside characters too.
    let line = "step ✓ ünïcødé 🚀 ".repeat(4);
    let piece = text_of(&line, 64 * 1024);
    let mut whole = String::new();
    let mut offsets = Vec::new();
    while whole.len() < 1_200_000 {
        offsets.push(whole.len());
        state.append_job_log(job.id, &piece).await.unwrap();
        whole.push_str(&piece);
    }
    let big = text_of(&line, 700 * 1024);
    offsets.push(whole.len());
    state.append_job_log(job.id, &big).await.unwrap();
    whole.push_str(&big);

    let read = state.get_job(job.id).await.unwrap();
    assert_eq!(read.log.len(), whole.len());
    assert!(read.log == whole, "the log comes back byte for byte");
    for offset in offsets.iter().copied().chain([1, whole.len() / 3, whole.len() - 1, whole.len() + 10]) {
        let expected = &whole[floor_char_boundary(&whole, offset.min(whole.len()))..];
        assert_eq!(read.log_from(offset), expected, "from {offset}");
    }
    assert_eq!(state.claim_job(job.id).await.unwrap().unwrap().log, whole, "claiming returns the log too");

    // Stored as chunks, none near the 400 KB item limit.
    let chunks = client
        .query()
        .table_name(state.table())
        .key_condition_expression("pk = :pk AND begins_with(sk, :log)")
        .expression_attribute_values(":pk", AttributeValue::S(format!("JOB#{}", job.id)))
        .expression_attribute_values(":log", AttributeValue::S("LOG#".into()))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap();
    let sizes: Vec<usize> = chunks.iter().map(|item| item["text"].as_s().unwrap().len()).collect();
    assert!(sizes.len() > offsets.len(), "the big append took several chunks: {sizes:?}");
    assert!(sizes.iter().all(|size| *size <= 300 * 1024), "{sizes:?}");
}

/// `pattern` repeated to about `bytes` bytes (never splitting a character).
fn text_of(pattern: &str, bytes: usize) -> String {
    let mut text = String::with_capacity(bytes);
    for c in pattern.chars().cycle() {
        if text.len() + c.len_utf8() > bytes {
            return text;
        }
        text.push(c);
    }
    unreachable!("the cycle is endless")
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// Appenders racing on one log lose no text and never interleave inside one append.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_log_appends_keep_every_append_whole() {
    let (_client, state) = store().await;
    let state = Arc::new(state);
    let job = state.create_job(flatbucket::domain::job::JobKind::Prune, "{}", None).await.unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|writer| {
            let state = state.clone();
            tokio::spawn(async move {
                for line in 0..5 {
                    let text = format!("[writer {writer} line {line}]\n");
                    state.append_job_log(job.id, &text).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let log = state.get_job(job.id).await.unwrap().log;
    let mut lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 30, "{log}");
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), 30, "every append exactly once: {log}");
    for writer in 0..6 {
        let own: Vec<&str> = log.lines().filter(|l| l.starts_with(&format!("[writer {writer} "))).collect();
        let expected: Vec<String> = (0..5).map(|line| format!("[writer {writer} line {line}]")).collect();
        assert_eq!(own, expected, "each writer's appends stay in order");
    }
}

/// Two API servers (two clients, as two Lambdas would have) commit one build at once: one job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clients_committing_one_build_start_one_job() {
    let (_client, first) = store().await;
    let second = DynamoState::new(dynamodb_client().await, first.table().to_owned());
    for _ in 0..10 {
        let build = first.create_build(new_build()).await.unwrap();
        let contents = commit_of(build.id);
        let (a, b) = tokio::join!(first.start_commit(&contents), second.start_commit(&contents));
        let (job, refused) = match (a, b) {
            (Ok(job), refused) | (refused, Ok(job)) => (job, refused),
            other => panic!("no commit started: {other:?}"),
        };
        match refused {
            Err(StateError::WrongState(wrong)) => {
                assert_eq!(
                    (wrong.current, wrong.message.as_str()),
                    ("committing", "Build is currently being committed")
                )
            }
            other => panic!("the other commit must be refused, got {other:?}"),
        }
        let build = second.get_build(build.id).await.unwrap();
        assert_eq!((build.repo_state, build.commit_job_id), (RepoState::Committing, Some(job.id)));
        let (a, b) = tokio::join!(first.claim_job(job.id), second.claim_job(job.id));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a.is_some() != b.is_some(), "exactly one claim wins: {a:?} {b:?}");
    }
}

#[tokio::test]
async fn a_stale_lease_is_taken_over_and_a_live_one_is_not() {
    let (_client, state) = store().await;
    assert!(state.acquire_lease("publish-stable", "crashed-worker", 0).await.unwrap());
    assert!(state.acquire_lease("publish-beta", "live-worker", 60).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(state.acquire_lease("publish-stable", "new-worker", 60).await.unwrap(), "stale lease taken over");
    assert!(!state.acquire_lease("publish-stable", "crashed-worker", 60).await.unwrap(), "and now held");
    assert!(!state.acquire_lease("publish-beta", "new-worker", 60).await.unwrap(), "a live lease is kept");
    // The crashed worker coming back cannot release what is no longer its lease.
    state.release_lease("publish-stable", "crashed-worker").await.unwrap();
    assert!(!state.acquire_lease("publish-stable", "other-worker", 60).await.unwrap());
}

fn record(name: &str, commit: &str) -> RefRecord {
    RefRecord {
        name: name.into(),
        commit: Checksum::of(commit.as_bytes()),
        commit_size: 1,
        timestamp: 2,
        flatpak: None,
    }
}

/// More records than one batch write holds, with a name repeated: all stored, the last wins.
#[tokio::test]
async fn repo_refs_are_written_in_batches() {
    let (_client, state) = store().await;
    let mut records: Vec<RefRecord> =
        (0..60).map(|i| record(&format!("app/org.example.A{i:02}/x86_64/stable"), "one")).collect();
    records.push(record("app/org.example.A07/x86_64/stable", "two"));
    state.put_repo_refs("stable", &records).await.unwrap();
    let stored = state.repo_refs("stable").await.unwrap();
    assert_eq!(stored.len(), 60);
    assert!(stored.windows(2).all(|w| w[0].name < w[1].name), "ordered by name");
    assert_eq!(stored[7], record("app/org.example.A07/x86_64/stable", "two"));
}

#[tokio::test]
async fn malformed_items_are_errors_not_panics() {
    let (client, state) = store().await;
    let build = state.create_build(new_build()).await.unwrap();
    let job = state.start_commit(&commit_of(build.id)).await.unwrap();
    for (pk, attribute, value) in [
        (format!("BUILD#{}", build.id), "repo_state", AttributeValue::N("42".into())),
        (format!("JOB#{}", job.id), "kind", AttributeValue::N("42".into())),
    ] {
        client
            .update_item()
            .table_name(state.table())
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S("META".into()))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .unwrap();
    }
    let err = state.get_build(build.id).await.unwrap_err();
    assert!(matches!(&err, StateError::Backend(m) if m.contains("invalid repo_state 42")), "{err}");
    assert!(matches!(state.list_builds(Some("org.example.App")).await, Err(StateError::Backend(_))));
    assert!(matches!(state.start_commit(&commit_of(build.id)).await, Err(StateError::Backend(_))));
    let err = state.get_job(job.id).await.unwrap_err();
    assert!(matches!(&err, StateError::Backend(m) if m.contains("invalid kind 42")), "{err}");
    assert!(matches!(state.unfinished_jobs().await, Err(StateError::Backend(_))));
}
