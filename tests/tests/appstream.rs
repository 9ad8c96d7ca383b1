//! Appstream, screenshots and `ostree-metadata` end to end: the fixture app (which ships
//! appstream data and icons) published by the commit and publish jobs, then read by the real
//! tools. `flatpak --user` finds the app by its appstream name; the branches hold what the app
//! shipped (its very icon objects) and match what `flatpak build-update-repo` makes of the same
//! refs; `ostree fsck` accepts everything; a `screenshots/<arch>` ref lands in `media/` and one
//! holding a symlink fails the publish; a repository with a collection ID gets an
//! `ostree-metadata` commit with the bindings, made again only when the metadata changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Context};
use flatbucket::app::AppState;
use flatbucket::config::Config;
use flatbucket::domain::job::{CommitContents, JobStatus, PublishContents};
use flatbucket::jobs::run_job;
use flatbucket::repo::appstream::migrate;
use flatbucket::repo::local::resolve_ref;
use flatbucket::repo::summary::{gunzip, parse_summary};
use flatbucket::repo::Checksum;
use flatbucket::store::{LocalStore, ObjectStore};
use flatbucket_tests::fixture::{
    appstream_xml, build_repo, export_app_version, Fixture, APP_ID, APP_NAME, APP_REF, RUNTIME_REF,
};
use flatbucket_tests::publishing::{publish, run_to_end, upload};
use flatbucket_tests::tools::{run, HttpServer, Isolated};
use serde_json::json;

const ARCH: &str = "x86_64";
const COLLECTION_ID: &str = "org.example.Collection";

/// A server state on `dir` with repository `stable` at `dir/repo` (with `extra` settings).
async fn app_state(dir: &Path, extra: serde_json::Value) -> anyhow::Result<AppState> {
    let mut repo = json!({"path": "repo"});
    repo.as_object_mut().context("object")?.extend(extra.as_object().cloned().unwrap_or_default());
    let config = json!({
        "repos": {"stable": repo},
        "database-url": "sqlite:state.sqlite",
        "build-repo-base": "build-repo",
        "secret": "c2VjcmV0"
    });
    std::fs::write(dir.join("config.json"), config.to_string())?;
    Ok(AppState::from_config(Config::load(&dir.join("config.json"), dir)?).await?.0)
}

async fn fixture_refs(
    fixture: &Fixture,
    names: &[&str],
) -> anyhow::Result<(Arc<dyn ObjectStore>, Vec<(String, Checksum)>)> {
    let source: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&fixture.repo)?);
    let mut refs = Vec::new();
    for name in names {
        refs.push(((*name).to_owned(), resolve_ref(&*source, name).await?));
    }
    Ok((source, refs))
}

fn ostree(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    run(Isolated::new()?.ostree().arg(format!("--repo={}", repo.display())).args(args))
}

/// `ostree ls -R -C` of a ref: mode, uid, gid, size, checksum and path of every entry.
fn listing(repo: &Path, rev: &str) -> anyhow::Result<Vec<String>> {
    let out = ostree(repo, &["ls", "-R", "-C", rev])?;
    Ok(out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect())
}

/// The checksum `ostree ls -C` gives for one path of a ref.
fn object_at(repo: &Path, rev: &str, path: &str) -> anyhow::Result<String> {
    let out = ostree(repo, &["ls", "-C", rev, path])?;
    out.split_whitespace().nth(4).map(str::to_owned).context("ls -C prints a checksum")
}

/// The components of a branch's XML, one per line, whitespace between elements dropped.
fn components(xml: &str) -> Vec<String> {
    let flat: String = xml.lines().map(str::trim).collect();
    flat.split("<component ").skip(1).map(|c| format!("<component {}", c.replace("</components>", ""))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatpak_finds_the_app_through_appstream_branches_like_build_update_repos() -> anyhow::Result<()> {
    let fixture = tokio::task::spawn_blocking(|| build_repo(1)).await??;
    let dir = tempfile::tempdir()?;
    let app = app_state(dir.path(), json!({})).await?;
    let (source, refs) = fixture_refs(&fixture, &[RUNTIME_REF, APP_REF]).await?;
    publish(&app, "stable", APP_ID, &source, &refs).await?;
    let repo = dir.path().join("repo");
    ostree(&repo, &["fsck"])?;

    // The branch XML is the app's component with flatpak's bundle, in flatpak's document.
    let xml = ostree(&repo, &["cat", &format!("appstream2/{ARCH}"), "/appstream.xml"])?;
    let metadata = ostree(&repo, &["cat", APP_REF, "/metadata"])?;
    let expected = migrate(appstream_xml().as_bytes(), APP_REF, APP_ID, &metadata)?.context("fixture component")?;
    assert_eq!(xml, flatbucket::repo::appstream::document([expected.components.as_str()]));
    assert!(xml.contains(&format!("<name>{APP_NAME}</name>")), "{xml}");
    let bundle = format!(
        "<bundle type=\"flatpak\" runtime=\"org.example.Platform/{ARCH}/stable\" \
         sdk=\"org.example.Platform/{ARCH}/stable\">{APP_REF}</bundle>"
    );
    assert!(xml.contains(&bundle), "{xml}");
    let old = gunzip(&std::fs::read(checkout(&repo, "appstream.xml.gz"))?, 1 << 20)?;
    assert_eq!(String::from_utf8(old)?, xml, "the checked-out appstream.xml.gz");
    let gz = ostree(&repo, &["ls", &format!("appstream/{ARCH}"), "/appstream.xml.gz"])?;
    assert!(gz.starts_with("-00644"), "{gz}");

    // Icons are the app's own objects, also checked out where flat-manager serves them.
    for size in ["64x64", "128x128"] {
        let shipped = object_at(&repo, APP_REF, &format!("/files/share/app-info/icons/flatpak/{size}/{APP_ID}.png"))?;
        for branch in ["appstream", "appstream2"] {
            let icon = object_at(&repo, &format!("{branch}/{ARCH}"), &format!("/icons/{size}/{APP_ID}.png"))?;
            assert_eq!(icon, shipped, "{branch} {size} icon");
        }
        let bytes = std::fs::read(checkout(&repo, &format!("icons/{size}/{APP_ID}.png")))?;
        assert!(bytes.starts_with(b"\x89PNG"), "checked-out {size} icon");
    }

    // The same refs through `flatpak build-update-repo`: the same trees, the same components.
    let theirs = dir.path().join("theirs");
    run(std::process::Command::new("cp").arg("-a").arg(&repo).arg(&theirs))?;
    for branch in ["appstream", "appstream2"] {
        std::fs::remove_dir_all(theirs.join("refs/heads").join(branch))?;
    }
    run(Isolated::new()?.flatpak().arg("build-update-repo").arg(&theirs))?;
    for branch in [format!("appstream/{ARCH}"), format!("appstream2/{ARCH}")] {
        let (ours, oracle) = (listing(&repo, &branch)?, listing(&theirs, &branch)?);
        // The XML's checksum (and so the root tree's) may differ in whitespace; nothing else.
        let names = |l: &[String]| -> Vec<String> {
            l.iter()
                .map(|e| match e.rsplit_once(' ') {
                    Some((_, path)) if path == "/" || path.starts_with("/appstream.xml") => path.to_owned(),
                    _ => e.clone(),
                })
                .collect()
        };
        assert_eq!(names(&ours), names(&oracle), "{branch} tree");
    }
    let their_xml = ostree(&theirs, &["cat", &format!("appstream2/{ARCH}"), "/appstream.xml"])?;
    assert_eq!(components(&xml), components(&their_xml), "components");
    let show = ostree(&repo, &["show", "--print-metadata-key=ostree.ref-binding", &format!("appstream2/{ARCH}")])?;
    assert_eq!(show.trim(), format!("['appstream2/{ARCH}']"));

    // A real client finds the app by its appstream name.
    let server = HttpServer::serve(&repo)?;
    let client = Isolated::new()?;
    run(client.flatpak().args(["--user", "remote-add", "--no-gpg-verify", "test", &server.url()]))?;
    let apps = run(client.flatpak().args(["--user", "remote-ls", "--app", "--columns=application", "test"]))?;
    assert!(apps.lines().any(|l| l.trim() == APP_ID), "remote-ls --app: {apps}");
    run(client.flatpak().args(["--user", "update", "--appstream", "test"]))?;
    // libappstream 0.16 (Debian 12) neither case-folds nor splits a query: `flatpak search "Example
    // Hello"` finds nothing even in a repository `flatpak build-update-repo` wrote, so the name is
    // searched by its words, lowercase.
    for word in APP_NAME.split(' ').map(str::to_lowercase) {
        let found = run(client.flatpak().args(["--user", "search", "--columns=application,name", &word]))?;
        assert!(found.contains(APP_ID) && found.contains(APP_NAME), "flatpak search {word:?}: {found}");
    }

    // Publishing the same appstream data again leaves the branches where they are.
    let before = resolve_ref(&LocalStore::new(&repo)?, &format!("appstream2/{ARCH}")).await?;
    let fixture_dir = fixture.dir.path().to_owned();
    let fixture_repo = fixture.repo.clone();
    tokio::task::spawn_blocking(move || export_app_version(&fixture_repo, &fixture_dir, 2)).await??;
    let (source, refs) = fixture_refs(&fixture, &[APP_REF]).await?;
    publish(&app, "stable", APP_ID, &source, &refs).await?;
    let after = resolve_ref(&LocalStore::new(&repo)?, &format!("appstream2/{ARCH}")).await?;
    assert_eq!(before, after, "an unchanged appstream tree makes no commit");
    ostree(&repo, &["fsck"])?;
    Ok(())
}

fn checkout(repo: &Path, path: &str) -> PathBuf {
    repo.join(format!("appstream/{ARCH}/{path}"))
}

/// Commits the directory `tree` on `screenshots/<arch>` in the fixture repository.
fn commit_screenshots(fixture: &Fixture, tree: &Path) -> anyhow::Result<()> {
    let repo = format!("--repo={}", fixture.repo.display());
    let branch = format!("--branch=screenshots/{ARCH}");
    run(Isolated::new()?
        .ostree()
        .args(["commit", &repo, &branch, "--owner-uid=0", "--owner-gid=0"])
        .arg(format!("--tree=dir={}", tree.display())))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_land_in_media_and_links_are_refused() -> anyhow::Result<()> {
    let fixture = tokio::task::spawn_blocking(|| build_repo(1)).await??;
    let shots = fixture.dir.path().join("shots");
    std::fs::create_dir_all(shots.join(format!("{APP_ID}/1")))?;
    std::fs::write(shots.join(format!("{APP_ID}/1/main.png")), b"\x89PNG screenshot")?;
    commit_screenshots(&fixture, &shots)?;
    let dir = tempfile::tempdir()?;
    let app = app_state(dir.path(), json!({})).await?;
    let screenshots = format!("screenshots/{ARCH}");
    let (source, refs) = fixture_refs(&fixture, &[RUNTIME_REF, APP_REF, &screenshots]).await?;
    publish(&app, "stable", APP_ID, &source, &refs).await?;
    let repo = dir.path().join("repo");
    assert_eq!(std::fs::read(repo.join(format!("media/{APP_ID}/1/main.png")))?, b"\x89PNG screenshot");
    assert!(!repo.join("refs/heads").join(&screenshots).exists(), "screenshots refs are not imported");

    // A screenshots tree with a symlink fails the publish, and nothing of it is extracted.
    std::fs::write(shots.join(format!("{APP_ID}/1/second.png")), b"second")?;
    std::os::unix::fs::symlink("/etc/passwd", shots.join(format!("{APP_ID}/1/stolen.png")))?;
    commit_screenshots(&fixture, &shots)?;
    let (source, refs) = fixture_refs(&fixture, &[APP_REF, &screenshots]).await?;
    let build = upload(&app, "stable", APP_ID, &source, &refs).await?;
    let commit = CommitContents { build, endoflife: None, endoflife_rebase: None, token_type: None };
    run_to_end(&app, app.state.start_commit(&commit).await?.id).await?;
    let job = app.state.start_publish(&PublishContents { build }).await?.id;
    let _ = run_job(&app, job).await;
    let job = app.state.get_job(job).await?;
    ensure!(job.status != JobStatus::Ended, "a symlink in a screenshots ref must fail the publish");
    assert!(job.log.contains("stolen.png is not a regular file"), "{}", job.log);
    assert!(!repo.join(format!("media/{APP_ID}/1/second.png")).exists());
    assert!(!repo.join(format!("media/{APP_ID}/1/stolen.png")).exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_repos_carry_an_ostree_metadata_commit() -> anyhow::Result<()> {
    let fixture = tokio::task::spawn_blocking(|| build_repo(1)).await??;
    let dir = tempfile::tempdir()?;
    let app = app_state(dir.path(), json!({"collection-id": COLLECTION_ID})).await?;
    let (source, refs) = fixture_refs(&fixture, &[RUNTIME_REF, APP_REF]).await?;
    publish(&app, "stable", APP_ID, &source, &refs).await?;
    let repo = dir.path().join("repo");
    ostree(&repo, &["fsck"])?;
    let key = |key: &str| ostree(&repo, &["show", &format!("--print-metadata-key={key}"), "ostree-metadata"]);
    assert_eq!(key("ostree.ref-binding")?.trim(), "['ostree-metadata']");
    assert_eq!(key("ostree.collection-binding")?.trim(), format!("'{COLLECTION_ID}'"));
    assert_eq!(key("ostree.summary.collection-id")?.trim(), format!("'{COLLECTION_ID}'"));
    assert_eq!(ostree(&repo, &["ls", "ostree-metadata"])?.lines().count(), 1, "an empty tree");
    let summary = parse_summary(&std::fs::read(repo.join("summary"))?)?;
    let tip = resolve_ref(&LocalStore::new(&repo)?, "ostree-metadata").await?;
    assert!(summary.refs.iter().any(|(name, _, commit, _)| name == "ostree-metadata" && *commit == tip));

    // Another publish with the same repository metadata keeps the commit.
    let (source, refs) = fixture_refs(&fixture, &[APP_REF]).await?;
    publish(&app, "stable", APP_ID, &source, &refs).await?;
    assert_eq!(resolve_ref(&LocalStore::new(&repo)?, "ostree-metadata").await?, tip);
    ostree(&repo, &["fsck"])?;
    Ok(())
}
