//! One build of one job: the plan, attempts, timeouts, hooks, services and exports.

use crate::events::Emitter;
use crate::outputs::{export_prefix, read_job_env, read_outputs};
use crate::plan::PlannedInput;
use crate::step_ids::StepIds;
use crate::step_log::StepLog;
use crate::{BuildResult, Engine, RunOptions, StepRecord};
use pipewright_config::{
    HookAction, Hooks, IfChain, InParallel, Job, Pipeline, RunnerCommand, ServiceStep, Step,
    StepKind, secret_placeholders,
};
use pipewright_core::{
    BuildMeta, BuildStatus, BuildVersions, CancellationToken, Ctx, Error, ErrorKind, EventKind,
    ExitStatus, Params, Runner, Service, StepId, StepRole, StepStatus, Stream, TaskSpec, Version,
    Workspace, env_key,
};
use pipewright_dag::{Dag, NodeState, Outcome};
use pipewright_versions::{BuildRecord, VersionId, VersionStore};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Variables exported by earlier steps (`GET_*`, `TASK_*`).
type Exports = BTreeMap<String, String>;

mod container;
mod inputs;
mod notices;
mod secrets;

/// A service type's command with the runner it goes through.
type ServiceCommand = pipewright_services::Command;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a sequence of steps ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Flow {
    Ok,
    Failed(String),
    Cancelled,
}

/// The result of one attempt of a get/task/put/notify.
enum Attempt {
    Done(Exports),
    Failed {
        reason: String,
        exit: Option<ExitStatus>,
    },
    Cancelled,
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Self {
        match e.kind() {
            ErrorKind::Cancelled => Attempt::Cancelled,
            _ => Attempt::Failed {
                reason: e.to_string(),
                exit: None,
            },
        }
    }
}

pub(crate) struct Build<'a> {
    engine: &'a Engine,
    pipeline: &'a Pipeline,
    job: &'a Job,
    opts: &'a RunOptions,
    meta: BuildMeta,
    emitter: Arc<Emitter>,
    workdir: PathBuf,
    outdir: PathBuf,
    base_env: BTreeMap<String, String>,
    records: Mutex<Vec<StepRecord>>,
    ids: StepIds,
    /// Started services with the id of their stop.
    services: Mutex<Vec<(StepId, Arc<dyn Service>)>>,
    versions: Mutex<BTreeMap<String, Version>>,
    store: Arc<dyn VersionStore>,
    inputs: Mutex<BTreeMap<String, VersionId>>,
    outputs: Mutex<BTreeMap<String, Vec<VersionId>>>,
    runners: Mutex<BTreeMap<String, Arc<dyn Runner>>>,
    /// The input of each `get`, by resource id: given (a plan from elsewhere) or chosen by
    /// [`Build::plan_inputs`] before the first step.
    plan: Mutex<Option<BTreeMap<String, PlannedInput>>>,
    /// Top-level steps taken from an earlier build instead of run.
    pub(crate) restore: BTreeMap<String, crate::plan::RestoredStep>,
    /// What the planner's checks printed, by resource id, for the `get` step's log.
    check_logs: Mutex<BTreeMap<String, inputs::Chunks>>,
    secrets: tokio::sync::Mutex<secrets::SecretCache>,
    outputs_made: std::sync::atomic::AtomicU64,
    /// The job's `container`, started by the first step that runs in it.
    #[cfg_attr(not(feature = "docker"), allow(dead_code))]
    container: container::JobContainerSlot,
}

fn new_build_id(job: &str, number: u64) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "{}-{number}-{ms:x}{:x}{}",
        env_key(job),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The record of a build that could not start (its workspace could not be made, say): errored
/// with the reason, and announced with the same events as any build so a consumer of the event
/// stream sees it end.
pub(crate) async fn not_started(job: &str, opts: &RunOptions, error: &Error) -> BuildResult {
    let build_id = new_build_id(job, opts.number);
    let reason = format!("the build could not start: {error}");
    let emitter = Emitter::new(build_id.clone(), opts.events.clone());
    emitter
        .emit(EventKind::BuildStarted {
            job: job.to_owned(),
            pipeline: opts.pipeline_name.clone(),
            number: opts.number,
        })
        .await;
    emitter
        .emit(EventKind::BuildStatus {
            status: BuildStatus::Errored,
        })
        .await;
    emitter
        .emit(EventKind::BuildFinished {
            status: BuildStatus::Errored,
            reason: Some(reason.clone()),
            duration_ms: 0,
            steps: Vec::new(),
            versions: BuildVersions::default(),
        })
        .await;
    BuildResult {
        build_id,
        job: job.to_owned(),
        number: opts.number,
        status: BuildStatus::Errored,
        // No secret is known before a build starts; the masker is the door all the same.
        reason: Some(emitter.masker().masked(&reason)),
        steps: Vec::new(),
        duration: Duration::ZERO,
        workspace: None,
        versions: BTreeMap::new(),
    }
}

impl<'a> Build<'a> {
    /// Prepares a build: its id, its workspace and its base environment.
    pub(crate) fn prepare(
        engine: &'a Engine,
        pipeline: &'a Pipeline,
        job: &'a Job,
        opts: &'a RunOptions,
        store: Arc<dyn VersionStore>,
        plan: Option<BTreeMap<String, PlannedInput>>,
    ) -> Result<Self, Error> {
        let build_id = new_build_id(&job.name, opts.number);
        let meta = BuildMeta {
            build_id: build_id.clone(),
            number: opts.number,
            job: job.name.clone(),
            pipeline: opts.pipeline_name.clone(),
            team: engine.options.team.clone(),
        };
        let workdir = engine.options.workspace_root.join(&build_id);
        let outdir = workdir.join(".pipewright").join("out");
        std::fs::create_dir_all(&outdir)
            .map_err(|e| Error::from(e).with_context("workspace", workdir.display().to_string()))?;
        let mut base_env = meta.to_env();
        base_env.insert("WORKDIR".into(), workdir.display().to_string());
        if let Some(url) = &opts.build_url {
            base_env.insert("BUILD_URL".into(), url.clone());
        }
        for input in &job.inputs {
            if let Some(v) = opts.job_inputs.get(&input.name).or(input.default.as_ref()) {
                let value = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                base_env.insert(
                    format!("INPUT_{}", env_key(&input.name).to_uppercase()),
                    value,
                );
            }
        }
        let emitter = Arc::new(Emitter::new(build_id, opts.events.clone()));
        Ok(Self {
            engine,
            pipeline,
            job,
            opts,
            meta,
            emitter,
            workdir,
            outdir,
            base_env,
            records: Mutex::new(Vec::new()),
            ids: StepIds::new(job),
            services: Mutex::new(Vec::new()),
            versions: Mutex::new(BTreeMap::new()),
            store,
            inputs: Mutex::new(BTreeMap::new()),
            outputs: Mutex::new(BTreeMap::new()),
            runners: Mutex::new(BTreeMap::new()),
            plan: Mutex::new(plan),
            restore: BTreeMap::new(),
            check_logs: Mutex::new(BTreeMap::new()),
            secrets: tokio::sync::Mutex::new(secrets::SecretCache::default()),
            outputs_made: std::sync::atomic::AtomicU64::new(0),
            container: container::JobContainerSlot::default(),
        })
    }

    /// Runs the build to its end and cleans up after it.
    pub(crate) async fn run(self) -> BuildResult {
        let started = Instant::now();
        self.emitter
            .emit(EventKind::BuildStarted {
                job: self.job.name.clone(),
                pipeline: self.meta.pipeline.clone(),
                number: self.meta.number,
            })
            .await;
        self.emitter
            .emit(EventKind::BuildStatus {
                status: BuildStatus::Running,
            })
            .await;
        let job_token = self.opts.cancel.child_token();
        let mut exports = Exports::new();
        let mut timed_out = None;
        let mut secrets_ctx = Ctx::new();
        secrets_ctx.cancel = job_token.clone();
        secrets_ctx.build = self.meta.clone();
        let preloaded = self.preload_secrets(&secrets_ctx).await;
        let planned = match preloaded {
            Ok(_) => self
                .ensure_plan(&secrets_ctx)
                .await
                .map_err(|e| (format!("cannot choose the input versions: {e}"), e)),
            Err(e) => Err((format!("cannot resolve the job's secrets: {e}"), e)),
        };
        let flow = if let Err((reason, e)) = planned {
            self.skip_all(&self.job.steps, &reason).await;
            if e.kind() == ErrorKind::Cancelled {
                Flow::Cancelled
            } else {
                Flow::Failed(reason)
            }
        } else {
            // A panic in a plug-in fails the build instead of skipping the cleanup below
            // (hooks, service stops, process and container reaping).
            let body = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                self.run_steps(&self.job.steps, &mut exports, &job_token),
            ));
            let body = async {
                body.await.unwrap_or_else(|_| {
                    tracing::error!(build = %self.meta.build_id, "a step panicked");
                    Flow::Failed("internal error: a step panicked (see the engine's log)".into())
                })
            };
            let mut body = std::pin::pin!(body);
            match self.job.timeout {
                Some(t) => {
                    tokio::select! {
                        f = &mut body => f,
                        () = tokio::time::sleep(t) => {
                            timed_out = Some(t);
                            job_token.cancel();
                            body.await
                        }
                    }
                }
                None => body.await,
            }
        };
        let (status, reason) = match (&flow, timed_out) {
            (_, Some(t)) => (
                BuildStatus::Failed,
                Some(format!(
                    "the job timed out after {}",
                    pipewright_config::format_duration(t)
                )),
            ),
            (Flow::Ok, None) => (BuildStatus::Succeeded, None),
            (Flow::Failed(r), None) if self.job.allow_failure => {
                (BuildStatus::Warning, Some(format!("{r} (allowed to fail)")))
            }
            (Flow::Failed(r), None) => (BuildStatus::Failed, Some(r.clone())),
            (Flow::Cancelled, None) => (
                BuildStatus::Cancelled,
                Some("the build was cancelled".into()),
            ),
        };
        self.run_job_hooks(status, &exports).await;
        self.dispatch_notifications(status, &exports).await;
        self.stop_container().await;
        self.stop_services().await;
        let leftovers = pipewright_runners::reap_build(&self.meta.build_id).await;
        if leftovers > 0 {
            tracing::info!(build = %self.meta.build_id, leftovers, "killed processes left behind by the build");
        }
        let workspace = if self.engine.options.keep_workspace {
            Some(self.workdir.clone())
        } else {
            if let Err(e) = std::fs::remove_dir_all(&self.workdir) {
                tracing::warn!(error = %e, dir = %self.workdir.display(), "could not remove the workspace");
            }
            None
        };
        self.store
            .record_build(BuildRecord {
                job: self.job.name.clone(),
                number: self.meta.number,
                status,
                inputs: self.inputs.lock().map(|m| m.clone()).unwrap_or_default(),
                outputs: self.outputs.lock().map(|m| m.clone()).unwrap_or_default(),
            })
            .await
            .unwrap_or_else(|e| {
                // The result is still returned and shown; only `passed` history misses it.
                tracing::error!(build = %self.meta.build_id, error = %e, "could not record the build's versions");
            });
        self.emitter.emit(EventKind::BuildStatus { status }).await;
        let versions = self.versions.lock().map(|v| v.clone()).unwrap_or_default();
        let steps = self.records.lock().map(|r| r.clone()).unwrap_or_default();
        let result = BuildResult {
            build_id: self.meta.build_id.clone(),
            job: self.job.name.clone(),
            number: self.meta.number,
            status,
            reason: reason.map(|r| self.emitter.masked(&r)),
            steps,
            duration: started.elapsed(),
            workspace,
            versions,
        };
        self.emitter.settle_logs().await;
        self.emitter
            .emit(EventKind::BuildFinished {
                status,
                reason: result.reason.as_ref().map(|r| r.to_string()),
                duration_ms: u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
                steps: result.steps.clone(),
                versions: self.versions_used_and_produced().await,
            })
            .await;
        result
    }

    /// Records the step's end for the summary; its reason is masked here, the one place a
    /// [`StepRecord`] is made.
    fn record(&self, end: StepRecord) -> StepRecord {
        let rec = StepRecord {
            reason: end.reason.map(|r| self.emitter.mask(&r)),
            ..end
        };
        if let Ok(mut r) = self.records.lock() {
            r.push(rec.clone());
        }
        rec
    }

    /// The end of one attempt (`is_final`: the step makes no further attempt).
    #[allow(clippy::too_many_arguments)]
    async fn finished(
        &self,
        step: &StepId,
        attempt: u32,
        is_final: bool,
        status: StepStatus,
        exit: Option<ExitStatus>,
        took: Duration,
        reason: Option<String>,
    ) {
        self.emitter
            .emit(EventKind::StepFinished {
                step: step.clone(),
                attempt,
                is_final,
                status,
                exit,
                duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                reason,
            })
            .await;
    }

    /// Emits the step's end (`took`: its last attempt, number `attempt`) and records it for
    /// the summary.
    async fn conclude(
        &self,
        mut rec: StepRecord,
        attempt: u32,
        exit: Option<ExitStatus>,
        took: Duration,
    ) {
        rec.reason = rec.reason.map(|r| self.emitter.mask(&r));
        self.finished(
            &rec.step,
            attempt,
            true,
            rec.status,
            exit,
            took,
            rec.reason.clone(),
        )
        .await;
        self.record(rec);
    }

    /// Takes a step's exports from an earlier build instead of running it: it succeeds at
    /// once, saying where its effects come from.
    async fn restore_step(
        &self,
        step: &Step,
        restored: &crate::plan::RestoredStep,
        exports: &mut Exports,
    ) {
        let id = self.ids.step(step);
        self.emitter
            .emit(EventKind::StepStarted {
                step: id.clone(),
                attempt: 1,
                attempts: 1,
            })
            .await;
        if !restored.exports.is_empty() {
            self.emitter
                .emit(EventKind::Exports {
                    step: id.clone(),
                    attempt: 1,
                    exports: restored.exports.clone(),
                })
                .await;
            exports.extend(restored.exports.clone());
        }
        let rec = StepRecord {
            step: id,
            status: StepStatus::Succeeded,
            attempts: 1,
            duration: Duration::ZERO,
            reason: Some(format!("not run again: restored from {}", restored.from)),
        };
        self.conclude(rec, 1, None, Duration::ZERO).await;
    }

    /// Records `steps` (and everything nested in them) as skipped: a `StepStarted` with
    /// attempt 0, then the final `StepFinished`.
    fn skip_all<'s>(&'s self, steps: &'s [Step], reason: &'s str) -> BoxFut<'s, ()> {
        Box::pin(async move {
            for s in steps {
                match &s.kind {
                    StepKind::InParallel(p) => self.skip_all(&p.steps, reason).await,
                    StepKind::If(chain) => {
                        for b in &chain.branches {
                            self.skip_all(&b.steps, reason).await;
                        }
                        if let Some(e) = &chain.else_steps {
                            self.skip_all(e, reason).await;
                        }
                    }
                    kind => {
                        let step = match kind {
                            StepKind::Service(_) => self.ids.service(s, StepRole::ServiceStart),
                            _ => self.ids.step(s),
                        };
                        self.emitter
                            .emit(EventKind::StepStarted {
                                step: step.clone(),
                                attempt: 0,
                                attempts: s.attempts.max(1),
                            })
                            .await;
                        let rec = StepRecord {
                            step,
                            status: StepStatus::Skipped,
                            attempts: 0,
                            duration: Duration::ZERO,
                            reason: Some(reason.to_owned()),
                        };
                        self.conclude(rec, 0, None, Duration::ZERO).await;
                    }
                }
            }
        })
    }

    /// The versions this build's gets used and its puts produced, from the version store.
    async fn versions_used_and_produced(&self) -> BuildVersions {
        let inputs = self.inputs.lock().map(|m| m.clone()).unwrap_or_default();
        let outputs = self.outputs.lock().map(|m| m.clone()).unwrap_or_default();
        let mut versions = BuildVersions::default();
        for (rid, id) in inputs {
            if let Ok(Some(v)) = self.store.version(&rid, id).await {
                versions.used.insert(rid, v);
            }
        }
        for (rid, ids) in outputs {
            let mut produced = Vec::new();
            for id in ids {
                if let Ok(Some(v)) = self.store.version(&rid, id).await {
                    produced.push(v);
                }
            }
            versions.produced.insert(rid, produced);
        }
        versions
    }

    fn run_steps<'s>(
        &'s self,
        steps: &'s [Step],
        exports: &'s mut Exports,
        token: &'s CancellationToken,
    ) -> BoxFut<'s, Flow> {
        Box::pin(async move {
            for (i, step) in steps.iter().enumerate() {
                if token.is_cancelled() {
                    self.skip_all(&steps[i..], "the build was cancelled").await;
                    return Flow::Cancelled;
                }
                if std::ptr::eq(steps.as_ptr(), self.job.steps.as_ptr())
                    && let Some(r) = self.restore.get(&step.name)
                {
                    self.restore_step(step, r, exports).await;
                    continue;
                }
                let flow = self.run_step(step, exports, token).await;
                if flow != Flow::Ok {
                    let why = match &flow {
                        Flow::Cancelled => "the build was cancelled".to_owned(),
                        _ => format!("`{}` did not succeed", step.name),
                    };
                    self.skip_all(&steps[i + 1..], &why).await;
                    return flow;
                }
            }
            Flow::Ok
        })
    }

    fn run_step<'s>(
        &'s self,
        step: &'s Step,
        exports: &'s mut Exports,
        token: &'s CancellationToken,
    ) -> BoxFut<'s, Flow> {
        Box::pin(async move {
            let flow = match &step.kind {
                StepKind::InParallel(p) => self.run_parallel(p, exports, token).await,
                StepKind::If(chain) => self.run_if(chain, exports, token).await,
                StepKind::Service(s) => self.start_service(step, s, exports, token).await,
                _ => {
                    self.run_attempts(step, self.ids.step(step), exports, token)
                        .await
                }
            };
            if !step.hooks.is_empty() {
                self.run_hooks(&step.name, &step.hooks, &flow, None, exports)
                    .await;
            }
            flow
        })
    }

    /// get/task/put/notify (as step `id`) with `attempts` and a per-attempt `timeout`.
    async fn run_attempts(
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

    fn ctx(&self, token: &CancellationToken, log: Arc<StepLog>, exports: &Exports) -> Ctx {
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

    async fn attempt(&self, step: &Step, attempt: u32, ctx: &Ctx) -> Attempt {
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

    fn runner(&self, name: &str) -> Result<Arc<dyn Runner>, Error> {
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
    async fn run_command(
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
    async fn run_resolved(
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
    async fn run_on(
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

    async fn get(
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
    async fn resource(
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

    async fn put(&self, p: &pipewright_config::PutStep, ctx: &Ctx) -> Result<(), Error> {
        let decl = self.pipeline.resources.get(&p.resource).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("no resource `{}`", p.resource),
            )
        })?;
        let resource = self.resource(decl, ctx).await?;
        let produced = resource.put(ctx, &self.workdir, &p.params).await?;
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

    async fn notify(
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

    async fn run_parallel(
        &self,
        p: &InParallel,
        exports: &mut Exports,
        token: &CancellationToken,
    ) -> Flow {
        let mut dag = Dag::new();
        for s in &p.steps {
            dag.add_node(s);
        }
        let results: Mutex<BTreeMap<usize, Exports>> = Mutex::new(BTreeMap::new());
        let snapshot = exports.clone();
        let exec = pipewright_dag::Executor::new(&dag)
            .limit(p.limit as usize)
            .fail_fast(p.fail_fast)
            .cancel_token(token.clone());
        let report = exec
            .run(|id, step, child| {
                let mut mine = snapshot.clone();
                let results = &results;
                async move {
                    let flow = self.run_step(step, &mut mine, &child).await;
                    if let Ok(mut r) = results.lock() {
                        r.insert(id.0, mine);
                    }
                    match flow {
                        Flow::Ok => Outcome::Succeeded,
                        Flow::Failed(r) => Outcome::Failed(r),
                        Flow::Cancelled => Outcome::Failed("cancelled".into()),
                    }
                }
            })
            .await;
        // Siblings do not see each other's exports; all of them are visible afterwards.
        for (_, e) in results.into_inner().unwrap_or_default() {
            exports.extend(e);
        }
        let mut failure = None;
        for (i, state) in report.states().iter().enumerate() {
            match state {
                NodeState::Skipped { reason } => {
                    self.skip_all(std::slice::from_ref(&p.steps[i]), reason)
                        .await;
                }
                NodeState::Failed { reason } if failure.is_none() && reason != "cancelled" => {
                    failure = Some(reason.clone());
                }
                _ => {}
            }
        }
        match failure {
            Some(r) => Flow::Failed(r),
            None if token.is_cancelled() => Flow::Cancelled,
            None if !report.all_succeeded() => {
                Flow::Failed("a parallel step did not finish".into())
            }
            None => Flow::Ok,
        }
    }

    async fn run_if(
        &self,
        chain: &IfChain,
        exports: &mut Exports,
        token: &CancellationToken,
    ) -> Flow {
        let lookup = |name: &str| -> Option<String> {
            exports
                .get(name)
                .or_else(|| self.base_env.get(name))
                .cloned()
                .or_else(|| std::env::var(name).ok())
        };
        let chosen = chain
            .branches
            .iter()
            .position(|b| b.condition.eval(&lookup));
        for (i, b) in chain.branches.iter().enumerate() {
            if Some(i) != chosen {
                let why = match chosen {
                    Some(c) => format!("branch `{}` was taken", chain.branches[c].label),
                    None => format!("condition `{}` was false", b.condition_text),
                };
                self.skip_all(&b.steps, &why).await;
            }
        }
        match chosen {
            Some(i) => {
                tracing::debug!(branch = %chain.branches[i].label, "if: branch taken");
                if let Some(e) = &chain.else_steps {
                    self.skip_all(
                        e,
                        &format!("branch `{}` was taken", chain.branches[i].label),
                    )
                    .await;
                }
                self.run_steps(&chain.branches[i].steps, exports, token)
                    .await
            }
            None => match &chain.else_steps {
                Some(e) => self.run_steps(e, exports, token).await,
                None => Flow::Ok,
            },
        }
    }

    async fn start_service(
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
    async fn service(&self, step: &Step, s: &ServiceStep) -> Result<Arc<dyn Service>, Error> {
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

    async fn stop_services(&self) {
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

    /// Job hooks: `on_success` / `on_failure` / `on_cancel` by status, then `ensure`, all with
    /// `BUILD_STATUS`. They run even when the build was cancelled (only a forced stop ends them).
    async fn run_job_hooks(&self, status: BuildStatus, exports: &Exports) {
        let flow = match status {
            BuildStatus::Succeeded => Flow::Ok,
            BuildStatus::Cancelled => Flow::Cancelled,
            _ => Flow::Failed(String::new()),
        };
        self.run_hooks("job", &self.job.hooks, &flow, Some(status), exports)
            .await;
    }

    fn run_hooks<'s>(
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
    async fn run_hook(
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

/// A `((secret:…))` placeholder in a command line, which would put the value in `ps` output.
fn argv_secret<'p>(params: &'p Params, args: &'p [String]) -> Option<&'p str> {
    for v in params.0.values() {
        if let serde_json::Value::String(s) = v
            && let Some(name) = secret_placeholders(s).into_iter().next()
        {
            return Some(name);
        }
    }
    args.iter()
        .find_map(|a| secret_placeholders(a).into_iter().next())
}

/// Expands `$NAME` / `${NAME}` from `env` (unknown names become empty), for notification
/// messages.
fn expand_env(s: &str, env: &BTreeMap<String, String>) -> String {
    pipewright_runners::expand(s, &|name| env.get(name).cloned().unwrap_or_default())
}

/// Copies a directory tree (files, permissions, symlinks as links).
/// A service command's runner params and args, for a plug-in that knows no pipeline types.
fn command_spec(c: &RunnerCommand) -> TaskSpec {
    TaskSpec {
        name: String::new(),
        params: c.params.clone(),
        args: c.args.clone(),
        env: BTreeMap::new(),
    }
}

pub(crate) fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if ty.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            std::os::unix::fs::symlink(target, &to)?;
        } else {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_messages_from_the_environment() {
        let env = BTreeMap::from([
            ("BUILD_JOB_NAME".to_owned(), "release".to_owned()),
            ("N".to_owned(), "7".to_owned()),
        ]);
        assert_eq!(
            expand_env("$BUILD_JOB_NAME #${N}: $MISSING done $", &env),
            "release #7:  done $"
        );
    }
}
