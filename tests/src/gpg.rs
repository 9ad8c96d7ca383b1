//! Throwaway OpenPGP keys made by the real `gpg` in a private GnuPG home, for signed repositories.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use tempfile::TempDir;

use crate::tools::run;

/// A private GnuPG home; its agent is stopped on drop.
pub struct GnuPg {
    home: TempDir,
}

impl GnuPg {
    /// A fresh, empty home (under `/tmp`: the agent's socket path must stay short).
    pub fn new() -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::Builder::new().prefix("gpg-").tempdir_in("/tmp")?;
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700))?;
        Ok(Self { home })
    }

    pub fn path(&self) -> &Path {
        self.home.path()
    }

    /// `gpg` on this home, never prompting.
    pub fn gpg(&self) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir").arg(self.path()).args(["--batch", "--no-tty", "--pinentry-mode", "loopback"]);
        cmd.args(["--passphrase", ""]);
        cmd
    }

    /// Generates an ed25519 signing key without passphrase for `email`; returns its fingerprint.
    pub fn generate(&self, email: &str) -> anyhow::Result<String> {
        let uid = format!("Flatbucket test <{email}>");
        run(self.gpg().args(["--quick-gen-key", &uid, "ed25519", "sign", "never"]))?;
        let listing = run(self.gpg().args(["--with-colons", "--list-keys", email]))?;
        let line = listing.lines().find(|l| l.starts_with("fpr:")).context("no fingerprint line")?;
        Ok(line.split(':').nth(9).context("no fingerprint")?.to_owned())
    }

    /// Writes the armored secret keys `keys` to `path` (what `gpg-key-file` takes).
    pub fn export_secret(&self, keys: &[&str], path: &Path) -> anyhow::Result<PathBuf> {
        std::fs::write(path, run(self.gpg().args(["--armor", "--export-secret-keys"]).args(keys))?)?;
        Ok(path.to_owned())
    }

    /// Writes the armored public keys `keys` to `path` (what `--gpg-import` takes).
    pub fn export_public(&self, keys: &[&str], path: &Path) -> anyhow::Result<PathBuf> {
        std::fs::write(path, run(self.gpg().args(["--armor", "--export"]).args(keys))?)?;
        Ok(path.to_owned())
    }
}

impl Drop for GnuPg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").arg("--homedir").arg(self.path()).args(["--kill", "all"]).output();
    }
}
