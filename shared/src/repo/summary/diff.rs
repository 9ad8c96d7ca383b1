//! Summary deltas (`summaries/<old>-<new>.delta`): flatpak's `xadf` op stream, built by walking
//! the two ref maps in step so unchanged refs are copied from the old subsummary.

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

struct DiffBuilder<'a> {
    old: &'a [u8],
    new: &'a [u8],
    ops: Vec<(Op, usize)>,
    data: Vec<u8>,
    old_pos: usize,
    new_pos: usize,
}

impl DiffBuilder<'_> {
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

    /// Produces `new[new_range]` while consuming `old[old_range]`: shared prefix and suffix are
    /// reused, the rest of the old bytes skipped and the rest of the new ones sent literally.
    fn block(&mut self, old: std::ops::Range<usize>, new: std::ops::Range<usize>) {
        let (old_bytes, new_bytes) = (&self.old[old], &self.new[new]);
        let prefix = old_bytes.iter().zip(new_bytes).take_while(|(a, b)| a == b).count();
        let (old_rest, new_rest) = (&old_bytes[prefix..], &new_bytes[prefix..]);
        let suffix = old_rest.iter().rev().zip(new_rest.iter().rev()).take_while(|(a, b)| a == b).count();
        self.emit(Op::Reuse, prefix, &[]);
        self.emit(Op::Skip, old_rest.len() - suffix, &[]);
        let literal = &new_rest[..new_rest.len() - suffix];
        self.emit(Op::Data, literal.len(), literal);
        self.emit(Op::Reuse, suffix, &[]);
    }

    /// Consumes an old entry range and produces a new one (either may be absent), covering any
    /// gap since the last consumed position first.
    fn consume(&mut self, old: Option<std::ops::Range<usize>>, new: Option<std::ops::Range<usize>>) {
        let old = old.unwrap_or(self.old_pos..self.old_pos);
        let new = new.unwrap_or(self.new_pos..self.new_pos);
        if old.start != self.old_pos || new.start != self.new_pos {
            self.block(self.old_pos..old.start, self.new_pos..new.start);
        }
        (self.old_pos, self.new_pos) = (old.end, new.end);
        self.block(old, new);
    }

    fn encode(&self) -> Vec<u8> {
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

/// The gzipped delta turning subsummary `old` into `new`.
pub fn summary_diff(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut builder = DiffBuilder { old, new, ops: Vec::new(), data: Vec::new(), old_pos: 0, new_pos: 0 };
    if let (Some(old_entries), Some(new_entries)) = (ref_map_entries(old), ref_map_entries(new)) {
        let (mut i, mut j) = (0, 0);
        while i < old_entries.len() && j < new_entries.len() {
            let ((old_name, old_range), (new_name, new_range)) = (&old_entries[i], &new_entries[j]);
            match new_name.cmp(old_name) {
                std::cmp::Ordering::Equal => {
                    builder.consume(Some(old_range.clone()), Some(new_range.clone()));
                    (i, j) = (i + 1, j + 1);
                }
                std::cmp::Ordering::Less => {
                    builder.consume(None, Some(new_range.clone()));
                    j += 1;
                }
                std::cmp::Ordering::Greater => {
                    builder.consume(Some(old_range.clone()), None);
                    i += 1;
                }
            }
        }
    }
    builder.block(builder.old_pos..old.len(), builder.new_pos..new.len());
    super::gzip(&builder.encode(), 9)
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

/// Byte ranges and names of the ref-map entries of a summary `(a(s(taya{sv}))a{sv})`, read from
/// its framing offsets; `None` if the bytes are not a well-formed summary.
fn ref_map_entries(summary: &[u8]) -> Option<Vec<(&[u8], std::ops::Range<usize>)>> {
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
        start = end.next_multiple_of(8);
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
