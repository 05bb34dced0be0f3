//! Resource and notification steps: `get`, `put` and `notify`.

use super::*;

impl Build<'_> {
    pub(super) async fn get(
        &self,
        step: &Step,
        g: &pipewright_config::GetStep,
        ctx: &Ctx,
    ) -> Result<Exports, Error> {
        let decl = self.pipeline.resources.get(&g.resource).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("no resource `{}`", g.resource),
            )
        })?;
        let (version, id) = self.fetch_input(decl, ctx).await?;
        if let Ok(mut v) = self.versions.lock() {
            v.insert(decl.id.clone(), version.clone());
        }
        if let (Some(id), Ok(mut inputs)) = (id, self.inputs.lock()) {
            inputs.insert(decl.id.clone(), id);
        }
        let prefix = export_prefix("GET", &step.name);
        Ok(version
            .iter()
            .map(|(k, v)| {
                (
                    format!("{prefix}{}", env_key(k).to_ascii_uppercase()),
                    v.to_owned(),
                )
            })
            .collect())
    }

    /// The resource for a `resource` block: a command-defined type of the pipeline, or the
    /// registry's.
    /// Secrets in the resource's params (`token = "((secret:GIT_TOKEN))"`) are resolved here,
    /// at the last moment, so validation and other jobs never need the credentials.
    pub(super) async fn resource(
        &self,
        decl: &pipewright_config::Resource,
        ctx: &Ctx,
    ) -> Result<Arc<dyn pipewright_core::Resource>, Error> {
        let mut resolved = decl.clone();
        for v in resolved.params.0.values_mut() {
            self.resolve_json_secrets(v, ctx).await?;
        }
        let decl = &resolved;
        if let Some(t) = self.pipeline.resource_types.get(&decl.type_name)
            && !t.commands.is_empty()
        {
            let cache = t
                .cache
                .then(|| decl.cache.unwrap_or(true))
                .or(decl.cache)
                .unwrap_or(false)
                .then(|| {
                    self.engine
                        .options
                        .cache_root
                        .join(env_key(&self.meta.pipeline))
                        .join(env_key(&decl.id))
                });
            let mut runners = BTreeMap::new();
            for cmd in t.commands.values() {
                runners.insert(cmd.runner.clone(), self.runner(&cmd.runner)?);
            }
            return Ok(Arc::new(crate::command::CommandResource::new(
                t.clone(),
                decl.clone(),
                runners,
                cache,
            )));
        }
        self.engine.registry.resource(decl)
    }

    pub(super) async fn put(&self, p: &pipewright_config::PutStep, ctx: &Ctx) -> Result<(), Error> {
        let decl = self.pipeline.resources.get(&p.resource).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("no resource `{}`", p.resource),
            )
        })?;
        let resource = self.resource(decl, ctx).await?;
        // `$GET_*`, `$TASK_*`… in put params, as in task `env` values.
        let params = crate::task_env::expand_params(&p.params, &ctx.env);
        let produced = resource.put(ctx, &self.workdir, &params).await?;
        for v in &produced {
            ctx.log_system(&format!("produced version {v} of `{}`", decl.name));
        }
        let ids = self.store.save_versions(&decl.id, &produced).await?;
        if let Ok(mut outputs) = self.outputs.lock() {
            outputs.entry(decl.id.clone()).or_default().extend(ids);
        }
        if let Some(v) = produced.last()
            && let Ok(mut m) = self.versions.lock()
        {
            m.insert(decl.id.clone(), v.clone());
        }
        Ok(())
    }

    pub(super) async fn notify(
        &self,
        step: &Step,
        n: &pipewright_config::NotifyStep,
        attempt: u32,
        ctx: &Ctx,
    ) -> Attempt {
        let Some(decl) = self.pipeline.notifications.get(&n.notification) else {
            return Attempt::Failed {
                reason: format!("no notification `{}`", n.notification),
                exit: None,
            };
        };
        #[cfg(feature = "notify")]
        if let Some(builtin) = self.builtin_notification_type(&decl.type_name) {
            return self.builtin_notify(builtin, decl, n, ctx).await;
        }
        let Some(cmd) = self
            .pipeline
            .notification_types
            .get(&decl.type_name)
            .and_then(|t| t.commands.get("notify"))
        else {
            return Attempt::Failed {
                reason: format!(
                    "notification type `{}` has no `notify` command; built-in notification types are not available in this engine",
                    decl.type_name
                ),
                exit: None,
            };
        };
        let message = n.message.as_ref().or(decl.message.as_ref());
        let mut env: indexmap::IndexMap<String, String> =
            decl.params.to_env("param_").into_iter().collect();
        env.extend(n.params.to_env("notify_"));
        if let Some(m) = message {
            env.insert("NOTIFY_MESSAGE".into(), expand_env(m, &ctx.env));
        }
        self.run_command(&step.name, cmd, &env, &[], &[], attempt, ctx)
            .await
    }
}
