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

mod attempts;
mod commands;
mod container;
mod control;
mod hooks;
mod inputs;
mod notices;
mod secrets;
mod services;
mod steps;

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
