//! Build events and the log text they carry.

use crate::{BuildId, StoreError, StoreResult};
use async_trait::async_trait;
use pipewright_core::{Event, EventKind};
use serde::{Deserialize, Serialize};

/// One stored event: its position in the build's stream, the event itself as an opaque JSON
/// value (the store never looks inside), and the log text it carries, if it is a log chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Position in the build's event stream (the SSE `id:`), from 0.
    pub seq: u64,
    /// The event as it is sent to clients.
    pub body: serde_json::Value,
    /// The (already masked) text of a log chunk, so the store can serve a build's log
    /// without parsing events.
    pub log: Option<String>,
}

impl EventRecord {
    /// The record of a typed event: its `seq`, its JSON form and, for a log chunk, its text.
    pub fn from_event(event: &Event) -> StoreResult<Self> {
        let body = serde_json::to_value(event).map_err(|e| {
            StoreError::Invalid(format!(
                "event {} of build {} does not serialize: {e}",
                event.seq, event.build_id
            ))
        })?;
        let log = match &event.kind {
            EventKind::Log { data, .. } => Some(data.clone()),
            _ => None,
        };
        Ok(EventRecord {
            seq: event.seq,
            body,
            log,
        })
    }
}

/// A build's events: appended in batches, idempotent by (build, seq), read back in `seq` order.
///
/// A batch is one call, so a database writes it in one transaction, not one per event. The
/// event `seq` is unique per build across attempts: a new attempt continues after
/// [`EventStore::last_event_seq`].
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends a batch of events of build `id`, written by `attempt` (the build's current
    /// attempt, else [`StoreError::Stale`] and nothing is written). Events whose `seq` the
    /// build already has are skipped, so a redelivered batch does not duplicate; the first
    /// write of a `seq` wins. Returns how many events were new.
    async fn append_events(
        &self,
        id: BuildId,
        attempt: u32,
        events: &[EventRecord],
    ) -> StoreResult<usize>;

    /// Up to `limit` events of build `id` with a `seq` above `after` (from the first when
    /// `None`), in `seq` order: an SSE stream resuming from `Last-Event-ID`.
    async fn events_after(
        &self,
        id: BuildId,
        after: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>>;

    /// The highest `seq` build `id` has, if it has events.
    async fn last_event_seq(&self, id: BuildId) -> StoreResult<Option<u64>>;

    /// The build's log so far: the text of its log chunks concatenated in `seq` order.
    async fn log_text(&self, id: BuildId) -> StoreResult<String>;
}
