//! The bare mirror of a remote under the cache, shared by every job and process that uses the
//! same URL. All access goes through its [`MirrorLock`]; a mirror is built in a temporary
//! directory next to its final place and renamed there only once complete, and one found broken
//! is rebuilt.

use super::cmd::{At, GitError, Remote, git};
use super::lock::{MirrorLock, Mode};
use crate::fs::hex;
use pipewright_core::{Ctx, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Inside a mirror: when its last successful fetch (or clone) started, in nanoseconds since
/// the epoch.
const FETCHED_AT: &str = "pipewright-fetched-at";

/// What `git clone` leaves in HEAD until the transfer is done (git 2.47): a mirror whose HEAD
/// still says this was killed partway.
const CLONE_PLACEHOLDER_HEAD: &str = "ref: refs/heads/.invalid";

/// Where one remote is mirrored.
#[derive(Debug, Clone)]
pub(crate) struct Mirror {
    dir: PathBuf,
    lock: PathBuf,
    /// The prefix of this mirror's build directories, in the same parent.
    building: String,
}

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

impl Mirror {
    /// The mirror of `url` under `cache_root/git`.
    pub(crate) fn new(cache_root: &Path, url: &str) -> Self {
        let key = hex(&Sha256::digest(url.as_bytes()));
        let key = &key[..16];
        let root = cache_root.join("git");
        Self {
            dir: root.join(key),
            lock: root.join(format!("{key}.lock")),
            building: format!(".{key}.building-"),
        }
    }

    /// The mirror's git directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) async fn lock(&self, ctx: &Ctx, mode: Mode) -> Result<MirrorLock> {
        MirrorLock::acquire(ctx, &self.lock, mode).await
    }

    /// Whether the mirror has commit `sha` (false when there is no usable mirror). Needs the
    /// lock, shared at least.
    pub(crate) async fn has_commit(&self, ctx: &Ctx, sha: &str) -> Result<bool> {
        if !self.dir.is_dir() {
            return Ok(false);
        }
        let object = format!("{sha}^{{commit}}");
        match git(
            ctx,
            None,
            At::Mirror(&self.dir),
            "cat-file",
            &["-e", "--end-of-options", &object],
        )
        .await
        {
            Ok(_) => Ok(true),
            Err(GitError::Exit { .. }) => Ok(false),
            Err(GitError::Run(e)) => Err(e),
        }
    }

    /// Makes the mirror complete and at least as new as `since`: builds it when missing,
    /// rebuilds it when broken, otherwise fetches, unless a fetch that started after `since`
    /// already succeeded (the jobs of a fan-out then share one fetch). Needs the lock,
    /// exclusive.
    pub(crate) async fn prepare(
        &self,
        ctx: &Ctx,
        remote: &Remote,
        since: SystemTime,
    ) -> Result<()> {
        if self.fetched_since(since) {
            tracing::debug!(mirror = %self.dir.display(), "fetched meanwhile; not fetching again");
            return Ok(());
        }
        self.remove_leftovers();
        if self.dir.exists() && !self.is_sound(ctx).await? {
            tracing::warn!(mirror = %self.dir.display(), "the git mirror is broken; rebuilding it");
            ctx.log_system(&format!(
                "the git mirror of {} is incomplete or broken; cloning it again",
                remote.shown()
            ));
            self.remove()?;
        }
        if !self.dir.exists() {
            return self.build(ctx, remote).await;
        }
        self.remove_stale_ref_locks();
        match self.fetch(ctx, remote).await {
            Err(e) if e.is_corruption() => {
                tracing::warn!(mirror = %self.dir.display(), error = %e, "fetch into the git mirror hit damage; rebuilding it");
                ctx.log_system(&format!(
                    "the git mirror of {} is damaged ({e}); cloning it again",
                    remote.shown()
                ));
                self.rebuild(ctx, remote).await
            }
            r => r.map_err(Into::into),
        }
    }

    /// Replaces the mirror with a fresh clone. Needs the lock, exclusive.
    pub(crate) async fn rebuild(&self, ctx: &Ctx, remote: &Remote) -> Result<()> {
        self.remove()?;
        self.build(ctx, remote).await
    }

    /// A directory git takes for a bare repository, and not one a killed clone left.
    async fn is_sound(&self, ctx: &Ctx) -> Result<bool> {
        match std::fs::read_to_string(self.dir.join("HEAD")) {
            Ok(head) if head.trim() != CLONE_PLACEHOLDER_HEAD => {}
            _ => return Ok(false),
        }
        let bare = git(
            ctx,
            None,
            At::Mirror(&self.dir),
            "rev-parse",
            &["--is-bare-repository"],
        )
        .await;
        match bare {
            Ok(out) => Ok(out.trim() == "true"),
            Err(GitError::Exit { .. }) => Ok(false),
            Err(GitError::Run(e)) => Err(e),
        }
    }

    /// Clones into a temporary directory beside the mirror, then renames it into place, so
    /// the mirror's path only ever holds a complete clone. A cancelled or failed clone's
    /// directory is removed on the way out (or, if the process was killed, by the next build).
    async fn build(&self, ctx: &Ctx, remote: &Remote) -> Result<()> {
        let parent = self.dir.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)?;
        let tmp = tempfile::Builder::new()
            .prefix(&self.building)
            .tempdir_in(parent)?;
        let started = SystemTime::now();
        let path = tmp.path().display().to_string();
        // No hard links: the cache must not share object files with a local source repository.
        git(
            ctx,
            remote.auth.as_ref(),
            At::Nowhere,
            "clone",
            &[
                "--quiet",
                "--bare",
                "--no-hardlinks",
                "--end-of-options",
                &remote.url,
                &path,
            ],
        )
        .await?;
        std::fs::write(tmp.path().join(FETCHED_AT), nanos(started).to_string())?;
        std::fs::rename(tmp.path(), &self.dir)?;
        let _ = tmp.keep();
        tracing::debug!(mirror = %self.dir.display(), "git mirror cloned");
        Ok(())
    }

    async fn fetch(&self, ctx: &Ctx, remote: &Remote) -> Result<(), GitError> {
        let started = SystemTime::now();
        git(
            ctx,
            remote.auth.as_ref(),
            At::Mirror(&self.dir),
            "fetch",
            &[
                "--quiet",
                "--prune",
                "--force",
                "--end-of-options",
                &remote.url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
        )
        .await?;
        std::fs::write(self.dir.join(FETCHED_AT), nanos(started).to_string())
            .map_err(|e| GitError::Run(e.into()))?;
        Ok(())
    }

    /// Whether a fetch (or clone) that started at `since` or later succeeded: the stamp is
    /// written only then. Needs the lock, shared at least.
    pub(crate) fn fetched_since(&self, since: SystemTime) -> bool {
        self.fetched_at().is_some_and(|t| t >= nanos(since))
    }

    fn fetched_at(&self) -> Option<u128> {
        std::fs::read_to_string(self.dir.join(FETCHED_AT))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Build directories of processes killed mid-clone. Only called with the lock held
    /// exclusively, so none of them is in use.
    fn remove_leftovers(&self) {
        let Some(parent) = self.dir.parent() else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(parent) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&self.building)
            {
                tracing::debug!(dir = %entry.path().display(), "removing an unfinished git mirror");
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove an unfinished git mirror");
                }
            }
        }
    }

    /// `*.lock` files git leaves when killed while updating refs; with the mirror's lock held
    /// exclusively no git process is using them, and left in place they fail every fetch.
    fn remove_stale_ref_locks(&self) {
        fn walk(dir: &Path, recurse: bool) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if is_dir && recurse {
                    walk(&path, true);
                } else if !is_dir && path.extension().is_some_and(|e| e == "lock") {
                    tracing::debug!(file = %path.display(), "removing a stale git lock file");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        walk(&self.dir, false);
        walk(&self.dir.join("refs"), true);
    }
}
