//! How a worker reports to the server: claim an attempt, send its events, end it. The server
//! side is the store's only writer; every call carries the attempt, so a worker fenced off by
//! a newer claim changes nothing.

use crate::hub::Hub;
use async_trait::async_trait;
use pipewright_core::{BuildStatus, CancellationToken, Event, EventKind};
use pipewright_store::{BuildId, EventRecord, StepSummary, StoreError};
use std::sync::Arc;

/// Why a report was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The attempt is not (or no longer) this worker's: drop the build, do not retry.
    #[error("{0}")]
    Fenced(String),
    /// The server could not take it now; the queue redelivers.
    #[error("{0}")]
    Unavailable(String),
    /// The worker may not report at all (its token is unknown, revoked or not a worker's):
    /// give the build back and stop.
    #[error("{0}")]
    Refused(String),
}

impl From<StoreError> for LinkError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Stale { .. }
            | StoreError::Conflict { .. }
            | StoreError::NotFound { .. } => LinkError::Fenced(e.to_string()),
            other => LinkError::Unavailable(other.to_string()),
        }
    }
}

impl From<pipewright_versions::StoreError> for LinkError {
    fn from(e: pipewright_versions::StoreError) -> Self {
        StoreError::from(e).into()
    }
}

/// A claimed attempt.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Cancelled when the build is to stop (a user cancelled it, a newer build interrupted it).
    pub cancel: CancellationToken,
}

/// The server's answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Beat {
    /// Stop the build (a user cancelled it, a newer build interrupted it).
    pub cancel: bool,
}

/// A worker's side of the conversation with the server.
#[async_trait]
pub trait WorkerLink: Send + Sync {
    /// Claims `attempt` of `build` for `worker` (a compare-and-set: of several claims of one
    /// attempt, one wins) and marks it running.
    async fn claim(&self, build: BuildId, attempt: u32, worker: &str) -> Result<Claim, LinkError>;

    /// Tells the server this worker is alive and what it takes (at start and now and then),
    /// so builds for its tags are dispatched before it ever claims one.
    async fn announce(
        &self,
        _worker: &str,
        _tags: &[String],
        _concurrency: usize,
    ) -> Result<(), LinkError> {
        Ok(())
    }

    /// Renews the attempt's lease. [`LinkError::Fenced`] when the lease was lost (the build
    /// was re-queued): the worker must stop the build and report nothing more.
    async fn heartbeat(
        &self,
        build: BuildId,
        attempt: u32,
        worker: &str,
    ) -> Result<Beat, LinkError>;

    /// Stores a batch of the attempt's events (already numbered for the build's stream).
    async fn events(
        &self,
        build: BuildId,
        attempt: u32,
        events: Vec<Event>,
    ) -> Result<(), LinkError>;

    /// Ends the attempt with its result (the reason already masked).
    async fn finish(
        &self,
        build: BuildId,
        attempt: u32,
        status: BuildStatus,
        reason: Option<String>,
    ) -> Result<(), LinkError>;
}

/// The in-process side: a worker in the server's own process reports straight to the hub.
#[derive(Debug, Clone)]
pub struct LocalLink(pub Arc<Hub>);

#[async_trait]
impl WorkerLink for LocalLink {
    async fn claim(&self, build: BuildId, attempt: u32, worker: &str) -> Result<Claim, LinkError> {
        self.0.claim(build, attempt, worker).await
    }

    async fn announce(
        &self,
        worker: &str,
        tags: &[String],
        concurrency: usize,
    ) -> Result<(), LinkError> {
        self.0.register_worker(
            worker,
            crate::hub::WorkerInfo {
                tags: tags.to_vec(),
                concurrency,
                last_seen_ms: 0,
            },
        );
        Ok(())
    }

    async fn heartbeat(
        &self,
        build: BuildId,
        attempt: u32,
        worker: &str,
    ) -> Result<Beat, LinkError> {
        self.0.heartbeat(build, attempt, worker)
    }

    async fn events(
        &self,
        build: BuildId,
        attempt: u32,
        events: Vec<Event>,
    ) -> Result<(), LinkError> {
        self.0.take_events(build, attempt, events).await
    }

    async fn finish(
        &self,
        build: BuildId,
        attempt: u32,
        status: BuildStatus,
        reason: Option<String>,
    ) -> Result<(), LinkError> {
        self.0.take_result(build, attempt, status, reason).await
    }
}

impl Hub {
    /// A worker claims an attempt.
    pub async fn claim(
        &self,
        build: BuildId,
        attempt: u32,
        worker: &str,
    ) -> Result<Claim, LinkError> {
        let claimed = self.store.claim_build(build, attempt, worker).await;
        let b = match claimed {
            Ok(b) => b,
            // The same claim again (its answer was lost on the way): the worker holds it.
            Err(StoreError::Stale { .. })
                if self.holds(build, attempt, worker)
                    && let Some(t) = self
                        .cancels
                        .lock()
                        .ok()
                        .and_then(|c| c.get(&build).cloned()) =>
            {
                return Ok(Claim { cancel: t });
            }
            Err(e) => {
                // Not this attempt's to run (a duplicate, or the build ended meanwhile).
                let state = self
                    .store
                    .build(build)
                    .await
                    .ok()
                    .flatten()
                    .map(|b| b.state);
                if state.is_none_or(|s| !s.is_held())
                    && let Ok(mut a) = self.active.lock()
                {
                    a.remove(&build);
                }
                return Err(e.into());
            }
        };
        self.store.start_build(build, attempt).await?;
        let cancel = CancellationToken::new();
        if let Ok(mut c) = self.cancels.lock() {
            c.insert(build, cancel.clone());
        }
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(&build);
        }
        if let Ok(mut l) = self.leases.lock() {
            l.insert(
                build,
                crate::hub::Lease {
                    attempt,
                    worker: worker.to_owned(),
                    expires: std::time::Instant::now() + self.options.lease,
                },
            );
        }
        if let Some(at) = self
            .active
            .lock()
            .ok()
            .and_then(|a| a.get(&build).map(|x| x.dispatched_at))
        {
            self.metrics.observe_dispatch(at.elapsed());
        }
        tracing::info!(build = %build, attempt, worker, job = %b.job, number = b.number, "build started");
        self.announce(build);
        Ok(Claim { cancel })
    }

    /// A worker's heartbeat for an attempt: renews its lease, or says it is lost.
    pub fn heartbeat(&self, build: BuildId, attempt: u32, worker: &str) -> Result<Beat, LinkError> {
        self.touch_worker(worker);
        self.renew(build, attempt, worker)?;
        let cancel = self
            .cancels
            .lock()
            .ok()
            .and_then(|c| c.get(&build).map(CancellationToken::is_cancelled))
            .unwrap_or(false);
        Ok(Beat { cancel })
    }

    /// Whether `worker` holds the lease of `attempt` of `build`.
    fn holds(&self, build: BuildId, attempt: u32, worker: &str) -> bool {
        self.leases
            .lock()
            .ok()
            .and_then(|l| {
                l.get(&build)
                    .map(|x| x.attempt == attempt && x.worker == worker)
            })
            .unwrap_or(false)
    }

    /// Extends the lease of `attempt` of `build` held by `worker`; fenced when it is not held.
    pub(crate) fn renew(
        &self,
        build: BuildId,
        attempt: u32,
        worker: &str,
    ) -> Result<(), LinkError> {
        let mut leases = self
            .leases
            .lock()
            .map_err(|_| LinkError::Unavailable("the lease table's lock is poisoned".into()))?;
        match leases.get_mut(&build) {
            Some(l) if l.attempt == attempt && l.worker == worker => {
                l.expires = std::time::Instant::now() + self.options.lease;
                Ok(())
            }
            _ => Err(LinkError::Fenced(format!(
                "build {build} attempt {attempt} is not held by {worker} (its lease lapsed and it was re-queued)"
            ))),
        }
    }

    /// Renews the lease of `attempt` of `build`, whoever holds it; fenced when none does.
    fn check_lease(&self, build: BuildId, attempt: u32) -> Result<(), LinkError> {
        let worker = self
            .leases
            .lock()
            .ok()
            .and_then(|l| l.get(&build).map(|x| x.worker.clone()))
            .unwrap_or_default();
        self.renew(build, attempt, &worker)
    }

    /// Re-queues builds whose worker stopped heartbeating; a build past its attempts ends
    /// `errored`.
    pub(crate) async fn expire_leases(&self) {
        let now = std::time::Instant::now();
        let lapsed: Vec<(BuildId, crate::hub::Lease)> = self
            .leases
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(_, x)| x.expires <= now)
                    .map(|(id, x)| (*id, x.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (id, lease) in lapsed {
            tracing::warn!(build = %id, attempt = lease.attempt, worker = %lease.worker, "the worker stopped reporting: its lease lapsed");
            if let Some(t) = self.cancels.lock().ok().and_then(|c| c.get(&id).cloned()) {
                t.cancel();
            }
            let why = format!("worker {} stopped reporting", lease.worker);
            if let Err(e) = self.requeue_or_error(id, lease.attempt, &why).await {
                tracing::warn!(build = %id, error = %e, "could not re-queue the build");
            }
            self.forget(id);
            self.announce(id);
            self.wake_dispatcher();
        }
    }

    /// Puts a held build back to pending, unless it has used its attempts: then it ends
    /// `errored` with `why`.
    pub(crate) async fn requeue_or_error(
        &self,
        id: BuildId,
        attempt: u32,
        why: &str,
    ) -> Result<(), StoreError> {
        if attempt >= self.options.max_attempts {
            let reason = format!(
                "the build was started {attempt} times and never finished (last: {why}); giving up"
            );
            let done = self
                .store
                .finish_build(id, attempt, BuildStatus::Errored, Some(reason))
                .await?;
            self.metrics.build_finished(BuildStatus::Errored);
            self.notify_end(&done, BuildStatus::Errored);
        } else {
            self.store.requeue_build(id, attempt).await?;
        }
        Ok(())
    }

    /// A batch of a running attempt's events: stored in one call, with the summary of every
    /// step that finished.
    pub async fn take_events(
        &self,
        build: BuildId,
        attempt: u32,
        events: Vec<Event>,
    ) -> Result<(), LinkError> {
        // Reports renew the lease like heartbeats; a lost lease fences them off.
        self.check_lease(build, attempt)?;
        let records: Vec<EventRecord> = events
            .iter()
            .map(EventRecord::from_event)
            .collect::<Result<_, _>>()?;
        self.store.append_events(build, attempt, &records).await?;
        self.metrics.events_stored(records.len());
        for e in &events {
            if let EventKind::StepFinished {
                step,
                attempt: tries,
                status,
                duration_ms,
                reason,
                ..
            } = &e.kind
            {
                let summary = StepSummary {
                    step: step.clone(),
                    status: *status,
                    attempts: *tries,
                    duration_ms: Some(*duration_ms),
                    reason: reason.clone(),
                };
                self.store.record_step(build, attempt, &summary).await?;
            }
        }
        for e in &events {
            if let EventKind::BuildFinished {
                status, versions, ..
            } = &e.kind
            {
                self.record_versions(build, *status, versions).await?;
            }
        }
        self.announce(build);
        Ok(())
    }

    /// What a finished attempt used and produced, kept for `passed` and triggers: the server
    /// records it (a worker has no store), and versions its puts made are new versions of
    /// those resources.
    async fn record_versions(
        &self,
        build: BuildId,
        status: BuildStatus,
        versions: &pipewright_core::BuildVersions,
    ) -> Result<(), LinkError> {
        use pipewright_versions::VersionStore;
        let Some(b) = self.store.build(build).await? else {
            return Ok(());
        };
        let store = self.versions(&b.pipeline);
        let mut outputs = std::collections::BTreeMap::new();
        let mut grown = Vec::new();
        for (rid, produced) in &versions.produced {
            let before = store.latest_version(rid).await?.map(|(id, _)| id);
            let ids = store.save_versions(rid, produced).await?;
            if ids.iter().any(|id| Some(*id) > before) {
                grown.push(rid.clone());
            }
            outputs.insert(rid.clone(), ids);
        }
        store
            .record_build(pipewright_versions::BuildRecord {
                job: b.job.clone(),
                number: b.number,
                status,
                inputs: b.inputs.clone(),
                outputs,
            })
            .await?;
        if let Ok(mut g) = self.grown.lock() {
            g.extend(grown.into_iter().map(|r| (b.pipeline.clone(), r)));
        }
        Ok(())
    }

    /// The result of an attempt.
    pub async fn take_result(
        self: &Arc<Self>,
        build: BuildId,
        attempt: u32,
        status: BuildStatus,
        reason: Option<String>,
    ) -> Result<(), LinkError> {
        // A re-queued build keeps its attempt until the next claim: only the lease tells a
        // late result of a lost worker from the current one.
        self.check_lease(build, attempt)?;
        let reason = match status {
            BuildStatus::Cancelled => self
                .cancel_reasons
                .lock()
                .ok()
                .and_then(|mut r| r.remove(&build))
                .or(reason),
            _ => reason,
        };
        let done = self
            .store
            .finish_build(build, attempt, status, reason)
            .await;
        self.forget(build);
        self.announce(build);
        self.wake_dispatcher();
        let b = done?;
        self.metrics.build_finished(status);
        tracing::info!(build = %build, job = %b.job, number = b.number, status = %status, "build finished");
        let grown: Vec<(String, String)> = self
            .grown
            .lock()
            .map(|mut g| std::mem::take(&mut *g))
            .unwrap_or_default();
        let passed = matches!(status, BuildStatus::Succeeded | BuildStatus::Warning);
        let hub = self.clone();
        tokio::spawn(async move {
            for (pipeline, rid) in grown {
                hub.on_new_versions(&pipeline, &rid).await;
            }
            if passed {
                hub.on_job_passed(&b.pipeline, &b.job).await;
            }
        });
        Ok(())
    }
}
