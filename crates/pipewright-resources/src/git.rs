//! `git`: commits (or tags) of a repository, through the `git` CLI.

use crate::fs::hex;
use crate::util::run;
use async_trait::async_trait;
use pipewright_core::{Ctx, Error, ErrorKind, Metadata, Params, Resource, Result, Version};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The most versions one check returns.
const MAX_NEW: usize = 100;

/// A git repository: `url`, optional `branch` (default: the remote's default branch), `depth`,
/// `paths` / `ignore_paths` filters, `tag_filter` (a glob: track tags instead of commits).
#[derive(Debug, Clone)]
pub struct GitResource {
    url: String,
    branch: Option<String>,
    depth: Option<u32>,
    paths: Vec<String>,
    ignore_paths: Vec<String>,
    tag_filter: Option<String>,
    mirror: PathBuf,
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
                None,
                "git",
                &["clone", "--quiet", "--bare", &self.url, &m],
            )
            .await?;
        }
        run(
            ctx,
            Some(&self.mirror),
            "git",
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
            Some(&self.mirror),
            "git",
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
                Some(&self.mirror),
                "git",
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
        let out = run(ctx, Some(&self.mirror), "git", &argv).await?;
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
                Some(&self.mirror),
                "git",
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
        if run(ctx, None, "git", &argv).await.is_err() {
            // The commit may be older than the shallow depth: take everything.
            let _ = std::fs::remove_dir_all(dest);
            run(
                ctx,
                None,
                "git",
                &["clone", "--quiet", "--no-checkout", &m, &d],
            )
            .await?;
        }
        run(
            ctx,
            Some(dest),
            "git",
            &["checkout", "--quiet", "--detach", sha],
        )
        .await?;
        run(
            ctx,
            Some(dest),
            "git",
            &["remote", "set-url", "origin", &self.url],
        )
        .await?;
        let log = run(
            ctx,
            Some(dest),
            "git",
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
                Some(&repo),
                "git",
                &["fetch", "--quiet", &self.url, &branch],
            )
            .await?;
            run(
                ctx,
                Some(&repo),
                "git",
                &["rebase", "--quiet", "FETCH_HEAD"],
            )
            .await?;
        }
        run(
            ctx,
            Some(&repo),
            "git",
            &[
                "push",
                "--quiet",
                &self.url,
                &format!("HEAD:refs/heads/{branch}"),
            ],
        )
        .await?;
        let sha = run(ctx, Some(&repo), "git", &["rev-parse", "HEAD"])
            .await?
            .trim()
            .to_owned();
        let mut v = Version::from_pairs([("ref", sha.clone())]);
        if let Some(tag) = params.get_str("tag").filter(|t| !t.is_empty()) {
            run(ctx, Some(&repo), "git", &["tag", "--force", &tag, &sha]).await?;
            run(
                ctx,
                Some(&repo),
                "git",
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
