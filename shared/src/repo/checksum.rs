//! SHA-256 object checksums and the two text forms ostree gives them: lowercase hex for object and
//! ref files, and "modified base64" (`/` → `_`, no padding, `+` kept) for static-delta paths.

use std::fmt;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::FormatError;

/// A 32-byte SHA-256 checksum naming an object, a commit or a summary.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum([u8; 32]);

impl Checksum {
    /// Wraps raw digest bytes.
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The checksum of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// Parses 64 lowercase hex characters (uppercase is rejected, as ostree does).
    pub fn from_hex(text: &str) -> Result<Self, FormatError> {
        let valid = text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(FormatError::InvalidChecksum(text.chars().take(80).collect()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|_| FormatError::InvalidChecksum(text.to_owned()))?;
        Ok(Self(out))
    }

    /// Reads the `ay` form used inside GVariants: exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, FormatError> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| FormatError::InvalidChecksum(format!("{} bytes instead of 32", bytes.len())))?;
        Ok(Self(array))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// ostree's `ostree_checksum_b64_inplace_from_bytes`: standard base64 with `/` replaced by `_`
    /// and the padding dropped. The result keeps `+`, which object stores and CDNs must handle.
    pub fn to_modified_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.0).replace('/', "_")
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.to_hex())
    }
}

impl serde::Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Checksum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

impl From<Sha256> for Checksum {
    fn from(hasher: Sha256) -> Self {
        Self(hasher.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_hex() {
        let hex = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";
        assert_eq!(Checksum::from_hex(hex).unwrap().to_hex(), hex);
    }

    #[test]
    fn rejects_uppercase_short_and_non_hex() {
        assert!(Checksum::from_hex(&"A".repeat(64)).is_err());
        assert!(Checksum::from_hex(&"a".repeat(63)).is_err());
        assert!(Checksum::from_hex(&"g".repeat(64)).is_err());
        assert!(Checksum::from_hex(&format!("{}/", "a".repeat(63))).is_err());
    }

    #[test]
    fn modified_base64_matches_ostree_example() {
        let to = Checksum::from_hex("1f64abf7f9285f93e5a0d54a9aa5bdbcc54e8098613569290aa9f7ea980171164").err();
        assert!(to.is_some(), "65 characters must be rejected");
        // From the format reference, §9.1: the to-checksum of the example delta.
        let b64 = "H2Sr9+k+UNVKmqW9vMVOgCYYTWkMqn36pgFxFmOPddQ";
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64).unwrap();
        let sum = Checksum::from_slice(&raw).unwrap();
        assert_eq!(sum.to_modified_base64(), b64);
        assert!(sum.to_hex().starts_with("1f64abf7"));
        assert!(sum.to_hex().ends_with("75d4"));
    }
}
