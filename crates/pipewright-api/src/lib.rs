#![doc = include_str!("../README.md")]

use pipewright_core::{BuildStatus, StepStatus, Version};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The path prefix of every route of this version of the API.
pub const PREFIX: &str = "/api/v1";

/// An error answer: `{"error": "...", "code": "..."}` with a 4xx or 5xx status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// What went wrong, for programs (`snake_case`: `not_found`, `invalid_input`…).
    pub code: String,
}

/// A build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildView {
    /// Its id, unique in the server.
    pub id: u64,
    /// The pipeline.
    pub pipeline: String,
    /// The job.
    pub job: String,
    /// Its number within the job, from 1.
    pub number: u64,
    /// Where it is.
    pub status: BuildStatus,
    /// The version of each input (`type.name`), pinned when the build was created.
    pub inputs: BTreeMap<String, Version>,
    /// The values of the job's `input` blocks.
    pub input_values: BTreeMap<String, serde_json::Value>,
    /// The worker running (or that ran) its current attempt.
    pub worker: Option<String>,
    /// The current attempt (0 until a worker claims it; a re-queue after a lost worker or a
    /// server restart adds one).
    pub attempt: u32,
    /// The build this one reruns.
    pub rerun_of: Option<u64>,
    /// What created it (`new version of git.app`, `manual by admin`, `rerun of #3`).
    pub trigger: String,
    /// Approvals its `approve` gate needs.
    pub approvals_required: u32,
    /// Who approved it.
    pub approved_by: Vec<String>,
    /// Why it ended this way (masked), or why it is not running yet.
    pub reason: Option<String>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When its current attempt started.
    pub started_at_ms: Option<u64>,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// Its steps as far as they got.
    pub steps: Vec<StepView>,
}

/// One step of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepView {
    /// The step's name as logs show it (`test`, `job:on_failure`, `db:start`).
    pub step: String,
    /// Its path in the job (names from the job down).
    pub path: Vec<String>,
    /// How it ended (or `running`).
    pub status: StepStatus,
    /// Attempts made.
    pub attempts: u32,
    /// How long it took.
    pub duration_ms: Option<u64>,
    /// Why it did not succeed (masked).
    pub reason: Option<String>,
}

/// A pipeline in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineSummary {
    /// Its name.
    pub name: String,
    /// Its jobs.
    pub jobs: Vec<String>,
    /// Its resources (`type.name`).
    pub resources: Vec<String>,
    /// Why the newest version of its file was rejected (the previous one keeps running).
    pub config_error: Option<String>,
}

/// A pipeline in detail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineView {
    /// Its name.
    pub name: String,
    /// The file it was loaded from.
    pub file: String,
    /// Its jobs, in declaration order.
    pub jobs: Vec<JobView>,
    /// Its resources.
    pub resources: Vec<ResourceView>,
    /// The graph: resource → job (`get`), job → job (`passed`), job → resource (`put`).
    pub edges: Vec<Edge>,
    /// Why the newest version of its file was rejected.
    pub config_error: Option<String>,
}

/// A job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// Its name.
    pub name: String,
    /// The matrix or `for_each` group it belongs to.
    pub group: Option<String>,
    /// Its newest build.
    pub latest: Option<BuildView>,
    /// The inputs a manual trigger may give.
    pub inputs: Vec<JobInputView>,
    /// Whether builds wait for an approval.
    pub approve: bool,
    /// Builds at once (0: unlimited).
    pub concurrency: u32,
    /// Worker tags it needs.
    pub tags: Vec<String>,
}

/// A job's `input` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInputView {
    /// Its name (`INPUT_<NAME>`).
    pub name: String,
    /// `string`, `number`, `bool` or `list`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its default, if it has one.
    pub default: Option<serde_json::Value>,
    /// Allowed values, when restricted.
    pub options: Vec<String>,
    /// What it is for.
    pub description: Option<String>,
}

/// A resource and its checking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceView {
    /// `type.name`.
    pub id: String,
    /// The type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The name.
    pub name: String,
    /// The check's state.
    pub check: CheckView,
    /// The pinned version, if any.
    pub pinned: Option<Version>,
}

/// The state of a resource's check loop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckView {
    /// When the last check ended (ms since the epoch).
    pub last_checked_at_ms: Option<u64>,
    /// How long it took.
    pub last_duration_ms: Option<u64>,
    /// Why it failed, if it did (masked).
    pub error: Option<String>,
    /// Failures in a row (the wait before the next check doubles with each, up to a limit).
    pub failures: u32,
    /// When the next scheduled check is due.
    pub next_check_at_ms: Option<u64>,
}

/// An edge of the pipeline graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// A resource id or a job name.
    pub from: String,
    /// A resource id or a job name.
    pub to: String,
    /// `get`, `trigger` (a get with `trigger = true`), `passed` or `put`.
    pub kind: String,
}

/// A version of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionView {
    /// Its id within the resource (grows with discovery).
    pub id: u64,
    /// The version.
    pub version: Version,
    /// Whether it is the pinned one.
    pub pinned: bool,
}

/// `POST …/jobs/{j}/builds`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// Values for the job's `input` blocks.
    #[serde(default)]
    pub inputs: BTreeMap<String, serde_json::Value>,
}

/// Where a rerun starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RerunFrom {
    /// From the first step.
    #[default]
    Job,
    /// From the step that failed, where the steps before it can be restored.
    FailedStep,
}

/// `POST /builds/{id}/rerun`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerunRequest {
    /// Where to start.
    #[serde(default)]
    pub from: RerunFrom,
}

/// `PUT …/resources/{r}/pin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// The version to pin (it must be one the resource has).
    pub version: Version,
}

/// What a token may do. Each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A worker: may take builds and report on the ones it holds, nothing else (not even read
    /// the API).
    Worker,
    /// Read pipelines, builds, logs.
    Viewer,
    /// Also trigger, cancel, rerun, approve, check and pin.
    Operator,
    /// Also manage tokens.
    Admin,
}

impl Role {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Worker, Role::Viewer, Role::Operator, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// A name for people (who or what holds it).
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// A token as listed (its secret is shown once, when it is created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// Its id (for revoking).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// When it was made.
    pub created_at_ms: u64,
    /// The token itself: only in the answer to its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// What became of a webhook delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookResult {
    /// Verified: the resource is being checked (202).
    Checking,
    /// Verified but not for this resource (a push to another branch): nothing started.
    Ignored,
    /// A delivery id already seen within the window: nothing started.
    Duplicate,
    /// A ping: answered, nothing started.
    Pong,
    /// Refused (bad or missing signature, webhooks off, unreadable secret): nothing started.
    Rejected,
}

/// A webhook delivery as recorded (`GET …/resources/{r}/webhooks`, newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// When it arrived (ms since the epoch).
    pub at_ms: u64,
    /// `github`, `gitea`, `gitlab` or `generic`, from the headers.
    pub forge: String,
    /// The forge's event name (`push`, `ping`, `Push Hook`…), if it sent one.
    pub event: Option<String>,
    /// The forge's delivery id, if it sent one.
    pub delivery_id: Option<String>,
    /// What was done.
    pub result: WebhookResult,
    /// The HTTP status answered.
    pub status: u16,
    /// Why (for ignored and rejected deliveries).
    pub reason: Option<String>,
}
