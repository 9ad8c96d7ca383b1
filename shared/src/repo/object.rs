//! Object names (`<64 hex>.<extension>`) of an archive-z2 repository, their storage keys, and the
//! keys of static deltas and delta indexes.

use std::fmt;
use std::str::FromStr;

use super::{Checksum, FormatError};

/// The object kinds an archive-z2 repository stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    /// A content object: compressed file header and content (`.filez`).
    File,
    /// A directory listing, `(a(say)a(sayay))`.
    DirTree,
    /// A directory's ownership, mode and xattrs, `(uuua(ayay))`.
    DirMeta,
    /// A commit, `(a{sv}aya(say)sstayay)`.
    Commit,
    /// Detached commit metadata (signatures), named by the commit's checksum.
    CommitMeta,
}

impl ObjectType {
    pub const ALL: [ObjectType; 5] = [Self::File, Self::DirTree, Self::DirMeta, Self::Commit, Self::CommitMeta];

    /// The file extension in an archive-z2 repository.
    pub fn extension(self) -> &'static str {
        match self {
            Self::File => "filez",
            Self::DirTree => "dirtree",
            Self::DirMeta => "dirmeta",
            Self::Commit => "commit",
            Self::CommitMeta => "commitmeta",
        }
    }

    /// ostree's numeric object type, used in static-delta object lists.
    pub fn ostree_id(self) -> u8 {
        match self {
            Self::File => 1,
            Self::DirTree => 2,
            Self::DirMeta => 3,
            Self::Commit => 4,
            Self::CommitMeta => 6,
        }
    }

    fn from_extension(ext: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.extension() == ext)
    }

    /// Metadata objects are whole GVariants, checksummed over their bytes.
    pub fn is_metadata(self) -> bool {
        self != Self::File
    }
}

/// A checksum together with an object type: what the API calls an object name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    pub checksum: Checksum,
    pub kind: ObjectType,
}

impl ObjectName {
    pub fn new(checksum: Checksum, kind: ObjectType) -> Self {
        Self { checksum, kind }
    }

    /// The key below a repository root: `objects/<2 hex>/<62 hex>.<ext>`.
    pub fn key(&self) -> String {
        let hex = self.checksum.to_hex();
        format!("objects/{}/{}.{}", &hex[..2], &hex[2..], self.kind.extension())
    }

    /// Parses a storage key produced by [`ObjectName::key`].
    pub fn from_key(key: &str) -> Result<Self, FormatError> {
        let invalid = || FormatError::InvalidObjectName(key.chars().take(200).collect());
        let rest = key.strip_prefix("objects/").ok_or_else(invalid)?;
        let (dir, file) = rest.split_once('/').ok_or_else(invalid)?;
        if dir.len() != 2 {
            return Err(invalid());
        }
        format!("{dir}{file}").parse().map_err(|_| invalid())
    }
}

impl FromStr for ObjectName {
    type Err = FormatError;

    /// Parses `<64 lowercase hex>.<extension>`, the form used by uploads and `missing_objects`.
    fn from_str(name: &str) -> Result<Self, FormatError> {
        let invalid = || FormatError::InvalidObjectName(name.chars().take(200).collect());
        let (hex, ext) = name.split_once('.').ok_or_else(invalid)?;
        let kind = ObjectType::from_extension(ext).ok_or_else(invalid)?;
        let checksum = Checksum::from_hex(hex).map_err(|_| invalid())?;
        Ok(Self { checksum, kind })
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.checksum, self.kind.extension())
    }
}

impl fmt::Debug for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The directory of a static delta below the repository root, without a trailing slash:
/// `deltas/<b64(to)[..2]>/<b64(to)[2..]>` from scratch, or
/// `deltas/<b64(from)[..2]>/<b64(from)[2..]>-<b64(to)>` from a commit.
pub fn delta_dir(from: Option<&Checksum>, to: &Checksum) -> String {
    let to_b64 = to.to_modified_base64();
    match from {
        None => format!("deltas/{}/{}", &to_b64[..2], &to_b64[2..]),
        Some(from) => {
            let from_b64 = from.to_modified_base64();
            format!("deltas/{}/{}-{}", &from_b64[..2], &from_b64[2..], to_b64)
        }
    }
}

/// The delta name used in summaries and delta indexes: `<to-hex>` or `<from-hex>-<to-hex>`.
pub fn delta_name(from: Option<&Checksum>, to: &Checksum) -> String {
    match from {
        None => to.to_hex(),
        Some(from) => format!("{from}-{to}"),
    }
}

/// The delta index listing every delta that ends at `to`.
pub fn delta_index_key(to: &Checksum) -> String {
    let b64 = to.to_modified_base64();
    format!("delta-indexes/{}/{}.index", &b64[..2], &b64[2..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488";

    #[test]
    fn key_splits_after_two_hex_characters() {
        let name: ObjectName = format!("{HEX}.dirmeta").parse().unwrap();
        assert_eq!(name.key(), format!("objects/44/{}.dirmeta", &HEX[2..]));
        assert_eq!(ObjectName::from_key(&name.key()).unwrap(), name);
    }

    #[test]
    fn rejects_unknown_extension_slash_and_traversal() {
        for bad in [
            format!("{HEX}.file"),
            format!("{HEX}.filez/"),
            format!("../{HEX}.commit"),
            HEX.to_string(),
            format!("{}.commit", &HEX[..63]),
            format!("{HEX}.commit.commit"),
        ] {
            assert!(bad.parse::<ObjectName>().is_err(), "{bad} must be rejected");
        }
        assert!(ObjectName::from_key(&format!("objects/../{HEX}.commit")).is_err());
        assert!(ObjectName::from_key(&format!("objects/44/x/{}.commit", &HEX[2..])).is_err());
    }

    #[test]
    fn delta_paths_follow_ostree_example() {
        use base64::Engine;
        let decode = |s: &str| {
            let raw = base64::engine::general_purpose::STANDARD_NO_PAD.decode(s.replace('_', "/")).unwrap();
            Checksum::from_slice(&raw).unwrap()
        };
        let to = decode("H2Sr9+k+UNVKmqW9vMVOgCYYTWkMqn36pgFxFmOPddQ");
        let from = decode("M7dfzAXZZ2oKqWWqmXQkcEt5Mnbf6of+hbL_k3wBt6w");
        assert_eq!(delta_dir(None, &to), "deltas/H2/Sr9+k+UNVKmqW9vMVOgCYYTWkMqn36pgFxFmOPddQ");
        assert_eq!(
            delta_dir(Some(&from), &to),
            "deltas/M7/dfzAXZZ2oKqWWqmXQkcEt5Mnbf6of+hbL_k3wBt6w-H2Sr9+k+UNVKmqW9vMVOgCYYTWkMqn36pgFxFmOPddQ"
        );
        assert_eq!(delta_index_key(&to), "delta-indexes/H2/Sr9+k+UNVKmqW9vMVOgCYYTWkMqn36pgFxFmOPddQ.index");
        assert_eq!(delta_name(Some(&from), &to), format!("{}-{}", from.to_hex(), to.to_hex()));
    }
}
