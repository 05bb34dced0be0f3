//! Running git. A failure keeps git's whole stderr, so callers can tell a broken mirror from a
//! missing branch or an unreachable remote.

use super::auth::{Auth, AuthEnv};
use crate::util::{last_line, output};
use pipewright_core::{Ctx, Error, ErrorKind};
use std::path::Path;

/// Variables that would point git at another repository than the one asked for (they are set
/// inside git hooks, for instance).
const REPOSITORY_ENV: [&str; 7] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
];

/// What git's stderr says when a repository's objects or layout are damaged (as opposed to a
/// remote that is down, a missing branch or refused credentials). Lower case.
const CORRUPTION: [&str; 14] = [
    "object file",
    "is corrupt",
    "bad object",
    "missing blob",
    "missing tree",
    "missing commit",
    "did not send all necessary objects",
    "unable to read tree",
    "unable to read sha1",
    "not a git repository",
    "bad packed object",
    "inflate:",
    "packfile",
    "invalid sha1 pointer",
];

/// The remote a resource tracks: its URL and credentials.
#[derive(Clone)]
pub(crate) struct Remote {
    pub(crate) url: String,
    pub(crate) auth: Option<Auth>,
}

impl Remote {
    /// The URL for messages: a password in it is replaced by `***`.
    pub(crate) fn shown(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        let host_end = rest.find('/').unwrap_or(rest.len());
        match rest[..host_end].rsplit_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}{}", &rest[host_end..])
            }
            _ => self.url.clone(),
        }
    }
}

/// Where a git command runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum At<'a> {
    /// No repository (`clone`).
    Nowhere,
    /// A bare mirror, named with `--git-dir` so a broken one never falls through to a
    /// repository in a parent directory.
    Mirror(&'a Path),
    /// A checkout.
    Checkout(&'a Path),
}

/// Why a git command did not succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GitError {
    /// It could not start, or was cancelled.
    #[error(transparent)]
    Run(#[from] Error),
    /// It ran and exited non-zero.
    #[error("`git {command}` failed: {message}")]
    Exit {
        command: String,
        /// The last line of stderr.
        message: String,
        stderr: String,
    },
}

impl GitError {
    /// Whether git reported a damaged repository.
    pub(crate) fn is_corruption(&self) -> bool {
        match self {
            GitError::Exit { stderr, .. } => {
                let s = stderr.to_lowercase();
                CORRUPTION.iter().any(|c| s.contains(c))
            }
            GitError::Run(_) => false,
        }
    }
}

impl From<GitError> for Error {
    fn from(e: GitError) -> Self {
        match e {
            GitError::Run(e) => e,
            exit @ GitError::Exit { .. } => Error::new(ErrorKind::Failed, exit.to_string()),
        }
    }
}

/// Runs `git <command> <args…>` with the remote's credentials and returns its stdout. User
/// values in `args` must follow `--end-of-options`.
pub(crate) async fn git(
    ctx: &Ctx,
    auth: Option<&Auth>,
    at: At<'_>,
    command: &str,
    args: &[&str],
) -> Result<String, GitError> {
    let creds = AuthEnv::prepare(auth)?;
    let mut cmd = tokio::process::Command::new("git");
    for var in REPOSITORY_ENV {
        cmd.env_remove(var);
    }
    cmd.envs(creds.env.iter().map(|(k, v)| (k, v)))
        .env("GIT_TERMINAL_PROMPT", "0");
    match at {
        At::Nowhere => {}
        At::Mirror(dir) => {
            cmd.arg(format!("--git-dir={}", dir.display()));
            // Automatic housekeeping runs in the foreground, inside the mirror's lock, instead
            // of in a detached process that outlives it.
            cmd.args([
                "-c",
                "gc.autoDetach=false",
                "-c",
                "maintenance.autoDetach=false",
            ]);
            if let Some(parent) = dir.parent() {
                cmd.current_dir(parent);
            }
        }
        At::Checkout(dir) => {
            cmd.current_dir(dir);
        }
    }
    cmd.arg(command).args(args);
    let out = output(ctx, cmd, "git").await?;
    if !out.status.success() {
        return Err(GitError::Exit {
            command: command.to_owned(),
            message: last_line(&out.stderr),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(url: &str) -> String {
        Remote {
            url: url.into(),
            auth: None,
        }
        .shown()
    }

    #[test]
    fn passwords_in_urls_are_not_shown() {
        assert_eq!(
            shown("https://ci:s3cret@example.com/org/app.git"),
            "https://ci:***@example.com/org/app.git"
        );
        assert_eq!(
            shown("https://ci@example.com/a@b.git"),
            "https://ci@example.com/a@b.git"
        );
        assert_eq!(
            shown("git@example.com:org/app.git"),
            "git@example.com:org/app.git"
        );
        assert_eq!(shown("/srv/git/app"), "/srv/git/app");
    }
}
