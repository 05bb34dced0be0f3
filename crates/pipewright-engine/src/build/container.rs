//! A job's `container`: started before the first step that runs in it, its `shell` and `exec`
//! task steps routed into it, removed at the job's end.

use super::Build;
use pipewright_config::RunnerCommand;
use pipewright_core::{Ctx, Error, ErrorKind, Runner};
use std::sync::Arc;

/// The runners whose steps run in the job's container.
const ROUTED: [&str; 2] = ["shell", "exec"];

/// The job container, once started (or the reason it could not start).
#[derive(Default)]
pub(crate) struct JobContainerSlot {
    #[cfg(feature = "docker")]
    cell: tokio::sync::OnceCell<
        Result<Arc<pipewright_runners::ContainerSession>, (ErrorKind, String)>,
    >,
}

impl Build<'_> {
    /// The runner for a task's command: the job's container for `shell` and `exec` when the
    /// job has one, else the command's own.
    pub(super) async fn task_runner(
        &self,
        cmd: &RunnerCommand,
        ctx: &Ctx,
    ) -> Result<Arc<dyn Runner>, Error> {
        if self.job.container.is_none() || !ROUTED.contains(&cmd.runner.as_str()) {
            return self.runner(&cmd.runner);
        }
        self.job_container(ctx).await
    }

    #[cfg(feature = "docker")]
    async fn job_container(&self, ctx: &Ctx) -> Result<Arc<dyn Runner>, Error> {
        let started = self
            .container
            .cell
            .get_or_init(|| async {
                self.start_container(ctx)
                    .await
                    .map(Arc::new)
                    .map_err(|e| (e.kind(), e.to_string()))
            })
            .await;
        match started {
            Ok(s) => Ok(s.clone()),
            Err((kind, m)) => Err(Error::new(*kind, m.clone())),
        }
    }

    #[cfg(not(feature = "docker"))]
    async fn job_container(&self, _ctx: &Ctx) -> Result<Arc<dyn Runner>, Error> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "this engine was built without Docker support (feature `docker`): remove the job's \
             `container` block or use a build with it",
        ))
    }

    #[cfg(feature = "docker")]
    async fn start_container(
        &self,
        ctx: &Ctx,
    ) -> Result<pipewright_runners::ContainerSession, Error> {
        let Some(c) = &self.job.container else {
            return Err(Error::new(ErrorKind::Other, "the job has no container"));
        };
        let Some(docker) = self.engine.registry.job_container_runner() else {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "this engine has no Docker runner for the job's `container`: register one with \
                 `Registry::job_containers`",
            ));
        };
        let mut params = c.params.clone();
        // Services run on the host and listen on its loopback: steps reach them there.
        let has_services = self
            .job
            .all_steps()
            .iter()
            .any(|s| matches!(s.kind, pipewright_config::StepKind::Service(_)));
        if has_services && params.get_str("network").is_none() {
            params.insert("network", "host");
        }
        if let Some(serde_json::Value::Object(env)) = c.params.get("env") {
            let mut resolved = serde_json::Map::new();
            for (k, v) in env {
                let v = v.as_str().unwrap_or_default();
                resolved.insert(k.clone(), self.resolve_secrets(v, ctx).await?.into());
            }
            params.insert("env", serde_json::Value::Object(resolved));
        }
        let spec = pipewright_core::TaskSpec {
            name: "container".into(),
            params,
            args: c
                .mounts
                .iter()
                .flat_map(|m| ["-v".to_owned(), m.clone()])
                .collect(),
            env: Default::default(),
        };
        let ws = pipewright_core::Workspace {
            dir: self.workdir.clone(),
            output_file: self.outdir.join("container"),
        };
        let image = spec.params.get_str("image").unwrap_or_default();
        ctx.log_system(&format!("starting the job container from {image}"));
        docker.start_session(ctx, &spec, &ws).await
    }

    /// Removes the job container, if one was started.
    pub(super) async fn stop_container(&self) {
        #[cfg(feature = "docker")]
        if let Some(Ok(s)) = self.container.cell.get() {
            s.stop().await;
        }
    }
}
