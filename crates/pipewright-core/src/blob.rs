//! The storage seam for files that outlive a build and cross machines: task caches and
//! artifacts. A local directory, the JetStream object store and S3-compatible stores implement
//! it (`pipewright-blobs`); content addressing and named pointers are built on these calls.

use crate::Result;
use async_trait::async_trait;
use std::path::Path;

/// The largest blob [`BlobStore::get_bytes`] reads: pointers and indexes, never content.
pub const SMALL_BLOB_MAX: usize = 64 * 1024;

/// Files by key. Keys are `/`-separated paths of printable ASCII (`caches/<pipeline>/<job>/…`).
///
/// Every call is atomic for readers: a `get` sees the old blob or the new one, never half of
/// one. Files are streamed, never held whole in memory.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores the file at `file` under `key`, replacing what was there. Errors, storing
    /// nothing, when the file is larger than the store's size cap.
    async fn put(&self, key: &str, file: &Path) -> Result<()>;
    /// Copies the blob under `key` to `to`; `false` when there is none.
    async fn get(&self, key: &str, to: &Path) -> Result<bool>;
    /// Whether a blob is stored under `key`.
    async fn contains(&self, key: &str) -> Result<bool>;
    /// Stores a small blob (at most [`SMALL_BLOB_MAX`] bytes) under `key`.
    async fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// The small blob under `key`; errors when it is larger than [`SMALL_BLOB_MAX`].
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// The keys that start with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Where the blobs are, for logs (`s3://bucket/prefix`, a directory): never credentials.
    fn describe(&self) -> String;
    /// Removes the blob under `key`; `false` when there was none. The default answers
    /// `Unsupported`: a store that cannot delete is never garbage-collected.
    async fn delete(&self, key: &str) -> Result<bool> {
        Err(unsupported(self.describe(), key, "delete"))
    }
    /// When the blob under `key` was last written; `None` when there is none. Garbage
    /// collection spares blobs younger than its grace period. The default answers `Unsupported`.
    async fn modified(&self, key: &str) -> Result<Option<std::time::SystemTime>> {
        Err(unsupported(self.describe(), key, "tell the age of"))
    }
}

fn unsupported(store: String, key: &str, what: &str) -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::Unsupported,
        format!("the blob store {store} cannot {what} `{key}`"),
    )
}
