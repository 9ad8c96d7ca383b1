//! Running the external tools the end-to-end suites drive: `flatpak`, `ostree`
//! and a throwaway HTTP server, each kept away from the host's own state.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use tempfile::TempDir;

/// How long [`HttpServer::serve`] waits for the server to accept connections.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `cmd` to completion with no stdin and returns its stdout.
///
/// A non-zero exit is an error naming the command line, the exit status and
/// everything the command printed.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let line = command_line(cmd);
    let output = cmd.stdin(Stdio::null()).output().with_context(|| format!("failed to start `{line}`"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "`{line}` failed with {}\nstderr:\n{}\nstdout:\n{stdout}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
        );
    }
    Ok(stdout)
}

/// Renders a command's program and arguments as one shell-like line.
fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(OsStr::to_string_lossy).collect::<Vec<_>>().join(" ")
}

/// A private home for `flatpak` and `ostree`: every directory they would read
/// or write outside the paths passed to them lives inside `dir`.
pub struct Isolated {
    /// Holds the home, XDG and Flatpak installation directories.
    pub dir: TempDir,
}

/// Environment variables pointed into [`Isolated::dir`], with their
/// subdirectory names.
const ISOLATED_DIRS: &[(&str, &str)] = &[
    ("HOME", "home"),
    ("XDG_DATA_HOME", "data"),
    ("XDG_CACHE_HOME", "cache"),
    ("XDG_CONFIG_HOME", "config"),
    ("XDG_RUNTIME_DIR", "runtime"),
    ("FLATPAK_USER_DIR", "flatpak-user"),
    ("FLATPAK_SYSTEM_DIR", "flatpak-system"),
    ("FLATPAK_CONFIG_DIR", "flatpak-config"),
];

impl Isolated {
    /// Creates a fresh temporary directory with every isolated directory in it.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("flatbucket-iso-")
            .tempdir()
            .context("failed to create the isolated environment's directory")?;
        for (_, sub) in ISOLATED_DIRS {
            let path = dir.path().join(sub);
            std::fs::create_dir_all(&path).with_context(|| format!("failed to create {}", path.display()))?;
        }
        restrict_to_owner(&dir.path().join("runtime"))?;
        Ok(Self { dir })
    }

    /// A `flatpak` command that sees only this environment's installations.
    pub fn flatpak(&self) -> Command {
        self.command("flatpak")
    }

    /// An `ostree` command run in this environment.
    pub fn ostree(&self) -> Command {
        self.command("ostree")
    }

    /// A command for `program` with the isolated environment applied.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        for (var, sub) in ISOLATED_DIRS {
            cmd.env(var, self.dir.path().join(sub));
        }
        // Keep the tools off any session bus the host happens to have.
        cmd.env_remove("DBUS_SESSION_BUS_ADDRESS");
        cmd
    }
}

/// Sets `dir` to mode 0700, as the XDG spec requires of `XDG_RUNTIME_DIR`.
fn restrict_to_owner(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("failed to set the mode of {}", dir.display()))
}

/// A server child process listening on a loopback port, killed when dropped.
pub struct ServerProcess {
    child: Child,
    port: u16,
}

impl ServerProcess {
    /// Spawns `cmd` (which must listen on `port`) and waits until the port accepts connections.
    pub fn spawn(cmd: &mut Command, port: u16) -> anyhow::Result<Self> {
        let line = command_line(cmd);
        let child = cmd.stdin(Stdio::null()).spawn().with_context(|| format!("failed to start `{line}`"))?;
        let mut server = Self { child, port };
        server.wait_until_listening()?;
        Ok(server)
    }

    /// The server's base URL, ending in `/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The child's process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) {
        // The server may already be gone; nothing useful can be done then.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Polls the port until it accepts a connection, the server exits, or
    /// [`SERVER_START_TIMEOUT`] passes.
    fn wait_until_listening(&mut self) -> anyhow::Result<()> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = self.child.try_wait().context("failed to poll the server")? {
                bail!("the server on port {} exited early with {status}", self.port);
            }
            ensure!(
                Instant::now() < deadline,
                "the server on port {} did not start within {SERVER_START_TIMEOUT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A directory served over plain HTTP on 127.0.0.1 by Python's `http.server`.
pub struct HttpServer(ServerProcess);

impl HttpServer {
    /// Starts serving `dir` on a free loopback port.
    pub fn serve(dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut cmd = Command::new(python());
        cmd.args(["-m", "http.server", "--bind", "127.0.0.1"]).arg(port.to_string()).arg("--directory").arg(dir);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        Ok(Self(ServerProcess::spawn(&mut cmd, port)?))
    }

    /// Like [`HttpServer::serve`], with the access log (one line per request) written to `log`
    /// and every response under `/objects/` held back by `object_delay`, as a CDN that has to go
    /// to its origin for each loose object would.
    pub fn serve_logged(dir: &Path, log: &Path, object_delay: Duration) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::fs::File::create(log).with_context(|| format!("failed to create {}", log.display()))?;
        let mut cmd = Command::new(python());
        cmd.arg("-c").arg(SLOW_OBJECTS_SERVER).arg(dir).arg(port.to_string());
        cmd.arg(object_delay.as_secs_f64().to_string());
        cmd.stdout(Stdio::null()).stderr(log);
        Ok(Self(ServerProcess::spawn(&mut cmd, port)?))
    }

    /// The server's base URL, ending in `/`.
    pub fn url(&self) -> String {
        self.0.url()
    }
}

/// `http.server` with a delay before each `/objects/` response: its arguments are the directory,
/// the port and the delay in seconds; the access log goes to stderr as `python3 -m http.server`'s.
const SLOW_OBJECTS_SERVER: &str = r#"
import functools, http.server, sys, time
root, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/objects/"):
            time.sleep(delay)
        super().do_GET()
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Handler, directory=root))
server.serve_forever()
"#;

/// A loopback port that was free a moment ago, found by letting the kernel
/// pick one for a listener that is then closed.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("failed to bind a loopback port")?;
    Ok(listener.local_addr().context("failed to read the bound port")?.port())
}

/// The system Python, which always has `http.server`, in preference to
/// whatever `python3` comes first on `PATH`.
fn python() -> PathBuf {
    let system = Path::new("/usr/bin/python3");
    if system.exists() {
        system.to_path_buf()
    } else {
        PathBuf::from("python3")
    }
}
