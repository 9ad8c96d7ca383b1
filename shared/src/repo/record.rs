//! Per-ref records: everything the summaries need about a published ref, taken once from its
//! commit when it is published, so summaries are regenerated without reading the repository.

use gvariant::{gv, Structure};
use serde::{Deserialize, Serialize};

use super::commit::Commit;
use super::refs::is_flatpak_ref;
use super::{Checksum, FormatError};

/// One ref of a repository and what its summary entries say about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefRecord {
    pub name: String,
    pub commit: Checksum,
    /// Length of the `.commit` object in bytes.
    pub commit_size: u64,
    /// Commit timestamp, seconds since the epoch.
    pub timestamp: u64,
    /// Present for `app/`, `runtime/`, `appstream/` and `appstream2/` refs.
    pub flatpak: Option<FlatpakData>,
}

/// The cache data flatpak keeps for its own refs (`xa.cache`, `xa.data`, sparse keys).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FlatpakData {
    /// Installed size including extra data.
    pub installed_size: u64,
    /// Download size including extra data.
    pub download_size: u64,
    /// The `metadata` keyfile, byte for byte.
    pub metadata: String,
    pub subsets: Vec<String>,
    pub end_of_life: Option<String>,
    pub end_of_life_rebase: Option<String>,
    pub token_type: Option<i32>,
    /// Number of extra-data sources and their total download size.
    pub extra_data: Option<(u32, u64)>,
    /// The ref's part of its arch's appstream branches, taken at commit time.
    #[cfg(feature = "server")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appstream: Option<super::appstream::AppstreamData>,
}

/// Installed and download size of a commit's tree, as flatpak counts them (§7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeSizes {
    pub installed: u64,
    pub download: u64,
}

impl RefRecord {
    /// Builds the record of `name` pointing at `commit`. Sizes come from the commit's
    /// `xa.installed-size`/`xa.download-size`, else from `walked` (the tree walk's result).
    pub fn from_commit(
        name: &str,
        checksum: Checksum,
        commit: &Commit,
        commit_size: u64,
        walked: Option<TreeSizes>,
    ) -> Result<Self, FormatError> {
        let flatpak = match is_flatpak_ref(name) {
            true => Some(FlatpakData::from_commit(commit, walked)?),
            false => None,
        };
        Ok(Self { name: name.to_owned(), commit: checksum, commit_size, timestamp: commit.timestamp, flatpak })
    }
}

impl FlatpakData {
    fn from_commit(commit: &Commit, walked: Option<TreeSizes>) -> Result<Self, FormatError> {
        let meta = &commit.metadata;
        let recorded = meta
            .get_be_u64("xa.installed-size")
            .zip(meta.get_be_u64("xa.download-size"))
            .map(|(installed, download)| TreeSizes { installed, download });
        let sizes = recorded.or(walked).ok_or_else(|| {
            FormatError::Malformed(
                "commit has no xa.installed-size/xa.download-size and no tree sizes were given".into(),
            )
        })?;
        let extra = extra_data_sizes(commit);
        Ok(Self {
            installed_size: sizes.installed + extra.map_or(0, |e| e.installed),
            download_size: sizes.download + extra.map_or(0, |e| e.download),
            metadata: meta.get_str("xa.metadata").unwrap_or_default().to_owned(),
            subsets: meta.get_str_list("xa.subsets").unwrap_or_default(),
            end_of_life: meta.get_str("ostree.endoflife").map(str::to_owned),
            end_of_life_rebase: meta.get_str("ostree.endoflife-rebase").map(str::to_owned),
            token_type: meta.get_le_i32("xa.token-type").filter(|t| *t >= 0),
            extra_data: extra.map(|e| (e.count, e.download)),
            #[cfg(feature = "server")]
            appstream: None,
        })
    }
}

#[derive(Clone, Copy)]
struct ExtraData {
    count: u32,
    installed: u64,
    download: u64,
}

/// Sums `xa.extra-data-sources` `a(ayttays)`: (name, download BE, installed BE, sha256, uri).
fn extra_data_sizes(commit: &Commit) -> Option<ExtraData> {
    let sources = commit.metadata.get("xa.extra-data-sources")?.get(gv!("a(ayttays)"))?;
    let mut extra = ExtraData { count: 0, installed: 0, download: 0 };
    for source in sources.iter() {
        let (_, download, installed, _, _) = source.to_tuple();
        extra.count += 1;
        extra.download += u64::from_be(*download);
        extra.installed += u64::from_be(*installed);
    }
    (extra.count > 0).then_some(extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::gv::{variant, VarDict};

    fn commit(metadata: VarDict) -> Commit {
        Commit {
            metadata,
            parent: None,
            related: Vec::new(),
            subject: String::new(),
            body: String::new(),
            timestamp: 42,
            root_tree: Checksum::of(b"t"),
            root_meta: Checksum::of(b"m"),
        }
    }

    #[test]
    fn reads_sizes_eol_token_type_and_extra_data() {
        let mut meta = VarDict::new();
        meta.set("xa.installed-size", variant(gv!("t"), 1000u64.to_be()));
        meta.set("xa.download-size", variant(gv!("t"), 300u64.to_be()));
        meta.set("xa.metadata", variant(gv!("s"), "[Application]\nname=a.b.C\n"));
        meta.set("ostree.endoflife", variant(gv!("s"), "gone"));
        meta.set("xa.token-type", variant(gv!("i"), 1i32.to_le()));
        let source: (&[u8], u64, u64, &[u8], &str) = (b"blob\0", 50u64.to_be(), 70u64.to_be(), &[0u8; 32], "https://x");
        meta.set("xa.extra-data-sources", variant(gv!("a(ayttays)"), [&source].into_iter()));
        let record =
            RefRecord::from_commit("app/a.b.C/x86_64/stable", Checksum::of(b"c"), &commit(meta), 99, None).unwrap();
        let data = record.flatpak.unwrap();
        assert_eq!((data.installed_size, data.download_size), (1070, 350));
        assert_eq!(data.extra_data, Some((1, 50)));
        assert_eq!(data.end_of_life.as_deref(), Some("gone"));
        assert_eq!(data.token_type, Some(1));
        assert_eq!(record.timestamp, 42);
    }

    #[test]
    fn non_flatpak_refs_carry_no_cache_data_and_need_no_sizes() {
        let record =
            RefRecord::from_commit("screenshots/x86_64", Checksum::of(b"c"), &commit(VarDict::new()), 9, None).unwrap();
        assert_eq!(record.flatpak, None);
        assert!(RefRecord::from_commit(
            "app/a.b.C/x86_64/stable",
            Checksum::of(b"c"),
            &commit(VarDict::new()),
            9,
            None
        )
        .is_err());
    }
}
