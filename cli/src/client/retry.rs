//! The retry policy of flat-manager's Rust client (reference §6.3): retry what
//! [`ClientError::is_retryable`] calls transient, sleeping a random 1 s…cap where the cap doubles
//! from 1 s to 60 s, and give up once 300 s have passed since the first attempt.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::error::ClientError;

/// How long and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The shortest sleep, and the first cap.
    pub min_delay: Duration,
    /// The largest cap.
    pub max_delay: Duration,
    /// No new attempt starts after this much time since the first one.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            give_up_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn never() -> Self {
        Self { min_delay: Duration::ZERO, max_delay: Duration::ZERO, give_up_after: Duration::ZERO }
    }
}

/// The sleeps between attempts of one operation.
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    cap: Duration,
    rng: SmallRng,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy, cap: policy.min_delay, rng: SmallRng::from_entropy() }
    }

    /// The sleep before the next attempt, or `None` when `elapsed` since the first attempt means
    /// giving up. A sleep never reaches past the deadline.
    pub fn next_delay(&mut self, elapsed: Duration) -> Option<Duration> {
        let remaining = self.policy.give_up_after.checked_sub(elapsed).filter(|r| !r.is_zero())?;
        let delay = if self.cap > self.policy.min_delay {
            self.rng.gen_range(self.policy.min_delay..=self.cap)
        } else {
            self.policy.min_delay
        };
        self.cap = (self.cap * 2).min(self.policy.max_delay);
        Some(delay.min(remaining))
    }

    /// The cap the next delay is drawn under.
    pub fn cap(&self) -> Duration {
        self.cap
    }
}

/// Runs `attempt` until it succeeds, fails with a non-retryable error, or the policy gives up; the
/// last error is returned.
pub async fn with_retry<T, F, Fut>(policy: RetryPolicy, what: &str, mut attempt: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let started = Instant::now();
    let mut backoff = Backoff::new(policy);
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retryable() => error,
            Err(error) => return Err(error),
        };
        let Some(delay) = backoff.next_delay(started.elapsed()) else {
            return Err(error);
        };
        tracing::warn!(operation = what, "{error}; retrying in {:.1} s", delay.as_secs_f64());
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn caps_double_from_one_second_to_sixty() {
        let mut backoff = Backoff::new(RetryPolicy::default());
        let mut caps = Vec::new();
        for _ in 0..9 {
            caps.push(backoff.cap().as_secs());
            let delay = backoff.next_delay(Duration::ZERO).unwrap();
            assert!(delay >= Duration::from_secs(1) && delay.as_secs() <= caps.last().copied().unwrap());
        }
        assert_eq!(caps, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn gives_up_after_three_hundred_seconds_and_never_sleeps_past_it() {
        let mut backoff = Backoff::new(RetryPolicy::default());
        for _ in 0..8 {
            backoff.next_delay(Duration::ZERO);
        }
        assert!(backoff.next_delay(Duration::from_secs(299)).unwrap() <= Duration::from_secs(1));
        assert_eq!(backoff.next_delay(Duration::from_secs(300)), None);
        assert_eq!(backoff.next_delay(Duration::from_secs(301)), None);
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            give_up_after: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_until_success() {
        let calls = AtomicU32::new(0);
        let result = with_retry(fast(), "test", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(ClientError::IncompleteUpload { sent: 2, stored: 1 }),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
    }

    #[tokio::test]
    async fn does_not_retry_permanent_errors() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = with_retry(fast(), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ClientError::Usage("bad".into()))
        })
        .await;
        assert!(matches!(result, Err(ClientError::Usage(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn returns_the_last_error_when_giving_up() {
        let policy = RetryPolicy { give_up_after: Duration::from_millis(20), ..fast() };
        let result: Result<(), _> =
            with_retry(policy, "test", || async { Err(ClientError::IncompleteUpload { sent: 1, stored: 0 }) }).await;
        assert!(matches!(result, Err(ClientError::IncompleteUpload { sent: 1, stored: 0 })));
    }
}
