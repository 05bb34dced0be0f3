//! `pipewright worker`: takes builds from a NATS queue on any machine that reaches it, runs
//! them, and reports to the server over NATS. It holds no database credentials.

use crate::server::NatsArgs;
use clap::Args;
use pipewright_engine::{Engine, EngineOptions};
use pipewright_server::Worker;
use pipewright_server::nats_link::NatsLink;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `pipewright worker`.
#[derive(Debug, Args)]
pub struct WorkerCmd {
    /// The NATS server the Pipewright server uses: `nats://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    queue: String,
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    blobs: crate::blobs::BlobArgs,
    /// This worker's token (role `worker`: `pipewright token create --role worker --name N`).
    #[arg(
        long,
        env = "PIPEWRIGHT_WORKER_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// A file holding this worker's token.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// This worker's name. The server knows a worker by its token's name, so this must be
    /// that name (the server refuses the worker otherwise); it defaults to it.
    #[arg(long, env = "PIPEWRIGHT_WORKER_NAME", value_name = "N")]
    name: Option<String>,
    /// Tags this worker advertises (comma-separated): it takes builds of jobs whose `tags`
    /// it has, all of them.
    #[arg(long, value_name = "a,b", value_delimiter = ',')]
    tags: Vec<String>,
    /// Builds at once.
    #[arg(long, value_name = "N", default_value_t = 2)]
    concurrency: usize,
    /// Exit after one build.
    #[arg(long)]
    ephemeral: bool,
    /// How often a running build's lease is renewed; keep it well under the server's `--lease`.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::parse_grace)]
    heartbeat: Duration,
    /// Where build workspaces are made (default: $XDG_CACHE_HOME/pipewright/builds).
    #[arg(long, value_name = "DIR")]
    workspace_root: Option<PathBuf>,
    /// How long a stopped task may take to exit after SIGTERM before it is killed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::parse_grace)]
    kill_grace: Duration,
    /// Let `run "docker"` blocks ask for `privileged = true`.
    #[arg(long)]
    allow_privileged: bool,
}

/// Runs the worker until SIGTERM (it finishes what it runs and takes nothing new; a second
/// SIGTERM stops the builds, which the server re-queues).
pub fn worker_cmd(c: WorkerCmd) -> ExitCode {
    crate::server::block_on_service(work(c))
}

fn token(c: &WorkerCmd) -> Result<String, String> {
    if let Some(t) = &c.token {
        return Ok(t.trim().to_owned());
    }
    let file = c
        .token_file
        .clone()
        .unwrap_or_else(|| crate::server::config_dir().join("worker-token"));
    std::fs::read_to_string(&file)
        .map(|t| t.trim().to_owned())
        .map_err(|e| {
            format!(
                "no worker token: pass --token, set PIPEWRIGHT_WORKER_TOKEN or put one in {} ({e}); \
                 make one on the server with `pipewright token create --role worker --name NAME`",
                file.display()
            )
        })
}

async fn work(c: WorkerCmd) -> Result<(), String> {
    let token = token(&c)?;
    // The server makes the stream; a worker started first waits for it.
    let opts = c.nats.options(&c.queue, false, Duration::from_secs(5));
    let mut wait = Duration::from_millis(500);
    let queue = loop {
        match pipewright_queue::NatsQueue::connect(opts.clone()).await {
            Ok(q) => break q,
            Err(pipewright_queue::QueueError::Invalid(e)) => {
                return Err(format!("--queue {}: {e}", c.queue));
            }
            Err(e) => {
                eprintln!("waiting for the queue: {e} (again in {wait:?})");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    };
    let name = c.name.clone().unwrap_or_else(crate::server::hostname);
    let concurrency = if c.ephemeral { 1 } else { c.concurrency };
    let link = NatsLink::new(queue.client(), token, c.tags.clone(), concurrency)
        .expecting_name(c.name.clone());
    let root = c
        .workspace_root
        .clone()
        .unwrap_or_else(crate::run::default_workspace_root);
    let blobs = crate::blobs::open(&c.blobs, Some(queue.client())).await?;
    let mut registry = crate::run::registry(c.kill_grace, c.allow_privileged);
    registry.artifacts_in(blobs.clone());
    let engine = Engine::new(registry)
        .with_options(EngineOptions {
            workspace_root: std::path::absolute(&root).map_err(|e| e.to_string())?,
            kill_grace: c.kill_grace,
            cache_root: crate::run::default_cache_root(),
            ..EngineOptions::default()
        })
        .with_blob_store(blobs.clone());
    eprintln!("artifacts and caches in {}", blobs.describe());
    let worker = Worker {
        name: name.clone(),
        tags: c.tags.clone(),
        concurrency,
        heartbeat: c.heartbeat,
        max_builds: c.ephemeral.then_some(1),
        engine,
        queue: Arc::new(queue),
        link: Arc::new(link),
        versions: Worker::own_history(),
    };
    eprintln!(
        "pipewright worker {}{name} taking builds from {} (tags: {}; {} at once{}); the server knows it by its token's name",
        if c.name.is_some() { "" } else { "on " },
        c.queue,
        if c.tags.is_empty() {
            "none".to_owned()
        } else {
            c.tags.join(",")
        },
        worker.concurrency,
        if c.ephemeral {
            "; exits after one build"
        } else {
            ""
        }
    );
    let drain = pipewright_core::CancellationToken::new();
    let abandon = pipewright_core::CancellationToken::new();
    let run = tokio::spawn(worker.run(drain.clone(), abandon.clone()));
    tokio::pin!(run);
    let done = |r: Result<Result<(), pipewright_server::LinkError>, tokio::task::JoinError>| match r
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the server refused this worker: {e}")),
        Err(e) => Err(format!("the worker failed: {e}")),
    };
    tokio::select! {
        r = &mut run => return done(r),
        () = crate::server::wait_for_stop() => {}
    }
    eprintln!("draining: finishing running builds, taking no new one (again to stop them)");
    drain.cancel();
    tokio::select! {
        r = &mut run => done(r),
        () = crate::server::wait_for_stop() => {
            abandon.cancel();
            done(run.await)
        }
    }
}
