//! Jobs and their logs. A job's status moves by conditional updates (claiming is `New` →
//! `Started` under `status = New`, so exactly one worker wins). Its log is a run of chunk items
//! `LOG#0`, `LOG#1`, … in the job's partition: an append reads the last chunk number and writes
//! the next ones with `attribute_not_exists`, so concurrent appenders serialise, chunks are
//! never overwritten and never leave a gap, and a reader always sees a prefix of the log, which is
//! what byte offsets into it need.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use futures::{StreamExt, TryStreamExt};

use super::error::{backend, backoff, contended, invalid_request, is_condition_failure, Transaction, MAX_ATTEMPTS};
use super::items::*;
use super::DynamoState;
use crate::domain::job::{Job, JobKind, JobStatus};
use crate::state::StateError;

/// Largest log chunk, in bytes of text: well under the 400 KB item limit.
pub(super) const CHUNK_BYTES: usize = 256 * 1024;

/// Chunks written by one transaction, so an append of up to 3 MiB lands whole and in one piece
/// (a transaction may carry 4 MB). Longer appends are written as several such pieces.
const CHUNKS_PER_WRITE: usize = 12;

/// Logs read at once when listing unfinished jobs.
const LOG_READS_IN_FLIGHT: usize = 8;

/// Splits `text` into pieces of at most `max` bytes, on char boundaries.
pub(super) fn split_chunks(text: &str, max: usize) -> Vec<&str> {
    let mut chunks = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if end == 0 {
            // `max` is smaller than this character: it goes whole, alone.
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (chunk, tail) = rest.split_at(end);
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

impl DynamoState {
    pub(super) async fn insert_job(
        &self,
        kind: JobKind,
        contents: &str,
        repo: Option<&str>,
    ) -> Result<Job, StateError> {
        let id = self.next_id(Counter::Job).await?;
        let job = Job {
            id,
            kind,
            status: JobStatus::New,
            contents: contents.to_owned(),
            results: None,
            log: String::new(),
            start_after: None,
            repo: repo.map(str::to_owned),
        };
        if !self.put_new(job_to_item(&job)?, "creating job").await? {
            return Err(StateError::Backend(format!("job {id} already exists: the JOB counter is behind")));
        }
        Ok(job)
    }

    /// A job with its log: its whole partition, in one consistent query.
    pub(super) async fn load_job(&self, id: i64) -> Result<Job, StateError> {
        let items = self.query(job_pk(id), None, &format!("reading job {id}")).await?;
        let (meta, chunks): (Vec<_>, Vec<_>) = items.iter().partition(|item| get_s(item, "sk").ok() == Some(META));
        let meta = meta.first().ok_or(StateError::NotFound)?;
        job_from_item(meta, assemble_log(&chunks)?)
    }

    /// A job's log alone.
    async fn load_log(&self, id: i64) -> Result<String, StateError> {
        let items = self.query(job_pk(id), Some(LOG_PREFIX), &format!("reading the log of job {id}")).await?;
        assemble_log(&items.iter().collect::<Vec<_>>())
    }

    /// Reads the job, then moves it `New` → `Started` conditioned on `New`: of racing workers
    /// exactly one update succeeds. Reading first means a claimed job is never lost to a failed
    /// read after the claim.
    pub(super) async fn take_job(&self, id: i64) -> Result<Option<Job>, StateError> {
        let job = self.load_job(id).await?;
        if job.status != JobStatus::New {
            return Ok(None);
        }
        match self.set_status(id, JobStatus::New, JobStatus::Started).send().await {
            Ok(_) => Ok(Some(Job { status: JobStatus::Started, ..job })),
            Err(err) if is_condition_failure(&err) => Ok(None),
            Err(err) => Err(backend(&format!("claiming job {id}"), err)),
        }
    }

    pub(super) async fn end_job(&self, id: i64, status: JobStatus, results: &str) -> Result<(), StateError> {
        if !status.is_finished() {
            return Err(StateError::Backend(format!("job {id} cannot finish as {}", status.as_str())));
        }
        let result = self
            .set_status(id, JobStatus::Started, status)
            .update_expression("SET #status = :to, results = :results")
            .expression_attribute_values(":results", s(results))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => {
                let current = self.job_status(id).await?;
                Err(StateError::Backend(format!("job {id} is {}, not started", current.as_str())))
            }
            Err(err) => Err(backend(&format!("finishing job {id}"), err)),
        }
    }

    pub(super) async fn put_back_job(&self, id: i64) -> Result<bool, StateError> {
        match self.set_status(id, JobStatus::Started, JobStatus::New).send().await {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => self.job_status(id).await.map(|_| false),
            Err(err) => Err(backend(&format!("requeueing job {id}"), err)),
        }
    }

    /// A job's status from its own item alone (NotFound when there is no job).
    async fn job_status(&self, id: i64) -> Result<JobStatus, StateError> {
        let item = self.get_item(job_key(id), &format!("reading job {id}")).await?;
        Ok(job_from_item(&item.ok_or(StateError::NotFound)?, String::new())?.status)
    }

    /// An update of job `id`'s status from `from` to `to`, conditioned on `from`.
    fn set_status(
        &self,
        id: i64,
        from: JobStatus,
        to: JobStatus,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(job_key(id)))
            .update_expression("SET #status = :to")
            .condition_expression("attribute_exists(pk) AND #status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":from", n(from as i64))
            .expression_attribute_values(":to", n(to as i64))
    }

    /// Queued and started jobs, by id, with their logs.
    pub(super) async fn scan_unfinished_jobs(&self) -> Result<Vec<Job>, StateError> {
        let items = self
            .scan(
                "entity = :job AND #status IN (:new, :started)",
                &[("#status", "status")],
                vec![
                    (":job", s(JOB_ENTITY)),
                    (":new", n(JobStatus::New as i64)),
                    (":started", n(JobStatus::Started as i64)),
                ],
                "listing unfinished jobs",
            )
            .await?;
        let mut jobs: Vec<Job> = futures::stream::iter(items)
            .map(|item| async move {
                let log = self.load_log(get_i64(&item, "id")?).await?;
                job_from_item(&item, log)
            })
            .buffer_unordered(LOG_READS_IN_FLIGHT)
            .try_collect()
            .await?;
        jobs.sort_by_key(|job| job.id);
        Ok(jobs)
    }

    /// Appends `text` as new chunks after the last one.
    pub(super) async fn append_log(&self, id: i64, text: &str) -> Result<(), StateError> {
        let chunks = split_chunks(text, CHUNK_BYTES);
        if chunks.is_empty() {
            // Nothing to write, but a missing job is still NotFound.
            return self.log_tail(id).await.map(|_| ());
        }
        for piece in chunks.chunks(CHUNKS_PER_WRITE) {
            self.append_chunks(id, piece).await?;
        }
        Ok(())
    }

    /// Writes `chunks` as the next chunk numbers, all or none, retrying when another appender
    /// took those numbers first.
    async fn append_chunks(&self, id: i64, chunks: &[&str]) -> Result<(), StateError> {
        let what = format!("appending to the log of job {id}");
        for attempt in 0..MAX_ATTEMPTS {
            let first = self.log_tail(id).await?.map_or(0, |last| last + 1);
            let items: Vec<Item> = chunks
                .iter()
                .zip(first..)
                .map(|(text, number)| {
                    let mut item = key(job_pk(id), log_sort_key(number));
                    item.insert("text".to_owned(), s(*text));
                    item
                })
                .collect();
            let written = match <[Item; 1]>::try_from(items) {
                Ok([item]) => self.put_new(item, &what).await?,
                Err(items) => self.put_all_new(items, &what).await?,
            };
            if written {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(contended(&what))
    }

    /// Writes `items` in one transaction if none of their keys exist; `Ok(false)` otherwise.
    async fn put_all_new(&self, items: Vec<Item>, what: &str) -> Result<bool, StateError> {
        let actions = items
            .into_iter()
            .map(|item| {
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(|e| invalid_request(what, e))?;
                Ok(TransactWriteItem::builder().put(put).build())
            })
            .collect::<Result<Vec<_>, StateError>>()?;
        Ok(self.transact(actions, what).await? == Transaction::Committed)
    }

    /// The number of the job's last log chunk (`None` before the first), or NotFound when there
    /// is no such job. Chunks sort just before `META`, so reading the partition backwards, two
    /// keys tell both.
    async fn log_tail(&self, id: i64) -> Result<Option<u64>, StateError> {
        let what = format!("reading the log end of job {id}");
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(job_pk(id)))
            .projection_expression("pk, sk")
            .scan_index_forward(false)
            .limit(2)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend(&what, e))?;
        let items = out.items.unwrap_or_default();
        let mut keys = items.iter();
        match keys.next() {
            Some(meta) if get_s(meta, "sk")? == META => keys.next().map(log_chunk_number).transpose(),
            _ => Err(StateError::NotFound),
        }
    }
}

/// The log from its chunks (in sort key order, which is chunk order).
fn assemble_log(chunks: &[&Item]) -> Result<String, StateError> {
    let mut log = String::new();
    for chunk in chunks {
        log.push_str(get_s(chunk, "text")?);
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_on_char_boundaries_and_rejoin() {
        let text = "aé€🚀".repeat(1000);
        let chunks = split_chunks(&text, 7);
        assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= 7));
        assert_eq!(chunks.concat(), text);
        assert!(split_chunks("", 7).is_empty());
        assert_eq!(split_chunks("abc", CHUNK_BYTES), ["abc"]);
    }
}
