//! Attempts of a step: retries, timeouts, the step log and the one result a step ends with.

use super::*;

impl Build<'_> {
    /// get/task/put/notify (as step `id`) with `attempts` and a per-attempt `timeout`.
    pub(super) async fn run_attempts(
        &self,
        step: &Step,
        id: StepId,
        exports: &mut Exports,
        token: &CancellationToken,
    ) -> Flow {
        let attempts = step.attempts.max(1);
        // The step's duration: the sum of its attempts' (a timeout's kill grace left out).
        let mut spent = Duration::ZERO;
        let mut last_reason = String::new();
        for attempt in 1..=attempts {
            self.emitter
                .emit(EventKind::StepStarted {
                    step: id.clone(),
                    attempt,
                    attempts,
                })
                .await;
            let log = Arc::new(StepLog::new(self.emitter.clone(), id.clone(), attempt));
            if attempt > 1 {
                pipewright_core::LogSink::write(
                    log.as_ref(),
                    Stream::System,
                    format!("--- attempt {attempt}/{attempts} ---\n").as_bytes(),
                );
            }
            let attempt_started = Instant::now();
            let attempt_token = token.child_token();
            let mut ctx = self.ctx(&attempt_token, log.clone(), exports);
            if let Some(t) = step.timeout {
                ctx = ctx.with_timeout(t);
            }
            let result = {
                let fut = self.attempt(step, attempt, &ctx);
                let mut fut = std::pin::pin!(fut);
                match step.timeout {
                    Some(t) => tokio::select! {
                        r = &mut fut => r,
                        () = tokio::time::sleep(t) => {
                            attempt_token.cancel();
                            // Give the plug-in its grace period to stop what it started; the
                            // reason is written below.
                            let _ = tokio::time::timeout(self.engine.options.kill_grace + Duration::from_secs(5), &mut fut).await;
                            Attempt::Cancelled
                        }
                    },
                    None => fut.await,
                }
            };
            let mut took = attempt_started.elapsed();
            // A timeout, whether the engine or the plug-in (through the context deadline) saw
            // it first. The time spent stopping the task is not task time.
            let timed_out = step
                .timeout
                .filter(|t| took >= *t && !token.is_cancelled())
                .filter(|_| !matches!(result, Attempt::Done(_)));
            let result = match (result, timed_out) {
                (_, Some(t)) => {
                    let grace = self.engine.options.kill_grace;
                    let how = if took.saturating_sub(t) >= grace {
                        format!(
                            " (killed after a {} grace)",
                            pipewright_config::format_duration(grace)
                        )
                    } else {
                        String::new()
                    };
                    took = t;
                    Attempt::Failed {
                        reason: format!(
                            "timed out after {}{how}",
                            pipewright_config::format_duration(t)
                        ),
                        exit: None,
                    }
                }
                (Attempt::Cancelled, None) if !token.is_cancelled() => Attempt::Failed {
                    reason: "stopped".into(),
                    exit: None,
                },
                (other, None) => other,
            };
            spent += took;
            match result {
                Attempt::Done(new) => {
                    log.flush().await;
                    if !new.is_empty() {
                        self.emitter
                            .emit(EventKind::Exports {
                                step: id.clone(),
                                attempt,
                                exports: new.clone(),
                            })
                            .await;
                    }
                    exports.extend(new);
                    let rec = StepRecord {
                        step: id,
                        status: StepStatus::Succeeded,
                        attempts: attempt,
                        duration: spent,
                        reason: None,
                    };
                    self.conclude(rec, attempt, Some(ExitStatus::SUCCESS), took)
                        .await;
                    return Flow::Ok;
                }
                Attempt::Cancelled => {
                    log.flush().await;
                    let rec = StepRecord {
                        step: id,
                        status: StepStatus::Cancelled,
                        attempts: attempt,
                        duration: spent,
                        reason: Some("cancelled".into()),
                    };
                    self.conclude(rec, attempt, None, took).await;
                    return Flow::Cancelled;
                }
                Attempt::Failed { reason, exit } => {
                    ctx.log_system(&format!("{} failed: {reason}", step.kind.keyword()));
                    if exit.is_some_and(|e| crate::task_env::missing_variable(e, &log.tail())) {
                        let names: Vec<&str> = ctx.env.keys().map(String::as_str).collect();
                        ctx.log_system(&format!("available variables: {}", names.join(" ")));
                    }
                    log.flush().await;
                    let is_final = attempt == attempts || token.is_cancelled();
                    self.finished(
                        &id,
                        attempt,
                        is_final,
                        StepStatus::Failed,
                        exit,
                        took,
                        Some(reason.clone()),
                    )
                    .await;
                    last_reason = reason;
                    if token.is_cancelled() {
                        break;
                    }
                }
            }
        }
        let reason = if attempts > 1 {
            format!(
                "`{}` failed after {attempts} attempts: {last_reason}",
                step.name
            )
        } else {
            format!("`{}` failed: {last_reason}", step.name)
        };
        // Its last attempt's end was emitted above.
        self.record(StepRecord {
            step: id,
            status: StepStatus::Failed,
            attempts,
            duration: spent,
            reason: Some(self.emitter.mask(&last_reason)),
        });
        if token.is_cancelled() {
            Flow::Cancelled
        } else {
            Flow::Failed(reason)
        }
    }

    pub(super) fn ctx(
        &self,
        token: &CancellationToken,
        log: Arc<StepLog>,
        exports: &Exports,
    ) -> Ctx {
        let mut env = self.base_env.clone();
        env.extend(exports.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ctx {
            cancel: token.clone(),
            deadline: None,
            build: self.meta.clone(),
            env,
            log,
        }
    }

    pub(super) async fn attempt(&self, step: &Step, attempt: u32, ctx: &Ctx) -> Attempt {
        match &step.kind {
            StepKind::Task(t) => {
                let keys: Vec<(String, String)> = t
                    .caches
                    .iter()
                    .map(|c| {
                        let key = crate::caches::key(&self.meta.pipeline, &self.job.name, c);
                        (c.clone(), key)
                    })
                    .collect();
                let store = self.engine.blob_store();
                if attempt == 1 && !keys.is_empty() {
                    crate::caches::restore(store.as_ref(), &keys, &self.workdir, &self.outdir, ctx)
                        .await;
                }
                let r = match self.task_env(&t.env, ctx).await {
                    Ok(env) => {
                        let runner = self.task_runner(&t.run, ctx).await;
                        self.run_on(
                            runner, &step.name, &t.run, env, &t.inputs, &t.outputs, attempt, ctx,
                        )
                        .await
                    }
                    Err(e) => e.into(),
                };
                if matches!(r, Attempt::Done(_)) && !keys.is_empty() {
                    crate::caches::save(store.as_ref(), &keys, &self.workdir, &self.outdir, ctx)
                        .await;
                }
                r
            }
            StepKind::Get(g) => match self.get(step, g, ctx).await {
                Ok(e) => Attempt::Done(e),
                Err(e) => e.into(),
            },
            StepKind::Put(p) => match self.put(p, ctx).await {
                Ok(()) => Attempt::Done(Exports::new()),
                Err(e) => e.into(),
            },
            StepKind::Notify(n) => self.notify(step, n, attempt, ctx).await,
            // Composite steps never reach here.
            _ => Attempt::Failed {
                reason: "not a leaf step".into(),
                exit: None,
            },
        }
    }
}
