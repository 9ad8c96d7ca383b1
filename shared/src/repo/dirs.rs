//! Directory objects: dirtree `(a(say)a(sayay))` and dirmeta `(uuua(ayay))`.
//!
//! Parsing validates what readers rely on: 32-byte checksums, names that are safe path components,
//! each list sorted in strcmp order without repeats (ostree looks children up by binary search),
//! directory modes, and GVariant normal form.

use gvariant::{gv, Marker, Structure};

use super::gv::aligned;
use super::{Checksum, FormatError};

/// `S_IFMT` and the type bits ostree stores in modes.
pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;

/// A directory listing: files point at content objects, subdirectories at a dirtree and a dirmeta.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirTree {
    pub files: Vec<(String, Checksum)>,
    pub dirs: Vec<DirEntry>,
}

/// A subdirectory of a [`DirTree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub tree: Checksum,
    pub meta: Checksum,
}

impl DirTree {
    /// Parses and validates a dirtree object.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let buf = aligned(bytes);
        let (files, dirs) = gv!("(a(say)a(sayay))").cast(buf.as_ref()).to_tuple();
        let files = files
            .iter()
            .map(|entry| {
                let (name, sum) = entry.to_tuple();
                Ok((name.to_str().to_owned(), Checksum::from_slice(sum)?))
            })
            .collect::<Result<Vec<_>, FormatError>>()?;
        let dirs = dirs
            .iter()
            .map(|entry| {
                let (name, tree, meta) = entry.to_tuple();
                Ok(DirEntry {
                    name: name.to_str().to_owned(),
                    tree: Checksum::from_slice(tree)?,
                    meta: Checksum::from_slice(meta)?,
                })
            })
            .collect::<Result<Vec<_>, FormatError>>()?;
        let tree = Self { files, dirs };
        tree.validate()?;
        if tree.to_bytes() != bytes {
            return Err(FormatError::NotNormalForm);
        }
        Ok(tree)
    }

    /// Serializes in normal form. Entries must already be sorted (see [`DirTree::sort`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let files: Vec<(&str, &[u8])> = self.files.iter().map(|(n, c)| (n.as_str(), &c.as_bytes()[..])).collect();
        let dirs: Vec<(&str, &[u8], &[u8])> =
            self.dirs.iter().map(|d| (d.name.as_str(), &d.tree.as_bytes()[..], &d.meta.as_bytes()[..])).collect();
        gv!("(a(say)a(sayay))").serialize_to_vec(&(&files[..], &dirs[..]))
    }

    /// Sorts both lists in strcmp order, as ostree writes them.
    pub fn sort(&mut self) {
        self.files.sort_by(|a, b| a.0.cmp(&b.0));
        self.dirs.sort_by(|a, b| a.name.cmp(&b.name));
    }

    fn validate(&self) -> Result<(), FormatError> {
        let file_names = self.files.iter().map(|(n, _)| n.as_str());
        let dir_names = self.dirs.iter().map(|d| d.name.as_str());
        check_sorted_names(file_names.clone())?;
        check_sorted_names(dir_names.clone())?;
        let files: std::collections::HashSet<&str> = file_names.collect();
        if let Some(name) = dir_names.into_iter().find(|n| files.contains(n)) {
            return Err(FormatError::Malformed(format!("name {name:?} is both a file and a directory")));
        }
        Ok(())
    }
}

fn check_sorted_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), FormatError> {
    let mut previous: Option<&str> = None;
    for name in names {
        validate_filename(name)?;
        if previous.is_some_and(|p| p >= name) {
            return Err(FormatError::Malformed(format!("dirtree names not sorted or repeated at {name:?}")));
        }
        previous = Some(name);
    }
    Ok(())
}

/// ostree's `ot_util_filename_validate`: a single, non-empty path component.
pub fn validate_filename(name: &str) -> Result<(), FormatError> {
    let bad = name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0');
    if bad {
        return Err(FormatError::Malformed(format!("invalid file name {name:?} in dirtree")));
    }
    Ok(())
}

/// Ownership, mode and xattrs of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMeta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl DirMeta {
    /// What flatpak uses for every directory: root-owned, 040755, no xattrs.
    pub fn flatpak_default() -> Self {
        Self { uid: 0, gid: 0, mode: S_IFDIR | 0o755, xattrs: Vec::new() }
    }

    /// Parses and validates a dirmeta object.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let buf = aligned(bytes);
        let (uid, gid, mode, xattrs) = gv!("(uuua(ayay))").cast(buf.as_ref()).to_tuple();
        let meta = Self {
            uid: u32::from_be(*uid),
            gid: u32::from_be(*gid),
            mode: u32::from_be(*mode),
            xattrs: xattrs
                .iter()
                .map(|x| {
                    let (name, value) = x.to_tuple();
                    (name.to_vec(), value.to_vec())
                })
                .collect(),
        };
        if meta.mode & S_IFMT != S_IFDIR || meta.mode & !(S_IFMT | 0o7777) != 0 {
            return Err(FormatError::Malformed(format!("dirmeta mode {:o} is not a directory mode", meta.mode)));
        }
        if meta.to_bytes() != bytes {
            return Err(FormatError::NotNormalForm);
        }
        Ok(meta)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let xattrs: Vec<(&[u8], &[u8])> = self.xattrs.iter().map(|(n, v)| (&n[..], &v[..])).collect();
        gv!("(uuua(ayay))").serialize_to_vec(&(self.uid.to_be(), self.gid.to_be(), self.mode.to_be(), &xattrs[..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_dirtree_matches_ostree_vector() {
        let bytes = DirTree::default().to_bytes();
        assert_eq!(bytes, [0u8]);
        assert_eq!(Checksum::of(&bytes).to_hex(), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    }

    #[test]
    fn default_dirmeta_matches_flatpak_vector() {
        let bytes = DirMeta::flatpak_default().to_bytes();
        assert_eq!(hex::encode(&bytes), "0000000000000000000041ed");
        assert_eq!(Checksum::of(&bytes).to_hex(), "446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488");
        assert_eq!(DirMeta::parse(&bytes).unwrap(), DirMeta::flatpak_default());
    }

    fn tree(files: &[&str], dirs: &[&str]) -> DirTree {
        let sum = Checksum::of(b"x");
        DirTree {
            files: files.iter().map(|n| (n.to_string(), sum)).collect(),
            dirs: dirs.iter().map(|n| DirEntry { name: n.to_string(), tree: sum, meta: sum }).collect(),
        }
    }

    #[test]
    fn round_trips_a_sorted_tree() {
        let t = tree(&["a", "b.txt"], &["bin", "share"]);
        assert_eq!(DirTree::parse(&t.to_bytes()).unwrap(), t);
    }

    #[test]
    fn rejects_dot_dot_slash_empty_unsorted_and_clashing_names() {
        for bad in [
            tree(&[".."], &[]),
            tree(&[], &[".."]),
            tree(&["."], &[]),
            tree(&["a/b"], &[]),
            tree(&[""], &[]),
            tree(&["b", "a"], &[]),
            tree(&["a", "a"], &[]),
            tree(&["x"], &["x"]),
        ] {
            assert!(DirTree::parse(&bad.to_bytes()).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn rejects_short_checksums_and_trailing_bytes() {
        let short = gv!("(a(say)a(sayay))")
            .serialize_to_vec(&(&[("a", &[1u8, 2][..])][..], &[][..] as &[(&str, &[u8], &[u8])]));
        assert!(DirTree::parse(&short).is_err());
        let mut long = tree(&["a"], &[]).to_bytes();
        long.push(0);
        assert!(DirTree::parse(&long).is_err());
    }

    #[test]
    fn rejects_non_directory_dirmeta() {
        let meta = DirMeta { mode: S_IFREG | 0o644, ..DirMeta::flatpak_default() };
        assert!(DirMeta::parse(&meta.to_bytes()).is_err());
    }
}
