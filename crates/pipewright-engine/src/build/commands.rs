//! Commands: the runner a step names, and a task or command run on it.

use super::*;

impl Build<'_> {
    pub(super) fn runner(&self, name: &str) -> Result<Arc<dyn Runner>, Error> {
        if let Ok(cache) = self.runners.lock()
            && let Some(r) = cache.get(name)
        {
            return Ok(r.clone());
        }
        let r = self.engine.registry.resolve_runner(self.pipeline, name)?;
        if let Ok(mut cache) = self.runners.lock() {
            cache.insert(name.to_owned(), r.clone());
        }
        Ok(r)
    }

    /// Runs a runner command (a hook, a notification) as step `name`, its `env` values taken
    /// as written (secrets resolved).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_command(
        &self,
        name: &str,
        cmd: &RunnerCommand,
        env: &indexmap::IndexMap<String, String>,
        inputs: &[String],
        outputs: &[String],
        attempt: u32,
        ctx: &Ctx,
    ) -> Attempt {
        let mut task_env = BTreeMap::new();
        for (k, v) in env {
            match self.resolve_secrets(v, ctx).await {
                Ok(v) => {
                    task_env.insert(k.clone(), v);
                }
                Err(e) => return e.into(),
            }
        }
        self.run_resolved(name, cmd, task_env, inputs, outputs, attempt, ctx)
            .await
    }

    /// Runs a runner command with its final environment.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_resolved(
        &self,
        name: &str,
        cmd: &RunnerCommand,
        task_env: BTreeMap<String, String>,
        inputs: &[String],
        outputs: &[String],
        attempt: u32,
        ctx: &Ctx,
    ) -> Attempt {
        let runner = self.runner(&cmd.runner);
        self.run_on(runner, name, cmd, task_env, inputs, outputs, attempt, ctx)
            .await
    }

    /// Runs a runner command with its final environment through `runner`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_on(
        &self,
        runner: Result<Arc<dyn Runner>, Error>,
        name: &str,
        cmd: &RunnerCommand,
        task_env: BTreeMap<String, String>,
        inputs: &[String],
        outputs: &[String],
        attempt: u32,
        ctx: &Ctx,
    ) -> Attempt {
        let runner = match runner {
            Ok(r) => r,
            Err(e) => return e.into(),
        };
        if let Some(bad) = argv_secret(&cmd.params, &cmd.args) {
            return Attempt::Failed {
                reason: format!(
                    "the secret variable `{bad}` is used in `{}`'s command line; secrets reach \
                     tasks only through `env = {{ NAME = var.{bad} }}`",
                    name
                ),
                exit: None,
            };
        }
        for path in inputs {
            if !self.workdir.join(path).exists() {
                return Attempt::Failed {
                    reason: format!("input `{path}` does not exist in the workspace"),
                    exit: None,
                };
            }
        }
        // Unique within this build's fresh workspace, so there is never a stale file to remove.
        let n = self
            .outputs_made
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let output_file = self.outdir.join(format!("{}.{attempt}.{n}", env_key(name)));
        let spec = TaskSpec {
            name: name.to_owned(),
            params: cmd.params.clone(),
            args: cmd.args.clone(),
            env: task_env,
        };
        let ws = Workspace {
            dir: self.workdir.clone(),
            output_file: output_file.clone(),
        };
        match runner.run(ctx, &spec, &ws).await {
            Ok(exit) if exit.success() => {
                let missing = crate::output_paths::missing(&self.workdir, outputs);
                if !missing.is_empty() {
                    return Attempt::Failed {
                        reason: missing.join("; "),
                        exit: Some(exit),
                    };
                }
                let exports =
                    read_outputs(&output_file, &export_prefix("TASK", name)).and_then(|mut e| {
                        e.extend(read_job_env(&ws.env_file())?);
                        Ok(e)
                    });
                match exports {
                    Ok(e) => Attempt::Done(e),
                    Err(e) => e.into(),
                }
            }
            Ok(exit) => Attempt::Failed {
                reason: exit.to_string(),
                exit: Some(exit),
            },
            Err(e) => e.into(),
        }
    }
}
