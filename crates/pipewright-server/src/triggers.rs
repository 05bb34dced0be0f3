//! What creates builds: new versions, upstream successes, manual triggers and reruns; and
//! what ends them early: cancel, interruptible jobs.

use crate::error::{ServerError, ServerResult};
use crate::hub::Hub;
use pipewright_config::{Job, StepKind, VersionPolicy};
use pipewright_core::{BuildStatus, CancellationToken};
use pipewright_engine::RunOptions;
use pipewright_store::{Build, BuildId, BuildState, NewBuild};
use pipewright_versions::{VersionId, VersionStore};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The `get`s of a job, nested steps included.
fn gets(job: &Job) -> Vec<&pipewright_config::GetStep> {
    job.all_steps()
        .into_iter()
        .filter_map(|s| match &s.kind {
            StepKind::Get(g) => Some(g),
            _ => None,
        })
        .collect()
}

impl Hub {
    /// Looks at every job of `pipeline` for builds its versions call for.
    pub(crate) async fn evaluate_pipeline(self: &Arc<Self>, pipeline: &str) {
        let Some(p) = self.pipeline(pipeline) else {
            return;
        };
        for job in p.jobs.keys() {
            self.evaluate_job(pipeline, job).await;
        }
    }

    /// `rid` of `pipeline` has new versions: evaluate the jobs it triggers.
    pub(crate) async fn on_new_versions(self: &Arc<Self>, pipeline: &str, rid: &str) {
        let Some(p) = self.pipeline(pipeline) else {
            return;
        };
        let jobs: Vec<String> = p
            .jobs
            .values()
            .filter(|j| gets(j).iter().any(|g| g.trigger && g.resource == rid))
            .map(|j| j.name.clone())
            .collect();
        for job in jobs {
            self.evaluate_job(pipeline, &job).await;
        }
    }

    /// A build of `job` passed: evaluate the jobs whose triggering gets name it in `passed`.
    pub(crate) async fn on_job_passed(self: &Arc<Self>, pipeline: &str, job: &str) {
        let Some(p) = self.pipeline(pipeline) else {
            return;
        };
        let jobs: Vec<String> = p
            .jobs
            .values()
            .filter(|j| {
                gets(j)
                    .iter()
                    .any(|g| g.trigger && g.passed.iter().any(|u| u == job))
            })
            .map(|j| j.name.clone())
            .collect();
        for job in jobs {
            self.evaluate_job(pipeline, &job).await;
        }
    }

    /// Creates the builds `job` needs now: one for the newest allowed versions of its
    /// triggering inputs when they differ from its newest build's (`latest` coalesces), or one
    /// per new version for a `version = "every"` input. Errors are logged, never raised: a job
    /// that cannot be planned (its `passed` not satisfied yet) just has no build.
    pub(crate) async fn evaluate_job(self: &Arc<Self>, pipeline: &str, job: &str) {
        if let Err(e) = self.evaluate_job_inner(pipeline, job).await {
            tracing::warn!(pipeline, job, error = %e, "could not evaluate the job's triggers");
        }
    }

    async fn evaluate_job_inner(self: &Arc<Self>, pipeline: &str, job: &str) -> ServerResult<()> {
        let Some(p) = self.pipeline(pipeline) else {
            return Ok(());
        };
        let Some(j) = p.jobs.get(job) else {
            return Ok(());
        };
        let triggers: Vec<&pipewright_config::GetStep> =
            gets(j).into_iter().filter(|g| g.trigger).collect();
        if triggers.is_empty() {
            return Ok(());
        }
        let _one_at_a_time = self.triggering.lock().await;
        let Ok(chosen) = self.choose(pipeline, &p, job, &BTreeMap::new()).await else {
            return Ok(());
        };
        let latest = self.store.job_builds(pipeline, job, 1, None).await?;
        let last = latest.first();
        let unchanged = |inputs: &BTreeMap<String, VersionId>| {
            last.is_some_and(|b| {
                triggers
                    .iter()
                    .all(|g| b.inputs.get(&g.resource) == inputs.get(&g.resource))
            })
        };
        let every: Vec<&&pipewright_config::GetStep> = triggers
            .iter()
            .filter(|g| g.version == VersionPolicy::Every)
            .collect();
        if let (Some(g), Some(b)) = (every.first(), last) {
            // One build per version between the last built and the newest allowed, oldest first.
            let (from, to) = (
                b.inputs.get(&g.resource).copied(),
                chosen.get(&g.resource).copied(),
            );
            let ids = self.versions_between(pipeline, g, from, to).await?;
            for id in ids {
                let mut inputs = chosen.clone();
                inputs.insert(g.resource.clone(), id);
                self.create_build(
                    pipeline,
                    j,
                    inputs,
                    BTreeMap::new(),
                    new_version_reason(&triggers),
                    None,
                )
                .await?;
            }
            return Ok(());
        }
        if unchanged(&chosen) {
            return Ok(());
        }
        self.create_build(
            pipeline,
            j,
            chosen,
            BTreeMap::new(),
            new_version_reason(&triggers),
            None,
        )
        .await?;
        Ok(())
    }

    /// Ids of `g`'s resource above `from` up to `to`, oldest first, that satisfy its `passed`.
    async fn versions_between(
        &self,
        pipeline: &str,
        g: &pipewright_config::GetStep,
        from: Option<VersionId>,
        to: Option<VersionId>,
    ) -> ServerResult<Vec<VersionId>> {
        let Some(to) = to else {
            return Ok(Vec::new());
        };
        let store = self.versions(pipeline);
        let mut allowed: Option<std::collections::BTreeSet<VersionId>> = None;
        for up in &g.passed {
            let set = store.passed_versions(up, &g.resource).await?;
            allowed = Some(match allowed {
                None => set,
                Some(a) => a.intersection(&set).copied().collect(),
            });
        }
        let mut out = Vec::new();
        let mut before = Some(VersionId(to.0 + 1));
        'pages: loop {
            let page = store.versions(&g.resource, 200, before).await?;
            let Some(last) = page.last().map(|(id, _)| *id) else {
                break;
            };
            for (id, _) in page {
                if Some(id) <= from {
                    break 'pages;
                }
                if allowed.as_ref().is_none_or(|a| a.contains(&id)) {
                    out.push(id);
                }
            }
            before = Some(last);
        }
        out.reverse();
        Ok(out)
    }

    /// The versions a build of `job` would get now, as ids: the planner's choice (pinned →
    /// passed → pin → newest) among what the check loops stored.
    pub(crate) async fn choose(
        &self,
        pipeline: &str,
        p: &pipewright_config::Pipeline,
        job: &str,
        values: &BTreeMap<String, serde_json::Value>,
    ) -> ServerResult<BTreeMap<String, VersionId>> {
        let store = Arc::new(self.versions(pipeline));
        let opts = RunOptions {
            pipeline_name: pipeline.to_owned(),
            job_inputs: values.clone(),
            store: Some(store.clone()),
            no_checks: true,
            cancel: self.shutdown.child_token(),
            ..RunOptions::default()
        };
        let plan = self
            .engine
            .plan(p, job, &opts)
            .await
            .map_err(|e| ServerError::Conflict(e.to_string()))?;
        let mut out = BTreeMap::new();
        for (rid, input) in plan.inputs {
            let Some(v) = input.version else { continue };
            let id = store.find_version(&rid, &v).await?.ok_or_else(|| {
                ServerError::Internal(format!("the chosen version of `{rid}` is not stored"))
            })?;
            out.insert(rid, id);
        }
        Ok(out)
    }

    /// Creates a build of `job` with pinned `inputs`, applying the job's approval gate and
    /// `interruptible`, and wakes the dispatcher.
    pub(crate) async fn create_build(
        self: &Arc<Self>,
        pipeline: &str,
        job: &Job,
        inputs: BTreeMap<String, VersionId>,
        input_values: BTreeMap<String, serde_json::Value>,
        trigger: String,
        rerun_of: Option<BuildId>,
    ) -> ServerResult<Build> {
        let build = self
            .store
            .create_build(NewBuild {
                pipeline: pipeline.to_owned(),
                job: job.name.clone(),
                inputs,
                input_values,
                rerun_of,
                trigger,
                approvals_required: job.approve.as_ref().map_or(0, |a| a.approvals.max(1)),
            })
            .await?;
        tracing::info!(pipeline, job = %job.name, number = build.number, id = %build.id, trigger = %build.trigger, "build created");
        self.metrics.build_created();
        if build.approvals_required > 0 {
            self.notify_approval(&build);
        }
        if job.interruptible {
            self.interrupt_older(&build).await;
        }
        self.announce(build.id);
        self.wake_dispatcher();
        Ok(build)
    }

    /// Cancels the builds of `newer`'s job that are older and not finished.
    async fn interrupt_older(self: &Arc<Self>, newer: &Build) {
        let Ok(builds) = self
            .store
            .job_builds(&newer.pipeline, &newer.job, 50, Some(newer.number))
            .await
        else {
            return;
        };
        for b in builds.iter().filter(|b| !b.state.is_terminal()) {
            let reason = format!("interrupted by the newer build #{}", newer.number);
            if let Err(e) = self.cancel(b.id, &reason).await {
                tracing::warn!(build = %b.id, error = %e, "could not interrupt the build");
            }
        }
    }

    /// Cancels build `id`: a build not yet running ends `cancelled` now; a running one is told
    /// to stop (its hooks and `ensure` still run) and ends when its worker reports.
    pub async fn cancel(self: &Arc<Self>, id: BuildId, reason: &str) -> ServerResult<Build> {
        let b = self.get_build(id).await?;
        if b.state.is_terminal() {
            return Err(ServerError::Conflict(format!(
                "build {id} already ended ({})",
                b.state
            )));
        }
        if let Ok(mut r) = self.cancel_reasons.lock() {
            r.insert(id, reason.to_owned());
        }
        let token: Option<CancellationToken> =
            self.cancels.lock().ok().and_then(|c| c.get(&id).cloned());
        if b.state.is_held()
            && let Some(t) = token
        {
            t.cancel();
            return Ok(b);
        }
        let done = self
            .store
            .finish_build(
                id,
                b.attempt,
                BuildStatus::Cancelled,
                Some(reason.to_owned()),
            )
            .await?;
        self.forget(id);
        self.announce(id);
        self.wake_dispatcher();
        // A held build's engine (on a worker) sends its own notifications as it stops.
        if !b.state.is_held() {
            self.notify_end(&done, BuildStatus::Cancelled);
        }
        Ok(done)
    }

    /// Approves build `id` for `by`.
    pub async fn approve(self: &Arc<Self>, id: BuildId, by: &str) -> ServerResult<Build> {
        let b = self.get_build(id).await?;
        if b.state != BuildState::WaitingForApproval {
            return Err(ServerError::Conflict(format!(
                "build {id} is {}, not waiting for approval",
                b.state
            )));
        }
        let b = self.store.approve_build(id, by).await?;
        tracing::info!(build = %id, by, "build approved");
        self.announce(id);
        self.wake_dispatcher();
        Ok(b)
    }

    /// A manual build of `job` with typed `values` for its inputs.
    pub async fn trigger(
        self: &Arc<Self>,
        pipeline: &str,
        job: &str,
        values: BTreeMap<String, serde_json::Value>,
        by: &str,
    ) -> ServerResult<Build> {
        let p = self
            .pipeline(pipeline)
            .ok_or_else(|| ServerError::NotFound(format!("no pipeline `{pipeline}`")))?;
        let j = p.jobs.get(job).ok_or_else(|| {
            let hint = pipewright_config::suggest(job, p.jobs.keys().map(String::as_str))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            ServerError::NotFound(format!("pipeline `{pipeline}` has no job `{job}`{hint}"))
        })?;
        let values = crate::inputs::check(j, values)?;
        let inputs = self.choose(pipeline, &p, job, &values).await?;
        self.create_build(pipeline, j, inputs, values, format!("manual by {by}"), None)
            .await
    }

    /// A new build with the same versions and input values as build `id`.
    pub async fn rerun(
        self: &Arc<Self>,
        id: BuildId,
        from: pipewright_api::RerunFrom,
        by: &str,
    ) -> ServerResult<Build> {
        let b = self.get_build(id).await?;
        if !b.state.is_terminal() {
            return Err(ServerError::Conflict(format!(
                "build {id} is still {}: cancel it or wait for it to end",
                b.state
            )));
        }
        let p = self
            .pipeline(&b.pipeline)
            .ok_or_else(|| ServerError::NotFound(format!("no pipeline `{}`", b.pipeline)))?;
        let j = p.jobs.get(&b.job).ok_or_else(|| {
            ServerError::NotFound(format!(
                "pipeline `{}` no longer has job `{}`",
                b.pipeline, b.job
            ))
        })?;
        let trigger = match from {
            pipewright_api::RerunFrom::Job => format!("rerun of #{} by {by}", b.number),
            pipewright_api::RerunFrom::FailedStep => {
                let (_, summary) = self.restorable(&b, j).await?;
                format!(
                    "rerun of #{} {} by {by}: {summary}",
                    b.number,
                    crate::rerun::FROM_FAILED
                )
            }
        };
        self.create_build(
            &b.pipeline,
            j,
            b.inputs.clone(),
            b.input_values.clone(),
            trigger,
            Some(b.id),
        )
        .await
    }

    /// Build `id`, or a 404.
    pub async fn get_build(&self, id: BuildId) -> ServerResult<Build> {
        self.store
            .build(id)
            .await?
            .ok_or_else(|| ServerError::NotFound(format!("no build {id}")))
    }

    /// Asks `rid`'s check loop to check now (coalesced with a check already running).
    pub fn check_now(&self, pipeline: &str, rid: &str) -> ServerResult<()> {
        self.resource_exists(pipeline, rid)?;
        self.check_signal(pipeline, rid).notify_one();
        Ok(())
    }

    /// A 404 unless `pipeline` has resource `rid`.
    pub fn resource_exists(&self, pipeline: &str, rid: &str) -> ServerResult<()> {
        let p = self
            .pipeline(pipeline)
            .ok_or_else(|| ServerError::NotFound(format!("no pipeline `{pipeline}`")))?;
        if !p.resources.contains_key(rid) {
            return Err(ServerError::NotFound(format!(
                "pipeline `{pipeline}` has no resource `{rid}`"
            )));
        }
        Ok(())
    }

    /// Pins `rid` to `version` (which it must have), or unpins it with `None`; jobs it
    /// triggers are evaluated again.
    pub async fn pin(
        self: &Arc<Self>,
        pipeline: &str,
        rid: &str,
        version: Option<&pipewright_core::Version>,
    ) -> ServerResult<()> {
        self.resource_exists(pipeline, rid)?;
        let store = self.versions(pipeline);
        let id =
            match version {
                Some(v) => Some(store.find_version(rid, v).await?.ok_or_else(|| {
                    ServerError::BadRequest(format!("`{rid}` has no version {v}"))
                })?),
                None => None,
            };
        store.pin(rid, id).await?;
        self.on_new_versions(pipeline, rid).await;
        Ok(())
    }

    /// Drops the in-memory bookkeeping of a build that ended.
    pub(crate) fn forget(&self, id: BuildId) {
        if let Ok(mut a) = self.active.lock() {
            a.remove(&id);
        }
        if let Ok(mut c) = self.cancels.lock() {
            c.remove(&id);
        }
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(&id);
        }
        if let Ok(mut l) = self.leases.lock() {
            l.remove(&id);
        }
        if let Ok(mut r) = self.cancel_reasons.lock() {
            r.remove(&id);
        }
    }
}

fn new_version_reason(triggers: &[&pipewright_config::GetStep]) -> String {
    let names: Vec<&str> = triggers.iter().map(|g| g.resource.as_str()).collect();
    format!("new version of {}", names.join(", "))
}
