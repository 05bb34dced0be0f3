//! A [`LogSink`] that records what a plug-in wrote, stream by stream.

use pipewright_core::{LogSink, Stream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// Records every chunk written to it, keeping `stdout`, `stderr` and `system` apart, and lets a
/// test wait until some text has arrived.
///
/// ```
/// use pipewright_core::{Ctx, LogSink, Stream};
/// use pipewright_testing::log::RecordingSink;
///
/// let sink = RecordingSink::new();
/// let ctx = Ctx::new().with_log(sink.clone());
/// ctx.log.write(Stream::Stdout, b"hello ");
/// ctx.log.write(Stream::Stderr, b"oops\n");
/// ctx.log.write(Stream::Stdout, b"world\n");
/// assert_eq!(sink.text(Stream::Stdout), "hello world\n");
/// assert_eq!(sink.text(Stream::Stderr), "oops\n");
/// assert_eq!(sink.chunks().len(), 3);
/// ```
#[derive(Debug, Default)]
pub struct RecordingSink {
    chunks: Mutex<Vec<(Stream, Vec<u8>)>>,
    changed: Notify,
}

impl RecordingSink {
    /// An empty sink, shared so it can go into a [`pipewright_core::Ctx`] and stay inspectable.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Stream, Vec<u8>)>> {
        // A panicking writer leaves the recording as it was; keep reading it.
        self.chunks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every chunk in the order written, with its stream.
    pub fn chunks(&self) -> Vec<(Stream, Vec<u8>)> {
        self.lock().clone()
    }

    /// The bytes of `stream`, concatenated.
    pub fn bytes(&self, stream: Stream) -> Vec<u8> {
        self.lock()
            .iter()
            .filter(|(s, _)| *s == stream)
            .flat_map(|(_, c)| c.iter().copied())
            .collect()
    }

    /// The text of `stream` (invalid UTF-8 replaced).
    pub fn text(&self, stream: Stream) -> String {
        String::from_utf8_lossy(&self.bytes(stream)).into_owned()
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Waits until the text of `stream` contains `needle`, for at most `timeout`. Returns whether
    /// it did.
    pub async fn wait_for(&self, stream: Stream, needle: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a write between check and wait is not missed.
            notified.as_mut().enable();
            if self.text(stream).contains(needle) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.text(stream).contains(needle);
            }
        }
    }
}

impl LogSink for RecordingSink {
    fn write(&self, stream: Stream, chunk: &[u8]) {
        self.lock().push((stream, chunk.to_vec()));
        self.changed.notify_waiters();
    }
}
