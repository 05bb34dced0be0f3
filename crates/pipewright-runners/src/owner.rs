//! Who owns a process or a container: the runner's pid with its start time (which tells a live
//! owner from a reused pid) and, for host processes, its pid namespace (a pid means nothing in
//! another one). A later run on the same host uses it to reap what a dead runner left behind.

use std::sync::OnceLock;

/// The host's name, for container labels (containers outlive pid namespaces).
#[cfg(any(feature = "docker", feature = "podman"))]
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// The start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
pub(crate) fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields are counted after the command name's closing parenthesis.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split_whitespace().nth(19).map(str::to_owned)
}

/// The inode of this process's pid namespace (`pid:[4026531836]` → `4026531836`).
fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let link = link.to_str()?;
    Some(link.strip_prefix("pid:[")?.strip_suffix(']')?.to_owned())
}

/// This process as an owner of host processes: `pid.start-time.pid-namespace`. No dots or
/// colons appear inside the parts, so the id fits in a cookie.
pub(crate) fn this_process() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let pid = std::process::id();
        format!(
            "{pid}.{}.{}",
            start_time(pid).unwrap_or_default(),
            pid_namespace().unwrap_or_default()
        )
    })
}

/// Whether the owner named by [`this_process`]'s format is gone: `Some(false)` only when it is
/// certain (same pid namespace, and the pid is gone or now belongs to a younger process). An id
/// from another namespace, or one that does not parse, is not ours to judge: `None`.
pub(crate) fn process_alive(owner: &str) -> Option<bool> {
    let mut parts = owner.split('.');
    let (Some(pid), Some(start), Some(ns), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if ns.is_empty() || start.is_empty() || Some(ns) != pid_namespace().as_deref() {
        return None;
    }
    let pid = pid.parse::<u32>().ok()?;
    match std::fs::metadata(format!("/proc/{pid}")) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(false),
        // Hidden from us (`hidepid`): cannot tell.
        Err(_) => None,
        Ok(_) => start_time(pid).map(|s| s == start),
    }
}

/// `host:pid:start-time`: the start time tells a live owner from a reused pid.
#[cfg(any(feature = "docker", feature = "podman"))]
pub(crate) fn owner_id(pid: u32) -> String {
    format!(
        "{}:{pid}:{}",
        hostname(),
        start_time(pid).unwrap_or_default()
    )
}

/// Whether the container owner `owner` (an [`owner_id`]) still runs; foreign hosts' are.
#[cfg(any(feature = "docker", feature = "podman"))]
pub(crate) fn owner_alive(owner: &str) -> bool {
    let mut parts = owner.splitn(3, ':');
    let (Some(host), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next()) else {
        return true; // not ours to judge
    };
    if host != hostname() {
        return true;
    }
    match pid.parse::<u32>() {
        Ok(pid) => start_time(pid).as_deref() == Some(start),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_or_foreign_owner_is_told_apart() {
        assert_eq!(process_alive(this_process()), Some(true));
        let me = this_process();
        let mut parts = me.split('.');
        let (_, start, ns) = (parts.next(), parts.next(), parts.next());
        let (start, ns) = (start.unwrap_or_default(), ns.unwrap_or_default());
        // A pid that cannot exist, and this pid with another start time (a reused pid).
        assert_eq!(process_alive(&format!("4194303.{start}.{ns}")), Some(false));
        let pid = std::process::id();
        assert_eq!(process_alive(&format!("{pid}.1.{ns}")), Some(false));
        assert_eq!(process_alive(&format!("4194303.{start}.1")), None);
        assert_eq!(process_alive("12:34"), None);
    }
}
