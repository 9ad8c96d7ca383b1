//! A stand-in for the SQS event source mapping: polls the queue, invokes the consumer function
//! with each batch as an SQS event, and deletes the messages it handled. With
//! `ReportBatchItemFailures` the messages the function lists in `batchItemFailures` stay (SQS
//! delivers them again after the visibility timeout); an invocation that fails keeps them all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::template::QueueConsumer;

/// How long a received batch stays invisible: long enough for a commit or publish here, short
/// enough that a message the function failed comes back within a test.
const VISIBILITY_TIMEOUT_SECONDS: i32 = 60;
/// Long-poll wait of one receive.
const WAIT_SECONDS: i32 = 2;
/// Pause after a failed receive.
const ERROR_PAUSE: Duration = Duration::from_millis(500);
/// ReceiveMessage's largest batch.
const MAX_RECEIVE: usize = 10;

/// The running mapping, stopped on drop.
pub struct EventSource {
    activity: Arc<Mutex<Activity>>,
    poller: JoinHandle<()>,
}

/// What the mapping did.
#[derive(Debug, Default, Clone)]
pub struct Activity {
    /// Invocations of the function.
    pub invocations: usize,
    /// Messages deleted after the function handled them.
    pub deleted: usize,
    /// Messages left for redelivery: reported as failed, or in a failed invocation.
    pub kept: usize,
    /// One line per invocation or error, in order.
    pub log: Vec<String>,
}

struct Poller {
    sqs: Client,
    queue_url: String,
    queue_arn: String,
    region: String,
    consumer: QueueConsumer,
    invoke_url: String,
    http: reqwest::Client,
    activity: Arc<Mutex<Activity>>,
}

impl EventSource {
    /// Starts feeding `queue_url`'s messages to `consumer`, invoked at `invoke_url`.
    pub async fn start(
        sqs: Client,
        queue_url: &str,
        consumer: QueueConsumer,
        invoke_url: String,
    ) -> anyhow::Result<Self> {
        let attributes = sqs.get_queue_attributes().queue_url(queue_url).attribute_names(QueueAttributeName::QueueArn);
        let attributes = attributes.send().await.context("failed to read the queue's ARN")?;
        let queue_arn = attributes.attributes().and_then(|a| a.get(&QueueAttributeName::QueueArn));
        let queue_arn = queue_arn.context("the queue has no ARN")?.clone();
        let region = sqs.config().region().map(ToString::to_string).unwrap_or_default();
        let activity = Arc::new(Mutex::new(Activity::default()));
        let http = reqwest::Client::builder().no_proxy().build()?;
        let poller = Poller {
            sqs,
            queue_url: queue_url.to_owned(),
            queue_arn,
            region,
            consumer,
            invoke_url,
            http,
            activity: activity.clone(),
        };
        Ok(Self { activity, poller: tokio::spawn(poller.run()) })
    }

    /// A snapshot of what the mapping did so far.
    pub fn activity(&self) -> Activity {
        self.activity.lock().expect("activity lock").clone()
    }
}

impl Drop for EventSource {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl Poller {
    async fn run(self) {
        loop {
            if let Err(e) = self.poll().await {
                self.record(|a| a.log.push(format!("error: {e:#}")));
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }

    /// Receives one batch, if any, and hands it to the function.
    async fn poll(&self) -> anyhow::Result<()> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.consumer.batch_size.min(MAX_RECEIVE) as i32)
            .visibility_timeout(VISIBILITY_TIMEOUT_SECONDS)
            .wait_time_seconds(WAIT_SECONDS)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .context("ReceiveMessage failed")?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(());
        }
        let event = json!({"Records": messages.iter().map(|m| self.record_of(m)).collect::<Vec<_>>()});
        let ids: Vec<&str> = messages.iter().map(|m| m.message_id().unwrap_or_default()).collect();
        let failed = match self.invoke(&event, &ids).await {
            Ok(failed) => failed,
            Err(e) => {
                self.record(|a| a.log.push(format!("invocation with {ids:?} failed: {e:#}")));
                ids.iter().map(|id| id.to_string()).collect()
            }
        };
        let mut deleted = 0;
        for message in messages.iter().filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id())) {
            let handle = message.receipt_handle().context("a received message has no receipt handle")?;
            self.sqs.delete_message().queue_url(&self.queue_url).receipt_handle(handle).send().await?;
            deleted += 1;
        }
        self.record(|a| {
            a.invocations += 1;
            a.deleted += deleted;
            a.kept += messages.len() - deleted;
            a.log.push(format!("invoked {} with {ids:?}: {deleted} deleted, {failed:?} kept", self.consumer.binary));
        });
        Ok(())
    }

    /// One `Records` entry of an SQS event, as Lambda builds it (the queue's messages carry no
    /// message attributes).
    fn record_of(&self, message: &Message) -> Value {
        let attributes: serde_json::Map<String, Value> = message
            .attributes()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.as_str().to_owned(), Value::String(value.clone())))
            .collect();
        json!({
            "messageId": message.message_id(),
            "receiptHandle": message.receipt_handle(),
            "body": message.body(),
            "attributes": attributes,
            "messageAttributes": {},
            "md5OfBody": message.md5_of_body(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        })
    }

    /// Invokes the function with `event` of the messages `ids`; the ids it reported as failed. A
    /// report naming a message not in the batch fails the whole batch, as on Lambda.
    async fn invoke(&self, event: &Value, ids: &[&str]) -> anyhow::Result<Vec<String>> {
        let answer =
            self.http.post(&self.invoke_url).json(event).send().await.context("the emulator did not answer")?;
        let (status, function_error) = (answer.status(), answer.headers().contains_key("x-amz-function-error"));
        let body = answer.text().await?;
        if !status.is_success() || function_error {
            bail!("{status}: {body}");
        }
        if !self.consumer.reports_item_failures {
            return Ok(Vec::new());
        }
        let response: Value = serde_json::from_str(&body).with_context(|| format!("response {body:?}"))?;
        let failures = response["batchItemFailures"].as_array().map(Vec::as_slice).unwrap_or_default();
        let mut failed = Vec::new();
        for failure in failures {
            match failure["itemIdentifier"].as_str() {
                Some(id) if ids.contains(&id) => failed.push(id.to_owned()),
                _ => bail!("batch item failure {failure} names no message of the batch"),
            }
        }
        Ok(failed)
    }

    fn record(&self, change: impl FnOnce(&mut Activity)) {
        change(&mut self.activity.lock().expect("activity lock"));
    }
}
