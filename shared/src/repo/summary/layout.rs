//! A subsummary as its parts: the entries of its ref map in order, and the bytes after the last
//! one (the map's framing offsets, the metadata and the summary's own framing offset). Recent
//! subsummaries are kept this way rather than as bytes: the versions of a subsummary share nearly
//! all their entries, with each other and with the per-ref entry cache, so keeping a full history
//! of a 10,000-ref subsummary costs little more than its entry pointers, and a summary delta
//! between two versions is a walk over those pointers ([`super::diff`]).

use std::cmp::Ordering;
use std::sync::Arc;

use super::diff::ref_map_entries;

/// Alignment of the ref map's entries, `(s(taya{sv}))`.
const ENTRY_ALIGN: usize = 8;

#[derive(Debug)]
pub struct Layout {
    /// The ref map's entries, `(s(taya{sv}))` each, in name order.
    pub(super) entries: Vec<Arc<[u8]>>,
    /// Everything after the last entry.
    pub(super) tail: Vec<u8>,
    /// Bytes of entries this layout holds alone (parsed, not shared with a known layout).
    unshared: usize,
}

impl Layout {
    /// The layout of subsummary `bytes`, framed from `entries` (shared with the entry cache).
    pub(super) fn framed(entries: Vec<Arc<[u8]>>, bytes: &[u8]) -> Self {
        let end = entries.iter().fold(0, |end, entry| padded_start(end) + entry.len());
        Self { entries, tail: bytes[end..].to_vec(), unshared: 0 }
    }

    /// Parses subsummary `bytes`; an entry with the same bytes as one of `known`'s is shared with
    /// it. Bytes that are not a well-formed summary are all tail.
    pub fn parse(bytes: &[u8], known: Option<&Layout>) -> Self {
        // Entries start where framing puts them; the padding between them must be zeros for the
        // layout to give back these bytes.
        let framed = |ranges: &Vec<(&[u8], std::ops::Range<usize>)>| {
            let mut end = 0;
            ranges.iter().all(|(_, range)| {
                let padding = &bytes[end..range.start];
                end = range.end;
                padding.iter().all(|b| *b == 0)
            })
        };
        let Some(ranges) = ref_map_entries(bytes).filter(framed) else {
            return Self { entries: Vec::new(), tail: bytes.to_vec(), unshared: 0 };
        };
        let known = known.map_or(&[][..], |k| &k.entries[..]);
        let (mut entries, mut unshared, mut next_known) = (Vec::with_capacity(ranges.len()), 0, 0);
        for (name, range) in &ranges {
            let entry = &bytes[range.clone()];
            // Both are in name order: the known entries before this name are passed for good.
            while next_known < known.len() && entry_name(&known[next_known]).cmp(name) == Ordering::Less {
                next_known += 1;
            }
            match known.get(next_known).filter(|k| ***k == *entry) {
                Some(shared) => entries.push(shared.clone()),
                None => {
                    unshared += entry.len();
                    entries.push(Arc::from(entry));
                }
            }
        }
        let end = ranges.last().map_or(0, |(_, range)| range.end);
        Self { entries, tail: bytes[end..].to_vec(), unshared }
    }

    /// Whether `other` has the same bytes.
    pub fn same_as(&self, other: &Layout) -> bool {
        self.tail == other.tail
            && self.entries.len() == other.entries.len()
            && self.entries.iter().zip(&other.entries).all(|(a, b)| Arc::ptr_eq(a, b) || a == b)
    }

    /// Memory this layout keeps to itself, for a cache budget: its entry pointers, its tail and
    /// its unshared entries.
    pub(super) fn cost(&self) -> usize {
        self.entries.len() * std::mem::size_of::<Arc<[u8]>>() + self.tail.len() + self.unshared
    }
}

/// Where an entry following one that ends at `end` starts.
pub(super) fn padded_start(end: usize) -> usize {
    end.next_multiple_of(ENTRY_ALIGN)
}

/// The ref name an entry starts with (its `s`, without the terminating NUL).
pub(super) fn entry_name(entry: &[u8]) -> &[u8] {
    entry.iter().position(|b| *b == 0).map_or(entry, |end| &entry[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::gv::frame_array;
    use crate::repo::gv::frame_pair;

    fn subsummary(entries: &[&[u8]]) -> Vec<u8> {
        frame_pair(&frame_array(entries, ENTRY_ALIGN), b"metadata", ENTRY_ALIGN)
    }

    #[test]
    fn parsing_shares_the_known_entries_and_keeps_the_bytes() {
        let (a, b, c): (&[u8], &[u8], &[u8]) = (b"app/a\0one", b"app/b\0two-long", b"app/c\0three");
        let known = Layout::framed(vec![Arc::from(a), Arc::from(b)], &subsummary(&[a, b]));
        let bytes = subsummary(&[a, b"app/b\0changed", c]);
        let parsed = Layout::parse(&bytes, Some(&known));
        assert!(Arc::ptr_eq(&parsed.entries[0], &known.entries[0]), "an unchanged entry is shared");
        assert_eq!(parsed.unshared, b"app/b\0changed".len() + c.len());
        let reframed: Vec<&[u8]> = parsed.entries.iter().map(|e| &e[..]).collect();
        assert!(Layout::framed(parsed.entries.clone(), &subsummary(&reframed)).same_as(&parsed));
        assert!(!parsed.same_as(&known));
        let garbage = Layout::parse(b"not a summary", None);
        assert!(garbage.entries.is_empty() && garbage.tail == b"not a summary");
    }
}
