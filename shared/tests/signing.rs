//! The signatures of `repo::sign` checked by the real verifiers: `gpg`/`gpgv`, `ostree pull` and
//! `ostree remote summary` (gpgme), and `flatpak remote-add`/`install`, with throwaway RSA and
//! ed25519 keys made by `gpg --quick-gen-key`.
#![cfg(feature = "server")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use flatbucket::repo::sign::{append_to_commitmeta, read_signatures, signatures_file, SignError, Signer};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Runs `cmd` with no stdin and returns what it did, success or not.
fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Runs `cmd`, which must succeed, and returns its stdout and stderr together.
fn succeed(cmd: &mut Command) -> String {
    let out = output(cmd);
    let text = printed(&out);
    assert!(out.status.success(), "{cmd:?} failed with {}:\n{text}", out.status);
    text
}

/// Runs `cmd`, which must fail, and returns its stdout and stderr together.
fn fail(cmd: &mut Command) -> String {
    let out = output(cmd);
    let text = printed(&out);
    assert!(!out.status.success(), "{cmd:?} succeeded but should have failed:\n{text}");
    text
}

fn printed(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A throwaway GnuPG home; its agent is stopped on drop.
struct GnuPg {
    home: TempDir,
}

impl GnuPg {
    fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::Builder::new().prefix("gpg-").tempdir_in("/tmp").unwrap();
        fs::set_permissions(home.path(), fs::Permissions::from_mode(0o700)).unwrap();
        Self { home }
    }

    fn path(&self) -> &Path {
        self.home.path()
    }

    fn gpg(&self) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir").arg(self.path()).args(["--batch", "--no-tty"]);
        cmd
    }

    /// `gpg` that answers passphrase questions with `passphrase`.
    fn gpg_with(&self, passphrase: &str) -> Command {
        let mut cmd = self.gpg();
        cmd.args(["--pinentry-mode", "loopback", "--passphrase", passphrase]);
        cmd
    }

    /// Generates a primary key and returns its fingerprint.
    fn generate(&self, email: &str, algorithm: &str, usage: &str, passphrase: &str) -> String {
        let uid = format!("Signing test <{email}>");
        succeed(self.gpg_with(passphrase).args(["--quick-gen-key", &uid, algorithm, usage, "never"]));
        self.fingerprint(email)
    }

    /// Adds a subkey to the key `fingerprint`.
    fn add_subkey(&self, fingerprint: &str, algorithm: &str, usage: &str) {
        succeed(self.gpg_with("").args(["--quick-add-key", fingerprint, algorithm, usage, "never"]));
    }

    fn fingerprint(&self, email: &str) -> String {
        let listing = succeed(self.gpg().args(["--with-colons", "--list-keys", email]));
        let line = listing.lines().find(|l| l.starts_with("fpr:")).expect("a fingerprint line");
        line.split(':').nth(9).unwrap().to_owned()
    }

    fn export_secret(&self, keys: &[&str], passphrase: &str) -> String {
        let out = output(self.gpg_with(passphrase).args(["--armor", "--export-secret-keys"]).args(keys));
        assert!(out.status.success(), "{}", printed(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A signer of the keys `keys` of this home, exported without passphrase.
    fn signer(&self, keys: &[&str]) -> Signer {
        Signer::from_armored(&self.export_secret(keys, "")).unwrap()
    }
}

impl Drop for GnuPg {
    fn drop(&mut self) {
        let _ = output(Command::new("gpgconf").arg("--homedir").arg(self.path()).args(["--kill", "all"]));
    }
}

/// A GnuPG home that knows only `signer`'s public keys, as a verifier would.
fn verifier_of(signer: &Signer) -> GnuPg {
    let verifier = GnuPg::new();
    let armored = verifier.path().join("public.asc");
    fs::write(&armored, signer.public_keys_armored()).unwrap();
    succeed(verifier.gpg().arg("--import").arg(&armored));
    verifier
}

/// Writes `signer`'s public keys to `dir` as an armored file for `--gpg-import`.
fn write_public_keys(signer: &Signer, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, signer.public_keys_armored()).unwrap();
    path
}

fn ostree(repo: &Path) -> Command {
    let mut cmd = Command::new("ostree");
    cmd.arg(format!("--repo={}", repo.display()));
    cmd
}

/// An archive repository with one commit on `test`, and a client repository's helpers.
struct OstreeRepo {
    dir: TempDir,
    repo: PathBuf,
    commit: String,
}

impl OstreeRepo {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        let repo = dir.path().join("repo");
        succeed(ostree(&repo).args(["init", "--mode=archive"]));
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("hello.txt"), "hello world\n").unwrap();
        fs::write(tree.join("sub/data"), "some data\n").unwrap();
        let commit = succeed(
            ostree(&repo).args(["commit", "-b", "test", "-s", "signed"]).arg(format!("--tree=dir={}", tree.display())),
        );
        Self { dir, repo, commit: commit.trim().to_owned() }
    }

    fn object(&self, checksum: &str, extension: &str) -> PathBuf {
        self.repo.join("objects").join(&checksum[..2]).join(format!("{}.{extension}", &checksum[2..]))
    }

    fn commit_bytes(&self) -> Vec<u8> {
        fs::read(self.object(&self.commit, "commit")).unwrap()
    }

    fn commitmeta(&self) -> PathBuf {
        self.object(&self.commit, "commitmeta")
    }

    /// Signs the commit with `signer`, appending to any detached metadata already there.
    fn sign_commit(&self, signer: &Signer) {
        let existing = fs::read(self.commitmeta()).ok();
        let signatures = signer.sign_detached(&self.commit_bytes()).unwrap();
        fs::write(self.commitmeta(), append_to_commitmeta(existing.as_deref(), &signatures).unwrap()).unwrap();
    }

    /// Regenerates the summary and signs it with `signer`; returns the summary's bytes.
    fn sign_summary(&self, signer: &Signer) -> Vec<u8> {
        succeed(ostree(&self.repo).args(["summary", "-u"]));
        let summary = fs::read(self.repo.join("summary")).unwrap();
        fs::write(self.repo.join("summary.sig"), signer.signatures_file(&summary).unwrap()).unwrap();
        summary
    }

    /// A new client repository with remote `origin` for this repository, trusting `keyring`.
    fn client(&self, keyring: &Path, verify_summary: bool) -> PathBuf {
        let client = tempfile::Builder::new().prefix("client-").tempdir_in(self.dir.path()).unwrap().keep();
        succeed(ostree(&client).args(["init", "--mode=archive"]));
        succeed(
            ostree(&client)
                .args(["remote", "add"])
                .arg(format!("--gpg-import={}", keyring.display()))
                .arg(format!("--set=gpg-verify-summary={verify_summary}"))
                .arg("origin")
                .arg(format!("file://{}", self.repo.display())),
        );
        client
    }

    /// `ostree pull` of `test` by a client trusting only `keyring` (commit signatures checked).
    fn pull(&self, keyring: &Path) -> Command {
        let mut cmd = ostree(&self.client(keyring, false));
        cmd.args(["pull", "origin", "test"]);
        cmd
    }

    /// `ostree remote summary` by a client trusting only `keyring` (summary signature checked).
    fn remote_summary(&self, keyring: &Path) -> Command {
        let mut cmd = ostree(&self.client(keyring, true));
        cmd.args(["remote", "summary", "origin"]);
        cmd
    }
}

fn gpg_verifies_and_rejects_altered_data(algorithm: &str) {
    let keys = GnuPg::new();
    let fingerprint = keys.generate("detached@example.org", algorithm, "sign", "");
    let signer = keys.signer(&[&fingerprint]);
    assert_eq!(signer.fingerprints(), [fingerprint]);
    let verifier = verifier_of(&signer);
    let dir = verifier.path();
    let mut data = b"the bytes of a summary file".repeat(100);
    let signatures = signer.sign_detached(&data).unwrap();
    assert_eq!(signatures.len(), 1);
    fs::write(dir.join("data"), &data).unwrap();
    fs::write(dir.join("data.sig"), &signatures[0]).unwrap();
    let keyring = dir.join("keyring.gpg");
    fs::write(&keyring, signer.public_keys_binary()).unwrap();

    let verify = || {
        let mut cmd = verifier.gpg();
        cmd.arg("--verify").arg(dir.join("data.sig")).arg(dir.join("data"));
        cmd
    };
    let gpgv = || {
        let mut cmd = Command::new("gpgv");
        cmd.arg("--keyring").arg(&keyring).arg(dir.join("data.sig")).arg(dir.join("data"));
        cmd
    };
    assert!(succeed(&mut verify()).contains("Good signature"));
    assert!(succeed(&mut gpgv()).contains("Good signature"));

    data[7] ^= 1;
    fs::write(dir.join("data"), &data).unwrap();
    assert!(fail(&mut verify()).contains("BAD signature"));
    assert!(fail(&mut gpgv()).contains("BAD signature"));
}

#[test]
fn gpg_verifies_rsa_signatures_and_rejects_altered_data() {
    gpg_verifies_and_rejects_altered_data("rsa2048");
}

#[test]
fn gpg_verifies_ed25519_signatures_and_rejects_altered_data() {
    gpg_verifies_and_rejects_altered_data("ed25519");
}

fn ostree_verifies_commit_and_summary(algorithm: &str) {
    let keys = GnuPg::new();
    let fingerprint = keys.generate("ostree@example.org", algorithm, "sign", "");
    let stranger = keys.generate("stranger@example.org", "ed25519", "sign", "");
    let signer = keys.signer(&[&fingerprint]);
    let repo = OstreeRepo::new();
    let trusted = write_public_keys(&signer, repo.dir.path(), "trusted.asc");
    let untrusted = write_public_keys(&keys.signer(&[&stranger]), repo.dir.path(), "untrusted.asc");

    // Unsigned, the commit is refused; signed, it pulls with our key and only with it.
    assert!(fail(&mut repo.pull(&trusted)).contains("no signatures found"));
    repo.sign_commit(&signer);
    succeed(&mut repo.pull(&trusted));
    assert!(fail(&mut repo.pull(&untrusted)).contains("public key not found"));

    let summary = repo.sign_summary(&signer);
    assert!(succeed(&mut repo.remote_summary(&trusted)).contains("Good signature"));
    assert!(fail(&mut repo.remote_summary(&untrusted)).contains("public key not found"));
    let mut altered = summary.clone();
    altered[0] ^= 1;
    fs::write(repo.repo.join("summary.sig"), signer.signatures_file(&altered).unwrap()).unwrap();
    assert!(fail(&mut repo.remote_summary(&trusted)).contains("BAD signature"));
}

#[test]
fn ostree_verifies_rsa_signed_commits_and_summaries() {
    ostree_verifies_commit_and_summary("rsa2048");
}

#[test]
fn ostree_verifies_ed25519_signed_commits_and_summaries() {
    ostree_verifies_commit_and_summary("ed25519");
}

#[test]
fn two_keys_both_sign_and_either_alone_verifies() {
    let keys = GnuPg::new();
    let old = keys.generate("old@example.org", "rsa2048", "sign", "");
    let new = keys.generate("new@example.org", "ed25519", "sign", "");
    let signer = keys.signer(&[&old, &new]);
    assert_eq!(signer.fingerprints(), [old.clone(), new.clone()]);
    let separate_blocks = keys.export_secret(&[&old], "") + &keys.export_secret(&[&new], "");
    assert_eq!(Signer::from_armored(&separate_blocks).unwrap().fingerprints(), signer.fingerprints());
    let repo = OstreeRepo::new();
    repo.sign_commit(&signer);
    repo.sign_summary(&signer);
    assert_eq!(read_signatures(&fs::read(repo.commitmeta()).unwrap()).unwrap().len(), 2);
    assert_eq!(read_signatures(&fs::read(repo.repo.join("summary.sig")).unwrap()).unwrap().len(), 2);

    for (name, key) in [("old.asc", &old), ("new.asc", &new)] {
        let alone = write_public_keys(&keys.signer(&[key]), repo.dir.path(), name);
        succeed(&mut repo.pull(&alone));
        assert!(succeed(&mut repo.remote_summary(&alone)).contains("Good signature"));
    }
}

#[test]
fn appending_keeps_the_signature_ostree_made() {
    let keys = GnuPg::new();
    let theirs = keys.generate("theirs@example.org", "ed25519", "sign", "");
    let ours = keys.generate("ours@example.org", "ed25519", "sign", "");
    let repo = OstreeRepo::new();
    succeed(
        ostree(&repo.repo)
            .arg("gpg-sign")
            .arg(format!("--gpg-homedir={}", keys.path().display()))
            .args(["test", &theirs]),
    );
    repo.sign_commit(&keys.signer(&[&ours]));
    assert_eq!(read_signatures(&fs::read(repo.commitmeta()).unwrap()).unwrap().len(), 2);
    for (name, key) in [("theirs.asc", &theirs), ("ours.asc", &ours)] {
        succeed(&mut repo.pull(&write_public_keys(&keys.signer(&[key]), repo.dir.path(), name)));
    }
}

#[test]
fn signatures_file_is_byte_identical_to_ostree_summary_gpg_sign() {
    let keys = GnuPg::new();
    let rsa = keys.generate("rsa@example.org", "rsa2048", "sign", "");
    let ed = keys.generate("ed@example.org", "ed25519", "sign", "");
    let repo = OstreeRepo::new();
    for signing_keys in [vec![ed.as_str()], vec![rsa.as_str(), ed.as_str()]] {
        let mut cmd = ostree(&repo.repo);
        cmd.args(["summary", "-u"]).arg(format!("--gpg-homedir={}", keys.path().display()));
        cmd.args(signing_keys.iter().map(|key| format!("--gpg-sign={key}")));
        succeed(&mut cmd);
        let written = fs::read(repo.repo.join("summary.sig")).unwrap();
        let signatures = read_signatures(&written).unwrap();
        assert_eq!(signatures.len(), signing_keys.len());
        assert_eq!(signatures_file(&signatures), written);
    }
}

#[test]
fn a_signing_subkey_signs_for_a_certify_only_primary() {
    let keys = GnuPg::new();
    let primary = keys.generate("subkey@example.org", "ed25519", "cert", "");
    keys.add_subkey(&primary, "ed25519", "sign");
    let signer = keys.signer(&[&primary]);
    let verifier = verifier_of(&signer);
    let data = verifier.path().join("data");
    fs::write(&data, b"signed by a subkey").unwrap();
    fs::write(verifier.path().join("data.sig"), &signer.sign_detached(b"signed by a subkey").unwrap()[0]).unwrap();
    let verified = succeed(verifier.gpg().arg("--verify").arg(verifier.path().join("data.sig")).arg(&data));
    assert!(verified.contains("Good signature"), "{verified}");
}

#[test]
fn rejects_keys_that_cannot_sign_unattended() {
    let keys = GnuPg::new();
    let protected = keys.generate("protected@example.org", "ed25519", "sign", "secret");
    let result = Signer::from_armored(&keys.export_secret(&[&protected], "secret"));
    assert!(matches!(&result, Err(SignError::PassphraseProtected(f)) if *f == protected), "{result:?}");

    let encrypt_only = keys.generate("encrypt@example.org", "ed25519", "cert", "");
    keys.add_subkey(&encrypt_only, "cv25519", "encr");
    let result = Signer::from_armored(&keys.export_secret(&[&encrypt_only], ""));
    assert!(matches!(&result, Err(SignError::NoSigningKey(f)) if *f == encrypt_only), "{result:?}");

    let home = Some(keys.path());
    let result = Signer::from_gpg_homedir(home, &protected);
    assert!(matches!(result, Err(SignError::Gpg(_))), "{result:?}");
    let result = Signer::from_gpg_homedir(home, "nobody@example.org");
    assert!(matches!(result, Err(SignError::Gpg(_))), "{result:?}");
}

#[test]
fn loads_the_key_flat_manager_names_in_a_gpg_homedir() {
    let keys = GnuPg::new();
    let fingerprint = keys.generate("homedir@example.org", "ed25519", "sign", "");
    let signer = Signer::from_gpg_homedir(Some(keys.path()), "homedir@example.org").unwrap();
    assert_eq!(signer.fingerprints(), [fingerprint]);
    let repo = OstreeRepo::new();
    repo.sign_commit(&signer);
    succeed(&mut repo.pull(&write_public_keys(&signer, repo.dir.path(), "homedir.asc")));
}

/// The parts of a Flatpak repository `flatpak build-export` + `build-update-repo` made, signed.
fn sign_flatpak_repo(repo: &Path, signer: &Signer) {
    for line in succeed(ostree(repo).args(["refs"])).lines() {
        let commit = succeed(ostree(repo).args(["rev-parse", line.trim()]));
        let commit = commit.trim();
        let object = repo.join("objects").join(&commit[..2]).join(&commit[2..]);
        let signatures = signer.sign_detached(&fs::read(object.with_extension("commit")).unwrap()).unwrap();
        fs::write(object.with_extension("commitmeta"), append_to_commitmeta(None, &signatures).unwrap()).unwrap();
    }
    let summary = fs::read(repo.join("summary")).unwrap();
    fs::write(repo.join("summary.sig"), signer.signatures_file(&summary).unwrap()).unwrap();
    let index = fs::read(repo.join("summary.idx")).unwrap();
    let index_sig = signer.signatures_file(&index).unwrap();
    let digest = hex::encode(Sha256::digest(&index));
    fs::write(repo.join("summaries").join(format!("{digest}.idx.sig")), &index_sig).unwrap();
    fs::write(repo.join("summary.idx.sig"), &index_sig).unwrap();
}

#[test]
fn flatpak_adds_and_installs_from_a_repository_we_signed() {
    let keys = GnuPg::new();
    let fingerprint = keys.generate("flatpak@example.org", "ed25519", "sign", "");
    let signer = keys.signer(&[&fingerprint]);
    let work = TempDir::new().unwrap();
    let flatpak = |args: &[&str]| {
        let mut cmd = Command::new("flatpak");
        for var in ["HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "FLATPAK_USER_DIR"] {
            cmd.env(var, work.path().join(var.to_lowercase()));
        }
        cmd.env("FLATPAK_SYSTEM_DIR", work.path().join("system")).env_remove("DBUS_SESSION_BUS_ADDRESS");
        cmd.args(args);
        cmd
    };
    let build = work.path().join("build");
    // A runtime's content comes from `usr/`; `files/` must exist but is unused.
    fs::create_dir_all(build.join("files")).unwrap();
    fs::create_dir_all(build.join("usr/share")).unwrap();
    fs::write(build.join("usr/share/hello.txt"), "hello\n").unwrap();
    let arch = std::env::consts::ARCH;
    let runtime = format!("org.example.Signed/{arch}/stable");
    let runtime = runtime.as_str();
    fs::write(
        build.join("metadata"),
        format!("[Runtime]\nname=org.example.Signed\nruntime={runtime}\nsdk={runtime}\n"),
    )
    .unwrap();
    let repo = work.path().join("repo");
    let (repo_arg, build_arg) = (repo.to_str().unwrap(), build.to_str().unwrap());
    succeed(&mut flatpak(&["build-export", "--runtime", &format!("--arch={arch}"), repo_arg, build_arg, "stable"]));
    succeed(&mut flatpak(&["build-update-repo", repo_arg]));
    sign_flatpak_repo(&repo, &signer);

    // The key travels as a `.flatpakrepo` `GPGKey=` value: base64 of a binary keyring.
    let keyring = work.path().join("keyring.gpg");
    fs::write(&keyring, base64::engine::general_purpose::STANDARD.decode(signer.gpg_key_base64()).unwrap()).unwrap();
    let url = format!("file://{repo_arg}");
    let import = format!("--gpg-import={}", keyring.display());
    succeed(&mut flatpak(&["--user", "remote-add", &import, "signed", &url]));
    assert!(succeed(&mut flatpak(&["--user", "remote-ls", "signed"])).contains("org.example.Signed"));
    succeed(&mut flatpak(&["--user", "install", "-y", "--noninteractive", "signed", runtime]));

    // An index signed over other bytes is refused even though `summary.sig` is good.
    let index = fs::read(repo.join("summary.idx")).unwrap();
    let other = signer.signatures_file(b"not the index").unwrap();
    fs::write(repo.join("summary.idx.sig"), &other).unwrap();
    fs::write(repo.join("summaries").join(format!("{}.idx.sig", hex::encode(Sha256::digest(&index)))), &other).unwrap();
    succeed(&mut flatpak(&["--user", "remote-delete", "--force", "signed"]));
    assert!(fail(&mut flatpak(&["--user", "remote-add", &import, "signed", &url])).contains("BAD signature"));
}
