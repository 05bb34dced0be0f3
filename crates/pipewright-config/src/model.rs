//! The typed, validated pipeline model.
//!
//! Every map keeps declaration order. Items that later stages may need to point back at carry a
//! [`Loc`] (skipped in JSON).

use crate::condition::Condition;
use crate::diag::Loc;
use crate::duration::{Schedule, de_opt_duration, ser_opt_duration};
use indexmap::IndexMap;
use pipewright_core::{Params, Version};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// A loaded pipeline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pipeline {
    /// Variables by name.
    pub variables: IndexMap<String, Variable>,
    /// Declared resource types by name.
    pub resource_types: IndexMap<String, TypeDecl>,
    /// Resources by canonical id `<type>.<name>`.
    pub resources: IndexMap<String, Resource>,
    /// Declared runner types by name.
    pub runner_types: IndexMap<String, RunnerType>,
    /// Declared service types by name.
    pub service_types: IndexMap<String, TypeDecl>,
    /// Declared secret types by name.
    pub secret_types: IndexMap<String, TypeDecl>,
    /// Declared notification types by name.
    pub notification_types: IndexMap<String, TypeDecl>,
    /// Notifications by canonical id `<type>.<name>`.
    pub notifications: IndexMap<String, Notification>,
    /// Jobs by name, with `for_each`/`matrix` jobs expanded to one job per instance.
    pub jobs: IndexMap<String, Job>,
    /// `for_each`/`matrix` groups: the group name and the names of its instance jobs.
    pub groups: IndexMap<String, Vec<String>>,
}

/// The type of a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarType {
    /// `string`
    String,
    /// `number`
    Number,
    /// `bool`
    Bool,
}

impl VarType {
    /// `string`, `number` or `bool`.
    pub fn as_str(self) -> &'static str {
        match self {
            VarType::String => "string",
            VarType::Number => "number",
            VarType::Bool => "bool",
        }
    }
}

/// Where a variable's value came from (highest precedence first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "from")]
pub enum VarOrigin {
    /// A `--var name=value` flag.
    Cli,
    /// A vars file.
    VarsFile(String),
    /// Resolved at run time from the variable's `secret` block.
    Secret,
    /// The `default` attribute.
    Default,
}

/// A `variable` block and its resolved value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    /// Name (`var.<name>`).
    pub name: String,
    /// Declared type.
    pub ty: VarType,
    /// The value, or for secret-backed variables the placeholder that stands in for it until run
    /// time (see [`secret_placeholder`]).
    pub value: serde_json::Value,
    /// Where the value came from.
    pub origin: VarOrigin,
    /// The `secret` block, if any (kept even when a higher-precedence value overrides it).
    pub secret: Option<SecretBinding>,
    /// Declaration site.
    #[serde(skip)]
    pub loc: Loc,
}

/// A variable's `secret "<type>" { path, key }` block. `path` and `key` may contain placeholders
/// of other secret-backed variables (chained secrets), resolved in dependency order at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretBinding {
    /// The secret type's name.
    pub secret_type: String,
    /// Path inside the source (may be empty).
    pub path: String,
    /// Key inside the path.
    pub key: String,
}

/// The placeholder that stands for a secret-backed variable's value until run time. Values never
/// enter the loaded model, so validation needs no credentials and a stored pipeline holds no
/// secrets.
///
/// ```
/// assert_eq!(pipewright_config::secret_placeholder("db_password"), "((secret:db_password))");
/// ```
pub fn secret_placeholder(var: &str) -> String {
    format!("((secret:{var}))")
}

/// The variable names of every secret placeholder in `s`, in order.
pub fn secret_placeholders(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("((secret:") {
        rest = &rest[i + 9..];
        match rest.find("))") {
            Some(end) => {
                out.push(&rest[..end]);
                rest = &rest[end + 2..];
            }
            None => break,
        }
    }
    out
}

/// Where a type's definition comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TypeSource {
    /// Defined inline in the pipeline.
    Inline,
    /// A built-in (`pipewright://NAME`, or `pikoci://NAME`), or a built-in used without declaration.
    Builtin {
        /// The built-in's name.
        name: String,
    },
    /// Loaded from an HCL file.
    File {
        /// The resolved path.
        path: PathBuf,
        /// The pinned SHA-256, if given.
        sha256: Option<String>,
    },
    /// Loaded from an `https://` URL.
    Url {
        /// The URL.
        url: String,
        /// The pinned SHA-256, if given.
        sha256: Option<String>,
    },
}

/// A command run through a runner: `check "exec" { path = "…" args = […] }`. The label names the
/// runner; `args` is the argument list; every other attribute is a runner param.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerCommand {
    /// The runner's name (`exec`, `shell`, `docker` or a declared `runner_type`).
    pub runner: String,
    /// The `args` list.
    pub args: Vec<String>,
    /// The other attributes.
    pub params: Params,
    /// Declaration site.
    #[serde(skip)]
    pub loc: Loc,
}

/// A `ready_check` command with its polling settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyCheck {
    /// The probe command.
    pub command: RunnerCommand,
    /// Time between probes (default 1s).
    #[serde(
        serialize_with = "crate::duration::ser_duration",
        deserialize_with = "crate::duration::de_duration"
    )]
    pub interval: Duration,
    /// How long to wait for readiness (default 60s).
    #[serde(
        serialize_with = "crate::duration::ser_duration",
        deserialize_with = "crate::duration::de_duration"
    )]
    pub timeout: Duration,
}

/// A declared `resource_type`, `service_type`, `secret_type` or `notification_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeDecl {
    /// The type's name.
    pub name: String,
    /// Where its definition came from.
    pub source: TypeSource,
    /// Accepted param names (empty: any).
    pub params: Vec<String>,
    /// `cache = true`: a persistent `CACHE_DIR` (resource types).
    pub cache: bool,
    /// The operations, by name: `check`/`pull`/`push` (resource), `start`/`stop` (service),
    /// `get` (secret), `notify` (notification).
    pub commands: IndexMap<String, RunnerCommand>,
    /// A service's `ready_check`.
    pub ready_check: Option<ReadyCheck>,
    /// A type-level `runner { … }` override.
    pub runner: Option<RunnerCommand>,
    /// Other attributes (a secret type's config such as `address`), passed as `param_*`.
    pub config: Params,
    /// Declaration site.
    #[serde(skip)]
    pub loc: Loc,
}

/// A `runner_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerType {
    /// The type's name.
    pub name: String,
    /// Where its definition came from.
    pub source: TypeSource,
    /// The `run { path, args }` template (absent for built-ins).
    pub run: Option<RunTemplate>,
    /// Declaration site.
    #[serde(skip)]
    pub loc: Loc,
}

/// A runner template: `path` and `args` expanded against `$WORKDIR`, the step's params and the
/// environment; `"$args"` splices the calling block's args, `"$env"` splices `-e K=V` pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTemplate {
    /// Program to run (empty expands to a no-op).
    pub path: String,
    /// Its arguments.
    pub args: Vec<String>,
}

/// A `resource "<type>" "<name>"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Canonical id `<type>.<name>`.
    pub id: String,
    /// The resource type's name.
    pub type_name: String,
    /// The resource's name.
    pub name: String,
    /// `params { … }`.
    pub params: Params,
    /// When to check (`None`: every minute, see [`Schedule::DEFAULT`]).
    pub check_interval: Option<Schedule>,
    /// Overrides the type's `cache`.
    pub cache: Option<bool>,
    /// Worker tags the checks need.
    pub tags: Vec<String>,
    /// The shared secret a forge signs webhook deliveries with (`None`: webhooks are off for
    /// this resource). May be a `((secret:VAR))` placeholder, resolved when a delivery comes.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// Declaration site.
    #[serde(skip)]
    pub loc: Loc,
}

/// A `notification "<type>" "<name>"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Canonical id `<type>.<name>`.
    pub id: String,
    /// The notification type's name.
    pub type_name: String,
    /// The notification's name.
    pub name: String,
    /// `params { … }`.
    pub params: Params,
    /// `message` (`$NOTIFY_MESSAGE`).
    pub message: Option<String>,
    /// Build outcomes that dispatch it automatically (`success`, `failure`, `cancel`, `all`).
    pub on: Vec<String>,
    /// Only these jobs (group names expanded).
    pub jobs: Vec<String>,
    /// All jobs but these (group names expanded).
    pub exclude: Vec<String>,
    /// Declaration site.
    #[serde(skip)]
    pub loc: Loc,
}

/// A `job`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job's name (`<group>--<key>` for `for_each`/`matrix` instances).
    pub name: String,
    /// The `for_each`/`matrix` group it was expanded from.
    pub group: Option<String>,
    /// Max simultaneous builds (default 1, 0: unlimited).
    pub concurrency: u32,
    /// Cross-job mutual exclusion groups.
    pub serial_groups: Vec<String>,
    /// Wall-clock limit for the plan.
    #[serde(
        serialize_with = "ser_opt_duration",
        deserialize_with = "de_opt_duration"
    )]
    pub timeout: Option<Duration>,
    /// Worker tags (all required).
    pub tags: Vec<String>,
    /// A failed build becomes `warning` and lets versions pass.
    pub allow_failure: bool,
    /// A new build cancels older running or pending builds.
    pub interruptible: bool,
    /// Retries are refused.
    pub disable_retry: bool,
    /// Manual-trigger inputs.
    pub inputs: Vec<JobInput>,
    /// Approval gate.
    pub approve: Option<Approval>,
    /// The job's container: its `shell` and `exec` task steps run in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<JobContainer>,
    /// The plan, in declaration order.
    pub steps: Vec<Step>,
    /// Job-level hooks.
    pub hooks: Hooks,
    /// Declaration site.
    #[serde(skip)]
    pub loc: Loc,
}

impl Job {
    /// Every step of the plan, depth first (branches, parallel groups and hook steps included).
    pub fn all_steps(&self) -> Vec<&Step> {
        let mut out = Vec::new();
        fn walk<'a>(steps: &'a [Step], out: &mut Vec<&'a Step>) {
            for s in steps {
                out.push(s);
                match &s.kind {
                    StepKind::InParallel(p) => walk(&p.steps, out),
                    StepKind::If(i) => {
                        for b in &i.branches {
                            walk(&b.steps, out);
                        }
                        if let Some(e) = &i.else_steps {
                            walk(e, out);
                        }
                    }
                    _ => {}
                }
                for h in s.hooks.all() {
                    if let HookAction::Step(st) = h {
                        walk(std::slice::from_ref(st), out);
                    }
                }
            }
        }
        walk(&self.steps, &mut out);
        for h in self.hooks.all() {
            if let HookAction::Step(st) = h {
                walk(std::slice::from_ref(st), &mut out);
            }
        }
        out
    }

    /// The `get` steps of the plan (anywhere in it).
    pub fn gets(&self) -> impl Iterator<Item = &GetStep> {
        self.all_steps().into_iter().filter_map(|s| match &s.kind {
            StepKind::Get(g) => Some(g),
            _ => None,
        })
    }
}

/// An `input "<name>"` of a job, set on manual trigger (`INPUT_<name>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInput {
    /// Name (env-var safe).
    pub name: String,
    /// Type.
    pub ty: VarType,
    /// Shown in the UI.
    pub description: Option<String>,
    /// Default value.
    pub default: Option<serde_json::Value>,
    /// Allowed values (strings only).
    pub options: Vec<String>,
    /// Several options may be chosen.
    pub multiple: bool,
}

/// A job's `container { image = … }` block: one container started before the first step that
/// runs in it and removed at the job's end; every `shell` and `exec` task step runs in it with
/// `docker exec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobContainer {
    /// The docker runner's params: `image` (always set), `env`, `user`, `workdir`, `network`,
    /// `memory`, `cpus`, `pull`, `privileged`.
    pub params: Params,
    /// `host:container[:ro]` bind mounts.
    pub mounts: Vec<String>,
    /// Declaration site.
    #[serde(skip)]
    pub loc: Loc,
}

/// An `approve "<label>"` gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// The label.
    pub label: String,
    /// Approvals needed (default 1).
    pub approvals: u32,
    /// How long to wait.
    #[serde(
        serialize_with = "ser_opt_duration",
        deserialize_with = "de_opt_duration"
    )]
    pub timeout: Option<Duration>,
    /// Notifications sent when approval is requested.
    pub notify: Vec<NotifyStep>,
}

/// One step of a plan: its kind plus the settings every step shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The step's name: the task name, the resource name of a get/put, the service name…; unique
    /// within its job (used in `GET_<STEP>_*`/`TASK_<STEP>_*` exports and logs).
    pub name: String,
    /// What the step does.
    #[serde(flatten)]
    pub kind: StepKind,
    /// Per-attempt time limit.
    #[serde(
        serialize_with = "ser_opt_duration",
        deserialize_with = "de_opt_duration"
    )]
    pub timeout: Option<Duration>,
    /// Total tries (default 1).
    pub attempts: u32,
    /// Step hooks (run after the final attempt).
    pub hooks: Hooks,
    /// Declaration site.
    #[serde(skip)]
    pub loc: Loc,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum StepKind {
    /// `get "<type>" "<name>"`.
    Get(GetStep),
    /// `task "<name>"`.
    Task(TaskStep),
    /// `put "<type>" "<name>"`.
    Put(PutStep),
    /// `notify "<type>" "<name>"`.
    Notify(NotifyStep),
    /// `service "<type>"`.
    Service(ServiceStep),
    /// `in_parallel { … }`.
    InParallel(InParallel),
    /// `if` / `else_if` / `else`.
    If(IfChain),
}

impl StepKind {
    /// `get`, `task`, `put`, `notify`, `service`, `in_parallel` or `if`.
    pub fn keyword(&self) -> &'static str {
        match self {
            StepKind::Get(_) => "get",
            StepKind::Task(_) => "task",
            StepKind::Put(_) => "put",
            StepKind::Notify(_) => "notify",
            StepKind::Service(_) => "service",
            StepKind::InParallel(_) => "in_parallel",
            StepKind::If(_) => "if",
        }
    }
}

/// Which version a `get` fetches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionPolicy {
    /// The newest allowed version (default).
    Latest,
    /// Every version, one build each.
    Every,
    /// Exactly this version.
    Pinned(Version),
}

/// A `get` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetStep {
    /// The resource id `<type>.<name>`.
    pub resource: String,
    /// New versions trigger a build.
    pub trigger: bool,
    /// Upstream jobs the version must have passed (group names expanded to their instances).
    pub passed: Vec<String>,
    /// Which version to fetch.
    pub version: VersionPolicy,
    /// Extra params for the type's `pull` (`param_*`).
    pub params: Params,
}

/// A `task` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStep {
    /// The `run "<runner>" { … }` block.
    pub run: RunnerCommand,
    /// Paths that must exist in the workspace before the task runs.
    pub inputs: Vec<String>,
    /// Paths that must exist after it succeeds.
    pub outputs: Vec<String>,
    /// Extra environment (`env = { NAME = value }`); values may hold secret placeholders.
    pub env: IndexMap<String, String>,
    /// Workspace paths kept between builds of the job.
    pub caches: Vec<String>,
}

/// A `put` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutStep {
    /// The resource id `<type>.<name>`.
    pub resource: String,
    /// The other attributes (`put_*` for the type's `push`).
    pub params: Params,
}

/// A `notify` step, or a notification inside hooks and approvals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyStep {
    /// The notification id `<type>.<name>`.
    pub notification: String,
    /// Overrides the notification's message.
    pub message: Option<String>,
    /// The other attributes (`notify_*`).
    pub params: Params,
}

/// A `service` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStep {
    /// The service type's name.
    pub service_type: String,
    /// Param overrides (`param_*`).
    pub params: Params,
}

/// An `in_parallel` group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InParallel {
    /// Max sub-steps at once (0: unlimited).
    pub limit: u32,
    /// The first failure cancels the rest.
    pub fail_fast: bool,
    /// The sub-steps.
    pub steps: Vec<Step>,
}

/// An `if` with its `else_if` branches and optional `else`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IfChain {
    /// `if` then each `else_if`, in order; the first whose condition holds runs.
    pub branches: Vec<Branch>,
    /// The `else` steps.
    pub else_steps: Option<Vec<Step>>,
}

/// One conditional branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Branch {
    /// The block's label.
    pub label: String,
    /// The condition as written.
    pub condition_text: String,
    /// The parsed condition.
    pub condition: Condition,
    /// The steps.
    pub steps: Vec<Step>,
}

/// Hooks of a step or job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hooks {
    /// After success.
    pub on_success: Vec<HookAction>,
    /// After failure.
    pub on_failure: Vec<HookAction>,
    /// After cancellation or timeout.
    pub on_cancel: Vec<HookAction>,
    /// Always, last.
    pub ensure: Vec<HookAction>,
}

impl Hooks {
    /// True when no hook is set.
    pub fn is_empty(&self) -> bool {
        self.on_success.is_empty()
            && self.on_failure.is_empty()
            && self.on_cancel.is_empty()
            && self.ensure.is_empty()
    }

    /// Every hook action.
    pub fn all(&self) -> impl Iterator<Item = &HookAction> {
        self.on_success
            .iter()
            .chain(&self.on_failure)
            .chain(&self.on_cancel)
            .chain(&self.ensure)
    }
}

/// What a hook does: a runner command (labelled form) or a step (unlabelled form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookAction {
    /// `on_failure "exec" { path = … }`.
    Command(RunnerCommand),
    /// A step inside `on_success { put … notify … }`.
    Step(Box<Step>),
}
