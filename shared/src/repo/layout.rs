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
    fn matches_what_the_debian_tools_write() {
        assert_eq!(super::repo_config(None), "[core]\nrepo_version=1\nmode=archive-z2\nindexed-deltas=true\n");
        assert!(super::repo_config(Some("org.example.Repo")).contains("\ncollection-id=org.example.Repo\n"));
    }
}
