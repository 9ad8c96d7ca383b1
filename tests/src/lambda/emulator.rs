//! `cargo lambda watch`, cargo-lambda's local Lambda service: it runs each function binary (with
//! `cargo run`) on its first invocation and takes invocations at
//! `/2015-03-31/functions/<binary>/invocations`, as Lambda's Invoke API does. (It also serves
//! function URLs at `/lambda-url/<binary>/…`, which [`super::Gateway`] does not use.)

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context};
use tempfile::TempDir;

use super::workspace_root;
use crate::tools::{free_port, run, ServerProcess};

/// The functions crate's manifest, relative to the workspace root.
const FUNCTIONS_MANIFEST: &str = "functions/Cargo.toml";
/// Where `infra/cargo-lambda.sh` installs cargo-lambda unless `FLATBUCKET_VENV` says otherwise.
const DEFAULT_VENV: &str = "/var/tmp/flatbucket-venv";

/// A running `cargo lambda watch` and the functions it started, all killed on drop.
pub struct Emulator {
    /// Holds the environment file and the log.
    dir: TempDir,
    process: ServerProcess,
}

impl Emulator {
    /// Builds `binaries` of the functions crate, so that the first invocation of each only starts
    /// it, then starts the emulator with `env` set for every function.
    pub fn start(binaries: &[String], env: &[(String, String)]) -> anyhow::Result<Self> {
        let root = workspace_root();
        build(&root, binaries)?;
        let dir = tempfile::Builder::new().prefix("flatbucket-lambda-").tempdir()?;
        let env_file = dir.path().join("functions.env");
        write_env_file(&env_file, env)?;
        let log = std::fs::File::create(dir.path().join("emulator.log"))?;
        let port = free_port()?;
        let mut cmd = Command::new(cargo_lambda()?);
        cmd.args(["lambda", "watch", "--ignore-changes", "--disable-cors", "--invoke-address", "127.0.0.1"])
            .arg("--invoke-port")
            .arg(port.to_string())
            .arg("--manifest-path")
            .arg(root.join(FUNCTIONS_MANIFEST))
            .arg("--env-file")
            .arg(&env_file)
            .current_dir(&root)
            .stdout(log.try_clone()?)
            .stderr(log);
        // Its own process group, so that the functions it starts die with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let process = ServerProcess::spawn(&mut cmd, port);
        let log = || std::fs::read_to_string(dir.path().join("emulator.log")).unwrap_or_default();
        let process = process.with_context(|| format!("cargo lambda watch:\n{}", log()))?;
        Ok(Self { dir, process })
    }

    /// Where a synchronous invocation of `binary` is posted.
    pub fn invoke_url(&self, binary: &str) -> String {
        format!("{}2015-03-31/functions/{binary}/invocations", self.process.url())
    }

    /// What the emulator and the functions printed so far (functions log JSON lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("emulator.log")).unwrap_or_default()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // The whole group: the emulator, `cargo run` and the function processes. Nothing useful
        // can be done if it already ended.
        let group = format!("-{}", self.process.pid());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    }
}

/// The cargo running the tests (it sets `CARGO`), which the emulator's `cargo run` uses too.
fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| "cargo".into(), PathBuf::from)
}

/// `cargo build` of exactly what the emulator's `cargo run --manifest-path … --bin …` builds, so
/// that those find everything up to date.
fn build(root: &Path, binaries: &[String]) -> anyhow::Result<()> {
    let mut cmd = Command::new(cargo());
    cmd.arg("build").arg("--manifest-path").arg(root.join(FUNCTIONS_MANIFEST)).current_dir(root);
    for binary in binaries {
        cmd.args(["--bin", binary]);
    }
    run(&mut cmd).context("failed to build the functions")?;
    Ok(())
}

/// `CARGO_LAMBDA`, or cargo-lambda in the virtualenv `infra/cargo-lambda.sh` installs it into.
fn cargo_lambda() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CARGO_LAMBDA") {
        return Ok(path.into());
    }
    let venv = std::env::var_os("FLATBUCKET_VENV").map_or_else(|| PathBuf::from(DEFAULT_VENV), PathBuf::from);
    let path = venv.join("bin/cargo-lambda");
    ensure!(
        path.exists(),
        "cargo-lambda is not installed at {}: run `eval \"$(bash infra/cargo-lambda.sh)\"` first (or set CARGO_LAMBDA)",
        path.display()
    );
    Ok(path)
}

/// `KEY='value'` lines, the one quoting cargo-lambda's environment files take JSON values in.
fn write_env_file(path: &Path, env: &[(String, String)]) -> anyhow::Result<()> {
    let mut text = String::new();
    for (key, value) in env {
        ensure!(!value.contains(['\'', '\n']), "{key}: an environment file value cannot hold ' or a newline");
        text.push_str(&format!("{key}='{value}'\n"));
    }
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}
