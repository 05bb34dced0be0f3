//! `pipewright server`: the whole CI in one process, on the store and queue the flags name.

use crate::VarArgs;
use clap::Args;
use pipewright_engine::{Engine, EngineOptions};
use pipewright_server::{
    LocalWorker, MemoryQueue, Queue, Server, ServerConfig, ServerOptions, Tokens,
};
use pipewright_store::Store;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `pipewright server`.
#[derive(Debug, Args)]
pub struct ServerCmd {
    /// Where builds, events and versions are kept: `mem` (nothing survives a restart),
    /// `sqlite://PATH` (a file, created when missing) or `postgres://USER@HOST/DB`.
    #[arg(long, alias = "db-system", value_name = "URL", default_value = "mem")]
    db: String,
    /// How builds reach workers: `mem` (workers in this process, `--run-worker`) or
    /// `nats://HOST:PORT` (NATS JetStream: `pipewright worker` on any machine that reaches it).
    #[arg(
        long,
        alias = "pubsub-system",
        value_name = "URL",
        default_value = "mem"
    )]
    queue: String,
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    blobs: crate::blobs::BlobArgs,
    /// JetStream replicas of the build stream (3 on a NATS cluster).
    #[arg(long, value_name = "N", default_value_t = 1)]
    nats_replicas: usize,
    /// How long a worker's hold on a build lasts without a heartbeat; a build whose worker
    /// stopped reporting is re-queued after it.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::parse_grace)]
    lease: Duration,
    /// Run a worker in this process.
    #[arg(long)]
    run_worker: bool,
    /// Tags the in-process worker advertises (comma-separated).
    #[arg(long, value_name = "a,b", value_delimiter = ',')]
    worker_tags: Vec<String>,
    /// Builds the in-process worker runs at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    worker_concurrency: usize,
    /// A pipeline to serve: `NAME=PATH`, or a PATH whose file stem is the name (repeatable).
    #[arg(
        long,
        alias = "pipeline-config",
        value_name = "[NAME=]PATH",
        required = true
    )]
    pipeline: Vec<String>,
    /// Where the API listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// The admin token's file; created (mode 0600) with a random token when missing. Tokens
    /// made with `pipewright token create` are kept, hashed, beside it.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Serve reads (pipelines, builds, logs) without a token; changes still need one.
    #[arg(long)]
    public: bool,
    /// The address people reach the server at, for build links in notifications and
    /// `BUILD_URL` (default: http://LISTEN, or this host's name when listening on all
    /// addresses).
    #[arg(long, value_name = "URL", env = "PIPEWRIGHT_EXTERNAL_URL", value_parser = parse_external_url)]
    external_url: Option<String>,
    #[command(flatten)]
    vars: VarArgs,
    /// Where build workspaces are made (default: $XDG_CACHE_HOME/pipewright/builds).
    #[arg(long, value_name = "DIR")]
    workspace_root: Option<PathBuf>,
    /// How long a stopped task may take to exit after SIGTERM before it is killed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::parse_grace)]
    kill_grace: Duration,
    /// How long SIGTERM waits for running builds before stopping and re-queuing them.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::parse_grace)]
    shutdown_grace: Duration,
    /// Let `run "docker"` blocks ask for `privileged = true`.
    #[arg(long)]
    allow_privileged: bool,
}

/// The default token file, shared with the client so a local server and `pipewright trigger`
/// work together with no setup: `$XDG_CONFIG_HOME/pipewright/token`.
pub fn default_token_file() -> PathBuf {
    config_dir().join("token")
}

/// `$XDG_CONFIG_HOME/pipewright` (or `~/.config/pipewright`).
pub fn config_dir() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(std::env::temp_dir)
        .join("pipewright")
}

fn pipelines(specs: &[String]) -> Result<Vec<(String, PathBuf)>, String> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for spec in specs {
        let (name, path) = match spec.split_once('=') {
            Some((n, p)) if !n.is_empty() && !n.contains('/') => (n.to_owned(), PathBuf::from(p)),
            _ => (
                crate::pipeline_name(std::path::Path::new(spec)),
                PathBuf::from(spec),
            ),
        };
        if !path.is_file() {
            return Err(format!(
                "--pipeline {spec}: `{}` is not a file",
                path.display()
            ));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!(
                "--pipeline {spec}: two pipelines are named `{name}`; name one with NAME=PATH"
            ));
        }
        let path = std::path::absolute(&path).map_err(|e| format!("--pipeline {spec}: {e}"))?;
        out.push((name, path));
    }
    Ok(out)
}

async fn open_store(url: &str) -> Result<Arc<dyn Store>, String> {
    if url == "mem" || url == "memory" {
        return Ok(Arc::new(pipewright_store::MemoryStore::new()));
    }
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if path.is_empty() {
            return Err("--db sqlite://PATH needs a path".into());
        }
        return pipewright_store::SqliteStore::open(path)
            .await
            .map(|s| Arc::new(s) as Arc<dyn Store>)
            .map_err(|e| format!("--db {url}: {e}"));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return pipewright_store::PostgresStore::connect(url)
            .await
            .map(|s| Arc::new(s) as Arc<dyn Store>)
            .map_err(|e| format!("--db: {e}"));
    }
    Err(format!(
        "--db {url}: expected `mem`, `sqlite://PATH` or `postgres://…`"
    ))
}

/// NATS connection settings, shared by `server` and `worker`.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// A token for NATS itself (not a Pipewright token).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PIPEWRIGHT_NATS_TOKEN",
        hide_env_values = true
    )]
    nats_token: Option<String>,
    /// A NATS user (with --nats-password).
    #[arg(long, value_name = "USER", requires = "nats_password")]
    nats_user: Option<String>,
    /// The NATS user's password.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "PIPEWRIGHT_NATS_PASSWORD",
        hide_env_values = true
    )]
    nats_password: Option<String>,
    /// A NATS `.creds` file (JWT and nkey).
    #[arg(long, value_name = "FILE")]
    nats_creds: Option<PathBuf>,
}

impl NatsArgs {
    /// Queue options for `url`.
    pub fn options(
        &self,
        url: &str,
        create: bool,
        lease: Duration,
    ) -> pipewright_queue::NatsOptions {
        pipewright_queue::NatsOptions {
            token: self.nats_token.clone(),
            user: self
                .nats_user
                .clone()
                .map(|u| (u, self.nats_password.clone().unwrap_or_default())),
            credentials: self.nats_creds.clone(),
            create,
            // The queue redelivers a message a worker stopped keeping alive a little after
            // the server's lease: the server re-queues first, with the next attempt.
            ack_wait: lease * 2,
            ..pipewright_queue::NatsOptions::new(url)
        }
    }
}

/// The queue `url` names, and its NATS connection when it is NATS.
async fn open_queue(c: &ServerCmd) -> Result<(Arc<dyn Queue>, Option<async_nats::Client>), String> {
    match c.queue.as_str() {
        "mem" | "memory" => Ok((Arc::new(MemoryQueue::new()), None)),
        u if u.starts_with("nats://") || u.starts_with("tls://") => {
            let opts = pipewright_queue::NatsOptions {
                replicas: c.nats_replicas,
                ..c.nats.options(u, true, c.lease)
            };
            let q = pipewright_queue::NatsQueue::connect(opts)
                .await
                .map_err(|e| format!("--queue {u}: {e}"))?;
            let client = q.client();
            Ok((Arc::new(q), Some(client)))
        }
        u => Err(format!("--queue {u}: expected `mem` or `nats://HOST:PORT`")),
    }
}

/// Runs the server until SIGTERM or Ctrl-C.
pub fn server_cmd(c: ServerCmd) -> ExitCode {
    block_on_service(serve(c))
}

/// Runs a long-lived command (`server`, `worker`) on a multi-thread runtime: exit 0 when it
/// ends cleanly, 1 with its error printed otherwise.
pub(crate) fn block_on_service(
    work: impl std::future::Future<Output = Result<(), String>>,
) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(c: ServerCmd) -> Result<(), String> {
    let specs = pipelines(&c.pipeline)?;
    let (queue, nats) = open_queue(&c).await?;
    if !c.run_worker && nats.is_none() {
        eprintln!(
            "note: no --run-worker and a memory queue: no worker can take builds, they will wait"
        );
    }
    let store = open_store(&c.db).await?;
    if c.db == "mem" || c.db == "memory" {
        eprintln!(
            "note: --db mem keeps everything in memory: builds, versions and logs are gone when the server stops"
        );
    }
    let token_file = c.token_file.clone().unwrap_or_else(default_token_file);
    let (admin, made) = pipewright_server::tokens::admin_token(&token_file)
        .map_err(|e| format!("--token-file {}: {e}", token_file.display()))?;
    if made {
        eprintln!("wrote a new admin token to {}", token_file.display());
    }
    let tokens = Tokens::new(&admin, Some(token_file.with_extension("tokens.json")))
        .map_err(|e| e.to_string())?;
    let root = c
        .workspace_root
        .clone()
        .unwrap_or_else(crate::run::default_workspace_root);
    // The server checks artifacts (and its in-process worker runs builds) on the same store
    // as the remote workers.
    let blobs = crate::blobs::open(&c.blobs, nats.clone()).await?;
    let mut registry = crate::run::registry(c.kill_grace, c.allow_privileged);
    if c.blobs.artifacts_shared(nats.is_some()) {
        registry.artifacts_in(blobs.clone());
    }
    let engine = Engine::new(registry)
        .with_options(EngineOptions {
            workspace_root: std::path::absolute(&root).map_err(|e| e.to_string())?,
            kill_grace: c.kill_grace,
            cache_root: crate::run::default_cache_root(),
            ..EngineOptions::default()
        })
        .with_blob_store(blobs.clone());
    eprintln!("artifacts and caches in {}", blobs.describe());
    let vars = c.vars;
    let loader: pipewright_server::Loader = Arc::new(move |file: &std::path::Path| {
        crate::load(file, &vars)
            .map(|l| l.pipeline)
            .map_err(|e| e.render(false))
    });
    let server = Server::start(ServerConfig {
        listen: c.listen,
        pipelines: specs.clone(),
        options: ServerOptions {
            public: c.public,
            external_url: Some(c.external_url.clone().unwrap_or_else(|| {
                if c.listen.ip().is_unspecified() {
                    format!("http://{}:{}", hostname(), c.listen.port())
                } else {
                    format!("http://{}", c.listen)
                }
            })),
            shutdown_grace: c.shutdown_grace,
            lease: c.lease,
            ..ServerOptions::default()
        },
        worker: c.run_worker.then(|| LocalWorker {
            name: format!("{}-local", hostname()),
            tags: c.worker_tags.clone(),
            concurrency: c.worker_concurrency,
        }),
        store,
        queue,
        engine,
        loader,
        tokens,
    })
    .await
    .map_err(|e| e.to_string())?;
    if let Some(client) = nats {
        pipewright_server::nats_link::serve(
            server.hub.clone(),
            client,
            server.tokens.clone(),
            server.hub.shutdown_token(),
        )
        .await?;
    }
    let names: Vec<&str> = specs.iter().map(|(n, _)| n.as_str()).collect();
    eprintln!(
        "pipewright server listening on http://{} (pipelines: {}; db: {}; queue: {}{})",
        server.addr,
        names.join(", "),
        c.db,
        c.queue,
        if c.run_worker {
            "; with a local worker"
        } else {
            ""
        }
    );
    if server.recovered > 0 {
        eprintln!(
            "re-queued {} build(s) the previous server was running",
            server.recovered
        );
    }
    wait_for_stop().await;
    eprintln!(
        "stopping: running builds get {:?} to finish",
        c.shutdown_grace
    );
    server.shutdown().await;
    Ok(())
}

pub(crate) async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}

/// `--external-url`: an `http://` or `https://` URL, kept without a trailing `/`.
fn parse_external_url(s: &str) -> Result<String, String> {
    let t = s.trim().trim_end_matches('/');
    if !(t.starts_with("http://") || t.starts_with("https://")) || t.len() <= "https://".len() {
        return Err(format!(
            "`{s}` is not an http:// or https:// URL (for example https://ci.example.com)"
        ));
    }
    Ok(t.to_owned())
}
