//! Rerun from the failed step: which of an earlier build's steps can be taken from it instead
//! of run again. A `get` is fetched again (the same pinned version); a task with no declared
//! `outputs` and a `put` or `notify` that succeeded are restored from their exports in the
//! event stream; the rerun runs from the first step that failed or cannot be restored (a task
//! whose `outputs` were not kept, a service, `in_parallel` or `if`), and says which.

use crate::error::ServerResult;
use crate::hub::Hub;
use pipewright_config::{Job, StepKind};
use pipewright_core::{Event, EventKind, StepRole, StepStatus};
use pipewright_engine::RestoredStep;
use pipewright_store::Build;
use std::collections::{BTreeMap, HashMap};

/// The marker in a rerun's trigger text that makes its dispatch restore steps.
pub(crate) const FROM_FAILED: &str = "from the failed step";

impl Hub {
    /// The steps of `old` a rerun of `job` takes instead of running, and where it starts.
    pub(crate) async fn restorable(
        &self,
        old: &Build,
        job: &Job,
    ) -> ServerResult<(BTreeMap<String, RestoredStep>, String)> {
        let mut finished: HashMap<String, StepStatus> = HashMap::new();
        let mut exported: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        let mut after = None;
        loop {
            let page = self.store.events_after(old.id, after, 1000).await?;
            let Some(last) = page.last().map(|r| r.seq) else {
                break;
            };
            for r in page {
                let Ok(e) = serde_json::from_value::<Event>(r.body) else {
                    continue;
                };
                match e.kind {
                    EventKind::StepFinished {
                        step,
                        is_final: true,
                        status,
                        ..
                    } if step.role == StepRole::Step && step.path.len() == 1 => {
                        finished.insert(step.leaf().to_owned(), status);
                    }
                    EventKind::Exports { step, exports, .. }
                        if step.role == StepRole::Step && step.path.len() == 1 =>
                    {
                        exported.insert(step.leaf().to_owned(), exports);
                    }
                    _ => {}
                }
            }
            after = Some(last);
        }
        let from = format!("build #{}", old.number);
        let mut restore = BTreeMap::new();
        for step in &job.steps {
            let ok = finished.get(&step.name) == Some(&StepStatus::Succeeded);
            let stop = match &step.kind {
                StepKind::Get(_) => continue,
                StepKind::Task(t) if ok && t.outputs.is_empty() => None,
                StepKind::Task(_) if ok => Some(format!(
                    "`{}`, whose declared outputs were not kept",
                    step.name
                )),
                StepKind::Put(_) | StepKind::Notify(_) if ok => None,
                StepKind::Service(_) | StepKind::InParallel(_) | StepKind::If(_) => Some(format!(
                    "`{}`, a {} block, which cannot be restored",
                    step.name,
                    step.kind.keyword()
                )),
                _ => Some(format!("the failed step `{}`", step.name)),
            };
            match stop {
                None => {
                    restore.insert(
                        step.name.clone(),
                        RestoredStep {
                            exports: exported.remove(&step.name).unwrap_or_default(),
                            from: from.clone(),
                        },
                    );
                }
                Some(at) => {
                    let kept: Vec<&str> = restore.keys().map(String::as_str).collect();
                    let summary = if kept.is_empty() {
                        format!("starts at {at}: nothing before it can be restored")
                    } else {
                        format!("starts at {at}; restored from {from}: {}", kept.join(", "))
                    };
                    return Ok((restore, summary));
                }
            }
        }
        Ok((
            restore,
            "every step succeeded before: all are restored".to_owned(),
        ))
    }
}
