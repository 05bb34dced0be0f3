//! Helpers shared by the resources.

use pipewright_core::{Ctx, Error, ErrorKind, Result};
use std::path::Path;
use std::process::Stdio;

/// Runs a command to completion and returns its stdout; stderr goes to the build log. Stops the
/// command when the context is cancelled.
pub(crate) async fn run(
    ctx: &Ctx,
    dir: Option<&Path>,
    program: &str,
    args: &[&str],
) -> Result<String> {
    run_with_env(ctx, dir, program, args, &[]).await
}

/// [`run`] with extra environment variables: the only way credentials reach a command, so they
/// never appear on a command line.
pub(crate) async fn run_with_env(
    ctx: &Ctx,
    dir: Option<&Path>,
    program: &str,
    args: &[&str],
    env: &[(String, std::ffi::OsString)],
) -> Result<String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let child = cmd.spawn().map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot run `{program}`: {e}"),
        )
    })?;
    let out = tokio::select! {
        out = child.wait_with_output() => out?,
        () = ctx.cancel.cancelled() => return Err(Error::cancelled()),
    };
    if !out.stderr.is_empty() {
        ctx.log.write(pipewright_core::Stream::Stderr, &out.stderr);
    }
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(Error::new(
            ErrorKind::Failed,
            format!(
                "`{program} {}` failed: {}",
                args.first().copied().unwrap_or(""),
                last.trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Copies a directory tree (files, permissions, symlinks as links), skipping `.git` when asked.
pub(crate) fn copy_dir(src: &Path, dst: &Path, skip_git: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        if skip_git && entry.file_name() == ".git" {
            continue;
        }
        let ty = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if ty.is_dir() {
            copy_dir(&entry.path(), &to, skip_git)?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            let _ = std::fs::remove_file(&to);
            std::os::unix::fs::symlink(target, &to)?;
        } else {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}
