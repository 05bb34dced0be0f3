//! Where versions, pins and the version-relevant facts of builds are kept: a fallible, async,
//! query-shaped trait a database can implement, and its in-memory implementation.

use crate::{BuildRecord, History, VersionId};
use async_trait::async_trait;
use pipewright_config::{GetStep, VersionPolicy};
use pipewright_core::Version;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be reached or refused the call; retrying may help.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The data is not what the call expects (a corrupt row, an impossible state).
    #[error("the store holds invalid data: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether retrying the call may help.
    pub fn retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<StoreError> for pipewright_core::Error {
    fn from(e: StoreError) -> Self {
        let kind = match e {
            StoreError::Unavailable(_) => pipewright_core::ErrorKind::Unavailable,
            StoreError::Invalid(_) => pipewright_core::ErrorKind::Other,
        };
        pipewright_core::Error::new(kind, e.to_string())
    }
}

/// The result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Versions per resource, pins, and which versions each job's builds used and produced.
/// Every call asks for what it needs: nothing copies the whole history.
#[async_trait]
pub trait VersionStore: Send + Sync {
    /// Adds versions found by a check, oldest first (duplicates keep their id); returns the
    /// id of each, in order.
    async fn save_versions(
        &self,
        resource: &str,
        versions: &[Version],
    ) -> StoreResult<Vec<VersionId>>;
    /// The newest version of `resource`.
    async fn latest_version(&self, resource: &str) -> StoreResult<Option<(VersionId, Version)>>;
    /// A version by id.
    async fn version(&self, resource: &str, id: VersionId) -> StoreResult<Option<Version>>;
    /// The id of `version`, if a check or a put has recorded it.
    async fn find_version(
        &self,
        resource: &str,
        version: &Version,
    ) -> StoreResult<Option<VersionId>>;
    /// Up to `limit` versions of `resource` older than `before` (all when `None`), newest
    /// first: one page of the resource's history.
    async fn versions(
        &self,
        resource: &str,
        limit: usize,
        before: Option<VersionId>,
    ) -> StoreResult<Vec<(VersionId, Version)>>;
    /// Records (or replaces, by job and number) what a build used and produced.
    async fn record_build(&self, build: BuildRecord) -> StoreResult<()>;
    /// The versions of `resource` that passed `job`: used or produced by a build of it that
    /// succeeded (or ended with a warning).
    async fn passed_versions(&self, job: &str, resource: &str) -> StoreResult<BTreeSet<VersionId>>;
    /// Pins a resource to a version, or unpins it.
    async fn pin(&self, resource: &str, version: Option<VersionId>) -> StoreResult<()>;
    /// The version `resource` is pinned to.
    async fn pinned(&self, resource: &str) -> StoreResult<Option<VersionId>>;
}

/// What the input rule ([`crate::choose_input`]) needs to know about one `get`'s resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputFacts {
    /// The id of the version the pipeline pins (`version = {…}`), when recorded.
    pub pinned_in_pipeline: Option<VersionId>,
    /// For each job in `passed`, the versions that passed it.
    pub passed: Vec<(String, BTreeSet<VersionId>)>,
    /// The version pinned on the resource.
    pub pin: Option<VersionId>,
    /// The newest version.
    pub latest: Option<VersionId>,
}

impl InputFacts {
    /// The facts for `get`, asked of `store`: only the queries the rule needs.
    pub async fn gather(store: &dyn VersionStore, get: &GetStep) -> StoreResult<Self> {
        let r = get.resource.as_str();
        let mut facts = InputFacts::default();
        if let VersionPolicy::Pinned(v) = &get.version {
            facts.pinned_in_pipeline = store.find_version(r, v).await?;
            return Ok(facts);
        }
        if !get.passed.is_empty() {
            for job in &get.passed {
                facts
                    .passed
                    .push((job.clone(), store.passed_versions(job, r).await?));
            }
            return Ok(facts);
        }
        facts.pin = store.pinned(r).await?;
        facts.latest = store.latest_version(r).await?.map(|(id, _)| id);
        Ok(facts)
    }

    /// The facts for `get` read from a [`History`] snapshot.
    pub fn from_history(history: &History, get: &GetStep) -> Self {
        let r = get.resource.as_str();
        InputFacts {
            pinned_in_pipeline: match &get.version {
                VersionPolicy::Pinned(v) => history.find(r, v),
                _ => None,
            },
            passed: get
                .passed
                .iter()
                .map(|job| (job.clone(), history.passed_versions(job, r)))
                .collect(),
            pin: history.pins.get(r).copied(),
            latest: history.latest(r).map(|(id, _)| id),
        }
    }
}

/// A [`VersionStore`] in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<History>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of everything, for tests and tools (a database store has no such call).
    pub fn snapshot(&self) -> History {
        self.inner.lock().map(|h| h.clone()).unwrap_or_default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut History) -> T) -> StoreResult<T> {
        self.inner
            .lock()
            .map(|mut h| f(&mut h))
            .map_err(|_| StoreError::Invalid("a writer panicked while holding the store".into()))
    }
}

#[async_trait]
impl VersionStore for MemoryStore {
    async fn save_versions(
        &self,
        resource: &str,
        versions: &[Version],
    ) -> StoreResult<Vec<VersionId>> {
        self.with(|h| h.add_versions(resource, versions))
    }

    async fn latest_version(&self, resource: &str) -> StoreResult<Option<(VersionId, Version)>> {
        self.with(|h| h.latest(resource).map(|(id, v)| (id, v.clone())))
    }

    async fn version(&self, resource: &str, id: VersionId) -> StoreResult<Option<Version>> {
        self.with(|h| h.version(resource, id).cloned())
    }

    async fn find_version(
        &self,
        resource: &str,
        version: &Version,
    ) -> StoreResult<Option<VersionId>> {
        self.with(|h| h.find(resource, version))
    }

    async fn versions(
        &self,
        resource: &str,
        limit: usize,
        before: Option<VersionId>,
    ) -> StoreResult<Vec<(VersionId, Version)>> {
        self.with(|h| {
            h.versions
                .get(resource)
                .map(|list| {
                    list.iter()
                        .rev()
                        .filter(|(id, _)| before.is_none_or(|b| *id < b))
                        .take(limit)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    async fn record_build(&self, build: BuildRecord) -> StoreResult<()> {
        self.with(|h| {
            match h
                .builds
                .iter_mut()
                .find(|b| b.job == build.job && b.number == build.number)
            {
                Some(existing) => *existing = build,
                None => h.builds.push(build),
            }
        })
    }

    async fn passed_versions(&self, job: &str, resource: &str) -> StoreResult<BTreeSet<VersionId>> {
        self.with(|h| h.passed_versions(job, resource))
    }

    async fn pin(&self, resource: &str, version: Option<VersionId>) -> StoreResult<()> {
        self.with(|h| {
            match version {
                Some(v) => h.pins.insert(resource.to_owned(), v),
                None => h.pins.remove(resource),
            };
        })
    }

    async fn pinned(&self, resource: &str) -> StoreResult<Option<VersionId>> {
        self.with(|h| h.pins.get(resource).copied())
    }
}
