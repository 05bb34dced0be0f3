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
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = output(ctx, cmd, program).await?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Failed,
            format!(
                "`{program} {}` failed: {}",
                args.first().copied().unwrap_or(""),
                last_line(&out.stderr)
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a prepared command with no stdin, collecting its output; stderr is also copied to the
/// build log. The command is killed when the context is cancelled.
pub(crate) async fn output(
    ctx: &Ctx,
    mut cmd: tokio::process::Command,
    program: &str,
) -> Result<std::process::Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot run `{program}`: {e}"),
        )
        .with_source(e)
    })?;
    let out = tokio::select! {
        out = child.wait_with_output() => out?,
        () = ctx.cancel.cancelled() => return Err(Error::cancelled()),
    };
    if !out.stderr.is_empty() {
        ctx.log.write(pipewright_core::Stream::Stderr, &out.stderr);
    }
    Ok(out)
}

/// The last non-blank line of a command's stderr: usually the one that says what went wrong.
pub(crate) fn last_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
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
