//! A generated Flatpak app big enough to benchmark with: ~5,000 files, ~196 MiB, in ~500
//! directories. Everything comes from a seeded PRNG, so a seed always yields the same bytes and
//! every run of a benchmark measures the same input.
//!
//! [`write_app`] lays out version 1; [`change_fraction`] then rewrites a fixed share of its files
//! for a "version 2"; [`export`] puts a build directory into an archive repo with
//! `flatpak build-export`, ready for `ostree fsck` or `flat-manager-client push`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::tools::{run, Isolated};

/// The app's ID.
pub const APP_ID: &str = "org.example.Big";
/// The ref [`export`] writes.
pub const APP_REF: &str = "app/org.example.Big/x86_64/stable";
/// The app's `metadata` keyfile. It names the fixture runtime, which need not be in the repo:
/// exporting, verifying and pushing never resolve it.
pub const METADATA: &str = "[Application]\nname=org.example.Big\nruntime=org.example.Platform/x86_64/stable\n\
                            sdk=org.example.Platform/x86_64/stable\n";
/// The seed the benchmarks use, so they all measure the same app.
pub const SEED: u64 = 0x666c_6174_6275_636b;

const ARCH: &str = "x86_64";
const BRANCH: &str = "stable";
const MIB: usize = 1024 * 1024;
const KIB: usize = 1024;

/// Shape of the app: ~5,000 files, ~196 MiB, ~500 directories.
const TOTAL_FILES: usize = 5_000;
const BIG_FILES: usize = 5;
const BINARIES: usize = 425;
/// 20 top-level directories with 24 subdirectories each, plus `files/` itself: 501.
const TOP_DIRS: usize = 20;
const SUB_DIRS: usize = 24;

/// Sizes of a generated app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppStats {
    /// Regular files under `files/`.
    pub files: usize,
    /// Directories, counting `files/` itself.
    pub dirs: usize,
    /// Bytes of the files under `files/`.
    pub bytes: u64,
}

/// What [`change_fraction`] rewrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeStats {
    pub files: usize,
    pub bytes: u64,
}

/// Writes the app build directory at `build`: `metadata`, an empty `export/` and ~5,000 files
/// under `files/`, all determined by `seed`.
pub fn write_app(build: &Path, seed: u64) -> anyhow::Result<AppStats> {
    let rng = &mut SmallRng::seed_from_u64(seed);
    write_file(&build.join("metadata"), METADATA.as_bytes(), 0o644)?;
    // `flatpak build-export` refuses an app without `export/` ("not finalized"); an empty one is
    // all `flatpak build-finish` would add here, and leaves `metadata` exactly as written.
    let export = build.join("export");
    std::fs::create_dir_all(&export).with_context(|| format!("failed to create {}", export.display()))?;
    let dirs = app_dirs(&build.join("files"))?;
    let words = vocabulary(rng);
    let mut bytes = 0;
    for i in 0..TOTAL_FILES {
        let dir = &dirs[rng.gen_range(0..dirs.len())];
        let (name, content, mode) = app_file(i, rng, &words);
        bytes += content.len() as u64;
        write_file(&dir.join(name), &content, mode)?;
    }
    // `files/` itself counts as a directory too.
    Ok(AppStats { files: TOTAL_FILES, dirs: dirs.len() + 1, bytes })
}

/// Rewrites `fraction` (0 to 1) of the files under `build/files`, picked and refilled from
/// `seed`: a "version 2" of the app. Each picked file keeps its name, size, mode and kind (blob,
/// binary or text) but gets fresh content, so the changed objects are as compressible as before.
pub fn change_fraction(build: &Path, seed: u64, fraction: f64) -> anyhow::Result<ChangeStats> {
    ensure!((0.0..=1.0).contains(&fraction), "fraction {fraction} is not between 0 and 1");
    let files = regular_files(&build.join("files"))?;
    let rng = &mut SmallRng::seed_from_u64(seed);
    let count = (files.len() as f64 * fraction).round() as usize;
    // Sorted, so the files are rewritten in a fixed order and the PRNG stream is reproducible.
    let mut picked = rand::seq::index::sample(rng, files.len(), count).into_vec();
    picked.sort_unstable();
    let words = vocabulary(rng);
    let mut bytes = 0;
    for &i in &picked {
        bytes += rewrite_file(&files[i], rng, &words)?;
    }
    Ok(ChangeStats { files: picked.len(), bytes })
}

/// Exports the app build directory `build` into the archive repo `repo` (created if missing)
/// as [`APP_REF`].
pub fn export(build: &Path, repo: &Path) -> anyhow::Result<()> {
    let iso = Isolated::new()?;
    run(iso.flatpak().arg("build-export").arg(format!("--arch={ARCH}")).arg(repo).arg(build).arg(BRANCH))
        .context("flatpak build-export failed")?;
    Ok(())
}

/// File `i` of the app: name, content and permission bits. The first [`BIG_FILES`] are large
/// random blobs, the next [`BINARIES`] are binaries, the rest text.
fn app_file(i: usize, rng: &mut SmallRng, words: &[String]) -> (String, Vec<u8>, u32) {
    if i < BIG_FILES {
        let len = rng.gen_range(5 * MIB..=20 * MIB);
        (format!("blob{i}.dat"), random_bytes(rng, len), 0o644)
    } else if i < BIG_FILES + BINARIES {
        let len = rng.gen_range(50 * KIB..=500 * KIB);
        (format!("lib{i}.so"), binary(i, rng, len), 0o755)
    } else {
        let len = rng.gen_range(KIB..=8 * KIB);
        (format!("doc{i}.txt"), text(rng, words, len), 0o644)
    }
}

/// Binary `i`: half the binaries do not compress at all, half compress about 2:1.
fn binary(i: usize, rng: &mut SmallRng, len: usize) -> Vec<u8> {
    if i % 2 == 1 {
        repetitive_bytes(rng, len)
    } else {
        random_bytes(rng, len)
    }
}

/// Refills `path` with new content of the same length and kind as [`app_file`] gave it (told
/// apart by name); returns the length.
fn rewrite_file(path: &Path, rng: &mut SmallRng, words: &[String]) -> anyhow::Result<u64> {
    let len = std::fs::metadata(path).with_context(|| format!("failed to stat {}", path.display()))?.len();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let size = len as usize;
    let content = if name.ends_with(".txt") {
        text(rng, words, size)
    } else if let Some(i) = name.strip_prefix("lib").and_then(|n| n.strip_suffix(".so")) {
        binary(i.parse().with_context(|| format!("unexpected binary name {name}"))?, rng, size)
    } else {
        random_bytes(rng, size)
    };
    // Writing over the existing file keeps its mode.
    std::fs::write(path, content).with_context(|| format!("failed to rewrite {}", path.display()))?;
    Ok(len)
}

/// Every regular file under `dir`, sorted by path so the order never depends on the filesystem.
fn regular_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("failed to list {}", dir.display()))? {
            let entry = entry.with_context(|| format!("failed to list {}", dir.display()))?;
            let kind = entry.file_type().with_context(|| format!("failed to stat {}", entry.path().display()))?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Creates `files/dNN/sNN` and returns every directory files go into (the `dNN` and `sNN`).
fn app_dirs(files: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs = Vec::with_capacity(TOP_DIRS * (SUB_DIRS + 1));
    for top in 0..TOP_DIRS {
        let top = files.join(format!("d{top:02}"));
        for sub in 0..SUB_DIRS {
            let sub = top.join(format!("s{sub:02}"));
            std::fs::create_dir_all(&sub).with_context(|| format!("failed to create {}", sub.display()))?;
            dirs.push(sub);
        }
        dirs.push(top);
    }
    Ok(dirs)
}

fn write_file(path: &Path, content: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("failed to create {}", parent.display()))?;
    }
    std::fs::write(path, content).with_context(|| format!("failed to write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set the mode of {}", path.display()))
}

fn random_bytes(rng: &mut SmallRng, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    rng.fill_bytes(&mut out);
    out
}

/// Fresh random runs, each followed by a copy of an earlier run inside deflate's 32 KiB window:
/// half the bytes are incompressible and half are back-references, so deflate gets ~2:1.
fn repetitive_bytes(rng: &mut SmallRng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 1024);
    while out.len() < len {
        let start = out.len();
        let run = rng.gen_range(64..512);
        out.resize(start + run, 0);
        rng.fill_bytes(&mut out[start..]);
        let from = rng.gen_range(start.saturating_sub(16 * KIB)..=start);
        out.extend_from_within(from..from + run);
    }
    out.truncate(len);
    out
}

/// Pseudo-words of 2–10 lowercase letters, so text compresses like text.
fn vocabulary(rng: &mut SmallRng) -> Vec<String> {
    (0..2_000)
        .map(|_| (0..rng.gen_range(2..=10)).map(|_| char::from(b'a' + rng.gen_range(0..26u8))).collect())
        .collect()
}

/// Lines of 6–13 pseudo-words, cut to exactly `len` bytes.
fn text(rng: &mut SmallRng, words: &[String], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    while out.len() < len {
        for _ in 0..rng.gen_range(6..14) {
            out.extend_from_slice(words[rng.gen_range(0..words.len())].as_bytes());
            out.push(b' ');
        }
        *out.last_mut().expect("a line has words") = b'\n';
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny stand-in for the app: `change_fraction` only needs files of the three kinds.
    fn small_tree(build: &Path) -> anyhow::Result<()> {
        for (i, name) in ["blob0.dat", "lib7.so", "lib8.so", "doc9.txt", "doc10.txt"].iter().enumerate() {
            write_file(&build.join("files/d00").join(name), &vec![b'x'; 100 + i], 0o644)?;
        }
        Ok(())
    }

    #[test]
    fn changing_a_fraction_keeps_sizes_and_is_reproducible() -> anyhow::Result<()> {
        let contents = |build: &Path| -> anyhow::Result<Vec<Vec<u8>>> {
            regular_files(&build.join("files"))?.iter().map(|f| Ok(std::fs::read(f)?)).collect()
        };
        let dir = tempfile::tempdir()?;
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        small_tree(&a)?;
        small_tree(&b)?;
        let before = contents(&a)?;
        let changed = change_fraction(&a, 7, 0.4)?;
        assert_eq!(change_fraction(&b, 7, 0.4)?, changed);
        assert_eq!(changed.files, 2);
        let after = contents(&a)?;
        assert_eq!(after, contents(&b)?, "the same seed rewrites the same files the same way");
        assert_eq!(before.iter().zip(&after).filter(|(x, y)| x != y).count(), 2);
        assert!(before.iter().zip(&after).all(|(x, y)| x.len() == y.len()));
        Ok(())
    }
}
