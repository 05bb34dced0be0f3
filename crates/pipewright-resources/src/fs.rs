//! `fs`: a local directory as a resource; the version is a hash of its content.

use crate::util::copy_dir;
use async_trait::async_trait;
use pipewright_core::{Ctx, Error, ErrorKind, Metadata, Params, Resource, Result, Version};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A directory on this machine. `check` yields a new version whenever its content changes;
/// `get` copies it; `put` copies the workspace directory named by `from` into it.
#[derive(Debug, Clone)]
pub struct FsResource {
    path: PathBuf,
}

impl FsResource {
    /// A resource for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// From `params { path = "…" }`.
    pub fn from_params(params: &Params) -> Result<Self> {
        Ok(Self::new(crate::required(params, "path", "fs")?))
    }
}

/// A SHA-256 over the sorted relative paths, executable bits and contents of the files under
/// `dir` (`.git` excluded), as `sha256:<hex>`.
pub fn content_hash(dir: &Path) -> std::io::Result<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_name() == ".git" {
                continue;
            }
            let p = e.path();
            if e.file_type()?.is_dir() {
                walk(root, &p, out)?;
            } else {
                out.push(p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for rel in files {
        let full = dir.join(&rel);
        let meta = std::fs::symlink_metadata(&full)?;
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        use std::os::unix::fs::PermissionsExt;
        h.update([u8::from(meta.permissions().mode() & 0o111 != 0)]);
        if meta.file_type().is_symlink() {
            h.update(std::fs::read_link(&full)?.to_string_lossy().as_bytes());
        } else {
            h.update(std::fs::read(&full)?);
        }
        h.update([0]);
    }
    Ok(format!("sha256:{}", hex(&h.finalize())))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl Resource for FsResource {
    async fn check(&self, _ctx: &Ctx, last: Option<&Version>) -> Result<Vec<Version>> {
        let path = self.path.clone();
        let hash = tokio::task::spawn_blocking(move || content_hash(&path))
            .await
            .map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?
            .map_err(|e| Error::from(e).with_context("path", self.path.display().to_string()))?;
        if last.and_then(|v| v.get("hash")) == Some(hash.as_str()) {
            return Ok(Vec::new());
        }
        Ok(vec![Version::from_pairs([("hash", hash)])])
    }

    async fn get(&self, ctx: &Ctx, version: &Version, dest: &Path) -> Result<Metadata> {
        let (src, dst) = (self.path.clone(), dest.to_path_buf());
        tokio::task::spawn_blocking(move || copy_dir(&src, &dst, false))
            .await
            .map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?
            .map_err(|e| Error::from(e).with_context("path", self.path.display().to_string()))?;
        let now = content_hash(dest)?;
        if version.get("hash").is_some_and(|h| h != now) {
            ctx.log_system(&format!(
                "note: {} changed since it was checked (now {now})",
                self.path.display()
            ));
        }
        let mut m = Metadata::new();
        m.push("path", self.path.display().to_string());
        Ok(m)
    }

    async fn put(&self, _ctx: &Ctx, src: &Path, params: &Params) -> Result<Vec<Version>> {
        let from = params.get_str("from").unwrap_or_else(|| ".".into());
        let (s, d) = (src.join(&from), self.path.clone());
        tokio::task::spawn_blocking(move || copy_dir(&s, &d, true))
            .await
            .map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?
            .map_err(|e| Error::from(e).with_context("from", from))?;
        Ok(vec![Version::from_pairs([(
            "hash",
            content_hash(&self.path)?,
        )])])
    }
}
