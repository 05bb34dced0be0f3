//! PostgreSQL: a fresh cluster (`initdb`) and `postgres`, as an unprivileged user when the tests
//! run as root (PostgreSQL refuses to run as root).

use super::{Group, ServerError, free_port, io, wait_for_port};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(60);

/// A PostgreSQL server on a free loopback port: a new cluster in a temporary directory, trust
/// authentication for the user `postgres`, `fsync` off. Stopped, and the cluster removed, on
/// drop.
///
/// ```no_run
/// use pipewright_testing::servers::{require, Postgres};
/// if require("initdb", "apt-get install postgresql") {
///     let pg = Postgres::start().unwrap();
///     assert_eq!(pg.psql("select 40 + 2").unwrap().trim(), "42");
/// }
/// ```
#[derive(Debug)]
pub struct Postgres {
    // Declared first: the server stops before its directory goes.
    group: Group,
    port: u16,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    _dir: tempfile::TempDir,
}

/// The user and group the server runs as when we are root: `postgres`, else `nobody`.
fn unprivileged() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let ids = |name: &str| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() > 3 && f[0] == name {
                Some((f[2].parse().ok()?, f[3].parse().ok()?))
            } else {
                None
            }
        })
    };
    ids("postgres").or_else(|| ids("nobody"))
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl Postgres {
    /// Runs `initdb`, starts `postgres` and waits until `pg_isready` says so.
    pub fn start() -> Result<Self, ServerError> {
        let postgres = super::find_program("postgres")
            .ok_or_else(|| ServerError::Missing("postgres".into()))?;
        let bin = postgres.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = tempfile::Builder::new()
            .prefix("pipewright-postgres-")
            .tempdir()
            .map_err(io("a cluster directory"))?;
        let user = if is_root() { unprivileged() } else { None };
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(io("chown"))?;
        }
        let command = |program: &Path| {
            let mut c = Command::new(program);
            c.current_dir(dir.path());
            if let Some((uid, gid)) = user {
                c.uid(uid).gid(gid);
            }
            c
        };
        let data = dir.path().join("data");
        let init = command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .map_err(io("initdb"))?;
        if !init.status.success() {
            return Err(ServerError::Failed {
                what: "initdb".into(),
                detail: format!(
                    "{}: {}",
                    init.status,
                    String::from_utf8_lossy(&init.stderr).trim()
                ),
            });
        }
        let port = free_port().map_err(io("a port for postgres"))?;
        let group = Self::spawn(&postgres, dir.path(), port, user)?;
        let pg = Self {
            group,
            port,
            bin,
            user,
            _dir: dir,
        };
        pg.wait_ready()?;
        Ok(pg)
    }

    /// Starts `postgres` on the cluster in `dir` and waits for its port.
    fn spawn(
        postgres: &Path,
        dir: &Path,
        port: u16,
        user: Option<(u32, u32)>,
    ) -> Result<Group, ServerError> {
        let mut cmd = Command::new(postgres);
        cmd.current_dir(dir);
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        cmd.arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut group = Group::spawn("postgres", &mut cmd)?;
        wait_for_port("postgres", group.child(), port, READY)?;
        Ok(group)
    }

    /// Stops the server (SIGTERM: a fast shutdown that cuts every connection) and starts it
    /// again on the same port and data: what clients see when PostgreSQL restarts.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        let gone = Group::spawn("true", &mut Command::new("true"))?;
        drop(std::mem::replace(&mut self.group, gone));
        let postgres = self.bin.join("postgres");
        self.group = Self::spawn(&postgres, self._dir.path(), self.port, self.user)?;
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<(), ServerError> {
        let until = Instant::now() + READY;
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                // Without pg_isready, an open port is as good as it gets.
                .unwrap_or(true);
            if ok {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(ServerError::NotReady {
                    what: "postgres".into(),
                    after: READY,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `sql` with `psql -Atc` and returns its output.
    pub fn psql(&self, sql: &str) -> Result<String, ServerError> {
        let psql =
            super::find_program("psql").ok_or_else(|| ServerError::Missing("psql".into()))?;
        let out = Command::new(psql)
            .arg(self.url())
            .args(["-Atc", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(io("psql"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(ServerError::Failed {
                what: "psql".into(),
                detail: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            })
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.group.child().try_wait(), Ok(None))
    }
}
