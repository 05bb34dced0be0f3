//! The container settings of a `run "docker"` or `run "podman"` block or a job's `container`
//! block, and the step environment a container sees.

use pipewright_core::{Ctx, Error, ErrorKind, Params, Result, TaskSpec, Workspace};
use std::collections::{BTreeMap, HashMap};

/// Where the build workspace appears inside every container.
pub const CONTAINER_WORKDIR: &str = "/workdir";

/// Label marking containers a runner created; the others carry the ids.
pub use pipewright_core::owner::LABEL_MANAGED;
pub(crate) use pipewright_core::owner::{LABEL_BUILD, LABEL_JOB, LABEL_OWNER};
pub(crate) const LABEL_STEP: &str = "io.pipewright.step";

/// The params of the `docker` and `podman` runners.
pub(crate) const RUNNER_PARAMS: &[&str] = &[
    "image",
    "cmd",
    "user",
    "workdir",
    "network",
    "memory",
    "cpus",
    "pull",
    "privileged",
    "env",
];

/// When to pull the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull before every run.
    Always,
    /// Pull only when the image is not present (the default).
    IfNotPresent,
    /// Never pull: a missing image is an error.
    Never,
}

/// The container settings read from a run block.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    pub(crate) image: String,
    pub(crate) cmd: Option<String>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) user: Option<String>,
    pub(crate) workdir: Option<String>,
    pub(crate) memory: Option<i64>,
    pub(crate) memory_text: Option<String>,
    pub(crate) nano_cpus: Option<i64>,
    pub(crate) network: Option<String>,
    pub(crate) pull: Option<PullPolicy>,
    pub(crate) privileged: bool,
    pub(crate) binds: Vec<String>,
    pub(crate) entrypoint: Option<Vec<String>>,
    pub(crate) tmpfs: HashMap<String, String>,
    pub(crate) extra_hosts: Vec<String>,
    pub(crate) shm_size: Option<i64>,
    pub(crate) cap_add: Vec<String>,
}

pub(crate) fn invalid(m: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, m)
}

/// `512m`, `1g`, `1.5GiB`, `1048576` → bytes.
fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| invalid(format!("`{s}` is not a size (use e.g. 512m or 2g)")))?;
    let mult = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(invalid(format!(
                "`{s}` is not a size (use e.g. 512m or 2g)"
            )));
        }
    };
    Ok((n * mult) as i64)
}

fn parse_cpus(s: &str) -> Result<i64> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| invalid(format!("`cpus` must be a number such as 1.5, got `{s}`")))?;
    if n <= 0.0 {
        return Err(invalid(format!("`cpus` must be above 0, got `{s}`")));
    }
    Ok((n * 1e9) as i64)
}

fn param(params: &Params, key: &str) -> Option<String> {
    params.get_str(key).filter(|s| !s.is_empty())
}

impl Settings {
    pub(crate) fn from_task(task: &TaskSpec) -> Result<Self> {
        let p = &task.params;
        let mut s = Settings {
            image: param(p, "image").ok_or_else(|| invalid("the docker runner needs `image`"))?,
            cmd: param(p, "cmd"),
            user: param(p, "user"),
            workdir: param(p, "workdir"),
            network: param(p, "network"),
            ..Settings::default()
        };
        if let Some(m) = param(p, "memory") {
            s.memory = Some(parse_bytes(&m)?);
            s.memory_text = Some(m);
        }
        if let Some(c) = param(p, "cpus") {
            s.nano_cpus = Some(parse_cpus(&c)?);
        }
        s.pull = match param(p, "pull").as_deref() {
            None => None,
            Some("always") => Some(PullPolicy::Always),
            Some("if-not-present" | "missing") => Some(PullPolicy::IfNotPresent),
            Some("never") => Some(PullPolicy::Never),
            Some(o) => {
                return Err(invalid(format!(
                    "`pull` is always, if-not-present or never, got `{o}`"
                )));
            }
        };
        s.privileged = param(p, "privileged").as_deref() == Some("true");
        if let Some(serde_json::Value::Object(env)) = p.get("env") {
            for (k, v) in env {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    o => o.to_string(),
                };
                s.env.insert(k.clone(), v);
            }
        }
        s.apply_flags(&task.args)?;
        Ok(s)
    }

    /// The `docker run` flags users put in `args`.
    fn apply_flags(&mut self, args: &[String]) -> Result<()> {
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
                _ => (a.as_str(), None),
            };
            let mut value = || -> Result<String> {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| invalid(format!("container flag `{flag}` needs a value")))
            };
            match flag {
                "-v" | "--volume" => self.binds.push(value()?),
                "-e" | "--env" => {
                    let v = value()?;
                    match v.split_once('=') {
                        Some((k, val)) => self.env.insert(k.to_owned(), val.to_owned()),
                        None => self
                            .env
                            .insert(v.clone(), std::env::var(&v).unwrap_or_default()),
                    };
                }
                "--network" | "--net" => self.network = Some(value()?),
                "-m" | "--memory" => {
                    let v = value()?;
                    self.memory = Some(parse_bytes(&v)?);
                    self.memory_text = Some(v);
                }
                "--cpus" => self.nano_cpus = Some(parse_cpus(&value()?)?),
                "-u" | "--user" => self.user = Some(value()?),
                "-w" | "--workdir" => self.workdir = Some(value()?),
                "--entrypoint" => self.entrypoint = Some(vec![value()?]),
                "--tmpfs" => {
                    let v = value()?;
                    let (path, opts) = v.split_once(':').unwrap_or((&v, ""));
                    self.tmpfs.insert(path.to_owned(), opts.to_owned());
                }
                "--add-host" => self.extra_hosts.push(value()?),
                "--shm-size" => self.shm_size = Some(parse_bytes(&value()?)?),
                "--cap-add" => self.cap_add.push(value()?),
                // Every container already runs under an init.
                "--init" => {}
                "--privileged" => self.privileged = true,
                "--rm" | "-i" | "-t" | "--interactive" | "--tty" | "-d" | "--detach" => {
                    return Err(invalid(format!(
                        "container flag `{flag}` is managed by the runner; remove it from `args`"
                    )));
                }
                other => {
                    return Err(invalid(format!(
                        "container flag `{other}` is not supported by the docker and podman runners (supported: \
                         -v, -e, --network, --memory, --cpus, -u, -w, --entrypoint, --tmpfs, \
                         --add-host, --shm-size, --cap-add, --init, --privileged); use a \
                         `runner_type` over the docker CLI for others"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Settings {
    /// The working directory inside the container.
    pub(crate) fn workdir(&self) -> String {
        self.workdir
            .clone()
            .unwrap_or_else(|| CONTAINER_WORKDIR.into())
    }
}

/// The workspace as an absolute host path: the engine takes a relative bind source for a
/// volume name.
pub(crate) fn host_dir(ws: &Workspace) -> Result<String> {
    Ok(absolute(&ws.dir)?.display().to_string())
}

fn absolute(p: &std::path::Path) -> Result<std::path::PathBuf> {
    std::path::absolute(p).map_err(|e| {
        invalid(format!(
            "cannot make the workspace path `{}` absolute: {e}",
            p.display()
        ))
    })
}

/// A step's environment inside a container whose `/workdir` is `host_dir`: the context's
/// variables, the task's `env` (a value that expanded `$WORKDIR` names the host path, so it is
/// pointed inside), the container's own `env`, then `WORKDIR`, `PIPEWRIGHT_OUTPUT` and
/// `PIPEWRIGHT_ENV` as the container sees them.
pub(crate) fn step_env(
    ctx: &Ctx,
    task: &TaskSpec,
    ws: &Workspace,
    host_dir: &str,
    container_env: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut env: BTreeMap<String, String> = ctx.env.clone();
    let given = ws.dir.display().to_string();
    env.extend(task.env.iter().map(|(k, v)| {
        let v = in_container(v, host_dir)
            .unwrap_or_else(|| in_container(v, &given).unwrap_or_else(|| v.clone()));
        (k.clone(), v)
    }));
    env.extend(container_env.clone());
    env.insert("WORKDIR".into(), CONTAINER_WORKDIR.into());
    for (name, file) in [
        ("PIPEWRIGHT_OUTPUT", ws.output_file.clone()),
        ("PIPEWRIGHT_ENV", ws.env_file()),
    ] {
        let path = absolute(&file)?.display().to_string();
        env.insert(name.into(), in_container(&path, host_dir).unwrap_or(path));
    }
    Ok(env)
}

/// `path` under the host workspace `host_dir`, as the container sees it; `None` outside it.
pub(crate) fn in_container(path: &str, host_dir: &str) -> Option<String> {
    let rest = path.strip_prefix(host_dir)?;
    (rest.is_empty() || rest.starts_with('/')).then(|| format!("{CONTAINER_WORKDIR}{rest}"))
}

/// `KEY=VALUE` strings for the Engine API.
#[cfg(feature = "docker")]
pub(crate) fn env_list(env: &BTreeMap<String, String>) -> Vec<String> {
    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_paths_are_mapped_inside_the_container() {
        let host = "/tmp/builds/b1";
        assert_eq!(
            in_container("/tmp/builds/b1/.pip", host).as_deref(),
            Some("/workdir/.pip")
        );
        assert_eq!(in_container(host, host).as_deref(), Some("/workdir"));
        assert_eq!(in_container("/tmp/builds/b10/x", host), None);
        assert_eq!(in_container("/elsewhere", host), None);
    }

    #[test]
    fn sizes_cpus_tags_and_flags() {
        assert_eq!(parse_bytes("512m").ok(), Some(512 << 20));
        assert_eq!(parse_bytes("1g").ok(), Some(1 << 30));
        assert_eq!(parse_bytes("2GiB").ok(), Some(2 << 30));
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_cpus("1.5").ok(), Some(1_500_000_000));
        assert!(parse_cpus("0").is_err());
        let mut s = Settings::default();
        let args: Vec<String> = ["-v", "/a:/b", "--network=host", "-e", "K=V", "--init"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert!(s.apply_flags(&args).is_ok());
        assert_eq!(s.binds, ["/a:/b"]);
        assert_eq!(s.network.as_deref(), Some("host"));
        assert_eq!(s.env.get("K").map(String::as_str), Some("V"));
        let bad = s.apply_flags(&["--gpus".to_owned(), "all".to_owned()]);
        assert!(bad.is_err_and(|e| e.to_string().contains("not supported")));
    }
}
