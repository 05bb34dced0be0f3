//! The one error type of every store call.

use crate::BuildId;

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The thing the call names does not exist.
    #[error("{what} does not exist")]
    NotFound {
        /// What was asked for (`build 17`).
        what: String,
    },
    /// A write carried an attempt that is not the build's current one: a newer claim fenced
    /// it off (or it never held the build). Nothing was written.
    #[error("build {build}: attempt {attempt} is stale, the current attempt is {current}")]
    Stale {
        /// The build.
        build: BuildId,
        /// The attempt the write carried.
        attempt: u32,
        /// The build's current attempt.
        current: u32,
    },
    /// The build's state does not allow the call (claiming a running build, finishing a
    /// finished one with another status). Nothing was written.
    #[error("build {build} is {state}: cannot {action}")]
    Conflict {
        /// The build.
        build: BuildId,
        /// Its state when the call arrived.
        state: String,
        /// What the call tried to do.
        action: String,
    },
    /// The call's arguments or the stored data are not what they must be.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The backend cannot be reached or refused the call; retrying may help.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether retrying the same call may help (only [`StoreError::Unavailable`]: every other
    /// error says the same thing again).
    pub fn retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// A [`StoreError::NotFound`] for a build.
    pub fn build_not_found(build: BuildId) -> Self {
        StoreError::NotFound {
            what: format!("build {build}"),
        }
    }
}

impl From<pipewright_versions::StoreError> for StoreError {
    fn from(e: pipewright_versions::StoreError) -> Self {
        if e.retryable() {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Invalid(e.to_string())
        }
    }
}

impl From<StoreError> for pipewright_core::Error {
    fn from(e: StoreError) -> Self {
        use pipewright_core::ErrorKind;
        let kind = match e {
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        };
        pipewright_core::Error::new(kind, e.to_string())
    }
}

/// The result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;
