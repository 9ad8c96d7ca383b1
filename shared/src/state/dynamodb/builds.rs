//! Builds, their refs and their two state machines. A transition is one `UpdateItem` whose
//! condition is the expected state; starting a commit or publish is one transaction that moves
//! the build and creates its job. When a condition fails the build is read again and the refusal
//! is the one the SQLite store gives for that state.

use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};

use super::error::{backend, backoff, contended, invalid_request, is_condition_failure, Transaction, MAX_ATTEMPTS};
use super::items::*;
use super::DynamoState;
use crate::domain::build::{Build, BuildRef, BuildStateMachine, NewBuild, PublishedState, RepoState, WrongState};
use crate::domain::job::{Job, JobKind, JobStatus};
use crate::state::{naive_now, StateError};

/// How a job-starting transaction moves its build.
struct JobStart {
    check: fn(&Build) -> Result<(), WrongState>,
    update: &'static str,
    condition: &'static str,
    values: Vec<(&'static str, AttributeValue)>,
}

fn job_start(kind: JobKind) -> Result<JobStart, StateError> {
    match kind {
        JobKind::Commit => Ok(JobStart {
            check: Build::check_can_commit,
            update: "SET repo_state = :to, commit_job_id = :job",
            condition: "repo_state = :uploading",
            values: vec![(":to", n(RepoState::Committing as i64)), (":uploading", n(RepoState::Uploading as i64))],
        }),
        JobKind::Publish => Ok(JobStart {
            check: Build::check_can_publish,
            update: "SET published_state = :to, publish_job_id = :job",
            condition: "published_state = :unpublished AND repo_state = :ready",
            values: vec![
                (":to", n(PublishedState::Publishing as i64)),
                (":unpublished", n(PublishedState::Unpublished as i64)),
                (":ready", n(RepoState::Ready as i64)),
            ],
        }),
        other => Err(StateError::Backend(format!("{} jobs do not start from a build", other.as_str()))),
    }
}

impl DynamoState {
    pub(super) async fn insert_build(&self, new: NewBuild) -> Result<Build, StateError> {
        let id = self.next_id(Counter::Build).await?;
        let build = Build {
            id,
            created: naive_now(),
            repo_state: RepoState::Uploading,
            repo_state_reason: None,
            published_state: PublishedState::Unpublished,
            published_state_reason: None,
            commit_job_id: None,
            publish_job_id: None,
            repo: new.repo,
            extra_ids: Vec::new(),
            app_id: new.app_id,
            public_download: new.public_download,
            build_log_url: new.build_log_url,
            token_name: new.token_name,
            token_type: new.token_type,
        };
        if !self.put_new(build_to_item(&build), "creating build").await? {
            return Err(StateError::Backend(format!("build {id} already exists: the BUILD counter is behind")));
        }
        Ok(build)
    }

    pub(super) async fn load_build(&self, id: i64) -> Result<Build, StateError> {
        let item = self.get_item(build_key(id), &format!("reading build {id}")).await?;
        build_from_item(&item.ok_or(StateError::NotFound)?)
    }

    pub(super) async fn scan_builds_of_app(&self, app_id: Option<&str>) -> Result<Vec<Build>, StateError> {
        let mut values = vec![(":build", s(BUILD_ENTITY)), (":purged", n(RepoState::Purged as i64))];
        let filter = match app_id {
            Some(app_id) => {
                values.push((":app", s(app_id)));
                "entity = :build AND app_id = :app AND repo_state <> :purged"
            }
            None => "entity = :build AND attribute_not_exists(app_id) AND repo_state <> :purged",
        };
        self.scan_builds(filter, values, "listing builds").await
    }

    pub(super) async fn scan_unpublished_builds(&self, repo: &str) -> Result<Vec<Build>, StateError> {
        let filter = "entity = :build AND repo = :repo AND repo_state IN (:committing, :ready, :validating) \
                      AND published_state IN (:unpublished, :publishing)";
        let values = vec![
            (":build", s(BUILD_ENTITY)),
            (":repo", s(repo)),
            (":committing", n(RepoState::Committing as i64)),
            (":ready", n(RepoState::Ready as i64)),
            (":validating", n(RepoState::Validating as i64)),
            (":unpublished", n(PublishedState::Unpublished as i64)),
            (":publishing", n(PublishedState::Publishing as i64)),
        ];
        self.scan_builds(filter, values, "listing unpublished builds").await
    }

    /// Builds matching `filter`, by id.
    async fn scan_builds(
        &self,
        filter: &str,
        values: Vec<(&str, AttributeValue)>,
        what: &str,
    ) -> Result<Vec<Build>, StateError> {
        let items = self.scan(filter, &[], values, what).await?;
        let mut builds = items.iter().map(build_from_item).collect::<Result<Vec<_>, _>>()?;
        builds.sort_by_key(|build| build.id);
        Ok(builds)
    }

    /// Appends the ids not yet present. The list only grows, so a write conditioned on its
    /// length fails exactly when someone else appended in between; then it is read again.
    pub(super) async fn append_extra_ids(&self, build_id: i64, ids: &[String]) -> Result<Build, StateError> {
        let what = format!("adding extra ids to build {build_id}");
        for attempt in 0..MAX_ATTEMPTS {
            let mut build = self.load_build(build_id).await?;
            let seen = build.extra_ids.len();
            for id in ids {
                if !build.extra_ids.contains(id) {
                    build.extra_ids.push(id.clone());
                }
            }
            if build.extra_ids.len() == seen {
                return Ok(build);
            }
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(build_key(build_id)))
                .update_expression("SET extra_ids = :ids")
                .condition_expression("size(extra_ids) = :seen")
                .expression_attribute_values(":ids", AttributeValue::L(build.extra_ids.iter().map(s).collect()))
                .expression_attribute_values(":seen", n(seen))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(build),
                Err(err) if is_condition_failure(&err) => backoff(attempt).await,
                Err(err) => return Err(backend(&what, err)),
            }
        }
        Err(contended(&what))
    }

    /// Replaces the commit of an existing ref (keeping its id), or creates the ref with a new id.
    pub(super) async fn write_build_ref(
        &self,
        build_id: i64,
        ref_name: &str,
        commit: &str,
        build_log_url: Option<&str>,
    ) -> Result<BuildRef, StateError> {
        let what = format!("registering ref {ref_name} of build {build_id}");
        self.load_build(build_id).await?;
        let mut new_id = None;
        for attempt in 0..MAX_ATTEMPTS {
            if let Some(updated) = self.update_build_ref(build_id, ref_name, commit, build_log_url, &what).await? {
                return Ok(updated);
            }
            let id = match new_id {
                Some(id) => id,
                None => *new_id.insert(self.next_id(Counter::BuildRef).await?),
            };
            let build_ref = BuildRef {
                id,
                build_id,
                ref_name: ref_name.to_owned(),
                commit: commit.to_owned(),
                build_log_url: build_log_url.map(str::to_owned),
            };
            if self.put_new(build_ref_to_item(&build_ref), &what).await? {
                return Ok(build_ref);
            }
            // Someone registered the same ref at the same moment: update theirs.
            backoff(attempt).await;
        }
        Err(contended(&what))
    }

    /// Updates the ref if it exists; `None` if it does not.
    async fn update_build_ref(
        &self,
        build_id: i64,
        ref_name: &str,
        commit: &str,
        build_log_url: Option<&str>,
        what: &str,
    ) -> Result<Option<BuildRef>, StateError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(build_ref_key(build_id, ref_name)))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#commit", "commit")
            .expression_attribute_values(":commit", s(commit))
            .return_values(ReturnValue::AllNew);
        request = match build_log_url {
            Some(url) => request
                .update_expression("SET #commit = :commit, build_log_url = :url")
                .expression_attribute_values(":url", s(url)),
            None => request.update_expression("SET #commit = :commit REMOVE build_log_url"),
        };
        match request.send().await {
            Ok(out) => build_ref_from_item(&out.attributes.unwrap_or_default()).map(Some),
            Err(err) if is_condition_failure(&err) => Ok(None),
            Err(err) => Err(backend(what, err)),
        }
    }

    /// A build's refs, by id.
    pub(super) async fn load_build_refs(&self, build_id: i64) -> Result<Vec<BuildRef>, StateError> {
        let what = format!("listing refs of build {build_id}");
        let items = self.query(build_pk(build_id), Some(REF_PREFIX), &what).await?;
        let mut refs = items.iter().map(build_ref_from_item).collect::<Result<Vec<_>, _>>()?;
        refs.sort_by_key(|r| r.id);
        Ok(refs)
    }

    /// Moves a build's `S` from one of `from` to `to` in one conditional update.
    pub(super) async fn move_state<S: BuildStateMachine>(
        &self,
        build_id: i64,
        from: &[S],
        to: S,
        reason: Option<&str>,
    ) -> Result<Build, StateError> {
        let what = format!("setting {} of build {build_id}", S::FIELD);
        if from.is_empty() {
            // `IN ()` is not an expression; nothing is expected, so the build is never there.
            let build = self.load_build(build_id).await?;
            return Err(StateError::WrongState(S::unexpected(S::of(&build), from)));
        }
        for attempt in 0..MAX_ATTEMPTS {
            let placeholders: Vec<String> = (0..from.len()).map(|i| format!(":from{i}")).collect();
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(build_key(build_id)))
                .condition_expression(format!("attribute_exists(pk) AND #state IN ({})", placeholders.join(", ")))
                .expression_attribute_names("#state", S::FIELD)
                .expression_attribute_names("#reason", S::REASON_FIELD)
                .expression_attribute_values(":to", n(to.value()))
                .return_values(ReturnValue::AllNew);
            for (placeholder, state) in placeholders.iter().zip(from) {
                request = request.expression_attribute_values(placeholder, n(state.value()));
            }
            request = match reason {
                Some(reason) => request
                    .update_expression("SET #state = :to, #reason = :reason")
                    .expression_attribute_values(":reason", s(reason)),
                None => request.update_expression("SET #state = :to REMOVE #reason"),
            };
            match request.send().await {
                Ok(out) => return build_from_item(&out.attributes.unwrap_or_default()),
                Err(err) if is_condition_failure(&err) => {
                    let current = S::of(&self.load_build(build_id).await?);
                    if !from.contains(&current) {
                        return Err(StateError::WrongState(S::unexpected(current, from)));
                    }
                    // It left and came back between our write and our read: try again.
                    backoff(attempt).await;
                }
                Err(err) => return Err(backend(&what, err)),
            }
        }
        Err(contended(&what))
    }

    /// Starts a commit or publish job: one transaction that moves the build (conditioned on the
    /// state it must be in) and creates the job. Losing the condition means another request won;
    /// the build is then read again and refused with the message for its new state.
    pub(super) async fn start_build_job(
        &self,
        build_id: i64,
        kind: JobKind,
        contents: String,
    ) -> Result<Job, StateError> {
        let what = format!("starting {} of build {build_id}", kind.as_str());
        let start = job_start(kind)?;
        let mut job_id = None;
        for attempt in 0..MAX_ATTEMPTS {
            let build = self.load_build(build_id).await?;
            (start.check)(&build)?;
            let id = match job_id {
                Some(id) => id,
                None => *job_id.insert(self.next_id(Counter::Job).await?),
            };
            let job = Job {
                id,
                kind,
                status: JobStatus::New,
                contents: contents.clone(),
                results: None,
                log: String::new(),
                start_after: None,
                repo: (kind == JobKind::Publish).then(|| build.repo.clone()),
            };
            let actions = self.job_start_actions(build_id, &start, &job, &what)?;
            match self.transact(actions, &what).await? {
                Transaction::Committed => return Ok(job),
                Transaction::ConditionFailed(1) => {
                    return Err(StateError::Backend(format!(
                        "{what}: job {id} already exists: the JOB counter is behind"
                    )))
                }
                // The build moved (the next read refuses) or another transaction held it.
                Transaction::ConditionFailed(_) | Transaction::Conflict => backoff(attempt).await,
            }
        }
        Err(contended(&what))
    }

    fn job_start_actions(
        &self,
        build_id: i64,
        start: &JobStart,
        job: &Job,
        what: &str,
    ) -> Result<Vec<TransactWriteItem>, StateError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(build_key(build_id)))
            .update_expression(start.update)
            .condition_expression(start.condition)
            .expression_attribute_values(":job", n(job.id));
        for (placeholder, value) in &start.values {
            update = update.expression_attribute_values(*placeholder, value.clone());
        }
        let update = update.build().map_err(|e| invalid_request(what, e))?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(job_to_item(job)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| invalid_request(what, e))?;
        Ok(vec![TransactWriteItem::builder().update(update).build(), TransactWriteItem::builder().put(put).build()])
    }
}
