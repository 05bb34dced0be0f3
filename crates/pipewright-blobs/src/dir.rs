//! A local directory: one file per key, written beside its place and renamed into it.

use crate::{check_key, checked_size, not_small, partial_beside, persist, too_large};
use async_trait::async_trait;
use pipewright_core::{BlobStore, Error, Result, SMALL_BLOB_MAX};
use std::path::{Path, PathBuf};

/// A [`BlobStore`] in a local directory (or one shared over NFS by several workers).
#[derive(Debug, Clone)]
pub struct DirBlobStore {
    dir: PathBuf,
    max_bytes: u64,
}

impl DirBlobStore {
    /// A store under `dir` (created on first put) with the default cap.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: crate::DEFAULT_MAX_BYTES,
        }
    }

    /// Caps each blob at `max_bytes`.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.dir.join(key))
    }
}

fn io(e: std::io::Error, key: &str) -> Error {
    Error::from(e).with_context("blob", key.to_owned())
}

#[async_trait]
impl BlobStore for DirBlobStore {
    async fn put(&self, key: &str, file: &Path) -> Result<()> {
        let target = self.path(key)?;
        checked_size(key, file, self.max_bytes).await?;
        let tmp = partial_beside(&target)?;
        tokio::fs::copy(file, tmp.path())
            .await
            .map_err(|e| io(e, key))?;
        // The file may have grown since it was measured.
        let size = tokio::fs::metadata(tmp.path())
            .await
            .map_err(|e| io(e, key))?
            .len();
        if size > self.max_bytes {
            return Err(too_large(key, size, self.max_bytes));
        }
        persist(tmp, &target)
    }

    async fn get(&self, key: &str, to: &Path) -> Result<bool> {
        let source = self.path(key)?;
        let tmp = partial_beside(to)?;
        match tokio::fs::copy(&source, tmp.path()).await {
            Ok(_) => persist(tmp, to).map(|()| true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(e, key)),
        }
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        let path = self.path(key)?;
        Ok(tokio::fs::try_exists(&path).await.map_err(|e| io(e, key))? && path.is_file())
    }

    async fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
        if bytes.len() > SMALL_BLOB_MAX {
            return Err(not_small(key));
        }
        let target = self.path(key)?;
        let tmp = partial_beside(&target)?;
        tokio::fs::write(tmp.path(), bytes)
            .await
            .map_err(|e| io(e, key))?;
        persist(tmp, &target)
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.len() > SMALL_BLOB_MAX as u64 => return Err(not_small(key)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e, key)),
        }
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e, key)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        // Walk only the deepest directory the prefix names.
        let base = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let root = self.dir.clone();
        let prefix = prefix.to_owned();
        let base = base.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            walk(&root, &base, &mut keys)?;
            keys.retain(|k| k.starts_with(&prefix));
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| Error::new(pipewright_core::ErrorKind::Other, e.to_string()))?
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(e, key)),
        }
    }

    async fn modified(&self, key: &str) -> Result<Option<std::time::SystemTime>> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => m.modified().map(Some).map_err(|e| io(e, key)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e, key)),
        }
    }
}

/// Every key under `root/rel`, skipping files being written.
fn walk(root: &Path, rel: &str, keys: &mut Vec<String>) -> Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".partial-") {
            continue;
        }
        let key = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type()?.is_dir() {
            walk(root, &key, keys)?;
        } else {
            keys.push(key);
        }
    }
    Ok(())
}
