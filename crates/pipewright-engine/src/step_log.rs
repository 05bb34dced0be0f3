//! The log sink of one attempt of a step: masks output, cuts it into `Log` events with a running
//! byte offset, and delivers them through a bounded buffer.
//!
//! Chunks are masked and queued in order; a delivery task hands them to the build's
//! [`Emitter`], awaiting the event sink. [`LogSink::send`] (what runners use while reading a
//! process's pipes) waits while [`LOG_BUFFER_BYTES`] or more are queued, so a slow consumer
//! slows the reader (and the process behind its pipe) down; nothing is ever dropped.
//! [`LogSink::write`] never waits: the engine's own lines and plug-ins' occasional lines.

use crate::events::Emitter;
use pipewright_core::{EventKind, LogSink, SendFuture, StepId, Stream};
use pipewright_secrets::StreamMasker;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// How many bytes of output one step may have queued before [`LogSink::send`] waits. A writer
/// that awaits `send` adds at most one chunk beyond this.
pub(crate) const LOG_BUFFER_BYTES: usize = 256 * 1024;

/// A step log, shared with its delivery task.
pub(crate) struct LogShared {
    emitter: Arc<Emitter>,
    step: StepId,
    attempt: u32,
    state: Mutex<LogState>,
    /// Notified whenever a chunk was delivered or delivery stopped.
    changed: Notify,
}

/// A chunk ready to become a `Log` event.
struct Chunk {
    stream: Stream,
    offset: u64,
    data: String,
}

#[derive(Default)]
struct LogState {
    offset: u64,
    /// Bytes that may start a secret, held back per stream until they are decided.
    maskers: [StreamMasker; 3],
    /// An incomplete UTF-8 sequence held back per stream (at most 3 bytes).
    pending: [Vec<u8>; 3],
    /// Masked chunks waiting for the sink, oldest first.
    queue: VecDeque<Chunk>,
    /// Bytes queued or being delivered.
    queued: usize,
    /// The most bytes ever queued or being delivered.
    peak: usize,
    /// How many times a `send` had to wait for room.
    waits: u64,
    /// A delivery is under way (a task, or a `flush`).
    delivering: bool,
    /// The last [`TAIL_BYTES`] of masked stdout and stderr, for explaining a failure.
    tail: String,
}

/// How much of a step's latest output [`StepLog::tail`] keeps.
const TAIL_BYTES: usize = 4096;

fn slot(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
        Stream::System => 2,
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

impl LogState {
    fn enqueue(&mut self, stream: Stream, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let offset = self.offset;
        self.offset += bytes.len() as u64;
        self.queued += bytes.len();
        self.peak = self.peak.max(self.queued);
        let data = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        if stream != Stream::System {
            self.tail.push_str(&data);
            if self.tail.len() > TAIL_BYTES {
                let mut cut = self.tail.len() - TAIL_BYTES;
                while !self.tail.is_char_boundary(cut) {
                    cut += 1;
                }
                self.tail.drain(..cut);
            }
        }
        self.queue.push_back(Chunk {
            stream,
            offset,
            data,
        });
    }
}

impl LogShared {
    /// Masks `chunk` and queues what is safe to release. True when the caller must start a
    /// delivery.
    fn push(&self, stream: Stream, chunk: &[u8]) -> bool {
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        let i = slot(stream);
        let mut bytes = std::mem::take(&mut st.pending[i]);
        let masker = self.emitter.masker();
        st.maskers[i].push(&masker, chunk, &mut bytes);
        // Hold back a character cut by the chunk boundary; invalid bytes become U+FFFD.
        let keep = incomplete_tail(&bytes);
        st.pending[i] = bytes.split_off(bytes.len() - keep);
        st.enqueue(stream, bytes);
        claim(&mut st)
    }

    /// Delivers queued chunks until the queue is empty. Only the holder of the claim calls it.
    async fn deliver(&self) {
        loop {
            let chunk = match self.state.lock() {
                Ok(mut st) => match st.queue.pop_front() {
                    Some(c) => c,
                    None => {
                        st.delivering = false;
                        break;
                    }
                },
                Err(_) => break,
            };
            let len = chunk.data.len();
            self.emitter
                .emit(EventKind::Log {
                    step: self.step.clone(),
                    attempt: self.attempt,
                    stream: chunk.stream,
                    offset: chunk.offset,
                    data: chunk.data,
                })
                .await;
            if let Ok(mut st) = self.state.lock() {
                st.queued = st.queued.saturating_sub(len);
            }
            self.changed.notify_waiters();
        }
        self.changed.notify_waiters();
    }

    /// Waits until `done` holds for the state; a condition that can change only when a chunk
    /// is delivered.
    async fn wait_until(&self, done: impl Fn(&LogState) -> bool) {
        loop {
            let notified = self.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            match self.state.lock() {
                Ok(st) if !done(&st) => {}
                _ => return,
            }
            notified.await;
        }
    }

    /// Releases whatever is still held back (masked, incomplete UTF-8 as replacement
    /// characters) and waits until every chunk is delivered.
    pub(crate) async fn flush(&self) {
        let start = match self.state.lock() {
            Ok(mut st) => {
                let masker = self.emitter.masker();
                for (i, stream) in [Stream::Stdout, Stream::Stderr, Stream::System]
                    .into_iter()
                    .enumerate()
                {
                    let mut rest = std::mem::take(&mut st.pending[i]);
                    st.maskers[i].finish(&masker, &mut rest);
                    st.enqueue(stream, rest);
                }
                claim(&mut st)
            }
            Err(_) => return,
        };
        if start {
            self.deliver().await;
        }
        self.wait_until(|st| st.queue.is_empty() && !st.delivering)
            .await;
    }
}

/// Claims the delivery when there is something to deliver and nobody delivers yet.
fn claim(st: &mut LogState) -> bool {
    if st.delivering || st.queue.is_empty() {
        return false;
    }
    st.delivering = true;
    true
}

/// Starts a delivery task; without a tokio runtime the chunks wait for the next `send` or
/// `flush`, which deliver them inline.
fn spawn_delivery(shared: &Arc<LogShared>) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            let shared = shared.clone();
            rt.spawn(async move { shared.deliver().await });
        }
        Err(_) => {
            if let Ok(mut st) = shared.state.lock() {
                st.delivering = false;
            }
        }
    }
}

/// The log sink of one attempt of a step.
pub(crate) struct StepLog {
    shared: Arc<LogShared>,
}

impl StepLog {
    pub(crate) fn new(emitter: Arc<Emitter>, step: StepId, attempt: u32) -> Self {
        let shared = Arc::new(LogShared {
            emitter: emitter.clone(),
            step,
            attempt,
            state: Mutex::new(LogState::default()),
            changed: Notify::new(),
        });
        emitter.track(Arc::downgrade(&shared));
        Self { shared }
    }

    /// Releases whatever is held back and waits until every chunk is delivered: after it, the
    /// attempt's `StepFinished` follows all of its output.
    pub(crate) async fn flush(&self) {
        self.shared.flush().await;
    }

    /// The latest output on stdout and stderr (masked, at most a few KiB).
    pub(crate) fn tail(&self) -> String {
        self.shared
            .state
            .lock()
            .map(|s| s.tail.clone())
            .unwrap_or_default()
    }

    /// The most bytes this log ever had queued, and how often a `send` waited for room.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> (usize, u64) {
        self.shared
            .state
            .lock()
            .map(|s| (s.peak, s.waits))
            .unwrap_or((0, 0))
    }
}

impl fmt::Debug for StepLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepLog")
            .field("step", &self.shared.step)
            .field("attempt", &self.shared.attempt)
            .finish_non_exhaustive()
    }
}

impl LogSink for StepLog {
    fn write(&self, stream: Stream, chunk: &[u8]) {
        if self.shared.push(stream, chunk) {
            spawn_delivery(&self.shared);
        }
    }

    fn send<'a>(&'a self, stream: Stream, chunk: &'a [u8]) -> SendFuture<'a> {
        Box::pin(async move {
            let shared = &self.shared;
            // Without a runtime to deliver in the background, deliver here.
            let inline = tokio::runtime::Handle::try_current().is_err();
            if inline {
                let start = shared
                    .state
                    .lock()
                    .map(|mut st| claim(&mut st))
                    .unwrap_or(false);
                if start {
                    shared.deliver().await;
                }
            } else {
                let full = shared
                    .state
                    .lock()
                    .map(|mut st| {
                        let full = st.queued >= LOG_BUFFER_BYTES;
                        st.waits += u64::from(full);
                        full
                    })
                    .unwrap_or(false);
                if full {
                    shared.wait_until(|st| st.queued < LOG_BUFFER_BYTES).await;
                }
            }
            self.write(stream, chunk);
        })
    }
}

#[cfg(test)]
mod tests;
