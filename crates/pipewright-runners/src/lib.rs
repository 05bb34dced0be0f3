#![doc = include_str!("../README.md")]

mod channel;
mod cookie;
#[cfg(feature = "docker")]
mod docker;
#[cfg(feature = "podman")]
mod podman;
mod process;
#[cfg(any(feature = "docker", feature = "podman"))]
mod settings;
mod supervisor;
mod template;

pub use channel::reap_build;
pub use cookie::{
    COOKIE_VAR, build_cookie_prefix, reap_cookie, reap_cookie_gracefully, reap_orphans,
};
#[cfg(feature = "docker")]
pub use docker::{ContainerSession, DockerRunner};
#[cfg(feature = "podman")]
pub use podman::PodmanRunner;
pub use process::{DEFAULT_GRACE, ProcessSpec, WITHHELD_ENV, run_process};
#[cfg(any(feature = "docker", feature = "podman"))]
pub use settings::{CONTAINER_WORKDIR, LABEL_MANAGED, PullPolicy};
pub use supervisor::enable_task_supervisor;
pub use template::{TemplateRunner, expand};

use async_trait::async_trait;
use pipewright_core::{
    Ctx, Error, ErrorKind, ExitStatus, ParamSpec, Params, Result, Runner, TaskSpec, Workspace,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The environment every host runner gives a task: the context's variables (`BUILD_*`,
/// exports), the run block's params by name, `WORKDIR`, `PIPEWRIGHT_OUTPUT`, `PIPEWRIGHT_ENV`, then the task's own
/// `env` map, which wins.
pub fn task_env(ctx: &Ctx, task: &TaskSpec, ws: &Workspace) -> BTreeMap<String, String> {
    let mut env = ctx.env.clone();
    env.extend(task.params.to_env(""));
    env.insert("WORKDIR".into(), ws.dir.display().to_string());
    env.insert(
        "PIPEWRIGHT_OUTPUT".into(),
        ws.output_file.display().to_string(),
    );
    env.insert("PIPEWRIGHT_ENV".into(), ws.env_file().display().to_string());
    env.extend(task.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// A program path as given, except that a relative path with a `/` is taken relative to the
/// workspace (the only reading that does not depend on where `pipewright` was started).
pub(crate) fn program_path(path: &str, ws: &Workspace) -> String {
    if path.contains('/') && !Path::new(path).is_absolute() {
        ws.dir.join(path).display().to_string()
    } else {
        path.to_owned()
    }
}

fn param_str(params: &Params, key: &str) -> Option<String> {
    params.get_str(key).filter(|s| !s.is_empty())
}

/// `exec`: runs `path` with `args` on the host, in the workspace.
#[derive(Debug, Clone)]
pub struct ExecRunner {
    grace: Duration,
}

impl Default for ExecRunner {
    fn default() -> Self {
        Self {
            grace: DEFAULT_GRACE,
        }
    }
}

impl ExecRunner {
    /// An exec runner with the default grace period.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how long a task may take to exit after `SIGTERM` before it is killed.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

#[async_trait]
impl Runner for ExecRunner {
    fn params(&self) -> ParamSpec {
        ParamSpec::exactly(&["path"], &["path"])
    }

    async fn run(&self, ctx: &Ctx, task: &TaskSpec, ws: &Workspace) -> Result<ExitStatus> {
        let path = param_str(&task.params, "path").ok_or_else(|| {
            Error::new(ErrorKind::InvalidConfig, "the exec runner needs `path`")
                .with_context("task", &task.name)
        })?;
        let spec = ProcessSpec {
            program: program_path(&path, ws),
            args: task.args.clone(),
            env: task_env(ctx, task, ws),
            cwd: ws.dir.clone(),
        };
        run_process(ctx, &spec, self.grace).await
    }
}

/// `shell`: `$shell -ec "$cmd"`, or `$shell -e $file` (relative to the workspace). `shell`
/// defaults to `/bin/sh`; extra `args` become the script's `$1…`.
#[derive(Debug, Clone)]
pub struct ShellRunner {
    grace: Duration,
}

impl Default for ShellRunner {
    fn default() -> Self {
        Self {
            grace: DEFAULT_GRACE,
        }
    }
}

impl ShellRunner {
    /// A shell runner with the default grace period.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how long a task may take to exit after `SIGTERM` before it is killed.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

#[async_trait]
impl Runner for ShellRunner {
    fn params(&self) -> ParamSpec {
        ParamSpec::exactly(&["cmd", "file", "shell"], &[]).one_of(&["cmd", "file"])
    }

    async fn run(&self, ctx: &Ctx, task: &TaskSpec, ws: &Workspace) -> Result<ExitStatus> {
        let shell = param_str(&task.params, "shell").unwrap_or_else(|| "/bin/sh".to_owned());
        let mut args = Vec::with_capacity(task.args.len() + 3);
        match (
            param_str(&task.params, "cmd"),
            param_str(&task.params, "file"),
        ) {
            (Some(cmd), None) => {
                args.push("-ec".to_owned());
                args.push(cmd);
                // `$0` of the script; the task's args follow as `$1…`.
                args.push(task.name.clone());
            }
            (None, Some(file)) => {
                args.push("-e".to_owned());
                args.push(ws.dir.join(&file).display().to_string());
            }
            (Some(_), Some(_)) => {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    "the shell runner takes `cmd` or `file`, not both",
                )
                .with_context("task", &task.name));
            }
            (None, None) => {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    "the shell runner needs `cmd` or `file`",
                )
                .with_context("task", &task.name));
            }
        }
        args.extend(task.args.iter().cloned());
        let spec = ProcessSpec {
            program: shell,
            args,
            env: task_env(ctx, task, ws),
            cwd: ws.dir.clone(),
        };
        run_process(ctx, &spec, self.grace).await
    }
}
