//! Summary files built from per-ref records, in the formats flatpak 1.14 reads: the compat
//! `summary` (`(a(s(taya{sv}))a{sv})` with `xa.cache`/`xa.sparse-cache`), per-arch and per-subset
//! subsummaries, the `summary.idx` that points at them, and summary deltas. Nothing here reads the
//! repository: the records carry all the data (`flatpak_repo_update`'s commit-data cache).

mod cache;
mod diff;
mod index;
mod layout;
mod settings;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Read, Write};
use std::sync::Arc;

use flate2::{read::GzDecoder, Compression, GzBuilder};
use gvariant::{gv, Marker, Owned, Structure, Variant};

pub use cache::{recall, remember};
pub use diff::{apply_diff, layout_diff, summary_diff};
pub use index::{parse_index, summary_index, IndexEntry};
pub use layout::Layout;
pub use settings::SummarySettings;

use super::gv::{aligned, frame_array, frame_pair, variant, wrap_variant, DictTuple, VarDict};
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

/// Alignment of a ref map entry `(s(taya{sv}))`, an `xa.cache` entry `{s(tts)}` and of `a{sv}`.
const ALIGN: usize = 8;

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
    fn includes(&self, entry: &Entry) -> bool {
        let (record, arch) = (entry.record, entry.encoded.arch.as_deref());
        let name = record.name.as_str();
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

/// A repository state's records, sorted by name, each with its encoded summary entries: looked
/// up once for all the summaries of that state.
pub struct Refs<'a> {
    entries: Vec<Entry<'a>>,
}

struct Entry<'a> {
    record: &'a RefRecord,
    encoded: Arc<cache::Encoded>,
}

impl<'a> Refs<'a> {
    pub fn new(records: &'a [RefRecord]) -> Self {
        let mut sorted: Vec<&RefRecord> = records.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        sorted.dedup_by(|a, b| a.name == b.name);
        let encoded = cache::encoded(&sorted, encode);
        Self { entries: sorted.into_iter().zip(encoded).map(|(record, encoded)| Entry { record, encoded }).collect() }
    }

    fn select(&self, selection: &Selection) -> Vec<&Entry<'a>> {
        self.entries.iter().filter(|e| selection.includes(e)).collect()
    }

    /// The compat `summary`: every ref (filtered by `summary_arches`), its timestamp, and the
    /// repo metadata with `xa.cache`, `xa.sparse-cache` and `ostree.static-deltas`.
    pub fn compat_summary(&self, settings: &SummarySettings, deltas: &[DeltaListing], last_modified: u64) -> Vec<u8> {
        let listed = self.select(&Selection { arches: settings.summary_arches.as_deref(), subset: "" });
        let mut metadata = settings.repo_metadata(last_modified);
        if !deltas.is_empty() {
            let commits: HashSet<String> = listed.iter().map(|e| e.record.commit.to_hex()).collect();
            let mut listing = VarDict::new();
            for delta in deltas.iter().filter(|d| commits.contains(d.name.rsplit('-').next().unwrap_or_default())) {
                listing.set(&delta.name, variant(gv!("ay"), &delta.superblock_digest.as_bytes()[..]));
            }
            metadata.set("ostree.static-deltas", variant(gv!("a{sv}"), listing.as_tuples().iter()));
        }
        let xa_cache: Vec<&[u8]> = listed.iter().filter_map(|e| e.encoded.xa_cache.as_deref()).collect();
        let xa_cache = wrap_variant(wrap_variant(frame_array(&xa_cache, ALIGN), "a{s(tts)}"), "v");
        metadata.set("xa.cache", Owned::from_vec(xa_cache));
        metadata.set("xa.sparse-cache", xa_sparse_cache(&listed));
        let refs: Vec<&[u8]> = listed.iter().map(|e| &e.encoded.compat[..]).collect();
        frame_pair(&frame_array(&refs, ALIGN), &metadata.to_bytes(), ALIGN)
    }

    /// Names of the subsummaries to generate: `<arch>` for every arch, `<subset>-<arch>` for
    /// every subset any commit declares, in strcmp order; with the subset and the arch.
    pub fn subsummary_names(&self) -> Vec<(String, String, String)> {
        let arches: BTreeSet<&str> = self.entries.iter().filter_map(|e| e.encoded.arch.as_deref()).collect();
        let mut subsets: BTreeSet<&str> = self
            .entries
            .iter()
            .filter_map(|e| e.record.flatpak.as_ref())
            .flat_map(|d| d.subsets.iter().map(String::as_str))
            .collect();
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

    /// One subsummary: the refs of `arch` (and arch-less refs) in `subset` ("" for all), each
    /// with `xa.data`, its sparse keys and `ot.ts`; metadata is only `xa.summary-version`. With
    /// its layout, whose entries are shared with the entry cache.
    pub fn subsummary(&self, subset: &str, arch: &str) -> (Vec<u8>, Layout) {
        let arches = [arch.to_owned()];
        let listed = self.select(&Selection { arches: Some(&arches), subset });
        let refs: Vec<&[u8]> = listed.iter().map(|e| &e.encoded.subsummary[..]).collect();
        let mut metadata = VarDict::new();
        metadata.set("xa.summary-version", variant(gv!("u"), SUMMARY_VERSION.to_le()));
        let bytes = frame_pair(&frame_array(&refs, ALIGN), &metadata.to_bytes(), ALIGN);
        let layout = Layout::framed(listed.iter().map(|e| e.encoded.subsummary.clone()).collect(), &bytes);
        (bytes, layout)
    }
}

/// The compat `summary` of `records` ([`Refs::compat_summary`]).
pub fn compat_summary(
    records: &[RefRecord],
    settings: &SummarySettings,
    deltas: &[DeltaListing],
    last_modified: u64,
) -> Vec<u8> {
    Refs::new(records).compat_summary(settings, deltas, last_modified)
}

/// Names of the subsummaries of `records`, with their subset and arch ([`Refs::subsummary_names`]).
pub fn subsummary_names(records: &[RefRecord]) -> Vec<(String, String, String)> {
    Refs::new(records).subsummary_names()
}

/// One subsummary of `records` ([`Refs::subsummary`]).
pub fn subsummary(records: &[RefRecord], subset: &str, arch: &str) -> Vec<u8> {
    Refs::new(records).subsummary(subset, arch).0
}

/// The summary entries of `record`: its subsummary and compat ref map elements, and its
/// `xa.cache` entry (sizes and metadata) if it is a flatpak ref.
fn encode(record: &RefRecord) -> cache::Encoded {
    let mut compat_meta = VarDict::new();
    compat_meta.set("ostree.commit.timestamp", variant(gv!("t"), record.timestamp.to_be()));
    cache::Encoded {
        arch: arch_for_ref(&record.name).map(str::to_owned),
        subsummary: ref_map_entry(record, &subsummary_ref_metadata(record)).into(),
        compat: ref_map_entry(record, &compat_meta),
        xa_cache: record.flatpak.as_ref().map(|d| {
            let value = (d.installed_size.to_be(), d.download_size.to_be(), d.metadata.as_str());
            // A dict entry `{s(tts)}` is serialized as the pair `(s(tts))`.
            gv!("(s(tts))").serialize_to_vec(&(record.name.as_str(), &value))
        }),
    }
}

/// One `(s(taya{sv}))` of a summary's ref map.
fn ref_map_entry(record: &RefRecord, meta: &VarDict) -> Vec<u8> {
    let meta = meta.as_tuples();
    let info: RefInfo = (record.commit_size, &record.commit.as_bytes()[..], &meta[..]);
    gv!("(s(taya{sv}))").serialize_to_vec(&(record.name.as_str(), &info))
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

/// `xa.sparse-cache`: `a{sa{sv}}` for the refs with sparse data, sorted.
fn xa_sparse_cache(listed: &[&Entry]) -> Owned<Variant> {
    let sparse: Vec<(&str, VarDict)> = listed
        .iter()
        .map(|e| (e.record.name.as_str(), sparse_entries(e.record)))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    let tuples: Vec<Vec<(&str, &Variant)>> = sparse.iter().map(|(_, s)| s.as_tuples()).collect();
    let entries: Vec<(&str, &[(&str, &Variant)])> =
        sparse.iter().zip(&tuples).map(|((name, _), t)| (*name, &t[..])).collect();
    variant(gv!("a{sa{sv}}"), entries.iter())
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
    let refs = Refs::new(records);
    refs.subsummary_names()
        .into_iter()
        .map(|(name, subset, arch)| {
            let (bytes, _) = refs.subsummary(&subset, &arch);
            (name, (Checksum::of(&bytes), bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use gvariant::VariantWrap;

    use super::*;
    use crate::repo::record::FlatpakData;

    /// A summary as the `gvariant` serializer writes it in one go, which the cached entries and
    /// their framing must reproduce byte for byte.
    fn serialized(listed: &[&RefRecord], ref_meta: &[VarDict], metadata: &VarDict) -> Vec<u8> {
        let meta_tuples: Vec<Vec<DictTuple>> = ref_meta.iter().map(VarDict::as_tuples).collect();
        let infos: Vec<RefInfo> = listed
            .iter()
            .zip(&meta_tuples)
            .map(|(r, meta)| (r.commit_size, &r.commit.as_bytes()[..], &meta[..]))
            .collect();
        let refs: Vec<(&str, &RefInfo)> = listed.iter().zip(&infos).map(|(r, info)| (r.name.as_str(), info)).collect();
        gv!("(a(s(taya{sv}))a{sv})").serialize_to_vec(&(&refs[..], &metadata.as_tuples()[..]))
    }

    fn records(count: usize, version: u8) -> Vec<RefRecord> {
        let mut records: Vec<RefRecord> = (0..count)
            .map(|i| {
                let arch = if i % 3 == 0 { "aarch64" } else { "x86_64" };
                let kind = if i % 5 == 0 { "runtime" } else { "app" };
                RefRecord {
                    name: format!("{kind}/org.example.App{i}/{arch}/stable"),
                    commit: Checksum::of(format!("{i}/{version}").as_bytes()),
                    commit_size: 500 + i as u64,
                    timestamp: 1_700_000_000 + i as u64,
                    flatpak: Some(FlatpakData {
                        installed_size: 1000 * i as u64,
                        download_size: 10 * i as u64,
                        metadata: format!("[Application]\nname=org.example.App{i}\nversion={version}\n"),
                        subsets: if i % 4 == 0 { vec!["free".into()] } else { Vec::new() },
                        end_of_life: (i % 7 == 1).then(|| "gone".into()),
                        end_of_life_rebase: (i % 11 == 2).then(|| "org.example.New".into()),
                        token_type: (i % 13 == 3).then_some(1),
                        extra_data: (i % 17 == 4).then_some((2, 4096)),
                        ..Default::default()
                    }),
                }
            })
            .collect();
        records.push(RefRecord {
            name: "ostree-metadata".into(),
            commit: Checksum::of(&[version]),
            commit_size: 77,
            timestamp: 1_600_000_000,
            flatpak: None,
        });
        records
    }

    #[test]
    fn summaries_from_cached_entries_are_the_serializers_bytes() {
        let settings = SummarySettings { title: Some("Repo".into()), ..Default::default() };
        // Sizes on both sides of the 1-, 2- and 4-byte framing offsets; the second variant changes
        // every record under the same names, which must not reuse the first variant's entries.
        for (count, version) in [(0, 0), (1, 0), (3, 0), (200, 0), (1200, 0), (1200, 1)] {
            let records = records(count, version);
            for (name, subset, arch) in subsummary_names(&records) {
                let refs = Refs::new(&records);
                let listed: Vec<&RefRecord> = refs
                    .select(&Selection { arches: Some(std::slice::from_ref(&arch)), subset: &subset })
                    .iter()
                    .map(|e| e.record)
                    .collect();
                let ref_meta: Vec<VarDict> = listed.iter().map(|r| subsummary_ref_metadata(r)).collect();
                let mut metadata = VarDict::new();
                metadata.set("xa.summary-version", variant(gv!("u"), SUMMARY_VERSION.to_le()));
                let expected = serialized(&listed, &ref_meta, &metadata);
                assert_eq!(subsummary(&records, &subset, &arch), expected, "{name} of {count} refs");
            }
            let ours = compat_summary(&records, &settings, &[], 42);
            let refs = Refs::new(&records);
            let listed: Vec<&RefRecord> =
                refs.select(&Selection { arches: None, subset: "" }).iter().map(|e| e.record).collect();
            let ref_meta: Vec<VarDict> = listed
                .iter()
                .map(|r| {
                    let mut meta = VarDict::new();
                    meta.set("ostree.commit.timestamp", variant(gv!("t"), r.timestamp.to_be()));
                    meta
                })
                .collect();
            let values: Vec<(&str, (u64, u64, &str))> = listed
                .iter()
                .filter_map(|r| {
                    let d = r.flatpak.as_ref()?;
                    Some((r.name.as_str(), (d.installed_size.to_be(), d.download_size.to_be(), d.metadata.as_str())))
                })
                .collect();
            let entries: Vec<(&str, &(u64, u64, &str))> = values.iter().map(|(name, value)| (*name, value)).collect();
            let mut metadata = parse_summary(&ours).unwrap().metadata;
            metadata.set("xa.cache", variant(gv!("v"), VariantWrap(gv!("a{s(tts)}"), entries.iter())));
            assert_eq!(ours, serialized(&listed, &ref_meta, &metadata), "compat summary of {count} refs");
        }
    }
}
