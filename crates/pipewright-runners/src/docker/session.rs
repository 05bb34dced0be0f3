//! A job's container: one long-lived container per job, each step a `docker exec` into it.

use super::{DockerRunner, NEXT, ensure_image, remove, sanitize};
use crate::settings::{self, CONTAINER_WORKDIR, PullPolicy, Settings, invalid};
use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptionsBuilder;
use futures_util::StreamExt;
use pipewright_core::{
    Ctx, Error, ErrorKind, ExitStatus, ParamSpec, Result, Runner, Stream, TaskSpec, Workspace,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Label telling a job's container from a step's.
const LABEL_SESSION: &str = "io.pipewright.session";

/// The variable that marks every process of one exec, so a stop finds the whole tree (as the
/// host runners' cookie does) without the image needing `setsid`.
const EXEC_MARK: &str = "PIPEWRIGHT_EXEC";

/// Sends `$2` to every process whose environment holds `$1`.
const KILL_SCRIPT: &str = r#"for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = "$$" ] && continue
  if tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qx "$1"; then kill -"$2" "$p" 2>/dev/null; fi
done
exit 0"#;

/// One container that runs every step of a job with `docker exec`: a multi-step job pays one
/// container start instead of one per step, and steps share the container's filesystem (a
/// file written to `/tmp` by one step is there for the next).
///
/// The container runs an idle command under an init, with the workspace at `/workdir`, and
/// carries the same labels as the docker runner's, so a session a crashed engine left behind
/// is reaped the same way. As a [`Runner`] it takes the `shell` runner's params (`cmd`, `file`,
/// `shell`; `args` are the script's `$1…`) or the `exec` runner's (`path` and `args`). A
/// cancelled or timed-out step's processes get `SIGTERM`, then `SIGKILL` after the grace.
/// [`ContainerSession::stop`] removes the container; dropping the session removes it too.
#[derive(Debug)]
pub struct ContainerSession {
    docker: Docker,
    id: String,
    host_dir: String,
    settings: Settings,
    grace: Duration,
    stopped: AtomicBool,
}

impl DockerRunner {
    /// Starts a job's container for `ctx`'s build, the workspace `ws.dir` mounted at
    /// `/workdir`. `spec.params` are the docker runner's (`image`, `env`, `user`, `workdir`,
    /// `network`, `memory`, `cpus`, `pull`, `privileged`; `cmd` is not read) and `spec.args`
    /// its `docker run` flags (a mount is `-v host:container[:ro]`).
    pub async fn start_session(
        &self,
        ctx: &Ctx,
        spec: &TaskSpec,
        ws: &Workspace,
    ) -> Result<ContainerSession> {
        let s = Settings::from_task(spec)?;
        if s.privileged && !self.allow_privileged {
            return Err(invalid(
                "privileged containers are off: the engine must allow them (`pipewright run \
                 --allow-privileged`)",
            ));
        }
        let d = self.client().await?;
        ensure_image(d, ctx, &s.image, s.pull.unwrap_or(PullPolicy::IfNotPresent)).await?;
        let host_dir = settings::host_dir(ws)?;
        let mut labels = self.labels(ctx);
        labels.insert(LABEL_SESSION.to_owned(), "job".to_owned());
        let body = ContainerCreateBody {
            image: Some(s.image.clone()),
            // The image's own entrypoint (`python`, say) must not swallow the idle command.
            entrypoint: Some(vec!["sleep".to_owned(), "infinity".to_owned()]),
            env: Some(settings::env_list(&s.env)),
            user: s.user.clone(),
            working_dir: Some(s.workdir()),
            labels: Some(labels),
            tty: Some(false),
            open_stdin: Some(false),
            host_config: Some(s.host_config(&host_dir)),
            ..ContainerCreateBody::default()
        };
        let name = format!(
            "pw-{}-job-{}",
            sanitize(&ctx.build.build_id),
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
                    format!("cannot create the job container from `{}`: {e}", s.image),
                )
            })?;
        // From here on the session owns the container: an error or a drop removes it.
        let session = ContainerSession {
            docker: d.clone(),
            id: created.id,
            host_dir,
            settings: s,
            grace: self.grace,
            stopped: AtomicBool::new(false),
        };
        d.start_container(
            &session.id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Failed,
                format!(
                    "cannot start the job container from `{}`: {e}",
                    session.settings.image
                ),
            )
        })?;
        tracing::debug!(container = %session.id, build = %ctx.build.build_id, "job container started");
        Ok(session)
    }
}

impl ContainerSession {
    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Removes the container and everything still running in it. Later steps fail.
    pub async fn stop(&self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            remove(&self.docker, &self.id).await;
        }
    }

    /// The command line of a `shell` or `exec` task.
    fn argv(task: &TaskSpec) -> Result<Vec<String>> {
        let p = |k: &str| task.params.get_str(k).filter(|s| !s.is_empty());
        let mut argv = match (p("path"), p("cmd"), p("file")) {
            (Some(path), None, None) => vec![path],
            (None, Some(cmd), None) => {
                let shell = p("shell").unwrap_or_else(|| "/bin/sh".to_owned());
                // `$0` of the script; the task's args follow as `$1…`.
                vec![shell, "-ec".to_owned(), cmd, task.name.clone()]
            }
            (None, None, Some(file)) => {
                let shell = p("shell").unwrap_or_else(|| "/bin/sh".to_owned());
                let file = if file.starts_with('/') {
                    file
                } else {
                    format!("{}/{file}", CONTAINER_WORKDIR)
                };
                vec![shell, "-e".to_owned(), file]
            }
            _ => {
                return Err(invalid(format!(
                    "step `{}` in the job container needs exactly one of `cmd`, `file` (shell) \
                     or `path` (exec)",
                    task.name
                )));
            }
        };
        argv.extend(task.args.iter().cloned());
        Ok(argv)
    }

    /// Sends `signal` to every process of the exec marked `mark`, through a second exec.
    async fn signal(&self, mark: &str, signal: &str) {
        kill_marked(&self.docker, &self.id, mark, signal).await;
    }

    /// Streams the exec's output until it ends, the step is cancelled or its deadline passes.
    async fn stream<S>(&self, ctx: &Ctx, output: &mut S) -> Option<Error>
    where
        S: futures_util::Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>>
            + Unpin,
    {
        let deadline = ctx.deadline.map(tokio::time::Instant::from_std);
        let timeout = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timeout);
        loop {
            tokio::select! {
                item = output.next() => match item {
                    Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                        ctx.log.send(Stream::Stdout, &message).await
                    }
                    Some(Ok(LogOutput::StdErr { message })) => ctx.log.send(Stream::Stderr, &message).await,
                    Some(Ok(LogOutput::StdIn { .. })) => {}
                    Some(Err(e)) => {
                        tracing::warn!(container = %self.id, error = %e, "exec output stream broke");
                        return None;
                    }
                    None => return None,
                },
                () = ctx.cancel.cancelled() => return Some(Error::cancelled()),
                () = &mut timeout => return Some(Error::new(ErrorKind::Timeout, "the task ran past its deadline")),
            }
        }
    }

    /// The exec's exit code once the engine has recorded it.
    async fn exit_code(&self, exec: &str) -> Result<i64> {
        for _ in 0..250 {
            let i = self.docker.inspect_exec(exec).await.map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("lost the step's exec in the job container: {e}"),
                )
            })?;
            if i.running != Some(true) {
                return Ok(i.exit_code.unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            "the step's output ended but the job container still reports it running",
        ))
    }
}

/// Kills an exec's processes if the step's future is dropped midway (the container goes at the
/// job's end anyway; this frees the job's later steps of them).
struct ExecGuard {
    docker: Docker,
    container: String,
    mark: Option<String>,
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        if let (Some(mark), Ok(h)) = (self.mark.take(), tokio::runtime::Handle::try_current()) {
            let (d, id) = (self.docker.clone(), self.container.clone());
            h.spawn(async move { kill_marked(&d, &id, &mark, "KILL").await });
        }
    }
}

async fn kill_marked(d: &Docker, container: &str, mark: &str, signal: &str) {
    let opts = CreateExecOptions {
        cmd: Some(vec![
            "/bin/sh",
            "-c",
            KILL_SCRIPT,
            "pipewright-kill",
            mark,
            signal,
        ]),
        // Root inside the container may signal whichever user the step runs as.
        user: Some("0"),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..CreateExecOptions::default()
    };
    let run = async {
        let exec = d.create_exec(container, opts).await?;
        if let StartExecResults::Attached { mut output, .. } = d.start_exec(&exec.id, None).await? {
            while output.next().await.is_some() {}
        }
        Ok::<_, bollard::errors::Error>(())
    };
    if let Err(e) = run.await {
        tracing::warn!(container, error = %e, "cannot signal a step in the job container");
    }
}

#[async_trait]
impl Runner for ContainerSession {
    fn params(&self) -> ParamSpec {
        ParamSpec::exactly(&["cmd", "file", "shell", "path"], &[])
    }

    async fn run(&self, ctx: &Ctx, task: &TaskSpec, ws: &Workspace) -> Result<ExitStatus> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "the job container was already removed",
            ));
        }
        let argv = Self::argv(task)?;
        let mark = format!("{EXEC_MARK}={:016x}", mark_value());
        let mut env = settings::step_env(ctx, task, ws, &self.host_dir, &self.settings.env)?;
        if let Some((k, v)) = mark.split_once('=') {
            env.insert(k.to_owned(), v.to_owned());
        }
        let workdir = self.settings.workdir();
        let opts = CreateExecOptions {
            cmd: Some(argv),
            env: Some(settings::env_list(&env)),
            user: self.settings.user.clone(),
            working_dir: Some(workdir),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..CreateExecOptions::default()
        };
        let unavailable = |what: &str, e: bollard::errors::Error| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot {what} step `{}` in the job container: {e}",
                    task.name
                ),
            )
        };
        let exec = self
            .docker
            .create_exec(&self.id, opts)
            .await
            .map_err(|e| unavailable("create", e))?;
        let mut guard = ExecGuard {
            docker: self.docker.clone(),
            container: self.id.clone(),
            mark: Some(mark.clone()),
        };
        let started = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| unavailable("start", e))?;
        let StartExecResults::Attached { mut output, .. } = started else {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "the Docker daemon started the step detached",
            ));
        };
        if let Some(stopped) = self.stream(ctx, &mut output).await {
            self.signal(&mark, "TERM").await;
            let drained = async { while output.next().await.is_some() {} };
            if tokio::time::timeout(self.grace, drained).await.is_err() {
                self.signal(&mark, "KILL").await;
            }
            guard.mark = None;
            return Err(stopped);
        }
        guard.mark = None;
        let code = self.exit_code(&exec.id).await?;
        Ok(ExitStatus::Code(i32::try_from(code).unwrap_or(-1)))
    }
}

impl Drop for ContainerSession {
    fn drop(&mut self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let (d, id) = (self.docker.clone(), self.id.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    remove(&d, &id).await;
                });
            }
            Err(_) => {
                tracing::warn!(container = %id, "no runtime to remove the job container; it will be reaped later")
            }
        }
    }
}

/// A value unique to one exec of this process.
fn mark_value() -> u64 {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (u64::from(std::process::id()) << 40) ^ t ^ n.rotate_left(20)
}
