//! StateStore on DynamoDB, for the AWS deployment: one table, every state transition one
//! conditional write (or one `TransactWriteItems` when a job is created with it), integer ids
//! from atomic counters, and job logs as append-only chunk items so they may outgrow one item's
//! 400 KB.
//!
//! # Table
//! Key schema: partition key `pk` (S), sort key `sk` (S); billing `PAY_PER_REQUEST`; TTL on the
//! number attribute `ttl` (optional: only lease items carry it, and an expired lease works with or
//! without its deletion). [`create_table`] makes it for tests and first deployments; the SAM
//! template declares the same. Items:
//!
//! | pk             | sk                         | what                                                   |
//! |----------------|----------------------------|--------------------------------------------------------|
//! | `COUNTER`      | `BUILD`, `JOB`, `BUILDREF` | `next`: the last id handed out (`ADD`, `UPDATED_NEW`)  |
//! | `BUILD#<id>`   | `META`                     | a build (`entity` = `build`), states as wire numbers   |
//! | `BUILD#<id>`   | `REF#<ref>`                | a build ref, with its own id                           |
//! | `JOB#<id>`     | `META`                     | a job without its log (`entity` = `job`)               |
//! | `JOB#<id>`     | `LOG#<n>`                  | log chunk `n` (10 digits, from 0), `text` ≤ 256 KiB    |
//! | `TOKEN#<jti>`  | `TOKEN`                    | a tracked token                                        |
//! | `REPO#<name>`  | `REF#<ref>`                | a published ref record (`record`: JSON)                |
//! | `LEASE#<name>` | `LEASE`                    | `holder`, `expires_at` (unix seconds), `ttl`           |
//!
//! `list_builds`, `unpublished_builds` and `unfinished_jobs` Scan the table with a filter on
//! `entity` (consistent reads, results sorted by id). That reads every item, which is fine for the
//! thousands of builds a repository server keeps; at larger scale a sparse GSI keyed on `entity`
//! (or on `app_id` and on unfinished status) would replace the Scans without changing the items.
//!
//! Costs: a transition is one write; starting a job one two-item transaction; a log append one
//! small Query (the last chunk number) and one PutItem; reading a job one Query of its partition.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType,
    TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;

use super::{StateError, StateStore, TokenRecord};
use crate::domain::build::{Build, BuildRef, NewBuild, PublishedState, RepoState};
use crate::domain::job::{CommitContents, Job, JobKind, JobStatus, PublishContents};
use crate::repo::record::RefRecord;

mod builds;
mod error;
mod items;
mod jobs;
mod records;

use error::{backend, invalid_request, is_condition_failure, transaction_outcome, Transaction};
use items::{counter_key, get_i64, n, s, Counter, Item};

/// The state of a flatbucket deployment in one DynamoDB table.
#[derive(Clone)]
pub struct DynamoState {
    client: Client,
    table: String,
}

impl fmt::Debug for DynamoState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoState").field("table", &self.table).finish_non_exhaustive()
    }
}

/// A DynamoDB client from the environment (credentials, `AWS_REGION`), talking to
/// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_DYNAMODB`) when set, e.g. moto or LocalStack.
pub async fn dynamodb_client() -> Client {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    Client::new(&config)
}

/// Creates `table` with the schema in the module documentation, waits until it is active and
/// turns TTL on. A table that already exists is left as it is (its TTL setting included).
pub async fn create_table(client: &Client, table: &str) -> Result<(), StateError> {
    let what = format!("creating table {table}");
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| invalid_request(&what, e))
    };
    let key = |name: &str, key_type| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .map_err(|e| invalid_request(&what, e))
    };
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => return Ok(()),
        Err(err) => return Err(backend(&what, err)),
    }
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(std::time::Duration::from_secs(120))
        .await
        .map_err(|e| StateError::Backend(format!("{what}: waiting for it: {e}")))?;
    enable_ttl(client, table).await
}

async fn enable_ttl(client: &Client, table: &str) -> Result<(), StateError> {
    let what = format!("enabling TTL on {table}");
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name("ttl")
        .build()
        .map_err(|e| invalid_request(&what, e))?;
    let current = client.describe_time_to_live().table_name(table).send().await.map_err(|e| backend(&what, e))?;
    let status = current.time_to_live_description().and_then(|d| d.time_to_live_status());
    if matches!(status, Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)) {
        return Ok(());
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
        .map_err(|e| backend(&what, e))?;
    Ok(())
}

impl DynamoState {
    /// The store in `table` (which must exist: see [`create_table`]).
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The next id of `counter`: one atomic `ADD`, so concurrent callers never share an id.
    async fn next_id(&self, counter: Counter) -> Result<i64, StateError> {
        let what = format!("allocating a {} id", counter.sort_key());
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(counter_key(counter)))
            .update_expression("ADD #next :one")
            .expression_attribute_names("#next", "next")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| backend(&what, e))?;
        let attributes = out.attributes.unwrap_or_default();
        get_i64(&attributes, "next").map_err(|e| StateError::Backend(format!("{what}: {e}")))
    }

    /// The item at `key`, read consistently.
    async fn get_item(&self, key: Item, what: &str) -> Result<Option<Item>, StateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend(what, e))?;
        Ok(out.item)
    }

    /// Every item of partition `pk` whose sort key starts with `prefix` (all of them for `None`),
    /// in sort key order, read consistently across all pages.
    async fn query(&self, pk: String, prefix: Option<&str>, what: &str) -> Result<Vec<Item>, StateError> {
        let request = self.client.query().table_name(&self.table).expression_attribute_values(":pk", s(pk));
        // A key condition may not compare with an empty string, so "everything" is its own case.
        let request = match prefix {
            Some(prefix) => request
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix)),
            None => request.key_condition_expression("pk = :pk"),
        };
        request.consistent_read(true).into_paginator().items().send().try_collect().await.map_err(|e| backend(what, e))
    }

    /// Every item matching `filter` (over names `#…` and values `:…`), across all pages.
    async fn scan(
        &self,
        filter: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
        what: &str,
    ) -> Result<Vec<Item>, StateError> {
        let mut request = self.client.scan().table_name(&self.table).filter_expression(filter).consistent_read(true);
        for (placeholder, name) in names {
            request = request.expression_attribute_names(*placeholder, *name);
        }
        for (placeholder, value) in values {
            request = request.expression_attribute_values(placeholder, value);
        }
        request.into_paginator().items().send().try_collect().await.map_err(|e| backend(what, e))
    }

    /// Writes a new item, refusing to overwrite one: `Ok(false)` when its key is taken.
    async fn put_new(&self, item: Item, what: &str) -> Result<bool, StateError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(backend(what, err)),
        }
    }

    /// Runs `actions` as one transaction.
    async fn transact(&self, actions: Vec<TransactWriteItem>, what: &str) -> Result<Transaction, StateError> {
        let result = self.client.transact_write_items().set_transact_items(Some(actions)).send().await.map(|_| ());
        transaction_outcome(what, result)
    }
}

#[async_trait]
impl StateStore for DynamoState {
    async fn create_build(&self, new: NewBuild) -> Result<Build, StateError> {
        self.insert_build(new).await
    }

    async fn get_build(&self, id: i64) -> Result<Build, StateError> {
        self.load_build(id).await
    }

    async fn list_builds(&self, app_id: Option<&str>) -> Result<Vec<Build>, StateError> {
        self.scan_builds_of_app(app_id).await
    }

    async fn unpublished_builds(&self, repo: &str) -> Result<Vec<Build>, StateError> {
        self.scan_unpublished_builds(repo).await
    }

    async fn add_extra_ids(&self, build_id: i64, ids: &[String]) -> Result<Build, StateError> {
        self.append_extra_ids(build_id, ids).await
    }

    async fn upsert_build_ref(
        &self,
        build_id: i64,
        ref_name: &str,
        commit: &str,
        build_log_url: Option<&str>,
    ) -> Result<BuildRef, StateError> {
        self.write_build_ref(build_id, ref_name, commit, build_log_url).await
    }

    async fn get_build_ref(&self, build_id: i64, ref_id: i64) -> Result<BuildRef, StateError> {
        let refs = self.load_build_refs(build_id).await?;
        refs.into_iter().find(|r| r.id == ref_id).ok_or(StateError::NotFound)
    }

    async fn list_build_refs(&self, build_id: i64) -> Result<Vec<BuildRef>, StateError> {
        self.load_build_refs(build_id).await
    }

    async fn start_commit(&self, contents: &CommitContents) -> Result<Job, StateError> {
        let json = items::to_json(contents, "commit contents")?;
        self.start_build_job(contents.build, JobKind::Commit, json).await
    }

    async fn start_publish(&self, contents: &PublishContents) -> Result<Job, StateError> {
        let json = items::to_json(contents, "publish contents")?;
        self.start_build_job(contents.build, JobKind::Publish, json).await
    }

    async fn set_repo_state(
        &self,
        build_id: i64,
        from: &[RepoState],
        to: RepoState,
        reason: Option<&str>,
    ) -> Result<Build, StateError> {
        self.move_state(build_id, from, to, reason).await
    }

    async fn set_published_state(
        &self,
        build_id: i64,
        from: &[PublishedState],
        to: PublishedState,
        reason: Option<&str>,
    ) -> Result<Build, StateError> {
        self.move_state(build_id, from, to, reason).await
    }

    async fn create_job(&self, kind: JobKind, contents: &str, repo: Option<&str>) -> Result<Job, StateError> {
        self.insert_job(kind, contents, repo).await
    }

    async fn get_job(&self, id: i64) -> Result<Job, StateError> {
        self.load_job(id).await
    }

    async fn claim_job(&self, id: i64) -> Result<Option<Job>, StateError> {
        self.take_job(id).await
    }

    async fn append_job_log(&self, id: i64, text: &str) -> Result<(), StateError> {
        self.append_log(id, text).await
    }

    /// Refuses (with [`StateError::Backend`]) a `status` that is not final and a job that is not
    /// started, as the SQLite store does.
    async fn finish_job(&self, id: i64, status: JobStatus, results: &str) -> Result<(), StateError> {
        self.end_job(id, status, results).await
    }

    async fn unfinished_jobs(&self) -> Result<Vec<Job>, StateError> {
        self.scan_unfinished_jobs().await
    }

    async fn requeue_job(&self, id: i64) -> Result<bool, StateError> {
        self.put_back_job(id).await
    }

    async fn use_token(&self, jti: &str, expires: i64) -> Result<(), StateError> {
        self.record_token_use(jti, expires).await
    }

    async fn revoke_tokens(&self, ids: &[String]) -> Result<(), StateError> {
        self.revoke(ids).await
    }

    async fn get_tokens(&self, ids: &[String]) -> Result<Vec<TokenRecord>, StateError> {
        self.load_tokens(ids).await
    }

    async fn repo_refs(&self, repo: &str) -> Result<Vec<RefRecord>, StateError> {
        self.load_repo_refs(repo).await
    }

    async fn put_repo_refs(&self, repo: &str, records: &[RefRecord]) -> Result<(), StateError> {
        self.write_repo_refs(repo, records).await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl_secs: u64) -> Result<bool, StateError> {
        self.take_lease(name, holder, ttl_secs).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StateError> {
        self.drop_lease(name, holder).await
    }
}
