//! Round trip against the real tools: a repo made by `flatpak build-export` is verified,
//! re-committed by flatbucket's writer into a new archive repo with our summaries, checked by
//! `ostree fsck`, then installed, run and updated by a real `flatpak --user` client over HTTP.

use flatbucket::repo::summary::{apply_diff, gunzip, parse_index};
use flatbucket_tests::fixture::{
    build_repo, export_app_version, install_and_run, update_and_run, APP_REF, RUNTIME_REF,
};
use flatbucket_tests::mirror::Mirror;
use flatbucket_tests::tools::{run, HttpServer, Isolated};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatpak_installs_runs_and_updates_from_a_repo_we_wrote() -> anyhow::Result<()> {
    let fixture = build_repo(1)?;
    let dest = fixture.dir.path().join("ours");
    let mut mirror = Mirror::create(&dest).await?;
    let first = mirror.import(&fixture.repo, &[RUNTIME_REF, APP_REF]).await?;
    assert!(first.deltas.is_empty(), "a first publish has no history");
    fsck(&dest)?;

    let server = HttpServer::serve(&dest)?;
    let client = Isolated::new()?;
    let output = install_and_run(&client, &server.url())?;
    assert!(output.contains("Hello from version 1"), "v1 printed {output:?}");

    export_app_version(&fixture.repo, fixture.dir.path(), 2)?;
    let v1_app = mirror.records[APP_REF].commit;
    let second = mirror.import(&fixture.repo, &[APP_REF]).await?;
    fsck(&dest)?;
    let (_, v2_app) = read_commit_parent(&dest, APP_REF)?;
    assert_eq!(v2_app, Some(v1_app), "version 2 must have version 1 as parent");

    // The index lists version 1's subsummary as history, with a delta that really applies.
    let (entries, _) = parse_index(&second.index)?;
    let x86 = &entries["x86_64"];
    let (_, old_entry) = parse_index(&first.index).map(|(e, m)| (m, e["x86_64"].clone()))?;
    assert_eq!(x86.history, vec![old_entry.digest]);
    let old = gunzip(&std::fs::read(dest.join(format!("summaries/{}.gz", old_entry.digest)))?, 1 << 30)?;
    let delta = std::fs::read(dest.join(format!("summaries/{}-{}.delta", old_entry.digest, x86.digest)))?;
    let applied = apply_diff(&old, &delta, 1 << 30)?;
    assert_eq!(flatbucket::repo::Checksum::of(&applied), x86.digest);

    let output = update_and_run(&client)?;
    assert!(output.contains("Hello from version 2"), "v2 printed {output:?}");
    Ok(())
}

fn fsck(repo: &std::path::Path) -> anyhow::Result<()> {
    let tools = Isolated::new()?;
    run(tools.ostree().arg("fsck").arg(format!("--repo={}", repo.display())))?;
    Ok(())
}

/// The commit a ref points at and that commit's parent, as `ostree` itself reads them.
fn read_commit_parent(
    repo: &std::path::Path,
    name: &str,
) -> anyhow::Result<(String, Option<flatbucket::repo::Checksum>)> {
    let tools = Isolated::new()?;
    let repo_arg = format!("--repo={}", repo.display());
    let commit = run(tools.ostree().args(["rev-parse", &repo_arg, name]))?.trim().to_owned();
    let parent = run(tools.ostree().args(["rev-parse", &repo_arg, &format!("{commit}^")])).ok();
    let parent = parent.map(|p| flatbucket::repo::Checksum::from_hex(p.trim())).transpose()?;
    Ok((commit, parent))
}
