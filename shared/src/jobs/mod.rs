//! Jobs: the worker that runs them, and the commit and publish jobs. Every job is idempotent: a
//! job interrupted at any point is run again from the start after a restart and converges.

mod appstream;
mod commit;
mod delta_policy;
mod lease;
mod prune;
mod publish;
pub mod queue;
#[cfg(feature = "aws")]
mod sqs;
mod update_repo;
mod uploaded_deltas;
mod worker;

#[cfg(feature = "aws")]
pub use sqs::{parse_job_id, sqs_client, SqsDeliveries, SqsQueue};
pub use worker::{run_job, Worker};

use std::fmt::Display;

use crate::app::AppState;
use crate::domain::job::Job;

/// A running job: where its log goes.
pub struct JobContext<'a> {
    pub app: &'a AppState,
    pub job: &'a Job,
}

impl JobContext<'_> {
    /// Appends a line to the job's log (clients follow it) and to the server log.
    pub async fn log(&self, line: impl Display) {
        let line = line.to_string();
        tracing::info!(job_id = self.job.id, "{line}");
        if let Err(e) = self.app.state.append_job_log(self.job.id, &format!("{line}\n")).await {
            tracing::warn!(job_id = self.job.id, error = %e, "could not append to the job log");
        }
    }
}

/// Seconds since the epoch.
fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Objects verified at once: enough to keep every core busy while others wait on reads.
fn verify_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}
