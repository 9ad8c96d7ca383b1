//! Oracle comparison of signatures: a repository published by flatbucket's publish job, signed
//! with flat-manager's `gpg-key` + `gpg-homedir`, next to a copy whose summaries `flatpak
//! build-update-repo --gpg-sign` wrote with the same key. In both, `summary.sig` and the
//! digest-named `summaries/<sha256>.idx.sig` verify with `gpg --verify` under the public key alone,
//! the signature packets have the same shape as GnuPG's (`gpg --list-packets`: key id, version 4,
//! binary document, SHA-256, public-key algorithm, hashed subpacket kinds; only creation times
//! differ), ostree checks `summary.sig` and a `flatpak` client trusting only that key adds each
//! repository with `--gpg-import`, installs the app from it and runs it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::{ensure, Context};
use flatbucket::app::AppState;
use flatbucket::config::Config;
use flatbucket::repo::publish::index_signatures_key;
use flatbucket::repo::sign::read_signatures;
use flatbucket::repo::summary::parse_summary;
use flatbucket::repo::Checksum;
use flatbucket::store::{LocalStore, ObjectStore};
use flatbucket_tests::fixture::{build_repo, APP_ID, APP_REF, RUNTIME_REF};
use flatbucket_tests::gpg::GnuPg;
use flatbucket_tests::publishing::{publish, resolve_refs};
use flatbucket_tests::tools::{run, HttpServer, Isolated};
use serde_json::json;

/// `sigclass` of a signature over a binary document.
const BINARY_DOCUMENT: &str = "0x00";
/// OpenPGP's number for SHA-256.
const SHA256: u8 = 8;
/// The subpacket every signature hashes (RFC 4880 5.2.3.4).
const SIGNATURE_CREATION_TIME: u8 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_signatures_match_flatpak_build_update_repo() -> anyhow::Result<()> {
    let keys = GnuPg::new()?;
    let fingerprint = keys.generate("oracle@example.org")?;
    let fixture = tokio::task::spawn_blocking(|| build_repo(1)).await??;
    let dir = tempfile::tempdir()?;
    let public = keys.export_public(&[&fingerprint], &dir.path().join("public.asc"))?;

    let ours = dir.path().join("repo");
    let config = json!({
        "repos": {"stable": {"path": ours, "gpg-key": fingerprint}},
        "gpg-homedir": keys.path(),
        "database-url": format!("sqlite:{}", dir.path().join("state.sqlite").display()),
        "build-repo-base": dir.path().join("build-repo"),
        "secret": "c2VjcmV0"
    });
    let (app, _) = AppState::from_config(Config::parse(&config.to_string())?).await?;
    let source: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&fixture.repo)?);
    let refs = resolve_refs(&*source, &[RUNTIME_REF, APP_REF]).await?;
    publish(&app, "stable", APP_ID, &source, &refs).await?;

    // The same commits (with our commit signatures), summaries and signatures by flatpak.
    let theirs = dir.path().join("theirs");
    run(std::process::Command::new("cp").arg("-a").arg(&ours).arg(&theirs))?;
    for file in ["summary", "summary.sig", "summary.idx", "summary.idx.sig"] {
        std::fs::remove_file(theirs.join(file)).with_context(|| format!("our {file}"))?;
    }
    std::fs::remove_dir_all(theirs.join("summaries"))?;
    let tools = Isolated::new()?;
    run(tools
        .flatpak()
        .args(["build-update-repo", "--no-update-appstream"])
        .arg(format!("--gpg-sign={fingerprint}"))
        .arg(format!("--gpg-homedir={}", keys.path().display()))
        .arg(&theirs))?;

    let verifier = GnuPg::new()?;
    run(verifier.gpg().arg("--import").arg(&public))?;
    let mut shapes = Vec::new();
    for repo in [&ours, &theirs] {
        for (name, data, signatures) in &signed_files(repo)? {
            let what = format!("{} of {}", name, repo.display());
            let signatures = read_signatures(signatures).with_context(|| what.clone())?;
            ensure!(signatures.len() == 1, "{what}: {} signatures, one key signs", signatures.len());
            verify(&verifier, &fingerprint, data, &signatures[0], repo).with_context(|| what.clone())?;
            shapes.push((what, Shape::of(&verifier, &signatures[0], repo)?));
        }
    }

    // Every packet, ours and flatpak's, has GnuPG's shape for this key.
    let expected = &shapes.last().context("flatpak's signatures")?.1;
    assert_eq!(expected.keyid, fingerprint[fingerprint.len() - 16..], "flatpak signed with the key");
    assert_eq!((expected.version, expected.sigclass.as_str(), expected.digest), (4, BINARY_DOCUMENT, SHA256));
    assert!(expected.hashed_subpackets.contains(&SIGNATURE_CREATION_TIME), "{expected:?}");
    for (what, shape) in &shapes {
        assert_eq!(shape, expected, "{what}: the signature packet differs from flatpak's");
    }

    // Both summaries list the same refs, so the signatures cover the same content.
    let refs = |repo: &Path| -> anyhow::Result<Vec<(String, Checksum)>> {
        let summary = parse_summary(&std::fs::read(repo.join("summary"))?)?;
        Ok(summary.refs.into_iter().map(|(name, _, commit, _)| (name, commit)).collect())
    };
    assert_eq!(refs(&ours)?, refs(&theirs)?);

    // ostree checks summary.sig; flatpak, trusting our key only, adds each repository (checking
    // the index's signature), installs and runs the app from it.
    for repo in [&ours, &theirs] {
        let client = Isolated::new()?;
        let origin = client.dir.path().join("client-repo");
        run(client.ostree().arg(format!("--repo={}", origin.display())).args(["init", "--mode=archive"]))?;
        run(client
            .ostree()
            .arg(format!("--repo={}", origin.display()))
            .args(["remote", "add", "--set=gpg-verify=true", "--set=gpg-verify-summary=true"])
            .arg(format!("--gpg-import={}", public.display()))
            .arg("origin")
            .arg(format!("file://{}", repo.display())))?;
        let summary =
            run(client.ostree().arg(format!("--repo={}", origin.display())).args(["remote", "summary", "origin"]))?;
        assert!(summary.contains("Good signature"), "ostree on {}: {summary}", repo.display());

        let server = HttpServer::serve(repo)?;
        run(client
            .flatpak()
            .args(["--user", "remote-add"])
            .arg(format!("--gpg-import={}", public.display()))
            .args(["oracle", &server.url()]))?;
        run(client.flatpak().args(["--user", "install", "-y", "--noninteractive", "--arch=x86_64", "oracle", APP_ID]))?;
        let output = run(client.flatpak().args(["run", "--arch=x86_64", APP_ID]))?;
        assert!(output.contains("Hello from version 1"), "{}: the app printed {output:?}", repo.display());
    }
    Ok(())
}

/// A `.sig` file's name, the bytes it signs and its contents.
type SignedFile = (String, Vec<u8>, Vec<u8>);

/// The signed files of `repo`, each with the data it signs and its `.sig` file: `summary`,
/// `summary.idx` under its fixed name and under its digest.
fn signed_files(repo: &Path) -> anyhow::Result<Vec<SignedFile>> {
    let read = |name: &str| std::fs::read(repo.join(name)).with_context(|| format!("{} has no {name}", repo.display()));
    let (summary, index) = (read("summary")?, read("summary.idx")?);
    let digest_named = index_signatures_key(&Checksum::of(&index));
    Ok(vec![
        ("summary.sig".to_owned(), summary, read("summary.sig")?),
        ("summary.idx.sig".to_owned(), index.clone(), read("summary.idx.sig")?),
        (digest_named.clone(), index, read(&digest_named)?),
    ])
}

/// `gpg --verify` of one detached signature over `data`, in a home holding only the public key:
/// it must report a valid signature by `fingerprint`.
fn verify(verifier: &GnuPg, fingerprint: &str, data: &[u8], signature: &[u8], work: &Path) -> anyhow::Result<()> {
    let (data_path, signature_path) = (work.join(".oracle-data"), work.join(".oracle-signature"));
    std::fs::write(&data_path, data)?;
    std::fs::write(&signature_path, signature)?;
    let status = run(verifier.gpg().args(["--status-fd", "1", "--verify"]).arg(&signature_path).arg(&data_path));
    std::fs::remove_file(&data_path)?;
    std::fs::remove_file(&signature_path)?;
    let status = status?;
    ensure!(status.lines().any(|l| l.starts_with(&format!("[GNUPG:] VALIDSIG {fingerprint} "))), "gpg: {status}");
    Ok(())
}

/// What `gpg --list-packets` shows of a signature packet, creation time and values aside.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    /// Public-key algorithm (22: EdDSA).
    algo: u8,
    keyid: String,
    version: u8,
    sigclass: String,
    digest: u8,
    hashed_subpackets: BTreeSet<u8>,
}

impl Shape {
    fn of(gpg: &GnuPg, signature: &[u8], work: &Path) -> anyhow::Result<Self> {
        let path = work.join(".oracle-packet");
        std::fs::write(&path, signature)?;
        let listing = run(gpg.gpg().arg("--list-packets").arg(&path));
        std::fs::remove_file(&path)?;
        let listing = listing?;
        let field = |prefix: &str| -> anyhow::Result<&str> {
            let start = listing.find(prefix).with_context(|| format!("no {prefix:?} in {listing}"))? + prefix.len();
            let rest = &listing[start..];
            Ok(&rest[..rest.find([',', '\n', ' ']).unwrap_or(rest.len())])
        };
        let hashed_subpackets = listing
            .lines()
            .filter_map(|line| line.trim().strip_prefix("hashed subpkt "))
            .map(|rest| rest.split(' ').next().unwrap_or_default().parse())
            .collect::<Result<_, _>>()?;
        ensure!(listing.matches(":signature packet:").count() == 1, "not one signature packet: {listing}");
        Ok(Self {
            algo: field(":signature packet: algo ")?.parse()?,
            keyid: field("keyid ")?.to_owned(),
            version: field("version ")?.parse()?,
            sigclass: field("sigclass ")?.to_owned(),
            digest: field("digest algo ")?.parse()?,
            hashed_subpackets,
        })
    }
}
