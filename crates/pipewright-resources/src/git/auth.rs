//! Credentials for git: they reach it only through its environment, never a command line, a URL
//! or the log.

use pipewright_core::{Error, ErrorKind, Params, Result};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

/// How git authenticates to the remote.
#[derive(Clone)]
pub(crate) enum Auth {
    Token { username: String, token: String },
    Key { key: String },
}

impl Auth {
    /// `token` / `username` / `private_key`; both at once is a configuration error.
    pub(crate) fn from_params(params: &Params) -> Result<Option<Auth>> {
        let token = params.get_str("token").filter(|t| !t.is_empty());
        let key = params
            .get_str("private_key")
            .filter(|k| !k.trim().is_empty());
        match (token, key) {
            (Some(_), Some(_)) => Err(Error::new(
                ErrorKind::InvalidConfig,
                "git takes `token` (HTTPS) or `private_key` (SSH), not both",
            )),
            (Some(token), None) => Ok(Some(Auth::Token {
                username: params
                    .get_str("username")
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| "x-access-token".into()),
                token,
            })),
            (None, Some(key)) => Ok(Some(Auth::Key { key })),
            (None, None) => Ok(None),
        }
    }

    /// A name for logs and `Debug`, never the secret.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Auth::Token { .. } => "token",
            Auth::Key { .. } => "private_key",
        }
    }
}

/// Credential files for one git invocation; removed when dropped.
pub(crate) struct AuthEnv {
    _dir: Option<tempfile::TempDir>,
    pub(crate) env: Vec<(String, OsString)>,
}

impl AuthEnv {
    /// Writes the helper files and returns the environment that points git at them.
    pub(crate) fn prepare(auth: Option<&Auth>) -> Result<AuthEnv> {
        let Some(auth) = auth else {
            return Ok(AuthEnv {
                _dir: None,
                env: Vec::new(),
            });
        };
        let dir = tempfile::Builder::new()
            .prefix("pipewright-git-")
            .tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let mut env: Vec<(String, OsString)> = Vec::new();
        match auth {
            Auth::Token { username, token } => {
                let helper = dir.path().join("askpass");
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o700)
                    .open(&helper)?;
                // git asks "Username for …" then "Password for …"; answer from the environment.
                f.write_all(
                    b"#!/bin/sh\ncase \"$1\" in\n  Username*) printf '%s\\n' \"$PIPEWRIGHT_GIT_USERNAME\" ;;\n  *) printf '%s\\n' \"$PIPEWRIGHT_GIT_TOKEN\" ;;\nesac\n",
                )?;
                f.sync_all()?;
                drop(f);
                env.push(("GIT_ASKPASS".into(), helper.into_os_string()));
                env.push(("PIPEWRIGHT_GIT_USERNAME".into(), username.into()));
                env.push(("PIPEWRIGHT_GIT_TOKEN".into(), token.into()));
                // No stored or cached credentials from the user's helpers.
                env.push(("GIT_CONFIG_COUNT".into(), "1".into()));
                env.push(("GIT_CONFIG_KEY_0".into(), "credential.helper".into()));
                env.push(("GIT_CONFIG_VALUE_0".into(), "".into()));
            }
            Auth::Key { key } => {
                let path = dir.path().join("id");
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                f.write_all(key.as_bytes())?;
                if !key.ends_with('\n') {
                    f.write_all(b"\n")?;
                }
                f.sync_all()?;
                env.push((
                    "GIT_SSH_COMMAND".into(),
                    format!(
                        "ssh -i '{}' -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
                        path.display()
                    )
                    .into(),
                ));
            }
        }
        Ok(AuthEnv {
            _dir: Some(dir),
            env,
        })
    }
}
