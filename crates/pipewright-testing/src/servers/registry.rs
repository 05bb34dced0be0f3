//! A container image registry (Debian's `docker-registry`, the CNCF distribution registry).

use super::{Group, ServerError, free_port, io, wait_for_port};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `docker-registry` on a free loopback port, serving plain HTTP with its storage in a
/// temporary directory, optionally behind basic auth (an `htpasswd` file made with bcrypt by
/// apache2-utils' `htpasswd`). Stopped, and the directory removed, on drop.
#[derive(Debug)]
pub struct ImageRegistry {
    _group: Group,
    port: u16,
    _dir: tempfile::TempDir,
}

impl ImageRegistry {
    /// Starts an open registry and waits until it accepts connections.
    pub fn start() -> Result<Self, ServerError> {
        Self::spawn(None)
    }

    /// Starts a registry that accepts only `user` with `password`.
    pub fn with_basic_auth(user: &str, password: &str) -> Result<Self, ServerError> {
        Self::spawn(Some((user, password)))
    }

    fn spawn(auth: Option<(&str, &str)>) -> Result<Self, ServerError> {
        let program = super::find_program("docker-registry")
            .ok_or_else(|| ServerError::Missing("docker-registry".into()))?;
        let dir = tempfile::Builder::new()
            .prefix("pipewright-registry-")
            .tempdir()
            .map_err(io("a registry store"))?;
        let port = free_port().map_err(io("a port for docker-registry"))?;
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .map_err(io("htpasswd (apt-get install apache2-utils)"))?;
            if !out.status.success() {
                return Err(ServerError::Failed {
                    what: "htpasswd".into(),
                    detail: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).map_err(io("the htpasswd file"))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: pipewright-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).map_err(io("the registry config"))?;
        let mut cmd = Command::new(program);
        cmd.arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut group = Group::spawn("docker-registry", &mut cmd)?;
        wait_for_port(
            "docker-registry",
            group.child(),
            port,
            Duration::from_secs(30),
        )?;
        Ok(Self {
            _group: group,
            port,
            _dir: dir,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
