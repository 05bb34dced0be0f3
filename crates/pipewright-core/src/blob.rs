//! The storage seam for files that outlive a build: task caches (and, as the server grows,
//! artifacts and logs). A local directory implements it today; shared stores (an object store,
//! the queue's object store) implement the same two calls.

use crate::Result;
use async_trait::async_trait;
use std::path::Path;

/// Files by key. Keys are `/`-separated paths of printable ASCII (`caches/<pipeline>/<job>/…`).
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores the file at `file` under `key`, replacing what was there. A reader sees the old
    /// blob or the new one, never half of one.
    async fn put(&self, key: &str, file: &Path) -> Result<()>;
    /// Copies the blob under `key` to `to`; `false` when there is none.
    async fn get(&self, key: &str, to: &Path) -> Result<bool>;
}
