//! A decompression bomb (a small `.filez` that inflates to far more than its header declares)
//! is refused after reading just past the declared size: peak memory stays flat.

use std::io::Write;
use std::sync::Arc;

use flatbucket::repo::filez::FileHeader;
use flatbucket::repo::verify::verify_commit;
use flatbucket::repo::walk::ProblemKind;
use flatbucket::repo::ObjectType;
use flatbucket::store::{LocalStore, ObjectStore};
use flatbucket_tests::fixture::{build_repo, APP_REF};
use flate2::write::DeflateEncoder;
use flate2::Compression;

/// Peak resident set of this process so far, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// A `.filez` declaring 16 bytes whose deflate stream expands to `inflated` zero bytes.
fn bomb(inflated: usize) -> Vec<u8> {
    let mut out = FileHeader::regular(16, 0o644).archive_prefix();
    let mut encoder = DeflateEncoder::new(&mut out, Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..inflated / zeros.len() {
        encoder.write_all(&zeros).unwrap();
    }
    encoder.finish().unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_is_refused_in_bounded_memory() {
    let fixture = build_repo(1).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&fixture.repo).unwrap());
    let commit = flatbucket::repo::local::resolve_ref(&*store, APP_REF).await.unwrap();
    let closure = flatbucket::repo::walk::walk_closure(&*store, commit).await.unwrap();
    let target = closure.object_names().find(|n| n.kind == ObjectType::File).unwrap();
    let bytes = bomb(256 << 20);
    assert!(bytes.len() < 1 << 20, "the bomb is small on disk: {} bytes", bytes.len());
    store.put(&target.key(), bytes.into()).await.unwrap();

    let before = peak_rss();
    let verified = verify_commit(store, commit, 4, None).await.unwrap();
    let growth = peak_rss().saturating_sub(before);
    let problem = verified.problems().iter().find(|p| p.object == target).expect("bomb reported");
    assert!(matches!(&problem.kind, ProblemKind::Malformed(e) if e.to_string().contains("declares")), "{problem}");
    assert!(growth < 64 << 20, "verification grew the peak RSS by {growth} bytes");
}
