//! The dispatcher: pending builds become plans on the queue when their job's `concurrency`
//! and `serial_groups` allow; and restart recovery.

use crate::error::{ServerError, ServerResult};
use crate::hub::{Active, Hub};
use crate::queue::Dispatch;
use pipewright_core::{BuildStatus, CancellationToken};
use pipewright_engine::{BuildPlan, PlannedInput};
use pipewright_store::{Build, BuildState};
use pipewright_versions::VersionStore;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

impl Hub {
    /// Puts builds a previous server process held (claimed or running when it died) back to
    /// pending: their next claim is attempt + 1; nothing is lost and nothing runs twice at once.
    /// Returns how many were re-queued.
    pub async fn recover(&self) -> ServerResult<usize> {
        let mut n = 0;
        let mut after = None;
        loop {
            let held = self
                .store
                .builds_in_state(&[BuildState::Claimed, BuildState::Running], 200, after)
                .await?;
            let Some(last) = held.last().map(|b| b.id) else {
                break;
            };
            for b in held {
                self.requeue_or_error(b.id, b.attempt, "the server stopped while it ran")
                    .await?;
                tracing::info!(build = %b.id, pipeline = %b.pipeline, job = %b.job, number = b.number, attempt = b.attempt, "re-queued a build the previous server was running");
                n += 1;
            }
            after = Some(last);
        }
        Ok(n)
    }

    /// The plan of `build`: its job from the pipeline in effect and the versions pinned when it
    /// was created.
    pub(crate) async fn plan_for(&self, build: &Build) -> ServerResult<BuildPlan> {
        let p = self.pipeline(&build.pipeline).ok_or_else(|| {
            ServerError::NotFound(format!(
                "the pipeline `{}` is no longer served",
                build.pipeline
            ))
        })?;
        if !p.jobs.contains_key(&build.job) {
            return Err(ServerError::NotFound(format!(
                "the pipeline `{}` no longer has job `{}`",
                build.pipeline, build.job
            )));
        }
        let store = self.versions(&build.pipeline);
        let mut inputs = BTreeMap::new();
        for (rid, id) in &build.inputs {
            let version = store.version(rid, *id).await?.ok_or_else(|| {
                ServerError::NotFound(format!("version {} of `{rid}` is no longer stored", id.0))
            })?;
            inputs.insert(
                rid.clone(),
                PlannedInput {
                    resource: rid.clone(),
                    version: Some(version),
                    local_dir: None,
                    why: format!("pinned when build #{} was created", build.number),
                    unresolved: None,
                },
            );
        }
        let mut plan = BuildPlan::new(
            &p,
            &build.pipeline,
            &build.job,
            build.number,
            inputs,
            build.input_values.clone(),
        );
        // Only `fixed` and `broken` read it: spare the query otherwise.
        let compares = p
            .notifications
            .values()
            .any(|n| n.on.iter().any(|o| o == "fixed" || o == "broken"));
        if compares {
            plan.previous_status = self.previous_status(build).await?;
        }
        plan.url = self.page_url(build.id);
        if let Some(old) = build.rerun_of
            && build.trigger.contains(crate::rerun::FROM_FAILED)
            && let (Some(old), Some(job)) = (self.store.build(old).await?, p.jobs.get(&build.job))
        {
            plan.restore = self.restorable(&old, job).await?.0;
        }
        Ok(plan)
    }

    /// The link to a build's page in the UI, when the server knows its external URL.
    pub(crate) fn page_url(&self, id: pipewright_store::BuildId) -> Option<String> {
        self.options
            .external_url
            .as_deref()
            .map(|base| format!("{}/#/builds/{id}", base.trim_end_matches('/')))
    }

    /// Sends the notifications of `build`'s approval gate in the background; a failure is
    /// logged (masked) and never changes the build.
    pub(crate) fn notify_approval(self: &Arc<Self>, build: &Build) {
        let Some(p) = self.pipeline(&build.pipeline) else {
            return;
        };
        let wanted = p
            .jobs
            .get(&build.job)
            .and_then(|j| j.approve.as_ref())
            .is_some_and(|a| !a.notify.is_empty());
        if !wanted {
            return;
        }
        let hub = self.clone();
        let build = build.clone();
        tokio::spawn(async move {
            let opts = pipewright_engine::RunOptions {
                pipeline_name: build.pipeline.clone(),
                number: build.number,
                job_inputs: build.input_values.clone(),
                store: Some(Arc::new(hub.versions(&build.pipeline))),
                cancel: hub.shutdown.child_token(),
                build_url: hub.page_url(build.id),
                ..pipewright_engine::RunOptions::default()
            };
            match hub.engine.notify_approval(&p, &build.job, &opts).await {
                Ok(failures) => {
                    for reason in failures {
                        tracing::warn!(build = %build.id, reason, "an approval notification was not sent");
                    }
                }
                Err(e) => {
                    tracing::warn!(build = %build.id, error = %e, "approval notifications were not sent")
                }
            }
        });
    }

    /// Sends, in the background, the notifications due for `build`, which ended with
    /// `status` without its engine reporting (cancelled while waiting, approval timeout, could
    /// not be planned, given up after its attempts). A failure is logged (masked).
    pub(crate) fn notify_end(&self, build: &Build, status: BuildStatus) {
        let Some(p) = self.pipeline(&build.pipeline) else {
            return;
        };
        if !p.notifications.values().any(|n| !n.on.is_empty()) || !p.jobs.contains_key(&build.job) {
            return;
        }
        let Some(hub) = self.me.upgrade() else {
            return;
        };
        let build = build.clone();
        tokio::spawn(async move {
            let previous = hub.previous_status(&build).await.ok().flatten();
            let opts = pipewright_engine::RunOptions {
                pipeline_name: build.pipeline.clone(),
                number: build.number,
                job_inputs: build.input_values.clone(),
                store: Some(Arc::new(hub.versions(&build.pipeline))),
                cancel: hub.shutdown.child_token(),
                build_url: hub.page_url(build.id),
                previous_status: previous
                    .map(|s| BTreeMap::from([(build.job.clone(), s)]))
                    .unwrap_or_default(),
                ..pipewright_engine::RunOptions::default()
            };
            match hub.engine.notify_end(&p, &build.job, status, &opts).await {
                Ok(failures) => {
                    for reason in failures {
                        tracing::warn!(build = %build.id, reason, "a notification was not sent");
                    }
                }
                Err(e) => {
                    tracing::warn!(build = %build.id, error = %e, "notifications were not sent")
                }
            }
        });
    }

    /// The status of the newest finished build of `build`'s job numbered below it, for the
    /// `fixed` and `broken` notification rules (`None`: none among the last 50).
    async fn previous_status(&self, build: &Build) -> ServerResult<Option<BuildStatus>> {
        let earlier = self
            .store
            .job_builds(&build.pipeline, &build.job, 50, Some(build.number))
            .await?;
        Ok(earlier.iter().map(Build::status).find(|s| s.is_terminal()))
    }

    /// Cancels builds that waited for approval longer than their gate's `timeout`.
    pub(crate) async fn expire_approvals(&self) -> ServerResult<()> {
        let waiting = self
            .store
            .builds_in_state(&[BuildState::WaitingForApproval], 1000, None)
            .await?;
        let now = crate::hub::now_ms();
        for b in waiting {
            let timeout = self
                .pipeline(&b.pipeline)
                .and_then(|p| p.jobs.get(&b.job).and_then(|j| j.approve.clone()))
                .and_then(|a| a.timeout);
            let Some(timeout) = timeout else { continue };
            let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            if now.saturating_sub(b.created_at_ms) < limit {
                continue;
            }
            let reason = format!(
                "no approval within {}",
                pipewright_core::format_duration(timeout)
            );
            match self
                .store
                .finish_build(b.id, b.attempt, BuildStatus::Cancelled, Some(reason))
                .await
            {
                Ok(_) => {
                    tracing::info!(build = %b.id, "approval timed out");
                    self.metrics.build_finished(BuildStatus::Cancelled);
                    self.announce(b.id);
                    self.notify_end(&b, BuildStatus::Cancelled);
                }
                Err(e) => {
                    tracing::warn!(build = %b.id, error = %e, "could not expire the approval")
                }
            }
        }
        Ok(())
    }

    /// One pass: dispatches every pending build whose job may start one now, oldest first.
    pub(crate) async fn dispatch_round(&self) -> ServerResult<usize> {
        let pending = self
            .store
            .builds_in_state(&[BuildState::Pending], 1000, None)
            .await?;
        let workers = self.workers();
        let mut sent = 0;
        let mut blocked_groups: BTreeSet<(String, String)> = BTreeSet::new();
        for b in pending {
            if self
                .active
                .lock()
                .map(|a| a.contains_key(&b.id))
                .unwrap_or(true)
            {
                continue;
            }
            let Some(p) = self.pipeline(&b.pipeline) else {
                self.error_build(&b, "the pipeline is no longer served")
                    .await;
                continue;
            };
            let Some(job) = p.jobs.get(&b.job) else {
                self.error_build(&b, &format!("the pipeline no longer has job `{}`", b.job))
                    .await;
                continue;
            };
            let groups: Vec<(String, String)> = job
                .serial_groups
                .iter()
                .map(|g| (b.pipeline.clone(), g.clone()))
                .collect();
            if let Some(why) = self.must_wait(&b, job, &groups, &blocked_groups, &p.jobs) {
                blocked_groups.extend(groups);
                self.set_waiting(&b, why);
                continue;
            }
            if !workers.is_empty()
                && !workers
                    .values()
                    .any(|w| job.tags.iter().all(|t| w.tags.contains(t)))
            {
                self.set_waiting(
                    &b,
                    format!("no worker advertises the tags {}", job.tags.join(", ")),
                );
                continue;
            }
            let plan = match self.plan_for(&b).await {
                Ok(plan) => plan,
                Err(e) => {
                    self.error_build(&b, &format!("the build cannot be planned: {e}"))
                        .await;
                    continue;
                }
            };
            // Only workers write events, and only after a claim: a build never claimed has none.
            let seq_base = if b.attempt == 0 {
                0
            } else {
                self.store.last_event_seq(b.id).await?.map_or(0, |s| s + 1)
            };
            let dispatch = Dispatch {
                build: b.id,
                attempt: b.attempt + 1,
                seq_base,
                tags: job.tags.clone(),
                plan,
            };
            if let Ok(mut a) = self.active.lock() {
                a.insert(
                    b.id,
                    Active {
                        pipeline: b.pipeline.clone(),
                        job: b.job.clone(),
                        dispatched_at: std::time::Instant::now(),
                    },
                );
            }
            let published = match dispatch.to_message() {
                Ok(m) => self.queue.publish(m).await,
                Err(e) => Err(e),
            };
            match published {
                Ok(_) => {
                    sent += 1;
                    let why = if job.tags.is_empty() {
                        "in the queue: waiting for a worker to take it".to_owned()
                    } else {
                        format!(
                            "in the queue: waiting for a worker with the tags {}",
                            job.tags.join(", ")
                        )
                    };
                    self.set_waiting(&b, why);
                }
                Err(e) => {
                    tracing::warn!(build = %b.id, error = %e, "could not queue the build; trying again");
                    if let Ok(mut a) = self.active.lock() {
                        a.remove(&b.id);
                    }
                }
            }
        }
        if let Ok(depth) = self.queue.depth().await {
            self.metrics.set_queue_depth(depth);
        }
        Ok(sent)
    }

    /// Why `b` must wait, if it must: its job has `concurrency` builds going, or a build of a
    /// job sharing a serial group is going (or an older one is waiting for it).
    fn must_wait(
        &self,
        b: &Build,
        job: &pipewright_config::Job,
        groups: &[(String, String)],
        blocked: &BTreeSet<(String, String)>,
        jobs: &indexmap::IndexMap<String, pipewright_config::Job>,
    ) -> Option<String> {
        let active: Vec<Active> = self
            .active
            .lock()
            .map(|a| a.values().cloned().collect())
            .unwrap_or_default();
        let same_job = active
            .iter()
            .filter(|a| a.pipeline == b.pipeline && a.job == b.job)
            .count();
        if job.concurrency > 0 && same_job >= job.concurrency as usize {
            return Some(format!(
                "waiting: job `{}` runs at most {} build{} at once",
                b.job,
                job.concurrency,
                if job.concurrency == 1 { "" } else { "s" }
            ));
        }
        if let Some((_, g)) = groups.iter().find(|g| blocked.contains(*g)) {
            return Some(format!(
                "waiting: an older build of serial group `{g}` goes first"
            ));
        }
        let mut by_job: HashMap<&str, usize> = HashMap::new();
        for a in active.iter().filter(|a| a.pipeline == b.pipeline) {
            *by_job.entry(a.job.as_str()).or_default() += 1;
        }
        for (other, _) in by_job {
            let Some(o) = jobs.get(other) else { continue };
            if let Some(g) = o
                .serial_groups
                .iter()
                .find(|g| job.serial_groups.contains(g))
            {
                return Some(format!("waiting: job `{other}` holds serial group `{g}`"));
            }
        }
        None
    }

    fn set_waiting(&self, b: &Build, why: String) {
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(b.id, why);
        }
    }

    async fn error_build(&self, b: &Build, reason: &str) {
        tracing::warn!(build = %b.id, reason, "build errored before it could run");
        match self
            .store
            .finish_build(
                b.id,
                b.attempt,
                BuildStatus::Errored,
                Some(reason.to_owned()),
            )
            .await
        {
            Ok(_) => {
                self.metrics.build_finished(BuildStatus::Errored);
                self.notify_end(b, BuildStatus::Errored);
            }
            Err(e) => tracing::warn!(build = %b.id, error = %e, "could not record the error"),
        }
        self.forget(b.id);
        self.announce(b.id);
    }
}

/// Runs dispatch rounds when woken (a build was created, approved or ended) and every second,
/// until `stop`.
pub(crate) async fn dispatcher(hub: Arc<Hub>, stop: CancellationToken) {
    let mut last_expiry: Option<std::time::Instant> = None;
    loop {
        if let Err(e) = hub.dispatch_round().await {
            tracing::warn!(error = %e, "dispatch round failed");
        }
        hub.expire_leases().await;
        // Approval timeouts are whole seconds or more: a busy dispatcher (woken per build)
        // need not read the waiting builds every round.
        if last_expiry.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            last_expiry = Some(std::time::Instant::now());
            if let Err(e) = hub.expire_approvals().await {
                tracing::warn!(error = %e, "approval expiry failed");
            }
        }
        // A memory store never makes this task wait: yield, so tasks it woke run (a woken
        // task waits in this thread's LIFO slot, which other threads cannot steal).
        tokio::task::yield_now().await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = hub.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
