//! Exit, step and build statuses.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a process (or container) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl ExitStatus {
    /// Exit code 0.
    pub const SUCCESS: ExitStatus = ExitStatus::Code(0);

    /// True for exit code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

macro_rules! status_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal, terminal: $t:literal;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum $name { $($(#[$vm])* $v,)* }

        impl $name {
            /// The lower-case name used in logs, JSON and `BUILD_STATUS`.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s,)* }
            }

            /// True once the status can no longer change.
            pub fn is_terminal(self) -> bool {
                match self { $($name::$v => $t,)* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum! {
    /// The state of one step of a build.
    StepStatus {
        /// Not started yet.
        Pending => "pending", terminal: false;
        /// Running now.
        Running => "running", terminal: false;
        /// Finished successfully.
        Succeeded => "succeeded", terminal: true;
        /// Ran and failed (non-zero exit, missing output…).
        Failed => "failed", terminal: true;
        /// Could not run because of an error outside the step's own work (plug-in, infrastructure).
        Errored => "errored", terminal: true;
        /// Not run: an earlier step failed, or its `if` branch was not taken.
        Skipped => "skipped", terminal: true;
        /// Stopped by cancellation or a timeout.
        Cancelled => "cancelled", terminal: true;
    }
}

status_enum! {
    /// The state of a build (one run of a job).
    BuildStatus {
        /// Created, waiting for a worker or for its constraints.
        Pending => "pending", terminal: false;
        /// Waiting for a human approval.
        WaitingForApproval => "waiting_for_approval", terminal: false;
        /// Running on a worker.
        Running => "running", terminal: false;
        /// Every required step succeeded.
        Succeeded => "succeeded", terminal: true;
        /// A step failed.
        Failed => "failed", terminal: true;
        /// Failed, but the job has `allow_failure = true`: downstream jobs proceed as on success.
        Warning => "warning", terminal: true;
        /// Infrastructure or plug-in error.
        Errored => "errored", terminal: true;
        /// Cancelled by a person, a newer build of an interruptible job, or a timeout.
        Cancelled => "cancelled", terminal: true;
    }
}

impl BuildStatus {
    /// True for statuses that let a version pass to downstream jobs (`succeeded`, `warning`).
    pub fn passes(self) -> bool {
        matches!(self, BuildStatus::Succeeded | BuildStatus::Warning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_json() {
        let s = serde_json::to_string(&BuildStatus::WaitingForApproval).unwrap();
        assert_eq!(s, "\"waiting_for_approval\"");
        assert!(BuildStatus::Warning.passes());
        assert!(!BuildStatus::Failed.passes());
        assert!(StepStatus::Skipped.is_terminal());
        assert!(!ExitStatus::Signal(9).success());
    }
}
