//! Jobs: long operations (commit, publish, …) that run in the worker and report through an
//! append-only log and a JSON result.

use serde::{Deserialize, Serialize};

use super::build::wire_enum;

/// What a job does. Numbers are flat-manager's wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Commit = 0,
    Publish = 1,
    UpdateRepo = 2,
    Republish = 3,
    Check = 4,
    Prune = 5,
}

/// Where a job is. Numbers are flat-manager's wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Queued.
    New = 0,
    Started = 1,
    /// Finished successfully.
    Ended = 2,
    /// Failed; `results` holds `{"error-message": …}`.
    Broken = 3,
}

wire_enum!(JobKind {
    Commit = "commit",
    Publish = "publish",
    UpdateRepo = "update-repo",
    Republish = "republish",
    Check = "check",
    Prune = "prune",
});

wire_enum!(JobStatus { New = "new", Started = "started", Ended = "ended", Broken = "broken" });

impl JobStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Ended | Self::Broken)
    }
}

/// A job as the API shows it. `contents` and `results` are JSON *strings*, as in flat-manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub status: JobStatus,
    pub contents: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub results: Option<String>,
    pub log: String,
    pub start_after: Option<StartAfter>,
    pub repo: Option<String>,
}

/// flat-manager's serialization of a `SystemTime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartAfter {
    pub secs_since_epoch: u64,
    pub nanos_since_epoch: u32,
}

impl Job {
    /// The log from byte `offset` on, clamped to the log and moved back to a char boundary.
    pub fn log_from(&self, offset: usize) -> &str {
        let mut start = offset.min(self.log.len());
        while !self.log.is_char_boundary(start) {
            start -= 1;
        }
        &self.log[start..]
    }
}

/// The contents of a commit job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitContents {
    pub build: i64,
    pub endoflife: Option<String>,
    pub endoflife_rebase: Option<String>,
    pub token_type: Option<i32>,
}

/// The contents of a publish job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishContents {
    pub build: i64,
}

/// The contents of an update-repo job: the repository whose deltas and summaries it updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRepoContents {
    pub repo: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_offsets_are_bytes_clamped_to_char_boundaries() {
        let job = Job {
            id: 1,
            kind: JobKind::Commit,
            status: JobStatus::Started,
            contents: "{}".into(),
            results: None,
            log: "ab€cd\n".into(),
            start_after: None,
            repo: None,
        };
        assert_eq!(job.log_from(2), "€cd\n");
        assert_eq!(job.log_from(3), "€cd\n");
        assert_eq!(job.log_from(5), "cd\n");
        assert_eq!(job.log_from(100), "");
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!((json["kind"].as_i64(), json["status"].as_i64()), (Some(0), Some(1)));
        assert!(json.get("results").is_none());
    }
}
