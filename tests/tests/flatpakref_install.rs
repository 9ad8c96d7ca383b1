//! `.flatpakref` and `.flatpakrepo` files with a real `flatpak --user` client, GPG verification
//! on, served by the API's router over HTTP at the configured `base-url` (`/repo/stable/…`, and
//! `/build-repo/<id>/…` falling back to the repository for objects a build lacks). The
//! repository deploys its collection id, so the clients also bind their remote to it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use flatbucket::app::AppState;
use flatbucket::config::Config;
use flatbucket::domain::job::{CommitContents, PublishContents};
use flatbucket::store::{LocalStore, ObjectStore};
use flatbucket_tests::fixture::{build_repo, export_app_version, APP_ID, APP_REF, RUNTIME_REF};
use flatbucket_tests::gpg::GnuPg;
use flatbucket_tests::publishing::{resolve_refs, run_to_end, upload};
use flatbucket_tests::tools::{run, Isolated};
use serde_json::json;

const COLLECTION_ID: &str = "org.example.Stable";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_install_from_the_generated_files_with_verification() -> anyhow::Result<()> {
    let keys = GnuPg::new()?;
    let (repo_key, build_key) = (keys.generate("repo@example.org")?, keys.generate("build@example.org")?);
    let fixture = tokio::task::spawn_blocking(|| build_repo(1)).await??;
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let config = json!({
        "repos": {"stable": {
            "path": dir.path().join("repo"),
            "gpg-key": repo_key,
            "collection-id": COLLECTION_ID,
            "deploy-collection-id": true,
            "suggested-repo-name": "example"
        }},
        "base-url": base_url,
        "gpg-homedir": keys.path(),
        "build-gpg-key": build_key,
        "database-url": format!("sqlite:{}", dir.path().join("state.sqlite").display()),
        "build-repo-base": dir.path().join("build-repo"),
        "secret": "c2VjcmV0"
    });
    let (app, _) = AppState::from_config(Config::parse(&config.to_string())?).await?;
    let router = flatbucket::api::router(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let repo_dir = dir.path().join("repo");
    let repo_signer = app.repo("stable").context("stable")?.signer.clone().context("signed")?;
    let flatpakrepo = std::fs::read_to_string(repo_dir.join("stable.flatpakrepo")).context("written at start-up")?;
    assert!(flatpakrepo.contains(&format!("\nGPGKey={}\n", repo_signer.gpg_key_base64())), "{flatpakrepo}");

    // Commit: the build repository gets `<id>.flatpakref`s signed by the build key.
    let source: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&fixture.repo)?);
    let refs = resolve_refs(&*source, &[RUNTIME_REF, APP_REF]).await?;
    let build = commit(&app, &source, &refs).await?;
    let build_dir = dir.path().join("build-repo").join(build.to_string());
    let build_ref = std::fs::read_to_string(build_dir.join(format!("{APP_ID}.flatpakref")))?;
    let build_key_b64 = app.build_signer.as_ref().context("build signer")?.gpg_key_base64();
    assert!(build_ref.contains(&format!("\nTitle={APP_ID} build nr {build}\n")), "{build_ref}");
    assert!(build_ref.contains(&format!("\nUrl={base_url}/build-repo/{build}\n")), "{build_ref}");
    assert!(build_ref.contains(&format!("\nGPGKey={build_key_b64}\n")), "{build_ref}");
    assert!(build_dir.join("org.example.Platform.flatpakref").exists(), "the runtime gets one too");

    // Publish: `appstream/<id>.flatpakref` of the main variant.
    run_to_end(&app, app.state.start_publish(&PublishContents { build }).await?.id).await?;
    let ref_file = repo_dir.join(format!("appstream/{APP_ID}.flatpakref"));
    let text = std::fs::read_to_string(&ref_file)?;
    assert!(text.contains(&format!("\nDeployCollectionID={COLLECTION_ID}\nSuggestRemoteName=example\n")), "{text}");

    // A client installs and runs the app from the `.flatpakref` alone, verifying our key.
    let from_ref = Isolated::new()?;
    let url = format!("{base_url}/repo/stable/appstream/{APP_ID}.flatpakref");
    run(from_ref.flatpak().args(["--user", "install", "-y", "--noninteractive", "--from", &url]))?;
    assert!(run_app(&from_ref)?.contains("Hello from version 1"));
    check_remote(&from_ref, "example")?;

    // Another adds the remote from the `.flatpakrepo` and installs from it.
    let from_repo = Isolated::new()?;
    let repo_file = format!("{base_url}/repo/stable/stable.flatpakrepo");
    run(from_repo.flatpak().args(["--user", "remote-add", "--from", "stable", &repo_file]))?;
    check_remote(&from_repo, "stable")?;
    run(from_repo.flatpak().args(["--user", "install", "-y", "--noninteractive", "stable", APP_ID]))?;
    assert!(run_app(&from_repo)?.contains("Hello from version 1"));

    // A tester with the runtime installs version 2 from its build's `.flatpakref`, verified with
    // the build key.
    let (fixture_repo, work) = (fixture.repo.clone(), fixture.dir.path().to_owned());
    tokio::task::spawn_blocking(move || export_app_version(&fixture_repo, &work, 2)).await??;
    let build = commit(&app, &source, &resolve_refs(&*source, &[APP_REF]).await?).await?;
    let tester = Isolated::new()?;
    run(tester.flatpak().args(["--user", "remote-add", "--from", "stable", &repo_file]))?;
    run(tester.flatpak().args(["--user", "install", "-y", "--noninteractive", "stable", "org.example.Platform"]))?;
    let url = format!("{base_url}/build-repo/{build}/{APP_ID}.flatpakref");
    run(tester.flatpak().args(["--user", "install", "-y", "--noninteractive", "--from", &url]))?;
    assert!(run_app(&tester)?.contains("Hello from version 2"));

    // Publishing version 2 leaves the unchanged `.flatpakref` alone and updates the first client.
    let written = std::fs::metadata(&ref_file)?.modified()?;
    run_to_end(&app, app.state.start_publish(&PublishContents { build }).await?.id).await?;
    assert_eq!(std::fs::metadata(&ref_file)?.modified()?, written, "rewritten without a change");
    run(from_ref.flatpak().args(["--user", "update", "-y", "--noninteractive"]))?;
    assert!(run_app(&from_ref)?.contains("Hello from version 2"));
    Ok(())
}

/// Uploads and commits `refs`; returns the build id.
async fn commit(
    app: &AppState,
    source: &Arc<dyn ObjectStore>,
    refs: &[(String, flatbucket::repo::Checksum)],
) -> anyhow::Result<i64> {
    let build = upload(app, "stable", APP_ID, source, refs).await?;
    let contents = CommitContents { build, endoflife: None, endoflife_rebase: None, token_type: None };
    run_to_end(app, app.state.start_commit(&contents).await?.id).await?;
    Ok(build)
}

fn run_app(client: &Isolated) -> anyhow::Result<String> {
    run(client.flatpak().args(["run", "--arch=x86_64", APP_ID]))
}

/// The remote `name` verifies GPG signatures and is bound to the deployed collection id.
fn check_remote(client: &Isolated, name: &str) -> anyhow::Result<()> {
    let config = std::fs::read_to_string(client_repo(client).join("config"))?;
    let section = config.split(&format!("[remote \"{name}\"]")).nth(1).context("remote missing")?;
    let section = section.split("\n[").next().unwrap_or_default();
    assert!(section.contains("gpg-verify=true") && section.contains("gpg-verify-summary=true"), "{section}");
    assert!(section.contains(&format!("collection-id={COLLECTION_ID}")), "{section}");
    Ok(())
}

fn client_repo(client: &Isolated) -> std::path::PathBuf {
    Path::new(client.dir.path()).join("flatpak-user/repo")
}
