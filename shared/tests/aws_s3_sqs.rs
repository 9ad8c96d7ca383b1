//! The S3 object store and the SQS job queue against a real S3/SQS API server: moto, started by
//! `eval "$(bash infra/moto.sh start)"`. Every test makes its own uniquely named bucket or queue,
//! so runs never see each other's objects.
#![cfg(feature = "aws")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flatbucket::jobs::queue::conformance::delivers_every_job;
use flatbucket::jobs::queue::{Deliveries, JobQueue};
use flatbucket::jobs::{sqs_client, SqsQueue};
use flatbucket::repo::layout::cache_control;
use flatbucket::store::{
    conformance, read_limited, s3_client, Location, ObjectStore, Prefixed, PutPolicy, S3Store, StoreError,
};

/// The emulator's endpoint; a run without one fails, telling how to start it.
fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "AWS_ENDPOINT_URL is not set: these tests need an S3/SQS API server. \
             Start moto with `eval \"$(bash infra/moto.sh start)\"` and run them again."
        )
    })
}

/// A name no other run or test uses: the time, the process and a counter.
fn unique_name(kind: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("fbtest-{kind}-{nanos:x}-{:x}-{n}", std::process::id())
}

/// A client and a fresh bucket.
async fn bucket() -> (aws_sdk_s3::Client, String) {
    let client = s3_client(Some(&endpoint())).await;
    let bucket = unique_name("b");
    client.create_bucket().bucket(&bucket).send().await.expect("create bucket");
    (client, bucket)
}

async fn store(prefix: &str, policy: PutPolicy) -> S3Store {
    let (client, bucket) = bucket().await;
    S3Store::new(client, bucket, prefix.to_owned(), policy)
}

async fn read_all(store: &dyn ObjectStore, key: &str) -> Vec<u8> {
    read_limited(store, key, u64::MAX - 1).await.unwrap()
}

#[tokio::test]
async fn an_s3_store_passes_the_object_store_conformance_suite() {
    let store = store("", PutPolicy::Private).await;
    conformance::run_all(&store).await;
    conformance::put_if_absent_has_one_winner_under_contention(Arc::new(store)).await;
}

#[tokio::test]
async fn a_prefixed_view_of_a_prefixed_s3_store_passes_the_conformance_suite() {
    let store = Arc::new(store("/repos/stable/", PutPolicy::PublicRepository).await);
    let prefixed = Prefixed::new(store.clone(), "build/7").unwrap();
    conformance::run_all(&prefixed).await;
    conformance::put_if_absent_has_one_winner_under_contention(Arc::new(prefixed)).await;
    let keys = store.list("build/7/rt/").await.unwrap();
    assert_eq!(keys, ["build/7/rt/empty", "build/7/rt/objects/ab/cd.filez"], "listed without the store prefix");
}

#[tokio::test]
async fn a_public_repository_store_sets_static_bucket_headers_on_every_write() {
    let store = store("repo", PutPolicy::PublicRepository).await;
    store.put("summary.idx", Bytes::from_static(b"idx")).await.unwrap();
    store.put_if_absent("objects/ab/cd.filez", Bytes::from_static(b"z")).await.unwrap();
    let stream = futures::stream::iter([Ok(Bytes::from_static(b"gz"))]);
    store.put_stream("summaries/0123.gz", Box::pin(stream)).await.unwrap();
    store.put("config", Bytes::from_static(b"[core]")).await.unwrap();
    store.copy("summary.idx", "deltas/H2/Sr9+k/superblock").await.unwrap();
    for key in ["summary.idx", "objects/ab/cd.filez", "summaries/0123.gz", "config", "deltas/H2/Sr9+k/superblock"] {
        let head = head(&store, &format!("repo/{key}")).await;
        assert_eq!(head.content_type(), Some("application/octet-stream"), "{key}");
        assert_eq!(head.cache_control(), Some(cache_control(key)), "{key}");
        assert_eq!(head.content_encoding(), None, "{key}");
    }
    assert!(cache_control("summaries/0123.gz").contains("immutable"));
}

#[tokio::test]
async fn a_private_store_sets_only_the_content_type() {
    let store = store("", PutPolicy::Private).await;
    store.put("objects/ab/cd.filez", Bytes::from_static(b"z")).await.unwrap();
    let head = head(&store, "objects/ab/cd.filez").await;
    assert_eq!(head.content_type(), Some("application/octet-stream"));
    assert_eq!(head.cache_control(), None);
}

#[tokio::test]
async fn keys_with_plus_and_space_round_trip_and_copy_distinctly() {
    let (client, bucket) = bucket().await;
    let store = S3Store::new(client.clone(), bucket.clone(), String::new(), PutPolicy::Private);
    let (plus, space) = ("deltas/a+b/c+d", "deltas/a b/c d");
    store.put(plus, Bytes::from_static(b"plus")).await.unwrap();
    store.put(space, Bytes::from_static(b"space")).await.unwrap();
    store.copy(plus, "copies/x+y").await.unwrap();
    store.copy(space, "copies/x y").await.unwrap();
    assert_eq!(read_all(&store, "copies/x+y").await, b"plus");
    assert_eq!(read_all(&store, "copies/x y").await, b"space");
    let listed = client.list_objects_v2().bucket(&bucket).send().await.unwrap();
    let mut raw: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    raw.sort_unstable();
    assert_eq!(raw, ["copies/x y", "copies/x+y", space, plus], "keys are stored literally");
}

#[tokio::test]
async fn copy_from_another_bucket_applies_the_destination_headers() {
    let staging = store("build/3", PutPolicy::Private).await;
    let public = store("repo", PutPolicy::PublicRepository).await;
    staging.put("objects/ab/c+d.dirtree", Bytes::from_static(b"tree")).await.unwrap();
    let source = staging.locate("objects/ab/c+d.dirtree").await.unwrap().unwrap();
    assert!(public.copy_located(&source, "objects/ab/c+d.dirtree").await.unwrap());
    assert_eq!(read_all(&public, "objects/ab/c+d.dirtree").await, b"tree");
    let head = head(&public, "repo/objects/ab/c+d.dirtree").await;
    assert_eq!(head.cache_control(), Some(cache_control("objects/ab/c+d.dirtree")));
    let elsewhere = Location::File("/tmp/objects/ab/c+d.dirtree".into());
    assert!(!public.copy_located(&elsewhere, "objects/ab/c+d.dirtree").await.unwrap(), "no S3 copy from a file");
    let none = staging.locate("objects/ab/none.dirtree").await.unwrap().unwrap();
    let missing = public.copy_located(&none, "objects/ab/none.dirtree").await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");
}

#[tokio::test]
async fn big_streams_go_up_as_multipart_uploads() {
    let (client, bucket) = bucket().await;
    let store = S3Store::new(client.clone(), bucket.clone(), "p".into(), PutPolicy::PublicRepository);
    let chunk = |i: u32| Ok(Bytes::from(vec![(i % 251) as u8; 1 << 20]));
    let size = store.put_stream("deltas/big", Box::pin(futures::stream::iter((0..20).map(chunk)))).await.unwrap();
    assert_eq!(size, 20 << 20);
    let data = read_all(&store, "deltas/big").await;
    assert!(data.chunks(1 << 20).enumerate().all(|(i, c)| c.iter().all(|b| *b == (i % 251) as u8)));
    let head = head(&store, "p/deltas/big").await;
    assert!(head.e_tag().unwrap().ends_with("-3\""), "three parts: {:?}", head.e_tag());
    assert_eq!(head.cache_control(), Some(cache_control("deltas/big")));
}

#[tokio::test]
async fn a_failed_multipart_stream_leaves_no_object_and_no_upload() {
    let (client, bucket) = bucket().await;
    let store = S3Store::new(client.clone(), bucket.clone(), String::new(), PutPolicy::Private);
    let chunks = (0..12).map(|_| Ok(Bytes::from(vec![7u8; 1 << 20])));
    let failing = chunks.chain([Err(std::io::Error::other("client went away"))]);
    assert!(store.put_stream("big/failed", Box::pin(futures::stream::iter(failing))).await.is_err());
    assert_eq!(store.head("big/failed").await.unwrap(), None);
    let uploads = client.list_multipart_uploads().bucket(&bucket).send().await.unwrap();
    assert!(uploads.uploads().is_empty(), "aborted: {:?}", uploads.uploads());
}

#[tokio::test]
async fn a_presigned_put_url_accepts_the_declared_bytes_without_credentials() {
    let store = Arc::new(store("build", PutPolicy::Private).await);
    assert!(conformance::presigned_puts_take_exactly_the_declared_bytes(&*store).await, "S3 presigns");
    let upload = Prefixed::new(store.clone(), "9/upload").unwrap();
    assert!(conformance::presigned_puts_take_exactly_the_declared_bytes(&upload).await, "so does a view of it");
    assert_eq!(store.head("9/upload/pre/objects/ab/cd.filez").await.unwrap(), Some(22), "below the view's prefix");
}

#[tokio::test]
async fn put_if_absent_is_a_conditional_write_on_the_server() {
    // The server, not a HEAD before the PUT, must refuse the second write: send it raw.
    let (client, bucket) = bucket().await;
    let put = || client.put_object().bucket(&bucket).key("k").if_none_match("*").body(Bytes::from_static(b"x").into());
    put().send().await.expect("first conditional write");
    let second = put().send().await.expect_err("the server must refuse a second conditional write");
    assert_eq!(second.raw_response().map(|r| r.status().as_u16()), Some(412));
}

/// A client and a fresh queue's URL.
async fn queue() -> (aws_sdk_sqs::Client, String) {
    let client = sqs_client(Some(&endpoint())).await;
    let created = client.create_queue().queue_name(unique_name("q")).send().await.expect("create queue");
    (client, created.queue_url().expect("queue url").to_owned())
}

#[tokio::test]
async fn an_sqs_queue_passes_the_job_queue_conformance_suite() {
    let (client, url) = queue().await;
    let queue = SqsQueue::new(client.clone(), url.clone());
    delivers_every_job(&queue, &mut queue.deliveries()).await;
    client.delete_queue().queue_url(url).send().await.unwrap();
}

#[tokio::test]
async fn sqs_deliveries_skip_foreign_messages_and_end_with_the_queue() {
    let (client, url) = queue().await;
    let queue = SqsQueue::new(client.clone(), url.clone());
    client.send_message().queue_url(&url).message_body("not a job").send().await.unwrap();
    queue.enqueue(5).await.unwrap();
    let mut deliveries = queue.deliveries();
    assert_eq!(deliveries.next_delivery().await, Some(5));
    client.delete_queue().queue_url(&url).send().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(30), deliveries.next_delivery()).await;
    assert_eq!(end.expect("a deleted queue ends the deliveries"), None);
    assert!(queue.enqueue(6).await.is_err());
}

async fn head(store: &S3Store, bucket_key: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    let (client, bucket) = (s3_client(Some(&endpoint())).await, store.bucket());
    client.head_object().bucket(bucket).key(bucket_key).send().await.expect("head object")
}
