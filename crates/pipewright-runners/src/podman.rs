//! `podman`: a task in a container through the daemonless, rootless-capable `podman` CLI.

use crate::process::{ProcessSpec, run_process};
use crate::settings::{
    self, CONTAINER_WORKDIR, LABEL_BUILD, LABEL_JOB, LABEL_MANAGED, LABEL_OWNER, LABEL_STEP,
    PullPolicy, Settings, invalid,
};
use async_trait::async_trait;
use nix::sys::resource::{Resource, getrlimit};
use pipewright_core::owner::container_owner_alive as owner_alive;
use pipewright_core::{
    Ctx, Error, ErrorKind, ExitStatus, ParamSpec, Result, Runner, TaskSpec, Workspace,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::process::Command;

/// The highest process limit podman keeps for itself (podman 4 lowers its own `RLIMIT_NPROC` to
/// this), so the highest a container may ask for.
const PODMAN_NPROC_CAP: u64 = 32768;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Runs each task in a fresh container with `podman run --rm`: the `docker` runner's params
/// (`image`, `cmd`, `env`, `user`, `workdir`, `network`, `memory`, `cpus`, `pull`,
/// `privileged`) and `args` flags, no daemon.
///
/// The `podman` client is started like an `exec` task, in its own process group, so a cancel or
/// timeout stops it (it passes `SIGTERM` on to the container) and then `podman rm -f` removes
/// the container in case the client was killed before it could. The workspace is mounted at
/// `/workdir` (`:Z`, relabelled for SELinux); the container gets the worker's own open-file and
/// process limits (podman's defaults are higher than an unprivileged or container-hosted
/// worker may set). Containers are labelled like the docker runner's; those whose owner
/// process is gone are removed the first time the runner is used.
#[derive(Debug)]
pub struct PodmanRunner {
    program: String,
    grace: Duration,
    allow_privileged: bool,
    owner: String,
    reaped: tokio::sync::OnceCell<()>,
}

impl Default for PodmanRunner {
    fn default() -> Self {
        Self::new()
    }
}

impl PodmanRunner {
    /// A runner over `podman` from `PATH`.
    pub fn new() -> Self {
        Self {
            program: "podman".into(),
            grace: crate::DEFAULT_GRACE,
            allow_privileged: false,
            owner: pipewright_core::owner::container_owner().to_owned(),
            reaped: tokio::sync::OnceCell::new(),
        }
    }

    /// How long a cancelled container gets between `SIGTERM` and `SIGKILL`.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Allows `privileged = true`. Off by default.
    pub fn allow_privileged(mut self, allow: bool) -> Self {
        self.allow_privileged = allow;
        self
    }

    /// Removes every container of this host whose owner process is gone. Returns how many.
    pub async fn reap(&self) -> Result<usize> {
        let out = Command::new(&self.program)
            .args(["ps", "-a", "--filter"])
            .arg(format!("label={LABEL_MANAGED}"))
            .args(["--format"])
            .arg(format!(
                "{{{{.ID}}}} {{{{index .Labels \"{LABEL_OWNER}\"}}}}"
            ))
            .output()
            .await
            .map_err(|e| not_found(&self.program, &e))?;
        if !out.status.success() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "`podman ps` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        let mut n = 0;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let (id, owner) = line.split_once(' ').unwrap_or((line, ""));
            if id.is_empty() || owner_alive(owner) {
                continue;
            }
            tracing::info!(
                container = id,
                owner,
                "removing a podman container left by a dead engine"
            );
            if self.remove(id).await {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn remove(&self, name: &str) -> bool {
        Command::new(&self.program)
            .args(["rm", "-f", "--ignore", "-t", "0", name])
            .output()
            .await
            .is_ok_and(|o| o.status.success())
    }

    /// The `podman run` command line (values of the environment travel in the client's own
    /// environment, named with `-e NAME`, so they stay out of `ps`).
    fn command_line(
        &self,
        ctx: &Ctx,
        task: &TaskSpec,
        s: &Settings,
        host_dir: &str,
        name: &str,
        env: &[String],
    ) -> Vec<String> {
        let mut a: Vec<String> = ["run", "--rm", "--name", name].map(str::to_owned).to_vec();
        for (k, v) in [
            (LABEL_MANAGED, "1"),
            (LABEL_OWNER, self.owner.as_str()),
            (LABEL_BUILD, ctx.build.build_id.as_str()),
            (LABEL_JOB, ctx.build.job.as_str()),
            (LABEL_STEP, task.name.as_str()),
        ] {
            a.extend(["--label".into(), format!("{k}={v}")]);
        }
        a.extend(["-v".into(), format!("{host_dir}:{CONTAINER_WORKDIR}:Z")]);
        for b in &s.binds {
            a.extend(["-v".into(), b.clone()]);
        }
        a.extend(["-w".into(), s.workdir()]);
        a.extend(ulimits());
        let mut opt = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                a.extend([flag.to_owned(), v]);
            }
        };
        opt("--user", s.user.clone());
        opt("--network", s.network.clone());
        opt("--memory", s.memory.map(|m| m.to_string()));
        // Swap equal to memory: a hog is killed instead of swapping the host to death.
        opt("--memory-swap", s.memory.map(|m| m.to_string()));
        opt("--cpus", s.nano_cpus.map(|n| format!("{}", n as f64 / 1e9)));
        opt("--shm-size", s.shm_size.map(|m| m.to_string()));
        opt(
            "--entrypoint",
            s.entrypoint.as_ref().and_then(|e| e.first().cloned()),
        );
        opt(
            "--pull",
            Some(
                match s.pull.unwrap_or(PullPolicy::IfNotPresent) {
                    PullPolicy::Always => "always",
                    PullPolicy::IfNotPresent => "missing",
                    PullPolicy::Never => "never",
                }
                .to_owned(),
            ),
        );
        for (path, opts) in &s.tmpfs {
            let v = if opts.is_empty() {
                path.clone()
            } else {
                format!("{path}:{opts}")
            };
            a.extend(["--tmpfs".into(), v]);
        }
        for h in &s.extra_hosts {
            a.extend(["--add-host".into(), h.clone()]);
        }
        for c in &s.cap_add {
            a.extend(["--cap-add".into(), c.clone()]);
        }
        if s.privileged {
            a.push("--privileged".into());
        }
        for k in env {
            a.extend(["-e".into(), k.clone()]);
        }
        a.push(s.image.clone());
        if let Some(cmd) = &s.cmd {
            a.extend(["/bin/sh".into(), "-ec".into(), cmd.clone()]);
        }
        a
    }
}

/// `--ulimit` flags with the worker's own open-file and process limits.
fn ulimits() -> Vec<String> {
    let mut out = Vec::new();
    for (name, res, cap) in [
        ("nofile", Resource::RLIMIT_NOFILE, u64::MAX),
        ("nproc", Resource::RLIMIT_NPROC, PODMAN_NPROC_CAP),
    ] {
        if let Ok((soft, hard)) = getrlimit(res) {
            let hard = hard.min(cap);
            let soft = soft.min(hard);
            out.extend(["--ulimit".to_owned(), format!("{name}={soft}:{hard}")]);
        }
    }
    out
}

fn not_found(program: &str, e: &std::io::Error) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("cannot run `{program}` ({e}): install podman (apt-get install podman)"),
    )
}

#[async_trait]
impl Runner for PodmanRunner {
    fn params(&self) -> ParamSpec {
        ParamSpec::exactly(settings::RUNNER_PARAMS, &["image", "cmd"])
    }

    async fn run(&self, ctx: &Ctx, task: &TaskSpec, ws: &Workspace) -> Result<ExitStatus> {
        let s = Settings::from_task(task)?;
        if s.privileged && !self.allow_privileged {
            return Err(invalid(
                "privileged containers are off: the engine must allow them (`pipewright run \
                 --allow-privileged`)",
            ));
        }
        self.reaped
            .get_or_init(|| async {
                if let Err(e) = self.reap().await {
                    tracing::debug!(error = %e, "cannot reap podman containers");
                }
            })
            .await;
        let host_dir = settings::host_dir(ws)?;
        let env = settings::step_env(ctx, task, ws, &host_dir, &s.env)?;
        let name = format!(
            "pw-{}-{}-{}",
            sanitize(&ctx.build.build_id),
            sanitize(&task.name),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let names: Vec<String> = env.keys().cloned().collect();
        let spec = ProcessSpec {
            program: self.program.clone(),
            args: self.command_line(ctx, task, &s, &host_dir, &name, &names),
            env,
            cwd: ws.dir.clone(),
        };
        let result = run_process(ctx, &spec, self.grace).await;
        match &result {
            // `--rm` removed it.
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(not_found(
                    &self.program,
                    &std::io::Error::other(e.to_string()),
                ));
            }
            // The client may have been killed before it could stop and remove the container.
            Err(_) => {
                self.remove(&name).await;
            }
        }
        result
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
