//! Token tracking, published ref records and publish leases.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{KeysAndAttributes, PutRequest, ReturnValue, WriteRequest};
use futures::{StreamExt, TryStreamExt};

use super::error::{backend, backoff, invalid_request, is_condition_failure, MAX_ATTEMPTS};
use super::items::*;
use super::DynamoState;
use crate::repo::record::RefRecord;
use crate::state::{naive_from_unix, naive_now, StateError, TokenRecord};

/// Items per `BatchWriteItem` (the API's limit).
const WRITE_BATCH: usize = 25;
/// Keys per `BatchGetItem` (the API's limit).
const READ_BATCH: usize = 100;
/// Revocations in flight at once.
const REVOCATIONS_IN_FLIGHT: usize = 8;
/// How long an expired lease item stays before DynamoDB's TTL may delete it. Deleting it is
/// only tidying: an expired lease is taken over whether its item is there or not.
const LEASE_TTL_GRACE_SECS: i64 = 24 * 3600;

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl DynamoState {
    /// One conditional update: records the use unless the token was revoked, keeping the first
    /// recorded expiry.
    pub(super) async fn record_token_use(&self, jti: &str, expires: i64) -> Result<(), StateError> {
        let claimed = naive_from_unix(expires);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(token_key(jti)))
            .update_expression("SET token_id = :id, expires = if_not_exists(expires, :expires), last_used = :now")
            .condition_expression("attribute_not_exists(revoked_at)")
            .expression_attribute_values(":id", s(jti))
            .expression_attribute_values(":expires", s(&claimed))
            .expression_attribute_values(":now", s(naive_now()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let old = out.attributes.unwrap_or_default();
                if let Some(recorded) = opt_s(&old, "expires")?.filter(|recorded| *recorded != claimed) {
                    // The jti is meant to be unique; a token reusing one with another expiry is
                    // suspicious, but the first record stays authoritative.
                    tracing::warn!(token_id = %jti, %recorded, %claimed, "token used with a different expiry than recorded");
                }
                Ok(())
            }
            Err(err) if is_condition_failure(&err) => Err(StateError::Revoked),
            Err(err) => Err(backend(&format!("recording use of token {jti}"), err)),
        }
    }

    /// Revokes each token (keeping an earlier revocation time), a few at a time.
    pub(super) async fn revoke(&self, ids: &[String]) -> Result<(), StateError> {
        let now = naive_now();
        let revocations: Vec<_> = ids
            .iter()
            .map(|id| {
                let request = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(token_key(id)))
                    .update_expression("SET token_id = :id, revoked_at = if_not_exists(revoked_at, :now)")
                    .expression_attribute_values(":id", s(id))
                    .expression_attribute_values(":now", s(&now));
                let what = format!("revoking token {id}");
                async move { request.send().await.map_err(|e| backend(&what, e)) }
            })
            .collect();
        futures::stream::iter(revocations).buffer_unordered(REVOCATIONS_IN_FLIGHT).try_collect::<Vec<_>>().await?;
        Ok(())
    }

    /// The tracked tokens among `ids`, in the order asked, by `BatchGetItem`.
    pub(super) async fn load_tokens(&self, ids: &[String]) -> Result<Vec<TokenRecord>, StateError> {
        let mut seen = HashSet::new();
        let unique: Vec<&String> = ids.iter().filter(|id| seen.insert(id.as_str())).collect();
        let mut found = HashMap::new();
        for batch in unique.chunks(READ_BATCH) {
            for item in self.batch_get(batch.iter().map(|id| token_key(id)).collect(), "reading tokens").await? {
                let record = token_from_item(&item)?;
                found.insert(record.token_id.clone(), record);
            }
        }
        Ok(unique.into_iter().filter_map(|id| found.remove(id)).collect())
    }

    /// Reads up to 100 `keys` consistently, asking again for any the service left unprocessed.
    async fn batch_get(&self, keys: Vec<Item>, what: &str) -> Result<Vec<Item>, StateError> {
        let mut items = Vec::new();
        let mut pending = Some(keys);
        for attempt in 0..MAX_ATTEMPTS {
            let Some(keys) = pending.take().filter(|keys| !keys.is_empty()) else {
                return Ok(items);
            };
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| invalid_request(what, e))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| backend(what, e))?;
            items.extend(out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default());
            pending = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).map(|k| k.keys);
            if pending.as_ref().is_some_and(|keys| !keys.is_empty()) {
                backoff(attempt).await;
            }
        }
        match pending {
            Some(keys) if !keys.is_empty() => {
                Err(StateError::Backend(format!("{what}: {} keys still unprocessed", keys.len())))
            }
            _ => Ok(items),
        }
    }

    /// A repository's ref records, by ref name: one Query of its partition.
    pub(super) async fn load_repo_refs(&self, repo: &str) -> Result<Vec<RefRecord>, StateError> {
        let items = self.query(repo_pk(repo), Some(REF_PREFIX), &format!("reading refs of {repo}")).await?;
        // Sort keys order as the bytes of the ref names, like the SQLite store's ORDER BY.
        items.iter().map(ref_record_from_item).collect()
    }

    /// Puts ref records with `BatchWriteItem`, 25 at a time, retrying unprocessed items. A name
    /// given twice keeps its last record, as successive upserts would (a batch may not repeat a
    /// key).
    pub(super) async fn write_repo_refs(&self, repo: &str, records: &[RefRecord]) -> Result<(), StateError> {
        let what = format!("storing refs of {repo}");
        let mut last: HashMap<&str, &RefRecord> = HashMap::new();
        for record in records {
            last.insert(&record.name, record);
        }
        let mut requests = Vec::with_capacity(last.len());
        for record in last.into_values() {
            let put = PutRequest::builder()
                .set_item(Some(ref_record_to_item(repo, record)?))
                .build()
                .map_err(|e| invalid_request(&what, e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        while !requests.is_empty() {
            let batch: Vec<WriteRequest> = requests.drain(..requests.len().min(WRITE_BATCH)).collect();
            self.batch_write(batch, &what).await?;
        }
        Ok(())
    }

    /// Writes up to 25 requests, sending again whatever the service left unprocessed.
    async fn batch_write(&self, requests: Vec<WriteRequest>, what: &str) -> Result<(), StateError> {
        let mut pending = requests;
        for attempt in 0..MAX_ATTEMPTS {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(|e| backend(what, e))?;
            pending = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(StateError::Backend(format!("{what}: {} writes still unprocessed", pending.len())))
    }

    /// One conditional put: the lease is free, expired, or already `holder`'s.
    pub(super) async fn take_lease(&self, name: &str, holder: &str, ttl_secs: u64) -> Result<bool, StateError> {
        let now = now_unix();
        let expires_at = now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX));
        let mut item = lease_key(name);
        item.extend([
            ("holder".to_owned(), s(holder)),
            ("expires_at".to_owned(), n(expires_at)),
            ("ttl".to_owned(), n(expires_at.saturating_add(LEASE_TTL_GRACE_SECS))),
        ]);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now OR holder = :holder")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":holder", s(holder))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(backend(&format!("acquiring lease {name}"), err)),
        }
    }

    /// Deletes the lease if `holder` has it; someone else's lease (or none) is left alone.
    pub(super) async fn drop_lease(&self, name: &str, holder: &str) -> Result<(), StateError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(lease_key(name)))
            .condition_expression("holder = :holder")
            .expression_attribute_values(":holder", s(holder))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Ok(()),
            Err(err) => Err(backend(&format!("releasing lease {name}"), err)),
        }
    }
}
