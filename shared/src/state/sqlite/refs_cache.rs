//! The ref records of each repository, kept decoded between calls: a publish reads every record
//! of its repository (twice), and decoding 10,000 JSON records costs more than the rest of a small
//! publish. Only used with the connection lock held, so entries change in step with the file.
//!
//! An entry is valid while the connection's `PRAGMA data_version` is the one it was filled at:
//! SQLite changes that number when another connection (another process sharing the file) commits,
//! and never for this connection's own commits, which [`RefsCache::merge`] applies to the entry.

use std::collections::HashMap;

use rusqlite::Connection;

use super::{Context, StateError};
use crate::repo::record::RefRecord;

#[derive(Debug, Default)]
pub(super) struct RefsCache {
    /// Records by repository, sorted by name as the table's `ORDER BY ref_name` sorts them, with
    /// the `data_version` they were read at.
    repos: HashMap<String, (i64, Vec<RefRecord>)>,
}

/// What this connection knows of other connections' commits.
pub(super) fn data_version(conn: &Connection) -> Result<i64, StateError> {
    conn.pragma_query_value(None, "data_version", |row| row.get(0)).context("reading the data version")
}

impl RefsCache {
    /// The records of `repo` if nothing else changed the file since they were read.
    pub(super) fn get(&self, repo: &str, version: i64) -> Option<Vec<RefRecord>> {
        self.repos.get(repo).filter(|(at, _)| *at == version).map(|(_, records)| records.clone())
    }

    /// Remembers the records of `repo` as read at `version`.
    pub(super) fn fill(&mut self, repo: &str, version: i64, records: Vec<RefRecord>) {
        self.repos.insert(repo.to_owned(), (version, records));
    }

    /// Applies this connection's committed upsert of `records` to the entry of `repo`, which stays
    /// valid only if no other connection committed since it was read (`version` is the current
    /// data version); otherwise the entry is dropped and the next read refills it.
    pub(super) fn merge(&mut self, repo: &str, version: i64, records: &[RefRecord]) {
        let Some((at, cached)) = self.repos.get_mut(repo) else { return };
        if *at != version {
            self.repos.remove(repo);
            return;
        }
        for record in records {
            match cached.binary_search_by(|r| r.name.as_bytes().cmp(record.name.as_bytes())) {
                Ok(i) => cached[i] = record.clone(),
                Err(i) => cached.insert(i, record.clone()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Checksum;

    fn record(name: &str, commit: &[u8]) -> RefRecord {
        RefRecord { name: name.into(), commit: Checksum::of(commit), commit_size: 1, timestamp: 2, flatpak: None }
    }

    #[test]
    fn merges_keep_the_byte_order_and_replace_by_name() {
        let mut cache = RefsCache::default();
        cache.fill("stable", 3, vec![record("app/b", b"1"), record("app/d", b"1")]);
        cache.merge("stable", 3, &[record("app/c", b"2"), record("app/b", b"2"), record("app/Z", b"2")]);
        let names: Vec<String> = cache.get("stable", 3).unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["app/Z", "app/b", "app/c", "app/d"]);
        assert_eq!(cache.get("stable", 3).unwrap()[1].commit, Checksum::of(b"2"));
        assert!(cache.get("stable", 4).is_none(), "another connection committed");
        cache.merge("stable", 4, &[record("app/e", b"1")]);
        assert!(cache.get("stable", 3).is_none(), "a merge over another connection's commit drops the entry");
    }
}
