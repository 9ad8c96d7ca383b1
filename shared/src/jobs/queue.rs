//! The JobQueue port: hand a queued job's id to whatever runs jobs. Embedded, that is an
//! in-process channel read by the worker task; on AWS, an SQS queue read by the worker Lambda.

use async_trait::async_trait;
use tokio::sync::mpsc;

/// The queue could not take the job (the worker is gone).
#[derive(Debug, thiserror::Error)]
#[error("job queue unavailable: {0}")]
pub struct QueueError(pub String);

#[async_trait]
pub trait JobQueue: Send + Sync + std::fmt::Debug {
    /// Asks for job `id` to be run. Jobs are also recovered from the state store at start-up, so
    /// a lost message delays a job but never loses it.
    async fn enqueue(&self, id: i64) -> Result<(), QueueError>;
}

/// The receiving end of a [`LocalQueue`].
pub type QueueReceiver = mpsc::UnboundedReceiver<i64>;

/// An in-process queue.
#[derive(Debug, Clone)]
pub struct LocalQueue {
    sender: mpsc::UnboundedSender<i64>,
}

impl LocalQueue {
    pub fn new() -> (Self, QueueReceiver) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Self { sender }, receiver)
    }
}

#[async_trait]
impl JobQueue for LocalQueue {
    async fn enqueue(&self, id: i64) -> Result<(), QueueError> {
        self.sender.send(id).map_err(|e| QueueError(e.to_string()))
    }
}
