//! Services of a build: started by `service` steps, probed until ready, stopped newest first when the job ends.

use super::*;

impl Build<'_> {
    pub(super) async fn start_service(
        &self,
        step: &Step,
        s: &ServiceStep,
        exports: &mut Exports,
        token: &CancellationToken,
    ) -> Flow {
        let started = Instant::now();
        let id = self.ids.service(step, StepRole::ServiceStart);
        self.emitter
            .emit(EventKind::StepStarted {
                step: id.clone(),
                attempt: 1,
                attempts: 1,
            })
            .await;
        let log = Arc::new(StepLog::new(self.emitter.clone(), id.clone(), 1));
        let mut exported = Exports::new();
        let ctx = self.ctx(token, log.clone(), exports);
        let mut timeout = step
            .timeout
            .unwrap_or(self.engine.options.service_ready_timeout);
        let mut poll = self.engine.options.service_poll;
        let result = async {
            let service = self.service(step, s).await?;
            if let Some((interval, t)) = service.ready_policy() {
                poll = interval;
                timeout = step.timeout.unwrap_or(t);
            }
            // Registered before start so that a half-started service is stopped too.
            if let Ok(mut list) = self.services.lock() {
                list.push((
                    self.ids.service(step, StepRole::ServiceStop),
                    service.clone(),
                ));
            }
            service.start(&ctx).await?;
            let until = Instant::now() + timeout;
            loop {
                if token.is_cancelled() {
                    return Err(Error::cancelled());
                }
                if service.ready(&ctx).await? {
                    let prefix = format!("SERVICE_{}_", env_key(&step.name).to_ascii_uppercase());
                    for (k, v) in service.exports() {
                        exported.insert(format!("{prefix}{}", env_key(&k).to_ascii_uppercase()), v);
                    }
                    return Ok(());
                }
                if Instant::now() >= until {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "service `{}` was not ready after {}",
                            step.name,
                            pipewright_config::format_duration(timeout)
                        ),
                    ));
                }
                tokio::time::sleep(poll).await;
            }
        }
        .await;
        log.flush().await;
        if !exported.is_empty() {
            self.emitter
                .emit(EventKind::Exports {
                    step: id.clone(),
                    attempt: 1,
                    exports: exported.clone(),
                })
                .await;
            exports.extend(exported);
        }
        let (status, reason, flow) = match result {
            Ok(()) => (StepStatus::Succeeded, None, Flow::Ok),
            Err(e) if e.kind() == ErrorKind::Cancelled => (
                StepStatus::Cancelled,
                Some("cancelled".to_owned()),
                Flow::Cancelled,
            ),
            Err(e) => {
                let r = e.to_string();
                (StepStatus::Failed, Some(r.clone()), Flow::Failed(r))
            }
        };
        let took = started.elapsed();
        let rec = StepRecord {
            step: id,
            status,
            attempts: 1,
            duration: took,
            reason,
        };
        self.conclude(rec, 1, None, took).await;
        flow
    }

    /// Stops every started service, newest first, each with a fresh deadline. A failing stop
    /// is logged and recorded; it never changes the build's status.
    /// The service for a `service` step: the pipeline's command-defined type, else a
    /// registered (built-in) one, with the type's config overlaid by the step's overrides.
    pub(super) async fn service(
        &self,
        step: &Step,
        s: &ServiceStep,
    ) -> Result<Arc<dyn Service>, Error> {
        let decl = self.pipeline.service_types.get(&s.service_type);
        let mut params = decl.map(|t| t.config.clone()).unwrap_or_default();
        params.0.extend(s.params.0.clone());
        let mut ctx = Ctx::new();
        ctx.cancel = self.opts.cancel.clone();
        ctx.build = self.meta.clone();
        for v in params.0.values_mut() {
            self.resolve_json_secrets(v, &ctx).await?;
        }
        if let Some(t) = decl
            && !t.commands.is_empty()
        {
            let command = |op: &str| -> Result<Option<ServiceCommand>, Error> {
                match t.commands.get(op) {
                    Some(c) => Ok(Some((command_spec(c), self.runner(&c.runner)?))),
                    None => Ok(None),
                }
            };
            let start = command("start")?.ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("service type `{}` has no `start` command", t.name),
                )
            })?;
            let ready = match &t.ready_check {
                Some(r) => Some((
                    (command_spec(&r.command), self.runner(&r.command.runner)?),
                    r.interval,
                    r.timeout,
                )),
                None => None,
            };
            return Ok(Arc::new(pipewright_services::CommandService::new(
                step.name.clone(),
                &params,
                start,
                ready,
                command("stop")?,
                self.workdir.clone(),
            )));
        }
        // `service "db" { image = "…" }`: a container named by the step's label.
        if pipewright_config::image_service(self.pipeline, s) {
            params.insert("name", step.name.clone());
            return self
                .engine
                .registry
                .service(pipewright_config::IMAGE_SERVICE_TYPE, &params);
        }
        let builtin = match decl.map(|t| &t.source) {
            Some(pipewright_config::TypeSource::Builtin { name }) => name.as_str(),
            _ => s.service_type.as_str(),
        };
        self.engine.registry.service(builtin, &params)
    }

    pub(super) async fn stop_services(&self) {
        let list: Vec<(StepId, Arc<dyn Service>)> = self
            .services
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        for (id, service) in list.into_iter().rev() {
            let name = id.leaf().to_owned();
            let started = Instant::now();
            self.emitter
                .emit(EventKind::StepStarted {
                    step: id.clone(),
                    attempt: 1,
                    attempts: 1,
                })
                .await;
            let log = Arc::new(StepLog::new(self.emitter.clone(), id.clone(), 1));
            let token = self.opts.force.child_token();
            let ctx = self
                .ctx(&token, log.clone(), &Exports::new())
                .with_timeout(self.engine.options.service_stop_timeout);
            let result =
                tokio::time::timeout(self.engine.options.service_stop_timeout, service.stop(&ctx))
                    .await;
            let reason = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!(
                    "stop did not finish within {}",
                    pipewright_config::format_duration(self.engine.options.service_stop_timeout)
                )),
            };
            if let Some(r) = &reason {
                ctx.log_system(&format!("stopping `{name}` failed: {r}"));
            }
            log.flush().await;
            let status = if reason.is_some() {
                StepStatus::Failed
            } else {
                StepStatus::Succeeded
            };
            let took = started.elapsed();
            let rec = StepRecord {
                step: id,
                status,
                attempts: 1,
                duration: took,
                reason,
            };
            self.conclude(rec, 1, None, took).await;
        }
    }
}
