//! The real `flat-manager` process, configured from the shipped `example-config.json` and
//! `example.env` in a temporary directory, with helpers to mint tokens with `gentoken` and run
//! `flat-manager-client` against it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use tempfile::TempDir;

use crate::tools::{free_port, run, ServerProcess};

/// Paths of the three binaries (from `CARGO_BIN_EXE_*` in the cli crate's tests).
#[derive(Debug, Clone)]
pub struct Binaries {
    pub server: PathBuf,
    pub client: PathBuf,
    pub gentoken: PathBuf,
}

/// A `flat-manager` with its own working directory, config and state.
pub struct FlatManager {
    pub dir: TempDir,
    pub port: u16,
    binaries: Binaries,
    process: Option<ServerProcess>,
}

impl FlatManager {
    /// Starts a server on a free port in a fresh working directory.
    pub fn start(binaries: Binaries) -> anyhow::Result<Self> {
        Self::start_with(binaries, |_| ())
    }

    /// Starts a server on the shipped example configuration as changed by `adjust`.
    pub fn start_with(binaries: Binaries, adjust: impl FnOnce(&mut serde_json::Value)) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("flatbucket-server-").tempdir()?;
        let port = free_port()?;
        write_config(dir.path(), port, adjust)?;
        let mut server = Self { dir, port, binaries, process: None };
        server.restart()?;
        Ok(server)
    }

    /// Starts the server again (after [`FlatManager::kill`]) on the same directory and port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let mut cmd = Command::new(&self.binaries.server);
        cmd.current_dir(self.dir.path()).stdout(log.try_clone()?).stderr(log);
        self.process = Some(ServerProcess::spawn(&mut cmd, self.port).with_context(|| self.log())?);
        Ok(())
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// The running server's process id (to read its memory use from `/proc`), if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// `http://127.0.0.1:<port>`, the manager URL clients take.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The directory of repository `name` (relative paths in the config resolve against the
    /// server's working directory).
    pub fn repo_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(if name == "stable" { "repo" } else { "beta-repo" })
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// A token for the example configuration's secret, see [`gentoken`].
    pub fn token(&self, name: &str) -> anyhow::Result<String> {
        gentoken(&self.binaries.gentoken, name)
    }

    /// `flat-manager-client` with `REPO_TOKEN` set.
    pub fn client(&self, token: &str) -> Command {
        let mut cmd = Command::new(&self.binaries.client);
        cmd.env("REPO_TOKEN", token);
        cmd
    }

    /// Runs the client with `args` and returns its stdout.
    pub fn run_client(&self, token: &str, args: &[&str]) -> anyhow::Result<String> {
        run(self.client(token).args(args)).with_context(|| format!("server log:\n{}", self.log()))
    }
}

/// `echo -n secret | base64 | gentoken --base64 --secret-file - --name <name>`, as the README: a
/// token for the example configuration's secret, minted by the `gentoken` at `program`.
pub fn gentoken(program: &Path, name: &str) -> anyhow::Result<String> {
    let mut child = Command::new(program)
        .args(["--base64", "--secret-file", "-", "--name", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("gentoken stdin")?.write_all(b"c2VjcmV0\n")?;
    let output = child.wait_with_output()?;
    anyhow::ensure!(output.status.success(), "gentoken failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// The shipped `example-config.json`.
pub fn example_config() -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(workspace_root()?.join("example-config.json"))?)?)
}

/// The shipped example configuration with the test's port, plus the shipped `.env`.
fn write_config(dir: &Path, port: u16, adjust: impl FnOnce(&mut serde_json::Value)) -> anyhow::Result<()> {
    let mut config = example_config()?;
    config["port"] = port.into();
    adjust(&mut config);
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    std::fs::copy(workspace_root()?.join("example.env"), dir.join(".env"))?;
    Ok(())
}

fn workspace_root() -> anyhow::Result<&'static Path> {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")
}
