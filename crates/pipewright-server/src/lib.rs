#![doc = include_str!("../README.md")]

mod checks;
mod dispatch;
mod error;
pub mod http;
mod hub;
mod inputs;
mod link;
mod metrics;
#[cfg(feature = "nats")]
pub mod nats_link;
mod pipelines;
mod queue;
mod rerun;
mod scoped;
pub mod tokens;
mod triggers;
mod ui_views;
mod views;
mod webhooks;
mod worker;

pub use error::{ServerError, ServerResult};
pub use hub::{Hub, Loader, PipelineEntry, ServerOptions, WorkerInfo};
pub use link::{Beat, Claim, LinkError, LocalLink, WorkerLink};
pub use metrics::{Metrics, WorkerGauge};
pub use pipewright_queue::{Delivery, MemoryQueue, Message, Queue, QueueError};
pub use queue::Dispatch;
pub use scoped::Scoped;
pub use tokens::Tokens;
pub use ui_views::{Figures, Flow, FlowCell, FlowRow, JobStats, Stats, StepStats};
pub use webhooks::{DEDUP_WINDOW, MAX_WEBHOOK_BODY, WebhookAnswer};
pub use worker::{VersionsFor, Worker};

use pipewright_core::CancellationToken;
use pipewright_engine::Engine;
use pipewright_store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// The in-process worker of `--run-worker`.
#[derive(Debug, Clone)]
pub struct LocalWorker {
    /// Its name.
    pub name: String,
    /// Tags it advertises.
    pub tags: Vec<String>,
    /// Builds at once.
    pub concurrency: usize,
}

/// What a server is started with.
pub struct ServerConfig {
    /// Where the API listens (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Pipelines by name and file.
    pub pipelines: Vec<(String, PathBuf)>,
    /// Behaviour.
    pub options: ServerOptions,
    /// Run a worker in this process.
    pub worker: Option<LocalWorker>,
    /// The source of truth.
    pub store: Arc<dyn Store>,
    /// Where builds go to workers.
    pub queue: Arc<dyn Queue>,
    /// Plans, checks and (for the local worker) runs builds.
    pub engine: Engine,
    /// Reads pipeline files.
    pub loader: Loader,
    /// The tokens accepted.
    pub tokens: Tokens,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("pipelines", &self.pipelines)
            .field("options", &self.options)
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

/// A started server.
#[derive(Debug)]
pub struct Server {
    /// Its state (for embedding tools and tests).
    pub hub: Arc<Hub>,
    /// The address the API listens on.
    pub addr: SocketAddr,
    http: tokio::task::JoinHandle<()>,
    worker: Option<tokio::task::JoinHandle<()>>,
    drain: CancellationToken,
    abandon: CancellationToken,
    /// Re-queued at start: builds the previous process was running.
    pub recovered: usize,
    /// The tokens it accepts (also for worker reports over NATS).
    pub tokens: Arc<Tokens>,
}

impl Server {
    /// Recovers builds a previous process left running, loads the pipelines (an invalid one
    /// is an error carrying its diagnostics), starts check loops, the dispatcher, the file
    /// watcher, the local worker and the API.
    pub async fn start(cfg: ServerConfig) -> ServerResult<Server> {
        let hub = Hub::new(
            cfg.store,
            cfg.engine.clone(),
            cfg.queue.clone(),
            cfg.loader,
            cfg.options,
        );
        let recovered = hub.recover().await?;
        for (name, file) in &cfg.pipelines {
            hub.add_pipeline(name, file).map_err(|diagnostics| {
                ServerError::BadRequest(format!(
                    "pipeline `{name}` ({}) is invalid:\n{diagnostics}",
                    file.display()
                ))
            })?;
        }
        let stop = hub.shutdown_token();
        tokio::spawn(dispatch::dispatcher(hub.clone(), stop.clone()));
        tokio::spawn(pipelines::watch(hub.clone(), stop.clone()));
        let drain = CancellationToken::new();
        let abandon = CancellationToken::new();
        let worker = cfg.worker.map(|w| {
            hub.register_worker(
                &w.name,
                WorkerInfo {
                    tags: w.tags.clone(),
                    concurrency: w.concurrency,
                    last_seen_ms: 0,
                },
            );
            let worker = Worker {
                name: w.name,
                tags: w.tags,
                concurrency: w.concurrency,
                heartbeat: (hub.options.lease / 5).max(std::time::Duration::from_millis(100)),
                max_builds: None,
                engine: cfg.engine,
                queue: cfg.queue.clone(),
                link: Arc::new(LocalLink(hub.clone())),
                // As on a remote worker: the build's own history only.
                versions: Worker::own_history(),
            };
            let (drain, abandon) = (drain.clone(), abandon.clone());
            tokio::spawn(async move {
                // The in-process worker is never refused: it reports straight to the hub.
                if let Err(e) = worker.run(drain, abandon).await {
                    tracing::error!(error = %e, "the local worker stopped");
                }
            })
        });
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| ServerError::Internal(format!("cannot listen on {}: {e}", cfg.listen)))?;
        let addr = listener.local_addr().map_err(|e| {
            ServerError::Internal(format!("cannot read the listening address: {e}"))
        })?;
        let tokens = Arc::new(cfg.tokens);
        let app = http::router(hub.clone(), tokens.clone());
        let http = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the API stopped");
            }
        });
        hub.wake_dispatcher();
        tracing::info!(%addr, recovered, "server listening");
        Ok(Server {
            hub,
            addr,
            http,
            worker,
            drain,
            abandon,
            recovered,
            tokens,
        })
    }

    /// Stops: no new builds are taken, running ones get the grace period to finish, the rest
    /// are stopped and re-queued for the next start.
    pub async fn shutdown(self) {
        let grace = self.hub.options.shutdown_grace;
        self.drain.cancel();
        if let Some(mut w) = self.worker
            && tokio::time::timeout(grace, &mut w).await.is_err()
        {
            tracing::warn!(
                ?grace,
                "builds still running after the grace period: stopping and re-queuing them"
            );
            self.abandon.cancel();
            let _ = w.await;
        }
        match self.hub.recover().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "re-queued builds for the next start"),
            Err(e) => tracing::error!(error = %e, "could not re-queue running builds"),
        }
        self.hub.shutdown_token().cancel();
        self.hub.queue.close();
        let _ = self.http.await;
    }
}
