//! The runner's end of a task supervisor's socket (see [`crate::supervisor`]), and the
//! supervisors kept after their task ended because something it started still runs (a daemon a
//! later step uses); they are stopped with their build by [`reap_build`].

use crate::cookie::{build_cookie_prefix, reap_cookie};
use pipewright_core::{ErrorKind, ExitStatus};
use std::os::unix::net::UnixStream as StdStream;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// How long a supervisor may take to kill its tree and exit.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(5);

/// A line from the supervisor.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Msg {
    Started(i32),
    Failed(ErrorKind, String),
    Exited(ExitStatus),
    Signalled(usize),
    Killed(usize),
}

fn parse(line: &str) -> Option<Msg> {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let number = || rest.trim().parse::<usize>().ok();
    Some(match word {
        "started" => Msg::Started(rest.trim().parse().ok()?),
        "error" => {
            let (kind, message) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = match kind {
                "notfound" => ErrorKind::NotFound,
                "denied" => ErrorKind::Unauthorized,
                _ => ErrorKind::Other,
            };
            Msg::Failed(kind, message.to_owned())
        }
        "exited" => match rest.split_once(' ')? {
            ("code", n) => Msg::Exited(ExitStatus::Code(n.parse().ok()?)),
            ("signal", n) => Msg::Exited(ExitStatus::Signal(n.parse().ok()?)),
            _ => return None,
        },
        "signalled" => Msg::Signalled(number()?),
        "killed" => Msg::Killed(number()?),
        _ => return None,
    })
}

/// The runner's end. Dropping it makes the supervisor kill its whole tree.
#[derive(Debug)]
pub(crate) struct Channel {
    stream: UnixStream,
    input: Vec<u8>,
    /// The most processes the supervisor reported signalling or killing.
    pub(crate) stopped: usize,
}

impl Channel {
    /// Our end, and the end that becomes the supervisor's stdin.
    pub(crate) fn pair() -> std::io::Result<(Self, StdStream)> {
        let (ours, theirs) = StdStream::pair()?;
        Ok((Self::from_std(ours)?, theirs))
    }

    fn from_std(stream: StdStream) -> std::io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream: UnixStream::from_std(stream)?,
            input: Vec::new(),
            stopped: 0,
        })
    }

    /// The next message; `None` once the supervisor is gone. Cancel-safe: bytes join the
    /// buffer only when a read completes.
    pub(crate) async fn recv(&mut self) -> Option<Msg> {
        loop {
            if let Some(i) = self.input.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line);
                match parse(line.trim_end()) {
                    Some(m) => {
                        if let Msg::Signalled(n) | Msg::Killed(n) = m {
                            self.stopped = self.stopped.max(n);
                        }
                        return Some(m);
                    }
                    None => {
                        tracing::warn!(line = %line.trim_end(), "unexpected line from the task supervisor")
                    }
                }
                continue;
            }
            let mut buf = [0u8; 512];
            match self.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Sends `term` or `kill`; a supervisor that is already gone needs neither.
    pub(crate) async fn send(&mut self, command: &str) {
        let _ = self
            .stream
            .write_all(format!("{command}\n").as_bytes())
            .await;
    }

    /// Waits up to `limit` for the supervisor to exit; true if it did.
    pub(crate) async fn closed_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async { while self.recv().await.is_some() {} })
            .await
            .is_ok()
    }

    /// `kill`, then waits for the supervisor to exit; returns how many processes it killed.
    pub(crate) async fn kill(&mut self) -> usize {
        self.send("kill").await;
        if !self.closed_within(KILL_WAIT).await {
            tracing::warn!("a task supervisor did not exit after killing its processes");
        }
        self.stopped
    }

    /// Keeps the supervisor of a finished task of the build `cookie` belongs to, if it still
    /// runs, until [`reap_build`] stops it.
    pub(crate) fn keep(self, cookie: &str) {
        let Ok(stream) = self.stream.into_std() else {
            return;
        };
        let Ok(mut kept) = KEPT.lock() else {
            return;
        };
        kept.retain(|(_, s)| open(s));
        if open(&stream) {
            kept.push((cookie.to_owned(), stream));
        }
    }
}

/// Supervisors of finished tasks whose processes still run, by task cookie.
static KEPT: Mutex<Vec<(String, StdStream)>> = Mutex::new(Vec::new());

/// Whether the supervisor at the other end still runs (its end is not closed).
fn open(stream: &StdStream) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 64];
    match (&*stream).read(&mut buf) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

/// Stops everything a build left running, and returns how many processes that was: the
/// process trees of its finished tasks' supervisors (daemons, whatever they did to their
/// environment), then any process still carrying one of the build's cookies.
pub async fn reap_build(build_id: &str) -> usize {
    let prefix = build_cookie_prefix(build_id);
    let mine: Vec<StdStream> = match KEPT.lock() {
        Ok(mut kept) => {
            let (mine, others) = std::mem::take(&mut *kept)
                .into_iter()
                .partition(|(cookie, _)| cookie.starts_with(&prefix));
            *kept = others;
            mine.into_iter().map(|(_, s)| s).collect()
        }
        Err(_) => Vec::new(),
    };
    let mut n = 0;
    for stream in mine {
        // A stream that cannot join the runtime is dropped, which stops its tree too.
        if let Ok(mut chan) = Channel::from_std(stream) {
            n += chan.kill().await;
        }
    }
    n + reap_cookie(&prefix, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supervisor_lines_parse() {
        assert_eq!(parse("started 42"), Some(Msg::Started(42)));
        assert_eq!(
            parse("error notfound No such file or directory (os error 2)"),
            Some(Msg::Failed(
                ErrorKind::NotFound,
                "No such file or directory (os error 2)".into()
            ))
        );
        assert_eq!(
            parse("exited code 3"),
            Some(Msg::Exited(ExitStatus::Code(3)))
        );
        assert_eq!(
            parse("exited signal 9"),
            Some(Msg::Exited(ExitStatus::Signal(9)))
        );
        assert_eq!(parse("killed 2"), Some(Msg::Killed(2)));
        assert_eq!(parse("signalled 1"), Some(Msg::Signalled(1)));
        assert_eq!(parse("exited nicely"), None);
        assert_eq!(parse("hello"), None);
    }
}
