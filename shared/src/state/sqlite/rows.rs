//! Mapping rows to domain types, and the reads and conditional writes transactions share.

use super::*;
use crate::domain::build::BuildStateMachine;

pub(super) fn enum_column<T>(row: &Row<'_>, index: usize, parse: fn(i64) -> Option<T>) -> rusqlite::Result<T> {
    let value: i64 = row.get(index)?;
    parse(value).ok_or_else(|| {
        let name = row.as_ref().column_name(index).unwrap_or("?").to_owned();
        rusqlite::Error::FromSqlConversionFailure(index, Type::Integer, format!("invalid {name} {value}").into())
    })
}

/// Reads a JSON text column.
pub(super) fn json_column<T: DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    // Parsed from SQLite's own buffer, without copying the text first.
    let text = row.get_ref(index)?.as_str()?;
    serde_json::from_str(text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e)))
}

pub(super) fn build_from_row(row: &Row<'_>) -> rusqlite::Result<Build> {
    Ok(Build {
        id: row.get(0)?,
        created: row.get(1)?,
        repo_state: enum_column(row, 2, RepoState::from_i64)?,
        repo_state_reason: row.get(3)?,
        published_state: enum_column(row, 4, PublishedState::from_i64)?,
        published_state_reason: row.get(5)?,
        commit_job_id: row.get(6)?,
        publish_job_id: row.get(7)?,
        repo: row.get(8)?,
        extra_ids: json_column(row, 9)?,
        app_id: row.get(10)?,
        public_download: row.get(11)?,
        build_log_url: row.get(12)?,
        token_name: row.get(13)?,
        token_type: row.get(14)?,
    })
}

pub(super) fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let start_after: Option<String> = row.get(6)?;
    Ok(Job {
        id: row.get(0)?,
        kind: enum_column(row, 1, JobKind::from_i64)?,
        status: enum_column(row, 2, JobStatus::from_i64)?,
        contents: row.get(3)?,
        results: row.get(4)?,
        log: row.get(5)?,
        start_after: match start_after {
            Some(_) => Some(json_column(row, 6)?),
            None => None,
        },
        repo: row.get(7)?,
    })
}

pub(super) fn build_ref_from_row(row: &Row<'_>) -> rusqlite::Result<BuildRef> {
    Ok(BuildRef {
        id: row.get(0)?,
        build_id: row.get(1)?,
        ref_name: row.get(2)?,
        commit: row.get(3)?,
        build_log_url: row.get(4)?,
    })
}

pub(super) fn load_build(conn: &Connection, id: i64) -> Result<Build, StateError> {
    let sql = format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = ?1");
    found(conn.query_row(&sql, [id], build_from_row).optional().context(&format!("reading build {id}"))?)
}

pub(super) fn load_job(conn: &Connection, id: i64) -> Result<Job, StateError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1");
    found(conn.query_row(&sql, [id], job_from_row).optional().context(&format!("reading job {id}"))?)
}

/// Queues a new job and returns its id.
pub(super) fn insert_job(
    conn: &Connection,
    kind: JobKind,
    contents: &str,
    repo: Option<&str>,
) -> Result<i64, StateError> {
    conn.execute(
        "INSERT INTO jobs (kind, status, contents, results, log, start_after, repo) VALUES (?1, ?2, ?3, NULL, '', NULL, ?4)",
        params![kind as i64, JobStatus::New as i64, contents, repo],
    )
    .context("queueing job")?;
    Ok(conn.last_insert_rowid())
}

pub(super) fn move_state<S: BuildStateMachine>(
    tx: &Transaction<'_>,
    build_id: i64,
    from: &[S],
    to: S,
    reason: Option<&str>,
) -> Result<Build, StateError> {
    let build = load_build(tx, build_id)?;
    let current = S::of(&build);
    if !from.contains(&current) {
        return Err(StateError::WrongState(S::unexpected(current, from)));
    }
    let sql = format!("UPDATE builds SET {} = ?1, {} = ?2 WHERE id = ?3", S::FIELD, S::REASON_FIELD);
    tx.execute(&sql, params![to.value(), reason, build_id]).context(&format!("updating build {build_id}"))?;
    load_build(tx, build_id)
}
