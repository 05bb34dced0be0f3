//! `service_type` blocks: `start`, `ready_check` and `stop` commands run through runners.

use async_trait::async_trait;
use pipewright_core::{
    CancellationToken, Ctx, Error, ErrorKind, ExitStatus, Params, Result, Runner, Service,
    TaskSpec, Workspace,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// One command of the type (its runner params and `args`; the name and environment are filled
/// in per call) with the runner it goes through.
pub type Command = (TaskSpec, Arc<dyn Runner>);

/// A command-defined service. `start` runs in the background: a server in the foreground
/// (`python3 -m http.server`) is stopped with the service; a command that starts something and
/// exits 0 (`docker run -d`) is fine too, and `stop` cleans up after it. A `start` that exits
/// non-zero fails the service at its next readiness probe.
pub struct CommandService {
    name: String,
    env: BTreeMap<String, String>,
    start: Command,
    ready: Option<(Command, Duration, Duration)>,
    stop: Option<Command>,
    workdir: PathBuf,
    running: Mutex<Option<(CancellationToken, JoinHandle<Result<ExitStatus>>)>>,
    ended: Arc<Mutex<Option<std::result::Result<ExitStatus, String>>>>,
}

impl std::fmt::Debug for CommandService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandService")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CommandService {
    /// A service named `name` (the step's name) whose commands get `params` (the type's config
    /// overlaid with the step's overrides) as `param_*`, running in `workdir`.
    pub fn new(
        name: impl Into<String>,
        params: &Params,
        start: Command,
        ready: Option<(Command, Duration, Duration)>,
        stop: Option<Command>,
        workdir: PathBuf,
    ) -> Self {
        Self {
            name: name.into(),
            env: params.to_env("param_"),
            start,
            ready,
            stop,
            workdir,
            running: Mutex::new(None),
            ended: Arc::new(Mutex::new(None)),
        }
    }

    fn spec(&self, op: &str, cmd: &TaskSpec) -> (TaskSpec, Workspace) {
        (
            TaskSpec {
                name: format!("{}:{op}", self.name),
                params: cmd.params.clone(),
                args: cmd.args.clone(),
                env: self.env.clone(),
            },
            Workspace {
                dir: self.workdir.clone(),
                output_file: self.workdir.join(".pipewright").join(format!(
                    "service-{}.{op}.out",
                    pipewright_core::env_key(&self.name)
                )),
            },
        )
    }

    /// How the `start` command ended, if it has.
    fn start_failure(&self) -> Option<Error> {
        let ended = self.ended.lock().ok()?.clone()?;
        match ended {
            Ok(exit) if exit.success() => None,
            Ok(exit) => Some(Error::new(
                ErrorKind::Failed,
                format!("`start` of service `{}` exited: {exit}", self.name),
            )),
            Err(m) => Some(Error::new(
                ErrorKind::Failed,
                format!("`start` of service `{}` failed: {m}", self.name),
            )),
        }
    }
}

#[async_trait]
impl Service for CommandService {
    async fn start(&self, ctx: &Ctx) -> Result<()> {
        let (spec, ws) = self.spec("start", &self.start.0);
        let runner = self.start.1.clone();
        let token = CancellationToken::new();
        let mut bg = ctx.clone();
        bg.cancel = token.clone();
        bg.deadline = None;
        let ended = self.ended.clone();
        let handle = tokio::spawn(async move {
            let r = runner.run(&bg, &spec, &ws).await;
            if let Ok(mut e) = ended.lock() {
                *e = Some(match &r {
                    Ok(x) => Ok(*x),
                    Err(e) => Err(e.to_string()),
                });
            }
            r
        });
        if let Ok(mut r) = self.running.lock() {
            *r = Some((token, handle));
        }
        Ok(())
    }

    async fn ready(&self, ctx: &Ctx) -> Result<bool> {
        if let Some(e) = self.start_failure() {
            return Err(e);
        }
        let Some(((cmd, runner), _, _)) = &self.ready else {
            return Ok(true);
        };
        let (spec, ws) = self.spec("ready_check", cmd);
        let exit = runner.run(ctx, &spec, &ws).await?;
        if exit.success() {
            return Ok(true);
        }
        // The probe may have failed because the server died meanwhile.
        match self.start_failure() {
            Some(e) => Err(e),
            None => Ok(false),
        }
    }

    async fn stop(&self, ctx: &Ctx) -> Result<()> {
        let mut result = Ok(());
        if let Some((cmd, runner)) = &self.stop {
            let (spec, ws) = self.spec("stop", cmd);
            match runner.run(ctx, &spec, &ws).await {
                Ok(exit) if exit.success() => {}
                Ok(exit) => {
                    result = Err(Error::new(
                        ErrorKind::Failed,
                        format!("`stop` of service `{}` exited: {exit}", self.name),
                    ));
                }
                Err(e) => result = Err(e),
            }
        }
        // A foreground `start` is stopped like a cancelled task: its whole process tree.
        let running = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some((token, handle)) = running {
            token.cancel();
            let _ = handle.await;
        }
        result
    }

    fn ready_policy(&self) -> Option<(Duration, Duration)> {
        self.ready.as_ref().map(|(_, i, t)| (*i, *t))
    }
}
