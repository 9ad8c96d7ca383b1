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
