//! Tests of the local repository reader against a repository made by the real `flatpak` and
//! `ostree` tools, run in a private HOME/XDG environment.

use std::path::{Path, PathBuf};

use super::*;
use crate::client::upload::plan_batches;
use flatbucket_tests::tools::Isolated;
use tempfile::TempDir;

const APP_REF: &str = "app/org.example.Client/x86_64/stable";

/// Runs `program args…` in an isolated HOME/XDG/Flatpak environment and returns its stdout.
fn run(iso: &Isolated, program: &str, args: &[&str]) -> String {
    let mut cmd = if program == "flatpak" { iso.flatpak() } else { iso.ostree() };
    flatbucket_tests::tools::run(cmd.args(args)).unwrap_or_else(|e| panic!("{e:#}"))
}

fn write(path: &Path, contents: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// Exports a small app with `flatpak build-export`, adds a from-scratch delta with
/// `ostree static-delta generate --empty` and a ref outside the pushed namespaces.
fn exported_repo(dir: &Path) -> PathBuf {
    let (home, build, repo) = (Isolated::new().unwrap(), dir.join("build"), dir.join("repo"));
    let metadata = "[Application]\nname=org.example.Client\nruntime=org.example.Platform/x86_64/stable\n";
    write(&build.join("metadata"), metadata.as_bytes());
    write(&build.join("files/bin/hello.sh"), b"#!/bin/sh\necho hello\n");
    write(&build.join("files/share/doc/a/b/c.txt"), b"nested\n");
    write(&build.join("files/share/big.bin"), &vec![7u8; 300_000]);
    let (build, repo_arg) = (build.to_str().unwrap(), repo.to_str().unwrap());
    run(&home, "flatpak", &["build-finish", "--command=hello.sh", build]);
    run(&home, "flatpak", &["build-export", "--arch=x86_64", repo_arg, build, "stable"]);
    let repo_flag = format!("--repo={repo_arg}");
    run(&home, "ostree", &["static-delta", "generate", &repo_flag, "--empty", &format!("--to={APP_REF}")]);
    run(&home, "ostree", &["refs", &repo_flag, APP_REF, "--create=other/thing"]);
    repo
}

/// Every object file in the repository, as `<hex>.<ext>` names.
fn objects_on_disk(repo: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for dir in std::fs::read_dir(repo.join("objects")).unwrap() {
        let dir = dir.unwrap();
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let file = file.unwrap().file_name().into_string().unwrap();
            names.insert(format!("{}{file}", dir.file_name().into_string().unwrap()));
        }
    }
    names
}

#[tokio::test]
async fn enumerates_exactly_the_objects_flatpak_exported() {
    let dir = TempDir::new().unwrap();
    let repo_path = exported_repo(dir.path());
    let repo = LocalRepo::open(&repo_path).unwrap();

    let refs = repo.select_refs(&[]).await.unwrap();
    assert_eq!(refs.keys().collect::<Vec<_>>(), [APP_REF], "other/thing is not pushed by default");
    let sets = repo.enumerate(refs.values().copied()).await.unwrap();

    let commit = refs[APP_REF];
    assert!(sets.metadata.contains_key(&ObjectName::new(commit, ObjectType::Commit)));
    assert!(sets.metadata.keys().any(|n| n.kind == ObjectType::DirTree));
    assert!(sets.metadata.keys().any(|n| n.kind == ObjectType::DirMeta));
    assert!(sets.files.iter().all(|n| n.kind == ObjectType::File) && sets.files.len() >= 4);
    let enumerated: BTreeSet<String> = sets.metadata.keys().chain(&sets.files).map(|n| n.to_string()).collect();
    assert_eq!(enumerated, objects_on_disk(&repo_path), "the closure is the whole exported repo");

    let items = repo.object_items(sets.files.iter().copied()).await.unwrap();
    let on_disk = |item: &UploadItem| std::fs::metadata(repo_path.join(&item.key)).unwrap().len();
    assert!(items.iter().all(|item| item.size == on_disk(item) && item.key.ends_with(".filez")));
    let keys: Vec<String> = items.iter().map(|item| item.key.clone()).collect();
    let data = repo.read_many(&keys).await.unwrap();
    assert!(data.iter().zip(&items).all(|(data, item)| data.len() as u64 == item.size), "each file whole, in order");
    assert!(repo.read_many(&["objects/00/missing.filez".to_owned()]).await.is_err());
}

#[tokio::test]
async fn finds_the_from_scratch_delta_parts_of_a_ref() {
    let dir = TempDir::new().unwrap();
    let repo_path = exported_repo(dir.path());
    let repo = LocalRepo::open(&repo_path).unwrap();
    let named = repo.select_refs(&[APP_REF.to_owned(), "other/thing".to_owned()]).await.unwrap();
    assert_eq!(named.len(), 2);
    let commit = named[APP_REF];

    let parts = repo.delta_items(&commit).await.unwrap();
    let b64 = commit.to_modified_base64();
    let names: BTreeSet<&str> = parts.iter().map(|p| p.filename.as_str()).collect();
    assert!(names.contains(format!("{b64}.superblock.delta").as_str()), "{names:?}");
    assert!(names.contains(format!("{b64}.0.delta").as_str()), "{names:?}");
    for part in &parts {
        let file = part.filename.strip_prefix(&format!("{b64}.")).unwrap().strip_suffix(".delta").unwrap();
        assert_eq!(part.key, format!("deltas/{}/{}/{file}", &b64[..2], &b64[2..]));
    }
    let other = Checksum::of(b"no delta here");
    assert!(repo.delta_items(&other).await.unwrap().is_empty());
    assert_eq!(plan_batches(parts.clone(), 4 << 20).concat(), parts);
}

#[tokio::test]
async fn refuses_missing_and_bare_repos_and_unknown_refs() {
    let dir = TempDir::new().unwrap();
    assert!(matches!(LocalRepo::open(&dir.path().join("nope")), Err(ClientError::Usage(_))));
    write(&dir.path().join("bare/config"), b"[core]\nrepo_version=1\nmode=bare-user\n");
    assert!(matches!(LocalRepo::open(&dir.path().join("bare")), Err(ClientError::Usage(_))));
    let archive = dir.path().join("archive");
    flatbucket::repo::layout::init_local_repo(&archive, None).unwrap();
    let repo = LocalRepo::open(&archive).unwrap();
    assert!(repo.select_refs(&[]).await.unwrap().is_empty());
    assert!(matches!(repo.select_refs(&["app/x/y/z".into()]).await, Err(ClientError::Usage(_))));
}

#[tokio::test]
async fn a_commit_with_missing_objects_is_an_error() {
    let dir = TempDir::new().unwrap();
    let archive = dir.path().join("archive");
    flatbucket::repo::layout::init_local_repo(&archive, None).unwrap();
    let repo = LocalRepo::open(&archive).unwrap();
    let error = repo.enumerate([Checksum::of(b"absent")]).await.unwrap_err();
    assert!(error.to_string().contains("missing"), "{error}");
}

#[test]
fn delta_parts_are_named_b64_file_delta() {
    assert_eq!(delta_part_name("H2Sr9+k_x", "superblock"), "H2Sr9+k_x.superblock.delta");
    assert_eq!(delta_part_name("H2Sr9+k_x", "12"), "H2Sr9+k_x.12.delta");
}

#[test]
fn deltas_are_sent_for_app_and_runtime_refs_not_ignored() {
    let ignore = vec!["*.Debug".to_owned(), "org.gnome.*".to_owned()];
    assert!(wants_delta("app/org.example.App/x86_64/stable", &ignore));
    assert!(wants_delta("runtime/org.example.App.Locale/x86_64/stable", &ignore));
    assert!(!wants_delta("runtime/org.example.App.Debug/x86_64/stable", &ignore));
    assert!(!wants_delta("app/org.gnome.Maps/x86_64/stable", &ignore));
    assert!(!wants_delta("screenshots/x86_64", &ignore));
    assert!(!wants_delta("app/org.example.App/x86_64", &ignore));
}

#[test]
fn fnmatch_follows_python() {
    assert!(fnmatch("*", "") && fnmatch("*", "anything"));
    assert!(fnmatch("org.*.App", "org.example.App") && !fnmatch("org.*.App", "org.example.Apps"));
    assert!(fnmatch("a?c", "abc") && !fnmatch("a?c", "ac"));
    assert!(fnmatch("[a-c]x", "bx") && !fnmatch("[a-c]x", "dx"));
    assert!(fnmatch("[!a-c]x", "dx") && !fnmatch("[!a-c]x", "ax"));
    assert!(fnmatch("[]]", "]") && fnmatch("[", "[") && !fnmatch("[ab", "a"));
    assert!(fnmatch("a.b", "a.b") && !fnmatch("a.b", "axb"));
}
