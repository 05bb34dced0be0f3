//! `docker`: a task in a container, through the Docker Engine API (bollard).

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use pipewright_core::{
    Ctx, Error, ErrorKind, ExitStatus, ParamSpec, Params, Result, Runner, Stream, TaskSpec,
    Workspace,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where the build workspace appears inside every container.
pub const CONTAINER_WORKDIR: &str = "/workdir";

/// Label marking containers this runner created; the others carry the ids.
pub use pipewright_core::owner::LABEL_MANAGED;
use pipewright_core::owner::{LABEL_BUILD, LABEL_JOB, LABEL_OWNER, container_owner_alive};
const LABEL_STEP: &str = "io.pipewright.step";

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

/// Runs each task in a fresh container: `image`, `cmd` (run with `/bin/sh -ec`; without it the
/// image's own command), `args` (extra `docker run` flags: `-v`, `-e`, `--network`, `--memory`,
/// `--cpus`, `-u`, `-w`, `--entrypoint`, `--tmpfs`, `--add-host`, `--shm-size`, `--cap-add`,
/// `--init`, `--privileged`), `env` (a map), `user`, `workdir`, `cpus`, `memory`, `network`,
/// `pull` (`always` | `if-not-present` | `never`) and `privileged`.
///
/// The workspace is mounted at `/workdir` (the default working directory); `WORKDIR` and
/// `PIPEWRIGHT_OUTPUT` point inside it. stdout and stderr stream separately; the exit code is
/// the container's. The command runs under an init (as with `docker run --init`), so `SIGTERM`
/// stops it without waiting out the grace period. Every container is labelled with the build,
/// job and step, and removed however the task ends; a container whose owner process is gone (a
/// crashed engine) is removed the first time a runner on the same host connects.
#[derive(Debug)]
pub struct DockerRunner {
    client: tokio::sync::OnceCell<std::result::Result<Docker, String>>,
    grace: Duration,
    allow_privileged: bool,
    owner: String,
}

impl Default for DockerRunner {
    fn default() -> Self {
        Self::new()
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl DockerRunner {
    /// A runner for the local daemon (`DOCKER_HOST`, else `/var/run/docker.sock`), connected on
    /// first use with API version negotiation.
    pub fn new() -> Self {
        Self {
            client: tokio::sync::OnceCell::new(),
            grace: crate::DEFAULT_GRACE,
            allow_privileged: false,
            owner: pipewright_core::owner::container_owner().to_owned(),
        }
    }

    /// How long a cancelled container gets between `SIGTERM` and `SIGKILL`.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Allows `privileged = true`. Off by default: a privileged container owns the host.
    pub fn allow_privileged(mut self, allow: bool) -> Self {
        self.allow_privileged = allow;
        self
    }

    async fn client(&self) -> Result<&Docker> {
        let c = self
            .client
            .get_or_init(|| async {
                let d = Docker::connect_with_local_defaults()
                    .map_err(|e| format!("cannot connect to the Docker daemon: {e}"))?;
                let d = d.negotiate_version().await.map_err(|e| {
                    format!("cannot reach the Docker daemon (is dockerd running?): {e}")
                })?;
                reap_orphans(&d).await;
                Ok(d)
            })
            .await;
        c.as_ref()
            .map_err(|m| Error::new(ErrorKind::Unavailable, m.clone()))
    }

    /// Removes every container this runner's host left behind whose owner process is gone.
    /// Returns how many were removed.
    pub async fn reap(&self) -> Result<usize> {
        let d = self.client().await?;
        Ok(reap_orphans(d).await)
    }
}

async fn reap_orphans(d: &Docker) -> usize {
    let filters: HashMap<&str, Vec<&str>> = HashMap::from([("label", vec![LABEL_MANAGED])]);
    let list = match d
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list containers to reap");
            return 0;
        }
    };
    let mut n = 0;
    for c in list {
        let owner = c
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_OWNER))
            .cloned()
            .unwrap_or_default();
        if container_owner_alive(&owner) {
            continue;
        }
        if let Some(id) = c.id {
            tracing::info!(container = %id, owner, "removing a container left by a dead engine");
            if remove(d, &id).await {
                n += 1;
            }
        }
    }
    n
}

async fn remove(d: &Docker, id: &str) -> bool {
    match d
        .remove_container(
            id,
            Some(
                RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await
    {
        Ok(()) => true,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => true,
        // Another runner (reaping the same orphan) is removing it: wait until it is gone.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => gone(d, id).await,
        Err(e) => {
            tracing::warn!(container = id, error = %e, "cannot remove container");
            false
        }
    }
}

/// Waits up to 5 s for the container to disappear.
async fn gone(d: &Docker, id: &str) -> bool {
    for _ in 0..100 {
        let inspect = d
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await;
        if let Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) = inspect
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(container = id, "the container is still being removed");
    false
}

/// Removes the container if the run is abandoned midway (the future dropped, a panic).
struct Cleanup {
    docker: Docker,
    id: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let d = self.docker.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn(async move {
                        remove(&d, &id).await;
                    });
                }
                Err(_) => {
                    tracing::warn!(container = %id, "no runtime to remove the container; it will be reaped later")
                }
            }
        }
    }
}

/// The container settings read from a run block.
#[derive(Debug, Default)]
struct Settings {
    image: String,
    cmd: Option<String>,
    env: BTreeMap<String, String>,
    user: Option<String>,
    workdir: Option<String>,
    memory: Option<i64>,
    memory_text: Option<String>,
    nano_cpus: Option<i64>,
    network: Option<String>,
    pull: Option<PullPolicy>,
    privileged: bool,
    binds: Vec<String>,
    entrypoint: Option<Vec<String>>,
    tmpfs: HashMap<String, String>,
    extra_hosts: Vec<String>,
    shm_size: Option<i64>,
    cap_add: Vec<String>,
}

fn invalid(m: impl Into<String>) -> Error {
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
    fn from_task(task: &TaskSpec) -> Result<Self> {
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
                    .ok_or_else(|| invalid(format!("docker flag `{flag}` needs a value")))
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
                        "docker flag `{flag}` is managed by the runner; remove it from `args`"
                    )));
                }
                other => {
                    return Err(invalid(format!(
                        "docker flag `{other}` is not supported by the docker runner (supported: \
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

/// Makes sure `image` is present according to `policy`.
async fn ensure_image(d: &Docker, ctx: &Ctx, image: &str, policy: PullPolicy) -> Result<()> {
    let present = d.inspect_image(image).await.is_ok();
    match (policy, present) {
        (PullPolicy::Never, false) => Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "image `{image}` is not present and `pull = \"never\"`; build or load it first"
            ),
        )),
        (PullPolicy::IfNotPresent, true) | (PullPolicy::Never, true) => Ok(()),
        _ => {
            ctx.log.write(
                Stream::System,
                format!("pulling image {image}\n").as_bytes(),
            );
            let (name, tag) = split_tag(image);
            let mut s = d.create_image(
                Some(
                    CreateImageOptionsBuilder::new()
                        .from_image(name)
                        .tag(tag)
                        .build(),
                ),
                None,
                None,
            );
            while let Some(item) = s.next().await {
                if let Err(e) = item {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("image `{image}` is not present and could not be pulled: {e}"),
                    ));
                }
            }
            Ok(())
        }
    }
}

/// `repo:tag` → (`repo`, `tag`); a port in the registry host is not a tag.
fn split_tag(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (image, "latest"),
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[async_trait]
impl Runner for DockerRunner {
    fn params(&self) -> ParamSpec {
        ParamSpec::exactly(
            &[
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
            ],
            &["image", "cmd"],
        )
    }

    async fn run(&self, ctx: &Ctx, task: &TaskSpec, ws: &Workspace) -> Result<ExitStatus> {
        let s = Settings::from_task(task)?;
        if s.privileged && !self.allow_privileged {
            return Err(invalid(
                "privileged containers are off: the engine must allow them (`pipewright run \
                 --allow-privileged`)",
            ));
        }
        let d = self.client().await?;
        ensure_image(d, ctx, &s.image, s.pull.unwrap_or(PullPolicy::IfNotPresent)).await?;

        // The engine takes a relative bind source for a volume name: mount absolute paths.
        let absolute = |p: &std::path::Path| {
            std::path::absolute(p).map_err(|e| {
                invalid(format!(
                    "cannot make the workspace path `{}` absolute: {e}",
                    p.display()
                ))
            })
        };
        let host_dir = absolute(&ws.dir)?.display().to_string();
        let mut env: BTreeMap<String, String> = ctx.env.clone();
        // A task's `env` value that expanded `$WORKDIR` names the host path: point it inside.
        let given = ws.dir.display().to_string();
        env.extend(task.env.iter().map(|(k, v)| {
            let v = in_container(v, &host_dir)
                .unwrap_or_else(|| in_container(v, &given).unwrap_or_else(|| v.clone()));
            (k.clone(), v)
        }));
        env.extend(s.env.clone());
        env.insert("WORKDIR".into(), CONTAINER_WORKDIR.into());
        for (name, file) in [
            ("PIPEWRIGHT_OUTPUT", ws.output_file.clone()),
            ("PIPEWRIGHT_ENV", ws.env_file()),
        ] {
            let path = absolute(&file)?.display().to_string();
            env.insert(name.into(), in_container(&path, &host_dir).unwrap_or(path));
        }
        let mut binds = vec![format!("{host_dir}:{CONTAINER_WORKDIR}")];
        binds.extend(s.binds.iter().cloned());
        let labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "1".to_owned()),
            (LABEL_OWNER.to_owned(), self.owner.clone()),
            (LABEL_BUILD.to_owned(), ctx.build.build_id.clone()),
            (LABEL_JOB.to_owned(), ctx.build.job.clone()),
            (LABEL_STEP.to_owned(), task.name.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(s.image.clone()),
            cmd: s
                .cmd
                .as_ref()
                .map(|c| vec!["/bin/sh".to_owned(), "-ec".to_owned(), c.clone()]),
            entrypoint: s.entrypoint.clone(),
            env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            user: s.user.clone(),
            working_dir: Some(
                s.workdir
                    .clone()
                    .unwrap_or_else(|| CONTAINER_WORKDIR.into()),
            ),
            labels: Some(labels),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            open_stdin: Some(false),
            host_config: Some(HostConfig {
                binds: Some(binds),
                memory: s.memory,
                // Swap equal to memory: a hog is killed instead of swapping the host to death.
                memory_swap: s.memory,
                nano_cpus: s.nano_cpus,
                network_mode: s.network.clone(),
                privileged: Some(s.privileged),
                tmpfs: (!s.tmpfs.is_empty()).then(|| s.tmpfs.clone()),
                extra_hosts: (!s.extra_hosts.is_empty()).then(|| s.extra_hosts.clone()),
                shm_size: s.shm_size,
                cap_add: (!s.cap_add.is_empty()).then(|| s.cap_add.clone()),
                // An init as PID 1 forwards signals and reaps zombies: a shell as PID 1 ignores
                // SIGTERM, so every stop would wait out the whole grace period.
                init: Some(true),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let name = format!(
            "pw-{}-{}-{}",
            sanitize(&ctx.build.build_id),
            sanitize(&task.name),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let created = d
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot create a container from `{}`: {e}", s.image),
                )
            })?;
        let id = created.id;
        let mut cleanup = Cleanup {
            docker: d.clone(),
            id: Some(id.clone()),
        };
        let result = self.drive(d, ctx, &id, &s).await;
        remove(d, &id).await;
        cleanup.id = None;
        result
    }
}

impl DockerRunner {
    /// Attaches, starts, streams and waits; stops the container on cancel or deadline.
    async fn drive(&self, d: &Docker, ctx: &Ctx, id: &str, s: &Settings) -> Result<ExitStatus> {
        let mut attach = d
            .attach_container(
                id,
                Some(
                    AttachContainerOptionsBuilder::new()
                        .stream(true)
                        .stdout(true)
                        .stderr(true)
                        .build(),
                ),
            )
            .await
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("cannot attach: {e}")))?;
        d.start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Failed,
                    format!("cannot start the container from `{}`: {e}", s.image),
                )
            })?;
        let deadline = ctx.deadline.map(tokio::time::Instant::from_std);
        let timeout = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timeout);
        let stopped: Option<Error> = loop {
            tokio::select! {
                item = attach.output.next() => match item {
                    Some(Ok(LogOutput::StdOut { message })) => ctx.log.send(Stream::Stdout, &message).await,
                    Some(Ok(LogOutput::StdErr { message })) => ctx.log.send(Stream::Stderr, &message).await,
                    Some(Ok(LogOutput::Console { message })) => ctx.log.send(Stream::Stdout, &message).await,
                    Some(Ok(LogOutput::StdIn { .. })) => {}
                    Some(Err(e)) => {
                        tracing::warn!(container = id, error = %e, "log stream broke");
                        break None;
                    }
                    None => break None,
                },
                () = ctx.cancel.cancelled() => break Some(Error::cancelled()),
                () = &mut timeout => break Some(Error::new(ErrorKind::Timeout, "the task ran past its deadline")),
            }
        };
        if let Some(e) = stopped {
            let t = i32::try_from(self.grace.as_secs().max(1)).unwrap_or(i32::MAX);
            let _ = d
                .stop_container(id, Some(StopContainerOptionsBuilder::new().t(t).build()))
                .await;
            return Err(e);
        }
        let mut wait =
            d.wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
        let code = match wait.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("lost the container while waiting for it: {e}"),
                ));
            }
            None => -1,
        };
        // 137: killed by SIGKILL, as the OOM killer does.
        let tries = if code == 137 && s.memory.is_some() {
            20
        } else {
            1
        };
        if oom_killed(d, id, tries).await {
            return Err(Error::new(
                ErrorKind::Failed,
                format!(
                    "the container ran out of memory (limit {}) and was killed",
                    s.memory_text.as_deref().unwrap_or("unset")
                ),
            ));
        }
        Ok(ExitStatus::Code(i32::try_from(code).unwrap_or(-1)))
    }
}

/// Whether the engine recorded an OOM kill, asking up to `tries` times 50 ms apart: under an init
/// the killed process is not PID 1, and the engine may record the OOM event just after the exit.
async fn oom_killed(d: &Docker, id: &str, tries: usize) -> bool {
    for i in 0..tries {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let state = d
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .ok()
            .and_then(|i| i.state);
        if state.and_then(|st| st.oom_killed) == Some(true) {
            return true;
        }
    }
    false
}

/// `path` under the host workspace `host_dir`, as the container sees it; `None` outside it.
fn in_container(path: &str, host_dir: &str) -> Option<String> {
    let rest = path.strip_prefix(host_dir)?;
    (rest.is_empty() || rest.starts_with('/')).then(|| format!("{CONTAINER_WORKDIR}{rest}"))
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
        assert_eq!(split_tag("busybox"), ("busybox", "latest"));
        assert_eq!(split_tag("reg:5000/app:1.2"), ("reg:5000/app", "1.2"));
        assert_eq!(split_tag("reg:5000/app"), ("reg:5000/app", "latest"));
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
