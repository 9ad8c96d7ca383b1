//! Oracle comparison: on the same refs, the `summary`, `summary.idx` and subsummaries flatbucket
//! writes parse to the same content as what `flatpak build-update-repo` writes (refs, commit ids,
//! sizes, per-ref metadata, summary metadata), timestamps aside.

use std::collections::BTreeMap;
use std::path::Path;

use flatbucket::repo::gv::VarDict;
use flatbucket::repo::rewrite::RewriteOptions;
use flatbucket::repo::summary::{gunzip, parse_index, parse_summary, ParsedSummary};
use flatbucket_tests::fixture::{build_repo, APP_REF, RUNTIME_REF};
use flatbucket_tests::mirror::Mirror;
use flatbucket_tests::tools::{run, Isolated};

const LAST_MODIFIED: &str = "ostree.summary.last-modified";

/// A ref map entry in comparable form: name, commit size, commit, metadata.
type RefEntry = (String, u64, String, BTreeMap<String, Vec<u8>>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_summaries_match_flatpak_build_update_repo() -> anyhow::Result<()> {
    let fixture = build_repo(1)?;
    let ours = fixture.dir.path().join("ours");
    let mut mirror = Mirror::create(&ours).await?;
    mirror.settings.title = Some("Oracle Repo".into());
    mirror.settings.default_branch = Some("stable".into());
    for (dest, options) in [
        (RUNTIME_REF, RewriteOptions::default()),
        (APP_REF, RewriteOptions { subsets: Some(vec!["verified".into()]), ..Default::default() }),
        (
            "app/org.example.App/aarch64/stable",
            RewriteOptions { end_of_life: Some("Use the new one".into()), token_type: Some(1), ..Default::default() },
        ),
        (
            "app/org.example.Old/x86_64/stable",
            RewriteOptions {
                end_of_life_rebase: Some(("org.example.Old".into(), "org.example.App".into())),
                subsets: Some(vec!["verified".into(), "extra".into()]),
                ..Default::default()
            },
        ),
        ("screenshots/x86_64", RewriteOptions::default()),
    ] {
        let source = if dest.starts_with("runtime/") { RUNTIME_REF } else { APP_REF };
        mirror.import_as(&fixture.repo, source, RewriteOptions { ref_name: dest.into(), ..options }).await?;
    }
    mirror.publish().await?;

    let theirs = fixture.dir.path().join("theirs");
    copy_without_summaries(&ours, &theirs)?;
    write_flatpak_settings(&theirs)?;
    let tools = Isolated::new()?;
    run(tools.flatpak().args(["build-update-repo", "--no-update-appstream"]).arg(&theirs))?;

    let (our_compat, their_compat) = (read_summary(&ours.join("summary"))?, read_summary(&theirs.join("summary"))?);
    assert_eq!(our_compat.refs.len(), 5);
    assert_same_summary("summary", &our_compat, &their_compat);
    assert!(our_compat.metadata.get("xa.sparse-cache").is_some());

    let (our_index, our_meta) = parse_index(&std::fs::read(ours.join("summary.idx"))?)?;
    let (their_index, their_meta) = parse_index(&std::fs::read(theirs.join("summary.idx"))?)?;
    assert_eq!(dict_map(&our_meta, &[LAST_MODIFIED]), dict_map(&their_meta, &[LAST_MODIFIED]), "summary.idx metadata");
    let names: Vec<&String> = our_index.keys().collect();
    assert_eq!(names, their_index.keys().collect::<Vec<_>>());
    assert_eq!(names, ["aarch64", "extra-aarch64", "extra-x86_64", "verified-aarch64", "verified-x86_64", "x86_64"]);
    for (name, entry) in &our_index {
        let ours_sub = read_subsummary(&ours, &entry.digest.to_hex())?;
        let theirs_sub = read_subsummary(&theirs, &their_index[name].digest.to_hex())?;
        assert_same_summary(name, &ours_sub, &theirs_sub);
    }
    Ok(())
}

/// The same refs, sizes, commits and metadata (as key → serialized value), timestamps aside.
fn assert_same_summary(what: &str, ours: &ParsedSummary, theirs: &ParsedSummary) {
    let refs = |s: &ParsedSummary| -> Vec<RefEntry> {
        s.refs
            .iter()
            .map(|(name, size, commit, meta)| (name.clone(), *size, commit.to_hex(), dict_map(meta, &[])))
            .collect()
    };
    assert_eq!(refs(ours), refs(theirs), "{what}: ref maps differ");
    assert_eq!(
        dict_map(&ours.metadata, &[LAST_MODIFIED]),
        dict_map(&theirs.metadata, &[LAST_MODIFIED]),
        "{what}: metadata"
    );
}

/// Each entry's serialized `v` (value bytes, NUL, type string), keyed by name.
fn dict_map(dict: &VarDict, skip: &[&str]) -> BTreeMap<String, Vec<u8>> {
    dict.iter()
        .filter(|(key, _)| !skip.contains(key))
        .map(|(key, value)| {
            let (type_string, data) = value.split();
            let mut bytes = data.to_vec();
            bytes.push(0);
            bytes.extend_from_slice(type_string);
            (key.to_owned(), bytes)
        })
        .collect()
}

fn read_summary(path: &Path) -> anyhow::Result<ParsedSummary> {
    Ok(parse_summary(&std::fs::read(path)?)?)
}

fn read_subsummary(repo: &Path, digest: &str) -> anyhow::Result<ParsedSummary> {
    let compressed = std::fs::read(repo.join(format!("summaries/{digest}.gz")))?;
    Ok(parse_summary(&gunzip(&compressed, 1 << 30)?)?)
}

/// A copy of the repo without any summary, so flatpak computes everything from the commits.
fn copy_without_summaries(from: &Path, to: &Path) -> anyhow::Result<()> {
    run(std::process::Command::new("cp").arg("-a").arg(from).arg(to))?;
    for file in ["summary", "summary.idx"] {
        std::fs::remove_file(to.join(file))?;
    }
    std::fs::remove_dir_all(to.join("summaries"))?;
    Ok(())
}

/// The `[flatpak]` settings matching the mirror's summary settings.
fn write_flatpak_settings(repo: &Path) -> anyhow::Result<()> {
    let config = std::fs::read_to_string(repo.join("config"))?;
    std::fs::write(repo.join("config"), format!("{config}\n[flatpak]\ntitle=Oracle Repo\ndefault-branch=stable\n"))?;
    Ok(())
}
