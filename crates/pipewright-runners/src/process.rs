//! Host processes: one process group per task, streamed output, and a kill sequence
//! (`SIGTERM`, grace, `SIGKILL`) that also reaches processes which left the group.
//!
//! A process that calls `setsid` (a daemon) leaves its process group, so killing the group is not
//! enough. Under a task supervisor ([`enable_task_supervisor`](crate::enable_task_supervisor))
//! the supervisor knows every process of the task and signals them all; without one, processes
//! are found by the cookie in their environment (see [`crate::cookie`]).

use crate::channel::{Channel, KILL_WAIT, Msg};
use crate::cookie::{
    COOKIE_VAR, cookie_pids, new_cookie, reap_cookie, reap_cookie_gracefully, reap_orphans,
};
use crate::supervisor;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use pipewright_core::{Ctx, Error, ErrorKind, ExitStatus, LogSink, Result, Stream};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// Variables a process never inherits from pipewright's own environment: the Vault / OpenBao
/// token the `vault` secret type reads. A process that needs one gets it in its `env`.
pub const WITHHELD_ENV: &[&str] = &["VAULT_TOKEN", "BAO_TOKEN"];

/// How long a task may take to stop after `SIGTERM` before it gets `SIGKILL`, unless configured.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Read buffer for stdout/stderr: output reaches the sink in chunks of at most this size.
const CHUNK: usize = 64 * 1024;

/// How long to wait for the output pipes to close once the task's process group is gone. Longer
/// means something outside the group (a daemon) still holds them.
const PIPE_LINGER: Duration = Duration::from_millis(200);

/// What to start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The program: a name looked up in `PATH`, or a path.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables added to the inherited environment (less [`WITHHELD_ENV`]).
    pub env: BTreeMap<String, String>,
    /// The working directory.
    pub cwd: PathBuf,
}

/// Runs `spec` under `ctx`: output goes to `ctx.log`; `ctx.cancel` or `ctx.deadline` stop the
/// whole process tree with `SIGTERM`, then `SIGKILL` after `grace`.
///
/// Returns the exit status, [`ErrorKind::Cancelled`] when cancelled, [`ErrorKind::Timeout`]
/// when the deadline passed, and [`ErrorKind::NotFound`] when the program does not exist.
pub async fn run_process(ctx: &Ctx, spec: &ProcessSpec, grace: Duration) -> Result<ExitStatus> {
    static ORPHANS: Once = Once::new();
    ORPHANS.call_once(|| {
        reap_orphans();
    });
    let cookie = new_cookie(&ctx.build.build_id);
    let mut task = Task::spawn(spec, &cookie).await?;
    tracing::debug!(program = %spec.program, pgid = task.pgid.as_raw(), supervised = task.supervisor.is_some(), "process started");

    let pumps = [
        task.child
            .stdout
            .take()
            .map(|r| pump(r, Stream::Stdout, ctx.log.clone())),
        task.child
            .stderr
            .take()
            .map(|r| pump(r, Stream::Stderr, ctx.log.clone())),
    ];

    enum End {
        Exited(Result<ExitStatus>),
        Cancelled,
        TimedOut,
    }
    let deadline = ctx.deadline;
    let end = tokio::select! {
        status = task.wait() => End::Exited(status),
        () = ctx.cancel.cancelled() => End::Cancelled,
        () = sleep_until(deadline) => End::TimedOut,
    };
    let status = match end {
        End::Exited(status) => {
            // The main process is done; anything left in its group (`sleep 100 &`) is stopped so
            // that nothing outlives the task and the output pipes close.
            if task.group_alive() {
                ctx.log_system("the task left processes running; stopping them");
                task.terminate(&cookie, grace).await;
            }
            status
        }
        End::Cancelled => {
            task.terminate(&cookie, grace).await;
            Err(Error::cancelled())
        }
        End::TimedOut => {
            task.terminate(&cookie, grace).await;
            Err(Error::new(ErrorKind::Timeout, "timed out"))
        }
    };
    drain(pumps, &mut task, &cookie, grace, ctx).await;
    task.finish(&cookie);
    status
}

/// A started task: its main process (or its supervisor) and its process group.
struct Task {
    child: Child,
    pgid: Pid,
    supervisor: Option<Channel>,
}

impl Task {
    async fn spawn(spec: &ProcessSpec, cookie: &str) -> Result<Self> {
        let program = resolve_program(&spec.program, &spec.env);
        if !supervisor::enabled() {
            return Self::spawn_direct(spec, cookie, &program);
        }
        match Channel::pair() {
            Ok((chan, theirs)) => {
                Self::spawn_supervised(spec, cookie, &program, chan, theirs).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot make a task supervisor's socket; running the task unsupervised");
                Self::spawn_direct(spec, cookie, &program)
            }
        }
    }

    /// Settings shared by both ways to start: in its own process group (so a terminal's Ctrl-C
    /// reaches the runner only), in the workspace, output piped.
    fn command(spec: &ProcessSpec, program: &str) -> Command {
        let mut cmd = Command::new(program);
        // Withheld from the supervisor, and so from the task below it, unless `env` sets them.
        for name in WITHHELD_ENV {
            cmd.env_remove(name);
        }
        cmd.current_dir(&spec.cwd)
            .envs(&spec.env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        cmd
    }

    fn spawn_direct(spec: &ProcessSpec, cookie: &str, program: &str) -> Result<Self> {
        let mut cmd = Self::command(spec, program);
        cmd.args(&spec.args)
            .env(COOKIE_VAR, cookie)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| spawn_error(&spec.program, e))?;
        // A spawned child that has not been waited for always has an id.
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
            .ok_or_else(|| Error::new(ErrorKind::Other, "the started process has no id"))?;
        Ok(Self {
            child,
            pgid,
            supervisor: None,
        })
    }

    /// Starts this executable again as the task's supervisor, which starts the task and says
    /// which process it is.
    async fn spawn_supervised(
        spec: &ProcessSpec,
        cookie: &str,
        program: &str,
        mut chan: Channel,
        theirs: std::os::unix::net::UnixStream,
    ) -> Result<Self> {
        let mut cmd = Self::command(spec, "/proc/self/exe");
        cmd.arg0("pipewright-task-supervisor")
            .arg(supervisor::MARKER)
            .arg(cookie)
            .arg(program)
            .args(&spec.args)
            .stdin(Stdio::from(OwnedFd::from(theirs)));
        let spawned = cmd.spawn();
        // Only the supervisor may hold its end, or the runner's death would go unnoticed.
        drop(cmd);
        let mut child = spawned.map_err(|e| spawn_error(&spec.program, e))?;
        match chan.recv().await {
            Some(Msg::Started(pid)) => Ok(Self {
                child,
                pgid: Pid::from_raw(pid),
                supervisor: Some(chan),
            }),
            Some(Msg::Failed(kind, message)) => {
                let _ = child.wait().await;
                Err(Error::new(
                    kind,
                    format!("cannot start `{}`: {message}", spec.program),
                ))
            }
            _ => {
                let _ = child.kill().await;
                Err(Error::new(
                    ErrorKind::Other,
                    format!(
                        "the supervisor of `{}` ended before starting it",
                        spec.program
                    ),
                ))
            }
        }
    }

    /// The main process's exit.
    async fn wait(&mut self) -> Result<ExitStatus> {
        let Some(chan) = &mut self.supervisor else {
            return Ok(convert(self.child.wait().await?));
        };
        loop {
            match chan.recv().await {
                Some(Msg::Exited(status)) => return Ok(status),
                Some(_) => {}
                None => {
                    return Err(Error::new(
                        ErrorKind::Other,
                        "the task's supervisor died; its processes may still run",
                    ));
                }
            }
        }
    }

    fn group_alive(&self) -> bool {
        group_alive(self.pgid)
    }

    /// Stops the task's processes: `SIGTERM`, then `SIGKILL` to whatever is left after
    /// `grace`. Returns how many processes were signalled.
    async fn terminate(&mut self, cookie: &str, grace: Duration) -> usize {
        let Some(mut chan) = self.supervisor.take() else {
            return terminate_direct(&mut self.child, self.pgid, cookie, grace).await;
        };
        // The supervisor signals each process of the tree once (twice would tell a program
        // like `pipewright run` itself to stop its cleanup), and exits once all are gone.
        chan.send("term").await;
        if !chan.closed_within(grace).await {
            tracing::debug!(
                pgid = self.pgid.as_raw(),
                "grace period over; sending SIGKILL"
            );
            chan.kill().await;
        }
        // Nothing carrying the cookie can be outside the supervisor's tree; make sure.
        reap_cookie(cookie, false);
        let _ = tokio::time::timeout(KILL_WAIT, self.child.wait()).await;
        chan.stopped
    }

    /// After the pipes are drained: a supervisor whose tree still runs (a daemon a later step
    /// uses) is kept until its build ends.
    fn finish(mut self, cookie: &str) {
        if let Some(chan) = self.supervisor.take() {
            chan.keep(cookie);
        }
    }
}

/// Looks a bare program name up in `PATH` once and remembers the answer, so that each spawn
/// is one `execve` instead of one per `PATH` entry. Names are looked up by the spawn itself when
/// the task sets its own `PATH`, or when the lookup finds nothing (so the error stays the
/// system's).
fn resolve_program<'a>(program: &'a str, env: &BTreeMap<String, String>) -> Cow<'a, str> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<String>>>> = OnceLock::new();
    if program.contains('/') || program.is_empty() || env.contains_key("PATH") {
        return Cow::Borrowed(program);
    }
    let cache = CACHE.get_or_init(Mutex::default);
    if let Ok(c) = cache.lock()
        && let Some(found) = c.get(program)
    {
        return found.clone().map_or(Cow::Borrowed(program), Cow::Owned);
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).find_map(|dir| {
            let candidate = dir.join(program);
            let executable = std::fs::metadata(&candidate).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            });
            executable.then(|| candidate.display().to_string())
        })
    });
    if let Ok(mut c) = cache.lock() {
        c.insert(program.to_owned(), found.clone());
    }
    found.map_or(Cow::Borrowed(program), Cow::Owned)
}

fn spawn_error(program: &str, e: std::io::Error) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorKind::Unauthorized,
        _ => ErrorKind::Other,
    };
    Error::new(kind, format!("cannot start `{program}`: {e}"))
}

fn convert(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(sig)) => ExitStatus::Signal(sig),
        (None, None) => ExitStatus::Code(-1),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// The reader of one output pipe. `delivering` is set while a chunk waits for room in the log
/// sink (a slow consumer), which is not a pipe held open.
struct Pump {
    handle: JoinHandle<()>,
    delivering: Arc<AtomicBool>,
}

fn pump(
    mut reader: impl AsyncRead + Unpin + Send + 'static,
    stream: Stream,
    log: Arc<dyn LogSink>,
) -> Pump {
    let delivering = Arc::new(AtomicBool::new(false));
    let flag = delivering.clone();
    let handle = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    // Awaited: a full sink stops the reading, and the pipe then the task.
                    flag.store(true, Ordering::Relaxed);
                    log.send(stream, &buf[..n]).await;
                    flag.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, stream = stream.as_str(), "reading task output failed");
                    break;
                }
            }
        }
    });
    Pump { handle, delivering }
}

/// Waits up to `limit` for the pump to end, not counting the time it waits for the log sink.
async fn settle(pump: &mut Pump, limit: Duration) -> bool {
    loop {
        if tokio::time::timeout(limit, &mut pump.handle).await.is_ok() {
            return true;
        }
        if !pump.delivering.load(Ordering::Relaxed) {
            return false;
        }
    }
}

/// Waits for the output pipes to close. If they stay open after the task's group is gone, a
/// process outside the group holds them: stop the task's remaining processes, then give up on
/// the pipes.
async fn drain(
    pumps: [Option<Pump>; 2],
    task: &mut Task,
    cookie: &str,
    grace: Duration,
    ctx: &Ctx,
) {
    for mut pump in pumps.into_iter().flatten() {
        if settle(&mut pump, PIPE_LINGER).await {
            continue;
        }
        let n = if task.supervisor.is_some() {
            task.terminate(cookie, grace).await
        } else {
            reap_cookie_gracefully(cookie, false, grace).await
        };
        if n > 0 {
            ctx.log_system(&format!(
                "stopped {n} process(es) that left the task's process group but kept its output open"
            ));
        }
        if !settle(&mut pump, Duration::from_secs(1)).await {
            pump.handle.abort();
        }
    }
}

fn group_alive(pgid: Pid) -> bool {
    !matches!(killpg(pgid, None), Err(Errno::ESRCH))
}

/// `SIGTERM` to the group and to every process carrying the cookie; `SIGKILL` to whatever is
/// left after `grace`. Reaps the main child. Returns how many processes carried the cookie.
async fn terminate_direct(child: &mut Child, pgid: Pid, cookie: &str, grace: Duration) -> usize {
    let _ = killpg(pgid, Signal::SIGTERM);
    let marked = cookie_pids(cookie, false);
    // The group's own members already have theirs; one SIGTERM each.
    for pid in marked
        .iter()
        .filter(|p| nix::unistd::getpgid(Some(**p)) != Ok(pgid))
    {
        let _ = kill(*pid, Signal::SIGTERM);
    }
    let until = Instant::now() + grace;
    loop {
        // Reap the main process so its zombie does not keep the group "alive".
        let _ = child.try_wait();
        if !group_alive(pgid) && cookie_pids(cookie, false).is_empty() {
            break;
        }
        if Instant::now() >= until {
            tracing::debug!(pgid = pgid.as_raw(), "grace period over; sending SIGKILL");
            let _ = killpg(pgid, Signal::SIGKILL);
            for pid in cookie_pids(cookie, false) {
                let _ = kill(pid, Signal::SIGKILL);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.wait().await;
    marked.len()
}
