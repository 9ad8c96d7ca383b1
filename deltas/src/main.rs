//! The `deltas` function: the container-image Lambda that generates static deltas with libostree,
//! kept apart so that only this binary links it (DESIGN property 5). In this release it checks at
//! start that libostree can create a repository in the function's scratch space and refuses
//! requests with a clear error: delta generation itself arrives with the static-delta work, and
//! nothing invokes this function yet.

use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;

/// A request to generate the delta of one ref between two commits of a repository.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct DeltaRequest {
    repo: String,
    #[serde(rename = "ref")]
    ref_name: String,
    from: Option<String>,
    to: String,
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    flatbucket_functions::init_tracing();
    let scratch = std::env::temp_dir().join("flatbucket-deltas");
    check_libostree(&scratch).map_err(|e| format!("{e:#}"))?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<DeltaRequest>| async move {
        let request = event.payload;
        tracing::warn!(repo = %request.repo, r#ref = %request.ref_name, from = ?request.from, to = %request.to,
            "refusing a static-delta request: generation is not part of this release");
        Err::<serde_json::Value, _>(lambda_runtime::Error::from("static delta generation is not part of this release"))
    }))
    .await
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
