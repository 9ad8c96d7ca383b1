//! The whole API in-process: the shared Router over a real SQLite file and real directories, with
//! the worker running, driven through `tower::ServiceExt::oneshot`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use flatbucket::app::AppState;
use flatbucket::config::Config;
use flatbucket::domain::job::Job;
use flatbucket::domain::token::{Claims, Scope};
use flatbucket::jobs::Worker;
use http_body_util::BodyExt;
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

use crate::synthetic::SyntheticCommit;

/// A response, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The `message` of a flat-manager error.
    pub fn message(&self) -> String {
        self.json()["message"].as_str().unwrap_or_default().to_owned()
    }
}

/// A configured server with repos `stable` (collection `org.test.Stable`) and `beta`.
pub struct TestApi {
    pub dir: TempDir,
    pub app: AppState,
    router: Router,
}

impl TestApi {
    pub async fn start() -> Self {
        Self::start_with(|_| ()).await
    }

    /// Starts on the test configuration as changed by `adjust` (e.g. to select other backends).
    pub async fn start_with(adjust: impl FnOnce(&mut Value)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("config.json");
        let mut config: Value = serde_json::from_str(CONFIG).expect("test config parses");
        adjust(&mut config);
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let config = Config::load(&config_path, dir.path()).expect("config loads");
        let (app, receiver) = AppState::from_config(config).await.expect("app starts");
        tokio::spawn(Worker::new(app.clone(), receiver.expect("the in-process queue")).run());
        let router = flatbucket::api::router(app.clone());
        Self { dir, app, router }
    }

    /// A token signed with the server's secret.
    pub fn token(&self, claims: &Claims) -> String {
        claims.encode(b"secret")
    }

    /// A token that may do everything with builds in every repo.
    pub fn admin(&self) -> String {
        self.token(&admin_claims())
    }

    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.expect("router answers");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body reads").to_bytes();
        Answer { status: parts.status, headers: parts.headers, body }
    }

    /// A JSON request (`body` `None` sends no body).
    pub async fn call(&self, method: Method, uri: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let mut request = Request::builder().method(method).uri(uri).header("host", "test.invalid");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).expect("request")).await
    }

    /// Creates a build in `stable` and returns its id.
    pub async fn create_build(&self, token: &str) -> i64 {
        let answer =
            self.call(Method::POST, "/api/v1/build", Some(token), Some(serde_json::json!({"repo": "stable"}))).await;
        assert_eq!(answer.status, StatusCode::OK, "create: {:?}", answer.body);
        answer.json()["id"].as_i64().expect("build id")
    }

    /// Uploads every object of `commit` to build `id` in one multipart request.
    pub async fn upload(&self, token: &str, id: i64, commit: &SyntheticCommit) -> Answer {
        let parts: Vec<(String, &[u8])> = commit.objects.iter().map(|(n, b)| (n.to_string(), b.as_slice())).collect();
        let (content_type, body) = multipart(&parts);
        let request = Request::post(format!("/api/v1/build/{id}/upload"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("request");
        self.send(request).await
    }

    /// Uploads `commit`, registers it as `ref_name` of a new build and returns the build id.
    pub async fn uploaded_build(&self, token: &str, ref_name: &str, commit: &SyntheticCommit) -> i64 {
        let id = self.create_build(token).await;
        assert_eq!(self.upload(token, id, commit).await.status, StatusCode::OK);
        let body = serde_json::json!({"ref": ref_name, "commit": commit.commit.to_hex()});
        let answer = self.call(Method::POST, &format!("/api/v1/build/{id}/build_ref"), Some(token), Some(body)).await;
        assert_eq!(answer.status, StatusCode::OK, "build_ref: {:?}", answer.body);
        id
    }

    /// Waits until job `id` has ended or failed.
    pub async fn wait_job(&self, id: i64) -> Job {
        for _ in 0..2000 {
            let job = self.app.state.get_job(id).await.expect("job exists");
            if job.status.is_finished() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("job {id} did not finish");
    }
}

/// Everything but token management, in every repo.
pub fn admin_claims() -> Claims {
    Claims {
        sub: "build".into(),
        exp: chrono_now() + 3600,
        name: Some("admin".into()),
        jti: None,
        scope: vec![Scope::Build, Scope::Upload, Scope::Publish, Scope::Download, Scope::Jobs],
        prefixes: vec![String::new()],
        apps: vec![],
        repos: vec![String::new()],
        branches: vec![],
        token_type: None,
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

/// A `multipart/form-data` body with one file part per `(filename, bytes)`.
pub fn multipart(parts: &[(String, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "flatbucket-test-boundary-7e3c";
    let mut body = Vec::new();
    for (i, (name, bytes)) in parts.iter().enumerate() {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"file{i}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

const CONFIG: &str = r#"{
    "repos": {
        "stable": {"path": "repo", "collection-id": "org.test.Stable", "subsets": {}},
        "beta": {"path": "beta-repo", "subsets": {}}
    },
    "database-url": "sqlite:state.sqlite",
    "build-repo-base": "build-repo",
    "secret": "c2VjcmV0"
}"#;
