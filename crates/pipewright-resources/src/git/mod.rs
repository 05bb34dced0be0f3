//! `git`: commits (or tags) of a repository, through the `git` CLI.

mod auth;
mod cmd;
mod lock;
mod mirror;

use async_trait::async_trait;
use auth::Auth;
use cmd::{At, GitError, Remote, git};
use lock::Mode;
use mirror::Mirror;
use pipewright_core::{Ctx, Error, ErrorKind, Metadata, Params, Resource, Result, Version};
use std::path::Path;
use std::time::SystemTime;

/// The most versions one check returns.
const MAX_NEW: usize = 100;

/// A git repository: `url`, optional `branch` (default: the remote's default branch), `depth`,
/// `paths` / `ignore_paths` filters, `tag_filter` (a glob: track tags instead of commits), and
/// credentials: `token` (HTTPS, with `username`, default `x-access-token`) or `private_key`
/// (SSH key text). Credentials reach git only through its environment: an askpass helper that
/// reads the token from an environment variable, or a key file (mode 0600) named by
/// `GIT_SSH_COMMAND`; never a command line, never a URL, never the log.
///
/// Every resource with the same `url` shares one bare mirror under the cache root, guarded by a
/// file lock, so concurrent jobs and processes can check and get it at once. Values that git
/// would read as options (starting with `-`) are refused.
#[derive(Clone)]
pub struct GitResource {
    remote: Remote,
    branch: Option<String>,
    depth: Option<u32>,
    paths: Vec<String>,
    ignore_paths: Vec<String>,
    tag_filter: Option<String>,
    mirror: Mirror,
}

impl std::fmt::Debug for GitResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitResource")
            .field("url", &self.remote.shown())
            .field("branch", &self.branch)
            .field("mirror", &self.mirror.dir())
            .field("auth", &self.remote.auth.as_ref().map(Auth::kind))
            .finish_non_exhaustive()
    }
}

/// Refuses a value that git would read as an option: `url = "--upload-pack=…"` runs a program.
/// Commands also end their options before user values; this says what is wrong up front.
fn not_an_option(what: &str, key: &str, value: &str) -> Result<()> {
    if value.starts_with('-') {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("{what} `{key}` starts with `-`, so git would read it as an option"),
        ));
    }
    Ok(())
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

/// A relative local path (`.`, `../repo`) made absolute against the current directory, once:
/// git commands run in other directories (the mirror, a checkout), where the relative path
/// would name something else, and the mirror is keyed by the URL. URLs (`scheme://`,
/// `user@host:path`) and absolute paths are kept.
fn absolute_local(url: String) -> String {
    let is_url = url.contains("://")
        || (url.contains(':') && !url.starts_with('.') && !url.starts_with('/'));
    if is_url || Path::new(&url).is_absolute() {
        return url;
    }
    match std::path::absolute(&url) {
        Ok(p) => p.display().to_string(),
        Err(_) => url,
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
        let branch = params.get_str("branch").filter(|b| !b.is_empty());
        let tag_filter = params.get_str("tag_filter").filter(|t| !t.is_empty());
        not_an_option("git", "url", &url)?;
        for (key, value) in [("branch", &branch), ("tag_filter", &tag_filter)] {
            if let Some(v) = value {
                not_an_option("git", key, v)?;
            }
        }
        // After the check: an option-like value must be refused, not turned into a path.
        let url = absolute_local(url);
        Ok(Self {
            mirror: Mirror::new(cache_root, &url),
            remote: Remote {
                url,
                auth: Auth::from_params(params)?,
            },
            branch,
            depth,
            paths: list(params, "paths"),
            ignore_paths: list(params, "ignore_paths"),
            tag_filter,
        })
    }

    async fn run(&self, ctx: &Ctx, at: At<'_>, command: &str, args: &[&str]) -> Result<String> {
        Ok(git(ctx, self.remote.auth.as_ref(), at, command, args).await?)
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

    /// The new versions in the (fresh) mirror. Needs the lock, shared at least.
    async fn versions(&self, ctx: &Ctx, last: Option<&Version>) -> Result<Vec<Version>, GitError> {
        if self.tag_filter.is_some() {
            return self.tags(ctx, last).await;
        }
        let mirror = At::Mirror(self.mirror.dir());
        let branch = self.branch_ref();
        let last_ref = last.and_then(|v| v.get("ref"));
        // The last version must still be an ancestor (a force-push rewrites history).
        let known = match last_ref {
            Some(r) => git(
                ctx,
                None,
                mirror,
                "merge-base",
                &["--is-ancestor", "--end-of-options", r, &branch],
            )
            .await
            .is_ok(),
            None => false,
        };
        let mut args: Vec<String> = Vec::new();
        match (known, last_ref) {
            (true, Some(r)) => args.extend([
                "--reverse".into(),
                format!("-n{MAX_NEW}"),
                "--end-of-options".into(),
                format!("{r}..{branch}"),
            ]),
            _ => args.extend(["-n1".into(), "--end-of-options".into(), branch.clone()]),
        }
        args.extend(self.pathspec());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = match git(ctx, None, mirror, "rev-list", &argv).await {
            Ok(out) => out,
            Err(e) => return Err(self.explain_missing_branch(ctx, e).await),
        };
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

    /// git's own message for a branch that is not there is its usage line; name the branch.
    async fn explain_missing_branch(&self, ctx: &Ctx, err: GitError) -> GitError {
        if !matches!(err, GitError::Exit { .. }) || err.is_corruption() {
            return err;
        }
        let rev = format!("{}^{{commit}}", self.branch_ref());
        let probe = git(
            ctx,
            None,
            At::Mirror(self.mirror.dir()),
            "rev-parse",
            &["--verify", "--quiet", "--end-of-options", &rev],
        )
        .await;
        let message = match (&probe, &self.branch) {
            (Err(GitError::Exit { .. }), Some(b)) => {
                format!("branch `{b}` does not exist in {}", self.remote.shown())
            }
            (Err(GitError::Exit { .. }), None) => {
                format!(
                    "{} has no commits on its default branch",
                    self.remote.shown()
                )
            }
            _ => return err,
        };
        GitError::Run(Error::new(ErrorKind::NotFound, message))
    }

    async fn tags(&self, ctx: &Ctx, last: Option<&Version>) -> Result<Vec<Version>, GitError> {
        let filter = self.tag_filter.clone().unwrap_or_default();
        let out = git(
            ctx,
            None,
            At::Mirror(self.mirror.dir()),
            "for-each-ref",
            &[
                "--sort=creatordate",
                "--format=%(refname:short) %(*objectname)%(objectname)",
                "--end-of-options",
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

    /// Clones commit `sha` out of the mirror into `dest` (shallow when `depth` and `branch`
    /// allow). Needs the lock, shared at least.
    async fn clone_out(&self, ctx: &Ctx, sha: &str, dest: &Path) -> Result<(), GitError> {
        let _ = std::fs::remove_dir(dest);
        let d = dest.display().to_string();
        if let (Some(depth), Some(b)) = (self.depth, &self.branch) {
            // Shallow clones need git's transport (a local clone ignores `--depth`).
            let m = format!("file://{}", self.mirror.dir().display());
            let depth = format!("--depth={depth}");
            let args = [
                "--quiet",
                "--no-checkout",
                &depth,
                "--branch",
                b,
                "--no-single-branch",
                "--end-of-options",
                &m,
                &d,
            ];
            let shallow = git(ctx, None, At::Nowhere, "clone", &args).await;
            match shallow {
                Ok(_) if self.has(ctx, dest, sha).await? => return Ok(()),
                Err(e) if e.is_corruption() => return Err(e),
                Err(GitError::Run(e)) => return Err(GitError::Run(e)),
                // The commit is older than the shallow depth: take everything.
                _ => {
                    let _ = std::fs::remove_dir_all(dest);
                }
            }
        }
        // A local clone: the mirror's object files are hard-linked (or copied across file
        // systems), far cheaper than packing them up for every job.
        let m = self.mirror.dir().display().to_string();
        let args = [
            "--quiet",
            "--local",
            "--no-checkout",
            "--end-of-options",
            &m,
            &d,
        ];
        git(ctx, None, At::Nowhere, "clone", &args).await?;
        Ok(())
    }

    /// Whether the checkout at `dir` has commit `sha`.
    async fn has(&self, ctx: &Ctx, dir: &Path, sha: &str) -> Result<bool, GitError> {
        let object = format!("{sha}^{{commit}}");
        let args = ["-e", "--end-of-options", object.as_str()];
        match git(ctx, None, At::Checkout(dir), "cat-file", &args).await {
            Ok(_) => Ok(true),
            Err(GitError::Exit { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Makes sure the mirror has `sha` and clones it into `dest`, under the mirror's lock.
    async fn fetch_into(&self, ctx: &Ctx, sha: &str, dest: &Path) -> Result<()> {
        let since = SystemTime::now();
        let mut lock = self.mirror.lock(ctx, Mode::Shared).await?;
        if !self.mirror.has_commit(ctx, sha).await? {
            lock.set(ctx, Mode::Exclusive).await?;
            self.mirror.prepare(ctx, &self.remote, since).await?;
            if !self.mirror.has_commit(ctx, sha).await? {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "commit `{sha}` is not in {} (was it force-pushed away?)",
                        self.remote.shown()
                    ),
                ));
            }
            lock.set(ctx, Mode::Shared).await?;
        }
        match self.clone_out(ctx, sha, dest).await {
            Err(e) if e.is_corruption() => {
                tracing::warn!(error = %e, "cloning out of the git mirror hit damage; rebuilding it");
                lock.set(ctx, Mode::Exclusive).await?;
                self.mirror.rebuild(ctx, &self.remote).await?;
                let _ = std::fs::remove_dir_all(dest);
                Ok(self.clone_out(ctx, sha, dest).await?)
            }
            r => Ok(r?),
        }
    }
}

#[async_trait]
impl Resource for GitResource {
    async fn check(&self, ctx: &Ctx, last: Option<&Version>) -> Result<Vec<Version>> {
        let since = SystemTime::now();
        let mut lock = self.mirror.lock(ctx, Mode::Shared).await?;
        // Another job's fetch that started after this check was asked for will do.
        if !self.mirror.fetched_since(since) {
            lock.set(ctx, Mode::Exclusive).await?;
            self.mirror.prepare(ctx, &self.remote, since).await?;
            lock.set(ctx, Mode::Shared).await?;
        }
        match self.versions(ctx, last).await {
            Err(e) if e.is_corruption() => {
                tracing::warn!(error = %e, "reading the git mirror hit damage; rebuilding it");
                lock.set(ctx, Mode::Exclusive).await?;
                self.mirror.rebuild(ctx, &self.remote).await?;
                Ok(self.versions(ctx, last).await?)
            }
            r => Ok(r?),
        }
    }

    async fn get(&self, ctx: &Ctx, version: &Version, dest: &Path) -> Result<Metadata> {
        let sha = version
            .get("ref")
            .ok_or_else(|| Error::new(ErrorKind::InvalidConfig, "a git version needs `ref`"))?;
        not_an_option("a git version's", "ref", sha)?;
        self.fetch_into(ctx, sha, dest).await?;
        // Local work in the checkout: no credentials needed.
        let work = At::Checkout(dest);
        let args = ["--quiet", "--detach", "--end-of-options", sha];
        git(ctx, None, work, "checkout", &args).await?;
        let url = self.remote.url.as_str();
        let args = ["set-url", "origin", "--end-of-options", url];
        git(ctx, None, work, "remote", &args).await?;
        let format = "--format=%an <%ae>%x00%cn <%ce>%x00%cI%x00%B";
        let args = ["-1", format, "--end-of-options", sha];
        let log = git(ctx, None, work, "log", &args).await?;
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
        let tag = params.get_str("tag").filter(|t| !t.is_empty());
        not_an_option("git put", "branch", &branch)?;
        if let Some(t) = &tag {
            not_an_option("git put", "tag", t)?;
        }
        let work = At::Checkout(&repo);
        let url = self.remote.url.as_str();
        if params.get_str("rebase").as_deref() == Some("true") {
            let args = ["--quiet", "--end-of-options", url, &branch];
            self.run(ctx, work, "fetch", &args).await?;
            self.run(ctx, work, "rebase", &["--quiet", "FETCH_HEAD"])
                .await?;
        }
        let refspec = format!("HEAD:refs/heads/{branch}");
        let args = ["--quiet", "--end-of-options", url, &refspec];
        self.run(ctx, work, "push", &args).await?;
        let sha = self
            .run(ctx, work, "rev-parse", &["HEAD"])
            .await?
            .trim()
            .to_owned();
        let mut v = Version::from_pairs([("ref", sha.clone())]);
        if let Some(tag) = tag {
            let args = ["--force", "--end-of-options", &tag, &sha];
            self.run(ctx, work, "tag", &args).await?;
            let refspec = format!("refs/tags/{tag}");
            let args = ["--quiet", "--force", "--end-of-options", url, &refspec];
            self.run(ctx, work, "push", &args).await?;
            v.insert("tag", tag);
        }
        Ok(vec![v])
    }
}
