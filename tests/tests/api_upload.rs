//! HTTP tests through the Router: `missing_objects` (gzip, bombs, bad names) and multipart
//! uploads (both dispositions, `+` in names, a part split at every byte offset around its
//! boundaries, hostile filenames).

use std::io::Write;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use flatbucket_tests::router::{multipart, TestApi};
use flatbucket_tests::synthetic::SyntheticCommit;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn wanted_request(id: i64, token: &str, body: Vec<u8>, gzipped: bool) -> Request<Body> {
    let mut request = Request::get(format!("/api/v1/build/{id}/missing_objects"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    if gzipped {
        request = request.header("content-encoding", "gzip");
    }
    request.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn missing_objects_reads_gzip_and_answers_what_is_not_uploaded() {
    let api = TestApi::start().await;
    let token = api.admin();
    let id = api.create_build(&token).await;
    let commit =
        SyntheticCommit::app("org.example.App", &[("bin/run", b"#!/bin/sh\necho hi\n"), ("share/a.txt", b"a")]);
    let names = commit.names();
    let body = gzip(json!({"wanted": names}).to_string().as_bytes());
    let missing = api.send(wanted_request(id, &token, body.clone(), true)).await.json();
    assert_eq!(missing["missing"].as_array().unwrap().len(), names.len());
    let (first, bytes) = &commit.objects[0];
    let parts = vec![(first.to_string(), bytes.as_slice())];
    let (content_type, upload) = multipart(&parts);
    let request = Request::post(format!("/api/v1/build/{id}/upload"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(Body::from(upload))
        .unwrap();
    assert_eq!(api.send(request).await.json(), json!([bytes.len()]));
    let missing = api.send(wanted_request(id, &token, body, true)).await.json();
    assert_eq!(missing["missing"].as_array().unwrap().len(), names.len() - 1);
    assert!(!missing["missing"].as_array().unwrap().contains(&json!(first.to_string())));
}

#[tokio::test]
async fn missing_objects_refuses_bad_names_and_gzip_bombs() {
    let api = TestApi::start().await;
    let token = api.admin();
    let id = api.create_build(&token).await;
    for bad in [
        "../../etc/passwd",
        "objects/ab/cd.filez",
        &format!("{}.filez/..", "a".repeat(64)),
        &format!("{}.FILEZ", "a".repeat(64)),
    ] {
        let body = json!({"wanted": [bad]}).to_string().into_bytes();
        let answer = api.send(wanted_request(id, &token, body, false)).await;
        assert_eq!((answer.status, answer.message()), (StatusCode::BAD_REQUEST, format!("Invalid object name {bad}")));
    }
    let bomb = gzip(&vec![b' '; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let answer = api.send(wanted_request(id, &token, bomb, true)).await;
    assert_eq!(
        (answer.status, answer.json()["error-type"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload-too-large"))
    );
}

#[tokio::test]
async fn accepts_attachment_dispositions_and_plus_in_delta_names() {
    let api = TestApi::start().await;
    let token = api.admin();
    let id = api.create_build(&token).await;
    let delta = "H2Sr9+k+UNVKmqW9vMVOgCYYTWkMqn36pgFxFmOPddQ.superblock.delta";
    let body = format!(
        "--b\r\nContent-Disposition: attachment; filename=\"{delta}\"\r\n\r\nsuperblock!\r\n--b\r\nContent-Disposition: attachment; filename=\"{}.dirmeta\"\r\n\r\nxyz\r\n--b--\r\n",
        "ab".repeat(32)
    );
    let request = Request::post(format!("/api/v1/build/{id}/upload"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "multipart/form-data; boundary=b")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(api.send(request).await.json(), json!([11, 3]));
    let store = api.app.upload_store(id);
    assert_eq!(store.head("deltas/H2/Sr9+k+UNVKmqW9vMVOgCYYTWkMqn36pgFxFmOPddQ/superblock").await.unwrap(), Some(11));
}

#[tokio::test]
async fn refuses_hostile_or_missing_filenames() {
    let api = TestApi::start().await;
    let token = api.admin();
    let id = api.create_build(&token).await;
    for (disposition, message) in [
        ("form-data; name=\"f\"; filename=\"../../../etc/passwd\"", "Invalid upload filename"),
        (&*format!("form-data; name=\"f\"; filename=\"{}.commitmeta\"", "a".repeat(64)), "Invalid upload filename"),
        ("form-data; name=\"f\"", "No filename for multipart item"),
        ("inline; filename=\"x\"", "Invalid content disposition for multipart item"),
    ] {
        let body = format!("--b\r\nContent-Disposition: {disposition}\r\n\r\ndata\r\n--b--\r\n");
        let request = Request::post(format!("/api/v1/build/{id}/upload"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "multipart/form-data; boundary=b")
            .body(Body::from(body))
            .unwrap();
        let answer = api.send(request).await;
        assert_eq!((answer.status, answer.message()), (StatusCode::BAD_REQUEST, message.to_owned()), "{disposition}");
    }
    let body = "--b\r\nContent-Type: text/plain\r\n\r\ndata\r\n--b--\r\n";
    let request = Request::post(format!("/api/v1/build/{id}/upload"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "multipart/form-data; boundary=b")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(api.send(request).await.message(), "No content disposition for multipart item");
}

/// The bug flat-manager lived with for years: a network chunk ending inside or right after a
/// boundary dropped the next part. Split the body at every offset around each boundary.
#[tokio::test]
async fn no_part_is_dropped_wherever_the_body_is_split() {
    let api = TestApi::start().await;
    let token = api.admin();
    let id = api.create_build(&token).await;
    let parts: Vec<(String, Vec<u8>)> =
        (0..3u8).map(|i| (format!("{}.filez", format!("{i:02x}").repeat(32)), vec![i; 300 + i as usize])).collect();
    let refs: Vec<(String, &[u8])> = parts.iter().map(|(n, b)| (n.clone(), b.as_slice())).collect();
    let (content_type, body) = multipart(&refs);
    let boundary_positions: Vec<usize> =
        body.windows(4).enumerate().filter(|(_, w)| *w == b"\r\n--").map(|(i, _)| i).collect();
    let mut splits: Vec<usize> =
        boundary_positions.iter().flat_map(|p| p.saturating_sub(8)..(p + 48).min(body.len())).collect();
    splits.extend(0..64);
    for split in splits {
        let chunks = vec![
            Ok::<_, std::io::Error>(Bytes::copy_from_slice(&body[..split])),
            Ok(Bytes::copy_from_slice(&body[split..])),
        ];
        let request = Request::post(format!("/api/v1/build/{id}/upload"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", &content_type)
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap();
        let answer = api.send(request).await;
        assert_eq!(answer.json(), json!([300, 301, 302]), "split at {split}");
    }
    let store = api.app.upload_store(id);
    for (name, bytes) in &parts {
        let key = name.parse::<flatbucket::repo::ObjectName>().unwrap().key();
        assert_eq!(flatbucket::store::read_limited(&*store, &key, 1000).await.unwrap(), *bytes);
    }
}

#[tokio::test]
async fn a_truncated_multipart_body_is_an_error_not_a_short_answer() {
    let api = TestApi::start().await;
    let token = api.admin();
    let id = api.create_build(&token).await;
    let parts = vec![(format!("{}.filez", "cd".repeat(32)), &[7u8; 100][..])];
    let (content_type, body) = multipart(&parts);
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/build/{id}/upload"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(Body::from(body[..body.len() - 20].to_vec()))
        .unwrap();
    let answer = api.send(request).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{:?}", answer.body);
    let key = format!("objects/cd/{}.filez", "cd".repeat(31));
    assert_eq!(api.app.upload_store(id).head(&key).await.unwrap(), None, "a partial part is never stored");
}
