//! The per-repository publish lease: one writer of a repository's refs and summaries at a time
//! (publish, prune), across processes and, on AWS, across Lambdas. Commits never take it.

use std::time::Duration;

use crate::app::AppState;

/// How long a holder may keep a repository before another worker may take over (a crashed
/// holder's job is re-run with the same holder name, so it gets its lease back at once).
const LEASE_SECS: u64 = 3600;
/// How soon a waiting job first retries; each retry waits twice as long, up to [`LEASE_POLL_MAX`],
/// so a short wait stays short and a long one (behind a delta generation) costs few state reads.
const LEASE_POLL: Duration = Duration::from_millis(25);
const LEASE_POLL_MAX: Duration = Duration::from_millis(400);

/// Runs `work` while holding `repo`'s publish lease as `holder`.
pub async fn with_publish_lease<T>(
    app: &AppState,
    repo: &str,
    holder: &str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    with_lease(app, &format!("publish/{repo}"), holder, work).await
}

/// Runs `work` while holding the lease `lease` as `holder` (the update-repo job serialises its
/// delta generation per repository with `deltas/<repo>`, apart from publishes).
pub async fn with_lease<T>(
    app: &AppState,
    lease: &str,
    holder: &str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let mut pause = LEASE_POLL;
    while !app.state.acquire_lease(lease, holder, LEASE_SECS).await? {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LEASE_POLL_MAX);
    }
    let result = work.await;
    if let Err(e) = app.state.release_lease(lease, holder).await {
        tracing::warn!(error = %e, %lease, "could not release the lease; it expires by itself");
    }
    result
}
