//! StateStore in one SQLite file, for single-host deployments and tests. One connection sits
//! behind a mutex and every call runs on tokio's blocking pool, so the async runtime never waits
//! on SQLite. Every state transition is one `BEGIN IMMEDIATE` transaction that reads the row,
//! checks the precondition and writes: the write lock is taken before the read, so two callers
//! (in this process or another one sharing the file) cannot both see the old state and both win.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use serde::de::DeserializeOwned;

use super::{naive_from_unix, naive_now, StateError, StateStore, TokenRecord};
use crate::domain::build::{Build, BuildRef, NewBuild, PublishedState, RepoState};
use crate::domain::job::{CommitContents, Job, JobKind, JobStatus, PublishContents};
use crate::repo::record::RefRecord;

mod refs_cache;
mod rows;
mod schema;
#[cfg(test)]
mod tests;

use refs_cache::{data_version, RefsCache};
use rows::*;
use schema::*;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The state of a flatbucket server in a SQLite database file.
#[derive(Clone)]
pub struct SqliteState {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    /// Only touched with `conn` locked.
    refs_cache: Arc<Mutex<RefsCache>>,
}

impl fmt::Debug for SqliteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteState").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteState {
    /// Opens (creating if missing) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let opening = format!("opening {}", path.display());
        let mut conn = Connection::open(path).context(&opening)?;
        conn.busy_timeout(BUSY_TIMEOUT).context(&opening)?;
        // WAL lets readers (the API serving builds and logs) proceed while a job writes.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).context(&opening)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StateError::Backend(format!("{opening}: journal mode stayed {mode}, WAL is needed")));
        }
        // In WAL mode NORMAL syncs at checkpoints, not at every commit: a killed process loses
        // nothing committed, and a power cut at worst the last commits, never consistency. Each
        // job log line is a commit, so FULL's fsync per commit cost publishes several fsyncs.
        conn.pragma_update(None, "synchronous", "NORMAL").context(&opening)?;
        conn.pragma_update(None, "foreign_keys", true).context(&opening)?;
        migrate(&mut conn).map_err(|e| StateError::Backend(format!("{opening}: {e}")))?;
        Ok(Self { path: path.to_owned(), conn: Arc::new(Mutex::new(conn)), refs_cache: Arc::default() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StateError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while the lock was held dropped its transaction, which rolls it back, so the
            // connection is still consistent and later calls may use it.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|e| StateError::Backend(format!("state store task failed: {e}")))?
    }

    /// Runs `f` without a transaction: for reads whose statements need no common snapshot.
    async fn read<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StateError> + Send + 'static,
    {
        self.with_conn(move |conn| f(conn)).await
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed if `f` succeeds and rolled back
    /// otherwise. `what` names the operation in errors.
    async fn write<T, F>(&self, what: &'static str, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StateError> + Send + 'static,
    {
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).context(what)?;
            let value = f(&tx)?;
            tx.commit().context(what)?;
            Ok(value)
        })
        .await
    }
}

/// Applies the migrations the file has not seen yet, each with its version bump, atomically.
/// Adds what was being done to a SQLite error.
trait Context<T> {
    fn context(self, what: &str) -> Result<T, StateError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, what: &str) -> Result<T, StateError> {
        self.map_err(|e| StateError::Backend(format!("{what}: {e}")))
    }
}

/// Turns "no row" into [`StateError::NotFound`].
fn found<T>(row: Option<T>) -> Result<T, StateError> {
    row.ok_or(StateError::NotFound)
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StateError> {
    serde_json::to_string(value).map_err(|e| StateError::Backend(format!("encoding {what}: {e}")))
}

/// Reads a wire-enum column, refusing numbers the enum does not have.
#[async_trait]
impl StateStore for SqliteState {
    async fn create_build(&self, new: NewBuild) -> Result<Build, StateError> {
        self.write("creating build", move |tx| {
            tx.execute(
                "INSERT INTO builds (created, repo_state, published_state, repo, extra_ids, app_id, public_download, \
                 build_log_url, token_name, token_type) VALUES (?1, ?2, ?3, ?4, '[]', ?5, ?6, ?7, ?8, ?9)",
                params![
                    naive_now(),
                    RepoState::Uploading as i64,
                    PublishedState::Unpublished as i64,
                    new.repo,
                    new.app_id,
                    new.public_download,
                    new.build_log_url,
                    new.token_name,
                    new.token_type,
                ],
            )
            .context("creating build")?;
            load_build(tx, tx.last_insert_rowid())
        })
        .await
    }

    async fn get_build(&self, id: i64) -> Result<Build, StateError> {
        self.read(move |conn| load_build(conn, id)).await
    }

    async fn list_builds(&self, app_id: Option<&str>) -> Result<Vec<Build>, StateError> {
        let app_id = app_id.map(str::to_owned);
        self.read(move |conn| {
            // `IS` matches NULL to NULL, so one statement serves both "this app" and "no app".
            let sql = format!("SELECT {BUILD_COLUMNS} FROM builds WHERE app_id IS ?1 AND repo_state != ?2 ORDER BY id");
            let mut stmt = conn.prepare_cached(&sql).context("listing builds")?;
            let rows =
                stmt.query_map(params![app_id, RepoState::Purged as i64], build_from_row).context("listing builds")?;
            rows.collect::<rusqlite::Result<Vec<_>>>().context("listing builds")
        })
        .await
    }

    async fn unpublished_builds(&self, repo: &str) -> Result<Vec<Build>, StateError> {
        let repo = repo.to_owned();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {BUILD_COLUMNS} FROM builds WHERE repo = ?1 AND repo_state IN (?2, ?3, ?4) \
                 AND published_state IN (?5, ?6) ORDER BY id"
            );
            let mut stmt = conn.prepare_cached(&sql).context("listing unpublished builds")?;
            let states = params![
                repo,
                RepoState::Committing as i64,
                RepoState::Ready as i64,
                RepoState::Validating as i64,
                PublishedState::Unpublished as i64,
                PublishedState::Publishing as i64
            ];
            let rows = stmt.query_map(states, build_from_row).context("listing unpublished builds")?;
            rows.collect::<rusqlite::Result<Vec<_>>>().context("listing unpublished builds")
        })
        .await
    }

    async fn add_extra_ids(&self, build_id: i64, ids: &[String]) -> Result<Build, StateError> {
        let ids = ids.to_vec();
        self.write("adding extra ids", move |tx| {
            let mut build = load_build(tx, build_id)?;
            for id in ids {
                if !build.extra_ids.contains(&id) {
                    build.extra_ids.push(id);
                }
            }
            tx.execute(
                "UPDATE builds SET extra_ids = ?1 WHERE id = ?2",
                params![to_json(&build.extra_ids, "extra ids")?, build_id],
            )
            .context("adding extra ids")?;
            Ok(build)
        })
        .await
    }

    async fn upsert_build_ref(
        &self,
        build_id: i64,
        ref_name: &str,
        commit: &str,
        build_log_url: Option<&str>,
    ) -> Result<BuildRef, StateError> {
        let (ref_name, commit, build_log_url) =
            (ref_name.to_owned(), commit.to_owned(), build_log_url.map(str::to_owned));
        self.write("registering build ref", move |tx| {
            // Checked first so a missing build is NotFound rather than a foreign key failure.
            load_build(tx, build_id)?;
            tx.execute(
                r#"INSERT INTO build_refs (build_id, ref_name, "commit", build_log_url) VALUES (?1, ?2, ?3, ?4)
                   ON CONFLICT (build_id, ref_name) DO UPDATE SET "commit" = excluded."commit",
                   build_log_url = excluded.build_log_url"#,
                params![build_id, ref_name, commit, build_log_url],
            )
            .context("registering build ref")?;
            let sql = format!("SELECT {BUILD_REF_COLUMNS} FROM build_refs WHERE build_id = ?1 AND ref_name = ?2");
            tx.query_row(&sql, params![build_id, ref_name], build_ref_from_row).context("reading build ref")
        })
        .await
    }

    async fn get_build_ref(&self, build_id: i64, ref_id: i64) -> Result<BuildRef, StateError> {
        self.read(move |conn| {
            let sql = format!("SELECT {BUILD_REF_COLUMNS} FROM build_refs WHERE id = ?1 AND build_id = ?2");
            found(conn.query_row(&sql, [ref_id, build_id], build_ref_from_row).optional().context("reading build ref")?)
        })
        .await
    }

    async fn list_build_refs(&self, build_id: i64) -> Result<Vec<BuildRef>, StateError> {
        self.read(move |conn| {
            let sql = format!("SELECT {BUILD_REF_COLUMNS} FROM build_refs WHERE build_id = ?1 ORDER BY id");
            let mut stmt = conn.prepare_cached(&sql).context("listing build refs")?;
            let rows = stmt.query_map([build_id], build_ref_from_row).context("listing build refs")?;
            rows.collect::<rusqlite::Result<Vec<_>>>().context("listing build refs")
        })
        .await
    }

    async fn start_commit(&self, contents: &CommitContents) -> Result<Job, StateError> {
        let build_id = contents.build;
        let contents = to_json(contents, "commit contents")?;
        self.write("starting commit", move |tx| {
            let build = load_build(tx, build_id)?;
            build.check_can_commit()?;
            let job_id = insert_job(tx, JobKind::Commit, &contents, None)?;
            tx.execute(
                "UPDATE builds SET repo_state = ?1, commit_job_id = ?2 WHERE id = ?3",
                params![RepoState::Committing as i64, job_id, build_id],
            )
            .context("starting commit")?;
            load_job(tx, job_id)
        })
        .await
    }

    async fn start_publish(&self, contents: &PublishContents) -> Result<Job, StateError> {
        let build_id = contents.build;
        let contents = to_json(contents, "publish contents")?;
        self.write("starting publish", move |tx| {
            let build = load_build(tx, build_id)?;
            build.check_can_publish()?;
            let job_id = insert_job(tx, JobKind::Publish, &contents, Some(&build.repo))?;
            tx.execute(
                "UPDATE builds SET published_state = ?1, publish_job_id = ?2 WHERE id = ?3",
                params![PublishedState::Publishing as i64, job_id, build_id],
            )
            .context("starting publish")?;
            load_job(tx, job_id)
        })
        .await
    }

    async fn set_repo_state(
        &self,
        build_id: i64,
        from: &[RepoState],
        to: RepoState,
        reason: Option<&str>,
    ) -> Result<Build, StateError> {
        let (from, reason) = (from.to_vec(), reason.map(str::to_owned));
        self.write("setting repo state", move |tx| move_state(tx, build_id, &from, to, reason.as_deref())).await
    }

    async fn set_published_state(
        &self,
        build_id: i64,
        from: &[PublishedState],
        to: PublishedState,
        reason: Option<&str>,
    ) -> Result<Build, StateError> {
        let (from, reason) = (from.to_vec(), reason.map(str::to_owned));
        self.write("setting published state", move |tx| move_state(tx, build_id, &from, to, reason.as_deref())).await
    }

    async fn create_job(&self, kind: JobKind, contents: &str, repo: Option<&str>) -> Result<Job, StateError> {
        let (contents, repo) = (contents.to_owned(), repo.map(str::to_owned));
        self.write("creating job", move |tx| {
            let id = insert_job(tx, kind, &contents, repo.as_deref())?;
            load_job(tx, id)
        })
        .await
    }

    async fn get_job(&self, id: i64) -> Result<Job, StateError> {
        self.read(move |conn| load_job(conn, id)).await
    }

    async fn claim_job(&self, id: i64) -> Result<Option<Job>, StateError> {
        self.write("claiming job", move |tx| {
            let job = load_job(tx, id)?;
            if job.status != JobStatus::New {
                return Ok(None);
            }
            tx.execute("UPDATE jobs SET status = ?1 WHERE id = ?2", params![JobStatus::Started as i64, id])
                .context("claiming job")?;
            Ok(Some(Job { status: JobStatus::Started, ..job }))
        })
        .await
    }

    async fn append_job_log(&self, id: i64, text: &str) -> Result<(), StateError> {
        let text = text.to_owned();
        self.write("appending job log", move |tx| {
            // Concatenated by SQLite, so the log is never read back and rewritten whole.
            let changed = tx
                .execute("UPDATE jobs SET log = log || ?1 WHERE id = ?2", params![text, id])
                .context("appending job log")?;
            if changed == 0 {
                return Err(StateError::NotFound);
            }
            Ok(())
        })
        .await
    }

    /// Refuses (with [`StateError::Backend`]) a `status` that is not final and a job that is not
    /// started: either is a bug in the caller, and silently rewriting a finished job would lose its
    /// result.
    async fn finish_job(&self, id: i64, status: JobStatus, results: &str) -> Result<(), StateError> {
        if !status.is_finished() {
            return Err(StateError::Backend(format!("job {id} cannot finish as {}", status.as_str())));
        }
        let results = results.to_owned();
        self.write("finishing job", move |tx| {
            let job = load_job(tx, id)?;
            if job.status != JobStatus::Started {
                return Err(StateError::Backend(format!("job {id} is {}, not started", job.status.as_str())));
            }
            tx.execute("UPDATE jobs SET status = ?1, results = ?2 WHERE id = ?3", params![status as i64, results, id])
                .context("finishing job")?;
            Ok(())
        })
        .await
    }

    async fn unfinished_jobs(&self) -> Result<Vec<Job>, StateError> {
        self.read(|conn| {
            let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE status IN (?1, ?2) ORDER BY id");
            let mut stmt = conn.prepare_cached(&sql).context("listing unfinished jobs")?;
            let rows = stmt
                .query_map([JobStatus::New as i64, JobStatus::Started as i64], job_from_row)
                .context("listing unfinished jobs")?;
            rows.collect::<rusqlite::Result<Vec<_>>>().context("listing unfinished jobs")
        })
        .await
    }

    async fn requeue_job(&self, id: i64) -> Result<bool, StateError> {
        self.write("requeueing job", move |tx| {
            let job = load_job(tx, id)?;
            if job.status != JobStatus::Started {
                return Ok(false);
            }
            tx.execute("UPDATE jobs SET status = ?1 WHERE id = ?2", params![JobStatus::New as i64, id])
                .context("requeueing job")?;
            Ok(true)
        })
        .await
    }

    async fn use_token(&self, jti: &str, expires: i64) -> Result<(), StateError> {
        let jti = jti.to_owned();
        self.write("recording token use", move |tx| {
            let row: Option<(Option<String>, Option<String>)> = tx
                .query_row("SELECT expires, revoked_at FROM tokens WHERE token_id = ?1", [&jti], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
                .context("reading token")?;
            let claimed = naive_from_unix(expires);
            match row {
                Some((_, Some(_))) => return Err(StateError::Revoked),
                Some((Some(recorded), None)) if recorded != claimed => {
                    // The jti is meant to be unique; a token reusing one with another expiry is
                    // suspicious, but the first record stays authoritative.
                    tracing::warn!(token_id = %jti, %recorded, %claimed, "token used with a different expiry than recorded");
                }
                _ => {}
            }
            tx.execute(
                "INSERT INTO tokens (token_id, expires, last_used) VALUES (?1, ?2, ?3)
                 ON CONFLICT (token_id) DO UPDATE SET expires = COALESCE(tokens.expires, excluded.expires),
                 last_used = excluded.last_used",
                params![jti, claimed, naive_now()],
            )
            .context("recording token use")?;
            Ok(())
        })
        .await
    }

    async fn revoke_tokens(&self, ids: &[String]) -> Result<(), StateError> {
        let ids = ids.to_vec();
        self.write("revoking tokens", move |tx| {
            let now = naive_now();
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO tokens (token_id, revoked_at) VALUES (?1, ?2)
                     ON CONFLICT (token_id) DO UPDATE SET revoked_at = COALESCE(tokens.revoked_at, excluded.revoked_at)",
                )
                .context("revoking tokens")?;
            for id in &ids {
                stmt.execute(params![id, now]).context("revoking tokens")?;
            }
            Ok(())
        })
        .await
    }

    async fn get_tokens(&self, ids: &[String]) -> Result<Vec<TokenRecord>, StateError> {
        let ids = ids.to_vec();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT token_id, expires, last_used, revoked_at FROM tokens WHERE token_id = ?1")
                .context("reading tokens")?;
            let mut seen = HashSet::new();
            let mut records = Vec::new();
            for id in ids.iter().filter(|id| seen.insert(id.as_str())) {
                let record = stmt
                    .query_row([id], |row| {
                        Ok(TokenRecord {
                            token_id: row.get(0)?,
                            expires: row.get(1)?,
                            last_used: row.get(2)?,
                            revoked_at: row.get(3)?,
                        })
                    })
                    .optional()
                    .context("reading tokens")?;
                records.extend(record);
            }
            Ok(records)
        })
        .await
    }

    async fn repo_refs(&self, repo: &str) -> Result<Vec<RefRecord>, StateError> {
        let (repo, cache) = (repo.to_owned(), Arc::clone(&self.refs_cache));
        self.read(move |conn| {
            let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
            let version = data_version(conn)?;
            if let Some(records) = cache.get(&repo, version) {
                return Ok(records);
            }
            let mut stmt = conn
                .prepare_cached("SELECT record FROM repo_refs WHERE repo = ?1 ORDER BY ref_name")
                .context("reading repo refs")?;
            let rows = stmt.query_map([&repo], |row| json_column::<RefRecord>(row, 0)).context("reading repo refs")?;
            let records = rows.collect::<rusqlite::Result<Vec<_>>>().context(&format!("reading refs of {repo}"))?;
            cache.fill(&repo, version, records.clone());
            Ok(records)
        })
        .await
    }

    async fn put_repo_refs(&self, repo: &str, records: &[RefRecord]) -> Result<(), StateError> {
        let (repo, cache, records) = (repo.to_owned(), Arc::clone(&self.refs_cache), records.to_vec());
        let encoded = records
            .iter()
            .map(|record| Ok((record.name.clone(), to_json(record, "ref record")?)))
            .collect::<Result<Vec<_>, StateError>>()?;
        self.with_conn(move |conn| {
            let what = "storing repo refs";
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).context(what)?;
            // With the write lock held no other connection commits before this transaction does.
            let version = data_version(&tx)?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO repo_refs (repo, ref_name, record) VALUES (?1, ?2, ?3)
                         ON CONFLICT (repo, ref_name) DO UPDATE SET record = excluded.record",
                    )
                    .context(what)?;
                for (name, record) in &encoded {
                    stmt.execute(params![repo, name, record]).context(&format!("storing ref {name} of {repo}"))?;
                }
            }
            tx.commit().context(what)?;
            cache.lock().unwrap_or_else(PoisonError::into_inner).merge(&repo, version, &records);
            Ok(())
        })
        .await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl_secs: u64) -> Result<bool, StateError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write("acquiring lease", move |tx| {
            let now = now_unix();
            let expires_at = now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX));
            // The conflict branch only updates when the lease is ours or has expired; otherwise no
            // row changes and the caller does not get it.
            let changed = tx
                .execute(
                    "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                     WHERE leases.holder = excluded.holder OR leases.expires_at < ?4",
                    params![name, holder, expires_at, now],
                )
                .context("acquiring lease")?;
            Ok(changed == 1)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StateError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write("releasing lease", move |tx| {
            tx.execute("DELETE FROM leases WHERE name = ?1 AND holder = ?2", params![name, holder])
                .context("releasing lease")?;
            Ok(())
        })
        .await
    }
}
