//! The one error type plug-ins return, with a kind that says whether a retry can help.

use std::fmt;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The thing asked for does not exist (a version, an image, a secret path).
    NotFound,
    /// The plug-in was configured wrongly (a missing or malformed param). Retrying cannot help.
    InvalidConfig,
    /// Credentials were missing or refused.
    Unauthorized,
    /// The plug-in cannot do this operation (for example a resource without `put`).
    Unsupported,
    /// The operation ran past its deadline.
    Timeout,
    /// The operation was cancelled through its context.
    Cancelled,
    /// A dependency (network, daemon, server) was unavailable; trying again later may work.
    Unavailable,
    /// The operation ran and reported failure (for example a non-zero exit of a check script).
    Failed,
    /// Anything else: a bug or an unexpected state.
    Other,
}

impl ErrorKind {
    /// Whether retrying the same operation may succeed.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::Timeout | ErrorKind::Unavailable)
    }

    /// A short lower-case name, as used in logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Failed => "failed",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from a plug-in or the engine: a [`ErrorKind`], a message, optional context
/// (`resource=git.app`, `step=build`…) and an optional source error.
///
/// ```
/// use pipewright_core::{Error, ErrorKind};
/// let err = Error::new(ErrorKind::Unavailable, "git remote did not answer")
///     .with_context("resource", "git.app");
/// assert!(err.retryable());
/// assert_eq!(err.to_string(), "git remote did not answer (resource=git.app)");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{message}{}", fmt_context(.context))]
pub struct Error {
    kind: ErrorKind,
    message: String,
    context: Vec<(&'static str, String)>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

fn fmt_context(ctx: &[(&'static str, String)]) -> String {
    if ctx.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = ctx.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(" ({})", parts.join(", "))
}

impl Error {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            context: Vec::new(),
            source: None,
        }
    }

    /// Adds a context field, e.g. `("step", "unit-tests")`.
    pub fn with_context(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.context.push((key, value.into()));
        self
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Shorthand for an [`ErrorKind::Cancelled`] error.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "cancelled")
    }

    /// Shorthand for an [`ErrorKind::Unsupported`] error naming the operation and plug-in.
    pub fn unsupported(operation: &str, implementer: &str) -> Self {
        Self::new(
            ErrorKind::Unsupported,
            format!("{implementer} does not support {operation}"),
        )
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without context.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The context fields.
    pub fn context(&self) -> &[(&'static str, String)] {
        &self.context
    }

    /// Whether retrying may help (see [`ErrorKind::retryable`]).
    pub fn retryable(&self) -> bool {
        self.kind.retryable()
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::Unauthorized,
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        };
        Error::new(kind, err.to_string()).with_source(err)
    }
}
