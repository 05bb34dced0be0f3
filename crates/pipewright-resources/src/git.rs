//! `git`: commits (or tags) of a repository, through the `git` CLI.

use crate::fs::hex;
use crate::util::run_with_env;
use async_trait::async_trait;
use pipewright_core::{Ctx, Error, ErrorKind, Metadata, Params, Resource, Result, Version};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The most versions one check returns.
const MAX_NEW: usize = 100;

/// A git repository: `url`, optional `branch` (default: the remote's default branch), `depth`,
/// `paths` / `ignore_paths` filters, `tag_filter` (a glob: track tags instead of commits), and
/// credentials: `token` (HTTPS, with `username`, default `x-access-token`) or `private_key`
/// (SSH key text). Credentials reach git only through its environment: an askpass helper that
/// reads the token from an environment variable, or a key file (mode 0600) named by
/// `GIT_SSH_COMMAND`; never a command line, never a URL, never the log.
#[derive(Clone)]
pub struct GitResource {
    url: String,
    branch: Option<String>,
    depth: Option<u32>,
    paths: Vec<String>,
    ignore_paths: Vec<String>,
    tag_filter: Option<String>,
    mirror: PathBuf,
    auth: Option<Auth>,
}

impl std::fmt::Debug for GitResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitResource")
            .field("url", &self.url)
            .field("branch", &self.branch)
            .field("mirror", &self.mirror)
            .field(
                "auth",
                &self.auth.as_ref().map(|a| match a {
                    Auth::Token { .. } => "token",
                    Auth::Key { .. } => "private_key",
                }),
            )
            .finish_non_exhaustive()
    }
}

/// How git authenticates to the remote.
#[derive(Clone)]
enum Auth {
    Token { username: String, token: String },
    Key { key: String },
}

/// Credential files for one git invocation; removed when dropped.
struct AuthEnv {
    _dir: Option<tempfile::TempDir>,
    env: Vec<(String, std::ffi::OsString)>,
}

impl Auth {
    /// Writes the helper files and returns the environment that points git at them.
    fn prepare(auth: Option<&Auth>) -> Result<AuthEnv> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
        let mut env: Vec<(String, std::ffi::OsString)> = Vec::new();
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

/// Runs git with this resource's credentials.
async fn run(ctx: &Ctx, git: &GitResource, dir: Option<&Path>, args: &[&str]) -> Result<String> {
    let auth = Auth::prepare(git.auth.as_ref())?;
    run_with_env(ctx, dir, "git", args, &auth.env).await
}

fn list(params: &Params, key: &str) -> Vec<String> {
    match params.get(key) {
        Some(v) if v.is_array() => v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        Some(v) => v.as_str().map(|s| vec![s.to_owned()]).unwrap_or_default(),
        None => Vec::new(),
    }
}

/// `token` / `username` / `private_key`; both at once is a configuration error.
fn auth(params: &Params) -> Result<Option<Auth>> {
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

impl GitResource {
    /// From `params { url, branch, depth, paths, ignore_paths, tag_filter }`; mirrors live
    /// under `cache_root`.
    pub fn from_params(params: &Params, cache_root: &Path) -> Result<Self> {
        let url = crate::required(params, "url", "git")?;
        let depth = match params.get_str("depth") {
            Some(d) => Some(d.parse::<u32>().map_err(|_| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("git `depth` must be a whole number, got `{d}`"),
                )
            })?),
            None => None,
        };
        let key = hex(&Sha256::digest(url.as_bytes()));
        Ok(Self {
            mirror: cache_root.join("git").join(&key[..16]),
            url,
            branch: params.get_str("branch").filter(|b| !b.is_empty()),
            depth,
            paths: list(params, "paths"),
            ignore_paths: list(params, "ignore_paths"),
            tag_filter: params.get_str("tag_filter").filter(|t| !t.is_empty()),
            auth: auth(params)?,
        })
    }

    /// Brings the bare mirror up to date (creating it on first use).
    async fn sync(&self, ctx: &Ctx) -> Result<()> {
        if !self.mirror.join("HEAD").exists() {
            if let Some(parent) = self.mirror.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let m = self.mirror.display().to_string();
            run(
                ctx,
                self,
                None,
                &["clone", "--quiet", "--bare", &self.url, &m],
            )
            .await?;
        }
        run(
            ctx,
            self,
            Some(&self.mirror),
            &[
                "fetch",
                "--quiet",
                "--prune",
                "--force",
                &self.url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
        )
        .await?;
        Ok(())
    }

    fn branch_ref(&self) -> String {
        match &self.branch {
            Some(b) => format!("refs/heads/{b}"),
            None => "HEAD".to_owned(),
        }
    }

    fn pathspec(&self) -> Vec<String> {
        let mut spec = Vec::new();
        if !self.paths.is_empty() || !self.ignore_paths.is_empty() {
            spec.push("--".to_owned());
            if self.paths.is_empty() {
                spec.push(".".to_owned());
            }
            spec.extend(self.paths.iter().cloned());
            spec.extend(self.ignore_paths.iter().map(|p| format!(":(exclude){p}")));
        }
        spec
    }

    async fn check_tags(&self, ctx: &Ctx, last: Option<&Version>) -> Result<Vec<Version>> {
        let filter = self.tag_filter.clone().unwrap_or_default();
        let out = run(
            ctx,
            self,
            Some(&self.mirror),
            &[
                "for-each-ref",
                "--sort=creatordate",
                "--format=%(refname:short) %(*objectname)%(objectname)",
                &format!("refs/tags/{filter}"),
            ],
        )
        .await?;
        let tags: Vec<Version> = out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(tag, sha)| {
                // For annotated tags the peeled commit comes first; keep 40 hex chars.
                Version::from_pairs([
                    ("ref", sha[..sha.len().min(40)].to_owned()),
                    ("tag", tag.to_owned()),
                ])
            })
            .collect();
        let start = last
            .and_then(|l| tags.iter().position(|t| t.get("tag") == l.get("tag")))
            .map(|i| i + 1);
        Ok(match start {
            Some(i) => tags[i..].iter().take(MAX_NEW).cloned().collect(),
            None => tags.last().cloned().into_iter().collect(),
        })
    }
}

#[async_trait]
impl Resource for GitResource {
    async fn check(&self, ctx: &Ctx, last: Option<&Version>) -> Result<Vec<Version>> {
        self.sync(ctx).await?;
        if self.tag_filter.is_some() {
            return self.check_tags(ctx, last).await;
        }
        let branch = self.branch_ref();
        let spec = self.pathspec();
        let last_ref = last.and_then(|v| v.get("ref"));
        // The last version must still be an ancestor (a force-push rewrites history).
        let known = match last_ref {
            Some(r) => run(
                ctx,
                self,
                Some(&self.mirror),
                &["merge-base", "--is-ancestor", r, &branch],
            )
            .await
            .is_ok(),
            None => false,
        };
        let mut args: Vec<String> = vec!["rev-list".into()];
        if let (true, Some(r)) = (known, last_ref) {
            args.extend([
                "--reverse".into(),
                format!("-n{MAX_NEW}"),
                format!("{r}..{branch}"),
            ]);
        } else {
            args.extend(["-n1".into(), branch.clone()]);
        }
        args.extend(spec);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(ctx, self, Some(&self.mirror), &argv).await?;
        let mut refs: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
        if known {
            // `-n` keeps the newest; with --reverse they come oldest first.
            refs.truncate(MAX_NEW);
        }
        Ok(refs
            .into_iter()
            .map(|r| Version::from_pairs([("ref", r)]))
            .collect())
    }

    async fn get(&self, ctx: &Ctx, version: &Version, dest: &Path) -> Result<Metadata> {
        let sha = version
            .get("ref")
            .ok_or_else(|| Error::new(ErrorKind::InvalidConfig, "a git version needs `ref`"))?;
        if !self.mirror.join("HEAD").exists()
            || run(
                ctx,
                self,
                Some(&self.mirror),
                &["cat-file", "-e", &format!("{sha}^{{commit}}")],
            )
            .await
            .is_err()
        {
            self.sync(ctx).await?;
        }
        let _ = std::fs::remove_dir(dest);
        let d = dest.display().to_string();
        let m = format!("file://{}", self.mirror.display());
        let mut clone: Vec<String> = vec!["clone".into(), "--quiet".into(), "--no-checkout".into()];
        if let Some(depth) = self.depth {
            // Shallow clones need a branch; fall back to a full local clone otherwise.
            if let Some(b) = &self.branch {
                clone.extend([
                    format!("--depth={depth}"),
                    "--branch".into(),
                    b.clone(),
                    "--no-single-branch".into(),
                ]);
            }
        }
        clone.extend([m.clone(), d.clone()]);
        let argv: Vec<&str> = clone.iter().map(String::as_str).collect();
        if run(ctx, self, None, &argv).await.is_err() {
            // The commit may be older than the shallow depth: take everything.
            let _ = std::fs::remove_dir_all(dest);
            run(
                ctx,
                self,
                None,
                &["clone", "--quiet", "--no-checkout", &m, &d],
            )
            .await?;
        }
        run(
            ctx,
            self,
            Some(dest),
            &["checkout", "--quiet", "--detach", sha],
        )
        .await?;
        run(
            ctx,
            self,
            Some(dest),
            &["remote", "set-url", "origin", &self.url],
        )
        .await?;
        let log = run(
            ctx,
            self,
            Some(dest),
            &[
                "log",
                "-1",
                "--format=%an <%ae>%x00%cn <%ce>%x00%cI%x00%B",
                sha,
            ],
        )
        .await?;
        let mut parts = log.splitn(4, '\0');
        let mut m = Metadata::new();
        for name in ["author", "committer", "date", "message"] {
            m.push(name, parts.next().unwrap_or("").trim());
        }
        Ok(m)
    }

    async fn put(&self, ctx: &Ctx, src: &Path, params: &Params) -> Result<Vec<Version>> {
        let repo = src.join(params.get_str("repository").unwrap_or_else(|| ".".into()));
        let branch = params
            .get_str("branch")
            .or_else(|| self.branch.clone())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    "a git put needs a `branch` (on the put or the resource)",
                )
            })?;
        if params.get_str("rebase").as_deref() == Some("true") {
            run(
                ctx,
                self,
                Some(&repo),
                &["fetch", "--quiet", &self.url, &branch],
            )
            .await?;
            run(ctx, self, Some(&repo), &["rebase", "--quiet", "FETCH_HEAD"]).await?;
        }
        run(
            ctx,
            self,
            Some(&repo),
            &[
                "push",
                "--quiet",
                &self.url,
                &format!("HEAD:refs/heads/{branch}"),
            ],
        )
        .await?;
        let sha = run(ctx, self, Some(&repo), &["rev-parse", "HEAD"])
            .await?
            .trim()
            .to_owned();
        let mut v = Version::from_pairs([("ref", sha.clone())]);
        if let Some(tag) = params.get_str("tag").filter(|t| !t.is_empty()) {
            run(ctx, self, Some(&repo), &["tag", "--force", &tag, &sha]).await?;
            run(
                ctx,
                self,
                Some(&repo),
                &[
                    "push",
                    "--quiet",
                    "--force",
                    &self.url,
                    &format!("refs/tags/{tag}"),
                ],
            )
            .await?;
            v.insert("tag", tag);
        }
        Ok(vec![v])
    }
}
