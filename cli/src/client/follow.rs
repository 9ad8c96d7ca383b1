//! Following a job to its end (reference §4.2): poll its URL with the byte offset of the log seen
//! so far, print new log lines prefixed `| `, announce the start and the outcome. Unlike
//! flat-manager's clients, which sleep at least a second, the poll interval is 20 ms for the first
//! two seconds, so a short job's end is seen within 20 ms, and then doubles while the log does not
//! grow, up to a second.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flatbucket::domain::job::{Job, JobStatus};

use super::api::Api;
use super::error::ClientError;
use super::output::JobReport;

const FIRST_INTERVAL: Duration = Duration::from_millis(20);
/// How long polling stays at [`FIRST_INTERVAL`] whatever the log does: most jobs end within it.
const QUICK_PERIOD: Duration = Duration::from_secs(2);
const MAX_INTERVAL: Duration = Duration::from_secs(1);
/// Consecutive unexpected (non-retryable) answers tolerated while following.
const TOLERATED_ERRORS: u32 = 5;
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The adaptive poll interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollInterval(Duration);

impl Default for PollInterval {
    fn default() -> Self {
        Self(FIRST_INTERVAL)
    }
}

impl PollInterval {
    /// The sleep before the next poll, `following_for` after the first: short during the quick
    /// period and after progress, longer after none.
    pub fn next(&mut self, progressed: bool, following_for: Duration) -> Duration {
        let quick = progressed || following_for < QUICK_PERIOD;
        self.0 = if quick { FIRST_INTERVAL } else { (self.0 * 2).min(MAX_INTERVAL) };
        self.0
    }
}

/// What has been seen of a job's log and status, and what to print about the next answer.
#[derive(Debug, Default)]
pub struct LogTracker {
    /// The whole log received so far; its length is the next `log-offset`.
    log: String,
    /// Bytes of `log` already printed (complete lines only).
    printed: usize,
    started: bool,
    waiting_until: Option<u64>,
}

impl LogTracker {
    /// The byte offset to ask the log from.
    pub fn offset(&self) -> usize {
        self.log.len()
    }

    /// Takes in an answer whose `log` is the suffix from [`Self::offset`], and returns the lines
    /// to print and whether the log grew.
    pub fn observe(&mut self, job: &Job, now_secs: u64) -> (Vec<String>, bool) {
        let mut lines = Vec::new();
        let grew = !job.log.is_empty();
        self.log.push_str(&job.log);
        if job.status == JobStatus::New {
            if let Some(wait) = job.start_after.filter(|s| s.secs_since_epoch > now_secs) {
                if self.waiting_until != Some(wait.secs_since_epoch) {
                    self.waiting_until = Some(wait.secs_since_epoch);
                    lines.push(format!("Waiting {} seconds before starting job", wait.secs_since_epoch - now_secs));
                }
            }
        } else if !self.started {
            self.started = true;
            lines.push("/ Job was started".to_owned());
        }
        let finished = job.status.is_finished();
        lines.extend(self.take_lines(finished));
        match job.status {
            JobStatus::Ended => lines.push("\\ Job completed successfully".to_owned()),
            JobStatus::Broken => lines.push("\\ Job failed".to_owned()),
            JobStatus::New | JobStatus::Started => {}
        }
        (lines, grew)
    }

    /// Complete unprinted lines, prefixed `| `; with `all`, a trailing partial line too.
    fn take_lines(&mut self, all: bool) -> Vec<String> {
        let pending = &self.log[self.printed..];
        let complete = if all { pending.len() } else { pending.rfind('\n').map_or(0, |i| i + 1) };
        let lines = pending[..complete].lines().map(|line| format!("| {line}")).collect();
        self.printed += complete;
        lines
    }

    /// The full log, for the final report.
    pub fn into_log(self) -> String {
        self.log
    }
}

/// Polls the job at `url` until it ends, printing its log on stderr. A broken job is an error.
pub async fn follow_job(api: &Api, url: &str) -> Result<JobReport, ClientError> {
    let mut tracker = LogTracker::default();
    let mut interval = PollInterval::default();
    let started = Instant::now();
    let mut errors = 0;
    loop {
        let mut job = match api.get_job(url, tracker.offset()).await {
            Ok(job) => job,
            Err(error @ ClientError::Api { .. }) if errors < TOLERATED_ERRORS => {
                errors += 1;
                eprintln!("Unexpected response while following {url}: {error}, ignoring");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        errors = 0;
        let (lines, grew) = tracker.observe(&job, unix_now());
        for line in lines {
            eprintln!("{line}");
        }
        if job.status.is_finished() {
            job.log = tracker.into_log();
            return finish(job, url);
        }
        tokio::time::sleep(interval.next(grew, started.elapsed())).await;
    }
}

fn finish(job: Job, url: &str) -> Result<JobReport, ClientError> {
    let report = JobReport::new(job, Some(url.to_owned()));
    match report.status {
        JobStatus::Broken => Err(ClientError::JobFailed(Box::new(report))),
        _ => Ok(report),
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use flatbucket::domain::job::{JobKind, StartAfter};

    use super::*;

    fn job(status: JobStatus, log: &str) -> Job {
        Job {
            id: 1,
            kind: JobKind::Commit,
            status,
            contents: "{}".into(),
            results: None,
            log: log.into(),
            start_after: None,
            repo: None,
        }
    }

    #[test]
    fn interval_is_twenty_ms_for_two_seconds_then_grows_to_a_second() {
        let mut interval = PollInterval::default();
        let quick: Vec<u128> =
            (0..20).map(|i| interval.next(false, Duration::from_millis(i * 99)).as_millis()).collect();
        assert!(quick.iter().all(|ms| *ms == 20), "{quick:?}");
        let later = Duration::from_secs(3);
        let idle: Vec<u128> = (0..8).map(|_| interval.next(false, later).as_millis()).collect();
        assert_eq!(idle, [40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(interval.next(true, later), Duration::from_millis(20), "progress makes it short again");
    }

    #[test]
    fn prints_started_new_lines_and_success() {
        let mut tracker = LogTracker::default();
        let (lines, grew) = tracker.observe(&job(JobStatus::New, ""), 0);
        assert!(lines.is_empty() && !grew);
        let (lines, grew) = tracker.observe(&job(JobStatus::Started, "Committing ref a\nhal"), 0);
        assert_eq!(lines, ["/ Job was started", "| Committing ref a"]);
        assert!(grew);
        assert_eq!(tracker.offset(), "Committing ref a\nhal".len());
        let (lines, _) = tracker.observe(&job(JobStatus::Started, "f line\n"), 0);
        assert_eq!(lines, ["| half line"]);
        let (lines, _) = tracker.observe(&job(JobStatus::Ended, "Done\n"), 0);
        assert_eq!(lines, ["| Done", "\\ Job completed successfully"]);
        assert_eq!(tracker.into_log(), "Committing ref a\nhalf line\nDone\n");
    }

    #[test]
    fn offsets_count_bytes_not_characters() {
        let mut tracker = LogTracker::default();
        tracker.observe(&job(JobStatus::Started, "Commit € ok\n"), 0);
        assert_eq!(tracker.offset(), 14);
    }

    #[test]
    fn announces_a_delayed_start_once_and_a_failure() {
        let mut tracker = LogTracker::default();
        let mut queued = job(JobStatus::New, "");
        queued.start_after = Some(StartAfter { secs_since_epoch: 110, nanos_since_epoch: 0 });
        assert_eq!(tracker.observe(&queued, 100).0, ["Waiting 10 seconds before starting job"]);
        assert!(tracker.observe(&queued, 101).0.is_empty());
        let (lines, _) = tracker.observe(&job(JobStatus::Broken, "Job failed: boom"), 120);
        assert_eq!(lines, ["/ Job was started", "| Job failed: boom", "\\ Job failed"]);
    }

    #[test]
    fn a_broken_job_is_an_error_carrying_the_job() {
        let mut broken = job(JobStatus::Broken, "");
        broken.results = Some(r#"{"error-message":"boom"}"#.into());
        let error = finish(broken, "http://h/api/v1/job/1").unwrap_err();
        assert!(matches!(&error, ClientError::JobFailed(job) if job.error_message() == Some("boom")));
        assert!(finish(job(JobStatus::Ended, ""), "u").is_ok());
    }
}
