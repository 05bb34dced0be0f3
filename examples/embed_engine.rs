//! Run a pipeline from Rust: load HCL, run one job with the built-in runners, watch its events.
//!
//! `cargo run --example embed_engine`

use pipewright::config::{LoadOptions, load_str};
use pipewright::core::{Event, EventKind};
use pipewright::engine::{Engine, EngineOptions, Registry, RunOptions};
use std::sync::Arc;
use std::time::Duration;

const PIPELINE: &str = r#"
job "checks" {
  task "compile" {
    run "shell" {
      cmd = "echo compiled; echo BINARY=app-v2 >> $PIPEWRIGHT_OUTPUT"
    }
  }
  in_parallel {
    task "unit" {
      run "shell" { cmd = "echo unit tests passed for $TASK_COMPILE_BINARY" }
    }
    task "lint" {
      run "exec" {
        path = "echo"
        args = ["no lint findings"]
      }
    }
  }
  ensure "shell" {
    cmd = "echo checks finished: $BUILD_STATUS"
  }
}
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First, before any thread: host tasks then run under a supervisor (this executable started
    // again), so none of their processes escapes a cancel or outlives this program.
    pipewright::runners::enable_task_supervisor();
    let loaded =
        load_str("embedded.hcl", PIPELINE, &LoadOptions::default()).map_err(|e| e.render(false))?;
    let workspaces = std::env::temp_dir().join("pipewright-embed-engine");
    let engine =
        Engine::new(Registry::with_builtins(Duration::from_secs(5))).with_options(EngineOptions {
            workspace_root: workspaces,
            ..EngineOptions::default()
        });
    // Events arrive as they happen; a real tool would forward them to a UI or a log store.
    let opts = RunOptions {
        pipeline_name: "embedded".into(),
        events: Arc::new(|e: Event| match e.kind {
            EventKind::Log { step, data, .. } => print!("[{step}] {data}"),
            EventKind::StepFinished { step, status, .. } => println!("[{step}] -> {status}"),
            _ => {}
        }),
        ..RunOptions::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(engine.run_job(&loaded.pipeline, "checks", &opts))?;
    println!(
        "build {} of `{}`: {} ({} steps)",
        result.number,
        result.job,
        result.status,
        result.steps.len()
    );
    if !result.status.passes() {
        return Err(format!("the build ended {}", result.status).into());
    }
    Ok(())
}
