//! HTTP tests through the Router: builds, build refs, extra ids, purge, and every token rule.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use flatbucket::domain::token::{Claims, Scope};
use flatbucket_tests::router::{admin_claims, TestApi};
use serde_json::json;

#[tokio::test]
async fn creates_reads_and_lists_builds_with_absolute_locations() {
    let api = TestApi::start().await;
    let token = api.admin();
    let answer = api.call(Method::POST, "/api/v1/build", Some(&token), Some(json!({"repo": "stable"}))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["location"], "http://test.invalid/api/v1/build/1");
    let build = answer.json();
    assert_eq!((build["repo_state"].as_i64(), build["published_state"].as_i64()), (Some(0), Some(0)));
    assert_eq!((build["public_download"].as_bool(), build["token_name"].as_str()), (Some(true), Some("admin")));
    assert!(build.get("repo_state_reason").is_none() && build.get("commit_job_id").is_none());

    let with_app = json!({"repo": "beta", "app-id": "org.example.App"});
    let answer = api.call(Method::POST, "/api/v1/build", Some(&token), Some(with_app)).await;
    assert_eq!(answer.json()["public_download"], false, "builds with an app id are private by default");

    let read = api.call(Method::GET, "/api/v1/build/1", Some(&token), None).await;
    assert_eq!(read.json()["id"], 1);
    let legacy = api.call(Method::GET, "/api/v1/build", Some(&token), None).await.json();
    assert_eq!(legacy.as_array().unwrap().len(), 1, "without app-id only builds without an app id: {legacy}");
    let apps = api.call(Method::GET, "/api/v1/build?app-id=org.example.App", Some(&token), None).await.json();
    assert_eq!(apps[0]["app_id"], "org.example.App");
    let extended = api.call(Method::GET, "/api/v1/build/1/extended", Some(&token), None).await.json();
    assert_eq!((extended["build"]["id"].as_i64(), extended["checks"].as_array().map(Vec::len)), (Some(1), Some(0)));
    assert_eq!(api.call(Method::GET, "/api/v1/build/99", Some(&token), None).await.json()["error-type"], "not-found");
}

#[tokio::test]
async fn refuses_unknown_repos_malformed_json_and_oversized_bodies() {
    let api = TestApi::start().await;
    let token = api.admin();
    let answer = api.call(Method::POST, "/api/v1/build", Some(&token), Some(json!({"repo": "nope"}))).await;
    assert_eq!((answer.status, answer.message()), (StatusCode::BAD_REQUEST, "No such repo".into()));
    let malformed = Request::post("/api/v1/build")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from("{\"repo\": "))
        .unwrap();
    let answer = api.send(malformed).await;
    assert_eq!((answer.status, answer.json()["error-type"].as_str()), (StatusCode::BAD_REQUEST, Some("generic-error")));
    let huge = format!("{{\"repo\": \"stable\", \"pad\": \"{}\"}}", "x".repeat(3 << 20));
    let oversized = Request::post("/api/v1/build")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(huge))
        .unwrap();
    assert_eq!(api.send(oversized).await.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn enforces_every_token_rule() {
    let api = TestApi::start().await;
    let admin = api.admin();
    let id = api.create_build(&admin).await;
    let create = |token: String| {
        let api = &api;
        async move { api.call(Method::POST, "/api/v1/build", Some(&token), Some(json!({"repo": "stable"}))).await }
    };
    let expect = |answer: flatbucket_tests::router::Answer, status: StatusCode, message: &str| {
        assert_eq!((answer.status, answer.message()), (status, message.to_owned()), "{:?}", answer.body);
    };
    expect(create(admin_claims().encode(b"forged")).await, StatusCode::UNAUTHORIZED, "Invalid token claims");
    expect(create(api.token(&Claims { exp: 1, ..admin_claims() })).await, StatusCode::UNAUTHORIZED, "Token is expired");
    expect(
        create(api.token(&Claims { scope: vec![Scope::Upload], ..admin_claims() })).await,
        StatusCode::FORBIDDEN,
        "Not enough permissions: Not matching scope 'build' in token",
    );
    expect(
        create(api.token(&Claims { repos: vec![], ..admin_claims() })).await,
        StatusCode::FORBIDDEN,
        "Not enough permissions: Not matching repo in token",
    );
    let other_build = api.token(&Claims { sub: format!("build/{}", id + 1), ..admin_claims() });
    let answer = api.call(Method::GET, &format!("/api/v1/build/{id}"), Some(&other_build), None).await;
    expect(answer, StatusCode::FORBIDDEN, &format!("Not enough permissions: Not matching sub 'build/{id}' in token"));
    let own_build = api.token(&Claims { sub: format!("build/{id}"), ..admin_claims() });
    assert_eq!(
        api.call(Method::GET, &format!("/api/v1/build/{id}"), Some(&own_build), None).await.status,
        StatusCode::OK
    );

    let prefixed = api.token(&Claims { prefixes: vec!["org.example".into()], ..admin_claims() });
    let foreign = json!({"repo": "stable", "app-id": "com.other.App"});
    let answer = api.call(Method::POST, "/api/v1/build", Some(&prefixed), Some(foreign)).await;
    expect(answer, StatusCode::FORBIDDEN, "Not enough permissions: Id com.other.App not matching prefix in token");
    let app_build = json!({"repo": "stable", "app-id": "org.example.App"});
    let app_id =
        api.call(Method::POST, "/api/v1/build", Some(&prefixed), Some(app_build)).await.json()["id"].as_i64().unwrap();
    let stranger = api.token(&Claims { prefixes: vec!["org.stranger".into()], ..admin_claims() });
    let answer = api.call(Method::GET, &format!("/api/v1/build/{app_id}"), Some(&stranger), None).await;
    expect(answer, StatusCode::FORBIDDEN, "Not enough permissions: Build's app ID not matching prefix in token");

    let no_header = api.call(Method::GET, "/api/v1/build/1", None, None).await;
    expect(no_header, StatusCode::UNAUTHORIZED, "No Authorization header");
}

#[tokio::test]
async fn revoked_tokens_are_refused_and_listed() {
    let api = TestApi::start().await;
    let tracked = api.token(&Claims { jti: Some("ci-42".into()), ..admin_claims() });
    api.create_build(&tracked).await;
    let manager = api.token(&Claims { sub: String::new(), scope: vec![Scope::Tokenmanagement], ..admin_claims() });
    let ids = json!({"token_ids": ["ci-42", "unknown"]});
    let listed = api.call(Method::POST, "/api/v1/tokens/get_list", Some(&manager), Some(ids.clone())).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(listed[0]["last_used"].is_string() && listed[0]["revoked_at"].is_null());
    assert_eq!(
        api.call(Method::POST, "/api/v1/tokens/revoke", Some(&manager), Some(ids.clone())).await.status,
        StatusCode::NO_CONTENT
    );
    let answer = api.call(Method::GET, "/api/v1/build/1", Some(&tracked), None).await;
    assert_eq!((answer.status, answer.message()), (StatusCode::UNAUTHORIZED, "Token has been revoked".to_owned()));
    let builder = api.admin();
    let answer = api.call(Method::POST, "/api/v1/tokens/revoke", Some(&builder), Some(ids)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "token management needs sub \"\"");
}

#[tokio::test]
async fn token_subsets_never_escalate() {
    let api = TestApi::start().await;
    let parent =
        api.token(&Claims { prefixes: vec!["org.example".into()], repos: vec!["stable".into()], ..admin_claims() });
    let request = json!({"sub": "build/7", "scope": ["upload"], "duration": 60, "name": "up"});
    let answer = api.call(Method::POST, "/api/v1/token_subset", Some(&parent), Some(request)).await;
    let child = Claims::decode(answer.json()["token"].as_str().unwrap(), b"secret", 0).unwrap();
    assert_eq!(
        (child.sub.as_str(), child.scope.as_slice(), child.name.as_deref()),
        ("build/7", &[Scope::Upload][..], Some("admin/up"))
    );
    for escalation in [
        json!({"sub": "build/7", "scope": ["tokenmanagement"], "duration": 60, "name": "x"}),
        json!({"sub": "", "scope": ["upload"], "duration": 60, "name": "x"}),
        json!({"sub": "build/7", "scope": ["upload"], "duration": 999_999, "name": "x"}),
        json!({"sub": "build/7", "scope": ["upload"], "duration": 60, "name": "x", "prefixes": ["org"]}),
        json!({"sub": "build/7", "scope": ["upload"], "duration": 60, "name": "x", "repos": ["beta"]}),
        json!({"sub": "build/7", "scope": ["upload"], "duration": 60, "name": "x", "repos": [""]}),
    ] {
        let answer = api.call(Method::POST, "/api/v1/token_subset", Some(&parent), Some(escalation.clone())).await;
        assert_eq!(
            (answer.status, answer.message()),
            (StatusCode::FORBIDDEN, "Not enough permissions: No token presented".to_owned()),
            "{escalation}"
        );
    }
}

#[tokio::test]
async fn build_refs_extra_ids_and_purge() {
    let api = TestApi::start().await;
    let token = api.admin();
    let id = api.create_build(&token).await;
    let commit = "a".repeat(64);
    let uri = format!("/api/v1/build/{id}/build_ref");
    let answer = api
        .call(
            Method::POST,
            &uri,
            Some(&token),
            Some(json!({"ref": "app/org.example.App/x86_64/stable", "commit": commit})),
        )
        .await;
    assert_eq!(answer.headers["location"], format!("http://test.invalid/api/v1/build/{id}/build_ref/1"));
    let again = api
        .call(
            Method::POST,
            &uri,
            Some(&token),
            Some(json!({"ref": "app/org.example.App/x86_64/stable", "commit": "b".repeat(64)})),
        )
        .await;
    assert_eq!(
        (again.json()["id"].as_i64(), again.json()["commit"].as_str()),
        (Some(1), Some("b".repeat(64).as_str()))
    );
    assert_eq!(
        api.call(Method::GET, &format!("{uri}/1"), Some(&token), None).await.json()["ref_name"],
        "app/org.example.App/x86_64/stable"
    );
    for bad in [
        "app/../../etc/x86_64/stable",
        "app/org.example.App/x86_64",
        "screenshots/../x",
        "refs/heads/x",
        "app/org.example.App/x86_64/stable/../x",
    ] {
        let answer = api.call(Method::POST, &uri, Some(&token), Some(json!({"ref": bad, "commit": commit}))).await;
        assert_eq!((answer.status, answer.message()), (StatusCode::BAD_REQUEST, format!("Invalid ref_name {bad}")));
    }
    let answer =
        api.call(Method::POST, &uri, Some(&token), Some(json!({"ref": "screenshots/x86_64", "commit": commit}))).await;
    assert_eq!(answer.status, StatusCode::OK, "screenshots with one app ref of that arch");

    let extra = format!("/api/v1/build/{id}/add_extra_ids");
    let answer = api.call(Method::POST, &extra, Some(&token), Some(json!({"ids": ["Beta", "Beta", "Nightly"]}))).await;
    assert_eq!(answer.json()["extra_ids"], json!(["Beta", "Nightly"]));
    let answer = api.call(Method::POST, &extra, Some(&token), Some(json!({"ids": ["bad..id"]}))).await;
    assert_eq!(answer.message(), "Invalid extra id bad..id");

    let purged = api.call(Method::POST, &format!("/api/v1/build/{id}/purge"), Some(&token), Some(json!({}))).await;
    assert_eq!(purged.json()["repo_state"], 5);
    let commit =
        api.call(Method::POST, &format!("/api/v1/build/{id}/commit"), Some(&token), Some(json!({}))).await.json();
    assert_eq!(
        (commit["error-type"].as_str(), commit["message"].as_str()),
        (Some("wrong-repo-state"), Some("Build has been purged"))
    );
    assert_eq!(
        (commit["current-state"].as_str(), commit["expected-state"].as_str()),
        (Some("purged"), Some("uploading"))
    );
}
