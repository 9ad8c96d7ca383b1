//! HTTP tests through the Router: commit and publish jobs, every wrong-state transition with its
//! message, job logs by byte offset, a corrupted upload, and the `/repo` and `/build-repo` trees.

use axum::http::{Method, StatusCode};
use flatbucket::domain::job::JobStatus;
use flatbucket::domain::token::{Claims, Scope};
use flatbucket::repo::appstream::is_generated_ref;
use flatbucket::repo::{ObjectName, ObjectType};
use flatbucket_tests::router::{admin_claims, TestApi};
use flatbucket_tests::synthetic::SyntheticCommit;
use serde_json::{json, Value};

const APP_REF: &str = "app/org.example.App/x86_64/stable";

fn app(version: &str) -> SyntheticCommit {
    SyntheticCommit::app(
        "org.example.App",
        &[("bin/run", b"#!/bin/sh\necho hi\n"), ("share/version", version.as_bytes())],
    )
}

async fn post(api: &TestApi, token: &str, uri: &str) -> Value {
    api.call(Method::POST, uri, Some(token), Some(json!({}))).await.json()
}

fn assert_wrong_state(answer: &Value, kind: &str, message: &str, current: &str, expected: &str) {
    assert_eq!(answer["error-type"], kind, "{answer}");
    assert_eq!(
        (answer["message"].as_str(), answer["current-state"].as_str()),
        (Some(message), Some(current)),
        "{answer}"
    );
    assert_eq!(answer["expected-state"], expected, "{answer}");
}

#[tokio::test]
async fn commits_and_publishes_with_flat_managers_state_machine() {
    let api = TestApi::start().await;
    let token = api.admin();
    let id = api.uploaded_build(&token, APP_REF, &app("1")).await;
    let build = format!("/api/v1/build/{id}");

    let early = post(&api, &token, &format!("{build}/publish")).await;
    assert_wrong_state(&early, "wrong-repo-state", "Build is not committed", "uploading", "ready");
    let answer = api.call(Method::POST, &format!("{build}/commit"), Some(&token), Some(json!({}))).await;
    assert_eq!(answer.headers["location"], format!("http://test.invalid{build}/commit"));
    let job_id = answer.json()["id"].as_i64().unwrap();
    let again = post(&api, &token, &format!("{build}/commit")).await;
    let current = again["current-state"].as_str().unwrap();
    if current == "committing" {
        assert_wrong_state(&again, "wrong-repo-state", "Build is currently being committed", "committing", "uploading");
    } else {
        assert_wrong_state(&again, "wrong-repo-state", "Build is already committed", "ready", "uploading");
    }
    let job = api.wait_job(job_id).await;
    assert_eq!(job.status, JobStatus::Ended, "{}", job.log);
    assert!(job.log.contains(&format!("Committing ref {APP_REF}")), "{}", job.log);
    let results: Value = serde_json::from_str(job.results.as_deref().unwrap()).unwrap();
    assert!(results["refs"][APP_REF].is_string(), "{results}");

    let via_api =
        api.call(Method::GET, &format!("{build}/commit"), Some(&token), Some(json!({"log-offset": 5}))).await.json();
    assert_eq!(via_api["log"].as_str().unwrap(), &job.log[5..]);
    let by_id = api.call(Method::GET, &format!("/api/v1/job/{job_id}"), Some(&token), None).await.json();
    assert_eq!((by_id["status"].as_i64(), by_id["kind"].as_i64()), (Some(2), Some(0)));
    let installable = api.call(Method::GET, &format!("/build-repo/{id}/summary.idx"), None, None).await;
    assert_eq!(installable.status, StatusCode::OK, "the committed build is installable before publish");

    let publish = api.call(Method::POST, &format!("{build}/publish"), Some(&token), Some(json!({}))).await;
    assert_eq!(publish.headers["location"], format!("http://test.invalid{build}/publish"));
    let job = api.wait_job(publish.json()["id"].as_i64().unwrap()).await;
    assert_eq!(job.status, JobStatus::Ended, "{}", job.log);
    let state = api.call(Method::GET, &build, Some(&token), None).await.json();
    assert_eq!((state["repo_state"].as_i64(), state["published_state"].as_i64()), (Some(2), Some(2)));
    let twice = post(&api, &token, &format!("{build}/publish")).await;
    assert_wrong_state(&twice, "wrong-published-state", "Build has already been published", "published", "unpublished");
    let summary = api.call(Method::GET, "/repo/stable/summary.idx", None, None).await;
    assert_eq!(summary.status, StatusCode::OK);
    assert_eq!(summary.headers["content-type"], "application/octet-stream");
    let published: Vec<_> =
        api.app.state.repo_refs("stable").await.unwrap().into_iter().filter(|r| !is_generated_ref(&r.name)).collect();
    assert_eq!(published.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), [APP_REF]);
    let commit = api
        .call(
            Method::GET,
            &format!("/repo/stable/{}", ObjectName::new(published[0].commit, ObjectType::Commit).key()),
            None,
            None,
        )
        .await;
    assert!(commit.headers["cache-control"].to_str().unwrap().contains("immutable"));
}

#[tokio::test]
async fn a_corrupted_upload_fails_the_commit_naming_the_object_and_leaves_the_repo_untouched() {
    let api = TestApi::start().await;
    let token = api.admin();
    let mut commit = app("1");
    let (victim, bytes) = commit.objects.iter_mut().find(|(n, _)| n.kind == ObjectType::File).unwrap();
    let victim = *victim;
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    let id = api.uploaded_build(&token, APP_REF, &commit).await;
    let job_id = post(&api, &token, &format!("/api/v1/build/{id}/commit")).await["id"].as_i64().unwrap();
    let job = api.wait_job(job_id).await;
    assert_eq!(job.status, JobStatus::Broken);
    let message = serde_json::from_str::<Value>(job.results.as_deref().unwrap()).unwrap()["error-message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains(&victim.to_string()), "{message}");
    let build = api.call(Method::GET, &format!("/api/v1/build/{id}"), Some(&token), None).await.json();
    assert_eq!(build["repo_state"], 3);
    assert!(build["repo_state_reason"].as_str().unwrap().contains(&victim.to_string()));
    let retry = post(&api, &token, &format!("/api/v1/build/{id}/commit")).await;
    assert_wrong_state(
        &retry,
        "wrong-repo-state",
        &format!("Commit already failed: {}", build["repo_state_reason"].as_str().unwrap()),
        "failed",
        "uploading",
    );
    let publish = post(&api, &token, &format!("/api/v1/build/{id}/publish")).await;
    assert_eq!(publish["current-state"], "failed");
    assert_eq!(api.call(Method::GET, "/repo/stable/summary.idx", None, None).await.status, StatusCode::NOT_FOUND);
    assert!(api.app.state.repo_refs("stable").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_second_version_builds_on_the_first_and_objects_are_shared() {
    let api = TestApi::start().await;
    let token = api.admin();
    for version in ["1", "2"] {
        let id = api.uploaded_build(&token, APP_REF, &app(version)).await;
        let commit = post(&api, &token, &format!("/api/v1/build/{id}/commit")).await["id"].as_i64().unwrap();
        assert_eq!(api.wait_job(commit).await.status, JobStatus::Ended);
        let publish = post(&api, &token, &format!("/api/v1/build/{id}/publish")).await["id"].as_i64().unwrap();
        let job = api.wait_job(publish).await;
        assert_eq!(job.status, JobStatus::Ended, "{}", job.log);
    }
    let record = &api.app.state.repo_refs("stable").await.unwrap()[0];
    let repo = &api.app.repo("stable").unwrap().store;
    let (commit, _) = flatbucket::repo::local::read_commit(&**repo, record.commit).await.unwrap();
    assert!(commit.parent.is_some(), "version 2 has version 1 as parent");
    // Version 2's commit took version 1's objects from the repo unverified; its sizes still match
    // a full verification.
    let full = flatbucket::repo::verify::verify_commit(repo.clone(), record.commit, 2, None).await.unwrap();
    assert!(full.is_ok());
    assert_eq!(commit.metadata.get_be_u64("xa.installed-size"), Some(full.sizes.installed));
    assert_eq!(commit.metadata.get_be_u64("xa.download-size"), Some(full.sizes.download));
    assert_eq!(commit.metadata.get_str("ostree.collection-binding"), Some("org.test.Stable"));
}

#[tokio::test]
async fn private_builds_need_a_download_token_and_paths_cannot_escape() {
    let api = TestApi::start().await;
    let token = api.admin();
    let private = json!({"repo": "stable", "app-id": "org.example.App"});
    let id = api.call(Method::POST, "/api/v1/build", Some(&token), Some(private)).await.json()["id"].as_i64().unwrap();
    assert_eq!(
        api.call(Method::GET, &format!("/build-repo/{id}/config"), None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let download = api.token(&Claims { scope: vec![Scope::Download], ..admin_claims() });
    let answer = api.call(Method::GET, &format!("/build-repo/{id}/config"), Some(&download), None).await;
    assert_eq!(answer.status, StatusCode::OK, "falls back to the repo's config: {:?}", answer.body);
    for escape in [
        "/repo/stable/../../../../etc/passwd".to_owned(),
        "/repo/stable/%2e%2e/%2e%2e/etc/passwd".to_owned(),
        "/repo/stable/.flatbucket-tmp/x".to_owned(),
        format!("/build-repo/{id}/../../state.sqlite"),
    ] {
        let answer = api.call(Method::GET, &escape, Some(&download), None).await;
        assert!(
            matches!(answer.status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND),
            "{escape}: {}",
            answer.status
        );
        assert!(!String::from_utf8_lossy(&answer.body).contains("root:"), "{escape}");
    }
    assert_eq!(
        api.call(Method::GET, &format!("/build-repo/{id}/upload/x"), Some(&download), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.call(Method::GET, "/repo/nope/config", None, None).await.message(), "No such repo");
    assert_eq!(api.call(Method::GET, "/build-repo/999/config", None, None).await.status, StatusCode::NOT_FOUND);
}

/// Commits and publishes `app(version)` as a new build; returns the build id.
async fn publish_version(api: &TestApi, token: &str, version: &str) -> i64 {
    let id = api.uploaded_build(token, APP_REF, &app(version)).await;
    let commit = post(api, token, &format!("/api/v1/build/{id}/commit")).await["id"].as_i64().unwrap();
    assert_eq!(api.wait_job(commit).await.status, JobStatus::Ended);
    let publish = post(api, token, &format!("/api/v1/build/{id}/publish")).await["id"].as_i64().unwrap();
    assert_eq!(api.wait_job(publish).await.status, JobStatus::Ended);
    id
}

#[tokio::test]
async fn prune_keeps_three_commits_per_ref_and_what_unpublished_builds_need() {
    let api = TestApi::start().await;
    let token = api.admin();
    let repo = api.app.repo("stable").unwrap().store.clone();
    publish_version(&api, &token, "1").await;
    let first = api.app.state.repo_refs("stable").await.unwrap()[0].commit;
    let (first_commit, _) = flatbucket::repo::local::read_commit(&*repo, first).await.unwrap();
    for version in ["2", "3", "4"] {
        publish_version(&api, &token, version).await;
    }
    // A committed build with version 1's content: its tree lives only in the repository.
    let pending = api.uploaded_build(&token, APP_REF, &app("1")).await;
    let commit = post(&api, &token, &format!("/api/v1/build/{pending}/commit")).await["id"].as_i64().unwrap();
    assert_eq!(api.wait_job(commit).await.status, JobStatus::Ended);

    let manager = api.token(&Claims { sub: String::new(), scope: vec![Scope::Tokenmanagement], ..admin_claims() });
    let builder_refused = api.call(Method::POST, "/api/v1/prune", Some(&token), Some(json!({"repo": "stable"}))).await;
    assert_eq!(builder_refused.status, StatusCode::FORBIDDEN);
    let job = api.call(Method::POST, "/api/v1/prune", Some(&manager), Some(json!({"repo": "stable"}))).await.json();
    let job = api.wait_job(job["id"].as_i64().unwrap()).await;
    assert_eq!(job.status, JobStatus::Ended, "{}", job.log);
    let results: Value = serde_json::from_str(job.results.as_deref().unwrap()).unwrap();
    assert!(results["deleted-objects"].as_u64().unwrap() >= 1, "{results}");

    let key = |checksum, kind| ObjectName::new(checksum, kind).key();
    assert_eq!(repo.head(&key(first, ObjectType::Commit)).await.unwrap(), None, "the fourth-newest commit is pruned");
    assert!(
        repo.head(&key(first_commit.root_tree, ObjectType::DirTree)).await.unwrap().is_some(),
        "the pending build needs it"
    );
    let head = api.app.state.repo_refs("stable").await.unwrap()[0].commit;
    assert!(flatbucket::repo::walk::walk_closure(&*repo, head).await.unwrap().problems.is_empty());
    let publish = post(&api, &token, &format!("/api/v1/build/{pending}/publish")).await["id"].as_i64().unwrap();
    let job = api.wait_job(publish).await;
    assert_eq!(job.status, JobStatus::Ended, "{}", job.log);
}
