//! `docker`: a task in a container, through the Docker Engine API (bollard).

mod image;
mod session;

use crate::settings::{
    self, LABEL_BUILD, LABEL_JOB, LABEL_MANAGED, LABEL_OWNER, LABEL_STEP, PullPolicy, Settings,
    invalid,
};
use image::ensure_image;
pub use session::ContainerSession;

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use pipewright_core::owner::container_owner_alive as owner_alive;
use pipewright_core::{
    Ctx, Error, ErrorKind, ExitStatus, ParamSpec, Result, Runner, Stream, TaskSpec, Workspace,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

    /// The labels of every container this runner starts for `ctx`'s build.
    fn labels(&self, ctx: &Ctx) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_MANAGED.to_owned(), "1".to_owned()),
            (LABEL_OWNER.to_owned(), self.owner.clone()),
            (LABEL_BUILD.to_owned(), ctx.build.build_id.clone()),
            (LABEL_JOB.to_owned(), ctx.build.job.clone()),
        ])
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
        if owner_alive(&owner) {
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
        let d = self.client().await?;
        ensure_image(d, ctx, &s.image, s.pull.unwrap_or(PullPolicy::IfNotPresent)).await?;
        let host_dir = settings::host_dir(ws)?;
        let env = settings::step_env(ctx, task, ws, &host_dir, &s.env)?;
        let mut labels = self.labels(ctx);
        labels.insert(LABEL_STEP.to_owned(), task.name.clone());
        let body = ContainerCreateBody {
            image: Some(s.image.clone()),
            cmd: s
                .cmd
                .as_ref()
                .map(|c| vec!["/bin/sh".to_owned(), "-ec".to_owned(), c.clone()]),
            entrypoint: s.entrypoint.clone(),
            env: Some(settings::env_list(&env)),
            user: s.user.clone(),
            working_dir: Some(s.workdir()),
            labels: Some(labels),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            open_stdin: Some(false),
            host_config: Some(s.host_config(&host_dir)),
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
        // 137: killed by SIGKILL, as the OOM killer does. A loaded engine records the OOM
        // event late: give it up to 5 s.
        let tries = if code == 137 && s.memory.is_some() {
            100
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
