//! A `Runner` written in Rust, registered with the engine and used by an HCL pipeline.
//!
//! The runner here does its work in-process: it counts the lines of the files named in its
//! `files` param and exports the total as `TASK_<STEP>_LINES`, exactly as a process would by
//! writing to `$PIPEWRIGHT_OUTPUT`. A runner that talks to a remote executor (a VM pool, a
//! build farm) has the same shape: honour `ctx.cancel` and `ctx.deadline`, stream output to
//! `ctx.log`, return the exit status.
//!
//! `cargo run --example custom_runner`

use async_trait::async_trait;
use pipewright::config::{LoadOptions, load_str};
use pipewright::core::{
    Ctx, Error, ErrorKind, ExitStatus, ParamSpec, Result, Runner, Stream, TaskSpec, Workspace,
};
use pipewright::engine::{Engine, EngineOptions, Registry, RunOptions};
use std::sync::Arc;
use std::time::Duration;

/// Counts lines of workspace files.
struct LineCounter;

#[async_trait]
impl Runner for LineCounter {
    /// Declared, so `filez = […]` is a load-time error with "did you mean `files`?".
    fn params(&self) -> ParamSpec {
        ParamSpec::exactly(&["files"], &["files"])
    }

    async fn run(&self, ctx: &Ctx, task: &TaskSpec, ws: &Workspace) -> Result<ExitStatus> {
        let files = task
            .params
            .get("files")
            .and_then(|v| v.as_array())
            .ok_or_else(|| Error::new(ErrorKind::InvalidConfig, "`files` must be a list"))?;
        let mut total = 0usize;
        for f in files.iter().filter_map(|f| f.as_str()) {
            if ctx.cancel.is_cancelled() {
                return Err(Error::cancelled());
            }
            let text = tokio::fs::read_to_string(ws.dir.join(f)).await?;
            let n = text.lines().count();
            total += n;
            ctx.log
                .write(Stream::Stdout, format!("{f}: {n} lines\n").as_bytes());
        }
        tokio::fs::write(&ws.output_file, format!("LINES={total}\n")).await?;
        Ok(ExitStatus::SUCCESS)
    }
}

const PIPELINE: &str = r#"
job "stats" {
  task "write" {
    run "shell" {
      cmd = "printf 'a\nb\nc\n' > one.txt; printf 'd\ne\n' > two.txt"
    }
  }
  task "count" {
    run "line-counter" {
      files = ["one.txt", "two.txt"]
    }
  }
  task "report" {
    run "shell" {
      cmd = "echo \"the workspace holds $TASK_COUNT_LINES lines\"; test \"$TASK_COUNT_LINES\" = 5"
    }
  }
}
"#;

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    // Register the runner once: the engine runs it, and validation learns its name and params
    // from the same registry.
    let mut registry = Registry::with_builtins(Duration::from_secs(5));
    registry.runner("line-counter", Arc::new(LineCounter));
    let opts = LoadOptions {
        catalog: registry.catalog(),
        ..LoadOptions::default()
    };
    let loaded = load_str("stats.hcl", PIPELINE, &opts).map_err(|e| e.render(false))?;

    let engine = Engine::new(registry).with_options(EngineOptions {
        workspace_root: std::env::temp_dir().join("pipewright-custom-runner"),
        ..EngineOptions::default()
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(engine.run_job(&loaded.pipeline, "stats", &RunOptions::default()))?;
    for s in &result.steps {
        println!("{:<8} {}", s.step, s.status);
    }
    if !result.status.passes() {
        return Err(format!("the build ended {}: {:?}", result.status, result.reason).into());
    }
    println!("stats: {}", result.status);
    Ok(())
}
