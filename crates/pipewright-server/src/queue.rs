//! What travels on the build queue: "build B, attempt K is ready", with its plan.

use pipewright_engine::BuildPlan;
use pipewright_queue::{Message, QueueError, QueueResult};
use pipewright_store::BuildId;
use serde::{Deserialize, Serialize};

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

    /// As a queue message (its body is this dispatch in JSON).
    pub fn to_message(&self) -> QueueResult<Message> {
        let body = serde_json::to_vec(self).map_err(|e| {
            QueueError::Invalid(format!("build {} does not serialize: {e}", self.build))
        })?;
        Ok(Message {
            id: self.message_id(),
            tags: self.tags.clone(),
            body,
        })
    }

    /// The dispatch a queue message carries.
    pub fn from_message(m: &Message) -> QueueResult<Self> {
        serde_json::from_slice(&m.body).map_err(|e| {
            QueueError::Invalid(format!("message {} is not a build dispatch: {e}", m.id))
        })
    }
}
