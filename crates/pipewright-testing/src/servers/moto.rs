//! `moto_server`: an S3-compatible server for tests (`pip install 'moto[server]'`).

use super::{Group, ServerError, free_port, io, wait_for_port};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `moto_server` on a free loopback port; it accepts any credentials. Stopped on drop.
///
/// ```no_run
/// use pipewright_testing::servers::{require, Moto};
/// if require("moto_server", "pip install 'moto[server]'") {
///     let s3 = Moto::start().unwrap();
///     s3.create_bucket("pipewright-ci").unwrap();
///     println!("{}", s3.endpoint());
/// }
/// ```
#[derive(Debug)]
pub struct Moto {
    _group: Group,
    port: u16,
}

impl Moto {
    /// The access key id tests pass (moto accepts any).
    pub const ACCESS_KEY_ID: &'static str = "testing";
    /// The secret access key tests pass.
    pub const SECRET_ACCESS_KEY: &'static str = "testing";

    /// Starts the server and waits until it accepts connections.
    pub fn start() -> Result<Self, ServerError> {
        let program = super::find_program("moto_server")
            .ok_or_else(|| ServerError::Missing("moto_server".into()))?;
        let port = free_port().map_err(io("a port for moto_server"))?;
        let mut cmd = Command::new(program);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut group = Group::spawn("moto_server", &mut cmd)?;
        wait_for_port("moto_server", group.child(), port, Duration::from_secs(60))?;
        Ok(Self {
            _group: group,
            port,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (moto takes an unsigned path-style `PUT /bucket`).
    pub fn create_bucket(&self, bucket: &str) -> Result<(), ServerError> {
        let what = format!("creating bucket {bucket}");
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).map_err(io(&what))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io(&what))?;
        write!(
            s,
            "PUT /{bucket} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\r\n",
            self.port
        )
        .map_err(io(&what))?;
        let mut head = String::new();
        s.read_to_string(&mut head).map_err(io(&what))?;
        match head.split_whitespace().nth(1) {
            Some("200") => Ok(()),
            _ => Err(ServerError::Failed {
                what,
                detail: head.lines().next().unwrap_or_default().to_owned(),
            }),
        }
    }
}
