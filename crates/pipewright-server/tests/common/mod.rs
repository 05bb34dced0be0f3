//! A real server on 127.0.0.1 for the tests: real store, real engine, real git repositories.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use pipewright_api::BuildView;
use pipewright_engine::{BuiltinOptions, Engine, EngineOptions, Registry};
use pipewright_server::{LocalWorker, MemoryQueue, Server, ServerConfig, ServerOptions, Tokens};
use pipewright_store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ADMIN: &str = "pw_test_admin_token";

pub struct Ci {
    pub server: Option<Server>,
    pub base: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub pipeline: PathBuf,
}

pub fn engine(dir: &Path) -> Engine {
    let grace = Duration::from_secs(2);
    Engine::new(Registry::builtins(&BuiltinOptions {
        grace,
        cache_root: dir.join("cache"),
        allow_privileged: false,
    }))
    .with_options(EngineOptions {
        workspace_root: dir.join("ws"),
        cache_root: dir.join("cache"),
        kill_grace: grace,
        ..EngineOptions::default()
    })
}

pub fn loader(dir: &Path) -> pipewright_server::Loader {
    let catalog = Registry::builtins(&BuiltinOptions {
        cache_root: dir.join("cache"),
        ..BuiltinOptions::default()
    })
    .catalog();
    Arc::new(move |file: &Path| {
        let opts = pipewright_config::LoadOptions {
            catalog: catalog.clone(),
            ..Default::default()
        };
        pipewright_config::load_file(file, &opts)
            .map(|l| l.pipeline)
            .map_err(|e| e.render(false))
    })
}

impl Ci {
    /// A server in memory with a local worker, serving `hcl` as pipeline `p`.
    pub async fn start(hcl: &str) -> Ci {
        Self::start_with(hcl, Arc::new(pipewright_store::MemoryStore::new()), false).await
    }

    pub async fn start_with(hcl: &str, store: Arc<dyn Store>, public: bool) -> Ci {
        let options = ServerOptions {
            public,
            reload_every: Duration::from_millis(200),
            shutdown_grace: Duration::from_secs(5),
            ..ServerOptions::default()
        };
        let worker = LocalWorker {
            name: "local".into(),
            tags: vec![],
            concurrency: 4,
        };
        Self::start_custom(
            hcl,
            store,
            options,
            Some(worker),
            Arc::new(MemoryQueue::new()),
        )
        .await
    }

    pub async fn start_custom(
        hcl: &str,
        store: Arc<dyn Store>,
        options: ServerOptions,
        worker: Option<LocalWorker>,
        queue: Arc<dyn pipewright_server::Queue>,
    ) -> Ci {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = dir.path().join("p.hcl");
        std::fs::write(&pipeline, hcl).unwrap();
        let server = Server::start(ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            pipelines: vec![("p".into(), pipeline.clone())],
            options,
            worker,
            store,
            queue,
            engine: engine(dir.path()),
            loader: loader(dir.path()),
            tokens: Tokens::new(ADMIN, Some(dir.path().join("tokens.json"))).unwrap(),
        })
        .await
        .unwrap();
        Ci {
            base: format!("http://{}", server.addr),
            server: Some(server),
            http: reqwest::Client::new(),
            dir,
            pipeline,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(ADMIN)
    }

    pub fn post(&self, path: &str, body: serde_json::Value) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .bearer_auth(ADMIN)
            .json(&body)
    }

    pub async fn builds(&self, job: &str) -> Vec<BuildView> {
        self.get(&format!("/pipelines/p/jobs/{job}/builds?limit=100"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn build(&self, id: u64) -> BuildView {
        self.get(&format!("/builds/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn log(&self, id: u64) -> String {
        self.get(&format!("/builds/{id}/log"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn trigger(&self, job: &str, inputs: serde_json::Value) -> BuildView {
        let resp = self
            .post(
                &format!("/pipelines/p/jobs/{job}/builds"),
                serde_json::json!({ "inputs": inputs }),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        resp.json().await.unwrap()
    }

    /// Waits (up to `limit`) until `f` holds for the job's builds; returns them.
    pub async fn wait_builds(
        &self,
        job: &str,
        limit: Duration,
        f: impl Fn(&[BuildView]) -> bool,
    ) -> Vec<BuildView> {
        let until = Instant::now() + limit;
        loop {
            let b = self.builds(job).await;
            if f(&b) {
                return b;
            }
            assert!(
                Instant::now() < until,
                "job {job}: gave up waiting; builds: {b:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until build `id` ended; returns it.
    pub async fn wait_done(&self, id: u64) -> BuildView {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let b = self.build(id).await;
            if b.status.is_terminal() {
                return b;
            }
            assert!(Instant::now() < until, "build {id} did not end: {b:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// A git repository with one commit; returns its path.
pub fn repo(dir: &Path) -> PathBuf {
    let r = dir.join("repo");
    std::fs::create_dir_all(&r).unwrap();
    git(&r, &["init", "-q", "-b", "main"]);
    commit(&r, "one");
    r
}

pub fn git(dir: &Path, args: &[&str]) {
    let st = std::process::Command::new("git")
        .args(["-c", "user.email=ci@example.com", "-c", "user.name=ci"])
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "git {args:?}");
}

/// Commits a change named `msg`; returns the new commit's sha.
pub fn commit(repo: &Path, msg: &str) -> String {
    std::fs::write(repo.join("file"), msg).unwrap();
    git(repo, &["add", "file"]);
    git(repo, &["commit", "-q", "-m", msg]);
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
