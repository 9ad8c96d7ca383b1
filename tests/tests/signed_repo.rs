//! A signed repository end to end: the fixture app published by the commit and publish jobs into
//! a repository with a `gpg-key-file`, then checked by the real verifiers. A `flatpak --user`
//! client trusting only our public key adds the remote, installs, runs and updates; one trusting
//! another key, or reading an altered summary, is refused; `ostree pull` verifies the commit
//! signatures. Keys are made by `gpg` in throwaway homes.

use std::path::Path;
use std::sync::Arc;

use anyhow::{ensure, Context};
use flatbucket::app::AppState;
use flatbucket::config::Config;
use flatbucket::domain::job::{CommitContents, PublishContents};
use flatbucket::repo::local::resolve_ref;
use flatbucket::repo::publish::index_signatures_key;
use flatbucket::repo::sign::{read_signatures, Signer};
use flatbucket::repo::{Checksum, ObjectName, ObjectType};
use flatbucket::store::{LocalStore, ObjectStore};
use flatbucket_tests::fixture::{build_repo, export_app_version, update_and_run, APP_ID, APP_REF, RUNTIME_REF};
use flatbucket_tests::gpg::GnuPg;
use flatbucket_tests::publishing::{publish, resolve_refs, run_to_end, upload};
use flatbucket_tests::tools::{run, HttpServer, Isolated};
use serde_json::json;

const REMOTE: &str = "signed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_verify_what_a_signed_repository_publishes() -> anyhow::Result<()> {
    let (keys, stranger) = (GnuPg::new()?, GnuPg::new()?);
    let (ours, theirs) = (keys.generate("repo@example.org")?, stranger.generate("stranger@example.org")?);
    let fixture = tokio::task::spawn_blocking(|| build_repo(1)).await??;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("keys"))?;
    keys.export_secret(&[&ours], &dir.path().join("keys/repo.asc"))?;
    let public = keys.export_public(&[&ours], &dir.path().join("public.asc"))?;
    let wrong = stranger.export_public(&[&theirs], &dir.path().join("wrong.asc"))?;

    // The key file's path is relative, resolved like the other paths of the configuration.
    let config = json!({
        "repos": {"stable": {"path": "repo", "gpg-key-file": "keys/repo.asc"}},
        "database-url": "sqlite:state.sqlite",
        "build-repo-base": "build-repo",
        "secret": "c2VjcmV0"
    });
    std::fs::write(dir.path().join("config.json"), config.to_string())?;
    let (app, _) = AppState::from_config(Config::load(&dir.path().join("config.json"), dir.path())?).await?;
    let signer = app.repo("stable").context("stable")?.signer.clone().context("the repository is signed")?;
    assert_eq!(signer.fingerprints(), std::slice::from_ref(&ours));

    let source: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&fixture.repo)?);
    let v1 = resolve_refs(&*source, &[RUNTIME_REF, APP_REF]).await?;
    publish(&app, "stable", APP_ID, &source, &v1).await?;
    let repo = dir.path().join("repo");
    let store = LocalStore::new(&repo)?;
    check_signed(&store).await?;
    resigning_adds_only_missing_keys(&keys, &ours, &store).await?;
    let first_index = Checksum::of(&std::fs::read(repo.join("summary.idx"))?);

    // flatpak, trusting our key only, adds, installs and runs.
    let server = HttpServer::serve(&repo)?;
    let client = Isolated::new()?;
    run(&mut remote_add(&client, &public, &server.url()))?;
    run(client.flatpak().args(["--user", "install", "-y", "--noninteractive", "--arch=x86_64", REMOTE, APP_ID]))?;
    let output = run(client.flatpak().args(["run", "--arch=x86_64", APP_ID]))?;
    assert!(output.contains("Hello from version 1"), "v1 printed {output:?}");

    // Trusting another key, flatpak refuses the remote.
    let refused = Isolated::new()?;
    let error = run(&mut remote_add(&refused, &wrong, &server.url())).unwrap_err().to_string();
    assert!(error.contains("public key not found"), "{error}");

    // ostree verifies the summary and commit signatures on pull, and refuses the commit's under
    // another key (summary unchecked, so the commit signature is what fails).
    let origin = format!("file://{}", repo.display());
    let pulled = OstreeClient::new(&public, &origin, Summary::Verified)?;
    run(&mut pulled.pull(APP_REF))?;
    let shown = run(pulled.ostree().args(["show", "--gpg-verify-remote=origin", APP_REF]))?;
    assert!(shown.contains("Good signature"), "{shown}");
    let error =
        run(&mut OstreeClient::new(&wrong, &origin, Summary::Unchecked)?.pull(APP_REF)).unwrap_err().to_string();
    assert!(error.contains("public key not found"), "{error}");

    // Version 2: one new signed commit, and the previous index's signature is retired.
    let (fixture_repo, work) = (fixture.repo.clone(), fixture.dir.path().to_owned());
    tokio::task::spawn_blocking(move || export_app_version(&fixture_repo, &work, 2)).await??;
    let v2 = resolve_refs(&*source, &[APP_REF]).await?;
    publish(&app, "stable", APP_ID, &source, &v2).await?;
    check_signed(&store).await?;
    let ledger = store.list(".flatbucket/retired/").await?;
    let retired = ledger.iter().map(|key| std::fs::read_to_string(repo.join(key))).collect::<Result<String, _>>()?;
    assert!(retired.lines().any(|key| key == index_signatures_key(&first_index)), "retired: {retired}");
    let output = update_and_run(&client)?;
    assert!(output.contains("Hello from version 2"), "v2 printed {output:?}");

    // One byte flipped in the served `summary`: ostree's summary check refuses it; in
    // `summary.idx`: flatpak refuses the remote.
    for (file, verify) in [("summary", Verifier::Ostree), ("summary.idx", Verifier::Flatpak)] {
        let path = repo.join(file);
        let good = std::fs::read(&path)?;
        let mut altered = good.clone();
        altered[good.len() / 2] ^= 1;
        std::fs::write(&path, &altered)?;
        let error = match verify {
            Verifier::Ostree => run(&mut OstreeClient::new(&public, &origin, Summary::Verified)?.summary()),
            Verifier::Flatpak => run(&mut remote_add(&Isolated::new()?, &public, &server.url())),
        };
        std::fs::write(&path, &good)?;
        let error = error.map(|out| format!("accepted: {out}")).unwrap_err().to_string();
        assert!(error.contains("BAD signature"), "altered {file}: {error}");
    }
    run(&mut OstreeClient::new(&public, &origin, Summary::Verified)?.summary())?;
    Ok(())
}

/// A bad key stops the start with a message naming the repository and the setting; flat-manager's
/// `gpg-homedir` + `gpg-key` load the key from a GnuPG home.
#[tokio::test]
async fn keys_load_at_start_or_the_start_fails() -> anyhow::Result<()> {
    let keys = GnuPg::new()?;
    let fingerprint = keys.generate("homedir@example.org")?;
    let dir = tempfile::tempdir()?;
    let config = |repo: serde_json::Value| {
        let json = json!({
            "repos": {"stable": repo},
            "gpg-homedir": keys.path(),
            "database-url": format!("sqlite:{}", dir.path().join("state.sqlite").display()),
            "build-repo-base": dir.path().join("build-repo"),
            "secret": "c2VjcmV0"
        });
        Config::parse(&json.to_string())
    };
    let repo = dir.path().join("repo");
    let (app, _) = AppState::from_config(config(json!({"path": repo, "gpg-key": "homedir@example.org"}))?).await?;
    let signer = app.repo("stable").context("stable")?.signer.clone().context("signed")?;
    assert_eq!(signer.fingerprints(), [fingerprint]);

    let garbage = dir.path().join("garbage.asc");
    std::fs::write(
        &garbage,
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nnot a key\n-----END PGP PRIVATE KEY BLOCK-----\n",
    )?;
    for (repo, expected) in [
        (json!({"path": repo, "gpg-key-file": garbage}), "gpg-key-file"),
        (json!({"path": repo, "gpg-key-file": dir.path().join("missing.asc")}), "cannot read"),
        (json!({"path": repo, "gpg-key": "nobody@example.org"}), "gpg-key nobody@example.org"),
    ] {
        let error = format!("{:#}", AppState::from_config(config(repo)?).await.err().context("started")?);
        assert!(error.contains("repos.stable") && error.contains(expected), "{error}");
    }
    Ok(())
}

/// flat-manager's settings: `gpg-key` and `build-gpg-key` name keys in `gpg-homedir`. The commit
/// job signs the build repository with the build key, the publish job the repository with its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_repositories_are_signed_with_the_build_key() -> anyhow::Result<()> {
    let keys = GnuPg::new()?;
    let (repo_key, build_key) = (keys.generate("repo@example.org")?, keys.generate("build@example.org")?);
    let fixture = tokio::task::spawn_blocking(|| build_repo(1)).await??;
    let dir = tempfile::tempdir()?;
    let repo_public = keys.export_public(&[&repo_key], &dir.path().join("repo.asc"))?;
    let build_public = keys.export_public(&[&build_key], &dir.path().join("build.asc"))?;
    let config = json!({
        "repos": {"stable": {"path": dir.path().join("repo"), "gpg-key": repo_key}},
        "gpg-homedir": keys.path(),
        "build-gpg-key": build_key,
        "database-url": format!("sqlite:{}", dir.path().join("state.sqlite").display()),
        "build-repo-base": dir.path().join("build-repo"),
        "secret": "c2VjcmV0"
    });
    let (app, _) = AppState::from_config(Config::parse(&config.to_string())?).await?;
    assert_eq!(app.build_signer.as_ref().context("build signer")?.fingerprints(), [build_key]);

    let source: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&fixture.repo)?);
    let refs = resolve_refs(&*source, &[RUNTIME_REF, APP_REF]).await?;
    let build = upload(&app, "stable", APP_ID, &source, &refs).await?;
    let commit = CommitContents { build, endoflife: None, endoflife_rebase: None, token_type: None };
    run_to_end(&app, app.state.start_commit(&commit).await?.id).await?;
    // A first build holds every object it uses, so its directory is a whole repository.
    let build_repo = format!("file://{}", dir.path().join("build-repo").join(build.to_string()).display());
    check_signed(&LocalStore::new(dir.path().join("build-repo").join(build.to_string()))?).await?;
    run(&mut OstreeClient::new(&build_public, &build_repo, Summary::Verified)?.pull(APP_REF))?;
    let error = run(&mut OstreeClient::new(&repo_public, &build_repo, Summary::Unchecked)?.pull(APP_REF))
        .unwrap_err()
        .to_string();
    assert!(error.contains("public key not found"), "{error}");

    run_to_end(&app, app.state.start_publish(&PublishContents { build }).await?.id).await?;
    let repo = format!("file://{}", dir.path().join("repo").display());
    check_signed(&LocalStore::new(dir.path().join("repo"))?).await?;
    run(&mut OstreeClient::new(&repo_public, &repo, Summary::Verified)?.pull(APP_REF))?;
    let error =
        run(&mut OstreeClient::new(&build_public, &repo, Summary::Unchecked)?.pull(APP_REF)).unwrap_err().to_string();
    assert!(error.contains("public key not found"), "{error}");
    Ok(())
}

/// On S3 (moto): the signature files are public with the right `Cache-Control`, and flatpak,
/// trusting our key only, installs from the bucket.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatpak_installs_from_a_signed_bucket() -> anyhow::Result<()> {
    let keys = GnuPg::new()?;
    let ours = keys.generate("bucket@example.org")?;
    let fixture = tokio::task::spawn_blocking(|| build_repo(1)).await??;
    let dir = tempfile::tempdir()?;
    let key_file = keys.export_secret(&[&ours], &dir.path().join("repo.asc"))?;
    let public = keys.export_public(&[&ours], &dir.path().join("public.asc"))?;
    let aws = flatbucket_tests::aws::resources().await?;
    let mut config = json!({
        "repos": {"stable": {"path": "stable", "gpg-key-file": key_file}},
        "build-repo-base": dir.path().join("build-repo"),
        "secret": "c2VjcmV0"
    });
    aws.configure(&mut config);
    let (app, _) = AppState::from_config(Config::parse(&config.to_string())?).await?;
    let source: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&fixture.repo)?);
    let refs = resolve_refs(&*source, &[RUNTIME_REF, APP_REF]).await?;
    publish(&app, "stable", APP_ID, &source, &refs).await?;

    let url = format!("{}/{}/stable/", flatbucket_tests::aws::endpoint(), aws.public);
    let http = reqwest::Client::new();
    let index = http.get(format!("{url}summary.idx")).send().await?.error_for_status()?.bytes().await?;
    for (file, immutable) in [
        (index_signatures_key(&Checksum::of(&index)), true),
        ("summary.idx.sig".into(), false),
        ("summary.sig".into(), false),
    ] {
        let answer = http.get(format!("{url}{file}")).send().await?.error_for_status()?;
        let cache = answer.headers().get("cache-control").context("no Cache-Control")?.to_str()?.to_owned();
        assert_eq!(cache.contains("immutable"), immutable, "{file}: {cache}");
    }
    let client = Isolated::new()?;
    run(&mut remote_add(&client, &public, &url))?;
    run(client.flatpak().args(["--user", "install", "-y", "--noninteractive", "--arch=x86_64", REMOTE, APP_ID]))?;
    let output = run(client.flatpak().args(["run", "--arch=x86_64", APP_ID]))?;
    assert!(output.contains("Hello from version 1"), "printed {output:?}");
    Ok(())
}

/// Signing a published commit again adds nothing; a signer with one more key (a rotation) adds
/// that key's signature only.
async fn resigning_adds_only_missing_keys(keys: &GnuPg, ours: &str, store: &LocalStore) -> anyhow::Result<()> {
    let head = resolve_ref(store, APP_REF).await?;
    let commit = std::fs::read(store.local_path(&ObjectName::new(head, ObjectType::Commit).key()).context("local")?)?;
    let meta = std::fs::read(store.local_path(&ObjectName::new(head, ObjectType::CommitMeta).key()).context("local")?)?;
    let signed = read_signatures(&meta)?;
    let next = keys.generate("next@example.org")?;
    let path = keys.export_secret(&[ours], &keys.path().join("ours.asc"))?;
    let same = Signer::from_armored(&std::fs::read_to_string(path)?)?;
    ensure!(same.sign_missing(&signed, &commit)?.is_empty(), "a key signed twice");
    let path = keys.export_secret(&[ours, &next], &keys.path().join("rotation.asc"))?;
    let rotation = Signer::from_armored(&std::fs::read_to_string(path)?)?;
    ensure!(rotation.sign_missing(&signed, &commit)?.len() == 1, "the new key alone signs");
    Ok(())
}

enum Verifier {
    Ostree,
    Flatpak,
}

/// `flatpak remote-add` of `url` trusting only the keys in `keyring`.
fn remote_add(client: &Isolated, keyring: &Path, url: &str) -> std::process::Command {
    let mut cmd = client.flatpak();
    cmd.args(["--user", "remote-add"]).arg(format!("--gpg-import={}", keyring.display())).args([REMOTE, url]);
    cmd
}

/// Every ref head has exactly one signature per key in its `.commitmeta` (a re-signing never
/// grows it), and the current index's digest-named signature is there.
async fn check_signed(store: &LocalStore) -> anyhow::Result<()> {
    for key in store.list("refs/heads/").await? {
        let head = Checksum::from_hex(std::fs::read_to_string(store.local_path(&key).context("local")?)?.trim())?;
        let meta = ObjectName::new(head, ObjectType::CommitMeta).key();
        let signatures = read_signatures(&std::fs::read(store.local_path(&meta).context("local")?)?)?;
        ensure!(signatures.len() == 1, "{key}: {} signatures", signatures.len());
    }
    let index = std::fs::read(store.local_path("summary.idx").context("local")?)?;
    ensure!(store.head(&index_signatures_key(&Checksum::of(&index))).await?.is_some(), "no digest-named signature");
    ensure!(store.head("summary.sig").await?.is_some() && store.head("summary.idx.sig").await?.is_some());
    Ok(())
}

/// Whether an ostree remote checks `summary.sig`.
#[derive(Clone, Copy, PartialEq)]
enum Summary {
    Verified,
    Unchecked,
}

/// An ostree repository with remote `origin` trusting only the keys in a keyring; commit
/// signatures are always checked.
struct OstreeClient {
    tools: Isolated,
    repo: std::path::PathBuf,
}

impl OstreeClient {
    fn new(keyring: &Path, url: &str, summary: Summary) -> anyhow::Result<Self> {
        let tools = Isolated::new()?;
        let repo = tools.dir.path().join("repo");
        let client = Self { tools, repo };
        run(client.ostree().args(["init", "--mode=archive"]))?;
        run(client
            .ostree()
            .args(["remote", "add", "--set=gpg-verify=true"])
            .arg(format!("--set=gpg-verify-summary={}", summary == Summary::Verified))
            .arg(format!("--gpg-import={}", keyring.display()))
            .args(["origin", url]))?;
        Ok(client)
    }

    fn ostree(&self) -> std::process::Command {
        let mut cmd = self.tools.ostree();
        cmd.arg(format!("--repo={}", self.repo.display()));
        cmd
    }

    /// Pulls `name`, its commit's signature checked.
    fn pull(&self, name: &str) -> std::process::Command {
        let mut cmd = self.ostree();
        cmd.args(["pull", "origin", name]);
        cmd
    }

    fn summary(&self) -> std::process::Command {
        let mut cmd = self.ostree();
        cmd.args(["remote", "summary", "origin"]);
        cmd
    }
}
