//! Why a notification was not delivered.

/// Why a notification could not be made or delivered. Messages name the notification type,
/// the host and what went wrong; never a token, a password or a webhook URL's path (Slack's and
/// Discord's carry their secret there).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// A param is missing or wrong.
    #[error("{kind}: {message}")]
    Config {
        /// The notification type.
        kind: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The receiver answered with an error status (after the retries, for a 5xx).
    #[error("{kind}: {host} answered {status} after {attempts} attempt(s){detail}")]
    Status {
        /// The notification type.
        kind: &'static str,
        /// The receiver's host.
        host: String,
        /// The HTTP status.
        status: u16,
        /// How many requests were made.
        attempts: u32,
        /// The start of the answer's body, `: …`, or empty.
        detail: String,
    },
    /// The request could not be made or got no answer (after the retries).
    #[error("{kind}: cannot reach {host} after {attempts} attempt(s): {message}")]
    Transport {
        /// The notification type.
        kind: &'static str,
        /// The receiver's host.
        host: String,
        /// How many requests were made.
        attempts: u32,
        /// The transport's error, without the URL.
        message: String,
    },
    /// The SMTP server refused the mail or could not be reached (after the retries).
    #[error("email: {host}: {message} (after {attempts} attempt(s))")]
    Smtp {
        /// The SMTP server.
        host: String,
        /// How many deliveries were tried.
        attempts: u32,
        /// What the server or the connection said.
        message: String,
    },
}

#[cfg(feature = "senders")]
impl NotifyError {
    pub(crate) fn config(kind: &'static str, message: impl Into<String>) -> Self {
        Self::Config {
            kind,
            message: message.into(),
        }
    }
}
