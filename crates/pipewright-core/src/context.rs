//! The context every plug-in call receives.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Which output stream a chunk of log came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Lines written by Pipewright itself (attempt markers, warnings).
    System,
}

impl Stream {
    /// `stdout`, `stderr` or `system`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::System => "system",
        }
    }
}

/// The future [`LogSink::send`] returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where a plug-in writes its output. Implementations mask secrets, persist and forward the
/// bytes; a plug-in just writes chunks as they come, without buffering whole outputs.
///
/// A plug-in that reads output as it comes (a process's pipes, a container's log stream) calls
/// [`send`](LogSink::send) and awaits it: the sink never drops a chunk, so when its consumer
/// is slow it makes the reader wait instead of holding more and more output in memory.
/// [`write`](LogSink::write) never waits; use it for a few lines of the plug-in's own.
pub trait LogSink: Send + Sync {
    /// Writes one chunk of `stream` without waiting. Chunks may split lines and UTF-8
    /// sequences anywhere.
    fn write(&self, stream: Stream, chunk: &[u8]);

    /// Writes one chunk of `stream`, first waiting while the sink holds as much unsent output
    /// as it is willing to. The default writes at once.
    fn send<'a>(&'a self, stream: Stream, chunk: &'a [u8]) -> SendFuture<'a> {
        self.write(stream, chunk);
        Box::pin(std::future::ready(()))
    }
}

/// A [`LogSink`] that drops everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl LogSink for NullSink {
    fn write(&self, _stream: Stream, _chunk: &[u8]) {}
}

/// Facts about the build a plug-in call belongs to; exported to processes as `BUILD_*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildMeta {
    /// Unique build id.
    pub build_id: String,
    /// Build number within the job, from 1.
    pub number: u64,
    /// The job's name.
    pub job: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The team owning the pipeline.
    pub team: String,
}

impl BuildMeta {
    /// The `BUILD_*` environment variables.
    pub fn to_env(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("BUILD_ID".to_owned(), self.build_id.clone()),
            ("BUILD_NUMBER".to_owned(), self.number.to_string()),
            ("BUILD_JOB_NAME".to_owned(), self.job.clone()),
            ("BUILD_PIPELINE_NAME".to_owned(), self.pipeline.clone()),
            ("BUILD_TEAM_NAME".to_owned(), self.team.clone()),
        ])
    }
}

/// The context of one plug-in call: cancellation, deadline, build metadata, environment and the
/// log sink. Cheap to clone.
#[derive(Clone)]
pub struct Ctx {
    /// Cancelled when the build or step is cancelled; plug-ins stop promptly and clean up.
    pub cancel: CancellationToken,
    /// When the call must be finished (step timeout), if any.
    pub deadline: Option<Instant>,
    /// The build this call belongs to.
    pub build: BuildMeta,
    /// Environment variables to pass to processes the call starts (exports, params…).
    pub env: BTreeMap<String, String>,
    /// Where output goes.
    pub log: Arc<dyn LogSink>,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("cancelled", &self.cancel.is_cancelled())
            .field("deadline", &self.deadline)
            .field("build", &self.build)
            .field("env_keys", &self.env.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for Ctx {
    fn default() -> Self {
        Self {
            cancel: CancellationToken::new(),
            deadline: None,
            build: BuildMeta::default(),
            env: BTreeMap::new(),
            log: Arc::new(NullSink),
        }
    }
}

impl Ctx {
    /// A context with no deadline, no environment, a fresh token and a [`NullSink`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the log sink.
    pub fn with_log(mut self, log: Arc<dyn LogSink>) -> Self {
        self.log = log;
        self
    }

    /// Sets a deadline `timeout` from now, keeping an earlier existing deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        let candidate = Instant::now() + timeout;
        self.deadline = Some(match self.deadline {
            Some(existing) if existing < candidate => existing,
            _ => candidate,
        });
        self
    }

    /// A child context: cancelled when this one is, and cancellable on its own.
    pub fn child(&self) -> Self {
        let mut c = self.clone();
        c.cancel = self.cancel.child_token();
        c
    }

    /// Time left until the deadline (`None` without a deadline, zero once it has passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Writes a line of Pipewright's own output to the sink's `system` stream.
    pub fn log_system(&self, line: &str) {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.log.write(Stream::System, &buf);
    }
}
