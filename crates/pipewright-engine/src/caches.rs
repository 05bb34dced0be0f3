//! Task caches: `caches = ["target"]` restores the paths before a task's first attempt and
//! saves them after it succeeds, keyed by pipeline, job and path, through a [`BlobStore`]:
//! the tarball content-addressed, the key a pointer to it, so an unchanged cache is not sent
//! again and a worker that starts fresh finds what another saved.

use pipewright_blobs::ContentStore;
use pipewright_core::{BlobStore, Ctx, Error, ErrorKind, Result, env_key};
use std::path::{Component, Path};

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
        let restored = match ContentStore::new(store).get_named(key, &file).await {
            Ok(None) => {
                ctx.log_system(&format!("cache `{path}`: none yet"));
                continue;
            }
            Ok(Some(_)) => tar(&[
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
            Ok(()) => ContentStore::new(store)
                .put_named(key, &file)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&file).await;
        match saved {
            Ok(()) => ctx.log_system(&format!("cache `{path}` saved")),
            Err(e) => ctx.log_system(&format!("cache `{path}` not saved: {e}")),
        }
    }
}
