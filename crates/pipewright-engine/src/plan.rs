//! Build plans: everything one build needs, chosen before it runs, in a form that can be
//! stored, sent to another process and executed there without the pipeline file.

use pipewright_config::{Pipeline, StepKind};
use pipewright_core::{BuildStatus, Version};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The plan format this engine writes and reads. A plan with another schema is refused.
pub const PLAN_SCHEMA: u32 = 1;

/// One build of one job, decided: which version each `get` fetches and why, the job's input
/// values, and the definitions the build uses (the job, its resources, every type definition
/// inlined, variables with secret *references*, never secret values). Executing it needs no
/// HCL, no type fetch and no version check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildPlan {
    /// [`PLAN_SCHEMA`] when written by this engine.
    pub schema: u32,
    /// The pipeline's name (`BUILD_PIPELINE_NAME`).
    pub pipeline: String,
    /// The job.
    pub job: String,
    /// The build number (`BUILD_NUMBER`).
    pub number: u64,
    /// The input of each `get`, by resource id (`type.name`).
    pub inputs: BTreeMap<String, PlannedInput>,
    /// Values of the job's `input` blocks (`INPUT_<NAME>`).
    pub job_inputs: BTreeMap<String, serde_json::Value>,
    /// The pipeline reduced to this job and what it uses.
    pub definition: Pipeline,
    /// Top-level steps not run again but taken from an earlier build (a rerun from the failed
    /// step), by step name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restore: BTreeMap<String, RestoredStep>,
    /// The status of the job's previous build, for the `fixed` and `broken` notification
    /// rules; `None` when unknown (neither rule fires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<BuildStatus>,
    /// Where people see this build (a server's page for it), exported as `BUILD_URL` and sent
    /// with notifications; `None` without a server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A step whose effects a build takes from an earlier build instead of running it: its
/// exports (`TASK_<STEP>_*`, `PUT_<STEP>_*`) for the steps after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredStep {
    /// The exports it made.
    pub exports: BTreeMap<String, String>,
    /// Where they come from, for people (`build #3`).
    pub from: String,
}

/// What a `get` fetches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedInput {
    /// The resource id (`type.name`).
    pub resource: String,
    /// The version to fetch; `None` when a local directory stands in for the resource.
    pub version: Option<Version>,
    /// The local directory that replaces the resource (`run --input NAME=DIR`).
    pub local_dir: Option<PathBuf>,
    /// Why this input was chosen, for people (`the newest version that passed build`).
    pub why: String,
    /// Why no input could be chosen (the `get` fails with this reason). Never set in a plan
    /// [`crate::Engine::plan`] returns: that is an error instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unresolved: Option<String>,
}

impl BuildPlan {
    /// The plan of a build of `job` of `pipeline` (named `name`) with inputs already chosen:
    /// what a server makes from a build whose versions it pinned at creation.
    pub fn new(
        pipeline: &Pipeline,
        name: &str,
        job: &str,
        number: u64,
        inputs: BTreeMap<String, PlannedInput>,
        job_inputs: BTreeMap<String, serde_json::Value>,
    ) -> Self {
        BuildPlan {
            schema: PLAN_SCHEMA,
            pipeline: name.to_owned(),
            job: job.to_owned(),
            number,
            inputs,
            job_inputs,
            definition: definition(pipeline, job),
            restore: BTreeMap::new(),
            previous_status: None,
            url: None,
        }
    }

    /// Checks that this engine can execute the plan.
    pub fn check(&self) -> pipewright_core::Result<()> {
        use pipewright_core::{Error, ErrorKind};
        if self.schema != PLAN_SCHEMA {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "the plan has schema {}, this engine executes schema {PLAN_SCHEMA}",
                    self.schema
                ),
            ));
        }
        if !self.definition.jobs.contains_key(&self.job) {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("the plan does not define its job `{}`", self.job),
            ));
        }
        Ok(())
    }
}

/// `pipeline` reduced to `job` and the resources it gets or puts; the types, runners and
/// variables stay whole (they are small, and a step may reach any of them).
pub(crate) fn definition(pipeline: &Pipeline, job: &str) -> Pipeline {
    let mut def = pipeline.clone();
    def.jobs.retain(|name, _| name == job);
    def.groups.clear();
    let mut used = BTreeSet::new();
    for j in def.jobs.values() {
        for s in j.all_steps() {
            match &s.kind {
                StepKind::Get(g) => {
                    used.insert(g.resource.clone());
                }
                StepKind::Put(p) => {
                    used.insert(p.resource.clone());
                }
                _ => {}
            }
        }
    }
    def.resources.retain(|id, _| used.contains(id));
    def
}
