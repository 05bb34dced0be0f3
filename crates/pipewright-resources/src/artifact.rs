//! `artifact`: content-addressed tarballs, put by one job and got by another.

use crate::util::run;
use async_trait::async_trait;
use pipewright_blobs::{ContentStore, sha256_file};
use pipewright_core::{
    BlobStore, Ctx, Error, ErrorKind, Metadata, Params, Resource, Result, Version,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where artifacts are kept, by digest. Small on purpose so an object store can implement it.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Stores the file at `tarball` under `digest` (a no-op when it is already there).
    async fn put(&self, digest: &str, tarball: &Path) -> Result<()>;
    /// Copies the tarball stored under `digest` to `to`.
    async fn get(&self, digest: &str, to: &Path) -> Result<()>;
    /// Every stored digest, oldest first.
    async fn list(&self) -> Result<Vec<String>>;
}

/// An [`ArtifactStore`] in a local directory: `<dir>/<digest>.tar` plus an append-only index
/// that keeps the order of arrival.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// A store in `dir` (created on first put).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn file(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{}.tar", digest.replace(':', "-")))
    }
}

#[async_trait]
impl ArtifactStore for LocalStore {
    async fn put(&self, digest: &str, tarball: &Path) -> Result<()> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let target = self.file(digest);
        if target.exists() {
            return Ok(());
        }
        // Write under a temporary name and rename, so a reader never sees half a tarball.
        let tmp = self.dir.join(format!(".{}.partial", std::process::id()));
        tokio::fs::copy(tarball, &tmp).await?;
        tokio::fs::rename(&tmp, &target).await?;
        let mut index = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("index"))?;
        use std::io::Write;
        writeln!(index, "{digest}")?;
        Ok(())
    }

    async fn get(&self, digest: &str, to: &Path) -> Result<()> {
        let from = self.file(digest);
        tokio::fs::copy(&from, to)
            .await
            .map_err(|e| Error::from(e).with_context("artifact", digest.to_owned()))?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>> {
        match tokio::fs::read_to_string(self.dir.join("index")).await {
            Ok(s) => Ok(s
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}

/// An [`ArtifactStore`] in a shared [`BlobStore`], so a build on one worker gets what a build
/// on another put: the tarball content-addressed (`sha256/…`, shared with every other
/// artifact and cache), one small pointer per version (`artifacts/<name>/versions/<time>-<hex>`,
/// listed in order) and `artifacts/<name>/latest`.
#[derive(Clone)]
pub struct BlobArtifactStore {
    store: Arc<dyn BlobStore>,
    name: String,
}

impl std::fmt::Debug for BlobArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobArtifactStore")
            .field("store", &self.store.describe())
            .field("name", &self.name)
            .finish()
    }
}

impl BlobArtifactStore {
    /// The artifacts called `name` (any text: it is made a key segment) in `store`.
    pub fn new(store: Arc<dyn BlobStore>, name: &str) -> Self {
        let name: String = name
            .trim_matches('/')
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            store,
            name: if name.is_empty() { "_".into() } else { name },
        }
    }

    fn versions(&self) -> String {
        format!("artifacts/{}/versions/", self.name)
    }
}

fn hex_of(digest: &str) -> Result<&str> {
    pipewright_blobs::digest_key(digest)?;
    Ok(digest.trim_start_matches("sha256:"))
}

#[async_trait]
impl ArtifactStore for BlobArtifactStore {
    async fn put(&self, digest: &str, tarball: &Path) -> Result<()> {
        let hex = hex_of(digest)?;
        let content = ContentStore::new(self.store.as_ref());
        content.put_with_digest(digest, tarball).await?;
        let known = self.store.list(&self.versions()).await?;
        if known.iter().any(|k| k.ends_with(&format!("-{hex}"))) {
            return Ok(());
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let key = format!("{}{nanos:020}-{hex}", self.versions());
        self.store.put_bytes(&key, digest.as_bytes()).await?;
        content
            .set_pointer(&format!("artifacts/{}/latest", self.name), digest)
            .await
    }

    async fn get(&self, digest: &str, to: &Path) -> Result<()> {
        if ContentStore::new(self.store.as_ref())
            .get(digest, to)
            .await?
        {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::NotFound,
                format!("artifact {digest} is not in {}", self.store.describe()),
            ))
        }
    }

    async fn list(&self) -> Result<Vec<String>> {
        // Keys sort by time of arrival; a digest put twice (two puts racing) keeps its first
        // place.
        let mut seen = std::collections::HashSet::new();
        Ok(self
            .store
            .list(&self.versions())
            .await?
            .iter()
            .filter_map(|k| k.rsplit_once('-'))
            .filter(|(_, hex)| seen.insert(hex.to_string()))
            .map(|(_, hex)| format!("sha256:{hex}"))
            .collect())
    }
}

/// The `artifact` resource: `params { dir = "…" }` is the local store. A put takes `from` (a
/// directory in the workspace), tars it and stores it by its SHA-256; a get unpacks it.
pub struct ArtifactResource {
    store: Box<dyn ArtifactStore>,
}

impl std::fmt::Debug for ArtifactResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactResource").finish_non_exhaustive()
    }
}

impl ArtifactResource {
    /// Over any store.
    pub fn new(store: Box<dyn ArtifactStore>) -> Self {
        Self { store }
    }

    /// From `params { dir = "…" }`.
    pub fn from_params(params: &Params) -> Result<Self> {
        Ok(Self::new(Box::new(LocalStore::new(crate::required(
            params, "dir", "artifact",
        )?))))
    }

    /// In a shared blob store: the artifacts are named by `params { name = "…" }`, else by
    /// `dir` (so resources that shared a directory share a store), else by `resource`.
    pub fn in_blobs(store: Arc<dyn BlobStore>, params: &Params, resource: &str) -> Self {
        let name = params
            .get_str("name")
            .or_else(|| params.get_str("dir"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| resource.to_owned());
        Self::new(Box::new(BlobArtifactStore::new(store, &name)))
    }
}

#[async_trait]
impl Resource for ArtifactResource {
    async fn check(&self, _ctx: &Ctx, last: Option<&Version>) -> Result<Vec<Version>> {
        let all = self.store.list().await?;
        let start = last
            .and_then(|l| l.get("digest"))
            .and_then(|d| all.iter().position(|x| x == d))
            .map(|i| i + 1);
        Ok(match start {
            Some(i) => all[i..]
                .iter()
                .map(|d| Version::from_pairs([("digest", d.as_str())]))
                .collect(),
            None => all
                .last()
                .map(|d| Version::from_pairs([("digest", d.as_str())]))
                .into_iter()
                .collect(),
        })
    }

    async fn get(&self, ctx: &Ctx, version: &Version, dest: &Path) -> Result<Metadata> {
        let digest = version.get("digest").ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                "an artifact version needs `digest`",
            )
        })?;
        tokio::fs::create_dir_all(dest).await?;
        let tarball = dest.join(".artifact.tar");
        self.store.get(digest, &tarball).await?;
        let t = tarball.display().to_string();
        run(ctx, Some(dest), "tar", &["-xf", &t]).await?;
        tokio::fs::remove_file(&tarball).await?;
        let mut m = Metadata::new();
        m.push("digest", digest);
        Ok(m)
    }

    async fn put(&self, ctx: &Ctx, src: &Path, params: &Params) -> Result<Vec<Version>> {
        let from = params.get_str("from").ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                "an artifact put needs `from` (a directory in the workspace)",
            )
        })?;
        let dir = src.join(&from);
        let tarball = src.join(format!(".pipewright-artifact-{}.tar", std::process::id()));
        let t = tarball.display().to_string();
        // Sorted names, fixed owner and time: the same content gives the same digest.
        run(
            ctx,
            Some(&dir),
            "tar",
            &[
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mtime=@0",
                "-cf",
                &t,
                ".",
            ],
        )
        .await?;
        let digest = sha256_file(&tarball).await?;
        let stored = self.store.put(&digest, &tarball).await;
        let _ = tokio::fs::remove_file(&tarball).await;
        stored?;
        Ok(vec![Version::from_pairs([("digest", digest)])])
    }
}
