//! The build queue: "build B, attempt K is ready", carried from the scheduler to workers.

use async_trait::async_trait;
use pipewright_engine::BuildPlan;
use pipewright_store::BuildId;
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use tokio::sync::Notify;

/// One build attempt, ready to run: the plan and where its events continue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dispatch {
    /// The build.
    pub build: BuildId,
    /// The attempt a worker claims it as (one past the build's current attempt).
    pub attempt: u32,
    /// The `seq` its first event gets: events of earlier attempts keep theirs.
    pub seq_base: u64,
    /// Worker tags the job needs (all of them).
    pub tags: Vec<String>,
    /// What to run.
    pub plan: BuildPlan,
}

impl Dispatch {
    /// The message id the queue de-duplicates by: `build:attempt`.
    pub fn message_id(&self) -> String {
        format!("{}:{}", self.build, self.attempt)
    }

    /// Whether a worker advertising `tags` may take it.
    pub fn fits(&self, tags: &[String]) -> bool {
        self.tags.iter().all(|t| tags.contains(t))
    }
}

/// Why a queue call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue cannot be reached; retrying may help.
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    /// The queue was closed (the process is stopping).
    #[error("the queue is closed")]
    Closed,
}

/// A message taken from the queue, to be acknowledged once its result is committed.
#[derive(Debug)]
pub struct Delivery {
    /// The build attempt.
    pub dispatch: Dispatch,
}

/// Where the scheduler puts build attempts and workers take them. At-least-once: a worker
/// that takes a message and dies without acknowledging it gets it redelivered (by a queue that
/// outlives it); the store's claim (a compare-and-set on the attempt) makes a duplicate harmless.
#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// Publishes `dispatch`; a message id already published is dropped (returns `false`).
    async fn publish(&self, dispatch: Dispatch) -> Result<bool, QueueError>;

    /// Waits for the oldest message a worker with `tags` may take.
    async fn receive(&self, tags: &[String]) -> Result<Delivery, QueueError>;

    /// Acknowledges a delivery: its result is committed and it is not delivered again.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;

    /// Messages waiting.
    fn depth(&self) -> usize;

    /// Wakes every waiting `receive` with [`QueueError::Closed`].
    fn close(&self);
}

/// The queue in this process's memory (`--queue mem`): nothing survives the process, which is
/// fine because the store does, and restart recovery re-queues what was running.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    state: Mutex<MemState>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct MemState {
    waiting: VecDeque<Dispatch>,
    seen: HashSet<String>,
    closed: bool,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemState>, QueueError> {
        self.state
            .lock()
            .map_err(|_| QueueError::Unavailable("the queue's lock is poisoned".into()))
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn publish(&self, dispatch: Dispatch) -> Result<bool, QueueError> {
        {
            let mut st = self.lock()?;
            if st.closed {
                return Err(QueueError::Closed);
            }
            if !st.seen.insert(dispatch.message_id()) {
                return Ok(false);
            }
            st.waiting.push_back(dispatch);
        }
        self.ready.notify_waiters();
        Ok(true)
    }

    async fn receive(&self, tags: &[String]) -> Result<Delivery, QueueError> {
        loop {
            // Registered before looking, so a publish between the look and the wait wakes us.
            let notified = self.ready.notified();
            {
                let mut st = self.lock()?;
                if st.closed {
                    return Err(QueueError::Closed);
                }
                if let Some(i) = st.waiting.iter().position(|d| d.fits(tags))
                    && let Some(dispatch) = st.waiting.remove(i)
                {
                    return Ok(Delivery { dispatch });
                }
            }
            notified.await;
        }
    }

    async fn ack(&self, _delivery: &Delivery) -> Result<(), QueueError> {
        Ok(())
    }

    fn depth(&self) -> usize {
        self.state.lock().map(|s| s.waiting.len()).unwrap_or(0)
    }

    fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closed = true;
        }
        self.ready.notify_waiters();
    }
}
