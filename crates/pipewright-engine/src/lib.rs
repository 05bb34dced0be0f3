#![doc = include_str!("../README.md")]

mod build;
mod caches;
mod command;
mod events;
mod output_paths;
mod outputs;
mod plan;
mod registry;
mod step_ids;
mod step_log;
mod task_env;

pub use events::{ChannelSink, EventSink, NoEvents};
pub use outputs::{MAX_OUTPUT_BYTES, export_prefix, parse_outputs};
pub use pipewright_blobs::DirBlobStore;
pub use pipewright_core::StepRecord;
pub use pipewright_resources::ResourceParams;
pub use pipewright_secrets::Masked;
pub use plan::{BuildPlan, PLAN_SCHEMA, PlannedInput, RestoredStep};
pub use registry::{BuiltinOptions, Registry, ResourceFactory, SecretFactory, ServiceFactory};

use build::Build;
use pipewright_config::Pipeline;
use pipewright_core::{BuildStatus, CancellationToken, Error, ErrorKind, Result, Version};
use pipewright_dag::{Dag, NodeState, Outcome};
pub use pipewright_versions::{MemoryStore, VersionStore};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where build workspaces are created (one directory per build).
    pub workspace_root: PathBuf,
    /// Keep workspaces after the build instead of removing them.
    pub keep_workspace: bool,
    /// How many jobs of a pipeline run at once (0 = as many as the DAG allows).
    pub parallel_jobs: usize,
    /// The team name in `BUILD_TEAM_NAME`.
    pub team: String,
    /// How long a stopped plug-in may take to clean up before the engine stops waiting. Match
    /// the runners' grace period.
    pub kill_grace: Duration,
    /// The limit for each hook command.
    pub hook_timeout: Duration,
    /// How long a service may take to become ready, unless the step sets `timeout`.
    pub service_ready_timeout: Duration,
    /// How often a service's readiness is polled.
    pub service_poll: Duration,
    /// The limit for stopping each service (a fresh deadline, even after a timeout).
    pub service_stop_timeout: Duration,
    /// Where resources with `cache = true` keep their `$CACHE_DIR`, one directory per
    /// pipeline and resource.
    pub cache_root: PathBuf,
    /// The limit for each request (or SMTP session) of a built-in notification.
    pub notify_timeout: Duration,
    /// Deliveries tried per built-in notification (5xx answers, 429 and connection errors
    /// are retried; other refusals are final).
    pub notify_attempts: u32,
    /// The wait before a notification's second delivery, doubled before each further one.
    pub notify_backoff: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            workspace_root: std::env::temp_dir().join("pipewright-builds"),
            keep_workspace: false,
            parallel_jobs: 0,
            team: "main".into(),
            kill_grace: pipewright_runners::DEFAULT_GRACE,
            hook_timeout: Duration::from_secs(300),
            service_ready_timeout: Duration::from_secs(60),
            service_poll: Duration::from_millis(250),
            service_stop_timeout: Duration::from_secs(30),
            cache_root: std::env::temp_dir().join("pipewright-cache"),
            notify_timeout: Duration::from_secs(10),
            notify_attempts: 4,
            notify_backoff: Duration::from_millis(500),
        }
    }
}

/// What one run is given.
#[derive(Clone)]
pub struct RunOptions {
    /// The pipeline's name (`BUILD_PIPELINE_NAME`).
    pub pipeline_name: String,
    /// The build number (`BUILD_NUMBER`).
    pub number: u64,
    /// Local directories that replace resources, by resource name (or `type.name`): a get of
    /// that resource copies the directory instead of calling the resource.
    pub inputs: BTreeMap<String, PathBuf>,
    /// Values for the job's `input` blocks (`INPUT_<NAME>`).
    pub job_inputs: BTreeMap<String, serde_json::Value>,
    /// Cancels the run: running steps are stopped, the rest skipped; hooks and `ensure` still
    /// run.
    pub cancel: CancellationToken,
    /// Stops everything, hooks included (a second Ctrl-C).
    pub force: CancellationToken,
    /// Where events go.
    pub events: Arc<dyn EventSink>,
    /// Version history shared with other runs (a server's); `None`: a fresh in-memory store
    /// for this run, so a pipeline run flows versions through `passed` on its own.
    pub store: Option<Arc<dyn VersionStore>>,
    /// Choose among the versions the store already holds instead of checking resources while
    /// planning (a server, whose check loops keep the store current).
    pub no_checks: bool,
    /// The status of the previous build of each job, by job name, for the `fixed` and
    /// `broken` notification rules. A job not in it has no known previous build, and those
    /// rules do not fire for it.
    pub previous_status: BTreeMap<String, BuildStatus>,
    /// Numbers each job's build (`BUILD_NUMBER`) from a counter that outlives the run (a local
    /// history); `None`: every build is numbered [`RunOptions::number`].
    pub numbers: Option<Arc<dyn BuildNumbers>>,
    /// Where people see the build, exported as `BUILD_URL` (a server's page for it).
    pub build_url: Option<String>,
}

/// Hands out build numbers that grow from run to run.
#[async_trait::async_trait]
pub trait BuildNumbers: Send + Sync {
    /// The number of the next build of `job` in `pipeline`: one more than the last one handed
    /// out, also to another process using the same counter.
    async fn next(&self, pipeline: &str, job: &str) -> Result<u64>;
}

impl RunOptions {
    fn store(&self) -> Arc<dyn VersionStore> {
        self.store
            .clone()
            .unwrap_or_else(|| Arc::new(MemoryStore::new()))
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("pipeline_name", &self.pipeline_name)
            .field("number", &self.number)
            .field("inputs", &self.inputs)
            .field("cancelled", &self.cancel.is_cancelled())
            .field("previous_status", &self.previous_status)
            .field("build_url", &self.build_url)
            .finish_non_exhaustive()
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            pipeline_name: "pipeline".into(),
            number: 1,
            inputs: BTreeMap::new(),
            job_inputs: BTreeMap::new(),
            cancel: CancellationToken::new(),
            force: CancellationToken::new(),
            events: Arc::new(NoEvents),
            store: None,
            no_checks: false,
            previous_status: BTreeMap::new(),
            numbers: None,
            build_url: None,
        }
    }
}

impl RunOptions {
    /// These options with the number of `job`'s next build from [`RunOptions::numbers`]. A
    /// counter that fails is logged and the build keeps [`RunOptions::number`]: numbering
    /// never stops a build.
    async fn numbered(&self, job: &str) -> RunOptions {
        let Some(numbers) = &self.numbers else {
            return self.clone();
        };
        match numbers.next(&self.pipeline_name, job).await {
            Ok(number) => RunOptions {
                number,
                ..self.clone()
            },
            Err(e) => {
                tracing::warn!(job, error = %e, "no build number from the local history");
                self.clone()
            }
        }
    }
}

/// The end of one build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuildResult {
    /// The build's id (also its workspace directory's name).
    pub build_id: String,
    /// The job.
    pub job: String,
    /// The build number.
    pub number: u64,
    /// The final status.
    pub status: BuildStatus,
    /// Why it did not succeed, with the build's secrets masked.
    pub reason: Option<Masked>,
    /// Every step, in the order they ended.
    pub steps: Vec<StepRecord>,
    /// Wall time (in JSON: `duration_ms`).
    #[serde(rename = "duration_ms", with = "millis")]
    pub duration: Duration,
    /// The kept workspace, when [`EngineOptions::keep_workspace`] is set.
    pub workspace: Option<PathBuf>,
    /// Resource versions the build got or put, by resource id (`type.name`), with the build's
    /// secrets masked (the version store keeps them as they are).
    pub versions: BTreeMap<String, Version>,
}

/// The end of a pipeline run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PipelineResult {
    /// The builds that ran, in the order they finished.
    pub builds: Vec<BuildResult>,
    /// Jobs that did not run, with the reason (an upstream job failed, the run was cancelled).
    pub not_run: Vec<(String, String)>,
    /// `Succeeded` when at least one build ran and every build passed, `Cancelled` when the run
    /// was cancelled, `Errored` when a build could not run, otherwise `Failed`.
    pub status: BuildStatus,
}

/// What [`Engine::check_resource`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// How many versions the store did not have before.
    pub new_versions: usize,
    /// What the check printed, masked.
    pub log: String,
}

/// A job of one `get` of `decl`: what a check outside any build runs as.
fn check_job(decl: &pipewright_config::Resource) -> pipewright_config::Job {
    use pipewright_config::{GetStep, Hooks, Job, Step, StepKind, VersionPolicy};
    Job {
        name: format!("check-{}", decl.name),
        group: None,
        concurrency: 1,
        serial_groups: Vec::new(),
        timeout: None,
        tags: decl.tags.clone(),
        allow_failure: false,
        interruptible: false,
        disable_retry: true,
        inputs: Vec::new(),
        approve: None,
        container: None,
        steps: vec![Step {
            name: decl.name.clone(),
            kind: StepKind::Get(GetStep {
                resource: decl.id.clone(),
                trigger: false,
                passed: Vec::new(),
                version: VersionPolicy::Latest,
                params: Default::default(),
            }),
            timeout: None,
            attempts: 1,
            hooks: Hooks::default(),
            loc: Default::default(),
        }],
        hooks: Hooks::default(),
        loc: Default::default(),
    }
}

/// Runs jobs and pipelines with the plug-ins of a [`Registry`].
#[derive(Clone)]
pub struct Engine {
    registry: Registry,
    options: EngineOptions,
    blobs: Option<Arc<dyn pipewright_core::BlobStore>>,
    /// The one HTTP client of built-in notifications, made on first use from the options.
    #[cfg(feature = "notify")]
    notify_transport: Arc<std::sync::OnceLock<pipewright_notify::Transport>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("registry", &self.registry)
            .field("options", &self.options)
            .field("shared_blob_store", &self.blobs.is_some())
            .finish()
    }
}

impl Engine {
    /// An engine with `registry` and default options.
    pub fn new(registry: Registry) -> Self {
        Self {
            registry,
            options: EngineOptions::default(),
            blobs: None,
            #[cfg(feature = "notify")]
            notify_transport: Arc::default(),
        }
    }

    /// The HTTP client (timeouts, retries) built-in notifications share.
    #[cfg(feature = "notify")]
    pub(crate) fn notify_transport(
        &self,
    ) -> std::result::Result<pipewright_notify::Transport, pipewright_notify::NotifyError> {
        if let Some(t) = self.notify_transport.get() {
            return Ok(t.clone());
        }
        let o = &self.options;
        let retry = pipewright_notify::Retry {
            attempts: o.notify_attempts.max(1),
            backoff: o.notify_backoff,
            max_backoff: o.notify_backoff.saturating_mul(16),
        };
        let made = pipewright_notify::Transport::new(o.notify_timeout, retry)?;
        Ok(self.notify_transport.get_or_init(|| made).clone())
    }

    /// Keeps task caches in `store` instead of a directory under
    /// [`EngineOptions::cache_root`] (a store shared by several workers). Artifacts follow
    /// with [`Registry::artifacts_in`].
    pub fn with_blob_store(mut self, store: Arc<dyn pipewright_core::BlobStore>) -> Self {
        self.blobs = Some(store);
        self
    }

    /// Where task caches are kept.
    pub fn blob_store(&self) -> Arc<dyn pipewright_core::BlobStore> {
        self.blobs
            .clone()
            .unwrap_or_else(|| Arc::new(DirBlobStore::new(self.options.cache_root.join("blobs"))))
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: EngineOptions) -> Self {
        self.options = options;
        // The notification client follows the new timeouts.
        #[cfg(feature = "notify")]
        {
            self.notify_transport = Arc::default();
        }
        self
    }

    /// The options.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Runs one build of `job`. Errors only when the job does not exist or its workspace
    /// cannot be created; everything that happens inside the build is in the result.
    pub async fn run_job(
        &self,
        pipeline: &Pipeline,
        job: &str,
        opts: &RunOptions,
    ) -> Result<BuildResult> {
        let job = find_job(pipeline, job)?;
        let store = opts.store();
        let opts = &opts.numbered(&job.name).await;
        Ok(Build::prepare(self, pipeline, job, opts, store, None)?
            .run()
            .await)
    }

    /// The plan a build of `job` would run now: the versions its `get`s would fetch (checking
    /// resources where the choice needs their newest versions) and why, and the definitions
    /// it uses. Nothing else runs. Errors when the job does not exist or no version can be
    /// chosen (`passed` not satisfied yet, a resource with no versions).
    pub async fn plan(
        &self,
        pipeline: &Pipeline,
        job: &str,
        opts: &RunOptions,
    ) -> Result<BuildPlan> {
        let j = find_job(pipeline, job)?;
        let inputs = Build::prepare(self, pipeline, j, opts, opts.store(), None)?
            .choose_inputs_only()
            .await?;
        if let Some(bad) = inputs.values().find(|i| i.unresolved.is_some()) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "cannot plan job `{}`: {}{}",
                    j.name,
                    bad.unresolved.as_deref().unwrap_or_default(),
                    {
                        let name = bad
                            .resource
                            .split_once('.')
                            .map_or(bad.resource.as_str(), |(_, n)| n);
                        if opts.store.is_none() {
                            format!(
                                " (this engine has no build history: give the input a directory, \
                                 `--input {name}=DIR`, or run the upstream jobs in the same run)"
                            )
                        } else {
                            format!(
                                " (run the upstream jobs first, or give the input a directory, \
                                 `--input {name}=DIR`)"
                            )
                        }
                    }
                ),
            ));
        }
        let mut plan = BuildPlan::new(
            pipeline,
            &opts.pipeline_name,
            &j.name,
            opts.number,
            inputs,
            opts.job_inputs.clone(),
        );
        plan.previous_status = opts.previous_status.get(&j.name).copied();
        Ok(plan)
    }

    /// Runs one build exactly as `plan` says, in this process: no pipeline file, no type
    /// fetch, no version choice. `opts` gives the events, cancellation and store; the plan's
    /// pipeline name, number and job inputs win over those in `opts`.
    pub async fn run_plan(&self, plan: &BuildPlan, opts: &RunOptions) -> Result<BuildResult> {
        plan.check()?;
        let job = find_job(&plan.definition, &plan.job)?;
        let mut opts = RunOptions {
            pipeline_name: plan.pipeline.clone(),
            number: plan.number,
            job_inputs: plan.job_inputs.clone(),
            ..opts.clone()
        };
        if let Some(s) = plan.previous_status {
            opts.previous_status.insert(plan.job.clone(), s);
        }
        if plan.url.is_some() {
            opts.build_url = plan.url.clone();
        }
        let store = opts.store();
        let mut build = Build::prepare(
            self,
            &plan.definition,
            job,
            &opts,
            store,
            Some(plan.inputs.clone()),
        )?;
        build.restore = plan.restore.clone();
        Ok(build.run().await)
    }

    /// Checks resource `resource` (its id, `type.name`) once, as a build's `get` would (its
    /// secrets resolved, its type's runner bound), and saves what it finds in `opts.store`.
    /// Returns how many versions were new and the check's log. Errors when the resource does
    /// not exist or the check fails.
    pub async fn check_resource(
        &self,
        pipeline: &Pipeline,
        resource: &str,
        opts: &RunOptions,
    ) -> Result<CheckOutcome> {
        let decl = pipeline.resources.get(resource).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("the pipeline has no resource `{resource}`"),
            )
        })?;
        let job = check_job(decl);
        let store = opts.store();
        let before = store.latest_version(resource).await?.map(|(id, _)| id);
        let log = Build::prepare(self, pipeline, &job, opts, store.clone(), None)?
            .check_only(decl)
            .await?;
        let mut new_versions = 0;
        let mut page = None;
        'pages: loop {
            let got = store.versions(resource, 100, page).await?;
            let Some(last) = got.last().map(|(id, _)| *id) else {
                break;
            };
            for (id, _) in &got {
                if Some(*id) <= before {
                    break 'pages;
                }
                new_versions += 1;
            }
            page = Some(last);
        }
        Ok(CheckOutcome { new_versions, log })
    }

    /// Replaces the `((secret:VAR))` placeholders in `text` with their values, fetched as
    /// resource `resource`'s check would fetch them (its secret types, its runner). For a
    /// value the host itself needs, such as a webhook secret; the text is not logged.
    pub async fn resolve_secrets(
        &self,
        pipeline: &Pipeline,
        resource: &str,
        text: &str,
        opts: &RunOptions,
    ) -> Result<String> {
        if pipewright_config::secret_placeholders(text).is_empty() {
            return Ok(text.to_owned());
        }
        let decl = pipeline.resources.get(resource).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("the pipeline has no resource `{resource}`"),
            )
        })?;
        let job = check_job(decl);
        Build::prepare(self, pipeline, &job, opts, opts.store(), None)?
            .resolve_only(text)
            .await
    }

    /// Sends the notifications of job `job`'s `approve` gate for build `opts.number`, which
    /// waits for approval: each is sent as a `notify` step would send it (secrets resolved,
    /// the message templated with the build's variables, `BUILD_STATUS` =
    /// `waiting_for_approval`, `APPROVAL_LABEL`, every text masked). Returns the masked reason
    /// of each notification that could not be sent; errors when the job does not exist.
    pub async fn notify_approval(
        &self,
        pipeline: &Pipeline,
        job: &str,
        opts: &RunOptions,
    ) -> Result<Vec<String>> {
        let job = pipeline.jobs.get(job).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("the pipeline has no job `{job}`"),
            )
        })?;
        Build::prepare(self, pipeline, job, opts, opts.store(), None)?
            .approval_only()
            .await
    }

    /// Sends the notifications due (`on`, `jobs`/`exclude`, `fixed`/`broken` against
    /// `opts.previous_status`) for build `opts.number` of `job`, which ended with `status`
    /// without running: cancelled while it waited, or given up by a server. Returns the
    /// masked reason of each notification that could not be sent.
    pub async fn notify_end(
        &self,
        pipeline: &Pipeline,
        job: &str,
        status: pipewright_core::BuildStatus,
        opts: &RunOptions,
    ) -> Result<Vec<String>> {
        let job = pipeline.jobs.get(job).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("the pipeline has no job `{job}`"),
            )
        })?;
        Ok(
            Build::prepare(self, pipeline, job, opts, opts.store(), None)?
                .end_only(status)
                .await,
        )
    }

    /// Runs `jobs` (all jobs when empty) as one DAG: a job starts when the jobs it names in
    /// `passed` (among those selected) have passed, gets the versions they used, and is
    /// skipped when one of them fails.
    pub async fn run_pipeline(
        &self,
        pipeline: &Pipeline,
        jobs: &[String],
        opts: &RunOptions,
    ) -> Result<PipelineResult> {
        if pipeline.jobs.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "the pipeline has no jobs: there is nothing to run",
            ));
        }
        let selected: Vec<&pipewright_config::Job> = if jobs.is_empty() {
            pipeline.jobs.values().collect()
        } else {
            // A matrix or for_each group name selects every instance of it.
            let mut out: Vec<&pipewright_config::Job> = Vec::new();
            for name in jobs {
                let found: Vec<&pipewright_config::Job> = match pipeline.groups.get(name) {
                    Some(instances) if !pipeline.jobs.contains_key(name) => instances
                        .iter()
                        .map(|j| find_job(pipeline, j))
                        .collect::<Result<_>>()?,
                    _ => vec![find_job(pipeline, name)?],
                };
                for j in found {
                    if !out.iter().any(|o| o.name == j.name) {
                        out.push(j);
                    }
                }
            }
            out
        };
        let mut dag = Dag::new();
        let mut index = BTreeMap::new();
        for job in &selected {
            index.insert(job.name.as_str(), dag.add_node(*job));
        }
        for (up, down, _) in pipewright_config::passed_edges(pipeline) {
            if let (Some(&u), Some(&d)) = (index.get(up.as_str()), index.get(down.as_str()))
                && !dag.dependencies(d).contains(&u)
            {
                dag.add_edge(u, d)
                    .map_err(|e| Error::new(ErrorKind::InvalidConfig, e.to_string()))?;
            }
        }
        let store = opts.store();
        let builds: Mutex<Vec<BuildResult>> = Mutex::new(Vec::new());
        let report = pipewright_dag::Executor::new(&dag)
            .limit(self.options.parallel_jobs)
            .cancel_token(opts.cancel.clone())
            .run(|_, job, _token| {
                let (store, builds) = (store.clone(), &builds);
                async move {
                    let opts = &opts.numbered(&job.name).await;
                    // The build watches `opts.cancel` itself, so its hooks still run.
                    let result = match Build::prepare(self, pipeline, job, opts, store, None) {
                        Ok(b) => b.run().await,
                        // A build that could not start is recorded as errored, never dropped:
                        // the pipeline's status is computed from these records.
                        Err(e) => build::not_started(&job.name, opts, &e).await,
                    };
                    let outcome = if result.status.passes() {
                        Outcome::Succeeded
                    } else {
                        Outcome::Failed(result.status.as_str().to_owned())
                    };
                    if let Ok(mut b) = builds.lock() {
                        b.push(result);
                    }
                    outcome
                }
            })
            .await;
        let builds = builds.into_inner().unwrap_or_default();
        let mut not_run = Vec::new();
        for (i, job) in selected.iter().enumerate() {
            if let NodeState::Skipped { .. } = report.states()[i] {
                let id = pipewright_dag::NodeId(i);
                let (mut failed, mut skipped) = (Vec::new(), Vec::new());
                for d in dag.dependencies(id) {
                    match &report.states()[d.0] {
                        NodeState::Succeeded => {}
                        NodeState::Skipped { .. } => skipped.push(selected[d.0].name.as_str()),
                        _ => failed.push(selected[d.0].name.as_str()),
                    }
                }
                not_run.push((job.name.clone(), upstream_reason(&failed, &skipped)));
            }
        }
        let status = if opts.cancel.is_cancelled() {
            BuildStatus::Cancelled
        } else if builds.iter().any(|b| b.status == BuildStatus::Errored) {
            BuildStatus::Errored
        } else if !builds.is_empty()
            && not_run.is_empty()
            && builds.iter().all(|b| b.status.passes())
        {
            // An empty result set is never a success.
            BuildStatus::Succeeded
        } else {
            BuildStatus::Failed
        };
        Ok(PipelineResult {
            builds,
            not_run,
            status,
        })
    }
}

/// Why a job did not run, naming every upstream job that failed and every one that did not
/// run: "upstream jobs `a`, `b` did not pass; `c` did not run".
fn upstream_reason(failed: &[&str], skipped: &[&str]) -> String {
    let names = |v: &[&str]| {
        v.iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let jobs = |v: &[&str]| if v.len() == 1 { "job" } else { "jobs" };
    match (failed, skipped) {
        ([], []) => "the run was cancelled".to_owned(),
        (f, []) => format!("upstream {} {} did not pass", jobs(f), names(f)),
        ([], s) => format!("upstream {} {} did not run", jobs(s), names(s)),
        (f, s) => format!(
            "upstream {} {} did not pass; {} did not run",
            jobs(f),
            names(f),
            names(s)
        ),
    }
}

/// `Duration` as whole milliseconds in JSON, as in the event contract.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

fn find_job<'p>(pipeline: &'p Pipeline, name: &str) -> Result<&'p pipewright_config::Job> {
    if let (None, Some(instances)) = (pipeline.jobs.get(name), pipeline.groups.get(name)) {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "`{name}` is a group of jobs ({}): run them as a pipeline (`run --job {name}` runs every instance) or name one",
                instances.join(", ")
            ),
        ));
    }
    pipeline.jobs.get(name).ok_or_else(|| {
        let names: Vec<&str> = pipeline.jobs.keys().map(String::as_str).collect();
        let hint = pipewright_config::suggest(name, names.iter().copied())
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        Error::new(
            ErrorKind::NotFound,
            format!(
                "no job `{name}` in the pipeline{hint} (jobs: {})",
                names.join(", ")
            ),
        )
    })
}
