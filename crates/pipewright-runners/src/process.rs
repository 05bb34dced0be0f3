//! Supervised host processes: one process group per task, streamed output, and a kill sequence
//! (`SIGTERM`, grace, `SIGKILL`) that also reaches processes which left the group.
//!
//! A process that calls `setsid` (a daemon) leaves its process group, so killing the group is not
//! enough. Every task therefore carries a cookie in its environment ([`COOKIE_VAR`]); descendants
//! inherit it, and [`reap_cookie`] finds them through `/proc/<pid>/environ` (Linux). This is the
//! approach Jenkins' process-tree killer takes.

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use pipewright_core::{Ctx, Error, ErrorKind, ExitStatus, LogSink, Result, Stream};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// The environment variable that marks every process a task starts.
pub const COOKIE_VAR: &str = "PIPEWRIGHT_PROCESS_COOKIE";

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
    /// Variables added to the inherited environment.
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
    let cookie = new_cookie(&ctx.build.build_id);
    let program = resolve_program(&spec.program, &spec.env);
    let mut cmd = Command::new(program.as_ref());
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .envs(&spec.env)
        .env(COOKIE_VAR, &cookie)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| spawn_error(&spec.program, e))?;
    // A spawned child that has not been waited for always has an id.
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
        .ok_or_else(|| Error::new(ErrorKind::Other, "the started process has no id"))?;
    tracing::debug!(program = %spec.program, pgid = pgid.as_raw(), "process started");

    let pumps = [
        child
            .stdout
            .take()
            .map(|r| pump(r, Stream::Stdout, ctx.log.clone())),
        child
            .stderr
            .take()
            .map(|r| pump(r, Stream::Stderr, ctx.log.clone())),
    ];

    enum End {
        Exited(std::process::ExitStatus),
        Cancelled,
        TimedOut,
    }
    let deadline = ctx.deadline;
    let end = tokio::select! {
        status = child.wait() => End::Exited(status?),
        () = ctx.cancel.cancelled() => End::Cancelled,
        () = sleep_until(deadline) => End::TimedOut,
    };
    let status = match end {
        End::Exited(status) => {
            // The main process is done; anything left in its group (`sleep 100 &`) is stopped so
            // that nothing outlives the task and the output pipes close.
            if group_alive(pgid) {
                ctx.log_system("the task left processes running; stopping them");
                terminate(&mut child, pgid, &cookie, grace).await;
            }
            Ok(convert(status))
        }
        End::Cancelled => {
            terminate(&mut child, pgid, &cookie, grace).await;
            Err(Error::cancelled())
        }
        End::TimedOut => {
            terminate(&mut child, pgid, &cookie, grace).await;
            Err(Error::new(ErrorKind::Timeout, "timed out"))
        }
    };
    drain(pumps, &cookie, grace, ctx).await;
    status
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

fn new_cookie(build_id: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let build = if build_id.is_empty() {
        "local"
    } else {
        build_id
    };
    format!("{build}:{}:{n}", std::process::id())
}

/// The cookie prefix shared by every process of one build; pass it to [`reap_cookie`] to stop
/// whatever a build left behind.
pub fn build_cookie_prefix(build_id: &str) -> String {
    let build = if build_id.is_empty() {
        "local"
    } else {
        build_id
    };
    format!("{build}:")
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
/// process outside the group holds them: stop it by cookie, then give up on the pipes.
async fn drain(pumps: [Option<Pump>; 2], cookie: &str, grace: Duration, ctx: &Ctx) {
    for mut pump in pumps.into_iter().flatten() {
        if settle(&mut pump, PIPE_LINGER).await {
            continue;
        }
        let n = reap_cookie_gracefully(cookie, false, grace).await;
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
/// left after `grace`. Reaps the main child.
async fn terminate(child: &mut Child, pgid: Pid, cookie: &str, grace: Duration) {
    let _ = killpg(pgid, Signal::SIGTERM);
    for pid in cookie_pids(cookie, false) {
        let _ = kill(pid, Signal::SIGTERM);
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
}

/// Stops every process whose cookie equals `cookie` (or starts with it, when `prefix`):
/// `SIGTERM`, up to `grace`, then `SIGKILL`. Returns how many processes were found.
pub async fn reap_cookie_gracefully(cookie: &str, prefix: bool, grace: Duration) -> usize {
    let found = cookie_pids(cookie, prefix);
    if found.is_empty() {
        return 0;
    }
    for pid in &found {
        let _ = kill(*pid, Signal::SIGTERM);
    }
    let until = Instant::now() + grace;
    while Instant::now() < until && !cookie_pids(cookie, prefix).is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    reap_cookie(cookie, prefix);
    found.len()
}

/// Sends `SIGKILL` to every process whose cookie equals `cookie` (or starts with it, when
/// `prefix`) and returns how many there were. Without `/proc` (not Linux) it finds nothing.
pub fn reap_cookie(cookie: &str, prefix: bool) -> usize {
    let pids = cookie_pids(cookie, prefix);
    for pid in &pids {
        let _ = kill(*pid, Signal::SIGKILL);
    }
    pids.len()
}

/// The processes (other than this one) whose environment carries the cookie.
fn cookie_pids(cookie: &str, prefix: bool) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    let needle = format!("{COOKIE_VAR}={cookie}");
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        // A zombie has an empty environ and cannot be killed anyway.
        let hit = environ.split(|b| *b == 0).any(|var| {
            if prefix {
                var.starts_with(needle.as_bytes())
            } else {
                var == needle.as_bytes()
            }
        });
        if hit && let Ok(raw) = i32::try_from(pid) {
            out.push(Pid::from_raw(raw));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_unique_and_share_the_build_prefix() {
        let a = new_cookie("b1");
        let b = new_cookie("b1");
        assert_ne!(a, b);
        assert!(a.starts_with(&build_cookie_prefix("b1")));
        assert!(new_cookie("").starts_with("local:"));
    }
}
