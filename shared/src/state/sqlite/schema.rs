//! The SQLite schema, its versioned migrations and the column lists the queries share.

use super::*;

/// The schema, one entry per version: entry `n` takes a database from `user_version` `n` to
/// `n + 1`. Later changes are appended, never edited, so existing files migrate forward.
pub(super) const MIGRATIONS: &[&str] = &[SCHEMA_V1];

// AUTOINCREMENT so ids are never reused: build and job ids appear in URLs and logs, and a purged
// build's id must not come back as someone else's build.
pub(super) const SCHEMA_V1: &str = r#"
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    status INTEGER NOT NULL,
    contents TEXT NOT NULL,
    results TEXT,
    log TEXT NOT NULL DEFAULT '',
    start_after TEXT,
    repo TEXT
);
CREATE INDEX jobs_status ON jobs (status);

CREATE TABLE builds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    repo_state INTEGER NOT NULL,
    repo_state_reason TEXT,
    published_state INTEGER NOT NULL,
    published_state_reason TEXT,
    commit_job_id INTEGER REFERENCES jobs (id),
    publish_job_id INTEGER REFERENCES jobs (id),
    repo TEXT NOT NULL,
    extra_ids TEXT NOT NULL DEFAULT '[]',
    app_id TEXT,
    public_download INTEGER NOT NULL,
    build_log_url TEXT,
    token_name TEXT,
    token_type TEXT
);
CREATE INDEX builds_app_id ON builds (app_id);

CREATE TABLE build_refs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    build_id INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    ref_name TEXT NOT NULL,
    "commit" TEXT NOT NULL,
    build_log_url TEXT,
    UNIQUE (build_id, ref_name)
);

CREATE TABLE tokens (
    token_id TEXT PRIMARY KEY,
    expires TEXT,
    last_used TEXT,
    revoked_at TEXT
);

CREATE TABLE repo_refs (
    repo TEXT NOT NULL,
    ref_name TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (repo, ref_name)
) WITHOUT ROWID;

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
"#;

pub(super) const BUILD_COLUMNS: &str =
    "id, created, repo_state, repo_state_reason, published_state, published_state_reason, \
     commit_job_id, publish_job_id, repo, extra_ids, app_id, public_download, build_log_url, token_name, token_type";

pub(super) const JOB_COLUMNS: &str = "id, kind, status, contents, results, log, start_after, repo";

pub(super) const BUILD_REF_COLUMNS: &str = r#"id, build_id, ref_name, "commit", build_log_url"#;

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StateError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).context("migrating")?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0)).context("reading version")?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StateError::Backend(format!(
            "schema version {version} is newer than this flatbucket knows ({known})"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let to = index as i64 + 1;
        tx.execute_batch(sql).context(&format!("migrating to schema version {to}"))?;
        tx.pragma_update(None, "user_version", to).context("setting schema version")?;
    }
    tx.commit().context("migrating")
}
