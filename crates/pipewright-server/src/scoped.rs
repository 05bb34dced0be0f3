//! Version history per pipeline: one store, keys prefixed with the pipeline's name, so two
//! pipelines with a resource or job of the same name never see each other's versions.

use async_trait::async_trait;
use pipewright_core::Version;
use pipewright_store::Store;
use pipewright_versions::{BuildRecord, StoreResult, VersionId, VersionStore};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The [`VersionStore`] of one pipeline, inside the server's store.
#[derive(Clone)]
pub struct Scoped {
    inner: Arc<dyn Store>,
    prefix: String,
}

impl std::fmt::Debug for Scoped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoped")
            .field("pipeline", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Scoped {
    /// The history of `pipeline` in `inner`.
    pub fn new(inner: Arc<dyn Store>, pipeline: &str) -> Self {
        Self {
            inner,
            prefix: format!("{pipeline}/"),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn keys<V: Clone>(&self, m: &BTreeMap<String, V>) -> BTreeMap<String, V> {
        m.iter().map(|(k, v)| (self.key(k), v.clone())).collect()
    }
}

#[async_trait]
impl VersionStore for Scoped {
    async fn save_versions(
        &self,
        resource: &str,
        versions: &[Version],
    ) -> StoreResult<Vec<VersionId>> {
        self.inner
            .save_versions(&self.key(resource), versions)
            .await
    }

    async fn latest_version(&self, resource: &str) -> StoreResult<Option<(VersionId, Version)>> {
        self.inner.latest_version(&self.key(resource)).await
    }

    async fn version(&self, resource: &str, id: VersionId) -> StoreResult<Option<Version>> {
        self.inner.version(&self.key(resource), id).await
    }

    async fn find_version(
        &self,
        resource: &str,
        version: &Version,
    ) -> StoreResult<Option<VersionId>> {
        self.inner.find_version(&self.key(resource), version).await
    }

    async fn versions(
        &self,
        resource: &str,
        limit: usize,
        before: Option<VersionId>,
    ) -> StoreResult<Vec<(VersionId, Version)>> {
        self.inner
            .versions(&self.key(resource), limit, before)
            .await
    }

    async fn record_build(&self, build: BuildRecord) -> StoreResult<()> {
        let record = BuildRecord {
            job: self.key(&build.job),
            inputs: self.keys(&build.inputs),
            outputs: self.keys(&build.outputs),
            ..build
        };
        self.inner.record_build(record).await
    }

    async fn passed_versions(&self, job: &str, resource: &str) -> StoreResult<BTreeSet<VersionId>> {
        self.inner
            .passed_versions(&self.key(job), &self.key(resource))
            .await
    }

    async fn pin(&self, resource: &str, version: Option<VersionId>) -> StoreResult<()> {
        self.inner.pin(&self.key(resource), version).await
    }

    async fn pinned(&self, resource: &str) -> StoreResult<Option<VersionId>> {
        self.inner.pinned(&self.key(resource)).await
    }
}
