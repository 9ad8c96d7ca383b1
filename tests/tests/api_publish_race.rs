//! Publishes of two builds to one repository at once: both land, one after the other under the
//! repository's publish lease, and the summary lists both apps.

use axum::http::Method;
use flatbucket::domain::job::JobStatus;
use flatbucket::repo::summary::{gunzip, parse_index, parse_summary};
use flatbucket::store::read_limited;
use flatbucket_tests::router::TestApi;
use flatbucket_tests::synthetic::SyntheticCommit;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_publishes_to_one_repo_at_once_both_land() {
    race(&TestApi::start().await).await;
}

/// Commits two apps, publishes both at once and checks both are in the refs and the summary.
async fn race(api: &TestApi) {
    let token = api.admin();
    let mut builds = Vec::new();
    for app_id in ["org.example.Alpha", "org.example.Beta"] {
        let commit = SyntheticCommit::app(app_id, &[("bin/run", app_id.as_bytes())]);
        let id = api.uploaded_build(&token, &format!("app/{app_id}/x86_64/stable"), &commit).await;
        let job =
            api.call(Method::POST, &format!("/api/v1/build/{id}/commit"), Some(&token), Some(json!({}))).await.json();
        assert_eq!(api.wait_job(job["id"].as_i64().unwrap()).await.status, JobStatus::Ended);
        builds.push(id);
    }
    let publish = |id: i64| {
        let token = &token;
        async move {
            api.call(Method::POST, &format!("/api/v1/build/{id}/publish"), Some(token), Some(json!({}))).await.json()
        }
    };
    let (first, second) = tokio::join!(publish(builds[0]), publish(builds[1]));
    for job in [first, second] {
        let job = api.wait_job(job["id"].as_i64().unwrap()).await;
        assert_eq!(job.status, JobStatus::Ended, "{}", job.log);
    }
    let refs = api.app.state.repo_refs("stable").await.unwrap();
    let names: Vec<String> = refs.into_iter().map(|r| r.name).filter(|n| n.starts_with("app/")).collect();
    assert_eq!(names, ["app/org.example.Alpha/x86_64/stable", "app/org.example.Beta/x86_64/stable"]);

    let store = &api.app.repo("stable").unwrap().store;
    let (index, _) = parse_index(&read_limited(&**store, "summary.idx", 1 << 20).await.unwrap()).unwrap();
    let digest = index["x86_64"].digest;
    let subsummary = read_limited(&**store, &format!("summaries/{digest}.gz"), 1 << 20).await.unwrap();
    let listed = parse_summary(&gunzip(&subsummary, 1 << 20).unwrap()).unwrap();
    let apps = listed.refs.iter().filter(|(name, ..)| name.starts_with("app/")).count();
    assert_eq!(apps, 2, "the summary written last lists both apps");
}

/// The same race on S3 and DynamoDB (moto): the lease is a conditional DynamoDB write.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_publishes_at_once_both_land_on_the_aws_backends() {
    let aws = flatbucket_tests::aws::resources().await.expect("moto resources");
    let api = TestApi::start_with(|config| aws.configure(config)).await;
    race(&api).await;
}
