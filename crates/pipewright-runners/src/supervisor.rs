//! The task supervisor: a small process between the runner and each host task, so that no task
//! process escapes the runner or outlives it.
//!
//! The runner starts its own executable again (`/proc/self/exe`) as the supervisor, which makes
//! itself a child subreaper (`PR_SET_CHILD_SUBREAPER`) and starts the task in its own process
//! group. Every process the task starts then stays a descendant of the supervisor whatever it
//! does to its environment, group or session, because an orphan is re-parented to the nearest
//! subreaper. The supervisor's stdin is a socket whose other end only the runner holds: when the
//! runner dies, even by `SIGKILL`, the kernel closes it and the supervisor kills the whole tree.
//! (`PR_SET_PDEATHSIG` would fire when the spawning *thread* exits, and only for one process.)
//!
//! Lines on the socket, supervisor to runner: `started PID`, `error KIND MESSAGE`,
//! `exited code N` or `exited signal N`, `signalled N`, `killed N`. Runner to supervisor: `term`
//! (`SIGTERM` to the tree), `kill` (`SIGKILL` until the tree is gone, then exit); end of file
//! means `kill`. The supervisor also exits by itself once the task and all it started are gone.

use crate::cookie::COOKIE_VAR;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// The first argument that makes the executable a supervisor.
pub(crate) const MARKER: &str = "--pipewright-task-supervisor";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Makes this executable able to supervise host tasks; call it first in `main`, before any
/// thread starts.
///
/// In a process started as a task supervisor it runs the supervisor and exits. Otherwise it
/// returns, and from then on every host task of this process ([`run_process`](crate::run_process))
/// runs under a supervisor: none of its processes outlives the runner (even one killed with
/// `SIGKILL`), and none escapes a cancel, a timeout or the end of its build by leaving its
/// process group or clearing its environment. Without it, tasks are followed by process group
/// and cookie only.
pub fn enable_task_supervisor() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(OsStr::new(MARKER)) {
        std::process::exit(supervise(args.collect()));
    }
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether tasks run under a supervisor.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The supervisor's `main`: `COOKIE PROGRAM [ARGS…]`, the runner's socket on stdin.
fn supervise(args: Vec<OsString>) -> i32 {
    let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() else {
        return 70;
    };
    let mut chan = UnixStream::from(fd);
    match Supervisor::start(&mut chan, args) {
        Ok(Some(mut s)) => {
            s.chan = Some(chan);
            s.run();
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let _ = writeln!(chan, "error other {}", one_line(&e.to_string()));
            70
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

struct Supervisor {
    chan: Option<UnixStream>,
    signals: SignalFd,
    /// The task's main process, also its process group.
    main: Pid,
    input: Vec<u8>,
}

impl Supervisor {
    /// Starts the task; `None` when it could not start (the runner has been told why).
    fn start(chan: &mut UnixStream, args: Vec<OsString>) -> std::io::Result<Option<Self>> {
        let mut args = args.into_iter();
        let (Some(cookie), Some(program)) = (args.next(), args.next()) else {
            return Err(std::io::Error::other(format!(
                "usage: {MARKER} COOKIE PROGRAM [ARGS…]"
            )));
        };
        nix::sys::prctl::set_child_subreaper(true)?;
        let spawned = Command::new(&program)
            .args(args)
            .env(COOKIE_VAR, cookie)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let kind = match e.kind() {
                    std::io::ErrorKind::NotFound => "notfound",
                    std::io::ErrorKind::PermissionDenied => "denied",
                    _ => "other",
                };
                writeln!(chan, "error {kind} {}", one_line(&e.to_string()))?;
                return Ok(None);
            }
        };
        // Signals are read from a descriptor from here on, blocked only after the spawn: a child
        // inherits the mask (std does not clear it), and a task with SIGTERM blocked could not be
        // stopped. A SIGCHLD before this is harmless (the first reap finds the exit), and nothing
        // else signals a supervisor this early: it has its own process group and no cookie.
        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
        ] {
            mask.add(s);
        }
        mask.thread_block()?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        // Let go of the output pipes: they must close when the task's processes are done.
        let null = std::fs::File::options().write(true).open("/dev/null")?;
        nix::unistd::dup2_stdout(&null)?;
        nix::unistd::dup2_stderr(&null)?;
        let main = Pid::from_raw(i32::try_from(child.id()).map_err(std::io::Error::other)?);
        writeln!(chan, "started {main}")?;
        Ok(Some(Self {
            chan: None,
            signals,
            main,
            input: Vec::new(),
        }))
    }

    fn run(&mut self) {
        loop {
            // First too: the task may have exited before the signals were blocked.
            if self.reap() {
                return;
            }
            let (commands, signals) = self.ready();
            if signals {
                self.take_signals();
            }
            if commands && !self.take_commands() {
                return;
            }
        }
    }

    /// Waits until the runner writes (or goes away) or a signal arrives.
    fn ready(&self) -> (bool, bool) {
        let Some(chan) = &self.chan else {
            return (true, false);
        };
        let mut fds = [
            PollFd::new(chan.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
        ];
        loop {
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                // Cannot wait for the runner: treat it as gone.
                Err(_) => return (true, false),
            }
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        (ready(&fds[0]), ready(&fds[1]))
    }

    /// `SIGTERM`, `SIGINT` and `SIGHUP` sent to the supervisor go to the whole tree.
    fn take_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            let sig = i32::try_from(info.ssi_signo)
                .ok()
                .and_then(|s| Signal::try_from(s).ok());
            if let Some(sig) = sig.filter(|s| *s != Signal::SIGCHLD) {
                signal_tree(self.main, sig);
            }
        }
    }

    /// Collects every exited child (adopted orphans too) and reports the task's own exit.
    /// True once the task and everything it started are gone.
    fn reap(&mut self) -> bool {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.main => {
                    self.report(&format!("exited code {code}"));
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == self.main => {
                    self.report(&format!("exited signal {}", sig as i32));
                }
                Ok(WaitStatus::StillAlive) => return false,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(Errno::ECHILD) => return true,
                Err(_) => return false,
            }
        }
    }

    fn report(&mut self, line: &str) {
        if let Some(chan) = &mut self.chan
            && writeln!(chan, "{line}").is_err()
        {
            self.chan = None;
        }
    }

    /// Handles what the runner wrote; false when the supervisor is done.
    fn take_commands(&mut self) -> bool {
        let mut buf = [0u8; 256];
        let n = match self.chan.as_mut().map(|c| c.read(&mut buf)) {
            Some(Ok(n)) if n > 0 => n,
            Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => return true,
            // The runner is gone: nothing may outlive it.
            _ => {
                self.chan = None;
                kill_tree(self.main);
                return false;
            }
        };
        self.input.extend_from_slice(&buf[..n]);
        while let Some(i) = self.input.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.input.drain(..=i).collect();
            match line.trim_ascii() {
                b"term" => {
                    let n = signal_tree(self.main, Signal::SIGTERM);
                    self.report(&format!("signalled {n}"));
                }
                b"kill" => {
                    let n = kill_tree(self.main);
                    self.report(&format!("killed {n}"));
                    return false;
                }
                _ => {}
            }
        }
        true
    }
}

/// A process below the supervisor.
#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: Pid,
    pgid: Pid,
}

/// Every process below this one, from `/proc/<pid>/stat` (parent and process group).
fn descendants() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: HashMap<i32, Vec<Proc>> = HashMap::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command name's closing parenthesis: state, parent, process group.
        let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
            continue;
        };
        let mut fields = rest.split_whitespace().skip(1).map(str::parse::<i32>);
        if let (Some(Ok(ppid)), Some(Ok(pgid))) = (fields.next(), fields.next()) {
            children.entry(ppid).or_default().push(Proc {
                pid: Pid::from_raw(pid),
                pgid: Pid::from_raw(pgid),
            });
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![Pid::this().as_raw()];
    while let Some(parent) = queue.pop() {
        for p in children.remove(&parent).unwrap_or_default() {
            queue.push(p.pid.as_raw());
            out.push(p);
        }
    }
    out
}

/// Sends `sig` once to every process below the supervisor: to the task's process group as a
/// whole (atomic against forks), then one by one to the processes outside it, asking each for
/// its group only then (one may have left the group since the scan, like `setsid` starting up).
/// Returns how many.
fn signal_tree(group: Pid, sig: Signal) -> usize {
    let tree = descendants();
    if tree.iter().any(|p| p.pgid == group) {
        let _ = killpg(group, sig);
    }
    for p in &tree {
        if nix::unistd::getpgid(Some(p.pid)) != Ok(group) {
            let _ = kill(p.pid, sig);
        }
    }
    tree.len()
}

/// `SIGKILL` to every process below the supervisor until none is left (a process forked
/// between a scan and the kill is re-parented here and found by the next scan). Returns how
/// many processes were killed.
fn kill_tree(group: Pid) -> usize {
    let mut killed = HashSet::new();
    loop {
        let tree = descendants();
        if tree.iter().any(|p| p.pgid == group) {
            let _ = killpg(group, Signal::SIGKILL);
        }
        for p in &tree {
            if kill(p.pid, Signal::SIGKILL).is_ok() {
                killed.insert(p.pid);
            }
        }
        // Blocks until one more child is gone; none left means the tree is gone.
        if let Err(Errno::ECHILD) = waitpid(None, None) {
            return killed.len();
        }
    }
}
