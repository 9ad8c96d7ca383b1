//! Key selection by validity: keys made by the real `gpg` with expiry dates (in the past through
//! `--faked-system-time`) and revocations; signatures checked by `gpg --verify`. A signer never
//! signs with an expired or revoked primary key or subkey, picks the newest valid signing subkey,
//! refuses a key file with nothing valid left (naming the key and when it expired), and reports
//! keys about to expire.

use std::path::Path;

use anyhow::Context;
use flatbucket::repo::sign::{SignError, Signer};
use flatbucket_tests::gpg::GnuPg;
use flatbucket_tests::tools::run;

/// Makes a key for `email` as of `when` (`None`: now) with `usage` and `expiry`; returns its
/// fingerprint.
fn generate(gpg: &GnuPg, email: &str, when: Option<&str>, usage: &str, expiry: &str) -> anyhow::Result<String> {
    let uid = format!("Expiry test <{email}>");
    run(faked(gpg, when).args(["--quick-gen-key", &uid, "ed25519", usage, expiry]))?;
    Ok(fingerprints(gpg, email)?.remove(0))
}

/// Adds a signing subkey to `primary` as of `when` expiring after `expiry`; returns its fingerprint.
fn add_signing_subkey(gpg: &GnuPg, primary: &str, when: &str, expiry: &str) -> anyhow::Result<String> {
    run(faked(gpg, Some(when)).args(["--quick-add-key", primary, "ed25519", "sign", expiry]))?;
    fingerprints(gpg, primary)?.pop().context("no subkey")
}

fn faked(gpg: &GnuPg, when: Option<&str>) -> std::process::Command {
    let mut cmd = gpg.gpg();
    if let Some(when) = when {
        cmd.args(["--faked-system-time", when]);
    }
    cmd
}

/// The fingerprints of `key`: the primary key's first, then its subkeys' in order.
fn fingerprints(gpg: &GnuPg, key: &str) -> anyhow::Result<Vec<String>> {
    let listing = run(gpg.gpg().args(["--with-colons", "--list-keys", key]))?;
    Ok(listing
        .lines()
        .filter(|l| l.starts_with("fpr:"))
        .filter_map(|l| l.split(':').nth(9))
        .map(str::to_owned)
        .collect())
}

fn secret_keys(gpg: &GnuPg, keys: &[&str]) -> anyhow::Result<String> {
    run(gpg.gpg().args(["--armor", "--export-secret-keys"]).args(keys))
}

/// `gpg --verify` of a detached signature over `data` in `gpg`'s home; returns its report.
fn verify(gpg: &GnuPg, dir: &Path, signature: &[u8], data: &[u8]) -> anyhow::Result<String> {
    let (sig, file) = (dir.join("data.sig"), dir.join("data"));
    std::fs::write(&sig, signature)?;
    std::fs::write(&file, data)?;
    let output = gpg.gpg().arg("--verify").arg(&sig).arg(&file).output()?;
    let report = String::from_utf8_lossy(&output.stderr).into_owned();
    anyhow::ensure!(output.status.success(), "gpg --verify failed: {report}");
    Ok(report)
}

#[test]
fn an_expired_key_is_refused_naming_it_and_when_it_expired() -> anyhow::Result<()> {
    let gpg = GnuPg::new()?;
    let expired = generate(&gpg, "old@example.org", Some("20200101T000000"), "sign", "1y")?;
    let error = Signer::from_armored(&secret_keys(&gpg, &[&expired])?).err().context("an expired key loaded")?;
    assert!(matches!(error, SignError::Expired(..)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&expired) && message.contains("2020-12-31"), "{message}");
    Ok(())
}

#[test]
fn a_retired_key_stays_in_the_file_but_only_its_successor_signs() -> anyhow::Result<()> {
    let gpg = GnuPg::new()?;
    let expired = generate(&gpg, "old@example.org", Some("20200101T000000"), "sign", "1y")?;
    let current = generate(&gpg, "new@example.org", None, "sign", "never")?;
    let signer = Signer::from_armored(&secret_keys(&gpg, &[&expired, &current])?)?;
    assert_eq!(signer.fingerprints(), [current]);
    assert!(signer.expiring_soon().is_empty(), "{:?}", signer.expiring_soon());
    Ok(())
}

#[test]
fn the_newest_valid_signing_subkey_signs() -> anyhow::Result<()> {
    let gpg = GnuPg::new()?;
    let dir = tempfile::tempdir()?;
    let primary = generate(&gpg, "sub@example.org", Some("20190101T000000"), "cert", "never")?;
    let valid = add_signing_subkey(&gpg, &primary, "20200101T000000", "never")?;
    let newer_but_expired = add_signing_subkey(&gpg, &primary, "20210101T000000", "1y")?;
    let signer = Signer::from_armored(&secret_keys(&gpg, &[&primary])?)?;
    let signature = signer.sign_detached(b"summary")?.remove(0);
    let report = verify(&gpg, dir.path(), &signature, b"summary")?;
    assert!(report.contains(&valid) && !report.contains(&newer_but_expired), "{report}");

    // A newer valid subkey takes over from the older one.
    let newest = add_signing_subkey(&gpg, &primary, "20220101T000000", "never")?;
    let signer = Signer::from_armored(&secret_keys(&gpg, &[&primary])?)?;
    let report = verify(&gpg, dir.path(), &signer.sign_detached(b"summary")?.remove(0), b"summary")?;
    assert!(report.contains(&newest), "{report}");
    Ok(())
}

#[test]
fn a_key_whose_signing_subkeys_all_expired_is_refused() -> anyhow::Result<()> {
    let gpg = GnuPg::new()?;
    let primary = generate(&gpg, "lapsed@example.org", Some("20190101T000000"), "cert", "never")?;
    add_signing_subkey(&gpg, &primary, "20200101T000000", "1y")?;
    let error = Signer::from_armored(&secret_keys(&gpg, &[&primary])?).err().context("loaded")?;
    let message = error.to_string();
    assert!(matches!(error, SignError::Expired(..)) && message.contains(&primary), "{message}");
    assert!(message.contains("2020-12-31"), "{message}");
    Ok(())
}

#[test]
fn a_revoked_key_is_refused() -> anyhow::Result<()> {
    let gpg = GnuPg::new()?;
    let key = generate(&gpg, "revoked@example.org", None, "sign", "never")?;
    // gpg stores a revocation certificate for each new key, its armor line escaped by a colon.
    let certificate = std::fs::read_to_string(gpg.path().join("openpgp-revocs.d").join(format!("{key}.rev")))?;
    let certificate =
        certificate.replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----");
    let path = gpg.path().join("revocation.asc");
    std::fs::write(&path, certificate)?;
    run(gpg.gpg().arg("--import").arg(&path))?;
    let error = Signer::from_armored(&secret_keys(&gpg, &[&key])?).err().context("a revoked key loaded")?;
    assert!(matches!(&error, SignError::Revoked(fingerprint) if *fingerprint == key), "{error:?}");
    Ok(())
}

#[test]
fn a_key_expiring_within_a_month_is_reported() -> anyhow::Result<()> {
    let gpg = GnuPg::new()?;
    let soon = generate(&gpg, "soon@example.org", None, "sign", "10d")?;
    let later = generate(&gpg, "later@example.org", None, "sign", "1y")?;
    let signer = Signer::from_armored(&secret_keys(&gpg, &[&soon, &later])?)?;
    let warnings = signer.expiring_soon();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&soon), "{warnings:?}");
    Ok(())
}

#[test]
fn a_key_that_expires_after_start_up_signs_nothing() -> anyhow::Result<()> {
    let gpg = GnuPg::new()?;
    let key = generate(&gpg, "brief@example.org", None, "sign", "seconds=3")?;
    let signer = Signer::from_armored(&secret_keys(&gpg, &[&key])?)?;
    assert_eq!(signer.sign_detached(b"before")?.len(), 1);
    std::thread::sleep(std::time::Duration::from_secs(4));
    let error = signer.sign_detached(b"after").err().context("signed after expiry")?;
    assert!(matches!(&error, SignError::Expired(fingerprint, _) if *fingerprint == key), "{error:?}");
    assert!(signer.sign_missing(&[], b"after").is_err());
    Ok(())
}
