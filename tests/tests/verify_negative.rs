//! Verification of hostile uploads: each kind of damage to a real `flatpak build-export` repo is
//! reported with the object's name, every damaged object is reported (not just the first), and
//! nothing panics.

use std::path::PathBuf;
use std::sync::Arc;

use flatbucket::repo::dirs::{DirEntry, DirTree};
use flatbucket::repo::filez::{encode_filez, FileHeader};
use flatbucket::repo::local::{read_commit, resolve_ref};
use flatbucket::repo::verify::{verify_commit, Verified};
use flatbucket::repo::walk::{walk_closure, ProblemKind};
use flatbucket::repo::{Checksum, ObjectName, ObjectType};
use flatbucket::store::{LocalStore, ObjectStore};
use flatbucket_tests::fixture::{build_repo, Fixture, APP_REF};

struct Damaged {
    _fixture: Fixture,
    repo: PathBuf,
    store: Arc<dyn ObjectStore>,
    commit: Checksum,
}

async fn app_repo() -> Damaged {
    let fixture = build_repo(1).expect("fixture builds");
    let repo = fixture.repo.clone();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&repo).unwrap());
    let commit = resolve_ref(&*store, APP_REF).await.unwrap();
    Damaged { _fixture: fixture, repo, store, commit }
}

impl Damaged {
    async fn verify(&self) -> Verified {
        verify_commit(self.store.clone(), self.commit, 4, None).await.expect("only objects are damaged, not the store")
    }

    async fn names(&self, kind: ObjectType) -> Vec<ObjectName> {
        let closure = walk_closure(&*self.store, self.commit).await.unwrap();
        let mut names: Vec<ObjectName> = closure.object_names().filter(|n| n.kind == kind).collect();
        names.sort();
        names
    }

    fn path(&self, name: &ObjectName) -> PathBuf {
        self.repo.join(name.key())
    }

    fn flip_byte(&self, name: &ObjectName, from_end: usize) {
        let mut bytes = std::fs::read(self.path(name)).unwrap();
        let at = bytes.len() - 1 - from_end.min(bytes.len() - 1);
        bytes[at] ^= 0x55;
        std::fs::write(self.path(name), bytes).unwrap();
    }

    async fn write_object(&self, kind: ObjectType, bytes: Vec<u8>) -> Checksum {
        let checksum = Checksum::of(&bytes);
        self.store.put(&ObjectName::new(checksum, kind).key(), bytes.into()).await.unwrap();
        checksum
    }

    /// Makes the commit under test a copy of the app's commit with another root tree.
    async fn recommit_with_root(&mut self, tree: Checksum) {
        let (mut commit, _) = read_commit(&*self.store, self.commit).await.unwrap();
        commit.root_tree = tree;
        self.commit = self.write_object(ObjectType::Commit, commit.to_bytes()).await;
    }
}

fn assert_reported(verified: &Verified, name: &ObjectName, expect: impl Fn(&ProblemKind) -> bool) {
    let found = verified.problems().iter().find(|p| p.object == *name);
    let found = found.unwrap_or_else(|| panic!("{name} not reported; problems: {:?}", verified.problems()));
    assert!(expect(&found.kind), "{name} reported as {:?}", found.kind);
    assert!(found.to_string().contains(&name.to_string()), "the report names the object: {found}");
}

fn is_mismatch(kind: &ProblemKind) -> bool {
    matches!(kind, ProblemKind::ChecksumMismatch { .. })
}

fn is_bad(kind: &ProblemKind) -> bool {
    matches!(kind, ProblemKind::ChecksumMismatch { .. } | ProblemKind::Malformed(_))
}

#[tokio::test]
async fn an_intact_export_verifies_with_flatpak_sizes() {
    let repo = app_repo().await;
    let verified = repo.verify().await;
    assert!(verified.is_ok(), "{:?}", verified.problems());
    let (commit, _) = read_commit(&*repo.store, repo.commit).await.unwrap();
    assert_eq!(commit.metadata.get_be_u64("xa.installed-size"), Some(verified.sizes.installed));
    assert_eq!(commit.metadata.get_be_u64("xa.download-size"), Some(verified.sizes.download));
}

#[tokio::test]
async fn flipped_bytes_in_files_and_dirmeta_are_each_reported() {
    let repo = app_repo().await;
    let files = repo.names(ObjectType::File).await;
    let metas = repo.names(ObjectType::DirMeta).await;
    repo.flip_byte(&files[0], 0);
    repo.flip_byte(&files[1], 0);
    repo.flip_byte(&metas[0], 0);
    let verified = repo.verify().await;
    for name in [&files[0], &files[1], &metas[0]] {
        assert_reported(&verified, name, is_bad);
    }
}

#[tokio::test]
async fn a_flipped_byte_in_a_nested_dirtree_is_reported() {
    let repo = app_repo().await;
    let root = read_commit(&*repo.store, repo.commit).await.unwrap().0.root_tree;
    let trees = repo.names(ObjectType::DirTree).await;
    let nested = trees.iter().find(|t| t.checksum != root).unwrap();
    repo.flip_byte(nested, 3);
    assert_reported(&repo.verify().await, nested, is_bad);
}

#[tokio::test]
async fn a_flipped_commit_byte_is_reported() {
    let repo = app_repo().await;
    let commit = ObjectName::new(repo.commit, ObjectType::Commit);
    repo.flip_byte(&commit, 10);
    assert_reported(&repo.verify().await, &commit, is_mismatch);
}

#[tokio::test]
async fn missing_and_truncated_objects_are_reported() {
    let repo = app_repo().await;
    let files = repo.names(ObjectType::File).await;
    std::fs::remove_file(repo.path(&files[0])).unwrap();
    let bytes = std::fs::read(repo.path(&files[1])).unwrap();
    std::fs::write(repo.path(&files[1]), &bytes[..bytes.len() / 2]).unwrap();
    let verified = repo.verify().await;
    assert_reported(&verified, &files[0], |k| *k == ProblemKind::Missing);
    assert_reported(&verified, &files[1], is_bad);
    assert_eq!(verified.problems().len(), 2, "{:?}", verified.problems());
}

#[tokio::test]
async fn an_object_stored_under_another_name_is_reported() {
    let repo = app_repo().await;
    let files = repo.names(ObjectType::File).await;
    std::fs::copy(repo.path(&files[0]), repo.path(&files[1])).unwrap();
    assert_reported(&repo.verify().await, &files[1], |k| {
        *k == ProblemKind::ChecksumMismatch { actual: files[0].checksum }
    });
}

#[tokio::test]
async fn a_dot_dot_entry_in_a_dirtree_is_reported() {
    let mut repo = app_repo().await;
    let (commit, _) = read_commit(&*repo.store, repo.commit).await.unwrap();
    let tree = DirTree {
        files: Vec::new(),
        dirs: vec![DirEntry { name: "..".into(), tree: commit.root_tree, meta: commit.root_meta }],
    };
    let evil = repo.write_object(ObjectType::DirTree, tree.to_bytes()).await;
    repo.recommit_with_root(evil).await;
    let verified = repo.verify().await;
    assert_reported(&verified, &ObjectName::new(evil, ObjectType::DirTree), |k| matches!(k, ProblemKind::Malformed(_)));
}

#[tokio::test]
async fn a_dirtree_cycle_is_reported_and_not_followed() {
    let mut repo = app_repo().await;
    let (commit, _) = read_commit(&*repo.store, repo.commit).await.unwrap();
    // A tree whose subdirectory is the tree itself can only exist under a false name.
    let loop_name = Checksum::of(b"a name the tree claims");
    let tree = DirTree {
        files: Vec::new(),
        dirs: vec![DirEntry { name: "loop".into(), tree: loop_name, meta: commit.root_meta }],
    };
    let key = ObjectName::new(loop_name, ObjectType::DirTree);
    repo.store.put(&key.key(), tree.to_bytes().into()).await.unwrap();
    repo.recommit_with_root(loop_name).await;
    let verified =
        tokio::time::timeout(std::time::Duration::from_secs(30), repo.verify()).await.expect("the walk ends");
    assert_reported(&verified, &key, is_mismatch);
}

#[tokio::test]
async fn an_absurd_declared_size_is_reported() {
    let repo = app_repo().await;
    let files = repo.names(ObjectType::File).await;
    let (_, lying) = encode_filez(&FileHeader::regular(1 << 62, 0o644), b"short content", 6);
    std::fs::write(repo.path(&files[0]), lying).unwrap();
    assert_reported(
        &repo.verify().await,
        &files[0],
        |k| matches!(k, ProblemKind::Malformed(e) if e.to_string().contains("declares")),
    );
}

#[tokio::test]
async fn a_missing_or_garbage_commit_is_reported_without_walking() {
    let repo = app_repo().await;
    let absent = Checksum::of(b"no such commit");
    let verified = verify_commit(repo.store.clone(), absent, 4, None).await.unwrap();
    assert_eq!(verified.problems().len(), 1);
    assert_eq!(verified.problems()[0].kind, ProblemKind::Missing);
    let garbage = Checksum::of(b"\x01\x02");
    repo.store.put(&ObjectName::new(garbage, ObjectType::Commit).key(), vec![1u8, 2].into()).await.unwrap();
    let verified = verify_commit(repo.store.clone(), garbage, 4, None).await.unwrap();
    assert!(matches!(verified.problems()[0].kind, ProblemKind::Malformed(_)), "{:?}", verified.problems());
}
