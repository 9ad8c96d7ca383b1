//! The commit options end to end, with a real `flatpak --user` client updating from the served
//! repository: `--end-of-life` shows its message on update, `--end-of-life-rebase` moves the
//! installed app to its new id, `--token-type` lands in the commit and the summary (and the client
//! then wants a token), and `add_extra_ids` binds the published commit to the extra collections
//! the way `flatpak build-commit-from --extra-collection-id` does, in a repository whose summary
//! carries its collection id and whose remote a client binds to it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::Context;
use flatbucket::app::AppState;
use flatbucket::config::Config;
use flatbucket::domain::job::{CommitContents, PublishContents};
use flatbucket::repo::local::resolve_ref;
use flatbucket::repo::Checksum;
use flatbucket::store::{LocalStore, ObjectStore};
use flatbucket_tests::fixture::{
    build_repo, export_app_version, install_and_run, Fixture, APP_ID, APP_REF, RUNTIME_REF,
};
use flatbucket_tests::gpg::GnuPg;
use flatbucket_tests::publishing::{run_to_end, upload};
use flatbucket_tests::tools::{run, HttpServer, Isolated};
use serde_json::json;

const NEW_ID: &str = "org.example.Renamed";
const NEW_REF: &str = "app/org.example.Renamed/x86_64/stable";
const COLLECTION_ID: &str = "org.example.Stable";

/// A repository `stable` in a temporary directory, its state and the fixture to publish from.
struct Setup {
    app: AppState,
    dir: tempfile::TempDir,
    fixture: Fixture,
    source: Arc<dyn ObjectStore>,
}

impl Setup {
    async fn new(repo: serde_json::Value, gpg_homedir: Option<&Path>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut repo = repo;
        repo["path"] = json!(dir.path().join("repo"));
        let mut config = json!({
            "repos": {"stable": repo},
            "database-url": format!("sqlite:{}", dir.path().join("state.sqlite").display()),
            "build-repo-base": dir.path().join("build-repo"),
            "secret": "c2VjcmV0"
        });
        if let Some(homedir) = gpg_homedir {
            config["gpg-homedir"] = json!(homedir);
        }
        let (app, _) = AppState::from_config(Config::parse(&config.to_string())?).await?;
        let fixture = tokio::task::spawn_blocking(|| build_repo(1)).await??;
        let source: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&fixture.repo)?);
        Ok(Self { app, dir, fixture, source })
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// The fixture's current commits of `names`.
    async fn refs(&self, names: &[&str]) -> anyhow::Result<Vec<(String, Checksum)>> {
        let mut refs = Vec::new();
        for name in names {
            refs.push(((*name).to_owned(), resolve_ref(&*self.source, name).await?));
        }
        Ok(refs)
    }

    /// Uploads `names` as a build of `app_id` with `extra_ids`, commits it with `options` and
    /// publishes it.
    async fn publish(&self, app_id: &str, names: &[&str], extra_ids: &[&str], options: Options) -> anyhow::Result<()> {
        let app = &self.app;
        let build = upload(app, "stable", app_id, &self.source, &self.refs(names).await?).await?;
        if !extra_ids.is_empty() {
            app.state.add_extra_ids(build, &extra_ids.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>()).await?;
        }
        let commit = CommitContents {
            build,
            endoflife: options.endoflife.map(str::to_owned),
            endoflife_rebase: options.endoflife_rebase.map(str::to_owned),
            token_type: options.token_type,
        };
        run_to_end(app, app.state.start_commit(&commit).await?.id).await?;
        run_to_end(app, app.state.start_publish(&PublishContents { build }).await?.id).await?;
        Ok(())
    }

    /// Exports version `version` of the fixture app into the fixture repository.
    async fn export_version(&self, version: u32) -> anyhow::Result<()> {
        let (repo, work) = (self.fixture.repo.clone(), self.fixture.dir.path().to_owned());
        tokio::task::spawn_blocking(move || export_app_version(&repo, &work, version)).await?
    }

    /// `ostree show --print-metadata-key=<key>` of `name` in the published repository.
    fn metadata(&self, name: &str, key: &str) -> anyhow::Result<String> {
        let repo = format!("--repo={}", self.repo().display());
        Ok(run(Command::new("ostree").args(["show", &repo, &format!("--print-metadata-key={key}"), name]))?
            .trim()
            .to_owned())
    }
}

/// What the commit job is asked for.
#[derive(Default, Clone, Copy)]
struct Options {
    endoflife: Option<&'static str>,
    endoflife_rebase: Option<&'static str>,
    token_type: Option<i32>,
}

/// Runs `cmd`; returns whether it succeeded and everything it printed.
fn printed(cmd: &mut Command) -> anyhow::Result<(bool, String)> {
    let output = cmd.stdin(Stdio::null()).output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Ok((output.status.success(), text))
}

fn update(client: &Isolated) -> anyhow::Result<(bool, String)> {
    printed(client.flatpak().args(["--user", "update", "-y", "--noninteractive"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_life_message_shows_on_update() -> anyhow::Result<()> {
    let setup = Setup::new(json!({}), None).await?;
    setup.publish(APP_ID, &[RUNTIME_REF, APP_REF], &[], Options::default()).await?;
    let server = HttpServer::serve(&setup.repo())?;
    let client = Isolated::new()?;
    assert!(install_and_run(&client, &server.url())?.contains("Hello from version 1"));

    setup.export_version(2).await?;
    let reason = "This app is no longer maintained";
    setup.publish(APP_ID, &[APP_REF], &[], Options { endoflife: Some(reason), ..Options::default() }).await?;
    assert_eq!(setup.metadata(APP_REF, "ostree.endoflife")?, format!("'{reason}'"));
    let (updated, output) = update(&client)?;
    assert!(updated, "{output}");
    assert!(output.contains("end-of-life") && output.contains(reason), "{output}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_life_rebase_moves_the_installed_app_to_its_new_id() -> anyhow::Result<()> {
    let setup = Setup::new(json!({}), None).await?;
    setup.publish(APP_ID, &[RUNTIME_REF, APP_REF], &[], Options::default()).await?;
    let server = HttpServer::serve(&setup.repo())?;
    let client = Isolated::new()?;
    assert!(install_and_run(&client, &server.url())?.contains("Hello from version 1"));

    let (repo, work) = (setup.fixture.repo.clone(), setup.fixture.dir.path().to_owned());
    tokio::task::spawn_blocking(move || export_renamed_app(&repo, &work)).await??;
    setup.publish(NEW_ID, &[NEW_REF], &[], Options::default()).await?;
    setup.export_version(2).await?;
    let rebase = Options { endoflife_rebase: Some(NEW_ID), ..Options::default() };
    setup.publish(APP_ID, &[APP_REF], &[], rebase).await?;
    assert_eq!(setup.metadata(APP_REF, "ostree.endoflife-rebase")?, format!("'{NEW_REF}'"));

    let (updated, output) = update(&client)?;
    assert!(updated, "{output}");
    let installed = run(client.flatpak().args(["--user", "list", "--app", "--columns=application"]))?;
    let installed: Vec<&str> = installed.lines().map(str::trim).collect();
    assert_eq!(installed, [NEW_ID], "after the update: {output}");
    let printed = run(client.flatpak().args(["run", "--arch=x86_64", NEW_ID]))?;
    assert!(printed.contains("Hello from the renamed app"), "{printed}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_type_and_collection_ids_reach_commits_summary_and_client() -> anyhow::Result<()> {
    let keys = GnuPg::new()?;
    let key = keys.generate("repo@example.org")?;
    let repo = json!({"gpg-key": key, "collection-id": COLLECTION_ID, "deploy-collection-id": true});
    let setup = Setup::new(repo, Some(keys.path())).await?;
    setup.publish(APP_ID, &[RUNTIME_REF, APP_REF], &["Extra"], Options::default()).await?;

    // The bindings `flatpak build-commit-from --extra-collection-id` writes.
    assert_eq!(setup.metadata(APP_REF, "ostree.collection-binding")?, format!("'{COLLECTION_ID}'"));
    assert_eq!(
        setup.metadata(APP_REF, "ostree.collection-refs-binding")?,
        format!("[('{COLLECTION_ID}', '{APP_REF}'), ('{COLLECTION_ID}.Extra', '{APP_REF}')]")
    );
    let summary =
        run(Command::new("ostree").args(["summary", "--view", &format!("--repo={}", setup.repo().display())]))?;
    assert!(summary.contains(&format!("ostree.summary.collection-id): {COLLECTION_ID}")), "{summary}");

    // A client bound to the collection (ostree checks the commits' bindings against it) installs.
    let server = HttpServer::serve(&setup.repo())?;
    let client = Isolated::new()?;
    let public = keys.export_public(&[&key], &setup.dir.path().join("public.asc"))?;
    let mut add = client.flatpak();
    add.args(["--user", "remote-add", &format!("--collection-id={COLLECTION_ID}")]).arg("--gpg-import").arg(&public);
    run(add.args(["stable", &server.url()]))?;
    run(client.flatpak().args(["--user", "install", "-y", "--noninteractive", "stable", APP_ID]))?;
    let printed = run(client.flatpak().args(["run", "--arch=x86_64", APP_ID]))?;
    assert!(printed.contains("Hello from version 1"), "{printed}");

    // Version 2 needs a token: the commit and the summary say so, and the client asks for one.
    setup.export_version(2).await?;
    setup.publish(APP_ID, &[APP_REF], &[], Options { token_type: Some(1), ..Options::default() }).await?;
    // flatpak stores the int32 little-endian; `ostree show` byte-swaps metadata for display, as
    // ostree's own numbers are big-endian, so 1 prints as 1 << 24 (as for `flatpak build-export
    // --token-type=1`).
    assert_eq!(setup.metadata(APP_REF, "xa.token-type")?, (1 << 24).to_string());
    let listed =
        run(client.flatpak().args(["--user", "remote-ls", "--app", "--columns=application,commit", "stable"]))?;
    assert!(listed.contains(APP_ID), "{listed}");
    let (updated, output) = update(&client)?;
    assert!(!updated && output.contains("authenticator"), "updated without a token: {output}");
    Ok(())
}

/// Exports an app `NEW_ID` on the fixture runtime into `repo`, building it under `work`.
fn export_renamed_app(repo: &Path, work: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let build = work.join("renamed");
    std::fs::create_dir_all(build.join("files/bin"))?;
    let runtime = "org.example.Platform/x86_64/stable";
    let metadata = format!("[Application]\nname={NEW_ID}\nruntime={runtime}\nsdk={runtime}\n");
    std::fs::write(build.join("metadata"), metadata)?;
    let script = build.join("files/bin/hello.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"Hello from the renamed app\"\n")?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let iso = Isolated::new()?;
    run(iso.flatpak().args(["build-finish", "--command=hello.sh"]).arg(&build))?;
    run(iso.flatpak().args(["build-export", "--arch=x86_64"]).arg(repo).arg(&build).arg("stable"))
        .context("exporting the renamed app")?;
    Ok(())
}
