#![doc = include_str!("../README.md")]

mod store;

pub use store::{InputFacts, MemoryStore, StoreError, StoreResult, VersionStore};

use pipewright_config::{GetStep, Pipeline, StepKind, VersionPolicy};
use pipewright_core::{BuildStatus, Version};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A version's id within its resource: ids grow as versions are discovered, so the newest
/// version has the highest id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VersionId(pub u64);

/// One build of a job, as far as versions are concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRecord {
    /// The job.
    pub job: String,
    /// The build number.
    pub number: u64,
    /// How it ended (`Pending`/`Running` while it runs).
    pub status: BuildStatus,
    /// The version each resource id (`type.name`) was got at.
    pub inputs: BTreeMap<String, VersionId>,
    /// Versions the build's puts produced, by resource id.
    pub outputs: BTreeMap<String, Vec<VersionId>>,
}

impl BuildRecord {
    /// Every version of `resource` this build used or produced.
    pub fn touched(&self, resource: &str) -> impl Iterator<Item = VersionId> + '_ {
        self.inputs
            .get(resource)
            .copied()
            .into_iter()
            .chain(self.outputs.get(resource).into_iter().flatten().copied())
    }
}

/// A snapshot of versions, builds and pins: what the decision functions read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Versions per resource id, oldest first.
    pub versions: BTreeMap<String, Vec<(VersionId, Version)>>,
    /// Builds, in creation order.
    pub builds: Vec<BuildRecord>,
    /// Pinned versions per resource id.
    pub pins: BTreeMap<String, VersionId>,
}

impl History {
    /// Adds versions to a resource's history, skipping ones it already has. Returns the id of
    /// each given version (existing or new), in order.
    pub fn add_versions(&mut self, resource: &str, versions: &[Version]) -> Vec<VersionId> {
        let list = self.versions.entry(resource.to_owned()).or_default();
        let mut next = list.last().map_or(1, |(id, _)| id.0 + 1);
        versions
            .iter()
            .map(|v| {
                if let Some((id, _)) = list.iter().find(|(_, existing)| existing == v) {
                    return *id;
                }
                let id = VersionId(next);
                next += 1;
                list.push((id, v.clone()));
                id
            })
            .collect()
    }

    /// The newest version of a resource.
    pub fn latest(&self, resource: &str) -> Option<(VersionId, &Version)> {
        self.versions
            .get(resource)
            .and_then(|l| l.last())
            .map(|(id, v)| (*id, v))
    }

    /// A version by id.
    pub fn version(&self, resource: &str, id: VersionId) -> Option<&Version> {
        self.versions
            .get(resource)?
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v)
    }

    /// The id of a version, if the history has it.
    pub fn find(&self, resource: &str, version: &Version) -> Option<VersionId> {
        self.versions
            .get(resource)?
            .iter()
            .find(|(_, v)| v == version)
            .map(|(id, _)| *id)
    }

    /// The versions of `resource` that passed `job`: used or produced by a build of it that
    /// succeeded (or ended with a warning).
    pub fn passed_versions(&self, job: &str, resource: &str) -> BTreeSet<VersionId> {
        self.builds
            .iter()
            .filter(|b| b.job == job && b.status.passes())
            .flat_map(|b| b.touched(resource).collect::<Vec<_>>())
            .collect()
    }
}

/// Why a `get` has no version to use; shown to users next to the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoVersion {
    /// The resource id.
    pub resource: String,
    /// The explanation.
    pub reason: String,
}

impl std::fmt::Display for NoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for NoVersion {}

/// `passed` resolution: the newest version of `resource` that passed every job in `passed`.
pub fn resolve_passed(
    history: &History,
    resource: &str,
    passed: &[String],
) -> Result<VersionId, NoVersion> {
    let sets: Vec<(String, BTreeSet<VersionId>)> = passed
        .iter()
        .map(|job| (job.clone(), history.passed_versions(job, resource)))
        .collect();
    intersect_passed(resource, &sets)
}

/// The newest version in every job's set of passed versions.
pub fn intersect_passed(
    resource: &str,
    passed: &[(String, BTreeSet<VersionId>)],
) -> Result<VersionId, NoVersion> {
    let mut common: Option<BTreeSet<VersionId>> = None;
    for (job, ok) in passed {
        if ok.is_empty() {
            return Err(NoVersion {
                resource: resource.to_owned(),
                reason: format!("no version of `{resource}` has passed `{job}` yet"),
            });
        }
        common = Some(match common {
            None => ok.clone(),
            Some(c) => c.intersection(ok).copied().collect(),
        });
    }
    common
        .and_then(|c| c.last().copied())
        .ok_or_else(|| NoVersion {
            resource: resource.to_owned(),
            reason: format!(
                "no single version of `{resource}` has passed all of {} yet",
                passed
                    .iter()
                    .map(|(j, _)| format!("`{j}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// Which rule chose an input's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// `version = {…}` in the pipeline.
    PinnedInPipeline,
    /// The newest version that passed every job in `passed`.
    Passed,
    /// A version pinned on the resource (API, UI).
    PinnedOnResource,
    /// The version that triggered the build.
    Trigger,
    /// The newest version.
    Newest,
}

/// The version one `get` of a new build uses, from what the store knows about its resource.
/// Priority: a version pinned in the pipeline (`version = {…}`), then `passed` resolution,
/// then a version pinned on the resource, then the version that triggered the build (for its
/// resource), then the newest. The one place this rule lives.
pub fn choose_input(
    get: &GetStep,
    facts: &InputFacts,
    trigger: Option<(&str, VersionId)>,
) -> Result<(VersionId, Choice), NoVersion> {
    let r = get.resource.as_str();
    if let VersionPolicy::Pinned(v) = &get.version {
        facts
            .pinned_in_pipeline
            .map(|id| (id, Choice::PinnedInPipeline))
            .ok_or_else(|| NoVersion {
                resource: r.to_owned(),
                reason: format!("the pinned version {v} of `{r}` has not been seen by a check"),
            })
    } else if !get.passed.is_empty() {
        intersect_passed(r, &facts.passed).map(|id| (id, Choice::Passed))
    } else if let Some(pin) = facts.pin {
        Ok((pin, Choice::PinnedOnResource))
    } else if let Some((_, id)) = trigger.filter(|(tr, _)| *tr == r) {
        Ok((id, Choice::Trigger))
    } else {
        facts
            .latest
            .map(|id| (id, Choice::Newest))
            .ok_or_else(|| NoVersion {
                resource: r.to_owned(),
                reason: format!("`{r}` has no versions yet"),
            })
    }
}

/// [`choose_input`] over a [`History`] snapshot.
pub fn resolve_input(
    get: &GetStep,
    history: &History,
    trigger: Option<(&str, VersionId)>,
) -> Result<VersionId, NoVersion> {
    choose_input(get, &InputFacts::from_history(history, get), trigger).map(|(id, _)| id)
}

/// The version each `get` of a new build of `job` uses, by resource id ([`resolve_input`]
/// for each).
pub fn resolve_inputs(
    pipeline: &Pipeline,
    job: &str,
    history: &History,
    trigger: Option<(&str, VersionId)>,
) -> Result<BTreeMap<String, VersionId>, NoVersion> {
    let mut out = BTreeMap::new();
    let Some(job) = pipeline.jobs.get(job) else {
        return Ok(out);
    };
    for step in job.all_steps() {
        let StepKind::Get(g) = &step.kind else {
            continue;
        };
        out.insert(g.resource.clone(), resolve_input(g, history, trigger)?);
    }
    Ok(out)
}

/// Jobs that a new version of `resource` triggers: a `get` of it with `trigger = true` and no
/// `passed` (jobs with `passed` are triggered when their upstream builds pass).
pub fn jobs_triggered_by_version(pipeline: &Pipeline, resource: &str) -> Vec<String> {
    pipeline
        .jobs
        .values()
        .filter(|j| {
            j.gets()
                .any(|g| g.resource == resource && g.trigger && g.passed.is_empty())
        })
        .map(|j| j.name.clone())
        .collect()
}

/// Jobs that a passing build of `job` triggers: a `get` with `trigger = true` whose `passed`
/// names `job`.
pub fn jobs_triggered_by_build(pipeline: &Pipeline, job: &str) -> Vec<String> {
    pipeline
        .jobs
        .values()
        .filter(|j| {
            j.gets()
                .any(|g| g.trigger && g.passed.iter().any(|p| p == job))
        })
        .map(|j| j.name.clone())
        .collect()
}
