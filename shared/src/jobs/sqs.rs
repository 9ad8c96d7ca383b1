//! JobQueue on SQS: each job id is one message whose body is the id in decimal. On AWS the worker
//! Lambda receives the messages as event batches; [`SqsDeliveries`] polls for them instead, for
//! the conformance suite and for a worker process running outside Lambda.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::types::Message;
use aws_sdk_sqs::Client;

use super::queue::{Deliveries, JobQueue, QueueError};

/// Longest wait of one ReceiveMessage call (SQS's maximum long poll).
const LONG_POLL_SECONDS: i32 = 20;

/// Pause after a failed receive before the next, so a broken queue is not hammered.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// An SQS client from the environment's configuration (credentials, region, `AWS_ENDPOINT_URL`),
/// with `endpoint`, when given, taking precedence.
pub async fn sqs_client(endpoint: Option<&str>) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    Client::new(&loader.load().await)
}

/// The SQS queue at `queue_url`.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }

    /// A poller handing out this queue's messages.
    pub fn deliveries(&self) -> SqsDeliveries {
        SqsDeliveries { client: self.client.clone(), queue_url: self.queue_url.clone(), pending: VecDeque::new() }
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn enqueue(&self, id: i64) -> Result<(), QueueError> {
        let request = self.client.send_message().queue_url(&self.queue_url).message_body(id.to_string());
        request.send().await.map(drop).map_err(|e| QueueError(describe(e)))
    }
}

/// Long-polls an SQS queue and hands out its job ids one at a time, deleting each message as it
/// is handed out (at-most-once from here on: jobs are recovered from the state store if the
/// worker dies before finishing one).
#[derive(Debug)]
pub struct SqsDeliveries {
    client: Client,
    queue_url: String,
    pending: VecDeque<Message>,
}

impl SqsDeliveries {
    /// Fills `pending` with up to ten messages; `false` once the queue no longer exists.
    async fn receive(&mut self) -> bool {
        let request = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(LONG_POLL_SECONDS);
        match request.send().await {
            Ok(output) => self.pending.extend(output.messages.unwrap_or_default()),
            Err(e) if matches!(e.as_service_error(), Some(ReceiveMessageError::QueueDoesNotExist(_))) => return false,
            Err(e) => {
                tracing::warn!(queue_url = %self.queue_url, error = describe(e), "SQS receive failed");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
        true
    }

    /// Deletes a handled (or unreadable) message so it is not delivered again.
    async fn delete(&self, message: &Message) {
        let Some(handle) = message.receipt_handle() else { return };
        let request = self.client.delete_message().queue_url(&self.queue_url).receipt_handle(handle);
        if let Err(e) = request.send().await {
            // It will be delivered again after its visibility timeout; jobs are idempotent.
            tracing::warn!(queue_url = %self.queue_url, error = describe(e), "SQS delete failed");
        }
    }
}

#[async_trait]
impl Deliveries for SqsDeliveries {
    /// The next job id; waits for one as long as it takes. `None` once the queue is deleted.
    async fn next_delivery(&mut self) -> Option<i64> {
        loop {
            let Some(message) = self.pending.pop_front() else {
                if !self.receive().await {
                    return None;
                }
                continue;
            };
            self.delete(&message).await;
            match message.body().and_then(parse_job_id) {
                Some(id) => return Some(id),
                None => tracing::warn!(body = ?message.body(), "dropped an SQS message that is not a job id"),
            }
        }
    }
}

/// An SQS failure in one line: the service's error code and message, or the transport failure.
fn describe<E, R>(error: SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match error.code() {
        Some(code) => format!("SQS {code}: {}", error.message().unwrap_or_default()),
        None => format!("SQS {}", DisplayErrorContext(error)),
    }
}

/// The job id an SQS message body carries (also for the worker Lambda's event records).
pub fn parse_job_id(body: &str) -> Option<i64> {
    body.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_job_id_from_the_message_body() {
        assert_eq!(parse_job_id("42"), Some(42));
        assert_eq!(parse_job_id("not a job"), None);
        assert_eq!(parse_job_id(""), None);
    }
}
