//! `ReleaseDir`: numbered release folders as a resource.

use async_trait::async_trait;
use pipewright_core::{Ctx, Error, ErrorKind, Metadata, Params, Resource, Result, Version};
use std::path::{Path, PathBuf};

/// A directory whose sub-directories `1/`, `2/`, … are releases. A version is
/// `{release = "<n>"}`; check returns the numbers above the last one, oldest first (the highest
/// alone on a first check); get copies a release folder; put copies the workspace folder named
/// by `from` into the next number.
#[derive(Debug, Clone)]
pub struct ReleaseDir {
    root: PathBuf,
}

impl ReleaseDir {
    /// Releases under `root` (created on the first put).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Every release number, ascending. A missing root has none.
    fn releases(&self) -> Result<Vec<u64>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::from(e).with_context("root", self.root.display().to_string()));
            }
        };
        let mut numbers: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }
}

fn version(n: u64) -> Version {
    Version::from_pairs([("release", n.to_string())])
}

fn release_of(v: &Version) -> Result<u64> {
    v.get("release")
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("a release version needs a numeric `release`, got {v}"),
            )
        })
}

fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorKind::Other, format!("release task failed: {e}")))?
}

#[async_trait]
impl Resource for ReleaseDir {
    async fn check(&self, _ctx: &Ctx, last: Option<&Version>) -> Result<Vec<Version>> {
        let all = self.releases()?;
        Ok(match last {
            None => all.last().copied().map(version).into_iter().collect(),
            Some(v) => {
                let after = release_of(v)?;
                all.into_iter()
                    .filter(|n| *n > after)
                    .map(version)
                    .collect()
            }
        })
    }

    async fn get(&self, _ctx: &Ctx, v: &Version, dest: &Path) -> Result<Metadata> {
        let n = release_of(v)?;
        let (src, dst) = (self.root.join(n.to_string()), dest.to_path_buf());
        if !src.is_dir() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("release {n} does not exist"),
            ));
        }
        blocking(move || copy_dir(&src, &dst).map_err(Error::from)).await?;
        let mut m = Metadata::new();
        m.push("release", n.to_string());
        Ok(m)
    }

    async fn put(&self, _ctx: &Ctx, src: &Path, params: &Params) -> Result<Vec<Version>> {
        let from = params.get_str("from").ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                "a release put needs `from` (a folder in the workspace)",
            )
        })?;
        let next = self.releases()?.last().copied().unwrap_or(0) + 1;
        let (s, d) = (src.join(&from), self.root.join(next.to_string()));
        blocking(move || copy_dir(&s, &d).map_err(Error::from)).await?;
        Ok(vec![version(next)])
    }
}
