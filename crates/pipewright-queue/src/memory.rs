//! [`MemoryQueue`]: the queue in this process's memory.

use crate::{Acker, Delivery, Message, Queue, QueueError, QueueResult};
use async_trait::async_trait;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The queue in memory (`--queue mem`). Nothing survives the process, which is fine because
/// the server's store does and its restart recovery re-queues what was running.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    ready: Notify,
    ack_wait: Duration,
}

#[derive(Debug, Default)]
struct State {
    waiting: VecDeque<(Message, u64)>,
    in_flight: Vec<InFlight>,
    seen: HashSet<String>,
    next_token: u64,
    closed: bool,
}

#[derive(Debug)]
struct InFlight {
    token: u64,
    message: Message,
    deliveries: u64,
    deadline: Instant,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryQueue {
    /// An empty queue with a 30 s ack wait.
    pub fn new() -> Self {
        Self::with_ack_wait(Duration::from_secs(30))
    }

    /// An empty queue that redelivers a message not acknowledged (nor kept alive) within
    /// `ack_wait`.
    pub fn with_ack_wait(ack_wait: Duration) -> Self {
        MemoryQueue {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                ready: Notify::new(),
                ack_wait,
            }),
        }
    }
}

impl Inner {
    fn lock(&self) -> QueueResult<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| QueueError::Unavailable("the queue's lock is poisoned".into()))
    }
}

impl State {
    /// Moves in-flight messages whose ack wait lapsed back to the front, oldest first; returns
    /// the earliest deadline still pending.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        let mut lapsed: Vec<InFlight> = Vec::new();
        let mut i = 0;
        while i < self.in_flight.len() {
            if self.in_flight[i].deadline <= now {
                lapsed.push(self.in_flight.swap_remove(i));
            } else {
                i += 1;
            }
        }
        lapsed.sort_by_key(|f| std::cmp::Reverse(f.token));
        for f in lapsed {
            self.waiting.push_front((f.message, f.deliveries));
        }
        self.in_flight.iter().map(|f| f.deadline).min()
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn publish(&self, message: Message) -> QueueResult<bool> {
        {
            let mut st = self.inner.lock()?;
            if st.closed {
                return Err(QueueError::Closed);
            }
            if !st.seen.insert(message.id.clone()) {
                return Ok(false);
            }
            st.waiting.push_back((message, 0));
        }
        self.inner.ready.notify_waiters();
        Ok(true)
    }

    async fn receive(&self, tags: &[String]) -> QueueResult<Delivery> {
        loop {
            // Registered before looking, so a publish between the look and the wait wakes us.
            let notified = self.inner.ready.notified();
            let next_deadline = {
                let mut st = self.inner.lock()?;
                if st.closed {
                    return Err(QueueError::Closed);
                }
                let now = Instant::now();
                let next = st.expire(now);
                if let Some(i) = st.waiting.iter().position(|(m, _)| m.fits(tags))
                    && let Some((message, before)) = st.waiting.remove(i)
                {
                    st.next_token += 1;
                    let token = st.next_token;
                    let deliveries = before + 1;
                    st.in_flight.push(InFlight {
                        token,
                        message: message.clone(),
                        deliveries,
                        deadline: now + self.inner.ack_wait,
                    });
                    let acker = MemAcker {
                        inner: self.inner.clone(),
                        token,
                    };
                    return Ok(Delivery::new(message, deliveries, Box::new(acker)));
                }
                next
            };
            match next_deadline {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at.into(), notified).await;
                }
                None => notified.await,
            }
        }
    }

    async fn depth(&self) -> QueueResult<u64> {
        let st = self.inner.lock()?;
        Ok((st.waiting.len() + st.in_flight.len()) as u64)
    }

    fn close(&self) {
        if let Ok(mut st) = self.inner.state.lock() {
            st.closed = true;
        }
        self.inner.ready.notify_waiters();
    }
}

struct MemAcker {
    inner: Arc<Inner>,
    token: u64,
}

impl MemAcker {
    /// Applies `f` to this delivery while it is in flight; an expired or finished one is gone.
    fn with(&self, f: impl FnOnce(&mut State, usize)) -> QueueResult<()> {
        let mut st = self.inner.lock()?;
        match st.in_flight.iter().position(|x| x.token == self.token) {
            Some(i) => {
                f(&mut st, i);
                Ok(())
            }
            None => Err(QueueError::Invalid(
                "the delivery is no longer in flight (its ack wait lapsed and it was redelivered)"
                    .into(),
            )),
        }
    }
}

#[async_trait]
impl Acker for MemAcker {
    async fn ack(&self) -> QueueResult<()> {
        self.with(|st, i| {
            st.in_flight.swap_remove(i);
        })
    }

    async fn progress(&self) -> QueueResult<()> {
        let wait = self.inner.ack_wait;
        self.with(|st, i| st.in_flight[i].deadline = Instant::now() + wait)
    }

    async fn nak(&self, delay: Duration) -> QueueResult<()> {
        let wait = self.inner.ack_wait;
        self.with(|st, i| {
            // Redelivered once `delay` has passed: as if its ack wait ended then.
            st.in_flight[i].deadline = Instant::now() + delay.min(wait);
        })?;
        self.inner.ready.notify_waiters();
        Ok(())
    }
}
