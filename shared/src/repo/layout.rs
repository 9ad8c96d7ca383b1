//! Repository layout: the `config` file clients fetch before every pull, ref files, and the
//! directories ostree's own tools expect in a repository on disk.

use std::io;
use std::path::Path;

/// Directories `ostree init` creates; `ostree fsck` and friends refuse a repo without them.
const LOCAL_DIRS: &[&str] = &["objects", "refs/heads", "refs/mirrors", "refs/remotes", "tmp", "state", "extensions"];

/// `config` of an archive-z2 repository with indexed deltas, as `ostree init` plus
/// `ostree_repo_static_delta_reindex` leave it.
pub fn repo_config(collection_id: Option<&str>) -> String {
    let mut config = String::from("[core]\nrepo_version=1\nmode=archive-z2\n");
    if let Some(id) = collection_id {
        config.push_str(&format!("collection-id={id}\n"));
    }
    config.push_str("indexed-deltas=true\n");
    config
}

/// The contents of `refs/heads/<ref>`.
pub fn ref_file(commit: &super::Checksum) -> String {
    format!("{commit}\n")
}

/// The `Cache-Control` a file of a published repository should be served with: content-addressed
/// files (objects, `summaries/`, including the digest-named `summaries/<digest>.idx.sig`) are
/// immutable; pointers (`summary.idx`, `summary`, their fixed-name `.sig` files, refs, delta
/// indexes) short-lived.
pub fn cache_control(key: &str) -> &'static str {
    const IMMUTABLE: &str = "public, max-age=31536000, immutable";
    match key {
        "summary.idx" | "summary.idx.sig" | "summary" | "summary.sig" => "public, max-age=30, stale-if-error=86400",
        "config" => "public, max-age=300",
        _ if key.starts_with("objects/") && key.ends_with(".commitmeta") => "public, max-age=3600",
        _ if key.starts_with("objects/") || key.starts_with("deltas/") || key.starts_with("summaries/") => IMMUTABLE,
        _ if key.starts_with("delta-indexes/") => "public, max-age=300",
        _ if key.starts_with("refs/") => "public, max-age=60",
        // Rewritten when a key, URL or collection changes; fetched once per install.
        _ if key.ends_with(".flatpakref") || key.ends_with(".flatpakrepo") => "public, max-age=300",
        _ => "public, max-age=3600",
    }
}

/// Makes `path` an archive-z2 repository that ostree's tools accept, keeping an existing `config`.
pub fn init_local_repo(path: &Path, collection_id: Option<&str>) -> io::Result<()> {
    for dir in LOCAL_DIRS {
        std::fs::create_dir_all(path.join(dir))?;
    }
    let config = path.join("config");
    if !config.exists() {
        std::fs::write(config, repo_config(collection_id))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn caches_content_addressed_files_forever_and_pointers_briefly() {
        assert!(super::cache_control("objects/ab/cd.filez").contains("immutable"));
        assert!(super::cache_control("summaries/abc.gz").contains("immutable"));
        assert!(!super::cache_control("objects/ab/cd.commitmeta").contains("immutable"));
        assert!(!super::cache_control("summary.idx").contains("immutable"));
        assert!(super::cache_control("summaries/abc.idx.sig").contains("immutable"), "named by its index's digest");
        assert!(super::cache_control("summary.sig").contains("max-age=30,"));
        assert!(super::cache_control("summary.idx.sig").contains("max-age=30,"));
        assert!(!super::cache_control("delta-indexes/H2/x.index").contains("immutable"));
        assert_eq!(super::cache_control("appstream/org.example.App.flatpakref"), "public, max-age=300");
        assert_eq!(super::cache_control("stable.flatpakrepo"), "public, max-age=300");
    }

    #[test]
    fn matches_what_the_debian_tools_write() {
        assert_eq!(super::repo_config(None), "[core]\nrepo_version=1\nmode=archive-z2\nindexed-deltas=true\n");
        assert!(super::repo_config(Some("org.example.Repo")).contains("\ncollection-id=org.example.Repo\n"));
    }
}
