//! A thin layer over the `gvariant` crate: aligned buffers, the ordered `a{sv}` dictionary that
//! OSTree and Flatpak metadata use everywhere, and helpers to build `v` values.
//!
//! `gvariant` copies values it does not know as raw bytes, so a dictionary parsed from an uploaded
//! commit is re-emitted byte for byte, in its original key order (GLib writes hash order).

use gvariant::aligned_bytes::{AlignedBuf, AlignedSlice, A8};
use gvariant::{gv, Marker, Owned, SerializeTo, Str, Structure, Variant, VariantWrap};

use super::FormatError;

/// One `{sv}` entry as `gvariant` serializes it.
pub type DictTuple<'a> = (&'a str, &'a Variant);

/// Copies `bytes` into an 8-aligned buffer, as every cast needs.
pub fn aligned(bytes: &[u8]) -> AlignedBuf {
    AlignedBuf::from(bytes.to_vec())
}

/// Serializes `value` as a `v` holding type `M`.
pub fn variant<M: Marker, T: SerializeTo<M::Type>>(marker: M, value: T) -> Owned<Variant> {
    Owned::from_vec(gv!("v").serialize_to_vec(VariantWrap(marker, value)))
}

/// A `u64` stored big-endian, as ostree and flatpak store timestamps and sizes.
pub fn be64(value: u64) -> u64 {
    u64::from_be(value)
}

/// Width of each framing offset of a container whose body is `body` bytes and which stores
/// `count` offsets: the smallest of 1, 2, 4 and 8 bytes that can address the whole container
/// (GLib's `gvs_calculate_total_size`).
pub fn offset_width(body: usize, count: usize) -> usize {
    if body + count <= 0xff {
        1
    } else if body + 2 * count <= 0xffff {
        2
    } else if body as u64 + 4 * count as u64 <= 0xffff_ffff {
        4
    } else {
        8
    }
}

/// Appends the framing offsets `ends` to the container body in `out`.
fn append_offsets(out: &mut Vec<u8>, ends: &[usize]) {
    let width = offset_width(out.len(), ends.len());
    out.reserve(width * ends.len());
    for end in ends {
        out.extend_from_slice(&(*end as u64).to_le_bytes()[..width]);
    }
}

/// Pads `out` with zero bytes to a multiple of `align`.
fn pad(out: &mut Vec<u8>, align: usize) {
    out.resize(out.len().next_multiple_of(align), 0);
}

/// Serializes an array of variable-size elements from their serialized bytes, each element
/// aligned to `align` (the element type's alignment): the bytes `gvariant` would write for the
/// same values, assembled by copying.
pub fn frame_array(elements: &[&[u8]], align: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(elements.iter().map(|e| e.len() + align + 4).sum());
    let mut ends = Vec::with_capacity(elements.len());
    for element in elements {
        pad(&mut out, align);
        out.extend_from_slice(element);
        ends.push(out.len());
    }
    append_offsets(&mut out, &ends);
    out
}

/// Serializes a pair of variable-size values from their serialized bytes, `second` aligned to
/// `align`: a summary's `(a(s(taya{sv}))a{sv})`, for one.
pub fn frame_pair(first: &[u8], second: &[u8], align: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(first.len() + align + second.len() + 8);
    out.extend_from_slice(first);
    pad(&mut out, align);
    out.extend_from_slice(second);
    append_offsets(&mut out, &[first.len()]);
    out
}

/// The serialized `v` holding the serialized value `body` of type `type_string`.
pub fn wrap_variant(mut body: Vec<u8>, type_string: &str) -> Vec<u8> {
    body.push(0);
    body.extend_from_slice(type_string.as_bytes());
    body
}

/// The `a{sv}` dictionary, keeping entry order and the exact bytes of every value.
#[derive(Default)]
pub struct VarDict {
    entries: Vec<(String, Owned<Variant>)>,
}

impl VarDict {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses serialized `a{sv}` bytes (8-aligned).
    pub fn parse(data: &AlignedSlice<A8>) -> Self {
        Self::from_entries(gv!("a{sv}").cast(data).iter().map(|entry| entry.to_tuple()))
    }

    /// Collects parsed `{sv}` entries, as a containing structure yields them.
    pub fn from_entries<'a>(entries: impl Iterator<Item = (&'a Str, &'a Variant)>) -> Self {
        let entries = entries.map(|(key, value)| (key.to_str().to_owned(), value.to_owned())).collect();
        Self { entries }
    }

    pub fn get(&self, key: &str) -> Option<&Variant> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// Reads a `s` value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.get(gv!("s")).map(|s| s.to_str())
    }

    /// Reads a big-endian `t` value (ostree's timestamps and flatpak's sizes).
    pub fn get_be_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.get(gv!("t")).map(|v| be64(*v))
    }

    /// Reads a little-endian `i` value (`xa.token-type`).
    pub fn get_le_i32(&self, key: &str) -> Option<i32> {
        self.get(key)?.get(gv!("i")).map(|v| i32::from_le(*v))
    }

    /// Reads an `as` value.
    pub fn get_str_list(&self, key: &str) -> Option<Vec<String>> {
        let list = self.get(key)?.get(gv!("as"))?;
        Some(list.iter().map(|s| s.to_str().to_owned()).collect())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Appends `key`, or replaces its value in place when it is already present.
    pub fn set(&mut self, key: &str, value: Owned<Variant>) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key.to_owned(), value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Owned<Variant>> {
        let position = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(position).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Variant)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), &**v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sorts entries by key (strcmp order), for dictionaries whose readers bisect.
    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
    }

    /// The tuples `gvariant` serializes an `a{sv}` from.
    pub fn as_tuples(&self) -> Vec<DictTuple<'_>> {
        self.iter().collect()
    }

    /// Serialized `a{sv}`.
    pub fn to_bytes(&self) -> Vec<u8> {
        gv!("a{sv}").serialize_to_vec(self.as_tuples().iter())
    }

    /// Rejects empty and duplicate keys, which ostree refuses in commit metadata.
    pub fn check_keys(&self) -> Result<(), FormatError> {
        let mut seen = std::collections::HashSet::new();
        for (key, _) in &self.entries {
            if key.is_empty() || !seen.insert(key.as_str()) {
                return Err(FormatError::Malformed(format!("metadata key {key:?} is empty or repeated")));
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for VarDict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.entries.iter().map(|(k, v)| (k, &**v))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unsorted_order_and_bytes_through_a_round_trip() {
        let mut dict = VarDict::new();
        dict.set("zeta", variant(gv!("s"), "last"));
        dict.set("alpha", variant(gv!("t"), u64::to_be(7)));
        dict.set("mid", variant(gv!("as"), ["a", "b"].iter()));
        let bytes = dict.to_bytes();
        let parsed = VarDict::parse(aligned(&bytes).as_ref());
        assert_eq!(parsed.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["zeta", "alpha", "mid"]);
        assert_eq!(parsed.to_bytes(), bytes);
        assert_eq!(parsed.get_be_u64("alpha"), Some(7));
        assert_eq!(parsed.get_str("zeta"), Some("last"));
        assert_eq!(parsed.get_str_list("mid").unwrap(), ["a", "b"]);
    }

    /// A summary ref map entry's value.
    type Info<'a> = (u64, &'a [u8], &'a [DictTuple<'a>]);

    #[test]
    fn framing_matches_the_serializer_at_every_offset_width() {
        for count in [0usize, 1, 2, 40, 300, 70_000] {
            let names: Vec<String> = (0..count).map(|i| format!("ref-{i}")).collect();
            let meta = VarDict::new();
            let meta = meta.as_tuples();
            let values: Vec<Info> = (0..count).map(|i| (i as u64, &b"commit"[..i % 7], &meta[..])).collect();
            let refs: Vec<(&str, &Info)> = names.iter().zip(&values).map(|(n, v)| (n.as_str(), v)).collect();
            let elements: Vec<Vec<u8>> = refs.iter().map(|r| gv!("(s(taya{sv}))").serialize_to_vec(r)).collect();
            let slices: Vec<&[u8]> = elements.iter().map(Vec::as_slice).collect();
            let mut trailer = VarDict::new();
            trailer.set("k", variant(gv!("s"), "v"));
            let expected = gv!("(a(s(taya{sv}))a{sv})").serialize_to_vec(&(&refs[..], &trailer.as_tuples()[..]));
            assert_eq!(frame_pair(&frame_array(&slices, 8), &trailer.to_bytes(), 8), expected, "{count} elements");
        }
    }

    #[test]
    fn wrapped_variants_match_the_serializer() {
        let mut inner = gv!("as").serialize_to_vec(["a", "b"].iter());
        inner.extend_from_slice(b"\0as");
        let (mut ours, mut theirs) = (VarDict::new(), VarDict::new());
        ours.set("k", Owned::from_vec(wrap_variant(inner, "v")));
        theirs.set("k", variant(gv!("v"), VariantWrap(gv!("as"), ["a", "b"].iter())));
        assert_eq!(ours.to_bytes(), theirs.to_bytes());
    }

    #[test]
    fn set_replaces_in_place() {
        let mut dict = VarDict::new();
        dict.set("a", variant(gv!("s"), "1"));
        dict.set("b", variant(gv!("s"), "2"));
        dict.set("a", variant(gv!("s"), "3"));
        assert_eq!(dict.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(dict.get_str("a"), Some("3"));
    }
}
