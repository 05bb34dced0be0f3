//! The local history of `pipewright run`: per pipeline file, a build counter per job and the
//! versions builds used and produced, so `BUILD_NUMBER` grows from run to run and `passed` can
//! use what earlier runs passed.
//!
//! Both live in one directory under the cache home. The versions are a SQLite store (WAL, one
//! writer at a time, other processes wait); the counter is a small JSON file rewritten under
//! an exclusive `flock` and replaced by rename, so concurrent runs never reuse a number and a
//! run killed midway leaves the old file whole.

use pipewright_core::{Error, ErrorKind, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The directory of a pipeline file's history: its name, then a hash of its absolute path,
/// so two projects' `ci.hcl` never share one.
pub(crate) fn dir_for(cache_home: &Path, pipeline_file: &Path) -> PathBuf {
    use sha2::Digest;
    let abs = std::path::absolute(pipeline_file).unwrap_or_else(|_| pipeline_file.to_path_buf());
    let digest = sha2::Sha256::digest(abs.as_os_str().as_encoded_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let stem = crate::pipeline_name(pipeline_file);
    cache_home
        .join("pipewright")
        .join("history")
        .join(format!("{}-{short}", pipewright_config::slugify(&stem)))
}

/// The build counter of one pipeline's history.
#[derive(Debug, Clone)]
pub(crate) struct Counter {
    dir: PathBuf,
}

impl Counter {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// One more than the last number `job` got, recorded before it is returned.
    pub(crate) fn next_blocking(&self, job: &str) -> Result<u64> {
        let fail = |what: &str, e: std::io::Error| {
            Error::new(
                ErrorKind::Unavailable,
                format!("the build counter in {}: {what}: {e}", self.dir.display()),
            )
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| fail("create", e))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("numbers.lock"))
            .map_err(|e| fail("open the lock", e))?;
        // Released when `lock` is closed, also when the process dies.
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| fail("lock", e.into()))?;
        let path = self.dir.join("numbers.json");
        let mut numbers: BTreeMap<String, u64> = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                fail(
                    "read numbers.json",
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(fail("read numbers.json", e)),
        };
        let number = numbers.get(job).copied().unwrap_or(0).saturating_add(1);
        numbers.insert(job.to_owned(), number);
        let tmp = self
            .dir
            .join(format!("numbers.json.{}", std::process::id()));
        let text = serde_json::to_vec_pretty(&numbers).map_err(|e| {
            fail(
                "write numbers.json",
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| fail("write numbers.json", e))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(|e| fail("write numbers.json", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| fail("replace numbers.json", e))?;
        drop(lock);
        Ok(number)
    }
}

#[async_trait::async_trait]
impl pipewright_engine::BuildNumbers for Counter {
    async fn next(&self, _pipeline: &str, job: &str) -> Result<u64> {
        let counter = self.clone();
        let job = job.to_owned();
        // `flock` blocks: keep it off the runtime's threads.
        tokio::task::spawn_blocking(move || counter.next_blocking(&job))
            .await
            .map_err(|e| Error::new(ErrorKind::Other, format!("the build counter: {e}")))?
    }
}

/// The version history of one pipeline's runs, in `dir`.
pub(crate) async fn versions(
    dir: &Path,
) -> std::result::Result<pipewright_store::SqliteStore, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    pipewright_store::SqliteStore::open(dir.join("versions.db"))
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_grow_per_job_and_concurrent_callers_never_share_one() {
        let dir = tempfile::tempdir().unwrap();
        let counter = Counter::new(dir.path().join("h"));
        assert_eq!(counter.next_blocking("test").unwrap(), 1);
        assert_eq!(counter.next_blocking("test").unwrap(), 2);
        assert_eq!(counter.next_blocking("lint").unwrap(), 1);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let c = counter.clone();
                std::thread::spawn(move || {
                    (0..10)
                        .map(|_| c.next_blocking("test").unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (3..=82).collect::<Vec<u64>>());
    }

    #[test]
    fn the_directory_is_per_pipeline_file() {
        let home = Path::new("/cache");
        let a = dir_for(home, Path::new("/p/one/ci.hcl"));
        let b = dir_for(home, Path::new("/p/two/ci.hcl"));
        assert_ne!(a, b);
        assert!(a.starts_with("/cache/pipewright/history"));
        assert!(a.file_name().unwrap().to_string_lossy().starts_with("ci-"));
        assert_eq!(a, dir_for(home, Path::new("/p/one/ci.hcl")));
    }
}
