//! The Flatpak/OSTree repository format, written and verified in pure Rust: object names and
//! layouts, commit rewriting, per-ref records and the summary files built from them.

#[cfg(feature = "server")]
pub mod appstream;
mod checksum;
pub mod commit;
pub mod deltas;
pub mod dirs;
pub mod filez;
pub mod flatpakref;
pub mod gv;
pub mod layout;
pub mod local;
mod object;
pub mod publish;
pub mod record;
pub mod refs;
pub mod retire;
pub mod rewrite;
#[cfg(feature = "server")]
pub mod sign;
pub mod summary;
pub mod superblock;
pub mod tree;
pub mod verify;
pub mod walk;

pub use checksum::Checksum;
pub use object::{delta_dir, delta_index_key, delta_name, ObjectName, ObjectType};

/// What is wrong with bytes that claim to be part of a repository.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    #[error("invalid checksum {0:?}")]
    InvalidChecksum(String),
    #[error("invalid object name {0:?}")]
    InvalidObjectName(String),
    #[error("invalid ref {0:?}: {1}")]
    InvalidRef(String, &'static str),
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("not in GVariant normal form")]
    NotNormalForm,
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { what: &'static str, size: u64, limit: u64 },
}
