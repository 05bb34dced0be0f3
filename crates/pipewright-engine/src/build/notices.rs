//! Notifications: built-in types for `notify` steps, and the automatic dispatch when a build
//! ends (`on`, `jobs`/`exclude`, `fixed`/`broken` against the previous build's status).

#[cfg(feature = "notify")]
use super::Attempt;
use super::{Build, Exports};
use pipewright_config::{Notification, NotifyStep, Step, StepKind};
#[cfg(feature = "notify")]
use pipewright_core::Ctx;
use pipewright_core::{BuildStatus, StepId, StepRole};

impl Build<'_> {
    /// The notifications `on` dispatches for this build ending with `status`.
    fn due(&self, status: BuildStatus) -> Vec<&Notification> {
        let previous = self.opts.previous_status.get(&self.job.name).copied();
        let job = &self.job.name;
        let group = self.job.group.as_deref();
        let named = |list: &[String]| list.iter().any(|n| n == job || Some(n.as_str()) == group);
        self.pipeline
            .notifications
            .values()
            .filter(|n| !n.on.is_empty())
            .filter(|n| n.jobs.is_empty() || named(&n.jobs))
            .filter(|n| !named(&n.exclude))
            .filter(|n| pipewright_notify::dispatches(&n.on, status, previous))
            .collect()
    }

    /// Sends the notifications due for a build that ended with `status`, each as a hook step
    /// `notify:<type>.<name>` of the build: a failure is logged there and recorded as a failed
    /// hook, and never changes the build's status.
    pub(crate) async fn dispatch_notifications(
        &self,
        status: BuildStatus,
        exports: &Exports,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        for n in self.due(status) {
            let name = format!("notify:{}", n.id);
            let step = Step {
                name: name.clone(),
                kind: StepKind::Notify(NotifyStep {
                    notification: n.id.clone(),
                    message: None,
                    params: Default::default(),
                }),
                timeout: Some(self.engine.options.hook_timeout),
                attempts: 1,
                hooks: Default::default(),
                loc: n.loc,
            };
            let mut exports = exports.clone();
            exports.insert("BUILD_STATUS".into(), status.as_str().to_owned());
            // Like hooks, notifications outlive a cancelled build; a forced stop ends them.
            let token = self.opts.force.child_token();
            let id = StepId::new([name], StepRole::Hook);
            if let super::Flow::Failed(reason) =
                self.run_attempts(&step, id, &mut exports, &token).await
            {
                failures.push(format!("`{}`: {}", n.id, self.emitter.mask(&reason)));
            }
        }
        failures
    }

    /// Sends the notifications due for a build that ended with `status` without running (a
    /// server cancelled it while it waited, or gave up on it); the workspace is removed.
    /// Returns one masked reason per notification that could not be sent.
    pub(crate) async fn end_only(self, status: BuildStatus) -> Vec<String> {
        let mut ctx = pipewright_core::Ctx::new();
        ctx.cancel = self.opts.cancel.child_token();
        ctx.build = self.meta.clone();
        let failures = match self.preload_secrets(&ctx).await {
            Ok(_) => self.dispatch_notifications(status, &Exports::new()).await,
            Err(e) => vec![self.emitter.mask(&e.to_string())],
        };
        if let Err(e) = std::fs::remove_dir_all(&self.workdir) {
            tracing::warn!(error = %e, dir = %self.workdir.display(), "could not remove the notification workspace");
        }
        failures
    }

    /// Sends the notifications of the job's `approve` gate, for a build that waits for
    /// approval, each run as a `notify` step would be (`BUILD_STATUS` is
    /// `waiting_for_approval`); the workspace is removed. Returns one masked reason per
    /// notification that could not be sent.
    pub(crate) async fn approval_only(self) -> Result<Vec<String>, pipewright_core::Error> {
        let gate = self
            .job
            .approve
            .clone()
            .unwrap_or_else(|| pipewright_config::Approval {
                label: String::new(),
                approvals: 0,
                timeout: None,
                notify: Vec::new(),
            });
        let mut ctx = pipewright_core::Ctx::new();
        ctx.cancel = self.opts.cancel.child_token();
        ctx.build = self.meta.clone();
        let mut failures = Vec::new();
        let preloaded = self.preload_secrets(&ctx).await;
        if let Err(e) = preloaded {
            failures.push(self.emitter.mask(&e.to_string()));
        } else {
            for n in &gate.notify {
                let name = format!("notify:{}", n.notification);
                let step = Step {
                    name: name.clone(),
                    kind: StepKind::Notify(n.clone()),
                    timeout: Some(self.engine.options.hook_timeout),
                    attempts: 1,
                    hooks: Default::default(),
                    loc: self.job.loc,
                };
                let mut exports = Exports::new();
                exports.insert(
                    "BUILD_STATUS".into(),
                    BuildStatus::WaitingForApproval.as_str().to_owned(),
                );
                exports.insert("APPROVAL_LABEL".into(), gate.label.clone());
                let id = StepId::new([name], StepRole::Hook);
                let token = self.opts.force.child_token();
                match self.run_attempts(&step, id, &mut exports, &token).await {
                    super::Flow::Ok => {}
                    super::Flow::Failed(reason) => failures.push(format!(
                        "`{}`: {}",
                        n.notification,
                        self.emitter.mask(&reason)
                    )),
                    super::Flow::Cancelled => {
                        failures.push(format!("`{}`: cancelled", n.notification));
                    }
                }
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.workdir) {
            tracing::warn!(error = %e, dir = %self.workdir.display(), "could not remove the approval workspace");
        }
        Ok(failures)
    }

    /// The built-in type a notification of `type_name` is sent with: `type_name` itself when
    /// the pipeline does not define it, the built-in a `notification_type` points at with
    /// `source = "pipewright://NAME"`; `None` for a type with a `notify` command.
    #[cfg(feature = "notify")]
    pub(super) fn builtin_notification_type<'n>(&'n self, type_name: &'n str) -> Option<&'n str> {
        let name = match self.pipeline.notification_types.get(type_name) {
            None => type_name,
            Some(t) if t.commands.is_empty() => match &t.source {
                pipewright_config::TypeSource::Builtin { name } => name.as_str(),
                _ => return None,
            },
            Some(_) => return None,
        };
        self.engine
            .registry
            .has_notification_type(name)
            .then_some(name)
    }

    /// A `notify` step (or a dispatch) of built-in type `builtin`: params (the step's over the
    /// notification's) with secrets resolved, the message templated, every text masked.
    #[cfg(feature = "notify")]
    pub(super) async fn builtin_notify(
        &self,
        builtin: &str,
        decl: &Notification,
        n: &NotifyStep,
        ctx: &Ctx,
    ) -> Attempt {
        let mut params = decl.params.clone();
        params.0.extend(n.params.0.clone());
        for v in params.0.values_mut() {
            if let Err(e) = self.resolve_json_secrets(v, ctx).await {
                return e.into();
            }
        }
        let sent = async {
            let transport = self.engine.notify_transport()?;
            let notifier = pipewright_notify::create(builtin, &params, &transport)?;
            notifier.send(&self.notice(decl, n, ctx).await).await
        };
        match sent.await {
            Ok(()) => {
                ctx.log_system(&format!("sent `{}`", decl.id));
                Attempt::Done(Exports::new())
            }
            Err(e) => Attempt::Failed {
                // Masked with the rest of the step's reason.
                reason: e.to_string(),
                exit: None,
            },
        }
    }

    /// What a built-in notification says: the build, its versions and the masked message.
    #[cfg(feature = "notify")]
    async fn notice(
        &self,
        decl: &Notification,
        n: &NotifyStep,
        ctx: &Ctx,
    ) -> pipewright_notify::Notice {
        let status = ctx
            .env
            .get("BUILD_STATUS")
            .and_then(|s| serde_json::from_value(serde_json::Value::String(s.clone())).ok())
            .unwrap_or(BuildStatus::Running);
        let template = n.message.as_ref().or(decl.message.as_ref());
        let mut message = template
            .map(|m| super::expand_env(m, &ctx.env))
            .unwrap_or_default();
        // A secret variable in the message is resolved, so the masker (which learns it here)
        // turns it into `***` like in every log.
        match self.resolve_secrets(&message, ctx).await {
            Ok(m) => message = m,
            Err(e) => ctx.log_system(&format!("the message's secrets: {e}")),
        }
        let masker = self.emitter.masker();
        let versions = self
            .versions
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|(rid, v)| {
                let masked =
                    v.0.into_iter()
                        .map(|(k, x)| (k, masker.mask_str(&x).into_owned()))
                        .collect();
                (rid, pipewright_core::Version(masked))
            })
            .collect();
        pipewright_notify::Notice {
            pipeline: self.meta.pipeline.clone(),
            job: self.job.name.clone(),
            number: self.meta.number,
            status,
            versions,
            url: ctx.env.get("BUILD_URL").cloned(),
            message: masker.mask_str(&message).into_owned(),
            vars: ctx.env.clone(),
            mask: std::sync::Arc::new(move |s: &str| masker.mask_str(s).into_owned()),
        }
    }
}
