//! What the database backends share: integers and JSON as their columns hold them, and store
//! errors in the version store's terms.

use crate::{StoreError, StoreResult};

/// A `u64` as a signed 64-bit column (SQLite's `INTEGER`, PostgreSQL's `BIGINT`).
pub(crate) fn int(v: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is too large")))
}

/// A `usize` limit as a signed 64-bit column (saturating).
pub(crate) fn limit(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A signed 64-bit column read back as an unsigned number.
pub(crate) fn uint<T: TryFrom<i64>>(v: i64, what: &str) -> StoreResult<T> {
    T::try_from(v).map_err(|_| StoreError::Invalid(format!("stored {what} {v} is out of range")))
}

/// `v` as JSON text.
pub(crate) fn to_json<T: serde::Serialize>(v: &T, what: &str) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(format!("{what}: {e}")))
}

/// Stored JSON text read back.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Invalid(format!("stored {what}: {e}")))
}

/// A store error in the version store's terms.
pub(crate) fn v_err(e: StoreError) -> pipewright_versions::StoreError {
    if e.retryable() {
        pipewright_versions::StoreError::Unavailable(e.to_string())
    } else {
        pipewright_versions::StoreError::Invalid(e.to_string())
    }
}
