//! The table's keys, and items to and from domain types. Every read is checked: an item with a
//! missing attribute, a wrong type or an unknown state number is a [`StateError::Backend`] naming
//! the item, never a panic.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::build::{Build, BuildRef, PublishedState, RepoState};
use crate::domain::job::{Job, JobKind, JobStatus};
use crate::repo::record::RefRecord;
use crate::state::{StateError, TokenRecord};

/// One DynamoDB item.
pub(super) type Item = HashMap<String, AttributeValue>;

/// The sort key of a build's and a job's own item.
pub(super) const META: &str = "META";
/// Sort key prefix of a build's refs and a repository's ref records.
pub(super) const REF_PREFIX: &str = "REF#";
/// Sort key prefix of a job's log chunks.
pub(super) const LOG_PREFIX: &str = "LOG#";
/// The `entity` of build items, which Scans filter on.
pub(super) const BUILD_ENTITY: &str = "build";
/// The `entity` of job items.
pub(super) const JOB_ENTITY: &str = "job";

/// The atomic counters ids come from: item `COUNTER`/`<name>`, attribute `next`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Counter {
    Build,
    Job,
    BuildRef,
}

impl Counter {
    pub(super) fn sort_key(self) -> &'static str {
        match self {
            Self::Build => "BUILD",
            Self::Job => "JOB",
            Self::BuildRef => "BUILDREF",
        }
    }
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The primary key `pk`/`sk`.
pub(super) fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

pub(super) fn build_pk(id: i64) -> String {
    format!("BUILD#{id}")
}

pub(super) fn job_pk(id: i64) -> String {
    format!("JOB#{id}")
}

pub(super) fn counter_key(counter: Counter) -> Item {
    key("COUNTER".to_owned(), counter.sort_key())
}

pub(super) fn build_key(id: i64) -> Item {
    key(build_pk(id), META)
}

pub(super) fn job_key(id: i64) -> Item {
    key(job_pk(id), META)
}

pub(super) fn build_ref_key(build_id: i64, ref_name: &str) -> Item {
    key(build_pk(build_id), format!("{REF_PREFIX}{ref_name}"))
}

pub(super) fn token_key(jti: &str) -> Item {
    key(format!("TOKEN#{jti}"), "TOKEN")
}

pub(super) fn repo_pk(repo: &str) -> String {
    format!("REPO#{repo}")
}

pub(super) fn lease_key(name: &str) -> Item {
    key(format!("LEASE#{name}"), "LEASE")
}

/// Log chunk `number`, zero-padded so the sort key orders chunks numerically.
pub(super) fn log_sort_key(number: u64) -> String {
    format!("{LOG_PREFIX}{number:010}")
}

/// The chunk number in a log chunk's sort key.
pub(super) fn log_chunk_number(item: &Item) -> Result<u64, StateError> {
    let sk = get_s(item, "sk")?;
    sk.strip_prefix(LOG_PREFIX)
        .and_then(|number| number.parse().ok())
        .ok_or_else(|| malformed(item, "sk", &format!("{sk:?} is not a log chunk key")))
}

/// `pk/sk` of an item, for messages.
fn describe(item: &Item) -> String {
    let part = |name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => value.clone(),
        _ => "?".to_owned(),
    };
    format!("{}/{}", part("pk"), part("sk"))
}

fn malformed(item: &Item, attribute: &str, problem: &str) -> StateError {
    malformed_item(item, &format!("{attribute} {problem}"))
}

fn malformed_item(item: &Item, problem: &str) -> StateError {
    StateError::Backend(format!("malformed item {}: {problem}", describe(item)))
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StateError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        Some(_) => Err(malformed(item, name, "is not a string")),
        None => Err(malformed(item, name, "is missing")),
    }
}

/// A string that may be absent (or NULL).
pub(super) fn opt_s(item: &Item, name: &str) -> Result<Option<String>, StateError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(_) => get_s(item, name).map(|value| Some(value.to_owned())),
    }
}

pub(super) fn get_i64(item: &Item, name: &str) -> Result<i64, StateError> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => {
            value.parse().map_err(|_| malformed(item, name, &format!("{value:?} is not an integer")))
        }
        Some(_) => Err(malformed(item, name, "is not a number")),
        None => Err(malformed(item, name, "is missing")),
    }
}

pub(super) fn opt_i64(item: &Item, name: &str) -> Result<Option<i64>, StateError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(_) => get_i64(item, name).map(Some),
    }
}

fn get_bool(item: &Item, name: &str) -> Result<bool, StateError> {
    match item.get(name) {
        Some(AttributeValue::Bool(value)) => Ok(*value),
        Some(_) => Err(malformed(item, name, "is not a boolean")),
        None => Err(malformed(item, name, "is missing")),
    }
}

fn get_string_list(item: &Item, name: &str) -> Result<Vec<String>, StateError> {
    let Some(AttributeValue::L(values)) = item.get(name) else {
        return Err(malformed(item, name, "is not a list"));
    };
    values
        .iter()
        .map(|value| match value {
            AttributeValue::S(text) => Ok(text.clone()),
            _ => Err(malformed(item, name, "holds a value that is not a string")),
        })
        .collect()
}

/// A wire-enum attribute, refusing numbers the enum does not have.
fn get_enum<T>(item: &Item, name: &str, parse: fn(i64) -> Option<T>) -> Result<T, StateError> {
    let value = get_i64(item, name)?;
    parse(value).ok_or_else(|| malformed_item(item, &format!("invalid {name} {value}")))
}

fn get_json<T: serde::de::DeserializeOwned>(item: &Item, name: &str) -> Result<T, StateError> {
    serde_json::from_str(get_s(item, name)?).map_err(|e| malformed(item, name, &format!("is not valid JSON: {e}")))
}

/// Adds `name` = `value` when there is a value.
fn put_opt(item: &mut Item, name: &str, value: Option<AttributeValue>) {
    if let Some(value) = value {
        item.insert(name.to_owned(), value);
    }
}

pub(super) fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StateError> {
    serde_json::to_string(value).map_err(|e| StateError::Backend(format!("encoding {what}: {e}")))
}

pub(super) fn build_to_item(build: &Build) -> Item {
    let mut item = build_key(build.id);
    item.extend([
        ("entity".to_owned(), s(BUILD_ENTITY)),
        ("id".to_owned(), n(build.id)),
        ("created".to_owned(), s(&build.created)),
        ("repo_state".to_owned(), n(build.repo_state as i64)),
        ("published_state".to_owned(), n(build.published_state as i64)),
        ("repo".to_owned(), s(&build.repo)),
        ("extra_ids".to_owned(), AttributeValue::L(build.extra_ids.iter().map(s).collect())),
        ("public_download".to_owned(), AttributeValue::Bool(build.public_download)),
    ]);
    put_opt(&mut item, "repo_state_reason", build.repo_state_reason.as_ref().map(s));
    put_opt(&mut item, "published_state_reason", build.published_state_reason.as_ref().map(s));
    put_opt(&mut item, "commit_job_id", build.commit_job_id.map(n));
    put_opt(&mut item, "publish_job_id", build.publish_job_id.map(n));
    put_opt(&mut item, "app_id", build.app_id.as_ref().map(s));
    put_opt(&mut item, "build_log_url", build.build_log_url.as_ref().map(s));
    put_opt(&mut item, "token_name", build.token_name.as_ref().map(s));
    put_opt(&mut item, "token_type", build.token_type.as_ref().map(s));
    item
}

pub(super) fn build_from_item(item: &Item) -> Result<Build, StateError> {
    Ok(Build {
        id: get_i64(item, "id")?,
        created: get_s(item, "created")?.to_owned(),
        repo_state: get_enum(item, "repo_state", RepoState::from_i64)?,
        repo_state_reason: opt_s(item, "repo_state_reason")?,
        published_state: get_enum(item, "published_state", PublishedState::from_i64)?,
        published_state_reason: opt_s(item, "published_state_reason")?,
        commit_job_id: opt_i64(item, "commit_job_id")?,
        publish_job_id: opt_i64(item, "publish_job_id")?,
        repo: get_s(item, "repo")?.to_owned(),
        extra_ids: get_string_list(item, "extra_ids")?,
        app_id: opt_s(item, "app_id")?,
        public_download: get_bool(item, "public_download")?,
        build_log_url: opt_s(item, "build_log_url")?,
        token_name: opt_s(item, "token_name")?,
        token_type: opt_s(item, "token_type")?,
    })
}

pub(super) fn build_ref_to_item(build_ref: &BuildRef) -> Item {
    let mut item = build_ref_key(build_ref.build_id, &build_ref.ref_name);
    item.extend([
        ("id".to_owned(), n(build_ref.id)),
        ("build_id".to_owned(), n(build_ref.build_id)),
        ("ref_name".to_owned(), s(&build_ref.ref_name)),
        ("commit".to_owned(), s(&build_ref.commit)),
    ]);
    put_opt(&mut item, "build_log_url", build_ref.build_log_url.as_ref().map(s));
    item
}

pub(super) fn build_ref_from_item(item: &Item) -> Result<BuildRef, StateError> {
    Ok(BuildRef {
        id: get_i64(item, "id")?,
        build_id: get_i64(item, "build_id")?,
        ref_name: get_s(item, "ref_name")?.to_owned(),
        commit: get_s(item, "commit")?.to_owned(),
        build_log_url: opt_s(item, "build_log_url")?,
    })
}

/// A job's own item: everything but its log, which lives in chunk items.
pub(super) fn job_to_item(job: &Job) -> Result<Item, StateError> {
    let mut item = job_key(job.id);
    item.extend([
        ("entity".to_owned(), s(JOB_ENTITY)),
        ("id".to_owned(), n(job.id)),
        ("kind".to_owned(), n(job.kind as i64)),
        ("status".to_owned(), n(job.status as i64)),
        ("contents".to_owned(), s(&job.contents)),
    ]);
    put_opt(&mut item, "results", job.results.as_ref().map(s));
    let start_after = job.start_after.as_ref().map(|start| to_json(start, "start_after")).transpose()?;
    put_opt(&mut item, "start_after", start_after.map(s));
    put_opt(&mut item, "repo", job.repo.as_ref().map(s));
    Ok(item)
}

/// A job from its own item and its reassembled log.
pub(super) fn job_from_item(item: &Item, log: String) -> Result<Job, StateError> {
    Ok(Job {
        id: get_i64(item, "id")?,
        kind: get_enum(item, "kind", JobKind::from_i64)?,
        status: get_enum(item, "status", JobStatus::from_i64)?,
        contents: get_s(item, "contents")?.to_owned(),
        results: opt_s(item, "results")?,
        log,
        start_after: match opt_s(item, "start_after")? {
            Some(_) => Some(get_json(item, "start_after")?),
            None => None,
        },
        repo: opt_s(item, "repo")?,
    })
}

pub(super) fn token_from_item(item: &Item) -> Result<TokenRecord, StateError> {
    Ok(TokenRecord {
        token_id: get_s(item, "token_id")?.to_owned(),
        expires: opt_s(item, "expires")?,
        last_used: opt_s(item, "last_used")?,
        revoked_at: opt_s(item, "revoked_at")?,
    })
}

/// A repository's ref record; the record itself is JSON, so summaries get back exactly what
/// was stored.
pub(super) fn ref_record_to_item(repo: &str, record: &RefRecord) -> Result<Item, StateError> {
    let mut item = key(repo_pk(repo), format!("{REF_PREFIX}{}", record.name));
    item.insert("ref_name".to_owned(), s(&record.name));
    item.insert("record".to_owned(), s(to_json(record, "ref record")?));
    Ok(item)
}

pub(super) fn ref_record_from_item(item: &Item) -> Result<RefRecord, StateError> {
    get_json(item, "record")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build() -> Build {
        Build {
            id: 7,
            created: "2026-01-01T00:00:00.000000".into(),
            repo_state: RepoState::Failed,
            repo_state_reason: Some("boom".into()),
            published_state: PublishedState::Unpublished,
            published_state_reason: None,
            commit_job_id: Some(3),
            publish_job_id: None,
            repo: "stable".into(),
            extra_ids: vec!["b.Locale".into(), "a.Debug".into()],
            app_id: None,
            public_download: true,
            build_log_url: Some("https://ci.example/7".into()),
            token_name: None,
            token_type: Some("app".into()),
        }
    }

    fn job() -> Job {
        Job {
            id: 9,
            kind: JobKind::Publish,
            status: JobStatus::Started,
            contents: r#"{"build":7}"#.into(),
            results: None,
            log: String::new(),
            start_after: Some(crate::domain::job::StartAfter { secs_since_epoch: 5, nanos_since_epoch: 6 }),
            repo: Some("stable".into()),
        }
    }

    #[test]
    fn builds_round_trip_with_absent_optionals_omitted() {
        let item = build_to_item(&build());
        assert!(!item.contains_key("app_id") && !item.contains_key("publish_job_id"));
        assert_eq!(item["pk"], s("BUILD#7"));
        assert_eq!(build_from_item(&item).unwrap(), build());
    }

    #[test]
    fn jobs_round_trip_without_their_log() {
        let item = job_to_item(&job()).unwrap();
        assert!(!item.contains_key("log"));
        let back = job_from_item(&item, "line\n".into()).unwrap();
        assert_eq!(back, Job { log: "line\n".into(), ..job() });
    }

    #[test]
    fn malformed_items_are_errors_naming_the_item() {
        let mut item = build_to_item(&build());
        item.insert("repo_state".into(), n(42));
        let err = build_from_item(&item).unwrap_err().to_string();
        assert!(err.contains("BUILD#7/META") && err.contains("invalid repo_state 42"), "{err}");
        item.insert("repo_state".into(), s("2"));
        assert!(build_from_item(&item).unwrap_err().to_string().contains("repo_state is not a number"));
        item.remove("repo");
        let mut job = job_to_item(&job()).unwrap();
        job.insert("start_after".into(), s("nope"));
        assert!(job_from_item(&job, String::new()).unwrap_err().to_string().contains("start_after is not valid JSON"));
        job.remove("status");
        assert!(job_from_item(&job, String::new()).unwrap_err().to_string().contains("status is missing"));
        let mut list = build_to_item(&build());
        list.insert("extra_ids".into(), AttributeValue::L(vec![n(1)]));
        assert!(matches!(build_from_item(&list), Err(StateError::Backend(_))));
    }

    #[test]
    fn log_chunk_keys_sort_numerically_and_parse_back() {
        assert!(log_sort_key(9) < log_sort_key(10));
        assert!(log_sort_key(10).as_str() < META, "chunks sort before the job's own item");
        let chunk = key(job_pk(1), log_sort_key(12));
        assert_eq!(log_chunk_number(&chunk).unwrap(), 12);
        assert!(log_chunk_number(&key(job_pk(1), "LOG#x")).is_err());
    }
}
