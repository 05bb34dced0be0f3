//! The state machine and fencing rules, as pure functions on a [`Build`]: every backend reads
//! a build, applies one of these in its transaction, and writes the build back only when it
//! returns `Ok`.

use crate::{Build, BuildId, BuildState, NewBuild, StoreError, StoreResult, now_ms};
use pipewright_core::{BuildStatus, StepId};

/// Rejects a write of `attempt` unless it is the build's current attempt.
pub(crate) fn fence(build: &Build, attempt: u32) -> StoreResult<()> {
    if build.attempt == attempt {
        Ok(())
    } else {
        tracing::debug!(build = %build.id, attempt, current = build.attempt, "stale write rejected");
        Err(StoreError::Stale {
            build: build.id,
            attempt,
            current: build.attempt,
        })
    }
}

fn conflict(build: &Build, action: impl Into<String>) -> StoreError {
    let action = action.into();
    tracing::debug!(build = %build.id, state = %build.state, action, "write rejected by state");
    StoreError::Conflict {
        build: build.id,
        state: build.state.to_string(),
        action,
    }
}

/// Logs a build's creation.
pub(crate) fn log_created(b: &Build) {
    tracing::debug!(build = %b.id, pipeline = %b.pipeline, job = %b.job, number = b.number, "build created");
}

/// Checks what a new build must have.
pub(crate) fn validate_new(new: &NewBuild) -> StoreResult<()> {
    if new.pipeline.is_empty() || new.job.is_empty() {
        return Err(StoreError::Invalid(format!(
            "a build needs a pipeline and a job, got `{}` and `{}`",
            new.pipeline, new.job
        )));
    }
    Ok(())
}

/// The error for a `rerun_of` naming no build.
pub(crate) fn no_rerun_target(id: BuildId) -> StoreError {
    StoreError::Invalid(format!("the build it reruns, {id}, does not exist"))
}

/// A new build with the id and number the store assigned.
pub(crate) fn created(id: BuildId, number: u64, new: NewBuild) -> Build {
    let state = if new.approvals_required > 0 {
        BuildState::WaitingForApproval
    } else {
        BuildState::Pending
    };
    Build {
        id,
        number,
        pipeline: new.pipeline,
        job: new.job,
        state,
        attempt: 0,
        worker: None,
        inputs: new.inputs,
        input_values: new.input_values,
        rerun_of: new.rerun_of,
        trigger: new.trigger,
        approvals_required: new.approvals_required,
        approved_by: Vec::new(),
        reason: None,
        created_at_ms: now_ms(),
        started_at_ms: None,
        finished_at_ms: None,
    }
}

/// An approval by `by`.
pub(crate) fn approve(b: &mut Build, by: &str) -> StoreResult<()> {
    if by.is_empty() {
        return Err(StoreError::Invalid(format!(
            "an approval of build {} needs an approver",
            b.id
        )));
    }
    if b.state != BuildState::WaitingForApproval {
        return Err(conflict(b, format!("be approved by `{by}`")));
    }
    if !b.approved_by.iter().any(|a| a == by) {
        b.approved_by.push(by.to_owned());
    }
    if b.approved_by.len() >= b.approvals_required as usize {
        b.state = BuildState::Pending;
        tracing::debug!(build = %b.id, "build approved");
    }
    Ok(())
}

/// A claim of `attempt` by `worker`: pending, and `attempt` one past the current one.
pub(crate) fn claim(b: &mut Build, attempt: u32, worker: &str) -> StoreResult<()> {
    if b.state != BuildState::Pending {
        return Err(conflict(b, format!("claim attempt {attempt}")));
    }
    if attempt <= b.attempt {
        return Err(StoreError::Stale {
            build: b.id,
            attempt,
            current: b.attempt,
        });
    }
    if attempt != b.attempt + 1 {
        return Err(StoreError::Invalid(format!(
            "build {}: a claim of attempt {attempt} skips attempt {}",
            b.id,
            b.attempt + 1
        )));
    }
    b.state = BuildState::Claimed;
    b.attempt = attempt;
    b.worker = Some(worker.to_owned());
    tracing::debug!(build = %b.id, attempt, worker, "build claimed");
    Ok(())
}

/// The start of a claimed build (a no-op when it runs already).
pub(crate) fn start(b: &mut Build, attempt: u32) -> StoreResult<()> {
    fence(b, attempt)?;
    match b.state {
        BuildState::Running => Ok(()),
        BuildState::Claimed => {
            b.state = BuildState::Running;
            b.started_at_ms = Some(now_ms());
            Ok(())
        }
        _ => Err(conflict(b, format!("start attempt {attempt}"))),
    }
}

/// Whether `attempt` may record a step summary now.
pub(crate) fn record_step(b: &Build, attempt: u32, step: &StepId) -> StoreResult<()> {
    fence(b, attempt)?;
    if !b.state.is_held() {
        return Err(conflict(b, format!("record step `{step}`")));
    }
    Ok(())
}

/// The one terminal result. `Ok(false)` when it repeats the result the build has.
pub(crate) fn finish(
    b: &mut Build,
    attempt: u32,
    status: BuildStatus,
    reason: Option<String>,
) -> StoreResult<bool> {
    let Some(terminal) = BuildState::terminal(status) else {
        return Err(StoreError::Invalid(format!(
            "build {} cannot finish as `{status}`: not a terminal status",
            b.id
        )));
    };
    fence(b, attempt)?;
    if b.state == terminal {
        return Ok(false);
    }
    if b.state.is_terminal() {
        return Err(conflict(b, format!("finish as {status}")));
    }
    b.state = terminal;
    b.reason = reason;
    b.finished_at_ms = Some(now_ms());
    tracing::debug!(build = %b.id, attempt, %status, "build finished");
    Ok(true)
}

/// A re-queue of a held build; the caller drops the attempt's step summaries.
pub(crate) fn requeue(b: &mut Build, attempt: u32) -> StoreResult<()> {
    fence(b, attempt)?;
    if !b.state.is_held() {
        return Err(conflict(b, format!("re-queue attempt {attempt}")));
    }
    b.state = BuildState::Pending;
    b.worker = None;
    b.started_at_ms = None;
    tracing::debug!(build = %b.id, attempt, "build re-queued");
    Ok(())
}
