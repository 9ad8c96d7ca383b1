//! The `deltas` function: the container-image Lambda that runs update-repo jobs from their own SQS
//! queue (`deltas-queue-url`), generating static deltas with libostree, so that only this image
//! links it (DESIGN property 5). Same job code and backends as the worker function; it checks
//! at start that libostree can create a repository in the function's scratch space.

use std::sync::Arc;

use anyhow::Context;
use flatbucket_deltas::LibostreeGenerator;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    flatbucket_functions::init_tracing();
    let scratch = std::env::temp_dir().join("flatbucket-deltas");
    check_libostree(&scratch).map_err(|e| format!("{e:#}"))?;
    let app = flatbucket_functions::load_app().await.map_err(|e| format!("{e:#}"))?;
    flatbucket_functions::run_worker(app.with_delta_generator(Arc::new(LibostreeGenerator::new()))).await
}

/// Creates (or opens) an archive repository at `path` through libostree.
fn check_libostree(path: &std::path::Path) -> anyhow::Result<()> {
    let repo = ostree::Repo::new_for_path(path);
    repo.create(ostree::RepoMode::Archive, ostree::gio::Cancellable::NONE)
        .with_context(|| format!("libostree cannot create a repository at {}", path.display()))?;
    tracing::info!(path = %path.display(), "libostree ready");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libostree_creates_an_archive_repository() {
        let dir = tempfile::tempdir().unwrap();
        check_libostree(dir.path()).unwrap();
        let config = std::fs::read_to_string(dir.path().join("config")).unwrap();
        assert!(config.contains("mode=archive-z2"), "{config}");
    }
}
