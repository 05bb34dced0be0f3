//! Content addressing over any [`BlobStore`]: content under `sha256/<aa>/<hex>`, written once
//! and never replaced, and small named pointers (`caches/…`, `artifacts/…/latest`) holding a
//! digest. Only pointers are ever replaced, and they fit in one write.

use pipewright_core::{BlobStore, Error, ErrorKind, Result};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::Path;

/// The SHA-256 of the file at `path` as `sha256:<hex>`, read in chunks.
pub async fn sha256_file(path: &Path) -> Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(&path)
            .map_err(|e| Error::from(e).with_context("file", path.display().to_string()))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let mut hex = String::with_capacity(71);
        hex.push_str("sha256:");
        for b in h.finalize() {
            let _ = write!(hex, "{b:02x}");
        }
        Ok(hex)
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?
}

/// The key content with `digest` (`sha256:<hex>`) is stored under.
pub fn digest_key(digest: &str) -> Result<String> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("`{digest}` is not a sha256 digest"),
            )
        })?;
    let hex = hex.to_ascii_lowercase();
    Ok(format!("sha256/{}/{hex}", &hex[..2]))
}

/// Content-addressed files and named pointers to them over a [`BlobStore`].
#[derive(Clone, Copy)]
pub struct ContentStore<'a> {
    store: &'a dyn BlobStore,
}

impl std::fmt::Debug for ContentStore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentStore")
            .field("store", &self.store.describe())
            .finish()
    }
}

impl<'a> ContentStore<'a> {
    /// Over `store`.
    pub fn new(store: &'a dyn BlobStore) -> Self {
        Self { store }
    }

    /// The store underneath.
    pub fn store(&self) -> &'a dyn BlobStore {
        self.store
    }

    /// Stores the file's content (once: content already there is not sent again) and
    /// returns its digest.
    pub async fn put_file(&self, file: &Path) -> Result<String> {
        let digest = sha256_file(file).await?;
        self.put_with_digest(&digest, file).await?;
        Ok(digest)
    }

    /// Stores the file whose digest the caller just computed as `digest`; a `get` verifies it.
    pub async fn put_with_digest(&self, digest: &str, file: &Path) -> Result<()> {
        let key = digest_key(digest)?;
        if !self.store.contains(&key).await? {
            self.store.put(&key, file).await?;
        }
        Ok(())
    }

    /// Copies the content with `digest` to `to`, verifying it; `false` when there is none.
    pub async fn get(&self, digest: &str, to: &Path) -> Result<bool> {
        let key = digest_key(digest)?;
        if !self.store.get(&key, to).await? {
            return Ok(false);
        }
        let got = sha256_file(to).await?;
        if got != digest.to_ascii_lowercase() {
            let _ = tokio::fs::remove_file(to).await;
            return Err(Error::new(
                ErrorKind::Other,
                format!("blob `{key}` is corrupt: its content hashes to {got}"),
            ));
        }
        Ok(true)
    }

    /// Points `name` at `digest`.
    pub async fn set_pointer(&self, name: &str, digest: &str) -> Result<()> {
        digest_key(digest)?;
        self.store
            .put_bytes(name, format!("{digest}\n").as_bytes())
            .await
    }

    /// The digest `name` points at.
    pub async fn pointer(&self, name: &str) -> Result<Option<String>> {
        let Some(bytes) = self.store.get_bytes(name).await? else {
            return Ok(None);
        };
        let digest = String::from_utf8_lossy(&bytes).trim().to_owned();
        digest_key(&digest)
            .map_err(|_| Error::new(ErrorKind::Other, format!("`{name}` is not a pointer")))?;
        Ok(Some(digest))
    }

    /// Stores the file and points `name` at it; returns the digest.
    pub async fn put_named(&self, name: &str, file: &Path) -> Result<String> {
        let digest = self.put_file(file).await?;
        self.set_pointer(name, &digest).await?;
        Ok(digest)
    }

    /// Copies what `name` points at to `to`; its digest, or `None` when `name` points nowhere.
    pub async fn get_named(&self, name: &str, to: &Path) -> Result<Option<String>> {
        let Some(digest) = self.pointer(name).await? else {
            return Ok(None);
        };
        if self.get(&digest, to).await? {
            Ok(Some(digest))
        } else {
            Err(Error::new(
                ErrorKind::NotFound,
                format!("`{name}` points at {digest}, which is not stored"),
            ))
        }
    }
}
