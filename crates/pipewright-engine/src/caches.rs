//! Task caches: `caches = ["target"]` restores the paths before a task's first attempt and
//! saves them after it succeeds, keyed by pipeline, job and path, through a [`BlobStore`].

use pipewright_core::{BlobStore, Ctx, Error, ErrorKind, Result, env_key};
use std::path::{Component, Path, PathBuf};

/// A [`BlobStore`] in a local directory: one file per key, replaced by rename.
#[derive(Debug, Clone)]
pub struct DirBlobStore {
    dir: PathBuf,
}

impl DirBlobStore {
    /// A store under `dir` (created on first put).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        let rel = Path::new(key);
        if key.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("`{key}` is not a valid blob key"),
            ));
        }
        Ok(self.dir.join(rel))
    }
}

#[async_trait::async_trait]
impl BlobStore for DirBlobStore {
    async fn put(&self, key: &str, file: &Path) -> Result<()> {
        let target = self.path(key)?;
        let parent = target.parent().unwrap_or(&self.dir).to_path_buf();
        tokio::fs::create_dir_all(&parent).await?;
        let tmp = parent.join(format!(
            ".partial-{}-{}",
            std::process::id(),
            target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        tokio::fs::copy(file, &tmp).await?;
        tokio::fs::rename(&tmp, &target).await?;
        Ok(())
    }

    async fn get(&self, key: &str, to: &Path) -> Result<bool> {
        let source = self.path(key)?;
        match tokio::fs::copy(&source, to).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// The key of cache `path` of `job` in `pipeline`.
pub(crate) fn key(pipeline: &str, job: &str, path: &str) -> String {
    format!(
        "caches/{}/{}/{}.tar",
        env_key(pipeline),
        env_key(job),
        env_key(path)
    )
}

/// A cache path must stay inside the workspace.
fn checked(path: &str) -> Option<&str> {
    let p = Path::new(path);
    let ok = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then_some(path)
}

async fn tar(args: &[&std::ffi::OsStr]) -> Result<()> {
    let out = tokio::process::Command::new("tar")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Other,
            format!(
                "tar failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ))
    }
}

/// Restores each cache into `workdir`; a missing or unreadable cache is logged, never fatal.
pub(crate) async fn restore(
    store: &dyn BlobStore,
    keys: &[(String, String)],
    workdir: &Path,
    scratch: &Path,
    ctx: &Ctx,
) {
    for (path, key) in keys {
        let Some(path) = checked(path) else {
            ctx.log_system(&format!(
                "cache `{path}` ignored: a cache is a relative path inside the workspace"
            ));
            continue;
        };
        let file = scratch.join(format!("restore-{}.tar", env_key(path)));
        let restored = match store.get(key, &file).await {
            Ok(false) => {
                ctx.log_system(&format!("cache `{path}`: none yet"));
                continue;
            }
            Ok(true) => tar(&[
                "-xf".as_ref(),
                file.as_os_str(),
                "-C".as_ref(),
                workdir.as_os_str(),
            ])
            .await
            .map(|()| std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0)),
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&file).await;
        match restored {
            Ok(bytes) => ctx.log_system(&format!("cache `{path}` restored ({bytes} bytes)")),
            Err(e) => ctx.log_system(&format!("cache `{path}` not restored: {e}")),
        }
    }
}

/// Saves each cache that exists in `workdir`; failures are logged, never fatal.
pub(crate) async fn save(
    store: &dyn BlobStore,
    keys: &[(String, String)],
    workdir: &Path,
    scratch: &Path,
    ctx: &Ctx,
) {
    for (path, key) in keys {
        let Some(path) = checked(path) else { continue };
        if !workdir.join(path).exists() {
            ctx.log_system(&format!(
                "cache `{path}` not saved: the task did not create it"
            ));
            continue;
        }
        let file = scratch.join(format!("save-{}.tar", env_key(path)));
        let saved = match tar(&[
            "-cf".as_ref(),
            file.as_os_str(),
            "-C".as_ref(),
            workdir.as_os_str(),
            "--".as_ref(),
            path.as_ref(),
        ])
        .await
        {
            Ok(()) => store.put(key, &file).await,
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&file).await;
        match saved {
            Ok(()) => ctx.log_system(&format!("cache `{path}` saved")),
            Err(e) => ctx.log_system(&format!("cache `{path}` not saved: {e}")),
        }
    }
}
