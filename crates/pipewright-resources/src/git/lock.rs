//! The lock on one mirror, held across processes: `flock(2)` on a file next to the mirror.
//! Each open of the file is its own holder, so two jobs of one process exclude each other the
//! way two processes do, and the kernel drops the lock of a process that dies.

use pipewright_core::{Ctx, Error, ErrorKind, Result};
use rustix::fs::FlockOperation;
use rustix::io::Errno;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The first pause between attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const MAX_PAUSE: Duration = Duration::from_millis(20);
/// After this long, the build log says what it is waiting for.
const NOTICE_AFTER: Duration = Duration::from_secs(5);

/// Readers (listing commits, cloning out of the mirror) share the mirror; anything that writes
/// to it (clone, fetch, repair) has it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Shared,
    Exclusive,
}

/// A held lock; released when dropped (the file is closed).
#[derive(Debug)]
pub(crate) struct MirrorLock {
    file: std::fs::File,
    path: PathBuf,
    mode: Mode,
}

impl MirrorLock {
    /// Waits for the lock at `path` in `mode`. The wait polls with a non-blocking `flock`
    /// between async sleeps, so it never ties up a runtime thread and ends when `ctx` is
    /// cancelled.
    pub(crate) async fn acquire(ctx: &Ctx, path: &Path, mode: Mode) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Other,
                    format!("cannot open the lock file {}: {e}", path.display()),
                )
                .with_source(e)
            })?;
        let mut lock = Self {
            file,
            path: path.to_owned(),
            mode,
        };
        lock.wait_for(ctx, mode).await?;
        Ok(lock)
    }

    /// Switches to `mode`. Going from shared to exclusive waits for the other readers, and
    /// (as `flock` converts by unlocking first) someone else may write in between: callers
    /// look at the mirror afresh after this.
    pub(crate) async fn set(&mut self, ctx: &Ctx, mode: Mode) -> Result<()> {
        if self.mode == mode {
            return Ok(());
        }
        self.wait_for(ctx, mode).await
    }

    async fn wait_for(&mut self, ctx: &Ctx, mode: Mode) -> Result<()> {
        let op = match mode {
            Mode::Shared => FlockOperation::NonBlockingLockShared,
            Mode::Exclusive => FlockOperation::NonBlockingLockExclusive,
        };
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        let mut told = false;
        loop {
            match rustix::fs::flock(&self.file, op) {
                Ok(()) => {
                    self.mode = mode;
                    return Ok(());
                }
                Err(e) if e == Errno::WOULDBLOCK || e == Errno::INTR => {}
                Err(e) => {
                    let e = std::io::Error::from(e);
                    return Err(Error::new(
                        ErrorKind::Other,
                        format!("cannot lock {}: {e}", self.path.display()),
                    )
                    .with_source(e));
                }
            }
            if !told && started.elapsed() >= NOTICE_AFTER {
                told = true;
                tracing::info!(lock = %self.path.display(), "waiting for the git mirror lock");
                ctx.log_system("waiting for another job or process to finish with the git mirror");
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = ctx.cancel.cancelled() => return Err(Error::cancelled()),
            }
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exclusive_excludes_and_shared_shares_within_one_process() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("m.lock");
        let ctx = Ctx::new();
        let a = MirrorLock::acquire(&ctx, &path, Mode::Shared).await;
        let b = MirrorLock::acquire(&ctx, &path, Mode::Shared).await;
        assert!(a.is_ok() && b.is_ok(), "two readers at once");

        // A writer waits for the readers; cancelling the wait ends it.
        let waiting = Ctx::new();
        let cancel = waiting.cancel.clone();
        let writer = tokio::spawn({
            let path = path.clone();
            async move { MirrorLock::acquire(&waiting, &path, Mode::Exclusive).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !writer.is_finished(),
            "the writer waits while readers hold the lock"
        );
        cancel.cancel();
        let r = writer.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.map(|_| ()).map_err(|e| e.kind()),
            Err(ErrorKind::Cancelled)
        );

        drop((a, b));
        let w = MirrorLock::acquire(&ctx, &path, Mode::Exclusive).await;
        assert!(w.is_ok(), "free once the readers are gone");
    }
}
