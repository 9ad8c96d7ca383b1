//! `summary.idx`, `(a{s(ayaaya{sv})}a{sv})`: each subsummary's digest and history, plus the
//! repository metadata. It is the one file modern clients fetch first, so publishing it is the
//! switch from one repository state to the next.

use std::collections::BTreeMap;

use gvariant::{gv, Marker, Structure};

use super::SummarySettings;
use crate::repo::gv::{aligned, DictTuple, VarDict};
use crate::repo::{Checksum, FormatError};

/// The value of one index entry: digest, history, metadata.
type EntryValue<'a> = (&'a [u8], &'a [[u8; 32]], &'a [DictTuple<'a>]);

/// One subsummary in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// sha256 of the uncompressed subsummary (its `summaries/<digest>.gz` name).
    pub digest: Checksum,
    /// Earlier digests, newest first, for which `summaries/<old>-<digest>.delta` exists.
    pub history: Vec<Checksum>,
}

/// Serializes the index; `entries` is ordered by name (strcmp) as clients bisect it.
pub fn summary_index(
    entries: &BTreeMap<String, IndexEntry>,
    settings: &SummarySettings,
    last_modified: u64,
) -> Vec<u8> {
    let histories: Vec<Vec<[u8; 32]>> =
        entries.values().map(|e| e.history.iter().map(|h| *h.as_bytes()).collect()).collect();
    let empty: [DictTuple; 0] = [];
    let values: Vec<EntryValue> =
        entries.values().zip(&histories).map(|(e, h)| (&e.digest.as_bytes()[..], &h[..], &empty[..])).collect();
    let subsummaries: Vec<(&str, &EntryValue)> =
        entries.keys().zip(&values).map(|(name, value)| (name.as_str(), value)).collect();
    let metadata = settings.repo_metadata(last_modified);
    let metadata = metadata.as_tuples();
    gv!("(a{s(ayaaya{sv})}a{sv})").serialize_to_vec(&(&subsummaries[..], &metadata[..]))
}

/// Parses an index: its entries by name and its metadata.
pub fn parse_index(bytes: &[u8]) -> Result<(BTreeMap<String, IndexEntry>, VarDict), FormatError> {
    let buf = aligned(bytes);
    let (subsummaries, metadata) = gv!("(a{s(ayaaya{sv})}a{sv})").cast(buf.as_ref()).to_tuple();
    let mut entries = BTreeMap::new();
    for entry in subsummaries.iter() {
        let (name, value) = entry.to_tuple();
        let (digest, history, _) = value.to_tuple();
        let history = history.iter().map(Checksum::from_slice).collect::<Result<Vec<_>, _>>()?;
        entries.insert(name.to_str().to_owned(), IndexEntry { digest: Checksum::from_slice(digest)?, history });
    }
    Ok((entries, VarDict::from_entries(metadata.iter().map(|e| e.to_tuple()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_entries_and_metadata() {
        let mut entries = BTreeMap::new();
        entries.insert(
            "x86_64".to_owned(),
            IndexEntry { digest: Checksum::of(b"new"), history: vec![Checksum::of(b"a"), Checksum::of(b"b")] },
        );
        entries.insert("aarch64".to_owned(), IndexEntry { digest: Checksum::of(b"arm"), history: Vec::new() });
        let settings = SummarySettings { title: Some("Repo".into()), ..Default::default() };
        let bytes = summary_index(&entries, &settings, 77);
        let (parsed, meta) = parse_index(&bytes).unwrap();
        assert_eq!(parsed, entries);
        assert_eq!(meta.get_str("xa.title"), Some("Repo"));
        assert_eq!(meta.get_be_u64("ostree.summary.last-modified"), Some(77));
        assert_eq!(summary_index(&parsed, &settings, 77), bytes);
    }
}
