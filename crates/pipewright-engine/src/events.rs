//! Event delivery: the sink trait, per-build sequencing and the per-step log sink.

use pipewright_core::{Event, EventKind, LogSink, StepId, Stream};
use pipewright_secrets::{Masked, Masker, StreamMasker};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Receives the events of every build an engine runs. Called from the engine's tasks: keep it
/// quick (hand the event to a channel or a buffer).
pub trait EventSink: Send + Sync {
    /// One event.
    fn emit(&self, event: Event);
}

impl<F: Fn(Event) + Send + Sync> EventSink for F {
    fn emit(&self, event: Event) {
        self(event)
    }
}

/// Discards events.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: Event) {}
}

/// Stamps one build's events with its id, a sequence number and the wall-clock time, and masks
/// the build's secrets in every text an event carries: the one door out of a build.
pub(crate) struct Emitter {
    build_id: String,
    seq: AtomicU64,
    sink: Arc<dyn EventSink>,
    masker: RwLock<Arc<Masker>>,
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
            seq: AtomicU64::new(0),
            sink,
            masker: RwLock::new(Arc::new(Masker::empty())),
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
    pub(crate) fn masked(&self, text: &str) -> Masked {
        self.masker().masked(text)
    }

    pub(crate) fn emit(&self, mut kind: EventKind) {
        if let EventKind::StepFinished {
            reason: Some(r), ..
        } = &mut kind
        {
            *r = self.mask(r);
        }
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        self.sink.emit(Event {
            build_id: self.build_id.clone(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            at_ms,
            kind,
        });
    }
}

/// The log sink of one step: turns chunks into `Log` events with a running byte offset, and
/// never splits a UTF-8 character across two events.
pub(crate) struct StepLog {
    emitter: Arc<Emitter>,
    step: StepId,
    state: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    offset: u64,
    /// Bytes that may start a secret, held back per stream until they are decided.
    maskers: [StreamMasker; 3],
    /// An incomplete UTF-8 sequence held back per stream (at most 3 bytes).
    pending: [Vec<u8>; 3],
}

fn slot(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
        Stream::System => 2,
    }
}

impl StepLog {
    pub(crate) fn new(emitter: Arc<Emitter>, step: StepId) -> Self {
        Self {
            emitter,
            step,
            state: Mutex::new(LogState::default()),
        }
    }

    /// Emits whatever is still held back: masked, and incomplete UTF-8 as replacement characters.
    pub(crate) fn flush(&self) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let masker = self.emitter.masker();
        for (i, stream) in [Stream::Stdout, Stream::Stderr, Stream::System]
            .into_iter()
            .enumerate()
        {
            let mut rest = std::mem::take(&mut st.pending[i]);
            st.maskers[i].finish(&masker, &mut rest);
            if !rest.is_empty() {
                let data = String::from_utf8_lossy(&rest).into_owned();
                let offset = st.offset;
                st.offset += rest.len() as u64;
                self.emitter.emit(EventKind::Log {
                    step: self.step.clone(),
                    stream,
                    offset,
                    data,
                });
            }
        }
    }
}

/// How many bytes at the end of `b` start a UTF-8 character that is not complete yet.
fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=b.len().min(4) {
        let c = b[b.len() - back];
        if c & 0xC0 == 0x80 {
            continue;
        }
        let need = match c {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if need > back { back } else { 0 };
    }
    0
}

impl fmt::Debug for StepLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepLog")
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl LogSink for StepLog {
    fn write(&self, stream: Stream, chunk: &[u8]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let i = slot(stream);
        let mut bytes = std::mem::take(&mut st.pending[i]);
        let masker = self.emitter.masker();
        st.maskers[i].push(&masker, chunk, &mut bytes);
        // Hold back a character cut by the chunk boundary; invalid bytes become U+FFFD.
        let keep = incomplete_tail(&bytes);
        let held = bytes.split_off(bytes.len() - keep);
        st.pending[i] = held;
        if bytes.is_empty() {
            return;
        }
        let offset = st.offset;
        st.offset += bytes.len() as u64;
        let data = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        self.emitter.emit(EventKind::Log {
            step: self.step.clone(),
            stream,
            offset,
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_events_never_split_a_character_and_offsets_add_up() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let sink: Arc<dyn EventSink> = Arc::new(move |e: Event| ev.lock().unwrap().push(e));
        let log = StepLog::new(Arc::new(Emitter::new("b".into(), sink)), StepId("s".into()));
        let text = "héllo → wörld ✓";
        for b in text.as_bytes().chunks(1) {
            log.write(Stream::Stdout, b);
        }
        log.flush();
        let mut joined = String::new();
        let mut expected_offset = 0;
        for e in events.lock().unwrap().iter() {
            if let EventKind::Log { offset, data, .. } = &e.kind {
                assert_eq!(*offset, expected_offset);
                expected_offset += data.len() as u64;
                joined.push_str(data);
            }
        }
        assert_eq!(joined, text);
    }
}
