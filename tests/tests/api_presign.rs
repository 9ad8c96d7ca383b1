//! HTTP tests through the Router for `upload_urls` (presigned direct uploads) and the deployment's
//! request size limit. The presigned URLs are real ones into moto's S3, sent with curl; the
//! embedded backend's answer and the 413 need no emulator.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use flatbucket_tests::router::{multipart, TestApi};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

fn filez(byte: u8) -> String {
    format!("{}.filez", format!("{byte:02x}").repeat(32))
}

fn objects(objects: &[(&str, usize)]) -> Value {
    json!({"objects": objects.iter().map(|(name, size)| json!({"name": name, "size": size})).collect::<Vec<_>>()})
}

fn urls_path(id: i64) -> String {
    format!("/api/v1/build/{id}/upload_urls")
}

#[tokio::test]
async fn the_embedded_backend_offers_no_direct_uploads() {
    let api = TestApi::start().await;
    let token = api.admin();
    let id = api.create_build(&token).await;
    let answer = api.call(Method::POST, &urls_path(id), Some(&token), Some(objects(&[(&filez(1), 5 << 20)]))).await;
    assert_eq!((answer.status, answer.json()), (StatusCode::OK, json!({"urls": {}})));
}

/// A router over `api`'s backends whose deployment accepts request bodies up to `limit` bytes.
async fn send_limited(api: &TestApi, limit: u64, request: Request<Body>) -> (StatusCode, Value) {
    let mut app = api.app.clone();
    app.max_request_body = Some(limit);
    let response = flatbucket::api::router(app).oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn upload_request(id: i64, token: &str, parts: &[(String, &[u8])], chunked: bool) -> Request<Body> {
    let (content_type, body) = multipart(parts);
    let request = Request::post(format!("/api/v1/build/{id}/upload"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type);
    match chunked {
        // A streamed body declares no length: the limit is counted as it arrives.
        true => {
            let chunks = body.chunks(1000).map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c))).collect();
            let stream = futures::stream::iter::<Vec<_>>(chunks);
            request.body(Body::from_stream(stream)).unwrap()
        }
        false => request.header("content-length", body.len()).body(Body::from(body)).unwrap(),
    }
}

#[tokio::test]
async fn requests_over_the_deployments_limit_get_a_413_that_says_what_to_do() {
    let api = TestApi::start().await;
    let token = api.admin();
    let id = api.create_build(&token).await;
    let big = vec![7u8; 64 * 1024];
    let parts = [(filez(1), big.as_slice())];
    for chunked in [false, true] {
        let (status, error) = send_limited(&api, 32 * 1024, upload_request(id, &token, &parts, chunked)).await;
        assert_eq!((status, error["status"].as_u64()), (StatusCode::PAYLOAD_TOO_LARGE, Some(413)));
        assert_eq!(error["error-type"], "payload-too-large");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("limit of 32768 bytes") && message.contains("upload_urls"), "{message}");
        let size = multipart(&parts).1.len();
        assert_eq!(message.contains(&format!("body of {size} bytes is larger")), !chunked, "{message}");
    }
    assert_eq!(api.app.upload_store(id).head(&format!("objects/01/{}.filez", "01".repeat(31))).await.unwrap(), None);
    let (status, stored) = send_limited(&api, 128 * 1024, upload_request(id, &token, &parts, true)).await;
    assert_eq!((status, stored), (StatusCode::OK, json!([65536])), "under the limit the upload goes through");
}

#[cfg(feature = "aws")]
mod on_s3 {
    use flatbucket::domain::build::RepoState;
    use flatbucket::domain::job::JobStatus;
    use flatbucket::domain::token::{Claims, Scope};
    use flatbucket::store::conformance::send_presigned;
    use flatbucket::store::PresignedPut;
    use flatbucket_tests::router::admin_claims;
    use flatbucket_tests::synthetic::SyntheticCommit;

    use super::*;

    async fn api() -> TestApi {
        let aws = flatbucket_tests::aws::resources().await.expect("moto resources");
        TestApi::start_with(|config| aws.configure(config)).await
    }

    /// The presigned request issued for `name` in an `upload_urls` answer.
    fn presigned(answer: &Value, name: &str) -> PresignedPut {
        let url = &answer["urls"][name];
        assert_eq!(url["method"], "PUT", "{answer}");
        let headers = url["headers"].as_object().unwrap().iter();
        PresignedPut {
            url: url["url"].as_str().unwrap().to_owned(),
            headers: headers.map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect(),
        }
    }

    async fn missing(api: &TestApi, token: &str, id: i64, names: &[String]) -> Vec<String> {
        let path = format!("/api/v1/build/{id}/missing_objects");
        let answer = api.call(Method::POST, &path, Some(token), Some(json!({"wanted": names}))).await;
        serde_json::from_value(answer.json()["missing"].clone()).unwrap()
    }

    #[tokio::test]
    async fn urls_go_only_to_tokens_that_may_upload_into_the_build() {
        let api = api().await;
        let admin = api.admin();
        let (id, other) = (api.create_build(&admin).await, api.create_build(&admin).await);
        let request = objects(&[(&filez(1), 10)]);
        let call = |token: Option<String>| {
            let request = request.clone();
            let api = &api;
            async move { api.call(Method::POST, &urls_path(id), token.as_deref(), Some(request)).await }
        };
        assert_eq!(call(None).await.status, StatusCode::UNAUTHORIZED);
        let build_only = api.token(&Claims { scope: vec![Scope::Build], ..admin_claims() });
        let answer = call(Some(build_only)).await;
        assert_eq!(
            (answer.status, answer.json()["error-type"].as_str()),
            (StatusCode::FORBIDDEN, Some("token-insufficient"))
        );
        let upload_for = |build: i64| {
            api.token(&Claims { sub: format!("build/{build}"), scope: vec![Scope::Upload], ..admin_claims() })
        };
        assert_eq!(call(Some(upload_for(other))).await.status, StatusCode::FORBIDDEN);
        let answer = call(Some(upload_for(id))).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        let put = presigned(&answer.json(), &filez(1));
        assert_eq!(put.headers["content-type"], "application/octet-stream");
        assert_eq!(put.headers["content-length"], "10");
        assert!(put.url.contains(&format!("/{id}/upload/objects/01/")), "into the build's upload area: {}", put.url);
    }

    #[tokio::test]
    async fn names_are_checked_like_multipart_filenames() {
        let api = api().await;
        let token = api.admin();
        let id = api.create_build(&token).await;
        let commitmeta = format!("{}.commitmeta", "ab".repeat(32));
        for bad in ["../../etc/passwd", commitmeta.as_str(), "objects/ab/cd.filez", "x.superblock.delta"] {
            let answer =
                api.call(Method::POST, &urls_path(id), Some(&token), Some(objects(&[(&filez(1), 1), (bad, 1)]))).await;
            assert_eq!(
                (answer.status, answer.message()),
                (StatusCode::BAD_REQUEST, format!("Invalid upload filename {bad}"))
            );
        }
        let delta = "H2Sr9+k+UNVKmqW9vMVOgCYYTWkMqn36pgFxFmOPddQ.superblock.delta";
        let answer = api.call(Method::POST, &urls_path(id), Some(&token), Some(objects(&[(delta, 3)]))).await;
        assert!(presigned(&answer.json(), delta).url.contains("/upload/deltas/H2/Sr9"), "{:?}", answer.body);
        let huge = objects(&[(&filez(1), 6 << 30)]);
        assert_eq!(
            api.call(Method::POST, &urls_path(id), Some(&token), Some(huge)).await.status,
            StatusCode::BAD_REQUEST
        );
        let names: Vec<String> = (0..1001u32).map(|i| format!("{:064x}.filez", i)).collect();
        let many = objects(&names.iter().map(|n| (n.as_str(), 1)).collect::<Vec<_>>());
        let answer = api.call(Method::POST, &urls_path(id), Some(&token), Some(many)).await;
        assert_eq!(
            (answer.status, answer.message()),
            (StatusCode::BAD_REQUEST, "At most 1000 objects per upload_urls request".to_owned())
        );
    }

    /// A whole commit sent by presigned PUTs lands where `missing_objects` and the commit job look;
    /// a body longer than declared is refused by S3; once committed, no more URLs are issued.
    #[tokio::test]
    async fn objects_sent_to_the_urls_are_what_the_build_commits() {
        let api = api().await;
        let token = api.admin();
        let id = api.create_build(&token).await;
        let commit = SyntheticCommit::app("org.example.Direct", &[("bin/run", b"#!/bin/sh\necho direct\n")]);
        let names = commit.names();
        let declared: Vec<(&str, usize)> =
            commit.objects.iter().zip(&names).map(|((_, data), n)| (n.as_str(), data.len())).collect();
        let answer = api.call(Method::POST, &urls_path(id), Some(&token), Some(objects(&declared))).await.json();
        let (first, rest) = commit.objects.split_first().unwrap();
        let mut longer = first.1.clone();
        longer.push(0);
        let status = send_presigned(&presigned(&answer, &names[0]), longer).await;
        assert!((400..500).contains(&status), "S3 refuses a body longer than declared: HTTP {status}");
        assert_eq!(missing(&api, &token, id, &names).await, names, "nothing was stored");
        for ((_, data), name) in rest.iter().zip(&names[1..]) {
            assert_eq!(send_presigned(&presigned(&answer, name), data.clone()).await, 200, "{name}");
        }
        assert_eq!(missing(&api, &token, id, &names).await, [names[0].clone()]);
        assert_eq!(send_presigned(&presigned(&answer, &names[0]), first.1.clone()).await, 200);
        assert!(missing(&api, &token, id, &names).await.is_empty());

        let body = json!({"ref": "app/org.example.Direct/x86_64/stable", "commit": commit.commit.to_hex()});
        let answer = api.call(Method::POST, &format!("/api/v1/build/{id}/build_ref"), Some(&token), Some(body)).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        let job = api.call(Method::POST, &format!("/api/v1/build/{id}/commit"), Some(&token), Some(json!({}))).await;
        let job = api.wait_job(job.json()["id"].as_i64().unwrap()).await;
        assert_eq!(job.status, JobStatus::Ended, "{}", job.log);
        assert_eq!(api.app.state.get_build(id).await.unwrap().repo_state, RepoState::Ready);
        let answer = api.call(Method::POST, &urls_path(id), Some(&token), Some(objects(&declared))).await;
        assert_eq!((answer.status, answer.json()["current-state"].as_str()), (StatusCode::BAD_REQUEST, Some("ready")));
        assert_eq!(answer.json()["expected-state"], "uploading");
    }
}
