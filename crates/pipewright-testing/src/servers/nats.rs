//! `nats-server` with JetStream.

use super::{Group, ServerError, free_port, io, wait_for_port};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `nats-server` on a free loopback port with JetStream enabled and its store in a temporary
/// directory. Stopped, and the directory removed, on drop.
#[derive(Debug)]
pub struct Nats {
    group: Group,
    port: u16,
    _store: tempfile::TempDir,
}

impl Nats {
    /// Starts the server and waits until it accepts connections.
    pub fn start() -> Result<Self, ServerError> {
        let store = tempfile::Builder::new()
            .prefix("pipewright-nats-")
            .tempdir()
            .map_err(io("a JetStream store"))?;
        let port = free_port().map_err(io("a port for nats-server"))?;
        let group = Self::spawn(port, store.path())?;
        Ok(Self {
            group,
            port,
            _store: store,
        })
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and starts it again on the same
    /// port with the same store: what clients see when NATS restarts.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        let old = std::mem::replace(&mut self.group, Self::placeholder()?);
        drop(old);
        self.group = Self::spawn(self.port, self._store.path())?;
        Ok(())
    }

    /// A process that is gone at once, to hold the place of a stopped server.
    fn placeholder() -> Result<Group, ServerError> {
        Group::spawn("true", &mut Command::new("true"))
    }

    fn spawn(port: u16, store: &std::path::Path) -> Result<Group, ServerError> {
        let program = super::find_program("nats-server")
            .ok_or_else(|| ServerError::Missing("nats-server".into()))?;
        let mut cmd = Command::new(program);
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut group = Group::spawn("nats-server", &mut cmd)?;
        wait_for_port("nats-server", group.child(), port, Duration::from_secs(30))?;
        Ok(group)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.group.child().try_wait(), Ok(None))
    }
}
