//! The cookie every task's processes carry in their environment ([`COOKIE_VAR`]):
//! `build:owner:n`, where the owner is the runner process (pid, start time, pid namespace).
//! Descendants inherit it, so processes that left the task's process group are found through
//! `/proc/<pid>/environ` (Linux), the approach Jenkins' process-tree killer takes; and the owner
//! part lets a later run tell the leftovers of a dead runner from the processes of a live one.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pipewright_core::owner;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that marks every process a task starts.
pub const COOKIE_VAR: &str = "PIPEWRIGHT_PROCESS_COOKIE";

fn build_part(build_id: &str) -> &str {
    if build_id.is_empty() {
        "local"
    } else {
        build_id
    }
}

/// A fresh cookie for one task of `build_id`.
pub(crate) fn new_cookie(build_id: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}:{}:{n}", build_part(build_id), owner::this_process())
}

/// The cookie prefix shared by every process of one build; pass it to [`reap_cookie`] to stop
/// whatever a build left behind.
pub fn build_cookie_prefix(build_id: &str) -> String {
    format!("{}:", build_part(build_id))
}

/// The owner part of a cookie (the build id may itself contain colons).
fn owner_of(cookie: &str) -> Option<&str> {
    let mut parts = cookie.rsplitn(3, ':');
    let (_n, owner, _build) = (parts.next()?, parts.next()?, parts.next()?);
    Some(owner)
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

/// Kills the processes that runners which are gone left behind (their cookie names an owner
/// that no longer exists in this pid namespace) and returns how many there were. The processes
/// of live runners are left alone. Run before a process's first task; call it at any time.
pub fn reap_orphans() -> usize {
    let pids = pids_where(|cookie| {
        let cookie = String::from_utf8_lossy(cookie);
        owner_of(&cookie).and_then(owner::process_alive) == Some(false)
    });
    for pid in &pids {
        let _ = kill(*pid, Signal::SIGKILL);
    }
    if !pids.is_empty() {
        tracing::info!(
            count = pids.len(),
            "killed processes left behind by a runner that is gone"
        );
    }
    pids.len()
}

/// The processes (other than this one) whose environment carries the cookie.
pub(crate) fn cookie_pids(cookie: &str, prefix: bool) -> Vec<Pid> {
    pids_where(|value| {
        if prefix {
            value.starts_with(cookie.as_bytes())
        } else {
            value == cookie.as_bytes()
        }
    })
}

/// The processes (other than this one) with a cookie for which `matches` holds.
fn pids_where(matches: impl Fn(&[u8]) -> bool) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    let var = format!("{COOKIE_VAR}=");
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
        let hit = environ
            .split(|b| *b == 0)
            .filter_map(|v| v.strip_prefix(var.as_bytes()))
            .any(&matches);
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
    fn cookies_are_unique_share_the_build_prefix_and_name_their_owner() {
        let a = new_cookie("b1");
        let b = new_cookie("b1");
        assert_ne!(a, b);
        assert!(a.starts_with(&build_cookie_prefix("b1")));
        assert!(new_cookie("").starts_with("local:"));
        assert_eq!(owner_of(&new_cookie("a:b")), Some(owner::this_process()));
        assert_eq!(owner_of("nope"), None);
    }
}
