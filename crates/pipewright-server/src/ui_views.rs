//! What the web UI shows beyond the plain API: the laid-out graph, the flow of a resource's
//! versions through the jobs, and duration and failure statistics.

use crate::error::{ServerError, ServerResult};
use crate::hub::Hub;
use pipewright_core::{BuildStatus, StepStatus};
use pipewright_store::Build;
use pipewright_ui::{EdgeIn, Layout, NodeIn};
use pipewright_versions::VersionStore;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Builds looked at per job for the flow of versions.
const FLOW_BUILDS: usize = 200;

/// A cached layout, valid while the pipeline's shape is the same.
#[derive(Debug, Default)]
pub(crate) struct LayoutCache(std::sync::Mutex<HashMap<String, (u64, Arc<Layout>)>>);

/// Where each recent version of a resource is in the pipeline.
#[derive(Debug, Serialize)]
pub struct Flow {
    /// The resource followed.
    pub resource: String,
    /// The jobs that get it, in declaration order.
    pub jobs: Vec<String>,
    /// Newest first.
    pub versions: Vec<FlowRow>,
}

/// One version and, per job, its newest build with that version (absent: not reached).
#[derive(Debug, Serialize)]
pub struct FlowRow {
    /// The version's id in the resource.
    pub id: u64,
    /// The version.
    pub version: pipewright_core::Version,
    /// Job name → the build.
    pub jobs: BTreeMap<String, FlowCell>,
}

/// A build in the flow table.
#[derive(Debug, Serialize)]
pub struct FlowCell {
    /// Its id.
    pub build: u64,
    /// Its number in the job.
    pub number: u64,
    /// Where it is.
    pub status: BuildStatus,
}

/// Duration and failure figures over a window of builds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Builds (or step runs) counted.
    pub runs: usize,
    /// Median duration of the finished ones.
    pub p50_ms: Option<u64>,
    /// 95th percentile.
    pub p95_ms: Option<u64>,
    /// Failed or errored, over finished and not cancelled.
    pub failure_rate: f64,
}

/// A job's statistics.
#[derive(Debug, Serialize)]
pub struct JobStats {
    /// The job.
    pub job: String,
    /// Over its last builds.
    #[serde(flatten)]
    pub figures: Figures,
    /// Oldest first: number, duration, status, for the trend chart.
    pub trend: Vec<(u64, Option<u64>, BuildStatus)>,
    /// Its steps.
    pub steps: Vec<StepStats>,
}

/// A step's statistics within its job.
#[derive(Debug, Clone, Serialize)]
pub struct StepStats {
    /// The job.
    pub job: String,
    /// The step as logs name it.
    pub step: String,
    /// Over its runs in the window.
    #[serde(flatten)]
    pub figures: Figures,
    /// Runs that failed first and passed on a retry.
    pub flaky: usize,
}

/// A pipeline's statistics.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Builds looked at per job.
    pub window: usize,
    /// Per job.
    pub jobs: Vec<JobStats>,
    /// The pipeline's slowest steps by p95, slowest first (at most 5).
    pub slowest: Vec<StepStats>,
    /// Steps that passed only on a retry, most often first (at most 5).
    pub flakiest: Vec<StepStats>,
}

fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank.min(sorted.len() - 1)).copied()
}

fn figures(durations: &mut [u64], ended: usize, failed: usize, runs: usize) -> Figures {
    durations.sort_unstable();
    Figures {
        runs,
        p50_ms: percentile(durations, 0.5),
        p95_ms: percentile(durations, 0.95),
        failure_rate: if ended == 0 {
            0.0
        } else {
            failed as f64 / ended as f64
        },
    }
}

impl Hub {
    /// Pipeline `name`'s graph laid out for drawing (cached until its shape changes).
    pub async fn graph_layout(&self, name: &str) -> ServerResult<Arc<Layout>> {
        let p = self
            .pipeline(name)
            .ok_or_else(|| ServerError::NotFound(format!("no pipeline `{name}`")))?;
        let mut nodes: Vec<NodeIn> = p
            .resources
            .keys()
            .map(|id| NodeIn {
                id: id.clone(),
                label: id.clone(),
                kind: "resource".into(),
            })
            .collect();
        let mut groups: HashMap<&str, Vec<&str>> = HashMap::new();
        for j in p.jobs.values() {
            nodes.push(NodeIn {
                id: j.name.clone(),
                label: j.name.clone(),
                kind: "job".into(),
            });
            if let Some(g) = &j.group {
                groups.entry(g.as_str()).or_default().push(&j.name);
            }
        }
        // `passed = ["test"]` naming a matrix group means each of its instances.
        let mut edges = Vec::new();
        for e in &crate::views::edges(&p) {
            match groups.get(e.from.as_str()) {
                Some(members) if e.kind == "passed" => {
                    for m in members {
                        edges.push(EdgeIn {
                            from: (*m).to_owned(),
                            to: e.to.clone(),
                            kind: e.kind.clone(),
                        });
                    }
                }
                _ => edges.push(EdgeIn {
                    from: e.from.clone(),
                    to: e.to.clone(),
                    kind: e.kind.clone(),
                }),
            }
        }
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for n in &nodes {
                (&n.id, &n.kind).hash(&mut h);
            }
            for e in &edges {
                (&e.from, &e.to, &e.kind).hash(&mut h);
            }
            h.finish()
        };
        if let Ok(c) = self.layouts.0.lock()
            && let Some((k, l)) = c.get(name)
            && *k == key
        {
            return Ok(l.clone());
        }
        let l = Arc::new(pipewright_ui::layout(&nodes, &edges));
        if let Ok(mut c) = self.layouts.0.lock() {
            c.insert(name.to_owned(), (key, l.clone()));
        }
        Ok(l)
    }

    /// Where each of the last `limit` versions of `resource` (default: the first resource a
    /// job triggers on) is: per job that gets it, the newest build with that version.
    pub async fn flow(
        &self,
        name: &str,
        resource: Option<&str>,
        limit: usize,
    ) -> ServerResult<Flow> {
        let p = self
            .pipeline(name)
            .ok_or_else(|| ServerError::NotFound(format!("no pipeline `{name}`")))?;
        let gets = |j: &pipewright_config::Job, rid: &str, trigger_only: bool| {
            j.gets()
                .any(|g| g.resource == rid && (g.trigger || !trigger_only))
        };
        let rid = match resource {
            Some(r) => {
                self.resource_exists(name, r)?;
                r.to_owned()
            }
            None => p
                .resources
                .keys()
                .find(|r| p.jobs.values().any(|j| gets(j, r, true)))
                .or_else(|| p.resources.keys().next())
                .cloned()
                .ok_or_else(|| {
                    ServerError::NotFound(format!("pipeline `{name}` has no resources"))
                })?,
        };
        let jobs: Vec<String> = p
            .jobs
            .values()
            .filter(|j| gets(j, &rid, false))
            .map(|j| j.name.clone())
            .collect();
        let store = self.versions(name);
        let versions = store.versions(&rid, limit, None).await?;
        let mut rows: Vec<FlowRow> = versions
            .into_iter()
            .map(|(id, version)| FlowRow {
                id: id.0,
                version,
                jobs: BTreeMap::new(),
            })
            .collect();
        for j in &jobs {
            // Newest first, so the first build seen per version is its newest.
            for b in self.store.job_builds(name, j, FLOW_BUILDS, None).await? {
                let Some(vid) = b.inputs.get(&rid) else {
                    continue;
                };
                if let Some(row) = rows.iter_mut().find(|r| r.id == vid.0) {
                    row.jobs.entry(j.clone()).or_insert(FlowCell {
                        build: b.id.0,
                        number: b.number,
                        status: b.status(),
                    });
                }
            }
        }
        Ok(Flow {
            resource: rid,
            jobs,
            versions: rows,
        })
    }

    /// Durations, failure rates and flaky steps over each job's last `window` builds.
    pub async fn stats(&self, name: &str, window: usize) -> ServerResult<Stats> {
        let p = self
            .pipeline(name)
            .ok_or_else(|| ServerError::NotFound(format!("no pipeline `{name}`")))?;
        let mut jobs = Vec::new();
        for j in p.jobs.keys() {
            let builds = self.store.job_builds(name, j, window, None).await?;
            jobs.push(self.job_stats(j, &builds).await?);
        }
        let all = || jobs.iter().flat_map(|j| j.steps.iter());
        let mut slowest: Vec<&StepStats> = all().filter(|s| s.figures.p95_ms.is_some()).collect();
        slowest.sort_by_key(|s| std::cmp::Reverse(s.figures.p95_ms));
        let mut flakiest: Vec<&StepStats> = all().filter(|s| s.flaky > 0).collect();
        flakiest.sort_by_key(|s| std::cmp::Reverse(s.flaky));
        let slowest = slowest.into_iter().take(5).cloned().collect();
        let flakiest = flakiest.into_iter().take(5).cloned().collect();
        Ok(Stats {
            window,
            jobs,
            slowest,
            flakiest,
        })
    }

    async fn job_stats(&self, job: &str, builds: &[Build]) -> ServerResult<JobStats> {
        let (mut durations, mut ended, mut failed) = (Vec::new(), 0, 0);
        let mut trend = Vec::new();
        // Per step: durations, ended, failed, flaky, runs.
        let mut steps: BTreeMap<String, (Vec<u64>, usize, usize, usize, usize)> = BTreeMap::new();
        for b in builds.iter().rev() {
            let status = b.status();
            let took = match (b.started_at_ms, b.finished_at_ms) {
                (Some(s), Some(f)) => Some(f.saturating_sub(s)),
                _ => None,
            };
            trend.push((b.number, took, status));
            if !status.is_terminal() || status == BuildStatus::Cancelled {
                continue;
            }
            ended += 1;
            if matches!(status, BuildStatus::Failed | BuildStatus::Errored) {
                failed += 1;
            }
            durations.extend(took);
            for s in self.store.build_steps(b.id).await? {
                let e = steps.entry(s.step.to_string()).or_default();
                e.4 += 1;
                if s.status == StepStatus::Skipped || s.status == StepStatus::Cancelled {
                    continue;
                }
                e.1 += 1;
                e.0.extend(s.duration_ms);
                match s.status {
                    StepStatus::Succeeded if s.attempts > 1 => e.3 += 1,
                    StepStatus::Failed | StepStatus::Errored => e.2 += 1,
                    _ => {}
                }
            }
        }
        let steps = steps
            .into_iter()
            .map(|(step, (mut d, ended, failed, flaky, runs))| StepStats {
                job: job.to_owned(),
                step,
                figures: figures(&mut d, ended, failed, runs),
                flaky,
            })
            .collect();
        let runs = builds.len();
        Ok(JobStats {
            job: job.to_owned(),
            figures: figures(&mut durations, ended, failed, runs),
            trend,
            steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_small_and_empty_sets() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7], 0.95), Some(7));
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(51));
        assert_eq!(percentile(&v, 0.95), Some(95));
        let f = figures(&mut [30, 10, 20], 4, 1, 5);
        assert_eq!((f.p50_ms, f.runs), (Some(20), 5));
        assert!((f.failure_rate - 0.25).abs() < 1e-9);
    }
}
