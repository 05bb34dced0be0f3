//! `NiceRunner`: a step's `cmd` under `nice`, in its own process group.

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use pipewright_core::{
    Ctx, Error, ErrorKind, ExitStatus, Result, Runner, Stream, TaskSpec, Workspace,
};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Runs `params.cmd` as `nice -n <niceness> /bin/sh -c "$cmd"` in the workspace, with the
/// context's environment, `WORKDIR`, `PIPEWRIGHT_OUTPUT` and the task's `env`. The task gets a
/// process group of its own: on cancel or timeout the group gets `SIGTERM`, a grace period,
/// then `SIGKILL`; when the task exits, whatever it left in the group is killed.
#[derive(Debug, Clone)]
pub struct NiceRunner {
    niceness: i32,
    grace: Duration,
}

impl Default for NiceRunner {
    fn default() -> Self {
        Self {
            niceness: 10,
            grace: Duration::from_secs(5),
        }
    }
}

/// How the main process of a task ended.
enum Ended {
    Exited(std::process::ExitStatus),
    Cancelled,
    TimedOut,
}

impl NiceRunner {
    /// A runner at niceness 10 with a five-second grace period.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the niceness (0 to 19).
    pub fn with_niceness(mut self, niceness: i32) -> Self {
        self.niceness = niceness;
        self
    }

    /// Sets how long a cancelled task gets between `SIGTERM` and `SIGKILL`.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

/// Copies `pipe` to the log, chunk by chunk, until every writer has closed it.
fn pump(
    pipe: Option<impl AsyncRead + Unpin + Send + 'static>,
    stream: Stream,
    ctx: &Ctx,
) -> tokio::task::JoinHandle<()> {
    let log = ctx.log.clone();
    tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            log.write(stream, &buf[..n]);
        }
    })
}

#[async_trait]
impl Runner for NiceRunner {
    async fn run(&self, ctx: &Ctx, task: &TaskSpec, ws: &Workspace) -> Result<ExitStatus> {
        let cmd = task
            .params
            .get_str("cmd")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                Error::new(ErrorKind::InvalidConfig, "the nice runner needs `cmd`")
                    .with_context("task", &task.name)
            })?;
        if ctx.cancel.is_cancelled() {
            return Err(Error::cancelled());
        }
        let mut command = tokio::process::Command::new("nice");
        command
            .arg("-n")
            .arg(self.niceness.to_string())
            .args(["/bin/sh", "-c", &cmd, &task.name])
            .args(&task.args)
            .current_dir(&ws.dir)
            .envs(&ctx.env)
            .env("WORKDIR", &ws.dir)
            .env("PIPEWRIGHT_OUTPUT", &ws.output_file)
            .envs(&task.env)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| Error::from(e).with_context("runner", "nice"))?;
        let group = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(Pid::from_raw);
        let out = pump(child.stdout.take(), Stream::Stdout, ctx);
        let err = pump(child.stderr.take(), Stream::Stderr, ctx);

        let deadline = async {
            match ctx.remaining() {
                Some(left) => tokio::time::sleep(left).await,
                None => std::future::pending().await,
            }
        };
        let ended = tokio::select! {
            status = child.wait() => Ended::Exited(status?),
            () = ctx.cancel.cancelled() => Ended::Cancelled,
            () = deadline => Ended::TimedOut,
        };
        if let Some(pgid) = group {
            if !matches!(ended, Ended::Exited(_)) {
                // Ask first; the main process gets the grace period to exit.
                let _ = killpg(pgid, Signal::SIGTERM);
                let _ = tokio::time::timeout(self.grace, child.wait()).await;
            }
            // Whatever is left in the group (background jobs, TERM-ignorers) goes now.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let _ = child.wait().await;
        // The pipes close once the group is gone; a process that left the group and kept them
        // open does not hold the step up for long.
        for pump in [out, err] {
            let _ = tokio::time::timeout(Duration::from_secs(1), pump).await;
        }
        match ended {
            Ended::Exited(status) => {
                use std::os::unix::process::ExitStatusExt;
                Ok(match (status.code(), status.signal()) {
                    (Some(code), _) => ExitStatus::Code(code),
                    (None, Some(sig)) => ExitStatus::Signal(sig),
                    (None, None) => ExitStatus::Code(-1),
                })
            }
            Ended::Cancelled => Err(Error::cancelled().with_context("task", &task.name)),
            Ended::TimedOut => Err(Error::new(
                ErrorKind::Timeout,
                "the task ran past its deadline",
            )
            .with_context("task", &task.name)),
        }
    }
}
