//! OpenPGP signing of repository metadata, in process: detached signatures on commits (in their
//! `.commitmeta`, key `ostree.gpgsigs`) and on `summary` / `summary.idx` (the `.sig` files).
//!
//! Every key of a [`Signer`] signs, so a repository can move to a new key while clients that only
//! know the old one keep verifying (ostree and flatpak accept a file when any one signature is
//! good). Signatures are version 4 binary packets over SHA-256, what GnuPG 2.2 (gpgme, behind
//! ostree and flatpak) verifies for RSA and EdDSA keys.
//!
//! Keys come as armored secret-key text. [`Signer::from_gpg_homedir`] keeps flat-manager's
//! `gpg-key` + `gpg-homedir` configuration working by exporting that key with the `gpg` binary;
//! it is the only place that runs GnuPG.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use gvariant::gv;
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedSecretKey, SignedSecretSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType};
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, KeyVersion, Password, SigningKey, Timestamp};

use super::gv::{aligned, variant, VarDict};
use super::FormatError;

/// The metadata key under which ostree and flatpak keep OpenPGP signatures, an `aay`.
pub const GPG_SIGNATURES_KEY: &str = "ostree.gpgsigs";

/// Why keys could not be loaded or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot read the OpenPGP secret key: {0}")]
    InvalidKey(String),
    #[error("no OpenPGP secret key found")]
    NoKey,
    #[error("OpenPGP key {0} is protected by a passphrase; signing needs a key exported without one")]
    PassphraseProtected(String),
    #[error("OpenPGP key {0} has no signing-capable primary key or subkey")]
    NoSigningKey(String),
    #[error("OpenPGP key {0} is a version {1} key; GnuPG 2.2 (ostree, flatpak) only verifies version 4 signatures")]
    UnsupportedVersion(String, u8),
    #[error("OpenPGP key {0} expired on {1}; clients refuse its signatures")]
    Expired(String, String),
    #[error("OpenPGP key {0} is revoked")]
    Revoked(String),
    #[error("signing with OpenPGP key {0} failed: {1}")]
    Sign(String, String),
    #[error("exporting the OpenPGP key from GnuPG failed: {0}")]
    Gpg(String),
}

/// How long before a key expires start-up warns about it.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// Which part of a secret key makes the signatures.
#[derive(Debug, Clone, Copy)]
enum SigningPart {
    Primary,
    Subkey(usize),
}

/// One secret key and the (sub)key of it that signs.
struct Key {
    secret: SignedSecretKey,
    part: SigningPart,
    /// When signatures by `part` stop verifying (the earlier of the primary key's and the
    /// subkey's expiry), seconds since the epoch; `None`: never.
    expires: Option<u64>,
}

impl Key {
    /// Checks that `secret` can sign at `now` without a passphrase and picks the part that signs:
    /// the newest signing subkey that is neither revoked nor expired, as GnuPG does, else a
    /// signing-capable primary key. A revoked or expired primary key signs nothing.
    fn new(secret: SignedSecretKey, now: u64) -> Result<Self, SignError> {
        let fingerprint = format!("{:X}", secret.primary_key.fingerprint());
        if is_revoked(&secret.details.revocation_signatures, SignatureType::KeyRevocation) {
            return Err(SignError::Revoked(fingerprint));
        }
        let primary_expires = primary_expiry(&secret);
        if let Some(expired) = primary_expires.filter(|&at| at <= now) {
            return Err(SignError::Expired(fingerprint, format_time(expired)));
        }
        let signing_subkeys: Vec<(usize, Option<u64>)> = secret
            .secret_subkeys
            .iter()
            .enumerate()
            .filter(|(_, subkey)| binds_signing_subkey(&subkey.signatures))
            .map(|(index, subkey)| (index, subkey_expiry(subkey)))
            .collect();
        let newest_valid = signing_subkeys
            .iter()
            .filter(|(_, expires)| expires.is_none_or(|at| at > now))
            .max_by_key(|(index, _)| secret.secret_subkeys[*index].key.created_at());
        let (part, expires) = match newest_valid {
            Some(&(index, expires)) => (SigningPart::Subkey(index), earliest(primary_expires, expires)),
            None if certifies_signing_primary(&secret) => (SigningPart::Primary, primary_expires),
            None => {
                let last_expired = signing_subkeys.iter().filter_map(|(_, expires)| *expires).max();
                return Err(match last_expired {
                    Some(expired) => SignError::Expired(fingerprint, format_time(expired)),
                    None => SignError::NoSigningKey(fingerprint),
                });
            }
        };
        let (version, params) = match part {
            SigningPart::Primary => (secret.primary_key.version(), secret.primary_key.secret_params()),
            SigningPart::Subkey(i) => {
                (secret.secret_subkeys[i].key.version(), secret.secret_subkeys[i].key.secret_params())
            }
        };
        if params.is_encrypted() {
            return Err(SignError::PassphraseProtected(fingerprint));
        }
        if version != KeyVersion::V4 {
            return Err(SignError::UnsupportedVersion(fingerprint, u8::from(version)));
        }
        Ok(Self { secret, part, expires })
    }

    fn fingerprint(&self) -> String {
        format!("{:X}", self.secret.primary_key.fingerprint())
    }

    fn is_valid_at(&self, now: u64) -> bool {
        self.expires.is_none_or(|at| at > now)
    }

    /// Whether the binary signature `signature` was made by the part of this key that signs.
    fn made(&self, signature: &[u8]) -> bool {
        let (fingerprint, key_id) = match self.part {
            SigningPart::Primary => (self.secret.primary_key.fingerprint(), self.secret.primary_key.legacy_key_id()),
            SigningPart::Subkey(i) => {
                let key = &self.secret.secret_subkeys[i].key;
                (key.fingerprint(), key.legacy_key_id())
            }
        };
        DetachedSignature::from_bytes(signature).is_ok_and(|parsed| {
            parsed.signature.issuer_fingerprint().contains(&&fingerprint)
                || parsed.signature.issuer_key_id().contains(&&key_id)
        })
    }

    /// A binary detached signature over `data`.
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, SignError> {
        let signature = match self.part {
            SigningPart::Primary => detached(&self.secret.primary_key, data),
            SigningPart::Subkey(i) => detached(&self.secret.secret_subkeys[i].key, data),
        };
        signature.and_then(|s| s.to_bytes()).map_err(|e| SignError::Sign(self.fingerprint(), e.to_string()))
    }
}

fn detached(key: &impl SigningKey, data: &[u8]) -> pgp::errors::Result<DetachedSignature> {
    DetachedSignature::sign_binary_data(rand::thread_rng(), key, &Password::empty(), HashAlgorithm::Sha256, data)
}

/// A subkey signs when a binding signature grants it the signing flag and none revokes it.
fn binds_signing_subkey(signatures: &[Signature]) -> bool {
    !is_revoked(signatures, SignatureType::SubkeyRevocation)
        && signatures.iter().any(|s| s.typ() == Some(SignatureType::SubkeyBinding) && s.key_flags().sign())
}

fn is_revoked(signatures: &[Signature], revocation: SignatureType) -> bool {
    signatures.iter().any(|s| s.typ() == Some(revocation))
}

/// The primary key signs when one of its self-signatures grants it the signing flag.
fn certifies_signing_primary(secret: &SignedSecretKey) -> bool {
    self_signatures(secret).any(|s| s.key_flags().sign())
}

fn self_signatures(secret: &SignedSecretKey) -> impl Iterator<Item = &Signature> {
    let details = &secret.details;
    details.direct_signatures.iter().chain(details.users.iter().flat_map(|user| &user.signatures))
}

/// When the primary key expires: its newest self-signature decides, as `gpg --quick-set-expire`
/// adds a newer one.
fn primary_expiry(secret: &SignedSecretKey) -> Option<u64> {
    let newest = self_signatures(secret).max_by_key(|s| s.created().map(Timestamp::as_secs))?;
    expiry(secret.primary_key.created_at(), newest)
}

/// When a subkey expires: its newest binding signature decides.
fn subkey_expiry(subkey: &SignedSecretSubKey) -> Option<u64> {
    let newest = subkey
        .signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
        .max_by_key(|s| s.created().map(Timestamp::as_secs))?;
    expiry(subkey.key.created_at(), newest)
}

/// A key expiration time counts from the key's creation; zero means it never expires.
fn expiry(created: Timestamp, signature: &Signature) -> Option<u64> {
    let after = signature.key_expiration_time().map(|d| d.as_secs()).filter(|&secs| secs != 0)?;
    Some(u64::from(created.as_secs()) + u64::from(after))
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn format_time(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map_or_else(|| format!("{secs} seconds after the epoch"), |at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The keys that sign a repository's metadata; with several keys, every key signs.
pub struct Signer {
    keys: Vec<Key>,
}

/// Shows the fingerprints only, never key material.
impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("fingerprints", &self.fingerprints()).finish()
    }
}

impl Signer {
    /// Loads every secret key in `text`: one or more armored blocks, each holding one or more
    /// keys (what `gpg --export-secret-keys --armor KEY...` writes). Expired and revoked keys are
    /// left out with a warning, so a file can keep a retired key next to its successor; when no
    /// key is left, the error names the key and when it expired. Keys expiring within
    /// [`EXPIRY_WARNING`] are logged.
    pub fn from_armored(text: &str) -> Result<Self, SignError> {
        let now = now();
        let mut keys = Vec::new();
        let mut retired = Vec::new();
        for block in armor_blocks(text) {
            let (parsed, _headers) =
                SignedSecretKey::from_string_many(block).map_err(|e| SignError::InvalidKey(e.to_string()))?;
            for key in parsed {
                match Key::new(key.map_err(|e| SignError::InvalidKey(e.to_string()))?, now) {
                    Ok(key) => keys.push(key),
                    Err(e @ (SignError::Expired(..) | SignError::Revoked(_))) => retired.push(e),
                    Err(e) => return Err(e),
                }
            }
        }
        if keys.is_empty() {
            return Err(retired.into_iter().next().unwrap_or(SignError::NoKey));
        }
        for error in &retired {
            tracing::warn!(%error, "not signing with this key");
        }
        let signer = Self { keys };
        for warning in signer.expiring_soon() {
            tracing::warn!("{warning}");
        }
        Ok(signer)
    }

    /// A line for each key that expires within [`EXPIRY_WARNING`], naming it and the date.
    pub fn expiring_soon(&self) -> Vec<String> {
        let horizon = now() + EXPIRY_WARNING.as_secs();
        self.keys
            .iter()
            .filter_map(|key| Some((key.fingerprint(), key.expires.filter(|&at| at <= horizon)?)))
            .map(|(fingerprint, at)| format!("OpenPGP signing key {fingerprint} expires on {}", format_time(at)))
            .collect()
    }

    /// Loads the secret key `key_id` from a GnuPG home directory, for flat-manager's `gpg-key` and
    /// `gpg-homedir` settings (`None`: GnuPG's default home). This is the one path that runs the
    /// `gpg` binary (`gpg --export-secret-keys --armor`); a key with a passphrase fails here, as
    /// GnuPG is not allowed to ask for it.
    pub fn from_gpg_homedir(homedir: Option<&Path>, key_id: &str) -> Result<Self, SignError> {
        let mut gpg = Command::new("gpg");
        gpg.args(["--batch", "--no-tty", "--pinentry-mode", "error"]);
        if let Some(homedir) = homedir {
            gpg.arg("--homedir").arg(homedir);
        }
        gpg.args(["--export-secret-keys", "--armor", "--", key_id]);
        let output = gpg.output().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SignError::Gpg("the gpg binary is not installed".to_owned()),
            _ => SignError::Gpg(format!("running gpg: {e}")),
        })?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(SignError::Gpg(format!(
                "gpg --export-secret-keys {key_id} exited with {} (a passphrase-protected key cannot be exported \
                 without a prompt): {}",
                output.status,
                stderr.trim()
            )));
        }
        if output.stdout.is_empty() {
            return Err(SignError::Gpg(format!("no secret key {key_id} in the GnuPG home: {}", stderr.trim())));
        }
        let text = String::from_utf8(output.stdout).map_err(|e| SignError::Gpg(format!("gpg output: {e}")))?;
        Self::from_armored(&text)
    }

    /// The primary keys' fingerprints, upper-case hex, in signing order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(Key::fingerprint).collect()
    }

    fn public_keys(&self) -> Vec<SignedPublicKey> {
        self.keys.iter().map(|key| key.secret.to_public_key()).collect()
    }

    /// The public keys as one binary keyring.
    pub fn public_keys_binary(&self) -> Vec<u8> {
        self.public_keys().to_bytes().expect("serializing parsed public keys to memory")
    }

    /// The public keys armored, as `gpg --export --armor` writes them.
    pub fn public_keys_armored(&self) -> String {
        let mut out = Vec::new();
        pgp::armor::write(&self.public_keys(), pgp::armor::BlockType::PublicKey, &mut out, None, true)
            .expect("armoring parsed public keys to memory");
        String::from_utf8(out).expect("armor is ASCII")
    }

    /// The `GPGKey=` value of `.flatpakrepo` / `.flatpakref` files: base64 of the binary keyring.
    pub fn gpg_key_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.public_keys_binary())
    }

    /// Binary detached signatures over `data`, one per key that has not expired since start-up.
    pub fn sign_detached(&self, data: &[u8]) -> Result<Vec<Vec<u8>>, SignError> {
        self.valid_keys()?.map(|key| key.sign(data)).collect()
    }

    /// Signatures over `data` by the valid keys that made none of `existing`: what a commit
    /// already signed (by an earlier run, or before a key was added) still needs. Empty when
    /// every key signed, so signing again never grows a commit's metadata.
    pub fn sign_missing(&self, existing: &[Vec<u8>], data: &[u8]) -> Result<Vec<Vec<u8>>, SignError> {
        self.valid_keys()?
            .filter(|key| !existing.iter().any(|signature| key.made(signature)))
            .map(|key| key.sign(data))
            .collect()
    }

    /// The keys that have not expired by now (a server outlives its keys' start-up check); an
    /// error naming the first key when all have.
    fn valid_keys(&self) -> Result<impl Iterator<Item = &Key>, SignError> {
        let now = now();
        if let Some(key) = self.keys.iter().find(|key| !key.is_valid_at(now)) {
            if self.keys.iter().all(|key| !key.is_valid_at(now)) {
                return Err(SignError::Expired(key.fingerprint(), key.expires.map_or_else(String::new, format_time)));
            }
        }
        Ok(self.keys.iter().filter(move |key| key.is_valid_at(now)))
    }

    /// Adds `other`'s keys after this signer's.
    pub fn extend(&mut self, other: Signer) {
        self.keys.extend(other.keys);
    }

    /// A `.sig` file (`summary.sig`, `summary.idx.sig`, `summaries/<digest>.idx.sig`) signing `data`.
    pub fn signatures_file(&self, data: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(signatures_file(&self.sign_detached(data)?))
    }
}

/// The armored blocks of `text`, each from its `-----BEGIN PGP` line to the next one.
fn armor_blocks(text: &str) -> impl Iterator<Item = &str> {
    let mut starts = text.match_indices("-----BEGIN PGP ").map(|(start, _)| start).peekable();
    std::iter::from_fn(move || {
        let start = starts.next()?;
        Some(&text[start..starts.peek().copied().unwrap_or(text.len())])
    })
}

/// The `a{sv}` `{ "ostree.gpgsigs": <aay> }` that `.sig` files hold.
pub fn signatures_file(signatures: &[Vec<u8>]) -> Vec<u8> {
    let mut dict = VarDict::new();
    dict.set(GPG_SIGNATURES_KEY, signatures_value(signatures));
    dict.to_bytes()
}

fn signatures_value(signatures: &[Vec<u8>]) -> gvariant::Owned<gvariant::Variant> {
    variant(gv!("aay"), signatures.iter().map(Vec::as_slice))
}

/// The signatures of a `.sig` file or `.commitmeta` (none when the key is absent).
pub fn read_signatures(metadata: &[u8]) -> Result<Vec<Vec<u8>>, FormatError> {
    let dict = VarDict::parse(aligned(metadata).as_ref());
    signatures_in(&dict)
}

fn signatures_in(dict: &VarDict) -> Result<Vec<Vec<u8>>, FormatError> {
    let Some(value) = dict.get(GPG_SIGNATURES_KEY) else { return Ok(Vec::new()) };
    let list = value
        .get(gv!("aay"))
        .ok_or_else(|| FormatError::Malformed(format!("{GPG_SIGNATURES_KEY} is not an array of byte strings")))?;
    Ok(list.iter().map(|signature| signature.to_vec()).collect())
}

/// A commit's detached metadata with `signatures` appended to `ostree.gpgsigs`, keeping every
/// other key and the signatures already there, as `ostree gpg-sign` does.
pub fn append_to_commitmeta(existing: Option<&[u8]>, signatures: &[Vec<u8>]) -> Result<Vec<u8>, FormatError> {
    let mut dict = existing.map(|bytes| VarDict::parse(aligned(bytes).as_ref())).unwrap_or_default();
    if existing.is_some_and(|bytes| dict.to_bytes() != bytes) {
        return Err(FormatError::NotNormalForm);
    }
    let mut all = signatures_in(&dict)?;
    all.extend_from_slice(signatures);
    dict.set(GPG_SIGNATURES_KEY, signatures_value(&all));
    Ok(dict.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_file_lays_out_one_signature_as_ostree_does() {
        let signature = vec![0xC2, 1, 2, 3];
        let bytes = signatures_file(std::slice::from_ref(&signature));
        let mut expected = b"ostree.gpgsigs\0\0".to_vec();
        expected.extend_from_slice(&signature);
        expected.extend_from_slice(&[4, 0, b'a', b'a', b'y', 15, 26]);
        assert_eq!(bytes, expected);
        assert_eq!(read_signatures(&bytes).unwrap(), [signature]);
    }

    #[test]
    fn append_keeps_other_keys_and_earlier_signatures() {
        let mut dict = VarDict::new();
        dict.set("ostree.sign.ed25519", variant(gv!("aay"), [&b"ed"[..]]));
        dict.set(GPG_SIGNATURES_KEY, signatures_value(&[b"first".to_vec()]));
        let existing = dict.to_bytes();
        let appended = append_to_commitmeta(Some(&existing), &[b"second".to_vec(), b"third".to_vec()]).unwrap();
        let parsed = VarDict::parse(aligned(&appended).as_ref());
        assert!(parsed.contains("ostree.sign.ed25519"));
        assert_eq!(read_signatures(&appended).unwrap(), [&b"first"[..], b"second", b"third"]);
    }

    #[test]
    fn append_to_nothing_makes_a_signatures_only_commitmeta() {
        let signatures = [b"one".to_vec()];
        assert_eq!(append_to_commitmeta(None, &signatures).unwrap(), signatures_file(&signatures));
    }

    #[test]
    fn append_rejects_signatures_of_the_wrong_type() {
        let mut dict = VarDict::new();
        dict.set(GPG_SIGNATURES_KEY, variant(gv!("s"), "not signatures"));
        let result = append_to_commitmeta(Some(&dict.to_bytes()), &[b"sig".to_vec()]);
        assert!(matches!(result, Err(FormatError::Malformed(_))), "{result:?}");
    }

    #[test]
    fn rejects_text_without_a_secret_key() {
        assert!(matches!(Signer::from_armored(""), Err(SignError::NoKey)));
        assert!(matches!(Signer::from_armored("not a key"), Err(SignError::NoKey)));
        let garbled = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nnot base64\n-----END PGP PRIVATE KEY BLOCK-----\n";
        assert!(matches!(Signer::from_armored(garbled), Err(SignError::InvalidKey(_))));
    }
}
