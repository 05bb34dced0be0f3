//! The typed event stream a build emits: the data contract shared by the CLI, the server, the
//! worker and the web UI.

use crate::{BuildStatus, ExitStatus, StepStatus, Stream};
use serde::{Deserialize, Serialize};

/// Identifies a step inside a build: its path of names from the job down
/// (`["in_parallel", "unit"]`), joined with `/` for display.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(pub String);

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One event of a build, with the build it belongs to and a monotonically increasing sequence
/// number so consumers can resume a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The build's id.
    pub build_id: String,
    /// Position in the build's event stream, starting at 0.
    pub seq: u64,
    /// Milliseconds since the Unix epoch when the event was emitted.
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened in a build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A build of `job` began; the first event of every build.
    BuildStarted {
        /// The job.
        job: String,
        /// The pipeline.
        pipeline: String,
        /// The build number within the job.
        number: u64,
    },
    /// The build changed status.
    BuildStatus {
        /// The new status.
        status: BuildStatus,
    },
    /// A step started (for retried steps, once per attempt).
    StepStarted {
        /// The step.
        step: StepId,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// A step reached a terminal status.
    StepFinished {
        /// The step.
        step: StepId,
        /// Its final status.
        status: StepStatus,
        /// The process exit status, for steps that ran one.
        exit: Option<ExitStatus>,
        /// Wall-clock duration in milliseconds.
        duration_ms: u64,
        /// Why the step ended this way, when it did not succeed (already masked).
        reason: Option<String>,
    },
    /// A chunk of output (already masked).
    Log {
        /// The step that wrote it.
        step: StepId,
        /// Which stream.
        stream: Stream,
        /// Byte offset of this chunk in the step's stream.
        offset: u64,
        /// The text (lossily decoded as UTF-8).
        data: String,
    },
}
