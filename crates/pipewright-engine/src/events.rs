//! Event delivery: the sink trait, the bounded channel sink, and the per-build emitter that
//! stamps, sequences and masks every event. The per-step log sink is in [`crate::step_log`].

use crate::step_log::LogShared;
use async_trait::async_trait;
use pipewright_core::{Event, EventKind, SCHEMA_VERSION};
use pipewright_secrets::Masker;
use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Receives the events of every build an engine runs, in each build's sequence order.
///
/// The engine awaits [`emit`](EventSink::emit) before it emits the build's next event, so a
/// sink that waits (a full channel, a slow store) slows the build down instead of letting
/// events pile up; nothing is dropped. A plain closure `Fn(Event)` is a sink that never waits.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// One event.
    async fn emit(&self, event: Event);
}

#[async_trait]
impl<F: Fn(Event) + Send + Sync> EventSink for F {
    async fn emit(&self, event: Event) {
        self(event)
    }
}

/// Discards events.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

#[async_trait]
impl EventSink for NoEvents {
    async fn emit(&self, _event: Event) {}
}

/// An [`EventSink`] over a bounded channel: `emit` waits while the channel is full, so at most
/// `capacity` events are ever queued for the receiver. Events sent after the receiver is
/// dropped are discarded (nobody is listening).
#[derive(Debug, Clone)]
pub struct ChannelSink {
    tx: mpsc::Sender<Event>,
}

impl ChannelSink {
    /// A sink and the receiver of its events; `capacity` is at least 1.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, rx)
    }
}

#[async_trait]
impl EventSink for ChannelSink {
    async fn emit(&self, event: Event) {
        if self.tx.send(event).await.is_err() {
            tracing::debug!("event receiver gone; event discarded");
        }
    }
}

/// Stamps one build's events with the schema version, its id, a sequence number and the
/// wall-clock time, and masks the build's secrets in every text an event carries: the one door
/// out of a build.
pub(crate) struct Emitter {
    build_id: String,
    sink: Arc<dyn EventSink>,
    masker: RwLock<Arc<Masker>>,
    /// The next sequence number. Held while the sink takes an event, so events reach the sink
    /// in sequence order even when several steps emit at once.
    next: tokio::sync::Mutex<u64>,
    /// The build's step logs, to deliver what they still hold before the build's last event.
    logs: Mutex<Vec<Weak<LogShared>>>,
}

impl fmt::Debug for Emitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter")
            .field("build_id", &self.build_id)
            .finish_non_exhaustive()
    }
}

impl Emitter {
    pub(crate) fn new(build_id: String, sink: Arc<dyn EventSink>) -> Self {
        Self {
            build_id,
            sink,
            masker: RwLock::new(Arc::new(Masker::empty())),
            next: tokio::sync::Mutex::new(0),
            logs: Mutex::new(Vec::new()),
        }
    }

    /// The masker in force.
    pub(crate) fn masker(&self) -> Arc<Masker> {
        self.masker
            .read()
            .map(|m| m.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Replaces the masker (more secrets became known).
    pub(crate) fn set_masker(&self, masker: Masker) {
        let m = Arc::new(masker);
        match self.masker.write() {
            Ok(mut g) => *g = m,
            Err(p) => *p.into_inner() = m,
        }
    }

    /// `text` with the build's secrets masked.
    pub(crate) fn mask(&self, text: &str) -> String {
        self.masker().mask_str(text).into_owned()
    }

    /// `text` with the build's secrets masked, in the form result types hold.
    pub(crate) fn masked(&self, text: &str) -> pipewright_secrets::Masked {
        self.masker().masked(text)
    }

    /// Remembers a step log so that [`Emitter::settle_logs`] delivers what it holds.
    pub(crate) fn track(&self, log: Weak<LogShared>) {
        if let Ok(mut logs) = self.logs.lock() {
            logs.retain(|l| l.strong_count() > 0);
            logs.push(log);
        }
    }

    /// Delivers everything the build's step logs still hold (a service's output written after
    /// its start step ended, say), so that no log event follows the build's last event.
    pub(crate) async fn settle_logs(&self) {
        let logs: Vec<Arc<LogShared>> = self
            .logs
            .lock()
            .map(|l| l.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        for log in logs {
            log.flush().await;
        }
    }

    /// Emits one event: every text in it is masked, then it is stamped and handed to the sink,
    /// waiting while the sink is full.
    pub(crate) async fn emit(&self, mut kind: EventKind) {
        let masker = self.masker();
        kind.for_each_text_mut(&mut |s| {
            if let Cow::Owned(m) = masker.mask_str(s) {
                *s = m;
            }
        });
        let mut next = self.next.lock().await;
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let event = Event {
            schema: SCHEMA_VERSION,
            build_id: self.build_id.clone(),
            seq: *next,
            at_ms,
            kind,
        };
        self.sink.emit(event).await;
        *next += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipewright_core::BuildStatus;

    #[tokio::test]
    async fn every_text_is_masked_and_seq_has_no_gaps() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let sink: Arc<dyn EventSink> = Arc::new(move |e: Event| ev.lock().unwrap().push(e));
        let emitter = Emitter::new("b".into(), sink);
        emitter.set_masker(Masker::new(["hunter2"]));
        emitter
            .emit(EventKind::BuildStarted {
                job: "hunter2-job".into(),
                pipeline: "p".into(),
                number: 1,
            })
            .await;
        emitter
            .emit(EventKind::BuildStatus {
                status: BuildStatus::Running,
            })
            .await;
        let events = events.lock().unwrap();
        let json = serde_json::to_string(&*events).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1]);
        assert!(events.iter().all(|e| e.schema == SCHEMA_VERSION));
    }
}
