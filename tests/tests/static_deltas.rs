//! Static deltas end to end: the fixture app published by the commit and publish jobs into a
//! repository configured with `"deltas": [{"id": ["org.example.*"], "depth": 3}]`, the update-repo
//! jobs generating deltas with the real libostree generator, then checked with the real tools:
//! `ostree fsck` and `ostree static-delta` accept the repository, delta indexes are the bytes
//! `ostree static-delta reindex` writes, and a `flatpak --user` client updating from v1 to v2 is
//! served by the v1→v2 delta and a summary delta, as the access log of the HTTP server shows.
//! Also: a publish completes while a delta is being generated, and retired deltas stay for the
//! grace period, then go.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use async_trait::async_trait;
use flatbucket::app::AppState;
use flatbucket::config::Config;
use flatbucket::domain::job::{JobKind, JobStatus, UpdateRepoContents};
use flatbucket::repo::deltas::{
    delta_index, parse_delta_index, read_ledger, DeltaDigests, DeltaFiles, DeltaGenerator, DeltaId, GenerateError,
};
use flatbucket::repo::local::resolve_ref;
use flatbucket::repo::retire::GRACE_SECS;
use flatbucket::repo::superblock::Superblock;
use flatbucket::repo::walk::walk_closure;
use flatbucket::repo::{delta_index_key, Checksum, ObjectName, ObjectType};
use flatbucket::store::{LocalStore, ObjectStore};
use flatbucket_deltas::LibostreeGenerator;
use flatbucket_tests::fixture::{build_repo, export_app_version, install_and_run, update_and_run, Fixture};
use flatbucket_tests::fixture::{APP_ID, APP_REF, RUNTIME_REF};
use flatbucket_tests::publishing::{publish, resolve_refs, run_to_end};
use flatbucket_tests::tools::{run, HttpServer, Isolated};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

/// A repository `stable` at `<dir>/repo` whose org.example refs get deltas of depth 3.
async fn start(dir: &Path, generator: Arc<dyn DeltaGenerator>) -> anyhow::Result<AppState> {
    let config = json!({
        "repos": {"stable": {"path": "repo", "subsets": {}, "deltas": [{"id": ["org.example.*"], "depth": 3}]}},
        "database-url": "sqlite:state.sqlite",
        "build-repo-base": "build-repo",
        "secret": "c2VjcmV0"
    });
    std::fs::write(dir.join("config.json"), config.to_string())?;
    // No worker: the suite runs each job itself, to the end.
    let (app, _) = AppState::from_config(Config::load(&dir.join("config.json"), dir)?).await?;
    Ok(app.with_delta_generator(generator))
}

/// The fixture (runtime and app v1) and a store over its repository.
async fn fixture() -> anyhow::Result<(Fixture, Arc<dyn ObjectStore>)> {
    let fixture = tokio::task::spawn_blocking(|| build_repo(1)).await??;
    let source: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&fixture.repo)?);
    Ok((fixture, source))
}

/// Exports app `version` into the fixture repository; returns the app ref to publish.
async fn export_version(
    fixture: &Fixture,
    source: &dyn ObjectStore,
    version: u32,
) -> anyhow::Result<Vec<(String, Checksum)>> {
    let (repo, work) = (fixture.repo.clone(), fixture.dir.path().to_owned());
    tokio::task::spawn_blocking(move || export_app_version(&repo, &work, version)).await??;
    resolve_refs(source, &[APP_REF]).await
}

fn update_job(results: &Value) -> anyhow::Result<i64> {
    results["update-repo-job"].as_i64().with_context(|| format!("no update-repo-job in {results}"))
}

/// The commit `name` points at in the published repository.
async fn head(app: &AppState, name: &str) -> anyhow::Result<Checksum> {
    let records = app.state.repo_refs("stable").await?;
    Ok(records.iter().find(|r| r.name == name).with_context(|| format!("{name} is not published"))?.commit)
}

fn ostree(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    run(std::process::Command::new("ostree").args(args).arg(format!("--repo={}", repo.display())))
}

/// The deltas to `heads` in the ledger are `expected`; `ostree fsck` passes, and
/// `ostree static-delta list` names exactly the ledger's deltas (the appstream branches' too) and
/// the `retained` ones (retired, in their grace period), each of which `ostree static-delta show`
/// reads.
async fn check_deltas(
    repo: &Path,
    heads: &[Checksum],
    expected: &BTreeSet<DeltaId>,
    retained: &[DeltaId],
) -> anyhow::Result<()> {
    let ledger: BTreeSet<DeltaId> = read_ledger(&LocalStore::new(repo)?).await?.into_keys().collect();
    let ours: BTreeSet<DeltaId> = ledger.iter().filter(|d| heads.contains(&d.to)).copied().collect();
    ensure!(ours == *expected, "deltas {ours:?}, expected {expected:?}");
    ostree(repo, &["fsck"])?;
    let listed: BTreeSet<String> = ostree(repo, &["static-delta", "list"])?.lines().map(str::to_owned).collect();
    let wanted: BTreeSet<String> = ledger.iter().chain(retained).map(DeltaId::name).collect();
    ensure!(listed == wanted, "ostree lists {listed:?}, expected {wanted:?}");
    for name in &wanted {
        let shown = ostree(repo, &["static-delta", "show", name])?;
        ensure!(shown.contains("Number of parts"), "{name}: {shown}");
    }
    Ok(())
}

/// Our delta indexes list what `ostree static-delta reindex` lists for the same deltas, in a
/// copy of the repository without the `retained` (retired, unlisted) deltas, in the same bytes
/// up to the order of entries ([`same_index`]).
fn check_indexes_against_libostree(repo: &Path, retained: &[DeltaId]) -> anyhow::Result<()> {
    let copy = tempfile::tempdir()?;
    run(std::process::Command::new("cp").arg("-a").arg(repo).arg(copy.path()))?;
    let copied = copy.path().join(repo.file_name().context("repo dir name")?);
    std::fs::remove_dir_all(copied.join("delta-indexes"))?;
    for delta in retained {
        std::fs::remove_dir_all(copied.join(delta.dir()))?;
    }
    ostree(&copied, &["static-delta", "reindex"])?;
    let ours = read_tree(&repo.join("delta-indexes"))?;
    let theirs = read_tree(&copied.join("delta-indexes"))?;
    ensure!(!ours.is_empty(), "no delta indexes written");
    ensure!(ours.keys().eq(theirs.keys()), "indexed commits differ: {:?} vs {:?}", ours.keys(), theirs.keys());
    for (name, bytes) in &ours {
        same_index(bytes, &theirs[name]).with_context(|| format!("delta index {name}"))?;
    }
    Ok(())
}

/// Two delta indexes are the same but for the order of their entries: libostree's order depends
/// on heap addresses when names collide in its hash table (see `delta_index`), so bytes are
/// compared whole only when the orders agree.
fn same_index(ours: &[u8], theirs: &[u8]) -> anyhow::Result<()> {
    let (mut a, mut b) = (parse_delta_index(ours)?, parse_delta_index(theirs)?);
    let same_order = a == b;
    a.sort();
    b.sort();
    ensure!(a == b, "entries differ: {a:?} vs libostree's {b:?}");
    ensure!(ours.len() == theirs.len(), "sizes differ: {} vs libostree's {}", ours.len(), theirs.len());
    ensure!(!same_order || ours == theirs, "bytes differ: {} vs {}", hex::encode(ours), hex::encode(theirs));
    Ok(())
}

fn read_tree(dir: &Path) -> anyhow::Result<std::collections::BTreeMap<String, Vec<u8>>> {
    let mut files = std::collections::BTreeMap::new();
    for sub in std::fs::read_dir(dir)? {
        let sub = sub?;
        for file in std::fs::read_dir(sub.path())? {
            let file = file?;
            let name = format!("{}/{}", sub.file_name().to_string_lossy(), file.file_name().to_string_lossy());
            files.insert(name, std::fs::read(file.path())?);
        }
    }
    Ok(files)
}

/// The request paths of an http.server access log, `%2B` decoded.
fn requested(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| line.split_once("\"GET ").and_then(|(_, rest)| rest.split_once(' ')).map(|(p, _)| p))
        .map(|path| path.replace("%2B", "+").replace("%2b", "+"))
        .collect()
}

/// How long the test server holds back each loose object. libostree writes the commit carried in
/// a delta's superblock and scans it for missing objects while the delta's parts are still being
/// fetched and applied (ostree 2022.7 marks that commit partial, so the scan walks its trees), and
/// requests any object the parts have not written yet: the root dirtree nearly always, and in some
/// runs the changed files too. The same happens with a repository that `flatpak
/// build-update-repo --generate-static-deltas` made. Holding object responses back, as a CDN
/// going to its origin would, lets the parts land first, so the log shows what the delta serves.
const OBJECT_DELAY: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatpak_updates_through_a_generated_delta() -> anyhow::Result<()> {
    let (fixture, source) = fixture().await?;
    let dir = tempfile::tempdir()?;
    let app = start(dir.path(), Arc::new(LibostreeGenerator::new())).await?;
    let repo = dir.path().join("repo");
    let v1 = resolve_refs(&*source, &[RUNTIME_REF, APP_REF]).await?;
    let published = publish(&app, "stable", APP_ID, &source, &v1).await?;
    run_to_end(&app, update_job(&published)?).await?;
    let (runtime, app_v1) = (head(&app, RUNTIME_REF).await?, head(&app, APP_REF).await?);
    let scratch = |to| DeltaId { from: None, to };
    check_deltas(&repo, &[runtime, app_v1], &[scratch(runtime), scratch(app_v1)].into(), &[]).await?;

    let log = dir.path().join("access.log");
    let server = HttpServer::serve_logged(&repo, &log, OBJECT_DELAY)?;
    let client = Isolated::new()?;
    let output = tokio::task::block_in_place(|| install_and_run(&client, &server.url()))?;
    assert!(output.contains("Hello from version 1"), "v1 printed {output:?}");

    let v2 = export_version(&fixture, &*source, 2).await?;
    let published = publish(&app, "stable", APP_ID, &source, &v2).await?;
    run_to_end(&app, update_job(&published)?).await?;
    let app_v2 = head(&app, APP_REF).await?;
    let update = DeltaId { from: Some(app_v1), to: app_v2 };
    let expected = [scratch(runtime), scratch(app_v2), update].into();
    check_deltas(&repo, &[runtime, app_v1, app_v2], &expected, &[scratch(app_v1)]).await?;
    check_indexes_against_libostree(&repo, &[scratch(app_v1)])?;

    let before = std::fs::read_to_string(&log)?.len();
    let output = tokio::task::block_in_place(|| update_and_run(&client))?;
    assert!(output.contains("Hello from version 2"), "v2 printed {output:?}");
    let paths = requested(&std::fs::read_to_string(&log)?[before..]);
    let store = LocalStore::new(&repo)?;
    let old: BTreeSet<Checksum> = walk_closure(&store, app_v1).await?.files.into_keys().collect();
    // Every changed file, by its key in the repository: `objects/<2 hex>/<62 hex>.filez`.
    let changed: BTreeSet<String> = walk_closure(&store, app_v2)
        .await?
        .files
        .into_keys()
        .filter(|file| !old.contains(file))
        .map(|file| ObjectName::new(file, ObjectType::File).key())
        .collect();
    assert!(!changed.is_empty(), "v2 changes files");
    let carried = Superblock::parse(&std::fs::read(repo.join(update.superblock_key()))?)?;
    let carried: BTreeSet<String> = carried.objects().map(|object| object.key()).collect();
    assert!(changed.is_subset(&carried), "the v1→v2 delta carries every changed file {changed:?}: {carried:?}");
    let index = format!("/{}", delta_index_key(&app_v2));
    let superblock = format!("/{}/superblock", update.dir());
    assert!(paths.contains(&index), "the delta index is fetched: {paths:#?}");
    assert!(paths.contains(&superblock), "the v1→v2 delta is fetched: {paths:#?}");
    assert!(
        paths.iter().all(|p| !changed.iter().any(|file| p[1..] == *file)),
        "changed files come in the delta: {paths:#?}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("/summaries/") && p.ends_with(".delta")),
        "the summary delta is fetched: {paths:#?}"
    );
    Ok(())
}

/// The libostree generator behind a gate: it says when a generation starts and waits for the test
/// to open the gate. A test adapter around the real generator, not a stand-in for it.
#[derive(Debug)]
struct Gated {
    inner: LibostreeGenerator,
    started: mpsc::UnboundedSender<DeltaId>,
    gate: Arc<Semaphore>,
}

#[async_trait]
impl DeltaGenerator for Gated {
    async fn generate(&self, source: Arc<dyn ObjectStore>, delta: DeltaId) -> Result<DeltaFiles, GenerateError> {
        // The receiver may be gone once the test has seen the first start.
        let _ = self.started.send(delta);
        let _permit = self.gate.acquire().await.expect("the gate is never closed");
        self.inner.generate(source, delta).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_go_on_during_generation_and_retired_deltas_outlive_the_grace_period() -> anyhow::Result<()> {
    let (fixture, source) = fixture().await?;
    let dir = tempfile::tempdir()?;
    let (started, mut starts) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let generator = Gated { inner: LibostreeGenerator::new(), started, gate: gate.clone() };
    let app = start(dir.path(), Arc::new(generator)).await?;
    let repo = dir.path().join("repo");
    let store = LocalStore::new(&repo)?;

    let v1 = resolve_refs(&*source, &[RUNTIME_REF, APP_REF]).await?;
    let first = update_job(&publish(&app, "stable", APP_ID, &source, &v1).await?)?;
    let app_v1 = head(&app, APP_REF).await?;
    let running = tokio::spawn({
        let app = app.clone();
        async move { run_to_end(&app, first).await }
    });
    tokio::time::timeout(Duration::from_secs(60), starts.recv()).await?.context("generation starts")?;

    // Generation is under way and holds no publish lease: v2 publishes meanwhile.
    let v2 = export_version(&fixture, &*source, 2).await?;
    let published = tokio::time::timeout(Duration::from_secs(120), publish(&app, "stable", APP_ID, &source, &v2))
        .await
        .context("the publish waited for the delta generation")??;
    assert_eq!(app.state.get_job(first).await?.status, JobStatus::Started, "the first update is still generating");
    let second = update_job(&published)?;
    assert_ne!(second, first, "a running update is not piggy-backed on");
    let app_v2 = head(&app, APP_REF).await?;
    gate.add_permits(1000);
    running.await??;
    run_to_end(&app, second).await?;

    // The first update made v1's from-scratch delta, which v2 retired at once: its files stay for
    // the grace period, but no index names it.
    let retired = DeltaId { from: None, to: app_v1 };
    let runtime = head(&app, RUNTIME_REF).await?;
    let heads = [runtime, app_v1, app_v2];
    let expected: BTreeSet<DeltaId> = [
        DeltaId { from: None, to: runtime },
        DeltaId { from: None, to: app_v2 },
        DeltaId { from: Some(app_v1), to: app_v2 },
    ]
    .into();
    check_deltas(&repo, &heads, &expected, &[retired]).await?;
    assert!(store.head(&retired.superblock_key()).await?.is_some(), "retired deltas stay for the grace period");
    assert!(store.head(&delta_index_key(&app_v1)).await?.is_none(), "no index names a retired delta");
    check_indexes_against_libostree(&repo, &[retired])?;

    // Past the grace period (the ledger entries backdated), the next update deletes it.
    backdate_retirements(&repo.join(".flatbucket/retired"), GRACE_SECS)?;
    let contents = serde_json::to_string(&UpdateRepoContents { repo: "stable".into() })?;
    let third = app.state.create_job(JobKind::UpdateRepo, &contents, Some("stable")).await?.id;
    run_to_end(&app, third).await?;
    assert!(store.list(&format!("{}/", retired.dir())).await?.is_empty(), "retired deltas go after the grace period");
    for delta in &expected {
        assert!(store.head(&delta.superblock_key()).await?.is_some(), "{} is wanted", delta.name());
    }
    check_deltas(&repo, &heads, &expected, &[]).await?;
    Ok(())
}

/// Moves every retirement ledger entry `secs` into the past (entries are `<unix secs>-<tag>`).
fn backdate_retirements(ledger: &Path, secs: u64) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(ledger)? {
        let path = entry?.path();
        let name = path.file_name().context("entry name")?.to_string_lossy().into_owned();
        let (at, tag) = name.split_once('-').context("entry name")?;
        let earlier = at.parse::<u64>()? - secs - 1;
        std::fs::rename(&path, ledger.join(format!("{earlier:020}-{tag}")))?;
    }
    Ok(())
}

/// A commit with many deltas (its index's hash table grows twice) gets the index libostree
/// writes for the deltas `ostree static-delta generate` made.
#[test]
fn the_index_of_many_deltas_is_what_libostree_writes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (repo, tree) = (dir.path().join("repo"), dir.path().join("tree"));
    std::fs::create_dir(&tree)?;
    ostree(&repo, &["init", "--mode=archive"])?;
    let mut commits = Vec::new();
    for version in 0..20 {
        std::fs::write(tree.join("file"), format!("version {version}\n"))?;
        let tree_arg = format!("--tree=dir={}", tree.display());
        let made = ostree(&repo, &["commit", "--branch=test", "--subject=test", &tree_arg])?;
        commits.push(Checksum::from_hex(made.trim())?);
    }
    let head = *commits.last().context("commits")?;
    let to = format!("--to={head}");
    ostree(&repo, &["static-delta", "generate", "--empty", &to])?;
    for from in &commits[..commits.len() - 1] {
        ostree(&repo, &["static-delta", "generate", &format!("--from={from}"), &to])?;
    }
    ostree(&repo, &["static-delta", "reindex"])?;
    let mut deltas = DeltaDigests::new();
    for from in std::iter::once(None).chain(commits[..commits.len() - 1].iter().copied().map(Some)) {
        let delta = DeltaId { from, to: head };
        deltas.insert(delta, Checksum::of(&std::fs::read(repo.join(delta.superblock_key()))?));
    }
    let theirs = std::fs::read(repo.join(delta_index_key(&head)))?;
    same_index(&delta_index(&deltas), &theirs)
}

/// The delta generation time for the ~200 MB app (`tests/src/bigapp.rs`), from scratch and after
/// 10% of its files changed, printed for the README:
/// `cargo test -p flatbucket-tests --test static_deltas -- --ignored --nocapture big_app` (libostree
/// does the work, so a debug build measures the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of several minutes"]
async fn big_app_delta_generation_time() -> anyhow::Result<()> {
    use flatbucket_tests::bigapp;
    let dir = tempfile::tempdir()?;
    let (build, repo) = (dir.path().join("build"), dir.path().join("repo"));
    tokio::task::block_in_place(|| -> anyhow::Result<()> {
        bigapp::write_app(&build, bigapp::SEED)?;
        bigapp::export(&build, &repo)
    })?;
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&repo)?);
    let v1 = resolve_ref(&*store, bigapp::APP_REF).await?;
    let stats = tokio::task::block_in_place(|| -> anyhow::Result<_> {
        let stats = bigapp::change_fraction(&build, bigapp::SEED, 0.1)?;
        bigapp::export(&build, &repo)?;
        Ok(stats)
    })?;
    let v2 = resolve_ref(&*store, bigapp::APP_REF).await?;
    let generator = LibostreeGenerator::new();
    for (label, delta) in
        [("from scratch", DeltaId { from: None, to: v2 }), ("v1 → v2", DeltaId { from: Some(v1), to: v2 })]
    {
        let started = std::time::Instant::now();
        let files = generator.generate(store.clone(), delta).await?;
        let size: usize = files.superblock.len() + files.parts.iter().map(|(_, part)| part.len()).sum::<usize>();
        println!(
            "big app delta {label}: {:.1} s, {} parts, {:.1} MiB ({} files, {:.1} MiB changed in v2)",
            started.elapsed().as_secs_f64(),
            files.parts.len(),
            size as f64 / (1024.0 * 1024.0),
            stats.files,
            stats.bytes as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}
