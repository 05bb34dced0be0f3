#![doc = include_str!("../README.md")]

mod memory;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "testing")]
pub mod testing;

pub use memory::MemoryQueue;
#[cfg(feature = "nats")]
pub use nats::{NatsOptions, NatsQueue};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One message: what to deliver, to whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The id the queue de-duplicates by (a build attempt: `build:attempt`).
    pub id: String,
    /// Worker tags a receiver must advertise, all of them.
    pub tags: Vec<String>,
    /// The payload.
    pub body: Vec<u8>,
}

impl Message {
    /// Whether a receiver advertising `tags` may take it.
    pub fn fits(&self, tags: &[String]) -> bool {
        self.tags.iter().all(|t| tags.contains(t))
    }
}

/// Why a queue call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue cannot be reached or refused the call; retrying may help.
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    /// The queue's settings or data are not what they must be (an existing stream with other
    /// settings, a malformed message).
    #[error("the queue is misconfigured: {0}")]
    Invalid(String),
    /// The queue was closed (the process is stopping).
    #[error("the queue is closed")]
    Closed,
}

/// The result of a queue call.
pub type QueueResult<T> = Result<T, QueueError>;

/// What a receiver does with a delivery.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Done: never deliver it again.
    async fn ack(&self) -> QueueResult<()>;
    /// Still working on it: restart the ack wait (a heartbeat).
    async fn progress(&self) -> QueueResult<()>;
    /// Give it back, to be delivered again after `delay`.
    async fn nak(&self, delay: Duration) -> QueueResult<()>;
}

/// A message taken from the queue, with how many times it has been delivered (1 the first
/// time).
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// How many times it has been delivered, this time included.
    pub deliveries: u64,
    acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.message.id)
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// A delivery of `message` acknowledged through `acker` (for queue implementations).
    pub fn new(message: Message, deliveries: u64, acker: Box<dyn Acker>) -> Self {
        Self {
            message,
            deliveries,
            acker,
        }
    }

    /// Done: never deliver it again.
    pub async fn ack(&self) -> QueueResult<()> {
        self.acker.ack().await
    }

    /// Still working on it: restart the ack wait.
    pub async fn progress(&self) -> QueueResult<()> {
        self.acker.progress().await
    }

    /// Give it back, to be delivered again after `delay`.
    pub async fn nak(&self, delay: Duration) -> QueueResult<()> {
        self.acker.nak(delay).await
    }
}

/// Where a scheduler puts work and workers take it.
///
/// At least once: a delivery neither acknowledged nor kept alive with
/// [`Delivery::progress`] within the queue's ack wait is delivered again (to any receiver
/// whose tags fit). A message id published twice within the de-duplication window is
/// delivered once.
#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// Publishes `message`; `false` when its id was already published (nothing is added).
    async fn publish(&self, message: Message) -> QueueResult<bool>;

    /// Waits for the oldest message a receiver advertising `tags` may take.
    async fn receive(&self, tags: &[String]) -> QueueResult<Delivery>;

    /// Messages waiting or in flight.
    async fn depth(&self) -> QueueResult<u64>;

    /// Makes every waiting and later `receive` fail with [`QueueError::Closed`].
    fn close(&self);
}
