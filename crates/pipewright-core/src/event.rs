//! The typed event stream a build emits: the data contract shared by the CLI, the server, the
//! worker and the web UI. `docs/events.md` in the repository describes it (contract v1).

use crate::{BuildStatus, ExitStatus, StepStatus, Stream, Version};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The version of the event contract every [`Event`] carries in `schema`. Within one schema
/// version changes are additive only: new events, new optional fields.
pub const SCHEMA_VERSION: u32 = 1;

/// What a [`StepId`]'s path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepRole {
    /// A step of the job (`get`, `task`, `put`, `notify`).
    Step,
    /// A hook: the path's last segment is the hook (`on_success`, `on_failure`, `on_cancel`,
    /// `ensure`, with `#2`, `#3`… when a list has several), the segments before it its owner
    /// (none for the job's own hooks).
    Hook,
    /// The start of a `service` step, until it is ready.
    ServiceStart,
    /// The stop of a service at the end of the job.
    ServiceStop,
}

impl StepRole {
    /// `step`, `hook`, `service_start` or `service_stop`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepRole::Step => "step",
            StepRole::Hook => "hook",
            StepRole::ServiceStart => "service_start",
            StepRole::ServiceStop => "service_stop",
        }
    }
}

/// Identifies a step inside a build: its path of names from the job down
/// (`["in_parallel", "unit"]`) and what the path names (a step, a hook, a service's start or
/// stop). Unique within a build.
///
/// Displayed as the short name the CLI shows: the last segment (`unit`), `<owner>:<hook>` for
/// hooks (`unit:on_failure`, `job:ensure`) and `<service>:start` / `<service>:stop`.
///
/// ```
/// use pipewright_core::{StepId, StepRole};
/// let id = StepId::new(["in_parallel", "unit"], StepRole::Step);
/// assert_eq!(id.to_string(), "unit");
/// assert_eq!(StepId::new(["ensure"], StepRole::Hook).to_string(), "job:ensure");
/// assert_eq!(StepId::new(["pg"], StepRole::ServiceStop).to_string(), "pg:stop");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StepId {
    /// Names from the job down.
    pub path: Vec<String>,
    /// What the path names.
    pub role: StepRole,
}

impl StepId {
    /// An id from its path and role.
    pub fn new<S: Into<String>>(path: impl IntoIterator<Item = S>, role: StepRole) -> Self {
        Self {
            path: path.into_iter().map(Into::into).collect(),
            role,
        }
    }

    /// The last segment of the path (empty for an empty path).
    pub fn leaf(&self) -> &str {
        self.path.last().map(String::as_str).unwrap_or("")
    }
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.role {
            StepRole::Step => f.write_str(self.leaf()),
            StepRole::Hook => {
                let owner = match self.path.len() {
                    0 | 1 => "job",
                    n => &self.path[n - 2],
                };
                write!(f, "{owner}:{}", self.leaf())
            }
            StepRole::ServiceStart => write!(f, "{}:start", self.leaf()),
            StepRole::ServiceStop => write!(f, "{}:stop", self.leaf()),
        }
    }
}

/// The end of one step (for retried steps, of its last attempt), as the build's summary and
/// [`EventKind::BuildFinished`] give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step.
    pub step: StepId,
    /// How it ended.
    pub status: StepStatus,
    /// Attempts made (0 when skipped).
    pub attempts: u32,
    /// Time over all attempts (in JSON: `duration_ms`).
    #[serde(rename = "duration_ms", with = "millis")]
    pub duration: Duration,
    /// Why it failed or was skipped (masked).
    pub reason: Option<String>,
}

/// The resource versions of a build, by resource id (`type.name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildVersions {
    /// The version each `get` used.
    pub used: BTreeMap<String, Version>,
    /// The versions each `put` produced, in order.
    pub produced: BTreeMap<String, Vec<Version>>,
}

/// `Duration` as whole milliseconds in JSON.
pub(crate) mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// One event of a build, with the build it belongs to and a sequence number (0, 1, 2… without
/// gaps within a build) so consumers can store the stream and resume it from an offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The contract version, [`SCHEMA_VERSION`].
    pub schema: u32,
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
    /// An attempt of a step began; a skipped step gets one too, with attempt 0, right before
    /// its `StepFinished`.
    StepStarted {
        /// The step.
        step: StepId,
        /// Attempt number, from 1 (0: the step is skipped without running).
        attempt: u32,
        /// How many attempts the step may make.
        attempts: u32,
    },
    /// An attempt of a step ended. The one with `final` set is the step's end: its status is
    /// the step's status.
    StepFinished {
        /// The step.
        step: StepId,
        /// The attempt that ended (0 for a skipped step).
        attempt: u32,
        /// True when the step makes no further attempt.
        #[serde(rename = "final")]
        is_final: bool,
        /// How the attempt ended.
        status: StepStatus,
        /// The process exit status, for attempts that ran one.
        exit: Option<ExitStatus>,
        /// The attempt's wall-clock duration in milliseconds (a timeout's kill grace left out).
        duration_ms: u64,
        /// Why the attempt ended this way, when it did not succeed (masked).
        reason: Option<String>,
    },
    /// A chunk of output (masked).
    Log {
        /// The step that wrote it.
        step: StepId,
        /// The attempt that wrote it.
        attempt: u32,
        /// Which stream.
        stream: Stream,
        /// Byte offset of this chunk in the attempt's output (all streams together).
        offset: u64,
        /// The text (lossily decoded as UTF-8).
        data: String,
    },
    /// Variables an attempt exported to the steps after it (`GET_*`, `TASK_*`, `SERVICE_*`),
    /// values masked; emitted before the attempt's `StepFinished`.
    Exports {
        /// The step.
        step: StepId,
        /// The attempt.
        attempt: u32,
        /// Variable names to values.
        exports: BTreeMap<String, String>,
    },
    /// The build ended; the last event of every build.
    BuildFinished {
        /// The final status (the same as the last `BuildStatus`).
        status: BuildStatus,
        /// Why it did not succeed (masked).
        reason: Option<String>,
        /// The build's wall-clock duration in milliseconds.
        duration_ms: u64,
        /// Every step's end, in the order they ended.
        steps: Vec<StepRecord>,
        /// Versions used and produced.
        versions: BuildVersions,
    },
}

impl EventKind {
    /// Calls `f` on every text the event carries (names, ids, reasons, log data, exports,
    /// version fields). The engine masks secrets through it, so that no event can carry text
    /// the masker did not see.
    pub fn for_each_text_mut(&mut self, f: &mut dyn FnMut(&mut String)) {
        match self {
            EventKind::BuildStarted { job, pipeline, .. } => {
                f(job);
                f(pipeline);
            }
            EventKind::BuildStatus { .. } => {}
            EventKind::StepStarted { step, .. } => visit_id(step, f),
            EventKind::StepFinished { step, reason, .. } => {
                visit_id(step, f);
                visit_opt(reason, f);
            }
            EventKind::Log { step, data, .. } => {
                visit_id(step, f);
                f(data);
            }
            EventKind::Exports { step, exports, .. } => {
                visit_id(step, f);
                visit_map(exports, f);
            }
            EventKind::BuildFinished {
                reason,
                steps,
                versions,
                ..
            } => {
                visit_opt(reason, f);
                for s in steps {
                    visit_id(&mut s.step, f);
                    visit_opt(&mut s.reason, f);
                }
                visit_versions(versions, f);
            }
        }
    }
}

/// A visitor of the texts of an event.
type Visit<'a> = &'a mut dyn FnMut(&mut String);

fn visit_id(step: &mut StepId, f: Visit<'_>) {
    for s in &mut step.path {
        f(s);
    }
}

fn visit_opt(text: &mut Option<String>, f: Visit<'_>) {
    if let Some(t) = text {
        f(t);
    }
}

/// Keys and values; keys are re-inserted, as they may change.
fn visit_map(m: &mut BTreeMap<String, String>, f: Visit<'_>) {
    *m = std::mem::take(m)
        .into_iter()
        .map(|(mut k, mut v)| {
            f(&mut k);
            f(&mut v);
            (k, v)
        })
        .collect();
}

fn visit_versions(versions: &mut BuildVersions, f: Visit<'_>) {
    versions.used = std::mem::take(&mut versions.used)
        .into_iter()
        .map(|(mut rid, mut v)| {
            f(&mut rid);
            visit_map(&mut v.0, f);
            (rid, v)
        })
        .collect();
    versions.produced = std::mem::take(&mut versions.produced)
        .into_iter()
        .map(|(mut rid, mut list)| {
            f(&mut rid);
            for v in &mut list {
                visit_map(&mut v.0, f);
            }
            (rid, list)
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_is_visited() {
        let mut kind = EventKind::BuildFinished {
            status: BuildStatus::Failed,
            reason: Some("s3cret".into()),
            duration_ms: 1,
            steps: vec![StepRecord {
                step: StepId::new(["s3cret"], StepRole::Step),
                status: StepStatus::Failed,
                attempts: 1,
                duration: Duration::from_millis(5),
                reason: Some("a s3cret".into()),
            }],
            versions: BuildVersions {
                used: BTreeMap::from([(
                    "git.s3cret".into(),
                    Version::from_pairs([("ref", "s3cret")]),
                )]),
                produced: BTreeMap::from([(
                    "x".into(),
                    vec![Version::from_pairs([("s3cret", "1")])],
                )]),
            },
        };
        kind.for_each_text_mut(&mut |s| *s = s.replace("s3cret", "***"));
        let json = serde_json::to_string(&kind).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
        assert!(json.contains("\"duration_ms\":5"), "{json}");
    }

    #[test]
    fn step_ids_display_short_names_and_round_trip() {
        let hook = StepId::new(["in_parallel", "unit", "on_failure#2"], StepRole::Hook);
        assert_eq!(hook.to_string(), "unit:on_failure#2");
        let json = serde_json::to_string(&hook).unwrap();
        assert_eq!(
            json,
            r#"{"path":["in_parallel","unit","on_failure#2"],"role":"hook"}"#
        );
        assert_eq!(serde_json::from_str::<StepId>(&json).unwrap(), hook);
        assert_eq!(
            StepId::new(["pg"], StepRole::ServiceStart).to_string(),
            "pg:start"
        );
    }
}
