//! Summary files built from per-ref records, in the formats flatpak 1.14 reads: the compat
//! `summary` (`(a(s(taya{sv}))a{sv})` with `xa.cache`/`xa.sparse-cache`), per-arch and per-subset
//! subsummaries, the `summary.idx` that points at them, and summary deltas. Nothing here reads the
//! repository: the records carry all the data (`flatpak_repo_update`'s commit-data cache).

mod diff;
mod index;
mod settings;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Read, Write};

use flate2::{read::GzDecoder, Compression, GzBuilder};
use gvariant::{gv, Marker, Owned, Structure, Variant, VariantWrap};

pub use diff::{apply_diff, summary_diff};
pub use index::{parse_index, summary_index, IndexEntry};
pub use settings::SummarySettings;

use super::gv::{aligned, variant, DictTuple, VarDict};
use super::record::RefRecord;
use super::refs::{appstream_subset, arch_for_ref};
use super::{Checksum, FormatError};

/// `xa.summary-version` of subsummaries.
const SUMMARY_VERSION: u32 = 1;

/// Compression level of `summaries/<digest>.gz`. Subsummaries are mostly commit checksums, which
/// do not compress: level 1 makes files within a few percent of level 6's in half the time, and
/// the digest (of the uncompressed bytes) is the same at any level.
pub const SUBSUMMARY_GZIP_LEVEL: u32 = 1;

/// A ref map entry's value: commit size, commit checksum, per-ref metadata.
type RefInfo<'a> = (u64, &'a [u8], &'a [DictTuple<'a>]);

/// A static delta as the compat summary lists it: name (`<to>` or `<from>-<to>`, hex) and the
/// sha256 of its superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaListing {
    pub name: String,
    pub superblock_digest: Checksum,
}

/// Which refs a summary lists.
struct Selection<'a> {
    arches: Option<&'a [String]>,
    subset: &'a str,
}

impl Selection<'_> {
    fn includes(&self, record: &RefRecord) -> bool {
        let name = record.name.as_str();
        let arch = arch_for_ref(name);
        if let (Some(arches), Some(arch)) = (self.arches, arch) {
            if !arches.iter().any(|a| a == arch) {
                return false;
            }
        }
        if self.subset.is_empty() {
            return appstream_subset(name).is_none();
        }
        if name.starts_with("appstream/") {
            return false;
        }
        if name.starts_with("appstream2/") {
            return appstream_subset(name) == Some(self.subset);
        }
        match &record.flatpak {
            Some(data) => data.subsets.iter().any(|s| s == self.subset),
            None => true,
        }
    }
}

/// The compat `summary`: every ref (filtered by `summary_arches`), its timestamp, and the repo
/// metadata with `xa.cache`, `xa.sparse-cache` and `ostree.static-deltas`.
pub fn compat_summary(
    records: &[RefRecord],
    settings: &SummarySettings,
    deltas: &[DeltaListing],
    last_modified: u64,
) -> Vec<u8> {
    let selection = Selection { arches: settings.summary_arches.as_deref(), subset: "" };
    let listed = sorted_selection(records, &selection);
    let ref_meta: Vec<VarDict> = listed
        .iter()
        .map(|r| {
            let mut meta = VarDict::new();
            meta.set("ostree.commit.timestamp", variant(gv!("t"), r.timestamp.to_be()));
            meta
        })
        .collect();
    let mut metadata = settings.repo_metadata(last_modified);
    if !deltas.is_empty() {
        let commits: HashSet<String> = listed.iter().map(|r| r.commit.to_hex()).collect();
        let mut listing = VarDict::new();
        for delta in deltas.iter().filter(|d| commits.contains(d.name.rsplit('-').next().unwrap_or_default())) {
            listing.set(&delta.name, variant(gv!("ay"), &delta.superblock_digest.as_bytes()[..]));
        }
        metadata.set("ostree.static-deltas", variant(gv!("a{sv}"), listing.as_tuples().iter()));
    }
    metadata.set("xa.cache", xa_cache(&listed));
    metadata.set("xa.sparse-cache", xa_sparse_cache(&listed));
    serialize_summary(&listed, &ref_meta, &metadata)
}

/// Names of the subsummaries to generate: `<arch>` for every arch, `<subset>-<arch>` for every
/// subset any commit declares, in strcmp order.
pub fn subsummary_names(records: &[RefRecord]) -> Vec<(String, String, String)> {
    let arches: BTreeSet<&str> = records.iter().filter_map(|r| arch_for_ref(&r.name)).collect();
    let mut subsets: BTreeSet<&str> =
        records.iter().filter_map(|r| r.flatpak.as_ref()).flat_map(|d| d.subsets.iter().map(String::as_str)).collect();
    subsets.insert("");
    let mut names: Vec<(String, String, String)> = subsets
        .iter()
        .flat_map(|subset| arches.iter().map(move |arch| (*subset, *arch)))
        .map(|(subset, arch)| {
            let name = if subset.is_empty() { arch.to_owned() } else { format!("{subset}-{arch}") };
            (name, subset.to_owned(), arch.to_owned())
        })
        .collect();
    names.sort();
    names
}

/// One subsummary: the refs of `arch` (and arch-less refs) in `subset` ("" for all), each with
/// `xa.data`, its sparse keys and `ot.ts`; metadata is only `xa.summary-version`.
pub fn subsummary(records: &[RefRecord], subset: &str, arch: &str) -> Vec<u8> {
    let arches = [arch.to_owned()];
    let listed = sorted_selection(records, &Selection { arches: Some(&arches), subset });
    let ref_meta: Vec<VarDict> = listed.iter().map(|r| subsummary_ref_metadata(r)).collect();
    let mut metadata = VarDict::new();
    metadata.set("xa.summary-version", variant(gv!("u"), SUMMARY_VERSION.to_le()));
    serialize_summary(&listed, &ref_meta, &metadata)
}

fn subsummary_ref_metadata(record: &RefRecord) -> VarDict {
    let mut meta = VarDict::new();
    if let Some(data) = &record.flatpak {
        let xa_data = (data.installed_size.to_be(), data.download_size.to_be(), data.metadata.as_str());
        meta.set("xa.data", variant(gv!("(tts)"), &xa_data));
        for (key, value) in sparse_entries(record).iter() {
            meta.set(key, value.to_owned());
        }
    }
    meta.set("ot.ts", variant(gv!("t"), record.timestamp.to_be()));
    meta
}

/// `eol`, `eolr`, `tokt` and `eds`, for the refs that have them.
fn sparse_entries(record: &RefRecord) -> VarDict {
    let mut sparse = VarDict::new();
    let Some(data) = &record.flatpak else { return sparse };
    if let Some(eol) = &data.end_of_life {
        sparse.set("eol", variant(gv!("s"), eol.as_str()));
    }
    if let Some(rebase) = &data.end_of_life_rebase {
        sparse.set("eolr", variant(gv!("s"), rebase.as_str()));
    }
    if let Some(token_type) = data.token_type {
        sparse.set("tokt", variant(gv!("i"), token_type.to_le()));
    }
    if let Some((count, size)) = data.extra_data {
        sparse.set("eds", variant(gv!("(ut)"), &(count.to_le(), size.to_le())));
    }
    sparse
}

/// `xa.cache`: `v(v(a{s(tts)}))`, every flatpak ref with its sizes and metadata, sorted.
fn xa_cache(listed: &[&RefRecord]) -> Owned<Variant> {
    let values: Vec<(&str, (u64, u64, &str))> = listed
        .iter()
        .filter_map(|r| {
            r.flatpak
                .as_ref()
                .map(|d| (r.name.as_str(), (d.installed_size.to_be(), d.download_size.to_be(), d.metadata.as_str())))
        })
        .collect();
    let entries: Vec<(&str, &(u64, u64, &str))> = values.iter().map(|(name, value)| (*name, value)).collect();
    variant(gv!("v"), VariantWrap(gv!("a{s(tts)}"), entries.iter()))
}

/// `xa.sparse-cache`: `a{sa{sv}}` for the refs with sparse data, sorted.
fn xa_sparse_cache(listed: &[&RefRecord]) -> Owned<Variant> {
    let sparse: Vec<(&str, VarDict)> =
        listed.iter().map(|r| (r.name.as_str(), sparse_entries(r))).filter(|(_, s)| !s.is_empty()).collect();
    let tuples: Vec<Vec<(&str, &Variant)>> = sparse.iter().map(|(_, s)| s.as_tuples()).collect();
    let entries: Vec<(&str, &[(&str, &Variant)])> =
        sparse.iter().zip(&tuples).map(|((name, _), t)| (*name, &t[..])).collect();
    variant(gv!("a{sa{sv}}"), entries.iter())
}

fn sorted_selection<'a>(records: &'a [RefRecord], selection: &Selection) -> Vec<&'a RefRecord> {
    let mut listed: Vec<&RefRecord> = records.iter().filter(|r| selection.includes(r)).collect();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    listed.dedup_by(|a, b| a.name == b.name);
    listed
}

fn serialize_summary(listed: &[&RefRecord], ref_meta: &[VarDict], metadata: &VarDict) -> Vec<u8> {
    let meta_tuples: Vec<Vec<DictTuple>> = ref_meta.iter().map(VarDict::as_tuples).collect();
    let infos: Vec<RefInfo> =
        listed.iter().zip(&meta_tuples).map(|(r, meta)| (r.commit_size, &r.commit.as_bytes()[..], &meta[..])).collect();
    let refs: Vec<(&str, &RefInfo)> = listed.iter().zip(&infos).map(|(r, info)| (r.name.as_str(), info)).collect();
    let metadata = metadata.as_tuples();
    gv!("(a(s(taya{sv}))a{sv})").serialize_to_vec(&(&refs[..], &metadata[..]))
}

/// A summary parsed back: refs with size, commit and metadata, then the summary metadata.
#[derive(Debug)]
pub struct ParsedSummary {
    pub refs: Vec<(String, u64, Checksum, VarDict)>,
    pub metadata: VarDict,
}

/// Parses a summary or subsummary, checking normal form and ref order.
pub fn parse_summary(bytes: &[u8]) -> Result<ParsedSummary, FormatError> {
    let buf = aligned(bytes);
    let (refs, metadata) = gv!("(a(s(taya{sv}))a{sv})").cast(buf.as_ref()).to_tuple();
    let refs = refs
        .iter()
        .map(|entry| {
            let (name, info) = entry.to_tuple();
            let (size, commit, meta) = info.to_tuple();
            let meta = VarDict::from_entries(meta.iter().map(|e| e.to_tuple()));
            Ok((name.to_str().to_owned(), *size, Checksum::from_slice(commit)?, meta))
        })
        .collect::<Result<Vec<_>, FormatError>>()?;
    if refs.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(FormatError::Malformed("summary refs are not sorted".into()));
    }
    let metadata = VarDict::from_entries(metadata.iter().map(|e| e.to_tuple()));
    let parsed = ParsedSummary { refs, metadata };
    Ok(parsed)
}

/// Gzip as flatpak writes subsummaries: one member, no name, mtime 0, OS Unix.
pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = GzBuilder::new().operating_system(3).write(Vec::new(), Compression::new(level));
    encoder.write_all(data).expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// Decompresses gzip data, refusing output larger than `limit`.
pub fn gunzip(data: &[u8], limit: u64) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    GzDecoder::new(data)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| FormatError::Malformed(format!("bad gzip data: {e}")))?;
    if out.len() as u64 > limit {
        return Err(FormatError::TooLarge { what: "decompressed summary", size: out.len() as u64, limit });
    }
    Ok(out)
}

/// The subsummaries of `records`, by name, with their digests.
pub fn all_subsummaries(records: &[RefRecord]) -> BTreeMap<String, (Checksum, Vec<u8>)> {
    subsummary_names(records)
        .into_iter()
        .map(|(name, subset, arch)| {
            let bytes = subsummary(records, &subset, &arch);
            (name, (Checksum::of(&bytes), bytes))
        })
        .collect()
}
