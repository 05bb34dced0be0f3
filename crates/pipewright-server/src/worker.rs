//! A worker: takes build attempts from the queue, claims them, runs their plans with the
//! engine and reports events and results through a [`WorkerLink`]. The in-process worker
//! (`--run-worker`) and a remote one run this same code.

use crate::link::{LinkError, WorkerLink};
use crate::queue::Dispatch;
use pipewright_core::{BuildStatus, CancellationToken, Event};
use pipewright_engine::{ChannelSink, Engine, RunOptions};
use pipewright_queue::{Delivery, Queue, QueueError};
use pipewright_versions::VersionStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// Events sent in one report at most; a busy log costs one store write per batch.
const BATCH: usize = 512;
/// How long a batch waits for more events before it is sent.
const LINGER: Duration = Duration::from_millis(20);

/// The version history a worker gives the engine for a build of pipeline `name`.
pub type VersionsFor = Arc<dyn Fn(&str) -> Arc<dyn VersionStore> + Send + Sync>;

/// Why the server refused this worker, once it did.
type Refusal = Arc<std::sync::Mutex<Option<LinkError>>>;

/// A worker's settings and connections.
#[derive(Clone)]
pub struct Worker {
    /// Its name (shown on builds).
    pub name: String,
    /// Tags it advertises.
    pub tags: Vec<String>,
    /// Builds at once.
    pub concurrency: usize,
    /// How often a running build's lease is renewed (and its queue message kept alive).
    pub heartbeat: Duration,
    /// Stop taking builds after this many (`--ephemeral`: 1).
    pub max_builds: Option<usize>,
    /// Runs the plans.
    pub engine: Engine,
    /// Where attempts come from.
    pub queue: Arc<dyn Queue>,
    /// Where reports go.
    pub link: Arc<dyn WorkerLink>,
    /// Version history the engine reads and records into.
    pub versions: VersionsFor,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("tags", &self.tags)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// The history a worker gives each build: its own, in memory. The server records what
    /// builds used and produced from their events, so a worker needs no store.
    pub fn own_history() -> VersionsFor {
        Arc::new(|_: &str| {
            Arc::new(pipewright_versions::MemoryStore::new()) as Arc<dyn VersionStore>
        })
    }

    /// Takes and runs builds until `drain` (then finishes what it runs and returns). `abandon`
    /// stops running builds without reporting them: the server re-queues them. Returns an
    /// error when the server refuses this worker (a bad token): it gave the build back.
    pub async fn run(
        self,
        drain: CancellationToken,
        abandon: CancellationToken,
    ) -> Result<(), LinkError> {
        // A refusal drains the worker as SIGTERM does, and is the result.
        let drain = drain.child_token();
        let refused: Refusal = Arc::default();
        let hello = {
            let (me, drain, refused) = (self.clone(), drain.clone(), refused.clone());
            tokio::spawn(async move {
                loop {
                    match me.link.announce(&me.name, &me.tags, me.concurrency).await {
                        Err(e @ LinkError::Refused(_)) => {
                            tracing::error!(worker = %me.name, error = %e, "the server refuses this worker: stopping");
                            if let Ok(mut r) = refused.lock() {
                                *r = Some(e);
                            }
                            drain.cancel();
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(worker = %me.name, error = %e, "could not announce this worker; retrying")
                        }
                        Ok(()) => {}
                    }
                    tokio::select! {
                        () = drain.cancelled() => return,
                        () = tokio::time::sleep(me.heartbeat * 10) => {}
                    }
                }
            })
        };
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut running = tokio::task::JoinSet::new();
        let mut taken = 0usize;
        loop {
            if self.max_builds.is_some_and(|m| taken >= m) {
                break;
            }
            let permit = tokio::select! {
                () = drain.cancelled() => break,
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let delivery = tokio::select! {
                () = drain.cancelled() => break,
                d = self.queue.receive(&self.tags) => d,
            };
            match delivery {
                Ok(d) => {
                    taken += 1;
                    let me = self.clone();
                    let abandon = abandon.clone();
                    let (drain, refused) = (drain.clone(), refused.clone());
                    running.spawn(async move {
                        if let Err(e) = me.run_one(d, abandon).await {
                            tracing::error!(worker = %me.name, error = %e, "the server refuses this worker: stopping");
                            if let Ok(mut r) = refused.lock() {
                                *r = Some(e);
                            }
                            drain.cancel();
                        }
                        drop(permit);
                    });
                }
                Err(QueueError::Closed) => break,
                Err(e) => {
                    tracing::warn!(worker = %self.name, error = %e, "cannot take builds; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
        hello.abort();
        match refused.lock().ok().and_then(|mut r| r.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs one delivery; an error only when the server refuses this worker.
    async fn run_one(
        &self,
        delivery: Delivery,
        abandon: CancellationToken,
    ) -> Result<(), LinkError> {
        let delivery = Arc::new(delivery);
        let d = match Dispatch::from_message(&delivery.message) {
            Ok(d) => d,
            Err(e) => {
                // Not ours to understand: drop it rather than fail on it forever.
                tracing::error!(error = %e, "dropping a message that is not a build");
                let _ = delivery.ack().await;
                return Ok(());
            }
        };
        let d = &d;
        let claim = match self.link.claim(d.build, d.attempt, &self.name).await {
            Ok(c) => c,
            Err(LinkError::Fenced(why)) => {
                tracing::debug!(build = %d.build, attempt = d.attempt, why, "not ours to run");
                let _ = delivery.ack().await;
                return Ok(());
            }
            Err(e @ LinkError::Refused(_)) => {
                // Give it back at once for a worker the server accepts.
                let _ = delivery.nak(Duration::ZERO).await;
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(build = %d.build, error = %e, "could not claim the build");
                return Ok(());
            }
        };
        let fenced = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let beat = tokio::spawn(heartbeats(
            self.link.clone(),
            delivery.clone(),
            (d.build, d.attempt, self.name.clone()),
            self.heartbeat,
            claim.cancel.clone(),
            fenced.clone(),
        ));
        let (sink, rx) = ChannelSink::new(4096);
        let forward = tokio::spawn(forward(
            rx,
            self.link.clone(),
            d.build,
            d.attempt,
            d.seq_base,
        ));
        let opts = RunOptions {
            cancel: claim.cancel.clone(),
            force: abandon.child_token(),
            events: Arc::new(sink),
            store: Some((self.versions)(&d.plan.pipeline)),
            ..RunOptions::default()
        };
        let abandoned = abandon.clone();
        let stop_on_abandon = {
            let cancel = claim.cancel.clone();
            tokio::spawn(async move {
                abandoned.cancelled().await;
                cancel.cancel();
            })
        };
        let result = self.engine.run_plan(&d.plan, &opts).await;
        stop_on_abandon.abort();
        beat.abort();
        drop(opts);
        let _ = forward.await;
        if fenced.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::warn!(build = %d.build, attempt = d.attempt, "the build's lease was lost: it was stopped and its result is not reported");
            let _ = delivery.ack().await;
            return Ok(());
        }
        if abandon.is_cancelled() {
            tracing::info!(build = %d.build, "build abandoned at shutdown; the server re-queues it");
            return Ok(());
        }
        let (status, reason) = match result {
            Ok(r) => (r.status, r.reason.map(|m| m.to_string())),
            Err(e) => (BuildStatus::Errored, Some(e.to_string())),
        };
        // Sent again until the server answers (it or NATS may be restarting), for up to two
        // minutes: by then its lease has long lapsed and the build runs elsewhere.
        let until = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut tries: u32 = 0;
        loop {
            match self
                .link
                .finish(d.build, d.attempt, status, reason.clone())
                .await
            {
                Ok(()) | Err(LinkError::Fenced(_)) => {
                    let _ = delivery.ack().await;
                    break;
                }
                Err(e) if tokio::time::Instant::now() < until && !abandon.is_cancelled() => {
                    tries += 1;
                    tracing::warn!(build = %d.build, error = %e, tries, "could not report the result; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(tries.min(10)))).await;
                }
                Err(e) => {
                    tracing::error!(build = %d.build, error = %e, "gave up reporting the result; the server re-queues the build");
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Renews the lease every `every` until aborted; a cancel from the server or a lost lease
/// stops the build.
async fn heartbeats(
    link: Arc<dyn WorkerLink>,
    delivery: Arc<Delivery>,
    (build, attempt, worker): (pipewright_store::BuildId, u32, String),
    every: Duration,
    cancel: CancellationToken,
    fenced: Arc<std::sync::atomic::AtomicBool>,
) {
    loop {
        tokio::time::sleep(every).await;
        match link.heartbeat(build, attempt, &worker).await {
            Ok(beat) if beat.cancel => cancel.cancel(),
            Ok(_) => {}
            Err(LinkError::Fenced(why)) => {
                tracing::warn!(build = %build, attempt, why, "lease lost: stopping the build");
                fenced.store(true, std::sync::atomic::Ordering::SeqCst);
                cancel.cancel();
                return;
            }
            Err(e) => tracing::warn!(build = %build, error = %e, "heartbeat failed; retrying"),
        }
        if let Err(e) = delivery.progress().await {
            tracing::debug!(build = %build, error = %e, "could not keep the queue message alive");
        }
    }
}

/// Sends the engine's events in batches, renumbered after the build's earlier attempts.
async fn forward(
    mut rx: mpsc::Receiver<Event>,
    link: Arc<dyn WorkerLink>,
    build: pipewright_store::BuildId,
    attempt: u32,
    seq_base: u64,
) {
    let mut fenced = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                _ => break,
            }
        }
        if fenced {
            continue;
        }
        for e in &mut batch {
            e.build_id = build.to_string();
            e.seq += seq_base;
        }
        let mut tries: u32 = 0;
        loop {
            match link.events(build, attempt, batch.clone()).await {
                Ok(()) => break,
                Err(LinkError::Fenced(why)) => {
                    tracing::warn!(build = %build, attempt, why, "events refused: a newer attempt holds the build");
                    fenced = true;
                    break;
                }
                // Kept and sent again until the server answers (it may be restarting, or NATS):
                // the build waits meanwhile, and a lease that lapses fences it off.
                Err(e) => {
                    tries += 1;
                    tracing::warn!(build = %build, error = %e, tries, "could not send events; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(tries.min(10)))).await;
                }
            }
        }
    }
}
