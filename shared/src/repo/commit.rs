//! Commit objects, `(a{sv}aya(say)sstayay)`.

use gvariant::{gv, Marker, Structure};

use super::gv::{aligned, VarDict};
use super::{Checksum, FormatError};

/// A parsed commit. Metadata keeps its original order and value bytes.
#[derive(Debug)]
pub struct Commit {
    pub metadata: VarDict,
    pub parent: Option<Checksum>,
    /// "Related objects": always empty in practice, kept verbatim.
    pub related: Vec<(String, Vec<u8>)>,
    pub subject: String,
    pub body: String,
    /// Seconds since the epoch (stored big-endian).
    pub timestamp: u64,
    pub root_tree: Checksum,
    pub root_meta: Checksum,
}

impl Commit {
    /// Parses and validates a commit object.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let buf = aligned(bytes);
        let (metadata, parent, related, subject, body, timestamp, tree, meta) =
            gv!("(a{sv}aya(say)sstayay)").cast(buf.as_ref()).to_tuple();
        let commit = Self {
            metadata: VarDict::from_entries(metadata.iter().map(|e| e.to_tuple())),
            parent: match parent.len() {
                0 => None,
                _ => Some(Checksum::from_slice(parent)?),
            },
            related: related
                .iter()
                .map(|r| {
                    let (name, sum) = r.to_tuple();
                    (name.to_str().to_owned(), sum.to_vec())
                })
                .collect(),
            subject: subject.to_str().to_owned(),
            body: body.to_str().to_owned(),
            timestamp: u64::from_be(*timestamp),
            root_tree: Checksum::from_slice(tree)?,
            root_meta: Checksum::from_slice(meta)?,
        };
        commit.metadata.check_keys()?;
        if commit.to_bytes() != bytes {
            return Err(FormatError::NotNormalForm);
        }
        Ok(commit)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let metadata = self.metadata.as_tuples();
        let parent: &[u8] = self.parent.as_ref().map_or(&[], |p| &p.as_bytes()[..]);
        let related: Vec<(&str, &[u8])> = self.related.iter().map(|(n, s)| (n.as_str(), &s[..])).collect();
        gv!("(a{sv}aya(say)sstayay)").serialize_to_vec(&(
            &metadata[..],
            parent,
            &related[..],
            self.subject.as_str(),
            self.body.as_str(),
            self.timestamp.to_be(),
            &self.root_tree.as_bytes()[..],
            &self.root_meta.as_bytes()[..],
        ))
    }

    /// The commit's object name: the checksum of its serialized bytes.
    pub fn checksum(&self) -> Checksum {
        Checksum::of(&self.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::gv::variant;

    fn sample() -> Commit {
        let mut metadata = VarDict::new();
        metadata.set("xa.ref", variant(gv!("s"), "app/org.example.App/x86_64/stable"));
        metadata.set("ostree.ref-binding", variant(gv!("as"), ["app/org.example.App/x86_64/stable"].iter()));
        Commit {
            metadata,
            parent: Some(Checksum::of(b"parent")),
            related: Vec::new(),
            subject: "Export org.example.App".into(),
            body: String::new(),
            timestamp: 1_700_000_000,
            root_tree: Checksum::of(b"tree"),
            root_meta: Checksum::of(b"meta"),
        }
    }

    #[test]
    fn round_trips_and_stores_timestamp_big_endian() {
        let commit = sample();
        let bytes = commit.to_bytes();
        let parsed = Commit::parse(&bytes).unwrap();
        assert_eq!(parsed.timestamp, 1_700_000_000);
        assert_eq!(parsed.parent, commit.parent);
        assert_eq!(parsed.to_bytes(), bytes);
        let be = 1_700_000_000u64.to_be_bytes();
        assert!(bytes.windows(8).any(|w| w == be), "timestamp must be stored big-endian");
    }

    #[test]
    fn parentless_commit_has_empty_parent() {
        let commit = Commit { parent: None, ..sample() };
        assert_eq!(Commit::parse(&commit.to_bytes()).unwrap().parent, None);
    }

    #[test]
    fn rejects_truncated_and_padded_bytes() {
        let bytes = sample().to_bytes();
        assert!(Commit::parse(&bytes[..bytes.len() - 1]).is_err());
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 8]);
        assert!(Commit::parse(&padded).is_err());
    }
}
