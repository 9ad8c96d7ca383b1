//! Summary deltas (`summaries/<old>-<new>.delta`): flatpak's `xadf` op stream, built by walking
//! the two ref maps in step so unchanged refs are copied from the old subsummary.

use std::cmp::Ordering;
use std::sync::Arc;

use super::layout::{entry_name, padded_start, Layout};
use crate::repo::FormatError;

const HEADER: &[u8; 4] = b"xadf";
const MAX_RUN: usize = 0x0fff_ffff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Copy bytes from the old subsummary at its cursor.
    Reuse = 0,
    /// Advance the old cursor.
    Skip = 1,
    /// Append literal bytes from the data section.
    Data = 2,
}

/// A ref map entry: its name and its byte range in the summary.
type Entry<'a> = (&'a [u8], std::ops::Range<usize>);

/// Zeros, for the padding between entries.
const PADDING: [u8; 8] = [0; 8];

#[derive(Default)]
struct DiffBuilder {
    ops: Vec<(Op, usize)>,
    data: Vec<u8>,
}

impl DiffBuilder {
    fn emit(&mut self, op: Op, len: usize, literal: &[u8]) {
        if len == 0 {
            return;
        }
        match self.ops.last_mut() {
            Some((last, n)) if *last == op => *n += len,
            _ => self.ops.push((op, len)),
        }
        self.data.extend_from_slice(literal);
    }

    /// Produces `new` while consuming `old`: shared prefix and suffix are reused, the rest of the
    /// old bytes skipped and the rest of the new ones sent literally.
    fn block(&mut self, old: &[u8], new: &[u8]) {
        let prefix = common_prefix(old, new);
        let (old_rest, new_rest) = (&old[prefix..], &new[prefix..]);
        let suffix = common_suffix(old_rest, new_rest);
        self.emit(Op::Reuse, prefix, &[]);
        self.emit(Op::Skip, old_rest.len() - suffix, &[]);
        let literal = &new_rest[..new_rest.len() - suffix];
        self.emit(Op::Data, literal.len(), literal);
        self.emit(Op::Reuse, suffix, &[]);
    }

    /// Encodes the op stream, uncompressed.
    fn finish(self) -> Vec<u8> {
        let mut words = Vec::new();
        for &(op, mut len) in &self.ops {
            while len > 0 {
                let run = len.min(MAX_RUN);
                words.push((run as u32) | ((op as u32) << 28));
                len -= run;
            }
        }
        let mut out = Vec::with_capacity(8 + 4 * words.len() + self.data.len());
        out.extend_from_slice(HEADER);
        out.extend_from_slice(&(words.len() as u32).to_le_bytes());
        words.iter().for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
        out.extend_from_slice(&self.data);
        out
    }
}

/// One side of the walk: a layout's entries, the next one's index and where the last one ended.
struct Cursor<'a> {
    entries: &'a [Arc<[u8]>],
    next: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    fn new(layout: &'a Layout) -> Self {
        Self { entries: &layout.entries, next: 0, end: 0 }
    }

    fn peek(&self) -> Option<&'a Arc<[u8]>> {
        self.entries.get(self.next)
    }

    /// The next entry with the padding before it, as (padding length, entry); moves past it.
    fn take(&mut self) -> (usize, &'a [u8]) {
        let entry = &self.entries[self.next];
        let start = padded_start(self.end);
        let padding = start - self.end;
        (self.next, self.end) = (self.next + 1, start + entry.len());
        (padding, entry)
    }
}

/// The gzipped delta turning the subsummary laid out as `old` into the one laid out as `new`:
/// the two ref maps walked in step (both are in name order), an entry that is the same in both
/// (the same shared bytes, usually) reused from the old subsummary, then the tails diffed.
pub fn layout_diff(old: &Layout, new: &Layout) -> Vec<u8> {
    let mut builder = DiffBuilder::default();
    let (mut olds, mut news) = (Cursor::new(old), Cursor::new(new));
    loop {
        let order = match (olds.peek(), news.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(o), Some(n)) if Arc::ptr_eq(o, n) || o == n => Ordering::Equal,
            (Some(o), Some(n)) => entry_name(o).cmp(entry_name(n)),
        };
        match order {
            // Only in the old map: skipped.
            Ordering::Less => {
                let (padding, entry) = olds.take();
                builder.emit(Op::Skip, padding + entry.len(), &[]);
            }
            // Only in the new map: sent.
            Ordering::Greater => {
                let (padding, entry) = news.take();
                builder.emit(Op::Data, padding, &PADDING[..padding]);
                builder.emit(Op::Data, entry.len(), entry);
            }
            Ordering::Equal => {
                let ((old_padding, old_entry), (new_padding, new_entry)) = (olds.take(), news.take());
                if old_padding == new_padding && old_entry == new_entry {
                    builder.emit(Op::Reuse, old_padding + old_entry.len(), &[]);
                } else {
                    let padded = |padding: usize, entry: &[u8]| [&PADDING[..padding], entry].concat();
                    builder.block(&padded(old_padding, old_entry), &padded(new_padding, new_entry));
                }
            }
        }
    }
    builder.block(&old.tail, &new.tail);
    super::gzip(&builder.finish(), 9)
}

/// The gzipped delta turning subsummary `old` into `new` ([`layout_diff`] of their layouts).
pub fn summary_diff(old: &[u8], new: &[u8]) -> Vec<u8> {
    let old = Layout::parse(old, None);
    layout_diff(&old, &Layout::parse(new, Some(&old)))
}

/// Applies a gzipped delta to `old`, as flatpak's client does.
pub fn apply_diff(old: &[u8], delta: &[u8], limit: u64) -> Result<Vec<u8>, FormatError> {
    let bad = || FormatError::Malformed("invalid summary delta".into());
    let raw = super::gunzip(delta, limit)?;
    if raw.len() < 8 || &raw[..4] != HEADER {
        return Err(bad());
    }
    let count = u32::from_le_bytes(raw[4..8].try_into().expect("4 bytes")) as usize;
    let data_start = count.checked_mul(4).and_then(|n| n.checked_add(8)).filter(|n| *n <= raw.len()).ok_or_else(bad)?;
    let (mut old_rest, mut data) = (old, &raw[data_start..]);
    let mut out = Vec::new();
    for word in raw[8..data_start].chunks_exact(4) {
        let word = u32::from_le_bytes(word.try_into().expect("4 bytes"));
        let len = (word & MAX_RUN as u32) as usize;
        match word >> 28 {
            0 if len <= old_rest.len() => out.extend_from_slice(&old_rest[..len]),
            1 if len <= old_rest.len() => {}
            2 if len <= data.len() => {
                out.extend_from_slice(&data[..len]);
                data = &data[len..];
                continue;
            }
            _ => return Err(bad()),
        }
        old_rest = &old_rest[len..];
    }
    if out.len() as u64 > limit {
        return Err(FormatError::TooLarge { what: "summary delta output", size: out.len() as u64, limit });
    }
    Ok(out)
}

/// Bytes compared at once when looking for the first difference.
const CHUNK: usize = 64;

/// Length of the longest common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut same = 0;
    while same + CHUNK <= n && a[same..same + CHUNK] == b[same..same + CHUNK] {
        same += CHUNK;
    }
    same + a[same..n].iter().zip(&b[same..n]).take_while(|(x, y)| x == y).count()
}

/// Length of the longest common suffix of `a` and `b`.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut same = 0;
    while same + CHUNK <= n && a[n - same - CHUNK..n - same] == b[n - same - CHUNK..n - same] {
        same += CHUNK;
    }
    same + a[..n - same].iter().rev().zip(b[..n - same].iter().rev()).take_while(|(x, y)| x == y).count()
}

/// Byte ranges and names of the ref-map entries of a summary `(a(s(taya{sv}))a{sv})`, read from
/// its framing offsets; `None` if the bytes are not a well-formed summary.
pub(super) fn ref_map_entries(summary: &[u8]) -> Option<Vec<Entry<'_>>> {
    let map_end = *frame_offsets(summary, 1)?.first()?;
    let map = summary.get(..map_end)?;
    if map.is_empty() {
        return Some(Vec::new());
    }
    let width = offset_width(map.len());
    let table_start = read_offset(map, map.len() - width, width)?;
    let count = (map.len().checked_sub(table_start)?) / width;
    let ends = frame_offsets(map, count)?;
    let mut start = 0;
    let mut entries = Vec::with_capacity(count);
    for end in ends {
        let entry = map.get(start..end)?;
        let name_len = entry.iter().position(|b| *b == 0)?;
        entries.push((&entry[..name_len], start..end));
        start = padded_start(end);
    }
    Some(entries)
}

/// The `count` framing offsets stored at the end of `container`, in element order.
fn frame_offsets(container: &[u8], count: usize) -> Option<Vec<usize>> {
    let width = offset_width(container.len());
    let table = container.len().checked_sub(count.checked_mul(width)?)?;
    let mut offsets: Vec<usize> =
        (0..count).map(|i| read_offset(container, table + i * width, width)).collect::<Option<_>>()?;
    if count == 1 {
        return offsets.pop().map(|o| vec![o]);
    }
    // Arrays store offsets in element order; tuples in reverse, but a summary has just one.
    offsets.iter().all(|o| *o <= table).then_some(offsets)
}

fn offset_width(len: usize) -> usize {
    match len {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    }
}

fn read_offset(data: &[u8], at: usize, width: usize) -> Option<usize> {
    let bytes = data.get(at..at + width)?;
    let mut value = [0u8; 8];
    value[..width].copy_from_slice(bytes);
    usize::try_from(u64::from_le_bytes(value)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::record::{FlatpakData, RefRecord};
    use crate::repo::Checksum;

    fn naive_prefix(a: &[u8], b: &[u8]) -> usize {
        a.iter().zip(b).take_while(|(x, y)| x == y).count()
    }

    #[test]
    fn common_prefix_and_suffix_find_the_first_difference() {
        let base: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();
        for at in [0, 1, 63, 64, 65, 127, 128, 200, 299] {
            let mut other = base.clone();
            other[at] ^= 0xff;
            for cut in [0, 1, 64, 150, 300] {
                let (a, b) = (&base[..cut.max(at + 1).min(300)], &other[..]);
                assert_eq!(common_prefix(a, b), naive_prefix(a, b), "difference at {at}, cut {cut}");
                let (ra, rb): (Vec<u8>, Vec<u8>) =
                    (a.iter().rev().copied().collect(), b.iter().rev().copied().collect());
                assert_eq!(common_suffix(a, b), naive_prefix(&ra, &rb), "difference at {at}, cut {cut}");
            }
        }
    }

    fn subsummary_of(names: &[(usize, u8)]) -> Vec<u8> {
        let records: Vec<RefRecord> = names
            .iter()
            .map(|(i, version)| RefRecord {
                name: format!("app/org.example.App{i:05}/x86_64/stable"),
                commit: Checksum::of(&[*version, *i as u8]),
                commit_size: 100 + *version as u64,
                timestamp: 1_700_000_000 + *version as u64 * 1_000_003,
                flatpak: Some(FlatpakData {
                    metadata: format!("[Application]\nname=App{i}\n{}", "x".repeat(*version as usize)),
                    ..Default::default()
                }),
            })
            .collect();
        super::super::subsummary(&records, "", "x86_64")
    }

    #[test]
    fn deltas_between_versions_reproduce_the_new_one_and_send_only_what_changed() {
        let base: Vec<(usize, u8)> = (0..400).map(|i| (i * 2, 0)).collect();
        let mut changes: Vec<Vec<(usize, u8)>> = Vec::new();
        for at in [0, 1, 200, 399] {
            let mut changed = base.clone();
            changed[at].1 = 1; // same length, other commit
            changes.push(changed.clone());
            changed[at].1 = 3; // longer metadata
            changes.push(changed.clone());
            let mut inserted = base.clone();
            inserted.insert(at, (at * 2 + 1, 0));
            changes.push(inserted);
            let mut removed = base.clone();
            removed.remove(at);
            changes.push(removed);
        }
        changes.push(base.clone());
        changes.push(Vec::new());
        let old = subsummary_of(&base);
        for (names, new) in changes.iter().map(|names| (names, subsummary_of(names))) {
            let delta = summary_diff(&old, &new);
            assert_eq!(apply_diff(&old, &delta, 1 << 24).unwrap(), new);
            let raw = crate::repo::summary::gunzip(&delta, 1 << 24).unwrap();
            // One entry at most differs: its bytes and the framing offsets (4 bytes per entry).
            let sent = raw.len() - 8 - 4 * u32::from_le_bytes(raw[4..8].try_into().unwrap()) as usize;
            assert!(sent < 300 + 4 * names.len(), "{sent} literal bytes for one changed entry");
        }
    }

    #[test]
    fn copes_with_arbitrary_inputs() {
        for (old, new) in [(&b""[..], &b"abc"[..]), (b"abc", b""), (b"same", b"same"), (b"xxhelloyy", b"zzhelloww")] {
            assert_eq!(apply_diff(old, &summary_diff(old, new), 1 << 20).unwrap(), new);
        }
    }

    #[test]
    fn rejects_ops_beyond_the_old_data() {
        let mut raw = b"xadf".to_vec();
        raw.extend_from_slice(&1u32.to_le_bytes());
        raw.extend_from_slice(&10u32.to_le_bytes());
        assert!(apply_diff(b"short", &crate::repo::summary::gzip(&raw, 6), 1 << 20).is_err());
    }
}
