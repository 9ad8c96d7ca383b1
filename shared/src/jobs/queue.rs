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

/// The worker's side of a queue: what it delivers, one id at a time.
#[async_trait]
pub trait Deliveries: Send {
    async fn next_delivery(&mut self) -> Option<i64>;
}

#[async_trait]
impl Deliveries for QueueReceiver {
    async fn next_delivery(&mut self) -> Option<i64> {
        self.recv().await
    }
}

/// Behaviours every JobQueue must have, observed through its [`Deliveries`].
pub mod conformance {
    use super::{Deliveries, JobQueue};

    /// Every enqueued id is delivered.
    pub async fn delivers_every_job(queue: &dyn JobQueue, deliveries: &mut dyn Deliveries) {
        for id in [3, 1, 2, 2] {
            queue.enqueue(id).await.expect("enqueue");
        }
        let mut delivered = Vec::new();
        for _ in 0..4 {
            delivered.push(deliveries.next_delivery().await.expect("a delivery"));
        }
        delivered.sort_unstable();
        assert_eq!(delivered, [1, 2, 2, 3]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_queue_passes_the_conformance_suite() {
        let (queue, mut receiver) = LocalQueue::new();
        conformance::delivers_every_job(&queue, &mut receiver).await;
    }

    #[tokio::test]
    async fn a_queue_without_a_worker_says_so() {
        let (queue, receiver) = LocalQueue::new();
        drop(receiver);
        assert!(queue.enqueue(1).await.is_err());
    }
}
