//! What `flatpak build-update-repo` adds to a repository besides summaries, written by the commit
//! and publish jobs: the `appstream/<arch>` and `appstream2/<arch>` branches with their
//! checked-out `appstream/<arch>/` files, `screenshots/<arch>` refs extracted into `media/`, and
//! the `ostree-metadata` ref of repositories with a collection ID.
//!
//! Each app's appstream data (its components and icon objects) is taken once, when the commit job
//! verifies the app, and kept in the app's ref record ([`crate::repo::record::FlatpakData`]),
//! which both state backends store as opaque JSON. Publish already loads every record of the
//! repository to write the summaries, so rebuilding an arch's branches reads no app again: it
//! costs one pass over the records plus the new branch objects. Between the two jobs the data
//! waits in the build's files (`.flatbucket/appstream/<commit>.json`), since the build's records
//! are made anew from its commits at publish.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use bytes::Bytes;
use gvariant::gv;

use super::publish::sign_commit;
use super::{now, JobContext};
use crate::app::Repo;
use crate::domain::build::Build;
use crate::repo::appstream::{branch_trees, extract, read_content, AppstreamData, AppstreamError};
use crate::repo::commit::Commit;
use crate::repo::dirs::DirTree;
use crate::repo::gv::{variant, VarDict};
use crate::repo::local::{list_refs, read_commit};
use crate::repo::publish::write_refs;
use crate::repo::record::RefRecord;
use crate::repo::refs::FlatpakRef;
use crate::repo::sign::Signer;
use crate::repo::summary::{gzip, SummarySettings};
use crate::repo::tree::{commit_tree, write_commit, Tree, WrittenTree};
use crate::repo::walk::MAX_METADATA_SIZE;
use crate::repo::{Checksum, ObjectName, ObjectType};
use crate::store::{read_limited, ObjectStore};

/// The ref ostree keeps repository metadata on for collection-based clients.
pub const OSTREE_METADATA_REF: &str = "ostree-metadata";
/// Largest screenshot file extracted.
const MAX_SCREENSHOT: u64 = 256 * 1024 * 1024;
/// Most files and directories a screenshots tree may name (shared subtrees count each time).
const MAX_SCREENSHOT_ENTRIES: usize = 1_000_000;
/// Largest stored per-app data read back.
const MAX_DATA_JSON: u64 = 4 * 1024 * 1024;

/// Ref records by name.
pub(super) type Records = BTreeMap<String, RefRecord>;

/// `records` keyed by name, to collect into [`Records`] or extend them with.
pub(super) fn by_name(records: impl IntoIterator<Item = RefRecord>) -> impl Iterator<Item = (String, RefRecord)> {
    records.into_iter().map(|r| (r.name.clone(), r))
}

/// Where the commit job leaves the appstream data of the build commit `commit` for publish.
fn data_key(commit: &Checksum) -> String {
    format!(".flatbucket/appstream/{commit}.json")
}

/// Commit time: takes the appstream data of an app or runtime ref from its verified tree in
/// `view`, keeps it in the build's files and in `record`. Unusable data is logged, not fatal.
pub(super) async fn extract_data(
    ctx: &JobContext<'_>,
    view: &dyn ObjectStore,
    build_store: &dyn ObjectStore,
    commit: &Commit,
    record: &mut RefRecord,
) -> anyhow::Result<()> {
    let Ok(parsed) = record.name.parse::<FlatpakRef>() else { return Ok(()) };
    let Some(flatpak) = record.flatpak.as_mut() else { return Ok(()) };
    let data = match extract(view, commit.root_tree, &record.name, &parsed.id, &flatpak.metadata).await {
        Ok(Some(data)) => data,
        Ok(None) => return Ok(()),
        Err(AppstreamError::Invalid(e)) => {
            ctx.log(format!("No appstream data for {}: {e}", record.name)).await;
            return Ok(());
        }
        Err(AppstreamError::Store(e)) => return Err(e.into()),
    };
    ctx.log(format!("Extracted appstream data for {} ({} icons)", record.name, data.icons.len())).await;
    build_store.put(&data_key(&record.commit), Bytes::from(serde_json::to_vec(&data)?)).await?;
    flatpak.appstream = Some(data);
    Ok(())
}

/// Publish time: the appstream data the commit job kept for the build commit `built`, added to
/// the record of its published commit.
pub(super) async fn attach_data(
    build_store: &dyn ObjectStore,
    mut record: RefRecord,
    built: Checksum,
) -> anyhow::Result<RefRecord> {
    let Some(flatpak) = record.flatpak.as_mut() else { return Ok(record) };
    match read_limited(build_store, &data_key(&built), MAX_DATA_JSON).await {
        Ok(bytes) => flatpak.appstream = Some(serde_json::from_slice(&bytes).context("stored appstream data")?),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(record)
}

/// Commit time: the appstream branches of the build repository for `records` (the build's refs),
/// with their checked-out files. Returns the branch records to list next to the build's refs.
pub(super) async fn build_repo_branches(
    ctx: &JobContext<'_>,
    build: &Build,
    records: &[RefRecord],
) -> anyhow::Result<Vec<RefRecord>> {
    let repo = ctx.app.repo(&build.repo).with_context(|| format!("repo {} is not configured", build.repo))?;
    // Icons the repository already had were not uploaded: they are read through the view.
    let (store, view) = (ctx.app.build_store(build.id), ctx.app.build_view(build.id, repo));
    let tips = list_refs(&*store).await?;
    let arches: BTreeSet<String> = records.iter().filter_map(app_arch).collect();
    let named: Records = by_name(records.iter().cloned()).collect();
    let branches = Branches { store: &*store, signer: ctx.app.build_signer.as_deref(), collection_id: None };
    let made = branches.update(ctx, &named, &arches, &tips).await?;
    check_out(&*store, &*view, &named, &arches, records).await?;
    Ok(made)
}

/// Publish time, after the build's refs are recorded: rebuilds the appstream branches of every
/// arch `published` touches from `records`, all of the repository's records with `published`
/// among them, checks out their files, updates `ostree-metadata`, then records them all and
/// points their refs. Returns all of the repository's records as they now are (nothing else writes
/// them under the publish lease), so the summaries need no second read of the state store.
pub(super) async fn publish_branches(
    ctx: &JobContext<'_>,
    repo: &Repo,
    mut records: Records,
    published: &[RefRecord],
) -> anyhow::Result<Vec<RefRecord>> {
    // Only the generated branches' tips are looked up: no copy of every ref's name.
    let generated = |name: &str| name.starts_with("appstream") || name == OSTREE_METADATA_REF;
    let tips: BTreeMap<String, Checksum> =
        records.iter().filter(|(name, _)| generated(name)).map(|(name, r)| (name.clone(), r.commit)).collect();
    let arches: BTreeSet<String> = published.iter().filter_map(app_arch).flat_map(with_native_arch).collect();
    let collection_id = repo.config.collection_id.as_deref();
    let branches = Branches { store: &*repo.store, signer: repo.signer.as_deref(), collection_id };
    let mut made = branches.update(ctx, &records, &arches, &tips).await?;
    check_out(&*repo.store, &*repo.store, &records, &arches, published).await?;
    if let Some(collection_id) = collection_id {
        made.push(branches.ostree_metadata(ctx, &repo.settings, collection_id, tips.get(OSTREE_METADATA_REF)).await?);
    }
    // Unchanged branches are written again too: a run killed between recording a branch and
    // writing its ref finds it unchanged and must still write the ref.
    ctx.app.state.put_repo_refs(&repo.name, &made).await?;
    write_refs(&*repo.store, &made).await?;
    records.extend(by_name(made));
    Ok(records.into_values().collect())
}

/// The arch of an app or runtime ref.
fn app_arch(record: &RefRecord) -> Option<String> {
    record.name.parse::<FlatpakRef>().ok().map(|r| r.arch)
}

/// flatpak's compat arches: a build for the compat arch also appears in the native arch's
/// appstream when the native arch has no build of the same ref.
fn compat_arch(arch: &str) -> Option<&'static str> {
    match arch {
        "x86_64" => Some("i386"),
        "aarch64" => Some("arm"),
        _ => None,
    }
}

/// `arch`, and the native arch whose branches a build for the compat arch `arch` appears in.
fn with_native_arch(arch: String) -> Vec<String> {
    let native = ["x86_64", "aarch64"].into_iter().find(|native| compat_arch(native) == Some(arch.as_str()));
    std::iter::once(arch.clone()).chain(native.map(str::to_owned)).collect()
}

/// The appstream data of `arch`'s branches, in ref order: refs of the arch and, for refs it lacks,
/// of its compat arch; end-of-life refs left out.
fn arch_data<'a>(records: &'a Records, arch: &str) -> Vec<&'a AppstreamData> {
    // Only refs with appstream data have their names parsed: most refs of a large repository are
    // passed over.
    let mut chosen: BTreeMap<String, &AppstreamData> = BTreeMap::new();
    for record in records.values() {
        let Some(flatpak) = &record.flatpak else { continue };
        let Some(data) = &flatpak.appstream else { continue };
        if flatpak.end_of_life.is_some() || flatpak.end_of_life_rebase.is_some() {
            continue;
        }
        let Ok(parsed) = record.name.parse::<FlatpakRef>() else { continue };
        let native = FlatpakRef { arch: arch.to_owned(), ..parsed.clone() }.to_string();
        let take =
            parsed.arch == arch || (compat_arch(arch) == Some(parsed.arch.as_str()) && !records.contains_key(&native));
        if take {
            chosen.insert(native, data);
        }
    }
    chosen.into_values().collect()
}

/// Where generated branches are committed.
struct Branches<'a> {
    store: &'a dyn ObjectStore,
    signer: Option<&'a Signer>,
    collection_id: Option<&'a str>,
}

impl Branches<'_> {
    /// Writes `appstream/<arch>` and `appstream2/<arch>` for each arch; a branch whose tree is
    /// unchanged keeps its commit. Returns every branch's record.
    async fn update(
        &self,
        ctx: &JobContext<'_>,
        records: &Records,
        arches: &BTreeSet<String>,
        tips: &BTreeMap<String, Checksum>,
    ) -> anyhow::Result<Vec<RefRecord>> {
        let mut made = Vec::new();
        for arch in arches {
            let data = arch_data(records, arch);
            let (old, new) = branch_trees(data.iter().copied())?;
            for (prefix, tree) in [("appstream", old), ("appstream2", new)] {
                let branch = format!("{prefix}/{arch}");
                let written = tree.write(self.store).await?;
                let mut metadata = VarDict::new();
                metadata.set("ostree.collection-binding", variant(gv!("s"), self.collection_id.unwrap_or("")));
                metadata.set("ostree.ref-binding", variant(gv!("as"), [branch.as_str()].iter()));
                let unchanged = |parent: &Commit| parent.root_tree == written.tree;
                let record = self.commit(&branch, &written, "Update", metadata, tips.get(&branch), unchanged).await?;
                if tips.get(&branch) != Some(&record.commit) {
                    ctx.log(format!("Updated {branch} ({} apps) as {}", data.len(), record.commit)).await;
                }
                made.push(record);
            }
        }
        Ok(made)
    }

    /// `ostree-metadata`: an empty tree whose commit carries the summary metadata and the
    /// bindings, as `ostree summary --update` writes it; a new commit only when that changes.
    async fn ostree_metadata(
        &self,
        ctx: &JobContext<'_>,
        settings: &SummarySettings,
        collection_id: &str,
        tip: Option<&Checksum>,
    ) -> anyhow::Result<RefRecord> {
        let mut metadata = settings.repo_metadata(0);
        metadata.remove("ostree.summary.last-modified");
        metadata.set("ostree.collection-binding", variant(gv!("s"), collection_id));
        metadata.set("ostree.ref-binding", variant(gv!("as"), [OSTREE_METADATA_REF].iter()));
        let bytes = metadata.to_bytes();
        let written = Tree::new().write(self.store).await?;
        let unchanged = |parent: &Commit| parent.metadata.to_bytes() == bytes && parent.root_tree == written.tree;
        let record = self.commit(OSTREE_METADATA_REF, &written, "", metadata, tip, unchanged).await?;
        if tip != Some(&record.commit) {
            ctx.log(format!("Updated {OSTREE_METADATA_REF} as {}", record.commit)).await;
        }
        Ok(record)
    }

    /// Commits `tree` on `branch` over `tip`, unless `unchanged` says the tip already has it; the
    /// commit is signed (`.commitmeta` first) when there is a signer. Returns the branch's record.
    async fn commit(
        &self,
        branch: &str,
        tree: &WrittenTree,
        subject: &str,
        metadata: VarDict,
        tip: Option<&Checksum>,
        unchanged: impl Fn(&Commit) -> bool,
    ) -> anyhow::Result<RefRecord> {
        if let Some(tip) = tip {
            let (parent, size) = read_commit(self.store, *tip).await?;
            if unchanged(&parent) {
                return Ok(RefRecord::from_commit(branch, *tip, &parent, size, Some(tree.sizes))?);
            }
        }
        let commit = commit_tree(tree, tip.copied(), subject, metadata, now());
        if let Some(signer) = self.signer {
            sign_commit(self.store, commit.checksum(), &commit.to_bytes(), signer).await?;
        }
        let (checksum, size) = write_commit(self.store, &commit).await?;
        Ok(RefRecord::from_commit(branch, checksum, &commit, size, Some(tree.sizes))?)
    }
}

/// flat-manager's checkout of `appstream/<arch>` into `<repo>/appstream/<arch>/`, as a union: the
/// XML of every arch, and the icons of the `changed` refs (earlier icons stay where earlier
/// checkouts put them). `icons/flatpak/<size>` is a symlink in the branch; stores have no
/// symlinks, so the icons are written there as well. Icon objects are read from `objects`.
async fn check_out(
    store: &dyn ObjectStore,
    objects: &dyn ObjectStore,
    records: &Records,
    arches: &BTreeSet<String>,
    changed: &[RefRecord],
) -> anyhow::Result<()> {
    for arch in arches {
        let data = arch_data(records, arch);
        let xml = crate::repo::appstream::document(data.iter().map(|d| d.components.as_str()));
        let dir = format!("appstream/{arch}");
        for icon in changed.iter().filter_map(|r| r.flatpak.as_ref()?.appstream.as_ref()).flat_map(|d| &d.icons) {
            let (_, content, _) = read_content(objects, icon.checksum, crate::repo::appstream::MAX_ICON).await?;
            let content = Bytes::from(content);
            for path in
                [format!("icons/{}/{}", icon.size, icon.name), format!("icons/flatpak/{}/{}", icon.size, icon.name)]
            {
                store.put(&format!("{dir}/{path}"), content.clone()).await?;
            }
        }
        store.put(&format!("{dir}/appstream.xml.gz"), Bytes::from(gzip(xml.as_bytes(), 6))).await?;
    }
    Ok(())
}

/// Publish time, before any ref moves: every `screenshots/<arch>` ref of the build is extracted
/// into `<repo>/media/`, file by file. Like flat-manager, a tree holding a symlink or any other
/// non-regular file fails the publish, and nothing is extracted from it.
pub(super) async fn extract_screenshots(ctx: &JobContext<'_>, build: &Build, repo: &Repo) -> anyhow::Result<()> {
    let view = ctx.app.build_view(build.id, repo);
    for (name, commit) in list_refs(&*ctx.app.build_store(build.id)).await? {
        if !name.starts_with("screenshots/") {
            continue;
        }
        let (commit, _) = read_commit(&*view, commit).await?;
        let files = tree_files(&*view, commit.root_tree).await?;
        for (path, checksum) in &files {
            let (header, _, _) = read_content(&*view, *checksum, MAX_SCREENSHOT).await?;
            if !header.is_regular() {
                bail!("Invalid screenshots ref {name}: {path} is not a regular file (mode {:o})", header.mode);
            }
        }
        for (path, checksum) in &files {
            let (_, content, _) = read_content(&*view, *checksum, MAX_SCREENSHOT).await?;
            repo.store.put(&format!("media/{path}"), Bytes::from(content)).await?;
        }
        ctx.log(format!("Extracted {} files of {name} into media/", files.len())).await;
    }
    Ok(())
}

/// Every file below the tree `root`, by path. Names are single path components: dirtree
/// parsing refuses empty names, `.`, `..` and `/`.
async fn tree_files(store: &dyn ObjectStore, root: Checksum) -> anyhow::Result<Vec<(String, Checksum)>> {
    let mut files = Vec::new();
    let mut pending = vec![(String::new(), root)];
    let mut entries = 0usize;
    while let Some((prefix, checksum)) = pending.pop() {
        let key = ObjectName::new(checksum, ObjectType::DirTree).key();
        let bytes = read_limited(store, &key, MAX_METADATA_SIZE).await?;
        anyhow::ensure!(Checksum::of(&bytes) == checksum, "dirtree {checksum} does not match its name");
        let tree = DirTree::parse(&bytes)?;
        entries += tree.files.len() + tree.dirs.len();
        anyhow::ensure!(
            entries <= MAX_SCREENSHOT_ENTRIES,
            "screenshots tree has more than {MAX_SCREENSHOT_ENTRIES} entries"
        );
        files.extend(tree.files.into_iter().map(|(name, file)| (format!("{prefix}{name}"), file)));
        pending.extend(tree.dirs.into_iter().map(|d| (format!("{prefix}{}/", d.name), d.tree)));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::record::FlatpakData;

    fn record(name: &str, appstream: Option<&str>) -> RefRecord {
        let appstream = appstream.map(|c| AppstreamData { components: c.into(), icons: Vec::new() });
        RefRecord {
            name: name.into(),
            commit: Checksum::of(name.as_bytes()),
            commit_size: 1,
            timestamp: 2,
            flatpak: Some(FlatpakData { appstream, ..Default::default() }),
        }
    }

    #[test]
    fn an_arch_takes_compat_arch_apps_it_lacks_and_skips_refs_without_data() {
        let records = [
            record("app/org.example.Both/i386/stable", Some("both-i386")),
            record("app/org.example.Both/x86_64/stable", None),
            record("app/org.example.Old/i386/stable", Some("old-i386")),
            record("app/org.example.New/x86_64/stable", Some("new")),
            record("runtime/org.example.Platform/x86_64/stable", None),
        ];
        let records: Records = by_name(records).collect();
        let components: Vec<&str> = arch_data(&records, "x86_64").iter().map(|d| d.components.as_str()).collect();
        assert_eq!(components, ["new", "old-i386"]);
        let components: Vec<&str> = arch_data(&records, "i386").iter().map(|d| d.components.as_str()).collect();
        assert_eq!(components, ["both-i386", "old-i386"]);
    }
}
