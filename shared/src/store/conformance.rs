//! Behaviours every ObjectStore must have, one `pub async fn` each, run against every backend.
//! Each function uses its own key prefix, so they can share one store.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::{read_limited, Location, ObjectStore, PresignedPut, StoreError};

/// Runs every behaviour below against `store`.
pub async fn run_all(store: &dyn ObjectStore) {
    put_then_get_round_trips(store).await;
    missing_objects_are_not_found(store).await;
    put_replaces_existing_objects(store).await;
    put_if_absent_keeps_the_first_write(store).await;
    copy_duplicates_an_object(store).await;
    delete_is_idempotent(store).await;
    list_returns_sorted_keys_under_a_prefix(store).await;
    keys_with_plus_and_spaces_stay_distinct(store).await;
    traversal_keys_are_rejected(store).await;
    large_objects_stream_intact(store).await;
    read_limited_refuses_oversized_objects(store).await;
    put_stream_writes_all_chunks(store).await;
    put_many_writes_and_replaces_each_object(store).await;
    head_many_and_delete_many_act_on_each_object(store).await;
    located_copies_many_match_single_ones(store).await;
    a_failed_put_stream_leaves_nothing(store).await;
    presigned_puts_take_exactly_the_declared_bytes(store).await;
}

pub async fn put_many_writes_and_replaces_each_object(store: &dyn ObjectStore) {
    store.put("pm/b", Bytes::from_static(b"old")).await.unwrap();
    let objects = vec![("pm/a".to_owned(), Bytes::from_static(b"first")), ("pm/b".to_owned(), Bytes::new())];
    store.put_many(objects).await.unwrap();
    assert_eq!(read_limited(store, "pm/a", 100).await.unwrap(), b"first");
    assert_eq!(store.head("pm/b").await.unwrap(), Some(0), "replaced by the empty object");
    assert!(store.put_many(vec![("pm/../x".to_owned(), Bytes::new())]).await.is_err());
    store.put_many(Vec::new()).await.unwrap();
}

pub async fn head_many_and_delete_many_act_on_each_object(store: &dyn ObjectStore) {
    store.put("hm/a", Bytes::from_static(b"four")).await.unwrap();
    store.put("hm/c", Bytes::new()).await.unwrap();
    let keys: Vec<String> = ["hm/a", "hm/b", "hm/c"].map(str::to_owned).into();
    assert_eq!(store.head_many(&keys).await.unwrap(), vec![Some(4), None, Some(0)], "sizes in order");
    store.delete_many(&keys).await.unwrap();
    assert_eq!(store.head_many(&keys).await.unwrap(), vec![None, None, None], "all gone, the missing one too");
    assert!(store.head_many(&["hm/../x".to_owned()]).await.is_err());
    assert!(store.delete_many(&["hm/../x".to_owned()]).await.is_err());
    assert_eq!(store.head_many(&[]).await.unwrap(), Vec::<Option<u64>>::new());
    store.delete_many(&[]).await.unwrap();
}

/// `locate_many` and `copy_located_many` answer as `locate` and `copy_located` of each, in order.
pub async fn located_copies_many_match_single_ones(store: &dyn ObjectStore) {
    store.put("lc/a", Bytes::from_static(b"one")).await.unwrap();
    store.put("lc/b", Bytes::from_static(b"two")).await.unwrap();
    let keys: Vec<String> = ["lc/a", "lc/b"].map(str::to_owned).into();
    let located = store.locate_many(&keys).await.unwrap();
    for (key, location) in keys.iter().zip(&located) {
        assert_eq!(*location, store.locate(key).await.unwrap(), "{key}");
    }
    let Some(locations) = located.into_iter().collect::<Option<Vec<Location>>>() else { return };
    let copies: Vec<(Location, String)> =
        locations.into_iter().zip(["lc/copy/a", "lc/copy/b"].map(str::to_owned)).collect();
    let copied = store.copy_located_many(&copies).await.unwrap();
    for ((_, to), done) in copies.iter().zip(&copied) {
        let expected = if *done { Some(3) } else { None };
        assert_eq!(store.head(to).await.unwrap(), expected, "{to}: copied {done}");
    }
    assert_eq!(store.copy_located_many(&[]).await.unwrap(), Vec::<bool>::new());
}

pub async fn put_stream_writes_all_chunks(store: &dyn ObjectStore) {
    let chunks: Vec<std::io::Result<Bytes>> = (0..100u8).map(|i| Ok(Bytes::from(vec![i; 1000]))).collect();
    let size = store.put_stream("ps/obj", Box::pin(futures::stream::iter(chunks))).await.unwrap();
    assert_eq!(size, 100_000);
    let data = read_all(store, "ps/obj").await;
    assert!(data.chunks(1000).enumerate().all(|(i, c)| c.iter().all(|b| *b == i as u8)));
}

pub async fn a_failed_put_stream_leaves_nothing(store: &dyn ObjectStore) {
    let chunks = vec![Ok(Bytes::from_static(b"partial")), Err(std::io::Error::other("client went away"))];
    assert!(store.put_stream("psf/obj", Box::pin(futures::stream::iter(chunks))).await.is_err());
    assert_eq!(store.head("psf/obj").await.unwrap(), None);
}

pub async fn put_then_get_round_trips(store: &dyn ObjectStore) {
    store.put("rt/objects/ab/cd.filez", Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(read_all(store, "rt/objects/ab/cd.filez").await, b"hello");
    assert_eq!(store.head("rt/objects/ab/cd.filez").await.unwrap(), Some(5));
    store.put("rt/empty", Bytes::new()).await.unwrap();
    assert_eq!(store.head("rt/empty").await.unwrap(), Some(0));
}

pub async fn missing_objects_are_not_found(store: &dyn ObjectStore) {
    assert!(matches!(store.get("nf/none").await, Err(StoreError::NotFound(_))));
    assert_eq!(store.head("nf/none").await.unwrap(), None);
    assert!(matches!(store.copy("nf/none", "nf/other").await, Err(StoreError::NotFound(_))));
}

pub async fn put_replaces_existing_objects(store: &dyn ObjectStore) {
    store.put("rep/summary", Bytes::from_static(b"old")).await.unwrap();
    store.put("rep/summary", Bytes::from_static(b"newer")).await.unwrap();
    assert_eq!(read_all(store, "rep/summary").await, b"newer");
}

pub async fn put_if_absent_keeps_the_first_write(store: &dyn ObjectStore) {
    assert!(store.put_if_absent("pia/x", Bytes::from_static(b"first")).await.unwrap());
    assert!(!store.put_if_absent("pia/x", Bytes::from_static(b"second")).await.unwrap());
    assert_eq!(read_all(store, "pia/x").await, b"first");
}

/// Many writers race for one key: exactly one wins and its bytes are what remains.
pub async fn put_if_absent_has_one_winner_under_contention(store: Arc<dyn ObjectStore>) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(
                async move { (i, store.put_if_absent("race/x", Bytes::from(vec![i as u8; 4096])).await.unwrap()) },
            )
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (i, won) = task.await.unwrap();
        if won {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer must win");
    assert_eq!(read_all(&*store, "race/x").await, vec![winners[0] as u8; 4096]);
}

pub async fn copy_duplicates_an_object(store: &dyn ObjectStore) {
    store.put("cp/src", Bytes::from_static(b"data")).await.unwrap();
    store.copy("cp/src", "cp/deep/dst").await.unwrap();
    assert_eq!(read_all(store, "cp/deep/dst").await, b"data");
    store.put("cp/src", Bytes::from_static(b"changed")).await.unwrap();
    assert_eq!(read_all(store, "cp/deep/dst").await, b"data", "a copy must not follow later writes");
}

pub async fn delete_is_idempotent(store: &dyn ObjectStore) {
    store.put("del/x", Bytes::from_static(b"1")).await.unwrap();
    store.delete("del/x").await.unwrap();
    store.delete("del/x").await.unwrap();
    assert_eq!(store.head("del/x").await.unwrap(), None);
}

pub async fn list_returns_sorted_keys_under_a_prefix(store: &dyn ObjectStore) {
    for key in ["ls/b/2", "ls/a", "ls/b/1", "lsx/other"] {
        store.put(key, Bytes::from_static(b".")).await.unwrap();
    }
    assert_eq!(store.list("ls/").await.unwrap(), ["ls/a", "ls/b/1", "ls/b/2"]);
    assert_eq!(store.list("ls/b/").await.unwrap(), ["ls/b/1", "ls/b/2"]);
    assert!(store.list("nothing-here/").await.unwrap().is_empty());
}

pub async fn keys_with_plus_and_spaces_stay_distinct(store: &dyn ObjectStore) {
    let plus = "plus/deltas/H2/Sr9+k+UNVKmqW9vMVOgCYYTWkMqn36pgFxFmOPddQ/superblock";
    let space = "plus/deltas/H2/Sr9 k UNVKmqW9vMVOgCYYTWkMqn36pgFxFmOPddQ/superblock";
    store.put(plus, Bytes::from_static(b"plus")).await.unwrap();
    store.put(space, Bytes::from_static(b"space")).await.unwrap();
    assert_eq!(read_all(store, plus).await, b"plus");
    assert_eq!(read_all(store, space).await, b"space");
}

pub async fn traversal_keys_are_rejected(store: &dyn ObjectStore) {
    for key in ["../x", "a/../../x", "/abs", "a//b", "a/./b", "a\\b", ""] {
        assert!(matches!(store.put(key, Bytes::new()).await, Err(StoreError::InvalidKey(_))), "{key:?}");
        assert!(matches!(store.get(key).await, Err(StoreError::InvalidKey(_))), "{key:?}");
    }
}

pub async fn large_objects_stream_intact(store: &dyn ObjectStore) {
    let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    store.put("big/blob", Bytes::from(data.clone())).await.unwrap();
    let mut reader = store.get("big/blob").await.unwrap();
    let mut chunk = vec![0u8; 1000];
    let mut read = Vec::with_capacity(data.len());
    loop {
        let n = reader.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        read.extend_from_slice(&chunk[..n]);
    }
    assert!(read == data, "streamed bytes differ");
}

pub async fn read_limited_refuses_oversized_objects(store: &dyn ObjectStore) {
    store.put("lim/x", Bytes::from(vec![1u8; 100])).await.unwrap();
    assert_eq!(read_limited(store, "lim/x", 100).await.unwrap().len(), 100);
    assert!(matches!(read_limited(store, "lim/x", 99).await, Err(StoreError::TooLarge { .. })));
}

/// A presigned PUT, where the store hands them out, writes exactly the declared bytes sent by a
/// client without credentials, and refuses a longer or shorter body, leaving no object. Returns
/// whether the store presigned; stores that cannot (directories) answer `None` for valid keys and
/// `InvalidKey` for invalid ones like every other method.
pub async fn presigned_puts_take_exactly_the_declared_bytes(store: &dyn ObjectStore) -> bool {
    let expires = Duration::from_secs(600);
    assert!(matches!(store.presign_put("../x", 1, expires).await, Err(StoreError::InvalidKey(_))));
    let data = b"presigned upload bytes";
    let Some(put) = store.presign_put("pre/objects/ab/cd.filez", data.len() as u64, expires).await.unwrap() else {
        return false;
    };
    assert_eq!(put.headers.get("content-type").map(String::as_str), Some("application/octet-stream"));
    assert_eq!(send_presigned(&put, data.to_vec()).await, 200, "the declared bytes are accepted");
    assert_eq!(read_all(store, "pre/objects/ab/cd.filez").await, data);
    for (key, sent) in [("pre/longer", data.len() + 1), ("pre/shorter", data.len() - 1)] {
        let put = store.presign_put(key, data.len() as u64, expires).await.unwrap().expect("presigned before");
        let status = send_presigned(&put, vec![7; sent]).await;
        assert!((400..500).contains(&status), "{sent} bytes where {} were declared: HTTP {status}", data.len());
        assert_eq!(store.head(key).await.unwrap(), None, "{key}");
    }
    true
}

/// Sends `body` as a presigned PUT with curl (as any client without credentials would), with the
/// presigned headers except `content-length`, which curl sets from the body. Returns the status.
pub async fn send_presigned(put: &PresignedPut, body: Vec<u8>) -> u16 {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "--data-binary", "@-"]);
    for (name, value) in put.headers.iter().filter(|(name, _)| *name != "content-length") {
        curl.arg("-H").arg(format!("{name}: {value}"));
    }
    curl.arg(&put.url).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || {
        let mut child = curl.spawn().expect("running curl (apt: curl)");
        std::io::Write::write_all(&mut child.stdin.take().expect("curl's stdin"), &body).expect("writing to curl");
        child.wait_with_output().expect("curl ends")
    })
    .await
    .expect("curl task");
    let status = String::from_utf8_lossy(&output.stdout);
    status.parse().unwrap_or_else(|_| panic!("curl: {status} {}", String::from_utf8_lossy(&output.stderr)))
}

async fn read_all(store: &dyn ObjectStore, key: &str) -> Vec<u8> {
    read_limited(store, key, u64::MAX - 1).await.unwrap()
}
