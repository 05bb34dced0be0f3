//! `pipewright plan`: the plan a build would run, for people or as JSON for `run --plan`.

use pipewright_config::{HookAction, Pipeline, Step, StepKind};
use pipewright_engine::{BuildPlan, Engine, RunOptions};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What `plan` is given besides the pipeline.
#[derive(Debug)]
pub struct PlanArgs {
    pub pipeline_name: String,
    pub job: String,
    pub inputs: BTreeMap<String, PathBuf>,
    pub job_inputs: BTreeMap<String, serde_json::Value>,
    pub json: bool,
    /// The pipeline's local history, whose versions `passed` chooses among.
    pub history: Option<PathBuf>,
}

/// Plans one build and prints it; returns the exit code.
pub fn show(pipeline: &Pipeline, args: PlanArgs) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    let engine = Engine::new(crate::run::registry(
        pipewright_runners::DEFAULT_GRACE,
        false,
    ))
    .with_options(pipewright_engine::EngineOptions {
        cache_root: crate::run::default_cache_root(),
        workspace_root: std::env::temp_dir().join("pipewright-plans"),
        ..pipewright_engine::EngineOptions::default()
    });
    let store =
        args.history
            .as_deref()
            .and_then(|dir| match rt.block_on(crate::history::versions(dir)) {
                Ok(s) => {
                    Some(std::sync::Arc::new(s)
                        as std::sync::Arc<dyn pipewright_engine::VersionStore>)
                }
                Err(e) => {
                    eprintln!("warning: no local build history: {e}");
                    None
                }
            });
    let opts = RunOptions {
        pipeline_name: args.pipeline_name,
        inputs: args.inputs,
        job_inputs: args.job_inputs,
        store,
        ..RunOptions::default()
    };
    let plan = match rt.block_on(engine.plan(pipeline, &args.job, &opts)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&plan) {
            Ok(text) => crate::write_out(format_args!("{text}\n")),
            Err(e) => {
                eprintln!("error: cannot write the plan: {e}");
                return 1;
            }
        }
    } else {
        crate::write_out(format_args!("{}", describe(&plan)));
    }
    0
}

/// Reads a plan written by `plan --output json`.
pub fn read(path: &Path) -> Result<BuildPlan, String> {
    let text = pipewright_config::read_capped(path, pipewright_config::MAX_PIPELINE_BYTES)
        .map_err(|e| format!("cannot read the plan `{}`: {e}", path.display()))?;
    let plan: BuildPlan = serde_json::from_str(&text).map_err(|e| {
        format!(
            "`{}` is not a plan written by `pipewright plan --output json`: {e}",
            path.display()
        )
    })?;
    plan.check().map_err(|e| e.to_string())?;
    Ok(plan)
}

/// The plan for people: the inputs with the reason for each, then the step tree.
fn describe(plan: &BuildPlan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan for job `{}` #{} of pipeline `{}`",
        plan.job, plan.number, plan.pipeline
    );
    if plan.inputs.is_empty() {
        let _ = writeln!(out, "inputs: none");
    } else {
        let _ = writeln!(out, "inputs:");
        for i in plan.inputs.values() {
            let what = match (&i.version, &i.local_dir) {
                (_, Some(dir)) => dir.display().to_string(),
                (Some(v), None) => v.to_string(),
                (None, None) => "—".to_owned(),
            };
            let _ = writeln!(out, "  {:<24} {what}  ({})", i.resource, i.why);
        }
    }
    for (k, v) in &plan.job_inputs {
        let _ = writeln!(out, "  input {k} = {v}");
    }
    let _ = writeln!(out, "steps:");
    if let Some(job) = plan.definition.jobs.get(&plan.job) {
        steps(&mut out, &job.steps, 1);
        for h in job.hooks.all() {
            if let HookAction::Step(s) = h {
                let _ = writeln!(out, "  (job hook) {}", label(s));
            }
        }
    }
    out
}

fn steps(out: &mut String, list: &[Step], depth: usize) {
    let pad = "  ".repeat(depth);
    for s in list {
        let _ = writeln!(out, "{pad}{}", label(s));
        match &s.kind {
            StepKind::InParallel(p) => steps(out, &p.steps, depth + 1),
            StepKind::If(c) => {
                for b in &c.branches {
                    let _ = writeln!(out, "{pad}  when {}:", b.label);
                    steps(out, &b.steps, depth + 2);
                }
                if let Some(e) = &c.else_steps {
                    let _ = writeln!(out, "{pad}  else:");
                    steps(out, e, depth + 2);
                }
            }
            _ => {}
        }
    }
}

fn label(s: &Step) -> String {
    match &s.kind {
        StepKind::Task(t) => format!("task {} (runner `{}`)", s.name, t.run.runner),
        StepKind::Get(g) => format!("get {}", g.resource),
        StepKind::Put(p) => format!("put {}", p.resource),
        other => format!("{} {}", other.keyword(), s.name),
    }
}
