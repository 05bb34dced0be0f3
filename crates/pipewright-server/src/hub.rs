//! The server's shared state: the store, the engine, the queue, the pipelines, and the
//! in-memory bookkeeping of what is dispatched, running and being checked.

use crate::metrics::Metrics;
use crate::scoped::Scoped;
use pipewright_api::CheckView;
use pipewright_config::Pipeline;
use pipewright_core::CancellationToken;
use pipewright_engine::Engine;
use pipewright_queue::Queue;
use pipewright_store::{BuildId, Store};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};

/// Loads a pipeline file: the pipeline, or its diagnostics rendered as text (what `validate`
/// prints). The binary supplies it, so the server needs no knowledge of type fetching or
/// variables.
pub type Loader = Arc<dyn Fn(&std::path::Path) -> Result<Pipeline, String> + Send + Sync>;

/// Settings of a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Serve reads without a token.
    pub public: bool,
    /// How often pipeline files are looked at for changes.
    pub reload_every: Duration,
    /// How long shutdown waits for running builds before re-queuing them.
    pub shutdown_grace: Duration,
    /// The longest wait between checks of a failing resource.
    pub max_backoff: Duration,
    /// How long a worker's claim lasts without a heartbeat; a lapsed one re-queues the build.
    pub lease: Duration,
    /// Attempts a build may take (lost workers, restarts) before it ends `errored`.
    pub max_attempts: u32,
    /// The address people reach the server at (`https://ci.example.com`), for the build links
    /// in notifications and `BUILD_URL`; `None`: builds carry no link.
    pub external_url: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            public: false,
            reload_every: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(30),
            max_backoff: Duration::from_secs(600),
            lease: Duration::from_secs(5),
            max_attempts: 5,
            external_url: None,
        }
    }
}

/// A pipeline as the server holds it.
#[derive(Debug, Clone)]
pub struct PipelineEntry {
    /// Its name.
    pub name: String,
    /// Its file.
    pub file: PathBuf,
    /// The version in effect.
    pub pipeline: Arc<Pipeline>,
    /// Why the newest version of the file was rejected.
    pub error: Option<String>,
    /// The file's modification time when it was last read.
    pub(crate) mtime: Option<std::time::SystemTime>,
    /// Stops its check loops.
    pub(crate) checks: CancellationToken,
}

/// A build a worker holds or the dispatcher has sent.
#[derive(Debug, Clone)]
pub(crate) struct Active {
    pub pipeline: String,
    pub job: String,
    pub dispatched_at: std::time::Instant,
}

/// A worker's hold on a build attempt, renewed by its heartbeats and reports.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub attempt: u32,
    pub worker: String,
    pub expires: std::time::Instant,
}

/// A worker known to the server.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// Its tags.
    pub tags: Vec<String>,
    /// Builds it runs at once.
    pub concurrency: usize,
    /// When it last claimed or heartbeat (ms since the epoch).
    pub last_seen_ms: u64,
}

/// Everything the server's tasks and handlers share.
pub struct Hub {
    /// The source of truth.
    pub store: Arc<dyn Store>,
    /// Plans and checks.
    pub engine: Engine,
    /// Where dispatched builds go.
    pub queue: Arc<dyn Queue>,
    /// Settings.
    pub options: ServerOptions,
    /// Counters and histograms for `/metrics`.
    pub metrics: Metrics,
    pub(crate) loader: Loader,
    pub(crate) pipelines: RwLock<BTreeMap<String, PipelineEntry>>,
    pub(crate) wake: Notify,
    pub(crate) updates: broadcast::Sender<BuildId>,
    pub(crate) active: Mutex<HashMap<BuildId, Active>>,
    pub(crate) cancels: Mutex<HashMap<BuildId, CancellationToken>>,
    pub(crate) leases: Mutex<HashMap<BuildId, Lease>>,
    pub(crate) cancel_reasons: Mutex<HashMap<BuildId, String>>,
    pub(crate) waiting: Mutex<HashMap<BuildId, String>>,
    pub(crate) checks: Mutex<HashMap<String, CheckView>>,
    pub(crate) check_now: Mutex<HashMap<String, Arc<Notify>>>,
    pub(crate) workers: Mutex<BTreeMap<String, WorkerInfo>>,
    /// Resources whose versions builds' puts added, to trigger on.
    pub(crate) grown: Mutex<Vec<(String, String)>>,
    /// One trigger evaluation at a time, so two cannot both create "the" next build.
    pub(crate) triggering: tokio::sync::Mutex<()>,
    pub(crate) shutdown: CancellationToken,
    /// Webhook delivery ids seen and deliveries recorded.
    pub(crate) webhooks: crate::webhooks::Deliveries,
    /// The UI's graph layouts by pipeline.
    pub(crate) layouts: crate::ui_views::LayoutCache,
    /// This hub, for background work started from `&self` (notifications).
    pub(crate) me: std::sync::Weak<Hub>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("queue", &self.queue)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub with no pipelines yet.
    pub fn new(
        store: Arc<dyn Store>,
        engine: Engine,
        queue: Arc<dyn Queue>,
        loader: Loader,
        options: ServerOptions,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Hub {
            me: me.clone(),
            store,
            engine,
            queue,
            options,
            metrics: Metrics::new(),
            loader,
            pipelines: RwLock::new(BTreeMap::new()),
            wake: Notify::new(),
            updates: broadcast::channel(4096).0,
            active: Mutex::new(HashMap::new()),
            cancels: Mutex::new(HashMap::new()),
            leases: Mutex::new(HashMap::new()),
            cancel_reasons: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            checks: Mutex::new(HashMap::new()),
            check_now: Mutex::new(HashMap::new()),
            workers: Mutex::new(BTreeMap::new()),
            grown: Mutex::new(Vec::new()),
            triggering: tokio::sync::Mutex::new(()),
            shutdown: CancellationToken::new(),
            webhooks: Default::default(),
            layouts: Default::default(),
        })
    }

    /// The pipeline named `name`, as in effect now.
    pub fn pipeline(&self, name: &str) -> Option<Arc<Pipeline>> {
        self.pipelines
            .read()
            .ok()
            .and_then(|p| p.get(name).map(|e| e.pipeline.clone()))
    }

    /// Every pipeline entry, by name.
    pub fn pipelines(&self) -> Vec<PipelineEntry> {
        self.pipelines
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The entry of pipeline `name`.
    pub fn pipeline_entry(&self, name: &str) -> Option<PipelineEntry> {
        self.pipelines
            .read()
            .ok()
            .and_then(|p| p.get(name).cloned())
    }

    /// The version history of pipeline `name`.
    pub fn versions(&self, pipeline: &str) -> Scoped {
        Scoped::new(self.store.clone(), pipeline)
    }

    /// Wakes the dispatcher.
    pub fn wake_dispatcher(&self) {
        self.wake.notify_one();
    }

    /// Tells SSE streams of build `id` that it has news.
    pub(crate) fn announce(&self, id: BuildId) {
        let _ = self.updates.send(id);
    }

    /// Subscribes to build news (SSE streams filter by id).
    pub fn subscribe(&self) -> broadcast::Receiver<BuildId> {
        self.updates.subscribe()
    }

    /// Registers a worker (the in-process one, or one that announced itself).
    pub fn register_worker(&self, name: &str, info: WorkerInfo) {
        if let Ok(mut w) = self.workers.lock() {
            w.insert(
                name.to_owned(),
                WorkerInfo {
                    last_seen_ms: now_ms(),
                    ..info
                },
            );
        }
    }

    /// Notes that `name` is alive.
    pub(crate) fn touch_worker(&self, name: &str) {
        if let Ok(mut w) = self.workers.lock()
            && let Some(info) = w.get_mut(name)
        {
            info.last_seen_ms = now_ms();
        }
    }

    /// The workers seen in the last minute (they announce themselves every few seconds), by
    /// name; older ones are forgotten.
    pub fn workers(&self) -> BTreeMap<String, WorkerInfo> {
        let alive = now_ms().saturating_sub(60_000);
        self.workers
            .lock()
            .map(|mut w| {
                w.retain(|_, i| i.last_seen_ms >= alive);
                w.clone()
            })
            .unwrap_or_default()
    }

    /// Refreshes the per-worker gauges of `/metrics` from the workers seen and the leases.
    pub fn refresh_worker_metrics(&self) {
        let now = now_ms();
        let gauges: Vec<crate::metrics::WorkerGauge> = self
            .workers()
            .into_iter()
            .map(|(name, info)| crate::metrics::WorkerGauge {
                running: self.running_on(&name).len(),
                heartbeat_age_seconds: now.saturating_sub(info.last_seen_ms) as f64 / 1000.0,
                name,
            })
            .collect();
        self.metrics.set_workers(&gauges);
    }

    /// The builds `worker` holds now.
    pub fn running_on(&self, worker: &str) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .leases
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(_, x)| x.worker == worker)
                    .map(|(id, _)| id.0)
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// Builds dispatched or running now.
    pub fn active_count(&self) -> usize {
        self.active.lock().map(|a| a.len()).unwrap_or(0)
    }

    /// Why a pending build is not running yet, if the dispatcher said.
    pub fn waiting_reason(&self, id: BuildId) -> Option<String> {
        self.waiting.lock().ok().and_then(|w| w.get(&id).cloned())
    }

    /// The check state of resource `rid` of `pipeline`.
    pub fn check_state(&self, pipeline: &str, rid: &str) -> CheckView {
        self.checks
            .lock()
            .ok()
            .and_then(|c| c.get(&check_key(pipeline, rid)).cloned())
            .unwrap_or_default()
    }

    pub(crate) fn set_check_state(
        &self,
        pipeline: &str,
        rid: &str,
        f: impl FnOnce(&mut CheckView),
    ) {
        if let Ok(mut c) = self.checks.lock() {
            f(c.entry(check_key(pipeline, rid)).or_default());
        }
    }

    /// The signal that makes resource `rid`'s check loop check now.
    pub(crate) fn check_signal(&self, pipeline: &str, rid: &str) -> Arc<Notify> {
        let mut m = match self.check_now.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(check_key(pipeline, rid)).or_default().clone()
    }

    /// The token that stops the whole server.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

fn check_key(pipeline: &str, rid: &str) -> String {
    format!("{pipeline}/{rid}")
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
