//! The server's one error type; the HTTP layer turns it into a status and a JSON body.

use pipewright_store::StoreError;

/// Why a server operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The thing named does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or names something invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// The request is valid but the state does not allow it now (409).
    #[error("{0}")]
    Conflict(String),
    /// No valid token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The token's role may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The route exists but not with this method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Something else failed (500).
    #[error("{0}")]
    Internal(String),
}

impl ServerError {
    /// The machine-readable code of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            ServerError::NotFound(_) => "not_found",
            ServerError::BadRequest(_) => "invalid_request",
            ServerError::Conflict(_) => "conflict",
            ServerError::Unauthorized(_) => "unauthorized",
            ServerError::Forbidden(_) => "forbidden",
            ServerError::MethodNotAllowed(_) => "method_not_allowed",
            ServerError::Store(StoreError::NotFound { .. }) => "not_found",
            ServerError::Store(StoreError::Conflict { .. } | StoreError::Stale { .. }) => {
                "conflict"
            }
            ServerError::Store(StoreError::Unavailable(_)) => "store_unavailable",
            ServerError::Store(_) | ServerError::Internal(_) => "internal",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self.code() {
            "not_found" => 404,
            "invalid_request" => 400,
            "conflict" => 409,
            "unauthorized" => 401,
            "forbidden" => 403,
            "method_not_allowed" => 405,
            "store_unavailable" => 503,
            _ => 500,
        }
    }
}

impl From<pipewright_versions::StoreError> for ServerError {
    fn from(e: pipewright_versions::StoreError) -> Self {
        ServerError::Store(e.into())
    }
}

/// The result of a server operation.
pub type ServerResult<T> = Result<T, ServerError>;
