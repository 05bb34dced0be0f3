//! Store records turned into the API's JSON types.

use crate::error::ServerResult;
use crate::hub::Hub;
use pipewright_api::{
    BuildView, Edge, JobInputView, JobView, PipelineSummary, PipelineView, ResourceView, StepView,
};
use pipewright_config::StepKind;
use pipewright_store::Build;
use pipewright_versions::VersionStore;
use std::collections::BTreeMap;

impl Hub {
    /// The API form of `b`, with its input versions and step summaries.
    pub async fn build_view(&self, b: &Build) -> ServerResult<BuildView> {
        let store = self.versions(&b.pipeline);
        let mut inputs = BTreeMap::new();
        for (rid, id) in &b.inputs {
            if let Some(v) = store.version(rid, *id).await? {
                inputs.insert(rid.clone(), v);
            }
        }
        let steps = self
            .store
            .build_steps(b.id)
            .await?
            .into_iter()
            .map(|s| StepView {
                step: s.step.to_string(),
                path: s.step.path.clone(),
                status: s.status,
                attempts: s.attempts,
                duration_ms: s.duration_ms,
                reason: s.reason,
            })
            .collect();
        let reason = b.reason.clone().or_else(|| {
            (!b.state.is_terminal())
                .then(|| self.waiting_reason(b.id))
                .flatten()
        });
        Ok(BuildView {
            id: b.id.0,
            pipeline: b.pipeline.clone(),
            job: b.job.clone(),
            number: b.number,
            status: b.status(),
            inputs,
            input_values: b.input_values.clone(),
            worker: b.worker.clone(),
            attempt: b.attempt,
            rerun_of: b.rerun_of.map(|r| r.0),
            trigger: b.trigger.clone(),
            approvals_required: b.approvals_required,
            approved_by: b.approved_by.clone(),
            reason,
            created_at_ms: b.created_at_ms,
            started_at_ms: b.started_at_ms,
            finished_at_ms: b.finished_at_ms,
            steps,
        })
    }

    /// The list entry of every pipeline.
    pub fn pipeline_summaries(&self) -> Vec<PipelineSummary> {
        self.pipelines()
            .into_iter()
            .map(|e| PipelineSummary {
                name: e.name,
                jobs: e.pipeline.jobs.keys().cloned().collect(),
                resources: e.pipeline.resources.keys().cloned().collect(),
                config_error: e.error,
            })
            .collect()
    }

    /// Pipeline `name` in detail, or `None`.
    pub async fn pipeline_view(&self, name: &str) -> ServerResult<Option<PipelineView>> {
        let Some(e) = self.pipeline_entry(name) else {
            return Ok(None);
        };
        let p = &e.pipeline;
        let mut jobs = Vec::new();
        for j in p.jobs.values() {
            let latest = match self.store.job_builds(name, &j.name, 1, None).await?.first() {
                Some(b) => Some(self.build_view(b).await?),
                None => None,
            };
            jobs.push(JobView {
                name: j.name.clone(),
                group: j.group.clone(),
                latest,
                inputs: j
                    .inputs
                    .iter()
                    .map(|i| JobInputView {
                        name: i.name.clone(),
                        type_name: i.ty.as_str().into(),
                        default: i.default.clone(),
                        options: i.options.clone(),
                        description: i.description.clone(),
                    })
                    .collect(),
                approve: j.approve.is_some(),
                concurrency: j.concurrency,
                tags: j.tags.clone(),
            });
        }
        let edges = edges(p);
        let store = self.versions(name);
        let mut resources = Vec::new();
        for r in p.resources.values() {
            let pinned = match store.pinned(&r.id).await? {
                Some(id) => store.version(&r.id, id).await?,
                None => None,
            };
            resources.push(ResourceView {
                id: r.id.clone(),
                type_name: r.type_name.clone(),
                name: r.name.clone(),
                check: self.check_state(name, &r.id),
                pinned,
            });
        }
        Ok(Some(PipelineView {
            name: e.name.clone(),
            file: e.file.display().to_string(),
            jobs,
            resources,
            edges,
            config_error: e.error.clone(),
        }))
    }
}

/// The graph's edges: resource → job (`get`, `trigger`), job → job (`passed`), job → resource
/// (`put`), from the pipeline alone.
pub(crate) fn edges(p: &pipewright_config::Pipeline) -> Vec<Edge> {
    let mut edges = Vec::new();
    for j in p.jobs.values() {
        for s in j.all_steps() {
            match &s.kind {
                StepKind::Get(g) => {
                    edges.push(Edge {
                        from: g.resource.clone(),
                        to: j.name.clone(),
                        kind: if g.trigger { "trigger" } else { "get" }.into(),
                    });
                    for up in &g.passed {
                        edges.push(Edge {
                            from: up.clone(),
                            to: j.name.clone(),
                            kind: "passed".into(),
                        });
                    }
                }
                StepKind::Put(put) => edges.push(Edge {
                    from: j.name.clone(),
                    to: put.resource.clone(),
                    kind: "put".into(),
                }),
                _ => {}
            }
        }
    }
    edges.dedup();
    edges
}
