//! Hooks: `on_success`, `on_failure`, `on_cancel` and `ensure`, of steps and of the job.

use super::*;

impl Build<'_> {
    /// Job hooks: `on_success` / `on_failure` / `on_cancel` by status, then `ensure`, all with
    /// `BUILD_STATUS`. They run even when the build was cancelled (only a forced stop ends them).
    pub(super) async fn run_job_hooks(&self, status: BuildStatus, exports: &Exports) {
        let flow = match status {
            BuildStatus::Succeeded => Flow::Ok,
            BuildStatus::Cancelled => Flow::Cancelled,
            _ => Flow::Failed(String::new()),
        };
        self.run_hooks("job", &self.job.hooks, &flow, Some(status), exports)
            .await;
    }

    pub(super) fn run_hooks<'s>(
        &'s self,
        owner: &'s str,
        hooks: &'s Hooks,
        flow: &'s Flow,
        status: Option<BuildStatus>,
        exports: &'s Exports,
    ) -> BoxFut<'s, ()> {
        Box::pin(async move {
            let (kind, first) = match flow {
                Flow::Ok => ("on_success", &hooks.on_success),
                Flow::Failed(_) => ("on_failure", &hooks.on_failure),
                Flow::Cancelled => ("on_cancel", &hooks.on_cancel),
            };
            for (kind, actions) in [(kind, first), ("ensure", &hooks.ensure)] {
                for (i, action) in actions.iter().enumerate() {
                    let name = if actions.len() > 1 {
                        format!("{owner}:{kind}#{}", i + 1)
                    } else {
                        format!("{owner}:{kind}")
                    };
                    let id = self.ids.hook(action, &name);
                    self.run_hook(&name, id, action, status, exports).await;
                }
            }
        })
    }

    /// One hook action. A failing hook is recorded as a failed step and nothing else.
    pub(super) async fn run_hook(
        &self,
        name: &str,
        id: StepId,
        action: &HookAction,
        status: Option<BuildStatus>,
        exports: &Exports,
    ) {
        let mut exports = exports.clone();
        if let Some(s) = status {
            exports.insert("BUILD_STATUS".into(), s.as_str().to_owned());
        }
        // Hooks outlive a cancelled build; only a forced stop (second Ctrl-C) ends them.
        let token = self.opts.force.child_token();
        match action {
            HookAction::Step(step) => {
                let _ = self.run_step(step, &mut exports, &token).await;
            }
            HookAction::Command(cmd) => {
                let hook_step = Step {
                    name: name.to_owned(),
                    kind: StepKind::Task(pipewright_config::TaskStep {
                        run: cmd.clone(),
                        inputs: Vec::new(),
                        outputs: Vec::new(),
                        env: indexmap::IndexMap::new(),
                        caches: Vec::new(),
                    }),
                    timeout: Some(self.engine.options.hook_timeout),
                    attempts: 1,
                    hooks: Hooks::default(),
                    loc: cmd.loc,
                };
                let _ = self
                    .run_attempts(&hook_step, id, &mut exports, &token)
                    .await;
            }
        }
    }
}
