//! [`MemoryStore`]: every store trait in memory, for `pipewright run`, `--db memory` and tests.

use crate::{
    Build, BuildId, BuildState, BuildStore, EventRecord, EventStore, NewBuild, StepSummary,
    StoreError, StoreResult, rules,
};
use async_trait::async_trait;
use pipewright_core::{BuildStatus, Version};
use pipewright_versions::{BuildRecord, VersionId, VersionStore};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

/// Versions, builds and events in memory. Each call takes one lock, so each is atomic like a
/// database transaction; nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    versions: pipewright_versions::MemoryStore,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Builds by id: the build with id `n` is at index `n - 1`.
    builds: Vec<Row>,
    /// The ids of each (pipeline, job)'s builds, in number order.
    jobs: HashMap<(String, String), Vec<BuildId>>,
    /// Events per build, by seq.
    events: HashMap<BuildId, BTreeMap<u64, Stored>>,
}

#[derive(Debug)]
struct Row {
    build: Build,
    steps: Vec<StepSummary>,
}

impl State {
    fn row(&self, id: BuildId) -> StoreResult<&Row> {
        index(id)
            .and_then(|i| self.builds.get(i))
            .ok_or_else(|| StoreError::build_not_found(id))
    }

    fn row_mut(&mut self, id: BuildId) -> StoreResult<&mut Row> {
        index(id)
            .and_then(|i| self.builds.get_mut(i))
            .ok_or_else(|| StoreError::build_not_found(id))
    }
}

fn index(id: BuildId) -> Option<usize> {
    usize::try_from(id.0).ok()?.checked_sub(1)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> StoreResult<T>) -> StoreResult<T> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| StoreError::Invalid("a writer panicked while holding the store".into()))?;
        f(&mut state)
    }

    fn update(
        &self,
        id: BuildId,
        f: impl FnOnce(&mut Row) -> StoreResult<()>,
    ) -> StoreResult<Build> {
        self.with(|s| {
            let row = s.row_mut(id)?;
            f(row)?;
            Ok(row.build.clone())
        })
    }
}

#[async_trait]
impl BuildStore for MemoryStore {
    async fn create_build(&self, new: NewBuild) -> StoreResult<Build> {
        rules::validate_new(&new)?;
        self.with(|s| {
            if let Some(r) = new.rerun_of {
                s.row(r).map_err(|_| rules::no_rerun_target(r))?;
            }
            let id = BuildId(s.builds.len() as u64 + 1);
            let ids = s
                .jobs
                .entry((new.pipeline.clone(), new.job.clone()))
                .or_default();
            ids.push(id);
            let build = rules::created(id, ids.len() as u64, new);
            rules::log_created(&build);
            s.builds.push(Row {
                build: build.clone(),
                steps: Vec::new(),
            });
            Ok(build)
        })
    }

    async fn build(&self, id: BuildId) -> StoreResult<Option<Build>> {
        self.with(|s| Ok(s.row(id).ok().map(|r| r.build.clone())))
    }

    async fn job_builds(
        &self,
        pipeline: &str,
        job: &str,
        limit: usize,
        before: Option<u64>,
    ) -> StoreResult<Vec<Build>> {
        self.with(|s| {
            let Some(ids) = s.jobs.get(&(pipeline.to_owned(), job.to_owned())) else {
                return Ok(Vec::new());
            };
            // Numbers are positions in `ids`, from 1.
            let end = before.map_or(ids.len(), |b| {
                usize::try_from(b.saturating_sub(1)).map_or(ids.len(), |b| b.min(ids.len()))
            });
            ids[..end]
                .iter()
                .rev()
                .take(limit)
                .map(|id| s.row(*id).map(|r| r.build.clone()))
                .collect()
        })
    }

    async fn builds_in_state(
        &self,
        states: &[BuildState],
        limit: usize,
        after: Option<BuildId>,
    ) -> StoreResult<Vec<Build>> {
        self.with(|s| {
            let start = after.map_or(0, |a| usize::try_from(a.0).unwrap_or(usize::MAX));
            Ok(s.builds
                .iter()
                .skip(start)
                .filter(|r| states.contains(&r.build.state))
                .take(limit)
                .map(|r| r.build.clone())
                .collect())
        })
    }

    async fn approve_build(&self, id: BuildId, by: &str) -> StoreResult<Build> {
        self.update(id, |row| rules::approve(&mut row.build, by))
    }

    async fn claim_build(&self, id: BuildId, attempt: u32, worker: &str) -> StoreResult<Build> {
        self.update(id, |row| rules::claim(&mut row.build, attempt, worker))
    }

    async fn start_build(&self, id: BuildId, attempt: u32) -> StoreResult<Build> {
        self.update(id, |row| rules::start(&mut row.build, attempt))
    }

    async fn record_step(&self, id: BuildId, attempt: u32, step: &StepSummary) -> StoreResult<()> {
        self.update(id, |row| {
            rules::record_step(&row.build, attempt, &step.step)?;
            match row.steps.iter_mut().find(|s| s.step == step.step) {
                Some(existing) => *existing = step.clone(),
                None => row.steps.push(step.clone()),
            }
            Ok(())
        })
        .map(|_| ())
    }

    async fn build_steps(&self, id: BuildId) -> StoreResult<Vec<StepSummary>> {
        self.with(|s| Ok(s.row(id)?.steps.clone()))
    }

    async fn finish_build(
        &self,
        id: BuildId,
        attempt: u32,
        status: BuildStatus,
        reason: Option<String>,
    ) -> StoreResult<Build> {
        self.update(id, |row| {
            rules::finish(&mut row.build, attempt, status, reason).map(|_| ())
        })
    }

    async fn requeue_build(&self, id: BuildId, attempt: u32) -> StoreResult<Build> {
        self.update(id, |row| {
            rules::requeue(&mut row.build, attempt)?;
            row.steps.clear();
            Ok(())
        })
    }
}

/// An event as kept: its JSON as text (a parsed `serde_json::Value` costs several times the
/// memory) and its log text.
#[derive(Debug, Clone)]
struct Stored {
    body: Box<str>,
    log: Option<Box<str>>,
}

impl Stored {
    fn of(e: &EventRecord) -> Self {
        Stored {
            body: e.body.to_string().into_boxed_str(),
            log: e.log.as_deref().map(Into::into),
        }
    }

    fn record(&self, seq: u64) -> StoreResult<EventRecord> {
        let body = serde_json::from_str(&self.body)
            .map_err(|e| StoreError::Invalid(format!("stored event {seq}: {e}")))?;
        Ok(EventRecord {
            seq,
            body,
            log: self.log.as_deref().map(str::to_owned),
        })
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append_events(
        &self,
        id: BuildId,
        attempt: u32,
        events: &[EventRecord],
    ) -> StoreResult<usize> {
        self.with(|s| {
            rules::fence(&s.row(id)?.build, attempt)?;
            let stored = s.events.entry(id).or_default();
            let mut new = 0;
            for e in events {
                if let std::collections::btree_map::Entry::Vacant(slot) = stored.entry(e.seq) {
                    slot.insert(Stored::of(e));
                    new += 1;
                }
            }
            Ok(new)
        })
    }

    async fn events_after(
        &self,
        id: BuildId,
        after: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        self.with(|s| {
            s.row(id)?;
            let from = after.map_or(Bound::Unbounded, Bound::Excluded);
            s.events
                .get(&id)
                .map(|m| {
                    m.range((from, Bound::Unbounded))
                        .take(limit)
                        .map(|(seq, e)| e.record(*seq))
                        .collect()
                })
                .unwrap_or(Ok(Vec::new()))
        })
    }

    async fn last_event_seq(&self, id: BuildId) -> StoreResult<Option<u64>> {
        self.with(|s| {
            s.row(id)?;
            Ok(s.events
                .get(&id)
                .and_then(|m| m.last_key_value())
                .map(|(k, _)| *k))
        })
    }

    async fn log_text(&self, id: BuildId) -> StoreResult<String> {
        self.with(|s| {
            s.row(id)?;
            Ok(s.events
                .get(&id)
                .map(|m| m.values().filter_map(|e| e.log.as_deref()).collect())
                .unwrap_or_default())
        })
    }
}

/// Versions delegate to [`pipewright_versions::MemoryStore`].
#[async_trait]
impl VersionStore for MemoryStore {
    async fn save_versions(
        &self,
        resource: &str,
        versions: &[Version],
    ) -> pipewright_versions::StoreResult<Vec<VersionId>> {
        self.versions.save_versions(resource, versions).await
    }

    async fn latest_version(
        &self,
        resource: &str,
    ) -> pipewright_versions::StoreResult<Option<(VersionId, Version)>> {
        self.versions.latest_version(resource).await
    }

    async fn version(
        &self,
        resource: &str,
        id: VersionId,
    ) -> pipewright_versions::StoreResult<Option<Version>> {
        self.versions.version(resource, id).await
    }

    async fn find_version(
        &self,
        resource: &str,
        version: &Version,
    ) -> pipewright_versions::StoreResult<Option<VersionId>> {
        self.versions.find_version(resource, version).await
    }

    async fn versions(
        &self,
        resource: &str,
        limit: usize,
        before: Option<VersionId>,
    ) -> pipewright_versions::StoreResult<Vec<(VersionId, Version)>> {
        self.versions.versions(resource, limit, before).await
    }

    async fn record_build(&self, build: BuildRecord) -> pipewright_versions::StoreResult<()> {
        self.versions.record_build(build).await
    }

    async fn passed_versions(
        &self,
        job: &str,
        resource: &str,
    ) -> pipewright_versions::StoreResult<BTreeSet<VersionId>> {
        self.versions.passed_versions(job, resource).await
    }

    async fn pin(
        &self,
        resource: &str,
        version: Option<VersionId>,
    ) -> pipewright_versions::StoreResult<()> {
        self.versions.pin(resource, version).await
    }

    async fn pinned(&self, resource: &str) -> pipewright_versions::StoreResult<Option<VersionId>> {
        self.versions.pinned(resource).await
    }
}
