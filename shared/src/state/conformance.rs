//! Behaviours every StateStore must have, one `pub async fn` each, run against every backend.
//! The functions share one store: each creates its own builds and jobs and uses its own app ids,
//! repositories, token ids and lease names, and asserts only about what it created.

use std::sync::Arc;
use std::time::Duration;

use super::{naive_from_unix, StateError, StateStore};
use crate::domain::build::{NewBuild, PublishedState, RepoState, StateKind, WrongState};
use crate::domain::job::{CommitContents, JobKind, JobStatus, PublishContents};
use crate::repo::record::{FlatpakData, RefRecord};
use crate::repo::Checksum;

/// Runs every behaviour below against `store`.
pub async fn run_all(store: Arc<dyn StateStore>) {
    builds_start_uploading_and_unpublished(&*store).await;
    list_builds_filters_by_app_id_and_skips_purged(&*store).await;
    extra_ids_are_appended_once_in_order(&*store).await;
    build_ref_upserts_keep_their_id(&*store).await;
    commits_start_only_from_uploading(&*store).await;
    publishes_need_an_unpublished_ready_build(&*store).await;
    state_moves_are_conditional(&*store).await;
    racing_commits_create_one_job(store.clone()).await;
    claim_job_has_one_winner_under_contention(store.clone()).await;
    job_logs_append_and_read_from_byte_offsets(&*store).await;
    jobs_finish_requeue_and_list_unfinished(&*store).await;
    tokens_record_use_and_revocation(&*store).await;
    repo_ref_records_are_upserted(&*store).await;
    leases_are_exclusive_until_they_expire(&*store).await;
    standalone_jobs_are_queued_for_their_repo(&*store).await;
    unpublished_builds_are_the_committed_ones_not_yet_published(&*store).await;
}

pub async fn unpublished_builds_are_the_committed_ones_not_yet_published(store: &dyn StateStore) {
    let repo = "unpublished-repo";
    let uploading = store.create_build(new_build(repo, None)).await.unwrap();
    let ready = store.create_build(new_build(repo, None)).await.unwrap();
    let published = store.create_build(new_build(repo, None)).await.unwrap();
    let elsewhere = store.create_build(new_build("other-unpublished-repo", None)).await.unwrap();
    for build in [&ready, &published, &elsewhere] {
        store.set_repo_state(build.id, &[RepoState::Uploading], RepoState::Ready, None).await.unwrap();
    }
    store
        .set_published_state(published.id, &[PublishedState::Unpublished], PublishedState::Published, None)
        .await
        .unwrap();
    let ids: Vec<i64> = store.unpublished_builds(repo).await.unwrap().iter().map(|b| b.id).collect();
    assert_eq!(ids, [ready.id]);
    assert!(!ids.contains(&uploading.id));
}

pub async fn standalone_jobs_are_queued_for_their_repo(store: &dyn StateStore) {
    let job = store.create_job(JobKind::Prune, "{}", Some("stable")).await.unwrap();
    assert_eq!(
        (job.kind, job.status, job.repo.as_deref(), job.contents.as_str()),
        (JobKind::Prune, JobStatus::New, Some("stable"), "{}")
    );
    assert_eq!(store.get_job(job.id).await.unwrap(), job);
    assert!(store.unfinished_jobs().await.unwrap().iter().any(|j| j.id == job.id));
}

/// A build of `repo` (and `app_id`) as a client would create it.
pub fn new_build(repo: &str, app_id: Option<&str>) -> NewBuild {
    NewBuild {
        repo: repo.to_owned(),
        app_id: app_id.map(str::to_owned),
        public_download: true,
        build_log_url: None,
        token_name: None,
        token_type: None,
    }
}

fn commit_of(build: i64) -> CommitContents {
    CommitContents { build, endoflife: None, endoflife_rebase: None, token_type: None }
}

/// The refusal inside `result`, panicking with what came instead.
fn wrong_state<T: std::fmt::Debug>(result: Result<T, StateError>) -> WrongState {
    match result {
        Err(StateError::WrongState(wrong)) => wrong,
        other => panic!("expected WrongState, got {other:?}"),
    }
}

pub async fn builds_start_uploading_and_unpublished(store: &dyn StateStore) {
    let new = NewBuild {
        repo: "stable".into(),
        app_id: Some("org.conformance.Create".into()),
        public_download: false,
        build_log_url: Some("https://ci.example/1".into()),
        token_name: Some("ci".into()),
        token_type: Some("app".into()),
    };
    let build = store.create_build(new).await.unwrap();
    assert_eq!((build.repo_state, build.published_state), (RepoState::Uploading, PublishedState::Unpublished));
    assert_eq!((build.repo_state_reason.as_deref(), build.published_state_reason.as_deref()), (None, None));
    assert_eq!((build.commit_job_id, build.publish_job_id), (None, None));
    assert!(build.extra_ids.is_empty());
    assert_eq!((build.repo.as_str(), build.app_id.as_deref()), ("stable", Some("org.conformance.Create")));
    assert!(!build.public_download);
    assert_eq!(build.build_log_url.as_deref(), Some("https://ci.example/1"));
    assert_eq!((build.token_name.as_deref(), build.token_type.as_deref()), (Some("ci"), Some("app")));
    assert!(
        chrono::NaiveDateTime::parse_from_str(&build.created, "%Y-%m-%dT%H:%M:%S%.6f").is_ok(),
        "{}",
        build.created
    );
    assert_eq!(store.get_build(build.id).await.unwrap(), build);

    let next = store.create_build(new_build("stable", None)).await.unwrap();
    assert!(next.id > build.id, "ids increase");
    assert!(matches!(store.get_build(-1).await, Err(StateError::NotFound)));
}

pub async fn list_builds_filters_by_app_id_and_skips_purged(store: &dyn StateStore) {
    let app = "org.conformance.List";
    let first = store.create_build(new_build("stable", Some(app))).await.unwrap();
    let other = store.create_build(new_build("stable", Some("org.conformance.ListOther"))).await.unwrap();
    let purged = store.create_build(new_build("stable", Some(app))).await.unwrap();
    let second = store.create_build(new_build("stable", Some(app))).await.unwrap();
    let anonymous = store.create_build(new_build("stable", None)).await.unwrap();
    let anonymous_purged = store.create_build(new_build("stable", None)).await.unwrap();
    for id in [purged.id, anonymous_purged.id] {
        store.set_repo_state(id, &[RepoState::Uploading], RepoState::Purged, None).await.unwrap();
    }
    // Purging (not yet purged) builds are still listed.
    store.set_repo_state(second.id, &[RepoState::Uploading], RepoState::Purging, None).await.unwrap();

    let listed: Vec<i64> = store.list_builds(Some(app)).await.unwrap().iter().map(|b| b.id).collect();
    assert_eq!(listed, [first.id, second.id]);
    let without_app: Vec<i64> = store.list_builds(None).await.unwrap().iter().map(|b| b.id).collect();
    assert!(without_app.contains(&anonymous.id));
    assert!(!without_app.contains(&anonymous_purged.id));
    assert!(!without_app.iter().any(|id| [first.id, other.id, second.id].contains(id)));
    assert!(without_app.windows(2).all(|w| w[0] < w[1]), "ordered by id");
    assert!(store.list_builds(Some("org.conformance.Nobody")).await.unwrap().is_empty());
}

pub async fn extra_ids_are_appended_once_in_order(store: &dyn StateStore) {
    let build = store.create_build(new_build("stable", Some("org.conformance.Extra"))).await.unwrap();
    let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let updated = store.add_extra_ids(build.id, &ids(&["b.Locale", "a.Debug"])).await.unwrap();
    assert_eq!(updated.extra_ids, ids(&["b.Locale", "a.Debug"]));
    let updated = store.add_extra_ids(build.id, &ids(&["a.Debug", "c.Sources", "c.Sources"])).await.unwrap();
    assert_eq!(updated.extra_ids, ids(&["b.Locale", "a.Debug", "c.Sources"]));
    assert_eq!(store.get_build(build.id).await.unwrap().extra_ids, updated.extra_ids);
    assert!(matches!(store.add_extra_ids(-1, &ids(&["x"])).await, Err(StateError::NotFound)));
}

pub async fn build_ref_upserts_keep_their_id(store: &dyn StateStore) {
    let build = store.create_build(new_build("stable", None)).await.unwrap();
    let other = store.create_build(new_build("stable", None)).await.unwrap();
    let app = "app/org.conformance.Refs/x86_64/stable";
    let first = store.upsert_build_ref(build.id, app, "aaaa", Some("https://log/1")).await.unwrap();
    assert_eq!((first.build_id, first.ref_name.as_str(), first.commit.as_str()), (build.id, app, "aaaa"));
    let runtime = store.upsert_build_ref(build.id, "runtime/org.conformance.Refs.Debug/x86_64/stable", "bbbb", None);
    let runtime = runtime.await.unwrap();
    let replaced = store.upsert_build_ref(build.id, app, "cccc", None).await.unwrap();
    assert_eq!(replaced.id, first.id, "an upsert keeps the row");
    assert_eq!((replaced.commit.as_str(), replaced.build_log_url.as_deref()), ("cccc", None));
    assert_eq!(store.get_build_ref(build.id, first.id).await.unwrap(), replaced);
    assert_eq!(store.list_build_refs(build.id).await.unwrap(), [replaced.clone(), runtime]);

    // The same ref in another build is another row.
    let elsewhere = store.upsert_build_ref(other.id, app, "dddd", None).await.unwrap();
    assert_ne!(elsewhere.id, first.id);
    assert!(matches!(store.get_build_ref(other.id, first.id).await, Err(StateError::NotFound)));
    assert!(matches!(store.get_build_ref(build.id, -1).await, Err(StateError::NotFound)));
    assert!(matches!(store.upsert_build_ref(-1, app, "eeee", None).await, Err(StateError::NotFound)));
    assert_eq!(store.list_build_refs(other.id).await.unwrap(), [elsewhere]);
}

pub async fn commits_start_only_from_uploading(store: &dyn StateStore) {
    let build = store.create_build(new_build("stable", None)).await.unwrap();
    let contents = CommitContents {
        build: build.id,
        endoflife: Some("gone".into()),
        endoflife_rebase: Some("org.new.App".into()),
        token_type: Some(1),
    };
    let job = store.start_commit(&contents).await.unwrap();
    assert_eq!((job.kind, job.status), (JobKind::Commit, JobStatus::New));
    assert_eq!(serde_json::from_str::<CommitContents>(&job.contents).unwrap(), contents);
    assert_eq!((job.results.as_deref(), job.log.as_str(), job.repo.as_deref()), (None, "", None));
    assert_eq!(store.get_job(job.id).await.unwrap(), job);
    let committing = store.get_build(build.id).await.unwrap();
    assert_eq!((committing.repo_state, committing.commit_job_id), (RepoState::Committing, Some(job.id)));

    let again = wrong_state(store.start_commit(&contents).await);
    assert_eq!(again.kind, StateKind::Repo);
    assert_eq!((again.current, again.expected), ("committing", "uploading"));
    assert_eq!(again.message, "Build is currently being committed");
    assert_eq!(store.get_build(build.id).await.unwrap().commit_job_id, Some(job.id), "a refusal changes nothing");

    store.set_repo_state(build.id, &[RepoState::Committing], RepoState::Failed, Some("bad upload")).await.unwrap();
    let failed = wrong_state(store.start_commit(&contents).await);
    assert_eq!((failed.current, failed.message.as_str()), ("failed", "Commit already failed: bad upload"));
    assert!(matches!(store.start_commit(&commit_of(-1)).await, Err(StateError::NotFound)));
}

pub async fn publishes_need_an_unpublished_ready_build(store: &dyn StateStore) {
    let publish = |build| PublishContents { build };
    let uploading = store.create_build(new_build("beta", None)).await.unwrap();
    let refused = wrong_state(store.start_publish(&publish(uploading.id)).await);
    assert_eq!((refused.kind, refused.current, refused.expected), (StateKind::Repo, "uploading", "ready"));
    assert_eq!(refused.message, "Build is not committed");

    // The published state is checked before the repo state.
    store
        .set_published_state(uploading.id, &[PublishedState::Unpublished], PublishedState::Published, None)
        .await
        .unwrap();
    let refused = wrong_state(store.start_publish(&publish(uploading.id)).await);
    assert_eq!((refused.kind, refused.current, refused.expected), (StateKind::Published, "published", "unpublished"));
    assert_eq!(refused.message, "Build has already been published");

    let build = store.create_build(new_build("beta", None)).await.unwrap();
    store.set_repo_state(build.id, &[RepoState::Uploading], RepoState::Ready, None).await.unwrap();
    let job = store.start_publish(&publish(build.id)).await.unwrap();
    assert_eq!((job.kind, job.status, job.repo.as_deref()), (JobKind::Publish, JobStatus::New, Some("beta")));
    assert_eq!(serde_json::from_str::<PublishContents>(&job.contents).unwrap(), publish(build.id));
    let publishing = store.get_build(build.id).await.unwrap();
    assert_eq!((publishing.published_state, publishing.publish_job_id), (PublishedState::Publishing, Some(job.id)));
    assert_eq!(publishing.repo_state, RepoState::Ready);

    let again = wrong_state(store.start_publish(&publish(build.id)).await);
    assert_eq!((again.kind, again.current, again.expected), (StateKind::Published, "publishing", "unpublished"));
    assert_eq!(again.message, "Build is currently being published");
    assert!(matches!(store.start_publish(&publish(-1)).await, Err(StateError::NotFound)));
}

/// Moves happen only from one of the given states; refusals name the current state, the first
/// expected one, and say `Unexpected state <current>, expected one of <a>, <b>`.
pub async fn state_moves_are_conditional(store: &dyn StateStore) {
    let build = store.create_build(new_build("stable", None)).await.unwrap();
    let moved = store.set_repo_state(build.id, &[RepoState::Uploading], RepoState::Committing, None).await.unwrap();
    assert_eq!(moved.repo_state, RepoState::Committing);

    let refused =
        store.set_repo_state(build.id, &[RepoState::Uploading, RepoState::Validating], RepoState::Ready, None).await;
    let refused = wrong_state(refused);
    assert_eq!((refused.kind, refused.current, refused.expected), (StateKind::Repo, "committing", "uploading"));
    assert_eq!(refused.message, "Unexpected state committing, expected one of uploading, validating");
    assert_eq!(store.get_build(build.id).await.unwrap().repo_state, RepoState::Committing);

    let failed = store
        .set_repo_state(build.id, &[RepoState::Validating, RepoState::Committing], RepoState::Failed, Some("boom"))
        .await
        .unwrap();
    assert_eq!((failed.repo_state, failed.repo_state_reason.as_deref()), (RepoState::Failed, Some("boom")));
    let purging = store.set_repo_state(build.id, &[RepoState::Failed], RepoState::Purging, None).await.unwrap();
    assert_eq!((purging.repo_state, purging.repo_state_reason), (RepoState::Purging, None), "no reason clears it");

    let published = store
        .set_published_state(build.id, &[PublishedState::Unpublished], PublishedState::Failed, Some("no space"))
        .await
        .unwrap();
    assert_eq!(
        (published.published_state, published.published_state_reason.as_deref()),
        (PublishedState::Failed, Some("no space"))
    );
    assert_eq!(published.repo_state, RepoState::Purging, "the other machine is untouched");
    let refused = wrong_state(
        store.set_published_state(build.id, &[PublishedState::Publishing], PublishedState::Published, None).await,
    );
    assert_eq!((refused.kind, refused.current, refused.expected), (StateKind::Published, "failed", "publishing"));
    assert_eq!(refused.message, "Unexpected state failed, expected one of publishing");

    let missing = store.set_repo_state(-1, &[RepoState::Uploading], RepoState::Ready, None).await;
    assert!(matches!(missing, Err(StateError::NotFound)));
    let missing = store.set_published_state(-1, &[PublishedState::Unpublished], PublishedState::Published, None).await;
    assert!(matches!(missing, Err(StateError::NotFound)));
}

/// Concurrent commit requests for one build: exactly one gets a job, the others are refused.
pub async fn racing_commits_create_one_job(store: Arc<dyn StateStore>) {
    let build = store.create_build(new_build("stable", None)).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.start_commit(&commit_of(build.id)).await })
        })
        .collect();
    let (mut jobs, mut refusals) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(job) => jobs.push(job),
            Err(StateError::WrongState(wrong)) => {
                assert_eq!(
                    (wrong.current, wrong.message.as_str()),
                    ("committing", "Build is currently being committed")
                );
                refusals += 1;
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!((jobs.len(), refusals), (1, 7), "exactly one commit must start");
    assert_eq!(store.get_build(build.id).await.unwrap().commit_job_id, Some(jobs[0].id));
    let queued = store.unfinished_jobs().await.unwrap();
    let for_build = queued
        .iter()
        .filter(|job| job.kind == JobKind::Commit)
        .filter(|job| serde_json::from_str::<CommitContents>(&job.contents).is_ok_and(|c| c.build == build.id))
        .count();
    assert_eq!(for_build, 1, "exactly one job was created");
}

/// Many workers claim one queued job: exactly one gets it.
pub async fn claim_job_has_one_winner_under_contention(store: Arc<dyn StateStore>) {
    let build = store.create_build(new_build("stable", None)).await.unwrap();
    let job = store.start_commit(&commit_of(build.id)).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_job(job.id).await.unwrap() })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap());
    }
    assert_eq!(claimed.len(), 1, "exactly one worker must claim the job");
    assert_eq!((claimed[0].id, claimed[0].status), (job.id, JobStatus::Started));
    assert_eq!(store.get_job(job.id).await.unwrap().status, JobStatus::Started);
    assert!(store.claim_job(job.id).await.unwrap().is_none());
    assert!(matches!(store.claim_job(-1).await, Err(StateError::NotFound)));
}

/// Log offsets are bytes: a client polling from the length it has seen gets exactly what was
/// appended since, multi-byte characters included.
pub async fn job_logs_append_and_read_from_byte_offsets(store: &dyn StateStore) {
    let build = store.create_build(new_build("stable", None)).await.unwrap();
    let job = store.start_commit(&commit_of(build.id)).await.unwrap();
    let mut seen = 0;
    let mut whole = String::new();
    for chunk in ["Importing…\n", "", "ünïcødé ✓ 🚀\n", "done\n"] {
        store.append_job_log(job.id, chunk).await.unwrap();
        whole.push_str(chunk);
        let log = store.get_job(job.id).await.unwrap();
        assert_eq!(log.log_from(seen), chunk);
        seen = log.log.len();
    }
    assert_eq!(store.get_job(job.id).await.unwrap().log, whole);
    assert_eq!(seen, whole.len());
    assert!(matches!(store.append_job_log(-1, "x").await, Err(StateError::NotFound)));
}

pub async fn jobs_finish_requeue_and_list_unfinished(store: &dyn StateStore) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        let build = store.create_build(new_build("stable", None)).await.unwrap();
        ids.push(store.start_commit(&commit_of(build.id)).await.unwrap().id);
    }
    let (ended, crashed, queued) = (ids[0], ids[1], ids[2]);
    store.claim_job(ended).await.unwrap().unwrap();
    store.claim_job(crashed).await.unwrap().unwrap();
    store.finish_job(ended, JobStatus::Ended, r#"{"ok":true}"#).await.unwrap();
    let job = store.get_job(ended).await.unwrap();
    assert_eq!((job.status, job.results.as_deref()), (JobStatus::Ended, Some(r#"{"ok":true}"#)));

    let unfinished = store.unfinished_jobs().await.unwrap();
    assert!(unfinished.windows(2).all(|w| w[0].id < w[1].id), "ordered by id");
    assert!(unfinished.iter().all(|job| !job.status.is_finished()));
    let ours: Vec<(i64, JobStatus)> =
        unfinished.iter().filter(|job| ids.contains(&job.id)).map(|job| (job.id, job.status)).collect();
    assert_eq!(ours, [(crashed, JobStatus::Started), (queued, JobStatus::New)]);

    assert!(store.requeue_job(crashed).await.unwrap());
    assert!(!store.requeue_job(crashed).await.unwrap(), "already queued");
    assert!(!store.requeue_job(ended).await.unwrap(), "finished jobs stay finished");
    assert_eq!(store.get_job(crashed).await.unwrap().status, JobStatus::New);
    assert!(store.claim_job(crashed).await.unwrap().is_some(), "a requeued job can be claimed again");
    store.finish_job(crashed, JobStatus::Broken, r#"{"error-message":"boom"}"#).await.unwrap();
    let broken = store.get_job(crashed).await.unwrap();
    assert_eq!((broken.status, broken.results.as_deref()), (JobStatus::Broken, Some(r#"{"error-message":"boom"}"#)));
    let unfinished = store.unfinished_jobs().await.unwrap();
    assert!(!unfinished.iter().any(|job| job.id == ended || job.id == crashed));
    assert!(unfinished.iter().any(|job| job.id == queued));
    assert!(matches!(store.get_job(-1).await, Err(StateError::NotFound)));
}

pub async fn tokens_record_use_and_revocation(store: &dyn StateStore) {
    let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    store.use_token("conformance-used", 2_000_000_000).await.unwrap();
    let records = store.get_tokens(&ids(&["conformance-used", "conformance-unknown"])).await.unwrap();
    assert_eq!(records.len(), 1, "only known tokens are returned");
    let used = &records[0];
    assert_eq!(used.token_id, "conformance-used");
    assert_eq!(used.expires.as_deref(), Some(naive_from_unix(2_000_000_000).as_str()));
    assert!(used.last_used.is_some() && used.revoked_at.is_none());

    // A second use keeps the recorded expiry and moves last_used on.
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.use_token("conformance-used", 2_000_000_100).await.unwrap();
    let again = store.get_tokens(&ids(&["conformance-used"])).await.unwrap().remove(0);
    assert_eq!(again.expires, used.expires);
    assert!(again.last_used > used.last_used, "{:?} after {:?}", again.last_used, used.last_used);

    store.revoke_tokens(&ids(&["conformance-used", "conformance-never-used"])).await.unwrap();
    let revoked = store.get_tokens(&ids(&["conformance-never-used", "conformance-used"])).await.unwrap();
    assert_eq!(revoked.len(), 2);
    assert!(revoked.iter().all(|t| t.revoked_at.is_some()));
    let never_used = revoked.iter().find(|t| t.token_id == "conformance-never-used").unwrap();
    assert_eq!((never_used.expires.as_deref(), never_used.last_used.as_deref()), (None, None));
    for id in ["conformance-used", "conformance-never-used"] {
        assert!(matches!(store.use_token(id, 2_000_000_000).await, Err(StateError::Revoked)), "{id}");
    }

    tokio::time::sleep(Duration::from_millis(5)).await;
    store.revoke_tokens(&ids(&["conformance-used"])).await.unwrap();
    let still = store.get_tokens(&ids(&["conformance-used"])).await.unwrap().remove(0);
    let first = revoked.iter().find(|t| t.token_id == "conformance-used").unwrap();
    assert_eq!(still.revoked_at, first.revoked_at, "the first revocation time is kept");
    assert!(store.get_tokens(&[]).await.unwrap().is_empty());
}

fn ref_record(name: &str, commit: &[u8], flatpak: bool) -> RefRecord {
    RefRecord {
        name: name.to_owned(),
        commit: Checksum::of(commit),
        commit_size: commit.len() as u64 * 100,
        timestamp: 1_700_000_000,
        flatpak: flatpak.then(|| FlatpakData {
            installed_size: 1000,
            download_size: 300,
            metadata: "[Application]\nname=org.conformance.App\n".into(),
            subsets: vec!["flathub".into()],
            end_of_life: None,
            end_of_life_rebase: Some("org.conformance.New".into()),
            token_type: Some(1),
            extra_data: Some((1, 50)),
            ..Default::default()
        }),
    }
}

pub async fn repo_ref_records_are_upserted(store: &dyn StateStore) {
    let (repo, other) = ("conformance-refs", "conformance-refs-other");
    assert!(store.repo_refs(repo).await.unwrap().is_empty());
    let runtime = ref_record("runtime/org.conformance.Sdk/x86_64/stable", b"r1", true);
    let app = ref_record("app/org.conformance.App/x86_64/stable", b"a1", true);
    let appstream = ref_record("appstream2/x86_64", b"s1", false);
    store.put_repo_refs(repo, &[runtime.clone(), app.clone()]).await.unwrap();
    store.put_repo_refs(other, std::slice::from_ref(&appstream)).await.unwrap();
    assert_eq!(store.repo_refs(repo).await.unwrap(), [app.clone(), runtime.clone()], "ordered by ref name");

    let app2 = ref_record("app/org.conformance.App/x86_64/stable", b"a2", false);
    store.put_repo_refs(repo, &[app2.clone(), appstream.clone()]).await.unwrap();
    assert_eq!(store.repo_refs(repo).await.unwrap(), [app2, appstream.clone(), runtime]);
    assert_eq!(store.repo_refs(other).await.unwrap(), [appstream], "repositories are separate");
    store.put_repo_refs(repo, &[]).await.unwrap();
}

/// Leases: free → taken; held by another → refused; re-taken (extended) by the holder; released
/// only by the holder; taken over once expired.
pub async fn leases_are_exclusive_until_they_expire(store: &dyn StateStore) {
    let lease = "conformance-lease";
    assert!(store.acquire_lease(lease, "worker-1", 60).await.unwrap());
    assert!(!store.acquire_lease(lease, "worker-2", 60).await.unwrap());
    assert!(store.acquire_lease(lease, "worker-1", 60).await.unwrap(), "the holder extends its lease");
    store.release_lease(lease, "worker-2").await.unwrap();
    assert!(!store.acquire_lease(lease, "worker-2", 60).await.unwrap(), "only the holder releases");
    store.release_lease(lease, "worker-1").await.unwrap();
    assert!(store.acquire_lease(lease, "worker-2", 60).await.unwrap());
    store.release_lease("conformance-no-such-lease", "worker-1").await.unwrap();

    let expiring = "conformance-expiring-lease";
    assert!(store.acquire_lease(expiring, "worker-1", 0).await.unwrap());
    // Expiry may be tracked in whole seconds: wait until the next second has surely begun.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(store.acquire_lease(expiring, "worker-2", 60).await.unwrap(), "an expired lease is taken over");
    assert!(!store.acquire_lease(expiring, "worker-1", 60).await.unwrap());
}
