//! Tests of the SQLite backend: the conformance suite on a real file, persistence, migrations,
//! corrupt rows and cross-connection races.

use super::*;
use crate::state::conformance;

fn state() -> (tempfile::TempDir, SqliteState) {
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteState::open(&dir.path().join("state.sqlite")).unwrap();
    (dir, state)
}

fn new_build() -> NewBuild {
    conformance::new_build("stable", Some("org.example.App"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_state_store_conformance_suite() {
    let (_dir, state) = state();
    conformance::run_all(Arc::new(state)).await;
}

#[tokio::test]
async fn reopening_the_file_keeps_the_data_and_the_schema_version() {
    let (dir, state) = state();
    let path = state.path().to_owned();
    let build = state.create_build(new_build()).await.unwrap();
    let job = state.start_commit(&commit_contents_for(build.id)).await.unwrap();
    state.append_job_log(job.id, "kept\n").await.unwrap();
    drop(state);

    let reopened = SqliteState::open(&path).unwrap();
    let build = reopened.get_build(build.id).await.unwrap();
    assert_eq!((build.repo_state, build.commit_job_id), (RepoState::Committing, Some(job.id)));
    assert_eq!(reopened.get_job(job.id).await.unwrap().log, "kept\n");
    let conn = Connection::open(dir.path().join("state.sqlite")).unwrap();
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    let mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

/// Two connections to one file stand for two processes (API server and worker): the
/// transactions, not the in-process mutex, must keep them from both winning.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_connections_to_one_file_still_have_one_winner() {
    let (_dir, first) = state();
    let second = SqliteState::open(first.path()).unwrap();
    for _ in 0..20 {
        let build = first.create_build(new_build()).await.unwrap();
        let contents = commit_contents_for(build.id);
        let (a, b) = tokio::join!(first.start_commit(&contents), second.start_commit(&contents));
        let (job, refused) = match (a, b) {
            (Ok(job), refused) | (refused, Ok(job)) => (job, refused),
            other => panic!("no commit started: {other:?}"),
        };
        assert!(matches!(refused, Err(StateError::WrongState(_))), "the other is refused: {refused:?}");
        let (a, b) = tokio::join!(first.claim_job(job.id), second.claim_job(job.id));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a.is_some() != b.is_some(), "exactly one claim wins: {a:?} {b:?}");
    }
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let err = SqliteState::open(&path).unwrap_err();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let (_dir, state) = state();
    let build = state.create_build(new_build()).await.unwrap();
    let id = build.id;
    state
        .with_conn(move |conn| {
            conn.execute("UPDATE builds SET repo_state = 42, extra_ids = 'nope' WHERE id = ?1", [id])
                .context("corrupting")
        })
        .await
        .unwrap();
    let err = state.get_build(id).await.unwrap_err();
    assert!(matches!(&err, StateError::Backend(message) if message.contains("invalid repo_state 42")), "{err}");
    assert!(matches!(state.list_builds(Some("org.example.App")).await, Err(StateError::Backend(_))));
    assert!(matches!(state.start_commit(&commit_contents_for(id)).await, Err(StateError::Backend(_))));
}

#[tokio::test]
async fn finishing_a_job_that_is_not_started_is_refused() {
    let (_dir, state) = state();
    let build = state.create_build(new_build()).await.unwrap();
    let job = state.start_commit(&commit_contents_for(build.id)).await.unwrap();
    assert!(matches!(state.finish_job(job.id, JobStatus::Ended, "{}").await, Err(StateError::Backend(_))));
    state.claim_job(job.id).await.unwrap().unwrap();
    assert!(matches!(state.finish_job(job.id, JobStatus::New, "{}").await, Err(StateError::Backend(_))));
    state.finish_job(job.id, JobStatus::Ended, "{}").await.unwrap();
    assert!(matches!(state.finish_job(job.id, JobStatus::Broken, "{}").await, Err(StateError::Backend(_))));
    assert_eq!(state.get_job(job.id).await.unwrap().status, JobStatus::Ended);
}

fn commit_contents_for(build: i64) -> CommitContents {
    CommitContents { build, endoflife: None, endoflife_rebase: None, token_type: None }
}

/// Ref records are kept decoded between reads; a second process sharing the file sees what this
/// one wrote, and this one sees what the other wrote, at once.
#[tokio::test]
async fn ref_records_read_back_follow_writes_of_every_connection() {
    let (_dir, one) = state();
    let other = SqliteState::open(one.path()).unwrap();
    let record = |name: &str, commit: &[u8]| RefRecord {
        name: name.into(),
        commit: crate::repo::Checksum::of(commit),
        commit_size: 1,
        timestamp: 2,
        flatpak: None,
    };
    one.put_repo_refs("stable", &[record("app/b", b"1")]).await.unwrap();
    assert_eq!(one.repo_refs("stable").await.unwrap(), [record("app/b", b"1")]);
    one.put_repo_refs("stable", &[record("app/a", b"1"), record("app/b", b"2")]).await.unwrap();
    assert_eq!(one.repo_refs("stable").await.unwrap(), [record("app/a", b"1"), record("app/b", b"2")]);

    other.put_repo_refs("stable", &[record("app/c", b"3"), record("app/a", b"3")]).await.unwrap();
    let expected = [record("app/a", b"3"), record("app/b", b"2"), record("app/c", b"3")];
    assert_eq!(one.repo_refs("stable").await.unwrap(), expected);
    one.put_repo_refs("stable", &[record("app/d", b"4")]).await.unwrap();
    assert_eq!(other.repo_refs("stable").await.unwrap().len(), 4);
    assert_eq!(one.repo_refs("stable").await.unwrap().len(), 4);
    assert!(one.repo_refs("beta").await.unwrap().is_empty());
}
