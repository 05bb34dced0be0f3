//! Builds as the server sees them: creation with pinned inputs, claims, fenced writes, one
//! terminal result, re-queue, and the queries the API and restart recovery need.

use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use pipewright_core::{BuildStatus, StepId, StepStatus};
use pipewright_versions::VersionId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A build's id: unique in the store, assigned by it (a database's integer key), growing with
/// creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BuildId(pub u64);

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a build is in its life. [`BuildState::status`] is what the API shows: a claimed build
/// is still `pending` to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildState {
    /// Waiting for its `approve` gate.
    WaitingForApproval,
    /// Ready for a worker.
    Pending,
    /// A worker holds it (attempt [`Build::attempt`]) and has not started it yet.
    Claimed,
    /// A worker is running it.
    Running,
    /// Terminal: every required step succeeded.
    Succeeded,
    /// Terminal: a step failed.
    Failed,
    /// Terminal: failed, but allowed to.
    Warning,
    /// Terminal: infrastructure or plug-in error.
    Errored,
    /// Terminal: cancelled.
    Cancelled,
}

impl BuildState {
    /// Every state, in the order of the state machine.
    pub const ALL: [BuildState; 9] = [
        BuildState::WaitingForApproval,
        BuildState::Pending,
        BuildState::Claimed,
        BuildState::Running,
        BuildState::Succeeded,
        BuildState::Failed,
        BuildState::Warning,
        BuildState::Errored,
        BuildState::Cancelled,
    ];

    /// The lower-case name, as stored in a database column and shown in errors.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::WaitingForApproval => "waiting_for_approval",
            BuildState::Pending => "pending",
            BuildState::Claimed => "claimed",
            BuildState::Running => "running",
            BuildState::Succeeded => "succeeded",
            BuildState::Failed => "failed",
            BuildState::Warning => "warning",
            BuildState::Errored => "errored",
            BuildState::Cancelled => "cancelled",
        }
    }

    /// The state named `s` ([`BuildState::as_str`]).
    pub fn parse(s: &str) -> StoreResult<Self> {
        BuildState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StoreError::Invalid(format!("`{s}` is not a build state")))
    }

    /// The status users see.
    pub fn status(self) -> BuildStatus {
        match self {
            BuildState::WaitingForApproval => BuildStatus::WaitingForApproval,
            BuildState::Pending | BuildState::Claimed => BuildStatus::Pending,
            BuildState::Running => BuildStatus::Running,
            BuildState::Succeeded => BuildStatus::Succeeded,
            BuildState::Failed => BuildStatus::Failed,
            BuildState::Warning => BuildStatus::Warning,
            BuildState::Errored => BuildStatus::Errored,
            BuildState::Cancelled => BuildStatus::Cancelled,
        }
    }

    /// The terminal state for a terminal `status`, `None` for any other.
    pub fn terminal(status: BuildStatus) -> Option<Self> {
        Some(match status {
            BuildStatus::Succeeded => BuildState::Succeeded,
            BuildStatus::Failed => BuildState::Failed,
            BuildStatus::Warning => BuildState::Warning,
            BuildStatus::Errored => BuildState::Errored,
            BuildStatus::Cancelled => BuildState::Cancelled,
            _ => return None,
        })
    }

    /// True once the state can no longer change.
    pub fn is_terminal(self) -> bool {
        self.status().is_terminal()
    }

    /// True while a worker holds the build (claimed or running): what restart recovery and
    /// lease expiry look at.
    pub fn is_held(self) -> bool {
        matches!(self, BuildState::Claimed | BuildState::Running)
    }
}

impl fmt::Display for BuildState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What creating a build needs; the store assigns the id and the number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewBuild {
    /// The pipeline.
    pub pipeline: String,
    /// The job.
    pub job: String,
    /// The pinned input versions, by resource id (`type.name`).
    pub inputs: BTreeMap<String, VersionId>,
    /// The job's input values (a manual trigger's `inputs`).
    pub input_values: BTreeMap<String, serde_json::Value>,
    /// The build this one reruns.
    pub rerun_of: Option<BuildId>,
    /// What created it, for people (`new version of git.app`, `manual by alice`).
    pub trigger: String,
    /// Approvals its `approve` gate needs; 0 (no gate) creates it `pending`, more creates it
    /// `waiting_for_approval`.
    pub approvals_required: u32,
}

/// A build as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Build {
    /// Its id.
    pub id: BuildId,
    /// The pipeline.
    pub pipeline: String,
    /// The job.
    pub job: String,
    /// Its number within (pipeline, job), from 1, without gaps.
    pub number: u64,
    /// Where it is.
    pub state: BuildState,
    /// The current attempt: 0 until the first claim, bumped by every claim.
    pub attempt: u32,
    /// The worker holding the current attempt (kept once it finished, cleared by a re-queue).
    pub worker: Option<String>,
    /// The pinned input versions, by resource id.
    pub inputs: BTreeMap<String, VersionId>,
    /// The job's input values.
    pub input_values: BTreeMap<String, serde_json::Value>,
    /// The build this one reruns.
    pub rerun_of: Option<BuildId>,
    /// What created it.
    pub trigger: String,
    /// Approvals its gate needs.
    pub approvals_required: u32,
    /// Who approved it, in order, each once.
    pub approved_by: Vec<String>,
    /// Why it ended this way, when terminal and not successful (already masked).
    pub reason: Option<String>,
    /// Milliseconds since the Unix epoch when it was created.
    pub created_at_ms: u64,
    /// When its current attempt started running.
    pub started_at_ms: Option<u64>,
    /// When it reached its terminal state.
    pub finished_at_ms: Option<u64>,
}

impl Build {
    /// The status users see.
    pub fn status(&self) -> BuildStatus {
        self.state.status()
    }
}

/// One step of a build, as its latest result says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSummary {
    /// The step.
    pub step: StepId,
    /// Its status.
    pub status: StepStatus,
    /// Attempts made so far (a step with `attempts = 3` may record 1, 2, 3).
    pub attempts: u32,
    /// Wall-clock duration in milliseconds, once it finished.
    pub duration_ms: Option<u64>,
    /// Why it ended this way, when it did not succeed (already masked).
    pub reason: Option<String>,
}

/// Builds: numbering, claims, fenced writes and the queries a server makes.
///
/// Every write that a worker's result causes carries the attempt it belongs to and is
/// rejected with [`StoreError::Stale`] unless that is the build's current attempt; a write the
/// build's state does not allow is rejected with [`StoreError::Conflict`]. A rejected write
/// changes nothing. Each call is atomic: a database does it in one transaction.
#[async_trait]
pub trait BuildStore: Send + Sync {
    /// Creates a build numbered one past the newest of its (pipeline, job), `pending` (or
    /// `waiting_for_approval` when it needs approvals) at attempt 0. Concurrent creates get
    /// distinct numbers without gaps.
    async fn create_build(&self, build: NewBuild) -> StoreResult<Build>;

    /// A build by id.
    async fn build(&self, id: BuildId) -> StoreResult<Option<Build>>;

    /// Up to `limit` builds of a job numbered below `before` (all when `None`), newest first.
    async fn job_builds(
        &self,
        pipeline: &str,
        job: &str,
        limit: usize,
        before: Option<u64>,
    ) -> StoreResult<Vec<Build>>;

    /// Up to `limit` builds in any of `states` with an id above `after`, oldest first: restart
    /// recovery asks for `[Claimed, Running]`, a dispatcher for `[Pending]`.
    async fn builds_in_state(
        &self,
        states: &[BuildState],
        limit: usize,
        after: Option<BuildId>,
    ) -> StoreResult<Vec<Build>>;

    /// Records an approval of a `waiting_for_approval` build by `by` (once per approver);
    /// the approval that reaches the required count makes it `pending`.
    async fn approve_build(&self, id: BuildId, by: &str) -> StoreResult<Build>;

    /// Claims a `pending` build for `worker` as `attempt`, which must be one past the build's
    /// current attempt (a queue message "build B, attempt K"): a compare-and-set, so of many
    /// claims of one attempt exactly one wins. [`StoreError::Stale`] when `attempt` is not
    /// next, [`StoreError::Conflict`] when the build is not pending.
    async fn claim_build(&self, id: BuildId, attempt: u32, worker: &str) -> StoreResult<Build>;

    /// Marks a claimed build running. Repeating it for a running build is a no-op.
    async fn start_build(&self, id: BuildId, attempt: u32) -> StoreResult<Build>;

    /// Records (or replaces, by step id) a step's summary while the build is claimed or
    /// running. Summaries keep the order steps were first recorded in.
    async fn record_step(&self, id: BuildId, attempt: u32, step: &StepSummary) -> StoreResult<()>;

    /// The build's step summaries, in the order they were first recorded.
    async fn build_steps(&self, id: BuildId) -> StoreResult<Vec<StepSummary>>;

    /// Ends a build with a terminal `status` (from any non-terminal state, so the server can
    /// cancel or error a pending build at its current attempt). Exactly one terminal result
    /// is kept: repeating the same attempt and status returns the build unchanged, anything
    /// else on a terminal build is a [`StoreError::Conflict`].
    async fn finish_build(
        &self,
        id: BuildId,
        attempt: u32,
        status: BuildStatus,
        reason: Option<String>,
    ) -> StoreResult<Build>;

    /// Puts a claimed or running build back to `pending` (its lease lapsed, the server
    /// restarted): the attempt is kept, so the next claim is `attempt + 1`; the worker and
    /// the attempt's step summaries are cleared.
    async fn requeue_build(&self, id: BuildId, attempt: u32) -> StoreResult<Build>;
}
