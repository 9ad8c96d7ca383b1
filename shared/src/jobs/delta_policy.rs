//! Which static deltas a repository should have: flat-manager's depth policy (`deltas` config
//! entries matched by app id and arch globs, `appstream-delta-depth`), applied to the ref records
//! of the state store and the parent links of the commits the repository still has.

use std::collections::BTreeSet;

use crate::config::{DeltaConfig, RepoConfig};
use crate::repo::deltas::DeltaId;
use crate::repo::local::{read_commit, ReadError};
use crate::repo::record::RefRecord;
use crate::repo::{Checksum, ObjectName, ObjectType};
use crate::store::ObjectStore;

/// `appstream-delta-depth` when the configuration has none.
const DEFAULT_APPSTREAM_DELTA_DEPTH: u32 = 5;

/// How many deltas ref `name` gets: 0 for none; D > 0 for one from scratch and one from each of
/// up to D − 1 ancestors of its head.
pub fn delta_depth(name: &str, config: &RepoConfig) -> u32 {
    if name.starts_with("appstream2/") {
        return config.appstream_delta_depth.unwrap_or(DEFAULT_APPSTREAM_DELTA_DEPTH);
    }
    if name.starts_with("appstream/") {
        return 1;
    }
    let mut parts = name.split('/');
    let (Some("app" | "runtime"), Some(id), Some(arch), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return 0; // `ostree-metadata`, `screenshots/…` and anything else
    };
    config.deltas.iter().find(|entry| matches_ref(entry, id, arch)).map_or(0, |entry| entry.depth)
}

/// flat-manager's `DeltaConfig::matches_ref`: an id glob matches, and an arch glob does when the
/// entry names arches.
fn matches_ref(entry: &DeltaConfig, id: &str, arch: &str) -> bool {
    let arch_matches = match &entry.arch {
        None => true,
        Some(arches) => arches.is_empty() || arches.iter().any(|glob| glob_matches(glob, arch)),
    };
    arch_matches && entry.id.iter().any(|glob| glob_matches(glob, id))
}

/// flat-manager's globs: `*` matches one or more characters, everything else itself.
fn glob_matches(glob: &str, text: &str) -> bool {
    let Some((literal, rest)) = glob.split_once('*') else { return glob == text };
    let Some(after) = text.strip_prefix(literal) else { return false };
    // `*` takes at least one character: try the rest of the glob after each possible take.
    let ends = after.char_indices().skip(1).map(|(i, _)| i).chain(std::iter::once(after.len()));
    ends.filter(|&end| end > 0).any(|end| glob_matches(rest, &after[end..]))
}

/// Every delta the repository should have for `records`: per ref of depth D > 0, one from scratch
/// to its head and one from each of up to D − 1 ancestors, walking parents while their commit
/// objects exist in `store`.
pub async fn wanted_deltas(
    store: &dyn ObjectStore,
    records: &[RefRecord],
    config: &RepoConfig,
) -> Result<BTreeSet<DeltaId>, ReadError> {
    let mut wanted = BTreeSet::new();
    for record in records {
        let depth = delta_depth(&record.name, config);
        if depth == 0 {
            continue;
        }
        let head = record.commit;
        wanted.insert(DeltaId { from: None, to: head });
        let mut current = head;
        for _ in 1..depth {
            let Some(parent) = stored_parent(store, current).await? else { break };
            wanted.insert(DeltaId { from: Some(parent), to: head });
            current = parent;
        }
    }
    Ok(wanted)
}

/// The parent of `commit`, if it has one and the repository still has the parent's commit object.
async fn stored_parent(store: &dyn ObjectStore, commit: Checksum) -> Result<Option<Checksum>, ReadError> {
    let parent = match read_commit(store, commit).await {
        Ok((commit, _)) => commit.parent,
        Err(ReadError::Store(e)) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    let Some(parent) = parent else { return Ok(None) };
    Ok(store.head(&ObjectName::new(parent, ObjectType::Commit).key()).await?.map(|_| parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(deltas: serde_json::Value) -> RepoConfig {
        serde_json::from_value(serde_json::json!({"path": "repo", "subsets": {}, "deltas": deltas})).unwrap()
    }

    #[test]
    fn a_star_matches_one_or_more_characters() {
        assert!(glob_matches("org.example.*", "org.example.App"));
        assert!(!glob_matches("org.example.*", "org.example."), "`*` needs a character");
        assert!(glob_matches("*", "x"));
        assert!(!glob_matches("*", ""));
        assert!(glob_matches("org.*.App", "org.example.App"));
        assert!(!glob_matches("org.*.App", "org..App"));
        assert!(glob_matches("*.Debug", "org.example.App.Debug"));
        assert!(!glob_matches("org.example.App", "org.example.App2"));
        assert!(glob_matches("a*b*c", "aXbYc") && !glob_matches("a*b*c", "abc"));
    }

    #[test]
    fn the_first_matching_entry_sets_an_app_or_runtime_depth() {
        let config = config(serde_json::json!([
            {"id": ["org.example.*"], "arch": ["aarch64"], "depth": 7},
            {"id": ["org.example.*"], "depth": 3},
            {"id": ["*"], "depth": 1},
        ]));
        assert_eq!(delta_depth("app/org.example.App/x86_64/stable", &config), 3);
        assert_eq!(delta_depth("app/org.example.App/aarch64/stable", &config), 7);
        assert_eq!(delta_depth("runtime/org.example.Platform/x86_64/stable", &config), 3);
        assert_eq!(delta_depth("app/com.other.App/x86_64/stable", &config), 1);
        assert_eq!(delta_depth("screenshots/x86_64", &config), 0);
        assert_eq!(delta_depth("ostree-metadata", &config), 0);
        assert_eq!(delta_depth("app/org.example.App/x86_64", &config), 0, "not a full ref");
    }

    #[test]
    fn appstream_branches_have_their_own_depths() {
        let mut config = config(serde_json::json!([]));
        assert_eq!(delta_depth("appstream2/x86_64", &config), 5);
        assert_eq!(delta_depth("appstream/x86_64", &config), 1);
        assert_eq!(delta_depth("app/org.example.App/x86_64/stable", &config), 0, "no entries, no deltas");
        config.appstream_delta_depth = Some(2);
        assert_eq!(delta_depth("appstream2/x86_64", &config), 2);
    }
}
