//! Offline Flatpak fixtures built with the real `flatpak` tool: a busybox
//! runtime and a one-script app, exported into an archive-mode OSTree repo,
//! and helpers that install and run the app from a served repo.
//!
//! `flatpak run` needs no extra flags here: as root on Debian 12, bubblewrap
//! sets up the sandbox as it is. As an unprivileged user it needs unprivileged
//! user namespaces (or a setuid `bwrap`).

use std::path::Path;
use std::path::PathBuf;

use anyhow::Context;
use tempfile::TempDir;

use crate::tools::{run, Isolated};

/// The fixture app's ID.
pub const APP_ID: &str = "org.example.App";
/// The ref the fixture app is exported under.
pub const APP_REF: &str = "app/org.example.App/x86_64/stable";
/// The ref the fixture runtime is exported under.
pub const RUNTIME_REF: &str = "runtime/org.example.Platform/x86_64/stable";

const RUNTIME_ID: &str = "org.example.Platform";
const ARCH: &str = "x86_64";
const BRANCH: &str = "stable";
/// Where Debian's busybox-static puts its binary.
const BUSYBOX: &str = "/bin/busybox";
/// The busybox applets the runtime links in `/usr/bin`.
const APPLETS: &[&str] = &["sh", "echo", "cat", "ls"];
/// The remote name the install helpers add.
const REMOTE: &str = "test";

/// A repo holding the fixture runtime and app, plus the build directories.
pub struct Fixture {
    /// Holds `repo` and the build directories; removed on drop.
    pub dir: TempDir,
    /// The archive-mode OSTree repo the refs were exported into.
    pub repo: PathBuf,
}

/// Builds the runtime and version `version` of the app into a fresh repo.
///
/// The repo has no summary yet: call [`update_summary`] before serving it.
pub fn build_repo(version: u32) -> anyhow::Result<Fixture> {
    build_repo_with_payload(version, 0)
}

/// Like [`build_repo`], with `payload` extra bytes of incompressible data in the app, in 1 MiB
/// files, so its commit and publish take measurable time.
pub fn build_repo_with_payload(version: u32, payload: usize) -> anyhow::Result<Fixture> {
    let dir = tempfile::Builder::new()
        .prefix("flatbucket-fixture-")
        .tempdir()
        .context("failed to create the fixture directory")?;
    let repo = dir.path().join("repo");
    // `flatpak build-export` creates the repo, in archive-z2 mode, if missing.
    export_runtime(&repo, dir.path()).context("failed to export the fixture runtime")?;
    export_app(&repo, dir.path(), version, payload)?;
    Ok(Fixture { dir, repo })
}

/// Exports version `version` of the app into `repo`, building it under `work`.
///
/// Between versions, `bin/hello.sh` prints the new number and
/// `share/org.example.App/version.txt` holds it; the other files stay the same.
pub fn export_app_version(repo: &Path, work: &Path, version: u32) -> anyhow::Result<()> {
    export_app(repo, work, version, 0)
}

fn export_app(repo: &Path, work: &Path, version: u32, payload: usize) -> anyhow::Result<()> {
    let build = work.join(format!("app-v{version}"));
    write_app(&build, version)?;
    write_payload(&build.join("files/share").join(APP_ID).join("payload"), payload)?;
    let iso = Isolated::new()?;
    run(iso.flatpak().args(["build-finish", "--command=hello.sh"]).arg(&build))?;
    run(iso.flatpak().arg("build-export").arg(format!("--arch={ARCH}")).arg(repo).arg(&build).arg(BRANCH))
        .with_context(|| format!("failed to export app version {version}"))?;
    Ok(())
}

/// Regenerates `repo`'s summary (and appstream branch) so clients can pull.
pub fn update_summary(repo: &Path) -> anyhow::Result<()> {
    let iso = Isolated::new()?;
    run(iso.flatpak().arg("build-update-repo").arg(repo))?;
    Ok(())
}

/// Adds the repo served at `url` as a user remote, installs the app (and so
/// the runtime) from it, runs the app and returns what it printed.
pub fn install_and_run(iso: &Isolated, url: &str) -> anyhow::Result<String> {
    run(iso.flatpak().args(["--user", "remote-add", "--no-gpg-verify", REMOTE, url]))?;
    run(iso
        .flatpak()
        .args(["--user", "install", "-y", "--noninteractive"])
        .arg(format!("--arch={ARCH}"))
        .args([REMOTE, APP_ID]))?;
    run_app(iso)
}

/// Updates everything installed in `iso`, runs the app and returns what it
/// printed.
pub fn update_and_run(iso: &Isolated) -> anyhow::Result<String> {
    run(iso.flatpak().args(["--user", "update", "-y", "--noninteractive"]))?;
    run_app(iso)
}

/// Runs the installed app and returns its stdout.
fn run_app(iso: &Isolated) -> anyhow::Result<String> {
    run(iso.flatpak().arg("run").arg(format!("--arch={ARCH}")).arg(APP_ID))
}

/// Lays out the runtime build directory under `work` and exports it.
fn export_runtime(repo: &Path, work: &Path) -> anyhow::Result<()> {
    let build = work.join("runtime");
    // A runtime's content comes from `usr/`; `files/` must exist but is unused.
    create_dir(&build.join("files"))?;
    let bin = build.join("usr/bin");
    create_dir(&bin)?;
    std::fs::copy(BUSYBOX, bin.join("busybox"))
        .with_context(|| format!("failed to copy {BUSYBOX} (is busybox-static installed?)"))?;
    for applet in APPLETS {
        symlink("busybox", &bin.join(applet))?;
    }
    write_file(&build.join("metadata"), &metadata("Runtime", RUNTIME_ID), 0o644)?;
    let iso = Isolated::new()?;
    run(iso
        .flatpak()
        .args(["build-export", "--runtime"])
        .arg(format!("--arch={ARCH}"))
        .arg(repo)
        .arg(&build)
        .arg(BRANCH))?;
    Ok(())
}

/// Lays out a fresh app build directory for `version` at `build`.
fn write_app(build: &Path, version: u32) -> anyhow::Result<()> {
    if build.exists() {
        std::fs::remove_dir_all(build).with_context(|| format!("failed to clear {}", build.display()))?;
    }
    write_file(&build.join("metadata"), &metadata("Application", APP_ID), 0o644)?;
    let files = build.join("files");
    write_file(&files.join("bin/hello.sh"), &format!("#!/bin/sh\necho \"Hello from version {version}\"\n"), 0o755)?;
    let share = files.join("share").join(APP_ID);
    write_file(&share.join("README.txt"), "The flatbucket fixture app.\n", 0o644)?;
    write_file(&share.join("version.txt"), &format!("{version}\n"), 0o644)?;
    write_file(&share.join("docs/nested/notes.txt"), "A file a few directories down, so trees have depth.\n", 0o644)?;
    symlink("version.txt", &share.join("current"))?;
    write_appstream(&files.join("share/app-info"))
}

/// The name the fixture app's appstream data gives it.
pub const APP_NAME: &str = "Example Hello";

/// The fixture app's appstream file, `<id>.xml`, before compression.
pub fn appstream_xml() -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<components version=\"0.8\" origin=\"flatpak\">\n  \
         <component type=\"desktop-application\">\n    <id>{APP_ID}</id>\n    <name>{APP_NAME}</name>\n    \
         <summary>Says hello from the flatbucket fixture</summary>\n    <metadata_license>CC0-1.0</metadata_license>\n    \
         <icon type=\"cached\" height=\"64\" width=\"64\">{APP_ID}.png</icon>\n    \
         <icon type=\"cached\" height=\"128\" width=\"128\">{APP_ID}.png</icon>\n  </component>\n</components>\n"
    )
}

/// Appstream data as flatpak-builder leaves it under `share/app-info`: the gzipped XML and the
/// 64x64 and 128x128 icons.
fn write_appstream(app_info: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let xmls = app_info.join("xmls");
    create_dir(&xmls)?;
    let mut gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::default());
    gz.write_all(appstream_xml().as_bytes())?;
    std::fs::write(xmls.join(format!("{APP_ID}.xml.gz")), gz.finish()?)?;
    for size in [64u32, 128] {
        let dir = app_info.join(format!("icons/flatpak/{size}x{size}"));
        create_dir(&dir)?;
        std::fs::write(dir.join(format!("{APP_ID}.png")), png(size, [0x3c, 0x8d, 0xbc]))?;
    }
    Ok(())
}

/// A `size`×`size` PNG of one RGB colour.
fn png(size: u32, rgb: [u8; 3]) -> Vec<u8> {
    use std::io::Write;
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut header = Vec::new();
    header.extend_from_slice(&size.to_be_bytes());
    header.extend_from_slice(&size.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    let row: Vec<u8> = std::iter::once(0).chain((0..size).flat_map(|_| rgb)).collect();
    let mut pixels = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    for _ in 0..size {
        pixels.write_all(&row).expect("writing to a Vec cannot fail");
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &pixels.finish().expect("writing to a Vec cannot fail"));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// `payload` bytes of pseudo-random data (xorshift, fixed seed) in files of at most 1 MiB.
fn write_payload(dir: &Path, payload: usize) -> anyhow::Result<()> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for (i, start) in (0..payload).step_by(1 << 20).enumerate() {
        let len = (payload - start).min(1 << 20);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        create_dir(dir)?;
        std::fs::write(dir.join(format!("blob{i:04}")), bytes)
            .with_context(|| format!("failed to write payload {i}"))?;
    }
    Ok(())
}

/// The `metadata` keyfile for a runtime or app named `name` on the fixture
/// runtime.
fn metadata(group: &str, name: &str) -> String {
    let runtime = format!("{RUNTIME_ID}/{ARCH}/{BRANCH}");
    format!("[{group}]\nname={name}\nruntime={runtime}\nsdk={runtime}\n")
}

/// Creates `dir` and its parents.
fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))
}

/// Writes `contents` to `path` with permission bits `mode`, creating parents.
fn write_file(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    std::fs::write(path, contents).with_context(|| format!("failed to write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set the mode of {}", path.display()))
}

/// Creates a symlink at `link` pointing to the relative path `target`.
fn symlink(target: &str, link: &Path) -> anyhow::Result<()> {
    std::os::unix::fs::symlink(target, link).with_context(|| format!("failed to link {} -> {target}", link.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::HttpServer;

    #[test]
    fn builds_installs_and_runs_a_fixture_app() -> anyhow::Result<()> {
        let fixture = build_repo(1)?;
        let config = std::fs::read_to_string(fixture.repo.join("config"))?;
        assert!(config.contains("mode=archive-z2"), "repo config: {config}");
        let tools = Isolated::new()?;
        run(tools.ostree().arg("fsck").arg(format!("--repo={}", fixture.repo.display())))?;
        update_summary(&fixture.repo)?;
        let server = HttpServer::serve(&fixture.repo)?;

        let client = Isolated::new()?;
        let output = install_and_run(&client, &server.url())?;
        assert!(output.contains("Hello from version 1"), "v1 printed {output:?}");

        export_app_version(&fixture.repo, fixture.dir.path(), 2)?;
        update_summary(&fixture.repo)?;
        let output = update_and_run(&client)?;
        assert!(output.contains("Hello from version 2"), "v2 printed {output:?}");
        Ok(())
    }
}
